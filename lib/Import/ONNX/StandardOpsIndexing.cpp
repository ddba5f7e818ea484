//===- StandardOpsIndexing.cpp - TopK, gathers, scatters, OneHot, NonZero ---===//
//
// TopK is two linalg.generic ops: each element's rank (how many elements
// beat it, ties going to the lower index as in ONNX Runtime), then a
// reduction picking the element of each rank below k; that costs N^2 per
// row, cheap for router widths and free of sorting loops. Scatters and
// NonZero are sequential: scf.for nests carrying the result tensor, which
// bufferization updates in place.
//
//===----------------------------------------------------------------------===//

#include "StandardOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/StringSwitch.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

Value indexValue(OpBuilder &b, Location loc, OpFoldResult ofr) {
  return getValueOrCreateConstantIndexOp(b, loc, ofr);
}

LogicalResult checkIndices(NodeContext &node, RankedTensorType type) {
  Type element = type.getElementType();
  if (element.isSignlessInteger(32) || element.isSignlessInteger(64))
    return success();
  return node.fail("indices must be int32 or int64");
}

/// Constant-one steps and zero lower bounds for a loop nest over `sizes`.
struct LoopBounds {
  SmallVector<Value> lbs, ubs, steps;
};

LoopBounds boundsOf(OpBuilder &b, Location loc,
                    ArrayRef<OpFoldResult> sizes) {
  LoopBounds bounds;
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  for (OpFoldResult size : sizes) {
    bounds.lbs.push_back(zero);
    bounds.ubs.push_back(indexValue(b, loc, size));
    bounds.steps.push_back(one);
  }
  return bounds;
}

//===----------------------------------------------------------------------===//
// TopK
//===----------------------------------------------------------------------===//

LogicalResult importTopK(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 2)) ||
      failed(node.checkAttributes({"axis", "largest", "sorted", "k"})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  Type element = input->second.getElementType();
  if (!isFloatType(element) &&
      !(isSignlessInt(element) && !element.isInteger(1)))
    return node.fail("input 0 has unsupported element type " +
                     typeName(element));
  int64_t k;
  if (node.numInputs() > 1) {
    FailureOr<Value> kInput = node.input(1);
    if (failed(kInput))
      return failure();
    std::optional<SmallVector<int64_t>> ks = getConstantInts(*kInput);
    if (!ks || ks->size() != 1)
      return node.fail("K must be a one-element constant");
    k = (*ks)[0];
  } else if (node.attribute("k")) {
    k = node.intAttr("k", 0);
  } else {
    return node.fail("needs K");
  }
  int64_t rank = input->second.getRank();
  if (rank == 0)
    return node.fail("input must have rank >= 1");
  FailureOr<int64_t> axis = normalizeAxis(node, node.intAttr("axis", -1), rank);
  if (failed(axis))
    return failure();
  int64_t n = input->second.getDimSize(*axis);
  if (k < 0 || (!ShapedType::isDynamic(n) && k > n))
    return node.fail("K = " + Twine(k) + " is out of range for a dimension of " +
                     Twine(n));
  bool largest = node.intAttr("largest", 1) != 0;
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  MLIRContext *ctx = b.getContext();
  Value x = input->first;
  Type i64 = b.getI64Type();
  bool isFloat = isFloatType(element);

  // rank[..., i, ...] = #{j : x_j beats x_i}; loops: x's dims (i at `axis`)
  // plus j.
  SmallVector<AffineExpr> own, other;
  for (int64_t d = 0; d < rank; ++d) {
    own.push_back(getAffineDimExpr(d, ctx));
    other.push_back(getAffineDimExpr(d == *axis ? rank : d, ctx));
  }
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, x);
  Value zeros = filledTensor(b, loc, sizes, i64, 0.0);
  SmallVector<utils::IteratorType> rankIterators(rank,
                                                 utils::IteratorType::parallel);
  rankIterators.push_back(utils::IteratorType::reduction);
  AffineMap ownMap = AffineMap::get(rank + 1, 0, own, ctx);
  AffineMap otherMap = AffineMap::get(rank + 1, 0, other, ctx);
  Value ranks =
      linalg::GenericOp::create(
          b, loc, zeros.getType(), ValueRange{x, x}, zeros,
          {ownMap, otherMap, ownMap}, rankIterators,
          [&](OpBuilder &nb, Location nl, ValueRange args) {
            Value xi = args[0], xj = args[1];
            auto cmp = [&](bool greater) -> Value {
              if (isFloat)
                return arith::CmpFOp::create(
                    nb, nl,
                    greater ? arith::CmpFPredicate::OGT
                            : arith::CmpFPredicate::OLT,
                    xj, xi);
              return arith::CmpIOp::create(
                  nb, nl,
                  greater ? arith::CmpIPredicate::sgt
                          : arith::CmpIPredicate::slt,
                  xj, xi);
            };
            Value better = cmp(largest);
            Value equal =
                isFloat ? arith::CmpFOp::create(nb, nl,
                                                arith::CmpFPredicate::OEQ, xj, xi)
                              .getResult()
                        : arith::CmpIOp::create(nb, nl,
                                                arith::CmpIPredicate::eq, xj, xi)
                              .getResult();
            Value before = arith::CmpIOp::create(
                nb, nl, arith::CmpIPredicate::ult,
                linalg::IndexOp::create(nb, nl, rank),
                linalg::IndexOp::create(nb, nl, *axis));
            Value beats = arith::OrIOp::create(
                nb, nl, better, arith::AndIOp::create(nb, nl, equal, before));
            Value one = arith::ExtUIOp::create(nb, nl, i64, beats);
            linalg::YieldOp::create(
                nb, nl, arith::AddIOp::create(nb, nl, args[2], one).getResult());
          })
          .getResult(0);

  // values[..., r, ...] / indices[..., r, ...] = the element of rank r;
  // loops: the output's dims (r at `axis`) plus i.
  SmallVector<OpFoldResult> outSizes = sizes;
  outSizes[*axis] = b.getIndexAttr(k);
  Value values = filledTensor(b, loc, outSizes, element, 0.0);
  Value indices = filledTensor(b, loc, outSizes, i64, 0.0);
  auto pick = linalg::GenericOp::create(
      b, loc, TypeRange{values.getType(), indices.getType()},
      ValueRange{x, ranks}, ValueRange{values, indices},
      {otherMap, otherMap, ownMap, ownMap}, rankIterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value r = arith::IndexCastOp::create(
            nb, nl, i64, linalg::IndexOp::create(nb, nl, *axis));
        Value hit = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq,
                                          args[1], r);
        Value i = arith::IndexCastOp::create(
            nb, nl, i64, linalg::IndexOp::create(nb, nl, rank));
        linalg::YieldOp::create(
            nb, nl,
            ValueRange{
                arith::SelectOp::create(nb, nl, hit, args[0], args[2]),
                arith::SelectOp::create(nb, nl, hit, i, args[3])});
      });
  node.setOutput(0, pick.getResult(0));
  node.setOutput(1, pick.getResult(1));
  return success();
}

//===----------------------------------------------------------------------===//
// GatherElements, OneHot
//===----------------------------------------------------------------------===//

LogicalResult importGatherElements(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 2)) ||
      failed(node.checkAttributes({"axis"})))
    return failure();
  auto data = rankedInput(node, 0), indices = rankedInput(node, 1);
  if (failed(data) || failed(indices) ||
      failed(checkIndices(node, indices->second)))
    return failure();
  int64_t rank = data->second.getRank();
  if (rank == 0 || indices->second.getRank() != rank)
    return node.fail("data and indices must have the same rank >= 1");
  FailureOr<int64_t> axis = normalizeAxis(node, node.intAttr("axis", 0), rank);
  if (failed(axis))
    return failure();
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  MLIRContext *ctx = b.getContext();
  Value axisSize =
      indexValue(b, loc, tensor::getMixedSize(b, loc, data->first, *axis));
  Value init = emptyTensor(b, loc, mixedSizes(b, loc, indices->first),
                           data->second.getElementType());
  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, ctx);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), indices->first, init, {identity, identity},
      iterators, [&](OpBuilder &nb, Location nl, ValueRange args) {
        SmallVector<Value> at;
        for (int64_t d = 0; d < rank; ++d)
          at.push_back(d == *axis
                           ? normalizeIndex(nb, nl, args[0], axisSize)
                           : linalg::IndexOp::create(nb, nl, d).getResult());
        linalg::YieldOp::create(
            nb, nl, tensor::ExtractOp::create(nb, nl, data->first, at).getResult());
      });
  node.setOutput(0, generic.getResult(0));
  return success();
}

/// GatherND: output[b..., i..., r...] = data[b..., indices[b..., i..., :],
/// r...] with the first `batch_dims` dimensions shared; one generic whose
/// body reads the index tuple, then the data element.
LogicalResult importGatherND(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 2)) ||
      failed(node.checkAttributes({"batch_dims"})))
    return failure();
  auto data = rankedInput(node, 0), indices = rankedInput(node, 1);
  if (failed(data) || failed(indices) ||
      failed(checkIndices(node, indices->second)))
    return failure();
  int64_t r = data->second.getRank(), q = indices->second.getRank();
  int64_t batch = node.intAttr("batch_dims", 0);
  if (r < 1 || q < 1)
    return node.fail("data and indices must have rank >= 1");
  int64_t m = indices->second.getShape().back();
  if (ShapedType::isDynamic(m))
    return node.fail("the last dimension of indices must be static");
  if (batch < 0 || batch >= q || batch >= r || batch + m > r)
    return node.fail("batch_dims " + Twine(batch) + " and index length " +
                     Twine(m) + " do not fit data of rank " + Twine(r) +
                     " and indices of rank " + Twine(q));
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  MLIRContext *ctx = b.getContext();
  SmallVector<OpFoldResult> dataSizes = mixedSizes(b, loc, data->first);
  SmallVector<OpFoldResult> idxSizes = mixedSizes(b, loc, indices->first);
  // Output: data's batch dims, indices' middle dims, data's trailing dims.
  SmallVector<OpFoldResult> sizes(idxSizes.begin(), idxSizes.end() - 1);
  sizes.append(dataSizes.begin() + batch + m, dataSizes.end());
  int64_t rank = sizes.size();
  Value init =
      emptyTensor(b, loc, sizes, data->second.getElementType());
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), ValueRange(), init,
      {AffineMap::getMultiDimIdentityMap(rank, ctx)}, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange) {
        SmallVector<Value> loops;
        for (int64_t d = 0; d < rank; ++d)
          loops.push_back(linalg::IndexOp::create(nb, nl, d));
        // indices[loops[0 .. q-2], j] for each j < m.
        SmallVector<Value> at(loops.begin(), loops.begin() + batch);
        SmallVector<Value> idxAt(loops.begin(), loops.begin() + q - 1);
        idxAt.push_back(Value());
        for (int64_t j = 0; j < m; ++j) {
          idxAt.back() = arith::ConstantIndexOp::create(nb, nl, j);
          Value i = tensor::ExtractOp::create(nb, nl, indices->first, idxAt);
          at.push_back(normalizeIndex(
              nb, nl, i, indexValue(nb, nl, dataSizes[batch + j])));
        }
        at.append(loops.begin() + q - 1, loops.end());
        linalg::YieldOp::create(
            nb, nl,
            tensor::ExtractOp::create(nb, nl, data->first, at).getResult());
      });
  node.setOutput(0, generic.getResult(0));
  return success();
}

LogicalResult importOneHot(NodeContext &node) {
  if (failed(checkInputCount(node, 3, 3)) ||
      failed(node.checkAttributes({"axis"})))
    return failure();
  auto indices = rankedInput(node, 0), depthIn = rankedInput(node, 1),
       valuesIn = rankedInput(node, 2);
  if (failed(indices) || failed(depthIn) || failed(valuesIn))
    return failure();
  Type indexElement = indices->second.getElementType();
  if (!isFloatType(indexElement) &&
      !(isSignlessInt(indexElement) && !indexElement.isInteger(1)))
    return node.fail("indices must be numeric");
  // depth is often a float scalar in exports; any numeric constant works.
  std::optional<int64_t> depth;
  if (std::optional<SmallVector<int64_t>> ints = getConstantInts(depthIn->first);
      ints && ints->size() == 1)
    depth = (*ints)[0];
  else if (DenseElementsAttr attr = getConstantAttr(depthIn->first);
           attr && attr.getNumElements() == 1 &&
           isa<FloatType>(attr.getElementType()))
    depth = static_cast<int64_t>(
        (*attr.getValues<APFloat>().begin()).convertToDouble());
  if (!depth || *depth < 1)
    return node.fail("depth must be a positive one-element constant");
  if (valuesIn->second.getRank() != 1 || valuesIn->second.getDimSize(0) != 2)
    return node.fail("values must be a 2-element tensor [off, on]");
  Type element = valuesIn->second.getElementType();
  int64_t outRank = indices->second.getRank() + 1;
  FailureOr<int64_t> axis =
      normalizeAxis(node, node.intAttr("axis", -1), outRank);
  if (failed(axis))
    return failure();
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  MLIRContext *ctx = b.getContext();
  Value offValue = tensor::ExtractOp::create(
      b, loc, valuesIn->first,
      ValueRange{arith::ConstantIndexOp::create(b, loc, 0)});
  Value onValue = tensor::ExtractOp::create(
      b, loc, valuesIn->first,
      ValueRange{arith::ConstantIndexOp::create(b, loc, 1)});
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, indices->first);
  sizes.insert(sizes.begin() + *axis, b.getIndexAttr(*depth));
  SmallVector<AffineExpr> idxExprs;
  for (int64_t d = 0; d < outRank; ++d)
    if (d != *axis)
      idxExprs.push_back(getAffineDimExpr(d, ctx));
  Value init = emptyTensor(b, loc, sizes, element);
  SmallVector<utils::IteratorType> iterators(outRank,
                                             utils::IteratorType::parallel);
  Type i64 = b.getI64Type();
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), indices->first, init,
      {AffineMap::get(outRank, 0, idxExprs, ctx),
       AffineMap::getMultiDimIdentityMap(outRank, ctx)},
      iterators, [&](OpBuilder &nb, Location nl, ValueRange args) {
        // Negative indices count from depth; others never match.
        Value i = convertScalar(nb, nl, args[0], i64);
        Value d = createScalar(nb, nl, i64, double(*depth));
        Value negative = arith::CmpIOp::create(
            nb, nl, arith::CmpIPredicate::slt, i, createScalar(nb, nl, i64, 0));
        i = arith::SelectOp::create(nb, nl, negative,
                                    arith::AddIOp::create(nb, nl, i, d), i);
        Value position = arith::IndexCastOp::create(
            nb, nl, i64, linalg::IndexOp::create(nb, nl, *axis));
        Value hit = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, i,
                                          position);
        linalg::YieldOp::create(
            nb, nl,
            arith::SelectOp::create(nb, nl, hit, onValue, offValue).getResult());
      });
  node.setOutput(0, generic.getResult(0));
  return success();
}

//===----------------------------------------------------------------------===//
// Scatters
//===----------------------------------------------------------------------===//

/// The reduction attribute of ScatterElements/ScatterND: none, add, mul,
/// max, min.
FailureOr<StringRef> scatterReduction(NodeContext &node, Type element) {
  std::string reduction = node.stringAttr("reduction").value_or("none");
  for (StringRef known : {"none", "add", "mul", "max", "min"})
    if (reduction == known) {
      if (known != "none" && element.isInteger(1))
        return node.fail("reduction '" + reduction + "' on bool data");
      return known;
    }
  return node.fail("unsupported reduction '" + reduction + "'");
}

/// `current` combined with `update` by the scatter reduction.
Value combine(OpBuilder &b, Location loc, StringRef reduction, Value current,
              Value update) {
  bool isFloat = isa<FloatType>(update.getType());
  if (reduction == "add")
    return isFloat ? arith::AddFOp::create(b, loc, current, update).getResult()
                   : arith::AddIOp::create(b, loc, current, update).getResult();
  if (reduction == "mul")
    return isFloat ? arith::MulFOp::create(b, loc, current, update).getResult()
                   : arith::MulIOp::create(b, loc, current, update).getResult();
  if (reduction == "max")
    return isFloat
               ? arith::MaximumFOp::create(b, loc, current, update).getResult()
               : arith::MaxSIOp::create(b, loc, current, update).getResult();
  if (reduction == "min")
    return isFloat
               ? arith::MinimumFOp::create(b, loc, current, update).getResult()
               : arith::MinSIOp::create(b, loc, current, update).getResult();
  return update;
}

/// A loop nest over `sizes` carrying `data`; `body` returns the updated
/// tensor for one iteration.
Value scatterLoops(
    OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes, Value data,
    function_ref<Value(OpBuilder &, Location, ValueRange, Value)> body) {
  LoopBounds bounds = boundsOf(b, loc, sizes);
  scf::LoopNest nest = scf::buildLoopNest(
      b, loc, bounds.lbs, bounds.ubs, bounds.steps, data,
      [&](OpBuilder &nb, Location nl, ValueRange ivs,
          ValueRange iterArgs) -> scf::ValueVector {
        return {body(nb, nl, ivs, iterArgs[0])};
      });
  return nest.results.front();
}

LogicalResult importScatterElements(NodeContext &node) {
  if (failed(checkInputCount(node, 3, 3)) ||
      failed(node.checkAttributes({"axis", "reduction"})))
    return failure();
  auto data = rankedInput(node, 0), indices = rankedInput(node, 1),
       updates = rankedInput(node, 2);
  if (failed(data) || failed(indices) || failed(updates) ||
      failed(checkIndices(node, indices->second)))
    return failure();
  int64_t rank = data->second.getRank();
  if (rank == 0 || indices->second.getRank() != rank ||
      updates->second.getRank() != rank)
    return node.fail("data, indices and updates must have the same rank >= 1");
  if (updates->second.getElementType() != data->second.getElementType())
    return node.fail("updates and data have different element types");
  FailureOr<StringRef> reduction =
      scatterReduction(node, data->second.getElementType());
  FailureOr<int64_t> axis = normalizeAxis(node, node.intAttr("axis", 0), rank);
  if (failed(reduction) || failed(axis))
    return failure();
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  Value axisSize =
      indexValue(b, loc, tensor::getMixedSize(b, loc, data->first, *axis));
  // Sequential, in index order: with duplicate indices and no reduction the
  // last update wins, as in ONNX Runtime.
  Value result = scatterLoops(
      b, loc, mixedSizes(b, loc, indices->first), data->first,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value acc) {
        Value index = tensor::ExtractOp::create(nb, nl, indices->first, ivs);
        SmallVector<Value> at(ivs);
        at[*axis] = normalizeIndex(nb, nl, index, axisSize);
        Value update = tensor::ExtractOp::create(nb, nl, updates->first, ivs);
        if (*reduction != "none")
          update = combine(nb, nl, *reduction,
                           tensor::ExtractOp::create(nb, nl, acc, at), update);
        return tensor::InsertOp::create(nb, nl, update, acc, at).getResult();
      });
  node.setOutput(0, result);
  return success();
}

LogicalResult importScatterND(NodeContext &node) {
  if (failed(checkInputCount(node, 3, 3)) ||
      failed(node.checkAttributes({"reduction"})))
    return failure();
  auto data = rankedInput(node, 0), indices = rankedInput(node, 1),
       updates = rankedInput(node, 2);
  if (failed(data) || failed(indices) || failed(updates) ||
      failed(checkIndices(node, indices->second)))
    return failure();
  int64_t r = data->second.getRank(), m = indices->second.getRank();
  int64_t q = m >= 1 ? indices->second.getDimSize(m - 1) : 0;
  if (m < 1 || ShapedType::isDynamic(q) || q < 1 || q > r)
    return node.fail("indices must have a static last dimension in [1, " +
                     Twine(r) + "]");
  if (updates->second.getRank() != m - 1 + r - q)
    return node.fail("updates must have rank " + Twine(m - 1 + r - q));
  if (updates->second.getElementType() != data->second.getElementType())
    return node.fail("updates and data have different element types");
  FailureOr<StringRef> reduction =
      scatterReduction(node, data->second.getElementType());
  if (failed(reduction))
    return failure();
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  SmallVector<OpFoldResult> dataSizes = mixedSizes(b, loc, data->first);
  SmallVector<Value> dims;
  for (int64_t d = 0; d < q; ++d)
    dims.push_back(indexValue(b, loc, dataSizes[d]));
  // One iteration per element of updates: [indices[:-1] dims, data[q:] dims].
  Value result = scatterLoops(
      b, loc, mixedSizes(b, loc, updates->first), data->first,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value acc) {
        SmallVector<Value> at, where(ivs.take_front(m - 1));
        where.push_back(Value());
        for (int64_t d = 0; d < q; ++d) {
          where.back() = arith::ConstantIndexOp::create(nb, nl, d);
          Value index = tensor::ExtractOp::create(nb, nl, indices->first, where);
          at.push_back(normalizeIndex(nb, nl, index, dims[d]));
        }
        llvm::append_range(at, ivs.drop_front(m - 1));
        Value update = tensor::ExtractOp::create(nb, nl, updates->first, ivs);
        if (*reduction != "none")
          update = combine(nb, nl, *reduction,
                           tensor::ExtractOp::create(nb, nl, acc, at), update);
        return tensor::InsertOp::create(nb, nl, update, acc, at).getResult();
      });
  node.setOutput(0, result);
  return success();
}

//===----------------------------------------------------------------------===//
// NonZero
//===----------------------------------------------------------------------===//

/// NonZero: [rank, count] int64 indices of the nonzero elements in row-major
/// order. The count is data-dependent, so the result has a dynamic
/// dimension (a function cannot return it: the manifest cannot size it).
LogicalResult importNonZero(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) || failed(node.checkAttributes({})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  Type element = input->second.getElementType();
  if (!isFloatType(element) && !isSignlessInt(element))
    return node.fail("input 0 has unsupported element type " +
                     typeName(element));
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  Value x = input->first;
  int64_t rank = input->second.getRank();
  Type i64 = b.getI64Type();
  auto isNonZero = [&](OpBuilder &nb, Location nl, Value v) {
    return convertScalar(nb, nl, v, nb.getI1Type());
  };
  SmallVector<int64_t> all = llvm::to_vector(llvm::seq<int64_t>(0, rank));
  // Count the nonzeros: an i64 copy of the mask, summed.
  FailureOr<Value> mask = buildElementwise(
      node, x, i64, [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        return arith::ExtUIOp::create(nb, nl, i64, isNonZero(nb, nl, a[0]));
      });
  if (failed(mask))
    return failure();
  Value countTensor = buildReduction(
      b, loc, *mask, all, 0.0, [](OpBuilder &nb, Location nl, ValueRange a) {
        return arith::AddIOp::create(nb, nl, a[0], a[1]).getResult();
      });
  Value count = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      tensor::ExtractOp::create(b, loc, countTensor, ValueRange{}));
  Value result = emptyTensor(b, loc, {b.getIndexAttr(rank), count}, i64);
  // Walk x in row-major order, appending the index of each nonzero.
  LoopBounds bounds = boundsOf(b, loc, mixedSizes(b, loc, x));
  Value start = arith::ConstantIndexOp::create(b, loc, 0);
  scf::LoopNest nest = scf::buildLoopNest(
      b, loc, bounds.lbs, bounds.ubs, bounds.steps, ValueRange{result, start},
      [&](OpBuilder &nb, Location nl, ValueRange ivs,
          ValueRange iterArgs) -> scf::ValueVector {
        Value v = tensor::ExtractOp::create(nb, nl, x, ivs);
        auto ifOp = scf::IfOp::create(
            nb, nl, isNonZero(nb, nl, v),
            [&](OpBuilder &tb, Location tl) {
              Value acc = iterArgs[0];
              for (int64_t d = 0; d < rank; ++d) {
                Value coord = arith::IndexCastOp::create(tb, tl, i64, ivs[d]);
                Value row = arith::ConstantIndexOp::create(tb, tl, d);
                acc = tensor::InsertOp::create(tb, tl, coord, acc,
                                               ValueRange{row, iterArgs[1]});
              }
              Value next = arith::AddIOp::create(
                  tb, tl, iterArgs[1], arith::ConstantIndexOp::create(tb, tl, 1));
              scf::YieldOp::create(tb, tl, ValueRange{acc, next});
            },
            [&](OpBuilder &eb, Location el) {
              scf::YieldOp::create(eb, el, iterArgs);
            });
        return {ifOp.getResult(0), ifOp.getResult(1)};
      });
  node.setOutput(0, nest.results.front());
  return success();
}

} // namespace

NodeImporter mlir::moe::onnx_import::lookupIndexingImporter(StringRef opType) {
  return llvm::StringSwitch<NodeImporter>(opType)
      .Case("TopK", importTopK)
      .Case("GatherElements", importGatherElements)
      .Case("GatherND", importGatherND)
      .Case("OneHot", importOneHot)
      .Case("ScatterElements", importScatterElements)
      .Case("ScatterND", importScatterND)
      .Case("NonZero", importNonZero)
      .Default(nullptr);
}
