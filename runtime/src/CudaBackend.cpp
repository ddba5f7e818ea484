//===- CudaBackend.cpp - placeholder for modules with target "cuda" -------===//
//
// CUDA modules will run through the CUDA driver API, loaded with dlopen at
// run time (never linked) so that one runtime binary serves CPU-only and GPU
// machines. Until then a cuda module loads and can be inspected, and
// invoking it says which of the two things is missing.
//
//===----------------------------------------------------------------------===//

#include "Backend.h"
#include "Error.h"

#include <dlfcn.h>
#include <mutex>

namespace moe::rt {

namespace {

// Probes for the driver once per process. The handle is kept open: the
// future implementation will resolve cu* entry points from it.
const std::string &driverProblem() {
  static std::once_flag once;
  static std::string problem;
  std::call_once(once, [] {
    if (dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL))
      return;
    const char *err = dlerror();
    problem = std::string("no CUDA driver (libcuda.so.1 not found") +
              (err ? std::string(": ") + err : std::string()) + ")";
  });
  return problem;
}

class CudaBackend final : public Backend {
public:
  // Entry points of a device module are not host symbols the runtime can
  // check yet; nothing to resolve.
  void *resolve(void *, const FunctionSpec &) override { return nullptr; }

  void invoke(const FunctionSpec &fn, void *, const moe_tensor *,
              moe_tensor *) override {
    const std::string &problem = driverProblem();
    fail(MOE_UNAVAILABLE,
         "function '" + fn.name + "' targets CUDA: " +
             (problem.empty() ? "CUDA modules are not supported by this "
                                "runtime build yet"
                              : problem));
  }
};

} // namespace

std::unique_ptr<Backend> createCudaBackend() {
  return std::make_unique<CudaBackend>();
}

} // namespace moe::rt
