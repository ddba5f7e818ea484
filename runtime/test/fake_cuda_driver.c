/*===- fake_cuda_driver.c - a CUDA driver over host memory for tests -----===*
 *
 * Implements the driver entry points the runtime resolves (runtime/src/
 * CudaDriver.cpp) so that the CUDA backend and the mgpu* functions can be
 * tested without a GPU. Loaded through MOE_CUDA_DRIVER=<this library>.
 *
 *  - "Device" memory is malloc'd host memory; copies and memsets are
 *    memcpy/memset, so data really flows host -> device -> host.
 *  - Module images are text: every ".entry NAME" in it (as in PTX) is a
 *    kernel cuModuleGetFunction finds; other names fail with
 *    CUDA_ERROR_NOT_FOUND.
 *  - cuLaunchKernel cannot run anything; it records the launch
 *    (fake_cuda_launch_count / fake_cuda_last_launch).
 *  - Calls that need a context fail with CUDA_ERROR_INVALID_CONTEXT when
 *    none is current on the calling thread, which checks that the runtime
 *    makes its context current.
 *  - FAKE_CUDA_FAIL=NAME[,NAME...] makes those entry points fail (read on
 *    every call) with a fitting error: cuLaunchKernel
 *    CUDA_ERROR_LAUNCH_FAILED, cuModuleLoadDataEx CUDA_ERROR_INVALID_PTX
 *    (with a JIT log), cuMemAlloc_v2 CUDA_ERROR_OUT_OF_MEMORY, anything
 *    else CUDA_ERROR_UNKNOWN. FAKE_CUDA_DEVICE_COUNT=N changes the number
 *    of devices (default 1).
 *  - FAKE_CUDA_EVENT_PENDING=1 makes cuEventQuery answer
 *    CUDA_ERROR_NOT_READY forever: work on a stream that never finishes,
 *    for the timeout of the NCCL communicator's wait.
 *
 *===----------------------------------------------------------------------===*/

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef void *Handle;

enum {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_OUT_OF_MEMORY = 2,
  CUDA_ERROR_NOT_INITIALIZED = 3,
  CUDA_ERROR_INVALID_DEVICE = 101,
  CUDA_ERROR_INVALID_CONTEXT = 201,
  CUDA_ERROR_INVALID_PTX = 218,
  CUDA_ERROR_INVALID_HANDLE = 400,
  CUDA_ERROR_NOT_FOUND = 500,
  CUDA_ERROR_NOT_READY = 600,
  CUDA_ERROR_LAUNCH_FAILED = 719,
  CUDA_ERROR_UNKNOWN = 999
};

/*===------------------------------ State ---------------------------------===*/

static pthread_mutex_t gMutex = PTHREAD_MUTEX_INITIALIZER;
static int gInitialized;
static int gContext; /* the one primary context; its address is the handle */
static __thread int tContextDepth; /* pushes of gContext on this thread */

static long gLiveAllocations;
static long gTotalAllocations;
static long gLaunches;
static long gModulesLoaded;
static char gLastKernel[128];
static unsigned gLastGrid[3], gLastBlock[3], gLastSmem;
static int gLastJitOptLevel = -1;

/* Live allocations, to reject frees of unknown pointers. */
struct Allocation {
  void *ptr;
  struct Allocation *next;
};
static struct Allocation *gAllocations;

struct Function {
  char name[128];
  struct Function *next;
};
/* A module owns the functions looked up in it, as in the real driver: they
   are freed when it is unloaded. */
struct Module {
  char *text;
  struct Function *functions;
};
struct Event {
  double ms;
};

/* Whether FAKE_CUDA_FAIL lists `name`. */
static int shouldFail(const char *name) {
  const char *list = getenv("FAKE_CUDA_FAIL");
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

#define FAIL_IF_ASKED(name, code)                                              \
  do {                                                                         \
    if (shouldFail(name))                                                      \
      return code;                                                             \
  } while (0)

#define NEED_CONTEXT()                                                         \
  do {                                                                         \
    if (!gInitialized)                                                         \
      return CUDA_ERROR_NOT_INITIALIZED;                                       \
    if (tContextDepth == 0)                                                    \
      return CUDA_ERROR_INVALID_CONTEXT;                                       \
  } while (0)

static double nowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int deviceCount(void) {
  const char *env = getenv("FAKE_CUDA_DEVICE_COUNT");
  return env ? atoi(env) : 1;
}

/*===------------------------ Inspection (tests) --------------------------===*/

EXPORT long fake_cuda_live_allocations(void) {
  pthread_mutex_lock(&gMutex);
  long n = gLiveAllocations;
  pthread_mutex_unlock(&gMutex);
  return n;
}
EXPORT long fake_cuda_total_allocations(void) { return gTotalAllocations; }
EXPORT long fake_cuda_launch_count(void) { return gLaunches; }
EXPORT long fake_cuda_modules_loaded(void) { return gModulesLoaded; }
EXPORT int fake_cuda_last_jit_opt_level(void) { return gLastJitOptLevel; }
/* Name, grid, block and shared memory bytes of the last launch. */
EXPORT const char *fake_cuda_last_launch(unsigned grid[3], unsigned block[3],
                                         unsigned *smem) {
  memcpy(grid, gLastGrid, sizeof gLastGrid);
  memcpy(block, gLastBlock, sizeof gLastBlock);
  *smem = gLastSmem;
  return gLastKernel;
}

/*===------------------------ Init, errors, devices -----------------------===*/

EXPORT CUresult cuInit(unsigned flags) {
  (void)flags;
  FAIL_IF_ASKED("cuInit", CUDA_ERROR_UNKNOWN);
  gInitialized = 1;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int *version) {
  *version = 13000;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorName(CUresult r, const char **name) {
  switch (r) {
  case CUDA_SUCCESS: *name = "CUDA_SUCCESS"; break;
  case CUDA_ERROR_INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; break;
  case CUDA_ERROR_OUT_OF_MEMORY: *name = "CUDA_ERROR_OUT_OF_MEMORY"; break;
  case CUDA_ERROR_NOT_INITIALIZED: *name = "CUDA_ERROR_NOT_INITIALIZED"; break;
  case CUDA_ERROR_INVALID_DEVICE: *name = "CUDA_ERROR_INVALID_DEVICE"; break;
  case CUDA_ERROR_INVALID_CONTEXT: *name = "CUDA_ERROR_INVALID_CONTEXT"; break;
  case CUDA_ERROR_INVALID_PTX: *name = "CUDA_ERROR_INVALID_PTX"; break;
  case CUDA_ERROR_INVALID_HANDLE: *name = "CUDA_ERROR_INVALID_HANDLE"; break;
  case CUDA_ERROR_NOT_FOUND: *name = "CUDA_ERROR_NOT_FOUND"; break;
  case CUDA_ERROR_NOT_READY: *name = "CUDA_ERROR_NOT_READY"; break;
  case CUDA_ERROR_LAUNCH_FAILED: *name = "CUDA_ERROR_LAUNCH_FAILED"; break;
  case CUDA_ERROR_UNKNOWN: *name = "CUDA_ERROR_UNKNOWN"; break;
  default: *name = NULL; return CUDA_ERROR_INVALID_VALUE;
  }
  return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult r, const char **text) {
  switch (r) {
  case CUDA_ERROR_OUT_OF_MEMORY: *text = "out of memory"; break;
  case CUDA_ERROR_INVALID_CONTEXT: *text = "invalid device context"; break;
  case CUDA_ERROR_INVALID_PTX: *text = "a PTX JIT compilation failed"; break;
  case CUDA_ERROR_NOT_FOUND: *text = "named symbol not found"; break;
  case CUDA_ERROR_LAUNCH_FAILED: *text = "unspecified launch failure"; break;
  case CUDA_ERROR_UNKNOWN: *text = "unknown error"; break;
  default: *text = "fake driver error"; break;
  }
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int *count) {
  if (!gInitialized)
    return CUDA_ERROR_NOT_INITIALIZED;
  *count = deviceCount();
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(int *device, int ordinal) {
  if (ordinal < 0 || ordinal >= deviceCount())
    return CUDA_ERROR_INVALID_DEVICE;
  *device = ordinal;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char *name, int len, int device) {
  snprintf(name, (size_t)len, "Fake CUDA Device %d", device);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int *value, int attribute, int device) {
  (void)device;
  switch (attribute) {
  case 75: *value = 9; break;          /* compute capability major */
  case 76: *value = 0; break;          /* minor */
  case 97: *value = 227 * 1024; break; /* max shared memory per block opt-in */
  default: *value = 0; break;
  }
  return CUDA_SUCCESS;
}

/*===------------------------------ Contexts ------------------------------===*/

EXPORT CUresult cuDevicePrimaryCtxRetain(Handle *ctx, int device) {
  (void)device;
  FAIL_IF_ASKED("cuDevicePrimaryCtxRetain", CUDA_ERROR_UNKNOWN);
  *ctx = &gContext;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPushCurrent_v2(Handle ctx) {
  if (ctx != &gContext)
    return CUDA_ERROR_INVALID_CONTEXT;
  ++tContextDepth;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPopCurrent_v2(Handle *ctx) {
  if (tContextDepth == 0)
    return CUDA_ERROR_INVALID_CONTEXT;
  --tContextDepth;
  if (ctx)
    *ctx = &gContext;
  return CUDA_SUCCESS;
}

/*===------------------------------- Memory -------------------------------===*/

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuMemAlloc_v2", CUDA_ERROR_OUT_OF_MEMORY);
  if (bytes == 0)
    return CUDA_ERROR_INVALID_VALUE;
  void *p = malloc(bytes);
  struct Allocation *a = malloc(sizeof *a);
  if (!p || !a) {
    free(p);
    free(a);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  pthread_mutex_lock(&gMutex);
  a->ptr = p;
  a->next = gAllocations;
  gAllocations = a;
  ++gLiveAllocations;
  ++gTotalAllocations;
  pthread_mutex_unlock(&gMutex);
  *ptr = (CUdeviceptr)(uintptr_t)p;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr ptr) {
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuMemFree_v2", CUDA_ERROR_UNKNOWN);
  void *p = (void *)(uintptr_t)ptr;
  pthread_mutex_lock(&gMutex);
  struct Allocation **link = &gAllocations;
  while (*link && (*link)->ptr != p)
    link = &(*link)->next;
  struct Allocation *a = *link;
  if (a) {
    *link = a->next;
    --gLiveAllocations;
  }
  pthread_mutex_unlock(&gMutex);
  if (!a)
    return CUDA_ERROR_INVALID_VALUE;
  free(a);
  free(p);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src,
                                     size_t bytes, Handle stream) {
  (void)stream;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuMemcpyHtoDAsync_v2", CUDA_ERROR_UNKNOWN);
  memcpy((void *)(uintptr_t)dst, src, bytes);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes,
                                     Handle stream) {
  (void)stream;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuMemcpyDtoHAsync_v2", CUDA_ERROR_UNKNOWN);
  memcpy(dst, (const void *)(uintptr_t)src, bytes);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                              Handle stream) {
  (void)stream;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuMemcpyAsync", CUDA_ERROR_UNKNOWN);
  memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value,
                                size_t count, Handle stream) {
  (void)stream;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuMemsetD8Async", CUDA_ERROR_UNKNOWN);
  memset((void *)(uintptr_t)dst, value, count);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD16Async(CUdeviceptr dst, unsigned short value,
                                 size_t count, Handle stream) {
  (void)stream;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuMemsetD16Async", CUDA_ERROR_UNKNOWN);
  unsigned short *p = (unsigned short *)(uintptr_t)dst;
  for (size_t i = 0; i < count; ++i)
    p[i] = value;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned value, size_t count,
                                 Handle stream) {
  (void)stream;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuMemsetD32Async", CUDA_ERROR_UNKNOWN);
  unsigned *p = (unsigned *)(uintptr_t)dst;
  for (size_t i = 0; i < count; ++i)
    p[i] = value;
  return CUDA_SUCCESS;
}

/*===-------------------------- Streams, events ---------------------------===*/

/* Streams are dummies: every operation completes at once. */
EXPORT CUresult cuStreamCreate(Handle *stream, unsigned flags) {
  (void)flags;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuStreamCreate", CUDA_ERROR_UNKNOWN);
  *stream = malloc(1);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamSynchronize(Handle stream) {
  (void)stream;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuStreamSynchronize", CUDA_ERROR_UNKNOWN);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamDestroy_v2(Handle stream) {
  NEED_CONTEXT();
  free(stream);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamWaitEvent(Handle stream, Handle event, unsigned flags) {
  (void)stream;
  (void)flags;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuStreamWaitEvent", CUDA_ERROR_UNKNOWN);
  return event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

EXPORT CUresult cuEventCreate(Handle *event, unsigned flags) {
  (void)flags;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuEventCreate", CUDA_ERROR_UNKNOWN);
  struct Event *e = calloc(1, sizeof *e);
  *event = e;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuEventRecord(Handle event, Handle stream) {
  (void)stream;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuEventRecord", CUDA_ERROR_UNKNOWN);
  ((struct Event *)event)->ms = nowMs();
  return CUDA_SUCCESS;
}

EXPORT CUresult cuEventSynchronize(Handle event) {
  (void)event;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuEventSynchronize", CUDA_ERROR_UNKNOWN);
  return CUDA_SUCCESS;
}

/* Streams complete at once, so a recorded event has always happened. */
EXPORT CUresult cuEventQuery(Handle event) {
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuEventQuery", CUDA_ERROR_UNKNOWN);
  if (!event)
    return CUDA_ERROR_INVALID_HANDLE;
  const char *pending = getenv("FAKE_CUDA_EVENT_PENDING");
  if (pending && strcmp(pending, "1") == 0)
    return CUDA_ERROR_NOT_READY;
  return CUDA_SUCCESS;
}

/* Exported under both names, as CUDA 12.8+ drivers do. */
EXPORT CUresult cuEventElapsedTime_v2(float *ms, Handle start, Handle end) {
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuEventElapsedTime", CUDA_ERROR_UNKNOWN);
  *ms = (float)(((struct Event *)end)->ms - ((struct Event *)start)->ms);
  return CUDA_SUCCESS;
}
EXPORT CUresult cuEventElapsedTime(float *ms, Handle start, Handle end) {
  return cuEventElapsedTime_v2(ms, start, end);
}

EXPORT CUresult cuEventDestroy_v2(Handle event) {
  NEED_CONTEXT();
  free(event);
  return CUDA_SUCCESS;
}

/*===-------------------------- Modules, kernels --------------------------===*/

static CUresult loadModule(Handle *module, const void *image) {
  struct Module *m = calloc(1, sizeof *m);
  m->text = strdup((const char *)image);
  *module = m;
  pthread_mutex_lock(&gMutex);
  ++gModulesLoaded;
  pthread_mutex_unlock(&gMutex);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleLoadData(Handle *module, const void *image) {
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuModuleLoadData", CUDA_ERROR_INVALID_VALUE);
  return loadModule(module, image);
}

/* CU_JIT_ERROR_LOG_BUFFER = 5, its size 6, CU_JIT_OPTIMIZATION_LEVEL 7. */
EXPORT CUresult cuModuleLoadDataEx(Handle *module, const void *image,
                                   unsigned numOptions, int *options,
                                   void **values) {
  NEED_CONTEXT();
  char *log = NULL;
  size_t logSize = 0;
  for (unsigned i = 0; i < numOptions; ++i) {
    if (options[i] == 5)
      log = values[i];
    else if (options[i] == 6)
      logSize = (size_t)(uintptr_t)values[i];
    else if (options[i] == 7)
      gLastJitOptLevel = (int)(uintptr_t)values[i];
  }
  if (shouldFail("cuModuleLoadDataEx")) {
    if (log && logSize)
      snprintf(log, logSize, "ptxas fatal   : fake syntax error at line 3");
    return CUDA_ERROR_INVALID_PTX;
  }
  return loadModule(module, image);
}

EXPORT CUresult cuModuleUnload(Handle module) {
  NEED_CONTEXT();
  struct Module *m = module;
  pthread_mutex_lock(&gMutex);
  --gModulesLoaded;
  pthread_mutex_unlock(&gMutex);
  while (m->functions) {
    struct Function *next = m->functions->next;
    free(m->functions);
    m->functions = next;
  }
  free(m->text);
  free(m);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleGetFunction(Handle *function, Handle module,
                                    const char *name) {
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuModuleGetFunction", CUDA_ERROR_UNKNOWN);
  struct Module *m = module;
  size_t n = strlen(name);
  for (const char *p = strstr(m->text, ".entry "); p;
       p = strstr(p + 1, ".entry ")) {
    const char *id = p + strlen(".entry ");
    char end = id[n];
    if (strncmp(id, name, n) == 0 &&
        (end == '(' || end == ' ' || end == '\n' || end == '\0')) {
      struct Function *f = calloc(1, sizeof *f);
      snprintf(f->name, sizeof f->name, "%s", name);
      pthread_mutex_lock(&gMutex);
      f->next = m->functions;
      m->functions = f;
      pthread_mutex_unlock(&gMutex);
      *function = f;
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_NOT_FOUND;
}

EXPORT CUresult cuFuncSetAttribute(Handle function, int attribute, int value) {
  (void)function;
  (void)attribute;
  (void)value;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuFuncSetAttribute", CUDA_ERROR_UNKNOWN);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuLaunchKernel(Handle function, unsigned gx, unsigned gy,
                               unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned smem, Handle stream,
                               void **params, void **extra) {
  (void)stream;
  (void)params;
  (void)extra;
  NEED_CONTEXT();
  FAIL_IF_ASKED("cuLaunchKernel", CUDA_ERROR_LAUNCH_FAILED);
  if (!function)
    return CUDA_ERROR_INVALID_HANDLE;
  pthread_mutex_lock(&gMutex);
  ++gLaunches;
  snprintf(gLastKernel, sizeof gLastKernel, "%s",
           ((struct Function *)function)->name);
  gLastGrid[0] = gx;
  gLastGrid[1] = gy;
  gLastGrid[2] = gz;
  gLastBlock[0] = bx;
  gLastBlock[1] = by;
  gLastBlock[2] = bz;
  gLastSmem = smem;
  pthread_mutex_unlock(&gMutex);
  return CUDA_SUCCESS;
}
