//===- MoEToLLVM.h - moe runtime ops to the LLVM dialect --------*- C++ -*-===//

#ifndef MOE_MLIR_CONVERSION_MOETOLLVM_H
#define MOE_MLIR_CONVERSION_MOETOLLVM_H

namespace mlir {
class DialectRegistry;
class LLVMTypeConverter;
class RewritePatternSet;

namespace moe {
/// Lowers moe.parallel_call to a packed context, a trampoline and a call of
/// the runtime's `moe_rt_parallel_for`.
void populateMoEToLLVMConversionPatterns(LLVMTypeConverter &converter,
                                         RewritePatternSet &patterns);

/// Lets `-convert-to-llvm` lower the moe dialect's runtime-level ops.
void registerConvertMoEToLLVMInterface(DialectRegistry &registry);
} // namespace moe
} // namespace mlir

#endif // MOE_MLIR_CONVERSION_MOETOLLVM_H
