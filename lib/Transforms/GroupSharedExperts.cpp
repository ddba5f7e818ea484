//===- GroupSharedExperts.cpp - shared experts as routed ones -------------===//
//
// Decomposed, every shared expert (DeepSeekMoE, Qwen-MoE) is a moe.expert of
// its own over all tokens: two more parallel loops per layer and shared
// expert, a [T, H] output, and a sum that moe.combine (or the fused
// combine's base) adds to the routed experts'. An FFN's intermediate
// columns are independent of one another, so a shared expert of
// intermediate size Is is the sum of ceil(Is / I) FFNs of the routed
// experts' size I over slices of its columns (a partial last slice padded
// with zero weights, which add nothing). With constant weights those slices
// become more experts of the routed moe.expert, and every token is routed to
// each of them with the shared gate's weight (or 1): one grouped schedule
// runs the routed and the shared work, and the fused combine adds both in
// fc2's epilogue.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "moe-mlir/Transforms/ConstantData.h"

#include "llvm/ADT/SetVector.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGROUPSHAREDEXPERTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// An expert-stacked constant weight `[E, ...]`, or the one-expert slice
/// `[1, ...]` of one (a shared expert of several): the bytes of its experts
/// from `start` on (a splat's single element stands for all of them).
struct StackedBytes {
  /// The first expert's first element (of the slice, for a slice).
  const char *start = nullptr;
  /// The stacked constant's type (a slice's source's).
  RankedTensorType type;
  ElementsAttr attr;
  /// The constant op (a slice's source), where a rebuilt weight goes.
  Operation *constant = nullptr;
  bool splat = false;
  int64_t elementSize = 0;
  /// Elements per expert.
  int64_t perExpert = 0;

  /// Copies `count` elements from element `index` on (row-major, from
  /// `start`) to `to`.
  void copy(int64_t index, int64_t count, char *to) const {
    if (!splat) {
      std::memcpy(to, start + index * elementSize, count * elementSize);
      return;
    }
    for (int64_t i = 0; i < count; ++i)
      std::memcpy(to + i * elementSize, start, elementSize);
  }
};

std::optional<StackedBytes> readStacked(Value weight) {
  int64_t first = 0;
  if (auto slice = weight.getDefiningOp<tensor::ExtractSliceOp>()) {
    // Decomposition's slice of shared expert `s` of a stacked [S, ...].
    auto sourceType = slice.getSourceType();
    if (!slice.hasUnitStride() || slice.getStaticOffsets().size() < 1 ||
        ShapedType::isDynamic(slice.getStaticOffsets()[0]) ||
        slice.getType().getDimSize(0) != 1 ||
        slice.getType().getShape().drop_front() !=
            sourceType.getShape().drop_front() ||
        llvm::any_of(slice.getStaticOffsets().drop_front(),
                     [](int64_t offset) { return offset != 0; }))
      return std::nullopt;
    first = slice.getStaticOffsets()[0];
    weight = slice.getSource();
  }
  ElementsAttr attr;
  auto type = dyn_cast<RankedTensorType>(weight.getType());
  if (!type || !type.hasStaticShape() ||
      !matchPattern(weight, m_Constant(&attr)))
    return std::nullopt;
  std::optional<ArrayRef<char>> bytes = constantBytes(attr);
  if (!bytes || !type.getElementType().isIntOrFloat() ||
      type.getElementTypeBitWidth() % 8)
    return std::nullopt;
  int64_t elementSize = type.getElementTypeBitWidth() / 8;
  bool splat = static_cast<int64_t>(bytes->size()) == elementSize;
  if (!splat && static_cast<int64_t>(bytes->size()) !=
                    type.getNumElements() * elementSize)
    return std::nullopt;
  int64_t perExpert = type.getNumElements() / type.getDimSize(0);
  const char *start =
      splat ? bytes->data() : bytes->data() + first * perExpert * elementSize;
  return StackedBytes{start, type,        attr,     weight.getDefiningOp(),
                      splat, elementSize, perExpert};
}

/// Whether `offsets` are `[0, T]` for `tokens [T, H]`: one expert owning
/// every token, as decomposition gives each shared expert.
bool coversAllTokens(Value offsets, Value tokens) {
  auto tokensType = cast<RankedTensorType>(tokens.getType());
  DenseIntElementsAttr constant;
  if (matchPattern(offsets, m_Constant(&constant))) {
    auto values = llvm::to_vector(constant.getValues<APInt>());
    return values.size() == 2 && values[0].isZero() &&
           !tokensType.isDynamicDim(0) &&
           values[1].getSExtValue() == tokensType.getDimSize(0);
  }
  auto elements = offsets.getDefiningOp<tensor::FromElementsOp>();
  if (!elements || elements.getElements().size() != 2 ||
      !matchPattern(elements.getElements()[0], m_Zero()))
    return false;
  Value count = elements.getElements()[1];
  if (auto cast = count.getDefiningOp<arith::IndexCastOp>())
    count = cast.getIn();
  if (auto dim = count.getDefiningOp<tensor::DimOp>())
    return dim.getSource() == tokens && matchPattern(dim.getIndex(), m_Zero());
  APInt value;
  return matchPattern(count, m_ConstantInt(&value)) &&
         !tokensType.isDynamicDim(0) &&
         value.getSExtValue() == tokensType.getDimSize(0);
}

/// Whether `value` has one use besides the sizes read of it (a sum's
/// `tensor.dim`s for its output's shape).
bool hasOneUseBesidesDims(Value value) {
  int64_t uses = 0;
  for (Operation *user : value.getUsers())
    if (!isa<tensor::DimOp>(user))
      ++uses;
  return uses == 1;
}

/// Whether `wide` is `narrow` widened elementwise (a linalg.generic of one
/// arith.extf, as decomposition widens bf16 tokens for the shared experts):
/// the same values, so the routed experts' rows serve the shared ones too.
bool isWidening(Value wide, Value narrow) {
  auto generic = wide.getDefiningOp<linalg::GenericOp>();
  if (!generic || generic.getNumDpsInputs() != 1 ||
      generic.getDpsInputs()[0] != narrow ||
      !llvm::all_of(generic.getIndexingMapsArray(),
                    [](AffineMap map) { return map.isIdentity(); }))
    return false;
  Block &body = generic.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto extend = yield.getValues()[0].getDefiningOp<arith::ExtFOp>();
  return body.getOperations().size() == 2 && extend &&
         extend.getIn() == body.getArgument(0);
}

/// The shared experts summed into `shared`: one moe.expert over all of
/// `tokens`, or linalg.add of such sums, each used only there.
bool collectSharedExperts(Value shared, Value tokens,
                          SmallVectorImpl<ExpertOp> &experts) {
  if (!hasOneUseBesidesDims(shared))
    return false;
  if (auto add = shared.getDefiningOp<linalg::AddOp>())
    return collectSharedExperts(add.getInputs()[0], tokens, experts) &&
           collectSharedExperts(add.getInputs()[1], tokens, experts);
  auto expert = shared.getDefiningOp<ExpertOp>();
  if (!expert ||
      (expert.getRows() != tokens && !isWidening(expert.getRows(), tokens)) ||
      expert.gathersRows() || expert.combinesRows() || expert.getQuantAttr() ||
      expert.getPanelWidth() || expert.getFc1Bias() || expert.getFc2Bias() ||
      expert.getFc3Bias() || expert.getFc1().getType().getDimSize(0) != 1 ||
      !(coversAllTokens(expert.getOffsets(), tokens) ||
        coversAllTokens(expert.getOffsets(), expert.getRows())))
    return false;
  experts.push_back(expert);
  return true;
}

/// The weights of one expert projection, its rows or columns sliced along
/// the intermediate dimension.
enum class Slicing {
  /// fc1 or fc3 `[n * I, H]`: `n` runs of rows; `interleaved` SwiGLU keeps
  /// each gate and linear row pair together.
  Rows,
  InterleavedRows,
  /// fc2 `[H, I]`: columns.
  Columns,
};

/// Writes the slice `[from, from + width)` of the intermediate dimension
/// of a one-expert projection (`source`, intermediate size `size`) to
/// `out`, zero where the slice runs past `size`. `runs` is the number of
/// row runs of `Rows` (2 for concatenated SwiGLU's gate and linear halves).
void writeSlice(const StackedBytes &source, Slicing slicing, int64_t runs,
                int64_t size, int64_t from, int64_t width, char *out) {
  ArrayRef<int64_t> shape = source.type.getShape();
  int64_t es = source.elementSize;
  if (slicing == Slicing::Columns) {
    // Each of the H rows: the slice's columns that exist, then zeros.
    int64_t rows = shape[1];
    int64_t present = std::clamp<int64_t>(size - from, 0, width);
    for (int64_t h = 0; h < rows; ++h) {
      char *to = out + h * width * es;
      source.copy(h * size + from, present, to);
      std::memset(to + present * es, 0, (width - present) * es);
    }
    return;
  }
  int64_t columns = shape[2];
  int64_t pairs = slicing == Slicing::InterleavedRows ? 2 : 1;
  // Output row `r` of the slice: run `r / (pairs * width)`, intermediate
  // index `from + (r % (pairs * width)) / pairs`, half `r % pairs`.
  int64_t sliceRows = runs * pairs * width;
  for (int64_t r = 0; r < sliceRows; ++r) {
    int64_t run = r / (pairs * width);
    int64_t within = r % (pairs * width);
    int64_t index = from + within / pairs;
    char *to = out + r * columns * es;
    if (index >= size) {
      std::memset(to, 0, columns * es);
      continue;
    }
    int64_t sourceRow = run * pairs * size + index * pairs + within % pairs;
    source.copy(sourceRow * columns, columns, to);
  }
}

/// Erases `op`, which nothing uses, and the side-effect-free producers that
/// only it (and other such producers) used.
void eraseWithDeadProducers(Operation *op) {
  llvm::SetVector<Operation *> dead;
  dead.insert(op);
  while (!dead.empty()) {
    Operation *next = dead.pop_back_val();
    SmallVector<Operation *> producers;
    for (Value operand : next->getOperands())
      if (Operation *producer = operand.getDefiningOp())
        producers.push_back(producer);
    next->erase();
    for (Operation *producer : producers)
      if (producer->use_empty() && isMemoryEffectFree(producer))
        dead.insert(producer);
  }
}

struct MoEGroupSharedExpertsPass
    : moe::impl::MoEGroupSharedExpertsBase<MoEGroupSharedExpertsPass> {
  using MoEGroupSharedExpertsBase::MoEGroupSharedExpertsBase;

  void runOnOperation() override {
    if (maxPadding < 0) {
      getOperation()->emitError()
          << "max-padding must not be negative, got " << maxPadding;
      return signalPassFailure();
    }
    SmallVector<CombineOp> combines;
    getOperation()->walk([&](CombineOp combine) {
      if (combine.getShared())
        combines.push_back(combine);
    });
    SmallVector<ElementsAttr> replaced;
    for (CombineOp combine : combines)
      group(combine, replaced);
    releaseUnreferencedResources(getOperation(), replaced);
  }

  /// Rewrites `combine`'s shared experts into its routed ones, when they
  /// can be (see the pass's description); `replaced` gets the constants
  /// the new weights replace.
  void group(CombineOp combine, SmallVectorImpl<ElementsAttr> &replaced) {
    auto routed = combine.getExpertOutput().getDefiningOp<ExpertOp>();
    auto dispatch = combine.getSlotRows().getDefiningOp<DispatchOp>();
    if (!routed || !routed->hasOneUse() || !dispatch ||
        routed.getRows() != dispatch.getRows() ||
        routed.getOffsets() != dispatch.getOffsets() ||
        dispatch.getIds() != combine.getIds() || routed.gathersRows() ||
        routed.combinesRows() || routed.getQuantAttr() ||
        routed.getPanelWidth() || dispatch.getCapacityFactor() ||
        dispatch.getExpertCapacity() || dispatch.getGroupSize() ||
        combine.getDroppedPassThrough() ||
        !dispatch.getRowTokens().use_empty() ||
        !dispatch.getRows().hasOneUse() || !dispatch.getOffsets().hasOneUse() ||
        !dispatch.getSlotRows().hasOneUse())
      return;
    Value tokens = dispatch.getInput();
    SmallVector<ExpertOp> shared;
    if (!collectSharedExperts(combine.getShared(), tokens, shared))
      return;

    // Every weight a constant of one element type; fc3 on all or none.
    Type element = routed.getFc1().getType().getElementType();
    bool hasFc3 = static_cast<bool>(routed.getFc3());
    auto sameKind = [&](ExpertOp expert) {
      return expert.getActivationAttr() == routed.getActivationAttr() &&
             expert.getSwigluFusionAttr() == routed.getSwigluFusionAttr() &&
             expert.getAlphaAttr() == routed.getAlphaAttr() &&
             expert.getBetaAttr() == routed.getBetaAttr() &&
             expert.getLimitAttr() == routed.getLimitAttr() &&
             static_cast<bool>(expert.getFc3()) == hasFc3 &&
             expert.getFc1().getType().getElementType() == element &&
             expert.getFc2().getType().getElementType() == element;
    };
    if (!llvm::all_of(shared, sameKind))
      return;

    auto fc2Type = routed.getFc2().getType();
    int64_t numExperts = fc2Type.getDimSize(0);
    int64_t inter = fc2Type.getDimSize(2);
    int64_t fc1Rows = routed.getFc1().getType().getDimSize(1);
    if (ShapedType::isDynamic(inter) || inter == 0 || fc1Rows % inter)
      return;
    int64_t fc1Runs = fc1Rows / inter; // 2 for fused SwiGLU halves
    std::optional<SwigluFusion> fusion = routed.getSwigluFusion();
    bool interleaved = fc1Runs == 2 && fusion == SwigluFusion::interleaved;

    // The slices each shared expert becomes, and the padding they add.
    SmallVector<int64_t> sharedInter, slicesOf;
    int64_t numSlices = 0, padding = 0, sharedTotal = 0;
    for (ExpertOp expert : shared) {
      int64_t size = expert.getFc2().getType().getDimSize(2);
      if (expert.getFc1().getType().getDimSize(1) != fc1Runs * size)
        return;
      int64_t slices = llvm::divideCeil(size, inter);
      sharedInter.push_back(size);
      slicesOf.push_back(slices);
      numSlices += slices;
      padding += slices * inter - size;
      sharedTotal += size;
    }
    if (padding > maxPadding * sharedTotal)
      return;

    // The weights, read before anything is built.
    struct Projection {
      OpOperand *routedOperand;
      Slicing slicing;
      int64_t runs;
      std::optional<StackedBytes> routedBytes;
      SmallVector<StackedBytes> sharedBytes;
    };
    SmallVector<Projection> projections = {
        {&routed.getFc1Mutable(),
         interleaved ? Slicing::InterleavedRows : Slicing::Rows,
         interleaved ? 1 : fc1Runs,
         {},
         {}},
        {&routed.getFc2Mutable(), Slicing::Columns, 1, {}, {}}};
    if (hasFc3)
      projections.push_back(
          {&routed.getFc3Mutable()[0], Slicing::Rows, 1, {}, {}});
    for (auto [index, projection] : llvm::enumerate(projections)) {
      projection.routedBytes = readStacked(projection.routedOperand->get());
      if (!projection.routedBytes)
        return;
      for (ExpertOp expert : shared) {
        Value weight = index == 0   ? expert.getFc1()
                       : index == 1 ? expert.getFc2()
                                    : expert.getFc3();
        std::optional<StackedBytes> bytes = readStacked(weight);
        if (!bytes)
          return;
        projection.sharedBytes.push_back(*bytes);
      }
    }
    // Biases of fc1, fc2 and fc3 (where present): zeros for the slices.
    std::array<std::optional<StackedBytes>, 3> biasBytes;
    std::array<Value, 3> routedBiases = {
        routed.getFc1Bias(), routed.getFc2Bias(), routed.getFc3Bias()};
    for (auto [bias, bytes] : llvm::zip(routedBiases, biasBytes)) {
      if (!bias)
        continue;
      bytes = readStacked(bias);
      if (!bytes)
        return;
    }
    OpBuilder b(combine);
    Location loc = combine.getLoc();
    int64_t totalExperts = numExperts + numSlices;
    auto rebuild = [&](const StackedBytes &routedBytes,
                       function_ref<void(int64_t, char *)> fillSlice) {
      SmallVector<int64_t> shape(routedBytes.type.getShape());
      shape[0] = totalExperts;
      auto type =
          RankedTensorType::get(shape, routedBytes.type.getElementType());
      int64_t perExpert = routedBytes.perExpert;
      int64_t es = routedBytes.elementSize;
      ElementsAttr attr = rebuildConstant(
          routedBytes.attr, type, "_shared", [&](MutableArrayRef<char> out) {
            routedBytes.copy(0, numExperts * perExpert, out.data());
            for (int64_t slice = 0; slice < numSlices; ++slice)
              fillSlice(slice,
                        out.data() + (numExperts + slice) * perExpert * es);
          });
      replaced.push_back(routedBytes.attr);
      // Where the old weight was: it dominates every use of the experts'
      // weights (-moe-prefetch-experts reads them right after the route).
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointAfter(routedBytes.constant);
      return arith::ConstantOp::create(b, routedBytes.constant->getLoc(),
                                       cast<TypedAttr>(attr))
          .getResult();
    };
    SmallVector<Value> weights;
    for (Projection &projection : projections)
      weights.push_back(rebuild(*projection.routedBytes, [&](int64_t slice,
                                                             char *out) {
        int64_t expert = 0;
        while (slice >= slicesOf[expert])
          slice -= slicesOf[expert++];
        const StackedBytes &source = projection.sharedBytes[expert];
        writeSlice(source, projection.slicing, projection.runs,
                   sharedInter[expert], slice * inter, inter, out);
      }));
    std::array<Value, 3> newBiases;
    for (auto [bytes, bias] : llvm::zip(biasBytes, newBiases))
      if (bytes)
        bias = rebuild(
            *bytes,
            [&, expertBytes = bytes->perExpert * bytes->elementSize](
                int64_t, char *out) { std::memset(out, 0, expertBytes); });
    for (Projection &projection : projections)
      for (const StackedBytes &bytes : projection.sharedBytes)
        replaced.push_back(bytes.attr);

    auto [ids, weightsOfSlots] =
        extendRouting(b, loc, combine, numExperts, numSlices);

    auto rowsType = cast<RankedTensorType>(dispatch.getRows().getType());
    auto idsType = cast<RankedTensorType>(ids.getType());
    int64_t numRows = idsType.isDynamicDim(0)
                          ? ShapedType::kDynamic
                          : idsType.getDimSize(0) * idsType.getDimSize(1);
    Type i32 = b.getI32Type();
    auto newDispatch = DispatchOp::create(
        b, dispatch.getLoc(),
        RankedTensorType::get({numRows, rowsType.getDimSize(1)},
                              rowsType.getElementType()),
        RankedTensorType::get({totalExperts + 1}, i32),
        RankedTensorType::get({numRows}, i32), idsType, tokens, ids,
        /*group_size=*/Value(), b.getI64IntegerAttr(totalExperts),
        /*capacity_factor=*/FloatAttr(), /*expert_capacity=*/IntegerAttr());
    auto outputType = cast<RankedTensorType>(routed.getType());
    auto newRouted = ExpertOp::create(
        b, routed.getLoc(),
        RankedTensorType::get({numRows, outputType.getDimSize(1)},
                              outputType.getElementType()),
        newDispatch.getRows(), newDispatch.getOffsets(),
        /*gather_tokens=*/Value(), weights[0], newBiases[0], weights[1],
        newBiases[1], hasFc3 ? weights[2] : Value(), newBiases[2],
        /*fc1_scales=*/Value(), /*fc2_scales=*/Value(), /*fc3_scales=*/Value(),
        /*fc1_zero_points=*/Value(), /*fc2_zero_points=*/Value(),
        /*fc3_zero_points=*/Value(), /*combine_into=*/Value(),
        /*row_tokens=*/Value(), /*row_weights=*/Value(),
        routed.getActivationAttr(), routed.getSwigluFusionAttr(),
        routed.getAlphaAttr(), routed.getBetaAttr(), routed.getLimitAttr(),
        /*quant=*/QuantAttr(), /*panel_width=*/IntegerAttr());
    // Zero-computation experts still read the input; the gate is gone.
    bool zeroExperts = !combine.getZeroExpertKinds().empty();
    auto newCombine = CombineOp::create(
        b, loc, combine.getType(), newRouted.getResult(), weightsOfSlots, ids,
        newDispatch.getSlotRows(), zeroExperts ? combine.getInput() : Value(),
        /*shared=*/Value(), /*shared_gate=*/Value(), combine.getConstants(),
        combine.getConstantGates(), b.getI64IntegerAttr(totalExperts),
        combine.getZeroExpertsAttr(), /*dropped_pass_through=*/UnitAttr());
    combine.replaceAllUsesWith(newCombine.getResult());
    eraseWithDeadProducers(combine);
  }

  /// The routing with the slices appended: ids `[T, k + C]` whose slot
  /// `k + c` is expert `E + c` (zero-computation ids move up by `C`), and
  /// weights whose slots `k + c` hold the shared gate's
  /// `sigmoid(shared_gate . x)`, or 1 without a gate.
  std::pair<Value, Value> extendRouting(OpBuilder &b, Location loc,
                                        CombineOp combine, int64_t numExperts,
                                        int64_t numSlices) {
    Value ids = combine.getIds(), weights = combine.getWeights();
    auto idsType = cast<RankedTensorType>(ids.getType());
    auto weightsType = cast<RankedTensorType>(weights.getType());
    Type score = weightsType.getElementType();
    int64_t k = idsType.getDimSize(1);
    int64_t width = k + numSlices;
    SmallVector<Value> dynamicTokens;
    if (idsType.isDynamicDim(0))
      dynamicTokens.push_back(tensor::DimOp::create(b, loc, ids, 0));
    int64_t numTokens = idsType.getDimSize(0);

    // sigmoid(shared_gate . x) per token, accumulated in the score type.
    Value gate;
    if (Value sharedGate = combine.getSharedGate()) {
      Value empty =
          tensor::EmptyOp::create(b, loc, {numTokens}, score, dynamicTokens);
      Value zero =
          arith::ConstantOp::create(b, loc, b.getZeroAttr(score)).getResult();
      Value init = linalg::FillOp::create(b, loc, zero, empty).getResult(0);
      gate = linalg::MatvecOp::create(
                 b, loc, ValueRange{combine.getInput(), sharedGate},
                 ValueRange{init})
                 .getResult(0);
    }

    MLIRContext *ctx = b.getContext();
    AffineMap identity = AffineMap::getMultiDimIdentityMap(2, ctx);
    AffineMap tokenOnly = AffineMap::get(2, 0, getAffineDimExpr(0, ctx));
    auto parallel =
        SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel);
    // Builds `[T, k + C]` whose element (t, j) is `mapRouted(routed[t, j])`
    // for j < k and `sliceValue(j - k, gate[t])` otherwise.
    auto extend =
        [&](Value routedValues, Type elementType, bool readsGate,
            function_ref<Value(OpBuilder &, Location, Value)> mapRouted,
            function_ref<Value(OpBuilder &, Location, function_ref<Value()>,
                               Value)>
                sliceValue) {
          Value init = tensor::EmptyOp::create(b, loc, {numTokens, width},
                                               elementType, dynamicTokens);
          SmallVector<Value> inputs;
          SmallVector<AffineMap> maps;
          if (readsGate) {
            inputs.push_back(gate);
            maps.push_back(tokenOnly);
          }
          maps.push_back(identity);
          return linalg::GenericOp::create(
                     b, loc, init.getType(), inputs, ValueRange{init}, maps,
                     parallel,
                     [&](OpBuilder &nb, Location nl, ValueRange args) {
                       Value t = linalg::IndexOp::create(nb, nl, 0);
                       Value j = linalg::IndexOp::create(nb, nl, 1);
                       Value kIndex = arith::ConstantIndexOp::create(nb, nl, k);
                       Value isRouted = arith::CmpIOp::create(
                           nb, nl, arith::CmpIPredicate::ult, j, kIndex);
                       // A routed slot's index, kept in range for the slices'.
                       Value last =
                           arith::ConstantIndexOp::create(nb, nl, k - 1);
                       Value slot = arith::MinUIOp::create(nb, nl, j, last);
                       Value routedValue = mapRouted(
                           nb, nl,
                           tensor::ExtractOp::create(nb, nl, routedValues,
                                                     ValueRange{t, slot}));
                       Value sliceV = sliceValue(
                           nb, nl,
                           [&] {
                             return arith::SubIOp::create(nb, nl, j, kIndex);
                           },
                           readsGate ? args[0] : Value());
                       linalg::YieldOp::create(
                           nb, nl,
                           ValueRange{arith::SelectOp::create(
                                          nb, nl, isRouted, routedValue, sliceV)
                                          .getResult()});
                     })
              .getResult(0);
        };

    Type i32 = idsType.getElementType();
    Value newIds = extend(
        ids, i32, /*readsGate=*/false,
        [&](OpBuilder &nb, Location nl, Value id) -> Value {
          // Zero-computation experts' ids follow the slices now.
          Value experts = arith::ConstantIntOp::create(nb, nl, i32, numExperts);
          Value shifted = arith::AddIOp::create(
              nb, nl, id, arith::ConstantIntOp::create(nb, nl, i32, numSlices));
          Value isZeroExpert = arith::CmpIOp::create(
              nb, nl, arith::CmpIPredicate::sge, id, experts);
          return arith::SelectOp::create(nb, nl, isZeroExpert, shifted, id);
        },
        [&](OpBuilder &nb, Location nl, function_ref<Value()> slice,
            Value) -> Value {
          Value id = arith::IndexCastOp::create(nb, nl, i32, slice());
          return arith::AddIOp::create(
              nb, nl, id,
              arith::ConstantIntOp::create(nb, nl, i32, numExperts));
        });
    Value newWeights = extend(
        weights, score, /*readsGate=*/static_cast<bool>(gate),
        [](OpBuilder &, Location, Value weight) { return weight; },
        [&](OpBuilder &nb, Location nl, function_ref<Value()>,
            Value dot) -> Value {
          Value one =
              arith::ConstantOp::create(nb, nl, nb.getFloatAttr(score, 1.0));
          if (!dot)
            return one;
          Value negated = arith::NegFOp::create(nb, nl, dot);
          Value exp = math::ExpOp::create(nb, nl, negated);
          Value denominator = arith::AddFOp::create(nb, nl, one, exp);
          return arith::DivFOp::create(nb, nl, one, denominator);
        });
    return {newIds, newWeights};
  }
};

} // namespace
