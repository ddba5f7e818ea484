//===- MoEToLLVM.cpp - moe runtime ops to the LLVM dialect ------------------===//
//
// moe.parallel_call becomes
//
//   ctx = alloca {captures...}          (inside stacksave/stackrestore)
//   store captures -> ctx
//   moe_rt_parallel_for(count, @__moe_trampoline_<callee>, ctx)
//
// where the trampoline unpacks the context into the callee's lowered
// signature (memref descriptors flattened field by field, as func-to-llvm
// passes them) and appends (begin, end).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/MoEToLLVM.h"

#include "MoE/IR/MoEDialect.h"
#include "MoE/IR/MoEOps.h"
#include "mlir/Conversion/ConvertToLLVM/ToLLVMInterface.h"
#include "mlir/Conversion/LLVMCommon/Pattern.h"
#include "mlir/Conversion/LLVMCommon/TypeConverter.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/BuiltinOps.h"

using namespace mlir;
using namespace mlir::moe;

namespace {

constexpr StringLiteral kParallelFor = "moe_rt_parallel_for";

/// Appends the scalar leaves of `value` (recursing into structs and arrays)
/// to `leaves`, in memory order: the order func-to-llvm expands a memref
/// descriptor argument into.
void flattenInto(OpBuilder &b, Location loc, Value value,
                 SmallVectorImpl<Value> &leaves) {
  Type type = value.getType();
  if (auto structType = dyn_cast<LLVM::LLVMStructType>(type)) {
    for (size_t i = 0; i < structType.getBody().size(); ++i)
      flattenInto(b, loc,
                  LLVM::ExtractValueOp::create(b, loc, value,
                                               ArrayRef<int64_t>{int64_t(i)}),
                  leaves);
    return;
  }
  if (auto arrayType = dyn_cast<LLVM::LLVMArrayType>(type)) {
    for (uint64_t i = 0; i < arrayType.getNumElements(); ++i)
      flattenInto(b, loc,
                  LLVM::ExtractValueOp::create(b, loc, value,
                                               ArrayRef<int64_t>{int64_t(i)}),
                  leaves);
    return;
  }
  leaves.push_back(value);
}

/// `void __moe_trampoline_<callee>(ptr ctx, i64 begin, i64 end)`.
LLVM::LLVMFuncOp getOrCreateTrampoline(OpBuilder &b, ModuleOp module,
                                       StringRef callee,
                                       LLVM::LLVMStructType contextType) {
  std::string name = ("__moe_trampoline_" + callee).str();
  if (auto existing = module.lookupSymbol<LLVM::LLVMFuncOp>(name))
    return existing;
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  auto ptr = LLVM::LLVMPointerType::get(ctx);
  auto i64 = IntegerType::get(ctx, 64);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(module.getBody());
  auto trampoline = LLVM::LLVMFuncOp::create(
      b, loc, name,
      LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx),
                                  {ptr, i64, i64}),
      LLVM::Linkage::Internal);
  Block *body = trampoline.addEntryBlock(b);
  b.setInsertionPointToStart(body);
  Value context = LLVM::LoadOp::create(b, loc, contextType, body->getArgument(0));
  SmallVector<Value> args;
  flattenInto(b, loc, context, args);
  args.append({body->getArgument(1), body->getArgument(2)});
  LLVM::CallOp::create(b, loc, TypeRange{}, SymbolRefAttr::get(ctx, callee),
                       args);
  LLVM::ReturnOp::create(b, loc, ValueRange{});
  return trampoline;
}

struct ParallelCallOpLowering : ConvertOpToLLVMPattern<ParallelCallOp> {
  using ConvertOpToLLVMPattern::ConvertOpToLLVMPattern;

  LogicalResult
  matchAndRewrite(ParallelCallOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    auto module = op->getParentOfType<ModuleOp>();
    Location loc = op.getLoc();
    MLIRContext *ctx = op.getContext();
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    auto i64 = rewriter.getI64Type();

    SmallVector<Type> fields;
    for (Value capture : adaptor.getCaptures())
      fields.push_back(capture.getType());
    auto contextType = LLVM::LLVMStructType::getLiteral(ctx, fields);
    LLVM::LLVMFuncOp trampoline =
        getOrCreateTrampoline(rewriter, module, op.getCallee(), contextType);

    if (!module.lookupSymbol<LLVM::LLVMFuncOp>(kParallelFor)) {
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(module.getBody());
      LLVM::LLVMFuncOp::create(
          rewriter, loc, kParallelFor,
          LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx),
                                      {i64, ptr, ptr}));
    }

    // The call may sit in a loop: scope the context's stack slot to it.
    Value stack = LLVM::StackSaveOp::create(rewriter, loc, ptr);
    Value one = LLVM::ConstantOp::create(rewriter, loc, i64,
                                         rewriter.getI64IntegerAttr(1));
    Value context =
        LLVM::AllocaOp::create(rewriter, loc, ptr, contextType, one);
    Value packed = LLVM::PoisonOp::create(rewriter, loc, contextType);
    for (auto [i, capture] : llvm::enumerate(adaptor.getCaptures()))
      packed = LLVM::InsertValueOp::create(rewriter, loc, packed, capture,
                                           ArrayRef<int64_t>{int64_t(i)});
    LLVM::StoreOp::create(rewriter, loc, packed, context);
    Value body = LLVM::AddressOfOp::create(rewriter, loc, ptr,
                                           trampoline.getSymName());
    LLVM::CallOp::create(rewriter, loc, TypeRange{},
                         SymbolRefAttr::get(ctx, kParallelFor),
                         ValueRange{adaptor.getCount(), body, context});
    LLVM::StackRestoreOp::create(rewriter, loc, stack);
    rewriter.eraseOp(op);
    return success();
  }
};

struct MoEToLLVMInterface : ConvertToLLVMPatternInterface {
  using ConvertToLLVMPatternInterface::ConvertToLLVMPatternInterface;

  void populateConvertToLLVMConversionPatterns(
      ConversionTarget &target, LLVMTypeConverter &converter,
      RewritePatternSet &patterns) const final {
    populateMoEToLLVMConversionPatterns(converter, patterns);
  }
};

} // namespace

void mlir::moe::populateMoEToLLVMConversionPatterns(
    LLVMTypeConverter &converter, RewritePatternSet &patterns) {
  patterns.add<ParallelCallOpLowering>(converter);
}

void mlir::moe::registerConvertMoEToLLVMInterface(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *, MoEDialect *dialect) {
    dialect->addInterfaces<MoEToLLVMInterface>();
  });
}
