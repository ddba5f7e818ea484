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

#include "ConstantData.h"
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

using OptionalData = std::optional<ConstantData>;

/// One projection of every expert: its constants as the graph stores them
/// ([out, in], or [in, out] where `inMajor`), none for experts the graph has
/// no branch for.
struct Projection {
  SmallVector<OptionalData> weights, biases;
};

/// Writes `value` ([out, in] after transposing when `inMajor`; a bias is a
/// matrix of one column) into `dst` as rows of `rowBytes`, row r at row
/// `r * interleave + slot`: stacking copies each expert once, straight into
/// its place in the fused layout.
void writeOutMajor(const ConstantData &value, bool inMajor, char *dst,
                   int64_t interleave, int64_t slot) {
  RankedTensorType type = value.type;
  int64_t rows, cols;
  if (type.getRank() == 2) {
    rows = type.getDimSize(inMajor ? 1 : 0);
    cols = type.getDimSize(inMajor ? 0 : 1);
  } else {
    rows = type.getNumElements();
    cols = 1;
  }
  size_t width = value.elementBytes();
  size_t rowBytes = cols * width;
  auto dstRow = [&](int64_t r) {
    return dst + (r * interleave + slot) * rowBytes;
  };
  if (value.splat) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        std::memcpy(dstRow(r) + c * width, value.bytes.data(), width);
    return;
  }
  if (!inMajor) {
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(dstRow(r), value.element(r * cols), rowBytes);
    return;
  }
  // Source [cols, rows]: blocks keep both sides' cache lines in use.
  const char *src = value.bytes.data();
  constexpr int64_t kBlock = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock)
    for (int64_t c0 = 0; c0 < cols; c0 += kBlock)
      for (int64_t r = r0; r < std::min(rows, r0 + kBlock); ++r) {
        char *out = dstRow(r);
        for (int64_t c = c0; c < std::min(cols, c0 + kBlock); ++c)
          std::memcpy(out + c * width, src + (c * rows + r) * width, width);
      }
}

/// A constant op for `attr`.
Value materialize(OpBuilder &builder, Location loc, ElementsAttr attr) {
  if (!attr)
    return Value();
  return arith::ConstantOp::create(builder, loc, cast<TypedAttr>(attr))
      .getResult();
}

/// Rows of `gate` and `up` interleaved, per expert: [E, I, ...] x 2 ->
/// [E, 2I, ...] with gate row i at 2i and up row i at 2i+1. Null stays
/// null. Constants of `gate` and `up` that nothing else uses are erased
/// (their blobs freed when no other constant views them).
Value interleaveRows(OpBuilder &builder, Location loc, Value gate, Value up,
                     ModelFiles &store, StringRef name) {
  if (!gate)
    return Value();
  OptionalData gateData = getConstantData(gate), upData = getConstantData(up);
  RankedTensorType type = gateData->type;
  SmallVector<int64_t> shape(type.getShape());
  shape[1] *= 2;
  auto fusedType = RankedTensorType::get(shape, type.getElementType());
  ConstantBuffer fused(fusedType,
                       gateData->isResource() || upData->isResource() ? &store
                                                                      : nullptr);
  int64_t experts = type.getDimSize(0);
  size_t perExpert = gateData->bytes.size() / (gateData->splat ? 1 : experts);
  auto asMatrix = [&](const ConstantData &data, int64_t e) {
    // Expert e's [I, ...] slice as a 2-D [I, rest] constant view.
    ConstantData slice = data;
    int64_t rest = type.getNumElements() / (experts * type.getDimSize(1));
    slice.type = RankedTensorType::get({type.getDimSize(1), rest},
                                       type.getElementType());
    if (!data.splat)
      slice.bytes = data.bytes.slice(e * perExpert, perExpert);
    return slice;
  };
  size_t fusedPerExpert = fused.bytes().size() / experts;
  for (int64_t e = 0; e < experts; ++e) {
    char *dst = fused.bytes().data() + e * fusedPerExpert;
    writeOutMajor(asMatrix(*gateData, e), /*inMajor=*/false, dst, 2, 0);
    writeOutMajor(asMatrix(*upData, e), /*inMajor=*/false, dst, 2, 1);
  }
  Value result = materialize(builder, loc, fused.take(name));
  for (Value half : {gate, up})
    if (auto constant = half.getDefiningOp<arith::ConstantOp>();
        constant->use_empty())
      eraseConstant(constant);
  return result;
}

/// A stacked [E, a, b] weight as [E, out, in]; a stacked bias [E, 1, out]
/// or [E, out] as [E, out].
ElementsAttr outMajorStacked(const ConstantData &value, bool inMajor,
                             bool bias, ModelFiles &store, StringRef name) {
  int64_t experts = value.type.getDimSize(0);
  if (bias) {
    auto flat = RankedTensorType::get(
        {experts, value.type.getNumElements() / experts},
        value.type.getElementType());
    return reinterpretConstant(value.attr, flat);
  }
  return inMajor ? transposeInnerDims(value, name, store) : value.attr;
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
    OptionalData data = getConstantData(*bias);
    if (!data || data->type.getNumElements() != numExperts)
      return node.fail("the score bias must be a constant of " +
                       Twine(numExperts) + " elements");
    auto flat = RankedTensorType::get({numExperts}, data->type.getElementType());
    scoreBias = materialize(builder, node.loc,
                            reinterpretConstant(data->attr, flat));
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
  auto constantAt = [&](int i) -> FailureOr<OptionalData> {
    FailureOr<Value> v = node.optionalInput(i);
    if (failed(v))
      return failure();
    if (!*v)
      return OptionalData();
    OptionalData data = getConstantData(*v);
    if (!data)
      return node.fail("expert weights must be constants");
    return data;
  };

  // Blobs are named after the node and the layer operand they become.
  auto blobName = [&](int p, bool bias, StringRef kind = "") {
    std::string prefix = node.node.name().empty() ? "moe" : node.node.name();
    return prefix + "." + kind.str() + "fc" + std::to_string(p + 1) +
           (bias ? "_bias" : "");
  };
  // stacked[p][bias]: p = 0 fc1, 1 fc2, 2 fc3, in moe.layer's layout.
  Value stacked[3][2];
  if (isStacked) {
    for (int p = 0; p < 3; ++p)
      for (int bias = 0; bias < 2; ++bias) {
        FailureOr<OptionalData> c = constantAt(2 + 2 * p + bias);
        if (failed(c))
          return failure();
        auto type = *c ? (*c)->type : RankedTensorType();
        if (*c && (type.getRank() != (bias ? 2 : 3) + (bias && type.getRank() == 3) ||
                   type.getDimSize(0) != numExperts))
          return node.fail("stacked expert weights have an unexpected shape");
        stacked[p][bias] = materialize(
            builder, node.loc,
            *c ? outMajorStacked(**c, (*inMajor)[p], bias, node.graph.files(),
                                 blobName(p, bias)) : ElementsAttr());
      }
  }
  // Per expert: collect the constants of each projection.
  Projection projections[3];
  for (int p = 0; p < 3 && !isStacked; ++p) {
    for (int64_t e = 0; e < numExperts; ++e) {
      FailureOr<OptionalData> w = constantAt(2 + 6 * e + 2 * p);
      FailureOr<OptionalData> b = constantAt(3 + 6 * e + 2 * p);
      if (failed(w) || failed(b))
        return failure();
      if (*w && (*w)->type.getRank() != 2)
        return node.fail("expert weights must be 2-D");
      projections[p].weights.push_back(*w);
      projections[p].biases.push_back(*b);
    }
  }
  // The stacked type of a projection: [E, out, in] or, for biases,
  // [E, out], from the first expert that has the projection; null when
  // none has.
  auto stackedType = [&](int p, bool bias) -> FailureOr<RankedTensorType> {
    SmallVector<OptionalData> &items =
        bias ? projections[p].biases : projections[p].weights;
    const ConstantData *first = nullptr;
    bool firstInMajor = false;
    for (auto [e, w] : llvm::enumerate(items))
      if (w) {
        if (!first) {
          first = &*w;
          firstInMajor = (*inMajor)[3 * e + p];
        }
        if (w->type != first->type ||
            bool((*inMajor)[3 * e + p]) != firstInMajor)
          return node.fail("experts' weights differ in shape or type");
      }
    if (!first)
      return RankedTensorType();
    SmallVector<int64_t> shape{numExperts};
    if (bias) {
      shape.push_back(first->type.getDimSize(0));
    } else {
      shape.push_back(first->type.getDimSize(firstInMajor ? 1 : 0));
      shape.push_back(first->type.getDimSize(firstInMajor ? 0 : 1));
    }
    return RankedTensorType::get(shape, first->type.getElementType());
  };
  // Writes every expert's projection p into `buffer` (experts without a
  // branch stay zero, so that they add nothing), its rows interleaved with
  // another projection's as `interleave` and `slot` say.
  auto fill = [&](int p, bool bias, ConstantBuffer &buffer, int64_t interleave,
                  int64_t slot) {
    SmallVector<OptionalData> &items =
        bias ? projections[p].biases : projections[p].weights;
    size_t perExpert = buffer.bytes().size() / numExperts;
    for (auto [e, w] : llvm::enumerate(items))
      if (w) {
        writeOutMajor(*w, !bias && (*inMajor)[3 * e + p],
                      buffer.bytes().data() + e * perExpert, interleave, slot);
        node.graph.files().evict(w->bytes);
      }
  };
  auto anyResource = [&](ArrayRef<int> ps, bool bias) {
    for (int p : ps)
      for (const OptionalData &w :
           bias ? projections[p].biases : projections[p].weights)
        if (w && w->isResource())
          return true;
    return false;
  };
  // A SiLU-gated MLP with separate gate and up projections is stacked
  // straight into ONNX Runtime's interleaved fc1 ([E, 2I, H], gate row i at
  // 2i, up row i at 2i+1), so that one GEMM pass yields each gate value
  // next to its up value.
  std::string activationName =
      node.stringAttr("activation_type").value_or("identity");
  std::optional<Activation> activation = symbolizeActivation(activationName);
  if (!activation)
    return node.fail("unsupported activation '" + activationName + "'");
  std::string fusionName = node.stringAttr("swiglu_fusion").value_or("separate");
  std::optional<SwigluFusion> fusionKind = symbolizeSwigluFusion(fusionName);
  if (!fusionKind)
    return node.fail("unsupported swiglu_fusion '" + fusionName + "'");
  bool interleave =
      *activation == Activation::swiglu && *fusionKind == SwigluFusion::separate;
  for (int p = 0; p < 3 && !isStacked; ++p) {
    if (interleave && p == 2)
      break; // written with the gate
    for (int bias = 0; bias < 2; ++bias) {
      FailureOr<RankedTensorType> type = stackedType(p, bias);
      if (failed(type))
        return failure();
      if (!*type)
        continue;
      bool fused = interleave && p == 0;
      RankedTensorType resultType = *type;
      if (fused) {
        FailureOr<RankedTensorType> upType = stackedType(2, bias);
        if (failed(upType))
          return failure();
        if (!*upType)
          return node.fail(bias ? "gate and up projections differ in having "
                                  "biases"
                                : "a gated MLP needs its up projection");
        if (*upType != *type)
          return node.fail("gate and up projections differ in shape");
        SmallVector<int64_t> shape(type->getShape());
        shape[1] *= 2;
        resultType = RankedTensorType::get(shape, type->getElementType());
      }
      bool resource =
          fused ? anyResource({0, 2}, bias) : anyResource({p}, bias);
      ConstantBuffer buffer(resultType,
                            resource ? &node.graph.files() : nullptr);
      fill(p, bias, buffer, fused ? 2 : 1, 0);
      if (fused)
        fill(2, bias, buffer, 2, 1);
      stacked[p][bias] = materialize(
          builder, node.loc,
          buffer.take(blobName(p, bias)));
    }
    if (interleave && p == 0 && !stacked[0][1] &&
        stackedType(2, true).value_or(RankedTensorType()))
      return node.fail("gate and up projections differ in having biases");
  }
  if (!stacked[0][0] || !stacked[1][0])
    return node.fail("no expert has weights");

  SwigluFusionAttr fusion;
  if (*activation == Activation::swiglu) {
    fusion = SwigluFusionAttr::get(ctx, *fusionKind);
    if (interleave) {
      // Stacked inputs are interleaved here; per-expert ones were above.
      if (isStacked) {
        if (!stacked[2][0])
          return node.fail("a gated MLP needs its up projection");
        if (bool(stacked[0][1]) != bool(stacked[2][1]))
          return node.fail("gate and up projections differ in having biases");
        stacked[0][0] =
            interleaveRows(builder, node.loc, stacked[0][0], stacked[2][0],
                           node.graph.files(), blobName(0, false));
        stacked[0][1] =
            interleaveRows(builder, node.loc, stacked[0][1], stacked[2][1],
                           node.graph.files(), blobName(0, true));
      }
      stacked[2][0] = stacked[2][1] = Value();
      fusion = SwigluFusionAttr::get(ctx, SwigluFusion::interleaved);
    }
  }

  // Shared experts: one, given as 2-D projections like the routed ones.
  Value sharedFc[3], sharedGate;
  if (sharedInMajor) {
    int first = 2 + 6 * groups;
    OptionalData shared[4];
    for (int i = 0; i < 4; ++i) {
      FailureOr<OptionalData> c = constantAt(first + i);
      if (failed(c))
        return failure();
      if (*c && (*c)->type.getRank() != 2)
        return node.fail("shared expert weights must be 2-D");
      shared[i] = *c;
    }
    if (!shared[0] || !shared[1])
      return node.fail("shared expert without fc1/fc2");
    // Separate gate and up projections are fused the way the routed ones
    // are: interleaved (the routed experts' separate projections are
    // interleaved above) or concatenated (gate rows first).
    bool gated = *activation == Activation::swiglu &&
                 (*fusionKind == SwigluFusion::separate || shared[2]);
    bool concatenate = gated && *fusionKind == SwigluFusion::concatenated;
    if (gated && !shared[2])
      return node.fail("shared expert lacks its up projection");
    if (gated && shared[2]->type != shared[0]->type)
      return node.fail("shared gate and up projections differ in shape");
    for (int p = 0; p < 3; ++p) {
      if (!shared[p] || (gated && p == 2))
        continue;
      RankedTensorType type = shared[p]->type;
      bool transposed = (*sharedInMajor)[p];
      bool fused = gated && p == 0;
      // Routed gate/up are interleaved into fc1: the shared ones too.
      SmallVector<int64_t> shape{
          1, type.getDimSize(transposed ? 1 : 0) * (fused ? 2 : 1),
          type.getDimSize(transposed ? 0 : 1)};
      bool resource =
          shared[p]->isResource() || (fused && shared[2]->isResource());
      ConstantBuffer buffer(RankedTensorType::get(shape, type.getElementType()),
                            resource ? &node.graph.files() : nullptr);
      int64_t interleave = fused && !concatenate ? 2 : 1;
      writeOutMajor(*shared[p], transposed, buffer.bytes().data(), interleave,
                    0);
      node.graph.files().evict(shared[p]->bytes);
      if (fused) {
        // The up projection: the odd rows, or the second half.
        char *up = buffer.bytes().data();
        if (concatenate)
          up += buffer.bytes().size() / 2;
        writeOutMajor(*shared[2], (*sharedInMajor)[2], up, interleave,
                      concatenate ? 0 : 1);
        node.graph.files().evict(shared[2]->bytes);
      }
      sharedFc[p] = materialize(builder, node.loc, buffer.take(blobName(p, false, "shared_")));
    }
    if (shared[3]) {
      // [H, 1] or [1, H] -> [H].
      RankedTensorType type = shared[3]->type;
      auto flat = RankedTensorType::get({type.getNumElements()},
                                        type.getElementType());
      sharedGate = materialize(builder, node.loc,
                               reinterpretConstant(shared[3]->attr, flat));
    }
  }
  // The weights are copied into the layer's layout: free the graph's
  // constants now, not at the end of the import, so that the model's
  // weights are held once, not twice (constants still read, or viewed by a
  // reshape, stay).
  for (int i = 2, e = node.numInputs(); i < e; ++i)
    if (!node.node.input(i).empty())
      node.graph.releaseInitializer(node.node.input(i));

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
      builder, node.loc, input->getType(), *input, *logits,
      /*router_weight=*/Value(), stacked[0][0], stacked[0][1], stacked[1][0],
      stacked[1][1], stacked[2][0], stacked[2][1], /*fc1_scales=*/Value(),
      /*fc2_scales=*/Value(),
      /*fc3_scales=*/Value(), /*fc1_zero_points=*/Value(),
      /*fc2_zero_points=*/Value(), /*fc3_zero_points=*/Value(), scoreBias,
      sharedFc[0], sharedFc[1], sharedFc[2], sharedGate, /*constants=*/Value(),
      /*constant_gates=*/Value(),
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
      node.intAttr("scale_input", 0) ? builder.getUnitAttr() : UnitAttr(),
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
