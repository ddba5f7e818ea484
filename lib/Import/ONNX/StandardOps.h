//===- StandardOps.h - Helpers shared by the ai.onnx importers --*- C++ -*-===//
//
// The ai.onnx importers are split by kind (StandardOpsElementwise.cpp,
// StandardOpsShape.cpp, StandardOpsCompute.cpp, StandardOpsIndexing.cpp),
// the com.microsoft ones of ONNX Runtime's model builder live in
// ContribOps.cpp; each exposes a lookup from op_type to importer, and
// StandardOps.cpp dispatches through them. The helpers here build the pieces they share:
// broadcasting elementwise linalg.generic ops, reductions, and import-time
// evaluation of the shape arithmetic exporters spell out as graph nodes
// (small integer constants, and shape vectors holding dynamic sizes).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_STANDARDOPS_H
#define MOE_MLIR_LIB_IMPORT_ONNX_STANDARDOPS_H

#include "GraphImporter.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"

namespace mlir::moe::onnx_import {

using NodeImporter = LogicalResult (*)(NodeContext &);

/// The importers of each group, or null for op types the group lacks.
NodeImporter lookupElementwiseImporter(llvm::StringRef opType);
NodeImporter lookupShapeImporter(llvm::StringRef opType);
NodeImporter lookupComputeImporter(llvm::StringRef opType);
NodeImporter lookupIndexingImporter(llvm::StringRef opType);
/// The com.microsoft ops of ONNX Runtime's model builder (ContribOps.cpp):
/// GroupQueryAttention, RotaryEmbedding, MatMulNBits, GatherBlockQuantized.
NodeImporter lookupContribImporter(llvm::StringRef opType);

//===----------------------------------------------------------------------===//
// Types and operands
//===----------------------------------------------------------------------===//

/// The ranked tensor type of `value`; fails naming `what` otherwise.
FailureOr<RankedTensorType> rankedType(NodeContext &node, Value value,
                                       const llvm::Twine &what);

/// Input `i` with its ranked tensor type (fails when missing or unranked).
FailureOr<std::pair<Value, RankedTensorType>> rankedInput(NodeContext &node,
                                                          int i);

/// Fails unless the node has between `min` and `max` inputs.
LogicalResult checkInputCount(NodeContext &node, int min, int max);

/// `axis` in [-rank, rank) made non-negative; fails naming `what`.
FailureOr<int64_t> normalizeAxis(NodeContext &node, int64_t axis, int64_t rank,
                                 llvm::StringRef what = "axis");

bool isFloatType(Type type);
/// `type` as MLIR prints it, for diagnostics.
std::string typeName(Type type);
/// Signless integers (int64/int32/... and bool as i1).
bool isSignlessInt(Type type);

/// The constant `value` holds, or null.
DenseElementsAttr getConstantAttr(Value value);
/// The contents of an integer (or bool) constant as int64, or nullopt.
std::optional<llvm::SmallVector<int64_t>> getConstantInts(Value value);

/// arith.constant of `attr`.
Value createConstant(OpBuilder &b, Location loc, DenseElementsAttr attr);
/// A constant of `shape` and element type `type` holding `values`
/// (integers, truncated to the type's width).
Value createIntConstant(OpBuilder &b, Location loc, llvm::ArrayRef<int64_t> shape,
                        Type type, llvm::ArrayRef<int64_t> values);
/// A scalar arith.constant of `type` (float or integer) equal to `v`.
Value createScalar(OpBuilder &b, Location loc, Type type, double v);

/// The sizes of `value` (constants for static dims, tensor.dim otherwise).
llvm::SmallVector<OpFoldResult> mixedSizes(OpBuilder &b, Location loc,
                                           Value value);
/// tensor.empty of `sizes`.
Value emptyTensor(OpBuilder &b, Location loc, llvm::ArrayRef<OpFoldResult> sizes,
                  Type elementType);
/// tensor.empty + linalg.fill with `v`.
Value filledTensor(OpBuilder &b, Location loc, llvm::ArrayRef<OpFoldResult> sizes,
                   Type elementType, double v);
/// The static sizes (kDynamic for values) of `sizes`.
llvm::SmallVector<int64_t> staticSizes(llvm::ArrayRef<OpFoldResult> sizes);

//===----------------------------------------------------------------------===//
// Builders
//===----------------------------------------------------------------------===//

using ScalarBody =
    llvm::function_ref<Value(OpBuilder &, Location, ValueRange)>;

/// A linalg.generic applying `body` to the numpy-broadcast `inputs` (the
/// body sees one scalar per input). `broadcastTo`, when given, takes part in
/// the broadcast as an extra shape (Expand; its dynamic sizes are used where
/// no input is dynamic). Static sizes that cannot
/// broadcast fail; a dynamic size is assumed to match the others at run
/// time.
FailureOr<Value> buildElementwise(NodeContext &node, ValueRange inputs,
                                  Type resultElement, ScalarBody body,
                                  std::optional<llvm::ArrayRef<OpFoldResult>>
                                      broadcastTo = std::nullopt);

/// Reduces `input` over `axes` (sorted, unique) with `combine(acc, x)`
/// starting from `init`; the reduced dimensions are dropped. `map`, when
/// given, transforms each element first (it sees the element and the
/// outer, non-reduced extra operands `extras` aligned like the result).
Value buildReduction(OpBuilder &b, Location loc, Value input,
                     llvm::ArrayRef<int64_t> axes, double init,
                     ScalarBody combine, ValueRange extras = {},
                     ScalarBody map = nullptr);

/// A linalg.generic over `input`'s shape computing `body(x, r...)` where each
/// of `reduced` has `input`'s shape without `axes` (a result of
/// buildReduction) and is broadcast back along them.
Value buildWithReduced(OpBuilder &b, Location loc, Value input,
                       llvm::ArrayRef<int64_t> axes, ValueRange reduced,
                       Type resultElement, ScalarBody body);

/// C[m, n] = sum_k A'[m, k] * B'[k, n] as one contraction linalg.generic
/// whose maps read `a` and `bv` as stored (transposed or not). With transB
/// and not transA it is the form the pipeline's register-tiled GEMM kernel
/// (-moe-vectorize-contractions) matches.
Value buildGemmContraction(OpBuilder &b, Location loc, Value a, Value bv,
                           bool transA, bool transB);

/// `a` [..., K] times the transpose of `weight` [N, K], [..., N]: a's
/// leading dimensions are collapsed into rows, so that the product is the
/// transposed-B GEMM the pipeline vectorises, and expanded back. When `a`
/// has rank 1 or more than one dynamic leading dimension (which the expand
/// back could not lower), one contraction generic over all of them instead.
Value buildRowsTimesWeightNK(OpBuilder &b, Location loc, Value a,
                             Value weight);

/// `value` reshaped to `sizes` (keeping the element order); uses
/// collapse_shape/expand_shape where the shapes allow it.
Value reshapeTo(OpBuilder &b, Location loc, Value value,
                llvm::ArrayRef<OpFoldResult> sizes);

/// Converts scalar `v` to `to` (ONNX Cast semantics: float->int truncates,
/// ->bool is != 0, bool->x is 0/1).
Value convertScalar(OpBuilder &b, Location loc, Value v, Type to);

/// `index` (any integer scalar) as an index in [0, size): negative values
/// count from the end; out-of-range ones clamp, so that a bad index reads or
/// writes a wrong element rather than outside the buffer (ONNX Runtime
/// reports an error there instead).
Value normalizeIndex(OpBuilder &b, Location loc, Value index, Value size);

//===----------------------------------------------------------------------===//
// Import-time folding
//===----------------------------------------------------------------------===//

/// Folds an elementwise op on integer constants (numpy broadcasting) when
/// every input is a small integer constant; null otherwise.
Value foldIntElementwise(OpBuilder &b, Location loc, ValueRange inputs,
                         Type resultElement,
                         llvm::function_ref<int64_t(llvm::ArrayRef<int64_t>)> fn);

/// The entries of a shape vector: a rank-0 or rank-1 integer tensor of
/// static length whose entries are known at import as constants or as index
/// values (sizes of dynamic dimensions, from Shape of a dynamic tensor).
/// Looks through reshapes; nullopt for anything else.
std::optional<llvm::SmallVector<OpFoldResult>> getShapeVector(Value value);
/// Whether `value` is a shape vector with at least one non-constant entry.
bool isDynamicShapeVector(Value value);
/// A `shape`d (rank 0 or 1) tensor of integer `element` type holding
/// `entries`: a constant when all are, else tensor.from_elements (index
/// values enter through arith.index_cast, where getShapeVector finds them
/// again).
Value createShapeVector(OpBuilder &b, Location loc,
                        llvm::ArrayRef<OpFoldResult> entries,
                        llvm::ArrayRef<int64_t> shape, Type element);
/// Folds an elementwise op over shape vectors (numpy broadcasting of
/// lengths) when every input is one and some entry is dynamic; `fn` combines
/// one entry of each input. Null otherwise.
Value foldShapeElementwise(
    OpBuilder &b, Location loc, ValueRange inputs, Type resultElement,
    llvm::function_ref<OpFoldResult(OpBuilder &, Location,
                                    llvm::ArrayRef<OpFoldResult>)>
        fn);

/// Largest constant (in elements) that import-time folding produces.
constexpr int64_t kMaxFoldElements = 1 << 16;

} // namespace mlir::moe::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_STANDARDOPS_H
