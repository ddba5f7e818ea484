//===- NcclCommunicator.cpp - moe_communicator over NCCL ------------------===//
//
// The all-to-all-v of a cuda module, on NCCL (moe/runtime_nccl.h). NCCL is
// opened with dlopen like the driver (CudaDriver.cpp), so that one
// libmoe_runtime.so serves machines with and without it and the tests can
// substitute a fake.
//
// Every exchange is enqueued by the calling thread: one ncclGroupStart, a
// ncclSend and a ncclRecv per peer with data, ncclGroupEnd, all on the
// communicator's own non-blocking stream, then an event recorded behind
// them. NCCL copies the counts at enqueue time, which is why the contract
// may keep them on the host and why nothing needs to outlive `start` but
// the event. `wait` polls the event rather than synchronising on it, so
// that it can give up after the timeout and notice asynchronous NCCL
// errors (a peer that died), which would otherwise hang the stream and the
// host with it.
//
//===----------------------------------------------------------------------===//

#include "NcclCommunicator.h"

#include "CudaDriver.h"
#include "Error.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using namespace moe::rt;
using namespace moe::rt::cuda;

namespace {

//===----------------------------------------------------------------------===//
// The NCCL API, loaded at run time
//===----------------------------------------------------------------------===//

// The few NCCL types the communicator needs, declared here so that the
// runtime builds without the CUDA toolkit. The values mirror NCCL 2.x's
// nccl.h (checked against /usr/local/cuda/include/nccl.h, NCCL 2.28), which
// has kept them stable since 2.0: ncclResult_t and ncclDataType_t are C
// enums (int), ncclUniqueId is 128 opaque bytes passed by value, and
// cudaStream_t is the driver's CUstream.
using ncclResult_t = int;
constexpr ncclResult_t ncclSuccess = 0;
constexpr ncclResult_t ncclInProgress = 7;
using ncclDataType_t = int;
constexpr ncclDataType_t ncclUint8 = 1;
using ncclComm_t = struct ncclComm *;
constexpr size_t kNcclUniqueIdBytes = 128; // NCCL_UNIQUE_ID_BYTES
struct ncclUniqueId {
  char internal[kNcclUniqueIdBytes];
};

struct Nccl {
  ncclResult_t (*ncclGetUniqueId)(ncclUniqueId *);
  ncclResult_t (*ncclCommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*ncclCommDestroy)(ncclComm_t);
  ncclResult_t (*ncclCommAbort)(ncclComm_t);
  ncclResult_t (*ncclCommGetAsyncError)(ncclComm_t, ncclResult_t *);
  const char *(*ncclGetErrorString)(ncclResult_t);
  ncclResult_t (*ncclGroupStart)();
  ncclResult_t (*ncclGroupEnd)();
  ncclResult_t (*ncclSend)(const void *, size_t, ncclDataType_t, int,
                           ncclComm_t, CUstream);
  ncclResult_t (*ncclRecv)(void *, size_t, ncclDataType_t, int, ncclComm_t,
                           CUstream);

  /// ncclGetErrorString, or the number for a code it does not know.
  std::string describe(ncclResult_t r) const {
    const char *text = ncclGetErrorString(r);
    return text ? text : "ncclResult_t " + std::to_string(r);
  }
  /// "ncclSend failed: unhandled system error (...)".
  std::string failed(const char *call, ncclResult_t r) const {
    return std::string(call) + " failed: " + describe(r);
  }
};

struct NcclState {
  Nccl nccl{};
  bool ok = false;
  std::string problem;
};

template <typename Fn> bool resolve(void *lib, Fn &slot, const char *name) {
  void *sym = dlsym(lib, name);
  slot = reinterpret_cast<Fn>(sym);
  return sym != nullptr;
}

void loadNccl(NcclState &s) {
  const char *override = std::getenv("MOE_NCCL_LIBRARY");
  bool overridden = override && *override;
  std::string path = overridden ? override : "libnccl.so.2";
  std::string what = overridden ? path + " (MOE_NCCL_LIBRARY)" : path;
  dlerror();
  // Never closed: NCCL keeps threads of its own running.
  void *lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char *err = dlerror();
    s.problem = "cannot load NCCL (" + what +
                "): " + (err ? err : "unknown error") +
                "; set MOE_NCCL_LIBRARY to the path of libnccl.so.2";
    return;
  }
  Nccl &n = s.nccl;
  std::string missing;
  auto need = [&](bool found, const char *name) {
    if (!found)
      missing += (missing.empty() ? "" : ", ") + std::string(name);
  };
#define MOE_NCCL(name) need(resolve(lib, n.name, #name), #name)
  MOE_NCCL(ncclGetUniqueId);
  MOE_NCCL(ncclCommInitRank);
  MOE_NCCL(ncclCommDestroy);
  MOE_NCCL(ncclCommAbort);
  MOE_NCCL(ncclCommGetAsyncError);
  MOE_NCCL(ncclGetErrorString);
  MOE_NCCL(ncclGroupStart);
  MOE_NCCL(ncclGroupEnd);
  MOE_NCCL(ncclSend);
  MOE_NCCL(ncclRecv);
#undef MOE_NCCL
  if (!missing.empty()) {
    s.problem = "cannot load NCCL (" + what + "): it lacks " + missing +
                " (NCCL 2.7 or later is needed); set MOE_NCCL_LIBRARY";
    return;
  }
  s.ok = true;
}

/// NCCL, loaded on the first call; the outcome is decided once per process.
const Nccl &requireNccl() {
  static NcclState state;
  static std::once_flag once;
  std::call_once(once, [] { loadNccl(state); });
  if (!state.ok)
    fail(MOE_UNAVAILABLE, state.problem);
  return state.nccl;
}

//===----------------------------------------------------------------------===//
// The communicator
//===----------------------------------------------------------------------===//

struct NcclCommunicator {
  moe_communicator comm{};
  moe_nccl_bootstrap boot{};
  const Driver *driver = nullptr;
  const Device *device = nullptr;
  const Nccl *nccl = nullptr; // null for a group of one
  ncclComm_t handle = nullptr;
  CUstream stream = nullptr;

  // start() may be called from several threads; NCCL requires the same
  // order of grouped calls on every rank, which one lock per process gives
  // as long as the module's own order is deterministic.
  std::mutex mutex;
  std::unordered_map<int64_t, CUevent> requests;
  std::vector<CUevent> idleEvents; // recorded and waited for: reusable
  int64_t nextId = 1;

  /// Ends the job through the bootstrap: a collective cannot fail on one
  /// rank without leaving the others waiting for it.
  [[noreturn]] void abortJob(const std::string &message) {
    boot.abort_job(boot.ctx, ("NCCL all-to-all-v " + message).c_str());
    // abort_job must not return; in case it does anyway.
    std::fprintf(stderr, "moe runtime: rank %lld: NCCL all-to-all-v %s\n",
                 static_cast<long long>(boot.rank), message.c_str());
    std::fflush(stderr);
    std::abort();
  }

  /// Aborts the NCCL communicator (so that its kernels stop waiting for a
  /// dead peer) and then the job.
  [[noreturn]] void abortAll(const std::string &message) {
    if (handle)
      (void)nccl->ncclCommAbort(handle);
    handle = nullptr;
    abortJob(message);
  }

  void checkCu(CUresult r, const char *call) {
    if (r != CUDA_SUCCESS)
      abortAll("failed: " + callFailed(call, r));
  }

  void checkNccl(ncclResult_t r, const char *call, const std::string &detail) {
    if (r != ncclSuccess)
      abortAll("failed: " + nccl->failed(call, r) + detail);
  }

  int64_t start(const void *send, const int32_t *sendCounts, void *recv,
                const int32_t *recvCounts, int64_t unitBytes) {
    const int64_t size = comm.size;
    if (unitBytes < 1)
      abortJob("failed: unit_bytes must be >= 1, not " +
               std::to_string(unitBytes));
    auto offsets = [&](const int32_t *counts, const char *what) {
      std::vector<size_t> at(static_cast<size_t>(size) + 1, 0);
      for (int64_t p = 0; p < size; ++p) {
        if (counts[p] < 0)
          abortJob(std::string("failed: ") + what + "_counts[" +
                   std::to_string(p) + "] is negative (" +
                   std::to_string(counts[p]) + ")");
        at[p + 1] = at[p] + static_cast<size_t>(counts[p]);
      }
      return at;
    };
    std::vector<size_t> sendAt = offsets(sendCounts, "send");
    std::vector<size_t> recvAt = offsets(recvCounts, "recv");
    const size_t unit = static_cast<size_t>(unitBytes);
    auto sendPtr = [&](int64_t p) {
      return static_cast<const char *>(send) + sendAt[p] * unit;
    };
    auto recvPtr = [&](int64_t p) {
      return static_cast<char *>(recv) + recvAt[p] * unit;
    };

    std::lock_guard<std::mutex> lock(mutex);
    try {
      ContextScope scope(*device);
      CUevent event = nullptr;
      if (!idleEvents.empty()) {
        event = idleEvents.back();
        idleEvents.pop_back();
      } else {
        checkCu(driver->cuEventCreate(&event, CU_EVENT_DISABLE_TIMING),
                "cuEventCreate");
      }
      if (!nccl) {
        // A group of one: the exchange is a copy to itself.
        if (size_t bytes = sendAt[1] * unit)
          checkCu(driver->cuMemcpyAsync(
                      static_cast<CUdeviceptr>(
                          reinterpret_cast<uintptr_t>(recvPtr(0))),
                      static_cast<CUdeviceptr>(
                          reinterpret_cast<uintptr_t>(sendPtr(0))),
                      bytes, stream),
                  "cuMemcpyAsync");
      } else {
        // Peers without data get no call: both sides agree on a zero count,
        // and NCCL then needs no connection to that peer at all.
        checkNccl(nccl->ncclGroupStart(), "ncclGroupStart", "");
        for (int64_t p = 0; p < size; ++p) {
          const int peer = static_cast<int>(p);
          if (size_t n = static_cast<size_t>(sendCounts[p]) * unit)
            checkNccl(
                nccl->ncclSend(sendPtr(p), n, ncclUint8, peer, handle, stream),
                "ncclSend", " (to rank " + std::to_string(p) + ")");
          if (size_t n = static_cast<size_t>(recvCounts[p]) * unit)
            checkNccl(
                nccl->ncclRecv(recvPtr(p), n, ncclUint8, peer, handle, stream),
                "ncclRecv", " (from rank " + std::to_string(p) + ")");
        }
        checkNccl(nccl->ncclGroupEnd(), "ncclGroupEnd", "");
      }
      checkCu(driver->cuEventRecord(event, stream), "cuEventRecord");
      int64_t id = nextId++;
      requests.emplace(id, event);
      return id;
    } catch (const Error &e) {
      abortAll(std::string("failed: ") + e.what());
    }
  }

  void wait(int64_t id) {
    CUevent event = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = requests.find(id);
      if (it == requests.end())
        abortJob("failed: wait for unknown request " + std::to_string(id) +
                 " (never started, or waited for already)");
      event = it->second;
      requests.erase(it);
    }
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::duration<double>(boot.timeout_s));
    try {
      ContextScope scope(*device);
      for (int round = 0;; ++round) {
        CUresult r = driver->cuEventQuery(event);
        if (r == CUDA_SUCCESS)
          break;
        if (r != CUDA_ERROR_NOT_READY)
          abortAll("failed: " + callFailed("cuEventQuery", r));
        if (nccl) {
          std::lock_guard<std::mutex> lock(mutex);
          ncclResult_t async = ncclSuccess;
          ncclResult_t q = nccl->ncclCommGetAsyncError(handle, &async);
          if (q != ncclSuccess)
            abortAll("failed: " + nccl->failed("ncclCommGetAsyncError", q));
          if (async != ncclSuccess && async != ncclInProgress)
            abortAll("failed: " + nccl->describe(async) +
                     " (reported by ncclCommGetAsyncError; a peer rank may "
                     "have failed)");
        }
        if (std::chrono::steady_clock::now() > deadline) {
          char secs[32];
          std::snprintf(secs, sizeof secs, "%g", boot.timeout_s);
          std::lock_guard<std::mutex> lock(mutex);
          abortAll(std::string("did not complete within ") + secs +
                   " s (a peer rank failed or is stuck)");
        }
        // Spin briefly (exchanges of small layers take microseconds), then
        // back off: the host thread has nothing else to do but should not
        // steal a core from the other ranks' progress threads.
        if (round < 64)
          std::this_thread::yield();
        else
          std::this_thread::sleep_for(
              std::chrono::microseconds(std::min(round - 64, 200)));
      }
    } catch (const Error &e) {
      abortAll(std::string("failed: ") + e.what());
    }
    std::lock_guard<std::mutex> lock(mutex);
    idleEvents.push_back(event);
  }

  /// Releases everything; errors are ignored, there is nobody to tell.
  void destroy() {
    try {
      ContextScope scope(*device);
      (void)driver->cuStreamSynchronize(stream);
      if (handle)
        (void)nccl->ncclCommDestroy(handle);
      for (auto &[id, event] : requests)
        (void)driver->cuEventDestroy(event);
      for (CUevent event : idleEvents)
        (void)driver->cuEventDestroy(event);
      (void)driver->cuStreamDestroy(stream);
    } catch (const Error &) {
    }
    handle = nullptr;
  }
};

int64_t ncclStart(void *ctx, const void *send, const int32_t *sendCounts,
                  void *recv, const int32_t *recvCounts, int64_t unitBytes) {
  return static_cast<NcclCommunicator *>(ctx)->start(send, sendCounts, recv,
                                                     recvCounts, unitBytes);
}

void ncclWait(void *ctx, int64_t request) {
  static_cast<NcclCommunicator *>(ctx)->wait(request);
}

} // namespace

const moe_communicator *
moe::rt::createNcclCommunicator(const moe_nccl_bootstrap &b) {
  if (b.size < 1 || b.size > std::numeric_limits<int>::max())
    fail(MOE_INVALID_ARGUMENT,
         "NCCL bootstrap: size must be in [1, INT_MAX], not " +
             std::to_string(b.size));
  if (b.rank < 0 || b.rank >= b.size)
    fail(MOE_INVALID_ARGUMENT, "NCCL bootstrap: rank " +
                                   std::to_string(b.rank) + " is outside [0, " +
                                   std::to_string(b.size) + ")");
  if (!(b.timeout_s > 0))
    fail(MOE_INVALID_ARGUMENT, "NCCL bootstrap: the timeout must be > 0 s");
  if (!b.broadcast || !b.abort_job)
    fail(MOE_INVALID_ARGUMENT,
         "NCCL bootstrap: function pointers must not be NULL");

  auto c = std::make_unique<NcclCommunicator>();
  c->boot = b;
  c->driver = &requireDriver();
  c->device = &requireDeviceForRank(b.rank);
  if (b.size > 1)
    c->nccl = &requireNccl();
  const Driver &d = *c->driver;
  const Nccl *n = c->nccl;
  const std::string where = "rank " + std::to_string(b.rank) + " on CUDA " +
                            c->device->description + ": ";

  // NCCL's calls run on the current CUDA context, which must be the
  // runtime's (the buffers of cuda modules live in it).
  ContextScope scope(*c->device);
  if (CUresult r = d.cuStreamCreate(&c->stream, CU_STREAM_NON_BLOCKING);
      r != CUDA_SUCCESS)
    fail(MOE_DEVICE_ERROR, where + callFailed("cuStreamCreate", r));
  auto cleanup = [&] { (void)d.cuStreamDestroy(c->stream); };
  if (n) {
    ncclUniqueId id{};
    if (b.rank == 0)
      if (ncclResult_t r = n->ncclGetUniqueId(&id); r != ncclSuccess) {
        cleanup();
        fail(MOE_DEVICE_ERROR, "NCCL initialisation failed on " + where +
                                   n->failed("ncclGetUniqueId", r));
      }
    b.broadcast(b.ctx, &id, sizeof id, 0);
    if (ncclResult_t r = n->ncclCommInitRank(
            &c->handle, static_cast<int>(b.size), id, static_cast<int>(b.rank));
        r != ncclSuccess) {
      cleanup();
      fail(MOE_DEVICE_ERROR, "NCCL initialisation failed on " + where +
                                 n->failed("ncclCommInitRank", r));
    }
  }
  c->comm.ctx = c.get();
  c->comm.rank = b.rank;
  c->comm.size = b.size;
  c->comm.all_to_all_v_start = ncclStart;
  c->comm.wait = ncclWait;
  return &c.release()->comm;
}

void moe::rt::destroyNcclCommunicator(const moe_communicator *comm) {
  if (!comm)
    return;
  auto *c = static_cast<NcclCommunicator *>(comm->ctx);
  c->destroy();
  delete c;
}
