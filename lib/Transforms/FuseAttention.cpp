//===- FuseAttention.cpp - attention computed one block of rows at a time --===//
//
// softmax(Q K^T * scale + mask) V, as exporters spell it, is a chain of
// linalg ops over the [batch, heads, queries, keys] score tensor: the QK^T
// contraction, the scale and mask, a row max, the shifted exponentials, a
// row sum, the division, and the contraction with V. Run op by op, every
// score is written to memory and read back four times; for long sequences
// the score tensor is far larger than the caches. Here the PV contraction
// is tiled along the score rows it reads (one (batch, head) and a block of
// queries per tile, in an scf.forall) and the chain that produces those
// rows is fused into the tile, so that each tile computes its block of
// rows end to end in a [rows, keys] buffer that stays in cache. Only ops
// indexed like the scores (or their per-row reductions) are fused: Q, K, V
// and the mask are read as slices, never recomputed per tile.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Transforms/TileUsingInterface.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/IR/Dominance.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/CSE.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Interfaces/TilingInterface.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEATTENTION
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// Whether `op` is a contraction `out += a * b` with one reduction loop,
/// the last one.
bool isContraction(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      op.getNumReductionLoops() != 1 ||
      op.getIteratorTypesArray().back() != utils::IteratorType::reduction)
    return false;
  Block &body = op.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto add = yield.getOperand(0).getDefiningOp<arith::AddFOp>();
  return add && add.getLhs() == body.getArgument(2) &&
         add.getRhs().getDefiningOp<arith::MulFOp>();
}

/// The ops computing the scores `p` that `consumer` contracts, when they
/// form an attention softmax: linalg ops reached from `p` through operands
/// shaped like the scores or like their rows (the scores without the last
/// dimension), among them a row reduction and, at the start, the QK^T
/// contraction. Empty otherwise.
llvm::SetVector<Operation *> scoreChain(Value p) {
  auto scoresType = dyn_cast<RankedTensorType>(p.getType());
  if (!scoresType || scoresType.getRank() < 2)
    return {};
  auto rowsType = RankedTensorType::get(scoresType.getShape().drop_back(),
                                        scoresType.getElementType());
  llvm::SetVector<Operation *> chain;
  SmallVector<Value> worklist{p};
  bool hasRowReduction = false, hasScoreContraction = false;
  while (!worklist.empty()) {
    Value value = worklist.pop_back_val();
    Operation *producer = value.getDefiningOp();
    if (!producer || !isa<linalg::GenericOp, linalg::FillOp>(producer) ||
        !chain.insert(producer))
      continue;
    if (auto generic = dyn_cast<linalg::GenericOp>(producer)) {
      if (isContraction(generic) && value.getType() == scoresType) {
        // QK^T: its inputs (Q, K) are read as slices; its init is fused.
        hasScoreContraction = true;
        worklist.push_back(generic.getDpsInits()[0]);
        continue;
      }
      if (generic.getNumReductionLoops() == 1 && value.getType() == rowsType)
        hasRowReduction = true;
      else if (generic.getNumReductionLoops() != 0)
        return {};
    }
    for (Value operand : producer->getOperands())
      if (operand.getType() == scoresType || operand.getType() == rowsType)
        worklist.push_back(operand);
  }
  if (!hasRowReduction || !hasScoreContraction)
    return {};
  return chain;
}

struct FuseAttention
    : public moe::impl::MoEFuseAttentionBase<FuseAttention> {
  using MoEFuseAttentionBase::MoEFuseAttentionBase;

  void runOnOperation() override {
    SmallVector<std::pair<linalg::GenericOp, llvm::SetVector<Operation *>>>
        candidates;
    getOperation()->walk([&](linalg::GenericOp op) {
      if (!isContraction(op) || !op.hasPureTensorSemantics())
        return;
      // The scores are read by rows: P[..., rows, k] with k the reduction.
      AffineMap pMap = op.getIndexingMapsArray()[0];
      if (!pMap.isProjectedPermutation() || pMap.getNumResults() < 2 ||
          pMap.getResults().back() !=
              getAffineDimExpr(op.getNumLoops() - 1, op.getContext()))
        return;
      llvm::SetVector<Operation *> chain = scoreChain(op.getDpsInputs()[0]);
      if (!chain.empty())
        candidates.push_back({op, std::move(chain)});
    });
    IRRewriter rewriter(&getContext());
    for (auto &[op, chain] : candidates) {
      // Tile the loops that index the score rows: every one of size 1 but
      // the last (the queries), which takes `rowTile` rows.
      AffineMap pMap = op.getIndexingMapsArray()[0];
      SmallVector<OpFoldResult> sizes(op.getNumLoops(),
                                      rewriter.getIndexAttr(0));
      for (unsigned i = 0; i + 1 < pMap.getNumResults(); ++i) {
        unsigned loop = cast<AffineDimExpr>(pMap.getResult(i)).getPosition();
        sizes[loop] = rewriter.getIndexAttr(
            i + 2 == pMap.getNumResults() ? rowTile : 1);
      }
      Value init = op.getDpsInits()[0];
      if (Operation *fill = init.getDefiningOp<linalg::FillOp>())
        chain.insert(fill);
      scf::SCFTilingOptions tiling;
      tiling.setTileSizes(sizes);
      tiling.setLoopType(scf::SCFTilingOptions::LoopType::ForallOp);
      scf::SCFTileAndFuseOptions options;
      options.setTilingOptions(tiling);
      llvm::SetVector<Operation *> fusible = chain;
      options.setFusionControlFn(
          [&fusible](tensor::ExtractSliceOp, OpResult producer, bool)
              -> std::optional<scf::SCFTileAndFuseOptions::ControlFnResult> {
            if (!fusible.contains(producer.getOwner()))
              return std::nullopt;
            return scf::SCFTileAndFuseOptions::ControlFnResult{};
          });
      rewriter.setInsertionPoint(op);
      FailureOr<scf::SCFTileAndFuseResult> result =
          scf::tileConsumerAndFuseProducersUsingSCF(
              rewriter, cast<TilingInterface>(op.getOperation()), options);
      if (failed(result))
        continue;
      for (OpResult value : op->getResults())
        if (Value replacement = result->replacements.lookup(value))
          rewriter.replaceAllUsesWith(value, replacement);
      // A producer read twice in the tile (the scores by the row max and
      // the shift) was fused once per read: the copies compute the same
      // slice from the same operands, and merge.
      for (LoopLikeOpInterface loop : result->loops) {
        DominanceInfo dominance;
        eliminateCommonSubExpressions(rewriter, dominance, loop);
      }
    }
    // The untiled chain is dead now; slices of empty tensors (the tiles'
    // destinations) become tile-sized empty tensors, not views of a full
    // score buffer.
    RewritePatternSet patterns(&getContext());
    tensor::populateFoldTensorEmptyPatterns(patterns);
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
  }
};

} // namespace
