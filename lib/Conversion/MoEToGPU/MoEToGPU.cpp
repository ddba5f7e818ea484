//===- MoEToGPU.cpp - moe stage ops to GPU kernels
//---------------------------===//
//
// Each stage op becomes gpu.launch kernels between read-only to_buffer views
// of its operands and fresh result buffers (see Passes.td). The per-token
// routing code is the CPU backend's (StageKernels.h); dispatch and combine
// are rewritten for many threads: dispatch keeps the op's token order
// within each expert without atomics, combine gives every output element a
// thread.
//
// Ids, offsets and row indices may come from callers, so, as on the CPU,
// each is range-checked before it indexes memory.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "GPUKernels.h"
#include "moe-mlir/Transforms/StageKernels.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOGPU
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::gpu_kernels;

//===----------------------------------------------------------------------===//
// Launch helpers
//===----------------------------------------------------------------------===//

Value gpu_kernels::ceilDiv(KernelEmitter &e, Value n, int64_t d) {
  return arith::DivUIOp::create(e.builder(), e.addi(n, e.index(d - 1)),
                                e.index(d));
}

gpu::LaunchOp
gpu_kernels::launch(ImplicitLocOpBuilder &b, StringRef name, Value gridX,
                    Value gridY, int64_t blockX, int64_t blockY,
                    function_ref<void(KernelEmitter &, const LaunchIds &)> body,
                    TypeRange workgroup) {
  KernelEmitter e(b);
  Value one = e.index(1);
  auto nonEmpty = [&](Value v) -> Value {
    return v ? arith::MaxUIOp::create(b, v, one).getResult() : one;
  };
  auto op = gpu::LaunchOp::create(
      b, nonEmpty(gridX), nonEmpty(gridY), one, e.index(blockX),
      e.index(blockY), one, /*dynamicSharedMemorySize=*/nullptr,
      /*asyncTokenType=*/nullptr, /*asyncDependencies=*/{},
      /*workgroupAttributions=*/workgroup, /*privateAttributions=*/{}, nullptr,
      nullptr, nullptr, FlatSymbolRefAttr::get(b.getContext(), kKernelModule),
      FlatSymbolRefAttr::get(b.getContext(), name));
  Block &entry = op.getBody().front();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(&entry);
  auto terminator = gpu::TerminatorOp::create(b);
  b.setInsertionPoint(terminator);
  LaunchIds ids;
  ids.blockX = op.getBlockIds().x;
  ids.blockY = op.getBlockIds().y;
  ids.threadX = op.getThreadIds().x;
  ids.blockDimX = op.getBlockSize().x;
  llvm::append_range(ids.workgroup, op.getWorkgroupAttributions());
  KernelEmitter ke(b);
  body(ke, ids);
  return op;
}

void gpu_kernels::launchPerItem(
    ImplicitLocOpBuilder &b, StringRef name, Value n, int64_t threads,
    function_ref<void(KernelEmitter &, Value)> body) {
  KernelEmitter e(b);
  launch(b, name, ceilDiv(e, n, threads), {}, threads, 1,
         [&](KernelEmitter &k, const LaunchIds &id) {
           Value i = k.addi(k.muli(id.blockX, id.blockDimX), id.threadX);
           k.ifThen(k.cmpi(arith::CmpIPredicate::ult, i, n),
                    [&] { body(k, i); });
         });
}

void gpu_kernels::launchPerElement(
    ImplicitLocOpBuilder &b, StringRef name, Value rows, Value cols,
    int64_t threads, function_ref<void(KernelEmitter &, Value, Value)> body) {
  KernelEmitter e(b);
  launch(b, name, rows, ceilDiv(e, cols, threads), threads, 1,
         [&](KernelEmitter &k, const LaunchIds &id) {
           Value r = id.blockX;
           Value c = k.addi(k.muli(id.blockY, id.blockDimX), id.threadX);
           Value live = k.land(k.cmpi(arith::CmpIPredicate::ult, r, rows),
                               k.cmpi(arith::CmpIPredicate::ult, c, cols));
           k.ifThen(live, [&] { body(k, r, c); });
         });
}

namespace {

//===----------------------------------------------------------------------===//
// Tensor/buffer glue
//===----------------------------------------------------------------------===//

/// A read-only identity-layout view of a tensor operand (null for null).
Value deviceBuffer(ImplicitLocOpBuilder &b, Value tensor) {
  if (!tensor)
    return {};
  auto type = cast<RankedTensorType>(tensor.getType());
  return bufferization::ToBufferOp::create(
      b, MemRefType::get(type.getShape(), type.getElementType()), tensor,
      /*read_only=*/true);
}

/// A fresh buffer for a result whose leading dimensions are `sizes` (the
/// token or row count). Only the dynamic ones are alloc operands: the same
/// stage op has a static token count in a static export.
Value allocResult(ImplicitLocOpBuilder &b, Type type, ValueRange sizes) {
  auto tensorType = cast<RankedTensorType>(type);
  SmallVector<Value> dynamicSizes;
  for (auto [d, size] : llvm::enumerate(sizes))
    if (tensorType.isDynamicDim(d))
      dynamicSizes.push_back(size);
  return memref::AllocOp::create(
      b, MemRefType::get(tensorType.getShape(), tensorType.getElementType()),
      dynamicSizes);
}

Value asTensor(ImplicitLocOpBuilder &b, Type type, Value buffer) {
  return bufferization::ToTensorOp::create(b, type, buffer, /*restrict=*/true,
                                           /*writable=*/true);
}

/// `then() : else()` as an scf.if with one result.
Value ifElseValue(KernelEmitter &e, Value cond, function_ref<Value()> then,
                  function_ref<Value()> otherwise) {
  ImplicitLocOpBuilder &b = e.builder();
  auto ifOp = scf::IfOp::create(
      b, cond,
      [&](OpBuilder &nested, Location loc) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nested.getInsertionBlock(),
                            nested.getInsertionPoint());
        scf::YieldOp::create(b, then());
      },
      [&](OpBuilder &nested, Location loc) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nested.getInsertionBlock(),
                            nested.getInsertionPoint());
        scf::YieldOp::create(b, otherwise());
      });
  return ifOp.getResult(0);
}

/// `0 <= v < n` for index values.
Value inRange(KernelEmitter &e, Value v, Value n) {
  return e.land(e.cmpi(arith::CmpIPredicate::sge, v, e.index(0)),
                e.cmpi(arith::CmpIPredicate::slt, v, n));
}

//===----------------------------------------------------------------------===//
// moe.route: a thread per token
//===----------------------------------------------------------------------===//

struct RouteToGPU : OpRewritePattern<RouteOp> {
  RouteToGPU(MLIRContext *ctx, int64_t threads)
      : OpRewritePattern(ctx), threads(threads) {}

  LogicalResult matchAndRewrite(RouteOp route,
                                PatternRewriter &rewriter) const override {
    ImplicitLocOpBuilder b(route.getLoc(), rewriter);
    KernelEmitter e(b);
    Value logits = deviceBuffer(b, route.getInput());
    Value bias = deviceBuffer(b, route.getBias());
    Value tokens = e.dim(logits, 0);
    Value weights = allocResult(b, route.getWeights().getType(), {tokens});
    Value ids = allocResult(b, route.getIds().getType(), {tokens});
    launch(b, "moe_route", ceilDiv(e, tokens, threads), {}, threads, 1,
           [&](KernelEmitter &k, const LaunchIds &id) {
             // Scratch first: allocas in the kernel's entry block are
             // static (registers or local memory), not dynamic stack.
             RouteScratch scratch = RouteScratch::allocate(k, route);
             Value t = k.addi(k.muli(id.blockX, id.blockDimX), id.threadX);
             k.ifThen(k.cmpi(arith::CmpIPredicate::ult, t, tokens), [&] {
               emitRouteToken(k, route, logits, bias, weights, ids, t, scratch);
             });
           });
    rewriter.replaceOp(route,
                       {asTensor(b, route.getWeights().getType(), weights),
                        asTensor(b, route.getIds().getType(), ids)});
    return success();
  }

  int64_t threads;
};

//===----------------------------------------------------------------------===//
// moe.dispatch: counting sort by expert, then a row gather
//===----------------------------------------------------------------------===//

struct DispatchToGPU : OpRewritePattern<DispatchOp> {
  DispatchToGPU(MLIRContext *ctx, int64_t threads)
      : OpRewritePattern(ctx), threads(threads) {}

  LogicalResult matchAndRewrite(DispatchOp dispatch,
                                PatternRewriter &rewriter) const override {
    int64_t slots = dispatch.getIds().getType().getDimSize(1);
    int64_t numExperts = dispatch.getNumExperts();
    if (ShapedType::isDynamic(slots))
      return rewriter.notifyMatchFailure(dispatch, "dynamic k");

    ImplicitLocOpBuilder b(dispatch.getLoc(), rewriter);
    KernelEmitter e(b);
    Value input = deviceBuffer(b, dispatch.getInput());
    Value ids = deviceBuffer(b, dispatch.getIds());
    Value tokens = e.dim(input, 0), hidden = e.dim(input, 1);
    Value ck = e.index(slots), cE = e.index(numExperts);
    Value numRows = e.muli(tokens, ck);
    Value rows = allocResult(b, dispatch.getRows().getType(), {numRows});
    Value offsets = allocResult(b, dispatch.getOffsets().getType(), {});
    Value rowTokens =
        allocResult(b, dispatch.getRowTokens().getType(), {numRows});
    Value slotRows = allocResult(b, dispatch.getSlotRows().getType(), {tokens});

    // Thread x < E owns expert x, thread E the leftovers. Each owner walks
    // the assignments in token order, so rows stay in token order within
    // an expert without atomics. Two kernels: every count must be known
    // before any owner places rows, and a kernel boundary is the barrier
    // (so no kernel here needs one, and all can run as plain loops, see
    // -moe-gpu-launches-to-loops).
    Value counts = memref::AllocOp::create(
        b, MemRefType::get({numExperts}, b.getI32Type()));
    auto ownerKernel = [&](StringRef name,
                           function_ref<void(KernelEmitter &, Value x)> body) {
      launchPerItem(b, name, e.index(numExperts + 1), threads, body);
    };
    auto idAt = [&](KernelEmitter &k, Value t, Value j) {
      return k.toIndex(k.load(ids, {t, j}));
    };
    // Visits every assignment (t, j) in token order.
    auto forEachAssignment =
        [&](KernelEmitter &k, ValueRange init,
            function_ref<SmallVector<Value>(Value, Value, ValueRange)> body) {
          Value c0 = k.index(0);
          return k.loop(c0, tokens, init, [&](Value t, ValueRange acc) {
            return k.loop(c0, ck, acc, [&](Value j, ValueRange inner) {
              return body(t, j, inner);
            });
          });
        };
    // Rows before expert `end`: the counts of the experts below it.
    auto countsBelow = [&](KernelEmitter &k, Value end) {
      Value c0 = k.index(0);
      return k.loop(c0, end, {c0}, [&](Value y, ValueRange acc) {
        return SmallVector<Value>{k.addi(acc[0], k.toIndex(k.load(counts, y)))};
      })[0];
    };
    // A capacity bounds each expert on its own, so its owner alone decides
    // which of its assignments are admitted: slot-major, in token order,
    // group by group. slot_rows[t, j] marks them (0) until placed.
    Value capacity, groupSize;
    if (std::optional<APFloat> factor = dispatch.getCapacityFactor()) {
      // C = ceil(c * (T * k) / E), in f64 as the semantics define it.
      Type f64 = b.getF64Type();
      Value assignments = arith::UIToFPOp::create(
          b, f64, arith::IndexCastUIOp::create(b, b.getI64Type(), numRows));
      Value perExpert = math::CeilOp::create(
          b, e.divf(e.mulf(e.f(f64, factor->convertToDouble()), assignments),
                    e.f(f64, numExperts)));
      capacity = arith::IndexCastUIOp::create(
          b, b.getIndexType(),
          arith::FPToUIOp::create(b, b.getI64Type(), perExpert));
    } else if (std::optional<uint64_t> perGroup = dispatch.getExpertCapacity()) {
      capacity = e.index(static_cast<int64_t>(*perGroup));
    }
    if (capacity) {
      groupSize = dispatch.getGroupSize() ? dispatch.getGroupSize() : tokens;
      groupSize = arith::MaxUIOp::create(b, groupSize, e.index(1));
    }
    ownerKernel("moe_dispatch_count", [&](KernelEmitter &k, Value x) {
      k.ifThen(k.cmpi(arith::CmpIPredicate::ult, x, cE), [&] {
        Value c0 = k.index(0), c1 = k.index(1);
        Value count;
        if (!capacity) {
          count = forEachAssignment(
              k, {c0}, [&](Value t, Value j, ValueRange acc) {
                Value hit =
                    k.cmpi(arith::CmpIPredicate::eq, idAt(k, t, j), x);
                return SmallVector<Value>{
                    k.select(hit, k.addi(acc[0], c1), acc[0])};
              })[0];
        } else {
          Value numGroups =
              arith::CeilDivUIOp::create(k.builder(), tokens, groupSize);
          count = k.loop(c0, numGroups, {c0}, [&](Value g, ValueRange total) {
            Value first = k.muli(g, groupSize);
            Value last = arith::MinUIOp::create(
                k.builder(), k.addi(first, groupSize), tokens);
            Value taken = k.loop(c0, ck, {c0}, [&](Value j, ValueRange acc) {
              return k.loop(first, last, acc, [&](Value t, ValueRange inner) {
                Value hit =
                    k.cmpi(arith::CmpIPredicate::eq, idAt(k, t, j), x);
                Value admit = k.land(
                    hit, k.cmpi(arith::CmpIPredicate::ult, inner[0], capacity));
                k.ifThen(hit, [&] {
                  k.store(k.select(admit, k.i32(0), k.i32(-1)), slotRows,
                          {t, j});
                });
                return SmallVector<Value>{
                    k.select(admit, k.addi(inner[0], c1), inner[0])};
              });
            })[0];
            return SmallVector<Value>{k.addi(total[0], taken)};
          })[0];
        }
        k.store(k.toI32(count), counts, x);
      });
    });
    ownerKernel("moe_dispatch_place", [&](KernelEmitter &k, Value x) {
      Value c0 = k.index(0), c1 = k.index(1);
      k.ifThen(k.cmpi(arith::CmpIPredicate::ult, x, cE), [&] {
        Value start = countsBelow(k, x);
        k.store(k.toI32(start), offsets, x);
        forEachAssignment(k, {start}, [&](Value t, Value j, ValueRange acc) {
          Value hit = k.cmpi(arith::CmpIPredicate::eq, idAt(k, t, j), x);
          if (capacity) // admitted by the count kernel (dropped: -1 stays)
            hit = k.land(hit, k.cmpi(arith::CmpIPredicate::eq,
                                     k.load(slotRows, {t, j}), k.i32(0)));
          k.ifThen(hit, [&] {
            k.store(k.toI32(acc[0]), slotRows, {t, j});
            k.store(k.toI32(t), rowTokens, acc[0]);
          });
          return SmallVector<Value>{k.select(hit, k.addi(acc[0], c1), acc[0])};
        });
      });
      k.ifThen(k.cmpi(arith::CmpIPredicate::eq, x, cE), [&] {
        Value used = countsBelow(k, cE);
        k.store(k.toI32(used), offsets, cE);
        k.loop(used, numRows,
               [&](Value r) { k.store(k.i32(-1), rowTokens, r); });
        k.loop(c0, tokens, [&](Value t) {
          k.loop(c0, ck, [&](Value j) {
            k.ifThen(k.cmpi(arith::CmpIPredicate::eq,
                            inRange(k, idAt(k, t, j), cE), k.boolean(false)),
                     [&] {
                       k.store(k.i32(-1), slotRows, {t, j});
                     });
          });
        });
      });
    });

    // Gather: a thread per element of `rows` (zero for padding rows).
    Type elementType = dispatch.getRows().getType().getElementType();
    launchPerElement(b, "moe_dispatch_gather", numRows, hidden, threads,
                     [&](KernelEmitter &k, Value r, Value h) {
                       Value t = k.toIndex(k.load(rowTokens, r));
                       Value v = ifElseValue(
                           k, inRange(k, t, tokens),
                           [&] {
                             return k.load(input, {t, h});
                           },
                           [&] { return k.f(elementType, 0.0); });
                       k.store(v, rows, {r, h});
                     });

    rewriter.replaceOp(
        dispatch, {asTensor(b, dispatch.getRows().getType(), rows),
                   asTensor(b, dispatch.getOffsets().getType(), offsets),
                   asTensor(b, dispatch.getRowTokens().getType(), rowTokens),
                   asTensor(b, dispatch.getSlotRows().getType(), slotRows)});
    return success();
  }

  int64_t threads;
};

//===----------------------------------------------------------------------===//
// moe.expert
//===----------------------------------------------------------------------===//

struct ExpertToGPU : OpRewritePattern<ExpertOp> {
  ExpertToGPU(MLIRContext *ctx, ExpertKernelOptions options)
      : OpRewritePattern(ctx), options(options) {}

  LogicalResult matchAndRewrite(ExpertOp expert,
                                PatternRewriter &rewriter) const override {
    if (expert.getQuantAttr())
      return rewriter.notifyMatchFailure(expert, "quantised");
    ImplicitLocOpBuilder b(expert.getLoc(), rewriter);
    KernelEmitter e(b);
    ExpertBuffers buffers;
    buffers.rows = deviceBuffer(b, expert.getRows());
    buffers.offsets = deviceBuffer(b, expert.getOffsets());
    buffers.fc1 = deviceBuffer(b, expert.getFc1());
    buffers.fc1Bias = deviceBuffer(b, expert.getFc1Bias());
    buffers.fc2 = deviceBuffer(b, expert.getFc2());
    buffers.fc2Bias = deviceBuffer(b, expert.getFc2Bias());
    buffers.fc3 = deviceBuffer(b, expert.getFc3());
    buffers.fc3Bias = deviceBuffer(b, expert.getFc3Bias());
    buffers.result =
        allocResult(b, expert.getResult().getType(), {e.dim(buffers.rows, 0)});
    if (failed(emitExpertKernels(b, expert, buffers, options)))
      return failure();
    rewriter.replaceOp(
        expert, asTensor(b, expert.getResult().getType(), buffers.result));
    return success();
  }

  ExpertKernelOptions options;
};

//===----------------------------------------------------------------------===//
// moe.combine: per-token gates, then a thread per output element
//===----------------------------------------------------------------------===//

struct CombineToGPU : OpRewritePattern<CombineOp> {
  CombineToGPU(MLIRContext *ctx, int64_t threads)
      : OpRewritePattern(ctx), threads(threads) {}

  LogicalResult matchAndRewrite(CombineOp combine,
                                PatternRewriter &rewriter) const override {
    int64_t slots = combine.getWeights().getType().getDimSize(1);
    if (ShapedType::isDynamic(slots))
      return rewriter.notifyMatchFailure(combine, "dynamic k");
    ImplicitLocOpBuilder b(combine.getLoc(), rewriter);
    KernelEmitter e(b);
    Value expertOut = deviceBuffer(b, combine.getExpertOutput());
    Value weights = deviceBuffer(b, combine.getWeights());
    Value ids = deviceBuffer(b, combine.getIds());
    Value slotRows = deviceBuffer(b, combine.getSlotRows());
    Value input = deviceBuffer(b, combine.getInput());
    Value shared = deviceBuffer(b, combine.getShared());
    Value sharedGate = deviceBuffer(b, combine.getSharedGate());
    Value constants = deviceBuffer(b, combine.getConstants());
    Value constantGates = deviceBuffer(b, combine.getConstantGates());

    Value tokens = e.dim(weights, 0);
    Value numRows = e.dim(expertOut, 0);
    Value hidden = e.dim(expertOut, 1);
    auto resultType = combine.getResult().getType();
    Type outType = resultType.getElementType();
    Type ct = computeTypeFor(outType);
    Value result = allocResult(b, resultType, {tokens});
    int64_t numExperts = combine.getNumExperts();

    SmallVector<ZeroExpertKind> zeroKinds = combine.getZeroExpertKinds();
    int64_t numConstants = llvm::count(zeroKinds, ZeroExpertKind::constant);

    // gates[t] = [shared gate, (a1, a2) per constant expert]: dot products
    // over the hidden size, once per token rather than once per element.
    Value gates;
    if (sharedGate || numConstants) {
      gates = memref::AllocOp::create(
          b, MemRefType::get({ShapedType::kDynamic, 1 + 2 * numConstants}, ct),
          ValueRange{tokens});
      launchPerItem(
          b, "moe_combine_gates", tokens, threads,
          [&](KernelEmitter &k, Value t) {
            Value c0 = k.index(0), zero = k.f(ct, 0.0);
            auto value = [&](Value buffer, ValueRange idx) {
              return k.castFloat(k.load(buffer, idx), ct);
            };
            auto dot = [&](function_ref<Value(Value)> weight) {
              return k.sum(c0, hidden, zero, [&](Value h) {
                return k.mulf(weight(h), value(input, {t, h}));
              });
            };
            if (sharedGate)
              k.store(k.sigmoid(
                          dot([&](Value h) { return value(sharedGate, {h}); })),
                      gates, {t, c0});
            for (int64_t c = 0; c < numConstants; ++c) {
              Value cc = k.index(c);
              Value g0 = dot([&](Value h) {
                return value(constantGates, {cc, k.index(0), h});
              });
              Value g1 = dot([&](Value h) {
                return value(constantGates, {cc, k.index(1), h});
              });
              Value max = arith::MaximumFOp::create(k.builder(), g0, g1);
              Value p0 = k.exp(k.subf(g0, max));
              Value p1 = k.exp(k.subf(g1, max));
              Value total = k.addf(p0, p1);
              k.store(k.divf(p0, total), gates, {t, k.index(1 + 2 * c)});
              k.store(k.divf(p1, total), gates, {t, k.index(2 + 2 * c)});
            }
          });
    }

    launchPerElement(
        b, "moe_combine", tokens, hidden, threads,
        [&](KernelEmitter &k, Value t, Value h) {
          Value c0 = k.index(0), zero = k.f(ct, 0.0);
          Value cE = k.index(numExperts);
          auto value = [&](Value buffer, ValueRange idx) {
            return k.castFloat(k.load(buffer, idx), ct);
          };
          Value acc =
              k.loop(c0, k.index(slots), {zero}, [&](Value j, ValueRange sum) {
                Value id = k.toIndex(k.load(ids, {t, j}));
                Value w = value(weights, {t, j});
                Value row = k.toIndex(k.load(slotRows, {t, j}));
                Value routed =
                    k.land(inRange(k, id, cE), inRange(k, row, numRows));
                Value term = ifElseValue(
                    k, routed,
                    [&] {
                      return value(expertOut, {row, h});
                    },
                    [&] { return zero; });
                if (combine.getDroppedPassThrough()) {
                  // A routed slot that dispatch dropped keeps the token.
                  Value dropped = k.land(
                      inRange(k, id, cE),
                      k.cmpi(arith::CmpIPredicate::slt, row, c0));
                  term = k.select(dropped, value(input, {t, h}), term);
                }
                int64_t constantIndex = 0;
                for (auto [z, kind] : llvm::enumerate(zeroKinds)) {
                  if (kind == ZeroExpertKind::zero)
                    continue;
                  Value isThis = k.cmpi(arith::CmpIPredicate::eq, id,
                                        k.index(numExperts + z));
                  Value x = value(input, {t, h});
                  Value contribution = x;
                  if (kind == ZeroExpertKind::constant) {
                    int64_t c = constantIndex++;
                    Value a1 = k.load(gates, {t, k.index(1 + 2 * c)});
                    Value a2 = k.load(gates, {t, k.index(2 + 2 * c)});
                    contribution =
                        k.addf(k.mulf(a1, x),
                               k.mulf(a2, value(constants, {k.index(c), h})));
                  }
                  term = k.select(isThis, contribution, term);
                }
                return SmallVector<Value>{k.addf(sum[0], k.mulf(w, term))};
              })[0];
          if (shared) {
            Value gate = sharedGate ? k.load(gates, {t, c0}) : k.f(ct, 1.0);
            acc = k.addf(acc, k.mulf(gate, value(shared, {t, h})));
          }
          k.store(k.castFloat(acc, outType), result, {t, h});
        });
    rewriter.replaceOp(combine, asTensor(b, resultType, result));
    return success();
  }

  int64_t threads;
};

//===----------------------------------------------------------------------===//
// Pass
//===----------------------------------------------------------------------===//

struct ConvertMoEToGPUPass
    : moe::impl::ConvertMoEToGPUBase<ConvertMoEToGPUPass> {
  using Base::Base;

  void runOnOperation() override {
    // Say what this target cannot do yet, per op, before rewriting.
    WalkResult unsupported = getOperation()->walk([](Operation *op) {
      auto reject = [&](const Twine &what) {
        op->emitError() << what << " is not supported by the cuda target yet";
        return WalkResult::interrupt();
      };
      if (auto expert = dyn_cast<ExpertOp>(op); expert && expert.getQuantAttr())
        return reject("a quantised moe.expert");
      if (auto expert = dyn_cast<ExpertOp>(op);
          expert && expert.getPanelWidth())
        return reject("a moe.expert with panel-major weights "
                      "(-moe-pack-expert-weights)");
      if (auto expert = dyn_cast<ExpertOp>(op); expert && expert.combinesRows())
        return reject("a moe.expert with the combine fused "
                      "(-moe-fuse-combine)");
      if (auto expert = dyn_cast<ExpertOp>(op); expert && expert.gathersRows())
        return reject("a moe.expert reading its rows through gather_tokens "
                      "(-moe-fuse-gather)");
      if (auto route = dyn_cast<RouteOp>(op); route && route.getRouterWeight())
        return reject("a moe.route with the router's MatMul fused "
                      "(-moe-fuse-router)");
      if (isa<LayerOp>(op))
        return reject("moe.layer (run -moe-decompose-layer first)");
      return WalkResult::advance();
    });
    if (unsupported.wasInterrupted())
      return signalPassFailure();

    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    ExpertKernelOptions expertOptions;
    expertOptions.threadsPerBlock = threadsPerBlock;
    expertOptions.tensorCores = tensorCores;
    expertOptions.sharedMemoryStages = sharedMemoryStages;
    expertOptions.testMisplaceFragment = testMisplaceFragment;
    patterns.add<RouteToGPU, DispatchToGPU, CombineToGPU>(ctx, threadsPerBlock);
    patterns.add<ExpertToGPU>(ctx, expertOptions);
    // Every stage op is rewritten exactly once; no folding of the new IR.
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(
            applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      return signalPassFailure();
    WalkResult left = getOperation()->walk([](Operation *op) {
      if (isa<RouteOp, DispatchOp, ExpertOp, CombineOp>(op)) {
        op->emitError("could not be lowered to GPU kernels (static k and "
                      "weight shapes are required)");
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (left.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
