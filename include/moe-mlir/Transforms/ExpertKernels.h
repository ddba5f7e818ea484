//===- ExpertKernels.h - CPU kernels of moe.expert's projections -*- C++
//-*-===//
//
// What the CPU lowering of moe.expert (BufferizableOpInterfaceImpl.cpp)
// emits for one projection of one expert on a panel of its output columns:
// a linalg contraction for float weights, which
// -moe-vectorize-contractions register-tiles later, and for quantised
// weights either the fused decode kernel or dequantised weight rows fed to
// the same contraction.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TRANSFORMS_EXPERTKERNELS_H
#define MOE_MLIR_TRANSFORMS_EXPERTKERNELS_H

#include "MoE/IR/MoEOps.h"
#include "moe-mlir/Transforms/KernelEmitter.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"

namespace mlir::moe {

/// One expert projection's packed integer weights (`[E, N, K / pack]` ui8),
/// scales and optional zero points, as whole stacked buffers.
struct QuantizedProjection {
  Value weights, scales, zeroPoints;
};

/// Marks the contraction of an expert's projection by its float weights:
/// -moe-vectorize-contractions packs its weight panels from its
/// `expert-pack-min-rows` rows on.
constexpr llvm::StringLiteral kExpertGemmAttrName = "moe.expert_gemm";

/// Emits `c[m, n] (+)= sum_k a[m, k] * w[n, k]` as a linalg contraction, with
/// `w` in the out-major weight layout. `c` is read (accumulated into).
linalg::GenericOp emitMatmulTransposedB(ImplicitLocOpBuilder &b, Value a,
                                        Value w, Value c);

/// Emits the same contraction with row m of A read in place as row
/// `tokens[m]` of `source` (clamped to its rows): a linalg.generic over
/// `tokens` and `w` whose body loads from `source`, which
/// -moe-vectorize-contractions turns into its kernel with A's rows looked up
/// once per register block.
linalg::GenericOp emitGatheredMatmulTransposedB(ImplicitLocOpBuilder &b,
                                                Value source, Value tokens,
                                                Value w, Value c);

/// Copies `out[r] = source[tokens[r]]` (tokens clamped to the rows of
/// `source`) for every row of `out`, in parallel over the rows.
void emitGatherRows(ImplicitLocOpBuilder &b, Value source, Value tokens,
                    Value out);

/// Whether the decode kernel reads its rows from a staged copy: converted
/// to the compute type, and for 4-bit weights with every vector step's
/// columns deinterleaved (even columns, then odd) to match the nibbles'
/// order.
bool decodeNeedsStaging(QuantAttr quant, Type rowType, Type ct);

/// Stages every row of `a` (depth columns) into `staged` for the decode
/// kernel, once per projection input rather than once per panel; rows are
/// independent and run in parallel.
void emitStageRows(ImplicitLocOpBuilder &b, Value a, QuantAttr quant,
                   int64_t depth, Value staged);

/// `c[m, n - first] += sum_k a[m, k] * W[x][n, k]` for a packed weight's
/// rows n in `[first, first + width)`; `c` is the panel of the output, its
/// `width` columns for `a`'s rows. An expert with at most kDecodeMaxRows rows
/// (decode) runs the decode kernel on `staged` (`a` staged, or `a`
/// itself). Otherwise the panel's weight rows are dequantised into a
/// scratch of their own (so that panels run in parallel) and multiplied by
/// the float contraction, so the whole weight is never materialised and
/// the float kernels are reused as they are.
void emitQuantizedPanel(ImplicitLocOpBuilder &b, Value a, Value staged,
                        const QuantizedProjection &p, QuantAttr quant, Value x,
                        Value first, OpFoldResult width, int64_t depth,
                        Value c);

} // namespace mlir::moe

#endif // MOE_MLIR_TRANSFORMS_EXPERTKERNELS_H
