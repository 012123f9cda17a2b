// OpenMP helpers shared by the kernels. Everything here has internal linkage
// (static), so each translation unit, compiled for its own instruction set, keeps
// its own copy and the linker can never swap an AVX-512 copy into portable code.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "runtime/threads.h"

namespace pt {

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads worth using for `work` units when one thread should get at least
// `min_work_per_thread` of them (fork/join costs a few microseconds).
static inline int threads_for(int64_t work, int64_t min_work_per_thread) {
  const int64_t by_work = std::max<int64_t>(1, work / std::max<int64_t>(1, min_work_per_thread));
  return static_cast<int>(std::min<int64_t>(get_num_threads(), by_work));
}

// Calls f(begin, end) on contiguous, near-equal blocks of [0, n), one per thread.
// The split depends only on n and the thread count, and every index is handled by
// exactly one call, so per-index results never depend on the thread count.
template <class F>
static inline void parallel_for(int64_t n, int nthreads, F&& f) {
  if (n <= 0) return;
  if (nthreads <= 1 || n == 1) {
    f(int64_t{0}, n);
    return;
  }
  nthreads = static_cast<int>(std::min<int64_t>(nthreads, n));
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads)
  {
    const int t = omp_get_thread_num();
    const int nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) f(begin, end);
  }
#else
  f(int64_t{0}, n);
#endif
}

}  // namespace pt
