//===- moe-compile.cpp - ahead-of-time compiler for moe modules -------------===//
//
//   moe-compile IN.mlir|IN.onnx [--target=cpu|cuda] -o OUT.so
//               [--emit=mlir|llvm|obj|so|ptx] [--cuda-arch=sm_90]
//
// OUT.so is deployable: it depends on libc, libm and libmoe_runtime.so, and
// exports `moe_module_manifest` and one `moe_entry_<function>` per function
// (docs/Runtime.md). A cuda module embeds its kernels (PTX, cubin or
// fatbin) and launches them through the runtime, which loads the CUDA
// driver at run time.
//
//===----------------------------------------------------------------------===//

#include "MoE/IR/MoEDialect.h"
#include "moe-mlir/Compiler/Compiler.h"
#include "moe-mlir/Conversion/MoEToLLVM.h"
#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Import/ONNXImporter.h"
#include "moe-mlir/Transforms/BufferizableOpInterfaceImpl.h"
#include "moe-mlir/Transforms/Passes.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Target/TargetMachine.h"
#include <chrono>
#include <optional>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace mlir;
namespace cl = llvm::cl;

namespace {
enum class Emit { MLIR, LLVM, Object, SharedObject, PTX };
enum class GPUBinary { Auto, PTX, Cubin, Fatbin, Executor };

cl::OptionCategory category("moe-compile options");
cl::opt<std::string> inputFile(cl::Positional,
                               cl::desc("<input .mlir or .onnx>"),
                               cl::Required, cl::cat(category));
cl::opt<std::string> outputFile("o", cl::desc("Output file"),
                                cl::value_desc("path"), cl::Required,
                                cl::cat(category));
cl::opt<std::string> target("target", cl::desc("Target: cpu or cuda"),
                            cl::init("cpu"), cl::cat(category));
cl::opt<std::string>
    cudaArch("cuda-arch",
             cl::desc("GPU architecture for --target=cuda (sm_80, sm_86, "
                      "sm_89, sm_90, ...; tensor cores need sm_80+)"),
             cl::init("sm_90"), cl::cat(category));
cl::opt<GPUBinary> gpuBinary(
    "gpu-binary", cl::desc("Kernel format embedded in a cuda module"),
    cl::init(GPUBinary::Auto),
    cl::values(clEnumValN(GPUBinary::Auto, "auto",
                          "fatbin (cubin + PTX) when the CUDA toolkit's ptxas "
                          "and fatbinary are found, else PTX"),
               clEnumValN(GPUBinary::PTX, "ptx",
                          "PTX, compiled by the driver at load time"),
               clEnumValN(GPUBinary::Cubin, "cubin",
                          "cubin for --cuda-arch only (needs ptxas)"),
               clEnumValN(GPUBinary::Fatbin, "fatbin",
                          "cubin + PTX (needs ptxas and fatbinary)"),
               clEnumValN(GPUBinary::Executor, "executor",
                          "host code for the moe GPU executor, a CUDA driver "
                          "that runs the kernels on the CPU with their warp "
                          "and block semantics (MOE_CUDA_DRIVER=<build>/lib/"
                          "libmoe_gpu_executor.so); needs no CUDA toolkit")),
    cl::cat(category));
cl::opt<bool> cudaSharedMemoryStages(
    "cuda-shared-memory-stages",
    cl::desc("--target=cuda: tensor-core GEMMs with K % 8 == 0 stage their "
             "operands in shared memory (three-stage cp.async pipeline, "
             "ldmatrix fragments); false: fragments from global memory"),
    cl::init(true), cl::cat(category));
// Not for users: a deliberately wrong tensor-core fragment layout, with
// which the GPU executor's tests show that they can fail.
cl::opt<bool> testMisplaceFragment(
    "test-misplace-fragment",
    cl::desc("Testing only: swap two mma.sync A fragment registers in the "
             "tensor-core kernels"),
    cl::init(false), cl::Hidden, cl::cat(category));
cl::opt<Emit> emit(
    "emit", cl::desc("Stop after a stage"), cl::init(Emit::SharedObject),
    cl::values(clEnumValN(Emit::MLIR, "mlir", "LLVM-dialect MLIR"),
               clEnumValN(Emit::LLVM, "llvm", "optimised LLVM IR"),
               clEnumValN(Emit::Object, "obj", "object file"),
               clEnumValN(Emit::SharedObject, "so", "shared object (default)"),
               clEnumValN(Emit::PTX, "ptx", "the kernels' PTX (--target=cuda)")),
    cl::cat(category));
cl::opt<std::string> mcpu("mcpu", cl::desc("Target CPU (default: native)"),
                          cl::init("native"), cl::cat(category));
cl::opt<std::string> mattr("mattr", cl::desc("Target features"),
                           cl::init(""), cl::cat(category));
cl::opt<unsigned> optLevel("O", cl::desc("LLVM optimisation level (0-3)"),
                           cl::Prefix, cl::init(3), cl::cat(category));
cl::opt<std::string> linker(
    "linker",
    cl::desc("cc-compatible linker driver (default: the first of clang-22, "
             "clang, cc, gcc found)"),
    cl::init(""), cl::cat(category));
cl::opt<bool> useLLD(
    "lld",
    cl::desc(
        "With a clang driver, link with the lld of the LLVM moe-compile "
        "is built with, where found: a module's weights link about ten times "
        "faster than with GNU ld; =false keeps the driver's default "
        "linker"),
    cl::init(true), cl::cat(category));
cl::opt<std::string>
    runtimeDir("runtime-dir",
               cl::desc("Directory of libmoe_runtime.so (default: ../lib "
                        "next to moe-compile)"),
               cl::init(""), cl::cat(category));
cl::opt<int64_t> gemmRowTile("gemm-row-tile",
                             cl::desc("Rows per expert-GEMM register block "
                                      "(default: 3 with AVX-512, else 2)"),
                             cl::init(3), cl::cat(category));
cl::opt<int64_t> gemmColTile("gemm-col-tile",
                             cl::desc("Columns per expert-GEMM register block "
                                      "(default: 8 with AVX-512, else 4)"),
                             cl::init(8), cl::cat(category));
cl::opt<int64_t> gemmPackMinRows(
    "gemm-pack-min-rows",
    cl::desc("Rows from which the GEMMs other than the experts' with "
             "AVX-512 pack 64-column panels of the weights for the "
             "outer-product kernel (0: never; default 256: whole decoders "
             "1.02-1.06x at T = 512, while from 128 rows T = 128 lost 3%, "
             "benchmarks/RESULTS.md)"),
    cl::init(256), cl::cat(category));
cl::opt<int64_t> expertPackMinRows(
    "expert-pack-min-rows",
    cl::desc("Rows of an expert from which its GEMMs with AVX-512 pack "
             "64-column panels of the weights for the outer-product kernel "
             "(0: never; default 96: 1.19x on Mixtral-like layers at "
             "T = 512, where experts have about 128 rows, while experts of "
             "64 rows lost 5% with 64, benchmarks/RESULTS.md)"),
    cl::init(96), cl::cat(category));
cl::opt<bool> packExpertWeights(
    "pack-expert-weights",
    cl::desc("CPU with AVX-512: store constant f32 expert weights (and "
             "bf16 ones in pairs of k, with AVX512-BF16) in 64-column "
             "panels at compile time (-moe-pack-expert-weights), "
             "so that the experts' GEMMs need no packing at run time "
             "(default on: 1.03-1.29x at T = 512, 1.10-1.23x at T = 16, "
             "level at decode; =false keeps the out-major weights, "
             "benchmarks/RESULTS.md)"),
    cl::init(true), cl::cat(category));
cl::opt<bool> packMatmulWeights(
    "pack-matmul-weights",
    cl::desc("CPU with AVX-512: store the constant weights of the matmuls "
             "outside the experts (attention projections, dense MLPs, the "
             "LM head) in panels at compile time "
             "(-moe-pack-matmul-weights), so that they run the "
             "outer-product kernel at every token count without packing "
             "at run time (default on; =false keeps the out-major weights, "
             "benchmarks/RESULTS.md)"),
    cl::init(true), cl::cat(category));
cl::opt<bool> recordRouting(
    "record-routing",
    cl::desc("CPU: report every route's expert choices to the runtime, so "
             "that `moe-run --routing-profile=FILE` (or the Python API) can "
             "record the model's routing profile (-moe-record-routing; "
             "docs/RoutingProfiles.md)"),
    cl::init(false), cl::cat(category));
cl::opt<bool> prefetchExperts(
    "prefetch-experts",
    cl::desc("CPU: for weights larger than memory, hand every layer's "
             "chosen experts, and the next layer's as guessed from this "
             "layer's tokens, to the runtime's expert cache, which reads "
             "their pages ahead on a worker (-moe-prefetch-experts; "
             "moe-run --weights-memory-limit; docs/Runtime.md)"),
    cl::init(false), cl::cat(category));
cl::opt<std::string> routingProfile(
    "routing-profile",
    cl::desc("Routing profile (JSON, from `moe-run --routing-profile`) that "
             "guides --prune-experts, --merge-experts and --place-experts "
             "(docs/RoutingProfiles.md)"),
    cl::value_desc("FILE"), cl::cat(category));
cl::opt<bool> placeExperts(
    "place-experts",
    cl::desc("With --expert-parallel=P and --routing-profile: renumber every "
             "layer's experts so that each rank's block takes a similar share "
             "of the profile's tokens, and with --ep-dispatch=rank also "
             "put experts that tokens choose together on one rank "
             "(-moe-place-experts; docs/ExpertParallel.md)"),
    cl::init(false), cl::cat(category));
cl::opt<int64_t> pruneExperts(
    "prune-experts",
    cl::desc("CPU: drop the N FFN experts of every layer that took the "
             "fewest tokens in the --routing-profile (-moe-prune-experts): "
             "their weights leave the module and the router chooses among "
             "the rest. Needs constant weights and the router MatMul fused "
             "into the layer (the default)"),
    cl::value_desc("N"), cl::init(0), cl::cat(category));
cl::opt<std::string> weightType(
    "weight-type",
    cl::desc("Store the constant f32 weights of the MoE layers' experts and "
             "of the matmuls (projections, LM head) as bf16 "
             "(-moe-convert-expert-weights, -moe-convert-matmul-weights): "
             "half the bytes, and bf16 x bf16 GEMMs accumulating in f32 "
             "(vdpbf16ps with AVX512-BF16; the experts' tensor-core kernels "
             "on cuda) on activations rounded to bf16; routing stays f32. "
             "Changes results by bf16's rounding (benchmarks/RESULTS.md); "
             "default: the model's types"),
    cl::value_desc("bf16"), cl::init(""), cl::cat(category));

cl::opt<int64_t> mergeExperts(
    "merge-experts",
    cl::desc("CPU: fold the N FFN experts of every layer that took the "
             "fewest tokens in the --routing-profile into the kept expert "
             "with the most similar router row, averaging weights and router "
             "rows by the tokens each took (-moe-merge-experts). Needs f32 "
             "or bf16 constant weights and the router MatMul fused into the "
             "layer (the default)"),
    cl::value_desc("N"), cl::init(0), cl::cat(category));
cl::opt<bool> hugePageWeights(
    "huge-page-weights",
    cl::desc("Lay out modules with 16 MiB of weights or more on 2 MiB "
             "boundaries, so that the runtime maps the weights with huge "
             "pages (fewer TLB misses where the kernels stream weights; "
             "benchmarks/RESULTS.md); =false keeps 4 KiB alignment"),
    cl::init(true), cl::cat(category));
cl::opt<bool> int8Activations(
    "int8-activations",
    cl::desc("CPU with AVX512-VNNI: quantised experts quantise their input "
             "rows to int8 (a scale per weight block) and multiply them by "
             "the packed weights with vpdpbusd: constant weights stored "
             "in panels of 4-byte words (--pack-quantized-weights) by outer "
             "products at every row count; others by dot products at decode "
             "and outer products of rearranged panels from 32 rows per "
             "expert (17 with weight blocks under 64 bytes) "
             "(-moe-int8-activations; off by default: about 1-4% of max|y| "
             "of error, the most with per-row weight scales, "
             "benchmarks/RESULTS.md)"),
    cl::init(false), cl::cat(category));
cl::opt<bool> packQuantizedWeights(
    "pack-quantized-weights",
    cl::desc("With --int8-activations and --pack-expert-weights: store the "
             "quantised experts' constant weights in panels of 4-byte words "
             "at compile time, which the int8 panel kernel reads at every "
             "row count without rearranging them (=false keeps their rows)"),
    cl::init(true), cl::cat(category));
cl::opt<unsigned> codegenThreads(
    "codegen-threads",
    cl::desc("Optimise and compile a shared object's LLVM module on this "
             "many threads, split into four parts a thread (default: the "
             "cores, at most 8; 1 keeps one module)"),
    cl::cat(category));
cl::opt<bool> widenHalfAccumulators(
    "widen-half-accumulators",
    cl::desc("CPU: accumulate an f16/bf16 model's matmuls and reductions in "
             "f32 and round each result once (-moe-widen-half-accumulators; "
             "on by default, as half GEMMs elsewhere accumulate; =false "
             "rounds every step to the model's type)"),
    cl::init(true), cl::cat(category));
cl::opt<bool> fuseAttention(
    "fuse-attention",
    cl::desc("CPU: compute attention one block of score rows at a time, "
             "over the keys that an additive mask shows some row of the "
             "block (-moe-fuse-attention; on by default: a causal prompt "
             "skips half of its scores, benchmarks/RESULTS.md; =false runs "
             "attention op by op)"),
    cl::init(true), cl::cat(category));
cl::opt<bool> fuseRouter(
    "fuse-router",
    cl::desc("CPU: compute the router's logits inside the route, a block of "
             "tokens at a time, from the weight of the router MatMul "
             "(-moe-fuse-router; on by default, =false for a separate "
             "MatMul)"),
    cl::init(true), cl::cat(category));
cl::opt<bool> groupSharedExperts(
    "group-shared-experts",
    cl::desc("CPU: shared experts with constant weights become slices of the "
             "routed experts' size that every token is routed to, in the "
             "routed experts' grouped schedule (-moe-group-shared-experts; "
             "off by default, a moe.expert per shared expert: measured "
             "within the noise of that, see benchmarks/RESULTS.md)"),
    cl::init(false), cl::cat(category));
cl::opt<bool> fuseCombine(
    "fuse-combine",
    cl::desc("CPU: add each expert row, scaled by its routing weight, to "
             "its token's output in the second GEMM's epilogue "
             "(-moe-fuse-combine; on by default, =false for the unfused "
             "combine)"),
    cl::init(true), cl::cat(category));
cl::opt<bool> fuseGather(
    "fuse-gather",
    cl::desc("CPU: the expert GEMMs read the token rows in place through "
             "dispatch's row tokens instead of a [T*k, H] copy "
             "(-moe-fuse-gather; on by default, =false for the copy)"),
    cl::init(true), cl::cat(category));
cl::opt<bool> emulateCUDAKernels(
    "emulate-cuda-kernels",
    cl::desc("Testing: run the cuda target's kernels (SIMT variant) as host "
             "loops in a module for this CPU, to check them without a GPU. "
             "With --target=cuda the whole cuda pipeline (every kernel, the "
             "host code, device memory as host memory); with --target=cpu "
             "the moe stages' kernels only"),
    cl::init(false), cl::cat(category));
cl::opt<int64_t> expertParallel(
    "expert-parallel",
    cl::desc("Spread the experts over this many ranks: an SPMD module run "
             "with mpirun -np N moe-run (docs/ExpertParallel.md)"),
    cl::init(0), cl::cat(category));
cl::opt<std::string> overlapChunks(
    "overlap-chunks",
    cl::desc("With --expert-parallel: chunks (ranges of every rank's "
             "experts, else of its tokens) whose exchanges are pipelined "
             "with the experts, or 'auto' for the cost model's choice of "
             "split and count (1: no overlap)"),
    cl::init("auto"), cl::cat(category));
cl::opt<int64_t> overlapTokens(
    "overlap-tokens",
    cl::desc("With --overlap-chunks=auto: tokens per rank the cost model "
             "assumes when the layer's token count is dynamic"),
    cl::init(256), cl::cat(category));
cl::opt<std::string> overlapModel(
    "overlap-model",
    cl::desc("With --expert-parallel: the machine the overlap cost model "
             "assumes, as -moe-overlap-communication options, e.g. "
             "\"bandwidth=400 latency=15 peak-gflops=600000 "
             "memory-bandwidth=3000\" (GB/s, us, GFLOP/s per rank)"),
    cl::init(""), cl::cat(category));
cl::opt<std::string> epDispatch(
    "ep-dispatch",
    cl::desc("With --expert-parallel: 'expert' sends a token once per "
             "chosen expert and gets every expert's output back; 'rank' "
             "sends it once per rank owning any of its experts, with its "
             "ids and routing weights, and gets one weighted sum per rank "
             "back (fewer bytes when a token's experts share a rank; no "
             "expert-range overlap chunks)"),
    cl::init("expert"), cl::cat(category));
cl::opt<bool> inlineConstants(
    "inline-constants",
    cl::desc("Keep large constants (weights) inline: dense attributes in "
             "the IR (not resource blobs) and constants of the LLVM module "
             "(not an object of their own); slower to compile, the same "
             "code and outputs"),
    cl::init(false));
cl::opt<bool> verbose("v", cl::desc("Print the link command"),
                      cl::init(false), cl::cat(category));
cl::opt<cl::boolOrDefault> progressLines(
    "progress",
    cl::desc("Print a line on stderr as each stage ends (import, lowering, "
             "weights, LLVM, code generation, link) with its time; by "
             "default when stderr is a terminal. --mlir-timing also times "
             "each pass, at the end"),
    cl::cat(category));

int fail(const Twine &message) {
  llvm::errs() << "moe-compile: error: " << message << "\n";
  return 1;
}

/// A line on stderr as each stage of the compile ends: a model of gigabytes
/// takes a while, and its user sees which stage it is in.
class Progress {
public:
  Progress()
      : enabled(progressLines == cl::BOU_UNSET
                    ? llvm::sys::Process::StandardErrIsDisplayed()
                    : progressLines == cl::BOU_TRUE),
        start(Clock::now()), last(start) {}

  void done(const Twine &stage) {
    if (!enabled)
      return;
    Clock::time_point now = Clock::now();
    llvm::errs() << "moe-compile: " << stage << " ("
                 << llvm::format("%.1f", seconds(now - last)) << " s)\n";
    last = now;
  }

  double total() const { return seconds(Clock::now() - start); }

private:
  using Clock = std::chrono::steady_clock;
  static double seconds(Clock::duration d) {
    return std::chrono::duration<double>(d).count();
  }
  bool enabled;
  Clock::time_point start, last;
};

/// libmoe_runtime.so lives in build/lib when moe-compile is build/bin.
std::string defaultRuntimeDir(const char *argv0) {
  std::string exe = llvm::sys::fs::getMainExecutable(
      argv0, reinterpret_cast<void *>(&defaultRuntimeDir));
  SmallString<256> dir(llvm::sys::path::parent_path(exe));
  llvm::sys::path::append(dir, "..", "lib");
  llvm::sys::path::remove_dots(dir, /*remove_dot_dot=*/true);
  return std::string(dir);
}

int compile(int argc, char **argv) {
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  moe::registerONNXImportCLOptions();
  // By name, so that --mlir-print-ir-after=<pass> (hidden) can name ours;
  // before the pass manager's options, which list the registered passes.
  moe::registerMoEPasses();
  moe::registerMoEConversionPasses();
  registerPassManagerCLOptions();
  registerDefaultTimingManagerCLOptions();
  // --help lists what a user of this tool sets; LLVM's and MLIR's own
  // options (--mlir-timing, ...) still work and --help-hidden lists them.
  cl::HideUnrelatedOptions({&category, &moe::getONNXImportOptionCategory()});
  cl::ParseCommandLineOptions(
      argc, argv,
      "moe-mlir ahead-of-time compiler\n\n"
      "Compiles an ONNX model or moe/MLIR file into a shared object that\n"
      "moe-run and the runtime load. --help-hidden also lists LLVM's and\n"
      "MLIR's options (e.g. --mlir-timing: time of every stage).\n");

  if (gemmRowTile < 1 || gemmColTile < 1)
    return fail("--gemm-row-tile and --gemm-col-tile must be at least 1");
  if (gemmPackMinRows < 0)
    return fail("--gemm-pack-min-rows must be at least 0");
  if (expertPackMinRows < 0)
    return fail("--expert-pack-min-rows must be at least 0");
  if (target != "cpu" && target != "cuda")
    return fail("target '" + target + "' is not supported (cpu or cuda)");
  bool cuda = target == "cuda";
  int64_t chunks = 0;
  if (expertParallel < 0)
    return fail("--expert-parallel must be a positive number of ranks");
  if (overlapChunks != "auto" &&
      (StringRef(overlapChunks).getAsInteger(10, chunks) || chunks < 1))
    return fail("--overlap-chunks must be 'auto' or a positive number, got '" +
                overlapChunks + "'");
  if (overlapTokens < 1)
    return fail("--overlap-tokens must be positive");
  if (epDispatch != "expert" && epDispatch != "rank")
    return fail("--ep-dispatch must be 'expert' or 'rank', got '" + epDispatch +
                "'");
  if (epDispatch.getNumOccurrences() && expertParallel < 2)
    return fail("--ep-dispatch chooses how --expert-parallel=P (P >= 2) "
                "exchanges rows, which is not given");
  if (!overlapModel.empty()) {
    std::string problem;
    if (failed(moe::createMoEOverlapCommunication()->initializeOptions(
            overlapModel, [&](const Twine &message) {
              problem = message.str();
              return failure();
            })))
      return fail("--overlap-model: " +
                  (problem.empty() ? std::string("cannot parse '") +
                                         overlapModel.getValue() + "'"
                                   : problem));
  }
  if (recordRouting && (cuda || expertParallel > 1))
    return fail("--record-routing is for single-process CPU modules (the "
                "routes of --target=cuda and --expert-parallel modules are "
                "not reported yet)");
  if (prefetchExperts && (cuda || expertParallel > 1))
    return fail("--prefetch-experts is for single-process CPU modules (a "
                "cuda module's weights live in device memory; an "
                "expert-parallel layer's are split over the ranks)");
  if (!weightType.empty() && weightType != "bf16")
    return fail("--weight-type must be 'bf16', got '" + weightType + "'");
  if (pruneExperts < 0 || mergeExperts < 0)
    return fail("--prune-experts and --merge-experts must be >= 0");
  if (pruneExperts > 0 && mergeExperts > 0)
    return fail("--prune-experts and --merge-experts both remove experts "
                "by the profile's counts; use one of them");
  const char *profileUse = pruneExperts > 0   ? "--prune-experts"
                           : mergeExperts > 0 ? "--merge-experts"
                           : placeExperts     ? "--place-experts"
                                              : nullptr;
  if (placeExperts && expertParallel < 2)
    return fail("--place-experts places experts on the ranks of "
                "--expert-parallel=P (P >= 2), which is not given");
  if (profileUse && routingProfile.empty())
    return fail(std::string(profileUse) +
                " needs --routing-profile=FILE (record one with moe-compile "
                "--record-routing and moe-run --routing-profile)");
  if (!routingProfile.empty() && !profileUse)
    return fail("--routing-profile is read by --prune-experts=N, "
                "--merge-experts=N or --place-experts, none of which is "
                "given");
  if (profileUse && (cuda || !fuseRouter))
    return fail(std::string(profileUse) +
                " needs the CPU target with the router fused into the layers "
                "(not --target=cuda or --fuse-router=false)");
  if (emit == Emit::PTX && (!cuda || emulateCUDAKernels))
    return fail("--emit=ptx needs --target=cuda without "
                "--emulate-cuda-kernels");
  // What a cuda module embeds, and the CUDA toolkit that needs (none when
  // its kernels run on the host).
  std::string binaryFormat = "isa";
  if (cuda && !emulateCUDAKernels) {
    StringRef arch = cudaArch;
    unsigned smVersion = 0;
    StringRef digits = arch;
    bool wellFormed = digits.consume_front("sm_");
    digits.consume_back("a"); // sm_90a: arch-specific features
    if (!wellFormed || digits.getAsInteger(10, smVersion))
      return fail("--cuda-arch: expected sm_<version> (e.g. sm_90), got '" +
                  arch + "'");
    if (smVersion < 80)
      return fail("--cuda-arch=" + arch +
                  ": the tensor-core kernels need sm_80 or newer");
  }
  if (cuda && !emulateCUDAKernels && gpuBinary == GPUBinary::Executor) {
    if (emit == Emit::PTX)
      return fail("--emit=ptx and --gpu-binary=executor: executor images "
                  "hold host code, not PTX");
    binaryFormat = moe::kExecutorBinaryFormat;
  } else if (cuda && !emulateCUDAKernels) {
    // Kernels call libdevice (__nv_expf, ...), which MLIR's NVVM target
    // links from the CUDA toolkit it finds through CUDA_ROOT.
    std::string toolkit = moe::findCUDAToolkit();
    if (toolkit.empty())
      llvm::errs() << "moe-compile: warning: no CUDA toolkit found (no "
                      "nvvm/libdevice/libdevice.10.bc under $CUDA_ROOT, "
                      "$CUDA_HOME, $CUDA_PATH, the ptxas on PATH or "
                      "/usr/local/cuda): kernels using exp/erf/tanh will not "
                      "load; set CUDA_ROOT\n";
    else
      ::setenv("CUDA_ROOT", toolkit.c_str(), 1);
    std::string ptxas = moe::findCUDATool("ptxas", toolkit);
    if (emit != Emit::PTX) {
      std::string fatbinary = moe::findCUDATool("fatbinary", toolkit);
      GPUBinary format = gpuBinary;
      if (format == GPUBinary::Auto)
        format = !ptxas.empty() && !fatbinary.empty() ? GPUBinary::Fatbin
                                                      : GPUBinary::PTX;
      if (format != GPUBinary::PTX && ptxas.empty())
        return fail("--gpu-binary=cubin/fatbin needs ptxas from the CUDA "
                    "toolkit (looked on PATH, in $CUDA_HOME/bin and "
                    "/usr/local/cuda/bin); use --gpu-binary=ptx");
      if (format == GPUBinary::Fatbin && fatbinary.empty())
        return fail("--gpu-binary=fatbin needs fatbinary from the CUDA "
                    "toolkit; use --gpu-binary=cubin or ptx");
      binaryFormat = format == GPUBinary::PTX     ? "isa"
                     : format == GPUBinary::Cubin ? "bin"
                                                  : "fatbin";
      if (format != GPUBinary::PTX) {
        // MLIR's NVVM target runs the tools it finds on PATH.
        std::string dir = llvm::sys::path::parent_path(ptxas).str();
        const char *path = std::getenv("PATH");
        ::setenv("PATH", (dir + ":" + (path ? path : "")).c_str(), 1);
      }
    }
  }

  DefaultTimingManager timingManager;
  applyDefaultTimingManagerCLOptions(timingManager);
  TimingScope timing = timingManager.getRootScope();
  Progress progress;

  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registry.insert<moe::MoEDialect>();
  moe::registerBufferizableOpInterfaceExternalModels(registry);
  moe::registerConvertMoEToLLVMInterface(registry);
  // Kernels are translated to LLVM IR and PTX during the pipeline.
  registerAllToLLVMIRTranslations(registry);
  // Held so that it can go once the LLVM module exists: its attributes
  // (the weights, in every form the passes made of them) are only freed
  // with it.
  std::optional<MLIRContext> contextStorage(std::in_place, registry);
  MLIRContext &context = *contextStorage;

  std::string error;
  llvm::SourceMgr sourceMgr;
  std::optional<SourceMgrDiagnosticHandler> diagHandler(std::in_place,
                                                        sourceMgr, &context);
  OwningOpRef<ModuleOp> module;
  if (StringRef(inputFile).ends_with(".onnx")) {
    TimingScope scope = timing.nest("Import ONNX");
    moe::ImportOptions importOptions = moe::getONNXImportCLOptions();
    if (inlineConstants)
      importOptions.resourceMinBytes = UINT64_MAX;
    module = moe::importONNXModel(inputFile, &context, importOptions);
    if (module)
      progress.done("imported '" + inputFile + "'");
  } else {
    auto input = openInputFile(inputFile, &error);
    if (!input)
      return fail(error);
    sourceMgr.AddNewSourceBuffer(std::move(input), llvm::SMLoc());
    TimingScope scope = timing.nest("Parse");
    module = parseSourceFile<ModuleOp>(sourceMgr, &context);
    if (module)
      progress.done("parsed '" + inputFile + "'");
  }
  if (!module)
    return 1; // The diagnostic handler has reported why.

  moe::CompileOptions options;
  options.cpu = mcpu;
  options.features = mattr;
  options.optLevel = optLevel;
  options.linker = linker;
  options.useLLD = useLLD;
  options.runtimeLibDir =
      runtimeDir.empty() ? defaultRuntimeDir(argv[0]) : std::string(runtimeDir);
  options.verbose = verbose;

  // The kernels the lowering picks depend on what the target CPU has.
  auto machine = moe::createTargetMachine(options, error);
  if (failed(machine))
    return fail(error);

  {
    TimingScope scope = timing.nest("MLIR lowering");
    if (cuda) {
      moe::CUDAPipelineOptions pipeline;
      pipeline.chip = cudaArch;
      pipeline.binaryFormat = binaryFormat;
      pipeline.expertParallel = expertParallel;
      pipeline.overlapChunks = chunks;
      pipeline.overlapTokens = overlapTokens;
      pipeline.overlapModel = overlapModel;
      pipeline.epDispatch = epDispatch;
      pipeline.weightType = weightType;
      pipeline.emulateKernels = emulateCUDAKernels;
      pipeline.sharedMemoryStages = cudaSharedMemoryStages;
      pipeline.testMisplaceFragment = testMisplaceFragment;
      if (failed(moe::lowerToLLVMDialect(*module, pipeline, scope)))
        return 1;
      if (binaryFormat == moe::kExecutorBinaryFormat &&
          failed(moe::buildGPUExecutorImages(*module, options, **machine, scope,
                                             error)))
        return fail(error);
    } else {
      moe::CPUPipelineOptions pipeline;
      // The register block fits the target's vector registers: 3 x 8
      // accumulators and 11 operand vectors of the 32 AVX-512 registers;
      // 2 x 4 and 6 operands of AVX2's 16. The options override it.
      bool avx512 = moe::targetHasFeature(**machine, "avx512f");
      pipeline.vectorBits = avx512 ? 512 : 256;
      pipeline.gemmRowTile = gemmRowTile.getNumOccurrences() || avx512
                                 ? int64_t(gemmRowTile)
                                 : 2;
      pipeline.gemmColTile = gemmColTile.getNumOccurrences() || avx512
                                 ? int64_t(gemmColTile)
                                 : 4;
      pipeline.bf16Dot = moe::targetHasFeature(**machine, "avx512bf16");
      pipeline.gemmPackMinRows = avx512 ? int64_t(gemmPackMinRows) : 0;
      pipeline.expertPackMinRows = avx512 ? int64_t(expertPackMinRows) : 0;
      pipeline.packExpertWeights = avx512 && packExpertWeights;
      pipeline.packMatmulWeights = avx512 && packMatmulWeights;
      pipeline.packQuantizedWeights = packQuantizedWeights;
      pipeline.recordRouting = recordRouting;
      pipeline.prefetchExperts = prefetchExperts;
      pipeline.routingProfile = routingProfile;
      pipeline.pruneExperts = pruneExperts;
      pipeline.placeExperts = placeExperts;
      pipeline.mergeExperts = mergeExperts;
      pipeline.weightType = weightType;
      if (int8Activations && !moe::targetHasFeature(**machine, "avx512vnni"))
        return fail("--int8-activations needs a target with AVX512-VNNI "
                    "(this one is " +
                    (**machine).getTargetCPU().str() + ")");
      pipeline.int8Activations = int8Activations;
      pipeline.vnniDot = moe::targetHasFeature(**machine, "avx512vnni");
      pipeline.fuseAttention = fuseAttention;
      pipeline.widenHalfAccumulators = widenHalfAccumulators;
      pipeline.fuseRouter = fuseRouter;
      pipeline.groupSharedExperts = groupSharedExperts;
      pipeline.fuseCombine = fuseCombine;
      pipeline.fuseGather = fuseGather;
      pipeline.emulateCUDAKernels = emulateCUDAKernels;
      pipeline.expertParallel = expertParallel;
      pipeline.overlapChunks = chunks;
      pipeline.overlapTokens = overlapTokens;
      pipeline.overlapModel = overlapModel;
      pipeline.epDispatch = epDispatch;
      if (failed(moe::lowerToLLVMDialect(*module, pipeline, scope)))
        return 1;
    }
  }
  progress.done("lowered to the LLVM dialect");

  auto writeText = [&](function_ref<void(raw_ostream &)> print) {
    auto out = openOutputFile(outputFile, &error);
    if (!out)
      return fail(error);
    print(out->os());
    out->keep();
    return 0;
  };
  if (emit == Emit::MLIR)
    return writeText([&](raw_ostream &os) { module->print(os); });
  if (emit == Emit::PTX) {
    auto ptx = moe::collectPTX(*module);
    if (ptx.empty())
      return fail("the module has no GPU kernels");
    // One PTX module per gpu.binary, each headed by a `//--- NAME.ptx`
    // line, so that LLVM's split-file can separate them.
    return writeText([&](raw_ostream &os) {
      for (auto &[name, text] : ptx)
        os << "//--- " << name << ".ptx\n"
           << StringRef(text).rtrim('\0') << "\n";
    });
  }

  // A fresh temporary file's path (the caller removes it).
  auto temporaryFile = [&](StringRef prefix, StringRef suffix,
                           SmallString<128> &path) -> bool {
    int fd;
    if (std::error_code ec =
            llvm::sys::fs::createTemporaryFile(prefix, suffix, fd, path)) {
      error = "cannot create a temporary file: " + ec.message();
      return false;
    }
    llvm::sys::Process::SafelyCloseFileDescriptor(fd);
    return true;
  };

  // Weights skip LLVM: their bytes go straight into an object of their own.
  SmallString<128> constantsObject;
  size_t numConstants = 0;
  if (emit == Emit::SharedObject && !inlineConstants) {
    TimingScope scope = timing.nest("Write constants");
    if (!temporaryFile("moe-constants", "o", constantsObject))
      return fail(error);
    FailureOr<size_t> written = moe::writeConstantsObject(
        *module, constantsObject, moe::kLargeConstantBytes,
        hugePageWeights ? moe::kHugePageConstantBytes : 0, error);
    if (failed(written))
      return fail(error);
    numConstants = *written;
    if (numConstants != 0)
      progress.done("wrote " + Twine(numConstants) +
                    " weights to their object");
  }
  llvm::FileRemover removeConstantsObject(constantsObject);
  llvm::LLVMContext llvmContext;
  // A shared object's LLVM work runs in parts on threads; the LLVM IR and
  // object outputs are one module. Constructors (a cuda module's image
  // registration) keep the module whole.
  unsigned threads =
      emit == Emit::SharedObject
          ? std::max(1u,
                     codegenThreads.getNumOccurrences()
                         ? unsigned(codegenThreads)
                         : std::min(8u, std::thread::hardware_concurrency()))
          : 1;
  std::unique_ptr<llvm::Module> llvmModule = moe::translateAndOptimize(
      *module, llvmContext, **machine, optLevel, timing,
      /*optimize=*/threads == 1);
  if (!llvmModule)
    return 1;
  if (threads > 1 && llvmModule->getNamedGlobal("llvm.global_ctors")) {
    threads = 1;
    TimingScope scope = timing.nest("LLVM optimization");
    moe::optimizeModule(*llvmModule, **machine, optLevel);
  }
  if (threads == 1)
    progress.done("optimised the LLVM IR");
  // Everything left is LLVM's: the MLIR module and context (hundreds of
  // megabytes of weights for a whole model) are freed before code
  // generation and the constants' object, keeping the peak near one copy.
  module = nullptr;
  diagHandler.reset();
  contextStorage.reset();
  if (emit == Emit::LLVM)
    return writeText([&](raw_ostream &os) { llvmModule->print(os, nullptr); });

  // Four parts a thread, the largest first, balance the threads around the
  // entry function (the largest part, which cannot be split).
  unsigned objectCount = threads > 1 ? 4 * threads : 1;
  std::vector<std::string> objects;
  std::vector<llvm::FileRemover> removeTemps(objectCount);
  if (emit == Emit::SharedObject) {
    for (unsigned i = 0; i < objectCount; ++i) {
      SmallString<128> tempObject;
      if (!temporaryFile("moe-compile", "o", tempObject))
        return fail(error);
      removeTemps[i].setFile(tempObject);
      objects.push_back(std::string(tempObject));
    }
  } else {
    objects.push_back(outputFile);
  }
  if (threads > 1) {
    TimingScope scope = timing.nest(
        llvm::formatv("LLVM optimization and code generation ({0} threads)",
                      threads)
            .str());
    if (failed(moe::optimizeAndEmitObjects(std::move(llvmModule), options,
                                           optLevel, threads, objects, error)))
      return fail(error);
    progress.done(llvm::formatv("optimised the LLVM IR and generated code "
                                "({0} threads)",
                                threads));
  } else {
    TimingScope scope = timing.nest("Code generation");
    if (failed(moe::emitObjectFile(*llvmModule, **machine, objects[0], error)))
      return fail(error);
    progress.done("generated code");
  }
  if (emit == Emit::Object)
    return 0;
  if (numConstants != 0)
    objects.push_back(std::string(constantsObject));
  TimingScope scope = timing.nest("Link");
  if (failed(moe::linkSharedObject(objects, outputFile, options, error)))
    return fail(error);
  progress.done(llvm::formatv("linked '{0}', {1:f1} s in all",
                              StringRef(outputFile), progress.total()));
  return 0;
}
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
#if defined(__GLIBC__)
  // Weights (MBs each) are allocated and freed through the whole compile;
  // a fixed mmap threshold returns each freed one to the system at once
  // (glibc's adaptive threshold would keep them in the heap, and the peak).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  return compile(argc, argv);
}
