//===- HostBuffersToGPU.cpp - device memory for host-created buffers
//---------===//
//
// In a cuda module every buffer is device memory: the arguments because the
// runtime passes device pointers, the rest because this pass allocates them
// there. By the time it runs, kernels hold nearly every load and store; the
// host code allocates, copies and launches, and touches small buffers only
// through host copies: what it builds element by element is uploaded after
// its last store, what it reads of a device buffer (an expert-parallel
// layer's offsets and received counts) is downloaded before its first load,
// and the counts it hands to the runtime stay in host memory.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "MoE/IR/MoEDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/ADT/MapVector.h"

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

/// True for a use that needs `buffer` in host memory: a scalar access by
/// the host, or an address the host hands to a function that dereferences
/// it there (marked by the exchange's bufferization).
bool isHostUse(OpOperand &use) {
  Operation *user = use.getOwner();
  if (onDevice(user))
    return false;
  if (isa<memref::LoadOp, memref::StoreOp>(user))
    return true;
  return isa<memref::ExtractAlignedPointerAsIndexOp>(user) &&
         user->hasAttr(moe::MoEDialect::getHostAddressAttrName());
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
/// selects. Does nothing when it selects none.
void upload(IRRewriter &rewriter, Location loc, Value host,
            ValueRange dynamicSizes, ValueRange symbols,
            function_ref<bool(OpOperand &)> redirect) {
  if (llvm::none_of(host.getUses(), redirect))
    return;
  Value device = allocDevice(rewriter, loc, cast<MemRefType>(host.getType()),
                             dynamicSizes, symbols);
  rewriter.replaceUsesWithIf(host, device, redirect);
  gpu::MemcpyOp::create(rewriter, loc, Type(), ValueRange{}, device, host);
}

/// A small buffer the host fills element by element (a bufferized
/// tensor.from_elements, such as the [0, T] offsets of a shared expert or
/// the counts of an exchange) stays in host memory; a device copy is
/// uploaded after its last store and replaces it for every later use that
/// is not itself on the host, and for host loads after the device's first
/// use. Fails (changing nothing) when the host does not store into `alloc`
/// directly in its block.
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
  // From the first use on the device on, kernels may write the device copy
  // (a reduction accumulating into the buffer in place), so host loads
  // after it read the device copy, downloaded (stageHostReads), not the
  // stale host one.
  Block *home = alloc->getBlock();
  Operation *firstDeviceUse = nullptr;
  for (OpOperand &use : alloc->getUses()) {
    if (isHostUse(use))
      continue;
    Operation *ancestor = home->findAncestorOpInBlock(*use.getOwner());
    if (!firstDeviceUse || ancestor->isBeforeInBlock(firstDeviceUse))
      firstDeviceUse = ancestor;
  }
  auto onDeviceCopy = [&](OpOperand &use) {
    if (!isHostUse(use))
      return true;
    if (!firstDeviceUse || !isa<memref::LoadOp>(use.getOwner()))
      return false;
    return !home->findAncestorOpInBlock(*use.getOwner())
                ->isBeforeInBlock(firstDeviceUse);
  };
  Location loc = alloc.getLoc();
  rewriter.setInsertionPointAfter(lastStore);
  upload(rewriter, loc, alloc.getResult(), alloc.getDynamicSizes(),
         alloc.getSymbolOperands(), onDeviceCopy);
  rewriter.setInsertionPoint(alloc->getBlock()->getTerminator());
  memref::DeallocOp::create(rewriter, loc, alloc.getResult());
  return success();
}

/// The host reads `device` (a gpu.alloc'd buffer that kernels or an
/// exchange fill) with scalar loads, `loads`: they read host copies
/// instead, each downloaded just before a run of loads that no other use
/// of `device` interrupts (a buffer may be refilled between runs, such as
/// the counts of successive overlap chunks). The stream orders a copy after
/// the kernels that wrote `device`, and gpu-async-region makes the host
/// wait for it before the loads.
LogicalResult stageHostReads(IRRewriter &rewriter, gpu::AllocOp device,
                             ArrayRef<memref::LoadOp> loads) {
  Block *home = device->getBlock();
  // Every use but the free at the end of the block, by the op of `home`
  // that holds it, in program order.
  SmallVector<std::pair<Operation *, OpOperand *>> uses;
  for (OpOperand &use : device.getMemref().getUses()) {
    if (isa<gpu::DeallocOp>(use.getOwner()))
      continue;
    Operation *ancestor = home->findAncestorOpInBlock(*use.getOwner());
    if (!ancestor)
      return use.getOwner()->emitError()
             << "uses a device buffer outside the block that allocates it";
    uses.emplace_back(ancestor, &use);
  }
  llvm::stable_sort(uses, [](const auto &a, const auto &b) {
    return a.first != b.first && a.first->isBeforeInBlock(b.first);
  });

  auto isStagedLoad = [&](OpOperand *use) {
    auto load = dyn_cast<memref::LoadOp>(use->getOwner());
    return load && llvm::is_contained(loads, load);
  };
  Location loc = device.getLoc();
  Value copy;
  for (auto [ancestor, use] : uses) {
    if (!isStagedLoad(use)) {
      copy = {};
      continue;
    }
    // One op holding a load and another use (a loop that reads and
    // launches kernels on the buffer) has no point to copy at.
    for (auto &[other, otherUse] : uses)
      if (other == ancestor && !isStagedLoad(otherUse))
        return otherUse->getOwner()->emitError()
               << "uses a device buffer in the same op as a host read of "
                  "it; the host reads a copy taken before that op";
    if (!copy) {
      rewriter.setInsertionPoint(ancestor);
      copy = memref::AllocOp::create(rewriter, loc, device.getType(),
                                     device.getDynamicSizes(),
                                     device.getSymbolOperands());
      gpu::MemcpyOp::create(rewriter, loc, Type(), ValueRange{}, copy,
                            device.getMemref());
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPoint(home->getTerminator());
      memref::DeallocOp::create(rewriter, loc, copy);
    }
    auto load = cast<memref::LoadOp>(use->getOwner());
    rewriter.modifyOpInPlace(load,
                             [&] { load.getMemrefMutable().assign(copy); });
  }
  return success();
}

void MoEHostBuffersToGPUPass::runOnOperation() {
  IRRewriter rewriter(&getContext());
  // Host loads of each device buffer, staged once every buffer is placed.
  llvm::MapVector<Operation *, SmallVector<memref::LoadOp>> hostReads;
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
      // Constant counts the host hands to the runtime stay there.
      for (Operation *user : global->getUsers())
        if (user->hasTrait<OpTrait::IsTerminator>()) {
          user->emitError() << "a constant buffer is passed on by a "
                               "terminator; the cuda target uploads "
                               "constants in the block that uses them";
          return signalPassFailure();
        }
      rewriter.setInsertionPointAfter(global);
      upload(rewriter, loc, global.getResult(), ValueRange{}, ValueRange{},
             [](OpOperand &use) { return !isHostUse(use); });
      continue;
    }
    // Scalar accesses to a staged host buffer (above) are host memory
    // accesses.
    Value memref;
    if (auto store = dyn_cast<memref::StoreOp>(op))
      memref = store.getMemRef();
    if (auto load = dyn_cast<memref::LoadOp>(op))
      memref = load.getMemRef();
    if (memref && isa_and_nonnull<memref::AllocOp, memref::GetGlobalOp>(
                      memref.getDefiningOp()))
      continue;
    // A host load of a device buffer reads a downloaded copy (below).
    if (auto load = dyn_cast<memref::LoadOp>(op))
      if (auto device = load.getMemRef().getDefiningOp<gpu::AllocOp>()) {
        hostReads[device].push_back(load);
        continue;
      }
    // Any other scalar access on the host would dereference device memory.
    InFlightDiagnostic diag =
        op->emitError() << "host code of a cuda module accesses a buffer "
                           "outside a kernel ('"
                        << op->getName() << "'); it would read device memory";
    // Imported ops carry their node's name (an ONNX node): say which.
    if (auto name = op->getLoc()->findInstanceOf<NameLoc>())
      diag.attachNote() << "the access comes from '"
                        << name.getName().getValue()
                        << "', which no kernel holds";
    return signalPassFailure();
  }

  // One download per buffer, before its first host load.
  for (auto &[device, loads] : hostReads)
    if (failed(stageHostReads(rewriter, cast<gpu::AllocOp>(device), loads)))
      return signalPassFailure();

  // No gpu.wait is needed before the runtime calls that take buffer
  // addresses (moe_rt_comm_all_to_all_v_start reads rows that kernels
  // wrote): gpu-async-region makes the host wait for the stream before
  // every call with side effects, and a gpu.wait without dependencies
  // here would be canonicalized away before it runs.
}

} // namespace
