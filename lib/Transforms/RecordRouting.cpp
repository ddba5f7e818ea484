//===- RecordRouting.cpp - routes reported to the routing profile ---------===//
//
// What a model's routers do on real inputs (how many tokens each expert
// gets, which experts are chosen together) is the input for placing,
// pruning and prefetching experts. A module compiled for profiling reports
// every route's choices to the runtime, which counts them when
// `moe-run --routing-profile` asks it to (docs/RoutingProfiles.md).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOERECORDROUTING
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

struct MoERecordRoutingPass
    : moe::impl::MoERecordRoutingBase<MoERecordRoutingPass> {
  void runOnOperation() override {
    getOperation()->walk([](func::FuncOp func) {
      // A function's routes in order are its layers in order.
      int64_t layer = 0;
      func.walk([&](RouteOp route) {
        OpBuilder b(route);
        b.setInsertionPointAfter(route);
        RecordRoutingOp::create(b, route.getLoc(), route.getIds(), layer++,
                                route.getNumExperts());
      });
    });
  }
};

} // namespace
