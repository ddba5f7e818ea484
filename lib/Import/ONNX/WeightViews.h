//===- WeightViews.h - Fold reshapes and slices of weights ------*- C++ -*-===//
//
// Model code often takes an expert's weight as a view of a fused parameter
// (DBRX: `w1.view(E, I, H).chunk(E)[e].t()`). torch.onnx.export folds such
// views into initializers of their own when their sizes are constants, but
// with dynamic axes the sizes come from `Shape` of the inputs, and the graph
// keeps `Reshape`/`Slice`/`Squeeze`/`Transpose` chains over the parameter.
// The raising matchers want weights as initializers, so these chains are
// folded first, wherever their parameters do not depend on the dynamic
// sizes.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_WEIGHTVIEWS_H
#define MOE_MLIR_LIB_IMPORT_ONNX_WEIGHTVIEWS_H

#include "GraphIndex.h"

#include <onnx/onnx_pb.h>

namespace mlir::moe::onnx_import {

/// Replaces chains of layout ops (Identity, Reshape, Flatten, Squeeze,
/// Unsqueeze, Slice, Transpose, Split, Gather of constant indices) over an
/// initializer by initializers holding their results, and `Shape` of such a
/// result by its constant value. A parameter (a shape, slice bounds, axes)
/// is folded only when it evaluates to the same value with the graph's
/// dynamic sizes bound to two different sample sizes. Returns the number of
/// nodes folded; the initializers they were views of that no node reads
/// any more are dropped. A Reshape's target may hold one size read off the
/// activations: the element count determines it.
int64_t foldWeightViews(onnx::GraphProto &graph, int64_t opset,
                        const ExternalDataReader &readExternal);

} // namespace mlir::moe::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_WEIGHTVIEWS_H
