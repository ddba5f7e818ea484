//===- StandardOpsShape.cpp - Shape and data-movement ai.onnx ops -----------===//
//
// Reshape, Transpose, Squeeze/Unsqueeze, Shape, Concat, Slice, Gather,
// Expand, Tile, Split and the constants. Shape-computation subgraphs of
// exports (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) fold to
// constants here, so that Reshape and friends usually see constant shapes;
// the ops take their shape operands only as constants.
//
//===----------------------------------------------------------------------===//

#include "StandardOps.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/IndexingUtils.h"
#include "mlir/Interfaces/ValueBoundsOpInterface.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// The constant integer contents of input `i`; fails naming `what` when it
/// is not a constant (after import-time folding).
FailureOr<SmallVector<int64_t>> constantInput(NodeContext &node, int i,
                                              StringRef what) {
  FailureOr<Value> value = node.input(i);
  if (failed(value))
    return failure();
  std::optional<SmallVector<int64_t>> ints = getConstantInts(*value);
  if (!ints)
    return node.fail(what + " must be a constant integer tensor (the importer "
                            "folds shape computations on static shapes, not "
                            "on dynamic ones)");
  return *ints;
}

/// The entries of input `i` as a shape vector (constants, or sizes of
/// dynamic dimensions); fails naming `what` otherwise.
FailureOr<SmallVector<OpFoldResult>> shapeInput(NodeContext &node, int i,
                                                StringRef what) {
  FailureOr<Value> value = node.input(i);
  if (failed(value))
    return failure();
  std::optional<SmallVector<OpFoldResult>> entries = getShapeVector(*value);
  if (!entries)
    return node.fail(what + " must be computable at import: a constant, or "
                            "built from the sizes of dynamic dimensions "
                            "(Shape, Gather, Concat, Slice, arithmetic)");
  return *entries;
}

/// Ints from the attribute `name` (older opsets) or else from input `i`
/// when present; nullopt when neither is given.
FailureOr<std::optional<SmallVector<int64_t>>>
intsFromAttrOrInput(NodeContext &node, StringRef name, int i) {
  if (auto attr = node.intsAttr(name))
    return std::optional<SmallVector<int64_t>>(*attr);
  FailureOr<Value> value = node.optionalInput(i);
  if (failed(value))
    return failure();
  if (!*value)
    return std::optional<SmallVector<int64_t>>();
  FailureOr<SmallVector<int64_t>> ints = constantInput(node, i, name);
  if (failed(ints))
    return failure();
  return std::optional<SmallVector<int64_t>>(*ints);
}

/// A constant of `shape` holding, at each index, the integer `src` holds at
/// `sourceOffset(index)`; null when `src` is not a small integer constant.
Value foldIntRemap(OpBuilder &b, Location loc, Value src,
                   ArrayRef<int64_t> shape,
                   function_ref<int64_t(ArrayRef<int64_t>)> sourceOffset) {
  std::optional<SmallVector<int64_t>> values = getConstantInts(src);
  if (!values)
    return {};
  int64_t count = 1;
  for (int64_t d : shape) {
    if (ShapedType::isDynamic(d))
      return {};
    count *= d;
  }
  if (count > kMaxFoldElements)
    return {};
  SmallVector<int64_t> result, index(shape.size(), 0);
  for (int64_t n = 0; n < count; ++n) {
    result.push_back((*values)[sourceOffset(index)]);
    for (int64_t d = shape.size() - 1; d >= 0; --d) {
      if (++index[d] < shape[d])
        break;
      index[d] = 0;
    }
  }
  return createIntConstant(b, loc, shape,
                           cast<ShapedType>(src.getType()).getElementType(),
                           result);
}

/// Row-major strides of a static shape.
SmallVector<int64_t> stridesOf(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> strides(shape.size(), 1);
  for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * shape[d + 1];
  return strides;
}

Value indexValue(OpBuilder &b, Location loc, OpFoldResult ofr) {
  return getValueOrCreateConstantIndexOp(b, loc, ofr);
}

//===----------------------------------------------------------------------===//
// Reshape family
//===----------------------------------------------------------------------===//

LogicalResult importReshape(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 2)) ||
      failed(node.checkAttributes({"allowzero"})))
    return failure();
  auto data = rankedInput(node, 0);
  if (failed(data))
    return failure();
  FailureOr<SmallVector<OpFoldResult>> shape = shapeInput(node, 1, "shape");
  if (failed(shape))
    return failure();
  bool allowZero = node.intAttr("allowzero", 0) != 0;
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  RankedTensorType type = data->second;
  SmallVector<OpFoldResult> inSizes = mixedSizes(b, loc, data->first);

  // 0 copies the input's size, -1 takes what is left: the input's elements
  // over the product of the other sizes. Copied dimensions cancel, so
  // [?, 4, 8] -> [0, -1] stays static in its second dimension.
  SmallVector<OpFoldResult> sizes(shape->size());
  SmallVector<bool> copied(type.getRank(), false);
  std::optional<size_t> inferred;
  int64_t literalProduct = 1;
  // Sizes computed from dynamic dimensions (Shape of a dynamic tensor):
  // literal sizes known only at run time.
  SmallVector<Value> dynamicLiterals;
  for (auto [i, entry] : llvm::enumerate(*shape)) {
    std::optional<int64_t> constant = getConstantIntValue(entry);
    if (!constant) {
      sizes[i] = entry;
      dynamicLiterals.push_back(cast<Value>(entry));
      continue;
    }
    int64_t s = *constant;
    if (s == 0 && !allowZero) {
      if (int64_t(i) >= type.getRank())
        return node.fail("shape entry " + Twine(i) +
                         " is 0 (copy) but the input has rank " +
                         Twine(type.getRank()));
      sizes[i] = inSizes[i];
      copied[i] = true;
    } else if (s == -1) {
      if (inferred)
        return node.fail("shape has more than one -1");
      inferred = i;
    } else if (s < 0) {
      return node.fail("shape entry " + Twine(s) + " is invalid");
    } else {
      sizes[i] = b.getIndexAttr(s);
      if (llvm::MulOverflow(literalProduct, s, literalProduct))
        return node.fail("the shape's sizes overflow a 64-bit element count");
    }
  }
  int64_t restStatic = 1;
  SmallVector<int64_t> restDynamic;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    if (copied[d])
      continue;
    if (type.isDynamicDim(d))
      restDynamic.push_back(d);
    else if (llvm::MulOverflow(restStatic, type.getDimSize(d), restStatic))
      return node.fail("the input's sizes overflow a 64-bit element count");
  }
  // A literal that is the size of one of the input's own dynamic
  // dimensions cancels with it.
  llvm::erase_if(dynamicLiterals, [&](Value v) {
    auto dim = v.getDefiningOp<tensor::DimOp>();
    std::optional<int64_t> index =
        dim ? dim.getConstantIndex() : std::optional<int64_t>();
    if (!dim || dim.getSource() != data->first || !index)
      return false;
    auto it = llvm::find(restDynamic, *index);
    if (it == restDynamic.end())
      return false;
    restDynamic.erase(it);
    return true;
  });
  if (inferred) {
    if (literalProduct == 0)
      return node.fail("shape has -1 next to a 0-sized dimension");
    if (restDynamic.empty() && dynamicLiterals.empty()) {
      if (restStatic % literalProduct != 0)
        return node.fail("cannot reshape " + Twine(restStatic) +
                         " elements into a multiple of " +
                         Twine(literalProduct));
      sizes[*inferred] = b.getIndexAttr(restStatic / literalProduct);
    } else {
      Value total = arith::ConstantIndexOp::create(b, loc, restStatic);
      for (int64_t d : restDynamic)
        total = arith::MulIOp::create(b, loc, total,
                                      indexValue(b, loc, inSizes[d]));
      Value denominator = arith::ConstantIndexOp::create(b, loc, literalProduct);
      for (Value v : dynamicLiterals)
        denominator = arith::MulIOp::create(b, loc, denominator, v);
      sizes[*inferred] =
          arith::DivUIOp::create(b, loc, total, denominator).getResult();
    }
  } else if (restDynamic.empty() && dynamicLiterals.empty() &&
             restStatic != literalProduct) {
    return node.fail("cannot reshape " + Twine(restStatic) + " elements into " +
                     Twine(literalProduct));
  }
  node.setOutput(0, reshapeTo(b, loc, data->first, sizes));
  return success();
}

/// Flatten: [prod(shape[:axis]), prod(shape[axis:])].
LogicalResult importFlatten(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({"axis"})))
    return failure();
  auto data = rankedInput(node, 0);
  if (failed(data))
    return failure();
  int64_t rank = data->second.getRank();
  int64_t axis = node.intAttr("axis", 1);
  if (axis < -rank || axis > rank)
    return node.fail("axis " + Twine(axis) + " is out of range for rank " +
                     Twine(rank));
  if (axis < 0)
    axis += rank;
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  SmallVector<OpFoldResult> inSizes = mixedSizes(b, loc, data->first);
  auto product = [&](int64_t begin, int64_t end) -> OpFoldResult {
    int64_t fixed = 1;
    Value dynamic;
    for (int64_t d = begin; d < end; ++d) {
      if (std::optional<int64_t> s = getConstantIntValue(inSizes[d])) {
        fixed *= *s;
        continue;
      }
      Value v = cast<Value>(inSizes[d]);
      dynamic = dynamic ? arith::MulIOp::create(b, loc, dynamic, v).getResult()
                        : v;
    }
    if (!dynamic)
      return b.getIndexAttr(fixed);
    if (fixed == 1)
      return dynamic;
    return arith::MulIOp::create(b, loc, dynamic,
                                 arith::ConstantIndexOp::create(b, loc, fixed))
        .getResult();
  };
  node.setOutput(0, reshapeTo(b, loc, data->first,
                              {product(0, axis), product(axis, rank)}));
  return success();
}

/// Squeeze: axes from the attribute (before opset 13) or the input; none
/// squeezes every static 1.
LogicalResult importSqueeze(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 2)) ||
      failed(node.checkAttributes({"axes"})))
    return failure();
  auto data = rankedInput(node, 0);
  auto axesList = intsFromAttrOrInput(node, "axes", 1);
  if (failed(data) || failed(axesList))
    return failure();
  RankedTensorType type = data->second;
  int64_t rank = type.getRank();
  SmallVector<bool> squeezed(rank, false);
  if (*axesList) {
    for (int64_t axis : **axesList) {
      FailureOr<int64_t> a = normalizeAxis(node, axis, rank);
      if (failed(a))
        return failure();
      if (!type.isDynamicDim(*a) && type.getDimSize(*a) != 1)
        return node.fail("cannot squeeze dimension " + Twine(*a) + " of size " +
                         Twine(type.getDimSize(*a)));
      squeezed[*a] = true;
    }
  } else {
    for (int64_t d = 0; d < rank; ++d)
      squeezed[d] = type.getDimSize(d) == 1;
  }
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  // A squeezed dynamic dimension must be 1 at run time: say so in the type.
  Value value = data->first;
  SmallVector<int64_t> refined(type.getShape());
  for (int64_t d = 0; d < rank; ++d)
    if (squeezed[d])
      refined[d] = 1;
  if (refined != type.getShape())
    value = tensor::CastOp::create(
        b, loc, RankedTensorType::get(refined, type.getElementType()), value);
  SmallVector<OpFoldResult> inSizes = mixedSizes(b, loc, value), sizes;
  for (int64_t d = 0; d < rank; ++d)
    if (!squeezed[d])
      sizes.push_back(inSizes[d]);
  node.setOutput(0, reshapeTo(b, loc, value, sizes));
  return success();
}

LogicalResult importUnsqueeze(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 2)) ||
      failed(node.checkAttributes({"axes"})))
    return failure();
  auto data = rankedInput(node, 0);
  auto axesList = intsFromAttrOrInput(node, "axes", 1);
  if (failed(data) || failed(axesList))
    return failure();
  if (!*axesList)
    return node.fail("needs axes");
  int64_t rank = data->second.getRank() + (*axesList)->size();
  SmallVector<bool> inserted(rank, false);
  for (int64_t axis : **axesList) {
    FailureOr<int64_t> a = normalizeAxis(node, axis, rank);
    if (failed(a))
      return failure();
    if (inserted[*a])
      return node.fail("axes repeat " + Twine(*a));
    inserted[*a] = true;
  }
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  SmallVector<OpFoldResult> inSizes = mixedSizes(b, loc, data->first), sizes;
  auto next = inSizes.begin();
  for (int64_t d = 0; d < rank; ++d)
    sizes.push_back(inserted[d] ? OpFoldResult(b.getIndexAttr(1)) : *next++);
  node.setOutput(0, reshapeTo(b, loc, data->first, sizes));
  return success();
}

LogicalResult importTranspose(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({"perm"})))
    return failure();
  auto data = rankedInput(node, 0);
  if (failed(data))
    return failure();
  int64_t rank = data->second.getRank();
  SmallVector<int64_t> perm = node.intsAttr("perm").value_or(
      llvm::to_vector(llvm::reverse(llvm::seq<int64_t>(0, rank))));
  if (int64_t(perm.size()) != rank || !isPermutationVector(perm))
    return node.fail("perm is not a permutation of the input's " +
                     Twine(rank) + " dimensions");
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  ArrayRef<int64_t> inShape = data->second.getShape();
  SmallVector<int64_t> outShape;
  for (int64_t p : perm)
    outShape.push_back(inShape[p]);
  // Only constants fold. Their shapes are static and small; the strides of
  // any other input's shape may hold dynamic sizes, which overflow them.
  if (getConstantAttr(data->first)) {
    SmallVector<int64_t> inStrides = stridesOf(inShape);
    if (Value folded = foldIntRemap(b, loc, data->first, outShape,
                                    [&](ArrayRef<int64_t> index) {
                                      int64_t offset = 0;
                                      for (int64_t d = 0; d < rank; ++d)
                                        offset +=
                                            index[d] * inStrides[perm[d]];
                                      return offset;
                                    })) {
      node.setOutput(0, folded);
      return success();
    }
  }
  SmallVector<OpFoldResult> inSizes = mixedSizes(b, loc, data->first), sizes;
  for (int64_t p : perm)
    sizes.push_back(inSizes[p]);
  Value init = emptyTensor(b, loc, sizes, data->second.getElementType());
  node.setOutput(
      0, linalg::TransposeOp::create(b, loc, data->first, init, perm)
             .getResult()[0]);
  return success();
}

//===----------------------------------------------------------------------===//
// Shape, Size, constants
//===----------------------------------------------------------------------===//

LogicalResult importShape(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({"start", "end"})))
    return failure();
  auto data = rankedInput(node, 0);
  if (failed(data))
    return failure();
  int64_t rank = data->second.getRank();
  auto clampIndex = [&](int64_t i) {
    if (i < 0)
      i += rank;
    return std::clamp<int64_t>(i, 0, rank);
  };
  int64_t start = clampIndex(node.intAttr("start", 0));
  int64_t end = clampIndex(node.intAttr("end", rank));
  end = std::max(start, end);
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, data->first);
  ArrayRef<OpFoldResult> picked =
      ArrayRef<OpFoldResult>(sizes).slice(start, end - start);
  node.setOutput(0, createShapeVector(b, loc, picked, {end - start},
                                      b.getI64Type()));
  return success();
}

LogicalResult importSize(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) || failed(node.checkAttributes({})))
    return failure();
  auto data = rankedInput(node, 0);
  if (failed(data))
    return failure();
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  auto scalarType = RankedTensorType::get({}, b.getI64Type());
  if (data->second.hasStaticShape()) {
    node.setOutput(0, createIntConstant(b, loc, {}, b.getI64Type(),
                                        {data->second.getNumElements()}));
    return success();
  }
  Value count = arith::ConstantIndexOp::create(b, loc, 1);
  for (OpFoldResult size : mixedSizes(b, loc, data->first))
    count = arith::MulIOp::create(b, loc, count, indexValue(b, loc, size));
  Value i64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), count);
  node.setOutput(0, tensor::FromElementsOp::create(b, loc, scalarType, i64));
  return success();
}

LogicalResult importConstant(NodeContext &node) {
  if (failed(checkInputCount(node, 0, 0)))
    return failure();
  if (node.node.attribute_size() != 1)
    return node.fail("expects exactly one value attribute");
  const onnx::AttributeProto &attr = node.node.attribute(0);
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  StringRef name = attr.name();
  Value value;
  if (name == "value") {
    FailureOr<Value> imported = node.graph.importInitializer(attr.t());
    if (failed(imported))
      return node.fail("cannot import the value tensor");
    value = *imported;
  } else if (name == "value_float" || name == "value_floats") {
    SmallVector<float> floats;
    if (name == "value_float")
      floats.push_back(attr.f());
    else
      floats.assign(attr.floats().begin(), attr.floats().end());
    SmallVector<int64_t> shape;
    if (name == "value_floats")
      shape.push_back(floats.size());
    auto type = RankedTensorType::get(shape, b.getF32Type());
    value = createConstant(b, loc, DenseElementsAttr::get(type, ArrayRef(floats)));
  } else if (name == "value_int" || name == "value_ints") {
    SmallVector<int64_t> ints;
    if (name == "value_int")
      ints.push_back(attr.i());
    else
      ints.assign(attr.ints().begin(), attr.ints().end());
    SmallVector<int64_t> shape;
    if (name == "value_ints")
      shape.push_back(ints.size());
    value = createIntConstant(b, loc, shape, b.getI64Type(), ints);
  } else {
    return node.fail("unsupported attribute '" + name + "'");
  }
  node.setOutput(0, value);
  return success();
}

LogicalResult importConstantOfShape(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({"value"})))
    return failure();
  auto shapeInput = rankedInput(node, 0);
  if (failed(shapeInput))
    return failure();
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  // The fill value: a one-element tensor attribute, float 0 by default.
  Attribute fill = b.getF32FloatAttr(0);
  if (const onnx::AttributeProto *attr = node.attribute("value")) {
    OpBuilder::InsertionGuard guard(b);
    FailureOr<Value> imported = node.graph.importInitializer(attr->t());
    if (failed(imported))
      return node.fail("cannot import the value tensor");
    DenseElementsAttr dense = getConstantAttr(*imported);
    Operation *op = imported->getDefiningOp();
    if (!dense || dense.getNumElements() != 1) {
      op->erase();
      return node.fail("value must hold exactly one element");
    }
    fill = dense.getValues<Attribute>()[0];
    op->erase();
  }
  auto element = cast<TypedAttr>(fill).getType();
  if (!shapeInput->second.hasStaticShape() || shapeInput->second.getRank() != 1)
    return node.fail("the shape input must be a 1-D tensor of static length");
  if (std::optional<SmallVector<OpFoldResult>> entries =
          getShapeVector(shapeInput->first);
      entries && isDynamicShapeVector(shapeInput->first)) {
    Value empty = emptyTensor(b, loc, *entries, element);
    Value scalar = arith::ConstantOp::create(b, loc, cast<TypedAttr>(fill));
    node.setOutput(0,
                   linalg::FillOp::create(b, loc, scalar, empty).getResult(0));
    return success();
  }
  if (std::optional<SmallVector<int64_t>> shape =
          getConstantInts(shapeInput->first)) {
    if (llvm::any_of(*shape, [](int64_t d) { return d < 0; }))
      return node.fail("shape has a negative size");
    auto type = RankedTensorType::get(*shape, element);
    node.setOutput(0, createConstant(b, loc, DenseElementsAttr::get(type, fill)));
    return success();
  }
  // A shape computed at run time: a filled tensor of dynamic sizes.
  SmallVector<OpFoldResult> sizes;
  for (int64_t i = 0; i < shapeInput->second.getDimSize(0); ++i) {
    Value index = arith::ConstantIndexOp::create(b, loc, i);
    Value v = tensor::ExtractOp::create(b, loc, shapeInput->first, index);
    sizes.push_back(
        arith::IndexCastOp::create(b, loc, b.getIndexType(), v).getResult());
  }
  Value empty = emptyTensor(b, loc, sizes, element);
  Value scalar = arith::ConstantOp::create(b, loc, cast<TypedAttr>(fill));
  node.setOutput(0, linalg::FillOp::create(b, loc, scalar, empty).getResult(0));
  return success();
}

LogicalResult importIdentity(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) || failed(node.checkAttributes({})))
    return failure();
  FailureOr<Value> input = node.input(0);
  if (failed(input))
    return failure();
  node.setOutput(0, *input);
  return success();
}

/// Dropout at inference: the identity. A mask output or a training_mode
/// that is not constant false is not supported.
LogicalResult importDropout(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 3)) ||
      failed(node.checkAttributes({"seed", "ratio", "is_test"})))
    return failure();
  FailureOr<Value> input = node.input(0);
  FailureOr<Value> training = node.optionalInput(2);
  if (failed(input) || failed(training))
    return failure();
  if (*training) {
    std::optional<SmallVector<int64_t>> mode = getConstantInts(*training);
    if (!mode || mode->size() != 1 || (*mode)[0] != 0)
      return node.fail("training_mode must be a constant false");
  }
  if (node.node.output_size() > 1 && !node.node.output(1).empty())
    return node.fail("the mask output is not supported");
  node.setOutput(0, *input);
  return success();
}

/// Range over integers known at import: folded when start, limit and delta
/// are constants; with a symbolic limit (torch.arange(seq_len)) a generic
/// computing start + i * delta over max(0, ceil((limit - start) / delta))
/// elements, which is exactly `limit` for the common start 0, delta 1.
LogicalResult importRange(NodeContext &node) {
  if (failed(checkInputCount(node, 3, 3)) || failed(node.checkAttributes({})))
    return failure();
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  // Each operand is a scalar: known at import (a constant, or a size of a
  // dynamic dimension), or read from its tensor at run time (a limit
  // computed from data, a float range).
  static constexpr StringLiteral names[] = {"start", "limit", "delta"};
  Type element;
  SmallVector<OpFoldResult> known(3);
  SmallVector<Value> scalars(3);
  for (int i = 0; i < 3; ++i) {
    FailureOr<std::pair<Value, RankedTensorType>> operand = rankedInput(node, i);
    if (failed(operand))
      return failure();
    auto [value, type] = *operand;
    if (type.getNumElements() != 1)
      return node.fail(Twine(names[i]) + " must be a scalar, not " +
                       typeName(type));
    if (i == 0)
      element = type.getElementType();
    else if (type.getElementType() != element)
      return node.fail(Twine(names[i]) + " has type " + typeName(type) +
                       " but start has " + typeName(element));
    std::optional<SmallVector<OpFoldResult>> entries;
    if (isSignlessInt(element))
      entries = getShapeVector(value);
    if (entries && entries->size() == 1) {
      known[i] = (*entries)[0];
      continue;
    }
    SmallVector<Value> zeros(type.getRank(),
                             arith::ConstantIndexOp::create(b, loc, 0));
    scalars[i] = tensor::ExtractOp::create(b, loc, value, zeros);
  }
  if (!isSignlessInt(element) && !isFloatType(element))
    return node.fail("unsupported element type " + typeName(element));

  // All three known integers: a constant.
  auto constantOf = [&](int i) {
    return known[i] ? getConstantIntValue(known[i]) : std::nullopt;
  };
  std::optional<int64_t> s = constantOf(0), l = constantOf(1),
                         d = constantOf(2);
  if (d == 0)
    return node.fail("delta is 0");
  if (s && l && d) {
    // In 128 bits: the constants may be anywhere in int64's range.
    __int128 span = __int128(*l) - *s + *d + (*d > 0 ? -1 : 1);
    int64_t count = int64_t(std::clamp<__int128>(
        span / *d, 0, __int128(kMaxFoldElements) + 1));
    if (count > kMaxFoldElements)
      return node.fail("range is too long to fold");
    SmallVector<int64_t> values;
    for (int64_t i = 0; i < count; ++i)
      values.push_back(*s + i * *d);
    node.setOutput(0, createIntConstant(b, loc, {count}, element, values));
    return success();
  }

  // Otherwise the length is max(ceil((limit - start) / delta), 0), computed
  // at run time (index arithmetic for integers, so that sizes of dynamic
  // dimensions stay visible to later shape folding).
  OpFoldResult count;
  if (isSignlessInt(element)) {
    auto asIndex = [&](int i) -> Value {
      if (known[i])
        return getValueOrCreateConstantIndexOp(b, loc, known[i]);
      return arith::IndexCastOp::create(b, loc, b.getIndexType(), scalars[i]);
    };
    Value start = asIndex(0), limit = asIndex(1), delta = asIndex(2);
    // A forward range over sizes that provably does not run backwards
    // (arange(past, past + seq)) has length (limit - start) / delta with no
    // clamp, which keeps it an affine function of the input sizes.
    bool nonNegative =
        d > 0 && known[0] && known[1] &&
        ValueBoundsConstraintSet::compare(
            ValueBoundsConstraintSet::Variable(known[1]),
            ValueBoundsConstraintSet::ComparisonOperator::GE,
            ValueBoundsConstraintSet::Variable(known[0]));
    if (s == 0 && d == 1) {
      count = known[1] ? known[1] : OpFoldResult(limit);
    } else if (nonNegative && d == 1) {
      count = arith::SubIOp::create(b, loc, limit, start).getResult();
    } else {
      Value length = arith::CeilDivSIOp::create(
          b, loc, arith::SubIOp::create(b, loc, limit, start), delta);
      count = nonNegative
                  ? OpFoldResult(length)
                  : arith::MaxSIOp::create(
                        b, loc, length,
                        arith::ConstantIndexOp::create(b, loc, 0))
                        .getResult();
    }
    for (int i = 0; i < 3; ++i)
      if (!scalars[i])
        scalars[i] = arith::IndexCastOp::create(
            b, loc, element,
            getValueOrCreateConstantIndexOp(b, loc, known[i]));
  } else {
    Value length = math::CeilOp::create(
        b, loc,
        arith::DivFOp::create(
            b, loc, arith::SubFOp::create(b, loc, scalars[1], scalars[0]),
            scalars[2]));
    length = arith::MaximumFOp::create(b, loc, length,
                                       createScalar(b, loc, element, 0.0));
    count = arith::IndexCastOp::create(
                b, loc, b.getIndexType(),
                arith::FPToSIOp::create(b, loc, b.getI64Type(), length))
                .getResult();
  }
  Value init = emptyTensor(b, loc, {count}, element);
  Value start = scalars[0], delta = scalars[2];
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), ValueRange(), init,
      {AffineMap::getMultiDimIdentityMap(1, b.getContext())},
      {utils::IteratorType::parallel},
      [&](OpBuilder &nb, Location nl, ValueRange) {
        Value i = linalg::IndexOp::create(nb, nl, 0);
        Value v;
        if (isSignlessInt(element)) {
          i = arith::IndexCastOp::create(nb, nl, element, i);
          v = arith::AddIOp::create(nb, nl, start,
                                    arith::MulIOp::create(nb, nl, i, delta));
        } else {
          i = arith::UIToFPOp::create(
              nb, nl, element,
              arith::IndexCastOp::create(nb, nl, nb.getI64Type(), i));
          v = arith::AddFOp::create(nb, nl, start,
                                    arith::MulFOp::create(nb, nl, i, delta));
        }
        linalg::YieldOp::create(nb, nl, v);
      });
  node.setOutput(0, generic.getResult(0));
  return success();
}

/// Trilu: keeps the upper (j - i >= k) or lower (j - i <= k) triangle of
/// the last two dimensions, zeroing the rest; k is a constant input.
LogicalResult importTrilu(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 2)) ||
      failed(node.checkAttributes({"upper"})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  int64_t k = 0;
  if (node.numInputs() > 1 && !node.node.input(1).empty()) {
    FailureOr<SmallVector<int64_t>> kValue = constantInput(node, 1, "k");
    if (failed(kValue))
      return failure();
    if (kValue->size() != 1)
      return node.fail("k must be a scalar");
    k = (*kValue)[0];
  }
  int64_t rank = input->second.getRank();
  if (rank < 2)
    return node.fail("input must have rank >= 2");
  Type element = input->second.getElementType();
  if (!isFloatType(element) && !isSignlessInt(element))
    return node.fail("input 0 has unsupported element type " +
                     typeName(element));
  bool upper = node.intAttr("upper", 1) != 0;
  FailureOr<Value> value = buildElementwise(
      node, input->first, element,
      [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value i = arith::IndexCastOp::create(
            nb, nl, nb.getI64Type(), linalg::IndexOp::create(nb, nl, rank - 2));
        Value j = arith::IndexCastOp::create(
            nb, nl, nb.getI64Type(), linalg::IndexOp::create(nb, nl, rank - 1));
        Value diff = arith::SubIOp::create(nb, nl, j, i);
        Value keep = arith::CmpIOp::create(
            nb, nl, upper ? arith::CmpIPredicate::sge : arith::CmpIPredicate::sle,
            diff, createScalar(nb, nl, nb.getI64Type(), double(k)));
        return arith::SelectOp::create(nb, nl, keep, a[0],
                                       createScalar(nb, nl, element, 0.0));
      });
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

//===----------------------------------------------------------------------===//
// Concat, Slice, Split, Gather
//===----------------------------------------------------------------------===//

LogicalResult importConcat(NodeContext &node) {
  if (node.numInputs() < 1)
    return node.fail("expects at least one input");
  if (failed(node.checkAttributes({"axis"})))
    return failure();
  if (!node.attribute("axis"))
    return node.fail("needs the 'axis' attribute");
  SmallVector<Value> inputs;
  SmallVector<RankedTensorType> types;
  for (int i = 0; i < node.numInputs(); ++i) {
    auto input = rankedInput(node, i);
    if (failed(input))
      return failure();
    inputs.push_back(input->first);
    types.push_back(input->second);
  }
  int64_t rank = types[0].getRank();
  FailureOr<int64_t> axis = normalizeAxis(node, node.intAttr("axis", 0), rank);
  if (failed(axis))
    return failure();
  for (auto [i, type] : llvm::enumerate(types)) {
    if (type.getRank() != rank)
      return node.fail("input " + Twine(i) + " has rank " +
                       Twine(type.getRank()) + ", input 0 has rank " +
                       Twine(rank));
    if (type.getElementType() != types[0].getElementType())
      return node.fail("inputs have different element types");
    for (int64_t d = 0; d < rank; ++d)
      if (d != *axis && !type.isDynamicDim(d) && !types[0].isDynamicDim(d) &&
          type.getDimSize(d) != types[0].getDimSize(d))
        return node.fail("input " + Twine(i) + " has size " +
                         Twine(type.getDimSize(d)) + " in dimension " +
                         Twine(d) + ", input 0 has " +
                         Twine(types[0].getDimSize(d)));
  }
  if (inputs.size() == 1) {
    node.setOutput(0, inputs[0]);
    return success();
  }
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  // Shape vectors concatenate at import.
  bool allConstant = llvm::all_of(inputs, [](Value v) {
    return getConstantInts(v) && cast<RankedTensorType>(v.getType()).getRank() == 1;
  });
  bool allShapes = llvm::all_of(inputs, [](Value v) {
    return getShapeVector(v) &&
           cast<RankedTensorType>(v.getType()).getRank() == 1;
  });
  if (allShapes && !allConstant) {
    SmallVector<OpFoldResult> entries;
    for (Value v : inputs)
      llvm::append_range(entries, *getShapeVector(v));
    node.setOutput(0, createShapeVector(b, loc, entries,
                                        {int64_t(entries.size())},
                                        types[0].getElementType()));
    return success();
  }
  if (allConstant) {
    SmallVector<int64_t> values;
    for (Value v : inputs)
      llvm::append_range(values, *getConstantInts(v));
    node.setOutput(0, createIntConstant(b, loc, {int64_t(values.size())},
                                        types[0].getElementType(), values));
    return success();
  }
  // tensor.empty + one insert_slice per input (rather than tensor.concat):
  // the result's sizes stay visible to the value-bounds analysis, which the
  // manifest export uses to relate dynamic output sizes to the inputs.
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, inputs[0]);
  for (int64_t d = 0; d < rank; ++d)
    for (RankedTensorType type : types)
      if (d != *axis && !type.isDynamicDim(d))
        sizes[d] = b.getIndexAttr(type.getDimSize(d));
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  SmallVector<OpFoldResult> axisOffsets;
  AffineExpr s0, s1;
  bindSymbols(b.getContext(), s0, s1);
  OpFoldResult total = b.getIndexAttr(0);
  for (Value input : inputs) {
    axisOffsets.push_back(total);
    total = affine::makeComposedFoldedAffineApply(
        b, loc, s0 + s1, {total, tensor::getMixedSize(b, loc, input, *axis)});
  }
  sizes[*axis] = total;
  Value result = emptyTensor(b, loc, sizes, types[0].getElementType());
  for (auto [input, offset] : llvm::zip(inputs, axisOffsets)) {
    SmallVector<OpFoldResult> inSizes = mixedSizes(b, loc, input);
    offsets[*axis] = offset;
    result = tensor::InsertSliceOp::create(b, loc, input, result, offsets,
                                           inSizes, strides);
  }
  node.setOutput(0, result);
  return success();
}

/// Slice starts or ends from the attribute `name` (older opsets) or input
/// `i`: constants, or entries known only at run time (sizes of dynamic
/// dimensions and arithmetic on them, e.g. x[:, :seq_len], or values
/// computed from data).
FailureOr<std::optional<SmallVector<OpFoldResult>>>
boundsFromAttrOrInput(NodeContext &node, StringRef name, int i) {
  if (auto attr = node.intsAttr(name))
    return std::optional<SmallVector<OpFoldResult>>(
        getAsIndexOpFoldResult(node.graph.getContext(), *attr));
  FailureOr<Value> value = node.optionalInput(i);
  if (failed(value))
    return failure();
  if (!*value)
    return std::optional<SmallVector<OpFoldResult>>();
  if (std::optional<SmallVector<OpFoldResult>> entries = getShapeVector(*value))
    return entries;
  // Computed from data: read the entries at run time.
  auto type = dyn_cast<RankedTensorType>(value->getType());
  if (!type || type.getRank() != 1 || type.isDynamicDim(0) ||
      !isSignlessInt(type.getElementType()))
    return node.fail(name + " must be a 1-D integer tensor of static length");
  OpBuilder &b = node.builder();
  SmallVector<OpFoldResult> entries;
  for (int64_t i = 0; i < type.getDimSize(0); ++i) {
    Value entry = tensor::ExtractOp::create(
        b, node.loc, *value,
        ValueRange{arith::ConstantIndexOp::create(b, node.loc, i)});
    entries.push_back(
        arith::IndexCastOp::create(b, node.loc, b.getIndexType(), entry)
            .getResult());
  }
  return std::optional<SmallVector<OpFoldResult>>(entries);
}

/// The clamped start and end of an ONNX slice on a dimension of `size`, as
/// OpFoldResults (static when `size` is): start in [0, size] and end in
/// [0, size] going forward, start in [0, size - 1] and end in [-1, size - 1]
/// going backward.
std::pair<OpFoldResult, OpFoldResult>
sliceBounds(OpBuilder &b, Location loc, OpFoldResult size,
            OpFoldResult startEntry, OpFoldResult endEntry, bool backward) {
  int64_t startHigh = backward ? -1 : 0, endLow = backward ? -1 : 0,
          endHigh = backward ? -1 : 0;
  auto c = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); };
  std::optional<int64_t> startConst = getConstantIntValue(startEntry),
                         endConst = getConstantIntValue(endEntry);
  if (!startConst || !endConst) {
    // A bound known only at run time (a size of a dynamic dimension, or
    // arithmetic on one): clamp at run time, negative counting from the end.
    Value dim = getValueOrCreateConstantIndexOp(b, loc, size);
    auto clampValue = [&](OpFoldResult entry, int64_t low,
                          int64_t high) -> OpFoldResult {
      if (std::optional<int64_t> i = getConstantIntValue(entry))
        entry = b.getIndexAttr(std::clamp<int64_t>(
            *i, std::numeric_limits<int32_t>::min(),
            std::numeric_limits<int32_t>::max()));
      Value v = getValueOrCreateConstantIndexOp(b, loc, entry);
      Value wrapped = arith::AddIOp::create(b, loc, v, dim);
      Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                             v, c(0));
      v = arith::SelectOp::create(b, loc, negative, wrapped, v);
      v = arith::MinSIOp::create(b, loc, v,
                                 arith::AddIOp::create(b, loc, dim, c(high)));
      return arith::MaxSIOp::create(b, loc, v, c(low)).getResult();
    };
    return {clampValue(startEntry, 0, startHigh),
            clampValue(endEntry, endLow, endHigh)};
  }
  int64_t start = *startConst, end = *endConst;
  if (std::optional<int64_t> n = getConstantIntValue(size)) {
    auto clampIndex = [&](int64_t i, int64_t low, int64_t high) {
      if (i < 0)
        i += *n;
      return std::clamp<int64_t>(i, low, std::max(low, *n + high));
    };
    return {b.getIndexAttr(clampIndex(start, 0, startHigh)),
            b.getIndexAttr(clampIndex(end, endLow, endHigh))};
  }
  Value dim = cast<Value>(size);
  // The whole dimension, forward (0 .. INT_MAX) or backward (-1 or INT_MAX
  // .. INT_MIN) as exporters write it, needs no clamping; keeping it exact
  // keeps the result size provably the input's.
  constexpr int64_t big = std::numeric_limits<int32_t>::max();
  if (!backward && start == 0 && end >= big)
    return {b.getIndexAttr(0), dim};
  if (backward && (start == -1 || start >= big) && end <= -big)
    return {arith::SubIOp::create(b, loc, dim, c(1)).getResult(),
            b.getIndexAttr(-1)};
  // Exporters write "to the end" as INT64_MAX/MIN: keep the arithmetic in
  // range.
  auto clampIndex = [&](int64_t i, int64_t low, int64_t high) -> OpFoldResult {
    i = std::clamp<int64_t>(i, std::numeric_limits<int32_t>::min(),
                            std::numeric_limits<int32_t>::max());
    Value upper = arith::AddIOp::create(b, loc, dim, c(high));
    Value v = i >= 0 ? c(i) : arith::AddIOp::create(b, loc, dim, c(i)).getResult();
    v = arith::MinSIOp::create(b, loc, v, upper);
    return arith::MaxSIOp::create(b, loc, v, c(low)).getResult();
  };
  return {clampIndex(start, 0, startHigh), clampIndex(end, endLow, endHigh)};
}

/// max(0, ceil(a / s)) for s != 0.
int64_t sliceLength(int64_t a, int64_t s) {
  int64_t q = a / s;
  if (a % s != 0 && ((a > 0) == (s > 0)))
    ++q;
  return std::max<int64_t>(0, q);
}

LogicalResult importSlice(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 5)) ||
      failed(node.checkAttributes({"starts", "ends", "axes"})))
    return failure();
  auto data = rankedInput(node, 0);
  if (failed(data))
    return failure();
  auto starts = boundsFromAttrOrInput(node, "starts", 1);
  auto ends = boundsFromAttrOrInput(node, "ends", 2);
  auto axes = intsFromAttrOrInput(node, "axes", 3);
  FailureOr<std::optional<SmallVector<int64_t>>> steps =
      std::optional<SmallVector<int64_t>>();
  if (node.numInputs() > 4)
    steps = intsFromAttrOrInput(node, "steps", 4);
  if (failed(starts) || failed(ends) || failed(axes) || failed(steps))
    return failure();
  if (!*starts || !*ends)
    return node.fail("needs starts and ends");
  size_t n = (*starts)->size();
  int64_t rank = data->second.getRank();
  if ((*ends)->size() != n || (*axes && (*axes)->size() != n) ||
      (*steps && (*steps)->size() != n))
    return node.fail("starts, ends, axes and steps have different lengths");

  OpBuilder &b = node.builder();
  Location loc = node.loc;
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, data->first);
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  SmallVector<bool> seen(rank, false);
  bool backward = false;
  for (size_t i = 0; i < n; ++i) {
    int64_t axisValue = *axes ? (**axes)[i] : int64_t(i);
    FailureOr<int64_t> axis = normalizeAxis(node, axisValue, rank);
    if (failed(axis))
      return failure();
    if (seen[*axis])
      return node.fail("axes repeat " + Twine(*axis));
    seen[*axis] = true;
    int64_t step = *steps ? (**steps)[i] : 1;
    if (step == 0)
      return node.fail("steps must not be 0");
    backward |= step < 0;
    auto [begin, end] = sliceBounds(b, loc, sizes[*axis], (**starts)[i],
                                    (**ends)[i], step < 0);
    // size = max(0, ceil((end - begin) / step))
    std::optional<int64_t> b0 = getConstantIntValue(begin),
                           e0 = getConstantIntValue(end);
    if (b0 && e0) {
      sizes[*axis] = b.getIndexAttr(sliceLength(*e0 - *b0, step));
    } else if ((step == 1 && b0 == 0) || (step == -1 && e0 == -1)) {
      // From the first or to the last element: the length is the clamped
      // end (resp. begin + 1), never negative, and for the whole dimension
      // provably its size.
      sizes[*axis] =
          step == 1 ? end
                    : arith::AddIOp::create(
                          b, loc, indexValue(b, loc, begin),
                          arith::ConstantIndexOp::create(b, loc, 1))
                          .getResult();
    } else {
      Value length = arith::SubIOp::create(b, loc, indexValue(b, loc, end),
                                           indexValue(b, loc, begin));
      if (step != 1)
        length = arith::CeilDivSIOp::create(
            b, loc, length, arith::ConstantIndexOp::create(b, loc, step));
      length = arith::MaxSIOp::create(
          b, loc, length, arith::ConstantIndexOp::create(b, loc, 0));
      sizes[*axis] = length;
    }
    offsets[*axis] = begin;
    strides[*axis] = b.getIndexAttr(step);
  }
  // 1-D constants (shape vectors) slice at import.
  if (rank == 1) {
    std::optional<int64_t> offset = getConstantIntValue(offsets[0]),
                           size = getConstantIntValue(sizes[0]),
                           stride = getConstantIntValue(strides[0]);
    if (offset && size && stride && isDynamicShapeVector(data->first)) {
      SmallVector<OpFoldResult> entries = *getShapeVector(data->first), picked;
      for (int64_t i = 0; i < *size; ++i)
        picked.push_back(entries[*offset + i * *stride]);
      node.setOutput(0, createShapeVector(b, loc, picked, {*size},
                                          data->second.getElementType()));
      return success();
    }
    if (offset && size && stride)
      if (Value folded =
              foldIntRemap(b, loc, data->first, {*size},
                           [&](ArrayRef<int64_t> index) {
                             return *offset + index[0] * *stride;
                           })) {
        node.setOutput(0, folded);
        return success();
      }
  }
  if (!backward) {
    node.setOutput(0, tensor::ExtractSliceOp::create(b, loc, data->first,
                                                     offsets, sizes, strides));
    return success();
  }
  // extract_slice has no negative strides: read x[offset + i * step].
  Value init = emptyTensor(b, loc, sizes, data->second.getElementType());
  SmallVector<Value> offsetValues;
  for (OpFoldResult offset : offsets)
    offsetValues.push_back(indexValue(b, loc, offset));
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), ValueRange(), init,
      {AffineMap::getMultiDimIdentityMap(rank, b.getContext())}, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange) {
        SmallVector<Value> at;
        for (int64_t d = 0; d < rank; ++d) {
          Value scaled = arith::MulIOp::create(
              nb, nl, linalg::IndexOp::create(nb, nl, d),
              arith::ConstantIndexOp::create(
                  nb, nl, *getConstantIntValue(strides[d])));
          at.push_back(
              arith::AddIOp::create(nb, nl, offsetValues[d], scaled));
        }
        linalg::YieldOp::create(
            nb, nl, tensor::ExtractOp::create(nb, nl, data->first, at).getResult());
      });
  node.setOutput(0, generic.getResult(0));
  return success();
}

/// Split: sizes from the `split` input (opset 13+) or attribute, else equal
/// parts (the last one smaller from opset 18, like ONNX Runtime).
LogicalResult importSplit(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 2)) ||
      failed(node.checkAttributes({"axis", "split", "num_outputs"})))
    return failure();
  auto data = rankedInput(node, 0);
  auto split = intsFromAttrOrInput(node, "split", 1);
  if (failed(data) || failed(split))
    return failure();
  int64_t rank = data->second.getRank();
  FailureOr<int64_t> axis = normalizeAxis(node, node.intAttr("axis", 0), rank);
  if (failed(axis))
    return failure();
  int64_t outputs = node.node.output_size();
  if (outputs < 1)
    return node.fail("expects at least one output");
  if (node.attribute("num_outputs") &&
      node.intAttr("num_outputs", 0) != outputs)
    return node.fail("num_outputs does not match the number of outputs");
  int64_t dim = data->second.getDimSize(*axis);
  SmallVector<int64_t> parts;
  if (*split) {
    parts = **split;
    if (int64_t(parts.size()) != outputs)
      return node.fail("split has " + Twine(parts.size()) + " entries for " +
                       Twine(outputs) + " outputs");
    int64_t total = 0;
    for (int64_t p : parts) {
      if (p < 0)
        return node.fail("split has a negative size");
      total += p;
    }
    if (!ShapedType::isDynamic(dim) && total != dim)
      return node.fail("split sizes add up to " + Twine(total) +
                       ", the dimension is " + Twine(dim));
  } else {
    if (ShapedType::isDynamic(dim))
      return node.fail("equal splits of a dynamic dimension are not supported");
    int64_t part = (dim + outputs - 1) / outputs;
    if (node.opset() < 18 && dim % outputs != 0)
      return node.fail("dimension " + Twine(dim) + " does not split into " +
                       Twine(outputs) + " equal parts");
    for (int64_t i = 0, left = dim; i < outputs; ++i, left -= part)
      parts.push_back(std::clamp<int64_t>(left, 0, part));
  }
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, data->first);
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  int64_t offset = 0;
  for (int64_t i = 0; i < outputs; ++i) {
    offsets[*axis] = b.getIndexAttr(offset);
    sizes[*axis] = b.getIndexAttr(parts[i]);
    node.setOutput(i, tensor::ExtractSliceOp::create(b, loc, data->first,
                                                     offsets, sizes, strides));
    offset += parts[i];
  }
  return success();
}

LogicalResult importGather(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 2)) ||
      failed(node.checkAttributes({"axis"})))
    return failure();
  auto data = rankedInput(node, 0), indices = rankedInput(node, 1);
  if (failed(data) || failed(indices))
    return failure();
  Type indexElement = indices->second.getElementType();
  if (!indexElement.isSignlessInteger(32) && !indexElement.isSignlessInteger(64))
    return node.fail("indices must be int32 or int64");
  int64_t rank = data->second.getRank();
  if (rank == 0)
    return node.fail("data must have rank >= 1");
  FailureOr<int64_t> axis = normalizeAxis(node, node.intAttr("axis", 0), rank);
  if (failed(axis))
    return failure();
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  int64_t q = indices->second.getRank();
  ArrayRef<int64_t> dataShape = data->second.getShape();
  SmallVector<int64_t> outShape(dataShape.take_front(*axis));
  llvm::append_range(outShape, indices->second.getShape());
  llvm::append_range(outShape, dataShape.drop_front(*axis + 1));

  // Picking entries of a shape vector happens at import, dynamic sizes
  // included.
  if (std::optional<SmallVector<int64_t>> idx = getConstantInts(indices->first);
      idx && rank == 1 && isDynamicShapeVector(data->first)) {
    SmallVector<OpFoldResult> entries = *getShapeVector(data->first), picked;
    int64_t size = entries.size();
    for (int64_t i : *idx) {
      if (i < -size || i >= size)
        return node.fail("index " + Twine(i) + " is out of range for " +
                         Twine(size) + " entries");
      picked.push_back(entries[i < 0 ? i + size : i]);
    }
    node.setOutput(0, createShapeVector(b, loc, picked, outShape,
                                        data->second.getElementType()));
    return success();
  }
  // Picking entries of a shape vector happens at import. Only constant data
  // folds: the strides of another static shape may overflow.
  if (std::optional<SmallVector<int64_t>> idx =
          getConstantInts(indices->first);
      idx && getConstantAttr(data->first)) {
    int64_t size = dataShape[*axis];
    SmallVector<int64_t> dataStrides = stridesOf(dataShape);
    SmallVector<int64_t> idxStrides = stridesOf(indices->second.getShape());
    bool inRange = llvm::all_of(
        *idx, [&](int64_t i) { return i >= -size && i < size; });
    if (inRange)
      if (Value folded = foldIntRemap(
              b, loc, data->first, outShape, [&](ArrayRef<int64_t> index) {
                int64_t flat = 0;
                for (int64_t j = 0; j < q; ++j)
                  flat += index[*axis + j] * idxStrides[j];
                int64_t i = (*idx)[flat];
                int64_t offset = (i < 0 ? i + size : i) * dataStrides[*axis];
                for (int64_t d = 0; d < *axis; ++d)
                  offset += index[d] * dataStrides[d];
                for (int64_t d = *axis + 1; d < rank; ++d)
                  offset += index[d - 1 + q] * dataStrides[d];
                return offset;
              })) {
        node.setOutput(0, folded);
        return success();
      }
  }

  SmallVector<OpFoldResult> dataSizes = mixedSizes(b, loc, data->first);
  SmallVector<OpFoldResult> idxSizes = mixedSizes(b, loc, indices->first);
  SmallVector<OpFoldResult> sizes(
      ArrayRef<OpFoldResult>(dataSizes).take_front(*axis));
  llvm::append_range(sizes, idxSizes);
  llvm::append_range(sizes,
                     ArrayRef<OpFoldResult>(dataSizes).drop_front(*axis + 1));
  int64_t outRank = sizes.size();
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineExpr> idxExprs;
  for (int64_t j = 0; j < q; ++j)
    idxExprs.push_back(getAffineDimExpr(*axis + j, ctx));
  SmallVector<AffineMap> maps = {
      AffineMap::get(outRank, 0, idxExprs, ctx),
      AffineMap::getMultiDimIdentityMap(outRank, ctx)};
  Value axisSize = indexValue(b, loc, dataSizes[*axis]);
  Value init = emptyTensor(b, loc, sizes, data->second.getElementType());
  SmallVector<utils::IteratorType> iterators(outRank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), indices->first, init, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        SmallVector<Value> at;
        for (int64_t d = 0; d < *axis; ++d)
          at.push_back(linalg::IndexOp::create(nb, nl, d));
        at.push_back(normalizeIndex(nb, nl, args[0], axisSize));
        for (int64_t d = *axis + 1; d < rank; ++d)
          at.push_back(linalg::IndexOp::create(nb, nl, d - 1 + q));
        Value v = tensor::ExtractOp::create(nb, nl, data->first, at);
        linalg::YieldOp::create(nb, nl, v);
      });
  node.setOutput(0, generic.getResult(0));
  return success();
}

//===----------------------------------------------------------------------===//
// Expand, Tile
//===----------------------------------------------------------------------===//

LogicalResult importExpand(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 2)) || failed(node.checkAttributes({})))
    return failure();
  auto data = rankedInput(node, 0);
  FailureOr<SmallVector<OpFoldResult>> shape = shapeInput(node, 1, "shape");
  if (failed(data) || failed(shape))
    return failure();
  if (llvm::any_of(*shape, [](OpFoldResult d) {
        return getConstantIntValue(d).value_or(0) < 0;
      }))
    return node.fail("shape has a negative size");
  FailureOr<Value> value = buildElementwise(
      node, data->first, data->second.getElementType(),
      [](OpBuilder &, Location, ValueRange args) { return args[0]; },
      ArrayRef<OpFoldResult>(*shape));
  if (failed(value))
    return failure();
  node.setOutput(0, *value);
  return success();
}

LogicalResult importTile(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 2)) || failed(node.checkAttributes({})))
    return failure();
  auto data = rankedInput(node, 0);
  FailureOr<SmallVector<int64_t>> repeats = constantInput(node, 1, "repeats");
  if (failed(data) || failed(repeats))
    return failure();
  int64_t rank = data->second.getRank();
  if (int64_t(repeats->size()) != rank)
    return node.fail("repeats has " + Twine(repeats->size()) +
                     " entries for rank " + Twine(rank));
  if (llvm::any_of(*repeats, [](int64_t r) { return r < 0; }))
    return node.fail("repeats has a negative entry");
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  SmallVector<OpFoldResult> inSizes = mixedSizes(b, loc, data->first), sizes;
  for (int64_t d = 0; d < rank; ++d) {
    if (std::optional<int64_t> s = getConstantIntValue(inSizes[d]))
      sizes.push_back(b.getIndexAttr(*s * (*repeats)[d]));
    else
      sizes.push_back(arith::MulIOp::create(
                          b, loc, cast<Value>(inSizes[d]),
                          arith::ConstantIndexOp::create(b, loc, (*repeats)[d]))
                          .getResult());
  }
  SmallVector<Value> inDims;
  for (OpFoldResult s : inSizes)
    inDims.push_back(indexValue(b, loc, s));
  Value init = emptyTensor(b, loc, sizes, data->second.getElementType());
  MLIRContext *ctx = b.getContext();
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), ValueRange(), init,
      {AffineMap::getMultiDimIdentityMap(rank, ctx)}, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange) {
        SmallVector<Value> at;
        for (int64_t d = 0; d < rank; ++d)
          at.push_back(arith::RemUIOp::create(
              nb, nl, linalg::IndexOp::create(nb, nl, d), inDims[d]));
        linalg::YieldOp::create(
            nb, nl,
            tensor::ExtractOp::create(nb, nl, data->first, at).getResult());
      });
  node.setOutput(0, generic.getResult(0));
  return success();
}

} // namespace

NodeImporter mlir::moe::onnx_import::lookupShapeImporter(StringRef opType) {
  return llvm::StringSwitch<NodeImporter>(opType)
      .Case("Reshape", importReshape)
      .Case("Flatten", importFlatten)
      .Case("Squeeze", importSqueeze)
      .Case("Unsqueeze", importUnsqueeze)
      .Case("Transpose", importTranspose)
      .Case("Shape", importShape)
      .Case("Size", importSize)
      .Case("Constant", importConstant)
      .Case("ConstantOfShape", importConstantOfShape)
      .Case("Identity", importIdentity)
      .Case("Dropout", importDropout)
      .Case("Range", importRange)
      .Case("Trilu", importTrilu)
      .Case("Concat", importConcat)
      .Case("Slice", importSlice)
      .Case("Split", importSplit)
      .Case("Gather", importGather)
      .Case("Expand", importExpand)
      .Case("Tile", importTile)
      .Default(nullptr);
}
