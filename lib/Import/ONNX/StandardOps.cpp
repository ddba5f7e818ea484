//===- StandardOps.cpp - ai.onnx ops into upstream tensor-level ops ---------===//
//
// Each ai.onnx op becomes upstream linalg/tensor/arith/math ops on tensors,
// which the CPU pipeline bufferizes and lowers like the rest of a module.
// This file holds the dispatch and the helpers the importer groups share.
//
//===----------------------------------------------------------------------===//

#include "StandardOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/ReshapeOpsUtils.h"
#include "mlir/IR/Matchers.h"

#include <limits>

using namespace mlir;
using namespace mlir::moe::onnx_import;

LogicalResult mlir::moe::onnx_import::importStandardNode(NodeContext &node) {
  StringRef opType = node.node.op_type();
  // Of com.microsoft, the ops of ONNX Runtime's model builder (attention,
  // rotary embedding, 4-bit weights), and the norms and activations its
  // exporters and transformer optimiser emit around MoE blocks.
  if (node.node.domain() == "com.microsoft") {
    if (NodeImporter importer = lookupContribImporter(opType))
      return importer(node);
    if (!llvm::is_contained({"SimplifiedLayerNormalization",
                             "SkipLayerNormalization",
                             "SkipSimplifiedLayerNormalization", "Gelu",
                             "FastGelu", "BiasGelu", "QuickGelu"},
                            opType))
      return node.fail("op is not supported yet");
  }
  for (auto lookup : {lookupElementwiseImporter, lookupShapeImporter,
                      lookupComputeImporter, lookupIndexingImporter})
    if (NodeImporter importer = lookup(opType))
      return importer(node);
  return node.fail("op is not supported yet");
}

//===----------------------------------------------------------------------===//
// Types and operands
//===----------------------------------------------------------------------===//

FailureOr<RankedTensorType>
mlir::moe::onnx_import::rankedType(NodeContext &node, Value value,
                                   const Twine &what) {
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!type)
    return node.fail(what + " must be a ranked tensor");
  return type;
}

FailureOr<std::pair<Value, RankedTensorType>>
mlir::moe::onnx_import::rankedInput(NodeContext &node, int i) {
  FailureOr<Value> value = node.input(i);
  if (failed(value))
    return failure();
  FailureOr<RankedTensorType> type =
      rankedType(node, *value, "input " + Twine(i));
  if (failed(type))
    return failure();
  return std::make_pair(*value, *type);
}

LogicalResult mlir::moe::onnx_import::checkInputCount(NodeContext &node,
                                                      int min, int max) {
  int n = node.numInputs();
  if (n >= min && n <= max)
    return success();
  if (min == max)
    return node.fail("expects " + Twine(min) + " inputs, got " + Twine(n));
  return node.fail("expects " + Twine(min) + " to " + Twine(max) +
                   " inputs, got " + Twine(n));
}

FailureOr<int64_t> mlir::moe::onnx_import::normalizeAxis(NodeContext &node,
                                                         int64_t axis,
                                                         int64_t rank,
                                                         StringRef what) {
  if (axis < -rank || axis >= rank)
    return node.fail(what + " " + Twine(axis) + " is out of range for rank " +
                     Twine(rank));
  return axis < 0 ? axis + rank : axis;
}

bool mlir::moe::onnx_import::isFloatType(Type type) {
  return isa<FloatType>(type);
}

std::string mlir::moe::onnx_import::typeName(Type type) {
  std::string name;
  llvm::raw_string_ostream os(name);
  os << type;
  return name;
}

bool mlir::moe::onnx_import::isSignlessInt(Type type) {
  return type.isSignlessInteger();
}

DenseElementsAttr mlir::moe::onnx_import::getConstantAttr(Value value) {
  DenseElementsAttr attr;
  if (value && matchPattern(value, m_Constant(&attr)))
    return attr;
  return {};
}

std::optional<SmallVector<int64_t>>
mlir::moe::onnx_import::getConstantInts(Value value) {
  DenseElementsAttr attr = getConstantAttr(value);
  if (!attr || !attr.getElementType().isSignlessInteger() ||
      attr.getNumElements() > kMaxFoldElements)
    return std::nullopt;
  bool isBool = attr.getElementType().isInteger(1);
  SmallVector<int64_t> values;
  for (const APInt &v : attr.getValues<APInt>())
    values.push_back(isBool ? int64_t(v.getZExtValue()) : v.getSExtValue());
  return values;
}

Value mlir::moe::onnx_import::createConstant(OpBuilder &b, Location loc,
                                             DenseElementsAttr attr) {
  return arith::ConstantOp::create(b, loc, attr.getType(), attr);
}

Value mlir::moe::onnx_import::createIntConstant(OpBuilder &b, Location loc,
                                                ArrayRef<int64_t> shape,
                                                Type type,
                                                ArrayRef<int64_t> values) {
  unsigned width = type.getIntOrFloatBitWidth();
  SmallVector<APInt> bits;
  for (int64_t v : values)
    bits.push_back(APInt(width, width == 1 ? (v != 0) : v, /*isSigned=*/width > 1,
                         /*implicitTrunc=*/true));
  auto tensorType = RankedTensorType::get(shape, type);
  return createConstant(b, loc, DenseElementsAttr::get(tensorType, bits));
}

Value mlir::moe::onnx_import::createScalar(OpBuilder &b, Location loc,
                                           Type type, double v) {
  if (auto floatType = dyn_cast<FloatType>(type))
    return arith::ConstantOp::create(b, loc, type,
                                     b.getFloatAttr(floatType, v));
  unsigned width = type.getIntOrFloatBitWidth();
  APInt bits;
  if (std::isinf(v))
    bits = v > 0 ? APInt::getSignedMaxValue(width)
                 : APInt::getSignedMinValue(width);
  else
    bits = APInt(width, static_cast<int64_t>(v), /*isSigned=*/width > 1,
                 /*implicitTrunc=*/true);
  return arith::ConstantOp::create(b, loc, type, b.getIntegerAttr(type, bits));
}

SmallVector<OpFoldResult>
mlir::moe::onnx_import::mixedSizes(OpBuilder &b, Location loc, Value value) {
  return tensor::getMixedSizes(b, loc, value);
}

Value mlir::moe::onnx_import::emptyTensor(OpBuilder &b, Location loc,
                                          ArrayRef<OpFoldResult> sizes,
                                          Type elementType) {
  return tensor::EmptyOp::create(b, loc, sizes, elementType);
}

Value mlir::moe::onnx_import::filledTensor(OpBuilder &b, Location loc,
                                           ArrayRef<OpFoldResult> sizes,
                                           Type elementType, double v) {
  Value empty = emptyTensor(b, loc, sizes, elementType);
  Value scalar = createScalar(b, loc, elementType, v);
  return linalg::FillOp::create(b, loc, scalar, empty).getResult(0);
}

SmallVector<int64_t>
mlir::moe::onnx_import::staticSizes(ArrayRef<OpFoldResult> sizes) {
  SmallVector<int64_t> shape;
  for (OpFoldResult size : sizes)
    shape.push_back(getConstantIntValue(size).value_or(ShapedType::kDynamic));
  return shape;
}

//===----------------------------------------------------------------------===//
// Builders
//===----------------------------------------------------------------------===//

namespace {

/// The numpy broadcast of `shapes` (aligned at their last dimension); a
/// dimension is dynamic when no shape has a static size other than 1 there
/// and some shape is dynamic. Fails when two static sizes differ.
FailureOr<SmallVector<int64_t>>
broadcastShapes(ArrayRef<ArrayRef<int64_t>> shapes) {
  size_t rank = 0;
  for (ArrayRef<int64_t> shape : shapes)
    rank = std::max(rank, shape.size());
  SmallVector<int64_t> result(rank, 1);
  for (size_t d = 0; d < rank; ++d) {
    bool dynamic = false;
    std::optional<int64_t> fixed;
    for (ArrayRef<int64_t> shape : shapes) {
      if (d + shape.size() < rank)
        continue;
      int64_t size = shape[d + shape.size() - rank];
      if (ShapedType::isDynamic(size)) {
        dynamic = true;
      } else if (size != 1) {
        if (fixed && *fixed != size)
          return failure();
        fixed = size;
      }
    }
    result[d] = fixed ? *fixed : dynamic ? ShapedType::kDynamic : 1;
  }
  return result;
}

std::string shapeString(ArrayRef<int64_t> shape) {
  std::string s = "[";
  for (auto [i, d] : llvm::enumerate(shape))
    s += (i ? ", " : "") +
         (ShapedType::isDynamic(d) ? std::string("?") : std::to_string(d));
  return s + "]";
}

} // namespace

FailureOr<Value> mlir::moe::onnx_import::buildElementwise(
    NodeContext &node, ValueRange inputs, Type resultElement, ScalarBody body,
    std::optional<ArrayRef<OpFoldResult>> broadcastTo) {
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  SmallVector<RankedTensorType> types;
  SmallVector<ArrayRef<int64_t>> shapes;
  for (auto [i, input] : llvm::enumerate(inputs)) {
    FailureOr<RankedTensorType> type =
        rankedType(node, input, "input " + Twine(i));
    if (failed(type))
      return failure();
    types.push_back(*type);
    shapes.push_back(type->getShape());
  }
  SmallVector<int64_t> targetShape;
  if (broadcastTo) {
    targetShape = staticSizes(*broadcastTo);
    shapes.push_back(targetShape);
  }
  FailureOr<SmallVector<int64_t>> shape = broadcastShapes(shapes);
  if (failed(shape)) {
    std::string list;
    for (ArrayRef<int64_t> s : shapes)
      list += (list.empty() ? "" : " and ") + shapeString(s);
    return node.fail("shapes " + list + " do not broadcast");
  }
  int64_t rank = shape->size();

  // Dynamic result sizes come from the first input that is dynamic there.
  SmallVector<OpFoldResult> sizes;
  for (int64_t d = 0; d < rank; ++d) {
    if (!ShapedType::isDynamic((*shape)[d])) {
      sizes.push_back(b.getIndexAttr((*shape)[d]));
      continue;
    }
    for (auto [input, type] : llvm::zip(inputs, types)) {
      int64_t j = d - (rank - type.getRank());
      if (j >= 0 && type.isDynamicDim(j)) {
        sizes.push_back(tensor::DimOp::create(b, loc, input, j).getResult());
        break;
      }
    }
    if (int64_t(sizes.size()) == d)
      sizes.push_back((*broadcastTo)[d - (rank - broadcastTo->size())]);
  }

  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps;
  for (RankedTensorType type : types) {
    SmallVector<AffineExpr> exprs;
    int64_t offset = rank - type.getRank();
    for (int64_t j = 0; j < type.getRank(); ++j)
      exprs.push_back(type.getDimSize(j) == 1 && (*shape)[j + offset] != 1
                          ? getAffineConstantExpr(0, ctx)
                          : getAffineDimExpr(j + offset, ctx));
    maps.push_back(AffineMap::get(rank, 0, exprs, ctx));
  }
  maps.push_back(AffineMap::getMultiDimIdentityMap(rank, ctx));
  Value init = emptyTensor(b, loc, sizes, resultElement);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), inputs, init, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value result = body(nb, nl, args.drop_back());
        linalg::YieldOp::create(nb, nl, result);
      });
  return generic.getResult(0);
}

Value mlir::moe::onnx_import::buildReduction(OpBuilder &b, Location loc,
                                             Value input, ArrayRef<int64_t> axes,
                                             double init, ScalarBody combine,
                                             ValueRange extras, ScalarBody map) {
  auto type = cast<RankedTensorType>(input.getType());
  int64_t rank = type.getRank();
  MLIRContext *ctx = b.getContext();
  SmallVector<OpFoldResult> inSizes = mixedSizes(b, loc, input), outSizes;
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    if (llvm::is_contained(axes, d)) {
      iterators.push_back(utils::IteratorType::reduction);
      continue;
    }
    iterators.push_back(utils::IteratorType::parallel);
    outSizes.push_back(inSizes[d]);
    outExprs.push_back(getAffineDimExpr(d, ctx));
  }
  Value acc = filledTensor(b, loc, outSizes, type.getElementType(), init);
  AffineMap outMap = AffineMap::get(rank, 0, outExprs, ctx);
  SmallVector<AffineMap> maps = {AffineMap::getMultiDimIdentityMap(rank, ctx)};
  SmallVector<Value> operands = {input};
  for (Value extra : extras) {
    maps.push_back(outMap);
    operands.push_back(extra);
  }
  maps.push_back(outMap);
  auto generic = linalg::GenericOp::create(
      b, loc, acc.getType(), operands, acc, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value x = map ? map(nb, nl, args.drop_back()) : args[0];
        Value result = combine(nb, nl, {args.back(), x});
        linalg::YieldOp::create(nb, nl, result);
      });
  return generic.getResult(0);
}

Value mlir::moe::onnx_import::buildWithReduced(OpBuilder &b, Location loc,
                                               Value input,
                                               ArrayRef<int64_t> axes,
                                               ValueRange reduced,
                                               Type resultElement,
                                               ScalarBody body) {
  auto type = cast<RankedTensorType>(input.getType());
  int64_t rank = type.getRank();
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineExpr> keptExprs;
  for (int64_t d = 0; d < rank; ++d)
    if (!llvm::is_contained(axes, d))
      keptExprs.push_back(getAffineDimExpr(d, ctx));
  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, ctx);
  SmallVector<AffineMap> maps = {identity};
  SmallVector<Value> operands = {input};
  for (Value r : reduced) {
    maps.push_back(AffineMap::get(rank, 0, keptExprs, ctx));
    operands.push_back(r);
  }
  maps.push_back(identity);
  Value init = emptyTensor(b, loc, mixedSizes(b, loc, input), resultElement);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), operands, init, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(nb, nl, body(nb, nl, args.drop_back()));
      });
  return generic.getResult(0);
}

Value mlir::moe::onnx_import::reshapeTo(OpBuilder &b, Location loc,
                                        Value value,
                                        ArrayRef<OpFoldResult> sizes) {
  auto srcType = cast<RankedTensorType>(value.getType());
  auto dstType =
      RankedTensorType::get(staticSizes(sizes), srcType.getElementType());
  if (srcType == dstType && srcType.hasStaticShape())
    return value;
  // Constants reshape for free.
  if (DenseElementsAttr attr = getConstantAttr(value);
      attr && dstType.hasStaticShape() &&
      attr.getNumElements() == dstType.getNumElements())
    return createConstant(b, loc, attr.reshape(dstType));
  if (srcType.getRank() != dstType.getRank()) {
    if (auto reassociation =
            getReassociationIndicesForReshape(srcType, dstType)) {
      if (srcType.getRank() > dstType.getRank())
        return tensor::CollapseShapeOp::create(b, loc, dstType, value,
                                               *reassociation);
      // A static size expanded into a group with a size known only at run
      // time (e.g. [64] -> [?, 64] where ? is a computed 1): expand_shape
      // wants the source size dynamic too.
      SmallVector<int64_t> srcShape(srcType.getShape());
      for (auto [i, group] : llvm::enumerate(*reassociation))
        if (llvm::any_of(group, [&](int64_t d) {
              return dstType.isDynamicDim(d);
            }))
          srcShape[i] = ShapedType::kDynamic;
      if (srcShape != srcType.getShape())
        value = tensor::CastOp::create(
            b, loc, RankedTensorType::get(srcShape, srcType.getElementType()),
            value);
      return tensor::ExpandShapeOp::create(b, loc, dstType, value,
                                           *reassociation, sizes);
    }
  }
  // Otherwise through one dimension: collapse everything, expand again.
  Value flat = value;
  int64_t srcRank = srcType.getRank();
  if (srcRank == 0) {
    auto flatType = RankedTensorType::get({1}, srcType.getElementType());
    flat = tensor::ExpandShapeOp::create(
        b, loc, flatType, value, ArrayRef<ReassociationIndices>{},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
  } else if (srcRank > 1) {
    ReassociationIndices all = llvm::to_vector(llvm::seq<int64_t>(0, srcRank));
    flat = tensor::CollapseShapeOp::create(b, loc, value,
                                           ArrayRef<ReassociationIndices>{all});
  }
  // A dynamic source reshaped to a static shape: say so before expanding
  // (expand_shape cannot turn a dynamic size into static ones).
  if (dstType.hasStaticShape() &&
      cast<RankedTensorType>(flat.getType()).isDynamicDim(0))
    flat = tensor::CastOp::create(
        b, loc,
        RankedTensorType::get({dstType.getNumElements()},
                              srcType.getElementType()),
        flat);
  int64_t dstRank = dstType.getRank();
  if (dstRank == 0)
    return tensor::CollapseShapeOp::create(b, loc, dstType, flat,
                                           ArrayRef<ReassociationIndices>{});
  if (dstRank == 1)
    return flat.getType() == dstType
               ? flat
               : tensor::CastOp::create(b, loc, dstType, flat).getResult();
  if (!dstType.hasStaticShape() &&
      !cast<RankedTensorType>(flat.getType()).isDynamicDim(0))
    flat = tensor::CastOp::create(
        b, loc,
        RankedTensorType::get({ShapedType::kDynamic}, srcType.getElementType()),
        flat);
  ReassociationIndices all = llvm::to_vector(llvm::seq<int64_t>(0, dstRank));
  return tensor::ExpandShapeOp::create(b, loc, dstType, flat,
                                       ArrayRef<ReassociationIndices>{all},
                                       sizes);
}

Value mlir::moe::onnx_import::convertScalar(OpBuilder &b, Location loc, Value v,
                                            Type to) {
  Type from = v.getType();
  if (from == to)
    return v;
  if (to.isInteger(1)) {
    Value zero = createScalar(b, loc, from, 0);
    if (isa<FloatType>(from))
      return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, v, zero);
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, v, zero);
  }
  unsigned fromWidth = from.getIntOrFloatBitWidth();
  unsigned toWidth = to.getIntOrFloatBitWidth();
  if (isa<FloatType>(from) && isa<FloatType>(to)) {
    // f16 <-> bf16 share a width: go through f32.
    if (fromWidth == toWidth)
      return convertScalar(b, loc, convertScalar(b, loc, v, b.getF32Type()),
                           to);
    if (fromWidth < toWidth)
      return arith::ExtFOp::create(b, loc, to, v);
    return arith::TruncFOp::create(b, loc, to, v);
  }
  if (from.isInteger(1)) {
    if (isa<FloatType>(to))
      return arith::UIToFPOp::create(b, loc, to, v);
    return arith::ExtUIOp::create(b, loc, to, v);
  }
  if (isa<FloatType>(to))
    return arith::SIToFPOp::create(b, loc, to, v);
  if (isa<FloatType>(from))
    return arith::FPToSIOp::create(b, loc, to, v);
  if (fromWidth < toWidth)
    return arith::ExtSIOp::create(b, loc, to, v);
  return arith::TruncIOp::create(b, loc, to, v);
}

Value mlir::moe::onnx_import::normalizeIndex(OpBuilder &b, Location loc,
                                             Value index, Value size) {
  Value i = arith::IndexCastOp::create(b, loc, b.getIndexType(), index);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value negative =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, zero);
  i = arith::SelectOp::create(b, loc, negative,
                              arith::AddIOp::create(b, loc, i, size), i);
  Value last = arith::SubIOp::create(b, loc, size,
                                     arith::ConstantIndexOp::create(b, loc, 1));
  i = arith::MinSIOp::create(b, loc, i, last);
  return arith::MaxSIOp::create(b, loc, i, zero);
}

//===----------------------------------------------------------------------===//
// Import-time folding
//===----------------------------------------------------------------------===//

Value mlir::moe::onnx_import::foldIntElementwise(
    OpBuilder &b, Location loc, ValueRange inputs, Type resultElement,
    function_ref<int64_t(ArrayRef<int64_t>)> fn) {
  if (!resultElement.isSignlessInteger())
    return {};
  SmallVector<SmallVector<int64_t>> values;
  SmallVector<ArrayRef<int64_t>> shapes;
  for (Value input : inputs) {
    std::optional<SmallVector<int64_t>> ints = getConstantInts(input);
    if (!ints)
      return {};
    values.push_back(std::move(*ints));
    shapes.push_back(cast<RankedTensorType>(input.getType()).getShape());
  }
  FailureOr<SmallVector<int64_t>> shape = broadcastShapes(shapes);
  if (failed(shape))
    return {};
  int64_t count = 1;
  for (int64_t d : *shape)
    count *= d;
  if (count > kMaxFoldElements)
    return {};
  int64_t rank = shape->size();
  // Per input, the stride of each result dimension (0 where broadcast).
  SmallVector<SmallVector<int64_t>> strides;
  for (ArrayRef<int64_t> s : shapes) {
    SmallVector<int64_t> st(rank, 0);
    int64_t stride = 1;
    for (int64_t j = s.size() - 1; j >= 0; --j) {
      int64_t d = j + rank - s.size();
      st[d] = s[j] == 1 ? 0 : stride;
      stride *= s[j];
    }
    strides.push_back(std::move(st));
  }
  SmallVector<int64_t> result, index(rank, 0), args(inputs.size());
  for (int64_t n = 0; n < count; ++n) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      int64_t offset = 0;
      for (int64_t d = 0; d < rank; ++d)
        offset += index[d] * strides[i][d];
      args[i] = values[i][offset];
    }
    result.push_back(fn(args));
    for (int64_t d = rank - 1; d >= 0; --d) {
      if (++index[d] < (*shape)[d])
        break;
      index[d] = 0;
    }
  }
  return createIntConstant(b, loc, *shape, resultElement, result);
}

std::optional<SmallVector<OpFoldResult>>
mlir::moe::onnx_import::getShapeVector(Value value) {
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!type || type.getRank() > 1 || !type.hasStaticShape() ||
      !type.getElementType().isSignlessInteger() ||
      type.getElementType().isInteger(1) ||
      type.getNumElements() > kMaxFoldElements)
    return std::nullopt;
  Builder b(value.getContext());
  if (std::optional<SmallVector<int64_t>> ints = getConstantInts(value)) {
    SmallVector<OpFoldResult> entries;
    for (int64_t v : *ints)
      entries.push_back(b.getIndexAttr(v));
    return entries;
  }
  Operation *op = value.getDefiningOp();
  if (!op)
    return std::nullopt;
  // Reshapes between ranks 0 and 1 keep the entries.
  if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp, tensor::CastOp>(op))
    return getShapeVector(op->getOperand(0));
  auto fromElements = dyn_cast<tensor::FromElementsOp>(op);
  if (!fromElements)
    return std::nullopt;
  SmallVector<OpFoldResult> entries;
  for (Value element : fromElements.getElements()) {
    APInt c;
    if (matchPattern(element, m_ConstantInt(&c))) {
      entries.push_back(b.getIndexAttr(c.getSExtValue()));
      continue;
    }
    auto cast = element.getDefiningOp<arith::IndexCastOp>();
    if (!cast || !cast.getIn().getType().isIndex())
      return std::nullopt;
    entries.push_back(cast.getIn());
  }
  return entries;
}

bool mlir::moe::onnx_import::isDynamicShapeVector(Value value) {
  std::optional<SmallVector<OpFoldResult>> entries = getShapeVector(value);
  return entries && llvm::any_of(*entries, [](OpFoldResult e) {
           return !getConstantIntValue(e);
         });
}

Value mlir::moe::onnx_import::createShapeVector(OpBuilder &b, Location loc,
                                                ArrayRef<OpFoldResult> entries,
                                                ArrayRef<int64_t> shape,
                                                Type element) {
  SmallVector<int64_t> constants;
  for (OpFoldResult e : entries)
    if (std::optional<int64_t> c = getConstantIntValue(e))
      constants.push_back(*c);
  if (constants.size() == entries.size())
    return createIntConstant(b, loc, shape, element, constants);
  SmallVector<Value> elements;
  for (OpFoldResult e : entries) {
    if (std::optional<int64_t> c = getConstantIntValue(e))
      elements.push_back(createScalar(b, loc, element, double(*c)));
    else
      elements.push_back(
          arith::IndexCastOp::create(b, loc, element, cast<Value>(e)));
  }
  return tensor::FromElementsOp::create(
      b, loc, RankedTensorType::get(shape, element), elements);
}

Value mlir::moe::onnx_import::foldShapeElementwise(
    OpBuilder &b, Location loc, ValueRange inputs, Type resultElement,
    function_ref<OpFoldResult(OpBuilder &, Location, ArrayRef<OpFoldResult>)>
        fn) {
  if (!resultElement.isSignlessInteger() || resultElement.isInteger(1) ||
      !llvm::any_of(inputs, isDynamicShapeVector))
    return {};
  SmallVector<SmallVector<OpFoldResult>> entries;
  int64_t length = 1, rank = 0;
  for (Value input : inputs) {
    std::optional<SmallVector<OpFoldResult>> e = getShapeVector(input);
    if (!e)
      return {};
    int64_t n = e->size();
    rank = std::max(rank, cast<RankedTensorType>(input.getType()).getRank());
    if (n != 1 && length != 1 && n != length)
      return {};
    if (n != 1)
      length = n;
    entries.push_back(std::move(*e));
  }
  SmallVector<OpFoldResult> result;
  for (int64_t i = 0; i < length; ++i) {
    SmallVector<OpFoldResult> args;
    for (const SmallVector<OpFoldResult> &e : entries)
      args.push_back(e.size() == 1 ? e[0] : e[i]);
    result.push_back(fn(b, loc, args));
  }
  SmallVector<int64_t> shape;
  if (rank == 1)
    shape.push_back(length);
  return createShapeVector(b, loc, result, shape, resultElement);
}
