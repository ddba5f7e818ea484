//===- PackExpertWeights.cpp - panel-major expert weights at compile time -===//
//
// The CPU's outer-product GEMM kernel reads a weight panel as a [K, 64]
// matrix, four 16-lane vectors per step of k. Out-major weights ([N, K]
// rows) have to be transposed into that layout, and at run time that
// happens once per call for every panel, reading and rewriting every weight
// byte. Constant weights can be stored that way once, here: an AOT compile
// sees them. The expert's `panel_width` says how to read them. bf16
// weights go in pairs of k, the operand layout of AVX512-BF16's vdpbf16ps,
// which the runtime packing forms the same way. Quantised weights of the
// int8 kernels go in 4-byte words, the operand of AVX512-VNNI's vpdpbusd,
// which their panel kernel otherwise forms per call by 16 x 16 word
// transposes.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "moe-mlir/Transforms/ConstantData.h"
#include "moe-mlir/Transforms/ExpertKernels.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPACKEXPERTWEIGHTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Whether the CPU lowering reads quantised `expert`'s weights with the int8
/// panel kernel, which alone reads them panel-major: int8 layouts for all
/// its projections (getExpertInt8Layouts) and schedule panels of whole
/// weight panels of a multiple of 16 columns (a vpdpbusd's lanes), as the
/// lowering checks.
bool int8KernelReadsPanels(ExpertOp expert, int64_t panelWidth) {
  QuantAttr quant = expert.getQuantAttr();
  auto fc2Type = expert.getFc2().getType();
  int64_t hidden = fc2Type.getDimSize(1);
  if (panelWidth % 16 || ShapedType::isDynamic(hidden) ||
      fc2Type.isDynamicDim(2))
    return false;
  int64_t inter = fc2Type.getDimSize(2) * quant.getPackFactor();
  ExpertInt8Layouts layouts = getExpertInt8Layouts(expert, hidden, inter);
  bool gatedPair =
      expert.getActivation() == Activation::swiglu || expert.getFc3();
  return layouts.fc1 && layouts.fc2 &&
         expertColumnsFitPanels(
             inter, panelWidth,
             quantizedBytesPerColumn(quant, hidden, gatedPair)) &&
         expertColumnsFitPanels(hidden, panelWidth,
                                quantizedBytesPerColumn(quant, inter, false));
}

struct MoEPackExpertWeightsPass
    : moe::impl::MoEPackExpertWeightsBase<MoEPackExpertWeightsPass> {
  using MoEPackExpertWeightsBase::MoEPackExpertWeightsBase;

  void runOnOperation() override {
    if (panelWidth < 1) {
      getOperation()->emitError() << "panel-width must be at least 1, got "
                                  << static_cast<int64_t>(panelWidth);
      return signalPassFailure();
    }
    MLIRContext *ctx = &getContext();
    // A constant shared by several experts is packed once.
    DenseMap<Value, Value> packedOf;
    SmallVector<arith::ConstantOp> replaced;
    getOperation()->walk([&](ExpertOp expert) {
      if (expert.getPanelWidth())
        return;
      bool quantized = static_cast<bool>(expert.getQuantAttr());
      if (quantized &&
          (!packQuantized || !int8KernelReadsPanels(expert, panelWidth)))
        return;
      auto fc2Type = expert.getFc2().getType();
      if (!quantized &&
          (!expertColumnsFitPanels(fc2Type.getDimSize(1), panelWidth) ||
           !expertColumnsFitPanels(fc2Type.getDimSize(2), panelWidth)))
        return;
      SmallVector<OpOperand *> weights = {&expert.getFc1Mutable(),
                                          &expert.getFc2Mutable()};
      if (expert.getFc3())
        weights.push_back(&expert.getFc3Mutable()[0]);
      // Block-wise scales go panel-major with their weights, one scale of
      // a block to a panel row.
      SmallVector<OpOperand *> scales;
      if (quantized && expert.getQuantAttr().getBlockSize() != 0) {
        scales = {&expert.getFc1ScalesMutable()[0],
                  &expert.getFc2ScalesMutable()[0]};
        if (expert.getFc3Scales())
          scales.push_back(&expert.getFc3ScalesMutable()[0]);
      }
      // f32 weights; bf16 ones (pairs of k for vdpbf16ps) with bf16 rows,
      // which the bf16 kernel multiplies them by, and an even K; f16 ones
      // with f32 rows (a half-precision model's: the kernel widens the
      // panels as it loads them); quantised bytes, whose rows are whole
      // 64-byte steps.
      Type element = getElementTypeOrSelf(expert.getFc2().getType());
      Type rowElement = getElementTypeOrSelf(expert.getRows().getType());
      bool bf16 = packBf16 && element.isBF16() && rowElement.isBF16();
      bool f16 = element.isF16() && rowElement.isF32();
      if (!element.isF32() && !bf16 && !f16 &&
          !(quantized && element.isInteger(8)))
        return;
      // Each operand to pack, its constant, bytes and steps of k.
      struct Packing {
        OpOperand *operand;
        arith::ConstantOp constant;
        ArrayRef<char> bytes;
        int64_t steps;
      };
      SmallVector<Packing> packings;
      auto collect = [&](OpOperand *operand, int64_t steps) {
        auto constant = operand->get().getDefiningOp<arith::ConstantOp>();
        auto type = dyn_cast<RankedTensorType>(operand->get().getType());
        if (!constant || !type || !type.hasStaticShape() ||
            type.getRank() != 3 || type.getDimSize(2) % steps ||
            !llvm::is_contained({8u, 16u, 32u, 64u},
                                type.getElementType().getIntOrFloatBitWidth()))
          return false;
        auto attr = dyn_cast<ElementsAttr>(constant.getValue());
        std::optional<ArrayRef<char>> bytes =
            attr ? constantBytes(attr) : std::nullopt;
        if (!bytes)
          return false;
        packings.push_back({operand, constant, *bytes, steps});
        return true;
      };
      for (OpOperand *weight : weights)
        if (getElementTypeOrSelf(weight->get().getType()) != element ||
            !collect(weight, panelStepsOfK(element)))
          return;
      for (OpOperand *scale : scales)
        if (!collect(scale, 1))
          return;
      for (Packing &packing : packings) {
        Value &packed = packedOf[packing.operand->get()];
        if (!packed) {
          OpBuilder b(packing.constant);
          b.setInsertionPointAfter(packing.constant);
          packed = arith::ConstantOp::create(
              b, packing.constant.getLoc(),
              cast<TypedAttr>(packWeightPanels(
                  ctx, cast<ElementsAttr>(packing.constant.getValue()),
                  packing.bytes, panelWidth, packing.steps)));
          replaced.push_back(packing.constant);
        }
        packing.operand->set(packed);
      }
      expert.setPanelWidth(panelWidth);
    });
    eraseUnusedConstants(getOperation(), replaced);
  }
};

} // namespace
