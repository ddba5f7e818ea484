//===- RaisedMoE.cpp - moe_mlir.RaisedMoE nodes into moe.layer --------------===//
//
// Raising.cpp replaces decomposed MoE blocks with moe_mlir.RaisedMoE nodes
// that name each expert's weights as the exporter left them: one constant
// per expert and projection, [in, out] or [out, in]. Here they are stacked
// into moe.layer's out-major layout (fc1 [E, f*I, H], fc2 [E, H, I]), once,
// at import; a SiLU-gated MLP (Mixtral, Qwen) becomes SwiGLU with the gate
// and up projections interleaved into one fc1, as ONNX Runtime's fused
// layout has them.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Verifier.h"

#include <cstring>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::onnx_import;

namespace {

/// One projection of every expert: its constants ([out, in] after
/// transposing), null for experts the graph has no branch for.
struct Projection {
  SmallVector<DenseElementsAttr> weights, biases;
};

/// The contents of a constant as raw bytes (a splat expanded), the last two
/// dimensions swapped first when `inMajor` (a 2-D weight stored [in, out]).
std::vector<char> outMajorBytes(DenseElementsAttr weight, bool inMajor) {
  if (inMajor)
    weight = transposeInnerDims(weight);
  auto type = cast<RankedTensorType>(weight.getType());
  size_t width = type.getElementTypeBitWidth() / 8;
  ArrayRef<char> raw = weight.getRawData();
  if (!weight.isSplat())
    return std::vector<char>(raw.begin(), raw.end());
  std::vector<char> bytes(type.getNumElements() * width);
  for (size_t i = 0; i < bytes.size(); i += width)
    std::memcpy(&bytes[i], raw.data(), width);
  return bytes;
}

/// Rows of `gate` and `up` interleaved, per expert: [E, I, ...] x 2 ->
/// [E, 2I, ...] with gate row i at 2i and up row i at 2i+1. Null stays null.
Value interleaveRows(OpBuilder &builder, Location loc, Value gate, Value up) {
  if (!gate)
    return Value();
  auto gateConst =
      cast<DenseElementsAttr>(gate.getDefiningOp<arith::ConstantOp>().getValue());
  auto upConst =
      cast<DenseElementsAttr>(up.getDefiningOp<arith::ConstantOp>().getValue());
  auto type = cast<RankedTensorType>(gateConst.getType());
  // Rows are contiguous runs of `rowBytes` (a bias "row" is one element).
  int64_t rows = type.getDimSize(0) * type.getDimSize(1);
  size_t rowBytes = gateConst.getRawData().size() / rows;
  SmallVector<int64_t> shape(type.getShape());
  shape[1] *= 2;
  std::vector<char> bytes;
  bytes.reserve(2 * gateConst.getRawData().size());
  for (int64_t r = 0; r < rows; ++r)
    for (DenseElementsAttr half : {gateConst, upConst}) {
      const char *base = half.getRawData().data() + r * rowBytes;
      bytes.insert(bytes.end(), base, base + rowBytes);
    }
  auto fusedType = RankedTensorType::get(shape, type.getElementType());
  return arith::ConstantOp::create(
             builder, loc, fusedType,
             DenseElementsAttr::getFromRawBuffer(fusedType, bytes))
      .getResult();
}

/// A stacked [E, a, b] weight as [E, out, in]; a stacked bias [E, 1, out]
/// or [E, out] as [E, out].
DenseElementsAttr outMajorStacked(DenseElementsAttr value, bool inMajor,
                                  bool bias) {
  auto type = cast<RankedTensorType>(value.getType());
  int64_t experts = type.getDimSize(0);
  if (bias) {
    auto flat = RankedTensorType::get(
        {experts, type.getNumElements() / experts}, type.getElementType());
    return value.reshape(flat);
  }
  return inMajor ? transposeInnerDims(value) : value;
}

} // namespace

LogicalResult mlir::moe::onnx_import::importRaisedMoENode(NodeContext &node) {
  OpBuilder &builder = node.builder();
  MLIRContext *ctx = node.graph.getContext();
  int64_t numExperts = node.intAttr("num_experts", 0);
  bool isStacked = node.intAttr("stacked", 0);
  int64_t groups = isStacked ? 1 : numExperts;
  std::optional<SmallVector<int64_t>> inMajor = node.intsAttr("in_major");
  std::optional<SmallVector<int64_t>> sharedInMajor =
      node.intsAttr("shared_in_major");
  bool hasScoreBias = node.intAttr("has_score_bias", 0);
  if (numExperts <= 0 || !inMajor || int64_t(inMajor->size()) != 3 * groups ||
      (sharedInMajor && sharedInMajor->size() != 4) ||
      node.numInputs() !=
          2 + 6 * groups + (sharedInMajor ? 4 : 0) + (hasScoreBias ? 1 : 0))
    return node.fail("malformed raised MoE node");
  // The router Raising.cpp found by evaluation.
  std::optional<Scoring> scoring =
      symbolizeScoring(node.stringAttr("scoring").value_or("softmax"));
  std::optional<GroupScoring> groupScoring =
      symbolizeGroupScoring(node.stringAttr("group_scoring").value_or("max"));
  if (!scoring || !groupScoring)
    return node.fail("malformed raised MoE node");
  Value scoreBias;
  if (hasScoreBias) {
    FailureOr<Value> bias = node.input(node.numInputs() - 1);
    if (failed(bias))
      return failure();
    auto constant = bias->getDefiningOp<arith::ConstantOp>();
    auto dense = constant ? dyn_cast<DenseElementsAttr>(constant.getValue())
                          : DenseElementsAttr();
    if (!dense || dense.getNumElements() != numExperts)
      return node.fail("the score bias must be a constant of " +
                       Twine(numExperts) + " elements");
    auto flat = RankedTensorType::get({numExperts}, dense.getElementType());
    scoreBias = arith::ConstantOp::create(builder, node.loc, flat,
                                          dense.reshape(flat))
                    .getResult();
  }
  FailureOr<Value> input = node.input(0), logits = node.input(1);
  if (failed(input) || failed(logits))
    return failure();
  // A router on [B, S, H] hidden states scores [B, S, E]; moe.layer takes
  // the logits per token.
  if (auto type = dyn_cast<RankedTensorType>(logits->getType());
      type && type.getRank() == 3)
    logits = tensor::CollapseShapeOp::create(
                 builder, node.loc, *logits,
                 SmallVector<ReassociationIndices>{{0, 1}, {2}})
                 .getResult();
  auto constantAt = [&](int i) -> FailureOr<DenseElementsAttr> {
    FailureOr<Value> v = node.optionalInput(i);
    if (failed(v))
      return failure();
    if (!*v)
      return DenseElementsAttr();
    auto constant = v->getDefiningOp<arith::ConstantOp>();
    auto dense = constant ? dyn_cast<DenseElementsAttr>(constant.getValue())
                          : DenseElementsAttr();
    if (!dense)
      return node.fail("expert weights must be constants");
    return dense;
  };
  auto materialize = [&](DenseElementsAttr attr) -> Value {
    if (!attr)
      return Value();
    return arith::ConstantOp::create(builder, node.loc, attr.getType(), attr)
        .getResult();
  };

  // stacked[p][bias]: p = 0 fc1, 1 fc2, 2 fc3, in moe.layer's layout.
  Value stacked[3][2];
  if (isStacked) {
    for (int p = 0; p < 3; ++p)
      for (int bias = 0; bias < 2; ++bias) {
        FailureOr<DenseElementsAttr> c = constantAt(2 + 2 * p + bias);
        if (failed(c))
          return failure();
        auto type = *c ? cast<RankedTensorType>(c->getType())
                       : RankedTensorType();
        if (*c && (type.getRank() != (bias ? 2 : 3) + (bias && type.getRank() == 3) ||
                   type.getDimSize(0) != numExperts))
          return node.fail("stacked expert weights have an unexpected shape");
        stacked[p][bias] = materialize(
            *c ? outMajorStacked(*c, (*inMajor)[p], bias) : DenseElementsAttr());
      }
  }
  // Per expert: collect the constants of each projection.
  Projection projections[3];
  for (int p = 0; p < 3 && !isStacked; ++p) {
    for (int64_t e = 0; e < numExperts; ++e) {
      FailureOr<DenseElementsAttr> w = constantAt(2 + 6 * e + 2 * p);
      FailureOr<DenseElementsAttr> b = constantAt(3 + 6 * e + 2 * p);
      if (failed(w) || failed(b))
        return failure();
      if (*w && cast<RankedTensorType>(w->getType()).getRank() != 2)
        return node.fail("expert weights must be 2-D");
      projections[p].weights.push_back(*w);
      projections[p].biases.push_back(*b);
    }
  }
  // The [out, in] shape every expert of a projection shares.
  auto stack = [&](int p, bool bias) -> FailureOr<Value> {
    Projection &proj = projections[p];
    SmallVector<DenseElementsAttr> &items = bias ? proj.biases : proj.weights;
    DenseElementsAttr first;
    int64_t firstExpert = 0;
    for (auto [e, w] : llvm::enumerate(items))
      if (w) {
        first = w;
        firstExpert = e;
        break;
      }
    if (!first)
      return Value();
    auto type = cast<RankedTensorType>(first.getType());
    bool firstInMajor = (*inMajor)[3 * firstExpert + p];
    SmallVector<int64_t> shape{numExperts};
    if (bias) {
      shape.push_back(type.getDimSize(0));
    } else {
      shape.push_back(type.getDimSize(firstInMajor ? 1 : 0));
      shape.push_back(type.getDimSize(firstInMajor ? 0 : 1));
    }
    size_t width = type.getElementTypeBitWidth() / 8;
    size_t perExpert = width;
    for (int64_t d : ArrayRef<int64_t>(shape).drop_front())
      perExpert *= d;
    std::vector<char> bytes(perExpert * numExperts, 0);
    for (auto [e, w] : llvm::enumerate(items)) {
      if (!w)
        continue; // no branch: zeros, so the expert adds nothing
      if (w.getType() != first.getType() ||
          bool((*inMajor)[3 * e + p]) != firstInMajor)
        return node.fail("experts' weights differ in shape or type");
      // Biases are 1-D: nothing to transpose.
      std::vector<char> data = outMajorBytes(w, !bias && (*inMajor)[3 * e + p]);
      std::memcpy(&bytes[e * perExpert], data.data(), perExpert);
    }
    auto stackedType = RankedTensorType::get(shape, type.getElementType());
    return arith::ConstantOp::create(
               builder, node.loc, stackedType,
               DenseElementsAttr::getFromRawBuffer(stackedType, bytes))
        .getResult();
  };
  for (int p = 0; p < 3 && !isStacked; ++p)
    for (int bias = 0; bias < 2; ++bias) {
      FailureOr<Value> v = stack(p, bias);
      if (failed(v))
        return failure();
      stacked[p][bias] = *v;
    }
  if (!stacked[0][0] || !stacked[1][0])
    return node.fail("no expert has weights");

  std::string activationName =
      node.stringAttr("activation_type").value_or("identity");
  std::optional<Activation> activation = symbolizeActivation(activationName);
  if (!activation)
    return node.fail("unsupported activation '" + activationName + "'");
  std::string fusionName = node.stringAttr("swiglu_fusion").value_or("separate");
  std::optional<SwigluFusion> fusionKind = symbolizeSwigluFusion(fusionName);
  if (!fusionKind)
    return node.fail("unsupported swiglu_fusion '" + fusionName + "'");
  SwigluFusionAttr fusion;
  if (*activation == Activation::swiglu) {
    fusion = SwigluFusionAttr::get(ctx, *fusionKind);
    // Separate gate and up projections: fc1 = [gate; up] with the
    // interleaved fusion (ONNX Runtime's CPU layout): one GEMM pass yields
    // each gate value next to its up value.
    if (*fusionKind == SwigluFusion::separate) {
      if (!stacked[2][0])
        return node.fail("a gated MLP needs its up projection");
      if (bool(stacked[0][1]) != bool(stacked[2][1]))
        return node.fail("gate and up projections differ in having biases");
      stacked[0][0] = interleaveRows(builder, node.loc, stacked[0][0], stacked[2][0]);
      stacked[0][1] = interleaveRows(builder, node.loc, stacked[0][1], stacked[2][1]);
      stacked[2][0] = stacked[2][1] = Value();
      fusion = SwigluFusionAttr::get(ctx, SwigluFusion::interleaved);
    }
  }

  // Shared experts: one, given as 2-D projections like the routed ones.
  Value sharedFc[3], sharedGate;
  if (sharedInMajor) {
    int first = 2 + 6 * groups;
    DenseElementsAttr shared[4];
    for (int i = 0; i < 4; ++i) {
      FailureOr<DenseElementsAttr> c = constantAt(first + i);
      if (failed(c))
        return failure();
      if (*c && cast<RankedTensorType>(c->getType()).getRank() != 2)
        return node.fail("shared expert weights must be 2-D");
      shared[i] = *c;
    }
    if (!shared[0] || !shared[1])
      return node.fail("shared expert without fc1/fc2");
    for (int p = 0; p < 3; ++p) {
      if (!shared[p])
        continue;
      auto type = cast<RankedTensorType>(shared[p].getType());
      bool transposed = (*sharedInMajor)[p];
      SmallVector<int64_t> shape{1, type.getDimSize(transposed ? 1 : 0),
                                 type.getDimSize(transposed ? 0 : 1)};
      auto stackedType = RankedTensorType::get(shape, type.getElementType());
      sharedFc[p] = arith::ConstantOp::create(
                        builder, node.loc, stackedType,
                        DenseElementsAttr::getFromRawBuffer(
                            stackedType, outMajorBytes(shared[p], transposed)))
                        .getResult();
    }
    // Routed gate/up were interleaved into fc1: the shared ones too.
    if (*activation == Activation::swiglu &&
        *fusionKind == SwigluFusion::separate) {
      if (!sharedFc[2])
        return node.fail("shared expert lacks its up projection");
      sharedFc[0] = interleaveRows(builder, node.loc, sharedFc[0], sharedFc[2]);
      sharedFc[2] = Value();
    }
    if (shared[3]) {
      // [H, 1] or [1, H] -> [H].
      auto type = cast<RankedTensorType>(shared[3].getType());
      auto flat = RankedTensorType::get({type.getNumElements()},
                                        type.getElementType());
      sharedGate = arith::ConstantOp::create(builder, node.loc, flat,
                                             shared[3].reshape(flat))
                       .getResult();
    }
  }

  auto f64 = [&](double v) { return builder.getF64FloatAttr(v); };
  std::optional<double> limit = node.floatAttr("swiglu_limit");
  // Switch-style capacity: rows per expert, per sequence of a [B, S, H]
  // input when the block counted it per sequence.
  int64_t capacity = node.intAttr("expert_capacity", 0);
  bool perSequence = capacity > 0 && node.intAttr("capacity_per_sequence", 0);
  if (perSequence && cast<RankedTensorType>(input->getType()).getRank() != 3)
    return node.fail("a per-sequence expert capacity needs [B, S, H] tokens");
  if (*activation != Activation::swiglu && limit)
    return node.fail("swiglu_limit on a non-SwiGLU MLP");
  auto layer = LayerOp::create(
      builder, node.loc, input->getType(), *input, *logits, stacked[0][0],
      stacked[0][1], stacked[1][0], stacked[1][1], stacked[2][0],
      stacked[2][1], /*fc1_scales=*/Value(), /*fc2_scales=*/Value(),
      /*fc3_scales=*/Value(), /*fc1_zero_points=*/Value(),
      /*fc2_zero_points=*/Value(), /*fc3_zero_points=*/Value(),
      scoreBias, sharedFc[0], sharedFc[1], sharedFc[2],
      sharedGate, /*constants=*/Value(), /*constant_gates=*/Value(),
      builder.getI64IntegerAttr(node.intAttr("k", 1)),
      ScoringAttr::get(ctx, *scoring),
      node.intAttr("normalize_routing_weights", 0) ? builder.getUnitAttr()
                                                   : UnitAttr(),
      builder.getI64IntegerAttr(node.intAttr("num_groups", 1)),
      builder.getI64IntegerAttr(node.intAttr("top_groups", 1)),
      GroupScoringAttr::get(ctx, *groupScoring), FloatAttr(),
      f64(node.floatAttr("routed_scaling").value_or(1.0)),
      ActivationAttr::get(ctx, *activation), fusion,
      f64(node.floatAttr("activation_alpha").value_or(1.0)),
      f64(node.floatAttr("activation_beta").value_or(0.0)),
      limit ? f64(*limit) : FloatAttr(), /*quant=*/nullptr,
      /*capacity_factor=*/FloatAttr(),
      capacity > 0 ? builder.getI64IntegerAttr(capacity) : IntegerAttr(),
      perSequence ? builder.getUnitAttr() : UnitAttr(),
      capacity > 0 && node.intAttr("dropped_pass_through", 0)
          ? builder.getUnitAttr()
          : UnitAttr(),
      ArrayAttr(), /*expert_parallel=*/ExpertParallelAttr());
  if (failed(verify(layer)))
    return failure();
  Value result = layer.getResult();
  // The block wrote its output per token ([T, H]) from [B, S, H] tokens.
  if (node.intAttr("flatten_output", 0) &&
      cast<RankedTensorType>(result.getType()).getRank() == 3)
    result = tensor::CollapseShapeOp::create(
        builder, node.loc, result,
        SmallVector<ReassociationIndices>{{0, 1}, {2}});
  node.setOutput(0, result);
  return success();
}
