//===- Int8DecodeKernel.cpp - quantised decode with int8 activations ------===//
//
// The decode kernel of quantised expert projections for experts marked by
// -moe-int8-activations: activation rows are quantised to int8 once per
// projection (a scale per weight block, as llama.cpp's Q8 path and ONNX
// Runtime's accuracy level 4 do), and each 64 weight bytes are multiplied
// by them with vpdpbusd (AVX512-VNNI: unsigned weight codes times signed
// activation codes, four products summed into each i32 lane) instead of
// being converted to floats one by one. Floats appear once per block of
// each weight row: the i32 lanes are converted and scaled by the weight's
// and the activation's scale. The kernel writes vpdpbusd's semantics in
// portable vector ops; -moe-x86-vnni-dot emits the instruction.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/ExpertKernels.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::moe;

/// Weight bytes one vpdpbusd reads (a 512-bit register).
static constexpr int64_t kStepBytes = 64;
/// i32 lanes of a vpdpbusd result.
static constexpr int64_t kLanes = 16;
/// Activation columns quantised per vector operation.
static constexpr int64_t kQuantizeChunk = 32;

std::optional<Int8Layout> mlir::moe::getInt8Layout(QuantAttr quant,
                                                   bool hasZeroPoints,
                                                   int64_t depth) {
  // Zero points other than the implicit 2^(bits - 1) would need a
  // correction per weight block; those layers keep the float kernel.
  if (hasZeroPoints || (quant.getBits() != 4 && quant.getBits() != 8))
    return std::nullopt;
  Int8Layout l;
  l.pack = quant.getPackFactor();
  l.blockCols = quant.getBlockSize() ? quant.getBlockSize() : depth;
  int64_t depthBytes = depth / l.pack;
  // Whole steps, blocks of whole quantisation chunks, and blocks that
  // either share a step or span whole steps, so that no i32 lane mixes two
  // blocks.
  if (depth % (kStepBytes * l.pack) || depth % l.blockCols ||
      l.blockCols % kQuantizeChunk)
    return std::nullopt;
  l.blockBytes = l.blockCols / l.pack;
  if (kStepBytes % l.blockBytes && l.blockBytes % kStepBytes)
    return std::nullopt;
  l.unitBytes = std::max(l.blockBytes, kStepBytes);
  l.blocksPerUnit = l.unitBytes / l.blockBytes;
  l.units = depthBytes / l.unitBytes;
  l.blocks = depth / l.blockCols;
  l.zeroPoint = int64_t(1) << (quant.getBits() - 1);
  return l;
}

/// `v` (a vector of floats) as a vector of f32.
static Value toF32(ImplicitLocOpBuilder &b, Value v) {
  auto type = cast<VectorType>(v.getType());
  if (type.getElementType().isF32())
    return v;
  return arith::ExtFOp::create(b, type.clone(b.getF32Type()), v);
}

static Value splat(ImplicitLocOpBuilder &b, VectorType type,
                   TypedAttr element) {
  return arith::ConstantOp::create(b, type,
                                   DenseElementsAttr::get(type, element));
}

void mlir::moe::emitQuantizeRowsInt8(ImplicitLocOpBuilder &b, Value a,
                                     const Int8Layout &l, int64_t depth,
                                     const Int8Rows &out) {
  KernelEmitter e(b);
  Type f32 = b.getF32Type(), i32 = b.getI32Type(), i8 = b.getI8Type();
  Type rowType = cast<MemRefType>(a.getType()).getElementType();
  auto chunkOf = [&](Type t) { return VectorType::get({kQuantizeChunk}, t); };
  Value c0 = e.index(0), c1 = e.index(1);
  Value chunk = e.index(kQuantizeChunk);
  Value blockCols = e.index(l.blockCols);
  e.parallelFor(c0, e.dim(a, 0), c1, [&](Value m) {
    // Lanes of blocks that do not start a unit's lanes stay zero.
    Value zeros = splat(b, VectorType::get({kLanes}, i32), b.getI32IntegerAttr(0));
    e.loop(
        c0, e.index(l.units * kLanes),
        [&](Value j) {
          vector::StoreOp::create(b, zeros, out.corrections, ValueRange{m, j});
        },
        e.index(kLanes));
    e.loop(c0, e.index(l.blocks), [&](Value blk) {
      Value k0 = e.muli(blk, blockCols);
      auto loadChunk = [&](Value j) {
        return toF32(b, vector::LoadOp::create(b, chunkOf(rowType), a,
                                               ValueRange{m, e.addi(k0, j)}));
      };
      // The block's largest magnitude gives its scale: amax / 127.
      Value amaxInit = splat(b, chunkOf(f32), b.getF32FloatAttr(0));
      Value amaxVec =
          e.loop(c0, blockCols, amaxInit,
                 [&](Value j, ValueRange acc) -> SmallVector<Value> {
                   Value mag = math::AbsFOp::create(b, loadChunk(j));
                   return {arith::MaximumFOp::create(b, acc[0], mag)};
                 },
                 chunk)[0];
      Value amax = vector::ReductionOp::create(
          b, vector::CombiningKind::MAXIMUMF, amaxVec);
      Value positive = e.cmpf(arith::CmpFPredicate::OGT, amax, e.f(f32, 0));
      Value inverse = e.select(positive, e.divf(e.f(f32, 127), amax),
                               e.f(f32, 0));
      e.store(e.divf(amax, e.f(f32, 127)), out.scales, {m, blk});
      Value inverseVec = vector::BroadcastOp::create(b, chunkOf(f32), inverse);
      Value sumInit = splat(b, chunkOf(i32), b.getI32IntegerAttr(0));
      Value sumVec =
          e.loop(c0, blockCols, sumInit,
                 [&](Value j, ValueRange acc) -> SmallVector<Value> {
                   Value scaled = e.mulf(loadChunk(j), inverseVec);
                   Value rounded = math::RoundEvenOp::create(b, scaled);
                   Value q = arith::FPToSIOp::create(b, chunkOf(i32), rounded);
                   Value codes = arith::TruncIOp::create(b, chunkOf(i8), q);
                   Value k = e.addi(k0, j);
                   if (l.pack == 1) {
                     vector::StoreOp::create(b, codes, out.codes,
                                             ValueRange{m, k});
                   } else {
                     // Each step of 128 columns: its 64 even columns, then
                     // its 64 odd ones, as the low and high nibbles of the
                     // step's weight bytes come.
                     int64_t stepCols = kStepBytes * l.pack;
                     Value stepStart = e.muli(
                         arith::DivUIOp::create(b, k, e.index(stepCols)),
                         e.index(stepCols));
                     Value within = arith::DivUIOp::create(
                         b, e.subi(k, stepStart), e.index(2));
                     Value even = e.addi(stepStart, within);
                     Value odd = e.addi(even, e.index(kStepBytes));
                     auto halves = vector::DeinterleaveOp::create(b, codes);
                     vector::StoreOp::create(b, halves.getRes1(), out.codes,
                                             ValueRange{m, even});
                     vector::StoreOp::create(b, halves.getRes2(), out.codes,
                                             ValueRange{m, odd});
                   }
                   return {e.addi(acc[0], q)};
                 },
                 chunk)[0];
      // sum_k (q_w - zp) q_a = dot(q_w, q_a) - zp * sum_k q_a: the second
      // term starts the i32 lanes of the block's first unit (its first
      // lane), so that the kernel's integer sums come out exact.
      Value sum = vector::ReductionOp::create(b, vector::CombiningKind::ADD,
                                              sumVec);
      Value correction = arith::MulIOp::create(b, sum, e.i32(-l.zeroPoint));
      Value unit, lane;
      if (l.blocksPerUnit > 1) {
        Value perUnit = e.index(l.blocksPerUnit);
        unit = arith::DivUIOp::create(b, blk, perUnit);
        lane = e.muli(arith::RemUIOp::create(b, blk, perUnit),
                      e.index(kLanes / l.blocksPerUnit));
      } else {
        unit = blk;
        lane = c0;
      }
      e.store(correction, out.corrections,
              {m, e.addi(e.muli(unit, e.index(kLanes)), lane)});
    });
  });
}

void mlir::moe::emitInt8Matvec(ImplicitLocOpBuilder &b, const Int8Rows &rows,
                               const QuantizedProjection &p, Value x,
                               Value nBegin, Value nEnd, Value c) {
  KernelEmitter e(b);
  const Int8Layout &l = rows.layout;
  Type f32 = b.getF32Type(), i32 = b.getI32Type(), i8 = b.getI8Type();
  auto bytesType = VectorType::get({kStepBytes}, i8);
  auto lanesI32 = VectorType::get({kLanes}, i32);
  auto lanesF32 = VectorType::get({kLanes}, f32);
  Type storage = cast<MemRefType>(p.weights.getType()).getElementType();
  Type scaleType = cast<MemRefType>(p.scales.getType()).getElementType();
  bool perRowScales = cast<MemRefType>(p.scales.getType()).getRank() == 2;
  // acc[l] += sum_{i < 4} zext(w[4l + i]) * sext(a[4l + i]): vpdpbusd's
  // semantics in portable vector ops, which -moe-x86-vnni-dot turns into
  // the instruction where the target has it.
  auto wide = VectorType::get({kStepBytes}, i32);
  auto groups = VectorType::get({kLanes, kStepBytes / kLanes}, i32);
  auto dot = [&](Value acc, Value weightCodes, Value activationCodes) {
    Value w = arith::ExtUIOp::create(b, wide, weightCodes);
    Value a = arith::ExtSIOp::create(b, wide, activationCodes);
    Value products = vector::ShapeCastOp::create(
        b, groups, arith::MulIOp::create(b, w, a));
    return vector::MultiDimReductionOp::create(
               b, products, acc, ArrayRef<bool>{false, true},
               vector::CombiningKind::ADD)
        .getResult();
  };
  Value nibbleMask = splat(b, bytesType, b.getI8IntegerAttr(15));
  Value nibbleShift = splat(b, bytesType, b.getI8IntegerAttr(4));
  Value zeroF32 = splat(b, lanesF32, b.getF32FloatAttr(0));

  // Row n of the weight times `group` rows of activations from m0.
  auto emitRow = [&](Value n, Value m0, int64_t group) {
    SmallVector<Value> ms;
    for (int64_t i = 0; i < group; ++i)
      ms.push_back(e.addi(m0, e.index(i)));
    SmallVector<Value> init(group, zeroF32);
    SmallVector<Value> sums = e.loop(
        e.index(0), e.index(l.units), init,
        [&](Value unit, ValueRange facc) -> SmallVector<Value> {
          Value unitByte = e.muli(unit, e.index(l.unitBytes));
          SmallVector<Value> iacc;
          for (Value m : ms)
            iacc.push_back(vector::LoadOp::create(
                b, lanesI32, rows.corrections,
                ValueRange{m, e.muli(unit, e.index(kLanes))}));
          iacc = e.loop(
              e.index(0), e.index(l.unitBytes), iacc,
              [&](Value j, ValueRange acc) -> SmallVector<Value> {
                Value byte = e.addi(unitByte, j);
                Value raw = vector::LoadOp::create(
                    b, VectorType::get({kStepBytes}, storage), p.weights,
                    ValueRange{x, n, byte});
                raw = UnrealizedConversionCastOp::create(b, bytesType, raw)
                          .getResult(0);
                SmallVector<Value> next;
                if (l.pack == 1) {
                  for (auto [m, a] : llvm::zip(ms, acc))
                    next.push_back(dot(a, raw,
                                       vector::LoadOp::create(
                                           b, bytesType, rows.codes,
                                           ValueRange{m, byte})));
                  return next;
                }
                Value low = arith::AndIOp::create(b, raw, nibbleMask);
                Value high = arith::ShRUIOp::create(b, raw, nibbleShift);
                Value col = e.muli(byte, e.index(2));
                Value oddCol = e.addi(col, e.index(kStepBytes));
                for (auto [m, a] : llvm::zip(ms, acc)) {
                  Value even = vector::LoadOp::create(b, bytesType, rows.codes,
                                                      ValueRange{m, col});
                  Value odd = vector::LoadOp::create(b, bytesType, rows.codes,
                                                     ValueRange{m, oddCol});
                  next.push_back(dot(dot(a, low, even), high, odd));
                }
                return next;
              },
              e.index(kStepBytes));
          // The scales of the unit's blocks, each over its lanes.
          Value weightScales;
          if (l.blocksPerUnit > 1) {
            auto type = VectorType::get({l.blocksPerUnit}, scaleType);
            weightScales = toF32(
                b, vector::LoadOp::create(
                       b, type, p.scales,
                       ValueRange{x, n,
                                  e.muli(unit, e.index(l.blocksPerUnit))}));
          } else {
            Value s = perRowScales ? e.load(p.scales, {x, n})
                                   : e.load(p.scales, {x, n, unit});
            weightScales = e.castFloat(s, f32);
          }
          SmallVector<int64_t> spread;
          for (int64_t lane = 0; lane < kLanes; ++lane)
            spread.push_back(lane / (kLanes / l.blocksPerUnit));
          SmallVector<Value> next;
          for (auto [m, a, acc] : llvm::zip(ms, iacc, facc)) {
            Value scales;
            if (l.blocksPerUnit > 1) {
              Value act = vector::LoadOp::create(
                  b, VectorType::get({l.blocksPerUnit}, f32), rows.scales,
                  ValueRange{m, e.muli(unit, e.index(l.blocksPerUnit))});
              Value both = e.mulf(weightScales, act);
              scales = vector::ShuffleOp::create(b, both, both, spread);
            } else {
              Value act = e.load(rows.scales, {m, unit});
              scales = vector::BroadcastOp::create(
                  b, lanesF32, e.mulf(weightScales, act));
            }
            Value products = arith::SIToFPOp::create(b, lanesF32, a);
            next.push_back(vector::FMAOp::create(b, products, scales, acc));
          }
          return next;
        });
    for (auto [m, s] : llvm::zip(ms, sums)) {
      Value sum =
          vector::ReductionOp::create(b, vector::CombiningKind::ADD, s,
                                      Value(), arith::FastMathFlags::reassoc);
      Value column = e.subi(n, nBegin);
      e.store(e.addf(e.load(c, {m, column}), sum), c, {m, column});
    }
  };
  emitDecodeTiles(b, nBegin, nEnd, e.dim(rows.codes, 0), emitRow);
}
