//===- CudaBackend.cpp - runs modules with target "cuda" ------------------===//
//
// A cuda module is a host shared object like a CPU module; its entries take
// memref descriptors of device memory and drive the GPU through MLIR's GPU
// runtime-wrapper ABI (mgpuModuleLoad, mgpuLaunchKernel, mgpuMemAlloc, ...),
// which `gpu-to-llvm` lowers gpu.launch_func and friends to. This file
// provides that ABI on top of the driver API (CudaDriver.cpp), so a module
// needs nothing but libmoe_runtime.so, and the backend that moves tensors
// between host and device around an entry call. docs/Runtime.md is the
// contract; the points that shape the code:
//
//  * Module images are registered by the module's global constructors at
//    dlopen time, possibly on a machine without a driver, so loading them
//    into the driver waits for the first mgpuModuleGetFunction.
//  * The generated code cannot see errors (the mgpu* functions return
//    void or a handle). The first failure inside an invocation is kept,
//    later mgpu* calls of that invocation do nothing, and the backend turns
//    the failure into the Error of moe_invoke once the entry returns.
//  * All work of an invocation goes to one stream: mgpuStreamCreate hands
//    out the invocation's stream instead of a new one.
//
//===----------------------------------------------------------------------===//

#include "Backend.h"
#include "CudaDriver.h"
#include "Error.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

using namespace moe::rt;
using namespace moe::rt::cuda;

namespace {

//===----------------------------------------------------------------------===//
// Device memory
//===----------------------------------------------------------------------===//

/// Plain cuMemAlloc blocks, cached by (rounded) size: cuMemAlloc and
/// cuMemFree synchronise with the device and cost tens of microseconds,
/// which would dominate the timing of small layers. A block is only cached
/// once no queued work can still use it (the owner synchronised its stream
/// first), so any stream may take it. Cached blocks are freed when the last
/// cuda module is unloaded, when an allocation runs out of memory, and
/// beyond a cap.
class MemoryPool {
public:
  /// A block of at least `bytes` (> 0). `forModule` marks blocks the module
  /// may give back with mgpuMemFree (not the backend's argument buffers).
  CUresult allocate(const Driver &d, size_t bytes, bool forModule,
                    CUdeviceptr *out) {
    size_t size = roundUp(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = idle.find(size);
      if (it != idle.end() && !it->second.empty()) {
        *out = it->second.back();
        it->second.pop_back();
        idleBytes -= size;
        live[*out] = {size, forModule};
        return CUDA_SUCCESS;
      }
    }
    CUresult r = d.cuMemAlloc(out, size);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) {
      trim(d);
      r = d.cuMemAlloc(out, size);
    }
    if (r != CUDA_SUCCESS)
      return r;
    std::lock_guard<std::mutex> lock(mutex);
    live[*out] = {size, forModule};
    return CUDA_SUCCESS;
  }

  /// Whether `p` is a block allocate() handed to the module and that has
  /// not been returned.
  bool ownedByModule(CUdeviceptr p) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = live.find(p);
    return it != live.end() && it->second.forModule;
  }

  /// Takes back a block that no queued work uses any more.
  void recycle(const Driver &d, CUdeviceptr p) {
    std::unique_lock<std::mutex> lock(mutex);
    auto it = live.find(p);
    if (it == live.end())
      return;
    size_t size = it->second.size;
    live.erase(it);
    if (idleBytes + size <= kMaxIdleBytes) {
      idle[size].push_back(p);
      idleBytes += size;
      return;
    }
    lock.unlock();
    (void)d.cuMemFree(p);
  }

  /// Frees a block now (cuMemFree waits for work that uses it).
  CUresult release(const Driver &d, CUdeviceptr p) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      live.erase(p);
    }
    return d.cuMemFree(p);
  }

  /// Frees every cached block.
  void trim(const Driver &d) {
    std::unordered_map<size_t, std::vector<CUdeviceptr>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex);
      blocks.swap(idle);
      idleBytes = 0;
    }
    for (auto &[size, ptrs] : blocks)
      for (CUdeviceptr p : ptrs)
        (void)d.cuMemFree(p);
  }

private:
  // Sizes differing by a few bytes (a token more or less) share blocks.
  static size_t roundUp(size_t bytes) { return (bytes + 511) / 512 * 512; }
  static constexpr size_t kMaxIdleBytes = size_t(4) << 30;

  std::mutex mutex;
  struct Block {
    size_t size;
    bool forModule;
  };
  std::unordered_map<CUdeviceptr, Block> live;
  std::unordered_map<size_t, std::vector<CUdeviceptr>> idle;
  size_t idleBytes = 0;
};

MemoryPool &memoryPool() {
  // Never destroyed: module destructors may run after static destruction.
  static MemoryPool *pool = new MemoryPool;
  return *pool;
}

/// Streams for invocations, reused: creating one per call costs more than
/// small layers take to run.
class StreamPool {
public:
  CUstream acquire(const Driver &d) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!idle.empty()) {
        CUstream s = idle.back();
        idle.pop_back();
        return s;
      }
    }
    CUstream s = nullptr;
    check(d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    return s;
  }
  void release(CUstream s) {
    std::lock_guard<std::mutex> lock(mutex);
    idle.push_back(s);
  }

private:
  std::mutex mutex;
  std::vector<CUstream> idle;
};

StreamPool &streamPool() {
  static StreamPool *pool = new StreamPool;
  return *pool;
}

//===----------------------------------------------------------------------===//
// Invocation state seen by the mgpu* functions
//===----------------------------------------------------------------------===//

/// One call of an entry: its stream and its first failure.
struct Invocation {
  const Driver &driver;
  const Device &device;
  CUstream stream;
  moe_status status = MOE_OK;
  std::string error;
  /// Blocks given to mgpuMemFree; recycled once the stream is synchronised.
  std::vector<CUdeviceptr> freed;
};

thread_local Invocation *currentInvocation = nullptr;

/// Records a failure: the first of an invocation is kept for moe_invoke;
/// outside an invocation (module constructors and destructors) there is
/// nobody to return it to, so it goes to stderr.
void report(moe_status status, const std::string &message) {
  if (Invocation *inv = currentInvocation) {
    if (inv->status == MOE_OK) {
      inv->status = status;
      inv->error = message;
    }
    return;
  }
  std::fprintf(stderr, "moe runtime: error: %s\n", message.c_str());
}

/// "cuLaunchKernel of kernel 'k' failed: CUDA_ERROR_... (...)"
std::string failure(const char *call, const std::string &detail,
                    CUresult result) {
  const Driver *d = loadedDriver();
  return std::string(call) + detail + " failed: " +
         (d ? d->describe(result) : "CUresult " + std::to_string(result));
}

/// Checks a driver call made by mgpu function `fn`; reports a failure.
/// `detail()` says what the call was doing; it is only built on failure,
/// since launches and copies are on the hot path.
template <typename Detail>
bool ok(CUresult result, const char *fn, const char *call, Detail &&detail) {
  if (result == CUDA_SUCCESS)
    return true;
  report(MOE_DEVICE_ERROR,
         std::string(fn) + ": " + failure(call, detail(), result));
  return false;
}

bool ok(CUresult result, const char *fn, const char *call) {
  return ok(result, fn, call, [] { return std::string(); });
}

/// Runs `body(driver)` with the runtime's context current. Inside an
/// invocation that already holds; outside one the driver and device are
/// opened on demand. Does nothing once the invocation has failed. No
/// exception may reach the generated code that called `fn`.
template <typename Body> void withDriver(const char *fn, Body &&body) noexcept {
  try {
    if (Invocation *inv = currentInvocation) {
      if (inv->status == MOE_OK)
        body(inv->driver);
      return;
    }
    const Device &device = requireDevice();
    ContextScope scope(device);
    body(requireDriver());
  } catch (const Error &e) {
    report(e.status, std::string(fn) + ": " + e.what());
  } catch (const std::exception &e) {
    report(MOE_INTERNAL, std::string(fn) + ": " + e.what());
  }
}

/// Runs a release (`body(driver)` returns the driver's result) even after
/// the invocation has failed, since it cannot make anything worse and skipping
/// it would leak; its own failure is reported only while nothing else has
/// failed. Outside an invocation it needs a driver and device already in
/// use (there is nothing to release otherwise).
template <typename Body>
void release(const char *fn, const char *call, Body &&body) {
  if (Invocation *inv = currentInvocation) {
    CUresult r = body(inv->driver);
    if (inv->status == MOE_OK)
      ok(r, fn, call);
    return;
  }
  const Driver *d = loadedDriver();
  const Device *device = openedDevice();
  if (!d || !device)
    return;
  try {
    ContextScope scope(*device);
    ok(body(*d), fn, call);
  } catch (const Error &e) {
    report(e.status, std::string(fn) + ": " + e.what());
  }
}

std::string hex(const void *p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

CUdeviceptr devicePtr(const void *p) {
  return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p));
}

void *hostPtr(CUdeviceptr p) {
  return reinterpret_cast<void *>(static_cast<uintptr_t>(p));
}

//===----------------------------------------------------------------------===//
// GPU module images
//===----------------------------------------------------------------------===//

/// A module image registered by mgpuModuleLoad/LoadJIT; the driver module
/// is created on first use.
struct GpuModule {
  std::string image; // PTX: its text (c_str() is NUL-terminated)
  bool isPtx = false;
  int optLevel = 0;
  std::mutex mutex;
  CUmodule module = nullptr;
  std::unordered_map<std::string, CUfunction> functions;
};

/// Kernel names by function handle, for launch failure messages.
std::mutex kernelNamesMutex;
std::unordered_map<CUfunction, std::string> &kernelNames() {
  static auto *names = new std::unordered_map<CUfunction, std::string>;
  return *names;
}

std::string kernelName(CUfunction f) {
  std::lock_guard<std::mutex> lock(kernelNamesMutex);
  auto it = kernelNames().find(f);
  return it == kernelNames().end() ? "<unknown>" : it->second;
}

// Creates the driver module of `m` (m->mutex held). Reports and returns
// false on failure; a later call tries again.
bool loadImage(const Driver &d, GpuModule &m) {
  if (m.module)
    return true;
  if (!m.isPtx)
    return ok(d.cuModuleLoadData(&m.module, m.image.data()),
              "mgpuModuleGetFunction", "cuModuleLoadData", [&] {
                return " of a " + std::to_string(m.image.size()) +
                       "-byte GPU binary";
              });
  // The JIT's error log says what is wrong with the PTX; the driver's
  // error code alone does not.
  char log[16384] = {0};
  CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER,
                            CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                            CU_JIT_OPTIMIZATION_LEVEL};
  void *values[] = {log, reinterpret_cast<void *>(uintptr_t(sizeof log - 1)),
                    reinterpret_cast<void *>(uintptr_t(m.optLevel))};
  CUresult r =
      d.cuModuleLoadDataEx(&m.module, m.image.c_str(), 3, options, values);
  if (r == CUDA_SUCCESS)
    return true;
  m.module = nullptr;
  std::string detail = " of the module's PTX (JIT, optimisation level " +
                       std::to_string(m.optLevel) + ")";
  std::string message =
      "mgpuModuleGetFunction: " + failure("cuModuleLoadDataEx", detail, r);
  if (log[0])
    message += "; JIT log: " + std::string(log);
  report(MOE_DEVICE_ERROR, message);
  return false;
}

//===----------------------------------------------------------------------===//
// The backend
//===----------------------------------------------------------------------===//

// Cuda backends alive; the last one to go frees the cached device memory.
std::atomic<int> liveBackends{0};

/// The device side of one moe_invoke / moe_benchmark: context, stream and
/// buffers, released in reverse order (after the stream has drained, so
/// that cached blocks are never still in use).
class DeviceCall {
public:
  DeviceCall(const FunctionSpec &fn)
      : fn(fn), driver(open(fn, requireDriver)),
        device(open(fn, requireDevice)), scope(device),
        stream(streamPool().acquire(driver)) {}

  ~DeviceCall() {
    (void)driver.cuStreamSynchronize(stream);
    for (CUdeviceptr p : buffers)
      memoryPool().recycle(driver, p);
    streamPool().release(stream);
  }

  /// Device buffers for all arguments; inputs are copied in, outputs set to
  /// 0xFF bytes (NaN for floats) so that unwritten elements are visible
  /// rather than stale pool contents.
  void upload(const moe_tensor *inputs, const moe_tensor *outputs) {
    size_t nIn = fn.inputs.size(), nOut = fn.outputs.size();
    for (size_t i = 0; i < nIn + nOut; ++i) {
      const moe_tensor &t = i < nIn ? inputs[i] : outputs[i - nIn];
      size_t bytes = static_cast<size_t>(moe_tensor_byte_size(&t));
      CUdeviceptr p = 0;
      if (bytes > 0) {
        run(memoryPool().allocate(driver, bytes, /*forModule=*/false, &p),
            "cuMemAlloc_v2", [&] {
              return " of " + std::to_string(bytes) + " bytes for " +
                     argName(i);
            });
        buffers.push_back(p);
        if (i < nIn)
          run(driver.cuMemcpyHtoDAsync(p, t.data, bytes, stream),
              "cuMemcpyHtoDAsync_v2", [&] { return " of " + argName(i); });
        else
          run(driver.cuMemsetD8Async(p, 0xFF, bytes, stream), "cuMemsetD8Async",
              [&] { return " of " + argName(i); });
      }
      pointers.push_back(hostPtr(p));
    }
  }

  /// Copies the outputs back to the host and waits for them.
  void download(moe_tensor *outputs) {
    size_t nIn = fn.inputs.size();
    for (size_t i = 0; i < fn.outputs.size(); ++i) {
      size_t bytes = static_cast<size_t>(moe_tensor_byte_size(&outputs[i]));
      if (bytes > 0)
        run(driver.cuMemcpyDtoHAsync(
                outputs[i].data, devicePtr(pointers[nIn + i]), bytes, stream),
            "cuMemcpyDtoHAsync_v2", [&] { return " of " + argName(nIn + i); });
    }
    run(driver.cuStreamSynchronize(stream), "cuStreamSynchronize",
        [] { return std::string(" after copying the outputs"); });
  }

  /// Calls the entry with the device descriptors and waits for its work.
  /// With events, records `start` before and `end` after it and returns the
  /// device time between them in milliseconds.
  double call(Entry entry, Descriptors &descriptors, CUevent start = nullptr,
              CUevent end = nullptr) {
    if (start)
      run(driver.cuEventRecord(start, stream), "cuEventRecord");
    Invocation inv{driver, device, stream};
    Invocation *outer = currentInvocation;
    currentInvocation = &inv;
    int32_t rc = entry(descriptors.args());
    currentInvocation = outer;
    CUresult recorded = CUDA_SUCCESS;
    if (end && inv.status == MOE_OK)
      recorded = driver.cuEventRecord(end, stream);
    // Drain before recycling the blocks the entry freed, failure or not.
    CUresult synced = driver.cuStreamSynchronize(stream);
    for (CUdeviceptr p : inv.freed)
      memoryPool().recycle(driver, p);
    if (inv.status != MOE_OK)
      fail(inv.status, "function '" + fn.name + "' on CUDA " +
                           device.description + ": " + inv.error);
    if (rc != 0)
      fail(MOE_INTERNAL, "function '" + fn.name + "': entry '" + fn.entry +
                             "' failed with code " + std::to_string(rc));
    // Kernel faults surface asynchronously, at the next synchronisation.
    run(synced, "cuStreamSynchronize", [] {
      return std::string(" after the entry (an error of a kernel it "
                         "launched)");
    });
    run(recorded, "cuEventRecord");
    float ms = 0;
    if (start && end)
      run(driver.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime");
    return ms;
  }

  const std::vector<void *> &devicePointers() const { return pointers; }
  const Driver &drv() const { return driver; }
  CUstream invocationStream() const { return stream; }
  const Device &dev() const { return device; }

  /// Throws Error(MOE_DEVICE_ERROR) when a driver call of the backend
  /// itself fails; `detail()` says what the call was doing.
  template <typename Detail>
  void run(CUresult result, const char *call, Detail &&detail) {
    if (result != CUDA_SUCCESS)
      fail(MOE_DEVICE_ERROR, "function '" + fn.name + "' on CUDA " +
                                 device.description + ": " +
                                 failure(call, detail(), result));
  }
  void run(CUresult result, const char *call) {
    run(result, call, [] { return std::string(); });
  }

private:
  // The driver or device, or an Error naming the function.
  template <typename T> static T open(const FunctionSpec &fn, T (*get)()) {
    try {
      return get();
    } catch (const Error &e) {
      fail(e.status, "function '" + fn.name + "' targets CUDA: " + e.what());
    }
  }

  std::string argName(size_t i) const {
    size_t nIn = fn.inputs.size();
    return i < nIn
               ? "input " + std::to_string(i) + " '" + fn.inputs[i].name + "'"
               : "output " + std::to_string(i - nIn) + " '" +
                     fn.outputs[i - nIn].name + "'";
  }

  const FunctionSpec &fn;
  const Driver &driver;
  const Device &device;
  ContextScope scope;
  CUstream stream;
  std::vector<CUdeviceptr> buffers;
  std::vector<void *> pointers;
};

/// A CUDA event destroyed with the scope.
struct Event {
  const Driver &driver;
  CUevent event = nullptr;
  Event(DeviceCall &call) : driver(call.drv()) {
    call.run(driver.cuEventCreate(&event, CU_EVENT_DEFAULT), "cuEventCreate");
  }
  ~Event() { (void)driver.cuEventDestroy(event); }
};

class CudaBackend final : public Backend {
public:
  CudaBackend() { ++liveBackends; }

  ~CudaBackend() override {
    if (--liveBackends != 0)
      return;
    const Driver *d = loadedDriver();
    const Device *device = openedDevice();
    if (!d || !device)
      return;
    try {
      ContextScope scope(*device);
      memoryPool().trim(*d);
    } catch (const Error &) {
      // Unloading must not fail; the memory goes with the context.
    }
  }

  // The entries are host functions, as for the CPU.
  void *resolve(void *dlHandle, const FunctionSpec &fn) override {
    return reinterpret_cast<void *>(resolveEntry(dlHandle, fn));
  }

  void invoke(const FunctionSpec &fn, void *resolved, const moe_tensor *inputs,
              moe_tensor *outputs) override {
    DeviceCall call(fn);
    call.upload(inputs, outputs);
    Descriptors descriptors(fn, inputs, outputs, call.devicePointers());
    call.call(reinterpret_cast<Entry>(resolved), descriptors);
    call.download(outputs);
  }

  // Inputs go to the device once; each timed run is bracketed by events on
  // the invocation stream, so host-side transfers and launch latency before
  // the first kernel are not counted but everything the entry enqueues is.
  void benchmark(const FunctionSpec &fn, void *resolved,
                 const moe_tensor *inputs, moe_tensor *outputs, int64_t warmup,
                 int64_t iterations, double *timesMs,
                 moe_benchmark_info *info) override {
    DeviceCall call(fn);
    call.upload(inputs, outputs);
    Descriptors descriptors(fn, inputs, outputs, call.devicePointers());
    Entry entry = reinterpret_cast<Entry>(resolved);
    for (int64_t i = 0; i < warmup; ++i)
      call.call(entry, descriptors);
    Event start(call), end(call);
    for (int64_t i = 0; i < iterations; ++i)
      timesMs[i] = call.call(entry, descriptors, start.event, end.event);
    call.download(outputs);
    if (info) {
      info->clock = "cuda_events";
      info->device = call.dev().description.c_str();
    }
  }
};

} // namespace

std::unique_ptr<Backend> moe::rt::createCudaBackend() {
  return std::make_unique<CudaBackend>();
}

//===----------------------------------------------------------------------===//
// MLIR's GPU runtime-wrapper ABI (mlir/lib/ExecutionEngine/
// CudaRuntimeWrappers.cpp), as called by code lowered with gpu-to-llvm.
//===----------------------------------------------------------------------===//

#define MGPU_API extern "C" __attribute__((visibility("default")))

// Registration only records the image: these run in the module's
// constructors, before any invocation and maybe without a driver.
MGPU_API void *mgpuModuleLoad(void *data, uint64_t gpuBlobSize) {
  try {
    auto *m = new GpuModule;
    m->image.assign(static_cast<const char *>(data), gpuBlobSize);
    return m;
  } catch (const std::exception &) {
    report(MOE_INTERNAL, "mgpuModuleLoad: out of memory");
    return nullptr;
  }
}

MGPU_API void *mgpuModuleLoadJIT(void *data, int32_t optLevel) {
  try {
    auto *m = new GpuModule;
    m->image = static_cast<const char *>(data);
    m->isPtx = true;
    // The driver accepts levels 0 to 4.
    m->optLevel = optLevel < 0 ? 0 : optLevel > 4 ? 4 : optLevel;
    return m;
  } catch (const std::exception &) {
    report(MOE_INTERNAL, "mgpuModuleLoadJIT: out of memory");
    return nullptr;
  }
}

MGPU_API void mgpuModuleUnload(void *module) {
  auto *m = static_cast<GpuModule *>(module);
  if (!m)
    return;
  {
    std::lock_guard<std::mutex> lock(kernelNamesMutex);
    for (auto &[name, f] : m->functions)
      kernelNames().erase(f);
  }
  // Runs from the module's destructors: quietly, and only when a driver
  // module was ever created.
  const Driver *d = loadedDriver();
  const Device *device = openedDevice();
  if (m->module && d && device) {
    if (d->cuCtxPushCurrent(device->context) == CUDA_SUCCESS) {
      (void)d->cuModuleUnload(m->module);
      CUcontext popped;
      (void)d->cuCtxPopCurrent(&popped);
    }
  }
  delete m;
}

MGPU_API void *mgpuModuleGetFunction(void *module, const char *name) {
  auto *m = static_cast<GpuModule *>(module);
  CUfunction function = nullptr;
  if (!m || !name) {
    if (!currentInvocation || currentInvocation->status == MOE_OK)
      report(MOE_INVALID_MODULE,
             "mgpuModuleGetFunction: called with a null module or name");
    return nullptr;
  }
  withDriver("mgpuModuleGetFunction", [&](const Driver &d) {
    std::lock_guard<std::mutex> lock(m->mutex);
    if (!loadImage(d, *m))
      return;
    auto it = m->functions.find(name);
    if (it != m->functions.end()) {
      function = it->second;
      return;
    }
    if (!ok(d.cuModuleGetFunction(&function, m->module, name),
            "mgpuModuleGetFunction", "cuModuleGetFunction",
            [&] { return std::string(" of kernel '") + name + "'"; })) {
      function = nullptr;
      return;
    }
    m->functions.emplace(name, function);
    std::lock_guard<std::mutex> namesLock(kernelNamesMutex);
    kernelNames()[function] = name;
  });
  return function;
}

MGPU_API void mgpuLaunchKernel(void *function, int64_t gridX, int64_t gridY,
                               int64_t gridZ, int64_t blockX, int64_t blockY,
                               int64_t blockZ, int32_t smemBytes, void *stream,
                               void **params, void **extra,
                               uint64_t /*paramsCount*/) {
  withDriver("mgpuLaunchKernel", [&](const Driver &d) {
    auto f = static_cast<CUfunction>(function);
    // Only built for messages: launches are the hot path.
    auto kernel = [&] { return f ? "'" + kernelName(f) + "'" : "<null>"; };
    auto shape = [&] {
      return " (grid " + std::to_string(gridX) + "x" + std::to_string(gridY) +
             "x" + std::to_string(gridZ) + ", block " + std::to_string(blockX) +
             "x" + std::to_string(blockY) + "x" + std::to_string(blockZ) +
             ", " + std::to_string(smemBytes) +
             " bytes of dynamic shared memory)";
    };
    if (!f) {
      report(MOE_INVALID_MODULE,
             "mgpuLaunchKernel: null kernel function" + shape());
      return;
    }
    // A grid without blocks runs no thread: the kernels of loops over a
    // dynamic range (gpu.launch from scf.parallel) get one when the range is
    // empty, e.g. on a rank that receives no rows. CUDA would reject it.
    if ((gridX == 0 || gridY == 0 || gridZ == 0) && gridX >= 0 && gridY >= 0 &&
        gridZ >= 0)
      return;
    for (int64_t v : {gridX, gridY, gridZ, blockX, blockY, blockZ})
      if (v < 1 || v > INT32_MAX) {
        report(MOE_INVALID_MODULE, "mgpuLaunchKernel: kernel " + kernel() +
                                       ": invalid launch dimensions" + shape());
        return;
      }
    if (smemBytes < 0) {
      report(MOE_INVALID_MODULE, "mgpuLaunchKernel: kernel " + kernel() +
                                     ": negative shared memory size" + shape());
      return;
    }
    // Beyond the 48 KiB default a kernel must opt in to more.
    if (smemBytes > 48 * 1024) {
      const Device &device =
          currentInvocation ? currentInvocation->device : requireDevice();
      if (smemBytes > device.maxSharedOptin) {
        report(MOE_DEVICE_ERROR,
               "mgpuLaunchKernel: kernel " + kernel() + " needs " +
                   std::to_string(smemBytes) +
                   " bytes of shared memory but the device allows " +
                   std::to_string(device.maxSharedOptin));
        return;
      }
      if (!ok(d.cuFuncSetAttribute(
                  f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                  smemBytes),
              "mgpuLaunchKernel", "cuFuncSetAttribute",
              [&] { return " (dynamic shared memory) of kernel " + kernel(); }))
        return;
    }
    ok(d.cuLaunchKernel(f, unsigned(gridX), unsigned(gridY), unsigned(gridZ),
                        unsigned(blockX), unsigned(blockY), unsigned(blockZ),
                        unsigned(smemBytes), static_cast<CUstream>(stream),
                        params, extra),
       "mgpuLaunchKernel", "cuLaunchKernel",
       [&] { return " of kernel " + kernel() + shape(); });
  });
}

MGPU_API void *mgpuStreamCreate(void) {
  if (Invocation *inv = currentInvocation)
    return inv->stream;
  CUstream stream = nullptr;
  withDriver("mgpuStreamCreate", [&](const Driver &d) {
    if (!ok(d.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING),
            "mgpuStreamCreate", "cuStreamCreate"))
      stream = nullptr;
  });
  return stream;
}

MGPU_API void mgpuStreamDestroy(void *stream) {
  Invocation *inv = currentInvocation;
  if (!stream || (inv && stream == inv->stream))
    return;
  release("mgpuStreamDestroy", "cuStreamDestroy_v2", [&](const Driver &d) {
    return d.cuStreamDestroy(static_cast<CUstream>(stream));
  });
}

MGPU_API void mgpuStreamSynchronize(void *stream) {
  withDriver("mgpuStreamSynchronize", [&](const Driver &d) {
    ok(d.cuStreamSynchronize(static_cast<CUstream>(stream)),
       "mgpuStreamSynchronize", "cuStreamSynchronize");
  });
}

MGPU_API void mgpuStreamWaitEvent(void *stream, void *event) {
  withDriver("mgpuStreamWaitEvent", [&](const Driver &d) {
    ok(d.cuStreamWaitEvent(static_cast<CUstream>(stream),
                           static_cast<CUevent>(event), 0),
       "mgpuStreamWaitEvent", "cuStreamWaitEvent");
  });
}

MGPU_API void *mgpuEventCreate(void) {
  CUevent event = nullptr;
  withDriver("mgpuEventCreate", [&](const Driver &d) {
    if (!ok(d.cuEventCreate(&event, CU_EVENT_DISABLE_TIMING), "mgpuEventCreate",
            "cuEventCreate"))
      event = nullptr;
  });
  return event;
}

MGPU_API void mgpuEventDestroy(void *event) {
  if (!event)
    return;
  release("mgpuEventDestroy", "cuEventDestroy_v2", [&](const Driver &d) {
    return d.cuEventDestroy(static_cast<CUevent>(event));
  });
}

MGPU_API void mgpuEventSynchronize(void *event) {
  withDriver("mgpuEventSynchronize", [&](const Driver &d) {
    ok(d.cuEventSynchronize(static_cast<CUevent>(event)),
       "mgpuEventSynchronize", "cuEventSynchronize");
  });
}

MGPU_API void mgpuEventRecord(void *event, void *stream) {
  withDriver("mgpuEventRecord", [&](const Driver &d) {
    ok(d.cuEventRecord(static_cast<CUevent>(event),
                       static_cast<CUstream>(stream)),
       "mgpuEventRecord", "cuEventRecord");
  });
}

MGPU_API void *mgpuMemAlloc(uint64_t sizeBytes, void * /*stream*/,
                            bool isHostShared) {
  void *result = nullptr;
  withDriver("mgpuMemAlloc", [&](const Driver &d) {
    if (isHostShared) {
      report(MOE_INVALID_MODULE,
             "mgpuMemAlloc: host-shared memory (gpu.alloc host_shared) is "
             "not supported by the moe runtime");
      return;
    }
    if (sizeBytes == 0)
      return;
    CUdeviceptr p = 0;
    if (ok(memoryPool().allocate(d, sizeBytes, /*forModule=*/true, &p),
           "mgpuMemAlloc", "cuMemAlloc_v2",
           [&] { return " of " + std::to_string(sizeBytes) + " bytes"; }))
      result = hostPtr(p);
  });
  return result;
}

MGPU_API void mgpuMemFree(void *ptr, void * /*stream*/) {
  if (!ptr)
    return;
  CUdeviceptr p = devicePtr(ptr);
  Invocation *inv = currentInvocation;
  if (!memoryPool().ownedByModule(p)) {
    if (!inv || inv->status == MOE_OK)
      report(MOE_INVALID_MODULE,
             "mgpuMemFree: " + hex(ptr) + " was not allocated by mgpuMemAlloc");
    return;
  }
  // Inside an invocation queued work may still use the block: it is
  // recycled after the invocation's stream has drained. Freeing is
  // cleanup, so it happens even after a failure.
  if (inv) {
    inv->freed.push_back(p);
    return;
  }
  release("mgpuMemFree", "cuMemFree_v2",
          [&](const Driver &d) { return memoryPool().release(d, p); });
}

MGPU_API void mgpuMemcpy(void *dst, void *src, uint64_t sizeBytes,
                         void *stream) {
  if (sizeBytes == 0)
    return;
  withDriver("mgpuMemcpy", [&](const Driver &d) {
    ok(d.cuMemcpyAsync(devicePtr(dst), devicePtr(src), sizeBytes,
                       static_cast<CUstream>(stream)),
       "mgpuMemcpy", "cuMemcpyAsync",
       [&] { return " of " + std::to_string(sizeBytes) + " bytes"; });
  });
}

MGPU_API void mgpuMemset32(void *dst, uint32_t value, uint64_t count,
                           void *stream) {
  if (count == 0)
    return;
  withDriver("mgpuMemset32", [&](const Driver &d) {
    ok(d.cuMemsetD32Async(devicePtr(dst), value, count,
                          static_cast<CUstream>(stream)),
       "mgpuMemset32", "cuMemsetD32Async");
  });
}

MGPU_API void mgpuMemset16(void *dst, uint16_t value, uint64_t count,
                           void *stream) {
  if (count == 0)
    return;
  withDriver("mgpuMemset16", [&](const Driver &d) {
    ok(d.cuMemsetD16Async(devicePtr(dst), value, count,
                          static_cast<CUstream>(stream)),
       "mgpuMemset16", "cuMemsetD16Async");
  });
}

MGPU_API void mgpuSetDefaultDevice(int32_t device) {
  withDriver("mgpuSetDefaultDevice", [&](const Driver &) {
    const Device &current =
        currentInvocation ? currentInvocation->device : requireDevice();
    if (device != current.ordinal)
      report(MOE_INVALID_MODULE,
             "mgpuSetDefaultDevice(" + std::to_string(device) +
                 "): the runtime runs on device " +
                 std::to_string(current.ordinal) +
                 " (MOE_CUDA_DEVICE selects it); switching is not supported");
  });
}
