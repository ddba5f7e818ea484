//===- ShapeVectors.cpp - Shape arithmetic on dynamic sizes at import -------===//
//
// Exports with symbolic dimensions compute shapes at run time: Shape(x) ->
// Gather -> Unsqueeze -> Concat -> Reshape, with Mul/Add for flattened
// sizes. Constant shapes fold at import elsewhere; here the vectors that hold
// dynamic sizes are kept as tensor.from_elements of index casts, and the ops
// on them are evaluated element by element at import, so that Reshape,
// ConstantOfShape and friends see each size as a value (tensor.dim of an
// input, or arithmetic on those) instead of a tensor to read at run time.
//
//===----------------------------------------------------------------------===//

#include "StandardOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/StringSwitch.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// Vectors longer than this are not shapes.
constexpr int64_t kMaxShapeVector = 16;

/// An index-typed value for `ofr`.
Value asIndex(OpBuilder &b, Location loc, OpFoldResult ofr) {
  if (auto v = dyn_cast<Value>(ofr))
    return v;
  return arith::ConstantIndexOp::create(
      b, loc, cast<IntegerAttr>(cast<Attribute>(ofr)).getInt());
}

std::optional<int64_t> asConstant(OpFoldResult ofr) {
  return getConstantIntValue(ofr);
}

} // namespace

std::optional<ShapeVector>
mlir::moe::onnx_import::getShapeVector(OpBuilder &b, Location loc,
                                       Value value) {
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!type || type.getRank() > 1 || !type.hasStaticShape() ||
      type.getNumElements() > kMaxShapeVector ||
      !type.getElementType().isSignlessInteger() ||
      type.getElementType().isInteger(1))
    return std::nullopt;
  ShapeVector vec;
  vec.scalar = type.getRank() == 0;
  vec.elementType = type.getElementType();
  if (std::optional<SmallVector<int64_t>> ints = getConstantInts(value)) {
    for (int64_t v : *ints)
      vec.elements.push_back(b.getIndexAttr(v));
    return vec;
  }
  auto fromElements = value.getDefiningOp<tensor::FromElementsOp>();
  if (!fromElements)
    return std::nullopt;
  for (Value element : fromElements.getElements()) {
    APInt constant;
    if (matchPattern(element, m_ConstantInt(&constant))) {
      vec.elements.push_back(b.getIndexAttr(constant.getSExtValue()));
      continue;
    }
    if (auto cast = element.getDefiningOp<arith::IndexCastOp>();
        cast && cast.getIn().getType().isIndex()) {
      // Static sizes come as index_cast of a constant.
      vec.elements.push_back(getAsOpFoldResult(cast.getIn()));
      continue;
    }
    vec.elements.push_back(
        arith::IndexCastOp::create(b, loc, b.getIndexType(), element)
            .getResult());
  }
  return vec;
}

Value mlir::moe::onnx_import::buildShapeVector(OpBuilder &b, Location loc,
                                               const ShapeVector &vec) {
  SmallVector<int64_t> shape;
  if (!vec.scalar)
    shape.push_back(vec.elements.size());
  if (llvm::all_of(vec.elements,
                   [](OpFoldResult e) { return asConstant(e).has_value(); })) {
    SmallVector<int64_t> values;
    for (OpFoldResult e : vec.elements)
      values.push_back(*asConstant(e));
    return createIntConstant(b, loc, shape, vec.elementType, values);
  }
  SmallVector<Value> elements;
  for (OpFoldResult e : vec.elements) {
    if (std::optional<int64_t> c = asConstant(e))
      elements.push_back(arith::ConstantOp::create(
          b, loc, IntegerAttr::get(vec.elementType, *c)));
    else
      elements.push_back(arith::IndexCastOp::create(b, loc, vec.elementType,
                                                    cast<Value>(e)));
  }
  return tensor::FromElementsOp::create(
      b, loc, RankedTensorType::get(shape, vec.elementType), elements);
}

std::optional<LogicalResult>
mlir::moe::onnx_import::foldShapeVectorNode(NodeContext &node) {
  StringRef op = node.node.op_type();
  static const StringRef handled[] = {"Gather", "Unsqueeze", "Squeeze",
                                      "Concat", "Cast",      "Mul",
                                      "Add",    "Sub",       "Div",
                                      "Slice",  "Identity"};
  if (!llvm::is_contained(handled, op) || node.numInputs() < 1)
    return std::nullopt;
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  // Every input a shape vector, at least one of them dynamic.
  SmallVector<ShapeVector> in;
  bool anyDynamic = false;
  for (int i = 0; i < node.numInputs(); ++i) {
    if (node.node.input(i).empty()) {
      in.emplace_back();
      continue;
    }
    Value v = node.graph.lookup(node.node.input(i));
    if (!v)
      return std::nullopt;
    std::optional<ShapeVector> vec = getShapeVector(b, loc, v);
    if (!vec)
      return std::nullopt;
    anyDynamic |= llvm::any_of(vec->elements, [](OpFoldResult e) {
      return isa<Value>(e);
    });
    in.push_back(std::move(*vec));
  }
  if (!anyDynamic)
    return std::nullopt;
  auto constantInts = [&](int i) -> std::optional<SmallVector<int64_t>> {
    if (i >= int(in.size()))
      return std::nullopt;
    SmallVector<int64_t> out;
    for (OpFoldResult e : in[i].elements) {
      std::optional<int64_t> c = asConstant(e);
      if (!c)
        return std::nullopt;
      out.push_back(*c);
    }
    return out;
  };
  auto done = [&](ShapeVector result) -> std::optional<LogicalResult> {
    node.setOutput(0, buildShapeVector(b, loc, result));
    return success();
  };
  ShapeVector result;
  result.elementType = in[0].elementType;

  if (op == "Identity")
    return done(in[0]);
  if (op == "Cast") {
    const onnx::AttributeProto *to = node.attribute("to");
    if (!to || (to->i() != onnx::TensorProto::INT64 &&
                to->i() != onnx::TensorProto::INT32))
      return std::nullopt;
    result = in[0];
    result.elementType = to->i() == onnx::TensorProto::INT64
                             ? b.getI64Type()
                             : b.getI32Type();
    return done(result);
  }
  if (op == "Gather") {
    // A constant index (scalar or vector) into a 1-D shape vector.
    std::optional<SmallVector<int64_t>> idx = constantInts(1);
    if (in[0].scalar || !idx || node.intAttr("axis", 0) != 0)
      return std::nullopt;
    int64_t n = in[0].elements.size();
    for (int64_t i : *idx) {
      if (i < -n || i >= n)
        return node.fail("index " + Twine(i) + " is out of range for a " +
                         Twine(n) + "-element shape");
      result.elements.push_back(in[0].elements[i < 0 ? i + n : i]);
    }
    result.scalar = in[1].scalar;
    return done(result);
  }
  if (op == "Unsqueeze" || op == "Squeeze") {
    // Only the scalar <-> one-element vector forms shapes use.
    std::optional<SmallVector<int64_t>> axes =
        node.numInputs() > 1 ? constantInts(1) : node.intsAttr("axes");
    if (op == "Unsqueeze" && in[0].scalar && axes && axes->size() == 1 &&
        ((*axes)[0] == 0 || (*axes)[0] == -1)) {
      result = in[0];
      result.scalar = false;
      return done(result);
    }
    if (op == "Squeeze" && !in[0].scalar && in[0].elements.size() == 1) {
      result = in[0];
      result.scalar = true;
      return done(result);
    }
    return std::nullopt;
  }
  if (op == "Concat") {
    for (const ShapeVector &v : in) {
      if (v.scalar)
        return std::nullopt;
      llvm::append_range(result.elements, v.elements);
    }
    return done(result);
  }
  if (op == "Slice") {
    std::optional<SmallVector<int64_t>> starts = constantInts(1),
                                        ends = constantInts(2);
    std::optional<SmallVector<int64_t>> steps =
        node.numInputs() > 4 ? constantInts(4) : SmallVector<int64_t>{1};
    if (in[0].scalar || !starts || !ends || !steps || starts->size() != 1 ||
        ends->size() != 1 || steps->size() != 1 || (*steps)[0] != 1)
      return std::nullopt;
    int64_t n = in[0].elements.size();
    auto clampIndex = [&](int64_t i) {
      return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n);
    };
    for (int64_t i = clampIndex((*starts)[0]); i < clampIndex((*ends)[0]); ++i)
      result.elements.push_back(in[0].elements[i]);
    return done(result);
  }
  // Binary arithmetic with numpy broadcasting of one-element operands.
  if (in.size() != 2)
    return std::nullopt;
  size_t n = std::max(in[0].elements.size(), in[1].elements.size());
  for (const ShapeVector &v : in)
    if (v.elements.size() != n && v.elements.size() != 1)
      return std::nullopt;
  result.scalar = in[0].scalar && in[1].scalar;
  for (size_t i = 0; i < n; ++i) {
    OpFoldResult l = in[0].elements[in[0].elements.size() == 1 ? 0 : i];
    OpFoldResult r = in[1].elements[in[1].elements.size() == 1 ? 0 : i];
    Value lv = asIndex(b, loc, l), rv = asIndex(b, loc, r);
    Value v;
    if (op == "Mul")
      v = b.createOrFold<arith::MulIOp>(loc, lv, rv);
    else if (op == "Add")
      v = b.createOrFold<arith::AddIOp>(loc, lv, rv);
    else if (op == "Sub")
      v = b.createOrFold<arith::SubIOp>(loc, lv, rv);
    else
      v = b.createOrFold<arith::FloorDivSIOp>(loc, lv, rv);
    result.elements.push_back(getAsOpFoldResult(v));
  }
  return done(result);
}
