//===- CpuBackend.cpp - runs host entry points with memref descriptors ----===//
//
// docs/Runtime.md: entry `int32_t f(void **args)`, args[i] pointing to the
// rank-R descriptor {allocated, aligned, offset, sizes[R], strides[R]} of
// argument i (inputs, then outputs), dense row-major, offset 0. The
// descriptor builder is shared with the CUDA backend.
//
//===----------------------------------------------------------------------===//

#include "Backend.h"
#include "Error.h"
#include "HostBuffers.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <vector>

namespace moe::rt {

namespace {

static_assert(sizeof(void *) == sizeof(int64_t),
              "the descriptor layout assumes 64-bit pointers");

// Appends the descriptor words of `t`, with `data` as its buffer.
void appendDescriptor(std::vector<int64_t> &words, const moe_tensor &t,
                      void *data) {
  int64_t ptr;
  std::memcpy(&ptr, &data, sizeof ptr);
  words.push_back(ptr); // allocated
  words.push_back(ptr); // aligned
  words.push_back(0);   // offset
  for (int32_t d = 0; d < t.rank; ++d)
    words.push_back(t.shape[d]);
  int64_t stride = 1;
  std::vector<int64_t> strides(t.rank);
  for (int32_t d = t.rank - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= t.shape[d];
  }
  words.insert(words.end(), strides.begin(), strides.end());
}

std::vector<void *> hostPointers(const FunctionSpec &fn,
                                 const moe_tensor *inputs,
                                 const moe_tensor *outputs) {
  std::vector<void *> pointers;
  for (size_t i = 0; i < fn.inputs.size(); ++i)
    pointers.push_back(inputs[i].data);
  for (size_t i = 0; i < fn.outputs.size(); ++i)
    pointers.push_back(outputs[i].data);
  return pointers;
}

void callEntry(const FunctionSpec &fn, Entry entry, Descriptors &descriptors) {
  int32_t rc = entry(descriptors.args());
  if (rc != 0)
    fail(MOE_INTERNAL, "function '" + fn.name + "': entry '" + fn.entry +
                           "' failed with code " + std::to_string(rc));
}

class CpuBackend final : public Backend {
public:
  void *resolve(void *dlHandle, const FunctionSpec &fn) override {
    return reinterpret_cast<void *>(resolveEntry(dlHandle, fn));
  }

  void invoke(const FunctionSpec &fn, void *resolved, const moe_tensor *inputs,
              moe_tensor *outputs) override {
    Descriptors descriptors(fn, inputs, outputs,
                            hostPointers(fn, inputs, outputs));
    callEntry(fn, reinterpret_cast<Entry>(resolved), descriptors);
  }

  // Host time around the entry alone: the descriptors are built once.
  void benchmark(const FunctionSpec &fn, void *resolved,
                 const moe_tensor *inputs, moe_tensor *outputs, int64_t warmup,
                 int64_t iterations, double *timesMs,
                 moe_benchmark_info *info) override {
    Descriptors descriptors(fn, inputs, outputs,
                            hostPointers(fn, inputs, outputs));
    Entry entry = reinterpret_cast<Entry>(resolved);
    for (int64_t i = 0; i < warmup; ++i)
      callEntry(fn, entry, descriptors);
    for (int64_t i = 0; i < iterations; ++i) {
      auto start = std::chrono::steady_clock::now();
      callEntry(fn, entry, descriptors);
      auto end = std::chrono::steady_clock::now();
      timesMs[i] =
          std::chrono::duration<double, std::milli>(end - start).count();
    }
    if (info) {
      info->clock = "steady_clock";
      info->device = "host CPU";
    }
  }
};

} // namespace

Entry resolveEntry(void *dlHandle, const FunctionSpec &fn) {
  dlerror();
  void *sym = dlsym(dlHandle, fn.entry.c_str());
  if (!sym)
    fail(MOE_INVALID_MODULE, "function '" + fn.name + "': entry symbol '" +
                                 fn.entry + "' not found in the module");
  return reinterpret_cast<Entry>(sym);
}

Descriptors::Descriptors(const FunctionSpec &fn, const moe_tensor *inputs,
                         const moe_tensor *outputs,
                         const std::vector<void *> &pointers) {
  size_t nIn = fn.inputs.size(), nOut = fn.outputs.size();
  // All descriptors in one buffer; offsets are fixed before taking pointers
  // so that growth cannot invalidate them.
  std::vector<size_t> starts;
  for (size_t i = 0; i < nIn + nOut; ++i) {
    starts.push_back(words.size());
    appendDescriptor(words, i < nIn ? inputs[i] : outputs[i - nIn],
                     pointers[i]);
  }
  for (size_t s : starts)
    argPointers.push_back(words.data() + s);
}

std::unique_ptr<Backend> createCpuBackend() {
  keepHeapPagesAcrossCalls();
  return std::make_unique<CpuBackend>();
}

} // namespace moe::rt
