//===- VectorizeContractions.cpp - register-tiled transposed-B matmuls ------===//
//
// The expert GEMMs are `C[m, n] += A[m, k] * W[n, k]` with W out-major, so
// both operands are contiguous along the reduction. The microkernel keeps an
// MR x NR block of C in registers as vectors of partial sums along k: every
// step loads MR rows of A and NR rows of W once and issues MR * NR fused
// multiply-adds, and only the final partial sums are reduced horizontally.
// Columns of C are the outer loop so that an NR-row panel of W stays in
// cache while every row block of A passes over it; for decode-sized M the
// loop streams W exactly once, which is the memory-bound optimum.
//
// With bf16 A and W and AVX512-BF16 (`bf16-dot`), each step takes twice as
// many k: `vdpbf16ps` multiplies pairs of bf16 and adds both products to one
// f32 lane, which is the same partial sum along k, so the kernel keeps its
// shape and only the step and the multiply-add change.
//
// B read as [k, n] (attention's probabilities times values) has its rows
// as vectors of C's columns already: an outer-product kernel reads them in
// place, a 6 x 64 block of C accumulating per k step four vectors of B's
// row k times six broadcast elements of A.
//
// From `pack-min-rows` rows of A on (prefill), the transposed-B matmuls can
// take the same block: each 64-column panel of W is transposed, 1024 steps
// of k at a time, into a `[k, 64]` scratch of the panel's own (in L2), over
// whose 128-step slices (in L1) the 6 x 64 blocks of C pass. Packing reads
// each weight once per call, which the rows it is reused for must
// amortise; on our benchmark shapes they did from about 96-128 rows, not
// at 64 (benchmarks/RESULTS.md): the CPU pipeline packs experts' GEMMs
// from 96 rows and leaves the pass's thresholds off unless asked for.
//
// Weights stored panel-major at compile time (-moe-pack-expert-weights:
// B read at `(n floordiv 64, k, n mod 64)`) are those `[k, 64]` panels
// already: their contractions take the outer-product block directly, at
// any row count, prefetching the panel's next 128 steps of k into L2.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "moe-mlir/Transforms/ExpertKernels.h"
#include "moe-mlir/Transforms/KernelEmitter.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEVECTORIZECONTRACTIONS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// How the loops of a transposed-B contraction map onto the kernel's
/// `C[m, n] += A[m, k] * B[n, k]`.
struct ContractionForm {
  /// Leading loops indexing A, B and C alike (batch and head of QK^T): one
  /// matrix after the other.
  unsigned batchLoops = 0;
  /// Loops of A's and C's rows (the tokens' [batch, sequence] of a
  /// projection by a weight): collapsed into m.
  unsigned rowLoops = 1;
  /// Per batch loop, B's index is the loop's divided by this (grouped-query
  /// attention reads one key head for several query heads).
  SmallVector<int64_t> batchDivisors;
  /// B is `[..., n, k]` (weights, keys) rather than `[..., k, n]` (attention's
  /// values, activations times activations).
  bool transposedB = true;
};

/// Whether `type` has strides with a unit innermost one (rows of
/// contiguous elements, which the kernels load as vectors).
bool hasUnitInnerStride(MemRefType type) {
  int64_t offset;
  SmallVector<int64_t> strides;
  return succeeded(type.getStridesAndOffset(strides, offset)) &&
         strides.back() == 1;
}

/// The product a contraction's body accumulates: its yield must be
/// `addf(acc, mulf(...))` with `acc` the output's element; null otherwise.
arith::MulFOp accumulatedProduct(linalg::GenericOp op) {
  Block &body = op.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto add = yield.getOperand(0).getDefiningOp<arith::AddFOp>();
  if (!add || add.getLhs() != body.getArgument(body.getNumArguments() - 1))
    return {};
  return add.getRhs().getDefiningOp<arith::MulFOp>();
}

/// Matches `C(b..., r..., n) += A(b..., r..., k) * B(b..., n, k)` on memrefs
/// with unit innermost strides, where either there are no batch loops b or
/// exactly one row loop r.
FailureOr<ContractionForm> matchTransposedBMatmul(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      !op.hasPureBufferSemantics() || op.getNumLoops() < 3)
    return failure();
  unsigned loops = op.getNumLoops();
  auto iterators = op.getIteratorTypesArray();
  for (unsigned i = 0; i + 1 < loops; ++i)
    if (iterators[i] != utils::IteratorType::parallel)
      return failure();
  if (iterators.back() != utils::IteratorType::reduction)
    return failure();
  // B's rank tells the forms apart: [batch..., n, k] or [n, k].
  auto wType = cast<MemRefType>(op.getDpsInputs()[1].getType());
  ContractionForm form;
  if (wType.getRank() == 2) {
    form.rowLoops = loops - 2;
  } else {
    form.batchLoops = loops - 3;
  }
  MLIRContext *ctx = op.getContext();
  SmallVector<AffineExpr> a, w, c;
  AffineMap wMap = op.getIndexingMapsArray()[1];
  // B indexed by its batch loops, n and k (read below result by result).
  if (wMap.getNumResults() != form.batchLoops + 2)
    return failure();
  for (unsigned i = 0; i < form.batchLoops; ++i) {
    AffineExpr d = getAffineDimExpr(i, ctx);
    a.push_back(d);
    c.push_back(d);
    // B's batch index: the loop's, or the loop's floordiv a constant.
    int64_t divisor = 1;
    if (auto div = dyn_cast<AffineBinaryOpExpr>(wMap.getResult(i));
        div && div.getKind() == AffineExprKind::FloorDiv && div.getLHS() == d)
      if (auto rhs = dyn_cast<AffineConstantExpr>(div.getRHS());
          rhs && rhs.getValue() > 0)
        divisor = rhs.getValue();
    form.batchDivisors.push_back(divisor);
    w.push_back(divisor == 1 ? d : d.floorDiv(divisor));
  }
  for (unsigned i = 0; i < form.rowLoops; ++i) {
    AffineExpr d = getAffineDimExpr(form.batchLoops + i, ctx);
    a.push_back(d);
    c.push_back(d);
  }
  AffineExpr n = getAffineDimExpr(loops - 2, ctx);
  AffineExpr k = getAffineDimExpr(loops - 1, ctx);
  a.push_back(k);
  w.append({n, k});
  c.push_back(n);
  SmallVector<AffineMap> expected = {AffineMap::get(loops, 0, a, ctx),
                                     AffineMap::get(loops, 0, w, ctx),
                                     AffineMap::get(loops, 0, c, ctx)};
  if (op.getIndexingMapsArray() != expected) {
    // B read as [..., k, n].
    std::swap(w[w.size() - 2], w.back());
    expected[1] = AffineMap::get(loops, 0, w, ctx);
    if (op.getIndexingMapsArray() != expected)
      return failure();
    form.transposedB = false;
  }
  // The body must be a multiply-accumulate (operands possibly widened).
  if (!accumulatedProduct(op))
    return failure();
  for (Value operand : op->getOperands()) {
    auto type = cast<MemRefType>(operand.getType());
    if (!isa<FloatType>(type.getElementType()) || !hasUnitInnerStride(type))
      return failure();
  }
  // Several row loops are collapsed into one: A's and C's must be.
  if (form.rowLoops > 1) {
    ReassociationIndices rows =
        llvm::to_vector(llvm::seq<int64_t>(0, form.rowLoops));
    SmallVector<ReassociationIndices> groups = {rows, {form.rowLoops}};
    for (Value operand : {op.getDpsInputs()[0], op.getDpsInits()[0]})
      if (!memref::CollapseShapeOp::isGuaranteedCollapsible(
              cast<MemRefType>(operand.getType()), groups))
        return failure();
  }
  return form;
}

/// Where a gathered contraction reads A (emitGatheredMatmulTransposedB):
/// row m of A is row `min(tokens[m], lastRow)` of `source`.
struct GatheredRows {
  Value source, lastRow;
};

/// The panel-major layout of a contraction reading B at
/// `(n floordiv P, k, n mod P)` or `(n floordiv P, k2, n mod P, r)`, or
/// failure.
FailureOr<WeightLayout> matchPanelLayout(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 2)
    return failure();
  AffineMap map = op.getIndexingMapsArray()[1];
  if (map.getNumResults() != 3 && map.getNumResults() != 4)
    return failure();
  auto mod = dyn_cast<AffineBinaryOpExpr>(map.getResult(2));
  if (!mod || mod.getKind() != AffineExprKind::Mod)
    return failure();
  auto width = dyn_cast<AffineConstantExpr>(mod.getRHS());
  WeightLayout layout{width ? width.getValue() : 0, map.getNumResults() == 4};
  // The loops before n are rows.
  int64_t rowLoops = int64_t(op.getNumLoops()) - (layout.pairs ? 3 : 2);
  if (rowLoops < 1)
    return failure();
  layout.rowLoops = rowLoops;
  if (layout.panelWidth <= 0 || map != layout.weightMap(op.getContext()))
    return failure();
  return layout;
}

/// Whether `v` is the body's index of k for `layout`: `linalg.index 2`, or
/// with pairs `linalg.index 2 * 2 + linalg.index 3`.
bool isIndexOfK(Value v, WeightLayout layout) {
  auto isIndex = [](Value x, uint64_t dim) {
    auto index = x.getDefiningOp<linalg::IndexOp>();
    return index && index.getDim() == dim;
  };
  if (!layout.pairs)
    return isIndex(v, 2);
  auto add = v.getDefiningOp<arith::AddIOp>();
  if (!add || !isIndex(add.getRhs(), 3))
    return false;
  auto mul = add.getLhs().getDefiningOp<arith::MulIOp>();
  std::optional<int64_t> two =
      mul ? getConstantIntValue(mul.getRhs()) : std::nullopt;
  return mul && isIndex(mul.getLhs(), 2) && two == 2;
}

/// Matches `C(m, n) += source(min(tokens(m), lastRow), k) * B(n, k)` on
/// memrefs with unit innermost strides, the form
/// emitGatheredMatmulTransposedB builds: a linalg.generic over `tokens`
/// and B whose body loads A's element from `source`, defined above it. B is
/// read as `layout` says (rank-2 out-major, or panel-major).
FailureOr<GatheredRows> matchGatheredMatmul(linalg::GenericOp op,
                                            WeightLayout layout = {}) {
  unsigned loops = layout.loops();
  if (layout.rowLoops != 1 || op.getNumDpsInputs() != 2 ||
      op.getNumDpsInits() != 1 || !op.hasPureBufferSemantics() ||
      op.getNumLoops() != loops)
    return failure();
  auto iterators = op.getIteratorTypesArray();
  for (unsigned i = 0; i < loops; ++i)
    if (iterators[i] != (i < 2 ? utils::IteratorType::parallel
                               : utils::IteratorType::reduction))
      return failure();
  MLIRContext *ctx = op.getContext();
  AffineExpr m = getAffineDimExpr(0, ctx), n = getAffineDimExpr(1, ctx);
  SmallVector<AffineMap> expected = {AffineMap::get(loops, 0, {m}, ctx),
                                     layout.weightMap(ctx),
                                     AffineMap::get(loops, 0, {m, n}, ctx)};
  if (op.getIndexingMapsArray() != expected)
    return failure();
  auto tokensType = cast<MemRefType>(op.getDpsInputs()[0].getType());
  if (!tokensType.getElementType().isSignlessInteger())
    return failure();
  Block &body = op.getRegion().front();
  arith::MulFOp mul = accumulatedProduct(op);
  if (!mul || stripExtension(mul.getRhs()) != body.getArgument(1))
    return failure();
  auto load = stripExtension(mul.getLhs()).getDefiningOp<memref::LoadOp>();
  if (!load || load.getIndices().size() != 2)
    return failure();
  // The source and the clamp bound come from above the op.
  auto definedAbove = [&](Value v) {
    return !op->isAncestor(v.getParentRegion()->getParentOp());
  };
  auto clamp = load.getIndices()[0].getDefiningOp<arith::MinUIOp>();
  if (!isIndexOfK(load.getIndices()[1], layout) || !clamp ||
      !definedAbove(load.getMemRef()) || !definedAbove(clamp.getRhs()))
    return failure();
  auto token = clamp.getLhs().getDefiningOp<arith::IndexCastOp>();
  if (!token || token.getIn() != body.getArgument(0))
    return failure();
  for (Value operand : {load.getMemRef(), op.getDpsInputs()[1],
                        op.getDpsInits()[0]}) {
    auto type = cast<MemRefType>(operand.getType());
    int64_t rank = operand == op.getDpsInputs()[1]
                       ? layout.weightMap(ctx).getNumResults()
                       : 2;
    if (type.getRank() != rank || !isa<FloatType>(type.getElementType()) ||
        !hasUnitInnerStride(type))
      return failure();
  }
  return GatheredRows{load.getMemRef(), clamp.getRhs()};
}

/// `memref` with its leading `rowLoops` dimensions collapsed into one.
Value collapseRows(ImplicitLocOpBuilder &b, Value memref, unsigned rowLoops) {
  if (rowLoops == 1)
    return memref;
  ReassociationIndices rows = llvm::to_vector(llvm::seq<int64_t>(0, rowLoops));
  return memref::CollapseShapeOp::create(
      b, memref, ArrayRef<ReassociationIndices>{rows, {int64_t(rowLoops)}});
}

/// The rank-2 `[rows, cols]` matrix of `memref` at the leading indices
/// `batch`.
Value matrixAt(ImplicitLocOpBuilder &b, Value memref, ValueRange batch) {
  if (batch.empty())
    return memref;
  auto type = cast<MemRefType>(memref.getType());
  unsigned rank = type.getRank();
  SmallVector<OpFoldResult> offsets(batch.begin(), batch.end());
  SmallVector<OpFoldResult> sizes(batch.size(), b.getIndexAttr(1));
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  for (unsigned d = batch.size(); d < rank; ++d) {
    offsets.push_back(b.getIndexAttr(0));
    sizes.push_back(memref::getMixedSize(b, b.getLoc(), memref, d));
  }
  auto matrixType = memref::SubViewOp::inferRankReducedResultType(
      {type.getDimSize(rank - 2), type.getDimSize(rank - 1)}, type, offsets,
      sizes, strides);
  return memref::SubViewOp::create(b, cast<MemRefType>(matrixType), memref,
                                   offsets, sizes, strides);
}

/// B's rank-2 matrix for A's and C's batch indices `batch`: each divided by
/// its loop's divisor (grouped-query attention shares a key or value head).
Value bMatrixAt(ImplicitLocOpBuilder &b, Value w, ValueRange batch,
                const ContractionForm &form) {
  SmallVector<Value> indices;
  for (auto [i, divisor] : llvm::zip(batch, form.batchDivisors))
    indices.push_back(
        divisor == 1
            ? i
            : arith::DivUIOp::create(b, i, KernelEmitter(b).index(divisor))
                  .getResult());
  return matrixAt(b, w, indices);
}

/// The transpose of the square block whose rows are `rows` (as many vectors
/// as each has lanes): result i holds lane i of every row. Each of the
/// log2(lanes) steps swaps the off-diagonal d x d sub-blocks of every
/// 2d x 2d block with two-source shuffles, one per row.
SmallVector<Value> transposeSquare(ImplicitLocOpBuilder &b,
                                   ArrayRef<Value> rows) {
  int64_t n = rows.size();
  SmallVector<Value> r(rows.begin(), rows.end());
  for (int64_t d = n / 2; d >= 1; d /= 2) {
    SmallVector<int64_t> low, high;
    for (int64_t lane = 0; lane < n; ++lane) {
      bool upper = lane & d;
      low.push_back(upper ? n + lane - d : lane);
      high.push_back(upper ? n + lane : lane + d);
    }
    for (int64_t i = 0; i < n; ++i) {
      if (i & d)
        continue;
      Value x = r[i], y = r[i + d];
      r[i] = vector::ShuffleOp::create(b, x, y, low);
      r[i + d] = vector::ShuffleOp::create(b, x, y, high);
    }
  }
  return r;
}

/// The packed kernel's register block: rows of C, and columns in vectors
/// (6 x 4 accumulators, 4 weight vectors and a broadcast of the 32 AVX-512
/// registers).
constexpr int64_t kPackedRows = 6, kPackedVectors = 4;
/// f32 lanes of the outer-product kernels' vectors (512-bit only).
constexpr int64_t kOuterProductLanes = 16;
/// Steps of k (one f32, or one bf16 pair) per block that the register block
/// accumulates before C is stored: 128 x 64 x 4 bytes = 32 KiB of the packed
/// panel, which stays in L1 while every row block of A passes over it.
constexpr int64_t kPackedDepth = 128;
/// Steps of k packed at once: 1024 x 64 x 4 bytes = 256 KiB, in L2. Packing
/// reads 16 weight rows at a time, each along 4 KiB, which the hardware
/// prefetchers follow; packing one 128-step block at a time (64 rows, 512
/// bytes each) left a third of the kernel's time waiting on those loads.
constexpr int64_t kPackedSpan = 1024;

/// A's element at (m, k) broadcast to the 16 lanes of the outer-product
/// kernels, or with `pair` the bf16 pair at (m, k), (m, k + 1) broadcast as
/// one 32-bit lane (a vector<32xbf16> for `vdpbf16ps`).
Value broadcastStepOfA(ImplicitLocOpBuilder &b, Value a, Value m, Value k,
                       bool pair) {
  constexpr int64_t lanes = kOuterProductLanes;
  Type element = cast<MemRefType>(a.getType()).getElementType();
  if (!pair)
    return vector::BroadcastOp::create(b, VectorType::get({lanes}, element),
                                       KernelEmitter(b).load(a, {m, k}));
  Type i32 = b.getI32Type();
  Value both = vector::LoadOp::create(b, VectorType::get({2}, element), a,
                                      ValueRange{m, k});
  Value unit = vector::ExtractOp::create(
      b, vector::BitCastOp::create(b, VectorType::get({1}, i32), both),
      ArrayRef<int64_t>{0});
  return vector::BitCastOp::create(
      b, VectorType::get({2 * lanes}, element),
      vector::BroadcastOp::create(b, VectorType::get({lanes}, i32), unit));
}

/// `C[m0 + i, n0 + g * lanes : ...] += sum_t broadcast(aAt(m0 + i, t)) *
/// bAt(t, g)` for i < mr, g < vectors and t in [first, last), with 16 f32
/// lanes: the outer-product register block, whose mr x vectors accumulators
/// are loaded from C once and stored back once.
void emitOuterProductBlock(
    ImplicitLocOpBuilder &b, Value c, Value m0, int64_t mr, Value n0,
    int64_t vectors, Value first, Value last,
    function_ref<Value(Value, int64_t)> bAt,
    function_ref<Value(Value, Value)> aAt,
    function_ref<Value(Value, Value, Value)> multiplyAdd) {
  KernelEmitter e(b);
  constexpr int64_t lanes = kOuterProductLanes;
  auto accVec = VectorType::get({lanes}, b.getF32Type());
  auto cIndices = [&](int64_t i, int64_t g) {
    return SmallVector<Value>{e.addi(m0, e.index(i)),
                              e.addi(n0, e.index(g * lanes))};
  };
  SmallVector<Value> acc;
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t g = 0; g < vectors; ++g)
      acc.push_back(vector::LoadOp::create(b, accVec, c, cIndices(i, g)));
  acc = e.loop(first, last, acc, [&](Value t, ValueRange partial) {
    SmallVector<Value> bs;
    for (int64_t g = 0; g < vectors; ++g)
      bs.push_back(bAt(t, g));
    SmallVector<Value> next(partial.begin(), partial.end());
    for (int64_t i = 0; i < mr; ++i) {
      Value av = aAt(e.addi(m0, e.index(i)), t);
      for (int64_t g = 0; g < vectors; ++g)
        next[i * vectors + g] = multiplyAdd(av, bs[g], next[i * vectors + g]);
    }
    return next;
  });
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t g = 0; g < vectors; ++g)
      vector::StoreOp::create(b, acc[i * vectors + g], c, cIndices(i, g));
}

/// Runs `block(m0, mr)` over rows [begin, end) in blocks of kPackedRows,
/// the last rows % kPackedRows as one smaller block.
void forEachRowBlock(ImplicitLocOpBuilder &b, Value begin, Value end,
                     function_ref<void(Value, int64_t)> block) {
  KernelEmitter e(b);
  Value blockRows = e.index(kPackedRows);
  Value count = e.subi(end, begin);
  Value full = e.addi(
      begin, e.muli(arith::DivUIOp::create(b, count, blockRows), blockRows));
  e.loop(
      begin, full, [&](Value m0) { block(m0, kPackedRows); }, blockRows);
  Value rest = e.subi(end, full);
  for (int64_t mr = 1; mr < kPackedRows; ++mr)
    e.ifThen(e.cmpi(arith::CmpIPredicate::eq, rest, e.index(mr)),
             [&] { block(full, mr); });
}

/// `C[m, n] += A[m, k] * W(n, k)` by panel-major weights (`[N / P, K, P]`,
/// -moe-pack-expert-weights), A's rows in place or through tokens: each
/// panel is the `[K, P]` matrix the outer-product block reads, so the
/// packed kernel runs without packing, at any row count. 512-bit vectors
/// and P of 16, 32 or 64 (up to the block's four vectors); f32, or bf16
/// pairs of k (`[N / P, K / 2, P, 2]`) with AVX512-BF16 (`bf16Dot`), a step
/// of k then being one pair for `vdpbf16ps`. Other contractions keep their
/// loops (linalg's lowering is correct for any layout).
struct VectorizePanelMatmul : OpRewritePattern<linalg::GenericOp> {
  VectorizePanelMatmul(MLIRContext *ctx, int64_t vectorBits, bool bf16Dot)
      : OpRewritePattern(ctx, /*benefit=*/2), vectorBits(vectorBits),
        bf16Dot(bf16Dot) {}

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    FailureOr<WeightLayout> layout = matchPanelLayout(op);
    if (failed(layout))
      return rewriter.notifyMatchFailure(op, "B is not panel-major");
    int64_t panelWidth = layout->panelWidth;
    constexpr int64_t lanes = kOuterProductLanes;
    if (vectorBits != 512 || panelWidth % lanes ||
        panelWidth > kPackedVectors * lanes ||
        !llvm::isPowerOf2_64(panelWidth / lanes))
      return rewriter.notifyMatchFailure(
          op, "not 512-bit vectors and 16, 32 or 64 panel columns");
    // A's rows: `a`'s own, or with `lastRow` those its tokens name.
    Value a, lastRow;
    Value w = op.getDpsInputs()[1], c = op.getDpsInits()[0];
    if (FailureOr<GatheredRows> gathered = matchGatheredMatmul(op, *layout);
        succeeded(gathered)) {
      a = gathered->source;
      lastRow = gathered->lastRow;
    } else {
      // Rows in place: one loop of them, or several (a packed ONNX weight's
      // matmul over [batch, sequence] tokens) collapsed into one.
      unsigned rowLoops = layout->rowLoops;
      arith::MulFOp product = accumulatedProduct(op);
      Block &body = op.getRegion().front();
      auto rowsCollapse = [&](Value v) {
        auto type = cast<MemRefType>(v.getType());
        ReassociationIndices rows =
            llvm::to_vector(llvm::seq<int64_t>(0, rowLoops));
        return rowLoops == 1 ||
               memref::CollapseShapeOp::isGuaranteedCollapsible(
                   type, {rows, {int64_t(rowLoops)}});
      };
      if (op.getIndexingMapsArray() !=
              layout->rowsInPlaceMaps(op.getContext()) ||
          !product || stripExtension(product.getLhs()) != body.getArgument(0) ||
          stripExtension(product.getRhs()) != body.getArgument(1) ||
          !op.hasPureBufferSemantics() ||
          !llvm::all_of(op->getOperands(),
                        [](Value v) {
                          return hasUnitInnerStride(
                              cast<MemRefType>(v.getType()));
                        }) ||
          !rowsCollapse(op.getDpsInputs()[0]) || !rowsCollapse(c))
        return rewriter.notifyMatchFailure(op, "not a panel-major matmul");
      a = op.getDpsInputs()[0];
    }
    auto elementType = [](Value v) {
      return cast<MemRefType>(v.getType()).getElementType();
    };
    bool pairs = layout->pairs;
    Type element = pairs ? Type(rewriter.getBF16Type()) : rewriter.getF32Type();
    // f16 panels (a half-precision model's experts) are widened as loaded.
    bool halfPanels = !pairs && elementType(w).isF16();
    if (elementType(a) != element ||
        (elementType(w) != element && !halfPanels) || !elementType(c).isF32() ||
        (pairs && !bf16Dot))
      return rewriter.notifyMatchFailure(
          op, "not f32 (or f16 panels), nor bf16 pairs into f32 with "
              "AVX512-BF16");
    ImplicitLocOpBuilder b(op.getLoc(), rewriter);
    KernelEmitter e(b);
    a = collapseRows(b, a, layout->rowLoops);
    c = collapseRows(b, c, layout->rowLoops);
    // bf16 panels as [N / P, K / 2, 2 P]: a row of a panel is then P
    // columns' pairs, 2 P contiguous bf16.
    if (pairs)
      w = memref::CollapseShapeOp::create(
          b, w, ArrayRef<ReassociationIndices>{{0}, {1}, {2, 3}});
    // A step of k is one f32, or one bf16 pair handled as an i32.
    int64_t stepsOfK = layout->stepsOfK();
    Value tokens = lastRow ? op.getDpsInputs()[0] : Value();
    auto aRow = [&](Value m) -> Value {
      if (!tokens)
        return m;
      return e.clampedTokenRow(e.load(tokens, m), lastRow);
    };
    auto accVec = VectorType::get({lanes}, b.getF32Type());
    auto stepVec = VectorType::get({lanes * stepsOfK}, element);
    int64_t vectors = panelWidth / lanes;
    // A's value at row m, step t, broadcast to every lane.
    auto broadcastA = [&](Value m, Value t) -> Value {
      return broadcastStepOfA(b, a, m, e.muli(t, e.index(stepsOfK)), pairs);
    };
    // B's vector g of a panel's row t.
    auto loadB = [&](Value p, Value t, int64_t g) -> Value {
      if (halfPanels)
        return arith::ExtFOp::create(
            b, stepVec,
            vector::LoadOp::create(b, VectorType::get({lanes}, elementType(w)),
                                   w, ValueRange{p, t, e.index(g * lanes)})
                .getResult());
      return vector::LoadOp::create(
          b, stepVec, w, ValueRange{p, t, e.index(g * lanes * stepsOfK)});
    };
    auto multiplyAdd = [&](Value x, Value y, Value sum) -> Value {
      if (pairs)
        return x86vector::DotBF16Op::create(b, accVec, sum, x, y);
      return vector::FMAOp::create(b, x, y, sum);
    };
    Value c0 = e.index(0), c1 = e.index(1);
    Value rows = e.dim(c, 0), panels = e.dim(w, 0), depth = e.dim(w, 1);
    // The next 128 steps of k are prefetched into L2 while these are
    // computed: the hardware prefetchers do not run ahead while every block
    // of rows but the first hits L1, so the first block of each step would
    // otherwise wait on memory (a quarter of the kernel's time at 128
    // rows). Full blocks of rows each prefetch a share of the next steps'
    // cache lines, a line per step; a partial block (all of decode's rows)
    // prefetches row t + 128 as it reads row t. Either way the requests are
    // spread over the loop rather than issued at once.
    Value rowBlocks = arith::MaxUIOp::create(
        b, arith::CeilDivUIOp::create(b, rows, e.index(kPackedRows)), c1);
    Value nextLines = e.index(kPackedDepth * vectors);
    Value linesPerBlock = arith::CeilDivUIOp::create(b, nextLines, rowBlocks);
    Value ahead = e.index(kPackedDepth);
    // The panels are one contiguous run (panel after panel, row after row),
    // so a prefetch addresses it flat: row k of panel p at (p * depth + k)
    // * rowElements, a row past a panel's end being the next panel's first
    // (clamped to the last element). Two multiply-adds and a min per
    // prefetch, which costs less than the kernel's arithmetic at decode.
    // With moe.next_weights_offset, past the last panel the run goes on
    // into the weights the thread reads next, in the buffer the panels
    // were cut from: the flat view is then that buffer's, from the
    // panels' offset in it.
    auto allDims = [](Value v) {
      SmallVector<ReassociationIndices> dims(1);
      for (int64_t d = 0; d < cast<MemRefType>(v.getType()).getRank(); ++d)
        dims[0].push_back(d);
      return dims;
    };
    auto contiguous = [&](Value v) {
      return memref::CollapseShapeOp::isGuaranteedCollapsible(
          cast<MemRefType>(v.getType()), allDims(v));
    };
    // The expert lowering's schedule runs its contractions as tasks of a
    // parallel loop; anything else (a matmul by a packed ONNX weight) makes
    // its panels that loop: they write disjoint columns of C. Such a
    // thread's next panel follows its own in memory, which the hardware
    // prefetchers find without help: the prefetch instructions cost more
    // issue slots than they saved there (2-5% on projection and LM-head
    // shapes, benchmarks/RESULTS.md).
    bool parallelPanels = !op->getParentOfType<scf::ParallelOp>();
    // Elements of the panels, and from their end to the next weights.
    int64_t panelElements = 0, gapToNext = 0;
    Value flat, panelsOffset, cut = op.getDpsInputs()[1];
    auto next = op->getAttrOfType<IntegerAttr>(kNextWeightsOffsetAttrName);
    bool contiguousPanels = contiguous(w);
    if (Value buffer = next ? weightsBuffer(cut) : Value();
        buffer && contiguousPanels &&
        cast<MemRefType>(cut.getType()).hasStaticShape()) {
      flat = memref::CollapseShapeOp::create(b, buffer, allDims(buffer));
      // An identity layout: offsets from the buffer's aligned pointer,
      // which its subviews share, are offsets into it.
      panelsOffset =
          memref::ExtractStridedMetadataOp::create(b, cut).getOffset();
      panelElements = cast<MemRefType>(cut.getType()).getNumElements();
      gapToNext = next.getInt() - panelElements;
    } else if (contiguousPanels && !parallelPanels) {
      flat = memref::CollapseShapeOp::create(b, w, allDims(w));
    }
    Value rowElements = e.index(panelWidth * stepsOfK);
    Value lastElement;
    if (flat)
      lastElement = e.subi(e.dim(flat, 0), c1);
    // Element offset of row k of panel p.
    auto rowStart = [&](Value p, Value k) {
      Value start = e.muli(e.addi(e.muli(p, depth), k), rowElements);
      if (!panelsOffset)
        return start;
      if (gapToNext)
        start = e.addi(start, arith::SelectOp::create(
                                  b,
                                  e.cmpi(arith::CmpIPredicate::uge, start,
                                         e.index(panelElements)),
                                  e.index(gapToNext), c0));
      return e.addi(panelsOffset, start);
    };
    auto prefetch = [&](Value offset) {
      if (!flat)
        return;
      memref::PrefetchOp::create(
          b, flat, ValueRange{arith::MinUIOp::create(b, offset, lastElement)},
          /*isWrite=*/false, /*localityHint=*/2, /*isDataCache=*/true);
    };
    Value lineElements = e.index(lanes * stepsOfK);
    auto overPanels = [&](function_ref<void(Value)> body) {
      if (!parallelPanels) {
        e.loop(c0, panels, body);
        return;
      }
      auto loop = scf::ParallelOp::create(b, ValueRange{c0}, ValueRange{panels},
                                          ValueRange{c1});
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(loop.getBody()->getTerminator());
      body(loop.getInductionVars()[0]);
    };
    // Decode-sized products (one to three rows) read each panel as
    // `streams` runs of k at once, each into accumulators of its own that
    // are added at the end: one sequential stream per task left a thread
    // with too few cache misses in flight to reach the bandwidth that the
    // dot-product kernel's eight weight rows side by side reach.
    auto fewRows = [&](int64_t count, int64_t streams) {
      Value zero = e.splat(accVec, 0.0);
      SmallVector<Value> aRows;
      for (int64_t i = 0; i < count; ++i)
        aRows.push_back(aRow(e.index(i)));
      Value run = arith::DivUIOp::create(b, depth, e.index(streams));
      overPanels([&](Value p) {
        // Accumulator (i, s, g): row i, stream s, vector g.
        auto at = [&](int64_t i, int64_t s, int64_t g) {
          return (i * streams + s) * vectors + g;
        };
        auto step = [&](ValueRange partial, Value k, int64_t s) {
          SmallVector<Value> next(partial.begin(), partial.end());
          SmallVector<Value> bs;
          for (int64_t g = 0; g < vectors; ++g)
            bs.push_back(loadB(p, k, g));
          for (int64_t i = 0; i < count; ++i) {
            Value av = broadcastA(aRows[i], k);
            for (int64_t g = 0; g < vectors; ++g)
              next[at(i, s, g)] = multiplyAdd(av, bs[g], next[at(i, s, g)]);
          }
          return next;
        };
        SmallVector<Value> acc(count * streams * vectors, zero);
        acc = e.loop(c0, run, acc, [&](Value t, ValueRange partial) {
          SmallVector<Value> next(partial.begin(), partial.end());
          for (int64_t s = 0; s < streams; ++s)
            next = step(next, e.addi(t, e.muli(run, e.index(s))), s);
          return next;
        });
        // The last depth % streams steps, into stream 0.
        acc = e.loop(
            e.muli(run, e.index(streams)), depth, acc,
            [&](Value k, ValueRange partial) { return step(partial, k, 0); });
        for (int64_t i = 0; i < count; ++i)
          for (int64_t g = 0; g < vectors; ++g) {
            Value sum = acc[at(i, 0, g)];
            for (int64_t s = 1; s < streams; ++s)
              sum = arith::AddFOp::create(b, sum, acc[at(i, s, g)]);
            SmallVector<Value> index = {
                e.index(i),
                e.addi(e.muli(p, e.index(panelWidth)), e.index(g * lanes))};
            Value old = vector::LoadOp::create(b, accVec, c, index);
            vector::StoreOp::create(b, arith::AddFOp::create(b, old, sum), c,
                                    index);
          }
      });
    };
    auto isRows = [&](int64_t count) {
      return e.cmpi(arith::CmpIPredicate::eq, rows, e.index(count));
    };
    // Panel by panel; within one, 128 steps of k (32 KiB of the panel, in
    // L1) at a time for every block of rows.
    auto manyRows = [&] {
      overPanels([&](Value p) {
        Value n0 = e.muli(p, e.index(panelWidth));
        e.loop(
            c0, depth,
            [&](Value kb) {
              Value last = arith::MinUIOp::create(
                  b, e.addi(kb, e.index(kPackedDepth)), depth);
              forEachRowBlock(b, c0, rows, [&](Value m0, int64_t mr) {
                bool fullBlock = mr == kPackedRows;
                // A full block's share of the next steps' lines: one per
                // step of its own loop where the share is at most a line
                // per step (from 24 rows: issued at once, they filled the
                // miss buffers and stalled the block's first steps), else
                // all before it starts (fewer rows, where the weights'
                // stream bounds the time and the requests want the most
                // lead).
                Value firstLine, spreadEnd, endLine;
                // The next k-block starts at row kb + 128 of this panel.
                Value nextBlock = rowStart(p, e.addi(kb, ahead));
                auto prefetchLine = [&](Value line) {
                  prefetch(e.addi(nextBlock, e.muli(line, lineElements)));
                };
                if (fullBlock) {
                  firstLine = e.muli(
                      arith::DivUIOp::create(b, m0, e.index(kPackedRows)),
                      linesPerBlock);
                  endLine = arith::MinUIOp::create(
                      b, e.addi(firstLine, linesPerBlock), nextLines);
                  Value spread = e.cmpi(arith::CmpIPredicate::ule,
                                        linesPerBlock, e.subi(last, kb));
                  spreadEnd =
                      arith::SelectOp::create(b, spread, endLine, firstLine);
                  e.loop(spreadEnd, endLine, prefetchLine);
                }
                emitOuterProductBlock(
                    b, c, m0, mr, n0, vectors, kb, last,
                    [&](Value t, int64_t g) -> Value {
                      if (!fullBlock)
                        prefetch(e.addi(rowStart(p, e.addi(t, ahead)),
                                        e.index(g * lanes * stepsOfK)));
                      else if (g == 0)
                        // Past the spread lines, the last of them (or the
                        // share's first) again, an L2 hit, rather than a
                        // branch per step.
                        prefetchLine(arith::MinUIOp::create(
                            b, e.addi(firstLine, e.subi(t, kb)),
                            e.subi(arith::MaxUIOp::create(
                                       b, spreadEnd, e.addi(firstLine, c1)),
                                   c1)));
                      return loadB(p, t, g);
                    },
                    [&](Value m, Value t) { return broadcastA(aRow(m), t); },
                    multiplyAdd);
              });
            },
            e.index(kPackedDepth));
      });
    };
    e.ifThenElse(
        isRows(1), [&] { fewRows(1, 4); },
        [&] {
          e.ifThenElse(
              isRows(2), [&] { fewRows(2, 2); },
              [&] {
                e.ifThenElse(
                    isRows(3), [&] { fewRows(3, 2); }, manyRows);
              });
        });
    rewriter.eraseOp(op);
    return success();
  }

  int64_t vectorBits;
  bool bf16Dot;
};

struct VectorizeTransposedBMatmul : OpRewritePattern<linalg::GenericOp> {
  VectorizeTransposedBMatmul(MLIRContext *ctx, int64_t vectorBits,
                             int64_t rowTile, int64_t colTile, bool bf16Dot,
                             int64_t packMinRows, int64_t expertPackMinRows)
      : OpRewritePattern(ctx), vectorBits(vectorBits), rowTile(rowTile),
        colTile(colTile), bf16Dot(bf16Dot), packMinRows(packMinRows),
        expertPackMinRows(expertPackMinRows) {}

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    // Expert GEMMs (marked by the expert lowering) pack from their own
    // threshold: a panel of an expert's weight is reused by that expert's
    // rows only.
    int64_t minRows =
        op->hasAttr(kExpertGemmAttrName) ? expertPackMinRows : packMinRows;
    if (FailureOr<GatheredRows> gathered = matchGatheredMatmul(op);
        succeeded(gathered)) {
      // A's rows through the tokens, each looked up once per register
      // block.
      ImplicitLocOpBuilder b(op.getLoc(), rewriter);
      Value tokens = op.getDpsInputs()[0];
      emitMatmul(b, gathered->source, op.getDpsInputs()[1],
                 op.getDpsInits()[0], minRows, [&](Value m) -> Value {
                   KernelEmitter e(b);
                   return e.clampedTokenRow(e.load(tokens, m),
                                            gathered->lastRow);
                 });
      rewriter.eraseOp(op);
      return success();
    }
    FailureOr<ContractionForm> form = matchTransposedBMatmul(op);
    if (failed(form))
      return rewriter.notifyMatchFailure(op, "not a transposed-B matmul");
    Value a = op.getDpsInputs()[0], w = op.getDpsInputs()[1];
    Value c = op.getDpsInits()[0];
    if (!form->transposedB) {
      // Only the outer-product kernel reads B along n; it takes an f32 C
      // (f32, f16 or bf16 A and B, widened as loaded: a half-precision
      // model's probabilities times values) with 512-bit vectors and whole
      // vectors of columns.
      int64_t columns = cast<MemRefType>(c.getType()).getShape().back();
      auto elementOf = [](Value v) {
        return cast<MemRefType>(v.getType()).getElementType();
      };
      auto widenable = [&](Value v) {
        Type t = elementOf(v);
        return t.isF32() || t.isF16() || t.isBF16();
      };
      if (vectorBits != 512 || !elementOf(c).isF32() || !widenable(a) ||
          !widenable(w) || ShapedType::isDynamic(columns) || columns % 16 != 0)
        return rewriter.notifyMatchFailure(
            op, "B is [k, n] but not into f32 with whole 16-lane column "
                "vectors");
      ImplicitLocOpBuilder b(op.getLoc(), rewriter);
      emitOuterProductMatmul(b, a, w, c, *form, columns);
      rewriter.eraseOp(op);
      return success();
    }
    ImplicitLocOpBuilder b(op.getLoc(), rewriter);
    KernelEmitter e(b);
    // Batches run one after the other, each with its column panels in
    // parallel.
    std::function<void(SmallVector<Value>)> overBatches =
        [&](SmallVector<Value> indices) {
          if (indices.size() == form->batchLoops) {
            emitMatmul(
                b, collapseRows(b, matrixAt(b, a, indices), form->rowLoops),
                bMatrixAt(b, w, indices, *form),
                collapseRows(b, matrixAt(b, c, indices), form->rowLoops),
                minRows);
            return;
          }
          e.loop(e.index(0), e.dim(c, indices.size()), [&](Value i) {
            SmallVector<Value> inner = indices;
            inner.push_back(i);
            overBatches(inner);
          });
        };
    overBatches({});
    rewriter.eraseOp(op);
    return success();
  }

  /// `c += a @ w` with `w` read as `[..., k, n]` (attention's probabilities
  /// times values): B's rows are already vectors of columns, so the
  /// outer-product block reads them in place. One scf.parallel over the
  /// batch loops and chunks of rows; each task runs its rows over every
  /// column panel, 64 columns wide (the last one narrower).
  void emitOuterProductMatmul(ImplicitLocOpBuilder &b, Value a, Value w,
                              Value c, const ContractionForm &form,
                              int64_t columns) const {
    KernelEmitter e(b);
    constexpr int64_t lanes = kOuterProductLanes;
    auto accVec = VectorType::get({lanes}, b.getF32Type());
    // Rows per parallel task: 8 register blocks.
    constexpr int64_t chunkRows = 8 * kPackedRows;
    Value c0 = e.index(0), c1 = e.index(1);
    Value rows = c1;
    for (unsigned d = 0; d < form.rowLoops; ++d)
      rows = e.muli(rows, e.dim(c, form.batchLoops + d));
    SmallVector<Value> lower(form.batchLoops + 1, c0),
        steps(form.batchLoops + 1, c1), upper;
    for (unsigned d = 0; d < form.batchLoops; ++d)
      upper.push_back(e.dim(c, d));
    upper.push_back(arith::CeilDivUIOp::create(b, rows, e.index(chunkRows)));
    auto tasks = scf::ParallelOp::create(b, lower, upper, steps);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(tasks.getBody()->getTerminator());
    ValueRange ivs = tasks.getInductionVars();
    SmallVector<Value> batch(ivs.begin(), ivs.begin() + form.batchLoops);
    Value am = collapseRows(b, matrixAt(b, a, batch), form.rowLoops);
    Value wm = bMatrixAt(b, w, batch, form);
    Value cm = collapseRows(b, matrixAt(b, c, batch), form.rowLoops);
    Value begin = e.muli(ivs.back(), e.index(chunkRows));
    Value end = arith::MinUIOp::create(
        b, e.addi(begin, e.index(chunkRows)), rows);
    Value depth = e.dim(am, 1);
    Type wElement = cast<MemRefType>(w.getType()).getElementType();
    for (int64_t first = 0; first < columns; first += kPackedVectors * lanes) {
      int64_t vectors =
          std::min<int64_t>(kPackedVectors, (columns - first) / lanes);
      Value n0 = e.index(first);
      forEachRowBlock(b, begin, end, [&](Value m0, int64_t mr) {
        emitOuterProductBlock(
            b, cm, m0, mr, n0, vectors, c0, depth,
            [&](Value k, int64_t g) -> Value {
              Value row = vector::LoadOp::create(
                  b, VectorType::get({lanes}, wElement), wm,
                  ValueRange{k, e.index(first + g * lanes)});
              return wElement.isF32() ? row
                                      : arith::ExtFOp::create(b, accVec, row);
            },
            [&](Value m, Value k) -> Value {
              Value element = e.load(am, {m, k});
              if (!element.getType().isF32())
                element = arith::ExtFOp::create(b, b.getF32Type(), element);
              return vector::BroadcastOp::create(b, accVec, element);
            },
            [&](Value x, Value y, Value sum) -> Value {
              return vector::FMAOp::create(b, x, y, sum);
            });
      });
    }
  }

  /// `c += a @ w^T` for rank-2 memrefs; with `rowOf`, row m of the product
  /// reads row `rowOf(m)` of `a`.
  void emitMatmul(ImplicitLocOpBuilder &b, Value a, Value w, Value c,
                  int64_t packFromRows,
                  function_ref<Value(Value)> rowOf = nullptr) const {
    KernelEmitter e(b);
    auto aRow = [&](Value m) { return rowOf ? rowOf(m) : m; };
    Type accType = cast<MemRefType>(c.getType()).getElementType();
    Type aType = cast<MemRefType>(a.getType()).getElementType();
    Type wType = cast<MemRefType>(w.getType()).getElementType();
    int64_t lanes = vectorBits / accType.getIntOrFloatBitWidth();
    auto vecType = VectorType::get({lanes}, accType);
    // vdpbf16ps exists for 4, 8 and 16 f32 lanes.
    bool dot = bf16Dot && aType.isBF16() && wType.isBF16() &&
               accType.isF32() && (lanes == 4 || lanes == 8 || lanes == 16);
    // Elements of k per vector step: one per lane, or a bf16 pair per lane.
    int64_t step = dot ? 2 * lanes : lanes;

    Value c0 = e.index(0);
    Value rows = e.dim(c, 0), cols = e.dim(c, 1), depth = e.dim(a, 1);
    Value cStep = e.index(step);
    // k < kVec runs on full vectors, the rest is a scalar tail.
    Value kVec = e.muli(arith::DivUIOp::create(b, depth, cStep), cStep);
    Value zeroVec = e.splat(vecType, 0.0);

    // A loaded vector<step> as the multiply-add takes it: narrow operands
    // widened to the accumulator type, except bf16 pairs for the dot.
    auto widen = [&](Value v) -> Value {
      if (dot || cast<VectorType>(v.getType()).getElementType() == accType)
        return v;
      return arith::ExtFOp::create(b, vecType, v);
    };
    auto loadVec = [&](Value memref, Value row, Value k) -> Value {
      Type element = cast<MemRefType>(memref.getType()).getElementType();
      return widen(vector::LoadOp::create(
          b, VectorType::get({step}, element), memref, ValueRange{row, k}));
    };
    auto multiplyAdd = [&](Value x, Value y, Value acc) -> Value {
      if (dot)
        return x86vector::DotBF16Op::create(b, vecType, acc, x, y);
      return vector::FMAOp::create(b, x, y, acc);
    };
    // The last, partial step of k: the lanes past the end read as zero, so
    // that it is one more multiply-add rather than a scalar loop per
    // element of C.
    Value kTail = e.subi(depth, kVec);
    int64_t staticDepth = cast<MemRefType>(a.getType()).getDimSize(1);
    bool hasTail = ShapedType::isDynamic(staticDepth) || staticDepth % step;
    auto loadTail = [&](Value memref, Value row, Value mask) -> Value {
      Type element = cast<MemRefType>(memref.getType()).getElementType();
      auto type = VectorType::get({step}, element);
      Value zeros = e.splat(type, 0.0);
      return widen(vector::MaskedLoadOp::create(
          b, type, memref, ValueRange{row, kVec}, mask, zeros));
    };

    // One mr x nr block of C at (m0, n0).
    auto emitTile = [&](Value m0, Value n0, int64_t mr, int64_t nr) {
      SmallVector<Value> init(mr * nr, zeroVec);
      // A's rows for the block, found before the loop over k.
      SmallVector<Value> aRows;
      for (int64_t i = 0; i < mr; ++i)
        aRows.push_back(aRow(e.addi(m0, e.index(i))));
      auto multiplyAddBlock = [&](ValueRange partial,
                                  function_ref<Value(Value, Value)> load) {
        SmallVector<Value> as;
        for (int64_t i = 0; i < mr; ++i)
          as.push_back(load(a, aRows[i]));
        SmallVector<Value> next(partial.begin(), partial.end());
        for (int64_t j = 0; j < nr; ++j) {
          Value wv = load(w, e.addi(n0, e.index(j)));
          for (int64_t i = 0; i < mr; ++i)
            next[i * nr + j] = multiplyAdd(as[i], wv, next[i * nr + j]);
        }
        return next;
      };
      SmallVector<Value> acc = e.loop(
          c0, kVec, init,
          [&](Value k, ValueRange partial) {
            return multiplyAddBlock(partial, [&](Value memref, Value row) {
              return loadVec(memref, row, k);
            });
          },
          cStep);
      if (hasTail) {
        Value mask = vector::CreateMaskOp::create(
            b, VectorType::get({step}, b.getI1Type()), ValueRange{kTail});
        acc = multiplyAddBlock(acc, [&](Value memref, Value row) {
          return loadTail(memref, row, mask);
        });
      }
      for (int64_t i = 0; i < mr; ++i) {
        Value m = e.addi(m0, e.index(i));
        ArrayRef<Value> row = ArrayRef<Value>(acc).slice(i * nr, nr);
        if (nr > 1 && llvm::isPowerOf2_64(nr) && nr <= lanes) {
          // C[m, n0 : n0 + nr] += the row's sums, as one vector.
          auto rowType = VectorType::get({nr}, accType);
          Value sums = reduceTransposed(b, row);
          Value old = vector::LoadOp::create(b, rowType, c, ValueRange{m, n0});
          vector::StoreOp::create(b, arith::AddFOp::create(b, old, sums), c,
                                  ValueRange{m, n0});
          continue;
        }
        for (int64_t j = 0; j < nr; ++j) {
          Value n = e.addi(n0, e.index(j));
          Value sum = vector::ReductionOp::create(
              b, vector::CombiningKind::ADD, row[j], Value(),
              arith::FastMathFlags::reassoc);
          e.store(e.addf(e.load(c, {m, n}), sum), c, {m, n});
        }
      }
    };

    auto fullTiles = [&](Value extent, int64_t tile) {
      Value t = e.index(tile);
      return e.muli(arith::DivUIOp::create(b, extent, t), t);
    };
    Value mFull = fullTiles(rows, rowTile);
    auto overRows = [&](Value n0, int64_t nr) {
      e.loop(
          c0, mFull, [&](Value m0) { emitTile(m0, n0, rowTile, nr); },
          e.index(rowTile));
      e.loop(mFull, rows, [&](Value m0) { emitTile(m0, n0, 1, nr); });
    };
    // Columns [first, cols) with the dot-product kernel. Column panels are
    // independent: they are the unit of parallel work (decode-sized M
    // leaves nothing else to split).
    auto dotColumns = [&](Value first) {
      Value nFull = e.addi(first, fullTiles(e.subi(cols, first), colTile));
      auto panels = scf::ParallelOp::create(
          b, ValueRange{first}, ValueRange{nFull},
          ValueRange{e.index(colTile)});
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(panels.getBody()->getTerminator());
        overRows(panels.getInductionVars()[0], colTile);
      }
      e.loop(nFull, cols, [&](Value n0) { overRows(n0, 1); });
    };

    // The packed kernel needs AVX-512's 32 registers, f32 or bf16-pair
    // operands, and whole pairs of k for the dot.
    bool plainF32 = aType.isF32() && wType.isF32() && accType.isF32();
    bool packable = packFromRows > 0 && lanes == 16 && (plainF32 || dot) &&
                    (!dot || (!ShapedType::isDynamic(staticDepth) &&
                              staticDepth % 2 == 0));
    if (!packable) {
      dotColumns(c0);
      return;
    }
    int64_t panelWidth = kPackedVectors * lanes;
    Value packedCols = fullTiles(cols, panelWidth);
    Value enoughRows =
        e.cmpi(arith::CmpIPredicate::uge, rows, e.index(packFromRows));
    e.ifThenElse(
        enoughRows,
        [&] {
          auto panels = scf::ParallelOp::create(
              b, ValueRange{c0}, ValueRange{packedCols},
              ValueRange{e.index(panelWidth)});
          {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPoint(panels.getBody()->getTerminator());
            emitPackedPanel(b, a, w, c, panels.getInductionVars()[0], lanes,
                            dot, aRow);
          }
          dotColumns(packedCols);
        },
        [&] { dotColumns(c0); });
  }

  /// `c[:, n0 : n0 + 4 * lanes] += a @ w[n0 : n0 + 4 * lanes, :]^T` with the
  /// packed outer-product kernel. Its unit of k is one f32, or with `dot` one
  /// bf16 pair handled as an i32 so that packing moves pairs whole.
  void emitPackedPanel(ImplicitLocOpBuilder &b, Value a, Value w, Value c,
                       Value n0, int64_t lanes, bool dot,
                       function_ref<Value(Value)> aRow) const {
    KernelEmitter e(b);
    Type f32 = b.getF32Type(), i32 = b.getI32Type();
    Type element = cast<MemRefType>(w.getType()).getElementType();
    // Elements of a and w per unit of k.
    int64_t unitElements = dot ? 2 : 1;
    auto accVec = VectorType::get({lanes}, f32);
    auto unitVec = VectorType::get({lanes}, dot ? i32 : f32);
    auto elementVec = VectorType::get({lanes * unitElements}, element);
    int64_t panelWidth = kPackedVectors * lanes;
    Value c0 = e.index(0);
    Value rows = e.dim(c, 0);
    Value units = dot ? e.index(cast<MemRefType>(a.getType()).getDimSize(1) /
                                2)
                      : e.dim(a, 1);
    Value depth = e.dim(a, 1);

    // The packed span is the panel iteration's own (panels run in
    // parallel). It is on the heap: a stack allocation in the body of a
    // parallel loop would grow its worker's stack every iteration, and an
    // alloca_scope does not survive the lowering of the loops inside it.
    // One malloc per panel is small against the panel's work.
    // A short static depth needs only its own units (whole 16-unit blocks).
    int64_t spanRows = kPackedSpan;
    if (int64_t k = cast<MemRefType>(a.getType()).getDimSize(1);
        !ShapedType::isDynamic(k))
      spanRows = std::min<int64_t>(spanRows,
                                   llvm::alignTo(k / unitElements, lanes));
    auto packedType =
        MemRefType::get({spanRows, panelWidth * unitElements}, element);
    Value packed = memref::AllocOp::create(b, packedType, ValueRange{},
                                           b.getI64IntegerAttr(64));

    auto toUnits = [&](Value v) -> Value {
      return dot ? vector::BitCastOp::create(b, unitVec, v).getResult() : v;
    };
    auto toElements = [&](Value v) -> Value {
      return dot ? vector::BitCastOp::create(b, elementVec, v).getResult() : v;
    };
    Value zeros = e.splat(elementVec, 0.0);
    auto maskType = VectorType::get({lanes * unitElements}, b.getI1Type());

    // Pack units [ks, ks + span) of the panel's rows: lanes x lanes blocks
    // of w (rows n, units k) transposed into rows k - ks of `packed`; units
    // past the end of a row read as zero.
    auto pack = [&](Value ks, Value span) {
      for (int64_t g = 0; g < kPackedVectors; ++g)
        e.loop(
            c0, span,
            [&](Value t) {
              Value kElem = e.muli(e.addi(ks, t), e.index(unitElements));
              Value mask = vector::CreateMaskOp::create(
                  b, maskType, ValueRange{e.subi(depth, kElem)});
              SmallVector<Value> block;
              for (int64_t r = 0; r < lanes; ++r) {
                Value n = e.addi(n0, e.index(g * lanes + r));
                block.push_back(toUnits(vector::MaskedLoadOp::create(
                    b, elementVec, w, ValueRange{n, kElem}, mask, zeros)));
              }
              SmallVector<Value> transposed = transposeSquare(b, block);
              for (int64_t i = 0; i < lanes; ++i)
                vector::StoreOp::create(b, toElements(transposed[i]), packed,
                                        ValueRange{e.addi(t, e.index(i)),
                                                   e.index(g * lanes *
                                                           unitElements)});
            },
            e.index(lanes));
    };

    // a's element (or bf16 pair) at row m and packed row t of span ks,
    // broadcast. A gathered row's lookup does not depend on t: LLVM hoists
    // it out of the loop over t.
    auto aAt = [&](Value ks, Value m, Value t) -> Value {
      Value kElem = e.muli(e.addi(ks, t), e.index(unitElements));
      return broadcastStepOfA(b, a, aRow(m), kElem, dot);
    };
    auto bAt = [&](Value t, int64_t g) -> Value {
      return vector::LoadOp::create(
          b, elementVec, packed,
          ValueRange{t, e.index(g * lanes * unitElements)});
    };
    auto multiplyAdd = [&](Value x, Value y, Value sum) -> Value {
      if (dot)
        return x86vector::DotBF16Op::create(b, accVec, sum, x, y);
      return vector::FMAOp::create(b, x, y, sum);
    };

    e.loop(
        c0, units,
        [&](Value ks) {
          Value span = arith::MinUIOp::create(b, e.index(kPackedSpan),
                                              e.subi(units, ks));
          pack(ks, span);
          e.loop(
              ks, e.addi(ks, span),
              [&](Value kb) {
                // Packed rows [kb - ks, kb - ks + 128) of the span for every
                // row block.
                Value first = e.subi(kb, ks);
                Value last = arith::MinUIOp::create(
                    b, e.addi(first, e.index(kPackedDepth)), span);
                forEachRowBlock(b, c0, rows, [&](Value m0, int64_t mr) {
                  emitOuterProductBlock(
                      b, c, m0, mr, n0, kPackedVectors, first, last, bAt,
                      [&](Value m, Value t) { return aAt(ks, m, t); },
                      multiplyAdd);
                });
              },
              e.index(kPackedDepth));
        },
        e.index(kPackedSpan));
    memref::DeallocOp::create(b, packed);
  }

  int64_t vectorBits, rowTile, colTile;
  bool bf16Dot;
  int64_t packMinRows, expertPackMinRows;
};

struct MoEVectorizeContractionsPass
    : moe::impl::MoEVectorizeContractionsBase<MoEVectorizeContractionsPass> {
  using MoEVectorizeContractionsBase::MoEVectorizeContractionsBase;

  void runOnOperation() override {
    // 24 accumulators (3 x 8) plus the row and weight vectors fit the 32
    // AVX-512 registers; measured best of 4x4, 2x8, 3x8, 6x4, 4x6, 2x12
    // on the benchmark shapes.
    if (rowTile < 1 || colTile < 1 || vectorBits < 32 || packMinRows < 0 ||
        expertPackMinRows < 0) {
      getOperation()->emitError()
          << "row-tile and col-tile must be at least 1, vector-bits at "
             "least 32 and pack-min-rows and expert-pack-min-rows at least 0";
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    patterns.add<VectorizeTransposedBMatmul>(&getContext(), vectorBits,
                                             rowTile, colTile, bf16Dot,
                                             packMinRows, expertPackMinRows);
    patterns.add<VectorizePanelMatmul>(&getContext(), vectorBits, bf16Dot);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
