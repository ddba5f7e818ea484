//===- Compiler.cpp - moe-mlir ahead-of-time compilation --------------------===//

#include "moe-mlir/Compiler/Compiler.h"

#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/ObjCopy/CommonConfig.h"
#include "llvm/ObjCopy/ELF/ELFConfig.h"
#include "llvm/ObjCopy/ELF/ELFObjcopy.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"

using namespace mlir;

/// Runs the pipeline `build` adds, with the command line's pass-manager
/// options and timing.
static LogicalResult runPipeline(ModuleOp module, TimingScope &timing,
                                 function_ref<void(OpPassManager &)> build) {
  PassManager pm(module->getName());
  if (failed(applyPassManagerCLOptions(pm)))
    return failure();
  pm.enableTiming(timing);
  build(pm);
  return pm.run(module);
}

LogicalResult moe::lowerToLLVMDialect(ModuleOp module,
                                      const CPUPipelineOptions &options,
                                      TimingScope &timing) {
  return runPipeline(module, timing, [&](OpPassManager &pm) {
    buildCPULoweringPipeline(pm, options);
  });
}

LogicalResult moe::lowerToLLVMDialect(ModuleOp module,
                                      const CUDAPipelineOptions &options,
                                      TimingScope &timing) {
  return runPipeline(module, timing, [&](OpPassManager &pm) {
    buildCUDALoweringPipeline(pm, options);
  });
}

SmallVector<std::pair<std::string, std::string>>
moe::collectPTX(ModuleOp module) {
  SmallVector<std::pair<std::string, std::string>> result;
  module.walk([&](gpu::BinaryOp binary) {
    for (Attribute attr : binary.getObjects()) {
      auto object = dyn_cast<gpu::ObjectAttr>(attr);
      if (object && object.getFormat() == gpu::CompilationTarget::Assembly)
        result.emplace_back(binary.getSymName().str(),
                            object.getObject().getValue().str());
    }
  });
  return result;
}

static bool hasLibdevice(StringRef root) {
  SmallString<128> libdevice(root);
  llvm::sys::path::append(libdevice, "nvvm", "libdevice", "libdevice.10.bc");
  return llvm::sys::fs::exists(libdevice);
}

std::string moe::findCUDAToolkit() {
  SmallVector<std::string, 5> candidates;
  for (const char *var : {"CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"})
    if (const char *value = std::getenv(var); value && *value)
      candidates.push_back(value);
  if (auto ptxas = llvm::sys::findProgramByName("ptxas")) {
    SmallString<128> real;
    if (!llvm::sys::fs::real_path(*ptxas, real))
      candidates.push_back(
          llvm::sys::path::parent_path(llvm::sys::path::parent_path(real))
              .str());
  }
  candidates.push_back("/usr/local/cuda");
  for (const std::string &root : candidates)
    if (hasLibdevice(root))
      return root;
  return "";
}

std::string moe::findCUDATool(StringRef tool, StringRef toolkit) {
  if (!toolkit.empty()) {
    SmallString<128> path(toolkit);
    llvm::sys::path::append(path, "bin", tool);
    if (llvm::sys::fs::can_execute(path))
      return path.str().str();
  }
  if (auto path = llvm::sys::findProgramByName(tool))
    return *path;
  SmallVector<StringRef, 2> dirs;
  std::string home;
  if (const char *cudaHome = std::getenv("CUDA_HOME")) {
    home = std::string(cudaHome) + "/bin";
    dirs.push_back(home);
  }
  dirs.push_back("/usr/local/cuda/bin");
  if (auto path = llvm::sys::findProgramByName(tool, dirs))
    return *path;
  return "";
}

FailureOr<std::unique_ptr<llvm::TargetMachine>>
moe::createTargetMachine(const CompileOptions &options, std::string &error) {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return failure();

  std::string cpu = options.cpu;
  std::string features = options.features;
  if (cpu == "native") {
    cpu = llvm::sys::getHostCPUName().str();
    if (features.empty()) {
      llvm::SubtargetFeatures hostFeatures;
      for (const auto &[name, enabled] : llvm::sys::getHostCPUFeatures())
        hostFeatures.AddFeature(name, enabled);
      features = hostFeatures.getString();
    }
  }
  llvm::TargetOptions targetOptions;
  auto codeGenLevel = options.optLevel >= 3   ? llvm::CodeGenOptLevel::Aggressive
                      : options.optLevel == 2 ? llvm::CodeGenOptLevel::Default
                      : options.optLevel == 1 ? llvm::CodeGenOptLevel::Less
                                              : llvm::CodeGenOptLevel::None;
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, cpu, features, targetOptions, llvm::Reloc::PIC_, std::nullopt,
      codeGenLevel));
  if (!machine) {
    error = "cannot create a target machine for " + triple.str() + " (cpu " +
            cpu + ")";
    return failure();
  }
  return machine;
}

std::unique_ptr<llvm::Module>
moe::translateAndOptimize(ModuleOp module, llvm::LLVMContext &context,
                          llvm::TargetMachine &machine, unsigned optLevel,
                          TimingScope &timing) {
  DialectRegistry registry;
  registerAllToLLVMIRTranslations(registry);
  module->getContext()->appendDialectRegistry(registry);

  std::unique_ptr<llvm::Module> llvmModule;
  {
    TimingScope scope = timing.nest("Translate to LLVM IR");
    llvmModule = translateModuleToLLVMIR(module, context);
    if (!llvmModule) {
      module.emitError("translation to LLVM IR failed");
      return nullptr;
    }
  }
  llvmModule->setDataLayout(machine.createDataLayout());
  llvmModule->setTargetTriple(machine.getTargetTriple());

  TimingScope scope = timing.nest("LLVM optimization");
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder builder(&machine);
  builder.registerModuleAnalyses(mam);
  builder.registerCGSCCAnalyses(cgam);
  builder.registerFunctionAnalyses(fam);
  builder.registerLoopAnalyses(lam);
  builder.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::OptimizationLevel level = optLevel >= 3   ? llvm::OptimizationLevel::O3
                                  : optLevel == 2 ? llvm::OptimizationLevel::O2
                                  : optLevel == 1 ? llvm::OptimizationLevel::O1
                                                  : llvm::OptimizationLevel::O0;
  llvm::ModulePassManager mpm =
      level == llvm::OptimizationLevel::O0
          ? builder.buildO0DefaultPipeline(level)
          : builder.buildPerModuleDefaultPipeline(level);
  mpm.run(*llvmModule, mam);
  return llvmModule;
}

LogicalResult moe::emitObjectFile(llvm::Module &module,
                                  llvm::TargetMachine &machine, StringRef path,
                                  std::string &error) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec, llvm::sys::fs::OF_None);
  if (ec) {
    error = "cannot write '" + path.str() + "': " + ec.message();
    return failure();
  }
  llvm::legacy::PassManager pm;
  if (machine.addPassesToEmitFile(pm, os, nullptr,
                                  llvm::CodeGenFileType::ObjectFile)) {
    error = "the target cannot emit object files";
    return failure();
  }
  pm.run(module);
  os.flush();
  if (os.has_error()) {
    error = "error writing '" + path.str() + "'";
    return failure();
  }
  return success();
}

std::string moe::findDefaultLinker() {
  for (StringRef name : {"clang-22", "clang", "cc", "gcc"}) {
    if (auto path = llvm::sys::findProgramByName(name))
      return *path;
    if (auto path = llvm::sys::findProgramByName(name, {"/usr/lib/llvm-22/bin"}))
      return *path;
  }
  return "";
}

namespace {
std::string linkerDriver(const moe::CompileOptions &options, std::string &error) {
  std::string linker =
      options.linker.empty() ? moe::findDefaultLinker() : options.linker;
  if (linker.empty())
    error = "no linker driver found (looked for clang-22, clang, cc, gcc); "
            "pass --linker=PATH";
  return linker;
}

LogicalResult runDriver(StringRef driver, ArrayRef<StringRef> args,
                        StringRef what, bool verbose, std::string &error) {
  if (verbose) {
    for (StringRef a : args)
      llvm::errs() << a << " ";
    llvm::errs() << "\n";
  }
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(driver, args, std::nullopt, {}, 0, 0,
                                     &message);
  if (rc != 0) {
    error = what.str() + " failed (" + driver.str() + " exited with " +
            std::to_string(rc) + (message.empty() ? "" : ": " + message) + ")";
    return failure();
  }
  return success();
}
} // namespace

FailureOr<moe::ExternalConstants>
moe::externalizeLargeConstants(ModuleOp module, StringRef blobPath,
                               uint64_t minBytes, std::string &error) {
  ExternalConstants result;
  result.blobPath = blobPath.str();
  std::error_code ec;
  llvm::raw_fd_ostream blob(blobPath, ec, llvm::sys::fs::OF_None);
  if (ec) {
    error = "cannot write '" + blobPath.str() + "': " + ec.message();
    return failure();
  }
  // Only the host module's globals: kernels' globals belong to their own
  // binaries.
  for (auto global : module.getOps<LLVM::GlobalOp>()) {
    auto dense = dyn_cast_or_null<DenseElementsAttr>(global.getValueOrNull());
    if (!global.getConstant() || !dense || dense.isSplat() ||
        global.getInitializerRegion().getBlocks().size() != 0)
      continue;
    // Byte-sized elements only: the raw data is then the memory image.
    Type elementType = dense.getElementType();
    if (!elementType.isIntOrFloat() ||
        elementType.getIntOrFloatBitWidth() % 8 != 0)
      continue;
    ArrayRef<char> bytes = dense.getRawData();
    uint64_t expected = uint64_t(dense.getNumElements()) *
                        (elementType.getIntOrFloatBitWidth() / 8);
    if (bytes.size() != expected || bytes.size() < minBytes)
      continue;
    uint64_t alignment = std::max<uint64_t>(global.getAlignment().value_or(16), 16);
    uint64_t offset = llvm::alignTo(result.totalBytes, alignment);
    blob.write_zeros(offset - result.totalBytes);
    blob.write(bytes.data(), bytes.size());
    result.totalBytes = offset + bytes.size();
    result.entries.push_back(
        {global.getSymName().str(), offset, bytes.size(), alignment});
    global.removeValueAttr();
    global.setLinkage(LLVM::Linkage::External);
    global.setVisibility_(LLVM::Visibility::Hidden);
    global.setDsoLocal(true);
  }
  blob.close();
  if (blob.has_error()) {
    error = "error writing '" + blobPath.str() + "'";
    blob.clear_error();
    return failure();
  }
  return result;
}

LogicalResult moe::assembleConstants(const ExternalConstants &constants,
                                     StringRef objectPath,
                                     const CompileOptions &options,
                                     std::string &error) {
  // The blob becomes the one section of a relocatable object (LLVM's
  // objcopy library, as `llvm-objcopy -I binary`: the bytes are written
  // once, never through the assembler), and every constant a hidden symbol
  // at its offset in it.
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> blob =
      llvm::MemoryBuffer::getFile(constants.blobPath, /*IsText=*/false,
                                  /*RequiresNullTerminator=*/false);
  if (!blob) {
    error = "cannot read '" + constants.blobPath +
            "': " + blob.getError().message();
    return failure();
  }
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  if (!triple.isOSBinFormatELF() || triple.getArch() != llvm::Triple::x86_64) {
    error = "constants outside the LLVM module need an x86-64 ELF target, "
            "not " + triple.str() + "; pass --inline-constants";
    return failure();
  }
  StringRef section = ".rodata.moe_constants";
  llvm::objcopy::CommonConfig config;
  config.InputFormat = llvm::objcopy::FileFormat::Binary;
  config.OutputFormat = llvm::objcopy::FileFormat::ELF;
  config.OutputArch = llvm::objcopy::MachineInfo(llvm::ELF::EM_X86_64,
                                                 /*Is64=*/true,
                                                 /*IsLittle=*/true);
  config.SectionsToRename.try_emplace(
      ".data", llvm::objcopy::SectionRename{
                   ".data", section,
                   llvm::objcopy::SectionFlag(
                       llvm::objcopy::SecAlloc | llvm::objcopy::SecLoad |
                       llvm::objcopy::SecReadonly | llvm::objcopy::SecData |
                       llvm::objcopy::SecContents)});
  uint64_t alignment = 16;
  for (const ExternalConstants::Entry &entry : constants.entries)
    alignment = std::max(alignment, entry.alignment);
  config.SetSectionAlignment[section] = alignment;
  config.SetSectionAlignment[".data"] = alignment;
  // The generated _binary_* symbols would clash between modules.
  llvm::Expected<llvm::objcopy::NameOrPattern> generated =
      llvm::objcopy::NameOrPattern::create(
          "^_binary_", llvm::objcopy::MatchStyle::Regex,
          [](llvm::Error err) { return err; });
  if (!generated) {
    error = llvm::toString(generated.takeError());
    return failure();
  }
  if (llvm::Error err = config.SymbolsToRemove.addMatcher(std::move(generated))) {
    error = llvm::toString(std::move(err));
    return failure();
  }
  for (const ExternalConstants::Entry &entry : constants.entries) {
    llvm::objcopy::NewSymbolInfo symbol;
    symbol.SymbolName = entry.symbol;
    symbol.SectionName = ".data"; // renamed after the symbols are added
    symbol.Value = entry.offset;
    symbol.Flags = {llvm::objcopy::SymbolFlag::Global,
                    llvm::objcopy::SymbolFlag::Hidden,
                    llvm::objcopy::SymbolFlag::Object};
    config.SymbolsToAdd.push_back(symbol);
  }
  // No executable stack (what an assembler's .note.GNU-stack says).
  config.AddSection.emplace_back(
      ".note.GNU-stack", llvm::MemoryBuffer::getMemBuffer("", "note"));
  llvm::objcopy::ELFConfig elfConfig;
  std::error_code ec;
  llvm::raw_fd_ostream os(objectPath, ec, llvm::sys::fs::OF_None);
  if (ec) {
    error = "cannot write '" + objectPath.str() + "': " + ec.message();
    return failure();
  }
  if (llvm::Error err = llvm::objcopy::elf::executeObjcopyOnRawBinary(
          config, elfConfig, **blob, os)) {
    error = "writing the constants object failed: " +
            llvm::toString(std::move(err));
    return failure();
  }
  os.close();
  if (os.has_error()) {
    error = "error writing '" + objectPath.str() + "'";
    os.clear_error();
    return failure();
  }
  (void)options;
  return success();
}

LogicalResult moe::linkSharedObject(ArrayRef<std::string> objectPaths,
                                    StringRef outputPath,
                                    const CompileOptions &options,
                                    std::string &error) {
  std::string linker = linkerDriver(options, error);
  if (linker.empty())
    return failure();
  SmallString<256> runtimeLib(options.runtimeLibDir);
  llvm::sys::path::append(runtimeLib, "libmoe_runtime.so");
  if (!llvm::sys::fs::exists(runtimeLib)) {
    error = "runtime library '" + runtimeLib.str().str() +
            "' not found; pass --runtime-dir=DIR";
    return failure();
  }
  std::string rpath = "-Wl,-rpath," + options.runtimeLibDir;
  std::string libDir = "-L" + options.runtimeLibDir;
  SmallVector<StringRef> args = {linker, "-shared", "-o", outputPath};
  for (const std::string &object : objectPaths)
    args.push_back(object);
  args.append({libDir, "-lmoe_runtime", rpath, "-lm", "-Wl,--no-undefined"});
  return runDriver(linker, args, "linking '" + outputPath.str() + "'",
                   options.verbose, error);
}
