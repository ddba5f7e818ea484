//===- MpiCommTest.cpp - libmoe_runtime_mpi.so under mpirun ---------------===//
//
// Run by ctest under `mpirun -np 2` and `-np 4` (label mpi). Drives the
// MPI communicator through the runtime's module-facing moe_rt_comm_*
// functions, the way a compiled module does, and checks every received byte.
//
//   moe-mpi-tests           all-to-all-v and launcher-collective checks
//   moe-mpi-tests timeout   rank 0 waits for a collective that rank 1
//                           never joins: must abort with the timeout message
//
//===----------------------------------------------------------------------===//

#include "moe/runtime.h"
#include "moe/runtime_mpi.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int failures = 0;
int rank = 0, size = 1;

#define EXPECT(cond, ...)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      ++failures;                                                              \
      std::fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", rank,         \
                   __FILE__, __LINE__, #cond);                                 \
      std::fprintf(stderr, __VA_ARGS__);                                       \
      std::fprintf(stderr, "\n");                                              \
    }                                                                          \
  } while (0)

/// Units rank `from` sends to rank `to` in pattern `seed`: uneven, with
/// zeros (seed 0 gives rank 0 nothing to send to rank 1, for example).
int32_t count(int from, int to, int seed) {
  return (from * 3 + to * 5 + seed) % 4 == 0 ? 0 : (from + 2 * to + seed) % 5;
}

uint8_t byteOf(int from, int to, int64_t i, int seed) {
  return static_cast<uint8_t>(from * 37 + to * 11 + i * 7 + seed * 101 + 1);
}

/// One all-to-all-v exchange: buffers, counts, and its check.
struct Exchange {
  int seed;
  int64_t unit;
  std::vector<int32_t> sendCounts, recvCounts;
  std::vector<uint8_t> send, recv;
  int64_t request = -1;
  static constexpr int64_t kGuard = 16;

  Exchange(int seed, int64_t unit) : seed(seed), unit(unit) {
    int64_t sendUnits = 0, recvUnits = 0;
    for (int p = 0; p < size; ++p) {
      sendCounts.push_back(count(rank, p, seed));
      recvCounts.push_back(count(p, rank, seed));
      sendUnits += sendCounts.back();
      recvUnits += recvCounts.back();
    }
    int64_t at = 0;
    for (int p = 0; p < size; ++p)
      for (int64_t i = 0; i < sendCounts[p] * unit; ++i, ++at)
        send.push_back(byteOf(rank, p, i, seed));
    (void)at;
    // Guard bytes after the receive area catch writes past its end.
    recv.assign(recvUnits * unit + kGuard, 0xAB);
    (void)sendUnits;
  }

  void start() {
    request =
        moe_rt_comm_all_to_all_v_start(size, send.data(), sendCounts.data(),
                                       recv.data(), recvCounts.data(), unit);
  }

  void check() {
    int64_t at = 0;
    for (int p = 0; p < size; ++p)
      for (int64_t i = 0; i < recvCounts[p] * unit; ++i, ++at)
        EXPECT(recv[at] == byteOf(p, rank, i, seed),
               "seed %d unit %lld: byte %lld from rank %d is %d, want %d", seed,
               (long long)unit, (long long)i, p, recv[at],
               byteOf(p, rank, i, seed));
    for (int64_t g = 0; g < kGuard; ++g)
      EXPECT(recv[at + g] == 0xAB, "seed %d: guard byte %lld overwritten", seed,
             (long long)g);
  }
};

void testSingle() {
  for (int64_t unit : {1, 3, 8, 4096}) {
    Exchange e(1, unit);
    e.start();
    moe_rt_comm_wait(e.request);
    e.check();
  }
}

void testAllZero() {
  std::vector<int32_t> zeros(size, 0);
  int64_t r = moe_rt_comm_all_to_all_v_start(size, nullptr, zeros.data(),
                                             nullptr, zeros.data(), 4);
  moe_rt_comm_wait(r);
}

void testOutstanding() {
  // Several requests in flight at once, waited for in reverse order, with
  // the caller computing (no MPI calls) in between.
  std::vector<Exchange> ex;
  for (int seed = 0; seed < 5; ++seed)
    ex.emplace_back(seed, 2 + seed);
  for (Exchange &e : ex)
    e.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (size_t i = ex.size(); i-- > 0;)
    moe_rt_comm_wait(ex[i].request);
  for (Exchange &e : ex)
    e.check();
}

void testHelpers() {
  double m = moe_mpi_allreduce_max(static_cast<double>(rank) * 1.5);
  EXPECT(m == (size - 1) * 1.5, "allreduce max %g", m);
  moe_mpi_barrier();
  // Rank p contributes p + 1 rows of 3 bytes, rank 1 none.
  int64_t rows = rank == 1 ? 0 : rank + 1;
  std::vector<uint8_t> send(rows * 3);
  for (int64_t i = 0; i < rows * 3; ++i)
    send[i] = static_cast<uint8_t>(rank * 50 + i);
  int64_t total = 0;
  for (int p = 0; p < size; ++p)
    total += p == 1 ? 0 : p + 1;
  std::vector<uint8_t> recv(rank == 0 ? total * 3 : 0);
  int64_t got = moe_mpi_gather_rows(send.data(), rows, 3, recv.data(), total);
  if (rank != 0) {
    EXPECT(got == rows, "gather returned %lld", (long long)got);
    return;
  }
  EXPECT(got == total, "gather returned %lld, want %lld", (long long)got,
         (long long)total);
  int64_t at = 0;
  for (int p = 0; p < size; ++p)
    for (int64_t i = 0; i < (p == 1 ? 0 : p + 1) * 3; ++i, ++at)
      EXPECT(recv[at] == static_cast<uint8_t>(p * 50 + i),
             "gathered byte %lld of rank %d", (long long)i, p);
}

} // namespace

int main(int argc, char **argv) {
  char error[256];
  if (moe_mpi_init(&argc, &argv, "moe-mpi-tests", 0, error, sizeof error)) {
    std::fprintf(stderr, "moe_mpi_init: %s\n", error);
    return 1;
  }
  rank = static_cast<int>(moe_mpi_rank());
  size = static_cast<int>(moe_mpi_size());
  if (moe_set_communicator(moe_mpi_communicator()) != MOE_OK) {
    std::fprintf(stderr, "moe_set_communicator: %s\n", moe_last_error());
    return 1;
  }
  EXPECT(moe_rt_comm_rank(size) == rank, "moe_rt_comm_rank");

  if (argc > 1 && std::strcmp(argv[1], "timeout") == 0) {
    // Rank 0 waits for an exchange that the others never start: the
    // library must abort the job after MOE_COMM_TIMEOUT seconds.
    if (rank == 0) {
      Exchange e(3, 4);
      e.start();
      moe_rt_comm_wait(e.request);
      std::fprintf(stderr, "rank 0: the wait returned without its peers\n");
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::seconds(120));
    return 1;
  }

  testSingle();
  testAllZero();
  testOutstanding();
  testHelpers();
  moe_set_communicator(nullptr);
  moe_mpi_finalize();
  if (failures)
    std::fprintf(stderr, "rank %d: %d checks failed\n", rank, failures);
  else
    std::printf("rank %d of %d: all checks passed\n", rank, size);
  return failures ? 1 : 0;
}
