// Parallel-loop helpers shared by the kernels. Everything here has internal linkage
// (static), so each translation unit, compiled for its own instruction set, keeps
// its own copy and the linker can never swap an AVX-512 copy into portable code.
// The threads themselves are the pool of runtime/threads.h.
#pragma once

#include <algorithm>
#include <cstdint>

#include "runtime/interrupt.h"
#include "runtime/threads.h"

namespace pt {

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads worth using for `work` units when one thread should get at least
// `min_work_per_thread` of them (a region costs a few microseconds).
static inline int threads_for(int64_t work, int64_t min_work_per_thread) {
  const int64_t by_work = std::max<int64_t>(1, work / std::max<int64_t>(1, min_work_per_thread));
  return static_cast<int>(std::min<int64_t>(get_num_threads(), by_work));
}

// Chunks per thread of a parallel_for: enough that a preempted or late thread
// costs little (the others take its chunks), few enough to keep chunks large.
constexpr int64_t kChunksPerThread = 4;

template <class F>
static void parallel_range_thunk(void* ctx, int64_t begin, int64_t end) {
  (*static_cast<F*>(ctx))(begin, end);
}

// Calls f(begin, end) on contiguous pieces of [0, n), spread over up to nthreads
// threads. Every index is handled by exactly one call, and per-index results never
// depend on how [0, n) was cut, so they never depend on the thread count.
template <class F>
static inline void parallel_for(int64_t n, int nthreads, F&& f) {
  if (n <= 0) return;
  using Fn = std::remove_reference_t<F>;
  // One thread: one chunk (the loop as written; a cancellation is seen after it).
  const int64_t chunks = nthreads <= 1 ? 1 : int64_t{nthreads} * kChunksPerThread;
  parallel_chunks(n, chunks, nthreads, &parallel_range_thunk<Fn>, const_cast<void*>(static_cast<const void*>(&f)));
}

// Calls f(task) for task in [0, tasks), each task once, spread over up to nthreads
// threads (one chunk per task).
template <class F>
static inline void parallel_tasks(int64_t tasks, int nthreads, F&& f) {
  if (tasks <= 0) return;
  auto range = [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) f(t);
  };
  parallel_chunks(tasks, tasks, nthreads, &parallel_range_thunk<decltype(range)>, &range);
}

}  // namespace pt
