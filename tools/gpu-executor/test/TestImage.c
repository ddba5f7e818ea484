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
 * Built with MOE_TEST_IMAGE_UNDEFINED it also calls a libdevice function
 * the executor does not have, so that loading it fails.
 *
 *===----------------------------------------------------------------------===*/

#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))

uint32_t moe_gpuexec_sreg(uint32_t which);
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
    float v = __nv_fmaxf(data[i], 0.0f) + 1.0f;
#ifdef MOE_TEST_IMAGE_UNDEFINED
    v = __nv_no_such_function(v);
#endif
    data[i] = v;
  }
}
