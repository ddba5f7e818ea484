//===- ONNXImporter.cpp - ONNX models into MLIR -----------------------------===//
//
// Parses the protobuf with Debian's onnx_proto library, raises decomposed
// MoE subgraphs into fused MoE nodes (Raising.cpp), and builds one function
// per graph: com.microsoft.MoE/QMoE become moe.layer (MoENodes.cpp), the
// ai.onnx ops upstream tensor-level ops (StandardOps.cpp).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Import/ONNXImporter.h"

#include "ConstantData.h"
#include "GraphImporter.h"
#include "Raising.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"

#include <google/protobuf/io/zero_copy_stream_impl.h>
#include "llvm/Support/Path.h"

#include <cstring>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::onnx_import;

//===----------------------------------------------------------------------===//
// GraphImporter
//===----------------------------------------------------------------------===//

namespace {
/// TensorProto.DataType values of ONNX 1.16 that Debian's onnx_proto (1.14)
/// has no names for.
constexpr int32_t kOnnxUint4 = 21;
constexpr int32_t kOnnxInt4 = 22;
} // namespace

GraphImporter::GraphImporter(StringRef modelPath, MLIRContext *context)
    : modelPath(modelPath.str()), context(context), builder(context),
      fileLoc(FileLineColLoc::get(context, modelPath, 0, 0)) {}

void GraphImporter::releaseInitializer(StringRef name) {
  auto it = readers.find(name);
  if (it == readers.end() || --it->second > 0)
    return;
  Value value = lookup(name);
  auto constant = value ? value.getDefiningOp<arith::ConstantOp>() : nullptr;
  if (!constant || !constant->use_empty())
    return;
  values.erase(name);
  eraseConstant(constant);
}

FailureOr<Type> GraphImporter::elementType(int32_t onnxType, StringRef what) {
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
  case onnx::TensorProto::INT16:
    return Type(builder.getI16Type());
  case onnx::TensorProto::INT8:
    return Type(builder.getI8Type());
  // Unsigned stays visible in the type: Cast and the dequantising QMoE
  // kernel need it.
  case onnx::TensorProto::UINT8:
    return Type(builder.getIntegerType(8, /*isSigned=*/false));
  case onnx::TensorProto::BOOL:
    return Type(builder.getI1Type());
  default:
    error() << what << ": unsupported ONNX element type "
            << onnx::TensorProto::DataType_Name(
                   static_cast<onnx::TensorProto::DataType>(onnxType));
    return failure();
  }
}

/// The little-endian bytes of `tensor`, from raw_data, the typed fields or
/// an external file.
FailureOr<std::string> GraphImporter::tensorBytes(const onnx::TensorProto &tensor,
                                             size_t expected,
                                             std::string *ownedRawData) {
  const std::string &name = tensor.name();
  std::string bytes;
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    FailureOr<AsmResourceBlob> view = externalData(tensor, expected);
    if (failed(view))
      return failure();
    bytes.assign(view->getData().data(), view->getData().size());
  } else if (tensor.has_raw_data()) {
    if (ownedRawData)
      bytes.swap(*ownedRawData);
    else
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
    case onnx::TensorProto::INT16:
      // 16-bit values travel in the low half of int32_data.
      for (int32_t v : tensor.int32_data()) {
        uint16_t bits = static_cast<uint16_t>(v);
        append(&bits, 2);
      }
      break;
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL:
    // 4-bit values: one packed byte (two values) per entry.
    case kOnnxUint4:
    case kOnnxInt4:
      for (int32_t v : tensor.int32_data()) {
        uint8_t byte = static_cast<uint8_t>(v);
        append(&byte, 1);
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

namespace {
/// Where an external-data tensor's bytes are: a file relative to the
/// model's folder, an offset and a length (absent when not given).
struct ExternalLocation {
  std::string location;
  uint64_t offset = 0;
  std::optional<uint64_t> length;
};

ExternalLocation externalLocation(const onnx::TensorProto &tensor) {
  ExternalLocation where;
  for (const auto &entry : tensor.external_data()) {
    if (entry.key() == "location")
      where.location = entry.value();
    else if (entry.key() == "offset")
      where.offset = std::strtoull(entry.value().c_str(), nullptr, 10);
    else if (entry.key() == "length")
      where.length = std::strtoull(entry.value().c_str(), nullptr, 10);
  }
  return where;
}

/// The file `where` names beside the model at `modelPath`; a message when
/// its location is not a relative path inside the model's folder.
FailureOr<SmallString<256>> externalFile(StringRef modelPath,
                                         const ExternalLocation &where,
                                         std::string &message) {
  StringRef location = where.location;
  if (location.empty() || llvm::sys::path::is_absolute(location) ||
      location.contains("..")) {
    message = "external data needs a relative 'location' inside the "
              "model's folder, got '" +
              where.location + "'";
    return failure();
  }
  SmallString<256> file(llvm::sys::path::parent_path(modelPath));
  llvm::sys::path::append(file, location);
  return file;
}
} // namespace

FailureOr<AsmResourceBlob>
GraphImporter::viewExternalData(const onnx::TensorProto &tensor,
                                std::string &message) {
  ExternalLocation where = externalLocation(tensor);
  FailureOr<SmallString<256>> path = externalFile(modelPath, where, message);
  if (failed(path))
    return failure();
  SmallString<256> &file = *path;
  uint64_t length = where.length.value_or(0);
  if (!where.length) {
    // No length: the rest of the file.
    uint64_t size = 0;
    if (llvm::sys::fs::file_size(file, size) || size < where.offset) {
      message = "cannot read '" + std::string(file) + "'";
      return failure();
    }
    length = size - where.offset;
  }
  return modelFiles.view(file, where.offset, length, message);
}

FailureOr<AsmResourceBlob>
GraphImporter::externalData(const onnx::TensorProto &tensor, size_t expected) {
  const std::string &name = tensor.name();
  ExternalLocation where = externalLocation(tensor);
  std::string message;
  FailureOr<SmallString<256>> path = externalFile(modelPath, where, message);
  if (failed(path)) {
    error() << "initializer '" << name << "': " << message;
    return failure();
  }
  SmallString<256> &file = *path;
  uint64_t length = where.length.value_or(expected);
  if (length != expected) {
    error() << "initializer '" << name << "': external data '" << file
            << "' gives " << length << " bytes; its shape and type need "
            << expected;
    return failure();
  }
  FailureOr<AsmResourceBlob> view =
      modelFiles.view(file, where.offset, length, message);
  if (failed(view))
    error() << "initializer '" << name << "': cannot read external data '"
            << file << "': " << message;
  return view;
}

FailureOr<Value>
GraphImporter::importInitializer(const onnx::TensorProto &tensor,
                                 std::string *ownedRawData) {
  // 4-bit integers (GatherBlockQuantized's embeddings) are stored two per
  // byte, low nibble first; they import as one i8 value per element, which
  // the arith ops (and DenseElementsAttr) work on.
  bool fourBit = tensor.data_type() == kOnnxInt4 ||
                 tensor.data_type() == kOnnxUint4;
  FailureOr<Type> element =
      fourBit ? FailureOr<Type>(builder.getI8Type())
              : elementType(tensor.data_type(),
                            "initializer '" + tensor.name() + "'");
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
  if (fourBit) {
    FailureOr<std::string> packed = tensorBytes(tensor, (count + 1) / 2);
    if (failed(packed))
      return failure();
    bool isSigned = tensor.data_type() == kOnnxInt4;
    std::vector<char> values(count);
    for (uint64_t i = 0; i < count; ++i) {
      int nibble = (uint8_t((*packed)[i / 2]) >> (4 * (i % 2))) & 0xF;
      values[i] = char(isSigned && nibble >= 8 ? nibble - 16 : nibble);
    }
    auto attr = DenseElementsAttr::getFromRawBuffer(type, values);
    return arith::ConstantOp::create(builder, fileLoc, type, attr).getResult();
  }
  // ONNX stores a byte per bool.
  size_t bytesPer = std::max(1u, element->getIntOrFloatBitWidth() / 8);
  bool asResource = !element->isInteger(1) && count * bytesPer >= resourceMinBytes;
  if (asResource && tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    // Viewed in the file's mapping: read when something reads it.
    FailureOr<AsmResourceBlob> view = externalData(tensor, count * bytesPer);
    if (failed(view))
      return failure();
    auto attr = makeResourceConstant(type, tensor.name(), std::move(*view));
    return arith::ConstantOp::create(builder, fileLoc, type, attr).getResult();
  }
  FailureOr<std::string> bytes =
      tensorBytes(tensor, count * bytesPer, asResource ? ownedRawData : nullptr);
  if (failed(bytes))
    return failure();
  if (asResource) {
    auto attr = makeResourceConstant(type, tensor.name(), std::move(*bytes));
    return arith::ConstantOp::create(builder, fileLoc, type, attr).getResult();
  }
  DenseElementsAttr attr;
  if (element->isInteger(1)) {
    SmallVector<bool> bits(bytes->begin(), bytes->end());
    attr = DenseElementsAttr::get(type, bits);
  } else {
    attr = DenseElementsAttr::getFromRawBuffer(
        type, ArrayRef<char>(bytes->data(), bytes->size()));
  }
  return arith::ConstantOp::create(builder, fileLoc, type, attr).getResult();
}

//===----------------------------------------------------------------------===//
// NodeContext
//===----------------------------------------------------------------------===//

const onnx::AttributeProto *
mlir::moe::onnx_import::findAttribute(const onnx::NodeProto &node,
                                      StringRef name) {
  for (const auto &a : node.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

std::string NodeContext::opName() const {
  std::string domain = node.domain().empty() ? "ai.onnx" : node.domain();
  return domain + "." + node.op_type();
}

LogicalResult NodeContext::fail(const Twine &message) {
  std::string name = node.name().empty() ? node.op_type() : node.name();
  emitError(loc) << "node '" << name << "' (" << opName() << "): " << message;
  return failure();
}

FailureOr<Value> NodeContext::optionalInput(int i) {
  if (i >= node.input_size() || node.input(i).empty())
    return Value();
  Value value = graph.lookup(node.input(i));
  if (!value)
    return fail("input '" + node.input(i) + "' is not defined");
  return value;
}

FailureOr<Value> NodeContext::input(int i) {
  FailureOr<Value> value = optionalInput(i);
  if (succeeded(value) && !*value)
    return fail("input " + Twine(i) + " is missing");
  return value;
}

int64_t NodeContext::intAttr(StringRef name, int64_t defaultValue) const {
  const onnx::AttributeProto *a = attribute(name);
  return a ? a->i() : defaultValue;
}

std::optional<double> NodeContext::floatAttr(StringRef name) const {
  const onnx::AttributeProto *a = attribute(name);
  if (!a)
    return std::nullopt;
  return static_cast<double>(a->f());
}

std::optional<std::string> NodeContext::stringAttr(StringRef name) const {
  const onnx::AttributeProto *a = attribute(name);
  if (!a)
    return std::nullopt;
  return a->s();
}

std::optional<SmallVector<int64_t>>
NodeContext::intsAttr(StringRef name) const {
  const onnx::AttributeProto *a = attribute(name);
  if (!a)
    return std::nullopt;
  return SmallVector<int64_t>(a->ints().begin(), a->ints().end());
}

LogicalResult NodeContext::checkAttributes(ArrayRef<StringRef> known) {
  for (const auto &a : node.attribute())
    if (!llvm::is_contained(known, StringRef(a.name())))
      return fail("unsupported attribute '" + a.name() + "'");
  return success();
}

void NodeContext::setOutput(int i, Value value) {
  if (i < node.output_size() && !node.output(i).empty())
    graph.define(node.output(i), value);
}

//===----------------------------------------------------------------------===//
// Graph
//===----------------------------------------------------------------------===//

namespace {

LogicalResult importNode(GraphImporter &graph, const onnx::NodeProto &node) {
  std::string name = node.name().empty() ? node.op_type() : node.name();
  Location loc = NameLoc::get(
      StringAttr::get(graph.getContext(), name), graph.getFileLoc());
  NodeContext context(graph, node, loc);
  if (node.domain() == "com.microsoft" && node.op_type() == "MoE")
    return importMoENode(context);
  if (node.domain() == "com.microsoft" && node.op_type() == "QMoE")
    return importQMoENode(context);
  if (node.domain() == "moe_mlir" && node.op_type() == "RaisedMoE")
    return importRaisedMoENode(context);
  if (node.domain().empty() || node.domain() == "ai.onnx" ||
      node.domain() == "com.microsoft")
    return importStandardNode(context);
  return context.fail("op is not supported");
}

/// Adds one per node input of `graph` and of the graphs nested in its
/// nodes' attributes (If/Loop bodies read outer values by name).
void countReaders(const onnx::GraphProto &graph, llvm::StringMap<int> &readers) {
  for (const auto &node : graph.node()) {
    for (const std::string &input : node.input())
      if (!input.empty())
        ++readers[input];
    for (const auto &attr : node.attribute()) {
      if (attr.has_g())
        countReaders(attr.g(), readers);
      for (const auto &g : attr.graphs())
        countReaders(g, readers);
    }
  }
}

OwningOpRef<ModuleOp> importGraph(StringRef path, MLIRContext *context,
                                  const ImportOptions &options) {
  GraphImporter graph(path, context);
  OpBuilder &builder = graph.getBuilder();
  Location fileLoc = graph.getFileLoc();
  auto error = [&] { return graph.error(); };
  // The weights stay in the file's mapping (ModelFile.h): the protobuf
  // holds no copy of them.
  onnx::ModelProto model;
  if (std::optional<std::string> message =
          graph.files().read(path, options.resourceMinBytes, model)) {
    error() << *message;
    return nullptr;
  }
  if (!model.has_graph() || model.graph().node_size() == 0) {
    error() << "'" << path << "' has no graph nodes";
    return nullptr;
  }
  // The raising reads some constants (zero accumulators) whose data may be
  // in files beside the model.
  auto readExternal = [&](const onnx::TensorProto &tensor) {
    std::string message;
    return graph.viewExternalData(tensor, message);
  };
  if (failed(raiseMoESubgraphs(model, options, graph.getFileLoc(),
                               readExternal)))
    return nullptr;
  const onnx::GraphProto &onnxGraph = model.graph();
  for (const auto &opset : model.opset_import())
    if (opset.domain().empty() || opset.domain() == "ai.onnx")
      graph.setOpset(opset.version());

  OwningOpRef<ModuleOp> module = ModuleOp::create(fileLoc);
  llvm::StringMap<const onnx::TensorProto *> initializers;
  for (const auto &t : onnxGraph.initializer())
    initializers[t.name()] = &t;

  // Arguments: graph inputs that no initializer provides.
  SmallVector<Type> argTypes;
  SmallVector<std::string> argNames;
  for (const auto &input : onnxGraph.input()) {
    if (initializers.count(input.name()))
      continue;
    if (!input.type().has_tensor_type()) {
      error() << "graph input '" << input.name() << "' is not a tensor";
      return nullptr;
    }
    const auto &tensorType = input.type().tensor_type();
    FailureOr<Type> element = graph.elementType(tensorType.elem_type(),
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

  std::string funcName = onnxGraph.name().empty() ? "main_graph" : onnxGraph.name();
  for (char &c : funcName)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_')
      c = '_';
  builder.setInsertionPointToEnd(module->getBody());
  auto func = func::FuncOp::create(builder, fileLoc, funcName,
                                   builder.getFunctionType(argTypes, {}));
  Block *entry = func.addEntryBlock();
  builder.setInsertionPointToStart(entry);
  for (auto [i, name] : llvm::enumerate(argNames)) {
    graph.define(name, entry->getArgument(i));
    func.setArgAttr(i, "moe.name", builder.getStringAttr(name));
  }
  // Raising, the only other reader of the initializers' bytes, is done:
  // large ones move into resource blobs without a copy, and the protobuf's
  // copy of the small ones goes as soon as their attribute holds them.
  graph.setResourceMinBytes(options.resourceMinBytes);
  llvm::StringMap<int> readers;
  countReaders(onnxGraph, readers);
  for (const auto &output : onnxGraph.output())
    ++readers[output.name()];
  graph.setReaderCounts(std::move(readers));
  for (int i = 0, e = onnxGraph.initializer_size(); i < e; ++i) {
    std::string *raw =
        model.mutable_graph()->mutable_initializer(i)->mutable_raw_data();
    const onnx::TensorProto &t = onnxGraph.initializer(i);
    FailureOr<Value> value = graph.importInitializer(t, raw);
    if (failed(value))
      return nullptr;
    graph.define(t.name(), *value);
    std::string().swap(*raw);
  }
  for (const auto &node : onnxGraph.node())
    if (failed(importNode(graph, node)))
      return nullptr;

  SmallVector<Value> results;
  for (const auto &output : onnxGraph.output()) {
    Value v = graph.lookup(output.name());
    if (!v) {
      error() << "graph output '" << output.name() << "' is not produced";
      return nullptr;
    }
    results.push_back(v);
  }
  func::ReturnOp::create(builder, fileLoc, results);
  func.setFunctionType(
      builder.getFunctionType(argTypes, ValueRange(results).getTypes()));
  // Outputs keep their ONNX names too (the manifest and moe-run show them).
  for (auto [i, output] : llvm::enumerate(onnxGraph.output()))
    func.setResultAttr(i, "moe.name", builder.getStringAttr(output.name()));
  if (failed(mlir::verify(*module)))
    return nullptr;
  // Node-by-node import leaves repeated size queries, dead shape arithmetic
  // (Shape -> Gather -> Concat chains) and initializers nothing reads (e.g.
  // weights replaced by their transpose); a cleanup makes the module read
  // like the computation it is.
  PassManager cleanup(context);
  cleanup.addPass(createCanonicalizerPass());
  cleanup.addPass(createCSEPass());
  if (failed(cleanup.run(*module)))
    return nullptr;
  return module;
}

} // namespace

OwningOpRef<ModuleOp> mlir::moe::importONNXModel(StringRef path,
                                                 MLIRContext *context,
                                                 const ImportOptions &options) {
  context->loadDialect<MoEDialect, affine::AffineDialect, func::FuncDialect,
                       arith::ArithDialect,
                       linalg::LinalgDialect, math::MathDialect,
                       scf::SCFDialect, tensor::TensorDialect>();
  // Blobs made by an import that failed, or that the import dropped, are
  // freed now rather than when the context goes.
  llvm::StringSet<> blobsBefore = resourceBlobKeys(context);
  OwningOpRef<ModuleOp> module = importGraph(path, context, options);
  releaseUnreferencedBlobs(module ? module->getOperation() : nullptr,
                           blobsBefore, context);
  return module;
}

llvm::cl::OptionCategory &mlir::moe::getONNXImportOptionCategory() {
  static llvm::cl::OptionCategory category("ONNX import options");
  return category;
}

namespace {
struct ONNXImportCLOptions {
  llvm::cl::opt<bool> printRaising{
      "print-raising",
      llvm::cl::desc("Print each MoE block raised from standard ONNX ops "
                     "(and why candidates were not) to stderr"),
      llvm::cl::cat(getONNXImportOptionCategory())};
  llvm::cl::opt<bool> noRaise{
      "no-raise",
      llvm::cl::desc("Import decomposed MoE blocks op by op instead of "
                     "raising them to moe ops"),
      llvm::cl::cat(getONNXImportOptionCategory())};
  llvm::cl::opt<uint64_t> resourceMinBytes{
      "resource-min-bytes",
      llvm::cl::desc("Import initializers of at least this many bytes as "
                     "dense resource blobs (weights outside the attribute "
                     "storage; freed when unused), smaller ones inline"),
      llvm::cl::init(ImportOptions().resourceMinBytes),
      llvm::cl::cat(getONNXImportOptionCategory())};
};
std::unique_ptr<ONNXImportCLOptions> clOptions;
} // namespace

void mlir::moe::registerONNXImportCLOptions() {
  if (!clOptions)
    clOptions = std::make_unique<ONNXImportCLOptions>();
}

ImportOptions mlir::moe::getONNXImportCLOptions() {
  ImportOptions options;
  if (!clOptions)
    return options;
  options.raise = !clOptions->noRaise;
  options.resourceMinBytes = clOptions->resourceMinBytes;
  if (clOptions->printRaising)
    options.raisingLog = &llvm::errs();
  return options;
}
