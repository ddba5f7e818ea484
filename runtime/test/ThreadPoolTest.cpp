//===- ThreadPoolTest.cpp - moe_rt_parallel_for ---------------------------===//

#include "moe/runtime.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace {

// Counts how often every index is visited.
struct Coverage {
  std::vector<std::atomic<int>> hits;
  std::atomic<int64_t> calls{0};
  explicit Coverage(int64_t n) : hits(n) {}
  static void body(void *ctx, int64_t begin, int64_t end) {
    auto *c = static_cast<Coverage *>(ctx);
    EXPECT_LT(begin, end);
    c->calls++;
    for (int64_t i = begin; i < end; ++i)
      c->hits[i]++;
  }
  void expectExactlyOnce() {
    for (size_t i = 0; i < hits.size(); ++i)
      ASSERT_EQ(hits[i].load(), 1) << "index " << i;
  }
};

class ThreadPool : public testing::Test {
protected:
  void TearDown() override { ASSERT_EQ(moe_set_num_threads(0), MOE_OK); }
};

TEST_F(ThreadPool, CoversRangeExactlyOnce) {
  for (int64_t threads : {1, 2, 3, 8}) {
    ASSERT_EQ(moe_set_num_threads(threads), MOE_OK);
    EXPECT_EQ(moe_rt_num_threads(), threads);
    EXPECT_EQ(moe_get_num_threads(), threads);
    for (int64_t n : {1, 2, 7, 64, 1001}) {
      Coverage c(n);
      moe_rt_parallel_for(n, Coverage::body, &c);
      c.expectExactlyOnce();
    }
  }
}

// Claims shrink towards the end of the range (guided chunks), down to one
// iteration, so that threads finish within about one iteration of each
// other even where the last iterations cost the most (a layer's shared
// experts' slices after its routed experts); and the first claims are
// large, so that the body is called a few dozen times, not once per
// iteration.
TEST_F(ThreadPool, ChunksShrinkTowardsTheEnd) {
  ASSERT_EQ(moe_set_num_threads(2), MOE_OK);
  struct Chunks {
    std::mutex mu;
    std::vector<std::pair<int64_t, int64_t>> ranges;
    static void body(void *ctx, int64_t begin, int64_t end) {
      auto *c = static_cast<Chunks *>(ctx);
      std::lock_guard<std::mutex> lock(c->mu);
      c->ranges.push_back({begin, end});
    }
  } chunks;
  const int64_t n = 240;
  moe_rt_parallel_for(n, Chunks::body, &chunks);
  std::sort(chunks.ranges.begin(), chunks.ranges.end());
  ASSERT_FALSE(chunks.ranges.empty());
  EXPECT_EQ(chunks.ranges.front().first, 0);
  EXPECT_EQ(chunks.ranges.back().second, n);
  for (size_t i = 1; i < chunks.ranges.size(); ++i) {
    auto [begin, end] = chunks.ranges[i];
    auto [previousBegin, previousEnd] = chunks.ranges[i - 1];
    EXPECT_EQ(begin, previousEnd);
    EXPECT_LE(end - begin, previousEnd - previousBegin) << "chunk " << i;
  }
  EXPECT_EQ(chunks.ranges.back().second - chunks.ranges.back().first, 1);
  EXPECT_GE(chunks.ranges.front().second, n / 8);
  EXPECT_LE(chunks.ranges.size(), 32u);
}

TEST_F(ThreadPool, EmptyRangeCallsNothing) {
  Coverage c(0);
  moe_rt_parallel_for(0, Coverage::body, &c);
  moe_rt_parallel_for(-5, Coverage::body, &c);
  moe_rt_parallel_for(10, nullptr, &c); // ignored, no crash
  EXPECT_EQ(c.calls.load(), 0);
}

TEST_F(ThreadPool, UsesSeveralThreads) {
  ASSERT_EQ(moe_set_num_threads(4), MOE_OK);
  struct Ctx {
    std::atomic<int> inside{0}, maxInside{0};
  } ctx;
  // Each chunk waits a little so that chunks overlap in time when the pool
  // works; the loop must finish either way.
  moe_rt_parallel_for(
      64,
      [](void *p, int64_t, int64_t) {
        auto *c = static_cast<Ctx *>(p);
        int now = ++c->inside;
        int prev = c->maxInside.load();
        while (now > prev && !c->maxInside.compare_exchange_weak(prev, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        --c->inside;
      },
      &ctx);
  EXPECT_GE(ctx.maxInside.load(), 2);
}

// The caller spins for the workers' last chunks and then sleeps: both ways
// it returns only once every chunk has finished. Chunks of the worker
// threads that outlast the spin (a few ms) make the caller sleep; many
// short loops back to back exercise the spinning hand-over.
TEST_F(ThreadPool, ReturnsAfterTheLastChunkEnds) {
  ASSERT_EQ(moe_set_num_threads(2), MOE_OK);
  struct Ctx {
    std::thread::id caller = std::this_thread::get_id();
    std::atomic<int> done{0}, byWorkers{0};
  } ctx;
  for (int loop = 0; loop < 20; ++loop) {
    ctx.done = 0;
    // The caller's chunks take 1 ms, so that the worker claims some, and
    // the worker's 3 ms, so that they end after the caller's.
    moe_rt_parallel_for(
        8,
        [](void *p, int64_t begin, int64_t end) {
          auto *c = static_cast<Ctx *>(p);
          bool worker = std::this_thread::get_id() != c->caller;
          std::this_thread::sleep_for(std::chrono::milliseconds(worker ? 3 : 1));
          c->byWorkers += worker;
          c->done += static_cast<int>(end - begin);
        },
        &ctx);
    ASSERT_EQ(ctx.done.load(), 8) << "loop " << loop;
  }
  EXPECT_GT(ctx.byWorkers.load(), 0);
  for (int loop = 0; loop < 20000; ++loop) {
    Coverage c(1 + loop % 9);
    moe_rt_parallel_for(1 + loop % 9, Coverage::body, &c);
    c.expectExactlyOnce();
  }
}

// A body that starts another loop: the inner loop runs serially on the
// calling thread and everything completes.
struct Nested {
  std::vector<std::atomic<int>> hits;
  Nested() : hits(40 * 30) {}
  static void inner(void *ctx, int64_t begin, int64_t end) {
    auto *pair = static_cast<std::pair<Nested *, int64_t> *>(ctx);
    for (int64_t j = begin; j < end; ++j)
      pair->first->hits[pair->second * 30 + j]++;
  }
  static void outer(void *ctx, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      std::pair<Nested *, int64_t> p(static_cast<Nested *>(ctx), i);
      moe_rt_parallel_for(30, inner, &p);
      // Resizing from inside a loop is refused rather than deadlocking.
      EXPECT_EQ(moe_set_num_threads(2), MOE_INVALID_ARGUMENT);
    }
  }
};

TEST_F(ThreadPool, NestedCallsRunSerially) {
  ASSERT_EQ(moe_set_num_threads(4), MOE_OK);
  Nested n;
  moe_rt_parallel_for(40, Nested::outer, &n);
  for (auto &h : n.hits)
    ASSERT_EQ(h.load(), 1);
  EXPECT_EQ(moe_rt_num_threads(), 4);
}

TEST_F(ThreadPool, ConcurrentCallersDoNotDeadlock) {
  ASSERT_EQ(moe_set_num_threads(3), MOE_OK);
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep) {
        Coverage c(97);
        moe_rt_parallel_for(97, Coverage::body, &c);
        for (auto &h : c.hits)
          if (h.load() != 1)
            failures++;
      }
    });
  for (auto &t : callers)
    t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(ThreadPool, DefaultComesFromEnvironment) {
  setenv("MOE_NUM_THREADS", "3", 1);
  ASSERT_EQ(moe_set_num_threads(0), MOE_OK);
  EXPECT_EQ(moe_rt_num_threads(), 3);
  setenv("MOE_NUM_THREADS", "zero", 1); // invalid: hardware default
  ASSERT_EQ(moe_set_num_threads(0), MOE_OK);
  EXPECT_EQ(moe_rt_num_threads(),
            std::max<int64_t>(1, std::thread::hardware_concurrency()));
  unsetenv("MOE_NUM_THREADS");
  ASSERT_EQ(moe_set_num_threads(100000), MOE_OK);
  EXPECT_EQ(moe_rt_num_threads(), 1024);
}

} // namespace
