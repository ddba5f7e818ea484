//===- StageKernels.cpp - per-item bodies shared by the backends ----------===//
//
// Ids and row indices come from tensors a caller may fill, so every one of
// them is range-checked before it indexes anything (see
// BufferizableOpInterfaceImpl.cpp).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/StageKernels.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cmath>
#include <numeric>

using namespace mlir;
using namespace mlir::moe;

namespace {
/// SparseMixer's jitter epsilon, as Phi-3.5-MoE and ONNX Runtime use it.
constexpr double kSparseMixerJitterEps = 0.01;

/// Whether emitRouteToken's vector form applies: f32 logits and scores,
/// neither groups nor SparseMixer, and rows (and the bias) whose elements
/// are contiguous.
bool canRouteWithVectors(RouteOp route, Value logits, Value bias) {
  auto contiguousRows = [](Value v) {
    auto type = cast<MemRefType>(v.getType());
    SmallVector<int64_t> strides;
    int64_t offset;
    return succeeded(type.getStridesAndOffset(strides, offset)) &&
           !strides.empty() && strides.back() == 1;
  };
  auto elementType = [](Value v) {
    return cast<MemRefType>(v.getType()).getElementType();
  };
  return route.getScoring() != Scoring::sparse_mixer &&
         route.getNumGroups() <= 1 && route.getScoreType().isF32() &&
         elementType(logits).isF32() && contiguousRows(logits) &&
         (!bias || (contiguousRows(bias) &&
                    cast<FloatType>(elementType(bias)).getWidth() <= 32));
}

/// Steps 1-5 of emitRouteToken on vectors of `lanes` f32 (E / lanes
/// chunks, the last one masked when E is no multiple): the scores, the
/// selection scores, and k rounds of a vector maximum and the lowest lane
/// holding it, over the experts not yet taken (a mask per chunk, in
/// registers). The scalar form spends a loop-carried select chain per
/// expert and round: 2 us a token for 128 experts and k = 8, three times
/// the router's GEMM. Chosen exactly as the scalar loop chooses: ties go
/// to the lower expert, NaN selection scores are never preferred unless
/// the first free expert has one.
void routeWithVectors(KernelEmitter &e, RouteOp route, Value logits, Value bias,
                      Value ids, Value t, const RouteScratch &scratch,
                      int64_t lanes) {
  ImplicitLocOpBuilder &b = e.builder();
  int64_t numExperts = route.getNumExperts();
  int64_t chunks = llvm::divideCeil(numExperts, lanes);
  int64_t lastLanes = numExperts - (chunks - 1) * lanes;
  Scoring scoring = route.getScoring();
  Type f32 = b.getF32Type();
  auto floats = VectorType::get({lanes}, f32);
  auto ints = VectorType::get({lanes}, b.getI32Type());
  auto bits = VectorType::get({lanes}, b.getI1Type());
  SmallVector<bool> lastBits(lanes, false);
  std::fill_n(lastBits.begin(), lastLanes, true);
  Value lastMask = arith::ConstantOp::create(
      b, bits, DenseElementsAttr::get(bits, ArrayRef<bool>(lastBits)));
  // Chunk c's lanes past E are masked off.
  auto maskOf = [&](int64_t c) {
    return c == chunks - 1 && lastLanes < lanes ? lastMask : Value();
  };
  auto loadChunk = [&](Value memref, SmallVector<Value> indices, int64_t c,
                       double padding) -> Value {
    auto type = VectorType::get(
        {lanes}, cast<MemRefType>(memref.getType()).getElementType());
    Value v;
    if (Value mask = maskOf(c))
      v = vector::MaskedLoadOp::create(b, type, memref, indices, mask,
                                       e.splat(type, padding));
    else
      v = vector::LoadOp::create(b, type, memref, indices);
    return type == floats ? v : arith::ExtFOp::create(b, floats, v);
  };
  auto storeChunk = [&](Value v, Value memref, Value index, int64_t c) {
    if (Value mask = maskOf(c))
      vector::MaskedStoreOp::create(b, memref, index, mask, v);
    else
      vector::StoreOp::create(b, v, memref, index);
  };
  auto chunkStart = [&](int64_t c) { return e.index(c * lanes); };
  // The chunks combined lane by lane, then the lanes, by `kind`.
  auto reduce = [&](ArrayRef<Value> vectors,
                    vector::CombiningKind kind) -> Value {
    Value acc;
    for (Value v : vectors)
      acc = acc ? vector::makeArithReduction(b, b.getLoc(), kind, v, acc) : v;
    return vector::ReductionOp::create(b, kind, acc);
  };
  auto splatOf = [&](VectorType type, Value scalar) -> Value {
    return vector::BroadcastOp::create(b, type, scalar);
  };

  // 1. Scores (padding lanes: logits -inf, scores 0).
  SmallVector<Value> scores;
  for (int64_t c = 0; c < chunks; ++c)
    scores.push_back(loadChunk(logits, {t, chunkStart(c)}, c, -INFINITY));
  if (scoring == Scoring::softmax) {
    Value max =
        splatOf(floats, reduce(scores, vector::CombiningKind::MAXIMUMF));
    for (Value &v : scores)
      v = e.exp(e.subf(v, max));
    Value total = splatOf(floats, reduce(scores, vector::CombiningKind::ADD));
    for (Value &v : scores)
      v = e.divf(v, total);
  } else if (scoring == Scoring::sigmoid) {
    for (Value &v : scores)
      v = e.sigmoid(v);
  }
  // 2. Selection scores.
  SmallVector<Value> select = scores;
  for (int64_t c = 0; c < chunks; ++c) {
    storeChunk(scores[c], scratch.scores, chunkStart(c), c);
    if (bias)
      select[c] = e.addf(select[c], loadChunk(bias, {chunkStart(c)}, c, 0.0));
    storeChunk(select[c], scratch.select, chunkStart(c), c);
  }
  // 4-5. Top-k, in descending order of selection score.
  Value noExpert = e.splat(ints, numExperts);
  Value negInf = e.splat(floats, -INFINITY);
  SmallVector<Value> experts, free;
  for (int64_t c = 0; c < chunks; ++c) {
    SmallVector<int32_t> lane(lanes);
    std::iota(lane.begin(), lane.end(), static_cast<int32_t>(c * lanes));
    experts.push_back(arith::ConstantOp::create(
        b, ints, DenseElementsAttr::get(ints, ArrayRef<int32_t>(lane))));
    free.push_back(maskOf(c) ? maskOf(c) : e.splat(bits, 1));
  }
  Value c0 = e.index(0), cE = e.index(numExperts);
  e.loop(c0, e.index(route.getK()), free, [&](Value j, ValueRange free) {
    SmallVector<Value> candidates, atMax, firstFree;
    for (int64_t c = 0; c < chunks; ++c)
      candidates.push_back(e.select(free[c], select[c], negInf));
    // maxnumf: NaN scores lose to any number.
    Value max =
        splatOf(floats, reduce(candidates, vector::CombiningKind::MAXNUMF));
    for (int64_t c = 0; c < chunks; ++c) {
      Value hit =
          e.land(free[c], e.cmpf(arith::CmpFPredicate::OEQ, select[c], max));
      atMax.push_back(e.select(hit, experts[c], noExpert));
      firstFree.push_back(e.select(free[c], experts[c], noExpert));
    }
    Value best = reduce(atMax, vector::CombiningKind::MINSI);
    Value first = reduce(firstFree, vector::CombiningKind::MINSI);
    // The scalar loop starts from the first free expert and keeps it if its
    // score is NaN (nothing compares greater).
    Value found = e.cmpi(arith::CmpIPredicate::slt, first, e.i32(numExperts));
    Value firstIndex =
        arith::MinUIOp::create(b, e.toIndex(first), e.subi(cE, e.index(1)));
    Value firstScore = e.load(scratch.select, firstIndex);
    Value nan = e.cmpf(arith::CmpFPredicate::UNO, firstScore, firstScore);
    Value chosen = e.select(found, e.select(nan, first, best), e.i32(-1));
    Value safe = e.select(found, e.toIndex(chosen), c0);
    Value w = e.select(found,
                       scoring == Scoring::softmax_topk
                           ? e.load(logits, {t, safe})
                           : e.load(scratch.scores, safe),
                       e.f(f32, 0.0));
    e.store(w, scratch.kept, j);
    e.store(chosen, ids, {t, j});
    SmallVector<Value> next;
    Value taken = splatOf(ints, chosen);
    for (int64_t c = 0; c < chunks; ++c)
      next.push_back(
          e.land(free[c], e.cmpi(arith::CmpIPredicate::ne, experts[c], taken)));
    return next;
  });
}

/// Steps 1-5 of emitRouteToken element by element, any route: the scores
/// and the selection scores in the scratch, then the top-k (after the group
/// limit) into `kept` and `ids[t, :]`.
void routeElementwise(KernelEmitter &e, RouteOp route, Value logits, Value bias,
                      Value ids, Value t, const RouteScratch &scratch) {
  ImplicitLocOpBuilder &b = e.builder();
  int64_t numExperts = route.getNumExperts();
  Type scoreType = route.getScoreType();
  Type ct = computeTypeFor(scoreType);
  int64_t k = route.getK();
  int64_t numGroups = route.getNumGroups();
  Scoring scoring = route.getScoring();
  Value scores = scratch.scores, select = scratch.select;
  Value taken = scratch.taken, kept = scratch.kept;

  Value c0 = e.index(0);
  Value cE = e.index(numExperts);
  Value negInf = e.f(ct, -INFINITY);
  Value zero = e.f(ct, 0.0);
  Value falseV = e.boolean(false), trueV = e.boolean(true);

  // Index of the largest `values[i]` over [0, n) with !mask[i]; ties go to
  // the lower index; -1 when every entry is masked.
  auto argmax = [&](Value values, Value mask, Value n) -> Value {
    SmallVector<Value> best =
        e.loop(c0, n, {negInf, e.index(-1)}, [&](Value i, ValueRange acc) {
          Value v = e.load(values, i);
          Value free = arith::XOrIOp::create(b, e.load(mask, i), trueV);
          Value first = e.cmpi(arith::CmpIPredicate::slt, acc[1], c0);
          Value better = arith::OrIOp::create(
              b, first, e.cmpf(arith::CmpFPredicate::OGT, v, acc[0]));
          Value take = e.land(free, better);
          return SmallVector<Value>{e.select(take, v, acc[0]),
                                    e.select(take, i, acc[1])};
        });
    return best[1];
  };

  auto logit = [&](Value i) { return e.castFloat(e.load(logits, {t, i}), ct); };
  // 1. Scores.
  if (scoring == Scoring::softmax) {
    Value max = e.loop(c0, cE, {negInf}, [&](Value i, ValueRange acc) {
      return SmallVector<Value>{arith::MaximumFOp::create(b, acc[0], logit(i))};
    })[0];
    Value total = e.sum(c0, cE, zero, [&](Value i) {
      Value p = e.exp(e.subf(logit(i), max));
      e.store(p, scores, i);
      return p;
    });
    e.loop(c0, cE, [&](Value i) {
      e.store(e.divf(e.load(scores, i), total), scores, i);
    });
  } else {
    e.loop(c0, cE, [&](Value i) {
      Value l = logit(i);
      e.store(scoring == Scoring::sigmoid ? e.sigmoid(l) : l, scores, i);
    });
  }
  // 2. Selection scores.
  e.loop(c0, cE, [&](Value i) {
    Value s = e.load(scores, i);
    if (bias)
      s = e.addf(s, e.castFloat(e.load(bias, i), ct));
    e.store(s, select, i);
    e.store(falseV, taken, i);
  });
  // 3. Group limit: mask every expert outside the best groups.
  if (numGroups > 1) {
    int64_t groupSize = numExperts / numGroups;
    Value groupScores = scratch.groupScores;
    Value groupTaken = scratch.groupTaken;
    Value cG = e.index(numGroups), cGS = e.index(groupSize);
    e.loop(c0, cG, [&](Value g) {
      Value base = e.muli(g, cGS);
      SmallVector<Value> top =
          e.loop(c0, cGS, {negInf, negInf}, [&](Value i, ValueRange acc) {
            Value v = e.load(select, e.addi(base, i));
            Value above1 = e.cmpf(arith::CmpFPredicate::OGT, v, acc[0]);
            Value above2 = e.cmpf(arith::CmpFPredicate::OGT, v, acc[1]);
            Value second =
                e.select(above1, acc[0], e.select(above2, v, acc[1]));
            return SmallVector<Value>{e.select(above1, v, acc[0]), second};
          });
      Value score = route.getGroupScoring() == GroupScoring::max
                        ? top[0]
                        : e.addf(top[0], top[1]);
      e.store(score, groupScores, g);
      e.store(trueV, groupTaken, g);
    });
    // Repeated argmax over the still-excluded groups picks the best ones.
    Value excluded = scratch.excluded;
    e.loop(c0, cG, [&](Value g) { e.store(falseV, excluded, g); });
    e.loop(c0, e.index(route.getTopGroups()), [&](Value) {
      Value g = argmax(groupScores, excluded, cG);
      e.ifThen(e.cmpi(arith::CmpIPredicate::sge, g, c0), [&] {
        e.store(trueV, excluded, g);
        e.store(falseV, groupTaken, g);
      });
    });
    // groupTaken now marks the groups that were *not* chosen.
    e.loop(c0, cE, [&](Value i) {
      Value g = arith::DivUIOp::create(b, i, cGS);
      e.store(e.load(groupTaken, g), taken, i);
    });
  }
  // 4-5. Top-k, in descending order of selection score.
  if (scoring == Scoring::sparse_mixer) {
    // SparseMixer: slot j's weight is a softmax, at the chosen logit m,
    // over the experts within the jitter band of m; the band of slot 1
    // excludes slot 0's expert.
    Value eps2 = e.f(ct, 2 * kSparseMixerJitterEps);
    Value first = c0;
    for (int64_t j = 0; j < 2; ++j) {
      Value best = argmax(select, taken, cE);
      e.store(trueV, taken, best);
      Value m = logit(best);
      Value total = e.sum(c0, cE, zero, [&](Value i) {
        Value x = logit(i);
        Value factor =
            arith::MaximumFOp::create(b, math::AbsFOp::create(b, x), m);
        Value far = e.cmpf(arith::CmpFPredicate::OGT, e.subf(m, x),
                           e.mulf(eps2, factor));
        if (j == 1)
          far = arith::OrIOp::create(
              b, far, e.cmpi(arith::CmpIPredicate::eq, i, first));
        return e.select(far, zero, e.exp(e.subf(x, m)));
      });
      Value cj = e.index(j);
      e.store(e.divf(e.f(ct, 1.0), total), kept, cj);
      e.store(e.toI32(best), ids, {t, cj});
      first = best;
    }
  } else {
    e.loop(c0, e.index(k), [&](Value j) {
      Value best = argmax(select, taken, cE);
      Value found = e.cmpi(arith::CmpIPredicate::sge, best, c0);
      Value safe = e.select(found, best, c0);
      e.ifThen(found, [&] { e.store(trueV, taken, safe); });
      Value w = e.select(
          found,
          scoring == Scoring::softmax_topk ? logit(safe) : e.load(scores, safe),
          zero);
      e.store(w, kept, j);
      e.store(e.toI32(best), ids, {t, j});
    });
  }
}
} // namespace

Type mlir::moe::computeTypeFor(Type elementType) {
  if (elementType.isF64())
    return elementType;
  return Float32Type::get(elementType.getContext());
}

Value mlir::moe::clampRowOffset(KernelEmitter &e, Value offset, Value numRows) {
  ImplicitLocOpBuilder &b = e.builder();
  Value v = arith::MaxSIOp::create(b, e.toIndex(offset), e.index(0));
  return arith::MinSIOp::create(b, v, numRows);
}

RouteScratch RouteScratch::allocate(KernelEmitter &e, RouteOp route,
                                   bool onHeap) {
  ImplicitLocOpBuilder &b = e.builder();
  int64_t numExperts = route.getNumExperts();
  int64_t numGroups = route.getNumGroups();
  Type ct = computeTypeFor(route.getScoreType());
  auto stackBuffer = [&](int64_t n, Type t) -> Value {
    auto type = MemRefType::get({n}, t);
    if (onHeap)
      return memref::AllocOp::create(b, type);
    return memref::AllocaOp::create(b, type);
  };
  RouteScratch s;
  s.scores = stackBuffer(numExperts, ct);
  s.select = stackBuffer(numExperts, ct);
  s.taken = stackBuffer(numExperts, b.getI1Type());
  s.kept = stackBuffer(route.getK(), ct);
  if (numGroups > 1) {
    s.groupScores = stackBuffer(numGroups, ct);
    s.groupTaken = stackBuffer(numGroups, b.getI1Type());
    s.excluded = stackBuffer(numGroups, b.getI1Type());
  }
  return s;
}

void mlir::moe::emitRouteToken(KernelEmitter &e, RouteOp route, Value logits,
                               Value bias, Value weights, Value ids, Value t,
                               const RouteScratch &scratch,
                               int64_t vectorLanes) {
  ImplicitLocOpBuilder &b = e.builder();
  Type scoreType = route.getScoreType();
  Type ct = computeTypeFor(scoreType);
  int64_t k = route.getK();
  Scoring scoring = route.getScoring();
  Value kept = scratch.kept;
  Value c0 = e.index(0), c1 = e.index(1);
  Value zero = e.f(ct, 0.0);
  Value trueV = e.boolean(true);

  if (vectorLanes && canRouteWithVectors(route, logits, bias))
    routeWithVectors(e, route, logits, bias, ids, t, scratch, vectorLanes);
  else
    routeElementwise(e, route, logits, bias, ids, t, scratch);
  Value ck = e.index(k);
  if (scoring == Scoring::softmax_topk) {
    // Slot 0 holds the largest chosen logit.
    Value max = e.load(kept, c0);
    Value total = e.sum(c0, ck, zero, [&](Value j) {
      Value p = e.exp(e.subf(e.load(kept, j), max));
      e.store(p, kept, j);
      return p;
    });
    e.loop(c0, ck, [&](Value j) {
      e.store(e.divf(e.load(kept, j), total), kept, j);
    });
  }
  // 6. Top-p: keep slots while the weight kept before them is < p.
  if (auto topP = route.getTopP()) {
    Value p = e.f(ct, topP->convertToDouble());
    e.loop(c1, ck, {e.load(kept, c0)}, [&](Value j, ValueRange acc) {
      Value keep = e.cmpf(arith::CmpFPredicate::OLT, acc[0], p);
      Value w = e.select(keep, e.load(kept, j), zero);
      e.store(w, kept, j);
      e.ifThen(arith::XOrIOp::create(b, keep, trueV),
               [&] { e.store(e.i32(-1), ids, {t, j}); });
      return SmallVector<Value>{e.addf(acc[0], w)};
    });
  }
  // 7. Renormalise.
  Value scale = e.f(ct, route.getScaling().convertToDouble());
  if (route.getNormalize()) {
    Value total =
        e.sum(c0, ck, zero, [&](Value j) { return e.load(kept, j); });
    Value positive = e.cmpf(arith::CmpFPredicate::OGT, total, zero);
    scale = e.select(positive, e.divf(scale, total), scale);
  }
  // 8. Scale and store.
  e.loop(c0, ck, [&](Value j) {
    Value w = e.mulf(e.load(kept, j), scale);
    e.store(e.castFloat(w, scoreType), weights, {t, j});
  });
}

/// Emits the scalar activation `h = act(a)` (or its gated / SwiGLU form).
Value mlir::moe::emitActivation(KernelEmitter &e, ExpertOp expert, Value gate,
                     Value linear) {
  ImplicitLocOpBuilder &b = e.builder();
  Type t = gate.getType();
  Value half = e.f(t, 0.5), one = e.f(t, 1.0);
  Value h;
  switch (expert.getActivation()) {
  case Activation::identity:
    h = gate;
    break;
  case Activation::relu:
    h = arith::MaximumFOp::create(b, gate, e.f(t, 0.0));
    break;
  case Activation::gelu:
    h = e.mulf(e.mulf(half, gate),
               e.addf(one, math::ErfOp::create(
                               b, e.mulf(gate, e.f(t, M_SQRT1_2)))));
    break;
  case Activation::gelu_tanh: {
    Value cube = e.mulf(gate, e.mulf(gate, gate));
    Value inner = e.mulf(e.f(t, std::sqrt(2.0 / M_PI)),
                         e.addf(gate, e.mulf(e.f(t, 0.044715), cube)));
    h = e.mulf(e.mulf(half, gate), e.addf(one, math::TanhOp::create(b, inner)));
    break;
  }
  case Activation::silu:
    h = e.mulf(gate, e.sigmoid(gate));
    break;
  case Activation::swiglu: {
    Value g = gate, l = linear;
    if (auto limit = expert.getLimit()) {
      Value lim = e.f(t, limit->convertToDouble());
      g = arith::MinimumFOp::create(b, g, lim);
      l = arith::MaximumFOp::create(
          b, arith::MinimumFOp::create(b, l, lim), e.f(t, -limit->convertToDouble()));
    }
    Value alpha = e.f(t, expert.getAlpha().convertToDouble());
    Value beta = e.f(t, expert.getBeta().convertToDouble());
    return e.mulf(e.mulf(g, e.sigmoid(e.mulf(alpha, g))), e.addf(l, beta));
  }
  }
  // GLU: the non-SwiGLU activations are gated by fc3's output when present.
  return linear ? e.mulf(h, linear) : h;
}
