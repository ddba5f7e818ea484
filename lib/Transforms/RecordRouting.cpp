//===- RecordRouting.cpp - routes reported to the routing profile ---------===//
//
// What a model's routers do on real inputs (how many tokens each expert
// gets, which experts are chosen together) is the input for placing,
// pruning and prefetching experts. A module compiled for profiling reports
// every route's choices to the runtime, which counts them when
// `moe-run --routing-profile` asks it to (docs/RoutingProfiles.md).
//
// Pre-gating: prefetching layer L + 1's experts while layer L computes
// needs a guess of L + 1's choice before its input exists. The usual guess
// is L + 1's router run on L's input (the residual stream changes little
// from layer to layer); reporting that guess next to the real choice lets
// the profile say how good it is on the model's own data.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "moe-mlir/Transforms/PreGating.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOERECORDROUTING
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

struct MoERecordRoutingPass
    : moe::impl::MoERecordRoutingBase<MoERecordRoutingPass> {
  using MoERecordRoutingBase::MoERecordRoutingBase;

  void runOnOperation() override {
    getOperation()->walk([&](func::FuncOp func) {
      SmallVector<RouteOp> routes = layerRoutes(func);
      DominanceInfo dominance(func);
      for (auto [layer, route] : llvm::enumerate(routes)) {
        OpBuilder b(route);
        b.setInsertionPointAfter(route);
        auto record = RecordRoutingOp::create(b, route.getLoc(), route.getIds(),
                                              layer, route.getNumExperts());
        if (!preGating || layer + 1 == routes.size())
          continue;
        b.setInsertionPointAfter(record);
        RouteOp next = routes[layer + 1];
        if (RouteOp guess = buildPreGatedRoute(b, dominance, route, next))
          RecordRoutingOp::create(b, next.getLoc(), guess.getIds(), layer + 1,
                                  next.getNumExperts(), /*predicted=*/true);
      }
    });
  }
};

} // namespace
