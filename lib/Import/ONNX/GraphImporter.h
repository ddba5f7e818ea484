//===- GraphImporter.h - State shared by the ONNX node importers -*- C++ -*-===//
//
// The importer walks an ONNX graph in order and turns each node into MLIR
// ops; node importers (MoENodes.cpp for com.microsoft.MoE/QMoE,
// StandardOps.cpp for the ai.onnx ops) read their inputs and attributes and
// define their outputs through this class.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_GRAPHIMPORTER_H
#define MOE_MLIR_LIB_IMPORT_ONNX_GRAPHIMPORTER_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/Location.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/StringMap.h"

#include <optional>
#include <string>

#include "ModelFile.h"

#include <onnx/onnx_pb.h>

namespace mlir::moe::onnx_import {

/// A node attribute by name, or null.
const onnx::AttributeProto *findAttribute(const onnx::NodeProto &node,
                                          llvm::StringRef name);

/// The graph-wide state of one import: the builder (inserting into the
/// graph's function) and the ONNX value name -> MLIR value map.
class GraphImporter {
public:
  GraphImporter(llvm::StringRef modelPath, MLIRContext *context);

  MLIRContext *getContext() const { return context; }
  OpBuilder &getBuilder() { return builder; }
  llvm::StringRef getModelPath() const { return modelPath; }
  Location getFileLoc() const { return fileLoc; }
  /// The model's ai.onnx opset version (some ops changed their inputs or
  /// semantics between versions).
  int64_t getOpset() const { return opset; }
  void setOpset(int64_t version) { opset = version; }

  /// The value named `name`, or null when nothing defined it.
  Value lookup(llvm::StringRef name) const {
    auto it = values.find(name);
    return it == values.end() ? Value() : it->second;
  }
  void define(llvm::StringRef name, Value value) { values[name] = value; }

  /// The MLIR element type of an ONNX TensorProto::DataType; reports an
  /// error naming `what` for types the importer does not know.
  FailureOr<Type> elementType(int32_t onnxType, llvm::StringRef what);

  /// An arith.constant holding the initializer's data (raw, typed fields or
  /// external file): a resource blob from `resourceMinBytes` bytes on.
  /// With `ownedRawData` (the tensor's raw_data, which the caller gives up),
  /// a resource takes those bytes without a copy.
  FailureOr<Value> importInitializer(const onnx::TensorProto &tensor,
                                     std::string *ownedRawData = nullptr);
  /// The files the model's tensors are read from (mapped once each).
  ModelFiles &files() { return modelFiles; }
  /// Constants of at least this many bytes are imported as resource blobs.
  void setResourceMinBytes(uint64_t bytes) { resourceMinBytes = bytes; }

  /// Frees an initializer that `node` was the last reader of: its constant
  /// is erased (when nothing uses it) and its blob released. Importers that
  /// copy weights into a new layout call this so that the old and the new
  /// layout are never held together for the whole model.
  void releaseInitializer(llvm::StringRef name);
  /// How many nodes read `name` (counted once, before the nodes import).
  void setReaderCounts(llvm::StringMap<int> counts) { readers = std::move(counts); }

  InFlightDiagnostic error() { return emitError(fileLoc); }

  /// A view of the bytes an external-data tensor names in its file (all
  /// of them, whatever its shape says), or a message saying why there is
  /// none. Reports nothing: the raising's matchers read constants they may
  /// do without.
  FailureOr<AsmResourceBlob> viewExternalData(const onnx::TensorProto &tensor,
                                              std::string &message);

private:
  /// A view of an external-data tensor's `expected` bytes in its file.
  FailureOr<AsmResourceBlob> externalData(const onnx::TensorProto &tensor,
                                          size_t expected);
  FailureOr<std::string> tensorBytes(const onnx::TensorProto &tensor,
                                     size_t expected,
                                     std::string *ownedRawData = nullptr);

  std::string modelPath;
  MLIRContext *context;
  OpBuilder builder;
  Location fileLoc;
  llvm::StringMap<Value> values;
  llvm::StringMap<int> readers;
  ModelFiles modelFiles;
  int64_t opset = 0;
  uint64_t resourceMinBytes = UINT64_MAX;
};

/// What a node importer sees: the node, its location (the node's name) and
/// helpers for inputs, attributes and errors that name the node and op.
class NodeContext {
public:
  NodeContext(GraphImporter &graph, const onnx::NodeProto &node, Location loc)
      : graph(graph), node(node), loc(loc) {}

  GraphImporter &graph;
  const onnx::NodeProto &node;
  Location loc;

  OpBuilder &builder() { return graph.getBuilder(); }
  int64_t opset() const { return graph.getOpset(); }
  /// "domain.OpType", with ai.onnx for the default domain.
  std::string opName() const;
  /// Emits "node 'NAME' (DOMAIN.OP): MESSAGE" and returns failure.
  LogicalResult fail(const llvm::Twine &message);

  int numInputs() const { return node.input_size(); }
  /// Input `i`, or null when it is absent (past the end or named "").
  /// Fails with a diagnostic when the name is set but nothing defined it.
  FailureOr<Value> optionalInput(int i);
  /// Input `i`; fails with a diagnostic when absent.
  FailureOr<Value> input(int i);

  const onnx::AttributeProto *attribute(llvm::StringRef name) const {
    return findAttribute(node, name);
  }
  int64_t intAttr(llvm::StringRef name, int64_t defaultValue) const;
  std::optional<double> floatAttr(llvm::StringRef name) const;
  std::optional<std::string> stringAttr(llvm::StringRef name) const;
  std::optional<llvm::SmallVector<int64_t>> intsAttr(llvm::StringRef name) const;
  /// Fails naming the first attribute not in `known`.
  LogicalResult checkAttributes(llvm::ArrayRef<llvm::StringRef> known);

  /// Defines output `i` (skipped when the output is unnamed).
  void setOutput(int i, Value value);
};

/// com.microsoft.MoE (MoENodes.cpp).
LogicalResult importMoENode(NodeContext &node);
/// com.microsoft.QMoE, quantised experts (MoENodes.cpp).
LogicalResult importQMoENode(NodeContext &node);

/// moe_mlir.RaisedMoE, the node Raising.cpp puts in place of a decomposed
/// MoE block (RaisedMoE.cpp).
LogicalResult importRaisedMoENode(NodeContext &node);

/// The ai.onnx ops, plus the com.microsoft ops of ONNX Runtime's model
/// builder and the normalisations its exporters emit (StandardOps*.cpp,
/// ContribOps.cpp). Fails with "op is not supported yet" for ops it does not
/// know.
LogicalResult importStandardNode(NodeContext &node);

} // namespace mlir::moe::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_GRAPHIMPORTER_H
