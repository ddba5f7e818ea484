//===- X86VnniDot.cpp - u8 x s8 dot products of four to vpdpbusd ----------===//
//
// Kernels write AVX512-VNNI's dot product in portable vector ops (so that
// they stay correct on any target and pass buffer deallocation, which
// rejects intrinsic calls of unknown effects); this pass emits the
// instruction for them where the target has it.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEX86VNNIDOT
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// `v` if it is a vector<64xi8>.
Value asBytes(Value v) {
  auto type = dyn_cast<VectorType>(v.getType());
  if (!type || type.getShape() != ArrayRef<int64_t>{64} ||
      !type.getElementType().isInteger(8))
    return Value();
  return v;
}

/// Matches
///   %p = arith.muli (arith.extui %u : vector<64xi8> to vector<64xi32>),
///                   (arith.extsi %s : vector<64xi8> to vector<64xi32>)
///   %g = vector.shape_cast %p : vector<64xi32> to vector<16x4xi32>
///   %r = vector.multi_reduction <add>, %g, %acc [1]
/// (either operand order) and replaces it with vpdpbusd(%acc, %u, %s).
struct MultiReductionToVpdpbusd
    : OpRewritePattern<vector::MultiDimReductionOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(vector::MultiDimReductionOp reduction,
                                PatternRewriter &rewriter) const override {
    auto sourceType = reduction.getSourceVectorType();
    if (reduction.getKind() != vector::CombiningKind::ADD ||
        sourceType.getShape() != ArrayRef<int64_t>{16, 4} ||
        !sourceType.getElementType().isInteger(32) ||
        reduction.getReductionDims() != ArrayRef<int64_t>{1})
      return rewriter.notifyMatchFailure(reduction, "not 16 sums of 4 i32");
    auto groups = reduction.getSource().getDefiningOp<vector::ShapeCastOp>();
    auto product =
        groups ? groups.getSource().getDefiningOp<arith::MulIOp>() : nullptr;
    if (!product)
      return rewriter.notifyMatchFailure(reduction, "not a product");
    Value unsignedBytes, signedBytes;
    for (auto [l, r] : {std::pair(product.getLhs(), product.getRhs()),
                        std::pair(product.getRhs(), product.getLhs())}) {
      auto zext = l.getDefiningOp<arith::ExtUIOp>();
      auto sext = r.getDefiningOp<arith::ExtSIOp>();
      if (zext && sext && asBytes(zext.getIn()) && asBytes(sext.getIn())) {
        unsignedBytes = zext.getIn();
        signedBytes = sext.getIn();
        break;
      }
    }
    if (!unsignedBytes)
      return rewriter.notifyMatchFailure(reduction, "not u8 x s8 bytes");
    auto call = LLVM::CallIntrinsicOp::create(
        rewriter, reduction.getLoc(), reduction.getDestType(),
        rewriter.getStringAttr("llvm.x86.avx512.vpdpbusd.512"),
        ValueRange{reduction.getAcc(), unsignedBytes, signedBytes});
    rewriter.replaceOp(reduction, call.getResults());
    return success();
  }
};

struct MoEX86VnniDotPass : moe::impl::MoEX86VnniDotBase<MoEX86VnniDotPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<MultiReductionToVpdpbusd>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
