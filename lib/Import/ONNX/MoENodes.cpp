//===- MoENodes.cpp - com.microsoft.MoE and QMoE into moe.layer -------------===//
//
// ONNX Runtime's fused MoE contrib ops map onto moe.layer almost attribute
// for attribute; the differences (legacy weight layout, attribute defaults)
// are settled here, at import.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Verifier.h"

#include <cstring>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::onnx_import;

namespace {

/// Swaps the last two dimensions of a rank-3 constant; fails for values
/// that are not constants.
FailureOr<Value> transposeLastTwo(Value value) {
  auto constant = value.getDefiningOp<arith::ConstantOp>();
  auto dense = constant ? dyn_cast<DenseElementsAttr>(constant.getValue())
                        : DenseElementsAttr();
  auto type = dense ? dyn_cast<RankedTensorType>(dense.getType())
                    : RankedTensorType();
  if (!type || type.getRank() != 3)
    return failure();
  int64_t e = type.getDimSize(0), r = type.getDimSize(1),
          c = type.getDimSize(2);
  size_t width = type.getElementTypeBitWidth() / 8;
  ArrayRef<char> src = dense.getRawData();
  if (dense.isSplat() || src.size() != size_t(e * r * c) * width)
    return failure();
  std::vector<char> dst(src.size());
  for (int64_t x = 0; x < e; ++x)
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j)
        std::memcpy(&dst[((x * c + j) * r + i) * width],
                    &src[((x * r + i) * c + j) * width], width);
  auto transposedType =
      RankedTensorType::get({e, c, r}, type.getElementType());
  OpBuilder b(constant);
  return arith::ConstantOp::create(
             b, constant.getLoc(), transposedType,
             DenseElementsAttr::getFromRawBuffer(transposedType, dst))
      .getResult();
}

} // namespace

LogicalResult mlir::moe::onnx_import::importMoENode(NodeContext &node) {
  auto fail = [&](const Twine &message) { return node.fail(message); };
  Location loc = node.loc;
  OpBuilder &builder = node.builder();
  // Positional inputs of ONNX Runtime >= 1.23; empty names are absent.
  if (node.numInputs() > 8)
    return fail("more than 8 inputs");
  SmallVector<Value, 8> in(8);
  for (int i = 0; i < 8; ++i) {
    FailureOr<Value> value = node.optionalInput(i);
    if (failed(value))
      return failure();
    in[i] = *value;
  }
  if (!in[0] || !in[1] || !in[2] || !in[4])
    return fail("needs input, router_probs, fc1_experts_weights and "
                "fc2_experts_weights");

  auto intAttr = [&](StringRef name, int64_t def) {
    return node.intAttr(name, def);
  };
  auto floatAttr = [&](StringRef name) { return node.floatAttr(name); };
  if (failed(node.checkAttributes(
          {"activation_type", "k", "normalize_routing_weights",
           "use_sparse_mixer", "swiglu_fusion", "swiglu_limit",
           "activation_alpha", "activation_beta"})))
    return failure();
  if (intAttr("use_sparse_mixer", 0) != 0)
    return fail("use_sparse_mixer = 1 is not supported yet");

  std::string activationName =
      node.stringAttr("activation_type").value_or("relu");
  std::optional<Activation> activation = symbolizeActivation(activationName);
  if (!activation)
    return fail("unsupported activation_type '" + activationName + "'");
  int64_t fusion = intAttr("swiglu_fusion", 0);
  if (fusion < 0 || fusion > 2)
    return fail("swiglu_fusion must be 0, 1 or 2, got " +
                std::to_string(fusion));

  // ONNX Runtime before 1.23 stored weights in-major (fc1 [E, H, f*I],
  // fc2 [E, I, H]); moe_helper.h recognises that layout by fc2's middle
  // dimension being I != H. The dialect has one layout, so constant weights
  // are transposed here, once.
  auto fc2Type = dyn_cast<RankedTensorType>(in[4].getType());
  auto inputType = dyn_cast<RankedTensorType>(in[0].getType());
  if (!fc2Type || !inputType || fc2Type.getRank() != 3 ||
      inputType.getRank() < 1)
    return fail("fc2_experts_weights must be a rank-3 tensor");
  int64_t hidden = inputType.getShape().back();
  if (fc2Type.getDimSize(2) != hidden && fc2Type.getDimSize(1) == hidden) {
    // Current layout fc2 [E, H, I]: nothing to do.
  } else if (fc2Type.getDimSize(2) == hidden &&
             fc2Type.getDimSize(1) != hidden) {
    for (int i : {2, 4, 6}) {
      if (!in[i])
        continue;
      FailureOr<Value> transposed = transposeLastTwo(in[i]);
      if (failed(transposed))
        return fail("weights in the legacy (pre-1.23) layout [E, in, out] "
                    "must be initializers to be transposed at import");
      in[i] = *transposed;
    }
  }

  MLIRContext *ctx = node.graph.getContext();
  auto f64 = [&](double v) { return builder.getF64FloatAttr(v); };
  std::optional<double> limit = floatAttr("swiglu_limit");
  auto layer = LayerOp::create(
      builder, loc, inputType, in[0], in[1], in[2], in[3], in[4], in[5], in[6],
      in[7], Value(), Value(), Value(), Value(), Value(), Value(), Value(),
      builder.getI64IntegerAttr(intAttr("k", 1)),
      ScoringAttr::get(ctx, Scoring::softmax),
      intAttr("normalize_routing_weights", 0) ? builder.getUnitAttr()
                                              : UnitAttr(),
      builder.getI64IntegerAttr(1), builder.getI64IntegerAttr(1),
      GroupScoringAttr::get(ctx, GroupScoring::max), FloatAttr(), f64(1.0),
      ActivationAttr::get(ctx, *activation),
      // swiglu_fusion only means something for swiglu; elsewhere the
      // dialect's default keeps the IR free of a meaningless attribute.
      *activation == Activation::swiglu
          ? SwigluFusionAttr::get(ctx, static_cast<SwigluFusion>(fusion))
          : SwigluFusionAttr(),
      f64(floatAttr("activation_alpha").value_or(1.0)),
      f64(floatAttr("activation_beta").value_or(0.0)),
      *activation == Activation::swiglu && limit ? f64(*limit) : FloatAttr(),
      FloatAttr(), ArrayAttr());
  if (failed(verify(layer)))
    return failure();
  if (node.node.output_size() != 1 || node.node.output(0).empty())
    return fail("expects exactly one output");
  node.setOutput(0, layer.getResult());
  return success();
}

