//===- ContribOps.cpp - com.microsoft ops of ONNX Runtime's model builder ---===//
//
// The com.microsoft ops that onnxruntime-genai's model builder writes around
// its MoE layers, as upstream linalg/tensor/arith/math ops with the
// semantics of ONNX Runtime 1.30's CPU kernels: GroupQueryAttention (KV
// cache in BNSH layout, fused rotary embedding, local window, softcap, head
// sinks), RotaryEmbedding, MatMulNBits and GatherBlockQuantized. What those
// kernels do and these lowerings do not (quantised or windowed KV caches,
// GroupQueryAttention's position_ids and attention_bias, MatMulNBits' g_idx
// and float zero points) is rejected naming the node.
//
//===----------------------------------------------------------------------===//

#include "ConstantData.h"
#include "StandardOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"

#include <limits>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Value indexConstant(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

Value indexValue(OpBuilder &b, Location loc, OpFoldResult ofr) {
  return getValueOrCreateConstantIndexOp(b, loc, ofr);
}

/// An integer scalar (i32, i64, ...) as an index.
Value toIndex(OpBuilder &b, Location loc, Value v) {
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
}

/// `i` clamped to [0, size - 1], so that a bad position or index reads a
/// wrong element rather than outside a buffer (ONNX Runtime reports an error
/// instead).
Value clampIndex(OpBuilder &b, Location loc, Value i, Value size) {
  Value last =
      arith::SubIOp::create(b, loc, size, indexConstant(b, loc, 1));
  Value upper = arith::MinSIOp::create(b, loc, i, last);
  return arith::MaxSIOp::create(b, loc, upper, indexConstant(b, loc, 0));
}

SmallVector<utils::IteratorType> parallelIterators(int64_t n) {
  return SmallVector<utils::IteratorType>(n, utils::IteratorType::parallel);
}

/// A linalg.generic over `sizes` computing each element with `body`, which
/// sees the loop indices and the scalars of `inputs` (read through `maps`).
Value buildGenerator(
    OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes, Type element,
    ValueRange inputs, ArrayRef<AffineMap> maps,
    function_ref<Value(OpBuilder &, Location, ValueRange indices,
                       ValueRange args)>
        body) {
  int64_t rank = sizes.size();
  Value init = emptyTensor(b, loc, sizes, element);
  SmallVector<AffineMap> allMaps(maps);
  allMaps.push_back(AffineMap::getMultiDimIdentityMap(rank, b.getContext()));
  return linalg::GenericOp::create(
             b, loc, init.getType(), inputs, init, allMaps,
             parallelIterators(rank),
             [&](OpBuilder &nb, Location nl, ValueRange args) {
               SmallVector<Value> indices;
               for (int64_t d = 0; d < rank; ++d)
                 indices.push_back(linalg::IndexOp::create(nb, nl, d));
               linalg::YieldOp::create(
                   nb, nl, body(nb, nl, indices, args.drop_back()));
             })
      .getResult(0);
}

/// The map of an operand indexed by some of `rank` loops.
AffineMap loopsMap(MLIRContext *ctx, int64_t rank, ArrayRef<int64_t> loops) {
  SmallVector<AffineExpr> exprs;
  for (int64_t l : loops)
    exprs.push_back(getAffineDimExpr(l, ctx));
  return AffineMap::get(rank, 0, exprs, ctx);
}

/// A constant ui8 tensor (packed weights, zero points) as signless i8 bytes,
/// which arith operates on; fails naming `what` for anything but a constant
/// (a ui8 graph input would need a tensor.bitcast, which does not
/// bufferize).
FailureOr<Value> signlessBytes(NodeContext &node, Value value,
                               const Twine &what) {
  std::optional<ConstantData> data = getConstantData(value);
  if (!data)
    return node.fail(what + " must be an initializer (uint8 graph inputs are "
                            "not supported)");
  OpBuilder &b = node.builder();
  auto signless = RankedTensorType::get(data->type.getShape(), b.getI8Type());
  return arith::ConstantOp::create(
             b, node.loc, cast<TypedAttr>(reinterpretConstant(data->attr, signless)))
      .getResult();
}

/// Bits [shift, shift + bits) of the byte `byte` (i8), as an i32.
Value extractBits(OpBuilder &b, Location loc, Value byte, Value shift,
                  int64_t bits) {
  Type i32 = b.getI32Type();
  Value wide = arith::ExtUIOp::create(b, loc, i32, byte);
  Value shifted = arith::ShRUIOp::create(
      b, loc, wide, arith::IndexCastOp::create(b, loc, i32, shift));
  return arith::AndIOp::create(b, loc, shifted,
                               createScalar(b, loc, i32, (1 << bits) - 1));
}

/// Element `i` of a row of `bits`-bit values packed into bytes low bits
/// first (ONNX Runtime's layout), as an i32: `read(byteIndex)` loads a byte.
Value unpackElement(OpBuilder &b, Location loc, Value i, int64_t bits,
                    function_ref<Value(Value)> read) {
  int64_t perByte = 8 / bits;
  Value byte = read(arith::DivUIOp::create(b, loc, i,
                                           indexConstant(b, loc, perByte)));
  Value shift = arith::MulIOp::create(
      b, loc, arith::RemUIOp::create(b, loc, i, indexConstant(b, loc, perByte)),
      indexConstant(b, loc, bits));
  return extractBits(b, loc, byte, shift, bits);
}

/// Checks that `value` is a float32 tensor of rank `rank` (any rank when
/// negative); `what` names it.
FailureOr<RankedTensorType> checkF32(NodeContext &node, Value value,
                                     int64_t rank, const Twine &what) {
  FailureOr<RankedTensorType> type = rankedType(node, value, what);
  if (failed(type))
    return failure();
  if (!type->getElementType().isF32())
    return node.fail(what + " must be float32, got " +
                     typeName(type->getElementType()));
  if (rank >= 0 && type->getRank() != rank)
    return node.fail(what + " must have rank " + Twine(rank) + ", got " +
                     Twine(type->getRank()));
  return type;
}

//===----------------------------------------------------------------------===//
// Rotary embedding
//===----------------------------------------------------------------------===//

/// The position of the rotary embedding at (batch, sequence) indices, as an
/// index (clamped to the caches' rows by the caller).
using PositionFn = function_ref<Value(OpBuilder &, Location, Value batch,
                                      Value seq)>;

/// ONNX Runtime's rotary embedding (RunRotaryEmbedding) of `x`, whose last
/// dimension is a head and whose dimensions `batchDim` and `seqDim` are the
/// batch and the sequence: the first `rotaryDim` entries of each head turn
/// in pairs, (i, i + rotaryDim / 2) or, interleaved, (2j, 2j + 1), by the
/// angle whose cosine and sine are row `position` of `cos` and `sin`
/// ([positions, rotaryDim / 2]):
///   out[first]  = x[first] * cos - x[second] * sin
///   out[second] = x[second] * cos + x[first] * sin;
/// the other entries pass through. One generic that reads each element's
/// partner and the cache entries with tensor.extract (positions are data).
Value buildRotary(OpBuilder &b, Location loc, Value x, int64_t batchDim,
                  int64_t seqDim, Value cos, Value sin, int64_t rotaryDim,
                  bool interleaved, PositionFn position) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  MLIRContext *ctx = b.getContext();
  Value positions = tensor::DimOp::create(b, loc, cos, 0);
  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, ctx);
  return buildGenerator(
      b, loc, mixedSizes(b, loc, x), type.getElementType(), x, identity,
      [&](OpBuilder &nb, Location nl, ValueRange at, ValueRange args) {
        Value i = at.back();
        auto c = [&](int64_t v) { return indexConstant(nb, nl, v); };
        Value inRotary = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult,
                                               i, c(rotaryDim));
        Value first, partner, pair;
        if (interleaved) {
          Value odd = arith::RemUIOp::create(nb, nl, i, c(2));
          first = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, odd,
                                        c(0));
          partner = arith::SelectOp::create(
              nb, nl, first, arith::AddIOp::create(nb, nl, i, c(1)),
              arith::SubIOp::create(nb, nl, i, c(1)));
          pair = arith::DivUIOp::create(nb, nl, i, c(2));
        } else {
          int64_t half = rotaryDim / 2;
          first = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult, i,
                                        c(half));
          Value second = arith::SubIOp::create(nb, nl, i, c(half));
          partner = arith::SelectOp::create(
              nb, nl, first, arith::AddIOp::create(nb, nl, i, c(half)), second);
          pair = arith::SelectOp::create(nb, nl, first, i, second);
        }
        // Entries past the rotated part read themselves and row 0 (in
        // bounds) and are passed through below.
        partner = arith::SelectOp::create(nb, nl, inRotary, partner, i);
        pair = arith::SelectOp::create(nb, nl, inRotary, pair, c(0));
        Value pos = clampIndex(nb, nl, position(nb, nl, at[batchDim], at[seqDim]),
                               positions);
        Value cosv = tensor::ExtractOp::create(nb, nl, cos, ValueRange{pos, pair});
        Value sinv = tensor::ExtractOp::create(nb, nl, sin, ValueRange{pos, pair});
        SmallVector<Value> partnerAt(at);
        partnerAt.back() = partner;
        Value xj = tensor::ExtractOp::create(nb, nl, x, partnerAt);
        Value xi = args[0];
        Value straight = arith::MulFOp::create(nb, nl, xi, cosv);
        Value cross = arith::MulFOp::create(nb, nl, xj, sinv);
        Value rotated = arith::SelectOp::create(
            nb, nl, first, arith::SubFOp::create(nb, nl, straight, cross),
            arith::AddFOp::create(nb, nl, straight, cross));
        return arith::SelectOp::create(nb, nl, inRotary, rotated, xi)
            .getResult();
      });
}

/// Checks the cos/sin caches (inputs `cosIndex` and `cosIndex + 1`): float32
/// [positions, rotaryDim / 2] with the same shape and a static second
/// dimension. Returns rotaryDim.
FailureOr<int64_t> checkRotaryCaches(NodeContext &node, Value cos, Value sin,
                                     int cosIndex) {
  FailureOr<RankedTensorType> cosType =
      checkF32(node, cos, 2, "cos_cache (input " + Twine(cosIndex) + ")");
  FailureOr<RankedTensorType> sinType =
      checkF32(node, sin, 2, "sin_cache (input " + Twine(cosIndex + 1) + ")");
  if (failed(cosType) || failed(sinType))
    return failure();
  if (cosType->isDynamicDim(1) || cosType->getDimSize(1) == 0)
    return node.fail("cos_cache must have a static, non-zero dimension 1");
  for (int64_t d = 0; d < 2; ++d)
    if (!cosType->isDynamicDim(d) && !sinType->isDynamicDim(d) &&
        cosType->getDimSize(d) != sinType->getDimSize(d))
      return node.fail("cos_cache and sin_cache must have the same shape");
  return 2 * cosType->getDimSize(1);
}

/// com.microsoft.RotaryEmbedding: x [B, S, N * H] (or [B, N, S, H]),
/// position_ids int64 [B, S] (or one start position, [] or [1]: position
/// p + s), cos_cache and sin_cache [positions, rotary_embedding_dim / 2].
/// Without rotary_embedding_dim the head size is twice the caches' width
/// and the whole head turns; with it, num_heads gives the head size and
/// the rest of each head passes through.
LogicalResult importRotaryEmbedding(NodeContext &node) {
  if (failed(checkInputCount(node, 4, 4)) ||
      failed(node.checkAttributes({"interleaved", "num_heads",
                                   "rotary_embedding_dim", "scale",
                                   "is_packed_batching"})))
    return failure();
  if (node.intAttr("is_packed_batching", 0) != 0)
    return node.fail("is_packed_batching = 1 is not supported");
  auto x = rankedInput(node, 0), positionIds = rankedInput(node, 1);
  FailureOr<Value> cos = node.input(2), sin = node.input(3);
  if (failed(x) || failed(positionIds) || failed(cos) || failed(sin))
    return failure();
  if (failed(checkF32(node, x->first, -1, "input 0")))
    return failure();
  int64_t rank = x->second.getRank();
  if (rank != 3 && rank != 4)
    return node.fail("input must have rank 3 ([B, S, hidden]) or 4 ([B, N, "
                     "S, H]), got " +
                     Twine(rank));
  FailureOr<int64_t> cacheRotary = checkRotaryCaches(node, *cos, *sin, 2);
  if (failed(cacheRotary))
    return failure();
  int64_t numHeads = node.intAttr("num_heads", 0);
  int64_t rotaryDim = node.intAttr("rotary_embedding_dim", 0);
  if (rotaryDim < 0 || numHeads < 0)
    return node.fail("num_heads and rotary_embedding_dim must not be negative");
  if (rotaryDim > 0 && numHeads == 0)
    return node.fail("num_heads must be given with rotary_embedding_dim");
  ArrayRef<int64_t> shape = x->second.getShape();
  if (rank == 3 ? ShapedType::isDynamic(shape[2])
                : ShapedType::isDynamic(shape[1]) ||
                      ShapedType::isDynamic(shape[3]))
    return node.fail("the hidden size (heads x head size) must be static");
  int64_t hidden = rank == 3 ? shape[2] : shape[1] * shape[3];
  int64_t headSize;
  if (rank == 4)
    headSize = shape[3];
  else if (rotaryDim == 0)
    headSize = *cacheRotary;
  else
    headSize = hidden / numHeads;
  if (rotaryDim == 0)
    rotaryDim = headSize;
  if (rank == 4 && numHeads != 0 && numHeads != shape[1])
    return node.fail("num_heads " + Twine(numHeads) +
                     " differs from the input's dimension 1, " +
                     Twine(shape[1]));
  if (headSize <= 0 || hidden % headSize != 0)
    return node.fail("hidden size " + Twine(hidden) +
                     " is not a multiple of the head size " + Twine(headSize));
  if (rotaryDim > headSize || rotaryDim % 2 != 0)
    return node.fail("rotary_embedding_dim " + Twine(rotaryDim) +
                     " must be even and at most the head size " +
                     Twine(headSize));
  if (*cacheRotary != rotaryDim)
    return node.fail("cos_cache dimension 1 is " + Twine(*cacheRotary / 2) +
                     " but the rotary dimension is " + Twine(rotaryDim) +
                     " (it must be half of it)");
  Type posElement = positionIds->second.getElementType();
  if (!posElement.isSignlessInteger(64))
    return node.fail("position_ids must be int64");
  int64_t posRank = positionIds->second.getRank();
  bool startOnly = posRank == 0 || (posRank == 1 &&
                                    positionIds->second.getDimSize(0) == 1);
  if (!startOnly && posRank != 2)
    return node.fail("position_ids must be [B, S], [1] or a scalar");

  OpBuilder &b = node.builder();
  Location loc = node.loc;
  // Heads as their own dimension: [B, S, N, H] for the 3-D input.
  Value input = x->first;
  int64_t seqDim = rank == 3 ? 1 : 2;
  if (rank == 3) {
    SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, input);
    sizes.pop_back();
    sizes.push_back(b.getIndexAttr(hidden / headSize));
    sizes.push_back(b.getIndexAttr(headSize));
    input = tensor::ExpandShapeOp::create(
        b, loc,
        RankedTensorType::get(staticSizes(sizes), b.getF32Type()), input,
        ArrayRef<ReassociationIndices>{{0}, {1}, {2, 3}}, sizes);
  }
  Value ids = positionIds->first;
  Value rotated = buildRotary(
      b, loc, input, /*batchDim=*/0, seqDim, *cos, *sin, rotaryDim,
      node.intAttr("interleaved", 0) != 0,
      [&](OpBuilder &nb, Location nl, Value batch, Value seq) -> Value {
        if (!startOnly) {
          // position_ids [B, S] must match the input's; read in bounds.
          Value rows = tensor::DimOp::create(nb, nl, ids, 0);
          Value cols = tensor::DimOp::create(nb, nl, ids, 1);
          return toIndex(nb, nl,
                         tensor::ExtractOp::create(
                             nb, nl, ids,
                             ValueRange{clampIndex(nb, nl, batch, rows),
                                        clampIndex(nb, nl, seq, cols)}));
        }
        SmallVector<Value> zero(posRank, indexConstant(nb, nl, 0));
        Value start = toIndex(nb, nl, tensor::ExtractOp::create(nb, nl, ids, zero));
        return arith::AddIOp::create(nb, nl, start, seq);
      });
  if (rank == 3)
    rotated = tensor::CollapseShapeOp::create(
        b, loc, x->second, rotated,
        ArrayRef<ReassociationIndices>{{0}, {1}, {2, 3}});
  node.setOutput(0, rotated);
  return success();
}

//===----------------------------------------------------------------------===//
// GroupQueryAttention
//===----------------------------------------------------------------------===//

/// GroupQueryAttention inputs the model builder's CPU graphs leave empty and
/// these lowerings reject, by position.
struct UnsupportedInput {
  int index;
  const char *name;
};
constexpr UnsupportedInput kUnsupportedGQAInputs[] = {
    {9, "position_ids"},  {10, "attention_bias"}, {12, "k_scale"},
    {13, "v_scale"},      {14, "q_norm_weight"},  {15, "k_norm_weight"}};

/// `value` [B, S, X * H] as [B, S, X, H].
Value splitHeads(OpBuilder &b, Location loc, Value value, int64_t heads,
                 int64_t headSize) {
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, value);
  sizes.pop_back();
  sizes.push_back(b.getIndexAttr(heads));
  sizes.push_back(b.getIndexAttr(headSize));
  return tensor::ExpandShapeOp::create(
      b, loc, RankedTensorType::get(staticSizes(sizes), b.getF32Type()), value,
      ArrayRef<ReassociationIndices>{{0}, {1}, {2, 3}}, sizes);
}

/// What each batch row of one GroupQueryAttention step reads and writes,
/// from seqlens_k (total length - 1 per row) as ONNX Runtime's CPU kernel
/// derives it: a first prompt (S == total_sequence_length) writes its S new
/// rows at 0, otherwise they go after past = seqlens_k + 1 - S rows.
struct StepGeometry {
  Value isFirstPrompt; // i1
  Value seqLen;        // S, index

  /// Rows of the cache before the new ones, for batch row `seqlensK` (i32).
  Value pastRows(OpBuilder &b, Location loc, Value seqlensK) const {
    Value total = totalRows(b, loc, seqlensK);
    return arith::SelectOp::create(b, loc, isFirstPrompt,
                                   indexConstant(b, loc, 0),
                                   arith::SubIOp::create(b, loc, total, seqLen));
  }
  /// seqlens_k + 1.
  Value totalRows(OpBuilder &b, Location loc, Value seqlensK) const {
    return arith::AddIOp::create(b, loc, toIndex(b, loc, seqlensK),
                                 indexConstant(b, loc, 1));
  }
};

/// present_key or present_value [B, M, T, H]: rows [0, past) of the past
/// cache, the S new rows `fresh` [B, S, M, H] after them, zeros elsewhere
/// (ONNX Runtime zero-fills a present that does not share the past's
/// buffer). Reads are guarded, so that a zero-length past (or bad
/// seqlens_k) never touches memory outside a buffer.
Value buildPresent(OpBuilder &b, Location loc, Value past, Value fresh,
                   Value seqlensK, const StepGeometry &step,
                   ArrayRef<OpFoldResult> sizes) {
  MLIRContext *ctx = b.getContext();
  Value pastBatch, pastLen;
  if (past) {
    pastBatch = tensor::DimOp::create(b, loc, past, 0);
    pastLen = tensor::DimOp::create(b, loc, past, 2);
  }
  // Separate key and value inputs are not tied to the query's batch and
  // sequence sizes in the manifest: their reads are bounded by their own.
  Value freshBatch = tensor::DimOp::create(b, loc, fresh, 0);
  Value freshLen = tensor::DimOp::create(b, loc, fresh, 1);
  Type f32 = b.getF32Type();
  return buildGenerator(
      b, loc, sizes, f32, seqlensK, loopsMap(ctx, 4, {0}),
      [&](OpBuilder &nb, Location nl, ValueRange at, ValueRange args) {
        Value batch = at[0], head = at[1], row = at[2], d = at[3];
        Value pastRows = step.pastRows(nb, nl, args[0]);
        Value zero = createScalar(nb, nl, f32, 0.0);
        auto lt = [&](Value x, Value y) {
          return arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, x, y)
              .getResult();
        };
        Value newRow = arith::SubIOp::create(nb, nl, row, pastRows);
        Value isNew = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge,
                                            newRow, indexConstant(nb, nl, 0));
        for (auto [x, bound] :
             {std::pair{newRow, step.seqLen}, std::pair{newRow, freshLen},
              std::pair{batch, freshBatch}})
          isNew = arith::AndIOp::create(nb, nl, isNew, lt(x, bound));
        auto readNew = [&](OpBuilder &ib, Location il) {
          Value v = tensor::ExtractOp::create(
              ib, il, fresh, ValueRange{batch, newRow, head, d});
          scf::YieldOp::create(ib, il, v);
        };
        auto readPast = [&](OpBuilder &ib, Location il) {
          if (!past) {
            scf::YieldOp::create(ib, il, zero);
            return;
          }
          Value inPast = arith::AndIOp::create(
              ib, il, lt(row, pastRows),
              arith::AndIOp::create(ib, il, lt(row, pastLen),
                                    lt(batch, pastBatch)));
          auto ifPast = scf::IfOp::create(
              ib, il, inPast,
              [&](OpBuilder &pb, Location pl) {
                scf::YieldOp::create(
                    pb, pl,
                    tensor::ExtractOp::create(
                        pb, pl, past, ValueRange{batch, head, row, d})
                        .getResult());
              },
              [&](OpBuilder &pb, Location pl) {
                scf::YieldOp::create(pb, pl, zero);
              });
          scf::YieldOp::create(ib, il, ifPast.getResult(0));
        };
        return scf::IfOp::create(nb, nl, isNew, readNew, readPast)
            .getResult(0);
      });
}

/// com.microsoft.GroupQueryAttention as ONNX Runtime 1.30's CPU kernel
/// computes it. Query [B, S, N * H] with key and value [B, S, M * H], or
/// packed [B, S, (N + 2M) * H]; past and present caches [B, M, T, H]. Per
/// batch row, with total = seqlens_k + 1 and past = total - S (0 for a
/// first prompt, S == total_sequence_length), the new keys and values
/// (keys, and queries, turned by the rotary embedding at positions past +
/// s when do_rotary) go to rows [past, past + S) of the present caches;
/// query s attends to keys [start, end), end = min(past + s + 1, total),
/// start = past + s + 1 - local_window_size (end - local_window_size with
/// head sinks or a softcap) when the window is shorter; query head n reads key head
/// n / (N / M). Scores are scaled (scale, or 1/sqrt(H)),
/// soft-capped, softmaxed (a head sink adds exp(sink) to the denominator)
/// and weight the values. The present caches have max(total_sequence_length,
/// past length) rows, so total_sequence_length must be known at import (the
/// model builder computes it from the attention mask's shape).
LogicalResult importGroupQueryAttention(NodeContext &node) {
  if (failed(checkInputCount(node, 7, 16)) ||
      failed(node.checkAttributes(
          {"num_heads", "kv_num_heads", "scale", "softcap",
           "local_window_size", "do_rotary", "rotary_interleaved",
           "smooth_softmax", "mask_filter_value", "qk_output",
           "sliding_window_cache", "k_quant_type", "v_quant_type",
           "kv_cache_bit_width", "qk_norm_epsilon"})))
    return failure();
  int64_t numHeads = node.intAttr("num_heads", 0);
  int64_t kvHeads = node.intAttr("kv_num_heads", 0);
  if (numHeads <= 0 || kvHeads <= 0)
    return node.fail("num_heads and kv_num_heads must be positive, got " +
                     Twine(numHeads) + " and " + Twine(kvHeads));
  if (numHeads % kvHeads != 0)
    return node.fail("num_heads " + Twine(numHeads) +
                     " is not a multiple of kv_num_heads " + Twine(kvHeads));
  if (node.intAttr("qk_output", 0) != 0)
    return node.fail("qk_output is not supported");
  if (node.intAttr("sliding_window_cache", 0) != 0)
    return node.fail("sliding_window_cache = 1 (ONNX Runtime's windowed KV "
                     "cache layout) is not supported; export full caches "
                     "(the model builder's windowed_kv_cache = false)");
  for (StringRef attr : {"k_quant_type", "v_quant_type"})
    if (std::optional<std::string> kind = node.stringAttr(attr);
        kind && *kind != "NONE")
      return node.fail("quantised KV caches (" + attr + " = '" + *kind +
                       "') are not supported");
  if (node.intAttr("kv_cache_bit_width", 0) != 0)
    return node.fail("quantised KV caches (kv_cache_bit_width) are not "
                     "supported");
  for (const UnsupportedInput &unsupported : kUnsupportedGQAInputs) {
    FailureOr<Value> v = node.optionalInput(unsupported.index);
    if (failed(v))
      return failure();
    if (*v)
      return node.fail("input " + Twine(unsupported.index) + " (" +
                       unsupported.name + ") is not supported");
  }
  if (node.node.output_size() > 3 && !node.node.output(3).empty())
    return node.fail("output 3 (output_qk) is not supported");
  bool doRotary = node.intAttr("do_rotary", 0) != 0;
  bool interleaved = node.intAttr("rotary_interleaved", 0) != 0;
  int64_t window = node.intAttr("local_window_size", -1);
  double softcap = node.floatAttr("softcap").value_or(0.0);
  double scale = node.floatAttr("scale").value_or(0.0);
  bool smooth = node.intAttr("smooth_softmax", 0) != 0;

  // Query, key, value.
  auto query = rankedInput(node, 0);
  FailureOr<Value> keyInput = node.optionalInput(1);
  FailureOr<Value> valueInput = node.optionalInput(2);
  if (failed(query) || failed(keyInput) || failed(valueInput) ||
      failed(checkF32(node, query->first, 3, "query (input 0)")))
    return failure();
  if (bool(*keyInput) != bool(*valueInput))
    return node.fail("key and value must both be given or both be absent "
                     "(packed QKV)");
  bool packed = !*keyInput;
  int64_t width = query->second.getDimSize(2);
  if (ShapedType::isDynamic(width))
    return node.fail("query's hidden size (dimension 2) must be static");
  int64_t headParts = packed ? numHeads + 2 * kvHeads : numHeads;
  if (width % headParts != 0)
    return node.fail("query's hidden size " + Twine(width) +
                     " is not a multiple of " + Twine(headParts) +
                     (packed ? " (num_heads + 2 kv_num_heads, packed QKV)"
                             : " (num_heads)"));
  int64_t headSize = width / headParts;
  if (!packed) {
    Value kv[] = {*keyInput, *valueInput};
    for (auto [i, v] : llvm::enumerate(kv)) {
      FailureOr<RankedTensorType> type =
          checkF32(node, v, 3, (i ? "value (input 2)" : "key (input 1)"));
      if (failed(type))
        return failure();
      if (type->getDimSize(2) != kvHeads * headSize)
        return node.fail(Twine(i ? "value" : "key") + "'s hidden size must be " +
                         Twine(kvHeads * headSize) +
                         " (kv_num_heads x head size)");
      for (int64_t d = 0; d < 2; ++d)
        if (!type->isDynamicDim(d) && !query->second.isDynamicDim(d) &&
            type->getDimSize(d) != query->second.getDimSize(d))
          return node.fail(Twine(i ? "value" : "key") +
                           " must have the query's batch and sequence sizes "
                           "(an empty key, ONNX Runtime's shared KV, is not "
                           "supported)");
    }
  }

  // Caches.
  FailureOr<Value> pastKey = node.optionalInput(3);
  FailureOr<Value> pastValue = node.optionalInput(4);
  if (failed(pastKey) || failed(pastValue))
    return failure();
  if (bool(*pastKey) != bool(*pastValue))
    return node.fail("past_key and past_value must both be given or both be "
                     "absent");
  Value pastK = *pastKey, pastV = *pastValue;
  Value pasts[] = {pastK, pastV};
  for (auto [i, v] : llvm::enumerate(pasts)) {
    if (!v)
      continue;
    FailureOr<RankedTensorType> type = checkF32(
        node, v, 4, (i ? "past_value (input 4)" : "past_key (input 3)"));
    if (failed(type))
      return failure();
    if ((!type->isDynamicDim(1) && type->getDimSize(1) != kvHeads) ||
        type->getDimSize(3) != headSize)
      return node.fail(Twine(i ? "past_value" : "past_key") + " must be [B, " +
                       Twine(kvHeads) + ", T, " + Twine(headSize) +
                       "] (BNSH, kv_num_heads x head size)");
  }
  auto seqlensK = rankedInput(node, 5);
  if (failed(seqlensK))
    return failure();
  if (!seqlensK->second.getElementType().isSignlessInteger(32) ||
      seqlensK->second.getRank() != 1)
    return node.fail("seqlens_k (input 5) must be an int32 [B] tensor");
  FailureOr<Value> totalInput = node.input(6);
  if (failed(totalInput))
    return failure();
  std::optional<SmallVector<OpFoldResult>> totalEntries =
      getShapeVector(*totalInput);
  if (!totalEntries || totalEntries->size() != 1)
    return node.fail("total_sequence_length (input 6) must be known at import "
                     "(a constant, or computed from input shapes as the "
                     "model builder's Shape(attention_mask)[1] is): the "
                     "present caches' length depends on it");
  if (std::optional<int64_t> t = getConstantIntValue((*totalEntries)[0]);
      t && *t < 1)
    return node.fail("total_sequence_length must be positive, got " +
                     Twine(*t));

  // Rotary caches and head sinks.
  FailureOr<Value> cos = node.optionalInput(7), sin = node.optionalInput(8);
  if (failed(cos) || failed(sin))
    return failure();
  if (bool(*cos) != bool(*sin))
    return node.fail("cos_cache and sin_cache must both be given or both be "
                     "absent");
  int64_t rotaryDim = 0;
  if (doRotary) {
    if (!*cos)
      return node.fail("do_rotary = 1 needs cos_cache and sin_cache");
    FailureOr<int64_t> dim = checkRotaryCaches(node, *cos, *sin, 7);
    if (failed(dim))
      return failure();
    if (*dim > headSize)
      return node.fail("cos_cache dimension 1 must be at most half the head "
                       "size " +
                       Twine(headSize));
    rotaryDim = *dim;
  }
  FailureOr<Value> sinkInput = node.optionalInput(11);
  if (failed(sinkInput))
    return failure();
  Value sink = *sinkInput;
  if (sink) {
    FailureOr<RankedTensorType> type =
        checkF32(node, sink, 1, "head_sink (input 11)");
    if (failed(type))
      return failure();
    if (type->getDimSize(0) != numHeads)
      return node.fail("head_sink must have num_heads (" + Twine(numHeads) +
                       ") entries");
  }

  OpBuilder &b = node.builder();
  Location loc = node.loc;
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  int64_t groups = numHeads / kvHeads;
  Value qkv = query->first;
  OpFoldResult batch = tensor::getMixedSize(b, loc, qkv, 0);
  OpFoldResult seq = tensor::getMixedSize(b, loc, qkv, 1);

  // The present caches' length: max(total_sequence_length, past length).
  OpFoldResult total = (*totalEntries)[0];
  OpFoldResult presentLen = total;
  if (pastK) {
    OpFoldResult pastLen = tensor::getMixedSize(b, loc, pastK, 2);
    std::optional<int64_t> t = getConstantIntValue(total);
    std::optional<int64_t> p = getConstantIntValue(pastLen);
    if (t && p)
      presentLen = b.getIndexAttr(std::max(*t, *p));
    else if (p && *p > 0)
      // ONNX Runtime's shared max-length buffers: the present is as long as
      // the past, which the run-time total cannot be compared with here.
      return node.fail("past_key has a static length " + Twine(*p) +
                       " but total_sequence_length is only known at run "
                       "time; the present caches' length max(total, " +
                       Twine(*p) + ") cannot be expressed");
    // Otherwise the past is assumed no longer than total_sequence_length
    // (past + S in a decode step), which makes the present that long.
  }

  StepGeometry step;
  step.seqLen = indexValue(b, loc, seq);
  step.isFirstPrompt =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, step.seqLen,
                            indexValue(b, loc, total));

  // Q, K, V as [B, S, heads, H].
  auto slice = [&](int64_t offset, int64_t heads) {
    SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0), b.getIndexAttr(0),
                                         b.getIndexAttr(offset * headSize)};
    SmallVector<OpFoldResult> sizes = {batch, seq,
                                       b.getIndexAttr(heads * headSize)};
    SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
    Value part = tensor::ExtractSliceOp::create(b, loc, qkv, offsets, sizes,
                                                strides);
    return splitHeads(b, loc, part, heads, headSize);
  };
  Value q, k, v;
  if (packed) {
    q = slice(0, numHeads);
    k = slice(numHeads, kvHeads);
    v = slice(numHeads + kvHeads, kvHeads);
  } else {
    q = splitHeads(b, loc, qkv, numHeads, headSize);
    k = splitHeads(b, loc, *keyInput, kvHeads, headSize);
    v = splitHeads(b, loc, *valueInput, kvHeads, headSize);
  }

  Value seqlens = seqlensK->first;
  if (doRotary) {
    // First prompt: positions 0..S-1; otherwise past + s per batch row.
    auto position = [&](OpBuilder &nb, Location nl, Value row, Value s) {
      Value pastRows = step.pastRows(
          nb, nl,
          tensor::ExtractOp::create(
              nb, nl, seqlens,
              clampIndex(nb, nl, row,
                         tensor::DimOp::create(nb, nl, seqlens, 0))));
      return arith::AddIOp::create(nb, nl, pastRows, s).getResult();
    };
    q = buildRotary(b, loc, q, 0, 1, *cos, *sin, rotaryDim, interleaved,
                    position);
    k = buildRotary(b, loc, k, 0, 1, *cos, *sin, rotaryDim, interleaved,
                    position);
  }

  SmallVector<OpFoldResult> presentSizes = {batch, b.getIndexAttr(kvHeads),
                                            presentLen,
                                            b.getIndexAttr(headSize)};
  Value presentK = buildPresent(b, loc, pastK, k, seqlens, step, presentSizes);
  Value presentV = buildPresent(b, loc, pastV, v, seqlens, step, presentSizes);

  // Scores [B, M, G, S, T] = Q . K^T, query head n = m * G + g.
  SmallVector<OpFoldResult> qSizes = {batch, seq, b.getIndexAttr(kvHeads),
                                      b.getIndexAttr(groups),
                                      b.getIndexAttr(headSize)};
  Value q5 = tensor::ExpandShapeOp::create(
      b, loc, RankedTensorType::get(staticSizes(qSizes), f32), q,
      ArrayRef<ReassociationIndices>{{0}, {1}, {2, 3}, {4}}, qSizes);
  SmallVector<OpFoldResult> scoreSizes = {batch, b.getIndexAttr(kvHeads),
                                          b.getIndexAttr(groups), seq,
                                          presentLen};
  // Loops (b, m, g, s, t, d).
  Value scoresInit = filledTensor(b, loc, scoreSizes, f32, 0.0);
  SmallVector<utils::IteratorType> contraction = parallelIterators(5);
  contraction.push_back(utils::IteratorType::reduction);
  Value scores =
      linalg::GenericOp::create(
          b, loc, scoresInit.getType(), ValueRange{q5, presentK}, scoresInit,
          {loopsMap(ctx, 6, {0, 3, 1, 2, 5}), loopsMap(ctx, 6, {0, 1, 4, 5}),
           loopsMap(ctx, 6, {0, 1, 2, 3, 4})},
          contraction,
          [](OpBuilder &nb, Location nl, ValueRange args) {
            Value p = arith::MulFOp::create(nb, nl, args[0], args[1]);
            linalg::YieldOp::create(nb, nl,
                                    arith::AddFOp::create(nb, nl, args[2], p)
                                        .getResult());
          })
          .getResult(0);

  // Scaled, soft-capped scores of the visible keys; -inf elsewhere.
  bool windowFromEnd = sink || smooth || softcap > 0.0;
  double alpha = scale == 0.0 ? 1.0 / std::sqrt(double(headSize)) : scale;
  Value logits = buildGenerator(
      b, loc, scoreSizes, f32, ValueRange{scores, seqlens},
      {loopsMap(ctx, 5, {0, 1, 2, 3, 4}), loopsMap(ctx, 5, {0})},
      [&](OpBuilder &nb, Location nl, ValueRange at, ValueRange args) {
        Value s = at[3], t = at[4];
        Value pastRows = step.pastRows(nb, nl, args[1]);
        Value causal = arith::AddIOp::create(
            nb, nl, arith::AddIOp::create(nb, nl, pastRows, s),
            indexConstant(nb, nl, 1));
        Value end = arith::MinSIOp::create(nb, nl, causal,
                                           step.totalRows(nb, nl, args[1]));
        Value visible = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt,
                                              t, end);
        if (window >= 0) {
          // The window ends at the query (causal) or, on the path ONNX
          // Runtime takes with head sinks or a softcap, at the row's last
          // key: the two differ only for the padding queries of a
          // right-padded prompt (s >= total).
          Value windowEnd = windowFromEnd ? end : causal;
          Value start = arith::SubIOp::create(nb, nl, windowEnd,
                                              indexConstant(nb, nl, window));
          visible = arith::AndIOp::create(
              nb, nl, visible,
              arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, t,
                                    start));
        }
        Value x = arith::MulFOp::create(nb, nl, args[0],
                                        createScalar(nb, nl, f32, alpha));
        if (softcap > 0.0) {
          // As ONNX Runtime: softcap * tanh(x * (1 / softcap)).
          Value inner = arith::MulFOp::create(
              nb, nl, x, createScalar(nb, nl, f32, 1.0f / float(softcap)));
          x = arith::MulFOp::create(nb, nl, math::TanhOp::create(nb, nl, inner),
                                    createScalar(nb, nl, f32, softcap));
        }
        return arith::SelectOp::create(nb, nl, visible, x,
                                       createScalar(nb, nl, f32, -kInf))
            .getResult();
      });

  // Softmax over t. A head sink (or smooth_softmax's zero sink) takes part
  // in the maximum and adds exp(sink - max) to the denominator.
  Value sinks = sink;
  if (!sinks && smooth)
    sinks = filledTensor(b, loc, {b.getIndexAttr(numHeads)}, f32, 0.0);
  if (sinks)
    sinks = tensor::ExpandShapeOp::create(
        b, loc, RankedTensorType::get({kvHeads, groups}, f32), sinks,
        ArrayRef<ReassociationIndices>{{0, 1}});
  SmallVector<OpFoldResult> rowSizes(ArrayRef<OpFoldResult>(scoreSizes).drop_back());
  auto maxf = [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
    return arith::MaximumFOp::create(nb, nl, a[0], a[1]);
  };
  Value rowMax = buildReduction(b, loc, logits, {4}, -kInf, maxf);
  SmallVector<AffineMap> rowMaps = {loopsMap(ctx, 4, {0, 1, 2, 3})};
  if (sinks) {
    rowMax = buildGenerator(
        b, loc, rowSizes, f32, ValueRange{rowMax, sinks},
        {rowMaps[0], loopsMap(ctx, 4, {1, 2})},
        [&](OpBuilder &nb, Location nl, ValueRange, ValueRange args) {
          return maxf(nb, nl, args);
        });
  }
  Value exps = buildWithReduced(
      b, loc, logits, {4}, rowMax, f32,
      [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        // Hidden keys (-inf) weigh 0, also when nothing is visible and the
        // maximum is -inf itself.
        Value hidden = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ,
                                             a[0],
                                             createScalar(nb, nl, f32, -kInf));
        Value e = math::ExpOp::create(
            nb, nl, arith::SubFOp::create(nb, nl, a[0], a[1]));
        return arith::SelectOp::create(nb, nl, hidden,
                                       createScalar(nb, nl, f32, 0.0), e);
      });
  Value rowSum = buildReduction(
      b, loc, exps, {4}, 0.0, [](OpBuilder &nb, Location nl, ValueRange a) {
        return arith::AddFOp::create(nb, nl, a[0], a[1]).getResult();
      });
  if (sinks) {
    rowSum = buildGenerator(
        b, loc, rowSizes, f32, ValueRange{rowSum, rowMax, sinks},
        {rowMaps[0], rowMaps[0], loopsMap(ctx, 4, {1, 2})},
        [&](OpBuilder &nb, Location nl, ValueRange, ValueRange args) {
          Value e = math::ExpOp::create(
              nb, nl, arith::SubFOp::create(nb, nl, args[2], args[1]));
          return arith::AddFOp::create(nb, nl, args[0], e).getResult();
        });
  }
  Value probs = buildWithReduced(
      b, loc, exps, {4}, rowSum, f32,
      [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        // A row with nothing visible (local_window_size 0) gives zeros, as
        // in ONNX Runtime.
        Value zero = createScalar(nb, nl, f32, 0.0);
        Value positive = arith::CmpFOp::create(
            nb, nl, arith::CmpFPredicate::OGT, a[1], zero);
        return arith::SelectOp::create(
            nb, nl, positive, arith::DivFOp::create(nb, nl, a[0], a[1]), zero);
      });

  // Output [B, S, M, G, H] = probs . V, then [B, S, N * H]. Loops (b, m, g,
  // s, d, t).
  SmallVector<OpFoldResult> outSizes = {batch, seq, b.getIndexAttr(kvHeads),
                                        b.getIndexAttr(groups),
                                        b.getIndexAttr(headSize)};
  Value outInit = filledTensor(b, loc, outSizes, f32, 0.0);
  Value out5 =
      linalg::GenericOp::create(
          b, loc, outInit.getType(), ValueRange{probs, presentV}, outInit,
          {loopsMap(ctx, 6, {0, 1, 2, 3, 5}), loopsMap(ctx, 6, {0, 1, 5, 4}),
           loopsMap(ctx, 6, {0, 3, 1, 2, 4})},
          contraction,
          [](OpBuilder &nb, Location nl, ValueRange args) {
            Value p = arith::MulFOp::create(nb, nl, args[0], args[1]);
            linalg::YieldOp::create(nb, nl,
                                    arith::AddFOp::create(nb, nl, args[2], p)
                                        .getResult());
          })
          .getResult(0);
  Value output = tensor::CollapseShapeOp::create(
      b, loc, out5, ArrayRef<ReassociationIndices>{{0}, {1}, {2, 3, 4}});
  node.setOutput(0, output);
  node.setOutput(1, presentK);
  node.setOutput(2, presentV);
  return success();
}

//===----------------------------------------------------------------------===//
// MatMulNBits
//===----------------------------------------------------------------------===//

/// Input `i` reshaped to [rows, cols] when it holds rows * cols elements as
/// [rows * cols] or [rows, cols] (MatMulNBits' scales and zero points);
/// fails naming `what` otherwise.
FailureOr<Value> rowsOf(NodeContext &node, int i, int64_t rows, int64_t cols,
                        const Twine &what) {
  auto input = rankedInput(node, i);
  if (failed(input))
    return failure();
  ArrayRef<int64_t> shape = input->second.getShape();
  bool flat = shape.size() == 1 && shape[0] == rows * cols;
  bool matrix = shape.size() == 2 && shape[0] == rows && shape[1] == cols;
  if (!flat && !matrix)
    return node.fail(what + " must be [" + Twine(rows * cols) + "] or [" +
                     Twine(rows) + ", " + Twine(cols) + "]");
  OpBuilder &b = node.builder();
  return reshapeTo(b, node.loc, input->first,
                   {b.getIndexAttr(rows), b.getIndexAttr(cols)});
}

/// com.microsoft.MatMulNBits: Y = A . W^T (+ bias) with W [N, K] stored as
/// `bits`-bit integers in blocks of `block_size` along K: B [N, blocks,
/// block_size * bits / 8] (low bits first), scales [N, blocks], optional
/// packed uint8 zero points (default 2^(bits - 1)); W = (q - zp) * scale.
/// The weight is dequantised to float32 by one generic at run time (the
/// stored weight stays packed), then multiplied in float32 by the GEMM the
/// pipeline vectorises, whatever accuracy_level says: ONNX Runtime at
/// accuracy_level 4 quantises A to int8 per block instead (see
/// docs/ImportONNX-StandardOps.md).
LogicalResult importMatMulNBits(NodeContext &node) {
  if (failed(checkInputCount(node, 3, 6)) ||
      failed(node.checkAttributes({"K", "N", "bits", "block_size",
                                   "accuracy_level", "weight_prepacked"})))
    return failure();
  int64_t k = node.intAttr("K", 0), n = node.intAttr("N", 0);
  int64_t bits = node.intAttr("bits", 4);
  int64_t blockSize = node.intAttr("block_size", 0);
  if (k <= 0 || n <= 0)
    return node.fail("the K and N attributes must be positive");
  if (bits != 2 && bits != 4 && bits != 8)
    return node.fail("bits must be 2, 4 or 8, got " + Twine(bits));
  if (blockSize < 16 || (blockSize & (blockSize - 1)) != 0)
    return node.fail("block_size must be a power of 2 and at least 16, got " +
                     Twine(blockSize));
  if (node.intAttr("weight_prepacked", 0) > 0)
    return node.fail("prepacked weights (weight_prepacked) are not supported");
  FailureOr<Value> gIdx = node.optionalInput(4);
  if (failed(gIdx))
    return failure();
  if (*gIdx)
    return node.fail("input 4 (g_idx) is not supported");
  auto a = rankedInput(node, 0), weight = rankedInput(node, 1);
  if (failed(a) || failed(weight) ||
      failed(checkF32(node, a->first, -1, "A (input 0)")))
    return failure();
  if (a->second.getRank() < 1 || a->second.getShape().back() != k)
    return node.fail("A's last dimension must be K = " + Twine(k));
  // (Rounded up without k + block_size - 1, which may overflow, as may
  // block_size * bits for a block size near 2^63.)
  if (blockSize > std::numeric_limits<int64_t>::max() / bits)
    return node.fail("block_size " + Twine(blockSize) + " is too large");
  int64_t blocks = k / blockSize + (k % blockSize != 0);
  int64_t blob = blockSize * bits / 8;
  if (!weight->second.getElementType().isUnsignedInteger(8) ||
      weight->second.getShape() != ArrayRef<int64_t>{n, blocks, blob})
    return node.fail("B (input 1) must be uint8 [" + Twine(n) + ", " +
                     Twine(blocks) + ", " + Twine(blob) +
                     "] (N, blocks of K, block_size * bits / 8)");
  FailureOr<Value> scales = rowsOf(node, 2, n, blocks, "scales (input 2)");
  if (failed(scales) || failed(checkF32(node, *scales, 2, "scales (input 2)")))
    return failure();
  int64_t zpBytes = (blocks * bits + 7) / 8;
  FailureOr<Value> zpInput = node.optionalInput(3);
  if (failed(zpInput))
    return failure();
  Value zeroPoints;
  if (*zpInput) {
    Type zpElement = getElementTypeOrSelf(zpInput->getType());
    if (!zpElement.isUnsignedInteger(8))
      return node.fail("zero_points (input 3) of type " + typeName(zpElement) +
                       " are not supported; only packed uint8 zero points");
    FailureOr<Value> zp = rowsOf(node, 3, n, zpBytes, "zero_points (input 3)");
    if (failed(zp))
      return failure();
    zeroPoints = *zp;
  }
  FailureOr<Value> bias = node.optionalInput(5);
  if (failed(bias))
    return failure();
  if (*bias) {
    FailureOr<RankedTensorType> type = checkF32(node, *bias, 1, "bias (input 5)");
    if (failed(type))
      return failure();
    if (type->getDimSize(0) != n)
      return node.fail("bias must have N = " + Twine(n) + " entries");
  }

  FailureOr<Value> weightBytes =
      signlessBytes(node, weight->first, "B (input 1)");
  if (failed(weightBytes))
    return failure();
  if (zeroPoints) {
    FailureOr<Value> zpBytes =
        signlessBytes(node, zeroPoints, "zero_points (input 3)");
    if (failed(zpBytes))
      return failure();
    zeroPoints = *zpBytes;
  }
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  Type f32 = b.getF32Type();
  Value packedRows = reshapeTo(b, loc, *weightBytes,
                               {b.getIndexAttr(n), b.getIndexAttr(blocks * blob)});
  Value dequantized = buildGenerator(
      b, loc, {b.getIndexAttr(n), b.getIndexAttr(k)}, f32, {}, {},
      [&](OpBuilder &nb, Location nl, ValueRange at, ValueRange) {
        Value row = at[0], col = at[1];
        Value q = unpackElement(nb, nl, col, bits, [&](Value byte) {
          return tensor::ExtractOp::create(nb, nl, packedRows,
                                           ValueRange{row, byte});
        });
        Value block = arith::DivUIOp::create(nb, nl, col,
                                             indexConstant(nb, nl, blockSize));
        Value scale =
            tensor::ExtractOp::create(nb, nl, *scales, ValueRange{row, block});
        Value zp;
        if (zeroPoints) {
          zp = unpackElement(nb, nl, block, bits, [&](Value byte) {
            return tensor::ExtractOp::create(nb, nl, zeroPoints,
                                             ValueRange{row, byte});
          });
        } else {
          zp = createScalar(nb, nl, nb.getI32Type(), double(1 << (bits - 1)));
        }
        Value centered = arith::SIToFPOp::create(
            nb, nl, f32, arith::SubIOp::create(nb, nl, q, zp));
        return arith::MulFOp::create(nb, nl, centered, scale).getResult();
      });
  Value product = buildRowsTimesWeightNK(b, loc, a->first, dequantized);
  if (*bias) {
    FailureOr<Value> withBias = buildElementwise(
        node, {product, *bias}, f32,
        [](OpBuilder &nb, Location nl, ValueRange args) -> Value {
          return arith::AddFOp::create(nb, nl, args[0], args[1]);
        });
    if (failed(withBias))
      return failure();
    product = *withBias;
  }
  node.setOutput(0, product);
  return success();
}

//===----------------------------------------------------------------------===//
// GatherBlockQuantized
//===----------------------------------------------------------------------===//

/// com.microsoft.GatherBlockQuantized: Gather along gather_axis of data
/// dequantised blockwise along quantize_axis, (q - zp) * scale. Data is
/// int4/uint4 (imported one value per byte; zero points default to 0) or
/// uint8 holding `bits`-bit values packed along the last axis (zero points
/// packed alike, default 2^(bits - 1)). Indices are normalised and clamped
/// as Gather's are (ONNX Runtime reports an error for out-of-range ones).
LogicalResult importGatherBlockQuantized(NodeContext &node) {
  if (failed(checkInputCount(node, 3, 4)) ||
      failed(node.checkAttributes(
          {"gather_axis", "quantize_axis", "block_size", "bits"})))
    return failure();
  auto data = rankedInput(node, 0), indices = rankedInput(node, 1);
  if (failed(data) || failed(indices))
    return failure();
  auto scalesInput = rankedInput(node, 2);
  if (failed(scalesInput))
    return failure();
  Type scaleElement = scalesInput->second.getElementType();
  if (!scaleElement.isF32())
    return node.fail("scales must be float32, got " + typeName(scaleElement));
  Type indexElement = indices->second.getElementType();
  if (!indexElement.isSignlessInteger(32) && !indexElement.isSignlessInteger(64))
    return node.fail("indices must be int32 or int64");
  Type dataElement = data->second.getElementType();
  // int4/uint4 initializers import as i8 values; uint8 holds packed values.
  bool packedBytes = dataElement.isUnsignedInteger(8);
  if (!packedBytes && !dataElement.isSignlessInteger(8))
    return node.fail("data must be int4, uint4 or uint8, got " +
                     typeName(dataElement));
  int64_t bits = node.intAttr("bits", 4);
  int64_t blockSize = node.intAttr("block_size", 128);
  if (blockSize < 16 || (blockSize & (blockSize - 1)) != 0)
    return node.fail("block_size must be a power of 2 and at least 16, got " +
                     Twine(blockSize));
  if (packedBytes ? (bits != 2 && bits != 4 && bits != 8) : bits != 4)
    return node.fail("bits must be " +
                     Twine(packedBytes ? "2, 4 or 8 for uint8 data"
                                       : "4 for int4/uint4 data") +
                     ", got " + Twine(bits));
  int64_t rank = data->second.getRank();
  if (rank < 1 || !data->second.hasStaticShape())
    return node.fail("data must have a static shape of rank >= 1");
  FailureOr<int64_t> gatherAxis =
      normalizeAxis(node, node.intAttr("gather_axis", 0), rank, "gather_axis");
  FailureOr<int64_t> quantizeAxis = normalizeAxis(
      node, node.intAttr("quantize_axis", 1), rank, "quantize_axis");
  if (failed(gatherAxis) || failed(quantizeAxis))
    return failure();
  if (*gatherAxis == *quantizeAxis)
    return node.fail("gather_axis and quantize_axis must differ");
  int64_t perByte = packedBytes ? 8 / bits : 1;
  if (packedBytes && (*gatherAxis != 0 || *quantizeAxis != rank - 1))
    return node.fail("uint8 data needs gather_axis 0 and quantize_axis the "
                     "last axis");
  // The logical (unpacked) shape of data and the scales' shape.
  SmallVector<int64_t> logical(data->second.getShape());
  if (logical[*quantizeAxis] > std::numeric_limits<int64_t>::max() / perByte)
    return node.fail("data's quantize_axis dimension is too large");
  logical[*quantizeAxis] *= perByte;
  SmallVector<int64_t> scaleShape(logical);
  scaleShape[*quantizeAxis] = logical[*quantizeAxis] / blockSize +
                              (logical[*quantizeAxis] % blockSize != 0);
  if (scalesInput->second.getShape() != ArrayRef<int64_t>(scaleShape))
    return node.fail("scales must be [" +
                     llvm::join(llvm::map_range(scaleShape,
                                                [](int64_t d) {
                                                  return std::to_string(d);
                                                }),
                                ", ") +
                     "]");
  FailureOr<Value> zpInput = node.optionalInput(3);
  if (failed(zpInput))
    return failure();
  Value zeroPoints = *zpInput;
  if (zeroPoints) {
    auto zpType = cast<RankedTensorType>(zeroPoints.getType());
    SmallVector<int64_t> zpShape(scaleShape);
    zpShape[*quantizeAxis] = (zpShape[*quantizeAxis] + perByte - 1) / perByte;
    if (zpType.getElementType() != dataElement ||
        zpType.getShape() != ArrayRef<int64_t>(zpShape))
      return node.fail("zero_points must have data's type and the scales' "
                       "shape (packed like data for uint8)");
  }

  Value values = data->first;
  if (packedBytes) {
    FailureOr<Value> bytes = signlessBytes(node, values, "data (input 0)");
    if (failed(bytes))
      return failure();
    values = *bytes;
    if (zeroPoints) {
      FailureOr<Value> zpBytes =
          signlessBytes(node, zeroPoints, "zero_points (input 3)");
      if (failed(zpBytes))
        return failure();
      zeroPoints = *zpBytes;
    }
  }
  OpBuilder &b = node.builder();
  Location loc = node.loc;
  Type f32 = b.getF32Type();
  Value scales = scalesInput->first;
  int64_t q = indices->second.getRank();
  SmallVector<OpFoldResult> sizes;
  for (int64_t d = 0; d < *gatherAxis; ++d)
    sizes.push_back(b.getIndexAttr(logical[d]));
  llvm::append_range(sizes, mixedSizes(b, loc, indices->first));
  for (int64_t d = *gatherAxis + 1; d < rank; ++d)
    sizes.push_back(b.getIndexAttr(logical[d]));
  int64_t outRank = sizes.size();
  MLIRContext *ctx = b.getContext();
  SmallVector<int64_t> indexLoops;
  for (int64_t j = 0; j < q; ++j)
    indexLoops.push_back(*gatherAxis + j);
  int64_t axisSize = logical[*gatherAxis];
  Value result = buildGenerator(
      b, loc, sizes, f32, indices->first, loopsMap(ctx, outRank, indexLoops),
      [&](OpBuilder &nb, Location nl, ValueRange at, ValueRange args) {
        Value index =
            normalizeIndex(nb, nl, args[0], indexConstant(nb, nl, axisSize));
        SmallVector<Value> element;
        for (int64_t d = 0; d < *gatherAxis; ++d)
          element.push_back(at[d]);
        element.push_back(index);
        for (int64_t d = *gatherAxis + 1; d < rank; ++d)
          element.push_back(at[d - 1 + q]);
        SmallVector<Value> scaleAt(element);
        Value block = arith::DivUIOp::create(
            nb, nl, element[*quantizeAxis], indexConstant(nb, nl, blockSize));
        scaleAt[*quantizeAxis] = block;
        auto read = [&](Value tensor, ArrayRef<Value> where, Value along) {
          if (!packedBytes)
            return arith::ExtSIOp::create(
                       nb, nl, nb.getI32Type(),
                       tensor::ExtractOp::create(nb, nl, tensor, where))
                .getResult();
          return unpackElement(nb, nl, along, bits, [&](Value byte) {
            SmallVector<Value> byteAt(where);
            byteAt[*quantizeAxis] = byte;
            return tensor::ExtractOp::create(nb, nl, tensor, byteAt)
                .getResult();
          });
        };
        Value value = read(values, element, element[*quantizeAxis]);
        Value zp = zeroPoints
                       ? read(zeroPoints, scaleAt, block)
                       : createScalar(nb, nl, nb.getI32Type(),
                                      packedBytes ? double(1 << (bits - 1))
                                                  : 0.0);
        Value scale = tensor::ExtractOp::create(nb, nl, scales, scaleAt);
        Value centered = arith::SIToFPOp::create(
            nb, nl, f32, arith::SubIOp::create(nb, nl, value, zp));
        return arith::MulFOp::create(nb, nl, centered, scale).getResult();
      });
  node.setOutput(0, result);
  return success();
}

} // namespace

NodeImporter mlir::moe::onnx_import::lookupContribImporter(StringRef opType) {
  return llvm::StringSwitch<NodeImporter>(opType)
      .Case("GroupQueryAttention", importGroupQueryAttention)
      .Case("RotaryEmbedding", importRotaryEmbedding)
      .Case("MatMulNBits", importMatMulNBits)
      .Case("GatherBlockQuantized", importGatherBlockQuantized)
      .Default(nullptr);
}
