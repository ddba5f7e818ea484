/*===- fake_cuda_module.c - a hand-written "cuda" module for the tests ---===*
 *
 * Does what a module compiled for target cuda does (docs/Runtime.md): its
 * constructors register GPU images with mgpuModuleLoadJIT / mgpuModuleLoad,
 * its destructors unload them, and its entries take memref descriptors of
 * device memory and drive the device only through the runtime's mgpu*
 * functions. Run against runtime/test/fake_cuda_driver.c, whose "device"
 * memory is host memory and whose kernels do nothing, so every result here
 * comes from copies and memsets.
 *
 *===----------------------------------------------------------------------===*/

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* MLIR's GPU runtime-wrapper ABI, as libmoe_runtime.so exports it. */
void *mgpuModuleLoad(void *data, uint64_t gpuBlobSize);
void *mgpuModuleLoadJIT(void *data, int32_t optLevel);
void mgpuModuleUnload(void *module);
void *mgpuModuleGetFunction(void *module, const char *name);
void mgpuLaunchKernel(void *function, int64_t gridX, int64_t gridY,
                      int64_t gridZ, int64_t blockX, int64_t blockY,
                      int64_t blockZ, int32_t smemBytes, void *stream,
                      void **params, void **extra, uint64_t paramsCount);
void *mgpuStreamCreate(void);
void mgpuStreamDestroy(void *stream);
void mgpuStreamSynchronize(void *stream);
void mgpuStreamWaitEvent(void *stream, void *event);
void *mgpuEventCreate(void);
void mgpuEventDestroy(void *event);
void mgpuEventSynchronize(void *event);
void mgpuEventRecord(void *event, void *stream);
void *mgpuMemAlloc(uint64_t sizeBytes, void *stream, bool isHostShared);
void mgpuMemFree(void *ptr, void *stream);
void mgpuMemcpy(void *dst, void *src, uint64_t sizeBytes, void *stream);
void mgpuMemset32(void *dst, uint32_t value, uint64_t count, void *stream);
void mgpuMemset16(void *dst, uint16_t value, uint64_t count, void *stream);
void mgpuSetDefaultDevice(int32_t device);

#define EXPORT __attribute__((visibility("default")))

static const char kManifest[] =
    "{\"format\": \"moe-module-1\", \"target\": \"cuda\",\n"
    " \"functions\": [\n"
    /* y = x, through a device scratch buffer and two (no-op) kernels */
    "  {\"name\": \"copy\", \"entry\": \"fake_cuda_copy\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"N\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [\"N\"]}]},\n"
    /* y = 0x01020304 words, z = f16 1.0 (memsets); x only gives the size */
    "  {\"name\": \"fill\", \"entry\": \"fake_cuda_fill\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"N\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"i32\", \"shape\": [\"N\"]},\n"
    "                {\"name\": \"z\", \"dtype\": \"f16\", \"shape\": [\"N\"]}]},\n"
    /* launches a kernel the GPU image does not contain */
    "  {\"name\": \"missing_kernel\", \"entry\": \"fake_cuda_missing_kernel\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"N\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [\"N\"]}]},\n"
    /* asks for host-shared memory, which the runtime does not provide */
    "  {\"name\": \"host_shared\", \"entry\": \"fake_cuda_host_shared\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"N\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [\"N\"]}]},\n"
    /* frees its input buffer, which belongs to the runtime */
    "  {\"name\": \"free_input\", \"entry\": \"fake_cuda_free_input\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"N\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [\"N\"]}]},\n"
    /* writes nothing: the outputs keep the runtime's 0xFF fill */
    "  {\"name\": \"nothing\", \"entry\": \"fake_cuda_nothing\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"N\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [\"N\"]}]},\n"
    /* the signature and reference section of a tiny moe.layer (E = 2,
     * H = 4, I = 3, k = 1), for moe-run's benchmark figures; computes
     * nothing (the fake driver cannot run kernels) */
    "  {\"name\": \"layer\", \"entry\": \"fake_cuda_nothing\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"T\", 4]},\n"
    "              {\"name\": \"router_logits\", \"dtype\": \"f32\", \"shape\": [\"T\", 2]},\n"
    "              {\"name\": \"fc1\", \"dtype\": \"f32\", \"shape\": [2, 3, 4]},\n"
    "              {\"name\": \"fc2\", \"dtype\": \"f32\", \"shape\": [2, 4, 3]}],\n"
    "   \"outputs\": [{\"name\": \"result0\", \"dtype\": \"f32\", \"shape\": [\"T\", 4]}],\n"
    "   \"reference\": {\"op\": \"layer\","
    " \"operands\": {\"input\": 0, \"logits\": 1, \"fc1\": 2, \"fc2\": 3},"
    " \"attributes\": {\"k\": 1, \"scoring\": \"softmax\","
    " \"normalize\": false, \"num_groups\": 1, \"top_groups\": 1,"
    " \"group_scoring\": \"max\", \"top_p\": null, \"scaling\": 1.0,"
    " \"activation\": \"relu\", \"swiglu_fusion\": \"interleaved\","
    " \"alpha\": 1.0, \"beta\": 0.0, \"limit\": null,"
    " \"capacity_factor\": null, \"zero_experts\": []}}}\n"
    " ]}";

EXPORT const char *moe_module_manifest(void) { return kManifest; }

/*===------------------------- GPU module images --------------------------===*/

/* "PTX" for the JIT path (NUL-terminated) and a "cubin" for the binary one;
 * the fake driver only looks for ".entry NAME". */
static char kPtx[] = "//\n// fake PTX\n//\n.version 8.0\n.target sm_90\n"
                           ".visible .entry fake_scale(\n"
                           "  .param .u64 fake_scale_param_0\n)\n{\n  ret;\n}\n";
static char kCubin[] = ".entry fake_bias(\n)\n";

static void *gPtxModule, *gCubinModule;

__attribute__((constructor)) static void loadGpuModules(void) {
  gPtxModule = mgpuModuleLoadJIT(kPtx, 3);
  gCubinModule = mgpuModuleLoad(kCubin, sizeof kCubin);
}

__attribute__((destructor)) static void unloadGpuModules(void) {
  mgpuModuleUnload(gPtxModule);
  mgpuModuleUnload(gCubinModule);
}

/*===------------------------- descriptor access --------------------------===*/

/* A rank-1 descriptor is {allocated, aligned, offset, size, stride}. */
static char *data_of(void *desc) {
  char *aligned;
  memcpy(&aligned, (char *)desc + 8, sizeof aligned);
  return aligned;
}
static int64_t size_of(void *desc) { return ((int64_t *)desc)[3]; }

/*===------------------------------ entries -------------------------------===*/

EXPORT int32_t fake_cuda_copy(void **args) {
  char *x = data_of(args[0]), *y = data_of(args[1]);
  int64_t n = size_of(args[0]);
  uint64_t bytes = (uint64_t)n * 4;
  mgpuSetDefaultDevice(0);
  void *stream = mgpuStreamCreate();
  void *scratch = mgpuMemAlloc(bytes, stream, false);
  mgpuMemcpy(scratch, x, bytes, stream);
  void *copied = mgpuEventCreate();
  mgpuEventRecord(copied, stream);
  mgpuStreamWaitEvent(stream, copied);
  mgpuEventSynchronize(copied);
  mgpuEventDestroy(copied);

  /* No block for no element, as kernels of loops over a dynamic range
   * launch: the runtime skips such a launch. */
  int64_t blocks = (n + 127) / 128;
  void *params[2] = {&scratch, &n};
  mgpuLaunchKernel(mgpuModuleGetFunction(gCubinModule, "fake_bias"), 1, 1, 1,
                   32, 1, 1, 64 * 1024, stream, params, NULL, 2);
  mgpuLaunchKernel(mgpuModuleGetFunction(gPtxModule, "fake_scale"), blocks, 1,
                   1, 128, 1, 1, 0, stream, params, NULL, 2);

  mgpuMemcpy(y, scratch, bytes, stream);
  mgpuMemFree(scratch, stream);
  mgpuStreamSynchronize(stream);
  mgpuStreamDestroy(stream);
  return 0;
}

EXPORT int32_t fake_cuda_fill(void **args) {
  int64_t n = size_of(args[0]);
  void *stream = mgpuStreamCreate();
  mgpuMemset32(data_of(args[1]), 0x01020304u, (uint64_t)n, stream);
  mgpuMemset16(data_of(args[2]), 0x3C00u, (uint64_t)n, stream);
  mgpuStreamSynchronize(stream);
  mgpuStreamDestroy(stream);
  return 0;
}

EXPORT int32_t fake_cuda_missing_kernel(void **args) {
  void *stream = mgpuStreamCreate();
  void *x = data_of(args[0]);
  void *params[1] = {&x};
  mgpuLaunchKernel(mgpuModuleGetFunction(gPtxModule, "no_such_kernel"), 1, 1,
                   1, 1, 1, 1, 0, stream, params, NULL, 1);
  mgpuStreamSynchronize(stream);
  mgpuStreamDestroy(stream);
  return 0;
}

EXPORT int32_t fake_cuda_host_shared(void **args) {
  (void)args;
  void *stream = mgpuStreamCreate();
  void *p = mgpuMemAlloc(16, stream, true);
  mgpuMemFree(p, stream);
  mgpuStreamDestroy(stream);
  return 0;
}

EXPORT int32_t fake_cuda_free_input(void **args) {
  void *stream = mgpuStreamCreate();
  mgpuMemFree(data_of(args[0]), stream);
  mgpuStreamDestroy(stream);
  return 0;
}

EXPORT int32_t fake_cuda_nothing(void **args) {
  (void)args;
  return 0;
}
