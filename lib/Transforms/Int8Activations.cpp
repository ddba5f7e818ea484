//===- Int8Activations.cpp - mark experts for the int8 decode kernel ------===//
//
// The choice of the int8-activation decode kernel changes a layer's numbers,
// so it is made by a pass of its own, visibly in the IR, and the lowering
// of moe.expert follows the mark.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "moe-mlir/Transforms/ExpertKernels.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEINT8ACTIVATIONS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Whether the int8 decode kernel runs at least one of the expert's
/// projections (fc1 and fc3 of depth H, fc2 of depth I).
bool runsInt8Kernel(ExpertOp expert) {
  QuantAttr quant = expert.getQuantAttr();
  if (!quant)
    return false;
  auto fc2Type = expert.getFc2().getType();
  int64_t hidden = fc2Type.getDimSize(1);
  int64_t inter = fc2Type.getDimSize(2);
  if (ShapedType::isDynamic(hidden) || ShapedType::isDynamic(inter))
    return false;
  inter *= quant.getPackFactor();
  return getInt8Layout(quant, bool(expert.getFc1ZeroPoints()), hidden) ||
         getInt8Layout(quant, bool(expert.getFc2ZeroPoints()), inter);
}

struct MoEInt8ActivationsPass
    : moe::impl::MoEInt8ActivationsBase<MoEInt8ActivationsPass> {
  void runOnOperation() override {
    getOperation()->walk([](ExpertOp expert) {
      if (runsInt8Kernel(expert))
        expert->setAttr(kInt8ActivationsAttrName,
                        UnitAttr::get(expert.getContext()));
    });
  }
};

} // namespace
