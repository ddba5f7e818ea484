//===- ProfileGuidedExperts.cpp - experts chosen by a profile -------------===//

#include "moe-mlir/Transforms/ProfileGuidedExperts.h"

#include "moe-mlir/Transforms/ConstantData.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Matchers.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <numeric>

using namespace mlir;
using namespace mlir::moe;

llvm::Expected<TokenCounts> moe::readTokenCounts(StringRef path) {
  auto fail = [&](const Twine &message) {
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        ("routing profile '" + path + "': " + message).str());
  };
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer)
    return fail(buffer.getError().message());
  llvm::Expected<llvm::json::Value> doc =
      llvm::json::parse((*buffer)->getBuffer());
  if (!doc)
    return fail(llvm::toString(doc.takeError()));
  const llvm::json::Object *root = doc->getAsObject();
  if (!root || root->getString("format") != "moe-routing-profile")
    return fail("not a routing profile (no \"format\": "
                "\"moe-routing-profile\")");
  if (root->getInteger("version") != 1)
    return fail("version must be 1");
  const llvm::json::Array *layers = root->getArray("layers");
  if (!layers)
    return fail("'layers' must be an array");
  TokenCounts counts;
  for (const llvm::json::Value &entry : *layers) {
    const llvm::json::Object *layer = entry.getAsObject();
    std::optional<int64_t> index =
        layer ? layer->getInteger("layer") : std::nullopt;
    const llvm::json::Array *perExpert =
        layer ? layer->getArray("tokens_per_expert") : nullptr;
    if (!index || *index < 0 || !perExpert)
      return fail("every layer needs 'layer' and 'tokens_per_expert'");
    LayerCounts &layerCounts = counts[*index];
    std::vector<int64_t> &tokens = layerCounts.tokens;
    for (const llvm::json::Value &n : *perExpert) {
      std::optional<int64_t> value = n.getAsInteger();
      if (!value || *value < 0)
        return fail("layer " + Twine(*index) +
                    ": 'tokens_per_expert' must hold non-negative integers");
      tokens.push_back(*value);
    }
    const llvm::json::Array *pairs = layer->getArray("coactivation");
    if (!pairs)
      continue;
    auto badPairs = [&] {
      return fail("layer " + Twine(*index) + ": 'coactivation' must be " +
                  Twine(tokens.size()) + " rows of " + Twine(tokens.size()) +
                  " non-negative integers");
    };
    if (pairs->size() != tokens.size())
      return badPairs();
    for (const llvm::json::Value &row : *pairs) {
      const llvm::json::Array *values = row.getAsArray();
      if (!values || values->size() != tokens.size())
        return badPairs();
      for (const llvm::json::Value &n : *values) {
        std::optional<int64_t> value = n.getAsInteger();
        if (!value || *value < 0)
          return badPairs();
        layerCounts.coactivation.push_back(*value);
      }
    }
  }
  return counts;
}

FailureOr<ArrayRef<int64_t>> moe::checkLayer(LayerOp layer, int64_t index,
                                             const TokenCounts &counts,
                                             int64_t removed,
                                             StringRef action) {
  auto refuse = [&](const Twine &why) {
    mlir::emitError(layer.getLoc())
        << "cannot " << action << " layer " << index << ": " << why;
    return failure();
  };
  int64_t experts =
      cast<RankedTensorType>(layer.getFc1().getType()).getDimSize(0);
  int64_t routeExperts = experts + layer.getNumZeroExperts();
  auto it = counts.find(index);
  if (it == counts.end())
    return refuse("the routing profile has no layer " + Twine(index));
  const std::vector<int64_t> &tokens = it->second.tokens;
  if (static_cast<int64_t>(tokens.size()) != routeExperts)
    return refuse("the routing profile has " + Twine(tokens.size()) +
                  " experts for it, the layer routes to " +
                  Twine(routeExperts) + " (a profile of another model?)");
  if (layer.getExpertParallelAttr())
    return refuse("it is expert-parallel");
  if (layer.getNumGroups() > 1)
    return refuse("group-limited routing needs its groups whole");
  if (experts - removed < static_cast<int64_t>(layer.getK()))
    return refuse("removing " + Twine(removed) + " of " + Twine(experts) +
                  " experts leaves fewer than k = " + Twine(layer.getK()));
  if (!layer.getRouterWeight())
    return refuse("its router is not the layer's weight (a router MatMul "
                  "of the layer's input is made one by -moe-fuse-router)");
  return ArrayRef<int64_t>(tokens);
}

FailureOr<ElementsAttr> moe::selectLeading(ElementsAttr attr,
                                           ArrayRef<int64_t> rows,
                                           StringRef keySuffix) {
  auto type = cast<RankedTensorType>(attr.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape[0] = rows.size();
  auto selectedType = RankedTensorType::get(shape, type.getElementType());
  if (auto dense = dyn_cast<DenseElementsAttr>(attr); dense && dense.isSplat())
    return ElementsAttr(dense.resizeSplat(selectedType));
  std::optional<ArrayRef<char>> bytes = constantBytes(attr);
  if (!bytes || type.getElementTypeBitWidth() % 8)
    return failure();
  size_t rowBytes = bytes->size() / type.getDimSize(0);
  return rebuildConstant(attr, selectedType, keySuffix,
                         [&](MutableArrayRef<char> to) {
                           for (auto [i, row] : llvm::enumerate(rows))
                             std::copy_n(bytes->data() + row * rowBytes,
                                         rowBytes, to.data() + i * rowBytes);
                         });
}

LogicalResult moe::selectExperts(LayerOp layer, int64_t index, StringRef action,
                                 ArrayRef<int64_t> routeRows,
                                 ArrayRef<int64_t> ffnRows,
                                 StringRef keySuffix) {
  SmallVector<ExpertOperand> operands = expertOperands(layer);
  SmallVector<ElementsAttr> selected;
  for (ExpertOperand entry : operands) {
    ElementsAttr value;
    if (!matchPattern(entry.operand->get(), m_Constant(&value)))
      return mlir::emitError(layer.getLoc())
             << "cannot " << action << " layer " << index
             << ": its weights must be constants";
    FailureOr<ElementsAttr> rows =
        selectLeading(value, entry.routed ? routeRows : ffnRows, keySuffix);
    if (failed(rows))
      return mlir::emitError(layer.getLoc())
             << "cannot " << action << " layer " << index
             << ": the data of a weight constant is not available";
    selected.push_back(*rows);
  }
  OpBuilder b(layer);
  for (auto [entry, value] : llvm::zip(operands, selected))
    entry.operand->set(arith::ConstantOp::create(b, layer.getLoc(), value));
  return success();
}

SmallVector<int64_t> moe::leastUsedExperts(ArrayRef<int64_t> tokens,
                                           int64_t experts, int64_t n) {
  SmallVector<int64_t> order(experts);
  std::iota(order.begin(), order.end(), 0);
  llvm::stable_sort(order, [&](int64_t a, int64_t b) {
    return tokens[a] != tokens[b] ? tokens[a] < tokens[b] : a > b;
  });
  order.resize(n);
  return order;
}

SmallVector<ExpertOperand> moe::expertOperands(LayerOp layer) {
  SmallVector<ExpertOperand> operands;
  auto add = [&](MutableOperandRange range, bool routed) {
    if (!range.empty())
      operands.push_back({&range[0], routed});
  };
  add(layer.getRouterWeightMutable(), true);
  add(layer.getScoreBiasMutable(), true);
  for (OpOperand *operand : layer.getExpertStackedOperands())
    operands.push_back({operand, false});
  return operands;
}

LogicalResult moe::rewriteLayersByProfile(
    ModuleOp module, StringRef profile, int64_t count, StringRef option,
    function_ref<LogicalResult(LayerOp, int64_t, const TokenCounts &)>
        rewrite) {
  if (count < 0)
    return module.emitError() << "'" << option << "' must be >= 0";
  if (count == 0)
    return success();
  llvm::Expected<TokenCounts> counts = readTokenCounts(profile);
  if (!counts)
    return module.emitError(llvm::toString(counts.takeError()));
  WalkResult result = module.walk([&](func::FuncOp func) {
    int64_t index = 0;
    return func.walk([&](LayerOp layer) {
      return failed(rewrite(layer, index++, *counts)) ? WalkResult::interrupt()
                                                      : WalkResult::advance();
    });
  });
  return failure(result.wasInterrupted());
}
