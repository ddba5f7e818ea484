//===- Compiler.cpp - moe-mlir ahead-of-time compilation --------------------===//

#include "moe-mlir/Compiler/Compiler.h"

#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
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

LogicalResult moe::linkSharedObject(StringRef objectPath, StringRef outputPath,
                                    const CompileOptions &options,
                                    std::string &error) {
  std::string linker =
      options.linker.empty() ? findDefaultLinker() : options.linker;
  if (linker.empty()) {
    error = "no linker driver found (looked for clang-22, clang, cc, gcc); "
            "pass --linker=PATH";
    return failure();
  }
  SmallString<256> runtimeLib(options.runtimeLibDir);
  llvm::sys::path::append(runtimeLib, "libmoe_runtime.so");
  if (!llvm::sys::fs::exists(runtimeLib)) {
    error = "runtime library '" + runtimeLib.str().str() +
            "' not found; pass --runtime-dir=DIR";
    return failure();
  }
  std::string rpath = "-Wl,-rpath," + options.runtimeLibDir;
  std::string libDir = "-L" + options.runtimeLibDir;
  SmallVector<StringRef> args = {linker,    "-shared", "-o",
                                 outputPath, objectPath, libDir,
                                 "-lmoe_runtime", rpath, "-lm",
                                 "-Wl,--no-undefined"};
  if (options.verbose) {
    for (StringRef a : args)
      llvm::errs() << a << " ";
    llvm::errs() << "\n";
  }
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(linker, args, std::nullopt, {}, 0, 0,
                                     &message);
  if (rc != 0) {
    error = "linking '" + outputPath.str() + "' failed (" + linker +
            " exited with " + std::to_string(rc) +
            (message.empty() ? "" : ": " + message) + ")";
    return failure();
  }
  return success();
}
