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
/// scales and optional zero points, as whole stacked buffers. With
/// `panelWidth` P the weights are panel-major, `[E, N / P, Kb / 4, P, 4]`
/// (moe.expert's `panel_width`), which only the int8 panel kernel reads.
struct QuantizedProjection {
  Value weights, scales, zeroPoints;
  int64_t panelWidth = 0;
};

/// Packed weight bytes behind one output column of a quantised projection
/// of `depth` inputs (two rows for a gated pair: the gate's and the linear
/// one's): what sizes the CPU schedule's panels of quantised experts.
inline int64_t quantizedBytesPerColumn(QuantAttr quant, int64_t depth,
                                       bool gatedPair) {
  return (gatedPair ? 2 : 1) * depth / quant.getPackFactor();
}

/// Marks the contraction of an expert's projection by its float weights:
/// -moe-vectorize-contractions packs its weight panels from its
/// `expert-pack-min-rows` rows on.
constexpr llvm::StringLiteral kExpertGemmAttrName = "moe.expert_gemm";

/// On an expert contraction by panel-major weights that subviews cut from
/// a larger contiguous buffer: the thread running it next reads the weights
/// this many elements after its own first one in that buffer (the grouped
/// schedule's next task: in expert-major order the expert's next panel,
/// right after these; in panel-major order the next expert's same panel).
/// -moe-vectorize-contractions prefetches past the last panel into them,
/// so that the next task does not start on cold weights.
constexpr llvm::StringLiteral kNextWeightsOffsetAttrName =
    "moe.next_weights_offset";

/// Sets kNextWeightsOffsetAttrName on the expert contractions in `loop`
/// whose weights have a static shape and are cut from a static buffer with
/// an identity layout: the weights right after theirs with
/// `followingPanels`, else the same ones of the next expert (the buffer's
/// leading dimension).
void markNextWeights(Operation *loop, bool followingPanels);

/// The buffer that the subviews of `weights` are cut from, if it has an
/// identity layout, else null.
Value weightsBuffer(Value weights);

/// How an expert's contraction (emitMatmulTransposedB) reads its weights B:
/// out-major, `(n, k)` with loops (m, n, k); panel-major of width P,
/// `(n floordiv P, k, n mod P)`; or panel-major bf16 with pairs of k,
/// `(n floordiv P, k2, n mod P, r)` with loops (m, n, k2, r) and
/// k = 2 k2 + r, so that every loop is some operand's dimension. The
/// builders and -moe-vectorize-contractions' matchers share it. A matmul by
/// a packed ONNX weight (-moe-pack-matmul-weights) may have several loops
/// of rows in place of m (the tokens' batch and sequence); n, k (and r)
/// follow them.
struct WeightLayout {
  int64_t panelWidth = 0;
  bool pairs = false;
  unsigned rowLoops = 1;

  /// The layout of weights `w` read with `panelWidth` (0: out-major).
  static WeightLayout of(Value w, int64_t panelWidth);
  unsigned loops() const { return rowLoops + (pairs ? 3 : 2); }
  /// Elements of k per step of the k loop.
  int64_t stepsOfK() const { return pairs ? 2 : 1; }
  /// B's indexing map.
  AffineMap weightMap(MLIRContext *ctx) const;
  /// The index of k that A is read at: `k`, or `2 k2 + r` with pairs.
  AffineExpr kOfA(MLIRContext *ctx) const;
  /// The indexing maps of A, B and C of the contraction with A's and C's
  /// rows in place: A at `(rows..., kOfA)`, B at weightMap, C at
  /// `(rows..., n)`.
  SmallVector<AffineMap> rowsInPlaceMaps(MLIRContext *ctx) const;
};

/// `v` without a widening arith.extf.
inline Value stripExtension(Value v) {
  if (auto ext = v.getDefiningOp<arith::ExtFOp>())
    return ext.getIn();
  return v;
}

/// Emits `c[m, n] (+)= sum_k a[m, k] * w[n, k]` as a linalg contraction, with
/// `w` in the out-major weight layout, or with a `panelWidth` P panel-major:
/// `w [N / P, K, P]` read at `[n floordiv P, k, n mod P]`, bf16 `w [N / P,
/// K / 2, 2 * P]` at `[n floordiv P, k floordiv 2, (n mod P) * 2 + k mod 2]`
/// (moe.expert's `panel_width`). `c` is read (accumulated into).
linalg::GenericOp emitMatmulTransposedB(ImplicitLocOpBuilder &b, Value a,
                                        Value w, Value c,
                                        int64_t panelWidth = 0);

/// Emits the same contraction with row m of A read in place as row
/// `tokens[m]` of `source` (clamped to its rows): a linalg.generic over
/// `tokens` and `w` whose body loads from `source`, which
/// -moe-vectorize-contractions turns into its kernel with A's rows looked up
/// once per register block.
linalg::GenericOp emitGatheredMatmulTransposedB(ImplicitLocOpBuilder &b,
                                                Value source, Value tokens,
                                                Value w, Value c,
                                                int64_t panelWidth = 0);

/// Whether `columns` output columns of expert weights split into the CPU
/// schedule's column panels (BufferizableOpInterfaceImpl.cpp) as whole
/// weight panels of `panelWidth` columns: what panel-major weights need.
/// Quantised weights give their quantizedBytesPerColumn, which sizes the
/// schedule's panels; float ones 0.
bool expertColumnsFitPanels(int64_t columns, int64_t panelWidth,
                            int64_t quantizedBytesPerColumn = 0);

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

/// The horizontal sums of `vectors` (a power of two of them, at most their
/// lane count) as one vector of that many lanes: a transposing tree in which
/// each step adds two shuffles of a pair of vectors, halving the partial
/// sums each group of lanes holds and doubling the groups, so that n vectors
/// cost about 2n shuffles and n adds instead of n full reductions and n
/// scalar updates of the result.
Value reduceTransposed(ImplicitLocOpBuilder &b, ArrayRef<Value> vectors);

/// The decode kernel's loop nest: a parallel loop over tiles of weight rows
/// `[nBegin, nEnd)`, and in each `emitRows(n, count, m0, group)` for
/// `count` weight rows from n (`weightRows` at a time, the tile's rest one
/// by one) and groups of activation rows from m0 (of `numRows`: up to four,
/// up to 8 / weightRows with several weight rows), `count` and `group`
/// static so that their accumulators are registers.
void emitDecodeTiles(
    ImplicitLocOpBuilder &b, Value nBegin, Value nEnd, Value numRows,
    function_ref<void(Value n, int64_t count, Value m0, int64_t group)>
        emitRows,
    int64_t weightRows = 1);

/// Marks a quantised moe.expert whose decode kernel multiplies activation
/// rows quantised to int8 by the packed weights with AVX512-VNNI's
/// vpdpbusd (set by -moe-int8-activations; the target must have
/// avx512vnni).
constexpr llvm::StringLiteral kInt8ActivationsAttrName =
    "moe.int8_activations";

/// How the int8-activation decode kernel walks a projection of depth K:
/// activations are quantised per weight block (`blockCols` columns, the
/// whole row for per-row scales) to `q = round(a * 127 / amax)`; the
/// kernel reads weight bytes 64 at a time (one vpdpbusd, 16 i32 lanes of 4
/// bytes) and converts its lanes to floats once per unit: a block, or the
/// `blocksPerUnit` blocks of one 64-byte step.
struct Int8Layout {
  int64_t pack, blockCols, blockBytes, unitBytes, blocksPerUnit, units,
      blocks, zeroPoint;
};

/// The layout of a projection of depth `depth` quantised as `quant`, or
/// nothing where the int8 kernel does not apply: explicit zero points, K
/// not a whole number of 64-byte steps, or blocks that are not a multiple
/// of 32 columns or that straddle steps.
std::optional<Int8Layout> getInt8Layout(QuantAttr quant, bool hasZeroPoints,
                                        int64_t depth);

/// The int8 layouts that the CPU lowering runs quantised `expert`'s
/// projections with: fc1's (and fc3's) of depth `hidden`, fc2's of depth
/// `inter`. None unless the expert is marked moe.int8_activations and
/// computes in f32; fc1's only where fc3, if any, has one too.
struct ExpertInt8Layouts {
  std::optional<Int8Layout> fc1, fc2;
};
ExpertInt8Layouts getExpertInt8Layouts(ExpertOp expert, int64_t hidden,
                                       int64_t inter);

/// Activation rows quantised for the int8 decode kernel: `codes` `[M, K]`
/// i8 (for 4-bit weights every 128 columns as their 64 even columns, then
/// the 64 odd ones, the order of the weight bytes' nibbles), `scales` `[M,
/// blocks]` f32 (amax / 127), and `corrections` `[M, units * 16]` i32, each
/// block's `-zp * sum q` in the first lane it owns and zeros elsewhere:
/// the kernel's starting lanes. With `tokens` (the dispatched rows'
/// tokens), the codes are the tokens' rows, quantised once per token, and
/// row m of the projection's input is row `tokens[m]` of all three: the
/// kernels read them in place, as the float GEMMs read token rows.
struct Int8Rows {
  Int8Layout layout;
  Value codes, scales, corrections;
  Value tokens = {};

  /// The rows of the projection's input.
  Value numRows(KernelEmitter &e) const {
    return e.dim(tokens ? tokens : codes, 0);
  }
  /// The row of codes, scales and corrections that holds input row m.
  Value sourceRow(KernelEmitter &e, Value m) const {
    if (!tokens)
      return m;
    Value lastRow = e.subi(e.dim(codes, 0), e.index(1));
    return e.clampedTokenRow(e.load(tokens, m), lastRow);
  }
};

/// Quantises every row of `a` (the layout's columns, f32 or bf16) into
/// `out`, rows in parallel.
void emitQuantizeRowsInt8(ImplicitLocOpBuilder &b, Value a,
                          const Int8Layout &layout, const Int8Rows &out);

/// The decode kernel on int8 rows: `c[m, n - nBegin] += sum_k a[m, k] *
/// W[x][n, k]` for weight rows n in `[nBegin, nEnd)`, with `a` as `rows`
/// holds it.
void emitInt8Matvec(ImplicitLocOpBuilder &b, const Int8Rows &rows,
                    const QuantizedProjection &p, Value x, Value nBegin,
                    Value nEnd, Value c);

/// Fills the rows of `c` with `bias` (rank 1, broadcast over rows) or zero.
void emitInitRows(ImplicitLocOpBuilder &b, Value c, Value bias);

/// `c[m, n - nBegin] = bias[n - nBegin] + sum_k a[m, k] * W[x][n, k]`
/// (without `bias`, the sum alone; `c` is only written) by outer products:
/// the panel's weights are first rearranged (in a scratch of its own, so
/// that panels run in parallel; panel-major weights already are) so that
/// the same 4-byte word of 16 columns is one 64-byte vector, which vpdpbusd
/// multiplies (4-bit: its
/// low nibbles, then its high ones) by one activation row's 4 codes
/// broadcast; register blocks of 6 rows by 64 columns accumulate i32 lanes,
/// converted and scaled once per scale block (into f32 accumulators of 3
/// rows by 64 columns where a row has several blocks).
void emitInt8PanelGemm(ImplicitLocOpBuilder &b, const Int8Rows &rows,
                       const QuantizedProjection &p, Value x, Value nBegin,
                       Value nEnd, Value bias, Value c);

/// `c[m, n - first] = bias[n - first] + sum_k a[m, k] * W[x][n, k]` (without
/// `bias`, the sum alone) for a packed weight's rows n in `[first, first +
/// width)`; `c` is the panel of the output, its `width` columns for `a`'s
/// rows. With `int8Rows`, the int8 kernels run on those: emitInt8Matvec
/// for a few rows, emitInt8PanelGemm for more (for panel-major weights at
/// every row count). Otherwise an expert with at most
/// kDecodeMaxRows rows (decode) runs the decode kernel on `staged` (`a` staged,
/// or `a` itself), and one with more has the panel's weight rows dequantised
/// into a scratch of their own (so that panels run in parallel) and multiplied
/// by the float contraction, so the whole weight is never materialised and the
/// float kernels are reused as they are.
void emitQuantizedPanel(ImplicitLocOpBuilder &b, Value a, Value staged,
                        const Int8Rows *int8Rows, const QuantizedProjection &p,
                        QuantAttr quant, Value x, Value first,
                        OpFoldResult width, int64_t depth, Value bias, Value c);

} // namespace mlir::moe

#endif // MOE_MLIR_TRANSFORMS_EXPERTKERNELS_H
