//===- Backend.h - per-target execution of module functions -----*- C++ -*-===//
//
// The C API validates calls against the manifest and then hands them to the
// backend of the module's `target`. Backends see validated moe_tensors (not
// memref descriptors) so that a device backend can add its own transfers:
//
//  * cpu:  entries are host functions taking memref descriptors
//          (CpuBackend.cpp);
//  * cuda: entries are host functions too, but every descriptor points to
//          device memory; the backend moves the tensors to and from the
//          device and provides the mgpu* functions the entries call
//          (CudaBackend.cpp). The driver is loaded with dlopen on first use
//          (CudaDriver.cpp) so that CPU-only machines load and run CPU
//          modules without it.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_BACKEND_H
#define MOE_RUNTIME_BACKEND_H

#include "Manifest.h"

#include <memory>
#include <vector>

namespace moe::rt {

class Backend {
public:
  virtual ~Backend() = default;

  /// Looks up what the backend needs to run `fn` in the loaded object and
  /// returns it (passed back to invoke()). Throws Error(MOE_INVALID_MODULE)
  /// when the module lacks it.
  virtual void *resolve(void *dlHandle, const FunctionSpec &fn) = 0;

  /// Runs `fn` on inputs/outputs already checked against the manifest.
  /// Throws Error on failure.
  virtual void invoke(const FunctionSpec &fn, void *resolved,
                      const moe_tensor *inputs, moe_tensor *outputs) = 0;

  /// moe_benchmark(): `warmup` untimed runs, then `iterations` timed ones
  /// into timesMs; outputs hold the last run's results. Throws Error.
  virtual void benchmark(const FunctionSpec &fn, void *resolved,
                         const moe_tensor *inputs, moe_tensor *outputs,
                         int64_t warmup, int64_t iterations, double *timesMs,
                         moe_benchmark_info *info) = 0;
};

/// The entry point of a function: `int32_t entry(void **args)`.
using Entry = int32_t (*)(void **);

/// Looks up the entry symbol of `fn`; Error(MOE_INVALID_MODULE) when the
/// module lacks it.
Entry resolveEntry(void *dlHandle, const FunctionSpec &fn);

/// The memref descriptors of a call (docs/Runtime.md): dense row-major,
/// offset 0, `allocated == aligned == pointers[i]` for the i-th tensor
/// (inputs, then outputs).
class Descriptors {
public:
  Descriptors(const FunctionSpec &fn, const moe_tensor *inputs,
              const moe_tensor *outputs, const std::vector<void *> &pointers);
  /// args[i] points to the descriptor of argument i.
  void **args() { return argPointers.data(); }

private:
  std::vector<int64_t> words;
  std::vector<void *> argPointers;
};

std::unique_ptr<Backend> createCpuBackend();
std::unique_ptr<Backend> createCudaBackend();

} // namespace moe::rt

#endif // MOE_RUNTIME_BACKEND_H
