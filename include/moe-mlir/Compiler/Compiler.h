//===- Compiler.h - moe-mlir ahead-of-time compilation ----------*- C++ -*-===//
//
// Everything between a tensor-level moe module and a deployable shared
// object: the lowering pipeline, translation to LLVM IR, optimisation, code
// generation and linking against the runtime library.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_COMPILER_COMPILER_H
#define MOE_MLIR_COMPILER_COMPILER_H

#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/Timing.h"

#include <memory>
#include <string>

namespace llvm {
class LLVMContext;
class Module;
class TargetMachine;
} // namespace llvm

namespace mlir::moe {

struct CompileOptions {
  /// CPU to generate code for; "native" is the host's.
  std::string cpu = "native";
  /// Extra target features ("+avx512f,..."); with cpu=native the host's.
  std::string features;
  unsigned optLevel = 3;
  /// Linker driver used to produce the .so (a cc-compatible driver).
  std::string linker;
  /// Whether the driver links with lld where it finds ld.lld.
  bool useLLD = true;
  /// Directory holding libmoe_runtime.so.
  std::string runtimeLibDir;
  bool verbose = false;
};

/// Runs the CPU lowering pipeline on `module` (tensor-level moe in, LLVM
/// dialect out), with pass timing under `timing`.
LogicalResult lowerToLLVMDialect(ModuleOp module,
                                 const CPUPipelineOptions &options,
                                 TimingScope &timing);

/// The target machine for `options` (host triple).
LogicalResult lowerToLLVMDialect(ModuleOp module,
                                 const CUDAPipelineOptions &options,
                                 TimingScope &timing);

/// The PTX of every kernel binary of a module lowered for cuda with binary
/// format `isa`: (gpu.binary name, PTX text) pairs.
SmallVector<std::pair<std::string, std::string>> collectPTX(ModuleOp module);

/// The root of the CUDA toolkit: the first of $CUDA_ROOT, $CUDA_HOME,
/// $CUDA_PATH, the toolkit holding the ptxas found on PATH (symlinks
/// resolved) and /usr/local/cuda that has nvvm/libdevice/libdevice.10.bc;
/// empty when none has. Recognising the toolkit by its layout rather than by
/// where ptxas lies matters because distributions and CI images often put
/// wrapper scripts for the CUDA tools in /usr/local/bin.
std::string findCUDAToolkit();

/// Finds `tool` (ptxas, fatbinary): in `toolkit`/bin when a toolkit was
/// found, else on PATH, in $CUDA_HOME/bin or in /usr/local/cuda/bin; empty
/// when absent.
std::string findCUDATool(StringRef tool, StringRef toolkit);

FailureOr<std::unique_ptr<llvm::TargetMachine>>
createTargetMachine(const CompileOptions &options, std::string &error);

/// Whether `machine`'s CPU has `feature` ("avx512bf16").
bool targetHasFeature(const llvm::TargetMachine &machine,
                      llvm::StringRef feature);

/// Translates an LLVM-dialect module and, unless `optimize` is false,
/// optimises it for `machine`.
std::unique_ptr<llvm::Module>
translateAndOptimize(ModuleOp module, llvm::LLVMContext &context,
                     llvm::TargetMachine &machine, unsigned optLevel,
                     TimingScope &timing, bool optimize = true);

/// Runs LLVM's default pipeline at `optLevel` on `module`.
void optimizeModule(llvm::Module &module, llvm::TargetMachine &machine,
                    unsigned optLevel);

/// Splits the translated, unoptimised `module` into one module per path
/// of `paths` (llvm::SplitModule: locals referenced across parts become
/// hidden globals), then optimises each and writes it as that object, on
/// `threads` threads taking the largest parts first. A whole model's LLVM
/// work (about a second per decoder layer) then scales with the cores, up
/// to the entry function, which holds the model's glue and cannot be
/// split. Functions in different parts are not inlined into each other,
/// which our modules do not need (the kernels are outlined, noinline
/// functions). Every object is written (a part may hold no function).
LogicalResult optimizeAndEmitObjects(std::unique_ptr<llvm::Module> module,
                                     const CompileOptions &options,
                                     unsigned optLevel, unsigned threads,
                                     ArrayRef<std::string> paths,
                                     std::string &error);

/// Constants of at least this many bytes (the weights) are moved to the
/// constants object (writeConstantsObject), and on x86-64 they, like every
/// global this large, live in large data sections, so that the weights may
/// pass 2 GB (createTargetMachine).
constexpr uint64_t kLargeConstantBytes = 4096;

/// Weights of at least this many bytes are laid out for huge pages
/// (writeConstantsObject): a TLB entry of 4 KiB pages covers 4 KiB of a
/// weight stream, one of 2 MiB pages a whole expert panel, and up to 2 MiB
/// of padding is noise at this size.
constexpr uint64_t kHugePageConstantBytes = 16 << 20;

/// Moves the data of every top-level constant `llvm.mlir.global` of at
/// least `minBytes` (model weights, inline or in resource blobs) out of the
/// LLVM-dialect `module` into the relocatable object `objectPath`: one
/// read-only section holding the bytes, a hidden symbol per global, which
/// becomes a hidden external declaration. LLVM then never optimises,
/// hashes or emits the weights byte by byte, they still end up in the
/// shared object's read-only data (mapped by the loader), and the blobs
/// written are freed. With `hugePageMinBytes` non-zero, a section of at
/// least that many bytes is aligned to 2 MiB: the linker then aligns its
/// segment to 2 MiB in the file and in memory (and the loader the whole
/// object), which lets the kernel map the weights' file pages with 2 MiB
/// entries once the runtime asks for huge pages. Returns how many globals
/// moved (0: no object was written).
FailureOr<size_t> writeConstantsObject(ModuleOp module, StringRef objectPath,
                                       uint64_t minBytes,
                                       uint64_t hugePageMinBytes,
                                       std::string &error);

/// Writes `module` as an object file.
LogicalResult emitObjectFile(llvm::Module &module, llvm::TargetMachine &machine,
                             StringRef path, std::string &error);

/// Links `objectPath` into the shared object `outputPath` against the
/// runtime library.
LogicalResult linkSharedObject(ArrayRef<std::string> objectPaths,
                               StringRef outputPath,
                               const CompileOptions &options,
                               std::string &error);

/// Links the GPU executor image `objectPath` (host code of a cuda module's
/// kernels) into the shared object `outputPath`.
LogicalResult linkExecutorImage(StringRef objectPath, StringRef outputPath,
                                const CompileOptions &options,
                                std::string &error);

/// Replaces every gpu.module of `module` (lowered to NVVM by the cuda
/// pipeline with binary-format=executor) by a gpu.binary holding its
/// kernels built for the moe GPU executor (tools/gpu-executor): host code
/// for `machine`, linked into a shared object.
LogicalResult buildGPUExecutorImages(ModuleOp module,
                                     const CompileOptions &options,
                                     llvm::TargetMachine &machine,
                                     TimingScope &timing, std::string &error);

/// The default linker driver: the first of clang-22, clang, cc, gcc found on
/// PATH or in the tools directory of the LLVM we are built with; empty when
/// none.
std::string findDefaultLinker();

} // namespace mlir::moe

#endif // MOE_MLIR_COMPILER_COMPILER_H
