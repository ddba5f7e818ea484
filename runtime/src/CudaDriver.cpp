//===- CudaDriver.cpp - dlopen of the CUDA driver, device selection -------===//

#include "CudaDriver.h"

#include "Error.h"

#include <atomic>
#include <cstdlib>
#include <dlfcn.h>
#include <mutex>

namespace moe::rt::cuda {

namespace {

struct DriverState {
  Driver driver{};
  bool ok = false;
  std::string problem; // why there is no usable driver
};

// Resolves `name` (and, when it is missing, `fallback`) into `slot`.
// Returns false when neither exists.
template <typename Fn>
bool resolve(void *lib, Fn &slot, const char *name,
             const char *fallback = nullptr) {
  void *sym = dlsym(lib, name);
  if (!sym && fallback)
    sym = dlsym(lib, fallback);
  slot = reinterpret_cast<Fn>(sym);
  return sym != nullptr;
}

void loadDriver(DriverState &s) {
  const char *override = std::getenv("MOE_CUDA_DRIVER");
  bool overridden = override && *override;
  std::string path = overridden ? override : "libcuda.so.1";
  std::string what = overridden ? path + " (MOE_CUDA_DRIVER)" : path;
  dlerror();
  // The handle is never closed: entry points stay valid for the process.
  void *lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char *err = dlerror();
    s.problem = "no CUDA driver (" + what + " not found" +
                (err ? std::string(": ") + err : std::string()) + ")";
    return;
  }
  Driver &d = s.driver;
  std::string missing;
  auto need = [&](bool found, const char *name) {
    if (!found)
      missing += (missing.empty() ? "" : ", ") + std::string(name);
  };
#define MOE_CU(field, symbol) need(resolve(lib, d.field, symbol), symbol)
  MOE_CU(cuInit, "cuInit");
  MOE_CU(cuDriverGetVersion, "cuDriverGetVersion");
  MOE_CU(cuGetErrorName, "cuGetErrorName");
  MOE_CU(cuGetErrorString, "cuGetErrorString");
  MOE_CU(cuDeviceGetCount, "cuDeviceGetCount");
  MOE_CU(cuDeviceGet, "cuDeviceGet");
  MOE_CU(cuDeviceGetName, "cuDeviceGetName");
  MOE_CU(cuDeviceGetAttribute, "cuDeviceGetAttribute");
  MOE_CU(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  MOE_CU(cuCtxPushCurrent, "cuCtxPushCurrent_v2");
  MOE_CU(cuCtxPopCurrent, "cuCtxPopCurrent_v2");
  MOE_CU(cuMemAlloc, "cuMemAlloc_v2");
  MOE_CU(cuMemFree, "cuMemFree_v2");
  MOE_CU(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  MOE_CU(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
  MOE_CU(cuMemcpyAsync, "cuMemcpyAsync");
  MOE_CU(cuMemsetD8Async, "cuMemsetD8Async");
  MOE_CU(cuMemsetD16Async, "cuMemsetD16Async");
  MOE_CU(cuMemsetD32Async, "cuMemsetD32Async");
  MOE_CU(cuStreamCreate, "cuStreamCreate");
  MOE_CU(cuStreamSynchronize, "cuStreamSynchronize");
  MOE_CU(cuStreamDestroy, "cuStreamDestroy_v2");
  MOE_CU(cuStreamWaitEvent, "cuStreamWaitEvent");
  MOE_CU(cuEventCreate, "cuEventCreate");
  MOE_CU(cuEventRecord, "cuEventRecord");
  MOE_CU(cuEventSynchronize, "cuEventSynchronize");
  MOE_CU(cuEventQuery, "cuEventQuery");
  MOE_CU(cuEventDestroy, "cuEventDestroy_v2");
  MOE_CU(cuModuleLoadData, "cuModuleLoadData");
  MOE_CU(cuModuleLoadDataEx, "cuModuleLoadDataEx");
  MOE_CU(cuModuleUnload, "cuModuleUnload");
  MOE_CU(cuModuleGetFunction, "cuModuleGetFunction");
  MOE_CU(cuLaunchKernel, "cuLaunchKernel");
  MOE_CU(cuFuncSetAttribute, "cuFuncSetAttribute");
#undef MOE_CU
  // CUDA 12.8 added the _v2 (what cuda.h now maps the name to); older
  // drivers only have the original, with the same signature.
  need(resolve(lib, d.cuEventElapsedTime, "cuEventElapsedTime_v2",
               "cuEventElapsedTime"),
       "cuEventElapsedTime");
  if (!missing.empty()) {
    s.problem = "no CUDA driver (" + what +
                " is not a usable CUDA driver: it lacks " + missing + ")";
    return;
  }
  if (CUresult r = d.cuInit(0); r != CUDA_SUCCESS) {
    s.problem = "no CUDA driver (" + what +
                " loaded but cuInit failed: " + d.describe(r) + ")";
    return;
  }
  s.ok = true;
}

// Set once the driver loaded and initialised; lets loadedDriver() answer
// without triggering a load.
std::atomic<const Driver *> loaded{nullptr};

DriverState &driverState() {
  static DriverState state;
  static std::once_flag once;
  std::call_once(once, [] {
    loadDriver(state);
    if (state.ok)
      loaded.store(&state.driver, std::memory_order_release);
  });
  return state;
}

struct DeviceState {
  std::mutex mutex;
  bool tried = false;
  bool fromEnv = false; // the ordinal came from MOE_CUDA_DEVICE
  int count = 0;        // devices the driver reports
  Device device;
  std::string problem;
  moe_status status = MOE_OK;
};

DeviceState &deviceState() {
  static DeviceState state;
  return state;
}

// Opens $MOE_CUDA_DEVICE, else device `rank % count` for a rank >= 0, else
// device 0.
void openDevice(const Driver &d, DeviceState &s, int64_t rank) {
  int ordinal = 0;
  if (const char *env = std::getenv("MOE_CUDA_DEVICE"); env && *env) {
    s.fromEnv = true;
    char *end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (*end != '\0' || v < 0 || v > 1 << 20) {
      s.status = MOE_INVALID_ARGUMENT;
      s.problem =
          std::string("MOE_CUDA_DEVICE='") + env + "' is not a device number";
      return;
    }
    ordinal = static_cast<int>(v);
  }
  int count = 0;
  if (CUresult r = d.cuDeviceGetCount(&count); r != CUDA_SUCCESS) {
    s.status = MOE_UNAVAILABLE;
    s.problem = "no CUDA device (" + callFailed("cuDeviceGetCount", r) + ")";
    return;
  }
  s.count = count;
  if (!s.fromEnv && rank >= 0 && count > 0)
    ordinal = static_cast<int>(rank % count);
  if (ordinal >= count) {
    s.status = MOE_UNAVAILABLE;
    s.problem = count == 0 ? std::string("no CUDA device (the driver reports "
                                         "none)")
                           : "no CUDA device " + std::to_string(ordinal) +
                                 " (MOE_CUDA_DEVICE; the driver reports " +
                                 std::to_string(count) + ")";
    return;
  }
  Device &dev = s.device;
  dev.ordinal = ordinal;
  auto fail = [&](const char *call, CUresult r) {
    s.status = MOE_DEVICE_ERROR;
    s.problem = "cannot open CUDA device " + std::to_string(ordinal) + ": " +
                callFailed(call, r);
  };
  if (CUresult r = d.cuDeviceGet(&dev.device, ordinal); r != CUDA_SUCCESS)
    return fail("cuDeviceGet", r);
  char name[256] = {0};
  if (CUresult r = d.cuDeviceGetName(name, sizeof name - 1, dev.device);
      r != CUDA_SUCCESS)
    return fail("cuDeviceGetName", r);
  int major = 0, minor = 0, version = 0;
  if (CUresult r = d.cuDeviceGetAttribute(
          &major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev.device);
      r != CUDA_SUCCESS)
    return fail("cuDeviceGetAttribute", r);
  if (CUresult r = d.cuDeviceGetAttribute(
          &minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev.device);
      r != CUDA_SUCCESS)
    return fail("cuDeviceGetAttribute", r);
  if (CUresult r = d.cuDeviceGetAttribute(
          &dev.maxSharedOptin,
          CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev.device);
      r != CUDA_SUCCESS)
    return fail("cuDeviceGetAttribute", r);
  if (CUresult r = d.cuDriverGetVersion(&version); r != CUDA_SUCCESS)
    return fail("cuDriverGetVersion", r);
  if (CUresult r = d.cuDevicePrimaryCtxRetain(&dev.context, dev.device);
      r != CUDA_SUCCESS)
    return fail("cuDevicePrimaryCtxRetain", r);
  dev.description = std::string(name) + " (device " + std::to_string(ordinal) +
                    " of " + std::to_string(count) + ", compute capability " +
                    std::to_string(major) + "." + std::to_string(minor) +
                    ", driver " + std::to_string(version / 1000) + "." +
                    std::to_string(version % 1000 / 10) + ")";
}

} // namespace

std::string Driver::describe(CUresult result) const {
  const char *name = nullptr, *text = nullptr;
  if (cuGetErrorName(result, &name) != CUDA_SUCCESS || !name)
    name = nullptr;
  if (cuGetErrorString(result, &text) != CUDA_SUCCESS || !text)
    text = nullptr;
  std::string s = name ? name : "CUresult " + std::to_string(result);
  if (text)
    s += std::string(" (") + text + ")";
  return s;
}

const Driver &requireDriver() {
  DriverState &s = driverState();
  if (!s.ok)
    fail(MOE_UNAVAILABLE, s.problem);
  return s.driver;
}

const Driver *loadedDriver() { return loaded.load(std::memory_order_acquire); }

const Device &requireDevice() {
  const Driver &d = requireDriver();
  DeviceState &s = deviceState();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.tried) {
    s.tried = true;
    openDevice(d, s, /*rank=*/-1);
  }
  if (s.status != MOE_OK)
    fail(s.status, s.problem);
  return s.device;
}

const Device &requireDeviceForRank(int64_t rank) {
  const Driver &d = requireDriver();
  DeviceState &s = deviceState();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.tried) {
    s.tried = true;
    openDevice(d, s, rank);
  }
  if (s.status != MOE_OK)
    fail(s.status, s.problem);
  // Module images and cached memory live in the context of the device
  // opened first; a rank cannot move to another one afterwards.
  if (!s.fromEnv && s.count > 0 && s.device.ordinal != rank % s.count)
    fail(MOE_INVALID_ARGUMENT, "rank " + std::to_string(rank) +
                                   " would use CUDA device " +
                                   std::to_string(rank % s.count) +
                                   " but the runtime already runs on device " +
                                   std::to_string(s.device.ordinal) +
                                   " (set MOE_CUDA_DEVICE to choose one)");
  return s.device;
}

const Device *openedDevice() {
  DeviceState &s = deviceState();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.tried && s.status == MOE_OK ? &s.device : nullptr;
}

ContextScope::ContextScope(const Device &device) {
  check(requireDriver().cuCtxPushCurrent(device.context),
        "cuCtxPushCurrent_v2");
  pushed = true;
}

ContextScope::~ContextScope() {
  if (!pushed)
    return;
  CUcontext popped = nullptr;
  (void)loadedDriver()->cuCtxPopCurrent(&popped);
}

std::string callFailed(const char *call, CUresult result) {
  const Driver *d = loadedDriver();
  return std::string(call) + " failed: " +
         (d ? d->describe(result) : "CUresult " + std::to_string(result));
}

void check(CUresult result, const char *call) {
  if (result != CUDA_SUCCESS)
    fail(MOE_DEVICE_ERROR, callFailed(call, result));
}

} // namespace moe::rt::cuda
