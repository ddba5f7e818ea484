//===- ThreadPool.h - the runtime's worker pool ------------------*- C++ -*-===//
//
// A persistent pool of N-1 worker threads; the thread that starts a loop is
// the N-th. Compiled modules reach it through moe_rt_parallel_for.
//
// Deadlock freedom: a loop started from inside a loop body (on any pool
// thread) or while another thread's loop occupies the pool runs serially on
// the calling thread instead of waiting for the pool.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_THREADPOOL_H
#define MOE_RUNTIME_THREADPOOL_H

#include <cstdint>

namespace moe::rt {

using LoopBody = void (*)(void *ctx, int64_t begin, int64_t end);

/// Runs `body` over a partition of [0, n).
void parallelFor(int64_t n, LoopBody body, void *ctx);

/// The pool size, counting the caller (>= 1).
int64_t numThreads();

/// Resizes the pool; n <= 0 means the default. Returns false (and changes
/// nothing) when called from inside a loop body.
bool setNumThreads(int64_t n);

/// The default size: $MOE_NUM_THREADS if it is a positive integer, else
/// std::thread::hardware_concurrency() (at least 1).
int64_t defaultNumThreads();

} // namespace moe::rt

#endif // MOE_RUNTIME_THREADPOOL_H
