//===- GraphIndex.h - Producers, consumers, constants of an ONNX graph ---===//
//
// Shared by the matchers that raise decomposed MoE blocks (Raising.cpp) and
// the evaluator that checks what a matched subgraph computes
// (GraphEvaluator.cpp): both walk the ONNX graph before it is imported.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_GRAPHINDEX_H
#define MOE_MLIR_LIB_IMPORT_ONNX_GRAPHINDEX_H

#include "GraphImporter.h"
#include "moe-mlir/Support/Npy.h"

#include "mlir/Support/LLVM.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/MathExtras.h"

#include <cstring>
#include <functional>
#include <optional>

#include <onnx/onnx_pb.h>

namespace mlir::moe::onnx_import {

using onnx::NodeProto;

/// The element count of a tensor's dims; nullopt for a negative size or a
/// count that overflows int64 (a damaged graph may claim either).
inline std::optional<int64_t> elementCount(const onnx::TensorProto &t) {
  int64_t count = 1;
  for (int64_t d : t.dims())
    if (d < 0 || llvm::MulOverflow(count, d, count))
      return std::nullopt;
  return count;
}

/// `axis` (negative: from the end) in [0, rank), or nullopt when out of
/// range (a scalar has no axis).
inline std::optional<int64_t> normalizeAxis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank)
    return std::nullopt;
  return axis < 0 ? axis + rank : axis;
}

/// Reads the bytes of a tensor stored as external data: a view valid while
/// the blob lives, or failure.
using ExternalDataReader =
    std::function<FailureOr<AsmResourceBlob>(const onnx::TensorProto &)>;

/// Producers, consumers and constants of one ONNX graph.
class GraphIndex {
public:
  explicit GraphIndex(const onnx::GraphProto &graph, int64_t opset = 17,
                      ExternalDataReader readExternal = nullptr)
      : graph(graph), opset(opset), readExternal(std::move(readExternal)) {
    for (const auto &t : graph.initializer())
      constants[t.name()] = &t;
    for (const auto &[i, node] : llvm::enumerate(graph.node())) {
      for (const std::string &out : node.output())
        producers[out] = &node;
      for (const std::string &in : node.input())
        if (!in.empty())
          consumers[in].push_back(&node);
      if (node.op_type() == "Constant" && node.domain().empty() &&
          node.output_size() == 1)
        if (const onnx::AttributeProto *a = findAttribute(node, "value"))
          constants[node.output(0)] = &a->t();
    }
  }

  const NodeProto *producer(const std::string &name) const {
    auto it = producers.find(name);
    return it == producers.end() ? nullptr : it->second;
  }
  ArrayRef<const NodeProto *> users(const std::string &name) const {
    auto it = consumers.find(name);
    return it == consumers.end() ? ArrayRef<const NodeProto *>()
                                 : ArrayRef<const NodeProto *>(it->second);
  }
  const onnx::TensorProto *constant(const std::string &name) const {
    auto it = constants.find(name);
    return it == constants.end() ? nullptr : it->second;
  }
  /// Whether `pred` holds for the raw bytes of `t`: its raw_data, or its
  /// external data read through the reader; false when it has neither.
  bool withRawBytes(const onnx::TensorProto &t,
                    llvm::function_ref<bool(ArrayRef<char>)> pred) const {
    if (t.data_location() != onnx::TensorProto::EXTERNAL)
      return t.has_raw_data() &&
             pred(ArrayRef<char>(t.raw_data().data(), t.raw_data().size()));
    if (!readExternal)
      return false;
    FailureOr<AsmResourceBlob> blob = readExternal(t);
    return succeeded(blob) && pred(blob->getData());
  }
  bool isInitializer(const std::string &name) const {
    const onnx::TensorProto *t = constant(name);
    return t && !producer(name);
  }
  /// The integer contents of a small int64/int32 constant.
  std::optional<SmallVector<int64_t>> ints(const std::string &name) const {
    const onnx::TensorProto *t = constant(name);
    // Data left in a file is large: not the shape arithmetic read here.
    if (!t || t->data_location() == onnx::TensorProto::EXTERNAL)
      return std::nullopt;
    // Raw little-endian data of `width`-byte integers, or the typed field.
    auto fromRaw = [&](auto zero) {
      SmallVector<int64_t> out;
      const std::string &raw = t->raw_data();
      for (size_t i = 0; i + sizeof(zero) <= raw.size(); i += sizeof(zero)) {
        decltype(zero) v;
        std::memcpy(&v, raw.data() + i, sizeof(zero));
        out.push_back(v);
      }
      return out;
    };
    if (t->data_type() == onnx::TensorProto::INT64)
      return t->has_raw_data() ? fromRaw(int64_t())
                               : SmallVector<int64_t>(t->int64_data().begin(),
                                                      t->int64_data().end());
    if (t->data_type() == onnx::TensorProto::INT32)
      return t->has_raw_data() ? fromRaw(int32_t())
                               : SmallVector<int64_t>(t->int32_data().begin(),
                                                      t->int32_data().end());
    return std::nullopt;
  }
  /// A scalar float constant: f32, f64, or the f16/bf16 of half-precision
  /// exports (raw bits, or one per int32_data entry).
  std::optional<double> scalar(const std::string &name) const {
    const onnx::TensorProto *t = constant(name);
    if (!t || elementCount(*t) != 1 ||
        t->data_location() == onnx::TensorProto::EXTERNAL)
      return std::nullopt;
    const std::string &raw = t->raw_data();
    auto fromRaw = [&](auto zero) -> std::optional<decltype(zero)> {
      if (raw.size() != sizeof(zero))
        return std::nullopt;
      decltype(zero) v;
      std::memcpy(&v, raw.data(), sizeof(zero));
      return v;
    };
    switch (t->data_type()) {
    case onnx::TensorProto::FLOAT:
      if (t->has_raw_data())
        return fromRaw(float());
      return t->float_data_size() == 1 ? std::optional<double>(t->float_data(0))
                                       : std::nullopt;
    case onnx::TensorProto::DOUBLE:
      if (t->has_raw_data())
        return fromRaw(double());
      return t->double_data_size() == 1
                 ? std::optional<double>(t->double_data(0))
                 : std::nullopt;
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::BFLOAT16: {
      std::optional<uint16_t> bits =
          t->has_raw_data() ? fromRaw(uint16_t())
          : t->int32_data_size() == 1
              ? std::optional<uint16_t>(uint16_t(t->int32_data(0)))
              : std::nullopt;
      if (!bits)
        return std::nullopt;
      return t->data_type() == onnx::TensorProto::FLOAT16
                 ? ::moe::npy::halfToDouble(*bits)
                 : ::moe::npy::bf16ToDouble(*bits);
    }
    default:
      return std::nullopt;
    }
  }
  /// Dimensions of an initializer.
  SmallVector<int64_t> dims(const std::string &name) const {
    const onnx::TensorProto *t = constant(name);
    return t ? SmallVector<int64_t>(t->dims().begin(), t->dims().end())
             : SmallVector<int64_t>();
  }

  const onnx::GraphProto &graph;
  /// The model's ai.onnx opset (ops such as Softmax changed with it).
  int64_t opset;

private:
  ExternalDataReader readExternal;
  llvm::StringMap<const NodeProto *> producers;
  llvm::StringMap<SmallVector<const NodeProto *, 2>> consumers;
  llvm::StringMap<const onnx::TensorProto *> constants;
};

} // namespace mlir::moe::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_GRAPHINDEX_H
