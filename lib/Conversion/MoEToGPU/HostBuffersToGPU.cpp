//===- HostBuffersToGPU.cpp - device memory for host-created buffers
//---------===//
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

/// A device buffer of `type` allocated at the insertion point and freed by
/// a gpu.dealloc at the end of its block: every use is in the block
/// (checkLocal) and the stream orders the free after the kernels using it.
Value allocDevice(IRRewriter &rewriter, Location loc, MemRefType type,
                  ValueRange dynamicSizes, ValueRange symbols) {
  auto device = gpu::AllocOp::create(rewriter, loc, type, /*asyncToken=*/Type(),
                                     /*asyncDependencies=*/ValueRange{},
                                     dynamicSizes, symbols,
                                     /*hostShared=*/false);
  OpBuilder::InsertionGuard guard(rewriter);
  rewriter.setInsertionPoint(device->getBlock()->getTerminator());
  gpu::DeallocOp::create(rewriter, loc, Type(), ValueRange{},
                         device.getMemref());
  return device.getMemref();
}

/// Uploads the host buffer `host` into a fresh device buffer at the
/// insertion point, which takes the place of `host` in the uses `redirect`
/// selects.
void upload(IRRewriter &rewriter, Location loc, Value host,
            ValueRange dynamicSizes, ValueRange symbols,
            function_ref<bool(OpOperand &)> redirect) {
  Value device = allocDevice(rewriter, loc, cast<MemRefType>(host.getType()),
                             dynamicSizes, symbols);
  rewriter.replaceUsesWithIf(host, device, redirect);
  gpu::MemcpyOp::create(rewriter, loc, Type(), ValueRange{}, device, host);
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
  upload(rewriter, loc, alloc.getResult(), alloc.getDynamicSizes(),
         alloc.getSymbolOperands(), [&](OpOperand &use) {
           return !isa<memref::StoreOp>(use.getOwner()) ||
                  onDevice(use.getOwner());
         });
  rewriter.setInsertionPoint(alloc->getBlock()->getTerminator());
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
      rewriter.replaceOp(alloc, allocDevice(rewriter, loc, alloc.getType(),
                                            alloc.getDynamicSizes(),
                                            alloc.getSymbolOperands()));
      continue;
    }
    if (auto dealloc = dyn_cast<memref::DeallocOp>(op)) {
      // Every buffer is freed at the end of its block (above).
      rewriter.eraseOp(dealloc);
      continue;
    }
    if (auto copy = dyn_cast<memref::CopyOp>(op)) {
      gpu::MemcpyOp::create(rewriter, loc, /*asyncToken=*/Type(), ValueRange{},
                            copy.getTarget(), copy.getSource());
      rewriter.eraseOp(copy);
      continue;
    }
    if (auto global = dyn_cast<memref::GetGlobalOp>(op)) {
      // Constant weights live in the module's read-only data; each call
      // uploads them (a device-resident copy is a later optimisation).
      rewriter.setInsertionPointAfter(global);
      upload(rewriter, loc, global.getResult(), ValueRange{}, ValueRange{},
             [](OpOperand &) { return true; });
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
