//===- StandardOpsCompute.cpp - Contractions, reductions, normalisations ----===//
//
// MatMul and Gemm (linalg.matmul or a contraction linalg.generic), Softmax,
// the Reduce* ops and the layer norms, built from the reduction helpers of
// StandardOps.h. Everything accumulates in the input's element type (f32
// for f32 models, as ONNX Runtime's CPU kernels do).
//
//===----------------------------------------------------------------------===//

#include "ConstantData.h"
#include "StandardOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/StringSwitch.h"

#include <cstring>
#include <map>
#include <limits>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Value add(OpBuilder &b, Location loc, Value x, Value y) {
  if (isa<FloatType>(x.getType()))
    return arith::AddFOp::create(b, loc, x, y);
  return arith::AddIOp::create(b, loc, x, y);
}

Value mul(OpBuilder &b, Location loc, Value x, Value y) {
  if (isa<FloatType>(x.getType()))
    return arith::MulFOp::create(b, loc, x, y);
  return arith::MulIOp::create(b, loc, x, y);
}

Value maximum(OpBuilder &b, Location loc, Value x, Value y) {
  if (isa<FloatType>(x.getType()))
    return arith::MaximumFOp::create(b, loc, x, y);
  return arith::MaxSIOp::create(b, loc, x, y);
}

Value minimum(OpBuilder &b, Location loc, Value x, Value y) {
  if (isa<FloatType>(x.getType()))
    return arith::MinimumFOp::create(b, loc, x, y);
  return arith::MinSIOp::create(b, loc, x, y);
}

LogicalResult checkNumeric(NodeContext &node, Type element, const Twine &what) {
  if (isFloatType(element) ||
      (isSignlessInt(element) && !element.isInteger(1)))
    return success();
  return node.fail(what + " has unsupported element type " + typeName(element));
}

/// The number of elements `axes` of `value` span, as a scalar of `type`.
Value countOf(OpBuilder &b, Location loc, Value value, ArrayRef<int64_t> axes,
              Type type) {
  int64_t fixed = 1;
  Value dynamic;
  for (int64_t d : axes) {
    OpFoldResult size = tensor::getMixedSize(b, loc, value, d);
    if (std::optional<int64_t> s = getConstantIntValue(size)) {
      fixed *= *s;
      continue;
    }
    Value v = cast<Value>(size);
    dynamic = dynamic ? arith::MulIOp::create(b, loc, dynamic, v).getResult() : v;
  }
  if (!dynamic)
    return createScalar(b, loc, type, double(fixed));
  dynamic = arith::MulIOp::create(b, loc, dynamic,
                                  arith::ConstantIndexOp::create(b, loc, fixed));
  Value i64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), dynamic);
  return convertScalar(b, loc, i64, type);
}

/// `reduced` (the result of a reduction over `axes` of `input`) with the
/// reduced dimensions put back as 1s.
Value keepDims(OpBuilder &b, Location loc, Value input, ArrayRef<int64_t> axes,
               Value reduced) {
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, input);
  for (int64_t d : axes)
    sizes[d] = b.getIndexAttr(1);
  return reshapeTo(b, loc, reduced, sizes);
}

} // namespace

Value mlir::moe::onnx_import::buildGemmContraction(OpBuilder &b, Location loc,
                                                   Value a, Value bv,
                                                   bool transA, bool transB) {
  MLIRContext *ctx = b.getContext();
  Type element = getElementTypeOrSelf(a.getType());
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  SmallVector<AffineMap> maps = {
      AffineMap::get(3, 0, transA ? ArrayRef{k, m} : ArrayRef{m, k}, ctx),
      AffineMap::get(3, 0, transB ? ArrayRef{n, k} : ArrayRef{k, n}, ctx),
      AffineMap::get(3, 0, {m, n}, ctx)};
  Value init = filledTensor(
      b, loc,
      {tensor::getMixedSize(b, loc, a, transA ? 1 : 0),
       tensor::getMixedSize(b, loc, bv, transB ? 0 : 1)},
      element, 0.0);
  return linalg::GenericOp::create(
             b, loc, init.getType(), ValueRange{a, bv}, init, maps,
             {utils::IteratorType::parallel, utils::IteratorType::parallel,
              utils::IteratorType::reduction},
             [](OpBuilder &nb, Location nl, ValueRange args) {
               linalg::YieldOp::create(
                   nb, nl,
                   add(nb, nl, args[2], mul(nb, nl, args[0], args[1])));
             })
      .getResult(0);
}

Value mlir::moe::onnx_import::buildRowsTimesWeightNK(OpBuilder &b, Location loc,
                                                     Value a, Value weight) {
  auto aType = cast<RankedTensorType>(a.getType());
  int64_t rank = aType.getRank();
  SmallVector<OpFoldResult> aSizes = mixedSizes(b, loc, a);
  if (rank < 2 ||
      llvm::count_if(aType.getShape().drop_back(), ShapedType::isDynamic) > 1) {
    // One contraction over every leading dimension instead.
    MLIRContext *ctx = b.getContext();
    int64_t loops = rank + 1;
    SmallVector<AffineExpr> aExprs, outExprs;
    for (int64_t d = 0; d < rank - 1; ++d) {
      aExprs.push_back(getAffineDimExpr(d, ctx));
      outExprs.push_back(getAffineDimExpr(d, ctx));
    }
    AffineExpr n = getAffineDimExpr(rank - 1, ctx), k = getAffineDimExpr(rank, ctx);
    aExprs.push_back(k);
    outExprs.push_back(n);
    SmallVector<OpFoldResult> sizes(ArrayRef<OpFoldResult>(aSizes).drop_back());
    sizes.push_back(tensor::getMixedSize(b, loc, weight, 0));
    Value init = filledTensor(b, loc, sizes, aType.getElementType(), 0.0);
    SmallVector<utils::IteratorType> iterators(loops - 1,
                                               utils::IteratorType::parallel);
    iterators.push_back(utils::IteratorType::reduction);
    return linalg::GenericOp::create(
               b, loc, init.getType(), ValueRange{a, weight}, init,
               {AffineMap::get(loops, 0, aExprs, ctx),
                AffineMap::get(loops, 0, {n, k}, ctx),
                AffineMap::get(loops, 0, outExprs, ctx)},
               iterators,
               [](OpBuilder &nb, Location nl, ValueRange args) {
                 linalg::YieldOp::create(
                     nb, nl,
                     add(nb, nl, args[2], mul(nb, nl, args[0], args[1])));
               })
        .getResult(0);
  }
  Value rows = a;
  if (rank > 2) {
    ReassociationIndices lead = llvm::to_vector(llvm::seq<int64_t>(0, rank - 1));
    rows = tensor::CollapseShapeOp::create(
        b, loc, a, ArrayRef<ReassociationIndices>{lead, {rank - 1}});
  }
  Value product = buildGemmContraction(b, loc, rows, weight,
                                       /*transA=*/false, /*transB=*/true);
  if (rank == 2)
    return product;
  SmallVector<OpFoldResult> sizes(ArrayRef<OpFoldResult>(aSizes).drop_back());
  sizes.push_back(tensor::getMixedSize(b, loc, product, 1));
  return reshapeTo(b, loc, product, sizes);
}

namespace {

//===----------------------------------------------------------------------===//
// MatMul, Gemm
//===----------------------------------------------------------------------===//

/// A rank-2 constant transposed at import, or null for bool constants
/// (bit-packed). Exporters store MatMul weights [K, N]; the register-tiled
/// GEMM kernel of the pipeline reads them [N, K].
Value transposeConstant(OpBuilder &b, Location loc, Value weight,
                        ModelFiles &store, StringRef name) {
  std::optional<ConstantData> data = getConstantData(weight);
  if (!data || data->type.getRank() != 2)
    return {};
  return arith::ConstantOp::create(
             b, loc, cast<TypedAttr>(transposeInnerDims(*data, name.str() + ".transposed", store)))
      .getResult();
}

/// MatMul by a constant [K, N] weight: the weight is transposed at import
/// so that the product is the transposed-B GEMM the pipeline vectorises
/// (A's leading dimensions collapsed into rows, or, with several dynamic
/// ones, which the expand back could not lower, as rows of the kernel's
/// contraction). Null when A does not fit (rank < 2).
Value buildConstantWeightMatmul(OpBuilder &b, Location loc, Value a,
                                Value weight, ModelFiles &store,
                                StringRef name) {
  auto aType = cast<RankedTensorType>(a.getType());
  int64_t rank = aType.getRank();
  if (!isFloatType(aType.getElementType()) || rank < 2 ||
      cast<RankedTensorType>(weight.getType()).getRank() != 2)
    return {};
  Value transposed = transposeConstant(b, loc, weight, store, name);
  if (!transposed)
    return {};
  return buildRowsTimesWeightNK(b, loc, a, transposed);
}

/// C[batch..., m, n] = sum_k A[batch..., m, k] * B[batch..., k, n] with
/// numpy broadcasting of the batch dimensions.
FailureOr<Value> buildBatchMatmul(NodeContext &node, Value a, Value bv) {
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  auto aType = cast<RankedTensorType>(a.getType());
  auto bType = cast<RankedTensorType>(bv.getType());
  Type element = aType.getElementType();
  int64_t ra = aType.getRank(), rb = bType.getRank();
  int64_t k1 = aType.getDimSize(ra - 1), k2 = bType.getDimSize(rb - 2);
  if (!ShapedType::isDynamic(k1) && !ShapedType::isDynamic(k2) && k1 != k2)
    return node.fail("inner dimensions differ: " + Twine(k1) + " and " +
                     Twine(k2));
  SmallVector<OpFoldResult> aSizes = mixedSizes(b, loc, a);
  SmallVector<OpFoldResult> bSizes = mixedSizes(b, loc, bv);
  if (ra == 2 && rb == 2) {
    Value init = filledTensor(b, loc, {aSizes[0], bSizes[1]}, element, 0.0);
    return linalg::MatmulOp::create(b, loc, ValueRange{a, bv}, init)
        .getResult(0);
  }
  // Batch dimensions: aligned at the right, broadcast where one side is 1.
  int64_t nb = std::max(ra, rb) - 2;
  SmallVector<OpFoldResult> sizes;
  SmallVector<int64_t> batch;
  for (int64_t d = 0; d < nb; ++d) {
    int64_t ja = d - (nb - (ra - 2)), jb = d - (nb - (rb - 2));
    int64_t sa = ja >= 0 ? aType.getDimSize(ja) : 1;
    int64_t sb = jb >= 0 ? bType.getDimSize(jb) : 1;
    if (sa != 1 && sb != 1 && !ShapedType::isDynamic(sa) &&
        !ShapedType::isDynamic(sb) && sa != sb)
      return node.fail("batch dimensions " + Twine(sa) + " and " + Twine(sb) +
                       " do not broadcast");
    // A static size other than 1 wins; else a dynamic one; else 1.
    if (sa != 1 && !ShapedType::isDynamic(sa))
      sizes.push_back(aSizes[ja]);
    else if (sb != 1 && !ShapedType::isDynamic(sb))
      sizes.push_back(bSizes[jb]);
    else if (ShapedType::isDynamic(sa))
      sizes.push_back(aSizes[ja]);
    else if (ShapedType::isDynamic(sb))
      sizes.push_back(bSizes[jb]);
    else
      sizes.push_back(b.getIndexAttr(1));
    batch.push_back(getConstantIntValue(sizes.back()).value_or(
        ShapedType::kDynamic));
  }
  sizes.push_back(aSizes[ra - 2]);
  sizes.push_back(bSizes[rb - 1]);
  MLIRContext *ctx = b.getContext();
  int64_t loops = nb + 3;
  AffineExpr m = getAffineDimExpr(nb, ctx), n = getAffineDimExpr(nb + 1, ctx),
             k = getAffineDimExpr(nb + 2, ctx);
  auto operandMap = [&](RankedTensorType type, AffineExpr row, AffineExpr col) {
    SmallVector<AffineExpr> exprs;
    int64_t offset = nb - (type.getRank() - 2);
    for (int64_t j = 0; j < type.getRank() - 2; ++j)
      exprs.push_back(type.getDimSize(j) == 1 && batch[j + offset] != 1
                          ? getAffineConstantExpr(0, ctx)
                          : getAffineDimExpr(j + offset, ctx));
    exprs.push_back(row);
    exprs.push_back(col);
    return AffineMap::get(loops, 0, exprs, ctx);
  };
  SmallVector<AffineExpr> outExprs;
  for (int64_t d = 0; d < nb + 2; ++d)
    outExprs.push_back(getAffineDimExpr(d, ctx));
  SmallVector<AffineMap> maps = {operandMap(aType, m, k),
                                 operandMap(bType, k, n),
                                 AffineMap::get(loops, 0, outExprs, ctx)};
  SmallVector<utils::IteratorType> iterators(loops - 1,
                                             utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  Value init = filledTensor(b, loc, sizes, element, 0.0);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), ValueRange{a, bv}, init, maps, iterators,
      [](OpBuilder &nb2, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb2, nl, add(nb2, nl, args[2], mul(nb2, nl, args[0], args[1])));
      });
  return generic.getResult(0);
}

LogicalResult importMatMul(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 2)) || failed(node.checkAttributes({})))
    return failure();
  auto lhs = rankedInput(node, 0), rhs = rankedInput(node, 1);
  if (failed(lhs) || failed(rhs))
    return failure();
  Type element = lhs->second.getElementType();
  if (rhs->second.getElementType() != element)
    return node.fail("inputs have different element types");
  if (failed(checkNumeric(node, element, "input 0")))
    return failure();
  if (lhs->second.getRank() < 1 || rhs->second.getRank() < 1)
    return node.fail("inputs must have rank >= 1");
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  if (int64_t k = lhs->second.getShape().back(), kb = rhs->second.getDimSize(0);
      rhs->second.getRank() == 2 && lhs->second.getRank() >= 2 &&
      !ShapedType::isDynamic(kb) && (ShapedType::isDynamic(k) || k == kb)) {
    // A's inner size may only be known at run time (a Reshape to
    // [batch, seq, -1] before an output projection): MatMul requires it to
    // be the weight's K (as any other lowering of this MatMul would assume).
    Value a = lhs->first;
    if (ShapedType::isDynamic(k)) {
      SmallVector<int64_t> shape(lhs->second.getShape());
      shape.back() = kb;
      a = tensor::CastOp::create(
          b, loc, RankedTensorType::get(shape, lhs->second.getElementType()),
          a);
    }
    if (Value product = buildConstantWeightMatmul(b, loc, a, rhs->first,
                                                  node.graph.files(),
                                                  node.node.input(1))) {
      if (std::optional<ConstantData> weight = getConstantData(rhs->first))
        node.graph.files().evict(weight->bytes);
      node.setOutput(0, product);
      // The weight is held transposed now.
      node.graph.releaseInitializer(node.node.input(1));
      return success();
    }
  }
  // Vectors take part as [1, K] and [K, 1]; the extra dimension goes again.
  Value a = lhs->first, bv = rhs->first;
  bool vectorA = lhs->second.getRank() == 1, vectorB = rhs->second.getRank() == 1;
  if (vectorA)
    a = reshapeTo(b, loc, a, {b.getIndexAttr(1), mixedSizes(b, loc, a)[0]});
  if (vectorB)
    bv = reshapeTo(b, loc, bv, {mixedSizes(b, loc, bv)[0], b.getIndexAttr(1)});
  FailureOr<Value> result = buildBatchMatmul(node, a, bv);
  if (failed(result))
    return failure();
  if (vectorA || vectorB) {
    SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, *result);
    int64_t rank = sizes.size();
    if (vectorB)
      sizes.erase(sizes.begin() + rank - 1);
    if (vectorA)
      sizes.erase(sizes.begin() + rank - 2);
    *result = reshapeTo(b, loc, *result, sizes);
  }
  node.setOutput(0, *result);
  return success();
}

/// Einsum: one linalg.generic whose loops are the equation's labels, the
/// output's first (parallel) and then the summed ones (reduction); each
/// input's map lists its labels' loops (a repeated label reads a diagonal,
/// an ellipsis dimension of static size 1 broadcasts), and the body
/// accumulates the product of the inputs.
LogicalResult importEinsum(NodeContext &node) {
  if (failed(node.checkAttributes({"equation"})))
    return failure();
  std::optional<std::string> attr = node.stringAttr("equation");
  if (!attr)
    return node.fail("needs an equation");
  std::string equation;
  for (char c : *attr)
    if (c != ' ')
      equation.push_back(c);
  StringRef lhs = equation, rhs;
  bool explicitOutput = false;
  if (size_t arrow = equation.find("->"); arrow != std::string::npos) {
    lhs = StringRef(equation).take_front(arrow);
    rhs = StringRef(equation).drop_front(arrow + 2);
    explicitOutput = true;
  }
  SmallVector<StringRef> terms;
  lhs.split(terms, ',');
  if ((int)terms.size() != node.numInputs() || terms.empty())
    return node.fail("equation '" + *attr + "' names " + Twine(terms.size()) +
                     " inputs but the node has " + Twine(node.numInputs()));

  // A term as its labels, with the ellipsis as '.' (one entry).
  auto parseTerm = [&](StringRef term,
                       SmallVector<char> &labels) -> LogicalResult {
    for (size_t i = 0; i < term.size(); ++i) {
      if (term.substr(i).starts_with("...")) {
        if (llvm::is_contained(labels, '.'))
          return node.fail("term '" + term + "' has two ellipses");
        labels.push_back('.');
        i += 2;
      } else if (llvm::isAlpha(term[i])) {
        labels.push_back(term[i]);
      } else {
        return node.fail("equation '" + *attr + "' has an invalid character '" +
                         Twine(term[i]) + "'");
      }
    }
    return success();
  };

  SmallVector<Value> inputs;
  SmallVector<RankedTensorType> types;
  SmallVector<SmallVector<char>> inputLabels(terms.size());
  int64_t ellipsisRank = 0;
  for (auto [i, term] : llvm::enumerate(terms)) {
    auto operand = rankedInput(node, i);
    if (failed(operand) || failed(parseTerm(term, inputLabels[i])))
      return failure();
    inputs.push_back(operand->first);
    types.push_back(operand->second);
    if (operand->second.getElementType() != types[0].getElementType())
      return node.fail("inputs have different element types");
    int64_t named = llvm::count_if(inputLabels[i], [](char c) { return c != '.'; });
    bool hasEllipsis = llvm::is_contained(inputLabels[i], '.');
    int64_t rank = operand->second.getRank();
    if (rank < named || (!hasEllipsis && rank != named))
      return node.fail("term '" + term + "' does not match input " + Twine(i) +
                       " of rank " + Twine(rank));
    ellipsisRank = std::max(ellipsisRank, rank - named);
  }
  Type element = types[0].getElementType();
  if (failed(checkNumeric(node, element, "input 0")))
    return failure();

  // Output labels: given, or (implicit form) the ellipsis then every label
  // used once, alphabetically.
  SmallVector<char> outLabels;
  if (explicitOutput) {
    if (failed(parseTerm(rhs, outLabels)))
      return failure();
  } else {
    outLabels.push_back('.');
    std::map<char, int> uses;
    for (auto &labels : inputLabels)
      for (char c : labels)
        if (c != '.')
          ++uses[c];
    for (auto [c, n] : uses)
      if (n == 1)
        outLabels.push_back(c);
  }
  bool anyEllipsis = llvm::any_of(inputLabels, [](auto &labels) {
    return llvm::is_contained(labels, '.');
  });
  if (anyEllipsis && ellipsisRank > 0 && !llvm::is_contained(outLabels, '.'))
    return node.fail("the output of '" + *attr +
                     "' drops the ellipsis dimensions");

  // Loops: output dimensions (the ellipsis expanded), then summed labels.
  // Ellipsis dimension j is loop label -(j + 1).
  SmallVector<int> loops;
  auto expand = [&](ArrayRef<char> labels, int64_t ellipsisDims) {
    SmallVector<int> dims;
    for (char c : labels) {
      if (c != '.') {
        dims.push_back(c);
        continue;
      }
      for (int64_t j = ellipsisRank - ellipsisDims; j < ellipsisRank; ++j)
        dims.push_back(-int(j) - 1);
    }
    return dims;
  };
  SmallVector<int> outDims = expand(outLabels, ellipsisRank);
  llvm::SmallDenseSet<int> outSet(outDims.begin(), outDims.end());
  if (outSet.size() != outDims.size())
    return node.fail("the output of '" + *attr + "' repeats a label");
  loops = outDims;
  SmallVector<SmallVector<int>> inputDims;
  for (auto [i, labels] : llvm::enumerate(inputLabels)) {
    int64_t named = llvm::count_if(labels, [](char c) { return c != '.'; });
    inputDims.push_back(expand(labels, types[i].getRank() - named));
    for (int d : inputDims.back())
      if (!llvm::is_contained(loops, d)) {
        if (d < 0)
          return node.fail("ellipsis dimensions must appear in the output");
        loops.push_back(d);
      }
  }
  for (int d : outDims)
    if (llvm::none_of(inputDims, [&](auto &dims) {
          return llvm::is_contained(dims, d);
        }))
      return node.fail("output label '" + Twine(char(d)) +
                       "' is not an input label");

  // Each loop's size: the first input dimension with its label that is not
  // a broadcast 1; static sizes must agree.
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  MLIRContext *ctx = b.getContext();
  SmallVector<OpFoldResult> loopSizes(loops.size());
  SmallVector<int64_t> staticLoop(loops.size(), ShapedType::kDynamic);
  for (auto [i, dims] : llvm::enumerate(inputDims))
    for (auto [axis, d] : llvm::enumerate(dims)) {
      size_t l = llvm::find(loops, d) - loops.begin();
      int64_t size = types[i].getDimSize(axis);
      if (!ShapedType::isDynamic(size) && !ShapedType::isDynamic(staticLoop[l]) &&
          size != staticLoop[l] && !(d < 0 && (size == 1 || staticLoop[l] == 1)))
        return node.fail("label '" + (d < 0 ? Twine("...") : Twine(char(d))) +
                         "' has sizes " + Twine(staticLoop[l]) + " and " +
                         Twine(size));
      if (!loopSizes[l] || (staticLoop[l] == 1 && size != 1)) {
        loopSizes[l] = tensor::getMixedSize(b, loc, inputs[i], axis);
        staticLoop[l] = size;
      }
    }

  SmallVector<AffineMap> maps;
  for (auto [i, dims] : llvm::enumerate(inputDims)) {
    SmallVector<AffineExpr> exprs;
    for (auto [axis, d] : llvm::enumerate(dims)) {
      size_t l = llvm::find(loops, d) - loops.begin();
      bool broadcast = d < 0 && types[i].getDimSize(axis) == 1 &&
                       staticLoop[l] != 1;
      exprs.push_back(broadcast ? getAffineConstantExpr(0, ctx)
                                : getAffineDimExpr(l, ctx));
    }
    maps.push_back(AffineMap::get(loops.size(), 0, exprs, ctx));
  }
  SmallVector<AffineExpr> outExprs;
  SmallVector<OpFoldResult> outSizes;
  for (size_t l = 0; l < outDims.size(); ++l) {
    outExprs.push_back(getAffineDimExpr(l, ctx));
    outSizes.push_back(loopSizes[l]);
  }
  maps.push_back(AffineMap::get(loops.size(), 0, outExprs, ctx));
  SmallVector<utils::IteratorType> iterators(loops.size(),
                                             utils::IteratorType::reduction);
  std::fill_n(iterators.begin(), outDims.size(), utils::IteratorType::parallel);
  Value init = filledTensor(b, loc, outSizes, element, 0.0);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), inputs, init, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value product = args[0];
        for (Value v : args.drop_front().drop_back())
          product = mul(nb, nl, product, v);
        linalg::YieldOp::create(nb, nl, add(nb, nl, args.back(), product));
      });
  node.setOutput(0, generic.getResult(0));
  return success();
}

/// Gemm: alpha * A' B' + beta * C. A' B' is one contraction generic whose
/// maps follow transA/transB (transB = 1, nn.Linear's layout, is what the
/// pipeline's register-tiled GEMM kernel recognises).
LogicalResult importGemm(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 3)) ||
      failed(node.checkAttributes({"alpha", "beta", "transA", "transB"})))
    return failure();
  auto lhs = rankedInput(node, 0), rhs = rankedInput(node, 1);
  if (failed(lhs) || failed(rhs))
    return failure();
  FailureOr<Value> c = node.optionalInput(2);
  if (failed(c))
    return failure();
  if (lhs->second.getRank() != 2 || rhs->second.getRank() != 2)
    return node.fail("A and B must have rank 2");
  Type element = lhs->second.getElementType();
  if (rhs->second.getElementType() != element ||
      (*c && getElementTypeOrSelf(c->getType()) != element))
    return node.fail("inputs have different element types");
  if (failed(checkNumeric(node, element, "A")))
    return failure();
  bool transA = node.intAttr("transA", 0), transB = node.intAttr("transB", 0);
  double alpha = node.floatAttr("alpha").value_or(1.0);
  double beta = node.floatAttr("beta").value_or(1.0);
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  int64_t ka = lhs->second.getDimSize(transA ? 0 : 1);
  int64_t kb = rhs->second.getDimSize(transB ? 1 : 0);
  if (!ShapedType::isDynamic(ka) && !ShapedType::isDynamic(kb) && ka != kb)
    return node.fail("inner dimensions differ: " + Twine(ka) + " and " +
                     Twine(kb));
  // A constant B in [K, N] is stored transposed, for the GEMM kernel.
  Value bv = rhs->first;
  bool transposedB = false;
  if (!transB && isFloatType(element))
    if (Value transposed = transposeConstant(b, loc, bv, node.graph.files(),
                                              node.node.input(1))) {
      bv = transposed;
      transB = transposedB = true;
    }
  Value product =
      buildGemmContraction(b, loc, lhs->first, bv, transA, transB);
  if (transposedB) {
    if (std::optional<ConstantData> weight = getConstantData(rhs->first))
      node.graph.files().evict(weight->bytes);
    node.graph.releaseInitializer(node.node.input(1));
  }
  if (!*c && alpha == 1.0) {
    node.setOutput(0, product);
    return success();
  }
  SmallVector<Value> operands = {product};
  if (*c && beta != 0.0)
    operands.push_back(*c);
  FailureOr<Value> result = buildElementwise(
      node, operands, element, [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value y = a[0];
        if (alpha != 1.0)
          y = mul(nb, nl, y, createScalar(nb, nl, element, alpha));
        if (a.size() > 1) {
          Value bias = a[1];
          if (beta != 1.0)
            bias = mul(nb, nl, bias, createScalar(nb, nl, element, beta));
          y = add(nb, nl, y, bias);
        }
        return y;
      },
      ArrayRef<OpFoldResult>(mixedSizes(b, loc, product)));
  if (failed(result))
    return failure();
  node.setOutput(0, *result);
  return success();
}

//===----------------------------------------------------------------------===//
// Softmax
//===----------------------------------------------------------------------===//

/// Softmax and LogSoftmax: exp(x - max) / sum, over `axis` (opset 13+) or,
/// before opset 13, over every dimension from `axis` on (the input coerced
/// to 2-D).
template <bool IsLog>
LogicalResult importSoftmax(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({"axis"})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  Type element = input->second.getElementType();
  if (!isFloatType(element))
    return node.fail("expects a float input");
  int64_t rank = input->second.getRank();
  if (rank == 0)
    return node.fail("input must have rank >= 1");
  bool perAxis = node.opset() >= 13;
  FailureOr<int64_t> axis =
      normalizeAxis(node, node.intAttr("axis", perAxis ? -1 : 1), rank);
  if (failed(axis))
    return failure();
  SmallVector<int64_t> axes = {*axis};
  if (!perAxis)
    axes = llvm::to_vector(llvm::seq<int64_t>(*axis, rank));
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  Value x = input->first;
  Value max = buildReduction(b, loc, x, axes, -kInf,
                             [](OpBuilder &nb, Location nl, ValueRange a) {
                               return maximum(nb, nl, a[0], a[1]);
                             });
  Value shifted = buildWithReduced(
      b, loc, x, axes, max, element,
      [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        return arith::SubFOp::create(nb, nl, a[0], a[1]);
      });
  Value sum = buildReduction(
      b, loc, shifted, axes, 0.0,
      [](OpBuilder &nb, Location nl, ValueRange a) {
        return add(nb, nl, a[0], a[1]);
      },
      {}, [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        return math::ExpOp::create(nb, nl, a[0]);
      });
  Value result = buildWithReduced(
      b, loc, shifted, axes, sum, element,
      [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        if (IsLog)
          return arith::SubFOp::create(nb, nl, a[0],
                                       math::LogOp::create(nb, nl, a[1]));
        return arith::DivFOp::create(nb, nl, math::ExpOp::create(nb, nl, a[0]),
                                     a[1]);
      });
  node.setOutput(0, result);
  return success();
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

enum class Reduce {
  Sum,
  Mean,
  Max,
  Min,
  Prod,
  SumSquare,
  L1,
  L2,
  LogSum,
  LogSumExp
};

/// The sorted, unique, non-negative reduction axes: the `axes` attribute
/// (before opset 13/18) or input 1; all axes when none are given, unless
/// noop_with_empty_axes asks for none.
FailureOr<SmallVector<int64_t>> reductionAxes(NodeContext &node, int64_t rank) {
  std::optional<SmallVector<int64_t>> list = node.intsAttr("axes");
  if (!list) {
    FailureOr<Value> axesInput = node.optionalInput(1);
    if (failed(axesInput))
      return failure();
    if (*axesInput) {
      list = getConstantInts(*axesInput);
      if (!list)
        return node.fail("axes must be a constant");
    }
  }
  SmallVector<int64_t> axes;
  if (!list || list->empty()) {
    if (node.intAttr("noop_with_empty_axes", 0))
      return axes;
    return llvm::to_vector(llvm::seq<int64_t>(0, rank));
  }
  for (int64_t a : *list) {
    FailureOr<int64_t> axis = normalizeAxis(node, a, rank, "axes entry");
    if (failed(axis))
      return failure();
    axes.push_back(*axis);
  }
  llvm::sort(axes);
  axes.erase(llvm::unique(axes), axes.end());
  return axes;
}

template <Reduce Kind>
LogicalResult importReduce(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 2)) ||
      failed(node.checkAttributes({"axes", "keepdims", "noop_with_empty_axes"})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  Type element = input->second.getElementType();
  if (failed(checkNumeric(node, element, "input 0")))
    return failure();
  // A square root or a logarithm of integers would truncate; exporters
  // write these reductions on floats.
  constexpr bool kFloatOnly =
      Kind == Reduce::L2 || Kind == Reduce::LogSum || Kind == Reduce::LogSumExp;
  if (kFloatOnly && !isFloatType(element))
    return node.fail("expects a float input");
  int64_t rank = input->second.getRank();
  FailureOr<SmallVector<int64_t>> axes = reductionAxes(node, rank);
  if (failed(axes))
    return failure();
  Value x = input->first;
  // With no axis left to reduce, ONNX still applies the element map
  // (|x|, x*x, exp) and the final function (sqrt, log) to each element;
  // only the plain reductions return their input.
  if (axes->empty() &&
      (Kind == Reduce::Sum || Kind == Reduce::Mean || Kind == Reduce::Max ||
       Kind == Reduce::Min || Kind == Reduce::Prod)) {
    node.setOutput(0, x);
    return success();
  }
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  bool keep = node.intAttr("keepdims", 1);
  // Whole-tensor reductions of shape vectors (element counts) fold.
  if (std::optional<SmallVector<int64_t>> values = getConstantInts(x);
      values && !axes->empty() && int64_t(axes->size()) == rank &&
      !values->empty() &&
      (Kind == Reduce::Sum || Kind == Reduce::Max || Kind == Reduce::Min ||
       Kind == Reduce::Prod || Kind == Reduce::SumSquare ||
       Kind == Reduce::L1)) {
    int64_t acc =
        Kind == Reduce::SumSquare || Kind == Reduce::L1 ? 0 : (*values)[0];
    for (auto [i, v] : llvm::enumerate(*values)) {
      if (Kind == Reduce::SumSquare)
        acc += v * v;
      else if (Kind == Reduce::L1)
        acc += v < 0 ? -v : v;
      else if (i == 0)
        continue;
      else if (Kind == Reduce::Sum)
        acc += v;
      else if (Kind == Reduce::Prod)
        acc *= v;
      else if (Kind == Reduce::Max)
        acc = std::max(acc, v);
      else if (Kind == Reduce::Min)
        acc = std::min(acc, v);
    }
    SmallVector<int64_t> shape(keep ? rank : 0, 1);
    node.setOutput(0, createIntConstant(b, loc, shape, element, {acc}));
    return success();
  }
  // The element count of a shape vector with dynamic sizes.
  if ((Kind == Reduce::Prod || Kind == Reduce::Sum) &&
      isDynamicShapeVector(x) && int64_t(axes->size()) == rank) {
    SmallVector<OpFoldResult> entries = *getShapeVector(x);
    Value acc = arith::ConstantIndexOp::create(b, loc, Kind == Reduce::Prod);
    for (OpFoldResult e : entries) {
      Value v = getValueOrCreateConstantIndexOp(b, loc, e);
      acc = Kind == Reduce::Prod
                ? arith::MulIOp::create(b, loc, acc, v).getResult()
                : arith::AddIOp::create(b, loc, acc, v).getResult();
    }
    SmallVector<int64_t> shape(keep ? rank : 0, 1);
    node.setOutput(0, createShapeVector(b, loc, {OpFoldResult(acc)}, shape,
                                        element));
    return success();
  }
  double init = Kind == Reduce::Max    ? -kInf
                : Kind == Reduce::Min  ? kInf
                : Kind == Reduce::Prod ? 1.0
                                       : 0.0;
  // LogSumExp sums exp(x - max) and adds the max back, as ONNX Runtime
  // does, so that large logits do not overflow.
  Value rowMax;
  if (Kind == Reduce::LogSumExp)
    rowMax = buildReduction(b, loc, x, *axes, -kInf,
                            [](OpBuilder &nb, Location nl, ValueRange a) {
                              return maximum(nb, nl, a[0], a[1]);
                            });
  auto elementMap = [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
    switch (Kind) {
    case Reduce::SumSquare:
    case Reduce::L2:
      return mul(nb, nl, a[0], a[0]);
    case Reduce::L1:
      return isa<FloatType>(a[0].getType())
                 ? math::AbsFOp::create(nb, nl, a[0]).getResult()
                 : math::AbsIOp::create(nb, nl, a[0]).getResult();
    case Reduce::LogSumExp: {
      // A row of -inf only keeps its max (-inf), not NaN from inf - inf.
      Value shifted = arith::SubFOp::create(nb, nl, a[0], a[1]);
      Value isInf =
          arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, a[0], a[1]);
      Value zero = arith::ConstantOp::create(
          nb, nl, nb.getFloatAttr(a[0].getType(), 0.0));
      return math::ExpOp::create(
          nb, nl, arith::SelectOp::create(nb, nl, isInf, zero, shifted));
    }
    default:
      return a[0];
    }
  };
  bool mapped = Kind == Reduce::SumSquare || Kind == Reduce::L2 ||
                Kind == Reduce::L1 || Kind == Reduce::LogSumExp;
  Value reduced = buildReduction(
      b, loc, x, *axes, init,
      [](OpBuilder &nb, Location nl, ValueRange a) {
        switch (Kind) {
        case Reduce::Max:
          return maximum(nb, nl, a[0], a[1]);
        case Reduce::Min:
          return minimum(nb, nl, a[0], a[1]);
        case Reduce::Prod:
          return mul(nb, nl, a[0], a[1]);
        default:
          return add(nb, nl, a[0], a[1]);
        }
      },
      rowMax ? ValueRange(rowMax) : ValueRange(),
      mapped ? ScalarBody(elementMap) : ScalarBody(nullptr));
  if (Kind == Reduce::L2 || Kind == Reduce::LogSum ||
      Kind == Reduce::LogSumExp) {
    SmallVector<Value> operands = {reduced};
    if (rowMax)
      operands.push_back(rowMax);
    FailureOr<Value> finished =
        buildElementwise(node, operands, element,
                         [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                           if (Kind == Reduce::L2)
                             return math::SqrtOp::create(nb, nl, a[0]);
                           Value log = math::LogOp::create(nb, nl, a[0]);
                           if (Kind == Reduce::LogSum)
                             return log;
                           return arith::AddFOp::create(nb, nl, log, a[1]);
                         });
    if (failed(finished))
      return failure();
    reduced = *finished;
  }
  if (Kind == Reduce::Mean) {
    Value count = countOf(b, loc, x, *axes, element);
    FailureOr<Value> mean = buildElementwise(
        node, reduced, element, [&](OpBuilder &nb, Location nl, ValueRange a) {
          if (isa<FloatType>(element))
            return arith::DivFOp::create(nb, nl, a[0], count).getResult();
          return arith::DivSIOp::create(nb, nl, a[0], count).getResult();
        });
    if (failed(mean))
      return failure();
    reduced = *mean;
  }
  if (keep)
    reduced = keepDims(b, loc, x, *axes, reduced);
  node.setOutput(0, reduced);
  return success();
}

/// ArgMax/ArgMin: one reduction generic carrying the best value and its
/// index; the first extreme wins unless select_last_index (NaNs never win).
template <bool IsMax>
LogicalResult importArgExtreme(NodeContext &node) {
  if (failed(checkInputCount(node, 1, 1)) ||
      failed(node.checkAttributes({"axis", "keepdims", "select_last_index"})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  Type element = input->second.getElementType();
  if (failed(checkNumeric(node, element, "input 0")))
    return failure();
  int64_t rank = input->second.getRank();
  if (rank == 0)
    return node.fail("input must have rank >= 1");
  FailureOr<int64_t> axis = normalizeAxis(node, node.intAttr("axis", 0), rank);
  if (failed(axis))
    return failure();
  bool last = node.intAttr("select_last_index", 0) != 0;
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  MLIRContext *ctx = b.getContext();
  Value x = input->first;
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, x);
  sizes.erase(sizes.begin() + *axis);
  Type i64 = b.getI64Type();
  Value best = filledTensor(b, loc, sizes, element, IsMax ? -kInf : kInf);
  Value index = filledTensor(b, loc, sizes, i64, 0.0);
  SmallVector<AffineExpr> kept;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    iterators.push_back(d == *axis ? utils::IteratorType::reduction
                                   : utils::IteratorType::parallel);
    if (d != *axis)
      kept.push_back(getAffineDimExpr(d, ctx));
  }
  AffineMap outMap = AffineMap::get(rank, 0, kept, ctx);
  bool isFloat = isFloatType(element);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{best.getType(), index.getType()}, x,
      ValueRange{best, index},
      {AffineMap::getMultiDimIdentityMap(rank, ctx), outMap, outMap},
      iterators, [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value v = args[0], current = args[1];
        Value better;
        if (isFloat)
          better = arith::CmpFOp::create(
              nb, nl,
              IsMax ? (last ? arith::CmpFPredicate::OGE
                            : arith::CmpFPredicate::OGT)
                    : (last ? arith::CmpFPredicate::OLE
                            : arith::CmpFPredicate::OLT),
              v, current);
        else
          better = arith::CmpIOp::create(
              nb, nl,
              IsMax ? (last ? arith::CmpIPredicate::sge
                            : arith::CmpIPredicate::sgt)
                    : (last ? arith::CmpIPredicate::sle
                            : arith::CmpIPredicate::slt),
              v, current);
        Value i = arith::IndexCastOp::create(
            nb, nl, i64, linalg::IndexOp::create(nb, nl, *axis));
        linalg::YieldOp::create(
            nb, nl,
            ValueRange{
                arith::SelectOp::create(nb, nl, better, v, current),
                arith::SelectOp::create(nb, nl, better, i, args[2])});
      });
  Value result = generic.getResult(1);
  if (node.intAttr("keepdims", 1))
    result = keepDims(b, loc, x, *axis, result);
  node.setOutput(0, result);
  return success();
}

/// CumSum along a constant axis: out[i] = sum of x[j] for j <= i (j < i
/// when exclusive, mirrored when reverse), as a reduction generic over
/// (position, j); quadratic in the axis length, which is small where
/// exports use it (positions within a routing slot).
LogicalResult importCumSum(NodeContext &node) {
  if (failed(checkInputCount(node, 2, 2)) ||
      failed(node.checkAttributes({"exclusive", "reverse"})))
    return failure();
  auto input = rankedInput(node, 0);
  if (failed(input))
    return failure();
  FailureOr<Value> axisInput = node.input(1);
  if (failed(axisInput))
    return failure();
  std::optional<SmallVector<int64_t>> axisValue = getConstantInts(*axisInput);
  if (!axisValue || axisValue->size() != 1)
    return node.fail("axis must be a one-element constant");
  Type element = input->second.getElementType();
  if (failed(checkNumeric(node, element, "input 0")))
    return failure();
  int64_t rank = input->second.getRank();
  if (rank == 0)
    return node.fail("input must have rank >= 1");
  FailureOr<int64_t> axis = normalizeAxis(node, (*axisValue)[0], rank);
  if (failed(axis))
    return failure();
  bool exclusive = node.intAttr("exclusive", 0), reverse = node.intAttr("reverse", 0);
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  MLIRContext *ctx = b.getContext();
  Value x = input->first;
  Value init = filledTensor(b, loc, mixedSizes(b, loc, x), element, 0.0);
  SmallVector<AffineExpr> own, other;
  for (int64_t d = 0; d < rank; ++d) {
    own.push_back(getAffineDimExpr(d, ctx));
    other.push_back(getAffineDimExpr(d == *axis ? rank : d, ctx));
  }
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  arith::CmpIPredicate predicate =
      reverse ? (exclusive ? arith::CmpIPredicate::ugt
                           : arith::CmpIPredicate::uge)
              : (exclusive ? arith::CmpIPredicate::ult
                           : arith::CmpIPredicate::ule);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), x, init,
      {AffineMap::get(rank + 1, 0, other, ctx),
       AffineMap::get(rank + 1, 0, own, ctx)},
      iterators, [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value counts = arith::CmpIOp::create(
            nb, nl, predicate, linalg::IndexOp::create(nb, nl, rank),
            linalg::IndexOp::create(nb, nl, *axis));
        Value sum = add(nb, nl, args[1], args[0]);
        linalg::YieldOp::create(
            nb, nl,
            arith::SelectOp::create(nb, nl, counts, sum, args[1]).getResult());
      });
  node.setOutput(0, generic.getResult(0));
  return success();
}

//===----------------------------------------------------------------------===//
// Normalisations
//===----------------------------------------------------------------------===//

/// What a layer norm computes: the result and its statistics (keeping the
/// normalised dimensions, as the optional outputs have them).
struct NormResult {
  Value y, mean, invStdDev;
};

/// (x - mean) / sqrt(var + epsilon) * scale + bias over the dimensions from
/// `axis` on; with `rms` (SimplifiedLayerNormalization, RMSNormalization)
/// no mean is subtracted. Two passes (mean, then squared deviations) for
/// accuracy.
FailureOr<NormResult> buildNorm(NodeContext &node, bool rms, Value x,
                                Value scale, Value bias, int64_t axis,
                                double epsilon) {
  Type element = getElementTypeOrSelf(x.getType());
  int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
  SmallVector<int64_t> axes = llvm::to_vector(llvm::seq<int64_t>(axis, rank));
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  Value count = countOf(b, loc, x, axes, element);
  auto sumOf = [](OpBuilder &nb, Location nl, ValueRange a) {
    return add(nb, nl, a[0], a[1]);
  };
  auto scalarElementwise = [&](Value v, ScalarBody body) {
    return buildElementwise(node, v, element, body);
  };
  Value mean;
  if (!rms) {
    Value sum = buildReduction(b, loc, x, axes, 0.0, sumOf);
    FailureOr<Value> m = scalarElementwise(
        sum, [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
          return arith::DivFOp::create(nb, nl, a[0], count);
        });
    if (failed(m))
      return failure();
    mean = *m;
  }
  Value squares = buildReduction(
      b, loc, x, axes, 0.0, sumOf, mean ? ValueRange(mean) : ValueRange(),
      [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value d = a.size() > 1 ? arith::SubFOp::create(nb, nl, a[0], a[1])
                                     .getResult()
                               : a[0];
        return arith::MulFOp::create(nb, nl, d, d);
      });
  FailureOr<Value> invStdDev = scalarElementwise(
      squares, [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value variance = arith::DivFOp::create(nb, nl, a[0], count);
        Value shifted = arith::AddFOp::create(
            nb, nl, variance, createScalar(nb, nl, element, epsilon));
        return math::RsqrtOp::create(nb, nl, shifted);
      });
  if (failed(invStdDev))
    return failure();
  SmallVector<Value> stats;
  if (mean)
    stats.push_back(mean);
  stats.push_back(*invStdDev);
  Value normalized = buildWithReduced(
      b, loc, x, axes, stats, element,
      [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value centered = a.size() > 2
                             ? arith::SubFOp::create(nb, nl, a[0], a[1])
                                   .getResult()
                             : a[0];
        return arith::MulFOp::create(nb, nl, centered, a.back());
      });
  SmallVector<Value> operands = {normalized, scale};
  if (bias)
    operands.push_back(bias);
  FailureOr<Value> y = buildElementwise(
      node, operands, element, [](OpBuilder &nb, Location nl, ValueRange a) {
        Value v = arith::MulFOp::create(nb, nl, a[0], a[1]);
        return a.size() > 2 ? arith::AddFOp::create(nb, nl, v, a[2]).getResult()
                            : v;
      });
  if (failed(y))
    return failure();
  return NormResult{*y, mean ? keepDims(b, loc, x, axes, mean) : Value(),
                    keepDims(b, loc, x, axes, *invStdDev)};
}

/// Checks that `values` (null where absent) share `x`'s float element type.
LogicalResult checkNormTypes(NodeContext &node, Value x,
                             ArrayRef<Value> values) {
  Type element = getElementTypeOrSelf(x.getType());
  if (!isFloatType(element))
    return node.fail("expects a float input");
  for (Value v : values)
    if (v && getElementTypeOrSelf(v.getType()) != element)
      return node.fail("scale, bias and skip must have the input's element "
                       "type");
  return success();
}

/// LayerNormalization (opset 17) with its optional Mean and InvStdDev
/// outputs; SimplifiedLayerNormalization and RMSNormalization (`IsRms`)
/// with inv_std_var.
template <bool IsRms>
LogicalResult importLayerNorm(NodeContext &node) {
  if (failed(checkInputCount(node, 2, IsRms ? 2 : 3)) ||
      failed(node.checkAttributes({"axis", "epsilon", "stash_type"})))
    return failure();
  auto input = rankedInput(node, 0), scale = rankedInput(node, 1);
  if (failed(input) || failed(scale))
    return failure();
  FailureOr<Value> bias = node.optionalInput(2);
  if (failed(bias) ||
      failed(checkNormTypes(node, input->first, {scale->first, *bias})))
    return failure();
  int64_t rank = input->second.getRank();
  FailureOr<int64_t> axis = normalizeAxis(node, node.intAttr("axis", -1), rank);
  if (failed(axis))
    return failure();
  FailureOr<NormResult> norm =
      buildNorm(node, IsRms, input->first, scale->first, *bias, *axis,
                node.floatAttr("epsilon").value_or(1e-5));
  if (failed(norm))
    return failure();
  node.setOutput(0, norm->y);
  if (IsRms) {
    node.setOutput(1, norm->invStdDev);
  } else {
    node.setOutput(1, norm->mean);
    node.setOutput(2, norm->invStdDev);
  }
  return success();
}

/// com.microsoft.SkipLayerNormalization (input, skip, gamma, beta?, bias?)
/// and SkipSimplifiedLayerNormalization (input, skip, gamma, bias?), as
/// ONNX Runtime's transformer optimiser emits them next to its fused MoE:
/// the norm of input + skip (+ bias) over the last dimension; output 3 is
/// that sum.
template <bool IsRms>
LogicalResult importSkipLayerNorm(NodeContext &node) {
  if (failed(checkInputCount(node, 3, IsRms ? 4 : 5)) ||
      failed(node.checkAttributes({"epsilon"})))
    return failure();
  auto input = rankedInput(node, 0), skip = rankedInput(node, 1),
       gamma = rankedInput(node, 2);
  if (failed(input) || failed(skip) || failed(gamma))
    return failure();
  FailureOr<Value> beta = IsRms ? FailureOr<Value>(Value())
                                : node.optionalInput(3);
  FailureOr<Value> bias = node.optionalInput(IsRms ? 3 : 4);
  if (failed(beta) || failed(bias) ||
      failed(checkNormTypes(node, input->first,
                            {skip->first, gamma->first, *beta, *bias})))
    return failure();
  int64_t rank = input->second.getRank();
  if (rank < 1)
    return node.fail("input must have rank >= 1");
  SmallVector<Value> addends = {input->first, skip->first};
  if (*bias)
    addends.push_back(*bias);
  FailureOr<Value> sum = buildElementwise(
      node, addends, input->second.getElementType(),
      [](OpBuilder &nb, Location nl, ValueRange a) {
        Value v = a[0];
        for (Value next : a.drop_front())
          v = add(nb, nl, v, next);
        return v;
      });
  if (failed(sum))
    return failure();
  // ONNX Runtime's default epsilon for the skip norms.
  FailureOr<NormResult> norm =
      buildNorm(node, IsRms, *sum, gamma->first, *beta, rank - 1,
                node.floatAttr("epsilon").value_or(1e-12));
  if (failed(norm))
    return failure();
  node.setOutput(0, norm->y);
  if (norm->mean)
    node.setOutput(1, norm->mean);
  node.setOutput(2, norm->invStdDev);
  node.setOutput(3, *sum);
  return success();
}

} // namespace

NodeImporter mlir::moe::onnx_import::lookupComputeImporter(StringRef opType) {
  return llvm::StringSwitch<NodeImporter>(opType)
      .Case("MatMul", importMatMul)
      .Case("Einsum", importEinsum)
      .Case("Gemm", importGemm)
      .Case("Softmax", importSoftmax<false>)
      .Case("LogSoftmax", importSoftmax<true>)
      .Case("ReduceSum", importReduce<Reduce::Sum>)
      .Case("ReduceMean", importReduce<Reduce::Mean>)
      .Case("ReduceMax", importReduce<Reduce::Max>)
      .Case("ReduceMin", importReduce<Reduce::Min>)
      .Case("ReduceProd", importReduce<Reduce::Prod>)
      .Case("ReduceSumSquare", importReduce<Reduce::SumSquare>)
      .Case("ReduceL1", importReduce<Reduce::L1>)
      .Case("ReduceL2", importReduce<Reduce::L2>)
      .Case("ReduceLogSum", importReduce<Reduce::LogSum>)
      .Case("ReduceLogSumExp", importReduce<Reduce::LogSumExp>)
      .Case("ArgMax", importArgExtreme<true>)
      .Case("ArgMin", importArgExtreme<false>)
      .Case("CumSum", importCumSum)
      .Case("LayerNormalization", importLayerNorm<false>)
      .Case("SimplifiedLayerNormalization", importLayerNorm<true>)
      .Case("RMSNormalization", importLayerNorm<true>)
      .Case("SkipLayerNormalization", importSkipLayerNorm<false>)
      .Case("SkipSimplifiedLayerNormalization", importSkipLayerNorm<true>)
      .Default(nullptr);
}
