//===- Pipelines.cpp - moe-mlir lowering pipelines --------------------------===//

#include "moe-mlir/Pipelines/Pipelines.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/Pipelines/Passes.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace {

/// What the targets choose of the tensor-level passes; the defaults are the
/// unfused stages (what the cuda target's kernels take).
struct TensorLevelOptions {
  bool exportABI = true;
  StringRef target;
  bool fuseAttention = false;
  bool widenHalfAccumulators = false;
  bool bf16Rows = false;
  int64_t expertParallel = 0;
  int64_t overlapChunks = 1;
  int64_t overlapTokens = 256;
  StringRef epDispatch = "expert";
  StringRef overlapModel;
  bool fuseRouter = false;
  bool groupSharedExperts = false;
  bool fuseCombine = false;
  bool fuseGather = false;
  bool int8Activations = false;
  bool packExpertWeights = false;
  bool packMatmulWeights = false;
  /// bf16 weights too, in pairs of k (only the AVX512-BF16 kernel reads
  /// them).
  bool packBf16Weights = false;
  bool packQuantizedWeights = false;
  bool recordRouting = false;
  bool prefetchExperts = false;
  std::string routingProfile;
  int64_t pruneExperts = 0;
  int64_t mergeExperts = 0;
  bool placeExperts = false;
  std::string weightType;
};

/// The tensor-level start every target shares: the manifest, the layer
/// split into its four stages, one tensor per function result.
void addTensorLevelPasses(OpPassManager &pm, const TensorLevelOptions &o) {
  // Placement renumbers the experts that sharding then cuts into blocks; it
  // reads the router's rows, so the router becomes the layer's weight first.
  if (o.placeExperts && o.expertParallel > 1) {
    if (o.fuseRouter)
      pm.addPass(moe::createMoEFuseRouter());
    moe::MoEPlaceExpertsOptions place;
    place.profile = o.routingProfile;
    place.ranks = o.expertParallel;
    // Rows that travel once per token and rank make experts chosen
    // together cheaper on one rank.
    place.coactivated = o.epDispatch == "rank";
    pm.addPass(moe::createMoEPlaceExperts(place));
  }
  // Sharding changes the signatures each rank sees, so it comes before the
  // manifest.
  if (o.expertParallel > 0) {
    moe::MoEShardExpertsOptions shard;
    shard.ranks = o.expertParallel;
    pm.addPass(moe::createMoEShardExperts(shard));
  }
  // The manifest describes the signatures the caller sees, so it is taken
  // before anything rewrites them.
  if (o.exportABI) {
    moe::MoEExportABIOptions abi;
    abi.target = o.target.str();
    pm.addPass(moe::createMoEExportABI(abi));
  }
  // A router MatMul of a layer's input becomes the layer's router weight
  // before decomposition, and one feeding a route after it; before
  // -moe-fuse-elementwise, which would fold the tokens' producer into the
  // MatMul.
  if (o.fuseRouter)
    pm.addPass(moe::createMoEFuseRouter());
  // On the layers, whose router weight the fusion above has made theirs.
  if (o.pruneExperts > 0) {
    moe::MoEPruneExpertsOptions prune;
    prune.profile = o.routingProfile;
    prune.prune = o.pruneExperts;
    pm.addPass(moe::createMoEPruneExperts(prune));
  }
  if (o.mergeExperts > 0) {
    moe::MoEMergeExpertsOptions merge;
    merge.profile = o.routingProfile;
    merge.merge = o.mergeExperts;
    pm.addPass(moe::createMoEMergeExperts(merge));
  }
  // On the layers, whose routed and shared weights are still theirs, and
  // after pruning and merging, which read the f32 weights.
  if (!o.weightType.empty()) {
    moe::MoEConvertExpertWeightsOptions convert;
    convert.elementType = o.weightType;
    pm.addPass(moe::createMoEConvertExpertWeights(convert));
  }
  moe::MoEDecomposeLayerOptions decompose;
  decompose.bf16Rows = o.bf16Rows;
  decompose.roundF32Rows = !o.weightType.empty();
  decompose.fuseRouter = o.fuseRouter;
  decompose.epDispatch = o.epDispatch.str();
  pm.addPass(moe::createMoEDecomposeLayer(decompose));
  pm.addPass(createCanonicalizerPass());
  // On decomposition's form of the shared experts (before
  // -moe-fuse-elementwise folds their sum into other loops); the combine
  // fusion below then adds their slices in fc2's epilogue with the routed
  // rows.
  if (o.groupSharedExperts)
    pm.addPass(moe::createMoEGroupSharedExperts());
  if (o.fuseRouter)
    pm.addPass(moe::createMoEFuseRouter());
  // The projections' and LM head's weights, once the router's MatMuls are
  // the routes' (their logits stay f32) and before the elementwise fusion
  // folds producers into the contractions' bodies.
  if (!o.weightType.empty()) {
    moe::MoEConvertMatmulWeightsOptions convert;
    convert.elementType = o.weightType;
    pm.addPass(moe::createMoEConvertMatmulWeights(convert));
  }
  // Half-precision models' matmuls and sums: in f32, before the fusions
  // look for contractions and elementwise chains.
  if (o.widenHalfAccumulators)
    pm.addPass(moe::createMoEWidenHalfAccumulators());
  // Chains of elementwise linalg ops around the layers (norms, RoPE,
  // residual adds, activations) become single loops; splat operands become
  // constants in the bodies.
  pm.addPass(moe::createMoEFuseElementwise());
  // Attention one block of score rows at a time (an scf.forall the CPU
  // pipeline turns into a parallel loop).
  if (o.fuseAttention)
    pm.addPass(moe::createMoEFuseAttention());
  if (o.expertParallel > 0 && o.overlapChunks != 1) {
    moe::MoEOverlapCommunicationOptions overlap;
    overlap.chunks = o.overlapChunks;
    overlap.tokens = o.overlapTokens;
    std::unique_ptr<Pass> pass = moe::createMoEOverlapCommunication(overlap);
    // The cost model's machine (bandwidth, latency, ...) as pass options;
    // moe-compile checks the string before it gets here.
    if (!o.overlapModel.empty())
      (void)pass->initializeOptions(o.overlapModel, [](const Twine &message) {
        llvm::errs() << "overlap-model: " << message << "\n";
        return failure();
      });
    pm.addNestedPass<func::FuncOp>(std::move(pass));
    pm.addPass(createCanonicalizerPass());
  }
  // After the overlap pass, which splits the stages by chunk; exchanged
  // expert outputs are not fused.
  if (o.fuseCombine) {
    pm.addPass(moe::createMoEFuseCombine());
    pm.addPass(createCanonicalizerPass());
  }
  if (o.fuseGather)
    pm.addPass(moe::createMoEFuseGather());
  // Last: the fusions rebuild moe.expert, and its discardable mark with it.
  if (o.int8Activations)
    pm.addPass(moe::createMoEInt8Activations());
  // Last too: it sets moe.expert's panel_width on experts the fusions have
  // rebuilt.
  if (o.packExpertWeights) {
    moe::MoEPackExpertWeightsOptions pack;
    pack.packBf16 = o.packBf16Weights;
    pack.packQuantized = o.packQuantizedWeights;
    pm.addPass(moe::createMoEPackExpertWeights(pack));
  }
  // After the router fusion, which takes the router's weight, and after
  // -moe-fuse-elementwise, which leaves matmuls by weights as they were.
  if (o.packMatmulWeights) {
    moe::MoEPackMatmulWeightsOptions pack;
    pack.packBf16 = o.packBf16Weights;
    pm.addPass(moe::createMoEPackMatmulWeights(pack));
  }
  // After the fusions, which rebuild the routes and would otherwise meet an
  // extra use of their ids.
  if (o.recordRouting)
    pm.addPass(moe::createMoERecordRouting());
  if (o.prefetchExperts)
    pm.addNestedPass<func::FuncOp>(moe::createMoEPrefetchExperts());
  pm.addNestedPass<func::FuncOp>(moe::createMoECopyRepeatedResults());
}

/// One-shot bufferization with identity layouts at function boundaries, so
/// that the C interface is a plain dense descriptor, and results turned
/// into out-parameters: the runtime allocates outputs (their shapes come
/// from the manifest).
void addBufferizationPasses(OpPassManager &pm) {
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  bufferize.functionBoundaryTypeConversion =
      bufferization::LayoutMapOption::IdentityLayoutMap;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  bufferization::BufferResultsToOutParamsPassOptions outParams;
  outParams.modifyPublicFunctions = true;
  outParams.hoistStaticAllocs = true;
  outParams.hoistDynamicAllocs = true;
  pm.addPass(bufferization::createBufferResultsToOutParamsPass(outParams));
}

/// Loops and buffers on the host to the LLVM dialect, with the runtime
/// entry points.
void addHostLLVMLoweringPasses(OpPassManager &pm, bool exportABI) {
  using namespace moe;
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertMathToLLVMPass());
  // erf and friends have no LLVM intrinsic; they become libm calls.
  pm.addPass(createConvertMathToLibmPass());
  // Also lowers moe.parallel_call (the moe dialect's ConvertToLLVM
  // interface, registered with the dialect by the tools).
  // x86vector ops (vdpbf16ps) have no ConvertToLLVM interface: this pass
  // turns them into LLVM intrinsic calls, with the rest of the vector ops.
  ConvertVectorToLLVMPassOptions vectorToLLVM;
  vectorToLLVM.x86Vector = true;
  pm.addPass(createConvertVectorToLLVMPass(vectorToLLVM));
  // Buffers through the runtime's _mlir_memref_to_llvm_alloc / _free, which
  // keep blocks of 32 MiB or more mapped from call to call
  // (runtime/src/HostBuffers.cpp).
  FinalizeMemRefToLLVMConversionPassOptions memrefToLLVM;
  memrefToLLVM.useGenericFunctions = true;
  pm.addPass(createFinalizeMemRefToLLVMConversionPass(memrefToLLVM));
  pm.addPass(createConvertToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  if (exportABI)
    pm.addPass(createMoEEmitABIEntryPoints());
  pm.addPass(createCanonicalizerPass());
}

} // namespace

void moe::buildCPULoweringPipeline(OpPassManager &pm,
                                   const CPUPipelineOptions &options) {
  TensorLevelOptions tensorLevel;
  tensorLevel.exportABI = options.exportABI;
  tensorLevel.target = "cpu";
  tensorLevel.fuseAttention = options.fuseAttention;
  tensorLevel.widenHalfAccumulators = options.widenHalfAccumulators;
  tensorLevel.expertParallel = options.expertParallel;
  tensorLevel.overlapChunks = options.overlapChunks;
  tensorLevel.overlapTokens = options.overlapTokens;
  tensorLevel.overlapModel = options.overlapModel;
  tensorLevel.epDispatch = options.epDispatch;
  tensorLevel.routingProfile = options.routingProfile;
  tensorLevel.pruneExperts = options.pruneExperts;
  tensorLevel.placeExperts = options.placeExperts;
  tensorLevel.mergeExperts = options.mergeExperts;
  tensorLevel.weightType = options.weightType;
  // The cuda target's kernels (emulated here) take the unfused stages.
  if (!options.emulateCUDAKernels) {
    tensorLevel.bf16Rows = options.bf16Dot;
    tensorLevel.fuseRouter = options.fuseRouter;
    tensorLevel.groupSharedExperts = options.groupSharedExperts;
    tensorLevel.fuseCombine = options.fuseCombine;
    tensorLevel.fuseGather = options.fuseGather;
    tensorLevel.int8Activations = options.int8Activations;
    // The panel-major kernel is AVX-512's.
    tensorLevel.packExpertWeights =
        options.packExpertWeights && options.vectorBits == 512;
    tensorLevel.packMatmulWeights =
        options.packMatmulWeights && options.vectorBits == 512;
    tensorLevel.packBf16Weights = options.bf16Dot;
    tensorLevel.packQuantizedWeights = options.packQuantizedWeights;
    tensorLevel.recordRouting = options.recordRouting;
    tensorLevel.prefetchExperts = options.prefetchExperts;
  }
  addTensorLevelPasses(pm, tensorLevel);
  if (options.emulateCUDAKernels) {
    ConvertMoEToGPUOptions kernels;
    kernels.tensorCores = false;
    pm.addPass(createConvertMoEToGPU(kernels));
    pm.addPass(createMoEGPULaunchesToLoops());
  }

  // Bufferizing the moe stage ops is what lowers them (see
  // BufferizableOpInterfaceImpl.cpp).
  addBufferizationPasses(pm);
  bufferization::BufferDeallocationPipelineOptions dealloc;
  bufferization::buildBufferDeallocationPipeline(pm, dealloc);
  // After deallocation, which takes no intrinsic calls.
  if (options.vnniDot)
    pm.addPass(createMoEX86VnniDot());
  // Expert-parallel modules ask the runtime for their rank.
  pm.addPass(createConvertShardToMoERuntime());
  // The attention tiles' scf.forall: a parallel loop like the others.
  pm.addPass(createForallToParallelLoopPass());
  pm.addPass(createCanonicalizerPass());

  // Expert GEMMs and matmuls by weights get register-tiled vector kernels.
  MoEVectorizeContractionsOptions gemm;
  gemm.rowTile = options.gemmRowTile;
  gemm.colTile = options.gemmColTile;
  gemm.vectorBits = options.vectorBits;
  gemm.bf16Dot = options.bf16Dot;
  gemm.packMinRows = options.gemmPackMinRows;
  gemm.expertPackMinRows = options.expertPackMinRows;
  pm.addPass(createMoEVectorizeContractions(gemm));
  // Copies out of slices would otherwise need MLIR's runner utilities.
  pm.addPass(createMoELowerStridedCopies());
  // The other linalg ops' parallel dimensions run on the worker pool too
  // when they have enough work; their last dimension is a serial loop that
  // LLVM vectorizes.
  pm.addPass(createMoEInterchangeReductions());
  pm.addPass(createConvertLinalgToParallelLoopsPass());
  pm.addPass(createMoEPromoteReductionAccumulators());
  pm.addPass(createMoEFoldExpandShapeCopies());
  pm.addPass(createMoEDistributeParallelLoops());
  pm.addPass(createCanonicalizerPass());
  // f16/bf16 math functions (a half-precision model's softmax and SiLU)
  // computed in f32, where the approximations below apply; otherwise LLVM
  // calls libm's expf per element.
  pm.addPass(math::createMathExtendToSupportedTypes());
  pm.addPass(createMoEApproximateMath());
  pm.addPass(createMoEOutlineParallelLoops());
  // Without AVX512-BF16, LLVM would round f32 to bf16 with a libgcc call
  // that the module does not link against: integer arithmetic instead.
  if (!options.bf16Dot) {
    arith::ArithExpandOpsPassOptions expand;
    expand.includeBf16 = true;
    pm.addPass(arith::createArithExpandOpsPass(expand));
  }
  addHostLLVMLoweringPasses(pm, options.exportABI);
}

std::string moe::defaultPTXFeatures(llvm::StringRef chip) {
  // sm_90a and sm_100 and later need newer PTX than sm_80/sm_89.
  if (chip.starts_with("sm_9") || chip.starts_with("sm_1"))
    return "+ptx80";
  return "+ptx78";
}

/// Upstream's gpu-lower-to-nvvm-pipeline (MLIR 22), spelled out so that the
/// moe GPU executor can take the kernels where that pipeline would
/// serialize them: the executor then runs the very NVVM IR that PTX is
/// generated from. With binary-format=executor the gpu.modules stay, in the
/// LLVM and NVVM dialects, for moe-compile to build into executor images.
static void addNVVMLoweringPasses(OpPassManager &pm,
                                  const moe::CUDAPipelineOptions &options) {
  // Host and kernels: everything to the LLVM dialect but the gpu ops.
  pm.addPass(createConvertNVGPUToNVVMPass());
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(createConvertVectorToSCFPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertNVVMToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  target.features = options.features.empty()
                        ? moe::defaultPTXFeatures(options.chip)
                        : std::string(options.features);
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));
  pm.addPass(createLowerAffinePass());
  pm.addPass(createArithToLLVMConversionPass());
  ConvertIndexToLLVMPassOptions index;
  index.indexBitwidth = 64;
  pm.addPass(createConvertIndexToLLVMPass(index));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());

  // The kernels' gpu ops to NVVM.
  ConvertGpuOpsToNVVMOpsOptions kernels;
  kernels.indexBitwidth = 64;
  pm.addNestedPass<gpu::GPUModuleOp>(createConvertGpuOpsToNVVMOps(kernels));
  pm.addNestedPass<gpu::GPUModuleOp>(createCanonicalizerPass());
  pm.addNestedPass<gpu::GPUModuleOp>(createCSEPass());
  pm.addNestedPass<gpu::GPUModuleOp>(createReconcileUnrealizedCastsPass());

  // Host launches to the mgpu* ABI, kernels to their binary.
  pm.addPass(createGpuToLLVMConversionPass());
  if (options.binaryFormat != moe::kExecutorBinaryFormat) {
    GpuModuleToBinaryPassOptions binary;
    binary.compilationTarget = options.binaryFormat;
    pm.addPass(createGpuModuleToBinaryPass(binary));
  }
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void moe::buildCUDALoweringPipeline(OpPassManager &pm,
                                    const CUDAPipelineOptions &options) {
  // An emulated module runs on the CPU: its manifest says so.
  TensorLevelOptions tensorLevel;
  tensorLevel.exportABI = options.exportABI;
  tensorLevel.target = options.emulateKernels ? "cpu" : "cuda";
  tensorLevel.expertParallel = options.expertParallel;
  tensorLevel.overlapChunks = options.overlapChunks;
  tensorLevel.overlapTokens = options.overlapTokens;
  tensorLevel.overlapModel = options.overlapModel;
  tensorLevel.epDispatch = options.epDispatch;
  tensorLevel.routingProfile = options.routingProfile;
  tensorLevel.pruneExperts = options.pruneExperts;
  tensorLevel.placeExperts = options.placeExperts;
  tensorLevel.mergeExperts = options.mergeExperts;
  tensorLevel.weightType = options.weightType;
  addTensorLevelPasses(pm, tensorLevel);
  // The stage ops become kernels on buffers; what remains is bufferized
  // as on the CPU.
  ConvertMoEToGPUOptions kernels;
  kernels.threadsPerBlock = options.threadsPerBlock;
  // Tensor-core kernels need a warp's threads together; emulated threads
  // run one at a time.
  kernels.tensorCores = options.tensorCores && !options.emulateKernels;
  kernels.sharedMemoryStages = options.sharedMemoryStages;
  kernels.testMisplaceFragment = options.testMisplaceFragment;
  pm.addPass(createConvertMoEToGPU(kernels));
  addBufferizationPasses(pm);
  // No buffer-deallocation pipeline: it rejects GPU ops (no memory-effect
  // interface). -moe-host-buffers-to-gpu frees the device buffers instead.
  // Expert-parallel modules ask the runtime for their rank (a host call).
  pm.addPass(createConvertShardToMoERuntime());
  pm.addPass(createCanonicalizerPass());

  // Whatever linalg is left (reshapes' copies, upstream ops around the
  // layer) runs as one GPU thread per element.
  pm.addPass(createMoELowerStridedCopies());
  // The loops the importer writes (scatters, NonZero) are scf.for nests
  // over buffers: parallel where their iterations are independent, else
  // one thread, so that they too become kernels; so are linalg ops without
  // parallel loops (scalars, sums of everything).
  MoEParallelizeLoopNestsOptions nests;
  nests.wrapSequential = true;
  pm.addPass(createMoEParallelizeLoopNests(nests));
  pm.addPass(createMoEInterchangeReductions());
  pm.addPass(createConvertLinalgToParallelLoopsPass());
  // Each loop as one row-major dimension, of which every block takes
  // threads-per-block consecutive elements, a thread each.
  pm.addPass(createMoECollapseParallelLoops());
  pm.addNestedPass<func::FuncOp>(createParallelLoopTilingPass(
      {options.threadsPerBlock}, /*noMinMaxBounds=*/true));
  pm.addNestedPass<func::FuncOp>(createGpuMapParallelLoopsPass());
  pm.addPass(createConvertParallelLoopToGpuPass());
  // One gpu.module (one binary) for all kernels, the moe stages' included.
  pm.addPass(createMoEGPUKernelModule());
  // Reshapes of dynamic sizes (a [B*S, H] layer result seen as [B, S, H])
  // must not reach -expand-strided-metadata, which crashes on them (see the
  // pass); as on the CPU.
  pm.addPass(createMoEFoldExpandShapeCopies());
  pm.addPass(createMoEHostBuffersToGPU());
  pm.addPass(createCanonicalizerPass());
  if (options.emulateKernels) {
    // The same kernels and host code, with threads as loops and device
    // memory as host memory; the rest is the CPU pipeline's tail.
    pm.addPass(createMoEGPULaunchesToLoops());
    // Hoists the threads' fixed-size scratch out of their alloca scopes and
    // inlines the scopes, which SCF-to-CF could not lower (as on the CPU,
    // where the deallocation pipeline canonicalizes).
    pm.addPass(createCanonicalizerPass());
    if (options.lowerToLLVM)
      addHostLLVMLoweringPasses(pm, options.exportABI);
    return;
  }
  if (!options.lowerToLLVM)
    return;
  // One stream per call: allocations, copies and launches are ordered by
  // async tokens rather than synchronised one by one.
  pm.addPass(createGpuKernelOutliningPass());
  pm.addNestedPass<func::FuncOp>(createGpuAsyncRegionPass());

  addNVVMLoweringPasses(pm, options);
  if (options.exportABI)
    pm.addPass(createMoEEmitABIEntryPoints());
  pm.addPass(createCanonicalizerPass());
}

void moe::registerMoEPipelines() {
  PassPipelineRegistration<CUDAPipelineOptions>(
      "moe-lower-to-cuda",
      "Lower moe (tensor level) to host LLVM IR launching NVVM kernels that "
      "are embedded in the module, with the runtime entry points",
      buildCUDALoweringPipeline);
  PassPipelineRegistration<CPUPipelineOptions>(
      "moe-lower-to-llvm-cpu",
      "Lower moe (tensor level) to the LLVM dialect for the host CPU, with "
      "the runtime entry points",
      buildCPULoweringPipeline);
}
