//===- Invocation.h - calling a module function on host tensors -*- C++ -*-===//
//
// Through the runtime's C API (moe/runtime.h), which checks every call
// against the manifest and reports mistakes with its own messages.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLING_INVOCATION_H
#define MOE_MLIR_TOOLING_INVOCATION_H

#include "moe-mlir/Tooling/HostTensor.h"
#include "moe/runtime.h"

#include <string>
#include <vector>

namespace moe::tooling {

/// The manifest's inputs (or outputs) of `fn`.
std::vector<moe_arg_info> functionArgs(const moe_function *fn, bool inputs);

/// "f32[T, 64]": the dtype and the declared shape, symbols by name.
std::string argString(const moe_arg_info &a);

std::vector<moe_tensor> views(const std::vector<HostTensor> &ts);

/// The `count` outputs of `fn` for `inputs`. Shapes are checked here, with
/// the runtime's messages, before anything is allocated. The buffers are
/// poisoned: 0xFF bytes are NaN for every float dtype, so elements the
/// module forgets to write stand out (countPoison).
std::vector<HostTensor> allocateOutputs(const moe_function *fn,
                                        const std::vector<HostTensor> &inputs,
                                        size_t count);

/// moe_invoke; fails with the runtime's message.
void invoke(const moe_function *fn, const std::vector<HostTensor> &inputs,
            std::vector<HostTensor> &outputs);

} // namespace moe::tooling

#endif // MOE_MLIR_TOOLING_INVOCATION_H
