//===- PackMatmulWeights.cpp - panel-major matmul weights at compile time -===//
//
// A decoder spends much of its prefill outside the experts: the attention
// projections and the LM head are matmuls by constant weights with as many
// rows as the prompt has tokens. The importer stores those weights
// out-major (`[N, K]`), which the dot-product kernel reads in place but
// with a horizontal reduction per element of C, and which the outer-product
// kernel can only read after transposing every 64-column panel, once per
// call. Stored panel-major at compile time, as the experts' weights are
// (PackExpertWeights.cpp), they are the `[K, 64]` matrices that kernel
// reads, at any row count and without that copy.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "moe-mlir/Transforms/ConstantData.h"
#include "moe-mlir/Transforms/ExpertKernels.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPACKMATMULWEIGHTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// A matmul that reads its weight panel-major once rewritten.
struct WeightMatmul {
  linalg::GenericOp op;
  WeightLayout layout;
};

/// Whether `op` is `C[rows..., n] += A[rows..., k] * W[n, k]` on tensors,
/// with one or more loops of rows (the importer's matmul by a weight), and
/// if so how many.
std::optional<unsigned> weightMatmulRows(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      !op.hasPureTensorSemantics() || op.getNumLoops() < 3)
    return std::nullopt;
  unsigned loops = op.getNumLoops(), rows = loops - 2;
  auto iterators = op.getIteratorTypesArray();
  for (unsigned i = 0; i < loops; ++i)
    if (iterators[i] != (i + 1 < loops ? utils::IteratorType::parallel
                                       : utils::IteratorType::reduction))
      return std::nullopt;
  // The maps of a matmul by an out-major weight.
  WeightLayout outMajor;
  outMajor.rowLoops = rows;
  if (op.getIndexingMapsArray() != outMajor.rowsInPlaceMaps(op.getContext()))
    return std::nullopt;
  // The body accumulates the product of the two inputs' elements (widened
  // or not), and nothing else.
  Block &body = op.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto add = yield.getOperand(0).getDefiningOp<arith::AddFOp>();
  if (!add)
    return std::nullopt;
  Value acc = body.getArgument(2);
  Value other = add.getLhs() == acc   ? add.getRhs()
                : add.getRhs() == acc ? add.getLhs()
                                      : Value();
  auto mul = other ? other.getDefiningOp<arith::MulFOp>() : nullptr;
  if (!mul || stripExtension(mul.getLhs()) != body.getArgument(0) ||
      stripExtension(mul.getRhs()) != body.getArgument(1))
    return std::nullopt;
  return rows;
}

/// The layout `op` reads its constant weight in once packed, if the CPU
/// kernel takes it: products accumulated in f32 of f32 rows by f32 or f16
/// weights, or bf16 rows by bf16 weights in pairs of k (not f16 rows, a
/// half-precision model's: widened in the kernel or once before it, they
/// ran as fast as the dot-product kernel runs them); P the first of
/// `width`, `width / 2`, `width / 4` (at least 16) that divides N.
std::optional<WeightLayout> packedLayout(linalg::GenericOp op, int64_t width,
                                         bool packBf16) {
  std::optional<unsigned> rows = weightMatmulRows(op);
  if (!rows)
    return std::nullopt;
  auto weightType = cast<RankedTensorType>(op.getDpsInputs()[1].getType());
  Type aElement = getElementTypeOrSelf(op.getDpsInputs()[0].getType());
  Type wElement = weightType.getElementType();
  Type cElement = getElementTypeOrSelf(op.getDpsInits()[0].getType());
  if (!weightType.hasStaticShape() || !cElement.isF32())
    return std::nullopt;
  bool pairs = aElement.isBF16() && wElement.isBF16();
  if (pairs ? !packBf16 || weightType.getDimSize(1) % 2
            : !aElement.isF32() || !(wElement.isF32() || wElement.isF16()))
    return std::nullopt;
  int64_t n = weightType.getDimSize(0);
  for (int64_t p = width; p >= 16; p /= 2)
    if (n % p == 0) {
      WeightLayout layout{p, pairs};
      layout.rowLoops = *rows;
      return layout;
    }
  return std::nullopt;
}

/// `matmul.op` reading `packed` as its layout says.
void rewriteMatmul(const WeightMatmul &matmul, Value packed) {
  linalg::GenericOp op = matmul.op;
  const WeightLayout &layout = matmul.layout;
  unsigned loops = layout.loops(), rows = layout.rowLoops;
  SmallVector<utils::IteratorType> iterators(loops,
                                             utils::IteratorType::reduction);
  for (unsigned d = 0; d <= rows; ++d)
    iterators[d] = utils::IteratorType::parallel;
  OpBuilder b(op);
  auto packedOp = linalg::GenericOp::create(
      b, op.getLoc(), op.getResultTypes(),
      ValueRange{op.getDpsInputs()[0], packed}, op.getDpsInits(),
      layout.rowsInPlaceMaps(op.getContext()), iterators,
      [](OpBuilder &nb, Location loc, ValueRange args) {
        Type f32 = nb.getF32Type();
        auto widened = [&](Value v) -> Value {
          if (v.getType() == f32)
            return v;
          return arith::ExtFOp::create(nb, loc, f32, v);
        };
        Value product =
            arith::MulFOp::create(nb, loc, widened(args[0]), widened(args[1]));
        linalg::YieldOp::create(
            nb, loc,
            arith::AddFOp::create(nb, loc, args[2], product).getResult());
      });
  op->replaceAllUsesWith(packedOp->getResults());
  op->erase();
}

struct MoEPackMatmulWeightsPass
    : moe::impl::MoEPackMatmulWeightsBase<MoEPackMatmulWeightsPass> {
  using MoEPackMatmulWeightsBase::MoEPackMatmulWeightsBase;

  void runOnOperation() override {
    if (!llvm::is_contained({16, 32, 64}, int64_t(panelWidth))) {
      getOperation()->emitError() << "panel-width must be 16, 32 or 64, got "
                                  << static_cast<int64_t>(panelWidth);
      return signalPassFailure();
    }
    // The matmuls by each constant weight, in the order met.
    llvm::MapVector<arith::ConstantOp, SmallVector<WeightMatmul>> byWeight;
    getOperation()->walk([&](linalg::GenericOp op) {
      if (op.getNumDpsInputs() != 2)
        return;
      auto constant = op.getDpsInputs()[1].getDefiningOp<arith::ConstantOp>();
      if (!constant)
        return;
      if (std::optional<WeightLayout> layout =
              packedLayout(op, panelWidth, packBf16))
        byWeight[constant].push_back({op, *layout});
    });
    MLIRContext *ctx = &getContext();
    SmallVector<arith::ConstantOp> replaced;
    for (auto &[constant, matmuls] : byWeight) {
      // A weight also read otherwise (a tied embedding's Gather) keeps its
      // layout: a packed copy beside it would double its memory.
      Value weight = constant.getResult();
      if (static_cast<size_t>(std::distance(
              weight.use_begin(), weight.use_end())) != matmuls.size())
        continue;
      auto attr = dyn_cast<ElementsAttr>(constant.getValue());
      std::optional<ArrayRef<char>> bytes =
          attr ? constantBytes(attr) : std::nullopt;
      if (!bytes)
        continue;
      // Every use reads the same weight shape and element, hence the same
      // layout but for the rows.
      WeightLayout layout = matmuls.front().layout;
      OpBuilder b(constant);
      b.setInsertionPointAfter(constant);
      Value packed = arith::ConstantOp::create(
          b, constant.getLoc(),
          cast<TypedAttr>(packWeightPanels(ctx, attr, *bytes, layout.panelWidth,
                                           layout.stepsOfK())));
      for (const WeightMatmul &matmul : matmuls)
        rewriteMatmul(matmul, packed);
      replaced.push_back(constant);
    }
    eraseUnusedConstants(getOperation(), replaced);
  }
};

} // namespace
