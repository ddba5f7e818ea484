//===- Manifest.h - module manifest model and shape binding ------*- C++ -*-===//
//
// The parsed and validated form of a module manifest (docs/Runtime.md) and
// the symbol binding that turns input shapes into output shapes. Everything
// the manifest promises is checked once at load time so that invocation only
// has to compare numbers.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_MANIFEST_H
#define MOE_RUNTIME_MANIFEST_H

#include "moe/runtime.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moe::rt {

/// One entry of a manifest `shape`: a static size, or a sum of terms, each
/// an integer times a product of symbols ("T", "B*S", "P+S", "2*T-1").
struct DimSpec {
  struct Term {
    int64_t coefficient = 1;
    std::vector<std::string> symbols; ///< empty for a constant term
  };
  int64_t size = -1;       ///< static size, -1 when symbolic
  std::string expr;        ///< canonical spelling; empty when static
  std::vector<Term> terms; ///< the sum `expr` spells
  bool isStatic() const { return expr.empty(); }
  bool isPlainSymbol() const {
    return terms.size() == 1 && terms[0].coefficient == 1 &&
           terms[0].symbols.size() == 1;
  }
  /// Every symbol `expr` reads.
  std::vector<std::string> symbols() const;
};

struct ArgSpec {
  std::string name;
  moe_dtype dtype = MOE_DTYPE_F32;
  std::vector<DimSpec> dims;
  /// Expert-parallel functions only (docs/ExpertParallel.md).
  moe_split split = MOE_SPLIT_NONE;
  /// For moe_arg_info; filled by finalize() once the spec no longer moves
  /// (dimNames points into `dims[i].expr`).
  std::vector<int64_t> shape;
  std::vector<const char *> dimNames;
  void finalize();
};

struct FunctionSpec {
  std::string name;
  std::string entry;
  std::vector<ArgSpec> inputs, outputs;
  bool hasReference = false;
  std::string referenceJson; ///< compact JSON of `reference`
  /// `expert_parallel`; ranks == 0 for an ordinary function.
  moe_expert_parallel_info expertParallel{0, 0, 0};
  bool isExpertParallel() const { return expertParallel.ranks > 0; }
};

struct Manifest {
  std::string format;
  std::string target; ///< "cpu" or "cuda"
  std::vector<FunctionSpec> functions;
};

/// The manifest format this runtime reads.
inline constexpr const char *kManifestFormat = "moe-module-1";

/// Parses and validates a manifest. Throws Error(MOE_INVALID_MODULE) with a
/// message that starts with "manifest: " and names the offending function
/// and argument.
Manifest parseManifest(const std::string &text);

/// "[T, 64]" (declared) and "[8, 64]" (concrete) for messages.
std::string formatShape(const ArgSpec &arg);
std::string formatShape(const int64_t *shape, int64_t rank);

/// Checks `inputs` (dtype, rank, static dims, symbol agreement, products)
/// against `fn` and returns the shape of every output. `inputs[i].data` is
/// not read. Throws Error(MOE_INVALID_ARGUMENT).
std::vector<std::vector<int64_t>>
computeOutputShapes(const FunctionSpec &fn, const moe_tensor *inputs,
                    int64_t numInputs);

} // namespace moe::rt

#endif // MOE_RUNTIME_MANIFEST_H
