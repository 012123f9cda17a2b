// Cooperative cancellation: long computations stop early when asked to.
//
// A calling thread may watch a flag (set_cancel_flag, usually through
// CancelScope): while it is set, parallel regions started by that thread skip
// their remaining chunks and the region throws pt::Interrupted on the calling
// thread. Search loops and layer stacks also check between steps. The flag is
// only read (relaxed), so the check costs a load.
#pragma once

#include <atomic>
#include <stdexcept>

namespace pt {

// Thrown on the calling thread when its cancellation flag was set.
class Interrupted : public std::runtime_error {
 public:
  Interrupted() : std::runtime_error("interrupted") {}
};

// The flag the calling thread's work watches (null: none). Pool workers take the
// flag of the region they run.
const std::atomic<bool>* cancel_flag();
void set_cancel_flag(const std::atomic<bool>* flag);

inline bool cancel_requested() {
  const std::atomic<bool>* f = cancel_flag();
  return f && f->load(std::memory_order_relaxed);
}

// Throws Interrupted when the calling thread's flag is set.
inline void check_interrupt() {
  if (cancel_requested()) throw Interrupted();
}

// Watches `flag` on this thread for the scope's lifetime (restores the previous one).
class CancelScope {
 public:
  explicit CancelScope(const std::atomic<bool>* flag) : previous_(cancel_flag()) { set_cancel_flag(flag); }
  ~CancelScope() { set_cancel_flag(previous_); }
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

 private:
  const std::atomic<bool>* previous_;
};

}  // namespace pt
