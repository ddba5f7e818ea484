//===- GraphEvaluator.h - Run a small part of an ONNX graph on samples -*- C++ -*-===//
//
// Raising decides what a decomposed router computes by running it: the
// subgraph from the router logits to the chosen experts and their weights is
// evaluated here, in float64, on sample logits, and compared with moe.route's
// reference semantics. That holds whatever spelling the exporter chose
// (masked_fill, scatter, gather, argmax, sorted or unsorted top-k) and
// rejects look-alikes. Only the ops routers are built from are supported;
// anything else makes the evaluation fail (and the block is not raised).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_GRAPHEVALUATOR_H
#define MOE_MLIR_LIB_IMPORT_ONNX_GRAPHEVALUATOR_H

#include "GraphIndex.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mlir::moe::onnx_import {

/// A concrete tensor: row-major values held as double (ints and bools are
/// exact there at the sizes routers use), or only a shape (the tokens, whose
/// values the router subgraph must not read).
struct EvalTensor {
  enum class Kind { Float, Int, Bool };
  std::vector<int64_t> shape;
  std::vector<double> data;
  Kind kind = Kind::Float;
  bool shapeOnly = false;

  int64_t numel() const;
};

/// Evaluates values of one ONNX graph from bound values, constants and the
/// producers of everything else.
class GraphEvaluator {
public:
  GraphEvaluator(const GraphIndex &graph, int64_t opset)
      : graph(graph), opset(opset) {}

  /// Gives `name` a value: evaluation stops there.
  void bind(const std::string &name, EvalTensor value);
  /// The value of `name`; nullopt when it cannot be evaluated (an op that is
  /// not supported, a value read that is only a shape, a graph input that
  /// was not bound, too much work), with the reason in `failure()`.
  std::optional<EvalTensor> evaluate(const std::string &name);
  const std::string &failure() const { return why; }
  /// Forgets the last failure so that other values can be asked for; the
  /// values computed so far (never those of a node that failed) are kept.
  void clearFailure() { why.clear(); }
  /// The value computed or bound for `name`, null when there is none.
  const EvalTensor *lookup(const std::string &name) const {
    auto it = values.find(name);
    return it == values.end() ? nullptr : &it->second;
  }
  /// The nodes evaluated so far.
  const std::vector<const NodeProto *> &visited() const { return nodes; }

private:
  /// Runs one node whose inputs all have values; its outputs get theirs
  /// only when it succeeds.
  bool run(const NodeProto &node);
  /// Computes the node's outputs into `produced`.
  bool compute(const NodeProto &node);
  bool fail(const std::string &message);

  const GraphIndex &graph;
  int64_t opset;
  std::map<std::string, EvalTensor> values;
  /// The outputs of the node being run: `values` (which its inputs point
  /// into) changes only after it has run.
  std::vector<std::pair<std::string, EvalTensor>> produced;
  std::vector<const NodeProto *> nodes;
  std::string why;
  int64_t work = 0;
};

} // namespace mlir::moe::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_GRAPHEVALUATOR_H
