//===- CpuBackend.cpp - runs host entry points with memref descriptors ----===//
//
// docs/Runtime.md: entry `int32_t f(void **args)`, args[i] pointing to the
// rank-R descriptor {allocated, aligned, offset, sizes[R], strides[R]} of
// argument i (inputs, then outputs), dense row-major, offset 0.
//
//===----------------------------------------------------------------------===//

#include "Backend.h"
#include "Error.h"

#include <cstring>
#include <dlfcn.h>
#include <vector>

namespace moe::rt {

namespace {

static_assert(sizeof(void *) == sizeof(int64_t),
              "the descriptor layout assumes 64-bit pointers");

using Entry = int32_t (*)(void **);

// Appends the descriptor words of `t` to `words`.
void appendDescriptor(std::vector<int64_t> &words, const moe_tensor &t) {
  int64_t ptr;
  std::memcpy(&ptr, &t.data, sizeof ptr);
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

class CpuBackend final : public Backend {
public:
  void *resolve(void *dlHandle, const FunctionSpec &fn) override {
    dlerror();
    void *sym = dlsym(dlHandle, fn.entry.c_str());
    if (!sym)
      fail(MOE_INVALID_MODULE, "function '" + fn.name + "': entry symbol '" +
                                   fn.entry + "' not found in the module");
    return sym;
  }

  void invoke(const FunctionSpec &fn, void *resolved, const moe_tensor *inputs,
              moe_tensor *outputs) override {
    size_t nIn = fn.inputs.size(), nOut = fn.outputs.size();
    // All descriptors in one buffer; offsets are fixed before taking
    // pointers so that growth cannot invalidate them.
    std::vector<int64_t> words;
    std::vector<size_t> starts;
    for (size_t i = 0; i < nIn; ++i) {
      starts.push_back(words.size());
      appendDescriptor(words, inputs[i]);
    }
    for (size_t i = 0; i < nOut; ++i) {
      starts.push_back(words.size());
      appendDescriptor(words, outputs[i]);
    }
    std::vector<void *> args;
    for (size_t s : starts)
      args.push_back(words.data() + s);
    Entry entry = reinterpret_cast<Entry>(resolved);
    int32_t rc = entry(args.data());
    if (rc != 0)
      fail(MOE_INTERNAL, "function '" + fn.name + "': entry '" + fn.entry +
                             "' failed with code " + std::to_string(rc));
  }
};

} // namespace

std::unique_ptr<Backend> createCpuBackend() {
  return std::make_unique<CpuBackend>();
}

} // namespace moe::rt
