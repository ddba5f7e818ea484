//===- Driver.cpp - the CUDA driver entry points of the GPU executor ------===//
//
// The entry points the runtime resolves (runtime/src/CudaDriver.cpp), so
// that MOE_CUDA_DRIVER=libmoe_gpu_executor.so runs compiled GPU kernels on
// the CPU. Behaves like runtime/test/fake_cuda_driver.c where that makes
// sense: one device, its primary context current per thread (calls that
// need one fail with CUDA_ERROR_INVALID_CONTEXT without it), device memory
// is host memory, streams are trivially in order and every asynchronous
// operation completes before the call returns. A memory map of the device
// allocations (with their sizes) and the loaded images' segments is what
// each launch checks the kernels' memory accesses against.
//
// Module images are x86-64 shared objects (moe-compile
// --gpu-binary=executor): each is written to a memfd and dlopen'd, after
// this library has been promoted to the global scope so that the image's
// undefined moe_gpuexec_* and __nv_* symbols resolve to it.
//
//===----------------------------------------------------------------------===//

#include "Executor.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

using namespace moe::gpuexec;

using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUjit_option = int;

// The handle types of cuda.h, defined here: a handle is a pointer to one.
struct CUctx_st {
  int unused;
};
struct CUfunc_st {
  Kernel kernel;
};
struct CUmod_st {
  void *handle = nullptr;
  int fd = -1; // the memfd the image was loaded from, kept while loaded
  // Where its PT_LOAD segments start (keys of the memory map).
  std::vector<uintptr_t> segments;
  std::map<std::string, std::unique_ptr<CUfunc_st>> functions;
};
struct CUstream_st {
  unsigned flags;
};
struct CUevent_st {
  unsigned flags;
  bool recorded = false;
  double ms = 0;
};

using CUcontext = CUctx_st *;
using CUfunction = CUfunc_st *;
using CUmodule = CUmod_st *;
using CUstream = CUstream_st *;
using CUevent = CUevent_st *;

namespace {

constexpr int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
constexpr CUjit_option CU_JIT_ERROR_LOG_BUFFER = 5;
constexpr CUjit_option CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;
constexpr unsigned CU_EVENT_DISABLE_TIMING = 2;

std::atomic<bool> gInitialized{false};
CUctx_st gContext;
thread_local int tContextDepth = 0; // pushes of gContext on this thread

/// Device allocations remembered after cuMemFree, for reports.
constexpr size_t kFreedRemembered = 64;

/// What kernels may address (besides shared memory and their stacks), for
/// the executor's memory access checks: live device allocations with their
/// requested sizes and the segments of loaded images, by start address.
struct MemoryMap {
  std::map<uintptr_t, MemoryRange> live;
  std::vector<MemoryRange> freed; // newest last
  uint64_t version = 0;           // bumped on every change
};

std::mutex gMutex; // the memory map, module functions
MemoryMap &memoryMap() {
  static auto *map = new MemoryMap;
  return *map;
}

#define MOE_NEED_CONTEXT()                                                     \
  do {                                                                         \
    if (!gInitialized.load(std::memory_order_acquire))                         \
      return CUDA_ERROR_NOT_INITIALIZED;                                       \
    if (tContextDepth == 0)                                                    \
      return CUDA_ERROR_INVALID_CONTEXT;                                       \
  } while (0)

double nowMs() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch())
      .count();
}

//===----------------------------------------------------------------------===//
// Module images
//===----------------------------------------------------------------------===//

constexpr const char *kNotExecutorImage =
    "the moe GPU executor runs kernels compiled with moe-compile "
    "--gpu-binary=executor; ";
constexpr const char *kEntryPrefix = "__moe_gpuexec_entry_";

// What a non-ELF image is, for the error log.
std::string describeForeignImage(const unsigned char *p) {
  const unsigned char *s = p;
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    ++s;
  auto startsWith = [&](const char *prefix) {
    return std::strncmp(reinterpret_cast<const char *>(s), prefix,
                        std::strlen(prefix)) == 0;
  };
  if (startsWith("//") || startsWith(".version") || startsWith(".target"))
    return "this image is PTX, not an executor image";
  // Fatbin and its wrapper, little-endian magics 0xBA55ED50 / 0x466243B1.
  if ((p[0] == 0x50 && p[1] == 0xed && p[2] == 0x55 && p[3] == 0xba) ||
      (p[0] == 0xb1 && p[1] == 0x43 && p[2] == 0x62 && p[3] == 0x46))
    return "this image is a CUDA fatbin, not an executor image";
  return "this image is not an executor image (no ELF header)";
}

// cuModuleLoadData is not told the image's size: an ELF file ends with the
// last of its headers, sections and segments.
size_t elfSize(const unsigned char *p) {
  Elf64_Ehdr eh;
  std::memcpy(&eh, p, sizeof eh);
  uint64_t size = sizeof eh;
  auto extend = [&](uint64_t end) { size = end > size ? end : size; };
  extend(eh.e_phoff + uint64_t(eh.e_phnum) * eh.e_phentsize);
  extend(eh.e_shoff + uint64_t(eh.e_shnum) * eh.e_shentsize);
  for (unsigned i = 0; i < eh.e_phnum && eh.e_phentsize >= sizeof(Elf64_Phdr);
       ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, p + eh.e_phoff + uint64_t(i) * eh.e_phentsize, sizeof ph);
    extend(ph.p_offset + ph.p_filesz);
  }
  for (unsigned i = 0; i < eh.e_shnum && eh.e_shentsize >= sizeof(Elf64_Shdr);
       ++i) {
    Elf64_Shdr sh;
    std::memcpy(&sh, p + eh.e_shoff + uint64_t(i) * eh.e_shentsize, sizeof sh);
    if (sh.sh_type != SHT_NOBITS)
      extend(sh.sh_offset + sh.sh_size);
  }
  return size_t(size);
}

// Checks the ELF header; an empty result means a loadable image.
std::string checkElf(const unsigned char *p) {
  Elf64_Ehdr eh;
  std::memcpy(&eh, p, sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
    return "this image is not a 64-bit little-endian ELF file";
  if (eh.e_machine == 190) // EM_CUDA
    return "this image is a CUDA cubin, not an executor image";
  if (eh.e_machine != EM_X86_64)
    return "this image is an ELF file for machine " +
           std::to_string(eh.e_machine) + ", not an x86-64 executor image";
  if (eh.e_type != ET_DYN)
    return "this image is not an ELF shared object";
  return {};
}

// Re-opens this library into the global scope (once): the runtime dlopens
// the driver with RTLD_LOCAL, which would leave an image's references to
// moe_gpuexec_* and __nv_* unresolved.
bool promoteSelf(std::string &error) {
  static std::once_flag once;
  static std::string problem;
  std::call_once(once, [] {
    Dl_info info;
    if (!dladdr(reinterpret_cast<void *>(&promoteSelf), &info) ||
        !info.dli_fname) {
      problem = "cannot find the executor library's own path (dladdr)";
      return;
    }
    // Never closed: the images refer to this library as long as the
    // process lives.
    if (!dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL)) {
      const char *err = dlerror();
      problem = std::string("cannot make ") + info.dli_fname +
                " global: " + (err ? err : "dlopen failed");
    }
  });
  error = problem;
  return problem.empty();
}

// Adds the PT_LOAD segments of the loaded image `m` (its code, constants
// and globals) to the memory map, as the loader mapped them: the object
// dl_iterate_phdr reports at the image's load address under its name.
void recordSegments(CUmod_st &m) {
  struct link_map *map = nullptr;
  if (dlinfo(m.handle, RTLD_DI_LINKMAP, &map) != 0 || !map)
    return;
  struct Search {
    const struct link_map *map;
    std::vector<MemoryRange> segments;
  } search{map, {}};
  dl_iterate_phdr(
      [](struct dl_phdr_info *info, size_t, void *data) {
        auto &s = *static_cast<Search *>(data);
        if (info->dlpi_addr != s.map->l_addr || !info->dlpi_name ||
            std::strcmp(info->dlpi_name, s.map->l_name) != 0)
          return 0;
        for (unsigned i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr) &ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
          MemoryRange r;
          r.begin = info->dlpi_addr + ph.p_vaddr;
          r.end = r.begin + ph.p_memsz;
          r.kind = MemoryRange::ImageSegment;
          r.writable = ph.p_flags & PF_W;
          s.segments.push_back(r);
        }
        return 1;
      },
      &search);
  std::lock_guard<std::mutex> lock(gMutex);
  MemoryMap &mm = memoryMap();
  for (const MemoryRange &r : search.segments) {
    mm.live[r.begin] = r;
    m.segments.push_back(r.begin);
  }
  ++mm.version;
}

bool writeAll(int fd, const unsigned char *data, size_t size) {
  while (size) {
    ssize_t n = write(fd, data, size);
    if (n < 0)
      return false;
    data += n;
    size -= size_t(n);
  }
  return true;
}

// Loads the ELF image into `m` from an anonymous file. Returns an error
// message, empty on success.
std::string dlopenImage(CUmod_st &m, const unsigned char *image, size_t size) {
  std::string error;
  if (!promoteSelf(error))
    return error;
  // glibc finds an already loaded object by its file name: a memfd's
  // /proc/self/fd/N of an object that is still loaded (unloaded modules
  // whose number got reused, an image that cannot be unloaded) would
  // return that object instead. Such a number is skipped (and its fd kept,
  // so that it is never handed out again).
  for (int attempt = 0; attempt < 16; ++attempt) {
    int fd = memfd_create("moe-gpuexec-image", MFD_CLOEXEC);
    if (fd < 0)
      return std::string("memfd_create failed: ") + std::strerror(errno);
    if (!writeAll(fd, image, size)) {
      std::string why = std::strerror(errno);
      close(fd);
      return "cannot write the image to a memfd: " + why;
    }
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    if (void *stale = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD)) {
      dlclose(stale);
      continue;
    }
    dlerror();
    void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char *err = dlerror();
      close(fd);
      return std::string("cannot load the executor image: ") +
             (err ? err : "dlopen failed");
    }
    m.handle = handle;
    m.fd = fd;
    recordSegments(m);
    return {};
  }
  return "cannot find a free file name for the image";
}

void writeLog(char *log, size_t logSize, const std::string &message) {
  if (log && logSize)
    snprintf(log, logSize, "%s", message.c_str());
}

CUresult loadModule(CUmodule *module, const void *image, char *log,
                    size_t logSize) {
  if (!module || !image)
    return CUDA_ERROR_INVALID_VALUE;
  auto *p = static_cast<const unsigned char *>(image);
  // Compared byte by byte: a short PTX string must not be read past its
  // terminator.
  bool elf = p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F';
  std::string problem = elf ? checkElf(p) : describeForeignImage(p);
  if (!problem.empty()) {
    writeLog(log, logSize, kNotExecutorImage + problem);
    return CUDA_ERROR_INVALID_IMAGE;
  }
  auto m = std::make_unique<CUmod_st>();
  problem = dlopenImage(*m, p, elfSize(p));
  if (!problem.empty()) {
    writeLog(log, logSize, problem);
    return CUDA_ERROR_INVALID_IMAGE;
  }
  *module = m.release();
  return CUDA_SUCCESS;
}

struct TestFunctions {
  std::mutex mutex;
  std::vector<std::unique_ptr<CUfunc_st>> functions;
};
TestFunctions &testFunctions() {
  static auto *t = new TestFunctions;
  return *t;
}

const char *errorName(CUresult r) {
  switch (r) {
  case CUDA_SUCCESS:
    return "CUDA_SUCCESS";
  case CUDA_ERROR_INVALID_VALUE:
    return "CUDA_ERROR_INVALID_VALUE";
  case CUDA_ERROR_OUT_OF_MEMORY:
    return "CUDA_ERROR_OUT_OF_MEMORY";
  case CUDA_ERROR_NOT_INITIALIZED:
    return "CUDA_ERROR_NOT_INITIALIZED";
  case CUDA_ERROR_INVALID_DEVICE:
    return "CUDA_ERROR_INVALID_DEVICE";
  case CUDA_ERROR_INVALID_IMAGE:
    return "CUDA_ERROR_INVALID_IMAGE";
  case CUDA_ERROR_INVALID_CONTEXT:
    return "CUDA_ERROR_INVALID_CONTEXT";
  case CUDA_ERROR_INVALID_HANDLE:
    return "CUDA_ERROR_INVALID_HANDLE";
  case CUDA_ERROR_NOT_FOUND:
    return "CUDA_ERROR_NOT_FOUND";
  case CUDA_ERROR_NOT_READY:
    return "CUDA_ERROR_NOT_READY";
  case CUDA_ERROR_LAUNCH_FAILED:
    return "CUDA_ERROR_LAUNCH_FAILED";
  default:
    return nullptr;
  }
}

const char *errorString(CUresult r) {
  switch (r) {
  case CUDA_SUCCESS:
    return "no error";
  case CUDA_ERROR_INVALID_VALUE:
    return "invalid argument";
  case CUDA_ERROR_OUT_OF_MEMORY:
    return "out of memory";
  case CUDA_ERROR_NOT_INITIALIZED:
    return "initialization error";
  case CUDA_ERROR_INVALID_DEVICE:
    return "invalid device ordinal";
  case CUDA_ERROR_INVALID_IMAGE:
    return "device kernel image is invalid";
  case CUDA_ERROR_INVALID_CONTEXT:
    return "invalid device context";
  case CUDA_ERROR_INVALID_HANDLE:
    return "invalid resource handle";
  case CUDA_ERROR_NOT_FOUND:
    return "named symbol not found";
  case CUDA_ERROR_NOT_READY:
    return "device not ready";
  case CUDA_ERROR_LAUNCH_FAILED:
    return "unspecified launch failure (the moe-gpu-executor: line on stderr "
           "says why)";
  default:
    return nullptr;
  }
}

} // namespace

//===----------------------------------------------------------------------===//
// Init, errors, devices
//===----------------------------------------------------------------------===//

MOE_GPUEXEC_EXPORT CUresult cuInit(unsigned flags) {
  if (flags != 0)
    return CUDA_ERROR_INVALID_VALUE;
  gInitialized.store(true, std::memory_order_release);
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuDriverGetVersion(int *version) {
  if (!version)
    return CUDA_ERROR_INVALID_VALUE;
  *version = 13000;
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuGetErrorName(CUresult r, const char **name) {
  if (!name)
    return CUDA_ERROR_INVALID_VALUE;
  *name = errorName(r);
  return *name ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

MOE_GPUEXEC_EXPORT CUresult cuGetErrorString(CUresult r, const char **text) {
  if (!text)
    return CUDA_ERROR_INVALID_VALUE;
  *text = errorString(r);
  return *text ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

MOE_GPUEXEC_EXPORT CUresult cuDeviceGetCount(int *count) {
  if (!gInitialized.load(std::memory_order_acquire))
    return CUDA_ERROR_NOT_INITIALIZED;
  if (!count)
    return CUDA_ERROR_INVALID_VALUE;
  *count = 1;
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal) {
  if (!gInitialized.load(std::memory_order_acquire))
    return CUDA_ERROR_NOT_INITIALIZED;
  if (!device)
    return CUDA_ERROR_INVALID_VALUE;
  if (ordinal != 0)
    return CUDA_ERROR_INVALID_DEVICE;
  *device = 0;
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuDeviceGetName(char *name, int len,
                                            CUdevice device) {
  if (device != 0)
    return CUDA_ERROR_INVALID_DEVICE;
  if (!name || len <= 0)
    return CUDA_ERROR_INVALID_VALUE;
  snprintf(name, size_t(len), "moe-mlir GPU executor (CPU, sm_%d)",
           smVersion());
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuDeviceGetAttribute(int *value, int attribute,
                                                 CUdevice device) {
  if (device != 0)
    return CUDA_ERROR_INVALID_DEVICE;
  if (!value)
    return CUDA_ERROR_INVALID_VALUE;
  switch (attribute) {
  case 1: // MAX_THREADS_PER_BLOCK
    *value = int(kMaxBlockThreads);
    break;
  case 2: // MAX_BLOCK_DIM_X
  case 3: // MAX_BLOCK_DIM_Y
    *value = 1024;
    break;
  case 4: // MAX_BLOCK_DIM_Z
    *value = 64;
    break;
  case 5: // MAX_GRID_DIM_X
    *value = 0x7fffffff;
    break;
  case 6: // MAX_GRID_DIM_Y
  case 7: // MAX_GRID_DIM_Z
    *value = 65535;
    break;
  case 8: // MAX_SHARED_MEMORY_PER_BLOCK
    *value = int(kDefaultDynamicShared);
    break;
  case 10: // WARP_SIZE
    *value = int(kWarpSize);
    break;
  case 16: // MULTIPROCESSOR_COUNT: blocks run one at a time
    *value = 1;
    break;
  case 75: // COMPUTE_CAPABILITY_MAJOR
    *value = smVersion() / 10;
    break;
  case 76: // COMPUTE_CAPABILITY_MINOR
    *value = smVersion() % 10;
    break;
  case 97: // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    *value = int(kMaxSharedOptin);
    break;
  default:
    *value = 0;
    break;
  }
  return CUDA_SUCCESS;
}

//===----------------------------------------------------------------------===//
// Contexts
//===----------------------------------------------------------------------===//

MOE_GPUEXEC_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx,
                                                     CUdevice device) {
  if (!gInitialized.load(std::memory_order_acquire))
    return CUDA_ERROR_NOT_INITIALIZED;
  if (device != 0)
    return CUDA_ERROR_INVALID_DEVICE;
  if (!ctx)
    return CUDA_ERROR_INVALID_VALUE;
  *ctx = &gContext;
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
  if (ctx != &gContext)
    return CUDA_ERROR_INVALID_CONTEXT;
  ++tContextDepth;
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext *ctx) {
  if (tContextDepth == 0)
    return CUDA_ERROR_INVALID_CONTEXT;
  --tContextDepth;
  if (ctx)
    *ctx = &gContext;
  return CUDA_SUCCESS;
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

namespace moe::gpuexec {

void updateMemorySnapshot(MemorySnapshot &snapshot) {
  std::lock_guard<std::mutex> lock(gMutex);
  const MemoryMap &mm = memoryMap();
  if (snapshot.version == mm.version)
    return;
  // Into the vectors' existing capacity: no allocation per launch once the
  // map stops growing.
  snapshot.live.clear();
  for (const auto &entry : mm.live)
    snapshot.live.push_back(entry.second);
  snapshot.freed.assign(mm.freed.begin(), mm.freed.end());
  snapshot.version = mm.version;
}

} // namespace moe::gpuexec

MOE_GPUEXEC_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  MOE_NEED_CONTEXT();
  if (!ptr || bytes == 0)
    return CUDA_ERROR_INVALID_VALUE;
  // 256-byte aligned like cudaMalloc: kernels may rely on it for vector
  // accesses.
  size_t rounded = (bytes + 255) / 256 * 256;
  if (rounded < bytes)
    return CUDA_ERROR_OUT_OF_MEMORY;
  void *p = std::aligned_alloc(256, rounded);
  if (!p)
    return CUDA_ERROR_OUT_OF_MEMORY;
  {
    // The requested size, not the rounded one: kernels that read past
    // the end of a buffer fail even inside the rounding.
    MemoryRange r;
    r.begin = reinterpret_cast<uintptr_t>(p);
    r.end = r.begin + bytes;
    std::lock_guard<std::mutex> lock(gMutex);
    MemoryMap &mm = memoryMap();
    mm.live[r.begin] = r;
    ++mm.version;
  }
  *ptr = reinterpret_cast<uintptr_t>(p);
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuMemFree_v2(CUdeviceptr ptr) {
  MOE_NEED_CONTEXT();
  void *p = reinterpret_cast<void *>(uintptr_t(ptr));
  {
    std::lock_guard<std::mutex> lock(gMutex);
    MemoryMap &mm = memoryMap();
    auto it = mm.live.find(uintptr_t(ptr));
    if (it == mm.live.end() || it->second.kind != MemoryRange::Allocation)
      return CUDA_ERROR_INVALID_VALUE;
    if (mm.freed.size() == kFreedRemembered)
      mm.freed.erase(mm.freed.begin());
    mm.freed.push_back(it->second);
    mm.live.erase(it);
    ++mm.version;
  }
  std::free(p);
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst,
                                                 const void *src, size_t bytes,
                                                 CUstream) {
  MOE_NEED_CONTEXT();
  if (bytes)
    std::memcpy(reinterpret_cast<void *>(uintptr_t(dst)), src, bytes);
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src,
                                                 size_t bytes, CUstream) {
  MOE_NEED_CONTEXT();
  if (bytes)
    std::memcpy(dst, reinterpret_cast<const void *>(uintptr_t(src)), bytes);
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src,
                                          size_t bytes, CUstream) {
  MOE_NEED_CONTEXT();
  if (bytes)
    std::memmove(reinterpret_cast<void *>(uintptr_t(dst)),
                 reinterpret_cast<const void *>(uintptr_t(src)), bytes);
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst,
                                            unsigned char value, size_t count,
                                            CUstream) {
  MOE_NEED_CONTEXT();
  if (count)
    std::memset(reinterpret_cast<void *>(uintptr_t(dst)), value, count);
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuMemsetD16Async(CUdeviceptr dst,
                                             unsigned short value, size_t count,
                                             CUstream) {
  MOE_NEED_CONTEXT();
  auto *p = reinterpret_cast<unsigned char *>(uintptr_t(dst));
  for (size_t i = 0; i < count; ++i)
    std::memcpy(p + 2 * i, &value, 2);
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned value,
                                             size_t count, CUstream) {
  MOE_NEED_CONTEXT();
  auto *p = reinterpret_cast<unsigned char *>(uintptr_t(dst));
  for (size_t i = 0; i < count; ++i)
    std::memcpy(p + 4 * i, &value, 4);
  return CUDA_SUCCESS;
}

//===----------------------------------------------------------------------===//
// Streams, events
//===----------------------------------------------------------------------===//

MOE_GPUEXEC_EXPORT CUresult cuStreamCreate(CUstream *stream, unsigned flags) {
  MOE_NEED_CONTEXT();
  if (!stream)
    return CUDA_ERROR_INVALID_VALUE;
  *stream = new CUstream_st{flags};
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuStreamSynchronize(CUstream) {
  MOE_NEED_CONTEXT();
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuStreamDestroy_v2(CUstream stream) {
  MOE_NEED_CONTEXT();
  if (!stream)
    return CUDA_ERROR_INVALID_HANDLE;
  delete stream;
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuStreamWaitEvent(CUstream, CUevent event,
                                              unsigned) {
  MOE_NEED_CONTEXT();
  return event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

MOE_GPUEXEC_EXPORT CUresult cuEventCreate(CUevent *event, unsigned flags) {
  MOE_NEED_CONTEXT();
  if (!event)
    return CUDA_ERROR_INVALID_VALUE;
  *event = new CUevent_st{flags};
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuEventRecord(CUevent event, CUstream) {
  MOE_NEED_CONTEXT();
  if (!event)
    return CUDA_ERROR_INVALID_HANDLE;
  event->recorded = true;
  event->ms = nowMs();
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuEventSynchronize(CUevent event) {
  MOE_NEED_CONTEXT();
  return event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

// Work completes before the call that enqueues it returns: a recorded
// event has always happened.
MOE_GPUEXEC_EXPORT CUresult cuEventQuery(CUevent event) {
  MOE_NEED_CONTEXT();
  return event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

// Exported under both names, as CUDA 12.8+ drivers do.
MOE_GPUEXEC_EXPORT CUresult cuEventElapsedTime_v2(float *ms, CUevent start,
                                                  CUevent end) {
  MOE_NEED_CONTEXT();
  if (!ms)
    return CUDA_ERROR_INVALID_VALUE;
  if (!start || !end || !start->recorded || !end->recorded ||
      (start->flags & CU_EVENT_DISABLE_TIMING) ||
      (end->flags & CU_EVENT_DISABLE_TIMING))
    return CUDA_ERROR_INVALID_HANDLE;
  *ms = float(end->ms - start->ms);
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuEventElapsedTime(float *ms, CUevent start,
                                               CUevent end) {
  return cuEventElapsedTime_v2(ms, start, end);
}

MOE_GPUEXEC_EXPORT CUresult cuEventDestroy_v2(CUevent event) {
  MOE_NEED_CONTEXT();
  if (!event)
    return CUDA_ERROR_INVALID_HANDLE;
  delete event;
  return CUDA_SUCCESS;
}

//===----------------------------------------------------------------------===//
// Modules, kernels
//===----------------------------------------------------------------------===//

MOE_GPUEXEC_EXPORT CUresult cuModuleLoadData(CUmodule *module,
                                             const void *image) {
  MOE_NEED_CONTEXT();
  // No log buffer to say why: stderr it is.
  char log[1024] = {0};
  CUresult r = loadModule(module, image, log, sizeof log);
  if (r != CUDA_SUCCESS && log[0])
    fprintf(stderr, "moe-gpu-executor: cuModuleLoadData: %s\n", log);
  return r;
}

MOE_GPUEXEC_EXPORT CUresult cuModuleLoadDataEx(CUmodule *module,
                                               const void *image,
                                               unsigned numOptions,
                                               CUjit_option *options,
                                               void **values) {
  MOE_NEED_CONTEXT();
  char *log = nullptr;
  size_t logSize = 0;
  for (unsigned i = 0; options && values && i < numOptions; ++i) {
    if (options[i] == CU_JIT_ERROR_LOG_BUFFER)
      log = static_cast<char *>(values[i]);
    else if (options[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
      logSize = size_t(reinterpret_cast<uintptr_t>(values[i]));
  }
  return loadModule(module, image, log, logSize);
}

MOE_GPUEXEC_EXPORT CUresult cuModuleUnload(CUmodule module) {
  MOE_NEED_CONTEXT();
  if (!module)
    return CUDA_ERROR_INVALID_HANDLE;
  {
    std::lock_guard<std::mutex> lock(gMutex);
    MemoryMap &mm = memoryMap();
    for (uintptr_t begin : module->segments)
      mm.live.erase(begin);
    ++mm.version;
  }
  dlclose(module->handle);
  close(module->fd);
  delete module;
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuModuleGetFunction(CUfunction *function,
                                                CUmodule module,
                                                const char *name) {
  MOE_NEED_CONTEXT();
  if (!function || !name)
    return CUDA_ERROR_INVALID_VALUE;
  if (!module)
    return CUDA_ERROR_INVALID_HANDLE;
  std::lock_guard<std::mutex> lock(gMutex);
  auto it = module->functions.find(name);
  if (it == module->functions.end()) {
    void *sym =
        dlsym(module->handle, (kEntryPrefix + std::string(name)).c_str());
    if (!sym)
      return CUDA_ERROR_NOT_FOUND;
    auto f = std::make_unique<CUfunc_st>();
    f->kernel.entry = reinterpret_cast<KernelEntry>(sym);
    f->kernel.name = name;
    it = module->functions.emplace(name, std::move(f)).first;
  }
  *function = it->second.get();
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuFuncSetAttribute(CUfunction function,
                                               int attribute, int value) {
  MOE_NEED_CONTEXT();
  if (!function)
    return CUDA_ERROR_INVALID_HANDLE;
  if (attribute == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
    if (value < 0 || uint32_t(value) > kMaxSharedOptin)
      return CUDA_ERROR_INVALID_VALUE;
    function->kernel.maxDynamicShared = uint32_t(value);
  }
  return CUDA_SUCCESS;
}

MOE_GPUEXEC_EXPORT CUresult cuLaunchKernel(CUfunction function, unsigned gridX,
                                           unsigned gridY, unsigned gridZ,
                                           unsigned blockX, unsigned blockY,
                                           unsigned blockZ,
                                           unsigned sharedMemBytes, CUstream,
                                           void **params, void **extra) {
  MOE_NEED_CONTEXT();
  if (!function)
    return CUDA_ERROR_INVALID_HANDLE;
  // Parameters packed into one buffer (CU_LAUNCH_PARAM_BUFFER_POINTER) have
  // no layout the executor could hand to a kernel; an empty list is fine.
  if (extra && extra[0]) {
    fprintf(stderr,
            "moe-gpu-executor: kernel '%s': kernel parameters through "
            "`extra` are not supported; pass kernelParams\n",
            function->kernel.name.c_str());
    return CUDA_ERROR_INVALID_VALUE;
  }
  return launch(function->kernel, {gridX, gridY, gridZ},
                {blockX, blockY, blockZ}, sharedMemBytes, params);
}

//===----------------------------------------------------------------------===//
// For the unit tests
//===----------------------------------------------------------------------===//

/// A function handle for a kernel compiled into the caller (a test), as if
/// cuModuleGetFunction had found `entry` under `name`. Lives as long as the
/// process.
MOE_GPUEXEC_EXPORT CUfunction moe_gpuexec_test_function(KernelEntry entry,
                                                        const char *name) {
  TestFunctions &t = testFunctions();
  auto f = std::make_unique<CUfunc_st>();
  f->kernel.entry = entry;
  f->kernel.name = name ? name : "";
  std::lock_guard<std::mutex> lock(t.mutex);
  t.functions.push_back(std::move(f));
  return t.functions.back().get();
}
