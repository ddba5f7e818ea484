//===- Backend.h - per-target execution of module functions -----*- C++ -*-===//
//
// The C API validates calls against the manifest and then hands them to the
// backend of the module's `target`. Backends see validated moe_tensors (not
// memref descriptors) so that a device backend can add its own transfers:
//
//  * cpu:  entries are host functions taking memref descriptors
//          (CpuBackend.cpp);
//  * cuda: not implemented yet; reports whether the CUDA driver is missing
//          or the runtime build lacks support (CudaBackend.cpp). The driver
//          is probed with dlopen at run time so that CPU-only machines load
//          and run CPU modules without it.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_BACKEND_H
#define MOE_RUNTIME_BACKEND_H

#include "Manifest.h"

#include <memory>

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
};

std::unique_ptr<Backend> createCpuBackend();
std::unique_ptr<Backend> createCudaBackend();

} // namespace moe::rt

#endif // MOE_RUNTIME_BACKEND_H
