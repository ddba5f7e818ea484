//===- HostBuffersToGPU.cpp - device memory for host-created buffers ---------===//
//
// In a cuda module every buffer is device memory: the arguments because the
// runtime passes device pointers, the rest because this pass allocates them
// there. By the time it runs, kernels hold every load and store; the host
// code only allocates, copies and launches.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEHOSTBUFFERSTOGPU
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct MoEHostBuffersToGPUPass
    : moe::impl::MoEHostBuffersToGPUBase<MoEHostBuffersToGPUPass> {
  void runOnOperation() override;
};

/// True for ops inside a kernel (gpu.launch body or gpu.module).
bool onDevice(Operation *op) {
  return op->getParentOfType<gpu::LaunchOp>() ||
         op->getParentOfType<gpu::GPUModuleOp>();
}

/// Checks that `buffer` (through its views) is used in its own block only
/// and never passed on by a terminator, so freeing it at the end of the
/// block is safe.
LogicalResult checkLocal(Value buffer) {
  SmallVector<Value> worklist = {buffer};
  Block *home = buffer.getParentBlock();
  while (!worklist.empty()) {
    Value v = worklist.pop_back_val();
    for (Operation *user : v.getUsers()) {
      Operation *ancestor = home->findAncestorOpInBlock(*user);
      if (!ancestor || user->hasTrait<OpTrait::IsTerminator>())
        return user->emitError()
               << "a device buffer escapes its block; the cuda target frees "
                  "buffers at the end of the block that allocates them";
      if (isa<ViewLikeOpInterface>(user))
        llvm::append_range(worklist, user->getResults());
    }
  }
  return success();
}

/// A small buffer the host fills element by element (a bufferized
/// tensor.from_elements, such as the [0, T] offsets of a shared expert)
/// stays in host memory; a device copy is uploaded after its last store
/// and replaces it for every later use. Fails (changing nothing) when the
/// host does not store into `alloc` directly in its block.
LogicalResult stageHostWrites(IRRewriter &rewriter, memref::AllocOp alloc) {
  Operation *lastStore = nullptr;
  for (Operation *user : alloc->getUsers()) {
    auto store = dyn_cast<memref::StoreOp>(user);
    if (!store || onDevice(store) || store.getMemRef() != alloc.getResult())
      continue;
    if (store->getBlock() != alloc->getBlock())
      return failure();
    if (!lastStore || lastStore->isBeforeInBlock(store))
      lastStore = store;
  }
  if (!lastStore)
    return failure();
  // Every other use must come after the last store.
  for (Operation *user : alloc->getUsers()) {
    if (isa<memref::StoreOp>(user) && !onDevice(user))
      continue;
    Operation *ancestor = alloc->getBlock()->findAncestorOpInBlock(*user);
    if (!ancestor || ancestor->isBeforeInBlock(lastStore))
      return failure();
  }
  Location loc = alloc.getLoc();
  rewriter.setInsertionPointAfter(lastStore);
  auto device = gpu::AllocOp::create(rewriter, loc, alloc.getType(), Type(),
                                     ValueRange{}, alloc.getDynamicSizes(),
                                     alloc.getSymbolOperands(), false);
  rewriter.replaceUsesWithIf(alloc.getResult(), device.getMemref(),
                             [&](OpOperand &use) {
                               return !isa<memref::StoreOp>(use.getOwner()) ||
                                      onDevice(use.getOwner());
                             });
  gpu::MemcpyOp::create(rewriter, loc, Type(), ValueRange{},
                        device.getMemref(), alloc.getResult());
  rewriter.setInsertionPoint(alloc->getBlock()->getTerminator());
  gpu::DeallocOp::create(rewriter, loc, Type(), ValueRange{},
                         device.getMemref());
  memref::DeallocOp::create(rewriter, loc, alloc.getResult());
  return success();
}

void MoEHostBuffersToGPUPass::runOnOperation() {
  IRRewriter rewriter(&getContext());
  SmallVector<Operation *> hostOps;
  getOperation()->walk([&](Operation *op) {
    if (!onDevice(op) &&
        isa<memref::AllocOp, memref::AllocaOp, memref::DeallocOp,
            memref::CopyOp, memref::GetGlobalOp, memref::LoadOp,
            memref::StoreOp>(op))
      hostOps.push_back(op);
  });

  for (Operation *op : hostOps) {
    rewriter.setInsertionPoint(op);
    Location loc = op->getLoc();
    if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
      if (failed(checkLocal(alloc.getResult())))
        return signalPassFailure();
      if (succeeded(stageHostWrites(rewriter, alloc)))
        continue;
      auto device = gpu::AllocOp::create(
          rewriter, loc, alloc.getType(), /*asyncToken=*/Type(),
          /*asyncDependencies=*/ValueRange{}, alloc.getDynamicSizes(),
          alloc.getSymbolOperands(), /*hostShared=*/false);
      rewriter.replaceOp(alloc, device.getMemref());
      // Freed when its block ends: every use is in the block (checked) and
      // the stream orders the free after the kernels that use it.
      rewriter.setInsertionPoint(device->getBlock()->getTerminator());
      gpu::DeallocOp::create(rewriter, loc, Type(), ValueRange{},
                             device.getMemref());
      continue;
    }
    if (auto dealloc = dyn_cast<memref::DeallocOp>(op)) {
      // Every buffer is freed at the end of its block (above).
      rewriter.eraseOp(dealloc);
      continue;
    }
    if (auto copy = dyn_cast<memref::CopyOp>(op)) {
      gpu::MemcpyOp::create(rewriter, loc, /*asyncToken=*/Type(),
                            ValueRange{}, copy.getTarget(), copy.getSource());
      rewriter.eraseOp(copy);
      continue;
    }
    if (auto global = dyn_cast<memref::GetGlobalOp>(op)) {
      // Constant weights live in the module's read-only data; each call
      // uploads them (a device-resident copy is a later optimisation).
      auto type = global.getType();
      rewriter.setInsertionPointAfter(global);
      auto device = gpu::AllocOp::create(rewriter, loc, type, Type(),
                                         ValueRange{}, ValueRange{},
                                         ValueRange{}, false);
      rewriter.replaceAllUsesWith(global.getResult(), device.getMemref());
      gpu::MemcpyOp::create(rewriter, loc, Type(), ValueRange{},
                            device.getMemref(), global.getResult());
      rewriter.setInsertionPoint(device->getBlock()->getTerminator());
      gpu::DeallocOp::create(rewriter, loc, Type(), ValueRange{},
                             device.getMemref());
      continue;
    }
    // Stores into a staged host buffer (above) are host memory writes.
    if (auto store = dyn_cast<memref::StoreOp>(op))
      if (isa_and_nonnull<memref::AllocOp>(store.getMemRef().getDefiningOp()))
        continue;
    // A scalar access on the host would dereference device memory.
    op->emitError() << "host code of a cuda module accesses a buffer "
                       "outside a kernel ('"
                    << op->getName() << "'); it would read device memory";
    return signalPassFailure();
  }
}

} // namespace
