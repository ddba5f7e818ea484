/*===- fake_nccl.c - the NCCL entry points over MPI, for tests -----------===*
 *
 * Implements the NCCL functions the runtime resolves (runtime/src/
 * NcclCommunicator.cpp) on top of MPI, so that the NCCL communicator runs
 * without a GPU. Loaded through MOE_NCCL_LIBRARY=<this library>, together
 * with the fake CUDA driver (fake_cuda_driver.c), whose "device" memory is
 * host memory: the buffers NCCL is given can be handed to MPI as they are.
 *
 *  - A communicator is a duplicate of MPI_COMM_WORLD; ncclCommInitRank
 *    checks that nranks and rank agree with MPI and that every rank passed
 *    the same unique id (which tests the launcher's broadcast of it).
 *  - ncclSend/ncclRecv inside a group are recorded and run at ncclGroupEnd
 *    (MPI_Isend/MPI_Irecv, then MPI_Waitall), so the data has arrived when
 *    ncclGroupEnd returns; outside a group each runs at once. Only byte
 *    types (ncclInt8/ncclChar, ncclUint8) are accepted, as that is what
 *    the runtime sends.
 *  - FAKE_NCCL_FAIL=NAME[,NAME...] makes those entry points fail with
 *    ncclSystemError (ncclCommInitRank: ncclInvalidUsage).
 *    FAKE_NCCL_ASYNC_ERROR=1 makes ncclCommGetAsyncError report
 *    ncclRemoteError.
 *  - fake_nccl_counts() tells the tests how many groups, sends and receives
 *    ran and which stream the last call used.
 *
 * The types mirror nccl.h (NCCL 2.x); see NcclCommunicator.cpp.
 *
 *===----------------------------------------------------------------------===*/

#include <mpi.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7
} ncclResult_t;

typedef struct {
  char internal[128];
} ncclUniqueId;

struct ncclComm {
  MPI_Comm mpi;
  int rank, size;
};
typedef struct ncclComm *ncclComm_t;

/* One recorded send or receive. */
struct Op {
  int isSend;
  void *buf;
  size_t bytes;
  int peer;
  ncclComm_t comm;
};

static __thread struct Op *tOps;
static __thread size_t tOpCount, tOpCapacity;
static __thread int tGroupDepth;

static long gGroups, gSends, gRecvs;
static void *gLastStream;

static int shouldFail(const char *name) {
  const char *list = getenv("FAKE_NCCL_FAIL");
  size_t n = strlen(name);
  while (list && *list) {
    const char *end = strchr(list, ',');
    size_t len = end ? (size_t)(end - list) : strlen(list);
    if (len == n && strncmp(list, name, n) == 0)
      return 1;
    list = end ? end + 1 : NULL;
  }
  return 0;
}

/*===------------------------ Inspection (tests) --------------------------===*/

EXPORT void fake_nccl_counts(long *groups, long *sends, long *recvs,
                             void **lastStream) {
  *groups = gGroups;
  *sends = gSends;
  *recvs = gRecvs;
  *lastStream = gLastStream;
}

/*===------------------------------ Errors --------------------------------===*/

/* The texts of NCCL 2.28's ncclGetErrorString. */
EXPORT const char *ncclGetErrorString(ncclResult_t r) {
  switch (r) {
  case ncclSuccess:
    return "no error";
  case ncclUnhandledCudaError:
    return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
  case ncclSystemError:
    return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
  case ncclInternalError:
    return "internal error - please report this issue to the NCCL developers";
  case ncclInvalidArgument:
    return "invalid argument (run with NCCL_DEBUG=WARN for details)";
  case ncclInvalidUsage:
    return "invalid usage (run with NCCL_DEBUG=WARN for details)";
  case ncclRemoteError:
    return "remote process exited or there was a network error";
  case ncclInProgress:
    return "NCCL operation in progress";
  default:
    return "unknown result code";
  }
}

/*===-------------------------- Communicators -----------------------------===*/

EXPORT ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
  if (shouldFail("ncclGetUniqueId"))
    return ncclSystemError;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  memset(id, 0, sizeof *id);
  snprintf(id->internal, sizeof id->internal, "fake-nccl %ld %ld.%09ld",
           (long)getpid(), (long)ts.tv_sec, ts.tv_nsec);
  return ncclSuccess;
}

EXPORT ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks,
                                     ncclUniqueId id, int rank) {
  if (shouldFail("ncclCommInitRank"))
    return ncclInvalidUsage;
  int initialized = 0, worldRank = 0, worldSize = 0;
  MPI_Initialized(&initialized);
  if (!initialized)
    return ncclSystemError;
  MPI_Comm_rank(MPI_COMM_WORLD, &worldRank);
  MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
  if (nranks != worldSize || rank != worldRank || !id.internal[0])
    return ncclInvalidArgument;
  /* Every rank must have received rank 0's id. */
  char *all = malloc(sizeof id.internal * (size_t)worldSize);
  if (!all)
    return ncclSystemError;
  MPI_Allgather(id.internal, (int)sizeof id.internal, MPI_BYTE, all,
                (int)sizeof id.internal, MPI_BYTE, MPI_COMM_WORLD);
  int same = 1;
  for (int p = 0; p < worldSize; ++p)
    same &= memcmp(all + p * sizeof id.internal, id.internal,
                   sizeof id.internal) == 0;
  free(all);
  if (!same)
    return ncclInvalidUsage;
  struct ncclComm *c = calloc(1, sizeof *c);
  if (!c)
    return ncclSystemError;
  MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
  c->rank = rank;
  c->size = nranks;
  *out = c;
  return ncclSuccess;
}

EXPORT ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm)
    return ncclInvalidArgument;
  MPI_Comm_free(&comm->mpi);
  free(comm);
  return ncclSuccess;
}

/* Leaves the MPI communicator alone: an aborting job may have peers that
 * never come back. */
EXPORT ncclResult_t ncclCommAbort(ncclComm_t comm) {
  free(comm);
  return ncclSuccess;
}

EXPORT ncclResult_t ncclCommGetAsyncError(ncclComm_t comm,
                                          ncclResult_t *error) {
  if (!comm || !error)
    return ncclInvalidArgument;
  const char *env = getenv("FAKE_NCCL_ASYNC_ERROR");
  *error = env && strcmp(env, "1") == 0 ? ncclRemoteError : ncclSuccess;
  return ncclSuccess;
}

/*===------------------------ Point to point, groups ----------------------===*/

static ncclResult_t runOps(void) {
  MPI_Request *reqs = malloc(sizeof *reqs * (tOpCount ? tOpCount : 1));
  if (!reqs)
    return ncclSystemError;
  ncclResult_t result = ncclSuccess;
  size_t n = 0;
  for (size_t i = 0; i < tOpCount; ++i) {
    struct Op *op = &tOps[i];
    int rc = op->isSend ? MPI_Isend(op->buf, (int)op->bytes, MPI_BYTE, op->peer,
                                    0, op->comm->mpi, &reqs[n])
                        : MPI_Irecv(op->buf, (int)op->bytes, MPI_BYTE, op->peer,
                                    0, op->comm->mpi, &reqs[n]);
    if (rc != MPI_SUCCESS) {
      result = ncclSystemError;
      break;
    }
    ++n;
  }
  if (MPI_Waitall((int)n, reqs, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
    result = ncclSystemError;
  free(reqs);
  tOpCount = 0;
  return result;
}

static ncclResult_t record(int isSend, const void *buf, size_t count,
                           int datatype, int peer, ncclComm_t comm,
                           void *stream) {
  if (shouldFail(isSend ? "ncclSend" : "ncclRecv"))
    return ncclSystemError;
  /* ncclInt8 = ncclChar = 0, ncclUint8 = 1. */
  if (!comm || (datatype != 0 && datatype != 1) || peer < 0 ||
      peer >= comm->size || count > 0x7fffffff || (count && !buf))
    return ncclInvalidArgument;
  if (tOpCount == tOpCapacity) {
    size_t capacity = tOpCapacity ? 2 * tOpCapacity : 16;
    struct Op *ops = realloc(tOps, capacity * sizeof *ops);
    if (!ops)
      return ncclSystemError;
    tOps = ops;
    tOpCapacity = capacity;
  }
  struct Op op = {isSend, (void *)(uintptr_t)buf, count, peer, comm};
  tOps[tOpCount++] = op;
  if (isSend)
    ++gSends;
  else
    ++gRecvs;
  gLastStream = stream;
  return tGroupDepth > 0 ? ncclSuccess : runOps();
}

EXPORT ncclResult_t ncclSend(const void *buf, size_t count, int datatype,
                             int peer, ncclComm_t comm, void *stream) {
  return record(1, buf, count, datatype, peer, comm, stream);
}

EXPORT ncclResult_t ncclRecv(void *buf, size_t count, int datatype, int peer,
                             ncclComm_t comm, void *stream) {
  return record(0, buf, count, datatype, peer, comm, stream);
}

EXPORT ncclResult_t ncclGroupStart(void) {
  if (shouldFail("ncclGroupStart"))
    return ncclSystemError;
  ++tGroupDepth;
  return ncclSuccess;
}

EXPORT ncclResult_t ncclGroupEnd(void) {
  if (shouldFail("ncclGroupEnd"))
    return ncclSystemError;
  if (tGroupDepth == 0)
    return ncclInvalidUsage;
  if (--tGroupDepth > 0)
    return ncclSuccess;
  ++gGroups;
  return runOps();
}
