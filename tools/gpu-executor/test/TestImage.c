/*===- TestImage.c - a kernel image for the GPU executor's tests ---------===*
 *
 * What moe-compile --gpu-binary=executor produces, written by hand: a
 * shared object whose kernel `add_one` is the entry
 * __moe_gpuexec_entry_add_one, one call per GPU thread, calling back into
 * the executor (moe_gpuexec_*, __nv_*) through symbols left undefined.
 *
 * add_one(float *data, unsigned n): data[i] = __nv_fmaxf(data[i], 0) + 1
 * for the thread's global index i < n.
 *
 * lookup(float *out, uint64_t *table): out[t] = kTable[t % 8] for t =
 * tid.x, counting the calls in a global; thread 0 stores kTable's address
 * in *table. poke(): the check of a store into kTable (read-only), which
 * must fail.
 *
 * Every global memory access is preceded by moe_gpuexec_check_access, as
 * the compiler precedes them: the image's own constants and globals must
 * pass it.
 *
 * Built with MOE_TEST_IMAGE_UNDEFINED it also calls a libdevice function
 * the executor does not have, so that loading it fails.
 *
 *===----------------------------------------------------------------------===*/

#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))

uint32_t moe_gpuexec_sreg(uint32_t which);
void moe_gpuexec_check_access(const void *address, uint64_t bytes,
                              uint32_t isStore, uint32_t site);
float __nv_fmaxf(float x, float y);
#ifdef MOE_TEST_IMAGE_UNDEFINED
float __nv_no_such_function(float x);
#endif

EXPORT void __moe_gpuexec_entry_add_one(void **params) {
  float *data = *(float **)params[0];
  uint32_t n = *(uint32_t *)params[1];
  /* tid.x + ctaid.x * ntid.x */
  uint32_t i = moe_gpuexec_sreg(0) + moe_gpuexec_sreg(6) * moe_gpuexec_sreg(3);
  if (i < n) {
    moe_gpuexec_check_access(&data[i], sizeof(float), 0, 1);
    float v = __nv_fmaxf(data[i], 0.0f) + 1.0f;
#ifdef MOE_TEST_IMAGE_UNDEFINED
    v = __nv_no_such_function(v);
#endif
    moe_gpuexec_check_access(&data[i], sizeof(float), 1, 2);
    data[i] = v;
  }
}

/* In the image's read-only segment, and a global in its writable one
   (.bss: memory size beyond the file size). */
static const float kTable[8] = {1.5f, -2.0f, 3.0f, 4.0f,
                                5.0f, 6.0f,  7.0f, 8.25f};
static uint32_t gLookups;

EXPORT void __moe_gpuexec_entry_lookup(void **params) {
  float *out = *(float **)params[0];
  uint64_t *table = *(uint64_t **)params[1];
  uint32_t t = moe_gpuexec_sreg(0);
  const float *entry = &kTable[t % 8];
  moe_gpuexec_check_access(entry, sizeof *entry, 0, 3);
  float v = *entry;
  moe_gpuexec_check_access(&gLookups, sizeof gLookups, 0, 4);
  moe_gpuexec_check_access(&gLookups, sizeof gLookups, 1, 5);
  ++gLookups;
  moe_gpuexec_check_access(&out[t], sizeof(float), 1, 6);
  out[t] = v;
  if (t == 0) {
    moe_gpuexec_check_access(table, sizeof *table, 1, 7);
    *table = (uint64_t)(uintptr_t)kTable;
  }
}

/* Only the check of the store: the store itself would fault. */
EXPORT void __moe_gpuexec_entry_poke(void **params) {
  (void)params;
  moe_gpuexec_check_access(&kTable[2], sizeof(float), 1, 8);
}
