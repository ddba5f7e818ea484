/*===- moe/runtime_mpi.h - MPI communicator for the moe runtime -*- C -*-===*
 *
 * libmoe_runtime_mpi.so: an MPI implementation of moe_communicator
 * (moe/runtime.h) plus the few collectives a launcher needs to run an
 * expert-parallel module on every rank (docs/ExpertParallel.md). It is a
 * library of its own so that libmoe_runtime.so needs no MPI; moe-run
 * dlopens it (RTLD_GLOBAL: Open MPI's plugins resolve symbols of libmpi
 * globally) only when it runs under mpirun or an expert-parallel function.
 *
 * All-to-all-v requests are issued and driven to completion by a
 * communication thread of the library (MPI_Ialltoallv, then MPI_Test in a
 * loop), on a communicator of their own, so that a collective progresses
 * while the calling threads compute: Open MPI's non-blocking collectives
 * advance only inside MPI calls. Waiting for a request times out (see
 * moe_mpi_init); then the library prints
 *   "<program>: rank R: all-to-all-v did not complete within S s (a peer
 *    rank failed or is stuck)"
 * and calls MPI_Abort(MPI_COMM_WORLD, 1). Any MPI failure inside the
 * library is reported the same way: a collective cannot fail on one rank
 * alone without hanging the others.
 *
 * The launcher helpers (barrier, allreduce, gather, broadcast) use a second
 * duplicate of MPI_COMM_WORLD and must be called from one thread, in the
 * same order on every rank.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOE_RUNTIME_MPI_H
#define MOE_RUNTIME_MPI_H

#include "moe/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Initialises MPI with MPI_THREAD_MULTIPLE (unless it already is; then the
 * provided level must be MPI_THREAD_MULTIPLE), duplicates MPI_COMM_WORLD
 * and starts the communication thread. `program` prefixes the messages
 * ("moe-run"). `timeout_s` > 0 is the timeout of a wait; otherwise
 * $MOE_COMM_TIMEOUT (seconds) when set, else 120. Returns 0, or -1 with a
 * message in `error` (NUL-terminated, truncated to `error_size`). */
MOE_API int moe_mpi_init(int *argc, char ***argv, const char *program,
                         double timeout_s, char *error, size_t error_size);
/* Stops the communication thread and finalises MPI if moe_mpi_init
 * initialised it. */
MOE_API void moe_mpi_finalize(void);

MOE_API int64_t moe_mpi_rank(void);
MOE_API int64_t moe_mpi_size(void);
/* The wait timeout in seconds. */
MOE_API double moe_mpi_timeout(void);

/* The communicator to install with moe_set_communicator(); valid until
 * moe_mpi_finalize(). */
MOE_API const moe_communicator *moe_mpi_communicator(void);

MOE_API void moe_mpi_barrier(void);
/* The maximum of `value` over all ranks, on every rank. */
MOE_API double moe_mpi_allreduce_max(double value);
/* The sum of `value` over all ranks, on every rank. */
MOE_API int64_t moe_mpi_allreduce_sum(int64_t value);
/* Concatenates every rank's `rows` rows of `row_bytes` bytes, in rank
 * order, into `recv` on rank 0, which has room for `recv_rows` rows
 * (`recv` and `recv_rows` are ignored on the other ranks). Returns the
 * total number of rows on rank 0 and `rows` elsewhere; aborts the job when
 * the rows do not fit or row_bytes differs among ranks. */
MOE_API int64_t moe_mpi_gather_rows(const void *send, int64_t rows,
                                    int64_t row_bytes, void *recv,
                                    int64_t recv_rows);
/* Copies `bytes` bytes at `data` on rank `root` into `data` on every rank
 * (MPI_Bcast). The NCCL communicator's bootstrap sends its unique id with
 * it (moe/runtime_nccl.h). */
MOE_API void moe_mpi_broadcast(void *data, size_t bytes, int root);
/* Prints "<program>: rank R: <message>" to stderr and aborts the job
 * (MPI_Abort(MPI_COMM_WORLD, 1)). */
MOE_API void moe_mpi_abort(const char *message) __attribute__((noreturn));

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOE_RUNTIME_MPI_H */
