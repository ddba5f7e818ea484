//===- ConvertWeights.cpp - bf16 weights for f32 models -------------------===//
//
// Models exported from PyTorch come in f32, and their weights (the
// experts', the projections', the LM head's) are nearly all of a decoder's
// bytes and multiply-adds. Stored as bf16 they take half the memory and
// bandwidth, and with AVX512-BF16 (or tensor cores) the GEMMs multiply
// bf16 by bf16 at twice f32's rate, accumulating in f32. That changes the
// results by bf16's rounding, so it is the user's choice, made at compile
// time on the constants an AOT compile sees; the layers' routing stays
// f32.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Threading.h"
#include "moe-mlir/Transforms/ConstantData.h"
#include "moe-mlir/Transforms/ElementConversion.h"

#include <cstring>

namespace mlir::moe {
#define GEN_PASS_DEF_MOECONVERTEXPERTWEIGHTS
#define GEN_PASS_DEF_MOECONVERTMATMULWEIGHTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// `value` rounded to the nearest bf16, ties to even; NaNs stay (quiet)
/// NaNs rather than rounding into infinities.
uint16_t roundToBF16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

/// `attr`'s f32 elements (`bytes`) as a bf16 constant of the same kind
/// (dense elements, or a dense resource), converted in parallel chunks.
ElementsAttr convertToBF16(MLIRContext *ctx, ElementsAttr attr,
                           ArrayRef<char> bytes) {
  auto type = cast<RankedTensorType>(attr.getType());
  auto bf16Type =
      RankedTensorType::get(type.getShape(), BFloat16Type::get(ctx));
  if (auto dense = dyn_cast<DenseElementsAttr>(attr);
      dense && dense.isSplat()) {
    APFloat value = dense.getSplatValue<APFloat>();
    bool losesInfo;
    value.convert(APFloat::BFloat(), APFloat::rmNearestTiesToEven, &losesInfo);
    return DenseElementsAttr::get(bf16Type, value);
  }
  constexpr int64_t kChunk = 1 << 20;
  int64_t count = type.getNumElements();
  return rebuildConstant(
      attr, bf16Type, "_bf16", [&](MutableArrayRef<char> to) {
        const auto *from = reinterpret_cast<const float *>(bytes.data());
        auto *out = reinterpret_cast<uint16_t *>(to.data());
        parallelFor(ctx, 0, (count + kChunk - 1) / kChunk, [&](size_t chunk) {
          int64_t end = std::min<int64_t>(count, (chunk + 1) * kChunk);
          for (int64_t i = chunk * kChunk; i < end; ++i)
            out[i] = roundToBF16(from[i]);
        });
      });
}

/// The passes' `element-type` option: bf16 is the one there is.
LogicalResult checkElementType(Operation *root, StringRef elementType) {
  if (elementType == "bf16")
    return success();
  return root->emitError() << "element-type must be 'bf16', got '"
                           << elementType << "'";
}

/// The bf16 constants replacing f32 ones, each made once however many
/// operands share it, and the f32 constants replaced.
struct ConvertedConstants {
  Value of(arith::ConstantOp constant) {
    Value &bf16 = bf16Of[constant.getResult()];
    if (!bf16) {
      OpBuilder b(constant);
      b.setInsertionPointAfter(constant);
      auto attr = cast<ElementsAttr>(constant.getValue());
      bf16 = arith::ConstantOp::create(
          b, constant.getLoc(),
          cast<TypedAttr>(convertToBF16(constant.getContext(), attr,
                                        *constantBytes(attr))));
      replaced.push_back(constant);
    }
    return bf16;
  }

  DenseMap<Value, Value> bf16Of;
  SmallVector<arith::ConstantOp> replaced;
};

struct MoEConvertExpertWeightsPass
    : moe::impl::MoEConvertExpertWeightsBase<MoEConvertExpertWeightsPass> {
  using MoEConvertExpertWeightsBase::MoEConvertExpertWeightsBase;

  void runOnOperation() override {
    if (failed(checkElementType(getOperation(), elementType)))
      return signalPassFailure();
    getOperation()->walk([&](LayerOp layer) {
      if (layer.getQuantAttr())
        return;
      convert({&layer.getFc1Mutable(), optional(layer.getFc1BiasMutable()),
               &layer.getFc2Mutable(), optional(layer.getFc2BiasMutable()),
               optional(layer.getFc3Mutable()),
               optional(layer.getFc3BiasMutable())});
      convert({optional(layer.getSharedFc1Mutable()),
               optional(layer.getSharedFc2Mutable()),
               optional(layer.getSharedFc3Mutable())});
    });
    eraseUnusedConstants(getOperation(), converted.replaced);
  }

  static OpOperand *optional(MutableOperandRange range) {
    return range.empty() ? nullptr : &range[0];
  }

  /// Converts one expert group's weights (and biases, which share their
  /// element type), all or none: every one given must be an f32 constant
  /// with its elements at hand. A constant several operands share is
  /// converted once.
  void convert(ArrayRef<OpOperand *> operands) {
    SmallVector<std::pair<OpOperand *, arith::ConstantOp>> weights;
    for (OpOperand *operand : operands) {
      if (!operand)
        continue;
      auto constant = operand->get().getDefiningOp<arith::ConstantOp>();
      auto type = dyn_cast<RankedTensorType>(operand->get().getType());
      if (!constant || !type || !type.hasStaticShape() ||
          !type.getElementType().isF32() ||
          !constantBytes(cast<ElementsAttr>(constant.getValue())))
        return;
      weights.push_back({operand, constant});
    }
    for (auto [operand, constant] : weights)
      operand->set(converted.of(constant));
  }

  ConvertedConstants converted;
};

/// Whether `op` is `C[..., n] += A[..., k] * B[n, k]` with B a constant:
/// f32 operands, a body of `addf(out, mulf(a, b))`, the last loop the
/// reduction (k) and B's map `(n, k)` of a parallel and that loop.
bool isConstantWeightMatmul(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      !op.hasPureTensorSemantics() || op.getNumLoops() < 2)
    return false;
  auto iterators = op.getIteratorTypesArray();
  unsigned k = iterators.size() - 1;
  if (iterators[k] != utils::IteratorType::reduction ||
      llvm::count(iterators, utils::IteratorType::reduction) != 1)
    return false;
  AffineMap weightMap = op.getIndexingMapsArray()[1];
  if (weightMap.getNumResults() != 2 || !weightMap.isProjectedPermutation() ||
      weightMap.getDimPosition(1) != k)
    return false;
  for (Value v :
       {op.getDpsInputs()[0], op.getDpsInputs()[1], op.getDpsInits()[0]})
    if (!getElementTypeOrSelf(v.getType()).isF32())
      return false;
  Block &body = op.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto add = yield.getOperand(0).getDefiningOp<arith::AddFOp>();
  auto mul = add ? add.getRhs().getDefiningOp<arith::MulFOp>() : nullptr;
  return body.getOperations().size() == 3 && mul &&
         add.getLhs() == body.getArgument(2) &&
         mul.getLhs() == body.getArgument(0) &&
         mul.getRhs() == body.getArgument(1);
}

struct MoEConvertMatmulWeightsPass
    : moe::impl::MoEConvertMatmulWeightsBase<MoEConvertMatmulWeightsPass> {
  using MoEConvertMatmulWeightsBase::MoEConvertMatmulWeightsBase;

  void runOnOperation() override {
    if (failed(checkElementType(getOperation(), elementType)))
      return signalPassFailure();
    SmallVector<linalg::GenericOp> matmuls;
    getOperation()->walk([&](linalg::GenericOp op) {
      if (!isConstantWeightMatmul(op))
        return;
      auto constant = op.getDpsInputs()[1].getDefiningOp<arith::ConstantOp>();
      auto type = dyn_cast<RankedTensorType>(op.getDpsInputs()[1].getType());
      // A router's logits stay f32: they choose the experts.
      bool feedsRoute = llvm::any_of(op->getUsers(), [](Operation *user) {
        return isa<RouteOp, LayerOp>(user);
      });
      if (constant && type && type.hasStaticShape() && !feedsRoute &&
          constantBytes(cast<ElementsAttr>(constant.getValue())))
        matmuls.push_back(op);
    });
    for (linalg::GenericOp op : matmuls)
      convert(op);
    eraseUnusedConstants(getOperation(), converted.replaced);
  }

  /// Rebuilds `op` on bf16 operands: A rounded elementwise, B the converted
  /// constant, both widened in the body, so that the product and the sum
  /// stay f32 (what vdpbf16ps computes).
  void convert(linalg::GenericOp op) {
    OpBuilder b(op);
    Location loc = op.getLoc();
    Value rounded = roundedOf(op.getDpsInputs()[0]);
    Value weight =
        converted.of(op.getDpsInputs()[1].getDefiningOp<arith::ConstantOp>());
    auto product = linalg::GenericOp::create(
        b, loc, op.getResultTypes(), ValueRange{rounded, weight},
        op.getDpsInits(), op.getIndexingMapsArray(), op.getIteratorTypesArray(),
        [&](OpBuilder &nested, Location l, ValueRange args) {
          Type f32 = nested.getF32Type();
          Value x = arith::ExtFOp::create(nested, l, f32, args[0]);
          Value w = arith::ExtFOp::create(nested, l, f32, args[1]);
          Value sum = arith::AddFOp::create(
              nested, l, args[2], arith::MulFOp::create(nested, l, x, w));
          linalg::YieldOp::create(nested, l, sum);
        });
    op->replaceAllUsesWith(product->getResults());
    op->erase();
  }

  /// `a` rounded to bf16 once, after its definition, for every
  /// contraction reading it (a norm's output feeds the q, k and v
  /// projections).
  Value roundedOf(Value a) {
    Value &rounded = roundedOfSource[a];
    if (!rounded) {
      OpBuilder b(a.getContext());
      b.setInsertionPointAfterValue(a);
      rounded = convertElements(b, a.getLoc(), a, b.getBF16Type());
    }
    return rounded;
  }

  ConvertedConstants converted;
  DenseMap<Value, Value> roundedOfSource;
};

} // namespace
