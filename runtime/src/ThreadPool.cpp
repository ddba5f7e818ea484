//===- ThreadPool.cpp - the runtime's worker pool -------------------------===//

#include "ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace moe::rt {

namespace {

constexpr int64_t kMaxThreads = 1024;
// Guided chunks: each claim takes the unclaimed iterations over this many
// times the threads (at least one), so that the first claims are large
// (few claims, each a call of the loop body) and the last ones small, and a
// loop whose iterations differ in cost (experts with different row counts,
// a layer's shared experts' slices after its routed experts) still ends
// with the threads within about one iteration of each other.
constexpr int64_t kGuidedDivisor = 2;
// Workers spin this many times before sleeping on the condition variable:
// a compiled layer issues several loops back to back and a futex wake-up
// costs more than a short spin.
constexpr int kSpinIterations = 2000;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// True on worker threads always and on a caller thread while it takes part
// in its own loop: a moe_rt_parallel_for from such a thread runs serially.
thread_local bool tlsInLoop = false;

struct Job {
  LoopBody body;
  void *ctx;
  int64_t n;
  // Iterations left are divided by this for the next claim.
  int64_t divisor;
  std::atomic<int64_t> next{0};

  void run() {
    int64_t begin = next.load(std::memory_order_relaxed);
    while (begin < n) {
      int64_t end = begin + std::max<int64_t>(1, (n - begin) / divisor);
      // On failure `begin` is what another thread has claimed up to.
      if (next.compare_exchange_weak(begin, end, std::memory_order_relaxed)) {
        body(ctx, begin, end);
        begin = next.load(std::memory_order_relaxed);
      }
    }
  }
};

class Pool {
public:
  ~Pool() { stopWorkers(); }

  int64_t size() {
    int64_t n = size_.load(std::memory_order_acquire);
    if (n > 0)
      return n;
    // First use: settle the default without starting threads yet.
    std::lock_guard<std::mutex> lock(submit_);
    if (size_.load() == 0)
      size_.store(defaultNumThreads(), std::memory_order_release);
    return size_.load();
  }

  bool resize(int64_t n) {
    if (tlsInLoop)
      return false;
    if (n <= 0)
      n = defaultNumThreads();
    n = std::min(n, kMaxThreads);
    // Waits for a running loop to finish; loops that start meanwhile find
    // the pool busy and run serially.
    std::lock_guard<std::mutex> lock(submit_);
    stopWorkers();
    size_.store(n, std::memory_order_release);
    return true;
  }

  void parallelFor(int64_t n, LoopBody body, void *ctx) {
    if (n <= 0)
      return;
    int64_t threads = size();
    if (threads <= 1 || n == 1 || tlsInLoop) {
      body(ctx, 0, n);
      return;
    }
    std::unique_lock<std::mutex> submit(submit_, std::try_to_lock);
    if (!submit.owns_lock()) {
      // Another thread's loop holds the pool; waiting could deadlock if
      // that loop waits on us, so do the work here.
      body(ctx, 0, n);
      return;
    }
    try {
      ensureWorkers(threads);
    } catch (const std::exception &) {
      // Could not start threads (resource limits): still do the work, and
      // never let an exception reach the module's C code.
      stopWorkers();
      submit.unlock();
      body(ctx, 0, n);
      return;
    }

    Job job;
    job.body = body;
    job.ctx = ctx;
    job.n = n;
    job.divisor = threads * kGuidedDivisor;

    {
      std::lock_guard<std::mutex> lock(mu_);
      current_ = &job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();

    tlsInLoop = true;
    job.run();
    tlsInLoop = false;

    // Every chunk has been claimed; unpublish the job so late workers skip
    // it, then wait for the workers still inside a chunk. Spinning first:
    // the last chunks usually end within microseconds, while sleeping on
    // the condition variable costs a futex wait and a wake-up of tens of
    // them, paid by every loop (a decode step runs several per layer).
    {
      std::lock_guard<std::mutex> lock(mu_);
      current_ = nullptr;
    }
    for (int i = 0;
         i < kSpinIterations && busy_.load(std::memory_order_acquire) != 0; ++i)
      cpuRelax();
    std::unique_lock<std::mutex> lock(mu_);
    callerWaiting_ = true;
    done_.wait(lock, [&] { return busy_.load(std::memory_order_acquire) == 0; });
    callerWaiting_ = false;
  }

private:
  std::mutex submit_; // one loop on the pool at a time; guards workers_
  std::atomic<int64_t> size_{0};
  std::vector<std::thread> workers_;

  std::mutex mu_; // guards current_, busy_, stop_
  std::condition_variable wake_, done_;
  Job *current_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  // Workers inside the current job; changed under mu_, read by the spinning
  // caller without it.
  std::atomic<int> busy_{0};
  // Whether the caller sleeps on done_ (workers notify only then).
  bool callerWaiting_ = false;
  bool stop_ = false;
  std::atomic<bool> stopFlag_{false}; // mirror of stop_ for spinning

  // Called with submit_ held.
  void ensureWorkers(int64_t threads) {
    if (static_cast<int64_t>(workers_.size()) == threads - 1)
      return;
    stopWorkers();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = false;
      stopFlag_ = false;
    }
    // Workers start from the current generation so that a loop published
    // right after this returns is one they take part in.
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int64_t i = 0; i + 1 < threads; ++i)
      workers_.emplace_back([this, gen] { workerLoop(gen); });
  }

  // Called with submit_ held (or from the destructor).
  void stopWorkers() {
    if (workers_.empty())
      return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      stopFlag_ = true;
    }
    wake_.notify_all();
    for (std::thread &t : workers_)
      t.join();
    workers_.clear();
  }

  void workerLoop(uint64_t seen) {
    tlsInLoop = true;
    while (true) {
      for (int i = 0; i < kSpinIterations &&
                      generation_.load(std::memory_order_acquire) == seen &&
                      !stopFlag_.load(std::memory_order_relaxed);
           ++i)
        cpuRelax();
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] {
        return stop_ || generation_.load(std::memory_order_relaxed) != seen;
      });
      if (stop_)
        return;
      seen = generation_.load(std::memory_order_relaxed);
      Job *job = current_;
      if (!job)
        continue; // woke after that loop had already finished
      busy_.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      job->run();
      lock.lock();
      // Release: the caller that sees zero sees this worker's results.
      if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1 && callerWaiting_)
        done_.notify_all();
    }
  }
};

Pool &pool() {
  static Pool p;
  return p;
}

} // namespace

int64_t defaultNumThreads() {
  if (const char *env = std::getenv("MOE_NUM_THREADS")) {
    char *end = nullptr;
    long long v = std::strtoll(env, &end, 10);
    if (end != env && *end == '\0' && v > 0)
      return std::min<int64_t>(v, kMaxThreads);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return std::min<int64_t>(hw ? hw : 1, kMaxThreads);
}

void parallelFor(int64_t n, LoopBody body, void *ctx) {
  pool().parallelFor(n, body, ctx);
}

int64_t numThreads() { return pool().size(); }

bool setNumThreads(int64_t n) { return pool().resize(n); }

} // namespace moe::rt
