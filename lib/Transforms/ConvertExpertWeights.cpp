//===- ConvertExpertWeights.cpp - bf16 expert weights for f32 models ------===//
//
// Models exported from PyTorch come in f32, and their expert weights are
// most of a MoE layer's bytes and multiply-adds. Stored as bf16 they take
// half the memory and bandwidth, and with AVX512-BF16 (or tensor cores)
// the GEMMs multiply bf16 by bf16 at twice f32's rate. That changes the
// results by bf16's rounding, so it is the user's choice, made at compile
// time on the constants an AOT compile sees; the layers' routing stays
// f32.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Threading.h"
#include "moe-mlir/Transforms/ConstantData.h"

#include <cstring>

namespace mlir::moe {
#define GEN_PASS_DEF_MOECONVERTEXPERTWEIGHTS
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

struct MoEConvertExpertWeightsPass
    : moe::impl::MoEConvertExpertWeightsBase<MoEConvertExpertWeightsPass> {
  using MoEConvertExpertWeightsBase::MoEConvertExpertWeightsBase;

  void runOnOperation() override {
    if (elementType != "bf16") {
      getOperation()->emitError()
          << "element-type must be 'bf16', got '" << elementType << "'";
      return signalPassFailure();
    }
    SmallVector<arith::ConstantOp> replaced;
    getOperation()->walk([&](LayerOp layer) {
      if (layer.getQuantAttr())
        return;
      convert({&layer.getFc1Mutable(), optional(layer.getFc1BiasMutable()),
               &layer.getFc2Mutable(), optional(layer.getFc2BiasMutable()),
               optional(layer.getFc3Mutable()),
               optional(layer.getFc3BiasMutable())},
              replaced);
      convert({optional(layer.getSharedFc1Mutable()),
               optional(layer.getSharedFc2Mutable()),
               optional(layer.getSharedFc3Mutable())},
              replaced);
    });
    eraseUnusedConstants(getOperation(), replaced);
  }

  static OpOperand *optional(MutableOperandRange range) {
    return range.empty() ? nullptr : &range[0];
  }

  /// Converts one expert group's weights (and biases, which share their
  /// element type), all or none: every one given must be an f32 constant
  /// with its elements at hand. A constant several operands share is
  /// converted once.
  void convert(ArrayRef<OpOperand *> operands,
               SmallVectorImpl<arith::ConstantOp> &replaced) {
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
    for (auto [operand, constant] : weights) {
      Value &converted = convertedOf[constant.getResult()];
      if (!converted) {
        OpBuilder b(constant);
        b.setInsertionPointAfter(constant);
        auto attr = cast<ElementsAttr>(constant.getValue());
        converted = arith::ConstantOp::create(
            b, constant.getLoc(),
            cast<TypedAttr>(
                convertToBF16(&getContext(), attr, *constantBytes(attr))));
        replaced.push_back(constant);
      }
      operand->set(converted);
    }
  }

  DenseMap<Value, Value> convertedOf;
};

} // namespace
