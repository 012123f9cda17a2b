#include "runtime/threads.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "runtime/interrupt.h"

#if defined(__linux__) || defined(__APPLE__)
#include <pthread.h>
#endif
#ifdef __linux__
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pt {

// ---------------------------------------------------------------------------
// Cancellation flag of the calling thread (runtime/interrupt.h)
// ---------------------------------------------------------------------------

namespace {
thread_local const std::atomic<bool>* t_cancel = nullptr;
}  // namespace

const std::atomic<bool>* cancel_flag() { return t_cancel; }
void set_cancel_flag(const std::atomic<bool>* flag) { t_cancel = flag; }

// ---------------------------------------------------------------------------
// Thread count
// ---------------------------------------------------------------------------

namespace {

int parse_positive_env(const char* name) {
  const char* s = std::getenv(name);
  if (!s || !*s) return 0;
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || v < 1 || v > kMaxThreads) return 0;
  return static_cast<int>(v);
}

#ifdef __linux__
// "quota period" of cgroup v2's cpu.max ("max 100000": no quota) -> CPUs, or 0.
double read_cpu_max(const std::string& file) {
  std::ifstream f(file);
  std::string quota;
  double period = 0;
  if (!(f >> quota >> period) || quota == "max" || !(period > 0)) return 0;
  char* end = nullptr;
  const double q = std::strtod(quota.c_str(), &end);
  if (end == quota.c_str() || !(q > 0)) return 0;
  return q / period;
}

// cgroup v1: cpu.cfs_quota_us (-1: none) / cpu.cfs_period_us.
double read_cfs(const std::string& dir) {
  std::ifstream q(dir + "/cpu.cfs_quota_us"), p(dir + "/cpu.cfs_period_us");
  double quota = 0, period = 0;
  if (!(q >> quota) || !(p >> period) || !(quota > 0) || !(period > 0)) return 0;
  return quota / period;
}

// The smallest quota on the way from this process's cgroup up to the root.
// PYTRANSFORMER_CGROUP_ROOT replaces /sys/fs/cgroup (a testing hook).
double detect_cgroup_quota() {
  const char* root_env = std::getenv("PYTRANSFORMER_CGROUP_ROOT");
  const std::string fs = root_env && *root_env ? root_env : "/sys/fs/cgroup";
  double best = 0;
  auto take = [&](double v) {
    if (v > 0 && (best == 0 || v < best)) best = v;
  };
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  while (std::getline(cg, line)) {
    // "hierarchy-id:controllers:path"; v2 is "0::/path".
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    const bool v2 = line.compare(0, a, "0") == 0 && controllers.empty();
    const bool v1_cpu = !v2 && (controllers == "cpu" || controllers.find("cpu,") != std::string::npos ||
                                controllers.find(",cpu") != std::string::npos);
    if (!v2 && !v1_cpu) continue;
    const std::string root = v2 ? fs : fs + "/" + controllers;
    const std::string alt_root = fs + "/cpu";
    for (;;) {
      if (v2) {
        take(read_cpu_max(root + path + "/cpu.max"));
      } else {
        take(read_cfs(root + path));
        take(read_cfs(alt_root + path));
      }
      if (path.empty() || path == "/") break;
      const size_t slash = path.find_last_of('/');
      path = slash == std::string::npos || slash == 0 ? std::string() : path.substr(0, slash);
    }
  }
  // Inside a container the process's own cgroup is often mounted as the root.
  take(read_cpu_max(fs + "/cpu.max"));
  take(read_cfs(fs + "/cpu"));
  take(read_cfs(fs + "/cpu,cpuacct"));
  return best;
}
#endif

int detect_physical_cores() {
  int cores_n = 0;
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    // One entry per distinct (package, core) among the CPUs we may run on.
    std::set<std::string> cores;
    int cpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      ++cpus;
      const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      std::ifstream pkg(base + "physical_package_id"), core(base + "core_id");
      std::string p, c;
      if (pkg >> p && core >> c) {
        cores.insert(p + ":" + c);
      } else {
        cores.insert("cpu" + std::to_string(cpu));
      }
    }
    cores_n = !cores.empty() ? static_cast<int>(cores.size()) : cpus;
  }
#endif
  if (cores_n <= 0) {
    const unsigned hc = std::thread::hardware_concurrency();
    cores_n = hc > 0 ? static_cast<int>(hc) : 1;
  }
  const double quota = cgroup_cpu_quota();
  if (quota > 0) cores_n = std::min(cores_n, std::max(1, static_cast<int>(std::ceil(quota - 1e-9))));
  return std::min(cores_n, kMaxThreads);
}

int default_threads() {
  if (int n = parse_positive_env("PYTRANSFORMER_NUM_THREADS")) return n;
  if (int n = parse_positive_env("OMP_NUM_THREADS")) return n;
  return physical_core_count();
}

std::atomic<int>& requested_threads() {
  static std::atomic<int> n{default_threads()};
  return n;
}

}  // namespace

double cgroup_cpu_quota() {
#ifdef __linux__
  static const double q = detect_cgroup_quota();
  return q;
#else
  return 0;
#endif
}

int physical_core_count() {
  static const int n = detect_physical_cores();
  return n;
}

bool multithreaded_build() { return true; }

int get_num_threads() { return requested_threads().load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads)
    throw std::invalid_argument("num_threads must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                                std::to_string(n));
  requested_threads().store(n, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// The pool
// ---------------------------------------------------------------------------

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How a waiting thread waits: kSpins pause loops, then yielding the core until
// kYieldFor has passed, then sleeping. Waits between the regions of one forward pass
// are microseconds (spinning keeps them cheap); a busy machine gets the core back
// at the first yield.
constexpr int kSpins = 256;
constexpr auto kYieldFor = std::chrono::microseconds(300);

template <class Ready>
bool spin_then_yield(Ready ready) {
  for (int i = 0; i < kSpins; ++i) {
    if (ready()) return true;
    cpu_relax();
  }
  const auto until = std::chrono::steady_clock::now() + kYieldFor;
  for (int i = 0;; ++i) {
    if (ready()) return true;
    std::this_thread::yield();
    if ((i & 15) == 15 && std::chrono::steady_clock::now() > until) return ready();
  }
}

// The region word: epoch (32 bits) | chunks (16 bits) | next unclaimed chunk (16 bits).
// Claiming a chunk is a compare-exchange of the whole word, so a thread that was
// descheduled between regions can never claim a chunk of a later region by mistake.
constexpr uint64_t word_of(uint32_t epoch, uint64_t chunks, uint64_t next) {
  return (static_cast<uint64_t>(epoch) << 32) | (chunks << 16) | next;
}
constexpr uint32_t epoch_of(uint64_t w) { return static_cast<uint32_t>(w >> 32); }
constexpr uint64_t chunks_of(uint64_t w) { return (w >> 16) & 0xffff; }
constexpr uint64_t next_of(uint64_t w) { return w & 0xffff; }

class Pool {
 public:
  bool try_acquire() {
    bool expected = false;
    return busy_.compare_exchange_strong(expected, true, std::memory_order_acquire);
  }
  void release() { busy_.store(false, std::memory_order_release); }

  // Needs try_acquire() first.
  void run(int64_t n, int64_t chunks, int team, RangeFn fn, void* ctx, const std::atomic<bool>* cancel) {
    ensure_workers(team - 1);
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    n_.store(n, std::memory_order_relaxed);
    cancel_.store(cancel, std::memory_order_relaxed);
    team_.store(team, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    const uint32_t e = ++epoch_;
    word_.store(word_of(e, static_cast<uint64_t>(chunks), 0), std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_work_.notify_all();
    }
    work(e);
    auto all_done = [&] { return done_.load(std::memory_order_acquire) == chunks; };
    if (!spin_then_yield(all_done)) {
      std::unique_lock<std::mutex> lock(mu_);
      caller_sleeping_.store(true, std::memory_order_seq_cst);
      while (!all_done()) cv_done_.wait(lock);
      caller_sleeping_.store(false, std::memory_order_relaxed);
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void ensure_workers(int want) {
    if (want <= workers_) return;
#if defined(__linux__) || defined(__APPLE__)
    // Workers block every signal: they go to the threads that asked for them.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
#endif
    for (int i = workers_ + 1; i <= want; ++i) {
      try {
        std::thread([this, i, seen = epoch_] { worker(i, seen); }).detach();
        workers_ = i;
      } catch (const std::system_error&) {
        break;  // no more threads: the region runs on those we have
      }
    }
#if defined(__linux__) || defined(__APPLE__)
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
#endif
  }

  // Claims and runs chunks of region `e` until none is left.
  void work(uint32_t e) {
    for (;;) {
      uint64_t w = word_.load(std::memory_order_acquire);
      if (epoch_of(w) != e || next_of(w) >= chunks_of(w)) return;
      const RangeFn fn = fn_.load(std::memory_order_relaxed);
      void* ctx = ctx_.load(std::memory_order_relaxed);
      const int64_t n = n_.load(std::memory_order_relaxed);
      const std::atomic<bool>* cancel = cancel_.load(std::memory_order_relaxed);
      if (!word_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) continue;
      const int64_t chunks = static_cast<int64_t>(chunks_of(w)), c = static_cast<int64_t>(next_of(w));
      const bool skip =
          failed_.load(std::memory_order_relaxed) || (cancel && cancel->load(std::memory_order_relaxed));
      if (!skip) {
        try {
          CancelScope scope(cancel);
          fn(ctx, n * c / chunks, n * (c + 1) / chunks);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mu_);
          if (!failed_.load(std::memory_order_relaxed)) {
            error_ = std::current_exception();
            failed_.store(true, std::memory_order_relaxed);
          }
        }
      }
      if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == chunks &&
          caller_sleeping_.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lock(mu_);
        cv_done_.notify_all();
      }
    }
  }

  void worker(int index, uint32_t seen) {
    for (;;) {
      auto changed = [&] { return epoch_of(word_.load(std::memory_order_acquire)) != seen; };
      if (!spin_then_yield(changed)) {
        std::unique_lock<std::mutex> lock(mu_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        while (!changed()) cv_work_.wait(lock);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      seen = epoch_of(word_.load(std::memory_order_acquire));
      if (index < team_.load(std::memory_order_relaxed)) work(seen);
    }
  }

  std::atomic<bool> busy_{false};
  uint32_t epoch_ = 0;  // written by the thread holding busy_
  int workers_ = 0;     // likewise
  std::atomic<uint64_t> word_{0};
  std::atomic<RangeFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> n_{0};
  std::atomic<const std::atomic<bool>*> cancel_{nullptr};
  std::atomic<int> team_{1};
  std::atomic<int64_t> done_{0};
  std::atomic<bool> failed_{false};
  std::mutex error_mu_;
  std::exception_ptr error_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_sleeping_{false};
};

// The process's pool, created on first use. Never destroyed: its detached workers
// may still be waiting on it at exit. A child of fork() drops it (the workers do
// not exist there) and makes its own.
std::atomic<Pool*> g_pool{nullptr};

void forget_pool_in_child() { g_pool.store(nullptr, std::memory_order_relaxed); }

Pool* pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return p;
#if defined(__linux__) || defined(__APPLE__)
  static const int registered = pthread_atfork(nullptr, nullptr, &forget_pool_in_child);
  (void)registered;
#endif
  Pool* fresh = new Pool();
  if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return fresh;
  delete fresh;  // another thread made one first (no worker started yet)
  return p;
}

void run_serial(int64_t n, int64_t chunks, RangeFn fn, void* ctx) {
  for (int64_t c = 0; c < chunks; ++c) {
    check_interrupt();
    fn(ctx, n * c / chunks, n * (c + 1) / chunks);
  }
  check_interrupt();
}

}  // namespace

void parallel_chunks(int64_t n, int64_t chunks, int nthreads, RangeFn fn, void* ctx) {
  if (n <= 0) return;
  chunks = std::max<int64_t>(1, std::min<int64_t>({chunks, n, kMaxChunks}));
  nthreads = static_cast<int>(std::min<int64_t>({int64_t{nthreads}, chunks, int64_t{kMaxThreads}}));
  if (nthreads <= 1) return run_serial(n, chunks, fn, ctx);
  Pool* p = pool();
  if (!p->try_acquire()) return run_serial(n, chunks, fn, ctx);  // nested, or another thread's region
  struct Release {
    Pool* p;
    ~Release() { p->release(); }
  } release{p};
  const std::atomic<bool>* cancel = cancel_flag();
  p->run(n, chunks, nthreads, fn, ctx, cancel);
  check_interrupt();
}

}  // namespace pt
