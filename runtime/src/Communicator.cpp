//===- Communicator.cpp - forwarding of moe_rt_comm_* ---------------------===//
//
// The communicator is copied into a process-wide slot. Installing one while
// a function runs is documented as not allowed, so the module-facing calls
// read the slot without a lock on the hot path; a mutex only orders
// installation against itself.
//
//===----------------------------------------------------------------------===//

#include "Communicator.h"

#include "Error.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace moe::rt {

namespace {

std::mutex installMutex;
moe_communicator installed{};
std::atomic<bool> haveCommunicator{false};

// Exchange accounting (moe_comm_get_stats); relaxed: counts only.
std::atomic<int64_t> exchanges{0}, bytesSent{0}, bytesReceived{0};

// Compiled code cannot see an error, so a misuse of the ABI ends the
// process with a message rather than corrupting memory or hanging.
[[noreturn]] void fatal(const std::string &msg) {
  std::fprintf(stderr, "moe runtime: fatal: %s\n", msg.c_str());
  std::fflush(stderr);
  std::abort();
}

const moe_communicator &communicatorFor(const char *what, int64_t ranks) {
  if (!haveCommunicator.load(std::memory_order_acquire))
    fatal(std::string(what) + " called for " + std::to_string(ranks) +
          " ranks but no communicator is installed (moe_set_communicator)");
  if (installed.size != ranks)
    fatal(std::string(what) + " called for " + std::to_string(ranks) +
          " ranks but the communicator has " + std::to_string(installed.size));
  return installed;
}

} // namespace

void setCommunicator(const moe_communicator *comm) {
  std::lock_guard<std::mutex> lock(installMutex);
  if (!comm) {
    haveCommunicator.store(false, std::memory_order_release);
    installed = moe_communicator{};
    return;
  }
  if (comm->size < 1)
    fail(MOE_INVALID_ARGUMENT,
         "communicator size must be >= 1, not " + std::to_string(comm->size));
  if (comm->rank < 0 || comm->rank >= comm->size)
    fail(MOE_INVALID_ARGUMENT,
         "communicator rank " + std::to_string(comm->rank) +
             " is outside [0, " + std::to_string(comm->size) + ")");
  if (!comm->all_to_all_v_start || !comm->wait)
    fail(MOE_INVALID_ARGUMENT,
         "communicator function pointers must not be NULL");
  installed = *comm;
  haveCommunicator.store(true, std::memory_order_release);
}

const moe_communicator *selfCommunicator() {
  // Rank 0 of 1 sends only to itself: the start copies, the wait has
  // nothing left to do.
  static const moe_communicator self{
      nullptr, 0, 1,
      [](void *, const void *send, const int32_t *sendCounts, void *recv,
         const int32_t *, int64_t unitBytes) -> int64_t {
        if (sendCounts[0] > 0)
          std::memmove(recv, send,
                       static_cast<size_t>(sendCounts[0] * unitBytes));
        return 1;
      },
      [](void *, int64_t) {}};
  return &self;
}

int64_t communicatorSize() {
  return haveCommunicator.load(std::memory_order_acquire) ? installed.size : 0;
}

void checkCommunicatorFor(const FunctionSpec &fn) {
  if (!fn.isExpertParallel())
    return;
  const int64_t want = fn.expertParallel.ranks;
  const int64_t have = communicatorSize();
  if (have == want)
    return;
  std::string p = std::to_string(want);
  fail(MOE_UNAVAILABLE,
       "function '" + fn.name + "' was compiled for --expert-parallel=" + p +
           " but " +
           (have == 0 ? std::string("no communicator is installed")
                      : "the communicator has " + std::to_string(have) +
                            " rank" + (have == 1 ? "" : "s")) +
           " (run under mpirun -np " + p + ")");
}

} // namespace moe::rt

using namespace moe::rt;

extern "C" {

int64_t moe_rt_comm_rank(int64_t ranks) {
  return communicatorFor("moe_rt_comm_rank", ranks).rank;
}

int64_t moe_rt_comm_all_to_all_v_start(int64_t ranks, const void *send,
                                       const int32_t *sendCounts, void *recv,
                                       const int32_t *recvCounts,
                                       int64_t unitBytes) {
  const moe_communicator &c =
      communicatorFor("moe_rt_comm_all_to_all_v_start", ranks);
  if (unitBytes < 1)
    fatal("moe_rt_comm_all_to_all_v_start: unit_bytes must be >= 1, not " +
          std::to_string(unitBytes));
  if (!sendCounts || !recvCounts)
    fatal("moe_rt_comm_all_to_all_v_start: NULL counts");
  int64_t sent = 0, received = 0;
  for (int64_t p = 0; p < ranks; ++p)
    if (p != c.rank) {
      sent += int64_t(sendCounts[p]) * unitBytes;
      received += int64_t(recvCounts[p]) * unitBytes;
    }
  exchanges.fetch_add(1, std::memory_order_relaxed);
  bytesSent.fetch_add(sent, std::memory_order_relaxed);
  bytesReceived.fetch_add(received, std::memory_order_relaxed);
  return c.all_to_all_v_start(c.ctx, send, sendCounts, recv, recvCounts,
                              unitBytes);
}

void moe_comm_get_stats(moe_comm_stats *stats) {
  if (!stats)
    return;
  stats->exchanges = exchanges.load(std::memory_order_relaxed);
  stats->bytes_sent = bytesSent.load(std::memory_order_relaxed);
  stats->bytes_received = bytesReceived.load(std::memory_order_relaxed);
}

void moe_comm_reset_stats(void) {
  exchanges.store(0, std::memory_order_relaxed);
  bytesSent.store(0, std::memory_order_relaxed);
  bytesReceived.store(0, std::memory_order_relaxed);
}

void moe_rt_comm_wait(int64_t request) {
  if (!haveCommunicator.load(std::memory_order_acquire))
    fatal("moe_rt_comm_wait called but no communicator is installed");
  installed.wait(installed.ctx, request);
}

} // extern "C"
