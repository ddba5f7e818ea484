//===- NcclCommTest.cpp - the NCCL communicator under mpirun --------------===//
//
// Run by ctest under `mpirun -np 1`, `-np 2` and `-np 4` (label mpi) with the
// fake CUDA driver (MOE_CUDA_DRIVER) and the fake NCCL over MPI
// (MOE_NCCL_LIBRARY, fake_nccl.c). Creates the NCCL communicator with an
// MPI bootstrap, the way moe-run does, drives it through the runtime's
// module-facing moe_rt_comm_* functions and checks every received byte.
// The fake driver's device memory is host memory, so the test's buffers
// are plain host vectors.
//
//   moe-nccl-tests                  exchanges: uneven and zero counts,
//                                   several requests in flight
//   moe-nccl-tests wait-forever     every rank waits for an exchange whose
//                                   stream never finishes (with
//                                   FAKE_CUDA_EVENT_PENDING=1): the job must
//                                   abort after the timeout, or on the
//                                   asynchronous error FAKE_NCCL_ASYNC_ERROR
//   moe-nccl-tests expect-error S   creating the communicator must fail
//                                   with a message containing S
//
//===----------------------------------------------------------------------===//

#include "moe/runtime.h"
#include "moe/runtime_mpi.h"
#include "moe/runtime_nccl.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
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
/// zeros.
int32_t count(int from, int to, int seed) {
  return (from * 3 + to * 5 + seed) % 4 == 0 ? 0 : (from + 2 * to + seed) % 5;
}

uint8_t byteOf(int from, int to, int64_t i, int seed) {
  return static_cast<uint8_t>(from * 37 + to * 11 + i * 7 + seed * 101 + 1);
}

struct Exchange {
  int seed;
  int64_t unit;
  std::vector<int32_t> sendCounts, recvCounts;
  std::vector<uint8_t> send, recv;
  int64_t request = -1;
  static constexpr int64_t kGuard = 16;

  Exchange(int seed, int64_t unit) : seed(seed), unit(unit) {
    int64_t recvUnits = 0;
    for (int p = 0; p < size; ++p) {
      sendCounts.push_back(count(rank, p, seed));
      recvCounts.push_back(count(p, rank, seed));
      recvUnits += recvCounts.back();
    }
    for (int p = 0; p < size; ++p)
      for (int64_t i = 0; i < sendCounts[p] * unit; ++i)
        send.push_back(byteOf(rank, p, i, seed));
    // Guard bytes after the receive area catch writes past its end.
    recv.assign(recvUnits * unit + kGuard, 0xAB);
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

  /// ncclSend and ncclRecv calls this exchange makes: one per peer with
  /// data in that direction.
  void calls(long &sends, long &recvs) const {
    for (int p = 0; p < size; ++p) {
      sends += sendCounts[p] > 0;
      recvs += recvCounts[p] > 0;
    }
  }
};

/// The fake NCCL's call counters (fake_nccl.c), through the handle the
/// runtime opened.
struct Counts {
  long groups = 0, sends = 0, recvs = 0;
  void *stream = nullptr;
};

Counts fakeCounts() {
  Counts c;
  // A group of one copies on the device and never loads NCCL.
  if (size == 1)
    return c;
  void *h = dlopen(std::getenv("MOE_NCCL_LIBRARY"), RTLD_NOW | RTLD_NOLOAD);
  EXPECT(h, "the NCCL library is not loaded");
  if (!h)
    return c;
  auto fn = reinterpret_cast<void (*)(long *, long *, long *, void **)>(
      dlsym(h, "fake_nccl_counts"));
  EXPECT(fn, "MOE_NCCL_LIBRARY is not the fake NCCL");
  if (fn)
    fn(&c.groups, &c.sends, &c.recvs, &c.stream);
  dlclose(h);
  return c;
}

void testSingle() {
  for (int64_t unit : {1, 3, 8, 4096}) {
    Counts before = fakeCounts();
    Exchange e(1, unit);
    e.start();
    moe_rt_comm_wait(e.request);
    e.check();
    // One group per exchange, one call per peer and direction with data,
    // on the communicator's own stream.
    Counts after = fakeCounts();
    long sends = 0, recvs = 0;
    if (size > 1)
      e.calls(sends, recvs);
    EXPECT(after.groups == before.groups + (size > 1),
           "%ld groups for one exchange", after.groups - before.groups);
    EXPECT(after.sends - before.sends == sends, "%ld ncclSend, want %ld",
           after.sends - before.sends, sends);
    EXPECT(after.recvs - before.recvs == recvs, "%ld ncclRecv, want %ld",
           after.recvs - before.recvs, recvs);
    EXPECT(sends == 0 || after.stream != nullptr, "ncclSend on stream 0");
  }
}

void testAllZero() {
  std::vector<int32_t> zeros(size, 0);
  Counts before = fakeCounts();
  int64_t r = moe_rt_comm_all_to_all_v_start(size, nullptr, zeros.data(),
                                             nullptr, zeros.data(), 4);
  moe_rt_comm_wait(r);
  Counts after = fakeCounts();
  EXPECT(after.sends == before.sends && after.recvs == before.recvs,
         "an all-zero exchange made NCCL calls");
}

void testOutstanding() {
  // Several requests in flight, waited for in reverse order.
  std::vector<Exchange> ex;
  for (int seed = 0; seed < 6; ++seed)
    ex.emplace_back(seed, 2 + 5 * seed);
  for (Exchange &e : ex)
    e.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (size_t i = ex.size(); i-- > 0;)
    moe_rt_comm_wait(ex[i].request);
  for (Exchange &e : ex)
    e.check();
  // Events are reused: run the same again.
  for (Exchange &e : ex) {
    std::fill(e.recv.begin(), e.recv.end() - Exchange::kGuard, 0);
    e.start();
  }
  for (Exchange &e : ex)
    moe_rt_comm_wait(e.request);
  for (Exchange &e : ex)
    e.check();
}

void broadcast(void *, void *data, size_t bytes, int64_t root) {
  moe_mpi_broadcast(data, bytes, static_cast<int>(root));
}

void abortJob(void *, const char *message) { moe_mpi_abort(message); }

} // namespace

int main(int argc, char **argv) {
  char error[256];
  if (moe_mpi_init(&argc, &argv, "moe-nccl-tests", 0, error, sizeof error)) {
    std::fprintf(stderr, "moe_mpi_init: %s\n", error);
    return 1;
  }
  rank = static_cast<int>(moe_mpi_rank());
  size = static_cast<int>(moe_mpi_size());
  const std::string mode = argc > 1 ? argv[1] : "";

  moe_nccl_bootstrap boot{};
  boot.rank = rank;
  boot.size = size;
  boot.timeout_s = moe_mpi_timeout();
  boot.broadcast = broadcast;
  boot.abort_job = abortJob;
  const moe_communicator *comm = nullptr;
  moe_status st = moe_nccl_communicator_create(&boot, &comm);

  if (mode == "expect-error") {
    const char *want = argc > 2 ? argv[2] : "";
    EXPECT(st != MOE_OK, "creating the communicator succeeded");
    EXPECT(std::strstr(moe_last_error(), want), "the error '%s' lacks '%s'",
           moe_last_error(), want);
    if (st != MOE_OK)
      std::printf("rank %d: %s: %s\n", rank, moe_status_name(st),
                  moe_last_error());
    // No rank may be left in a collective: everyone failed the same way.
    moe_mpi_finalize();
    return failures ? 1 : 0;
  }
  if (st != MOE_OK) {
    std::fprintf(stderr, "rank %d: moe_nccl_communicator_create: %s: %s\n",
                 rank, moe_status_name(st), moe_last_error());
    moe_mpi_abort("cannot create the NCCL communicator");
  }
  if (moe_set_communicator(comm) != MOE_OK) {
    std::fprintf(stderr, "moe_set_communicator: %s\n", moe_last_error());
    return 1;
  }
  EXPECT(moe_rt_comm_rank(size) == rank, "moe_rt_comm_rank");

  if (mode == "wait-forever") {
    Exchange e(3, 4);
    e.start();
    moe_rt_comm_wait(e.request);
    std::fprintf(stderr, "rank %d: the wait returned\n", rank);
    return 1;
  }

  testSingle();
  testAllZero();
  testOutstanding();
  moe_set_communicator(nullptr);
  moe_nccl_communicator_destroy(comm);
  moe_mpi_finalize();
  if (failures)
    std::fprintf(stderr, "rank %d: %d checks failed\n", rank, failures);
  else
    std::printf("rank %d of %d: all checks passed\n", rank, size);
  return failures ? 1 : 0;
}
