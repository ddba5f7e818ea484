//===- PruneExperts.cpp - drop rarely used experts by a routing profile ---===//
//
// A routing profile recorded on calibration inputs says how many tokens
// each expert of each layer took. Experts that almost never run still cost
// their weights' memory (and load time, and for a deployment that pages
// weights in, the stall of paging them); dropping the least-used ones and
// letting the router choose among the rest trades a small output error for
// that memory (MC-SMoE, expert pruning in MoE compression work). Pruning
// rewrites constant weights at compile time, so the module only ever holds
// the kept experts.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "moe-mlir/Transforms/ConstantData.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Matchers.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <map>
#include <numeric>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPRUNEEXPERTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Per layer of a routing profile, the tokens each route expert took.
using TokenCounts = std::map<int64_t, std::vector<int64_t>>;

/// The profile's tokens per expert, or an error message.
llvm::Expected<TokenCounts> readTokenCounts(StringRef path) {
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
    std::vector<int64_t> &tokens = counts[*index];
    for (const llvm::json::Value &n : *perExpert) {
      std::optional<int64_t> value = n.getAsInteger();
      if (!value || *value < 0)
        return fail("layer " + Twine(*index) +
                    ": 'tokens_per_expert' must hold non-negative integers");
      tokens.push_back(*value);
    }
  }
  return counts;
}

/// `attr` with only the `kept` entries of its leading dimension, in order.
FailureOr<ElementsAttr> keepLeading(ElementsAttr attr,
                                    ArrayRef<int64_t> kept) {
  auto type = cast<RankedTensorType>(attr.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape[0] = kept.size();
  auto keptType = RankedTensorType::get(shape, type.getElementType());
  if (auto dense = dyn_cast<DenseElementsAttr>(attr); dense && dense.isSplat())
    return ElementsAttr(dense.resizeSplat(keptType));
  std::optional<ArrayRef<char>> bytes = constantBytes(attr);
  if (!bytes || type.getElementTypeBitWidth() % 8)
    return failure();
  size_t rowBytes = bytes->size() / type.getDimSize(0);
  return rebuildConstant(attr, keptType, "_pruned",
                         [&](MutableArrayRef<char> to) {
                           for (auto [i, row] : llvm::enumerate(kept))
                             std::copy_n(bytes->data() + row * rowBytes,
                                         rowBytes, to.data() + i * rowBytes);
                         });
}

struct MoEPruneExpertsPass
    : moe::impl::MoEPruneExpertsBase<MoEPruneExpertsPass> {
  using MoEPruneExpertsBase::MoEPruneExpertsBase;

  void runOnOperation() override {
    if (prune < 0) {
      getOperation().emitError("-moe-prune-experts: 'prune' must be >= 0");
      return signalPassFailure();
    }
    if (prune == 0)
      return;
    llvm::Expected<TokenCounts> counts = readTokenCounts(profile);
    if (!counts) {
      getOperation().emitError(llvm::toString(counts.takeError()));
      return signalPassFailure();
    }
    WalkResult result = getOperation().walk([&](func::FuncOp func) {
      int64_t index = 0;
      WalkResult inner = func.walk([&](LayerOp layer) {
        return failed(pruneLayer(layer, index++, *counts))
                   ? WalkResult::interrupt()
                   : WalkResult::advance();
      });
      return inner;
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }

  LogicalResult pruneLayer(LayerOp layer, int64_t index,
                           const TokenCounts &counts) {
    auto refuse = [&](const Twine &why) {
      return layer.emitError() << "cannot prune layer " << index << ": "
                               << why;
    };
    int64_t experts =
        cast<RankedTensorType>(layer.getFc1().getType()).getDimSize(0);
    int64_t routeExperts = experts + layer.getNumZeroExperts();
    auto it = counts.find(index);
    if (it == counts.end())
      return refuse("the routing profile has no layer " + Twine(index));
    const std::vector<int64_t> &tokens = it->second;
    if (static_cast<int64_t>(tokens.size()) != routeExperts)
      return refuse("the routing profile has " + Twine(tokens.size()) +
                    " experts for it, the layer routes to " +
                    Twine(routeExperts) + " (a profile of another model?)");
    if (layer.getExpertParallelAttr())
      return refuse("it is expert-parallel");
    if (layer.getNumGroups() > 1)
      return refuse("group-limited routing needs its groups whole");
    if (experts - prune < static_cast<int64_t>(layer.getK()))
      return refuse("dropping " + Twine(prune) + " of " + Twine(experts) +
                    " experts leaves fewer than k = " + Twine(layer.getK()));
    if (!layer.getRouterWeight())
      return refuse("its router is not the layer's weight (a router MatMul "
                    "of the layer's input is made one by -moe-fuse-router)");

    // The least-used experts, ties dropping the higher index.
    SmallVector<int64_t> order(experts);
    std::iota(order.begin(), order.end(), 0);
    llvm::stable_sort(order, [&](int64_t a, int64_t b) {
      return tokens[a] != tokens[b] ? tokens[a] < tokens[b] : a > b;
    });
    SmallVector<int64_t> dropped(order.begin(), order.begin() + prune);
    llvm::sort(dropped);
    SmallVector<int64_t> kept;
    for (int64_t e = 0; e < routeExperts; ++e)
      if (!llvm::is_contained(dropped, e))
        kept.push_back(e);
    SmallVector<int64_t> keptExperts(kept.begin(), kept.end() - (routeExperts - experts));

    // Every operand with one entry per expert (per route expert for the
    // router), each a constant.
    SmallVector<std::pair<OpOperand *, ArrayRef<int64_t>>> perExpert;
    auto add = [&](MutableOperandRange range, ArrayRef<int64_t> rows) {
      if (!range.empty())
        perExpert.push_back({&range[0], rows});
    };
    add(layer.getRouterWeightMutable(), kept);
    add(layer.getScoreBiasMutable(), kept);
    perExpert.push_back({&layer.getFc1Mutable(), keptExperts});
    perExpert.push_back({&layer.getFc2Mutable(), keptExperts});
    for (MutableOperandRange range :
         {layer.getFc1BiasMutable(), layer.getFc2BiasMutable(),
          layer.getFc3Mutable(), layer.getFc3BiasMutable(),
          layer.getFc1ScalesMutable(), layer.getFc2ScalesMutable(),
          layer.getFc3ScalesMutable(), layer.getFc1ZeroPointsMutable(),
          layer.getFc2ZeroPointsMutable(), layer.getFc3ZeroPointsMutable()})
      add(range, keptExperts);
    SmallVector<ElementsAttr> prunedValues;
    for (auto [operand, rows] : perExpert) {
      ElementsAttr value;
      if (!matchPattern(operand->get(), m_Constant(&value)))
        return refuse("its weights must be constants");
      FailureOr<ElementsAttr> pruned = keepLeading(value, rows);
      if (failed(pruned))
        return refuse("the data of a weight constant is not available");
      prunedValues.push_back(*pruned);
    }
    OpBuilder b(layer);
    for (auto [entry, value] : llvm::zip(perExpert, prunedValues))
      entry.first->set(arith::ConstantOp::create(b, layer.getLoc(), value));

    int64_t droppedTokens = 0, routedTokens = 0;
    for (int64_t e = 0; e < experts; ++e) {
      routedTokens += tokens[e];
      if (llvm::is_contained(dropped, e))
        droppedTokens += tokens[e];
    }
    InFlightDiagnostic remark = mlir::emitRemark(layer.getLoc())
                                << "layer " << index << ": pruned experts ";
    llvm::interleaveComma(dropped, remark);
    remark << " of " << experts << " (" << droppedTokens << " of "
           << routedTokens << " routed tokens in the profile)";
    return success();
  }
};

} // namespace
