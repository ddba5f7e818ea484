/*===- moe/runtime_nccl.h - NCCL communicator for cuda modules --*- C -*-===*
 *
 * The communicator that expert-parallel "cuda" modules use
 * (docs/ExpertParallel.md, "Target cuda"): their all-to-all-v exchanges
 * device buffers, so it runs on NCCL rather than MPI. It is part of
 * libmoe_runtime.so, which owns the CUDA context, device and streams the
 * exchanges must use; neither NCCL nor the CUDA driver is a link-time
 * dependency: both are loaded with dlopen when a communicator is created
 * (NCCL: `libnccl.so.2`, or $MOE_NCCL_LIBRARY; the driver as for any cuda
 * module, see docs/Runtime.md).
 *
 * The runtime has no MPI: the launcher passes in a bootstrap (a broadcast
 * for NCCL's unique id and a way to end the job), which moe-run builds from
 * libmoe_runtime_mpi.so (moe_mpi_broadcast, moe_mpi_abort).
 *
 * Exchanges are grouped ncclSend/ncclRecv calls on a non-blocking stream of
 * the communicator's own, followed by an event; `wait` polls the event and
 * ncclCommGetAsyncError until the exchange is done or the bootstrap's
 * timeout expires. On a timeout or an NCCL error the communicator calls
 * ncclCommAbort and then the bootstrap's abort_job with
 *   "NCCL all-to-all-v did not complete within S s (a peer rank failed or
 *    is stuck)"
 * or "NCCL all-to-all-v failed: ...", since compiled code cannot see an
 * error. A group of one rank needs no NCCL: its exchange is a device copy
 * on the same stream.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOE_RUNTIME_NCCL_H
#define MOE_RUNTIME_NCCL_H

#include "moe/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the NCCL communicator reaches the other ranks while it is created,
 * and how it ends the job when an exchange fails. */
typedef struct moe_nccl_bootstrap {
  int64_t rank;     /* this process, 0 <= rank < size */
  int64_t size;     /* ranks in the group, >= 1 */
  double timeout_s; /* how long `wait` waits for an exchange, > 0 */
  void *ctx;        /* passed back to the functions below */
  /* Copies `bytes` bytes at `data` on rank `root` into `data` on every
   * rank. Collective: called on every rank, from one thread. */
  void (*broadcast)(void *ctx, void *data, size_t bytes, int64_t root);
  /* Reports `message` (naming this rank) and ends the whole job; must not
   * return. */
  void (*abort_job)(void *ctx, const char *message);
} moe_nccl_bootstrap;

/* Creates the communicator of this rank: opens the CUDA driver and device
 * (rank % deviceCount, or $MOE_CUDA_DEVICE; before any cuda module runs,
 * since the runtime keeps one device per process), loads NCCL (when size >
 * 1), lets rank 0 make the unique id, broadcasts it and joins the NCCL
 * communicator (ncclCommInitRank). Collective: every rank calls it.
 * Install the result with moe_set_communicator(); it stays valid until
 * moe_nccl_communicator_destroy(). Fails with
 *   MOE_INVALID_ARGUMENT  an inconsistent bootstrap, or the runtime already
 *                         runs on another device,
 *   MOE_UNAVAILABLE       no usable CUDA driver or device ("no CUDA driver
 *                         (...)"), or NCCL cannot be loaded ("cannot load
 *                         NCCL (libnccl.so.2): ...; set MOE_NCCL_LIBRARY"),
 *   MOE_DEVICE_ERROR      a driver or NCCL call failed (the message names
 *                         the call and, for NCCL, ncclGetErrorString).
 * A failure is reported on the failing rank only, while the others may wait
 * in the broadcast or in ncclCommInitRank: the caller must end the job. */
MOE_API moe_status moe_nccl_communicator_create(
    const moe_nccl_bootstrap *bootstrap, const moe_communicator **out);

/* Waits for the communicator's stream, destroys its NCCL communicator and
 * frees it. Remove it first (moe_set_communicator(NULL)). NULL is
 * allowed. */
MOE_API void moe_nccl_communicator_destroy(const moe_communicator *comm);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOE_RUNTIME_NCCL_H */
