//===- Compiler.cpp - moe-mlir ahead-of-time compilation --------------------===//

#include "moe-mlir/Compiler/Compiler.h"

#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/BinaryFormat/ELF.h"
#include "llvm/Bitcode/BitcodeReader.h"
#include "llvm/Bitcode/BitcodeWriter.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/EndianStream.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ThreadPool.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"
#include "llvm/Transforms/Utils/SplitModule.h"

#include <numeric>

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
  // Constructors (a cuda module's image registration) in .init_array, as
  // clang emits them: GNU ld moves .ctors there, lld leaves them in .ctors,
  // which glibc does not run.
  targetOptions.UseInitArray = true;
  auto codeGenLevel = options.optLevel >= 3   ? llvm::CodeGenOptLevel::Aggressive
                      : options.optLevel == 2 ? llvm::CodeGenOptLevel::Default
                      : options.optLevel == 1 ? llvm::CodeGenOptLevel::Less
                                              : llvm::CodeGenOptLevel::None;
  // x86-64's medium code model: code and small data within 2 GB of each
  // other, and globals of kLargeConstantBytes or more (the weights) in large
  // sections (.lrodata, laid out after everything else) addressed with 64
  // bits, so that a model's weights may pass 2 GB. With the small model a
  // real-size checkpoint (e.g. one Qwen3-30B-A3B layer, 2.5 GB) fails to
  // link with truncated relocations.
  std::optional<llvm::CodeModel::Model> codeModel;
  if (triple.getArch() == llvm::Triple::x86_64 && triple.isOSBinFormatELF())
    codeModel = llvm::CodeModel::Medium;
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, cpu, features, targetOptions, llvm::Reloc::PIC_, codeModel,
      codeGenLevel));
  if (!machine) {
    error = "cannot create a target machine for " + triple.str() + " (cpu " +
            cpu + ")";
    return failure();
  }
  if (codeModel)
    machine->setLargeDataThreshold(kLargeConstantBytes - 1);
  return machine;
}

bool moe::targetHasFeature(const llvm::TargetMachine &machine,
                           StringRef feature) {
  return machine.getMCSubtargetInfo()->checkFeatures(("+" + feature).str());
}

std::unique_ptr<llvm::Module>
moe::translateAndOptimize(ModuleOp module, llvm::LLVMContext &context,
                          llvm::TargetMachine &machine, unsigned optLevel,
                          TimingScope &timing, bool optimize) {
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
  if (!optimize)
    return llvmModule;
  TimingScope scope = timing.nest("LLVM optimization");
  optimizeModule(*llvmModule, machine, optLevel);
  return llvmModule;
}

void moe::optimizeModule(llvm::Module &module, llvm::TargetMachine &machine,
                         unsigned optLevel) {
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
  mpm.run(module, mam);
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

LogicalResult moe::optimizeAndEmitObjects(std::unique_ptr<llvm::Module> module,
                                          const CompileOptions &options,
                                          unsigned optLevel, unsigned threads,
                                          ArrayRef<std::string> paths,
                                          std::string &error) {
  unsigned parts = paths.size();
  assert(threads >= 1 && parts >= threads && "at least a part per thread");
  // Each part goes through bitcode into a context of its own.
  SmallVector<SmallVector<char, 0>> bitcode;
  llvm::SplitModule(*module, parts, [&](std::unique_ptr<llvm::Module> part) {
    llvm::raw_svector_ostream os(bitcode.emplace_back());
    llvm::WriteBitcodeToFile(*part, os);
  });
  module.reset();
  // The largest parts first: the entry function (the model's glue, one
  // function that cannot be split) takes a thread while the others share
  // the kernels.
  SmallVector<unsigned> order(bitcode.size());
  std::iota(order.begin(), order.end(), 0);
  llvm::stable_sort(order, [&](unsigned a, unsigned b) {
    return bitcode[a].size() > bitcode[b].size();
  });
  // An LLVMContext and a TargetMachine serve one thread at a time: each
  // part has its own, the machines made here (createTargetMachine
  // initialises LLVM's target registry).
  SmallVector<std::unique_ptr<llvm::TargetMachine>> machines;
  for (size_t i = 0; i < bitcode.size(); ++i) {
    FailureOr<std::unique_ptr<llvm::TargetMachine>> machine =
        createTargetMachine(options, error);
    if (failed(machine))
      return failure();
    machines.push_back(std::move(*machine));
  }
  // LLVM's pool runs the tasks in the order given.
  SmallVector<std::string> errors(bitcode.size());
  llvm::DefaultThreadPool pool(llvm::hardware_concurrency(threads));
  for (unsigned i : order)
    pool.async([&, i] {
      llvm::TargetMachine &machine = *machines[i];
      llvm::LLVMContext context;
      llvm::Expected<std::unique_ptr<llvm::Module>> part =
          llvm::parseBitcodeFile(
              llvm::MemoryBufferRef(
                  StringRef(bitcode[i].data(), bitcode[i].size()), "part"),
              context);
      if (!part) {
        errors[i] = llvm::toString(part.takeError());
        return;
      }
      optimizeModule(**part, machine, optLevel);
      (void)emitObjectFile(**part, machine, paths[i], errors[i]);
    });
  pool.wait();
  for (const std::string &message : errors)
    if (!message.empty()) {
      error = message;
      return failure();
    }
  return success();
}

std::string moe::findDefaultLinker() {
  for (StringRef name : {"clang-22", "clang", "cc", "gcc"}) {
    if (auto path = llvm::sys::findProgramByName(name))
      return *path;
    if (auto path = llvm::sys::findProgramByName(name, {MOE_LLVM_TOOLS_DIR}))
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

/// The flag that makes a clang driver link with the lld of the LLVM we are
/// built with, or "" (the driver's default linker). A module's weights are
/// one section of up to gigabytes, which lld copies about ten times faster
/// than GNU ld (a 3.4 GB OLMoE-size export: 3 s against 34 s,
/// benchmarks/RESULTS.md). Not an ld.lld found on PATH, which may be older:
/// Debian 12's /usr/bin/ld.lld is lld 14, which lays the medium code
/// model's large sections (.lrodata) out between the code and its small
/// data, whose 32-bit references then overflow past 2 GB of weights. gcc
/// has no flag naming the linker's path, so it keeps its default.
std::string lldFlag(StringRef driver) {
  if (!llvm::sys::path::filename(driver).starts_with("clang"))
    return "";
  if (auto path = llvm::sys::findProgramByName("ld.lld", {MOE_LLVM_TOOLS_DIR}))
    return "--ld-path=" + *path;
  return "";
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

namespace {
/// A constant global's data, when it can leave the LLVM module: byte-sized
/// elements whose raw data is the memory image, inline or in a blob.
std::optional<ArrayRef<char>> constantImage(LLVM::GlobalOp global) {
  if (!global.getConstant() ||
      global.getInitializerRegion().getBlocks().size() != 0)
    return std::nullopt;
  auto elements = dyn_cast_or_null<ElementsAttr>(global.getValueOrNull());
  if (!elements)
    return std::nullopt;
  Type elementType = elements.getElementType();
  if (!elementType.isIntOrFloat() ||
      elementType.getIntOrFloatBitWidth() % 8 != 0)
    return std::nullopt;
  uint64_t expected = uint64_t(elements.getNumElements()) *
                      (elementType.getIntOrFloatBitWidth() / 8);
  ArrayRef<char> bytes;
  if (auto dense = dyn_cast<DenseElementsAttr>(elements)) {
    if (dense.isSplat())
      return std::nullopt;
    bytes = dense.getRawData();
  } else if (auto resource = dyn_cast<DenseResourceElementsAttr>(elements)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return std::nullopt;
    bytes = blob->getData();
  } else {
    return std::nullopt;
  }
  if (bytes.size() != expected)
    return std::nullopt;
  return bytes;
}
} // namespace

FailureOr<size_t> moe::writeConstantsObject(ModuleOp module,
                                            StringRef objectPath,
                                            uint64_t minBytes,
                                            uint64_t hugePageMinBytes,
                                            std::string &error) {
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  if (!triple.isOSBinFormatELF() || triple.getArch() != llvm::Triple::x86_64) {
    error = "constants outside the LLVM module need an x86-64 ELF target, "
            "not " + triple.str() + "; pass --inline-constants";
    return failure();
  }
  // Layout first: each distinct data (globals viewing one blob share it)
  // at its offset in the one section.
  struct Constant {
    ArrayRef<char> bytes;
    uint64_t offset, size;
    /// The blobs holding `bytes` (globals viewing one blob share it).
    SmallVector<DenseResourceElementsAttr, 1> blobs;
  };
  struct Symbol {
    std::string name;
    size_t constant;
  };
  SmallVector<Constant> constants;
  SmallVector<Symbol> symbols;
  DenseMap<const void *, size_t> byData;
  uint64_t sectionBytes = 0, sectionAlignment = 16;
  // Only the host module's globals: kernels' globals belong to their own
  // binaries.
  for (auto global : module.getOps<LLVM::GlobalOp>()) {
    std::optional<ArrayRef<char>> bytes = constantImage(global);
    if (!bytes || bytes->size() < minBytes)
      continue;
    auto [it, inserted] = byData.try_emplace(bytes->data(), constants.size());
    if (inserted) {
      uint64_t alignment =
          std::max<uint64_t>(global.getAlignment().value_or(16), 16);
      sectionAlignment = std::max(sectionAlignment, alignment);
      sectionBytes = llvm::alignTo(sectionBytes, alignment);
      constants.push_back({*bytes, sectionBytes, bytes->size(), {}});
      sectionBytes += bytes->size();
    }
    symbols.push_back({global.getSymName().str(), it->second});
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(*global.getValue()))
      constants[it->second].blobs.push_back(resource);
    global.removeValueAttr();
    global.setLinkage(LLVM::Linkage::External);
    global.setVisibility_(LLVM::Visibility::Hidden);
    global.setDsoLocal(true);
  }
  if (symbols.empty())
    return size_t(0);
  // Weights meant for huge pages start on one; the linker aligns the
  // segment as its most aligned section.
  if (hugePageMinBytes != 0 && sectionBytes >= hugePageMinBytes)
    sectionAlignment = std::max<uint64_t>(sectionAlignment, 2 << 20);

  // An ELF64 relocatable object: [header][section data][.symtab][.strtab]
  // [.shstrtab][section headers]. Written directly, the weights pass
  // through no assembler or object library, which would hold another copy.
  namespace ELF = llvm::ELF;
  std::string strtab(1, '\0'), shstrtab(1, '\0');
  auto addString = [](std::string &table, StringRef name) {
    uint32_t offset = table.size();
    table.append(name.data(), name.size());
    table.push_back('\0');
    return offset;
  };
  enum Section { Null, Data, Note, SymTab, StrTab, ShStrTab, NumSections };
  uint32_t names[NumSections] = {0};
  // A large section (SHF_X86_64_LARGE): linkers place it after the small
  // sections, so that it can pass 2 GB; the code reaches its symbols with
  // 64-bit addresses (the medium code model, createTargetMachine).
  names[Data] = addString(shstrtab, ".lrodata.moe_constants");
  // No executable stack (what an assembler's .note.GNU-stack says).
  names[Note] = addString(shstrtab, ".note.GNU-stack");
  names[SymTab] = addString(shstrtab, ".symtab");
  names[StrTab] = addString(shstrtab, ".strtab");
  names[ShStrTab] = addString(shstrtab, ".shstrtab");
  SmallVector<uint32_t> symbolNames;
  for (const Symbol &symbol : symbols)
    symbolNames.push_back(addString(strtab, symbol.name));
  constexpr uint64_t kHeaderBytes = 64, kSymbolBytes = 24,
                     kSectionHeaderBytes = 64;
  uint64_t dataOffset = llvm::alignTo(kHeaderBytes, sectionAlignment);
  uint64_t symtabOffset = llvm::alignTo(dataOffset + sectionBytes, 8);
  uint64_t symtabBytes = kSymbolBytes * (symbols.size() + 1);
  uint64_t strtabOffset = symtabOffset + symtabBytes;
  uint64_t shstrtabOffset = strtabOffset + strtab.size();
  uint64_t headersOffset = llvm::alignTo(shstrtabOffset + shstrtab.size(), 8);

  std::error_code ec;
  llvm::raw_fd_ostream os(objectPath, ec, llvm::sys::fs::OF_None);
  if (ec) {
    error = "cannot write '" + objectPath.str() + "': " + ec.message();
    return failure();
  }
  llvm::support::endian::Writer out(os, llvm::endianness::little);
  uint64_t position = 0;
  auto padTo = [&](uint64_t offset) {
    os.write_zeros(offset - position);
    position = offset;
  };
  // ELF header.
  const char ident[ELF::EI_NIDENT] = {
      0x7f, 'E', 'L', 'F', ELF::ELFCLASS64, ELF::ELFDATA2LSB, ELF::EV_CURRENT,
      ELF::ELFOSABI_NONE};
  os.write(ident, sizeof(ident));
  out.write<uint16_t>(ELF::ET_REL);
  out.write<uint16_t>(ELF::EM_X86_64);
  out.write<uint32_t>(ELF::EV_CURRENT);
  out.write<uint64_t>(0); // e_entry
  out.write<uint64_t>(0); // e_phoff
  out.write<uint64_t>(headersOffset);
  out.write<uint32_t>(0); // e_flags
  out.write<uint16_t>(kHeaderBytes);
  out.write<uint16_t>(0); // e_phentsize
  out.write<uint16_t>(0); // e_phnum
  out.write<uint16_t>(kSectionHeaderBytes);
  out.write<uint16_t>(NumSections);
  out.write<uint16_t>(ShStrTab);
  position = kHeaderBytes;
  // The constants, in layout order. Each blob is freed once its bytes are
  // written (every global reading it has its offset already): the peak
  // memory falls as the object grows.
  for (Constant &constant : constants) {
    padTo(dataOffset + constant.offset);
    os.write(constant.bytes.data(), constant.bytes.size());
    position += constant.bytes.size();
    constant.bytes = {};
    for (DenseResourceElementsAttr blob : constant.blobs)
      if (auto *entry = blob.getRawHandle().getResource())
        entry->setBlob(AsmResourceBlob());
  }
  // Symbols: the null one, then a hidden global object per constant global.
  padTo(symtabOffset);
  os.write_zeros(kSymbolBytes);
  for (auto [symbol, name] : llvm::zip(symbols, symbolNames)) {
    out.write<uint32_t>(name);
    os << char((ELF::STB_GLOBAL << 4) | ELF::STT_OBJECT);
    os << char(ELF::STV_HIDDEN);
    out.write<uint16_t>(Data);
    out.write<uint64_t>(constants[symbol.constant].offset);
    out.write<uint64_t>(constants[symbol.constant].size);
  }
  os << strtab << shstrtab;
  position = shstrtabOffset + shstrtab.size();
  padTo(headersOffset);
  auto sectionHeader = [&](Section section, uint32_t type, uint64_t flags,
                           uint64_t offset, uint64_t size, uint32_t link,
                           uint32_t info, uint64_t align, uint64_t entsize) {
    out.write<uint32_t>(names[section]);
    out.write<uint32_t>(type);
    out.write<uint64_t>(flags);
    out.write<uint64_t>(0); // sh_addr
    out.write<uint64_t>(offset);
    out.write<uint64_t>(size);
    out.write<uint32_t>(link);
    out.write<uint32_t>(info);
    out.write<uint64_t>(align);
    out.write<uint64_t>(entsize);
  };
  os.write_zeros(kSectionHeaderBytes);
  sectionHeader(Data, ELF::SHT_PROGBITS,
                ELF::SHF_ALLOC | ELF::SHF_X86_64_LARGE, dataOffset,
                sectionBytes, 0, 0, sectionAlignment, 0);
  sectionHeader(Note, ELF::SHT_PROGBITS, 0, symtabOffset, 0, 0, 0, 1, 0);
  // sh_info: the index of the first non-local symbol.
  sectionHeader(SymTab, ELF::SHT_SYMTAB, 0, symtabOffset, symtabBytes, StrTab,
                1, 8, kSymbolBytes);
  sectionHeader(StrTab, ELF::SHT_STRTAB, 0, strtabOffset, strtab.size(), 0, 0,
                1, 0);
  sectionHeader(ShStrTab, ELF::SHT_STRTAB, 0, shstrtabOffset, shstrtab.size(),
                0, 0, 1, 0);
  os.close();
  if (os.has_error()) {
    error = "error writing '" + objectPath.str() + "'";
    os.clear_error();
    return failure();
  }
  return symbols.size();
}

LogicalResult moe::linkExecutorImage(StringRef objectPath, StringRef outputPath,
                                     const CompileOptions &options,
                                     std::string &error) {
  std::string linker = linkerDriver(options, error);
  if (linker.empty())
    return failure();
  // The executor's functions (moe_gpuexec_*, __nv_*) stay undefined: the
  // executor provides them when it loads the image.
  SmallVector<StringRef> args = {linker,     "-shared",  "-o",
                                 outputPath, objectPath, "-lm"};
  return runDriver(linker, args, "linking '" + outputPath.str() + "'",
                   options.verbose, error);
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
  std::string lld = options.useLLD ? lldFlag(linker) : "";
  if (!lld.empty())
    args.push_back(lld);
  for (const std::string &object : objectPaths)
    args.push_back(object);
  args.append({libDir, "-lmoe_runtime", rpath, "-lm", "-Wl,--no-undefined"});
  return runDriver(linker, args, "linking '" + outputPath.str() + "'",
                   options.verbose, error);
}
