//===- Runtime.cpp - the C API of the moe runtime -------------------------===//
//
// Every exported function either cannot fail or runs its body through
// guard(), which turns the internal C++ exceptions into a moe_status plus a
// thread-local message. No exception crosses the C boundary.
//
//===----------------------------------------------------------------------===//

#include "moe/runtime.h"

#include "Backend.h"
#include "Communicator.h"
#include "Error.h"
#include "ExpertCache.h"
#include "Manifest.h"
#include "ModuleSegments.h"
#include "NcclCommunicator.h"
#include "RoutingProfile.h"
#include "ThreadPool.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <memory>
#include <new>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <vector>

using namespace moe::rt;

struct moe_function {
  moe_module *module = nullptr;
  FunctionSpec spec;
  void *resolved = nullptr; // backend-specific (CPU: the entry address)
};

struct moe_module {
  std::string path;
  void *handle = nullptr;
  std::string manifestJson;
  Manifest manifest; // functions moved into `functions`, rest kept
  std::vector<std::unique_ptr<moe_function>> functions;
  std::unique_ptr<Backend> backend;

  ~moe_module() {
    backend.reset();
    if (handle) {
      moe::rt::expertCacheRemoveModule(handle);
      dlclose(handle);
    }
  }
};

namespace {

thread_local std::string tlsLastError;

template <typename F> moe_status guard(F &&body) {
  try {
    body();
    return MOE_OK;
  } catch (const Error &e) {
    tlsLastError = e.what();
    return e.status;
  } catch (const std::bad_alloc &) {
    tlsLastError = "out of memory";
    return MOE_INTERNAL;
  } catch (const std::exception &e) {
    tlsLastError = std::string("internal error: ") + e.what();
    return MOE_INTERNAL;
  } catch (...) {
    tlsLastError = "internal error: unknown exception";
    return MOE_INTERNAL;
  }
}

void requireNonNull(const void *p, const char *what) {
  if (!p)
    fail(MOE_INVALID_ARGUMENT, std::string(what) + " is NULL");
}

[[noreturn]] void corrupt(const std::string &path, const std::string &why) {
  fail(MOE_INVALID_MODULE,
       "cannot load module '" + path + "': corrupt shared object (" + why + ")");
}

// Rejects what dlopen would report badly or not survive: a missing file, a
// directory, a file that is not ELF, an ELF file for another machine or that
// is not a shared object, and a truncated one. The last matters most:
// glibc maps segments without checking them against the file size, so
// dlopen of a truncated .so dies of SIGBUS instead of returning an error.
// (A deliberately forged ELF can still crash the loader; this catches the
// corruption that happens by accident.)
void checkModuleFile(const std::string &path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int err = errno;
    fail(err == ENOENT || err == ENOTDIR ? MOE_NOT_FOUND : MOE_IO_ERROR,
         "cannot open module '" + path + "': " + std::strerror(err));
  }
  if (S_ISDIR(st.st_mode))
    fail(MOE_IO_ERROR, "cannot load module '" + path + "': it is a directory");
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    fail(MOE_IO_ERROR,
         "cannot open module '" + path + "': " + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE *)> closer(f, std::fclose);
  const uint64_t fileSize = static_cast<uint64_t>(st.st_size);

  Elf64_Ehdr eh{};
  size_t got = std::fread(&eh, 1, sizeof eh, f);
  if (std::ferror(f))
    fail(MOE_IO_ERROR, "cannot read module '" + path + "'");
  if (got < SELFMAG || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
    fail(MOE_INVALID_MODULE, "'" + path +
                                 "' is not a compiled module: not an ELF "
                                 "shared object");
  if (got < sizeof eh)
    corrupt(path, "truncated ELF header");
#if defined(__x86_64__)
  const unsigned hostMachine = EM_X86_64;
#elif defined(__aarch64__)
  const unsigned hostMachine = EM_AARCH64;
#else
  const unsigned hostMachine = eh.e_machine;
#endif
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != hostMachine)
    fail(MOE_INVALID_MODULE,
         "cannot load module '" + path +
             "': it was built for another machine (ELF class " +
             std::to_string(eh.e_ident[EI_CLASS]) + ", machine " +
             std::to_string(eh.e_machine) + ")");
  if (eh.e_type != ET_DYN)
    fail(MOE_INVALID_MODULE, "'" + path +
                                 "' is an ELF file but not a shared object "
                                 "(ELF type " +
                                 std::to_string(eh.e_type) + ")");
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
      eh.e_phoff > fileSize ||
      uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) > fileSize - eh.e_phoff)
    corrupt(path, "bad program header table");
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  if (std::fseek(f, static_cast<long>(eh.e_phoff), SEEK_SET) != 0 ||
      std::fread(ph.data(), sizeof(Elf64_Phdr), ph.size(), f) != ph.size())
    corrupt(path, "cannot read the program headers");
  for (const Elf64_Phdr &p : ph) {
    if (p.p_type != PT_LOAD && p.p_type != PT_DYNAMIC)
      continue;
    if (p.p_offset > fileSize || p.p_filesz > fileSize - p.p_offset)
      corrupt(path, "file is truncated: a segment needs " +
                        std::to_string(p.p_offset + p.p_filesz) +
                        " bytes, the file has " + std::to_string(fileSize));
    if (p.p_filesz > p.p_memsz)
      corrupt(path, "segment larger in the file than in memory");
  }
}

struct DlHandle {
  void *h = nullptr;
  ~DlHandle() {
    if (h)
      dlclose(h);
  }
};

/// Asks for huge pages on the module's weights: the read-only segments
/// that moe-compile laid out on 2 MiB boundaries (`--huge-page-weights`,
/// modules with 16 MiB of weights or more). The kernels stream weights
/// through the TLB at a 4 KiB entry per 4 KiB; with the file's pages mapped
/// 2 MiB at a time their page walks vanish. Advice only: a kernel without
/// transparent huge pages for files keeps 4 KiB pages.
void adviseHugePages(void *handle) {
  constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
  for (const ReadOnlySegment &segment : readOnlySegments(handle)) {
    if (segment.align < kHugePage || segment.memSize < 2 * kHugePage)
      continue;
    uintptr_t begin = (segment.begin + kHugePage - 1) & ~(kHugePage - 1);
    uintptr_t end = (segment.begin + segment.memSize) & ~(kHugePage - 1);
    if (end > begin)
      madvise(reinterpret_cast<void *>(begin), end - begin, MADV_HUGEPAGE);
  }
}

void loadModule(const char *pathArg, moe_module **out) {
  requireNonNull(pathArg, "path");
  requireNonNull(out, "out");
  *out = nullptr;
  std::string path = pathArg;
  if (path.empty())
    fail(MOE_INVALID_ARGUMENT, "module path is empty");
  checkModuleFile(path);

  // Without a slash dlopen would search the library path instead of
  // opening the file the caller named.
  std::string dlPath = path.find('/') == std::string::npos ? "./" + path : path;
  DlHandle lib;
  dlerror();
  lib.h = dlopen(dlPath.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib.h) {
    const char *err = dlerror();
    fail(MOE_INVALID_MODULE, "cannot load module '" + path +
                                 "': " + (err ? err : "unknown dlopen error"));
  }
  // Under an expert-cache budget the weights stay in 4 KiB pages, which
  // the cache can evict expert by expert.
  if (expertCacheMemoryLimit() == 0)
    adviseHugePages(lib.h);
  expertCacheAddModule(lib.h, dlPath);
  dlerror();
  using ManifestFn = const char *(*)();
  auto manifestFn =
      reinterpret_cast<ManifestFn>(dlsym(lib.h, "moe_module_manifest"));
  if (!manifestFn)
    fail(MOE_INVALID_MODULE, "'" + path +
                                 "' is not a moe module: it does not export "
                                 "moe_module_manifest");
  const char *text = manifestFn();
  if (!text)
    fail(MOE_INVALID_MODULE,
         "'" + path + "': moe_module_manifest() returned NULL");

  auto mod = std::make_unique<moe_module>();
  mod->path = path;
  mod->manifestJson = text;
  try {
    mod->manifest = parseManifest(mod->manifestJson);
  } catch (const Error &e) {
    fail(e.status, "'" + path + "': " + e.what());
  }
  mod->backend = mod->manifest.target == "cuda" ? createCudaBackend()
                                                : createCpuBackend();
  for (FunctionSpec &spec : mod->manifest.functions) {
    auto fn = std::make_unique<moe_function>();
    fn->module = mod.get();
    fn->spec = std::move(spec);
    // The spec is at its final address now: pointers into it are stable.
    for (ArgSpec &a : fn->spec.inputs)
      a.finalize();
    for (ArgSpec &a : fn->spec.outputs)
      a.finalize();
    try {
      fn->resolved = mod->backend->resolve(lib.h, fn->spec);
    } catch (const Error &e) {
      fail(e.status, "'" + path + "': " + e.what());
    }
    mod->functions.push_back(std::move(fn));
  }
  mod->manifest.functions.clear();
  mod->handle = lib.h;
  lib.h = nullptr;
  *out = mod.release();
}

void fillInfo(const ArgSpec &a, moe_arg_info *out) {
  out->name = a.name.c_str();
  out->dtype = a.dtype;
  out->rank = static_cast<int32_t>(a.dims.size());
  out->shape = a.shape.data();
  out->dims = a.dimNames.data();
  out->split = a.split;
}

void argInfo(const moe_function *fn, int64_t index, moe_arg_info *out,
             bool input) {
  requireNonNull(fn, "function");
  requireNonNull(out, "out");
  const auto &args = input ? fn->spec.inputs : fn->spec.outputs;
  if (index < 0 || index >= static_cast<int64_t>(args.size()))
    fail(MOE_INVALID_ARGUMENT,
         "function '" + fn->spec.name + "' has no " +
             (input ? "input " : "output ") + std::to_string(index) + " (it has " +
             std::to_string(args.size()) + ")");
  fillInfo(args[index], out);
}

void checkOutputCount(const FunctionSpec &spec, int64_t numOutputs) {
  if (numOutputs == static_cast<int64_t>(spec.outputs.size()))
    return;
  std::string names;
  for (const ArgSpec &a : spec.outputs)
    names += (names.empty() ? "" : ", ") + a.name;
  fail(MOE_INVALID_ARGUMENT,
       "function '" + spec.name + "' has " +
           std::to_string(spec.outputs.size()) + " output" +
           (spec.outputs.size() == 1 ? "" : "s") + " (" + names + ") but " +
           std::to_string(numOutputs) + (numOutputs == 1 ? " was" : " were") +
           " given");
}

// Validates a call of moe_invoke / moe_benchmark.
void checkCall(const moe_function *fn, const moe_tensor *inputs,
               int64_t numInputs, moe_tensor *outputs, int64_t numOutputs) {
  requireNonNull(fn, "function");
  const FunctionSpec &spec = fn->spec;
  auto shapes = computeOutputShapes(spec, inputs, numInputs);
  // After the input checks, so that a wrong tensor is reported as such
  // whether or not the communicator is there.
  checkCommunicatorFor(spec);
  checkOutputCount(spec, numOutputs);
  if (numOutputs > 0)
    requireNonNull(outputs, "outputs");
  for (size_t i = 0; i < spec.inputs.size(); ++i)
    if (!inputs[i].data && moe_tensor_numel(&inputs[i]) > 0)
      fail(MOE_INVALID_ARGUMENT, "input " + std::to_string(i) + " '" +
                                     spec.inputs[i].name + "': data is NULL");
  for (size_t i = 0; i < spec.outputs.size(); ++i) {
    const ArgSpec &a = spec.outputs[i];
    const moe_tensor &t = outputs[i];
    std::string where = "output " + std::to_string(i) + " '" + a.name + "'";
    if (t.dtype != a.dtype) {
      const char *got = moe_dtype_name(t.dtype);
      fail(MOE_INVALID_ARGUMENT,
           where + ": dtype is " + (got ? got : "invalid") +
               " but the function produces " + moe_dtype_name(a.dtype));
    }
    const std::vector<int64_t> &want = shapes[i];
    bool same = t.rank == static_cast<int32_t>(want.size());
    for (size_t d = 0; same && d < want.size(); ++d)
      same = t.shape[d] == want[d];
    if (!same)
      fail(MOE_INVALID_ARGUMENT,
           where + ": shape is " +
               (t.rank >= 0 && t.rank <= MOE_MAX_RANK
                    ? formatShape(t.shape, t.rank)
                    : "invalid (rank " + std::to_string(t.rank) + ")") +
               " but these inputs give " +
               formatShape(want.data(), static_cast<int64_t>(want.size())));
    if (!t.data && moe_tensor_numel(&t) > 0)
      fail(MOE_INVALID_ARGUMENT, where + ": data is NULL");
  }
}

void invoke(const moe_function *fn, const moe_tensor *inputs,
            int64_t numInputs, moe_tensor *outputs, int64_t numOutputs) {
  checkCall(fn, inputs, numInputs, outputs, numOutputs);
  fn->module->backend->invoke(fn->spec, fn->resolved, inputs, outputs);
}

void benchmark(const moe_function *fn, const moe_tensor *inputs,
               int64_t numInputs, moe_tensor *outputs, int64_t numOutputs,
               int64_t warmup, int64_t iterations, double *timesMs,
               moe_benchmark_info *info) {
  checkCall(fn, inputs, numInputs, outputs, numOutputs);
  if (warmup < 0)
    fail(MOE_INVALID_ARGUMENT,
         "warmup must be >= 0, not " + std::to_string(warmup));
  if (iterations < 1)
    fail(MOE_INVALID_ARGUMENT,
         "iterations must be >= 1, not " + std::to_string(iterations));
  requireNonNull(timesMs, "times_ms");
  fn->module->backend->benchmark(fn->spec, fn->resolved, inputs, outputs,
                                 warmup, iterations, timesMs, info);
}

} // namespace

extern "C" {

const char *moe_status_name(moe_status status) {
  switch (status) {
  case MOE_OK:
    return "OK";
  case MOE_INVALID_ARGUMENT:
    return "INVALID_ARGUMENT";
  case MOE_NOT_FOUND:
    return "NOT_FOUND";
  case MOE_IO_ERROR:
    return "IO_ERROR";
  case MOE_INVALID_MODULE:
    return "INVALID_MODULE";
  case MOE_UNAVAILABLE:
    return "UNAVAILABLE";
  case MOE_INTERNAL:
    return "INTERNAL";
  case MOE_DEVICE_ERROR:
    return "DEVICE_ERROR";
  }
  return "UNKNOWN";
}

const char *moe_last_error(void) { return tlsLastError.c_str(); }

const char *moe_dtype_name(moe_dtype dtype) {
  switch (dtype) {
  case MOE_DTYPE_F32:
    return "f32";
  case MOE_DTYPE_F16:
    return "f16";
  case MOE_DTYPE_BF16:
    return "bf16";
  case MOE_DTYPE_F64:
    return "f64";
  case MOE_DTYPE_I32:
    return "i32";
  case MOE_DTYPE_I64:
    return "i64";
  case MOE_DTYPE_I8:
    return "i8";
  case MOE_DTYPE_U8:
    return "u8";
  case MOE_DTYPE_BOOL:
    return "bool";
  }
  return nullptr;
}

size_t moe_dtype_size(moe_dtype dtype) {
  switch (dtype) {
  case MOE_DTYPE_F64:
  case MOE_DTYPE_I64:
    return 8;
  case MOE_DTYPE_F32:
  case MOE_DTYPE_I32:
    return 4;
  case MOE_DTYPE_F16:
  case MOE_DTYPE_BF16:
    return 2;
  case MOE_DTYPE_I8:
  case MOE_DTYPE_U8:
  case MOE_DTYPE_BOOL:
    return 1;
  }
  return 0;
}

moe_status moe_dtype_parse(const char *name, moe_dtype *out) {
  return guard([&] {
    requireNonNull(name, "name");
    requireNonNull(out, "out");
    for (int d = MOE_DTYPE_F32; d <= MOE_DTYPE_BOOL; ++d) {
      if (std::strcmp(name, moe_dtype_name(static_cast<moe_dtype>(d))) == 0) {
        *out = static_cast<moe_dtype>(d);
        return;
      }
    }
    fail(MOE_INVALID_ARGUMENT, std::string("unknown dtype '") + name + "'");
  });
}

int64_t moe_tensor_numel(const moe_tensor *t) {
  if (!t || t->rank < 0 || t->rank > MOE_MAX_RANK)
    return -1;
  int64_t n = 1;
  for (int32_t d = 0; d < t->rank; ++d) {
    int64_t s = t->shape[d];
    if (s < 0 || (s != 0 && n > INT64_MAX / s))
      return -1;
    n *= s;
  }
  return n;
}

int64_t moe_tensor_byte_size(const moe_tensor *t) {
  int64_t n = moe_tensor_numel(t);
  int64_t size = n < 0 ? 0 : static_cast<int64_t>(moe_dtype_size(t->dtype));
  if (n < 0 || size == 0 || n > INT64_MAX / size)
    return -1;
  return n * size;
}

moe_status moe_module_load(const char *path, moe_module **out) {
  return guard([&] { loadModule(path, out); });
}

void moe_module_unload(moe_module *module) { delete module; }

const char *moe_module_target(const moe_module *m) {
  return m ? m->manifest.target.c_str() : nullptr;
}

const char *moe_module_manifest_json(const moe_module *m) {
  return m ? m->manifestJson.c_str() : nullptr;
}

const char *moe_module_path(const moe_module *m) {
  return m ? m->path.c_str() : nullptr;
}

int64_t moe_module_function_count(const moe_module *m) {
  return m ? static_cast<int64_t>(m->functions.size()) : 0;
}

const moe_function *moe_module_function(const moe_module *m, int64_t index) {
  if (!m || index < 0 || index >= static_cast<int64_t>(m->functions.size()))
    return nullptr;
  return m->functions[index].get();
}

moe_status moe_module_find_function(const moe_module *m, const char *name,
                                    const moe_function **out) {
  return guard([&] {
    requireNonNull(m, "module");
    requireNonNull(name, "name");
    requireNonNull(out, "out");
    *out = nullptr;
    std::string names;
    for (const auto &fn : m->functions) {
      if (fn->spec.name == name) {
        *out = fn.get();
        return;
      }
      names += (names.empty() ? "" : ", ") + fn->spec.name;
    }
    fail(MOE_NOT_FOUND, "module '" + m->path + "' has no function '" + name +
                            "' (available: " + names + ")");
  });
}

const char *moe_function_name(const moe_function *fn) {
  return fn ? fn->spec.name.c_str() : nullptr;
}

const char *moe_function_entry(const moe_function *fn) {
  return fn ? fn->spec.entry.c_str() : nullptr;
}

int64_t moe_function_input_count(const moe_function *fn) {
  return fn ? static_cast<int64_t>(fn->spec.inputs.size()) : 0;
}

int64_t moe_function_output_count(const moe_function *fn) {
  return fn ? static_cast<int64_t>(fn->spec.outputs.size()) : 0;
}

moe_status moe_function_input(const moe_function *fn, int64_t index,
                              moe_arg_info *out) {
  return guard([&] { argInfo(fn, index, out, true); });
}

moe_status moe_function_output(const moe_function *fn, int64_t index,
                               moe_arg_info *out) {
  return guard([&] { argInfo(fn, index, out, false); });
}

const char *moe_function_reference_json(const moe_function *fn) {
  return fn && fn->spec.hasReference ? fn->spec.referenceJson.c_str()
                                     : nullptr;
}

moe_status moe_function_output_shapes(const moe_function *fn,
                                      const moe_tensor *inputs,
                                      int64_t numInputs, moe_tensor *outputs,
                                      int64_t numOutputs) {
  return guard([&] {
    requireNonNull(fn, "function");
    auto shapes = computeOutputShapes(fn->spec, inputs, numInputs);
    checkOutputCount(fn->spec, numOutputs);
    if (numOutputs > 0)
      requireNonNull(outputs, "outputs");
    for (size_t i = 0; i < shapes.size(); ++i) {
      outputs[i].dtype = fn->spec.outputs[i].dtype;
      outputs[i].rank = static_cast<int32_t>(shapes[i].size());
      for (size_t d = 0; d < shapes[i].size(); ++d)
        outputs[i].shape[d] = shapes[i][d];
    }
  });
}

moe_status moe_function_expert_parallel(const moe_function *fn,
                                        moe_expert_parallel_info *out) {
  return guard([&] {
    requireNonNull(fn, "function");
    requireNonNull(out, "out");
    *out = fn->spec.expertParallel;
  });
}

moe_status moe_partition_range(int64_t n, int64_t parts, int64_t index,
                               int64_t *begin, int64_t *end) {
  return guard([&] {
    requireNonNull(begin, "begin");
    requireNonNull(end, "end");
    if (n < 0 || parts < 1 || index < 0 || index >= parts)
      fail(MOE_INVALID_ARGUMENT,
           "moe_partition_range(" + std::to_string(n) + ", " +
               std::to_string(parts) + ", " + std::to_string(index) +
               "): need n >= 0, parts >= 1 and 0 <= index < parts");
    auto lo = [&](int64_t r) {
      return r * (n / parts) + std::min(r, n % parts);
    };
    *begin = lo(index);
    *end = lo(index + 1);
  });
}

moe_status moe_set_communicator(const moe_communicator *comm) {
  return guard([&] { setCommunicator(comm); });
}

int64_t moe_communicator_size(void) { return communicatorSize(); }

const moe_communicator *moe_self_communicator(void) {
  return selfCommunicator();
}

moe_status moe_nccl_communicator_create(const moe_nccl_bootstrap *bootstrap,
                                        const moe_communicator **out) {
  return guard([&] {
    requireNonNull(bootstrap, "bootstrap");
    requireNonNull(out, "out");
    *out = createNcclCommunicator(*bootstrap);
  });
}

void moe_nccl_communicator_destroy(const moe_communicator *comm) {
  destroyNcclCommunicator(comm);
}

moe_status moe_invoke(const moe_function *fn, const moe_tensor *inputs,
                      int64_t numInputs, moe_tensor *outputs,
                      int64_t numOutputs) {
  return guard([&] { invoke(fn, inputs, numInputs, outputs, numOutputs); });
}

moe_status moe_benchmark(const moe_function *fn, const moe_tensor *inputs,
                         int64_t numInputs, moe_tensor *outputs,
                         int64_t numOutputs, int64_t warmup,
                         int64_t iterations, double *timesMs,
                         moe_benchmark_info *info) {
  return guard([&] {
    benchmark(fn, inputs, numInputs, outputs, numOutputs, warmup, iterations,
              timesMs, info);
  });
}

moe_status moe_set_num_threads(int64_t n) {
  return guard([&] {
    if (!setNumThreads(n))
      fail(MOE_INVALID_ARGUMENT,
           "moe_set_num_threads cannot be called from inside a parallel loop");
  });
}

int64_t moe_get_num_threads(void) { return numThreads(); }

void moe_routing_profile_start(void) { startRoutingProfile(); }

void moe_routing_profile_stop(void) { stopRoutingProfile(); }

int64_t moe_routing_profile_records(void) { return routingProfileRecords(); }

moe_status moe_expert_cache_configure(int64_t memory_limit,
                                      moe_read_ahead read_ahead) {
  return guard([&] { configureExpertCache(memory_limit, read_ahead); });
}

void moe_expert_cache_get_stats(moe_expert_cache_stats *stats) {
  if (stats)
    *stats = expertCacheStats();
}

void moe_expert_cache_reset_stats(void) { resetExpertCacheStats(); }

void moe_expert_cache_wait(void) { waitForExpertCache(); }

moe_status moe_routing_profile_write(const char *path, int merge) {
  return guard([&] {
    requireNonNull(path, "path");
    writeRoutingProfile(path, merge != 0);
  });
}

void moe_rt_parallel_for(int64_t n,
                         void (*body)(void *ctx, int64_t begin, int64_t end),
                         void *ctx) {
  if (body)
    parallelFor(n, body, ctx);
}

int64_t moe_rt_num_threads(void) { return numThreads(); }

} // extern "C"
