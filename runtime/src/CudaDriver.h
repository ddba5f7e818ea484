//===- CudaDriver.h - the CUDA driver API, loaded at run time ----*- C++
//-*-===//
//
// The runtime never links libcuda: one libmoe_runtime.so serves CPU-only and
// GPU machines, and the tests substitute a fake driver. The driver is opened
// with dlopen on first use (`libcuda.so.1`, or `$MOE_CUDA_DRIVER`) and the
// few entry points the runtime calls are resolved by their versioned names
// (cuMemAlloc_v2, ... where cuda.h #defines the plain name to them).
//
// The types below mirror cuda.h (ABI-stable since CUDA 4) so that the
// runtime builds without the CUDA toolkit.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_CUDADRIVER_H
#define MOE_RUNTIME_CUDADRIVER_H

#include "moe/runtime.h"

#include <cstddef>
#include <string>

namespace moe::rt::cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUevent = struct CUevent_st *;
using CUjit_option = int;

inline constexpr CUresult CUDA_SUCCESS = 0;
inline constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
inline constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;
inline constexpr CUresult CUDA_ERROR_NOT_READY = 600;
inline constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
inline constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
inline constexpr int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
inline constexpr int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
inline constexpr CUjit_option CU_JIT_ERROR_LOG_BUFFER = 5;
inline constexpr CUjit_option CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;
inline constexpr CUjit_option CU_JIT_OPTIMIZATION_LEVEL = 7;
inline constexpr unsigned CU_STREAM_NON_BLOCKING = 1;
inline constexpr unsigned CU_EVENT_DEFAULT = 0;
inline constexpr unsigned CU_EVENT_DISABLE_TIMING = 2;

/// The resolved entry points. Every one is required: a library that lacks
/// one is reported as an unusable driver rather than failing later.
struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDriverGetVersion)(int *);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuCtxPushCurrent)(CUcontext);
  CUresult (*cuCtxPopCurrent)(CUcontext *);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
  CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
  CUresult (*cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
  CUresult (*cuMemsetD16Async)(CUdeviceptr, unsigned short, size_t, CUstream);
  CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
  CUresult (*cuStreamCreate)(CUstream *, unsigned);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuStreamDestroy)(CUstream);
  CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned);
  CUresult (*cuEventCreate)(CUevent *, unsigned);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuEventQuery)(CUevent);
  CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent);
  CUresult (*cuEventDestroy)(CUevent);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleLoadDataEx)(CUmodule *, const void *, unsigned,
                                 CUjit_option *, void **);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, CUstream, void **,
                             void **);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);

  /// "CUDA_ERROR_OUT_OF_MEMORY (out of memory)"; copes with codes the driver
  /// does not know.
  std::string describe(CUresult result) const;
};

/// The driver, loaded and initialised (cuInit) on the first call. Throws
/// Error(MOE_UNAVAILABLE) starting "no CUDA driver (" when it cannot be
/// loaded, lacks an entry point or does not initialise; the outcome is
/// decided once per process.
const Driver &requireDriver();

/// The driver when an earlier requireDriver() succeeded, else null. Never
/// loads it (module destructors use this: a module that never ran must not
/// drag the driver in).
const Driver *loadedDriver();

/// The device the runtime runs on and its retained primary context.
struct Device {
  int ordinal = 0;
  CUdevice device = 0;
  CUcontext context = nullptr;
  int maxSharedOptin = 0;
  /// "NVIDIA H100 80GB HBM3 (device 0 of 1, compute capability 9.0, driver
  /// 13.0)"
  std::string description;
};

/// Device $MOE_CUDA_DEVICE (default 0) with its primary context retained
/// (kept for the life of the process: module images and cached memory live
/// in it). Throws Error(MOE_UNAVAILABLE) when there is no such device.
const Device &requireDevice();
/// The device of rank `rank` of an expert-parallel group: $MOE_CUDA_DEVICE
/// when set, else device `rank % deviceCount`, so that the ranks of a node
/// spread over its GPUs. Must come before anything opens the device with
/// requireDevice(); throws Error(MOE_INVALID_ARGUMENT) when the runtime
/// already runs on another device.
const Device &requireDeviceForRank(int64_t rank);
/// The device when an earlier requireDevice() succeeded, else null.
const Device *openedDevice();

/// Makes the runtime's context current on this thread for the scope and
/// restores the caller's afterwards, so that an application with its own
/// CUDA context is not disturbed.
class ContextScope {
public:
  explicit ContextScope(const Device &device);
  ~ContextScope();
  ContextScope(const ContextScope &) = delete;
  ContextScope &operator=(const ContextScope &) = delete;

private:
  bool pushed = false;
};

/// "cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)".
std::string callFailed(const char *call, CUresult result);

/// Throws Error(MOE_DEVICE_ERROR) with callFailed() when `result` is not
/// CUDA_SUCCESS.
void check(CUresult result, const char *call);

} // namespace moe::rt::cuda

#endif // MOE_RUNTIME_CUDADRIVER_H
