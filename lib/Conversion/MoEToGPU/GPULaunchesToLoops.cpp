//===- GPULaunchesToLoops.cpp - kernels as host loops, for testing
//-----------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGPULAUNCHESTOLOOPS
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct MoEGPULaunchesToLoopsPass
    : moe::impl::MoEGPULaunchesToLoopsBase<MoEGPULaunchesToLoopsPass> {
  void runOnOperation() override;
};

/// Threads of a block run one after another here, so anything through
/// which they would talk to each other has no meaning.
LogicalResult checkSequentiallyRunnable(gpu::LaunchOp launch) {
  if (!launch.getBody().hasOneBlock())
    return launch.emitError("cannot run a kernel with unstructured control "
                            "flow as host loops");
  if (!launch.getWorkgroupAttributions().empty())
    return launch.emitError("cannot run a kernel with workgroup memory as "
                            "host loops");
  WalkResult result = launch.getBody().walk([](Operation *op) {
    if (isa<gpu::BarrierOp>(op) || isa<NVVM::NVVMDialect>(op->getDialect())) {
      op->emitError() << "cannot run '" << op->getName()
                      << "' as host loops (threads run one at a time)";
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return failure(result.wasInterrupted());
}

/// Device memory is host memory once kernels run on the host: the cuda
/// pipeline's gpu.alloc / gpu.dealloc / gpu.memcpy (-moe-host-buffers-to-gpu)
/// become their memref counterparts. They are synchronous here (no async
/// tokens before -gpu-async-region).
LogicalResult deviceMemoryToHost(Operation *root) {
  SmallVector<Operation *> ops;
  root->walk([&](Operation *op) {
    if (isa<gpu::AllocOp, gpu::DeallocOp, gpu::MemcpyOp>(op))
      ops.push_back(op);
  });
  for (Operation *op : ops) {
    if (!op->getOperands().empty() &&
        isa<gpu::AsyncTokenType>(op->getOperand(0).getType()))
      return op->emitError("cannot run asynchronous '")
             << op->getName() << "' on the host";
    if (op->getNumResults() &&
        isa<gpu::AsyncTokenType>(op->getResults().back().getType()))
      return op->emitError("cannot run asynchronous '")
             << op->getName() << "' on the host";
    OpBuilder b(op);
    if (auto alloc = dyn_cast<gpu::AllocOp>(op)) {
      auto host = memref::AllocOp::create(
          b, alloc.getLoc(), alloc.getMemref().getType(),
          alloc.getDynamicSizes(), alloc.getSymbolOperands());
      alloc.getMemref().replaceAllUsesWith(host.getResult());
    } else if (auto dealloc = dyn_cast<gpu::DeallocOp>(op)) {
      memref::DeallocOp::create(b, dealloc.getLoc(), dealloc.getMemref());
    } else {
      auto copy = cast<gpu::MemcpyOp>(op);
      memref::CopyOp::create(b, copy.getLoc(), copy.getSrc(), copy.getDst());
    }
    op->erase();
  }
  return success();
}

void MoEGPULaunchesToLoopsPass::runOnOperation() {
  if (failed(deviceMemoryToHost(getOperation())))
    return signalPassFailure();
  SmallVector<gpu::LaunchOp> launches;
  getOperation()->walk([&](gpu::LaunchOp op) { launches.push_back(op); });
  for (gpu::LaunchOp launch : launches) {
    if (failed(checkSequentiallyRunnable(launch)))
      return signalPassFailure();
    OpBuilder b(launch);
    Location loc = launch.getLoc();
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    gpu::KernelDim3 grid = launch.getGridSizeOperandValues();
    gpu::KernelDim3 block = launch.getBlockSizeOperandValues();
    gpu::KernelDim3 blockIds = launch.getBlockIds();
    gpu::KernelDim3 threadIds = launch.getThreadIds();
    IRMapping map;
    map.map(launch.getGridSize().x, grid.x);
    map.map(launch.getGridSize().y, grid.y);
    map.map(launch.getGridSize().z, grid.z);
    map.map(launch.getBlockSize().x, block.x);
    map.map(launch.getBlockSize().y, block.y);
    map.map(launch.getBlockSize().z, block.z);
    // Blocks outermost, then threads; x varies fastest within each.
    std::pair<Value, Value> dims[] = {
        {grid.z, blockIds.z},   {grid.y, blockIds.y},   {grid.x, blockIds.x},
        {block.z, threadIds.z}, {block.y, threadIds.y}, {block.x, threadIds.x}};
    for (auto [size, id] : dims) {
      auto loop = scf::ForOp::create(b, loc, zero, size, one);
      map.map(id, loop.getInductionVar());
      b.setInsertionPoint(loop.getBody()->getTerminator());
    }
    // A thread's allocas (local memory on the GPU) are freed when it ends.
    auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
    Block *scopeBody = b.createBlock(&scope.getBodyRegion());
    b.setInsertionPointToStart(scopeBody);
    for (Operation &op : launch.getBody().front().without_terminator())
      b.clone(op, map);
    memref::AllocaScopeReturnOp::create(b, loc);
    launch.erase();
  }
}

} // namespace
