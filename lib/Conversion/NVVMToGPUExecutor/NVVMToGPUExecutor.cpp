//===- NVVMToGPUExecutor.cpp - NVVM kernels as host code
//-------------------===//
//
// The moe GPU executor (tools/gpu-executor) is a CUDA driver that runs
// kernels on the CPU, one fiber per GPU thread. What it runs is the NVVM IR
// that PTX would be generated from, translated here op by op: everything a
// thread computes alone stays as it is (LLVM dialect), and everything that
// involves other threads or the GPU's state becomes a call into the
// executor, which sees the whole block and warp:
//
//   nvvm.read.ptx.sreg.*        -> moe_gpuexec_sreg(which)
//   nvvm.barrier0 / barrier     -> moe_gpuexec_barrier(site)
//   nvvm.mma.sync m16n8k16      -> moe_gpuexec_mma_m16n8k16(site, ...)
//   nvvm.shfl.sync              -> moe_gpuexec_shfl_sync(site, ...)
//   nvvm.ldmatrix m8n8 b16      -> moe_gpuexec_ldmatrix(site, ...)
//   nvvm.cp.async.*             -> moe_gpuexec_cp_async{,_commit,_wait}
//   shared-memory globals       -> moe_gpuexec_shared_memory(bytes) + offset
//
// Register operands of the collectives travel through stack slots (one per
// operand kind, allocated once at function entry) so that the executor's C
// ABI stays fixed whatever the operand types. `site` numbers the call sites
// of a module so that the executor can say where threads diverged.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/AttrTypeSubElements.h"
#include "mlir/Interfaces/DataLayoutInterfaces.h"

#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringSwitch.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTNVVMTOGPUEXECUTOR
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

constexpr llvm::StringLiteral kEntryPrefix = "__moe_gpuexec_entry_";

/// The executor's numbering of special registers (moe_gpuexec_sreg).
std::optional<uint32_t> specialRegister(StringRef opName) {
  return llvm::StringSwitch<std::optional<uint32_t>>(opName)
      .Case("nvvm.read.ptx.sreg.tid.x", 0)
      .Case("nvvm.read.ptx.sreg.tid.y", 1)
      .Case("nvvm.read.ptx.sreg.tid.z", 2)
      .Case("nvvm.read.ptx.sreg.ntid.x", 3)
      .Case("nvvm.read.ptx.sreg.ntid.y", 4)
      .Case("nvvm.read.ptx.sreg.ntid.z", 5)
      .Case("nvvm.read.ptx.sreg.ctaid.x", 6)
      .Case("nvvm.read.ptx.sreg.ctaid.y", 7)
      .Case("nvvm.read.ptx.sreg.ctaid.z", 8)
      .Case("nvvm.read.ptx.sreg.nctaid.x", 9)
      .Case("nvvm.read.ptx.sreg.nctaid.y", 10)
      .Case("nvvm.read.ptx.sreg.nctaid.z", 11)
      .Case("nvvm.read.ptx.sreg.laneid", 12)
      .Case("nvvm.read.ptx.sreg.warpsize", 13)
      .Case("nvvm.read.ptx.sreg.warpid", 14)
      .Case("nvvm.read.ptx.sreg.nwarpid", 15)
      .Default(std::nullopt);
}

/// Builds the executor calls of one function.
class KernelRewriter {
public:
  KernelRewriter(LLVM::LLVMFuncOp func, ModuleOp module, unsigned &nextSite,
                 uint64_t staticSharedBytes,
                 const llvm::DenseMap<StringAttr, uint64_t> &sharedOffsets)
      : func(func), module(module), nextSite(nextSite),
        staticSharedBytes(staticSharedBytes), sharedOffsets(sharedOffsets),
        b(func.getContext()) {}

  LogicalResult run();

private:
  Type i32() { return b.getI32Type(); }
  Type i64() { return b.getI64Type(); }
  Type ptr() { return LLVM::LLVMPointerType::get(b.getContext()); }
  Value constI32(Location loc, int64_t v) {
    return LLVM::ConstantOp::create(b, loc, i32(), b.getI32IntegerAttr(v));
  }
  Value constI64(Location loc, int64_t v) {
    return LLVM::ConstantOp::create(b, loc, i64(), b.getI64IntegerAttr(v));
  }
  Value site(Location loc) { return constI32(loc, nextSite++); }

  /// Declares (once) and calls executor function `name`.
  Value call(Location loc, StringRef name, Type result, ValueRange args);
  /// A stack slot of `count` i32 registers, allocated at function entry.
  Value slot(int64_t count);
  /// The register as an i32 (f32, vector<2xf16/bf16> and i32 registers).
  Value toWord(Location loc, Value v);
  Value fromWord(Location loc, Value word, Type type);
  void storeWords(Location loc, Value slot, ValueRange words);
  Value loadWord(Location loc, Value slot, int64_t i, Type type);

  LogicalResult rewrite(Operation *op);
  /// Precedes a memory access with moe_gpuexec_check_access, unless it
  /// reads or writes the thread's own stack slots.
  void checkAccess(Operation *op, Value address, Value bytes, bool isStore);
  void checkAccess(Operation *op, Value address, Type type, bool isStore);
  void checkAccess(Operation *op);

public:
  bool checkMemory = true;

private:
  LogicalResult rewriteMma(NVVM::MmaOp op);
  LogicalResult rewriteShfl(NVVM::ShflOp op);
  LogicalResult rewriteLdMatrix(NVVM::LdMatrixOp op);

  LLVM::LLVMFuncOp func;
  ModuleOp module;
  unsigned &nextSite;
  uint64_t staticSharedBytes;
  const llvm::DenseMap<StringAttr, uint64_t> &sharedOffsets;
  OpBuilder b;
};

Value KernelRewriter::call(Location loc, StringRef name, Type result,
                           ValueRange args) {
  auto callee = module.lookupSymbol<LLVM::LLVMFuncOp>(name);
  if (!callee) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToEnd(module.getBody());
    Type ret = result ? result : LLVM::LLVMVoidType::get(b.getContext());
    auto type = LLVM::LLVMFunctionType::get(
        ret, llvm::to_vector(llvm::map_range(
                 args, [](Value v) -> Type { return v.getType(); })));
    callee = LLVM::LLVMFuncOp::create(b, loc, name, type);
  }
  auto op = LLVM::CallOp::create(b, loc, callee, args);
  return result ? op.getResult() : Value();
}

Value KernelRewriter::slot(int64_t count) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&func.getBody().front());
  Location loc = func.getLoc();
  return LLVM::AllocaOp::create(b, loc, ptr(), i32(), constI64(loc, count),
                                /*alignment=*/16);
}

Value KernelRewriter::toWord(Location loc, Value v) {
  if (v.getType() == i32())
    return v;
  return LLVM::BitcastOp::create(b, loc, i32(), v);
}

Value KernelRewriter::fromWord(Location loc, Value word, Type type) {
  if (type == i32())
    return word;
  return LLVM::BitcastOp::create(b, loc, type, word);
}

void KernelRewriter::storeWords(Location loc, Value slot, ValueRange words) {
  for (auto [i, word] : llvm::enumerate(words)) {
    Value at = LLVM::GEPOp::create(b, loc, ptr(), i32(), slot,
                                   ArrayRef<LLVM::GEPArg>{int32_t(i)});
    LLVM::StoreOp::create(b, loc, toWord(loc, word), at);
  }
}

Value KernelRewriter::loadWord(Location loc, Value slot, int64_t i, Type type) {
  Value at = LLVM::GEPOp::create(b, loc, ptr(), i32(), slot,
                                 ArrayRef<LLVM::GEPArg>{int32_t(i)});
  return fromWord(loc, LLVM::LoadOp::create(b, loc, i32(), at), type);
}

/// mma.sync m16n8k16 with f16/bf16 multiplicands: A in 4 registers, B in 2,
/// C and D in 4 (f32) or 2 (f16x2).
LogicalResult KernelRewriter::rewriteMma(NVVM::MmaOp op) {
  // Multiplicands: bf16 travel as i32, f16 as vector<2xf16>.
  std::optional<NVVM::MMATypes> abType = op.getMultiplicandAPtxType();
  Type aType = op.getOperandA().front().getType();
  if (!abType)
    abType =
        isa<VectorType>(aType) ? NVVM::MMATypes::f16 : NVVM::MMATypes::bf16;
  if (*abType != NVVM::MMATypes::f16 && *abType != NVVM::MMATypes::bf16)
    return op.emitError("the GPU executor runs f16 and bf16 mma.sync only, "
                        "not ")
           << stringifyEnum(*abType);
  NVVM::MMAShapeAttr shape = op.getShape();
  if (shape.getM() != 16 || shape.getN() != 8 || shape.getK() != 16)
    return op.emitError("the GPU executor runs mma.sync m16n8k16 only, not m")
           << shape.getM() << "n" << shape.getN() << "k" << shape.getK();
  if (op.getLayoutA() != NVVM::MMALayout::row ||
      op.getLayoutB() != NVVM::MMALayout::col)
    return op.emitError("mma.sync m16n8k16 must be row.col");
  auto accType = [&](Type t) -> std::optional<uint32_t> {
    if (t.isF32())
      return 0;
    if (auto v = dyn_cast<VectorType>(t); v && v.getElementType().isF16())
      return 1;
    return std::nullopt;
  };
  ValueRange c = op.getOperandC();
  auto resultType = cast<LLVM::LLVMStructType>(op.getRes().getType());
  Type dElem = resultType.getBody().front();
  std::optional<uint32_t> cKind = accType(c.front().getType());
  std::optional<uint32_t> dKind = accType(dElem);
  if (!cKind || !dKind || op.getOperandA().size() != 4 ||
      op.getOperandB().size() != 2 || c.size() != (*cKind == 0 ? 4u : 2u))
    return op.emitError("unexpected operands of mma.sync m16n8k16");

  Location loc = op.getLoc();
  Value a = slot(4), bSlot = slot(2), cSlot = slot(4), d = slot(4);
  b.setInsertionPoint(op);
  storeWords(loc, a, op.getOperandA());
  storeWords(loc, bSlot, op.getOperandB());
  storeWords(loc, cSlot, c);
  call(loc, "moe_gpuexec_mma_m16n8k16", Type(),
       {site(loc), constI32(loc, *abType == NVVM::MMATypes::bf16 ? 1 : 0),
        constI32(loc, *cKind), constI32(loc, *dKind), a, bSlot, cSlot, d});
  Value result = LLVM::UndefOp::create(b, loc, resultType);
  for (auto [i, type] : llvm::enumerate(resultType.getBody()))
    result =
        LLVM::InsertValueOp::create(b, loc, result, loadWord(loc, d, i, type),
                                    ArrayRef<int64_t>{int64_t(i)});
  op.getRes().replaceAllUsesWith(result);
  op.erase();
  return success();
}

LogicalResult KernelRewriter::rewriteShfl(NVVM::ShflOp op) {
  uint32_t mode = 0;
  switch (op.getKind()) {
  case NVVM::ShflKind::up:
    mode = 0;
    break;
  case NVVM::ShflKind::down:
    mode = 1;
    break;
  case NVVM::ShflKind::bfly:
    mode = 2;
    break;
  case NVVM::ShflKind::idx:
    mode = 3;
    break;
  }
  Location loc = op.getLoc();
  Value valid = slot(1);
  b.setInsertionPoint(op);
  Type valueType = op.getVal().getType();
  Value word = call(loc, "moe_gpuexec_shfl_sync", i32(),
                    {site(loc), constI32(loc, mode), op.getThreadMask(),
                     toWord(loc, op.getVal()), op.getOffset(),
                     op.getMaskAndClamp(), valid});
  Value value = fromWord(loc, word, valueType);
  Value result = value;
  if (op.getReturnValueAndIsValid()) {
    Value isValid = LLVM::TruncOp::create(
        b, loc, b.getI1Type(), LLVM::LoadOp::create(b, loc, i32(), valid));
    result = LLVM::UndefOp::create(b, loc, op.getRes().getType());
    result = LLVM::InsertValueOp::create(b, loc, result, value,
                                         ArrayRef<int64_t>{0});
    result = LLVM::InsertValueOp::create(b, loc, result, isValid,
                                         ArrayRef<int64_t>{1});
  }
  op.getRes().replaceAllUsesWith(result);
  op.erase();
  return success();
}

LogicalResult KernelRewriter::rewriteLdMatrix(NVVM::LdMatrixOp op) {
  if (op.getShape().getM() != 8 || op.getShape().getN() != 8 ||
      op.getEltType() != NVVM::LdStMatrixEltType::B16)
    return op.emitError("the GPU executor runs ldmatrix m8n8 b16 only");
  uint32_t num = op.getNum();
  if (num != 1 && num != 2 && num != 4)
    return op.emitError("ldmatrix loads 1, 2 or 4 matrices, not ") << num;
  Location loc = op.getLoc();
  Value out = slot(4);
  b.setInsertionPoint(op);
  bool trans = op.getLayout() == NVVM::MMALayout::col;
  call(loc, "moe_gpuexec_ldmatrix", Type(),
       {site(loc), op.getPtr(), constI32(loc, num), constI32(loc, trans), out});
  Type type = op.getRes().getType();
  Value result;
  if (auto structType = dyn_cast<LLVM::LLVMStructType>(type)) {
    result = LLVM::UndefOp::create(b, loc, structType);
    for (auto [i, elem] : llvm::enumerate(structType.getBody()))
      result = LLVM::InsertValueOp::create(b, loc, result,
                                           loadWord(loc, out, i, elem),
                                           ArrayRef<int64_t>{int64_t(i)});
  } else {
    result = loadWord(loc, out, 0, type);
  }
  op.getRes().replaceAllUsesWith(result);
  op.erase();
  return success();
}

LogicalResult KernelRewriter::rewrite(Operation *op) {
  Location loc = op->getLoc();
  StringRef name = op->getName().getStringRef();
  if (std::optional<uint32_t> which = specialRegister(name)) {
    b.setInsertionPoint(op);
    Value v =
        call(loc, "moe_gpuexec_sreg", i32(), {constI32(loc, int64_t(*which))});
    if (op->getResult(0).getType() != i32())
      return op->emitError("unexpected special-register type");
    op->getResult(0).replaceAllUsesWith(v);
    op->erase();
    return success();
  }
  if (isa<NVVM::Barrier0Op>(op)) {
    b.setInsertionPoint(op);
    call(loc, "moe_gpuexec_barrier", Type(), {site(loc)});
    op->erase();
    return success();
  }
  if (auto barrier = dyn_cast<NVVM::BarrierOp>(op)) {
    // Barrier 0 across the whole block (__syncthreads) only: named
    // barriers, thread counts and reductions are not modelled.
    std::optional<int64_t> id = 0;
    if (Value idValue = barrier.getBarrierId()) {
      APInt value;
      id = matchPattern(idValue, m_ConstantInt(&value))
               ? std::optional<int64_t>(value.getSExtValue())
               : std::nullopt;
    }
    if (id != 0 || barrier.getNumberOfThreads() || op->getNumResults())
      return op->emitError("the GPU executor runs barrier 0 across the "
                           "whole block only");
    b.setInsertionPoint(op);
    call(loc, "moe_gpuexec_barrier", Type(), {site(loc)});
    op->erase();
    return success();
  }
  if (auto mma = dyn_cast<NVVM::MmaOp>(op))
    return rewriteMma(mma);
  if (auto shfl = dyn_cast<NVVM::ShflOp>(op))
    return rewriteShfl(shfl);
  if (auto ldmatrix = dyn_cast<NVVM::LdMatrixOp>(op))
    return rewriteLdMatrix(ldmatrix);
  if (auto copy = dyn_cast<NVVM::CpAsyncOp>(op)) {
    b.setInsertionPoint(op);
    Value size = constI32(loc, copy.getSize());
    Value srcSize = copy.getCpSize() ? copy.getCpSize() : size;
    call(loc, "moe_gpuexec_cp_async", Type(),
         {copy.getDst(), copy.getSrc(), size, srcSize});
    op->erase();
    return success();
  }
  if (isa<NVVM::CpAsyncCommitGroupOp>(op)) {
    b.setInsertionPoint(op);
    call(loc, "moe_gpuexec_cp_async_commit", Type(), {});
    op->erase();
    return success();
  }
  if (auto wait = dyn_cast<NVVM::CpAsyncWaitGroupOp>(op)) {
    b.setInsertionPoint(op);
    call(loc, "moe_gpuexec_cp_async_wait", Type(),
         {constI32(loc, wait.getN())});
    op->erase();
    return success();
  }
  if (auto addressOf = dyn_cast<LLVM::AddressOfOp>(op)) {
    auto it = sharedOffsets.find(addressOf.getGlobalNameAttr().getAttr());
    if (it == sharedOffsets.end())
      return success();
    b.setInsertionPoint(op);
    Value base = call(loc, "moe_gpuexec_shared_memory", ptr(),
                      {constI64(loc, int64_t(staticSharedBytes))});
    Value at = LLVM::GEPOp::create(b, loc, ptr(), b.getI8Type(), base,
                                   ArrayRef<LLVM::GEPArg>{int32_t(it->second)});
    addressOf.getResult().replaceAllUsesWith(at);
    op->erase();
    return success();
  }
  if (auto trap = dyn_cast<LLVM::Trap>(op)) {
    b.setInsertionPoint(op);
    call(loc, "moe_gpuexec_trap", Type(), {});
    op->erase();
    return success();
  }
  if (isa<NVVM::NVVMDialect>(op->getDialect()))
    return op->emitError("the GPU executor does not model '") << name << "'";
  if (isa<LLVM::InlineAsmOp>(op))
    return op->emitError("the GPU executor cannot run inline PTX");
  if (auto intrinsic = dyn_cast<LLVM::CallIntrinsicOp>(op);
      intrinsic && intrinsic.getIntrin().starts_with("llvm.nvvm."))
    return op->emitError("the GPU executor does not model the intrinsic '")
           << intrinsic.getIntrin() << "'";
  return success();
}

/// Whether `address` is a slot of the function's own stack frame (an
/// alloca, through address computations): the executor gives each thread
/// its own stack, so such accesses cannot leave it unnoticed by the host.
static bool isStackSlot(Value address) {
  while (Operation *def = address.getDefiningOp()) {
    if (isa<LLVM::AllocaOp>(def))
      return true;
    if (auto gep = dyn_cast<LLVM::GEPOp>(def))
      address = gep.getBase();
    else if (auto cast = dyn_cast<LLVM::AddrSpaceCastOp>(def))
      address = cast.getArg();
    else
      return false;
  }
  return false;
}

void KernelRewriter::checkAccess(Operation *op, Value address, Value bytes,
                                 bool isStore) {
  if (isStackSlot(address))
    return;
  Location loc = op->getLoc();
  b.setInsertionPoint(op);
  // One declaration for every address space: generic pointers.
  if (cast<LLVM::LLVMPointerType>(address.getType()).getAddressSpace() != 0)
    address = LLVM::AddrSpaceCastOp::create(b, loc, ptr(), address);
  call(loc, "moe_gpuexec_check_access", Type(),
       {address, bytes, constI32(loc, isStore), site(loc)});
}

void KernelRewriter::checkAccess(Operation *op, Value address, Type type,
                                 bool isStore) {
  if (isStackSlot(address))
    return;
  DataLayout layout = DataLayout::closest(op);
  b.setInsertionPoint(op);
  checkAccess(op, address,
              constI64(op->getLoc(), int64_t(layout.getTypeSize(type))),
              isStore);
}

void KernelRewriter::checkAccess(Operation *op) {
  if (auto load = dyn_cast<LLVM::LoadOp>(op))
    return checkAccess(op, load.getAddr(), load.getType(), false);
  if (auto store = dyn_cast<LLVM::StoreOp>(op))
    return checkAccess(op, store.getAddr(), store.getValue().getType(), true);
  if (auto rmw = dyn_cast<LLVM::AtomicRMWOp>(op))
    return checkAccess(op, rmw.getPtr(), rmw.getVal().getType(), true);
  if (auto cmpxchg = dyn_cast<LLVM::AtomicCmpXchgOp>(op))
    return checkAccess(op, cmpxchg.getPtr(), cmpxchg.getVal().getType(), true);
  auto bytes = [&](Value len) -> Value {
    b.setInsertionPoint(op);
    if (len.getType() == i64())
      return len;
    return LLVM::ZExtOp::create(b, op->getLoc(), i64(), len);
  };
  if (auto copy = dyn_cast<LLVM::MemcpyOp>(op)) {
    Value len = bytes(copy.getLen());
    checkAccess(op, copy.getSrc(), len, false);
    return checkAccess(op, copy.getDst(), len, true);
  }
  if (auto move = dyn_cast<LLVM::MemmoveOp>(op)) {
    Value len = bytes(move.getLen());
    checkAccess(op, move.getSrc(), len, false);
    return checkAccess(op, move.getDst(), len, true);
  }
  if (auto set = dyn_cast<LLVM::MemsetOp>(op))
    return checkAccess(op, set.getDst(), bytes(set.getLen()), true);
}

LogicalResult KernelRewriter::run() {
  SmallVector<Operation *> ops;
  func.walk([&](Operation *op) {
    if (op != func.getOperation())
      ops.push_back(op);
  });
  for (Operation *op : ops)
    if (failed(rewrite(op)))
      return failure();
  if (checkMemory) {
    // After the rewrite, so that shared memory is addressed through the
    // executor's buffer and the operand slots of collectives are allocas.
    SmallVector<Operation *> accesses;
    func.walk([&](Operation *op) {
      if (isa<LLVM::LoadOp, LLVM::StoreOp, LLVM::AtomicRMWOp,
              LLVM::AtomicCmpXchgOp, LLVM::MemcpyOp, LLVM::MemmoveOp,
              LLVM::MemsetOp>(op))
        accesses.push_back(op);
    });
    for (Operation *op : accesses)
      checkAccess(op);
  }
  return success();
}

/// `__moe_gpuexec_entry_<kernel>(void **params)`: loads each argument from
/// cuLaunchKernel's parameter array (params[i] points to argument i, as
/// gpu-to-llvm packs them) and runs the kernel for one thread.
void buildEntry(LLVM::LLVMFuncOp kernel, ModuleOp module) {
  MLIRContext *ctx = kernel.getContext();
  OpBuilder b(ctx);
  b.setInsertionPointToEnd(module.getBody());
  Location loc = kernel.getLoc();
  auto ptr = LLVM::LLVMPointerType::get(ctx);
  auto entry = LLVM::LLVMFuncOp::create(
      b, loc, (kEntryPrefix + kernel.getName()).str(),
      LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx), {ptr}));
  Block *body = entry.addEntryBlock(b);
  b.setInsertionPointToStart(body);
  Value params = body->getArgument(0);
  SmallVector<Value> args;
  for (auto [i, type] : llvm::enumerate(kernel.getFunctionType().getParams())) {
    Value at = LLVM::GEPOp::create(b, loc, ptr, ptr, params,
                                   ArrayRef<LLVM::GEPArg>{int32_t(i)});
    Value argPtr = LLVM::LoadOp::create(b, loc, ptr, at);
    args.push_back(LLVM::LoadOp::create(b, loc, type, argPtr));
  }
  LLVM::CallOp::create(b, loc, kernel, args);
  LLVM::ReturnOp::create(b, loc, ValueRange{});
}

struct ConvertNVVMToGPUExecutorPass
    : moe::impl::ConvertNVVMToGPUExecutorBase<ConvertNVVMToGPUExecutorPass> {
  using Base::Base;
  void runOnOperation() override;
};

void ConvertNVVMToGPUExecutorPass::runOnOperation() {
  ModuleOp module = getOperation();
  MLIRContext *ctx = &getContext();

  // Every address space is the host's. Shared-memory globals are first laid
  // out in the per-block buffer, for each kernel the ones it uses (as ptxas
  // allocates a kernel's static shared memory): static ones one after
  // another, aligned; zero-sized ones (dynamic shared memory) after them.
  DataLayout layout(module);
  llvm::DenseMap<StringAttr, LLVM::GlobalOp> sharedGlobals;
  SmallVector<LLVM::GlobalOp> shared;
  for (auto global : module.getOps<LLVM::GlobalOp>())
    if (global.getAddrSpace() ==
        static_cast<unsigned>(NVVM::NVVMMemorySpace::Shared)) {
      sharedGlobals[global.getSymNameAttr()] = global;
      shared.push_back(global);
    }

  SmallVector<LLVM::LLVMFuncOp> kernels;
  unsigned nextSite = 0;
  for (auto func : llvm::to_vector(module.getOps<LLVM::LLVMFuncOp>())) {
    if (func.isExternal())
      continue;
    bool isKernel = func->hasAttr("nvvm.kernel") || func->hasAttr("gpu.kernel");
    if (isKernel)
      kernels.push_back(func);
    llvm::SetVector<LLVM::GlobalOp> used;
    func.walk([&](LLVM::AddressOfOp addressOf) {
      auto it = sharedGlobals.find(addressOf.getGlobalNameAttr().getAttr());
      if (it != sharedGlobals.end())
        used.insert(it->second);
    });
    if (!used.empty() && !isKernel) {
      // Its layout would have to agree with every calling kernel's.
      func.emitError("the GPU executor lays out shared memory per kernel; "
                     "a device function using it is not supported");
      return signalPassFailure();
    }
    llvm::DenseMap<StringAttr, uint64_t> sharedOffsets;
    uint64_t staticBytes = 0;
    for (LLVM::GlobalOp global : used) {
      uint64_t size = layout.getTypeSize(global.getGlobalType());
      if (size == 0)
        continue;
      uint64_t align =
          std::max<uint64_t>(global.getAlignment().value_or(0), 16);
      staticBytes = llvm::alignTo(staticBytes, align);
      sharedOffsets[global.getSymNameAttr()] = staticBytes;
      staticBytes += size;
    }
    for (LLVM::GlobalOp global : used)
      if (layout.getTypeSize(global.getGlobalType()) == 0)
        sharedOffsets[global.getSymNameAttr()] = llvm::alignTo(staticBytes, 16);
    KernelRewriter rewriter(func, module, nextSite, staticBytes, sharedOffsets);
    rewriter.checkMemory = checkMemory;
    if (failed(rewriter.run()))
      return signalPassFailure();
  }
  for (LLVM::GlobalOp global : shared) {
    if (!SymbolTable::symbolKnownUseEmpty(global, module)) {
      global.emitError("shared memory used other than through its address");
      return signalPassFailure();
    }
    global.erase();
  }

  AttrTypeReplacer replacer;
  replacer.addReplacement(
      [&](LLVM::LLVMPointerType type) -> std::optional<Type> {
        if (type.getAddressSpace() == 0)
          return std::nullopt;
        return LLVM::LLVMPointerType::get(ctx);
      });
  replacer.recursivelyReplaceElementsIn(module, /*replaceAttrs=*/true,
                                        /*replaceLocs=*/false,
                                        /*replaceTypes=*/true);
  for (auto global : module.getOps<LLVM::GlobalOp>())
    global.setAddrSpace(0);
  module.walk([](LLVM::AddrSpaceCastOp cast) {
    cast.getResult().replaceAllUsesWith(cast.getArg());
    cast.erase();
  });

  for (LLVM::LLVMFuncOp kernel : kernels) {
    // Device-side attributes mean nothing to the host's code generator.
    for (NamedAttribute attr : llvm::to_vector(kernel->getDiscardableAttrs()))
      if (attr.getName().strref().starts_with("nvvm.") ||
          attr.getName().strref().starts_with("gpu."))
        kernel->removeDiscardableAttr(attr.getName());
    kernel.setLinkage(LLVM::Linkage::Internal);
    buildEntry(kernel, module);
  }
}

} // namespace
