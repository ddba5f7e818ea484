//===- MoENodes.cpp - com.microsoft.MoE and QMoE into moe.layer -------------===//
//
// ONNX Runtime's fused MoE contrib ops map onto moe.layer almost attribute
// for attribute; the differences (legacy weight layout, attribute defaults)
// are settled here, at import.
//
//===----------------------------------------------------------------------===//

#include "ConstantData.h"
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
FailureOr<Value> transposeLastTwo(Value value, ModelFiles &store,
                                  StringRef name) {
  std::optional<ConstantData> data = getConstantData(value);
  if (!data || data->type.getRank() != 3)
    return failure();
  ElementsAttr transposed = transposeInnerDims(*data, name.str() + ".transposed", store);
  OpBuilder b(value.getDefiningOp());
  return arith::ConstantOp::create(b, value.getLoc(),
                                   cast<TypedAttr>(transposed))
      .getResult();
}

/// The attributes com.microsoft.MoE and QMoE share, as moe.layer spells
/// them.
struct SharedAttributes {
  int64_t k;
  bool normalize;
  Activation activation;
  SwigluFusion fusion;
  double alpha, beta;
  std::optional<double> limit;
  /// use_sparse_mixer: SparseMixer top-2 routing (Phi-3.5-MoE).
  bool sparseMixer;
};

FailureOr<SharedAttributes> readSharedAttributes(NodeContext &node) {
  int64_t sparseMixer = node.intAttr("use_sparse_mixer", 0);
  if (sparseMixer != 0 && sparseMixer != 1)
    return node.fail("use_sparse_mixer must be 0 or 1, got " +
                     std::to_string(sparseMixer));
  if (sparseMixer && node.intAttr("k", 1) != 2)
    return node.fail("use_sparse_mixer = 1 needs k = 2, got k = " +
                     std::to_string(node.intAttr("k", 1)));
  std::string activationName =
      node.stringAttr("activation_type").value_or("relu");
  std::optional<Activation> activation = symbolizeActivation(activationName);
  if (!activation)
    return node.fail("unsupported activation_type '" + activationName + "'");
  int64_t fusion = node.intAttr("swiglu_fusion", 0);
  if (fusion < 0 || fusion > 2)
    return node.fail("swiglu_fusion must be 0, 1 or 2, got " +
                     std::to_string(fusion));
  return SharedAttributes{node.intAttr("k", 1),
                          node.intAttr("normalize_routing_weights", 0) != 0,
                          *activation,
                          static_cast<SwigluFusion>(fusion),
                          node.floatAttr("activation_alpha").value_or(1.0),
                          node.floatAttr("activation_beta").value_or(0.0),
                          node.floatAttr("swiglu_limit"),
                          sparseMixer != 0};
}

/// Projection weights with their quantisation operands (all null for float
/// weights) in moe.layer's operand order.
struct LayerWeights {
  Value fc1, fc1Bias, fc2, fc2Bias, fc3, fc3Bias;
  Value scales[3] = {}, zeroPoints[3] = {};
};

/// Builds and verifies the moe.layer and defines the node's output.
LogicalResult buildLayer(NodeContext &node, Value input, Value logits,
                         const LayerWeights &w, const SharedAttributes &attrs,
                         Scoring scoring, bool normalize, QuantAttr quant) {
  OpBuilder &builder = node.builder();
  MLIRContext *ctx = node.graph.getContext();
  auto f64 = [&](double v) { return builder.getF64FloatAttr(v); };
  bool swiglu = attrs.activation == Activation::swiglu;
  auto layer = LayerOp::create(
      builder, node.loc, input.getType(), input, logits,
      /*router_weight=*/Value(), w.fc1, w.fc1Bias, w.fc2, w.fc2Bias, w.fc3,
      w.fc3Bias, w.scales[0], w.scales[1], w.scales[2], w.zeroPoints[0],
      w.zeroPoints[1], w.zeroPoints[2],
      /*score_bias=*/Value(), /*shared_fc1=*/Value(), /*shared_fc2=*/Value(),
      /*shared_fc3=*/Value(), /*shared_gate=*/Value(), /*constants=*/Value(),
      /*constant_gates=*/Value(), builder.getI64IntegerAttr(attrs.k),
      ScoringAttr::get(ctx, scoring),
      normalize ? builder.getUnitAttr() : UnitAttr(),
      builder.getI64IntegerAttr(1), builder.getI64IntegerAttr(1),
      GroupScoringAttr::get(ctx, GroupScoring::max), FloatAttr(), f64(1.0),
      ActivationAttr::get(ctx, attrs.activation),
      // swiglu_fusion only means something for swiglu; elsewhere the
      // dialect's default keeps the IR free of a meaningless attribute.
      swiglu ? SwigluFusionAttr::get(ctx, attrs.fusion) : SwigluFusionAttr(),
      f64(attrs.alpha), f64(attrs.beta),
      swiglu && attrs.limit ? f64(*attrs.limit) : FloatAttr(), quant,
      /*capacity_factor=*/FloatAttr(), /*expert_capacity=*/IntegerAttr(),
      /*capacity_per_sequence=*/UnitAttr(), /*dropped_pass_through=*/UnitAttr(),
      /*scale_input=*/UnitAttr(), ArrayAttr(),
      /*expert_parallel=*/ExpertParallelAttr());
  if (failed(verify(layer)))
    return failure();
  if (node.node.output_size() != 1 || node.node.output(0).empty())
    return node.fail("expects exactly one output");
  node.setOutput(0, layer.getResult());
  return success();
}

} // namespace

LogicalResult mlir::moe::onnx_import::importMoENode(NodeContext &node) {
  auto fail = [&](const Twine &message) { return node.fail(message); };
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

  if (failed(node.checkAttributes(
          {"activation_type", "k", "normalize_routing_weights",
           "use_sparse_mixer", "swiglu_fusion", "swiglu_limit",
           "activation_alpha", "activation_beta"})))
    return failure();
  FailureOr<SharedAttributes> attrs = readSharedAttributes(node);
  if (failed(attrs))
    return failure();

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
      FailureOr<Value> transposed = transposeLastTwo(
          in[i], node.graph.files(), node.node.input(i));
      if (failed(transposed))
        return fail("weights in the legacy (pre-1.23) layout [E, in, out] "
                    "must be initializers to be transposed at import");
      in[i] = *transposed;
    }
  }

  // CPU MoE semantics: softmax over all experts, then top-k, renormalised
  // when normalize_routing_weights is set.
  LayerWeights weights{in[2], in[3], in[4], in[5], in[6], in[7]};
  // With use_sparse_mixer, SparseMixer routing as ONNX Runtime's CUDA
  // kernel computes it (its weights are not renormalised); ONNX Runtime
  // 1.30's CPU kernel ignores the attribute.
  if (attrs->sparseMixer)
    return buildLayer(node, in[0], in[1], weights, *attrs,
                      Scoring::sparse_mixer, /*normalize=*/false, QuantAttr());
  return buildLayer(node, in[0], in[1], weights, *attrs, Scoring::softmax,
                    attrs->normalize, QuantAttr());
}

LogicalResult mlir::moe::onnx_import::importQMoENode(NodeContext &node) {
  auto fail = [&](const Twine &message) { return node.fail(message); };
  // Positional inputs (ONNX Runtime 1.30): input, router_probs, then
  // (weights, scales, bias) for fc1, fc2 and fc3, then zero points for fc1,
  // fc2 and fc3. 14 is router_weights (DeepSeek-style routing on one tensor,
  // weighting by another), 15 on are FP4/FP8 global and activation scales.
  for (int i = 14; i < node.numInputs(); ++i)
    if (!node.node.input(i).empty())
      return fail(i == 14 ? std::string("input 14 (router_weights) is not "
                                        "supported yet")
                          : "input " + std::to_string(i) +
                                " (FP4/FP8 scales) is not supported");
  SmallVector<Value, 14> in(14);
  for (int i = 0; i < 14; ++i) {
    FailureOr<Value> value = node.optionalInput(i);
    if (failed(value))
      return failure();
    in[i] = *value;
  }
  if (!in[0] || !in[1] || !in[2] || !in[5])
    return fail("needs input, router_probs, fc1_experts_weights and "
                "fc2_experts_weights");

  if (failed(node.checkAttributes(
          {"activation_type", "k", "normalize_routing_weights",
           "use_sparse_mixer", "swiglu_fusion", "swiglu_limit",
           "activation_alpha", "activation_beta", "expert_weight_bits",
           "block_size", "quant_type", "weights_prepacked"})))
    return failure();
  FailureOr<SharedAttributes> attrs = readSharedAttributes(node);
  if (failed(attrs))
    return failure();
  std::string quantType = node.stringAttr("quant_type").value_or("int");
  if (quantType != "int")
    return fail("quant_type '" + quantType +
                "' is not supported (only 'int' weights)");
  // -1 (automatic) and 0 both mean the raw layout on the CPU; 1 is the
  // CUDA kernels' prepacked layout, which the dequantising kernel does not
  // read.
  int64_t prepacked = node.intAttr("weights_prepacked", -1);
  if (prepacked != -1 && prepacked != 0)
    return fail("weights_prepacked = " + std::to_string(prepacked) +
                " (a prepacked weight layout) is not supported; give the "
                "raw packed weights (0 or -1)");
  int64_t bits = node.intAttr("expert_weight_bits", 4);
  if (bits != 4 && bits != 8)
    return fail("expert_weight_bits = " + std::to_string(bits) +
                " is not supported (4 or 8)");
  int64_t blockSize = node.intAttr("block_size", 0);
  if (blockSize != 0 && (blockSize < 16 || (blockSize & (blockSize - 1))))
    return fail("block_size must be a power of two >= 16, got " +
                std::to_string(blockSize));
  for (int i : {2, 5})
    if (!in[i + 1])
      return fail(Twine(i == 2 ? "fc1" : "fc2") +
                  "_scales is required for quantised weights");
  if (in[8] && !in[9])
    return fail("fc3_scales is required for quantised weights");

  // ONNX Runtime 1.30's CPU kernel reads 4-bit block-wise zero points as
  // row-packed ([E, ceil(N/2)], like per-row ones) when a row has a single
  // block; the dialect keeps the documented [E, N, 1] layout, so say where
  // the two part ways.
  if (bits == 4 && blockSize != 0) {
    const char *names[] = {"fc1", "fc2", "fc3"};
    for (int i = 0; i < 3; ++i) {
      Value weights = in[2 + 3 * i], zeroPoints = in[11 + i];
      auto type = weights ? dyn_cast<RankedTensorType>(weights.getType())
                          : RankedTensorType();
      if (!zeroPoints || !type || type.getRank() != 3 || type.isDynamicDim(2) ||
          2 * type.getDimSize(2) > blockSize)
        continue;
      std::string name =
          node.node.name().empty() ? node.node.op_type() : node.node.name();
      emitWarning(node.loc)
          << "node '" << name << "' (" << node.opName() << "): " << names[i]
          << " rows hold a single block (K = " << 2 * type.getDimSize(2)
          << " <= block_size " << blockSize
          << "); ONNX Runtime 1.30's CPU kernel then reads the 4-bit "
          << names[i]
          << "_zero_points as row-packed [E, ceil(N/2)], moe-mlir as the "
             "documented [E, N, 1], so the results will differ from it";
    }
  }

  // ONNX Runtime's CPU QMoE always routes by top-k on the raw logits and a
  // softmax over the k chosen, whatever normalize_routing_weights says (the
  // softmax over k is normalised already).
  LayerWeights weights{in[2], in[4], in[5], in[7], in[8], in[10],
                       {in[3], in[6], in[9]}, {in[11], in[12], in[13]}};
  return buildLayer(node, in[0], in[1], weights, *attrs,
                    attrs->sparseMixer ? Scoring::sparse_mixer
                                       : Scoring::softmax_topk,
                    /*normalize=*/false,
                    QuantAttr::get(node.graph.getContext(), bits, blockSize));
}
