//===- WidenHalfAccumulators.cpp - f32 sums for f16/bf16 reductions -------===//
//
// A model exported in half precision computes its matmuls and reductions
// with f16 or bf16 results, and the importer writes them as linalg
// reductions into f16/bf16 tensors: every step of k rounds the running sum
// to 11 (f16) or 8 (bf16) bits. Nobody runs them that way (ONNX Runtime's
// and cuBLAS's half GEMMs accumulate in f32), and on a CPU without AVX512-FP16
// it is also slow: LLVM computes each f16 multiply-add by converting to
// f32 and back, so the contraction kernels' register blocks do three
// conversions per FMA. Here such a reduction accumulates in f32: its
// operands are widened in the body and the f32 result is rounded once,
// which is the form the kernels already take for bf16 weights (f16 operands
// are widened as they are loaded; bf16 pairs go to `vdpbf16ps`).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"
#include "moe-mlir/Transforms/ElementConversion.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEWIDENHALFACCUMULATORS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

bool isHalf(Type type) { return type.isF16() || type.isBF16(); }

/// Whether `op` in a reduction's body computes the same function on f32
/// operands as on half ones (up to the rounding that widening removes):
/// arith's and math's elementwise float ops, comparisons, selects and
/// conversions; ops that touch no half value (index arithmetic) stay as
/// they are.
bool isWidenable(Operation *op) {
  if (op->getNumRegions() != 0)
    return false;
  auto touchesHalf = [](TypeRange types) {
    return llvm::any_of(types, [](Type t) { return isHalf(t); });
  };
  if (!touchesHalf(op->getOperandTypes()) && !touchesHalf(op->getResultTypes()))
    return true;
  if (isa<arith::ConstantOp, arith::ExtFOp, arith::TruncFOp, arith::SelectOp,
          arith::CmpFOp, linalg::YieldOp>(op))
    return true;
  Dialect *dialect = op->getDialect();
  if (!dialect || !isa<arith::ArithDialect, math::MathDialect>(dialect))
    return false;
  // Elementwise float arithmetic: every operand and result one float type.
  return op->getNumResults() == 1 &&
         llvm::all_of(op->getOperandTypes(),
                      [&](Type t) { return t == op->getResult(0).getType(); });
}

/// An f32 constant holding `value` (an f16 or bf16 one) exactly.
Value f32Constant(OpBuilder &b, Location loc, APFloat value) {
  bool losesInfo;
  value.convert(APFloat::IEEEsingle(), APFloat::rmNearestTiesToEven,
                &losesInfo);
  return arith::ConstantFloatOp::create(b, loc, b.getF32Type(), value);
}

struct WidenReduction : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics() || op.getNumReductionLoops() == 0)
      return rewriter.notifyMatchFailure(op, "not a reduction on tensors");
    Type half;
    for (Value init : op.getDpsInits()) {
      Type element = cast<RankedTensorType>(init.getType()).getElementType();
      if (!isHalf(element) || (half && element != half))
        return rewriter.notifyMatchFailure(op, "not all results f16 or bf16");
      half = element;
    }
    Block *body = op.getBody();
    for (Operation &inner : *body)
      if (!isWidenable(&inner))
        return rewriter.notifyMatchFailure(&inner, "not widenable");

    Location loc = op.getLoc();
    Type f32 = rewriter.getF32Type();
    // Inits: a fill of a constant becomes the same fill in f32; a tensor
    // whose values the body never reads, an empty f32 tensor; anything
    // else is widened elementwise.
    SmallVector<Value> inits;
    for (OpOperand &init : op.getDpsInitsMutable()) {
      Value value = init.get();
      if (!op.payloadUsesValueFromOperand(&init)) {
        SmallVector<OpFoldResult> sizes =
            tensor::getMixedSizes(rewriter, loc, value);
        inits.push_back(tensor::EmptyOp::create(rewriter, loc, sizes, f32));
        continue;
      }
      auto fill = value.getDefiningOp<linalg::FillOp>();
      auto constant =
          fill ? fill.value().getDefiningOp<arith::ConstantFloatOp>() : nullptr;
      if (constant) {
        Value scalar = f32Constant(rewriter, loc, constant.value());
        SmallVector<OpFoldResult> sizes =
            tensor::getMixedSizes(rewriter, loc, value);
        Value empty = tensor::EmptyOp::create(rewriter, loc, sizes, f32);
        inits.push_back(
            linalg::FillOp::create(rewriter, loc, scalar, empty).getResult(0));
        continue;
      }
      inits.push_back(convertElements(rewriter, loc, value, f32));
    }

    SmallVector<Type> resultTypes;
    for (Value init : inits)
      resultTypes.push_back(init.getType());
    auto wide = linalg::GenericOp::create(
        rewriter, loc, resultTypes, op.getDpsInputs(), inits,
        op.getIndexingMapsArray(), op.getIteratorTypesArray());
    Block *wideBody = rewriter.createBlock(&wide.getRegion());
    for (BlockArgument arg : body->getArguments()) {
      bool isInit = arg.getArgNumber() >= op.getNumDpsInputs();
      wideBody->addArgument(isInit ? f32 : arg.getType(), arg.getLoc());
    }

    // Every half value of the body becomes f32: half inputs (and half
    // values from above) are widened where first used, constants are
    // rebuilt in f32, conversions between the two vanish and the other
    // ops are cloned with f32 results.
    IRMapping mapping;
    rewriter.setInsertionPointToStart(wideBody);
    for (BlockArgument arg : body->getArguments()) {
      Value wideArg = wideBody->getArgument(arg.getArgNumber());
      if (arg.getArgNumber() < op.getNumDpsInputs() && isHalf(arg.getType()))
        wideArg = arith::ExtFOp::create(rewriter, loc, f32, wideArg);
      mapping.map(arg, wideArg);
    }
    auto widened = [&](Value v) -> Value {
      Value mapped = mapping.lookupOrDefault(v);
      if (isHalf(mapped.getType()))
        return arith::ExtFOp::create(rewriter, loc, f32, mapped);
      return mapped;
    };
    for (Operation &inner : body->without_terminator()) {
      if (auto constant = dyn_cast<arith::ConstantFloatOp>(&inner);
          constant && isHalf(constant.getType())) {
        mapping.map(constant.getResult(),
                    f32Constant(rewriter, inner.getLoc(), constant.value()));
        continue;
      }
      if (isa<arith::ExtFOp, arith::TruncFOp>(inner)) {
        // Between f32 and the half type: both are f32 now. Other
        // conversions (to f64, to an 8-bit float) stay, from f32.
        Type from = inner.getOperand(0).getType();
        Type to = inner.getResult(0).getType();
        if ((isHalf(from) && to.isF32()) || (from.isF32() && isHalf(to))) {
          mapping.map(inner.getResult(0), widened(inner.getOperand(0)));
          continue;
        }
      }
      // Half values from above the body, widened before the clone uses them.
      for (Value operand : inner.getOperands())
        if (isHalf(mapping.lookupOrDefault(operand).getType()))
          mapping.map(operand, widened(operand));
      Operation *clone = rewriter.clone(inner, mapping);
      for (OpResult result : clone->getResults())
        if (isHalf(result.getType()))
          result.setType(f32);
    }
    SmallVector<Value> yielded;
    for (Value v : body->getTerminator()->getOperands())
      yielded.push_back(widened(v));
    linalg::YieldOp::create(rewriter, loc, yielded);

    // Each f32 result rounded once to the half type.
    rewriter.setInsertionPointAfter(wide);
    SmallVector<Value> results;
    for (Value result : wide.getResults())
      results.push_back(convertElements(rewriter, loc, result, half));
    rewriter.replaceOp(op, results);
    return success();
  }
};

struct MoEWidenHalfAccumulatorsPass
    : moe::impl::MoEWidenHalfAccumulatorsBase<MoEWidenHalfAccumulatorsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<WidenReduction>(&getContext());
    walkAndApplyPatterns(getOperation(), std::move(patterns));
  }
};

} // namespace
