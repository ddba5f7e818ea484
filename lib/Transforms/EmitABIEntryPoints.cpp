//===- EmitABIEntryPoints.cpp - manifest accessor and entry points ----------===//
//
// The runtime calls every function through one signature,
// `int32_t entry(void **args)`, so that it needs no per-arity trampolines
// and no libffi. This pass emits those wrappers around the MLIR C
// interfaces, the manifest accessor, and hides everything else so that LLVM
// may inline and drop it.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "llvm/Support/JSON.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEEMITABIENTRYPOINTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct MoEEmitABIEntryPointsPass
    : moe::impl::MoEEmitABIEntryPointsBase<MoEEmitABIEntryPointsPass> {
  void runOnOperation() override;
};

void MoEEmitABIEntryPointsPass::runOnOperation() {
  ModuleOp module = getOperation();
  auto manifestAttr = module->getAttrOfType<StringAttr>("moe.manifest");
  if (!manifestAttr) {
    module.emitError("no 'moe.manifest' attribute: run -moe-export-abi on the "
                     "tensor-level module first");
    return signalPassFailure();
  }
  llvm::Expected<llvm::json::Value> manifest =
      llvm::json::parse(manifestAttr.getValue());
  if (!manifest) {
    module.emitError() << "malformed 'moe.manifest': "
                       << llvm::toString(manifest.takeError());
    return signalPassFailure();
  }

  MLIRContext *ctx = &getContext();
  OpBuilder b(ctx);
  b.setInsertionPointToEnd(module.getBody());
  Location loc = module.getLoc();
  auto ptrType = LLVM::LLVMPointerType::get(ctx);
  auto i32 = b.getI32Type();

  // const char *moe_module_manifest(void)
  std::string text = manifestAttr.getValue().str();
  text.push_back('\0');
  auto textType = LLVM::LLVMArrayType::get(b.getI8Type(), text.size());
  LLVM::GlobalOp::create(b, loc, textType, /*isConstant=*/true,
                         LLVM::Linkage::Internal, "moe_manifest_text",
                         b.getStringAttr(text));
  auto accessor = LLVM::LLVMFuncOp::create(
      b, loc, "moe_module_manifest", LLVM::LLVMFunctionType::get(ptrType, {}));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(accessor.addEntryBlock(b));
    Value address =
        LLVM::AddressOfOp::create(b, loc, ptrType, "moe_manifest_text");
    LLVM::ReturnOp::create(b, loc, address);
  }

  // The attribute comes from -moe-export-abi, but IR can be written by hand:
  // check the fields used here rather than trusting them.
  auto malformed = [&](const Twine &what) {
    module.emitError() << "malformed 'moe.manifest': " << what;
    signalPassFailure();
  };
  const llvm::json::Object *root = manifest->getAsObject();
  const llvm::json::Array *functions =
      root ? root->getArray("functions") : nullptr;
  if (!functions)
    return malformed("no 'functions' array");

  DenseSet<StringRef> exported = {"moe_module_manifest"};
  for (const llvm::json::Value &fn : *functions) {
    const llvm::json::Object *obj = fn.getAsObject();
    std::optional<StringRef> name = obj ? obj->getString("name") : std::nullopt;
    std::optional<StringRef> entryName =
        obj ? obj->getString("entry") : std::nullopt;
    const llvm::json::Array *inputs = obj ? obj->getArray("inputs") : nullptr;
    const llvm::json::Array *outputs = obj ? obj->getArray("outputs") : nullptr;
    if (!name || !entryName || !inputs || !outputs)
      return malformed("a function needs 'name', 'entry', 'inputs' and "
                       "'outputs'");
    size_t numArgs = inputs->size() + outputs->size();
    std::string cifaceName = ("_mlir_ciface_" + *name).str();
    auto ciface = module.lookupSymbol<LLVM::LLVMFuncOp>(cifaceName);
    if (!ciface) {
      module.emitError() << "missing C interface '" << cifaceName
                         << "' for manifest function '" << *name << "'";
      return signalPassFailure();
    }
    if (ciface.getNumArguments() != numArgs ||
        !isa<LLVM::LLVMVoidType>(ciface.getFunctionType().getReturnType())) {
      ciface.emitError() << "expected " << numArgs
                         << " descriptor-pointer arguments (inputs, then "
                            "outputs) and no results; were the results "
                            "turned into out-parameters?";
      return signalPassFailure();
    }

    // int32_t moe_entry_f(void **args)
    auto entry = LLVM::LLVMFuncOp::create(
        b, loc, *entryName, LLVM::LLVMFunctionType::get(i32, {ptrType}));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(entry.addEntryBlock(b));
    Value args = entry.getArgument(0);
    SmallVector<Value> descriptors;
    for (size_t i = 0; i < numArgs; ++i) {
      Value slot = LLVM::GEPOp::create(
          b, loc, ptrType, ptrType, args,
          ArrayRef<LLVM::GEPArg>{static_cast<int32_t>(i)});
      descriptors.push_back(LLVM::LoadOp::create(b, loc, ptrType, slot));
    }
    LLVM::CallOp::create(b, loc, ciface, descriptors);
    Value ok = LLVM::ConstantOp::create(b, loc, i32, b.getI32IntegerAttr(0));
    LLVM::ReturnOp::create(b, loc, ok);
    exported.insert(entry.getSymName());
  }

  // Only the ABI symbols stay visible.
  for (auto func : module.getOps<LLVM::LLVMFuncOp>())
    if (!func.isExternal() && !exported.contains(func.getSymName()))
      func.setLinkage(LLVM::Linkage::Internal);
  module->removeAttr("moe.manifest");
}

} // namespace
