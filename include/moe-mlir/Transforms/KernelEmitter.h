//===- KernelEmitter.h - small helpers for emitting loop nests --*- C++ -*-===//
//
// The moe stage ops bufferize straight into memref loop nests. These helpers
// keep that code readable: structured loops and conditionals as lambdas,
// constants by value, and conversions to and from the compute type.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TRANSFORMS_KERNELEMITTER_H
#define MOE_MLIR_TRANSFORMS_KERNELEMITTER_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir::moe {

class KernelEmitter {
public:
  explicit KernelEmitter(ImplicitLocOpBuilder &b) : b(b) {}

  ImplicitLocOpBuilder &builder() { return b; }

  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value i32(int64_t v) {
    return arith::ConstantIntOp::create(b, b.getI32Type(), v);
  }
  Value f(Type type, double v) {
    return arith::ConstantOp::create(b, type, b.getFloatAttr(type, v));
  }
  Value boolean(bool v) { return arith::ConstantIntOp::create(b, v, 1); }
  /// A vector constant with `v` in every lane, of an integer or float
  /// element type (integers exact up to 2^53).
  Value splat(VectorType type, double v) {
    Type element = type.getElementType();
    TypedAttr lane = isa<FloatType>(element)
                         ? TypedAttr(b.getFloatAttr(element, v))
                         : TypedAttr(b.getIntegerAttr(
                               element, static_cast<int64_t>(v)));
    return arith::ConstantOp::create(b, type,
                                     DenseElementsAttr::get(type, lane));
  }

  Value load(Value memref, ValueRange indices) {
    return memref::LoadOp::create(b, memref, indices);
  }
  void store(Value value, Value memref, ValueRange indices) {
    memref::StoreOp::create(b, value, memref, indices);
  }
  Value dim(Value memref, int64_t d) {
    return memref::DimOp::create(b, memref, d);
  }

  /// Converts between float types (extension or truncation).
  Value castFloat(Value v, Type to) {
    Type from = v.getType();
    if (from == to)
      return v;
    if (cast<FloatType>(from).getWidth() < cast<FloatType>(to).getWidth())
      return arith::ExtFOp::create(b, to, v);
    return arith::TruncFOp::create(b, to, v);
  }

  /// i32 id or offset to index (sign-extending, so -1 stays -1).
  Value toIndex(Value v) {
    return arith::IndexCastOp::create(b, b.getIndexType(), v);
  }
  Value toI32(Value v) {
    return arith::IndexCastOp::create(b, b.getI32Type(), v);
  }
  /// The row an i32 token id names, clamped to `[0, lastRow]`: a negative
  /// id becomes a huge index, which the unsigned minimum clamps as well.
  /// The form gathered contractions read A's rows through
  /// (emitGatheredMatmulTransposedB, -moe-vectorize-contractions).
  Value clampedTokenRow(Value token, Value lastRow) {
    return arith::MinUIOp::create(b, toIndex(token), lastRow);
  }

  Value cmpi(arith::CmpIPredicate p, Value l, Value r) {
    return arith::CmpIOp::create(b, p, l, r);
  }
  Value cmpf(arith::CmpFPredicate p, Value l, Value r) {
    return arith::CmpFOp::create(b, p, l, r);
  }
  Value land(Value l, Value r) { return arith::AndIOp::create(b, l, r); }
  Value select(Value c, Value t, Value f) {
    return arith::SelectOp::create(b, c, t, f);
  }
  Value addf(Value l, Value r) { return arith::AddFOp::create(b, l, r); }
  Value subf(Value l, Value r) { return arith::SubFOp::create(b, l, r); }
  Value mulf(Value l, Value r) { return arith::MulFOp::create(b, l, r); }
  Value divf(Value l, Value r) { return arith::DivFOp::create(b, l, r); }
  Value addi(Value l, Value r) { return arith::AddIOp::create(b, l, r); }
  Value subi(Value l, Value r) { return arith::SubIOp::create(b, l, r); }
  Value muli(Value l, Value r) { return arith::MulIOp::create(b, l, r); }
  Value exp(Value v) { return math::ExpOp::create(b, v); }
  /// 1 / (1 + exp(-x)), of a scalar or a vector.
  Value sigmoid(Value x) {
    auto vector = dyn_cast<VectorType>(x.getType());
    Value one = vector ? splat(vector, 1.0) : f(x.getType(), 1.0);
    return divf(one, addf(one, exp(arith::NegFOp::create(b, x))));
  }

  /// `for iv in [lb, ub)` by `step` (default 1).
  void loop(Value lb, Value ub, function_ref<void(Value)> body,
            Value step = {}) {
    auto forOp = scf::ForOp::create(b, lb, ub, step ? step : index(1));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(forOp.getBody()->getTerminator());
    body(forOp.getInductionVar());
  }

  /// `scf.parallel iv in [lb, ub)` by `step` (default 1): iterations are
  /// independent, and the outermost such loop is the unit of multithreading
  /// (nested ones run serially on their worker).
  void parallelFor(Value lb, Value ub, Value step,
                   function_ref<void(Value)> body) {
    auto loop = scf::ParallelOp::create(b, ValueRange{lb}, ValueRange{ub},
                                        ValueRange{step ? step : index(1)});
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(loop.getBody()->getTerminator());
    body(loop.getInductionVars()[0]);
  }

  /// `for iv in [lb, ub)` by `step` (default 1) carrying `init`; `body`
  /// returns the next values.
  SmallVector<Value>
  loop(Value lb, Value ub, ValueRange init,
       function_ref<SmallVector<Value>(Value, ValueRange)> body,
       Value step = {}) {
    auto forOp =
        scf::ForOp::create(b, lb, ub, step ? step : index(1), init);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(forOp.getBody());
      SmallVector<Value> next =
          body(forOp.getInductionVar(), forOp.getRegionIterArgs());
      scf::YieldOp::create(b, next);
    }
    return SmallVector<Value>(forOp.getResults());
  }

  /// A sum over `[lb, ub)` of `term(iv)`, starting from `init`.
  Value sum(Value lb, Value ub, Value init, function_ref<Value(Value)> term) {
    return loop(lb, ub, init, [&](Value iv, ValueRange acc) {
      return SmallVector<Value>{addf(acc[0], term(iv))};
    })[0];
  }

  void ifThen(Value cond, function_ref<void()> then) {
    auto ifOp = scf::IfOp::create(b, cond, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
    then();
  }

  void ifThenElse(Value cond, function_ref<void()> then,
                  function_ref<void()> otherwise) {
    auto ifOp = scf::IfOp::create(b, cond, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
    then();
    b.setInsertionPoint(ifOp.elseBlock()->getTerminator());
    otherwise();
  }

private:
  ImplicitLocOpBuilder &b;
};

} // namespace mlir::moe

#endif // MOE_MLIR_TRANSFORMS_KERNELEMITTER_H
