//===- ExpertKernels.cpp - CPU kernels of moe.expert's projections --------===//
//
// The float contraction of an expert projection, and the kernels of
// quantised projections: dequantisation of weight rows into a float panel,
// and the decode kernel that multiplies the packed bytes directly.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/ExpertKernels.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::moe;

WeightLayout WeightLayout::of(Value w, int64_t panelWidth) {
  return {panelWidth,
          panelWidth && panelStepsOfK(getElementTypeOrSelf(w)) == 2};
}

AffineMap WeightLayout::weightMap(MLIRContext *ctx) const {
  AffineExpr n = getAffineDimExpr(rowLoops, ctx),
             k = getAffineDimExpr(rowLoops + 1, ctx);
  SmallVector<AffineExpr> index = {n, k};
  if (panelWidth)
    index = {n.floorDiv(panelWidth), k, n % panelWidth};
  if (pairs)
    index.push_back(getAffineDimExpr(rowLoops + 2, ctx));
  return AffineMap::get(loops(), 0, index, ctx);
}

AffineExpr WeightLayout::kOfA(MLIRContext *ctx) const {
  AffineExpr k = getAffineDimExpr(rowLoops + 1, ctx);
  return pairs ? k * 2 + getAffineDimExpr(rowLoops + 2, ctx) : k;
}

SmallVector<AffineMap> WeightLayout::rowsInPlaceMaps(MLIRContext *ctx) const {
  SmallVector<AffineExpr> a, c;
  for (unsigned d = 0; d < rowLoops; ++d)
    a.push_back(getAffineDimExpr(d, ctx));
  c = a;
  a.push_back(kOfA(ctx));
  c.push_back(getAffineDimExpr(rowLoops, ctx));
  return {AffineMap::get(loops(), 0, a, ctx), weightMap(ctx),
          AffineMap::get(loops(), 0, c, ctx)};
}

/// `c[m, n] (+)= sum_k A(m, k) * w(n, k)` as a linalg.generic whose first
/// operand is `aOperand`, indexed by `aIndex` (of the loops m and k), and
/// whose body gets A's element from that operand's with `elementOfA` (given
/// a callback emitting k's index). `w` is out-major (`w[n, k]`), or
/// panel-major with `panelWidth` P (`w[n floordiv P, k, n mod P]`).
/// Panel-major bf16 weights, `[N / P, K / 2, P, 2]`, are read at
/// `[n floordiv P, k2, n mod P, r]` with k split into two loops,
/// k = 2 * k2 + r, so that each loop is some operand's dimension.
static linalg::GenericOp emitTransposedBContraction(
    ImplicitLocOpBuilder &b, Value aOperand,
    function_ref<SmallVector<AffineExpr>(AffineExpr m, AffineExpr k)> aIndex,
    Value w, int64_t panelWidth, Value c,
    function_ref<Value(ImplicitLocOpBuilder &, Value, function_ref<Value()>)>
        elementOfA) {
  MLIRContext *ctx = b.getContext();
  WeightLayout layout = WeightLayout::of(w, panelWidth);
  bool pairs = layout.pairs;
  unsigned loops = layout.loops();
  AffineExpr m = getAffineDimExpr(0, ctx), n = getAffineDimExpr(1, ctx);
  SmallVector<AffineMap> maps = {
      AffineMap::get(loops, 0, aIndex(m, layout.kOfA(ctx)), ctx),
      layout.weightMap(ctx), AffineMap::get(loops, 0, {m, n}, ctx)};
  SmallVector<utils::IteratorType> iterators(loops,
                                             utils::IteratorType::reduction);
  iterators[0] = iterators[1] = utils::IteratorType::parallel;
  Type accType = cast<MemRefType>(c.getType()).getElementType();
  return linalg::GenericOp::create(
      b, ValueRange{aOperand, w}, ValueRange{c}, maps, iterators,
      [&](OpBuilder &nested, Location loc, ValueRange args) {
        ImplicitLocOpBuilder nb(loc, nested);
        KernelEmitter ne(nb);
        auto kIndex = [&]() -> Value {
          Value k = linalg::IndexOp::create(nb, 2);
          if (!pairs)
            return k;
          return ne.addi(ne.muli(k, ne.index(2)),
                         linalg::IndexOp::create(nb, 3));
        };
        Value product =
            ne.mulf(ne.castFloat(elementOfA(nb, args[0], kIndex), accType),
                    ne.castFloat(args[1], accType));
        linalg::YieldOp::create(nb, ne.addf(args[2], product));
      });
}

linalg::GenericOp mlir::moe::emitMatmulTransposedB(ImplicitLocOpBuilder &b,
                                                   Value a, Value w, Value c,
                                                   int64_t panelWidth) {
  return emitTransposedBContraction(
      b, a,
      [](AffineExpr m, AffineExpr k) {
        return SmallVector<AffineExpr>{m, k};
      },
      w, panelWidth, c,
      [](ImplicitLocOpBuilder &, Value element, function_ref<Value()>) {
        return element;
      });
}

/// The index of the last row of `source`.
static Value lastRowOf(ImplicitLocOpBuilder &b, Value source) {
  KernelEmitter e(b);
  return e.subi(e.dim(source, 0), e.index(1));
}

linalg::GenericOp
mlir::moe::emitGatheredMatmulTransposedB(ImplicitLocOpBuilder &b, Value source,
                                         Value tokens, Value w, Value c,
                                         int64_t panelWidth) {
  Value lastRow = lastRowOf(b, source);
  return emitTransposedBContraction(
      b, tokens,
      [](AffineExpr m, AffineExpr) { return SmallVector<AffineExpr>{m}; }, w,
      panelWidth, c,
      [&](ImplicitLocOpBuilder &nb, Value token,
          function_ref<Value()> column) -> Value {
        Value row = KernelEmitter(nb).clampedTokenRow(token, lastRow);
        return memref::LoadOp::create(nb, source, ValueRange{row, column()});
      });
}

void mlir::moe::emitGatherRows(ImplicitLocOpBuilder &b, Value source,
                               Value tokens, Value out) {
  KernelEmitter e(b);
  Value lastRow = lastRowOf(b, source);
  Value c0 = e.index(0), c1 = e.index(1);
  e.parallelFor(c0, e.dim(out, 0), c1, [&](Value r) {
    Value row = e.clampedTokenRow(e.load(tokens, r), lastRow);
    e.loop(c0, e.dim(out, 1), [&](Value h) {
      e.store(e.load(source, {row, h}), out, {r, h});
    });
  });
}

namespace {

/// Loads byte `indices` of a `ui8` buffer as an `i32` in [0, 255]. Arith
/// only knows signless integers; the cast disappears when the load itself
/// becomes an LLVM load of i8.
Value loadByte(KernelEmitter &e, Value memref, ValueRange indices) {
  ImplicitLocOpBuilder &b = e.builder();
  Value byte = e.load(memref, indices);
  byte =
      UnrealizedConversionCastOp::create(b, b.getI8Type(), byte).getResult(0);
  return arith::ExtUIOp::create(b, b.getI32Type(), byte);
}

/// Nibble `which` (0 low, 1 high; an index) of an i32 byte.
Value loadNibble(KernelEmitter &e, Value byte, Value which) {
  ImplicitLocOpBuilder &b = e.builder();
  // Ops are built one statement at a time so that the emitted IR does not
  // depend on the C++ compiler's argument evaluation order.
  Value which32 = e.toI32(which);
  Value shift = arith::ShLIOp::create(b, which32, e.i32(2));
  Value shifted = arith::ShRUIOp::create(b, byte, shift);
  return arith::AndIOp::create(b, shifted, e.i32(15));
}

/// The scale of block `blk` of row `n` of expert `x`, in type `ct`.
Value loadScale(KernelEmitter &e, const QuantizedProjection &p, QuantAttr quant,
                Value x, Value n, Value blk, Type ct) {
  Value scale = quant.getBlockSize() == 0 ? e.load(p.scales, {x, n})
                                          : e.load(p.scales, {x, n, blk});
  return e.castFloat(scale, ct);
}

/// The zero point of block `blk` of row `n` of expert `x`, in type `ct`:
/// 2^(bits - 1) without zero-point operands.
Value loadZeroPoint(KernelEmitter &e, const QuantizedProjection &p,
                    QuantAttr quant, Value x, Value n, Value blk, Type ct) {
  ImplicitLocOpBuilder &b = e.builder();
  int64_t bits = quant.getBits();
  bool perRow = quant.getBlockSize() == 0;
  auto toFloat = [&](Value i32) -> Value {
    return arith::UIToFPOp::create(b, ct, i32);
  };
  if (!p.zeroPoints)
    return e.f(ct, double(int64_t(1) << (bits - 1)));
  if (bits == 8)
    return toFloat(perRow ? loadByte(e, p.zeroPoints, {x, n})
                          : loadByte(e, p.zeroPoints, {x, n, blk}));
  // 4-bit zero points pack two per byte: along the rows for per-row
  // scales, along the blocks otherwise; the low nibble comes first.
  Value c2 = e.index(2);
  Value packed = perRow ? n : blk;
  Value byteIndex = arith::DivUIOp::create(b, packed, c2);
  Value which = arith::RemUIOp::create(b, packed, c2);
  Value byte = perRow ? loadByte(e, p.zeroPoints, {x, byteIndex})
                      : loadByte(e, p.zeroPoints, {x, n, byteIndex});
  return toFloat(loadNibble(e, byte, which));
}

/// Writes rows `[n0, n0 + rows)` of expert `x`'s dequantised weight,
/// `(q - zp) * scale` with K logical columns, into rows `[0, rows)` of
/// `panel` (compute type). Rows are independent and run in parallel.
void emitDequantizeRows(ImplicitLocOpBuilder &b, const QuantizedProjection &p,
                        QuantAttr quant, Value x, Value n0, Value rows,
                        int64_t depth, Value panel) {
  KernelEmitter e(b);
  Type ct = cast<MemRefType>(panel.getType()).getElementType();
  int64_t bits = quant.getBits();
  // Per-row scales are one block spanning the whole row.
  int64_t block = quant.getBlockSize() ? quant.getBlockSize() : depth;
  int64_t numBlocks = (depth + block - 1) / block;
  Value c0 = e.index(0), c1 = e.index(1), c2 = e.index(2);
  e.parallelFor(c0, rows, c1, [&](Value r) {
    Value n = e.addi(n0, r);
    // Bytes are unpacked `chunk` at a time as vectors (a 4-bit block of 16
    // is 8 bytes), the rest of a block one by one. A block is whole bytes:
    // blocks are even-sized and a 4-bit K is even.
    int64_t pack = quant.getPackFactor();
    int64_t blockBytes = block / pack;
    int64_t chunk = std::min<int64_t>(16, blockBytes);
    Type storage = cast<MemRefType>(p.weights.getType()).getElementType();
    auto i32Vec = VectorType::get({chunk}, b.getI32Type());
    auto floatVec = VectorType::get({chunk}, ct);
    Value i15 = arith::ConstantIntOp::create(b, b.getI32Type(), 15);
    Value i4 = arith::ConstantIntOp::create(b, b.getI32Type(), 4);
    Value cPack = e.index(pack);
    e.loop(c0, e.index(numBlocks), [&](Value blk) {
      Value scale = loadScale(e, p, quant, x, n, blk, ct);
      Value zp = loadZeroPoint(e, p, quant, x, n, blk, ct);
      // (q - zp) * scale, for scalars and (with broadcast zp/scale) vectors.
      Value zpVec = vector::BroadcastOp::create(b, floatVec, zp);
      Value scaleVec = vector::BroadcastOp::create(b, floatVec, scale);
      auto dequant = [&](Value q) {
        bool vec = isa<VectorType>(q.getType());
        Value f = arith::UIToFPOp::create(b, vec ? Type(floatVec) : ct, q);
        return e.mulf(e.subf(f, vec ? zpVec : zp), vec ? scaleVec : scale);
      };
      Value firstByte = e.muli(blk, e.index(blockBytes));
      Value blockEnd = e.addi(firstByte, e.index(blockBytes));
      Value lastByte =
          arith::MinUIOp::create(b, blockEnd, e.index(depth / pack));
      Value cChunk = e.index(chunk);
      Value vecEnd = e.addi(
          firstByte,
          e.muli(arith::DivUIOp::create(b, e.subi(lastByte, firstByte), cChunk),
                 cChunk));
      e.loop(
          firstByte, vecEnd,
          [&](Value j) {
            Value raw =
                vector::LoadOp::create(b, VectorType::get({chunk}, storage),
                                       p.weights, ValueRange{x, n, j});
            raw = UnrealizedConversionCastOp::create(
                      b, VectorType::get({chunk}, b.getI8Type()), raw)
                      .getResult(0);
            Value codes = arith::ExtUIOp::create(b, i32Vec, raw);
            if (bits == 8) {
              vector::StoreOp::create(b, dequant(codes), panel,
                                      ValueRange{r, j});
              return;
            }
            // Low nibbles are the even columns, high nibbles the odd ones.
            Value lo = arith::AndIOp::create(b, codes, e.splat(i32Vec, 15));
            Value hi = arith::ShRUIOp::create(b, codes, e.splat(i32Vec, 4));
            Value even = dequant(lo);
            Value odd = dequant(hi);
            Value both = vector::InterleaveOp::create(b, even, odd);
            vector::StoreOp::create(b, both, panel,
                                    ValueRange{r, e.muli(j, c2)});
          },
          cChunk);
      e.loop(vecEnd, lastByte, [&](Value j) {
        Value byte = loadByte(e, p.weights, {x, n, j});
        if (bits == 8) {
          e.store(dequant(byte), panel, {r, j});
          return;
        }
        Value c = e.muli(j, cPack);
        Value even = dequant(arith::AndIOp::create(b, byte, i15));
        e.store(even, panel, {r, c});
        Value odd = dequant(arith::ShRUIOp::create(b, byte, i4));
        Value next = e.addi(c, c1);
        e.store(odd, panel, {r, next});
      });
    });
  });
}

/// Expert row counts up to which a quantised projection runs the fused
/// decode kernel (emitQuantizedMatvec) instead of dequantising panels. With
/// few rows the panel path is bound by writing and rereading the f32 panel;
/// the fused kernel reads each packed byte once. It dequantises a weight row
/// again for every group of kDecodeRowGroup rows, so its cost grows with the
/// rows; on int8 Mixtral-8x7B / 4 it still measured a little faster than the
/// panels at 8-16 rows per expert (T = 32-64). Beyond that the panels'
/// register-tiled contraction, which reuses each dequantised weight across
/// rows, is meant to win.
constexpr int64_t kDecodeMaxRows = 16;
/// Activation rows the decode kernel multiplies by a weight row in one pass;
/// their accumulators live in registers. A larger count takes more passes
/// over the same weight row, which is then in L1.
constexpr int64_t kDecodeRowGroup = 4;
/// Weight rows per iteration of the decode kernel's parallel loop (the
/// worker pool hands each thread several iterations at once).
constexpr int64_t kDecodeTileRows = 16;
/// Rows of an expert from which the int8 kernel takes outer products of
/// rearranged weight panels (emitInt8PanelGemm) instead of dot products
/// along the weight rows (emitInt8Matvec): where a weight scale covers 64
/// bytes or more the dot products take four weight rows per step, and at
/// 16 rows still beat rearranging the panel (int8 Mixtral-8x7B / 4 at
/// T = 64); with smaller blocks they take one, and the panels win from
/// where the dequantised float panels did.
constexpr int64_t kInt8PanelMinRows = 32;
constexpr int64_t kInt8PanelMinRowsSmallBlocks = kDecodeMaxRows + 1;
/// Columns the decode kernel dequantises per vector step: 64 f32 are four
/// AVX-512 registers, independent FMA chains that hide the FMA latency.
constexpr int64_t kDecodeChunk = 64;

/// Loads the codes of columns `[k, k + lanes)` of row `n` of expert `x` as
/// `pack` vectors of `lanes / pack` floats (type `ct`): the codes in order
/// for 8-bit; for 4-bit the low nibbles (even columns) and the high nibbles
/// (odd columns) of `lanes / 2` bytes, each widened once and masked or
/// shifted in place, so that no lane shuffle is needed; the kernel reads the
/// activation in the matching (deinterleaved) order.
SmallVector<Value> loadCodes(KernelEmitter &e, const QuantizedProjection &p,
                             int64_t bits, Value x, Value n, Value k,
                             int64_t lanes, Type ct) {
  ImplicitLocOpBuilder &b = e.builder();
  int64_t pack = 8 / bits;
  int64_t bytes = lanes / pack;
  Type storage = cast<MemRefType>(p.weights.getType()).getElementType();
  Value byteIndex = arith::DivUIOp::create(b, k, e.index(pack));
  Value raw = vector::LoadOp::create(b, VectorType::get({bytes}, storage),
                                     p.weights, ValueRange{x, n, byteIndex});
  // Arith only knows signless integers.
  auto i8Vec = VectorType::get({bytes}, b.getI8Type());
  auto i32Vec = VectorType::get({bytes}, b.getI32Type());
  auto floatVec = VectorType::get({bytes}, ct);
  Value codes = UnrealizedConversionCastOp::create(b, i8Vec, raw).getResult(0);
  Value wide = arith::ExtUIOp::create(b, i32Vec, codes);
  if (bits == 8)
    return {arith::UIToFPOp::create(b, floatVec, wide)};
  Value lo = arith::AndIOp::create(b, wide, e.splat(i32Vec, 15));
  Value hi = arith::ShRUIOp::create(b, wide, e.splat(i32Vec, 4));
  Value even = arith::UIToFPOp::create(b, floatVec, lo);
  Value odd = arith::UIToFPOp::create(b, floatVec, hi);
  return {even, odd};
}

/// The vector step of the decode kernel for blocks of `block` columns: a
/// power of two within a block, so that every step has one scale and the
/// final reduction halves evenly.
int64_t decodeLanes(int64_t block) {
  int64_t lanes = 1;
  while (lanes * 2 <= std::min(kDecodeChunk, block))
    lanes *= 2;
  return lanes;
}

/// `c[m, n - nBegin] += sum_k a[m, k] * W[x][n, k]` for weight rows n in
/// `[nBegin, nEnd)` and the few rows of `a` that an expert gets at decode,
/// streaming the packed weight once. `a` is staged (emitStageRows) where
/// decodeNeedsStaging says so.
///
/// A parallel loop over tiles of weight rows n; for each n and each group
/// of up to kDecodeRowGroup rows m, the codes of a block are loaded a
/// vector at a time, converted to floats, dequantised in registers as
/// q * scale - zp * scale (one FMA) and multiplied into accumulator vectors
/// per row m, which are reduced once at the end of the row. Nothing is
/// written but `c`.
void emitQuantizedMatvec(ImplicitLocOpBuilder &b, Value staged,
                         const QuantizedProjection &p, QuantAttr quant, Value x,
                         Value nBegin, Value nEnd, int64_t depth, Value c) {
  KernelEmitter e(b);
  Type ct = cast<MemRefType>(c.getType()).getElementType();
  int64_t bits = quant.getBits();
  int64_t pack = quant.getPackFactor();
  // Per-row scales are one block spanning the whole row.
  int64_t block = quant.getBlockSize() ? quant.getBlockSize() : depth;
  // The columns of a block past the last whole vector step are done one
  // byte at a time. A 4-bit block is an even number of columns, so a step
  // is whole bytes.
  int64_t lanes = decodeLanes(block);
  // Each step gives `pack` vectors (4-bit: even and odd columns) of `part`
  // lanes, each with accumulators of its own.
  int64_t part = lanes / pack;
  auto partVec = VectorType::get({part}, ct);
  Value zeroVec = e.splat(partVec, 0.0);
  Value zero = e.f(ct, 0.0);
  Value c0 = e.index(0);
  Value numRows = e.dim(staged, 0);

  // Row n of the weight times rows [m0, m0 + group) of `a`.
  auto emitRow = [&](Value n, Value m0, int64_t group) {
    SmallVector<Value> rowsM;
    for (int64_t i = 0; i < group; ++i)
      rowsM.push_back(e.addi(m0, e.index(i)));
    // Carried values: `pack` vector accumulators per row (acc[i * pack +
    // t]), then a scalar one per row for the columns done byte by byte.
    int64_t numVec = group * pack;
    SmallVector<Value> init(numVec, zeroVec);
    init.append(group, zero);
    // Blocks [first, first + count) of `cols` columns each.
    auto emitBlocks = [&](int64_t first, int64_t count, int64_t cols,
                          ValueRange acc) -> SmallVector<Value> {
      int64_t vecCols = cols / lanes * lanes;
      return e.loop(
          e.index(first), e.index(first + count), acc,
          [&](Value blk, ValueRange acc) {
            Value scale = loadScale(e, p, quant, x, n, blk, ct);
            Value zp = loadZeroPoint(e, p, quant, x, n, blk, ct);
            Value offset = arith::NegFOp::create(b, e.mulf(zp, scale));
            Value scaleVec = vector::BroadcastOp::create(b, partVec, scale);
            Value offsetVec = vector::BroadcastOp::create(b, partVec, offset);
            Value k0 = e.muli(blk, e.index(block));
            SmallVector<Value> next = e.loop(
                c0, e.index(vecCols), acc,
                [&](Value j, ValueRange acc) {
                  Value k = e.addi(k0, j);
                  SmallVector<Value> codes =
                      loadCodes(e, p, bits, x, n, k, lanes, ct);
                  SmallVector<Value> next(acc);
                  for (int64_t t = 0; t < pack; ++t) {
                    Value w =
                        vector::FMAOp::create(b, codes[t], scaleVec, offsetVec);
                    Value col = e.addi(k, e.index(t * part));
                    for (int64_t i = 0; i < group; ++i) {
                      Value act = vector::LoadOp::create(
                          b, partVec, staged, ValueRange{rowsM[i], col});
                      next[i * pack + t] =
                          vector::FMAOp::create(b, w, act, acc[i * pack + t]);
                    }
                  }
                  return next;
                },
                e.index(lanes));
            // The rest of the block, a byte (one or two columns) at a time.
            return e.loop(
                e.index(vecCols), e.index(cols), next,
                [&](Value j, ValueRange acc) {
                  Value k = e.addi(k0, j);
                  Value byte = loadByte(
                      e, p.weights,
                      {x, n, arith::DivUIOp::create(b, k, e.index(pack))});
                  SmallVector<Value> next(acc);
                  for (int64_t t = 0; t < pack; ++t) {
                    // Low nibble = even column.
                    Value code = byte;
                    if (bits == 4 && t == 0)
                      code = arith::AndIOp::create(b, byte, e.i32(15));
                    else if (bits == 4)
                      code = arith::ShRUIOp::create(b, byte, e.i32(4));
                    Value w =
                        e.mulf(e.subf(arith::UIToFPOp::create(b, ct, code), zp),
                               scale);
                    Value col = e.addi(k, e.index(t));
                    for (int64_t i = 0; i < group; ++i) {
                      Value act = e.load(staged, {rowsM[i], col});
                      next[numVec + i] =
                          e.addf(next[numVec + i], e.mulf(w, act));
                    }
                  }
                  return next;
                },
                e.index(pack));
          });
    };
    SmallVector<Value> acc = emitBlocks(0, depth / block, block, init);
    if (depth % block)
      acc = emitBlocks(depth / block, 1, depth % block, acc);
    // One horizontal reduction per row: the even and odd accumulators are
    // added lane-wise first.
    for (int64_t i = 0; i < group; ++i) {
      Value lanesSum = acc[i * pack];
      for (int64_t t = 1; t < pack; ++t)
        lanesSum = e.addf(lanesSum, acc[i * pack + t]);
      Value sum =
          vector::ReductionOp::create(b, vector::CombiningKind::ADD, lanesSum,
                                      Value(), arith::FastMathFlags::reassoc);
      sum = e.addf(sum, acc[numVec + i]);
      Value column = e.subi(n, nBegin);
      e.store(e.addf(e.load(c, {rowsM[i], column}), sum), c,
              {rowsM[i], column});
    }
  };

  emitDecodeTiles(b, nBegin, nEnd, numRows,
                  [&](Value n, int64_t, Value m0, int64_t group) {
                    emitRow(n, m0, group);
                  });
}

} // namespace

Value mlir::moe::weightsBuffer(Value weights) {
  Value buffer = weights;
  while (auto subview = buffer.getDefiningOp<memref::SubViewOp>())
    buffer = subview.getSource();
  if (buffer == weights ||
      !cast<MemRefType>(buffer.getType()).getLayout().isIdentity())
    return Value();
  return buffer;
}

void mlir::moe::markNextWeights(Operation *loop, bool followingPanels) {
  loop->walk([&](linalg::GenericOp gemm) {
    if (!gemm->hasAttr(kExpertGemmAttrName))
      return;
    Value weights = gemm.getDpsInputs()[1];
    Value buffer = weightsBuffer(weights);
    if (!buffer)
      return;
    auto weightsType = cast<MemRefType>(weights.getType());
    auto bufferType = cast<MemRefType>(buffer.getType());
    // Panel-major weights are [N / P, K, P] (bf16 pairs: [N / P, K / 2, P,
    // 2]); out-major ones, [N, K], take no prefetch from it.
    if (weightsType.getRank() < 3 || !weightsType.hasStaticShape() ||
        !bufferType.hasStaticShape())
      return;
    int64_t offset = followingPanels ? weightsType.getNumElements()
                                     : bufferType.getNumElements() /
                                           bufferType.getDimSize(0);
    gemm->setAttr(
        kNextWeightsOffsetAttrName,
        IntegerAttr::get(IntegerType::get(gemm.getContext(), 64), offset));
  });
}

Value mlir::moe::reduceTransposed(ImplicitLocOpBuilder &b,
                                  ArrayRef<Value> vectors) {
  int64_t lanes = cast<VectorType>(vectors.front().getType()).getNumElements();
  // Every vector holds `groups` groups of `width` partial sums. Combining
  // the `sources` (x, or x then y) gives their groups in order, each half
  // as wide.
  auto combine = [&](Value x, Value y, int64_t sources, int64_t groups,
                     int64_t width) {
    int64_t size = cast<VectorType>(x.getType()).getNumElements();
    SmallVector<int64_t> low, high;
    for (int64_t source = 0; source < sources; ++source)
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t l = 0; l < width / 2; ++l) {
          int64_t lane = source * size + g * width + l;
          low.push_back(lane);
          high.push_back(lane + width / 2);
        }
    Value lo = vector::ShuffleOp::create(b, x, y, low);
    Value hi = vector::ShuffleOp::create(b, x, y, high);
    return arith::AddFOp::create(b, lo, hi).getResult();
  };
  SmallVector<Value> level(vectors.begin(), vectors.end());
  int64_t groups = 1, width = lanes;
  while (level.size() > 1) {
    SmallVector<Value> next;
    for (size_t i = 0; i < level.size(); i += 2)
      next.push_back(combine(level[i], level[i + 1], 2, groups, width));
    level = std::move(next);
    groups *= 2;
    width /= 2;
  }
  // One vector of `count` groups: each group is summed within itself, the
  // vector halving every step down to vector<count>.
  Value v = level.front();
  for (; width > 1; width /= 2)
    v = combine(v, v, 1, groups, width);
  assert(groups == static_cast<int64_t>(vectors.size()) &&
         "one group per input vector");
  return v;
}

void mlir::moe::emitDecodeTiles(
    ImplicitLocOpBuilder &b, Value nBegin, Value nEnd, Value numRows,
    function_ref<void(Value n, int64_t count, Value m0, int64_t group)>
        emitRows,
    int64_t weightRows) {
  KernelEmitter e(b);
  Value c0 = e.index(0), c1 = e.index(1);
  Value tileRows = e.index(kDecodeTileRows);
  Value numTiles =
      arith::CeilDivUIOp::create(b, e.subi(nEnd, nBegin), tileRows);
  // Weight rows [from, to) `count` at a time, times groups of up to
  // `maxGroup` activation rows.
  auto forRows = [&](Value from, Value to, int64_t count, int64_t maxGroup) {
    e.loop(
        from, to,
        [&](Value n) {
          e.loop(
              c0, numRows,
              [&](Value m0) {
                // The accumulators are registers, so their number is
                // static: one case per group size, the default being a
                // whole group.
                Value group = arith::MinUIOp::create(b, e.index(maxGroup),
                                                     e.subi(numRows, m0));
                SmallVector<int64_t> sizes;
                for (int64_t g = 1; g < maxGroup; ++g)
                  sizes.push_back(g);
                auto sw = scf::IndexSwitchOp::create(b, TypeRange{}, group,
                                                     sizes, sizes.size());
                auto emitCase = [&](Region &region, int64_t g) {
                  OpBuilder::InsertionGuard caseGuard(b);
                  b.setInsertionPointToStart(&region.emplaceBlock());
                  emitRows(n, count, m0, g);
                  scf::YieldOp::create(b);
                };
                for (auto [region, g] : llvm::zip(sw.getCaseRegions(), sizes))
                  emitCase(region, g);
                emitCase(sw.getDefaultRegion(), maxGroup);
              },
              e.index(maxGroup));
        },
        e.index(count));
  };
  e.parallelFor(c0, numTiles, c1, [&](Value tile) {
    Value n0 = e.addi(nBegin, e.muli(tile, tileRows));
    Value n1 = arith::MinUIOp::create(b, e.addi(n0, tileRows), nEnd);
    if (weightRows == 1) {
      forRows(n0, n1, 1, kDecodeRowGroup);
      return;
    }
    // Whole steps of weight rows with smaller groups of activation rows
    // (their product of accumulators is bounded), then the tile's rest.
    // Where that would split rows that one group takes whole (more than
    // the smaller group, at most a whole group), one weight row at a time.
    int64_t smallGroup = std::max<int64_t>(1, kDecodeRowGroup * 2 / weightRows);
    Value aboveSmall =
        e.cmpi(arith::CmpIPredicate::ugt, numRows, e.index(smallGroup));
    Value withinGroup =
        e.cmpi(arith::CmpIPredicate::ule, numRows, e.index(kDecodeRowGroup));
    Value oneGroup = e.land(aboveSmall, withinGroup);
    e.ifThenElse(
        oneGroup, [&] { forRows(n0, n1, 1, kDecodeRowGroup); },
        [&] {
          Value count = e.index(weightRows);
          Value whole = e.addi(
              n0, e.muli(arith::DivUIOp::create(b, e.subi(n1, n0), count),
                         count));
          forRows(n0, whole, weightRows, smallGroup);
          forRows(whole, n1, 1, kDecodeRowGroup);
        });
  });
}

bool mlir::moe::decodeNeedsStaging(QuantAttr quant, Type rowType, Type ct) {
  return quant.getBits() == 4 || rowType != ct;
}

void mlir::moe::emitStageRows(ImplicitLocOpBuilder &b, Value a, QuantAttr quant,
                              int64_t depth, Value staged) {
  KernelEmitter e(b);
  Type ct = cast<MemRefType>(staged.getType()).getElementType();
  Type actType = cast<MemRefType>(a.getType()).getElementType();
  int64_t block = quant.getBlockSize() ? quant.getBlockSize() : depth;
  int64_t lanes = decodeLanes(block);
  int64_t part = lanes / quant.getPackFactor();
  Value c0 = e.index(0), c1 = e.index(1);
  e.parallelFor(c0, e.dim(a, 0), c1, [&](Value m) {
    // All columns as they are, then for 4-bit each vector step's columns
    // again, deinterleaved.
    e.loop(c0, e.index(depth), [&](Value k) {
      e.store(e.castFloat(e.load(a, {m, k}), ct), staged, {m, k});
    });
    if (quant.getBits() != 4)
      return;
    auto deinterleave = [&](Value k) {
      Value v = vector::LoadOp::create(b, VectorType::get({lanes}, actType), a,
                                       ValueRange{m, k});
      if (actType != ct)
        v = arith::ExtFOp::create(b, VectorType::get({lanes}, ct), v);
      auto halves = vector::DeinterleaveOp::create(b, v);
      vector::StoreOp::create(b, halves.getRes1(), staged, ValueRange{m, k});
      vector::StoreOp::create(b, halves.getRes2(), staged,
                              ValueRange{m, e.addi(k, e.index(part))});
    };
    // Blocks [first, first + count) of `cols` columns each.
    auto forEachStep = [&](int64_t first, int64_t count, int64_t cols) {
      e.loop(e.index(first), e.index(first + count), [&](Value blk) {
        Value k0 = e.muli(blk, e.index(block));
        e.loop(
            c0, e.index(cols / lanes * lanes),
            [&](Value j) { deinterleave(e.addi(k0, j)); }, e.index(lanes));
      });
    };
    forEachStep(0, depth / block, block);
    if (depth % block)
      forEachStep(depth / block, 1, depth % block);
  });
}

void mlir::moe::emitInitRows(ImplicitLocOpBuilder &b, Value c, Value bias) {
  Type accType = cast<MemRefType>(c.getType()).getElementType();
  if (!bias) {
    linalg::FillOp::create(b, ValueRange{KernelEmitter(b).f(accType, 0.0)},
                           ValueRange{c});
    return;
  }
  MLIRContext *ctx = b.getContext();
  AffineExpr m, n;
  bindDims(ctx, m, n);
  SmallVector<AffineMap> maps = {AffineMap::get(2, 0, {n}, ctx),
                                 AffineMap::get(2, 0, {m, n}, ctx)};
  linalg::GenericOp::create(
      b, ValueRange{bias}, ValueRange{c}, maps,
      {utils::IteratorType::parallel, utils::IteratorType::parallel},
      [&](OpBuilder &nested, Location loc, ValueRange args) {
        ImplicitLocOpBuilder nb(loc, nested);
        linalg::YieldOp::create(nb,
                                KernelEmitter(nb).castFloat(args[0], accType));
      });
}

void mlir::moe::emitQuantizedPanel(ImplicitLocOpBuilder &b, Value a,
                                   Value staged, const Int8Rows *int8Rows,
                                   const QuantizedProjection &p,
                                   QuantAttr quant, Value x, Value first,
                                   OpFoldResult width, int64_t depth,
                                   Value bias, Value c) {
  KernelEmitter e(b);
  Value rows = int8Rows ? int8Rows->numRows(e) : e.dim(a, 0);
  Value widthValue = getValueOrCreateConstantIndexOp(b, b.getLoc(), width);
  Value last = e.addi(first, widthValue);
  // vpdpbusd does 64 multiply-adds per instruction: with int8 activations
  // every row count takes it, by dot products along the weight rows for a
  // few rows and by outer products of rearranged panels from
  // kInt8PanelMinRows rows on; panel-major weights are already rearranged
  // for the outer products, and the dot products could not read them.
  if (int8Rows && p.panelWidth) {
    emitInt8PanelGemm(b, *int8Rows, p, x, first, last, bias, c);
    return;
  }
  if (int8Rows) {
    int64_t minRows = int8Rows->layout.blocksPerUnit == 1
                          ? kInt8PanelMinRows
                          : kInt8PanelMinRowsSmallBlocks;
    e.ifThenElse(
        e.cmpi(arith::CmpIPredicate::ult, rows, e.index(minRows)),
        [&] {
          emitInitRows(b, c, bias);
          emitInt8Matvec(b, *int8Rows, p, x, first, last, c);
        },
        [&] { emitInt8PanelGemm(b, *int8Rows, p, x, first, last, bias, c); });
    return;
  }
  emitInitRows(b, c, bias);
  e.ifThenElse(
      e.cmpi(arith::CmpIPredicate::ule, rows, e.index(kDecodeMaxRows)),
      [&] {
        emitQuantizedMatvec(b, staged, p, quant, x, first, last, depth, c);
      },
      [&] {
        Type ct = cast<MemRefType>(c.getType()).getElementType();
        std::optional<int64_t> staticWidth = getConstantIntValue(width);
        Value panel =
            staticWidth
                ? memref::AllocOp::create(
                      b, MemRefType::get({*staticWidth, depth}, ct),
                      ValueRange{}, b.getI64IntegerAttr(64))
                : memref::AllocOp::create(
                      b, MemRefType::get({ShapedType::kDynamic, depth}, ct),
                      ValueRange{widthValue}, b.getI64IntegerAttr(64));
        emitDequantizeRows(b, p, quant, x, first, widthValue, depth, panel);
        emitMatmulTransposedB(b, a, panel, c);
      });
}
