/*===- fake_ep_module.c - a hand-written expert-parallel module -----------===*
 *
 * Follows docs/ExpertParallel.md the way `moe-compile --expert-parallel=2`
 * output does: a manifest with `expert_parallel` and per-tensor `split`,
 * and an entry that exchanges data with the other ranks through
 * moe_rt_comm_*. Function `ep_rows`, with E = 3 experts on P = 2 ranks
 * (Emax = 2; rank 1 holds one zero padding expert):
 *
 *   inputs   x [T, C] split tokens, w [2, C] split experts, b [C] replicated
 *   outputs  y [T, C] split tokens:   y[t] = x[t] + b + sum_e w_full[e]
 *            w2 [2, C] split experts: w2[e] = 2 * w[e]
 *
 * Each rank sums its experts, sends that sum to every rank with an
 * all-to-all-v (one unit of C floats per rank) and, while it is in flight,
 * computes x + b; it then adds the received sums. The result does not
 * depend on the rank count, so a single-process check is
 * y = x + b + w_full.sum(0).
 *
 * Built a second time with FAKE_EP_CUDA (libmoe_fake_ep_cuda_module.so):
 * target "cuda", so that moe-run uses the NCCL communicator. Its arguments
 * are then device buffers and its exchange buffers come from mgpuMemAlloc
 * as in a compiled cuda module; the code still reads them from the host,
 * which works on the fake CUDA driver (fake_cuda_driver.c), whose device
 * memory is host memory, and nowhere else. The counts stay on the host, as
 * the contract says.
 *
 *===----------------------------------------------------------------------===*/

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Declared by hand, as a compiled module only knows these symbols. */
int64_t moe_rt_comm_rank(int64_t ranks);
int64_t moe_rt_comm_all_to_all_v_start(int64_t ranks, const void *send,
                                       const int32_t *send_counts, void *recv,
                                       const int32_t *recv_counts,
                                       int64_t unit_bytes);
void moe_rt_comm_wait(int64_t request);

#ifdef FAKE_EP_CUDA
#include <stdbool.h>
void *mgpuMemAlloc(uint64_t sizeBytes, void *stream, bool isHostShared);
void mgpuMemFree(void *ptr, void *stream);
#define TARGET "cuda"
static void *alloc_zeroed(size_t bytes) {
  void *p = mgpuMemAlloc(bytes, NULL, false);
  if (p)
    memset(p, 0, bytes); /* host-visible on the fake driver only */
  return p;
}
static void release(void *p) { mgpuMemFree(p, NULL); }
#else
#define TARGET "cpu"
static void *alloc_zeroed(size_t bytes) { return calloc(bytes, 1); }
static void release(void *p) { free(p); }
#endif

#define EXPORT __attribute__((visibility("default")))
#define RANKS 2
#define EMAX 2

static const char kManifest[] =
    "{\"format\": \"moe-module-1\", \"target\": \"" TARGET "\",\n"
    " \"functions\": [\n"
    "  {\"name\": \"ep_rows\", \"entry\": \"fake_ep_rows\",\n"
    "   \"expert_parallel\": {\"ranks\": 2, \"num_experts\": 3,"
    " \"experts_per_rank\": 2},\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"T\", "
    "\"C\"],"
    " \"split\": \"tokens\"},\n"
    "              {\"name\": \"w\", \"dtype\": \"f32\", \"shape\": [2, \"C\"],"
    " \"split\": \"experts\"},\n"
    "              {\"name\": \"b\", \"dtype\": \"f32\", \"shape\": "
    "[\"C\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [\"T\", "
    "\"C\"],"
    " \"split\": \"tokens\"},\n"
    "               {\"name\": \"w2\", \"dtype\": \"f32\", \"shape\": [2, "
    "\"C\"],"
    " \"split\": \"experts\"}]}\n"
    " ]}";

EXPORT const char *moe_module_manifest(void) { return kManifest; }

/* A descriptor is {allocated, aligned, offset, sizes[R], strides[R]}. */
static float *data_of(void *desc) {
  char *aligned;
  int64_t offset;
  memcpy(&aligned, (char *)desc + 8, sizeof aligned);
  memcpy(&offset, (char *)desc + 16, sizeof offset);
  return (float *)aligned + offset;
}
static int64_t size_of(void *desc, int dim) {
  return ((int64_t *)desc)[3 + dim];
}

EXPORT int32_t fake_ep_rows(void **args) {
  const float *x = data_of(args[0]), *w = data_of(args[1]),
              *b = data_of(args[2]);
  float *y = data_of(args[3]), *w2 = data_of(args[4]);
  const int64_t T = size_of(args[0], 0), C = size_of(args[0], 1);
  int64_t rank = moe_rt_comm_rank(RANKS);
  if (rank < 0 || rank >= RANKS)
    return 3;

  float *send = alloc_zeroed((size_t)(RANKS * C + 1) * sizeof(float));
  float *recv = alloc_zeroed((size_t)(RANKS * C + 1) * sizeof(float));
  if (!send || !recv)
    return 2;
  for (int64_t e = 0; e < EMAX; ++e)
    for (int64_t j = 0; j < C; ++j) {
      send[j] += w[e * C + j];
      w2[e * C + j] = 2 * w[e * C + j];
    }
  for (int64_t p = 1; p < RANKS; ++p)
    memcpy(send + p * C, send, (size_t)C * sizeof(float));
  int32_t counts[RANKS];
  for (int p = 0; p < RANKS; ++p)
    counts[p] = 1;
  int64_t request = moe_rt_comm_all_to_all_v_start(
      RANKS, send, counts, recv, counts, C * (int64_t)sizeof(float));
  /* Overlap: the part that needs no peer data. */
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < C; ++j)
      y[t * C + j] = x[t * C + j] + b[j];
  moe_rt_comm_wait(request);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t p = 0; p < RANKS; ++p)
      for (int64_t j = 0; j < C; ++j)
        y[t * C + j] += recv[p * C + j];
  release(send);
  release(recv);
  return 0;
}
