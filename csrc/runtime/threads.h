// Threads: the count every parallel region uses, and the pool that runs them.
//
// Results never depend on the thread count: kernels partition output rows/tiles
// between chunks and never split a reduction, so 1 and N threads give the same bits.
//
// The pool is our own (not OpenMP), for what services need:
// - fork-safe: a child of fork() starts fresh worker threads on first use (the
//   parent's workers do not exist there; libgomp would wait for them forever);
// - dynamic: a region is cut into chunks that the caller and the workers claim
//   one at a time, so a worker that is preempted or wakes late delays the region
//   by at most the chunk it holds, never by its whole static share;
// - polite: waiting threads spin briefly, then yield the core, then sleep;
// - interruptible: chunks stop being started once the caller's cancellation flag
//   is set (runtime/interrupt.h), and the region throws pt::Interrupted.
#pragma once

#include <cstdint>

namespace pt {

// Cores available to this process: the CPU affinity mask (SMT siblings counted
// once), capped by a cgroup CPU quota (containers: cpu.max or cpu.cfs_quota_us,
// rounded up) when there is one.
int physical_core_count();

// The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or 0 when there is none.
double cgroup_cpu_quota();

// Threads used by parallel regions: PYTRANSFORMER_NUM_THREADS, else
// OMP_NUM_THREADS, else physical_core_count().
int get_num_threads();

// 1 <= n <= kMaxThreads; throws std::invalid_argument otherwise.
void set_num_threads(int n);

constexpr int kMaxThreads = 1024;

// True when parallel regions can run on more than one thread (always, with the pool).
bool multithreaded_build();

// Runs fn(ctx, begin, end) once for each of `chunks` contiguous pieces of [0, n)
// (piece c is [n*c/chunks, n*(c+1)/chunks)), on at most `nthreads` threads, the
// caller included. Chunks go to whichever thread claims them first. Called from
// inside a region, or while another thread's region holds the pool, it runs the
// chunks on the calling thread. An exception thrown by fn stops the region and is
// rethrown on the caller; a set cancellation flag stops it with pt::Interrupted.
using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);
void parallel_chunks(int64_t n, int64_t chunks, int nthreads, RangeFn fn, void* ctx);

// Most chunks a region may have.
constexpr int64_t kMaxChunks = 1 << 15;

}  // namespace pt
