//===- Pipelines.h - moe-mlir lowering pipelines ----------------*- C++ -*-===//

#ifndef MOE_MLIR_PIPELINES_PIPELINES_H
#define MOE_MLIR_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

#include <string>

namespace mlir {
class OpPassManager;

namespace moe {

/// Options every target shares: expert parallelism
/// (docs/ExpertParallel.md) and the routing profile's model
/// transformations (docs/RoutingProfiles.md).
template <typename Derived>
struct SharedPipelineOptions : public PassPipelineOptions<Derived> {
  detail::PassOptions::Option<int64_t> expertParallel{
      *this, "expert-parallel",
      llvm::cl::desc("Spread the experts over this many ranks: an SPMD "
                     "module whose exchanges go through the runtime's "
                     "communicator (MPI, NCCL); 0: a single-process module"),
      llvm::cl::init(0)};
  detail::PassOptions::Option<int64_t> overlapChunks{
      *this, "overlap-chunks",
      llvm::cl::desc("Expert parallelism: chunks (ranges of experts or "
                     "tokens) whose exchanges are pipelined with the experts "
                     "(0: the cost model chooses, 1: no overlap)"),
      llvm::cl::init(0)};
  detail::PassOptions::Option<int64_t> overlapTokens{
      *this, "overlap-tokens",
      llvm::cl::desc("Expert parallelism: tokens per rank the overlap cost "
                     "model assumes when the count is dynamic"),
      llvm::cl::init(256)};
  detail::PassOptions::Option<std::string> overlapModel{
      *this, "overlap-model",
      llvm::cl::desc("Expert parallelism: options of "
                     "-moe-overlap-communication describing the machine "
                     "(e.g. 'bandwidth=400 latency=15 peak-gflops=600000')"),
      llvm::cl::init("")};
  detail::PassOptions::Option<std::string> epDispatch{
      *this, "ep-dispatch",
      llvm::cl::desc("Expert parallelism: send a row per token and expert "
                     "('expert') or per token and destination rank ('rank', "
                     "with the token's ids and weights; fewer bytes when a "
                     "token's experts share a rank)"),
      llvm::cl::init("expert")};
  detail::PassOptions::Option<std::string> routingProfile{
      *this, "routing-profile",
      llvm::cl::desc("Routing profile (moe-run --routing-profile) that "
                     "prune-experts, merge-experts and place-experts read"),
      llvm::cl::init("")};
  detail::PassOptions::Option<int64_t> pruneExperts{
      *this, "prune-experts",
      llvm::cl::desc("Drop this many least-used FFN experts from every "
                     "layer, by the routing profile (-moe-prune-experts)"),
      llvm::cl::init(0)};
  detail::PassOptions::Option<bool> placeExperts{
      *this, "place-experts",
      llvm::cl::desc("Renumber every layer's experts by the routing profile "
                     "so that the expert-parallel ranks share its tokens "
                     "evenly (-moe-place-experts, before sharding)"),
      llvm::cl::init(false)};
  detail::PassOptions::Option<std::string> weightType{
      *this, "weight-type",
      llvm::cl::desc("Store the constant f32 weights of the expert layers "
                     "and of the matmuls as this type ('bf16'; "
                     "-moe-convert-expert-weights, "
                     "-moe-convert-matmul-weights); empty: as the model has "
                     "them"),
      llvm::cl::init("")};
  detail::PassOptions::Option<int64_t> mergeExperts{
      *this, "merge-experts",
      llvm::cl::desc("Fold this many least-used FFN experts of every layer "
                     "into similar ones, by the routing profile "
                     "(-moe-merge-experts)"),
      llvm::cl::init(0)};
};

struct CPUPipelineOptions
    : public SharedPipelineOptions<CPUPipelineOptions> {
  PassOptions::Option<bool> exportABI{
      *this, "export-abi",
      llvm::cl::desc("Record the module manifest and emit the runtime entry "
                     "points (needed for moe-compile's .so)"),
      llvm::cl::init(true)};
  PassOptions::Option<int64_t> gemmRowTile{
      *this, "gemm-row-tile",
      llvm::cl::desc("Rows of C per register block of the expert GEMMs"),
      llvm::cl::init(3)};
  PassOptions::Option<int64_t> gemmColTile{
      *this, "gemm-col-tile",
      llvm::cl::desc("Columns of C per register block of the expert GEMMs"),
      llvm::cl::init(8)};
  PassOptions::Option<int64_t> gemmPackMinRows{
      *this, "gemm-pack-min-rows",
      llvm::cl::desc("Rows from which the GEMMs other than the experts' "
                     "pack panels of the weights for the outer-product "
                     "kernel (0: never)"),
      llvm::cl::init(256)};
  PassOptions::Option<int64_t> expertPackMinRows{
      *this, "expert-pack-min-rows",
      llvm::cl::desc("Rows of an expert from which its GEMMs pack panels "
                     "of the weights for the outer-product kernel (0: "
                     "never)"),
      llvm::cl::init(96)};
  PassOptions::Option<bool> packExpertWeights{
      *this, "pack-expert-weights",
      llvm::cl::desc("Store constant f32 expert weights panel-major at "
                     "compile time (-moe-pack-expert-weights, 64 columns a "
                     "panel; bf16 ones in pairs of k with bf16-dot) so "
                     "that the experts' GEMMs run the outer-product kernel "
                     "without packing; needs 512-bit vectors)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> packMatmulWeights{
      *this, "pack-matmul-weights",
      llvm::cl::desc("Store the constant weights of matmuls outside the "
                     "experts (projections, LM head) panel-major at compile "
                     "time (-moe-pack-matmul-weights) so that they run the "
                     "outer-product kernel at every row count; needs "
                     "512-bit vectors"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> packQuantizedWeights{
      *this, "pack-quantized-weights",
      llvm::cl::desc("With pack-expert-weights and int8-activations, also "
                     "store the quantised experts' constant weights in "
                     "panels of 4-byte words, which the int8 panel kernel "
                     "reads at every row count without rearranging them"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> recordRouting{
      *this, "record-routing",
      llvm::cl::desc("Report every route's expert ids to the runtime's "
                     "routing profile (-moe-record-routing)"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> prefetchExperts{
      *this, "prefetch-experts",
      llvm::cl::desc("Hand every layer's chosen experts, and the next "
                     "layer's guessed ones, to the runtime's expert cache "
                     "to read ahead (-moe-prefetch-experts)"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> emulateCUDAKernels{
      *this, "emulate-cuda-kernels",
      llvm::cl::desc("Testing: lower the stage ops through the cuda target's "
                     "SIMT kernels and run them as host loops"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> fuseAttention{
      *this, "fuse-attention",
      llvm::cl::desc("Compute attention one block of score rows at a time, "
                     "over the keys an additive mask shows some row of the "
                     "block (-moe-fuse-attention)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> widenHalfAccumulators{
      *this, "widen-half-accumulators",
      llvm::cl::desc("Accumulate f16 and bf16 matmuls and reductions in f32, "
                     "rounding each result once "
                     "(-moe-widen-half-accumulators)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> fuseRouter{
      *this, "fuse-router",
      llvm::cl::desc("Compute the router's logits inside the route, a block "
                     "of tokens at a time, from the router weight of a "
                     "MatMul feeding the layer (-moe-fuse-router)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> groupSharedExperts{
      *this, "group-shared-experts",
      llvm::cl::desc("Run shared experts with constant weights as slices of "
                     "the routed experts' size in their grouped schedule "
                     "(-moe-group-shared-experts; off by default: within the "
                     "noise of separate shared experts, benchmarks/RESULTS.md)"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> fuseCombine{
      *this, "fuse-combine",
      llvm::cl::desc("Add each expert row, scaled by its routing weight, to "
                     "its token's output in the second GEMM's epilogue "
                     "(-moe-fuse-combine)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> fuseGather{
      *this, "fuse-gather",
      llvm::cl::desc("Expert GEMMs read the token rows in place through "
                     "dispatch's row tokens instead of a [T*k, H] copy "
                     "(-moe-fuse-gather)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> int8Activations{
      *this, "int8-activations",
      llvm::cl::desc("Quantised experts (at decode, or with a scale per 64 "
                     "weight bytes or more) quantise their input rows "
                     "to int8 and multiply them by the packed weights with "
                     "vpdpbusd (-moe-int8-activations; the target must have "
                     "AVX512-VNNI; about 1% error)"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> vnniDot{
      *this, "vnni-dot",
      llvm::cl::desc("The target has AVX512-VNNI (moe-compile asks it): u8 x "
                     "s8 dot products of four become vpdpbusd "
                     "(-moe-x86-vnni-dot)"),
      llvm::cl::init(false)};
  PassOptions::Option<int64_t> vectorBits{
      *this, "vector-bits",
      llvm::cl::desc("Vector register width in bits (512 for AVX-512)"),
      llvm::cl::init(512)};
  PassOptions::Option<bool> bf16Dot{
      *this, "bf16-dot",
      llvm::cl::desc("The target has AVX512-BF16 (moe-compile asks it): "
                     "bf16 x bf16 GEMMs use vdpbf16ps and f32 -> bf16 "
                     "rounding its instruction; without it, rounding is "
                     "integer arithmetic"),
      llvm::cl::init(false)};
};

/// moe (tensor level) -> LLVM dialect for the host CPU: decomposition,
/// bufferization (which lowers the moe stage ops), caller-allocated results,
/// deallocation, and conversion of everything to the LLVM dialect.
void buildCPULoweringPipeline(OpPassManager &pm,
                              const CPUPipelineOptions &options);

struct CUDAPipelineOptions
    : public SharedPipelineOptions<CUDAPipelineOptions> {
  PassOptions::Option<bool> exportABI{
      *this, "export-abi",
      llvm::cl::desc("Record the module manifest and emit the runtime entry "
                     "points (needed for moe-compile's .so)"),
      llvm::cl::init(true)};
  PassOptions::Option<std::string> chip{
      *this, "chip", llvm::cl::desc("GPU architecture (sm_80, sm_89, sm_90)"),
      llvm::cl::init("sm_90")};
  PassOptions::Option<std::string> features{
      *this, "features",
      llvm::cl::desc("PTX features (default: the PTX ISA the chip needs)"),
      llvm::cl::init("")};
  PassOptions::Option<std::string> binaryFormat{
      *this, "binary-format",
      llvm::cl::desc("What the module embeds: isa (PTX, JIT-compiled by the "
                     "driver), bin (cubin, needs ptxas), fatbin, or executor "
                     "(the gpu.modules stay, lowered to NVVM, for moe-compile "
                     "to build into images of the moe GPU executor)"),
      llvm::cl::init("isa")};
  PassOptions::Option<int64_t> threadsPerBlock{
      *this, "threads-per-block",
      llvm::cl::desc("Threads per block of the per-token and elementwise "
                     "kernels"),
      llvm::cl::init(128)};
  PassOptions::Option<bool> tensorCores{
      *this, "tensor-cores",
      llvm::cl::desc("mma.sync tensor-core GEMMs for f16/bf16 experts"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> sharedMemoryStages{
      *this, "shared-memory-stages",
      llvm::cl::desc("Tensor-core GEMMs with K % 8 == 0 stage their operands "
                     "in shared memory (cp.async pipeline, ldmatrix); off: "
                     "fragments loaded from global memory"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> testMisplaceFragment{
      *this, "test-misplace-fragment",
      llvm::cl::desc("Testing only: a wrong mma.sync A fragment layout in the "
                     "tensor-core kernels (-convert-moe-to-gpu's option), to "
                     "show that the GPU executor's checks catch it"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> emulateKernels{
      *this, "emulate-kernels",
      llvm::cl::desc("Testing: run every kernel (SIMT variant) as host loops "
                     "and device memory as host memory, and lower the module "
                     "for the CPU (a cpu manifest), to check the cuda "
                     "pipeline without a GPU"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> lowerToLLVM{
      *this, "lower-to-llvm",
      llvm::cl::desc("Lower host and kernels to LLVM/NVVM and serialize the "
                     "kernels (off: stop at gpu.launch kernels on memrefs)"),
      llvm::cl::init(true)};
};

/// CUDAPipelineOptions::binaryFormat for kernels run by the moe GPU executor
/// (tools/gpu-executor) instead of a GPU.
inline constexpr llvm::StringLiteral kExecutorBinaryFormat = "executor";

/// The PTX features of `chip` (the PTX ISA that introduced it).
std::string defaultPTXFeatures(llvm::StringRef chip);

/// Lowers a tensor-level moe module to host LLVM IR that launches NVVM
/// kernels embedded in the module (gpu.binary), through MLIR's GPU runtime
/// ABI (mgpu* functions, provided by libmoe_runtime).
void buildCUDALoweringPipeline(OpPassManager &pm,
                               const CUDAPipelineOptions &options);

/// Registers `moe-lower-to-llvm-cpu` with the pass registry.
void registerMoEPipelines();

} // namespace moe
} // namespace mlir

#endif // MOE_MLIR_PIPELINES_PIPELINES_H
