//===- BufferizableOpInterfaceImpl.h - moe op bufferization -----*- C++ -*-===//

#ifndef MOE_MLIR_TRANSFORMS_BUFFERIZABLEOPINTERFACEIMPL_H
#define MOE_MLIR_TRANSFORMS_BUFFERIZABLEOPINTERFACEIMPL_H

namespace mlir {
class DialectRegistry;

namespace moe {
/// Attaches BufferizableOpInterface to moe.route, moe.dispatch, moe.expert and
/// moe.combine. Bufferizing them lowers them: routing, dispatch and combine
/// become memref loop nests, the expert FFN per-expert linalg contractions.
/// moe.layer has no model; decompose it first (-moe-decompose-layer).
void registerBufferizableOpInterfaceExternalModels(DialectRegistry &registry);
} // namespace moe
} // namespace mlir

#endif // MOE_MLIR_TRANSFORMS_BUFFERIZABLEOPINTERFACEIMPL_H
