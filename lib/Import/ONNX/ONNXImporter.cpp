//===- ONNXImporter.cpp - ONNX models into the moe dialect ------------------===//
//
// Parses the protobuf with Debian's onnx_proto library and builds one
// function per graph. This first slice knows com.microsoft.MoE, which maps
// onto moe.layer almost attribute for attribute; every other op is reported
// by name until the standard-op lowering lands.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Import/ONNXImporter.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <cstring>

#include <onnx/onnx_pb.h>

using namespace mlir;
using namespace mlir::moe;

namespace {

class Importer {
public:
  Importer(StringRef path, MLIRContext *context)
      : path(path), context(context), builder(context),
        fileLoc(FileLineColLoc::get(context, path, 0, 0)) {}

  OwningOpRef<ModuleOp> run();

private:
  InFlightDiagnostic error() { return emitError(fileLoc); }
  FailureOr<Type> elementType(int32_t onnxType, StringRef what);
  FailureOr<Value> importInitializer(const onnx::TensorProto &tensor);
  FailureOr<std::string> tensorBytes(const onnx::TensorProto &tensor,
                                     size_t expected);
  LogicalResult importNode(const onnx::NodeProto &node);
  LogicalResult importMoE(const onnx::NodeProto &node, Location loc);
  Value lookup(const std::string &name) {
    auto it = values.find(name);
    return it == values.end() ? Value() : it->second;
  }

  StringRef path;
  MLIRContext *context;
  OpBuilder builder;
  Location fileLoc;
  llvm::StringMap<Value> values;
};

FailureOr<Type> Importer::elementType(int32_t onnxType, StringRef what) {
  switch (onnxType) {
  case onnx::TensorProto::FLOAT:
    return Type(builder.getF32Type());
  case onnx::TensorProto::FLOAT16:
    return Type(builder.getF16Type());
  case onnx::TensorProto::BFLOAT16:
    return Type(builder.getBF16Type());
  case onnx::TensorProto::DOUBLE:
    return Type(builder.getF64Type());
  case onnx::TensorProto::INT32:
    return Type(builder.getI32Type());
  case onnx::TensorProto::INT64:
    return Type(builder.getI64Type());
  default:
    error() << what << ": unsupported ONNX element type "
            << onnx::TensorProto::DataType_Name(
                   static_cast<onnx::TensorProto::DataType>(onnxType));
    return failure();
  }
}

/// The little-endian bytes of `tensor`, from raw_data, the typed fields or
/// an external file.
FailureOr<std::string> Importer::tensorBytes(const onnx::TensorProto &tensor,
                                             size_t expected) {
  const std::string &name = tensor.name();
  std::string bytes;
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    uint64_t offset = 0, length = expected;
    for (const auto &entry : tensor.external_data()) {
      if (entry.key() == "location")
        location = entry.value();
      else if (entry.key() == "offset")
        offset = std::strtoull(entry.value().c_str(), nullptr, 10);
      else if (entry.key() == "length")
        length = std::strtoull(entry.value().c_str(), nullptr, 10);
    }
    if (location.empty() || llvm::sys::path::is_absolute(location) ||
        StringRef(location).contains("..")) {
      error() << "initializer '" << name
              << "': external data needs a relative 'location' inside the "
                 "model's folder, got '"
              << location << "'";
      return failure();
    }
    SmallString<256> file(llvm::sys::path::parent_path(path));
    llvm::sys::path::append(file, location);
    auto buffer = llvm::MemoryBuffer::getFile(file, /*IsText=*/false,
                                              /*RequiresNullTerminator=*/false);
    if (!buffer) {
      error() << "initializer '" << name << "': cannot read external data '"
              << file << "': " << buffer.getError().message();
      return failure();
    }
    if (length != expected || offset + length > (*buffer)->getBufferSize()) {
      error() << "initializer '" << name << "': external data '" << file
              << "' holds " << (*buffer)->getBufferSize() << " bytes; need "
              << expected << " at offset " << offset;
      return failure();
    }
    bytes.assign((*buffer)->getBufferStart() + offset, length);
  } else if (tensor.has_raw_data()) {
    bytes = tensor.raw_data();
  } else {
    auto append = [&](const void *data, size_t size) {
      bytes.append(static_cast<const char *>(data), size);
    };
    switch (tensor.data_type()) {
    case onnx::TensorProto::FLOAT:
      append(tensor.float_data().data(), tensor.float_data_size() * 4);
      break;
    case onnx::TensorProto::DOUBLE:
      append(tensor.double_data().data(), tensor.double_data_size() * 8);
      break;
    case onnx::TensorProto::INT64:
      append(tensor.int64_data().data(), tensor.int64_data_size() * 8);
      break;
    case onnx::TensorProto::INT32:
      append(tensor.int32_data().data(), tensor.int32_data_size() * 4);
      break;
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::BFLOAT16:
      // 16-bit values travel in the low half of int32_data.
      for (int32_t v : tensor.int32_data()) {
        uint16_t bits = static_cast<uint16_t>(v);
        append(&bits, 2);
      }
      break;
    default:
      break;
    }
  }
  if (bytes.size() != expected) {
    error() << "initializer '" << name << "' has " << bytes.size()
            << " bytes of data but its shape and type need " << expected;
    return failure();
  }
  return bytes;
}

FailureOr<Value> Importer::importInitializer(const onnx::TensorProto &tensor) {
  FailureOr<Type> element =
      elementType(tensor.data_type(), "initializer '" + tensor.name() + "'");
  if (failed(element))
    return failure();
  SmallVector<int64_t> shape(tensor.dims().begin(), tensor.dims().end());
  uint64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && count > (uint64_t(1) << 40) / uint64_t(d))) {
      error() << "initializer '" << tensor.name() << "' has a bad shape";
      return failure();
    }
    count *= d;
  }
  auto type = RankedTensorType::get(shape, *element);
  size_t bytesPer = element->getIntOrFloatBitWidth() / 8;
  FailureOr<std::string> bytes = tensorBytes(tensor, count * bytesPer);
  if (failed(bytes))
    return failure();
  auto attr = DenseElementsAttr::getFromRawBuffer(
      type, ArrayRef<char>(bytes->data(), bytes->size()));
  return arith::ConstantOp::create(builder, fileLoc, type, attr).getResult();
}

/// Swaps the last two dimensions of a rank-3 constant; fails for values
/// that are not constants.
FailureOr<Value> transposeLastTwo(Value value) {
  auto constant = value.getDefiningOp<arith::ConstantOp>();
  auto dense = constant ? dyn_cast<DenseElementsAttr>(constant.getValue())
                        : DenseElementsAttr();
  auto type = dense ? dyn_cast<RankedTensorType>(dense.getType())
                    : RankedTensorType();
  if (!type || type.getRank() != 3)
    return failure();
  int64_t e = type.getDimSize(0), r = type.getDimSize(1),
          c = type.getDimSize(2);
  size_t width = type.getElementTypeBitWidth() / 8;
  ArrayRef<char> src = dense.getRawData();
  if (dense.isSplat() || src.size() != size_t(e * r * c) * width)
    return failure();
  std::vector<char> dst(src.size());
  for (int64_t x = 0; x < e; ++x)
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j)
        std::memcpy(&dst[((x * c + j) * r + i) * width],
                    &src[((x * r + i) * c + j) * width], width);
  auto transposedType =
      RankedTensorType::get({e, c, r}, type.getElementType());
  OpBuilder b(constant);
  return arith::ConstantOp::create(
             b, constant.getLoc(), transposedType,
             DenseElementsAttr::getFromRawBuffer(transposedType, dst))
      .getResult();
}

/// A node attribute by name, or null.
const onnx::AttributeProto *attribute(const onnx::NodeProto &node,
                                      StringRef name) {
  for (const auto &a : node.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

LogicalResult Importer::importMoE(const onnx::NodeProto &node, Location loc) {
  auto fail = [&](const Twine &message) {
    emitError(loc) << "node '" << node.name() << "' (com.microsoft.MoE): "
                   << message;
    return failure();
  };
  // Positional inputs of ONNX Runtime >= 1.23; empty names are absent.
  SmallVector<Value, 8> in(8);
  for (int i = 0; i < node.input_size() && i < 8; ++i) {
    if (node.input(i).empty())
      continue;
    in[i] = lookup(node.input(i));
    if (!in[i])
      return fail("input '" + node.input(i) + "' is not defined");
  }
  if (node.input_size() > 8)
    return fail("more than 8 inputs");
  if (!in[0] || !in[1] || !in[2] || !in[4])
    return fail("needs input, router_probs, fc1_experts_weights and "
                "fc2_experts_weights");

  auto intAttr = [&](StringRef name, int64_t def) {
    const onnx::AttributeProto *a = attribute(node, name);
    return a ? a->i() : def;
  };
  auto floatAttr = [&](StringRef name) -> std::optional<double> {
    const onnx::AttributeProto *a = attribute(node, name);
    if (!a)
      return std::nullopt;
    return static_cast<double>(a->f());
  };
  static const StringRef known[] = {
      "activation_type", "k",           "normalize_routing_weights",
      "use_sparse_mixer", "swiglu_fusion", "swiglu_limit",
      "activation_alpha", "activation_beta"};
  for (const auto &a : node.attribute())
    if (!llvm::is_contained(known, StringRef(a.name())))
      return fail("unsupported attribute '" + a.name() + "'");
  if (intAttr("use_sparse_mixer", 0) != 0)
    return fail("use_sparse_mixer = 1 is not supported yet");

  std::string activationName = "relu";
  if (const onnx::AttributeProto *a = attribute(node, "activation_type"))
    activationName = a->s();
  std::optional<Activation> activation = symbolizeActivation(activationName);
  if (!activation)
    return fail("unsupported activation_type '" + activationName + "'");
  int64_t fusion = intAttr("swiglu_fusion", 0);
  if (fusion < 0 || fusion > 2)
    return fail("swiglu_fusion must be 0, 1 or 2, got " +
                std::to_string(fusion));

  // ONNX Runtime before 1.23 stored weights in-major (fc1 [E, H, f*I],
  // fc2 [E, I, H]); moe_helper.h recognises that layout by fc2's middle
  // dimension being I != H. The dialect has one layout, so constant weights
  // are transposed here, once.
  auto fc2Type = dyn_cast<RankedTensorType>(in[4].getType());
  auto inputType = dyn_cast<RankedTensorType>(in[0].getType());
  if (!fc2Type || !inputType || fc2Type.getRank() != 3 ||
      inputType.getRank() < 1)
    return fail("fc2_experts_weights must be a rank-3 tensor");
  int64_t hidden = inputType.getShape().back();
  if (fc2Type.getDimSize(2) != hidden && fc2Type.getDimSize(1) == hidden) {
    // Current layout fc2 [E, H, I]: nothing to do.
  } else if (fc2Type.getDimSize(2) == hidden &&
             fc2Type.getDimSize(1) != hidden) {
    for (int i : {2, 4, 6}) {
      if (!in[i])
        continue;
      FailureOr<Value> transposed = transposeLastTwo(in[i]);
      if (failed(transposed))
        return fail("weights in the legacy (pre-1.23) layout [E, in, out] "
                    "must be initializers to be transposed at import");
      in[i] = *transposed;
    }
  }

  MLIRContext *ctx = context;
  auto f64 = [&](double v) { return builder.getF64FloatAttr(v); };
  std::optional<double> limit = floatAttr("swiglu_limit");
  auto layer = LayerOp::create(
      builder, loc, inputType, in[0], in[1], in[2], in[3], in[4], in[5], in[6],
      in[7], Value(), Value(), Value(), Value(), Value(), Value(), Value(),
      builder.getI64IntegerAttr(intAttr("k", 1)),
      ScoringAttr::get(ctx, Scoring::softmax),
      intAttr("normalize_routing_weights", 0) ? builder.getUnitAttr()
                                              : UnitAttr(),
      builder.getI64IntegerAttr(1), builder.getI64IntegerAttr(1),
      GroupScoringAttr::get(ctx, GroupScoring::max), FloatAttr(), f64(1.0),
      ActivationAttr::get(ctx, *activation),
      // swiglu_fusion only means something for swiglu; elsewhere the
      // dialect's default keeps the IR free of a meaningless attribute.
      *activation == Activation::swiglu
          ? SwigluFusionAttr::get(ctx, static_cast<SwigluFusion>(fusion))
          : SwigluFusionAttr(),
      f64(floatAttr("activation_alpha").value_or(1.0)),
      f64(floatAttr("activation_beta").value_or(0.0)),
      *activation == Activation::swiglu && limit ? f64(*limit) : FloatAttr(),
      FloatAttr(), ArrayAttr());
  if (failed(verify(layer)))
    return failure();
  if (node.output_size() != 1 || node.output(0).empty())
    return fail("expects exactly one output");
  values[node.output(0)] = layer.getResult();
  return success();
}

LogicalResult Importer::importNode(const onnx::NodeProto &node) {
  std::string name = node.name().empty() ? node.op_type() : node.name();
  Location loc = NameLoc::get(builder.getStringAttr(name), fileLoc);
  if (node.domain() == "com.microsoft" && node.op_type() == "MoE")
    return importMoE(node, loc);
  std::string domain = node.domain().empty() ? "ai.onnx" : node.domain();
  return emitError(loc) << "node '" << name << "': op '" << domain
                        << "::" << node.op_type()
                        << "' is not supported yet";
}

OwningOpRef<ModuleOp> Importer::run() {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer) {
    error() << "cannot read '" << path << "': " << buffer.getError().message();
    return nullptr;
  }
  onnx::ModelProto model;
  if ((*buffer)->getBufferSize() > size_t(INT32_MAX) ||
      !model.ParseFromArray((*buffer)->getBufferStart(),
                            static_cast<int>((*buffer)->getBufferSize()))) {
    error() << "'" << path
            << "' is not a valid ONNX model (the protobuf does not parse)";
    return nullptr;
  }
  if (!model.has_graph() || model.graph().node_size() == 0) {
    error() << "'" << path << "' has no graph nodes";
    return nullptr;
  }
  const onnx::GraphProto &graph = model.graph();

  OwningOpRef<ModuleOp> module = ModuleOp::create(fileLoc);
  llvm::StringMap<const onnx::TensorProto *> initializers;
  for (const auto &t : graph.initializer())
    initializers[t.name()] = &t;

  // Arguments: graph inputs that no initializer provides.
  SmallVector<Type> argTypes;
  SmallVector<std::string> argNames;
  for (const auto &input : graph.input()) {
    if (initializers.count(input.name()))
      continue;
    if (!input.type().has_tensor_type()) {
      error() << "graph input '" << input.name() << "' is not a tensor";
      return nullptr;
    }
    const auto &tensorType = input.type().tensor_type();
    FailureOr<Type> element = elementType(tensorType.elem_type(),
                                          "graph input '" + input.name() + "'");
    if (failed(element))
      return nullptr;
    SmallVector<int64_t> shape;
    for (const auto &dim : tensorType.shape().dim())
      shape.push_back(dim.has_dim_value() ? dim.dim_value()
                                          : ShapedType::kDynamic);
    argTypes.push_back(RankedTensorType::get(shape, *element));
    argNames.push_back(input.name());
  }

  std::string funcName = graph.name().empty() ? "main_graph" : graph.name();
  for (char &c : funcName)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_')
      c = '_';
  builder.setInsertionPointToEnd(module->getBody());
  auto func = func::FuncOp::create(builder, fileLoc, funcName,
                                   builder.getFunctionType(argTypes, {}));
  Block *entry = func.addEntryBlock();
  builder.setInsertionPointToStart(entry);
  for (auto [i, name] : llvm::enumerate(argNames)) {
    values[name] = entry->getArgument(i);
    func.setArgAttr(i, "moe.name", builder.getStringAttr(name));
  }
  for (const auto &t : graph.initializer()) {
    FailureOr<Value> value = importInitializer(t);
    if (failed(value))
      return nullptr;
    values[t.name()] = *value;
  }
  for (const auto &node : graph.node())
    if (failed(importNode(node)))
      return nullptr;

  SmallVector<Value> results;
  for (const auto &output : graph.output()) {
    Value v = lookup(output.name());
    if (!v) {
      error() << "graph output '" << output.name() << "' is not produced";
      return nullptr;
    }
    results.push_back(v);
  }
  func::ReturnOp::create(builder, fileLoc, results);
  // Initializers nothing reads (e.g. weights replaced by their transpose).
  for (Operation &op : llvm::make_early_inc_range(*entry))
    if (isa<arith::ConstantOp>(op) && op.use_empty())
      op.erase();
  func.setFunctionType(
      builder.getFunctionType(argTypes, ValueRange(results).getTypes()));
  if (failed(mlir::verify(*module)))
    return nullptr;
  return module;
}

} // namespace

OwningOpRef<ModuleOp> mlir::moe::importONNXModel(StringRef path,
                                                 MLIRContext *context) {
  context->loadDialect<MoEDialect, func::FuncDialect, arith::ArithDialect>();
  return Importer(path, context).run();
}
