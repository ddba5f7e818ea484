//===- Raising.h - Decomposed MoE subgraphs into fused MoE nodes -*- C++ -*-===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_RAISING_H
#define MOE_MLIR_LIB_IMPORT_ONNX_RAISING_H

#include "GraphIndex.h"
#include "moe-mlir/Import/ONNXImporter.h"

#include "mlir/IR/Location.h"

#include <onnx/onnx_pb.h>

namespace mlir::moe::onnx_import {

/// Finds MoE blocks that an exporter spelled out in standard ops and
/// replaces each with one fused MoE node (plus the stacked expert weights as
/// new initializers), before the graph is imported. Reports what it raised
/// to `options.raisingLog` and warns (at `loc`) about traced exports that
/// hold fewer expert branches than experts.
/// `readExternal` gives the bytes of constants stored as external data.
LogicalResult raiseMoESubgraphs(onnx::ModelProto &model,
                                const ImportOptions &options, Location loc,
                                const ExternalDataReader &readExternal);

} // namespace mlir::moe::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_RAISING_H
