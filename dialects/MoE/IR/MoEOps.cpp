//===- MoEOps.cpp - moe dialect verifiers -----------------------------------===//
//
// Shapes are checked wherever both sides are static; dynamic dimensions (the
// token count above all) are accepted and left to the runtime.
//
//===----------------------------------------------------------------------===//

#include "MoE/IR/MoEOps.h"

#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/MathExtras.h"

#include <array>
#include <type_traits>

#include <cmath>

using namespace mlir;
using namespace mlir::moe;

int64_t mlir::moe::panelStepsOfK(Type elementType) {
  if (elementType.isBF16())
    return 2;
  return elementType.isInteger() ? 4 : 1;
}

namespace {

/// Checks operands and results against one another, naming them in
/// diagnostics the way the op's assembly format does.
class ShapeChecker {
public:
  explicit ShapeChecker(Operation *op) : op(op) {}

  /// Returns the shape of `value`, which must be a tensor of rank `rank`.
  FailureOr<ArrayRef<int64_t>> shape(Value value, StringRef name,
                                     int64_t rank) {
    auto type = cast<RankedTensorType>(value.getType());
    if (type.getRank() != rank)
      return op->emitOpError() << "'" << name << "' must have rank " << rank
                               << ", got " << type;
    return type.getShape();
  }

  /// Checks that dimension `dim` of `name` equals `expected` (described by
  /// `what`) unless either is dynamic.
  LogicalResult dim(StringRef name, ArrayRef<int64_t> shape, unsigned dim,
                    int64_t expected, const Twine &what) {
    int64_t actual = shape[dim];
    if (ShapedType::isDynamic(actual) || ShapedType::isDynamic(expected) ||
        actual == expected)
      return success();
    return op->emitOpError() << "'" << name << "' dimension " << dim << " is "
                             << actual << " but must be " << expected << " ("
                             << what << ")";
  }

  /// Checks a whole shape against `expected` (described by `what`).
  LogicalResult same(StringRef name, ArrayRef<int64_t> shape,
                     ArrayRef<int64_t> expected, const Twine &what) {
    if (shape.size() != expected.size())
      return op->emitOpError() << "'" << name << "' must have rank "
                               << expected.size() << " (" << what
                               << "), got rank " << shape.size();
    for (auto [i, d] : llvm::enumerate(expected))
      if (failed(dim(name, shape, i, d, what)))
        return failure();
    return success();
  }

  Operation *op;
};

/// Product of two dimensions, dynamic if either is.
int64_t mulDims(int64_t a, int64_t b) {
  if (ShapedType::isDynamic(a) || ShapedType::isDynamic(b))
    return ShapedType::kDynamic;
  return a * b;
}

int64_t addDims(int64_t a, int64_t b) {
  if (ShapedType::isDynamic(a) || ShapedType::isDynamic(b))
    return ShapedType::kDynamic;
  return a + b;
}

std::optional<double> toDouble(std::optional<APFloat> value) {
  if (!value)
    return std::nullopt;
  return value->convertToDouble();
}

/// Routing attributes as moe.route and moe.layer both carry them.
struct RoutingConfig {
  Scoring scoring;
  int64_t k;
  int64_t numGroups;
  int64_t topGroups;
  GroupScoring groupScoring;
  std::optional<double> topP;
  double scaling;
};

/// Verifies the routing attributes against `numExperts` routable experts
/// (dynamic when unknown).
LogicalResult verifyRouting(Operation *op, const RoutingConfig &cfg,
                            int64_t numExperts, bool hasBias) {
  bool known = !ShapedType::isDynamic(numExperts);
  if (known && cfg.k > numExperts)
    return op->emitOpError() << "k = " << cfg.k
                             << " exceeds the number of experts ("
                             << numExperts << ")";
  if (cfg.numGroups < 1)
    return op->emitOpError() << "num_groups must be at least 1, got "
                             << cfg.numGroups;
  if (cfg.numGroups == 1 && cfg.topGroups != 1)
    return op->emitOpError()
           << "top_groups = " << cfg.topGroups
           << " needs group-limited routing (num_groups > 1)";
  if (cfg.numGroups > 1) {
    if (cfg.topGroups < 1 || cfg.topGroups > cfg.numGroups)
      return op->emitOpError() << "top_groups must be in [1, num_groups = "
                               << cfg.numGroups << "], got " << cfg.topGroups;
    if (known) {
      if (numExperts % cfg.numGroups != 0)
        return op->emitOpError()
               << "num_groups = " << cfg.numGroups
               << " does not divide the number of experts (" << numExperts
               << ")";
      int64_t groupSize = numExperts / cfg.numGroups;
      if (cfg.k > cfg.topGroups * groupSize)
        return op->emitOpError()
               << "k = " << cfg.k << " exceeds the " << cfg.topGroups * groupSize
               << " experts in the top_groups = " << cfg.topGroups
               << " selectable groups of " << groupSize;
      if (cfg.groupScoring == GroupScoring::top2_sum && groupSize < 2)
        return op->emitOpError()
               << "group_scoring top2_sum needs groups of at least 2 "
                  "experts, got "
               << groupSize;
    }
  }
  if (cfg.topP && !(*cfg.topP > 0.0 && *cfg.topP <= 1.0))
    return op->emitOpError() << "top_p must be in (0, 1], got " << *cfg.topP;
  if (!(cfg.scaling > 0.0 && std::isfinite(cfg.scaling)))
    return op->emitOpError() << "scaling must be positive and finite, got "
                             << cfg.scaling;
  if (cfg.scoring == Scoring::sparse_mixer &&
      (cfg.k != 2 || cfg.numGroups != 1 || cfg.topP || hasBias))
    return op->emitOpError()
           << "sparse_mixer scoring is top-2 routing: it needs k = 2 and no "
              "num_groups, top_p or score bias";
  return success();
}

/// Expert attributes as moe.expert and moe.layer both carry them.
struct ExpertConfig {
  Activation activation;
  SwigluFusion fusion;
  std::optional<double> limit;

  bool fusedSwiglu() const {
    return activation == Activation::swiglu &&
           fusion != SwigluFusion::separate;
  }
};

/// Stacked expert weights with their diagnostic names. `quant` is set for
/// packed integer weights, which then come with `scales` and optional
/// `zeroPoints` (indexed fc1, fc2, fc3).
struct ExpertWeights {
  Value fc1, fc1Bias, fc2, fc2Bias, fc3, fc3Bias;
  StringRef prefix = "";
  QuantAttr quant = {};
  std::array<Value, 3> scales = {}, zeroPoints = {};
  /// Weights stored panel-major (`[E, N / P, K, P]`, bf16 and quantised
  /// ones with a last dimension of 2 or 4 steps of k), or 0.
  int64_t panelWidth = 0;
};

/// The routed experts' weights of moe.expert or moe.layer.
template <typename OpTy> ExpertWeights routedWeights(OpTy op) {
  ExpertWeights w{op.getFc1(), op.getFc1Bias(), op.getFc2(),
                  op.getFc2Bias(), op.getFc3(), op.getFc3Bias()};
  w.quant = op.getQuantAttr();
  w.scales = {op.getFc1Scales(), op.getFc2Scales(), op.getFc3Scales()};
  w.zeroPoints = {op.getFc1ZeroPoints(), op.getFc2ZeroPoints(),
                  op.getFc3ZeroPoints()};
  if constexpr (std::is_same_v<OpTy, ExpertOp>)
    w.panelWidth = op.getPanelWidth().value_or(0);
  return w;
}

/// The `[E, N, K]` a stored weight holds: its own shape, or for
/// panel-major weights `[E, N / P, K, P]` (bf16: `[E, N / P, K / 2, P, 2]`)
/// the panels' columns together.
FailureOr<SmallVector<int64_t>> storedWeightShape(Operation *op, Value weight,
                                                  StringRef name,
                                                  int64_t panelWidth) {
  ShapeChecker check(op);
  if (!panelWidth) {
    auto shape = check.shape(weight, name, 3);
    if (failed(shape))
      return failure();
    return SmallVector<int64_t>(*shape);
  }
  int64_t steps = panelStepsOfK(getElementTypeOrSelf(weight.getType()));
  auto shape = check.shape(weight, name, steps == 1 ? 4 : 5);
  if (failed(shape) ||
      failed(check.dim(name, *shape, 3, panelWidth,
                       "the panel width of panel-major weights")) ||
      (steps != 1 &&
       failed(check.dim(name, *shape, 4, steps,
                        steps == 2 ? "the pair of k of panel-major bf16 weights"
                                   : "the 4-byte word of panel-major quantised "
                                     "weights"))))
    return failure();
  return SmallVector<int64_t>{(*shape)[0], mulDims((*shape)[1], panelWidth),
                              mulDims((*shape)[2], steps)};
}

int64_t ceilDivDims(int64_t a, int64_t b) {
  if (ShapedType::isDynamic(a) || ShapedType::isDynamic(b))
    return ShapedType::kDynamic;
  return (a + b - 1) / b;
}

/// Verifies the quantisation operands of projection `name` whose logical
/// (dequantised) shape is `[E, N, K]`; block-wise scales of panel-major
/// weights (`panelWidth` P) are panel-major too, `[E, N / P, blocks, P]`.
LogicalResult verifyQuantOperands(Operation *op, QuantAttr quant,
                                  StringRef name, ArrayRef<int64_t> logical,
                                  Value scales, Value zeroPoints,
                                  int64_t panelWidth) {
  ShapeChecker check(op);
  int64_t e = logical[0], n = logical[1], k = logical[2];
  int64_t block = quant.getBlockSize();
  std::string scalesName = (name + "_scales").str();
  std::string zpName = (name + "_zero_points").str();
  SmallVector<int64_t> scaleShape = {e, n};
  std::string scaleWhat = "[E, N] per-row scales of " + name.str();
  if (block != 0) {
    scaleShape.push_back(ceilDivDims(k, block));
    scaleWhat = "[E, N, ceil(K / " + std::to_string(block) +
                ")] block-wise scales of " + name.str();
  }
  auto scaleType = cast<RankedTensorType>(scales.getType());
  if (block != 0 && panelWidth) {
    SmallVector<int64_t> panels = {e, ShapedType::kDynamic, scaleShape[2],
                                   panelWidth};
    if (!ShapedType::isDynamic(n))
      panels[1] = n / panelWidth;
    if (failed(check.same(scalesName, scaleType.getShape(), panels,
                          "[E, N / " + std::to_string(panelWidth) +
                              ", ceil(K / " + std::to_string(block) + "), " +
                              std::to_string(panelWidth) +
                              "] panel-major block-wise scales of " + name)))
      return failure();
  } else if (failed(check.same(scalesName, scaleType.getShape(), scaleShape,
                               scaleWhat))) {
    return failure();
  }
  if (!zeroPoints)
    return success();
  // 8-bit zero points are one per scale; 4-bit ones are packed two to a
  // byte like the weights, along the blocks or, per row, along the rows.
  SmallVector<int64_t> zpShape = scaleShape;
  std::string zpWhat = "one per scale";
  if (quant.getBits() == 4) {
    zpShape.back() = ceilDivDims(zpShape.back(), 2);
    zpWhat = block != 0 ? "[E, N, ceil(blocks / 2)]: 4-bit zero points "
                          "packed two per byte"
                        : "[E, ceil(N / 2)]: 4-bit zero points packed two "
                          "per byte";
  }
  auto zpType = cast<RankedTensorType>(zeroPoints.getType());
  return check.same(zpName, zpType.getShape(), zpShape, zpWhat);
}

/// Verifies a stacked weight set for hidden size `hidden`; on success sets
/// `numExperts` (possibly dynamic).
LogicalResult verifyExpertWeights(Operation *op, const ExpertWeights &w,
                                  const ExpertConfig &cfg, int64_t hidden,
                                  int64_t &numExperts) {
  ShapeChecker check(op);
  std::string fc1Name = (w.prefix + "fc1").str();
  std::string fc2Name = (w.prefix + "fc2").str();
  std::string fc3Name = (w.prefix + "fc3").str();
  auto fc1Stored = storedWeightShape(op, w.fc1, fc1Name, w.panelWidth);
  auto fc2Stored = storedWeightShape(op, w.fc2, fc2Name, w.panelWidth);
  if (failed(fc1Stored) || failed(fc2Stored))
    return failure();

  // Quantisation operands come with `quant` and only with it; quantised
  // weights are bytes, float weights are not.
  const char *projNames[] = {"fc1", "fc2", "fc3"};
  Value projections[] = {w.fc1, w.fc2, w.fc3};
  for (int i = 0; i < 3; ++i) {
    std::string name = (w.prefix + projNames[i]).str();
    Value proj = projections[i];
    bool isBytes = proj && getElementTypeOrSelf(proj.getType()).isInteger();
    if (!w.quant) {
      if (isBytes)
        return op->emitOpError()
               << "integer weights '" << name
               << "' need a 'quant' attribute saying how they dequantise";
      if (w.scales[i] || w.zeroPoints[i])
        return op->emitOpError() << "'" << projNames[i]
                                 << (w.scales[i] ? "_scales" : "_zero_points")
                                 << "' needs a 'quant' attribute";
      continue;
    }
    if (!proj) {
      if (w.scales[i] || w.zeroPoints[i])
        return op->emitOpError() << "'" << projNames[i]
                                 << (w.scales[i] ? "_scales" : "_zero_points")
                                 << "' given without '" << name << "'";
      continue;
    }
    if (!isBytes)
      return op->emitOpError() << "with 'quant', '" << name
                               << "' must hold packed ui8 bytes, got "
                               << getElementTypeOrSelf(proj.getType());
    if (!w.scales[i])
      return op->emitOpError() << "quantised '" << name << "' needs '"
                               << projNames[i] << "_scales'";
  }

  // Biases (and, for quantised weights, scales) share the float element
  // type of the weights.
  Type elementType = w.quant ? getElementTypeOrSelf(w.scales[0].getType())
                             : getElementTypeOrSelf(w.fc1.getType());
  SmallVector<Value> floats = {w.fc1Bias, w.fc2Bias, w.fc3Bias};
  if (w.quant)
    floats.append(w.scales.begin(), w.scales.end());
  else
    floats.append({w.fc2, w.fc3});
  for (Value v : floats)
    if (v && getElementTypeOrSelf(v.getType()) != elementType)
      return op->emitOpError()
             << (w.quant ? "expert biases and scales"
                         : "expert weights and biases")
             << " must share one element type, got " << elementType << " and "
             << getElementTypeOrSelf(v.getType());

  // The logical [E, N, K] of a packed weight has K = stored * (8 / bits).
  int64_t pack = w.quant ? w.quant.getPackFactor() : 1;
  auto logical = [&](ArrayRef<int64_t> stored) {
    return SmallVector<int64_t>{stored[0], stored[1], mulDims(stored[2], pack)};
  };
  SmallVector<int64_t> fc1 = logical(*fc1Stored), fc2 = logical(*fc2Stored);
  std::string packedNote =
      w.quant ? " (packed: " + std::to_string(pack) + " values per byte)" : "";

  numExperts = fc1[0];
  int64_t inter = fc2[2];
  // A common mistake is handing over in-major ([E, in, out]) weights, as the
  // legacy ONNX Runtime layout has them; say so rather than only "mismatch".
  if (!w.quant && !ShapedType::isDynamic(hidden) && fc1[2] != hidden &&
      fc1[1] == hidden)
    return op->emitOpError()
           << "'" << fc1Name << "' has shape [" << fc1[0] << ", " << fc1[1]
           << ", " << fc1[2]
           << "], which looks in-major; expert weights are out-major: "
           << fc1Name << " [E, f*I, H], " << fc2Name << " [E, H, I]";
  if (failed(check.dim(fc1Name, *fc1Stored, 2, ceilDivDims(hidden, pack),
                       "the hidden size" + packedNote)) ||
      failed(check.dim(fc2Name, fc2, 0, numExperts,
                       "the expert count of " + fc1Name)) ||
      failed(check.dim(fc2Name, fc2, 1, hidden, "the hidden size")))
    return failure();

  bool separateSwiglu = cfg.activation == Activation::swiglu &&
                        cfg.fusion == SwigluFusion::separate;
  if (cfg.fusedSwiglu() && w.fc3)
    return op->emitOpError()
           << stringifySwigluFusion(cfg.fusion)
           << " swiglu keeps both halves in " << fc1Name << "; '" << fc3Name
           << "' must be absent";
  if (separateSwiglu && !w.fc3)
    return op->emitOpError() << "separate swiglu needs '" << fc3Name
                             << "' for its linear half";
  int64_t fc1Rows = cfg.fusedSwiglu() ? mulDims(2, inter) : inter;
  if (failed(check.dim(fc1Name, fc1, 1, fc1Rows,
                       cfg.fusedSwiglu()
                           ? "twice the intermediate size of " + fc2Name +
                                 " for fused swiglu"
                           : "the intermediate size of " + fc2Name)))
    return failure();

  SmallVector<int64_t> fc3;
  if (w.fc3) {
    auto fc3Stored = storedWeightShape(op, w.fc3, fc3Name, w.panelWidth);
    if (failed(fc3Stored) ||
        failed(check.same(
            fc3Name, *fc3Stored, {numExperts, inter, ceilDivDims(hidden, pack)},
            "[E, I, H] of " + fc1Name + "/" + fc2Name + packedNote)))
      return failure();
    fc3 = logical(*fc3Stored);
  }
  if (w.fc3Bias && !w.fc3)
    return op->emitOpError() << "'fc3_bias' needs 'fc3'";

  if (w.quant) {
    SmallVector<int64_t> shapes[] = {fc1, fc2, fc3};
    for (int i = 0; i < 3; ++i)
      if (projections[i] && failed(verifyQuantOperands(
                                op, w.quant, projNames[i], shapes[i],
                                w.scales[i], w.zeroPoints[i], w.panelWidth)))
        return failure();
  }

  auto checkBias = [&](Value bias, StringRef name, int64_t rows) {
    if (!bias)
      return success();
    auto shape = check.shape(bias, name, 2);
    if (failed(shape))
      return failure();
    return check.same(name, *shape, {numExperts, rows},
                      "[E, output size] of its projection");
  };
  if (failed(checkBias(w.fc1Bias, "fc1_bias", fc1Rows)) ||
      failed(checkBias(w.fc2Bias, "fc2_bias", hidden)) ||
      failed(checkBias(w.fc3Bias, "fc3_bias", inter)))
    return failure();

  if (cfg.limit) {
    if (cfg.activation != Activation::swiglu)
      return op->emitOpError() << "'limit' only applies to swiglu, not "
                               << stringifyActivation(cfg.activation);
    if (!(*cfg.limit > 0.0))
      return op->emitOpError() << "limit must be positive, got " << *cfg.limit;
  }
  return success();
}

/// Verifies the operands `moe.combine` and `moe.layer` share for
/// zero-computation experts and shared experts. `tokens` and `hidden` may be
/// dynamic. `hasInput` says whether the token input is available (the layer
/// always has it, in its own shape, and passes no `input` to check).
LogicalResult verifyCombineExtras(Operation *op, std::optional<ArrayAttr> zero,
                                  bool hasInput, Value input, Value shared,
                                  Value sharedGate,
                                  Value constants, Value constantGates,
                                  int64_t tokens, int64_t hidden) {
  ShapeChecker check(op);
  int64_t numConstant = 0;
  if (zero)
    for (Attribute a : *zero) {
      ZeroExpertKind kind = cast<ZeroExpertKindAttr>(a).getValue();
      numConstant += kind == ZeroExpertKind::constant;
      if (kind != ZeroExpertKind::zero && !hasInput)
        return op->emitOpError()
               << "a " << stringifyZeroExpertKind(kind)
               << " expert needs the token 'input'";
    }
  if (sharedGate && !hasInput)
    return op->emitOpError() << "'shared_gate' needs the token 'input'";

  if (numConstant > 0 && (!constants || !constantGates))
    return op->emitOpError() << numConstant
                             << " constant expert(s) need 'constants' and "
                                "'constant_gates'";
  if (numConstant == 0 && (constants || constantGates))
    return op->emitOpError()
           << "'constants'/'constant_gates' given without constant experts";
  if (constants) {
    auto c = check.shape(constants, "constants", 2);
    auto g = check.shape(constantGates, "constant_gates", 3);
    if (failed(c) || failed(g) ||
        failed(check.same("constants", *c, {numConstant, hidden},
                          "[constant experts, H]")) ||
        failed(check.same("constant_gates", *g, {numConstant, 2, hidden},
                          "[constant experts, 2, H]")))
      return failure();
  }
  if (input) {
    auto s = check.shape(input, "input", 2);
    if (failed(s) ||
        failed(check.same("input", *s, {tokens, hidden}, "[T, H]")))
      return failure();
  }
  if (shared) {
    auto s = check.shape(shared, "shared", 2);
    if (failed(s) ||
        failed(check.same("shared", *s, {tokens, hidden}, "[T, H]")))
      return failure();
  }
  if (sharedGate) {
    auto s = check.shape(sharedGate, "shared_gate", 1);
    if (failed(s) || failed(check.dim("shared_gate", *s, 0, hidden, "H")))
      return failure();
  }
  return success();
}

/// Verifies a router weight `[E, H]` for the tokens `input` (`[..., H]`):
/// `numExperts` rows (unchecked when dynamic) of `hidden` columns, in the
/// tokens' element type (so that the fused MatMul has one operand type).
LogicalResult verifyRouterWeight(Operation *op, Value routerWeight,
                                 Value input, int64_t numExperts,
                                 int64_t hidden) {
  ShapeChecker check(op);
  auto shape = check.shape(routerWeight, "router_weight", 2);
  if (failed(shape) ||
      failed(check.same("router_weight", *shape, {numExperts, hidden},
                        "[experts, H]")))
    return failure();
  Type inputType = getElementTypeOrSelf(input.getType());
  if (getElementTypeOrSelf(routerWeight.getType()) != inputType)
    return op->emitOpError()
           << "'router_weight' must have the element type of 'input' ("
           << inputType << ")";
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// RouteOp
//===----------------------------------------------------------------------===//

int64_t RouteOp::getNumExperts() {
  if (Value routerWeight = getRouterWeight())
    return cast<RankedTensorType>(routerWeight.getType()).getDimSize(0);
  return cast<RankedTensorType>(getInput().getType()).getDimSize(1);
}

Type RouteOp::getScoreType() {
  return getElementTypeOrSelf(getInput().getType());
}

LogicalResult RouteOp::verify() {
  ShapeChecker check(*this);
  bool fused = bool(getRouterWeight());
  auto input = check.shape(getInput(), fused ? "input" : "logits", 2);
  auto weights = check.shape(getWeights(), "weights", 2);
  auto ids = check.shape(getIds(), "ids", 2);
  if (failed(input) || failed(weights) || failed(ids))
    return failure();
  if (fused && failed(verifyRouterWeight(*this, getRouterWeight(),
                                         getInput(), ShapedType::kDynamic,
                                         (*input)[1])))
    return failure();
  int64_t tokens = (*input)[0], numExperts = getNumExperts();
  int64_t k = getK();
  if (failed(check.same("weights", *weights, {tokens, k}, "[T, k]")) ||
      failed(check.same("ids", *ids, {tokens, k}, "[T, k]")))
    return failure();
  if (getElementTypeOrSelf(getWeights().getType()) != getScoreType())
    return emitOpError() << "'weights' must have the element type of "
                         << (fused ? "'input'" : "'logits'");
  if (getBias()) {
    auto bias = check.shape(getBias(), "bias", 1);
    if (failed(bias) ||
        failed(check.dim("bias", *bias, 0, numExperts, "one per expert")))
      return failure();
  }
  return verifyRouting(*this,
                       {getScoring(), k, static_cast<int64_t>(getNumGroups()),
                        static_cast<int64_t>(getTopGroups()), getGroupScoring(),
                        toDouble(getTopP()),
                        getScaling().convertToDouble()},
                       numExperts, bool(getBias()));
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::verify() {
  ShapeChecker check(*this);
  auto input = check.shape(getInput(), "input", 2);
  auto ids = check.shape(getIds(), "ids", 2);
  auto rows = check.shape(getRows(), "rows", 2);
  auto offsets = check.shape(getOffsets(), "offsets", 1);
  auto rowTokens = check.shape(getRowTokens(), "row_tokens", 1);
  auto slotRows = check.shape(getSlotRows(), "slot_rows", 2);
  if (failed(input) || failed(ids) || failed(rows) || failed(offsets) ||
      failed(rowTokens) || failed(slotRows))
    return failure();
  int64_t tokens = (*input)[0], hidden = (*input)[1], k = (*ids)[1];
  int64_t numRows = mulDims(tokens, k);
  if (failed(check.dim("ids", *ids, 0, tokens, "the token count of 'input'")) ||
      failed(check.same("rows", *rows, {numRows, hidden}, "[T * k, H]")) ||
      failed(check.dim("offsets", *offsets, 0, getNumExperts() + 1,
                       "num_experts + 1")) ||
      failed(check.dim("row_tokens", *rowTokens, 0, numRows, "T * k")) ||
      failed(check.same("slot_rows", *slotRows, {tokens, k}, "[T, k]")))
    return failure();
  if (getElementTypeOrSelf(getRows().getType()) !=
      getElementTypeOrSelf(getInput().getType()))
    return emitOpError("'rows' must have the element type of 'input'");
  if (auto cf = getCapacityFactor(); cf && !(cf->convertToDouble() > 0.0))
    return emitOpError() << "capacity_factor must be positive, got "
                         << cf->convertToDouble();
  if (getCapacityFactor() && getExpertCapacity())
    return emitOpError("'capacity_factor' and 'expert_capacity' are "
                       "exclusive: give one capacity");
  if (getGroupSize() && !getExpertCapacity())
    return emitOpError("'group_size' needs 'expert_capacity': groups only "
                       "bound an absolute capacity");
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertOp::verify() {
  ShapeChecker check(*this);
  auto rows = check.shape(getRows(), "rows", 2);
  auto offsets = check.shape(getOffsets(), "offsets", 1);
  auto result = check.shape(getResult(), "result", 2);
  if (failed(rows) || failed(offsets) || failed(result))
    return failure();
  int64_t numExperts;
  ExpertConfig cfg{getActivation(), getSwigluFusion(),
                   toDouble(getLimit())};
  if (failed(verifyExpertWeights(*this, routedWeights(*this), cfg, (*rows)[1],
                                 numExperts)))
    return failure();
  if (failed(check.dim("offsets", *offsets, 0, addDims(numExperts, 1),
                       "the expert count of fc1 + 1")))
    return failure();
  // The dispatched rows: those of `rows`, or with a gather one per entry of
  // gather_tokens.
  int64_t numRows = (*rows)[0];
  StringRef rowCountName = "the row count of 'rows'";
  if (getGatherTokens()) {
    auto gather = check.shape(getGatherTokens(), "gather_tokens", 1);
    if (failed(gather))
      return failure();
    numRows = (*gather)[0];
    rowCountName = "the length of 'gather_tokens'";
  }
  int fusedOperands = bool(getCombineInto()) + bool(getRowTokens()) +
                      bool(getRowWeights());
  if (fusedOperands == 0)
    return check.same("result", *result, {numRows, (*rows)[1]},
                      getGatherTokens() ? "the length of 'gather_tokens' by "
                                          "the hidden size of 'rows'"
                                        : "the shape of 'rows'");
  if (fusedOperands != 3)
    return emitOpError("'combine_into', 'row_tokens' and 'row_weights' go "
                       "together");
  auto into = check.shape(getCombineInto(), "combine_into", 2);
  auto rowTokens = check.shape(getRowTokens(), "row_tokens", 1);
  auto rowWeights = check.shape(getRowWeights(), "row_weights", 1);
  if (failed(into) || failed(rowTokens) || failed(rowWeights))
    return failure();
  if (getResult().getType() != getCombineInto().getType())
    return emitOpError() << "result type " << getResult().getType()
                         << " must be the type of 'combine_into', "
                         << getCombineInto().getType();
  return failure(
      failed(check.dim("combine_into", *into, 1, (*rows)[1],
                       "the hidden size of 'rows'")) ||
      failed(check.dim("row_tokens", *rowTokens, 0, numRows, rowCountName)) ||
      failed(check.dim("row_weights", *rowWeights, 0, numRows,
                       rowCountName)));
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

SmallVector<ZeroExpertKind> CombineOp::getZeroExpertKinds() {
  SmallVector<ZeroExpertKind> kinds;
  if (auto zero = getZeroExperts())
    for (Attribute a : *zero)
      kinds.push_back(cast<ZeroExpertKindAttr>(a).getValue());
  return kinds;
}

LogicalResult CombineOp::verify() {
  ShapeChecker check(*this);
  auto expertOutput = check.shape(getExpertOutput(), "expert_output", 2);
  auto weights = check.shape(getWeights(), "weights", 2);
  auto ids = check.shape(getIds(), "ids", 2);
  auto slotRows = check.shape(getSlotRows(), "slot_rows", 2);
  auto result = check.shape(getResult(), "result", 2);
  if (failed(expertOutput) || failed(weights) || failed(ids) ||
      failed(slotRows) || failed(result))
    return failure();
  int64_t tokens = (*weights)[0], k = (*weights)[1];
  int64_t hidden = (*expertOutput)[1];
  if (failed(check.same("ids", *ids, {tokens, k}, "[T, k] of 'weights'")) ||
      failed(check.same("slot_rows", *slotRows, {tokens, k},
                        "[T, k] of 'weights'")) ||
      failed(check.same("result", *result, {tokens, hidden}, "[T, H]")))
    return failure();
  if (getSharedGate() && !getShared())
    return emitOpError("'shared_gate' needs the 'shared' expert output");
  if (getDroppedPassThrough() && !getInput())
    return emitOpError("'dropped_pass_through' needs the token 'input'");
  return verifyCombineExtras(*this, getZeroExperts(), bool(getInput()),
                             getInput(), getShared(),
                             getSharedGate(), getConstants(),
                             getConstantGates(), tokens, hidden);
}

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

LogicalResult LayerOp::verify() {
  ShapeChecker check(*this);
  auto inputType = cast<RankedTensorType>(getInput().getType());
  if (inputType.getRank() != 2 && inputType.getRank() != 3)
    return emitOpError() << "'input' must be [T, H] or [B, S, H], got "
                         << inputType;
  ArrayRef<int64_t> inputShape = inputType.getShape();
  int64_t hidden = inputShape.back();
  int64_t tokens = inputShape.size() == 2
                       ? inputShape[0]
                       : mulDims(inputShape[0], inputShape[1]);
  if (failed(check.same("result", cast<RankedTensorType>(getType()).getShape(),
                        inputShape, "the shape of 'input'")))
    return failure();

  ExpertConfig cfg{getActivation(), getSwigluFusion(),
                   toDouble(getLimit())};
  int64_t numExperts;
  if (failed(verifyExpertWeights(*this, routedWeights(*this), cfg, hidden,
                                 numExperts)))
    return failure();
  // An expert-parallel layer's weights hold the rank's share of the
  // experts; routing still scores all of them.
  if (ExpertParallelAttr ep = getExpertParallelAttr()) {
    if (failed(check.dim("fc1", {numExperts}, 0, ep.getExpertsPerRank(),
                         "the experts of one rank, ceil(num_experts / "
                         "ranks)")))
      return failure();
    if (getCapacityFactor() || getExpertCapacity())
      return emitOpError("a capacity is not supported with "
                         "expert_parallel: each rank routes only its own "
                         "tokens, so capacities would not be the layer's");
    numExperts = ep.getNumExperts();
  }
  int64_t numRouted = addDims(numExperts, getNumZeroExperts());
  if (getScaleInput() && getNumZeroExperts() > 0)
    return emitOpError("'scale_input' is not supported with zero-computation "
                       "experts: what a scaled input would mean for them is "
                       "not defined");
  if (getScaleInput() && getExpertParallelAttr())
    return emitOpError("'scale_input' is not supported with "
                       "expert_parallel");
  if (getScaleInput() && getDroppedPassThrough())
    return emitOpError("'scale_input' is not supported with "
                       "'dropped_pass_through'");

  if (bool(getLogits()) == bool(getRouterWeight()))
    return emitOpError("needs exactly one of 'logits' and 'router_weight'");
  if (getLogits()) {
    auto logits = check.shape(getLogits(), "logits", 2);
    if (failed(logits) ||
        failed(check.same("logits", *logits, {tokens, numRouted},
                          "[T, E + zero experts]")))
      return failure();
  } else if (failed(verifyRouterWeight(*this, getRouterWeight(), getInput(),
                                       numRouted, hidden))) {
    return failure();
  }
  if (getScoreBias()) {
    auto bias = check.shape(getScoreBias(), "score_bias", 1);
    if (failed(bias) || failed(check.dim("score_bias", *bias, 0, numRouted,
                                         "one per routed expert")))
      return failure();
  }
  if (failed(verifyRouting(
          *this,
          {getScoring(), static_cast<int64_t>(getK()),
           static_cast<int64_t>(getNumGroups()),
           static_cast<int64_t>(getTopGroups()), getGroupScoring(),
           toDouble(getTopP()), getScaling().convertToDouble()},
          numRouted, bool(getScoreBias()))))
    return failure();

  if (bool(getSharedFc1()) != bool(getSharedFc2()))
    return emitOpError("shared experts need both 'shared_fc1' and "
                       "'shared_fc2'");
  if (getSharedFc1()) {
    if (bool(getSharedFc3()) != bool(getFc3()))
      return emitOpError("'shared_fc3' must be given exactly when the routed "
                         "experts have 'fc3'");
    int64_t numShared;
    ExpertWeights shared{getSharedFc1(), {}, getSharedFc2(), {},
                         getSharedFc3(), {}, "shared_"};
    if (failed(verifyExpertWeights(*this, shared, cfg, hidden, numShared)))
      return failure();
  } else if (getSharedFc3() || getSharedGate()) {
    return emitOpError("'shared_fc3'/'shared_gate' need shared experts "
                       "('shared_fc1', 'shared_fc2')");
  }

  if (auto cf = getCapacityFactor(); cf && !(cf->convertToDouble() > 0.0))
    return emitOpError() << "capacity_factor must be positive, got "
                         << cf->convertToDouble();
  if (getCapacityFactor() && getExpertCapacity())
    return emitOpError("'capacity_factor' and 'expert_capacity' are "
                       "exclusive: give one capacity");
  if (getCapacityPerSequence() &&
      (!getExpertCapacity() || inputType.getRank() != 3))
    return emitOpError("'capacity_per_sequence' needs 'expert_capacity' and "
                       "a [B, S, H] input");
  if (getDroppedPassThrough() && !getCapacityFactor() && !getExpertCapacity())
    return emitOpError("'dropped_pass_through' needs a capacity "
                       "('capacity_factor' or 'expert_capacity'): nothing "
                       "is dropped without one");

  // The layer always has its input at hand; its shape was checked above, as
  // were the shared experts.
  return verifyCombineExtras(*this, getZeroExperts(), /*hasInput=*/true,
                             Value(), Value(), getSharedGate(), getConstants(),
                             getConstantGates(), tokens, hidden);
}

LogicalResult LayerOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  ExpertParallelAttr ep = getExpertParallelAttr();
  if (!ep)
    return success();
  auto grid =
      symbolTable.lookupNearestSymbolFrom<shard::GridOp>(*this, ep.getGrid());
  if (!grid)
    return emitOpError() << "expert_parallel grid '" << ep.getGrid()
                         << "' does not reference a shard.grid";
  if (grid.getRank() != 1 || grid.getShape()[0] != ep.getRanks())
    return emitOpError() << "expert_parallel grid '" << ep.getGrid()
                         << "' must be one-dimensional with " << ep.getRanks()
                         << " processes";
  return success();
}

//===----------------------------------------------------------------------===//
// AllToAllStartOp / AllToAllWaitOp
//===----------------------------------------------------------------------===//

LogicalResult AllToAllStartOp::verify() {
  auto send = cast<RankedTensorType>(getSend().getType());
  auto dest = cast<RankedTensorType>(getDest().getType());
  if (send.getElementType() != dest.getElementType() ||
      send.getRank() != dest.getRank() || send.getRank() < 1)
    return emitOpError() << "'send' and 'dest' must be tensors of rows of "
                            "one element type, got "
                         << send << " and " << dest;
  for (int64_t d = 1; d < send.getRank(); ++d)
    if (send.isDynamicDim(d) || send.getDimSize(d) != dest.getDimSize(d))
      return emitOpError() << "rows must have one static shape on both "
                              "sides, got "
                           << send << " and " << dest;
  return success();
}

LogicalResult
AllToAllStartOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto grid = symbolTable.lookupNearestSymbolFrom<shard::GridOp>(
      *this, getGridAttr());
  if (!grid)
    return emitOpError() << "'" << getGrid()
                         << "' does not reference a shard.grid";
  if (grid.getRank() != 1 || ShapedType::isDynamic(grid.getShape()[0]))
    return emitOpError() << "grid '" << getGrid()
                         << "' must have one static dimension";
  int64_t ranks = grid.getShape()[0];
  for (auto [name, counts] : {std::pair<StringRef, Value>{"send_counts",
                                                          getSendCounts()},
                              {"recv_counts", getRecvCounts()}}) {
    auto type = cast<RankedTensorType>(counts.getType());
    if (type.getRank() != 1 || type.getDimSize(0) != ranks)
      return emitOpError() << "'" << name << "' must hold one count per "
                           << "process of '" << getGrid() << "', tensor<"
                           << ranks << "xi32>, got " << type;
  }
  return success();
}

LogicalResult RecordRoutingOp::verify() {
  if (getIds().getType().getRank() != 2)
    return emitOpError() << "'ids' must be [T, k], got " << getIds().getType();
  return success();
}

/// fc1, fc2, then the present ones of the optional expert-stacked operands
/// of a moe.layer or moe.expert (the two spell them alike).
template <typename OpTy>
static SmallVector<OpOperand *> expertStackedOperands(OpTy op) {
  SmallVector<OpOperand *> operands{&op.getFc1Mutable(), &op.getFc2Mutable()};
  for (MutableOperandRange range :
       {op.getFc1BiasMutable(), op.getFc2BiasMutable(), op.getFc3Mutable(),
        op.getFc3BiasMutable(), op.getFc1ScalesMutable(),
        op.getFc2ScalesMutable(), op.getFc3ScalesMutable(),
        op.getFc1ZeroPointsMutable(), op.getFc2ZeroPointsMutable(),
        op.getFc3ZeroPointsMutable()})
    if (!range.empty())
      operands.push_back(&range[0]);
  return operands;
}

SmallVector<OpOperand *> LayerOp::getExpertStackedOperands() {
  return expertStackedOperands(*this);
}

SmallVector<OpOperand *> ExpertOp::getExpertStackedOperands() {
  return expertStackedOperands(*this);
}

LogicalResult PrefetchExpertsOp::verify() {
  if (getIds().getType().getRank() != 2)
    return emitOpError() << "'ids' must be [T, k], got " << getIds().getType();
  if (getWeights().empty())
    return emitOpError("needs at least one expert-stacked weight");
  std::optional<int64_t> numExperts;
  for (auto [index, weight] : llvm::enumerate(getWeights())) {
    auto type = cast<RankedTensorType>(weight.getType());
    if (type.getRank() < 2 || !type.hasStaticShape())
      return emitOpError() << "weight #" << index
                           << " must be a static expert-stacked tensor "
                              "[E, ...], got "
                           << type;
    if (!type.getElementType().isIntOrFloat() ||
        type.getElementTypeBitWidth() % 8 != 0)
      return emitOpError() << "weight #" << index
                           << " must have whole-byte elements (an expert's "
                              "bytes are its address range), got "
                           << type.getElementType();
    if (numExperts && *numExperts != type.getDimSize(0))
      return emitOpError() << "weights must stack the same number of "
                              "experts: weight #"
                           << index << " has " << type.getDimSize(0)
                           << ", weight #0 has " << *numExperts;
    numExperts = type.getDimSize(0);
  }
  return success();
}

LogicalResult AllToAllWaitOp::verify() {
  auto start = getRequest().getDefiningOp<AllToAllStartOp>();
  if (!start)
    return emitOpError("'request' must come from a moe.all_to_all_start");
  if (!getPending().hasOneUse())
    return emitOpError("'pending' must have no use but this wait: it is "
                       "being written until the wait returns");
  if (getPending() != start.getPending() || getSend() != start.getSend())
    return emitOpError("'pending' and 'send' must be the 'pending' result "
                       "and the 'send' operand of the start of 'request'");
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertParallelAttr
//===----------------------------------------------------------------------===//

LogicalResult
ExpertParallelAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                           FlatSymbolRefAttr grid, int64_t ranks,
                           int64_t numExperts) {
  if (ranks < 1 || numExperts < 1)
    return emitError() << "#moe.expert_parallel needs ranks >= 1 and "
                          "num_experts >= 1, got ranks = "
                       << ranks << ", num_experts = " << numExperts;
  return success();
}

//===----------------------------------------------------------------------===//
// ParallelCallOp
//===----------------------------------------------------------------------===//

LogicalResult
ParallelCallOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  Operation *callee =
      symbolTable.lookupNearestSymbolFrom(*this, getCalleeAttr());
  if (!callee)
    return emitOpError() << "'" << getCallee()
                         << "' does not reference a function";
  // Once the callee has been lowered (to llvm.func) its signature no longer
  // mirrors the captures; only the function-type form is checked.
  auto function = dyn_cast<FunctionOpInterface>(callee);
  if (!function)
    return emitOpError() << "'" << getCallee() << "' is not a function";
  auto type = dyn_cast<FunctionType>(function.getFunctionType());
  if (!type)
    return success();
  SmallVector<Type> expected(getCaptures().getTypes());
  Type index = IndexType::get(getContext());
  expected.append({index, index});
  if (type.getInputs() != ArrayRef<Type>(expected) || type.getNumResults())
    return emitOpError() << "callee '" << getCallee()
                         << "' must take the captures, then (begin, end) as "
                            "index, and return nothing; it has type "
                         << type;
  return success();
}

//===----------------------------------------------------------------------===//
// QuantAttr
//===----------------------------------------------------------------------===//

LogicalResult QuantAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                int64_t bits, int64_t blockSize) {
  if (bits != 4 && bits != 8)
    return emitError() << "#moe.quant bits must be 4 or 8, got " << bits;
  // ONNX Runtime's QMoE accepts powers of two from 16 on; nothing here
  // needs more than a positive block, but other sizes have no producer.
  if (blockSize != 0 &&
      (blockSize < 16 ||
       !llvm::isPowerOf2_64(static_cast<uint64_t>(blockSize))))
    return emitError() << "#moe.quant block_size must be 0 (per-row scales) "
                          "or a power of two >= 16, got "
                       << blockSize;
  return success();
}

#define GET_OP_CLASSES
#include "MoE/IR/MoEOps.cpp.inc"
