//===- StandardOpsElementwise.cpp - Elementwise ai.onnx ops -----------------===//
//
// Arithmetic, comparisons, activations, Cast, Where, Min/Max and Clip: one
// broadcasting linalg.generic each (StandardOps.h). Integer ops on
// constants fold at import, because exporters compute shapes with them.
//
//===----------------------------------------------------------------------===//

#include "StandardOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/StringSwitch.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// Element types the arithmetic importers accept: floats and signless
/// integers (bool included); unsigned ints would need their own arith ops.
LogicalResult checkElementType(NodeContext &node, Type type,
                               const Twine &what) {
  if (isFloatType(type) || isSignlessInt(type))
    return success();
  return node.fail(what + " has unsupported element type " + typeName(type));
}

//===----------------------------------------------------------------------===//
// Binary ops
//===----------------------------------------------------------------------===//

enum class Binary {
  Add,
  Sub,
  Mul,
  Div,
  Pow,
  Equal,
  Less,
  LessOrEqual,
  Greater,
  GreaterOrEqual,
  And,
  Or,
  Xor
};

bool isComparison(Binary kind) {
  return kind == Binary::Equal || kind == Binary::Less ||
         kind == Binary::LessOrEqual || kind == Binary::Greater ||
         kind == Binary::GreaterOrEqual;
}

bool isLogical(Binary kind) {
  return kind == Binary::And || kind == Binary::Or || kind == Binary::Xor;
}

Value buildBinary(OpBuilder &b, Location loc, Binary kind, Value x, Value y) {
  bool isFloat = isa<FloatType>(x.getType());
  auto cmp = [&](arith::CmpFPredicate f, arith::CmpIPredicate i) -> Value {
    if (isFloat)
      return arith::CmpFOp::create(b, loc, f, x, y);
    return arith::CmpIOp::create(b, loc, i, x, y);
  };
  switch (kind) {
  case Binary::Add:
    return isFloat ? arith::AddFOp::create(b, loc, x, y).getResult()
                   : arith::AddIOp::create(b, loc, x, y).getResult();
  case Binary::Sub:
    return isFloat ? arith::SubFOp::create(b, loc, x, y).getResult()
                   : arith::SubIOp::create(b, loc, x, y).getResult();
  case Binary::Mul:
    return isFloat ? arith::MulFOp::create(b, loc, x, y).getResult()
                   : arith::MulIOp::create(b, loc, x, y).getResult();
  case Binary::Div:
    return isFloat ? arith::DivFOp::create(b, loc, x, y).getResult()
                   : arith::DivSIOp::create(b, loc, x, y).getResult();
  case Binary::Pow:
    return math::PowFOp::create(b, loc, x, convertScalar(b, loc, y, x.getType()));
  case Binary::Equal:
    return cmp(arith::CmpFPredicate::OEQ, arith::CmpIPredicate::eq);
  case Binary::Less:
    return cmp(arith::CmpFPredicate::OLT, arith::CmpIPredicate::slt);
  case Binary::LessOrEqual:
    return cmp(arith::CmpFPredicate::OLE, arith::CmpIPredicate::sle);
  case Binary::Greater:
    return cmp(arith::CmpFPredicate::OGT, arith::CmpIPredicate::sgt);
  case Binary::GreaterOrEqual:
    return cmp(arith::CmpFPredicate::OGE, arith::CmpIPredicate::sge);
  case Binary::And:
    return arith::AndIOp::create(b, loc, x, y);
  case Binary::Or:
    return arith::OrIOp::create(b, loc, x, y);
  case Binary::Xor:
    return arith::XOrIOp::create(b, loc, x, y);
  }
  llvm_unreachable("unknown binary op");
}

/// The import-time value of `x kind y` on integers; nullopt where it would
/// be undefined (division by zero).
std::optional<int64_t> foldBinary(Binary kind, int64_t x, int64_t y) {
  switch (kind) {
  case Binary::Add:
    return x + y;
  case Binary::Sub:
    return x - y;
  case Binary::Mul:
    return x * y;
  case Binary::Div:
    if (y == 0 || (x == INT64_MIN && y == -1))
      return std::nullopt;
    return x / y;
  case Binary::Pow:
    return std::nullopt;
  case Binary::Equal:
    return x == y;
  case Binary::Less:
    return x < y;
  case Binary::LessOrEqual:
    return x <= y;
  case Binary::Greater:
    return x > y;
  case Binary::GreaterOrEqual:
    return x >= y;
  case Binary::And:
    return x && y;
  case Binary::Or:
    return x || y;
  case Binary::Xor:
    return (x != 0) != (y != 0);
  }
  return std::nullopt;
}

/// `x kind y` on sizes: folded when both are constants, else index
/// arithmetic (Add, Sub, Mul, Div only).
OpFoldResult foldIndexBinary(OpBuilder &b, Location loc, Binary kind,
                             OpFoldResult x, OpFoldResult y) {
  std::optional<int64_t> cx = getConstantIntValue(x);
  std::optional<int64_t> cy = getConstantIntValue(y);
  if (cx && cy)
    if (std::optional<int64_t> v = foldBinary(kind, *cx, *cy))
      return b.getIndexAttr(*v);
  Value vx = getValueOrCreateConstantIndexOp(b, loc, x);
  Value vy = getValueOrCreateConstantIndexOp(b, loc, y);
  switch (kind) {
  case Binary::Add:
    return arith::AddIOp::create(b, loc, vx, vy).getResult();
  case Binary::Sub:
    return arith::SubIOp::create(b, loc, vx, vy).getResult();
  case Binary::Mul:
    return arith::MulIOp::create(b, loc, vx, vy).getResult();
  default:
    return arith::DivSIOp::create(b, loc, vx, vy).getResult();
  }
}

/// Equal on shape vectors with dynamic sizes, when every comparison is
/// decided at import: equal constants, the same size, or a size against a
/// negative constant (sizes are never negative; exporters compare against
/// -1 to find "keep this size" entries). Null otherwise.
Value foldShapeEquality(OpBuilder &b, Location loc, Value lhs, Value rhs) {
  if (!isDynamicShapeVector(lhs) && !isDynamicShapeVector(rhs))
    return {};
  std::optional<SmallVector<OpFoldResult>> x = getShapeVector(lhs),
                                           y = getShapeVector(rhs);
  if (!x || !y || (x->size() != y->size() && x->size() != 1 && y->size() != 1))
    return {};
  size_t length = std::max(x->size(), y->size());
  SmallVector<int64_t> result;
  for (size_t i = 0; i < length; ++i) {
    OpFoldResult a = (*x)[x->size() == 1 ? 0 : i];
    OpFoldResult c = (*y)[y->size() == 1 ? 0 : i];
    std::optional<int64_t> ca = getConstantIntValue(a), cc = getConstantIntValue(c);
    if (ca && cc)
      result.push_back(*ca == *cc);
    else if (!ca && !cc && a == c)
      result.push_back(1);
    else if ((ca && *ca < 0) || (cc && *cc < 0))
      result.push_back(0);
    else
      return {};
  }
  int64_t rank = std::max(cast<RankedTensorType>(lhs.getType()).getRank(),
                          cast<RankedTensorType>(rhs.getType()).getRank());
  SmallVector<int64_t> shape;
  if (rank == 1)
    shape.push_back(length);
  return createIntConstant(b, loc, shape, b.getI1Type(), result);
}

template <Binary Kind>
LogicalResult importBinary(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 2)) ||
      failed(node.checkAttributes({})))
    return failure();
  auto lhs = rankedInput(node, 0), rhs = rankedInput(node, 1);
  if (failed(lhs) || failed(rhs))
    return failure();
  Type element = lhs->second.getElementType();
  if (failed(checkElementType(node, element, "input 0")))
    return failure();
  if (Kind != Binary::Pow && rhs->second.getElementType() != element)
    return node.fail("inputs have different element types");
  if (Kind == Binary::Pow && !isFloatType(element))
    return node.fail("integer Pow is not supported");
  if (isLogical(Kind) && !element.isInteger(1))
    return node.fail("expects bool inputs");
  Type result = isComparison(Kind) ? node.builder().getI1Type() : element;

  bool undefined = false;
  if (Value folded = foldIntElementwise(
          node.builder(), node.loc, {lhs->first, rhs->first}, result,
          [&](ArrayRef<int64_t> args) {
            std::optional<int64_t> v = foldBinary(Kind, args[0], args[1]);
            undefined |= !v;
            return v.value_or(0);
          });
      folded && !undefined) {
    node.setOutput(0, folded);
    return success();
  }
  if (Kind == Binary::Equal)
    if (Value folded = foldShapeEquality(node.builder(), node.loc,
                                         lhs->first, rhs->first)) {
      node.setOutput(0, folded);
      return success();
    }
  // Arithmetic on shape vectors holding dynamic sizes stays index
  // arithmetic, so that a Reshape downstream still sees the sizes.
  if (Kind == Binary::Add || Kind == Binary::Sub || Kind == Binary::Mul ||
      Kind == Binary::Div)
    if (Value folded = foldShapeElementwise(
            node.builder(), node.loc, {lhs->first, rhs->first}, result,
            [](OpBuilder &b, Location loc, ArrayRef<OpFoldResult> args) {
              return foldIndexBinary(b, loc, Kind, args[0], args[1]);
            })) {
      node.setOutput(0, folded);
      return success();
    }
  FailureOr<Value> value = buildElementwise(
      node, {lhs->first, rhs->first}, result,
      [](OpBuilder &b, Location loc, ValueRange args) {
        return buildBinary(b, loc, Kind, args[0], args[1]);
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

//===----------------------------------------------------------------------===//
// Unary ops
//===----------------------------------------------------------------------===//

enum class Unary {
  Sigmoid,
  Tanh,
  Relu,
  Erf,
  Neg,
  Sqrt,
  Exp,
  Log,
  Abs,
  Reciprocal,
  Floor,
  Ceil,
  Sin,
  Cos,
  Softplus,
  Not
};

/// Whether the op takes integer inputs too (the rest are float-only).
bool acceptsIntegers(Unary kind) {
  return kind == Unary::Relu || kind == Unary::Neg || kind == Unary::Abs;
}

Value buildUnary(OpBuilder &b, Location loc, Unary kind, Value x) {
  Type type = x.getType();
  bool isFloat = isa<FloatType>(type);
  auto one = [&] { return createScalar(b, loc, type, 1.0); };
  switch (kind) {
  case Unary::Sigmoid: {
    Value negated = arith::NegFOp::create(b, loc, x);
    Value denom =
        arith::AddFOp::create(b, loc, one(), math::ExpOp::create(b, loc, negated));
    return arith::DivFOp::create(b, loc, one(), denom);
  }
  case Unary::Tanh:
    return math::TanhOp::create(b, loc, x);
  case Unary::Relu: {
    Value zero = createScalar(b, loc, type, 0.0);
    return isFloat ? arith::MaximumFOp::create(b, loc, x, zero).getResult()
                   : arith::MaxSIOp::create(b, loc, x, zero).getResult();
  }
  case Unary::Erf:
    return math::ErfOp::create(b, loc, x);
  case Unary::Neg:
    return isFloat ? arith::NegFOp::create(b, loc, x).getResult()
                   : arith::SubIOp::create(b, loc, createScalar(b, loc, type, 0),
                                           x)
                         .getResult();
  case Unary::Sqrt:
    return math::SqrtOp::create(b, loc, x);
  case Unary::Exp:
    return math::ExpOp::create(b, loc, x);
  case Unary::Log:
    return math::LogOp::create(b, loc, x);
  case Unary::Abs:
    return isFloat ? math::AbsFOp::create(b, loc, x).getResult()
                   : math::AbsIOp::create(b, loc, x).getResult();
  case Unary::Reciprocal:
    return arith::DivFOp::create(b, loc, one(), x);
  case Unary::Floor:
    return math::FloorOp::create(b, loc, x);
  case Unary::Ceil:
    return math::CeilOp::create(b, loc, x);
  case Unary::Sin:
    return math::SinOp::create(b, loc, x);
  case Unary::Cos:
    return math::CosOp::create(b, loc, x);
  case Unary::Softplus:
    return math::Log1pOp::create(b, loc, math::ExpOp::create(b, loc, x));
  case Unary::Not:
    return arith::XOrIOp::create(b, loc, x, createScalar(b, loc, type, 1));
  }
  llvm_unreachable("unknown unary op");
}

template <Unary Kind>
LogicalResult importUnary(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  Type element = input->second.getElementType();
  bool supported = Kind == Unary::Not
                       ? element.isInteger(1)
                       : isFloatType(element) ||
                             (acceptsIntegers(Kind) && isSignlessInt(element) &&
                              !element.isInteger(1));
  if (!supported)
    return node.fail("input 0 has unsupported element type " +
                     typeName(element));
  FailureOr<Value> value = buildElementwise(
      node, input->first, element,
      [](OpBuilder &b, Location loc, ValueRange args) {
        return buildUnary(b, loc, Kind, args[0]);
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

/// 0.5 x (1 + erf(x / sqrt 2)), or with `useTanh` the approximation
/// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
Value buildGelu(OpBuilder &b, Location loc, Value x, bool useTanh) {
  Type element = x.getType();
  auto c = [&](double v) { return createScalar(b, loc, element, v); };
  Value inner;
  if (useTanh) {
    Value x3 =
        arith::MulFOp::create(b, loc, x, arith::MulFOp::create(b, loc, x, x));
    Value sum = arith::AddFOp::create(
        b, loc, x, arith::MulFOp::create(b, loc, c(0.044715), x3));
    inner = math::TanhOp::create(
        b, loc, arith::MulFOp::create(b, loc, c(std::sqrt(2.0 / M_PI)), sum));
  } else {
    inner = math::ErfOp::create(b, loc,
                                arith::MulFOp::create(b, loc, x, c(M_SQRT1_2)));
  }
  Value half = arith::MulFOp::create(b, loc, c(0.5), x);
  return arith::MulFOp::create(b, loc, half,
                               arith::AddFOp::create(b, loc, c(1.0), inner));
}

/// ONNX Runtime's fused activations (com.microsoft): FastGelu (tanh Gelu of
/// X + bias?), BiasGelu (erf Gelu of A + B) and QuickGelu
/// (x * sigmoid(alpha x)).
enum class FusedGelu { Fast, Bias, Quick };

template <FusedGelu Kind>
LogicalResult importFusedGelu(NodeContext &node) {
  int maxInputs = Kind == FusedGelu::Quick ? 1 : 2;
  int minInputs = Kind == FusedGelu::Bias ? 2 : 1;
  if (failed(checkInputCount(node, minInputs, maxInputs)) ||
      failed(node.checkAttributes(Kind == FusedGelu::Quick
                                      ? ArrayRef<StringRef>{"alpha"}
                                      : ArrayRef<StringRef>{})))
    return failure();
  SmallVector<Value> operands;
  for (int i = 0; i < node.numInputs(); ++i) {
    FailureOr<Value> v = i < minInputs ? node.input(i) : node.optionalInput(i);
    if (failed(v))
      return failure();
    if (*v)
      operands.push_back(*v);
  }
  Type element = getElementTypeOrSelf(operands[0].getType());
  if (!isFloatType(element) ||
      llvm::any_of(operands, [&](Value v) {
        return getElementTypeOrSelf(v.getType()) != element;
      }))
    return node.fail("expects float inputs of one element type");
  double alpha = node.floatAttr("alpha").value_or(1.702);
  FailureOr<Value> value = buildElementwise(
      node, operands, element,
      [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
        Value x = a[0];
        if (a.size() > 1)
          x = arith::AddFOp::create(b, loc, x, a[1]);
        if (Kind != FusedGelu::Quick)
          return buildGelu(b, loc, x, /*useTanh=*/Kind == FusedGelu::Fast);
        Value scaled = arith::MulFOp::create(
            b, loc, x, createScalar(b, loc, element, alpha));
        return arith::MulFOp::create(b, loc, x,
                                     buildUnary(b, loc, Unary::Sigmoid, scaled));
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

/// Gelu (opset 20; com.microsoft.Gelu has no attribute): the exact erf
/// form, or the tanh approximation when asked for.
LogicalResult importGelu(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({"approximate"})))
    return failure();
  std::string approximate = node.stringAttr("approximate").value_or("none");
  if (approximate != "none" && approximate != "tanh")
    return node.fail("approximate must be 'none' or 'tanh', got '" +
                     approximate + "'");
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  Type element = input->second.getElementType();
  if (!isFloatType(element))
    return node.fail("expects a float input");
  bool useTanh = approximate == "tanh";
  FailureOr<Value> value = buildElementwise(
      node, input->first, element,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        return buildGelu(b, loc, args[0], useTanh);
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

//===----------------------------------------------------------------------===//
// Cast, Where, Min/Max, Clip
//===----------------------------------------------------------------------===//

LogicalResult importCast(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({"to", "saturate"})))
    return failure();
  const onnx::AttributeProto *to = node.attribute("to");
  if (!to)
    return node.fail("needs the 'to' attribute");
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  FailureOr<Type> target = node.graph.elementType(
      static_cast<int32_t>(to->i()), "node '" + node.node.name() + "' 'to'");
  if (failed(target))
    return failure();
  Type from = input->second.getElementType();
  if (failed(checkElementType(node, from, "input 0")) ||
      failed(checkElementType(node, *target, "the 'to' type")))
    return failure();
  if (Value folded = foldIntElementwise(
          node.builder(), node.loc, input->first, *target,
          [&](ArrayRef<int64_t> args) {
            return target->isInteger(1) ? int64_t(args[0] != 0) : args[0];
          })) {
    node.setOutput(0, folded);
    return success();
  }
  // Integer casts of shape vectors (int64 <-> int32) keep their entries.
  if (isDynamicShapeVector(input->first) && target->isSignlessInteger() &&
      !target->isInteger(1)) {
    node.setOutput(0, createShapeVector(node.builder(), node.loc,
                                        *getShapeVector(input->first),
                                        input->second.getShape(), *target));
    return success();
  }
  FailureOr<Value> value = buildElementwise(
      node, input->first, *target,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        return convertScalar(b, loc, args[0], *target);
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

LogicalResult importWhere(NodeContext &node) {
  if (failed(checkInputCount(node, 3, 3)) ||
      failed(node.checkAttributes({})))
    return failure();
  auto cond = rankedInput(node, 0), x = rankedInput(node, 1),
       y = rankedInput(node, 2);
  if (failed(cond) || failed(x) || failed(y))
    return failure();
  if (!cond->second.getElementType().isInteger(1))
    return node.fail("condition must be bool");
  Type element = x->second.getElementType();
  if (y->second.getElementType() != element)
    return node.fail("X and Y have different element types");
  if (failed(checkElementType(node, element, "X")))
    return failure();
  SmallVector<Value> operands = {cond->first, x->first, y->first};
  if (Value folded = foldIntElementwise(
          node.builder(), node.loc, operands, element,
          [](ArrayRef<int64_t> a) { return a[0] ? a[1] : a[2]; })) {
    node.setOutput(0, folded);
    return success();
  }
  // Selecting between shape vectors by a constant condition picks entries.
  if (std::optional<SmallVector<int64_t>> pick = getConstantInts(cond->first);
      pick && (isDynamicShapeVector(x->first) || isDynamicShapeVector(y->first)))
    if (auto xs = getShapeVector(x->first), ys = getShapeVector(y->first);
        xs && ys) {
      size_t length = std::max({pick->size(), xs->size(), ys->size()});
      auto at = [&](auto &v, size_t i) { return v[v.size() == 1 ? 0 : i]; };
      bool fits = llvm::all_of(
          ArrayRef<size_t>{pick->size(), xs->size(), ys->size()},
          [&](size_t n) { return n == 1 || n == length; });
      if (fits) {
        SmallVector<OpFoldResult> entries;
        for (size_t i = 0; i < length; ++i)
          entries.push_back(at(*pick, i) ? at(*xs, i) : at(*ys, i));
        int64_t rank = std::max({cond->second.getRank(), x->second.getRank(),
                                 y->second.getRank()});
        SmallVector<int64_t> shape;
        if (rank == 1)
          shape.push_back(length);
        node.setOutput(0, createShapeVector(node.builder(), node.loc, entries,
                                            shape, element));
        return success();
      }
    }
  FailureOr<Value> value = buildElementwise(
      node, operands, element, [](OpBuilder &b, Location loc, ValueRange a) {
        return arith::SelectOp::create(b, loc, a[0], a[1], a[2]).getResult();
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

Value buildMinMax(OpBuilder &b, Location loc, bool isMax, Value x, Value y) {
  if (isa<FloatType>(x.getType()))
    return isMax ? arith::MaximumFOp::create(b, loc, x, y).getResult()
                 : arith::MinimumFOp::create(b, loc, x, y).getResult();
  return isMax ? arith::MaxSIOp::create(b, loc, x, y).getResult()
               : arith::MinSIOp::create(b, loc, x, y).getResult();
}

template <bool IsMax>
LogicalResult importMinMax(NodeContext &node) {
  if (node.numInputs() < 1)
    return node.fail("expects at least one input");
  if (failed(node.checkAttributes({})))
    return failure();
  SmallVector<Value> operands;
  Type element;
  for (int i = 0; i < node.numInputs(); ++i) {
    auto input = rankedInput(node, i);
    if (failed(input))
      return failure();
    if (i == 0)
      element = input->second.getElementType();
    else if (input->second.getElementType() != element)
      return node.fail("inputs have different element types");
    operands.push_back(input->first);
  }
  if (failed(checkElementType(node, element, "input 0")))
    return failure();
  if (Value folded = foldIntElementwise(
          node.builder(), node.loc, operands, element,
          [](ArrayRef<int64_t> a) {
            return IsMax ? *llvm::max_element(a) : *llvm::min_element(a);
          })) {
    node.setOutput(0, folded);
    return success();
  }
  FailureOr<Value> value = buildElementwise(
      node, operands, element, [](OpBuilder &b, Location loc, ValueRange a) {
        Value acc = a[0];
        for (Value v : a.drop_front())
          acc = buildMinMax(b, loc, IsMax, acc, v);
        return acc;
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

/// Sum and Mean of any number of broadcast inputs.
template <bool IsMean>
LogicalResult importVariadicSum(NodeContext &node) {
  if (node.numInputs() < 1)
    return node.fail("expects at least one input");
  if (failed(node.checkAttributes({})))
    return failure();
  SmallVector<Value> operands;
  Type element;
  for (int i = 0; i < node.numInputs(); ++i) {
    auto input = rankedInput(node, i);
    if (failed(input))
      return failure();
    if (i == 0)
      element = input->second.getElementType();
    else if (input->second.getElementType() != element)
      return node.fail("inputs have different element types");
    operands.push_back(input->first);
  }
  if (!isFloatType(element))
    return node.fail("expects float inputs");
  double count = operands.size();
  FailureOr<Value> value = buildElementwise(
      node, operands, element, [&](OpBuilder &b, Location loc, ValueRange a) {
        Value acc = a[0];
        for (Value v : a.drop_front())
          acc = buildBinary(b, loc, Binary::Add, acc, v);
        if (IsMean)
          acc = arith::DivFOp::create(b, loc, acc,
                                      createScalar(b, loc, element, count));
        return acc;
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

/// LeakyRelu: x < 0 ? alpha * x : x.
LogicalResult importLeakyRelu(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({"alpha"})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  Type element = input->second.getElementType();
  if (!isFloatType(element))
    return node.fail("expects a float input");
  double alpha = node.floatAttr("alpha").value_or(0.01);
  FailureOr<Value> value = buildElementwise(
      node, input->first, element,
      [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
        Value negative = arith::CmpFOp::create(
            b, loc, arith::CmpFPredicate::OLT, a[0],
            createScalar(b, loc, element, 0.0));
        Value scaled = arith::MulFOp::create(
            b, loc, a[0], createScalar(b, loc, element, alpha));
        return arith::SelectOp::create(b, loc, negative, scaled, a[0]);
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

/// Clip: bounds are optional scalar inputs from opset 11, float attributes
/// before.
LogicalResult importClip(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 3)) ||
      failed(node.checkAttributes({"min", "max"})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  Type element = input->second.getElementType();
  if (failed(checkElementType(node, element, "input 0")) ||
      element.isInteger(1))
    return node.fail("expects a float or integer input");
  SmallVector<Value> operands = {input->first};
  int lowIndex = -1, highIndex = -1;
  for (int i : {1, 2}) {
    FailureOr<Value> bound = node.optionalInput(i);
    if (failed(bound))
      return failure();
    if (!*bound)
      continue;
    auto type = dyn_cast<RankedTensorType>(bound->getType());
    if (!type || type.getElementType() != element || type.getNumElements() != 1)
      return node.fail(Twine(i == 1 ? "min" : "max") +
                       " must be a one-element tensor of the input's type");
    (i == 1 ? lowIndex : highIndex) = operands.size();
    operands.push_back(reshapeTo(node.builder(), node.loc, *bound, {}));
  }
  std::optional<double> lowAttr = node.floatAttr("min"),
                        highAttr = node.floatAttr("max");
  FailureOr<Value> value = buildElementwise(
      node, operands, element, [&](OpBuilder &b, Location loc, ValueRange a) {
        Value x = a[0];
        Value low = lowIndex >= 0 ? a[lowIndex]
                    : lowAttr     ? createScalar(b, loc, element, *lowAttr)
                                  : Value();
        Value high = highIndex >= 0 ? a[highIndex]
                     : highAttr     ? createScalar(b, loc, element, *highAttr)
                                    : Value();
        if (low)
          x = buildMinMax(b, loc, /*isMax=*/true, x, low);
        if (high)
          x = buildMinMax(b, loc, /*isMax=*/false, x, high);
        return x;
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

} // namespace

NodeImporter mlir::moe::onnx_import::lookupElementwiseImporter(StringRef opType) {
  return llvm::StringSwitch<NodeImporter>(opType)
      .Case("Add", importBinary<Binary::Add>)
      .Case("Sub", importBinary<Binary::Sub>)
      .Case("Mul", importBinary<Binary::Mul>)
      .Case("Div", importBinary<Binary::Div>)
      .Case("Pow", importBinary<Binary::Pow>)
      .Case("Equal", importBinary<Binary::Equal>)
      .Case("Less", importBinary<Binary::Less>)
      .Case("LessOrEqual", importBinary<Binary::LessOrEqual>)
      .Case("Greater", importBinary<Binary::Greater>)
      .Case("GreaterOrEqual", importBinary<Binary::GreaterOrEqual>)
      .Case("And", importBinary<Binary::And>)
      .Case("Or", importBinary<Binary::Or>)
      .Case("Xor", importBinary<Binary::Xor>)
      .Case("Sigmoid", importUnary<Unary::Sigmoid>)
      .Case("Tanh", importUnary<Unary::Tanh>)
      .Case("Relu", importUnary<Unary::Relu>)
      .Case("Erf", importUnary<Unary::Erf>)
      .Case("Neg", importUnary<Unary::Neg>)
      .Case("Sqrt", importUnary<Unary::Sqrt>)
      .Case("Exp", importUnary<Unary::Exp>)
      .Case("Log", importUnary<Unary::Log>)
      .Case("Abs", importUnary<Unary::Abs>)
      .Case("Reciprocal", importUnary<Unary::Reciprocal>)
      .Case("Floor", importUnary<Unary::Floor>)
      .Case("Ceil", importUnary<Unary::Ceil>)
      .Case("Sin", importUnary<Unary::Sin>)
      .Case("Cos", importUnary<Unary::Cos>)
      .Case("Softplus", importUnary<Unary::Softplus>)
      .Case("Not", importUnary<Unary::Not>)
      .Case("LeakyRelu", importLeakyRelu)
      .Case("Sum", importVariadicSum<false>)
      .Case("Mean", importVariadicSum<true>)
      .Case("Gelu", importGelu)
      .Case("FastGelu", importFusedGelu<FusedGelu::Fast>)
      .Case("BiasGelu", importFusedGelu<FusedGelu::Bias>)
      .Case("QuickGelu", importFusedGelu<FusedGelu::Quick>)
      .Case("Cast", importCast)
      .Case("Where", importWhere)
      .Case("Min", importMinMax<false>)
      .Case("Max", importMinMax<true>)
      .Case("Clip", importClip)
      .Default(nullptr);
}
