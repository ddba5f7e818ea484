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
/// Weight rows the int8 kernel multiplies per step (their reductions
/// shared); with up to kInt8WeightRows * 2 activation rows per group the
/// accumulators stay within AVX-512's 32 registers.
static constexpr int64_t kInt8WeightRows = 4;
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

void mlir::moe::emitQuantizeRowsInt8(ImplicitLocOpBuilder &b, Value a,
                                     const Int8Layout &l,
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
    Value zeros = e.splat(VectorType::get({kLanes}, i32), 0);
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
      Value amaxInit = e.splat(chunkOf(f32), 0.0);
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
      Value sumInit = e.splat(chunkOf(i32), 0);
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
  Value nibbleMask = e.splat(bytesType, 15);
  Value nibbleShift = e.splat(bytesType, 4);
  Value zeroF32 = e.splat(lanesF32, 0.0);

  SmallVector<int64_t> spread;
  for (int64_t lane = 0; lane < kLanes; ++lane)
    spread.push_back(lane / (kLanes / l.blocksPerUnit));
  // `count` weight rows from n times `group` rows of activations from m0:
  // the activation codes are loaded once for all weight rows, the weight
  // bytes once for all activation rows.
  auto emitRows = [&](Value n0, int64_t count, Value m0, int64_t group) {
    SmallVector<Value> ns, ms;
    for (int64_t r = 0; r < count; ++r)
      ns.push_back(e.addi(n0, e.index(r)));
    for (int64_t i = 0; i < group; ++i)
      ms.push_back(e.addi(m0, e.index(i)));
    // Accumulators, weight row major: acc[r * group + i].
    auto pairs = [&](auto body) {
      for (int64_t r = 0; r < count; ++r)
        for (int64_t i = 0; i < group; ++i)
          body(r, i, r * group + i);
    };
    SmallVector<Value> init(count * group, zeroF32);
    SmallVector<Value> sums = e.loop(
        e.index(0), e.index(l.units), init,
        [&](Value unit, ValueRange facc) -> SmallVector<Value> {
          Value unitByte = e.muli(unit, e.index(l.unitBytes));
          SmallVector<Value> start;
          for (Value m : ms)
            start.push_back(vector::LoadOp::create(
                b, lanesI32, rows.corrections,
                ValueRange{m, e.muli(unit, e.index(kLanes))}));
          SmallVector<Value> iacc(count * group);
          pairs([&](int64_t, int64_t i, int64_t k) { iacc[k] = start[i]; });
          iacc = e.loop(
              e.index(0), e.index(l.unitBytes), iacc,
              [&](Value j, ValueRange acc) -> SmallVector<Value> {
                Value byte = e.addi(unitByte, j);
                // Each weight row's codes: the bytes, or their low and high
                // nibbles (even and odd columns).
                SmallVector<SmallVector<Value, 2>> weightCodes;
                for (Value n : ns) {
                  Value raw = vector::LoadOp::create(
                      b, VectorType::get({kStepBytes}, storage), p.weights,
                      ValueRange{x, n, byte});
                  raw = UnrealizedConversionCastOp::create(b, bytesType, raw)
                            .getResult(0);
                  if (l.pack == 1)
                    weightCodes.push_back({raw});
                  else
                    weightCodes.push_back(
                        {arith::AndIOp::create(b, raw, nibbleMask),
                         arith::ShRUIOp::create(b, raw, nibbleShift)});
                }
                // Each activation row's codes in the same order.
                SmallVector<SmallVector<Value, 2>> activationCodes;
                Value col = l.pack == 1 ? byte : e.muli(byte, e.index(2));
                for (Value m : ms) {
                  SmallVector<Value, 2> codes = {vector::LoadOp::create(
                      b, bytesType, rows.codes, ValueRange{m, col})};
                  if (l.pack != 1)
                    codes.push_back(vector::LoadOp::create(
                        b, bytesType, rows.codes,
                        ValueRange{m, e.addi(col, e.index(kStepBytes))}));
                  activationCodes.push_back(codes);
                }
                SmallVector<Value> next(acc);
                pairs([&](int64_t r, int64_t i, int64_t k) {
                  for (auto [w, a] :
                       llvm::zip(weightCodes[r], activationCodes[i]))
                    next[k] = dot(next[k], w, a);
                });
                return next;
              },
              e.index(kStepBytes));
          // The scales of the unit's blocks, each over its lanes: a weight
          // row's times an activation row's.
          Value blockIndex = e.muli(unit, e.index(l.blocksPerUnit));
          SmallVector<Value> weightScales, activationScales;
          for (Value n : ns) {
            if (l.blocksPerUnit > 1) {
              auto type = VectorType::get({l.blocksPerUnit}, scaleType);
              Value v = toF32(b, vector::LoadOp::create(
                                     b, type, p.scales,
                                     ValueRange{x, n, blockIndex}));
              weightScales.push_back(
                  vector::ShuffleOp::create(b, v, v, spread));
            } else {
              Value v = perRowScales ? e.load(p.scales, {x, n})
                                     : e.load(p.scales, {x, n, unit});
              weightScales.push_back(vector::BroadcastOp::create(
                  b, lanesF32, e.castFloat(v, f32)));
            }
          }
          for (Value m : ms) {
            if (l.blocksPerUnit > 1) {
              Value v = vector::LoadOp::create(
                  b, VectorType::get({l.blocksPerUnit}, f32), rows.scales,
                  ValueRange{m, blockIndex});
              activationScales.push_back(
                  vector::ShuffleOp::create(b, v, v, spread));
            } else {
              activationScales.push_back(vector::BroadcastOp::create(
                  b, lanesF32, e.load(rows.scales, {m, unit})));
            }
          }
          SmallVector<Value> next(count * group);
          pairs([&](int64_t r, int64_t i, int64_t k) {
            Value scales = e.mulf(weightScales[r], activationScales[i]);
            Value products = arith::SIToFPOp::create(b, lanesF32, iacc[k]);
            next[k] = vector::FMAOp::create(b, products, scales, facc[k]);
          });
          return next;
        });
    Value column = e.subi(n0, nBegin);
    for (auto [i, m] : llvm::enumerate(ms)) {
      SmallVector<Value> lanes;
      for (int64_t r = 0; r < count; ++r)
        lanes.push_back(sums[r * group + i]);
      if (count == 1) {
        Value sum = vector::ReductionOp::create(
            b, vector::CombiningKind::ADD, lanes[0], Value(),
            arith::FastMathFlags::reassoc);
        e.store(e.addf(e.load(c, {m, column}), sum), c, {m, column});
        continue;
      }
      // The rows' sums side by side in one vector, sharing the shuffles
      // that one reduction each would take.
      Value perRow = reduceTransposed(b, lanes);
      auto outType = VectorType::get({count}, f32);
      Value old = vector::LoadOp::create(b, outType, c, ValueRange{m, column});
      vector::StoreOp::create(b, e.addf(old, perRow), c, ValueRange{m, column});
    }
  };
  // Several weight rows per step pay where a unit's scales are one
  // broadcast per row (1.15-2.7x on int8 Mixtral / 4, per-row scales); with
  // a shuffle of several blocks' scales per weight row they cost more than
  // the shared reductions save (0.8-0.95x on int4 Qwen3 / 2, blocks of 32).
  emitDecodeTiles(b, nBegin, nEnd, e.dim(rows.codes, 0), emitRows,
                  l.blocksPerUnit == 1 ? kInt8WeightRows : 1);
}
