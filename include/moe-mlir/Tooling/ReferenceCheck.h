//===- ReferenceCheck.h - moe-run --check against lib/Reference -*- C++ -*-===//
//
// A compiled layer's manifest carries a `reference` section (the moe.layer's
// operands as input indices, and its attributes); --check evaluates that
// layer in float64 with lib/Reference on the same inputs and compares the
// first output with it. --benchmark reads the section too, to count the
// work a run does (Benchmark.h).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLING_REFERENCECHECK_H
#define MOE_MLIR_TOOLING_REFERENCECHECK_H

#include "moe-mlir/Reference/Reference.h"
#include "moe-mlir/Tooling/HostTensor.h"
#include "moe/runtime.h"

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moe::tooling {

/// The manifest's `reference` section, decoded. Operand indices refer to
/// the function inputs.
struct Reference {
  std::map<std::string, size_t> operands;
  reference::LayerOptions options;
  /// Set for a quantised layer (weight_bits / block_size attributes).
  std::optional<reference::Quantization> quant;
  /// expert_capacity counts per sequence of the [B, S, H] input.
  bool perSequenceCapacity = false;

  std::optional<size_t> operand(const std::string &name) const {
    auto it = operands.find(name);
    if (it == operands.end())
      return std::nullopt;
    return it->second;
  }
};

/// Decodes the `reference` section of `fn`; fails when there is none or it
/// is not a moe.layer this evaluator knows.
Reference parseReference(const moe_function *fn);

/// Converts `t` to a float64 tensor; with `flatten`, a rank >= 3 tensor
/// becomes [prod(leading dims), last dim] (moe.layer's [B, S, H]).
reference::Tensor refTensor(const HostTensor &t, bool flatten);

/// The layer's router logits [T, E]: an input, or computed in float64
/// from the tokens and the router weight.
reference::Tensor referenceLogits(const Reference &r,
                                  const std::vector<HostTensor> &inputs);

/// --check: prints the errors and returns true when the first output is
/// within `tolerance` (by default 1e-5, 2e-2 when a 16-bit float is
/// involved) of the reference.
bool runCheck(const moe_function *fn, std::optional<double> tolerance,
              const std::vector<HostTensor> &inputs,
              const std::vector<HostTensor> &outputs);

} // namespace moe::tooling

#endif // MOE_MLIR_TOOLING_REFERENCECHECK_H
