//===- ExportABI.cpp - record the compiled-module manifest ------------------===//
//
// The runtime validates every call against the manifest before it touches
// memory, so the manifest must carry every shape relation the generated code
// relies on: two dynamic dimensions that the kernels assume equal get the
// same symbol. The relations come from the moe ops' shape rules.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Interfaces/ValueBoundsOpInterface.h"
#include "llvm/ADT/EquivalenceClasses.h"
#include "llvm/Support/JSON.h"

#include <functional>
#include <map>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEEXPORTABI
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// A dynamic dimension of a function argument: (argument index, dimension).
using ArgDim = std::pair<unsigned, int64_t>;

FailureOr<StringRef> dtypeName(Type type) {
  if (type.isF32())
    return StringRef("f32");
  if (type.isF16())
    return StringRef("f16");
  if (type.isBF16())
    return StringRef("bf16");
  if (type.isF64())
    return StringRef("f64");
  if (type.isSignlessInteger(32))
    return StringRef("i32");
  if (type.isSignlessInteger(64))
    return StringRef("i64");
  if (type.isSignlessInteger(8))
    return StringRef("i8");
  if (type.isUnsignedInteger(8))
    return StringRef("u8");
  // i1 buffers hold a byte per element (0 or 1), as numpy's bool does.
  if (type.isSignlessInteger(1))
    return StringRef("bool");
  return failure();
}

/// A size that is an affine function of argument dimensions:
/// sum(coefficient * dimension) + constant.
struct AffineSize {
  SmallVector<std::pair<ArgDim, int64_t>> terms;
  int64_t constant = 0;
};

/// Builds the manifest entry of one function.
class FunctionManifest {
public:
  explicit FunctionManifest(func::FuncOp func) : func(func) {}

  FailureOr<llvm::json::Object> build();

private:
  /// The argument dimension `value`'s dimension `dim` equals, following the
  /// moe ops' shape rules; nullopt when static or not traceable.
  std::optional<ArgDim> trace(Value value, int64_t dim);
  /// trace() for values of upstream ops, through the value-bounds analysis
  /// (solveUpstream), cached: relations query the same values repeatedly.
  std::optional<ArgDim> traceUpstream(Value value, int64_t dim);
  std::optional<ArgDim> solveUpstream(Value value, int64_t dim);
  /// The argument dimensions whose product `value`'s dimension `dim` equals
  /// (tokens flattened from [B, S, H] by a tensor.collapse_shape); nullopt
  /// when there are none.
  std::optional<SmallVector<ArgDim, 2>> traceProduct(Value value, int64_t dim);
  /// `value`'s dimension `dim` as an affine sum of argument dimensions (a
  /// KV cache's past + new tokens); nullopt when there is none.
  std::optional<AffineSize> traceAffine(Value value, int64_t dim);
  /// The manifest spelling of `size` ("s2+s1", "2*s0-1"); nullopt when an
  /// operand cannot be named plainly.
  std::optional<std::string> render(const AffineSize &size);
  /// Records that two dimensions must agree at run time.
  void unify(Value a, int64_t da, Value b, int64_t db);
  void collectRelations();
  /// The JSON shape entry of dimension `dim` of `value`.
  FailureOr<llvm::json::Value> shapeEntry(Value value, int64_t dim);
  std::string symbolFor(ArgDim argDim);
  /// The single moe.layer making up the function, if that is all it is.
  LayerOp singleLayer();
  llvm::json::Object referenceFor(LayerOp layer);

  func::FuncOp func;
  llvm::EquivalenceClasses<ArgDim> classes;
  /// Products: argument dimension -> the argument dimensions it multiplies.
  DenseMap<ArgDim, SmallVector<ArgDim, 2>> products;
  /// Dynamic argument dimensions that must equal a static size elsewhere.
  std::map<ArgDim, int64_t> pinned;
  /// Dynamic argument dimensions that must equal a sum of other argument
  /// dimensions (an attention mask as long as the past and new tokens).
  std::map<ArgDim, AffineSize> derived;
  /// Sizes that must agree at run time where one side is not an argument
  /// dimension; resolved into classes and `derived` once all are known.
  SmallVector<std::pair<AffineSize, AffineSize>> equations;
  void solveEquations();
  /// Set when a relation cannot be expressed in the manifest.
  std::string unsupported;
  std::map<ArgDim, std::string> names;
  DenseMap<std::pair<Value, int64_t>, std::optional<ArgDim>> upstreamTraces;
};

std::optional<ArgDim> FunctionManifest::trace(Value value, int64_t dim) {
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!type || !type.isDynamicDim(dim))
    return std::nullopt;
  if (auto arg = dyn_cast<BlockArgument>(value)) {
    if (arg.getOwner() != &func.getBody().front())
      return std::nullopt;
    return ArgDim(arg.getArgNumber(), dim);
  }
  Operation *op = value.getDefiningOp();
  auto result = cast<OpResult>(value);
  if (auto layer = dyn_cast<LayerOp>(op))
    return trace(layer.getInput(), dim);
  if (auto expert = dyn_cast<ExpertOp>(op)) {
    if (expert.combinesRows())
      return trace(expert.getCombineInto(), dim);
    // Gathered rows are as many as the tokens gathered.
    if (expert.gathersRows() && dim == 0)
      return trace(expert.getGatherTokens(), 0);
    return trace(expert.getRows(), dim);
  }
  if (auto combine = dyn_cast<CombineOp>(op))
    return dim == 0 ? trace(combine.getWeights(), 0)
                    : trace(combine.getExpertOutput(), 1);
  if (auto route = dyn_cast<RouteOp>(op))
    return dim == 0 ? trace(route.getInput(), 0) : std::nullopt;
  if (auto dispatch = dyn_cast<DispatchOp>(op)) {
    // slot_rows [T, k] follows the tokens; rows and row_tokens are T * k.
    if (result.getResultNumber() == 3 && dim == 0)
      return trace(dispatch.getInput(), 0);
    if (result.getResultNumber() == 0 && dim == 1)
      return trace(dispatch.getInput(), 1);
    return std::nullopt;
  }
  if (isa<MoEDialect>(op->getDialect()))
    return std::nullopt;
  return traceUpstream(value, dim);
}

std::optional<SmallVector<ArgDim, 2>>
FunctionManifest::traceProduct(Value value, int64_t dim) {
  std::optional<SmallVector<ArgDim, 2>> found;
  func.walk([&](tensor::CollapseShapeOp collapse) {
    auto srcType = collapse.getSrcType();
    for (auto [d, group] : llvm::enumerate(collapse.getReassociationIndices())) {
      // Only groups of dynamic sizes (and 1s) are a product of symbols.
      SmallVector<ArgDim, 2> factors;
      bool expressible = group.size() > 1;
      for (int64_t s : group) {
        if (srcType.getDimSize(s) == 1)
          continue;
        std::optional<ArgDim> factor = trace(collapse.getSrc(), s);
        if (!factor) {
          expressible = false;
          break;
        }
        factors.push_back(*factor);
      }
      if (!expressible || factors.size() < 2)
        continue;
      FailureOr<bool> equal = ValueBoundsConstraintSet::areEqual(
          ValueBoundsConstraintSet::Variable(value, dim),
          ValueBoundsConstraintSet::Variable(collapse.getResult(), d));
      if (succeeded(equal) && *equal) {
        found = factors;
        return WalkResult::interrupt();
      }
    }
    return WalkResult::advance();
  });
  return found;
}

std::optional<ArgDim> FunctionManifest::traceUpstream(Value value,
                                                      int64_t dim) {
  auto [cached, inserted] =
      upstreamTraces.try_emplace({value, dim}, std::nullopt);
  if (!inserted)
    return cached->second;
  std::optional<ArgDim> result = solveUpstream(value, dim);
  upstreamTraces[{value, dim}] = result;
  return result;
}

std::optional<ArgDim> FunctionManifest::solveUpstream(Value value,
                                                      int64_t dim) {
  // Upstream tensor ops (what the ONNX importer builds for ai.onnx ops)
  // implement the value-bounds interfaces: find the argument dimension this
  // one provably equals.
  for (BlockArgument arg : func.getArguments()) {
    auto type = dyn_cast<RankedTensorType>(arg.getType());
    if (!type)
      continue;
    for (int64_t d = 0; d < type.getRank(); ++d) {
      if (!type.isDynamicDim(d))
        continue;
      FailureOr<bool> equal = ValueBoundsConstraintSet::areEqual(
          ValueBoundsConstraintSet::Variable(value, dim),
          ValueBoundsConstraintSet::Variable(arg, d));
      if (succeeded(equal) && *equal)
        return ArgDim(arg.getArgNumber(), d);
    }
  }
  return std::nullopt;
}

std::optional<AffineSize> FunctionManifest::traceAffine(Value value,
                                                       int64_t dim) {
  // Solve for the size in terms of the dimensions of the function's
  // arguments; keep it when it is a sum of them times integers (what the
  // manifest's shape grammar spells).
  Block *entry = &func.getBody().front();
  auto isArgDim = [&](Value v, std::optional<int64_t> d,
                      ValueBoundsConstraintSet &) {
    auto arg = dyn_cast<BlockArgument>(v);
    return arg && arg.getOwner() == entry && d.has_value();
  };
  AffineMap map;
  ValueDimList operands;
  if (failed(ValueBoundsConstraintSet::computeBound(
          map, operands, presburger::BoundType::EQ,
          ValueBoundsConstraintSet::Variable(value, dim), isArgDim)) ||
      map.getNumResults() != 1)
    return std::nullopt;
  SmallVector<ArgDim> argDims;
  for (auto &[operand, d] : operands) {
    auto arg = dyn_cast<BlockArgument>(operand);
    if (!arg || !d)
      return std::nullopt;
    argDims.emplace_back(arg.getArgNumber(), *d);
  }
  AffineSize size;
  std::map<ArgDim, int64_t> coefficients;
  std::function<bool(AffineExpr, int64_t)> collect = [&](AffineExpr e,
                                                         int64_t scale) {
    if (auto c = dyn_cast<AffineConstantExpr>(e)) {
      size.constant += scale * c.getValue();
      return true;
    }
    if (auto d = dyn_cast<AffineDimExpr>(e)) {
      coefficients[argDims[d.getPosition()]] += scale;
      return true;
    }
    if (auto sym = dyn_cast<AffineSymbolExpr>(e)) {
      coefficients[argDims[map.getNumDims() + sym.getPosition()]] += scale;
      return true;
    }
    auto bin = dyn_cast<AffineBinaryOpExpr>(e);
    if (!bin)
      return false;
    if (bin.getKind() == AffineExprKind::Add)
      return collect(bin.getLHS(), scale) && collect(bin.getRHS(), scale);
    if (bin.getKind() == AffineExprKind::Mul)
      if (auto c = dyn_cast<AffineConstantExpr>(bin.getRHS()))
        return collect(bin.getLHS(), scale * c.getValue());
    return false;
  };
  if (!collect(map.getResult(0), 1))
    return std::nullopt;
  for (auto &[argDim, coefficient] : coefficients)
    if (coefficient != 0)
      size.terms.emplace_back(argDim, coefficient);
  if (size.terms.empty())
    return std::nullopt;
  return size;
}

std::optional<std::string> FunctionManifest::render(const AffineSize &size) {
  // Operands pinned to a static size fold into the constant; derived ones
  // are replaced by their sums (a few levels deep, which also stops
  // cycles); products cannot be nested in a sum.
  std::map<ArgDim, int64_t> coefficients;
  int64_t constant = 0;
  std::function<bool(const AffineSize &, int64_t, int)> expand =
      [&](const AffineSize &sum, int64_t scale, int depth) {
        constant += scale * sum.constant;
        for (auto &[argDim, coefficient] : sum.terms) {
          int64_t c = scale * coefficient;
          std::optional<int64_t> fixed;
          for (const auto &[member, value] : pinned)
            if (classes.isEquivalent(member, argDim))
              fixed = value;
          if (fixed) {
            constant += c * *fixed;
            continue;
          }
          if (products.count(classes.getLeaderValue(argDim)))
            return false;
          auto it = llvm::find_if(derived, [&](const auto &entry) {
            return classes.isEquivalent(entry.first, argDim);
          });
          if (it != derived.end()) {
            if (depth > 4 || !expand(it->second, c, depth + 1))
              return false;
            continue;
          }
          coefficients[classes.getLeaderValue(argDim)] += c;
        }
        return true;
      };
  if (!expand(size, 1, 0))
    return std::nullopt;
  std::string expr;
  for (auto &[argDim, coefficient] : coefficients) {
    if (coefficient == 0)
      continue;
    if (!expr.empty() || coefficient < 0)
      expr += coefficient < 0 ? "-" : "+";
    if (std::abs(coefficient) != 1)
      expr += std::to_string(std::abs(coefficient)) + "*";
    expr += symbolFor(argDim);
  }
  if (expr.empty())
    return std::nullopt;
  if (constant != 0)
    expr += (constant < 0 ? "-" : "+") + std::to_string(std::abs(constant));
  return expr;
}

void FunctionManifest::unify(Value a, int64_t da, Value b, int64_t db) {
  std::optional<ArgDim> x = trace(a, da), y = trace(b, db);
  auto staticSize = [](Value v, int64_t d) -> std::optional<int64_t> {
    auto type = cast<RankedTensorType>(v.getType());
    if (type.isDynamicDim(d))
      return std::nullopt;
    return type.getDimSize(d);
  };
  if (x && y)
    classes.unionSets(*x, *y);
  else if (x && staticSize(b, db))
    pinned[*x] = *staticSize(b, db);
  else if (y && staticSize(a, da))
    pinned[*y] = *staticSize(a, da);
  else {
    // Sums of argument dimensions (a KV cache: past + new tokens) on one or
    // both sides: solved once every relation is known.
    auto sizeOf = [&](std::optional<ArgDim> argDim, Value v,
                      int64_t d) -> std::optional<AffineSize> {
      if (argDim)
        return AffineSize{{{*argDim, 1}}, 0};
      return traceAffine(v, d);
    };
    std::optional<AffineSize> sa = sizeOf(x, a, da), sb = sizeOf(y, b, db);
    if (sa && sb)
      equations.emplace_back(*sa, *sb);
  }
}

void FunctionManifest::solveEquations() {
  // Each equation lhs - rhs = 0 over classes of argument dimensions, with
  // pinned and derived classes substituted: when it reduces to a - b = 0
  // the classes merge; otherwise a class with a unit coefficient is derived
  // from the others (spelled as their sum, so the runtime checks it),
  // preferably one that stands alone on a side (the mask's length equals
  // past + new tokens: the mask is derived). Repeated until nothing
  // changes, since merging and deriving simplify the other equations.
  auto isDerived = [&](ArgDim argDim) {
    return llvm::any_of(derived, [&](const auto &entry) {
      return classes.isEquivalent(entry.first, argDim);
    });
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (auto &[lhs, rhs] : equations) {
      std::map<ArgDim, int64_t> diff;
      int64_t constant = 0;
      std::function<void(const AffineSize &, int64_t, int)> add =
          [&](const AffineSize &side, int64_t sign, int depth) {
            constant += sign * side.constant;
            for (auto &[argDim, c] : side.terms) {
              auto pin = llvm::find_if(pinned, [&](const auto &entry) {
                return classes.isEquivalent(entry.first, argDim);
              });
              auto sum = llvm::find_if(derived, [&](const auto &entry) {
                return classes.isEquivalent(entry.first, argDim);
              });
              if (pin != pinned.end())
                constant += sign * c * pin->second;
              else if (sum != derived.end() && depth < 8)
                add(sum->second, sign * c, depth + 1);
              else
                diff[classes.getLeaderValue(argDim)] += sign * c;
            }
          };
      add(lhs, 1, 0);
      add(rhs, -1, 0);
      for (auto it = diff.begin(); it != diff.end();)
        it = it->second == 0 ? diff.erase(it) : std::next(it);
      if (diff.empty() || llvm::any_of(diff, [&](const auto &term) {
            return isDerived(term.first);
          }))
        continue;
      if (diff.size() == 2 && constant == 0 &&
          diff.begin()->second == -std::next(diff.begin())->second &&
          std::abs(diff.begin()->second) == 1) {
        classes.unionSets(diff.begin()->first, std::next(diff.begin())->first);
        changed = true;
        continue;
      }
      auto alone = [&](const AffineSize &side) -> std::optional<ArgDim> {
        if (side.terms.size() == 1 && side.terms[0].second == 1 &&
            side.constant == 0)
          return classes.getLeaderValue(side.terms[0].first);
        return std::nullopt;
      };
      std::optional<ArgDim> pick;
      for (std::optional<ArgDim> candidate : {alone(lhs), alone(rhs)})
        if (candidate && !pick && diff.count(*candidate) &&
            std::abs(diff[*candidate]) == 1 && !products.count(*candidate))
          pick = candidate;
      for (auto &[argDim, c] : diff)
        if (!pick && std::abs(c) == 1 && !products.count(argDim))
          pick = argDim;
      if (!pick)
        continue;
      int64_t sign = diff[*pick];
      AffineSize sum;
      sum.constant = -sign * constant;
      for (auto &[argDim, c] : diff)
        if (argDim != *pick)
          sum.terms.emplace_back(argDim, -sign * c);
      derived.try_emplace(*pick, sum);
      changed = true;
    }
  }
}

void FunctionManifest::collectRelations() {
  for (BlockArgument arg : func.getArguments())
    if (auto type = dyn_cast<RankedTensorType>(arg.getType()))
      for (int64_t d = 0; d < type.getRank(); ++d)
        if (type.isDynamicDim(d))
          classes.insert(ArgDim(arg.getArgNumber(), d));

  func.walk([&](Operation *op) {
    if (auto linalgOp = dyn_cast<linalg::LinalgOp>(op);
        linalgOp && linalgOp.hasPureTensorSemantics()) {
      // Operand dimensions indexed by the same loop must agree at run time
      // (elementwise broadcasting and contractions assume it).
      SmallVector<std::pair<Value, int64_t>> first(linalgOp.getNumLoops());
      for (OpOperand &operand : op->getOpOperands()) {
        AffineMap map = linalgOp.getMatchingIndexingMap(&operand);
        for (auto [d, expr] : llvm::enumerate(map.getResults())) {
          auto loop = dyn_cast<AffineDimExpr>(expr);
          if (!loop)
            continue;
          auto &slot = first[loop.getPosition()];
          if (!slot.first)
            slot = {operand.get(), d};
          else
            unify(slot.first, slot.second, operand.get(), d);
        }
      }
      return;
    }
    if (auto layer = dyn_cast<LayerOp>(op)) {
      // With the router weight instead of logits, the input is the layer's
      // only token-indexed operand.
      Value input = layer.getInput(), logits = layer.getLogits();
      if (logits && layer.getInput().getType().getRank() == 2) {
        unify(input, 0, logits, 0);
      } else if (auto logitsDim =
                     logits ? trace(logits, 0) : std::nullopt) {
        // [B, S, H] input: the router sees B * S tokens.
        auto b = trace(input, 0), s = trace(input, 1);
        ArrayRef<int64_t> shape = layer.getInput().getType().getShape();
        if (b && s)
          products[*logitsDim] = {*b, *s};
        else if (!b && !s)
          pinned[*logitsDim] = shape[0] * shape[1];
        else
          unsupported = "the router's token count is the product of a "
                        "static and a dynamic dimension of the [B, S, H] "
                        "input; make both dynamic or both static";
      }
    } else if (auto dispatch = dyn_cast<DispatchOp>(op)) {
      unify(dispatch.getInput(), 0, dispatch.getIds(), 0);
    } else if (auto combine = dyn_cast<CombineOp>(op)) {
      for (Value v : {combine.getIds(), combine.getSlotRows(),
                      combine.getInput(), combine.getShared()})
        if (v)
          unify(combine.getWeights(), 0, v, 0);
    }
  });
  solveEquations();
}

std::string FunctionManifest::symbolFor(ArgDim argDim) {
  ArgDim leader = classes.getLeaderValue(argDim);
  auto it = names.find(leader);
  if (it != names.end())
    return it->second;
  std::string name = "s" + std::to_string(names.size());
  names.emplace(leader, name);
  return name;
}

FailureOr<llvm::json::Value> FunctionManifest::shapeEntry(Value value,
                                                          int64_t dim) {
  auto type = cast<RankedTensorType>(value.getType());
  if (!type.isDynamicDim(dim))
    return llvm::json::Value(type.getDimSize(dim));
  std::optional<ArgDim> argDim = trace(value, dim);
  if (!argDim) {
    std::optional<SmallVector<ArgDim, 2>> factors = traceProduct(value, dim);
    if (!factors) {
      if (std::optional<AffineSize> sum = traceAffine(value, dim))
        if (std::optional<std::string> expr = render(*sum))
          return llvm::json::Value(*expr);
      return failure();
    }
    std::string expr;
    for (ArgDim factor : *factors)
      expr += (expr.empty() ? "" : "*") + symbolFor(factor);
    return llvm::json::Value(expr);
  }
  for (const auto &[member, size] : pinned)
    if (classes.isEquivalent(member, *argDim))
      return llvm::json::Value(size);
  for (const auto &[member, sum] : derived)
    if (classes.isEquivalent(member, *argDim))
      if (std::optional<std::string> expr = render(sum))
        return llvm::json::Value(*expr);
  auto product = products.find(*argDim);
  if (product != products.end() &&
      classes.getLeaderValue(*argDim) == *argDim) {
    std::string expr;
    for (ArgDim factor : product->second)
      expr += (expr.empty() ? "" : "*") + symbolFor(factor);
    return llvm::json::Value(expr);
  }
  return llvm::json::Value(symbolFor(*argDim));
}

LayerOp FunctionManifest::singleLayer() {
  Block &body = func.getBody().front();
  if (body.getOperations().size() != 2)
    return {};
  auto layer = dyn_cast<LayerOp>(body.front());
  auto ret = dyn_cast<func::ReturnOp>(body.back());
  if (!layer || !ret || ret.getNumOperands() != 1 ||
      ret.getOperand(0) != layer.getResult())
    return {};
  for (Value operand : layer->getOperands())
    if (!isa<BlockArgument>(operand))
      return {};
  return layer;
}

/// The moe.layer operands in the order and with the names of the manifest.
SmallVector<std::pair<StringRef, Value>> namedOperands(LayerOp layer) {
  return {{"input", layer.getInput()},
          {"logits", layer.getLogits()},
          {"router_weight", layer.getRouterWeight()},
          {"fc1", layer.getFc1()},
          {"fc1_bias", layer.getFc1Bias()},
          {"fc2", layer.getFc2()},
          {"fc2_bias", layer.getFc2Bias()},
          {"fc3", layer.getFc3()},
          {"fc3_bias", layer.getFc3Bias()},
          {"fc1_scales", layer.getFc1Scales()},
          {"fc2_scales", layer.getFc2Scales()},
          {"fc3_scales", layer.getFc3Scales()},
          {"fc1_zero_points", layer.getFc1ZeroPoints()},
          {"fc2_zero_points", layer.getFc2ZeroPoints()},
          {"fc3_zero_points", layer.getFc3ZeroPoints()},
          {"score_bias", layer.getScoreBias()},
          {"shared_fc1", layer.getSharedFc1()},
          {"shared_fc2", layer.getSharedFc2()},
          {"shared_fc3", layer.getSharedFc3()},
          {"shared_gate", layer.getSharedGate()},
          {"constants", layer.getConstants()},
          {"constant_gates", layer.getConstantGates()}};
}

llvm::json::Object FunctionManifest::referenceFor(LayerOp layer) {
  llvm::json::Object operands;
  for (auto [name, value] : namedOperands(layer))
    if (value)
      operands[name] = cast<BlockArgument>(value).getArgNumber();
  auto optionalFloat = [](std::optional<APFloat> v) -> llvm::json::Value {
    if (!v)
      return nullptr;
    return v->convertToDouble();
  };
  llvm::json::Array zeroExperts;
  if (auto zero = layer.getZeroExperts())
    for (Attribute a : *zero)
      zeroExperts.push_back(
          stringifyZeroExpertKind(cast<ZeroExpertKindAttr>(a).getValue()));
  llvm::json::Object attributes{
      {"k", static_cast<int64_t>(layer.getK())},
      {"scoring", stringifyScoring(layer.getScoring())},
      {"normalize", layer.getNormalize()},
      {"num_groups", static_cast<int64_t>(layer.getNumGroups())},
      {"top_groups", static_cast<int64_t>(layer.getTopGroups())},
      {"group_scoring", stringifyGroupScoring(layer.getGroupScoring())},
      {"top_p", optionalFloat(layer.getTopP())},
      {"scaling", layer.getScaling().convertToDouble()},
      {"activation", stringifyActivation(layer.getActivation())},
      {"swiglu_fusion", stringifySwigluFusion(layer.getSwigluFusion())},
      {"alpha", layer.getAlpha().convertToDouble()},
      {"beta", layer.getBeta().convertToDouble()},
      {"limit", optionalFloat(layer.getLimit())},
      {"capacity_factor", optionalFloat(layer.getCapacityFactor())},
      {"expert_capacity",
       layer.getExpertCapacity()
           ? llvm::json::Value(static_cast<int64_t>(*layer.getExpertCapacity()))
           : llvm::json::Value(nullptr)},
      {"capacity_per_sequence", layer.getCapacityPerSequence()},
      {"dropped_pass_through", layer.getDroppedPassThrough()},
      {"scale_input", layer.getScaleInput()},
      {"zero_experts", std::move(zeroExperts)}};
  if (QuantAttr quant = layer.getQuantAttr()) {
    attributes["weight_bits"] = quant.getBits();
    attributes["block_size"] = quant.getBlockSize();
  }
  return llvm::json::Object{{"op", "layer"},
                            {"operands", std::move(operands)},
                            {"attributes", std::move(attributes)}};
}

FailureOr<llvm::json::Object> FunctionManifest::build() {
  collectRelations();
  if (!unsupported.empty())
    return func.emitError() << "cannot export '" << func.getSymName()
                            << "': " << unsupported;
  LayerOp layer = singleLayer();

  // Argument names: the layer operand an argument feeds, an explicit
  // `moe.name` argument attribute, or its position.
  SmallVector<std::string> argNames;
  for (BlockArgument arg : func.getArguments())
    argNames.push_back("arg" + std::to_string(arg.getArgNumber()));
  if (layer)
    for (auto [name, value] : namedOperands(layer))
      if (value)
        argNames[cast<BlockArgument>(value).getArgNumber()] = name.str();
  for (BlockArgument arg : func.getArguments())
    if (auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                      "moe.name"))
      argNames[arg.getArgNumber()] = name.str();

  auto describe = [&](Value value, StringRef name,
                      StringRef what) -> FailureOr<llvm::json::Object> {
    auto type = dyn_cast<RankedTensorType>(value.getType());
    if (!type)
      return func.emitError() << what << " '" << name
                              << "' must be a ranked tensor, got "
                              << value.getType();
    FailureOr<StringRef> dtype = dtypeName(type.getElementType());
    if (failed(dtype))
      return func.emitError() << what << " '" << name
                              << "' has unsupported element type "
                              << type.getElementType();
    llvm::json::Array shape;
    for (int64_t d = 0; d < type.getRank(); ++d) {
      FailureOr<llvm::json::Value> entry = shapeEntry(value, d);
      if (failed(entry))
        return func.emitError()
               << what << " '" << name << "' dimension " << d
               << " is dynamic and cannot be expressed in terms of the "
                  "function's inputs";
      shape.push_back(std::move(*entry));
    }
    return llvm::json::Object{
        {"name", name.str()}, {"dtype", dtype->str()}, {"shape", std::move(shape)}};
  };
  // How an expert-parallel launcher hands the tensor to each rank
  // (-moe-shard-experts); absent: every rank gets all of it.
  auto addSplit = [](llvm::json::Object &entry, DictionaryAttr attrs) {
    if (auto split = attrs ? attrs.getAs<StringAttr>("moe.split") : nullptr)
      entry["split"] = split.str();
  };

  // Name symbols in input order so that the manifest reads naturally.
  llvm::json::Array inputs, outputs;
  for (BlockArgument arg : func.getArguments()) {
    FailureOr<llvm::json::Object> entry =
        describe(arg, argNames[arg.getArgNumber()], "input");
    if (failed(entry))
      return failure();
    addSplit(*entry, func.getArgAttrDict(arg.getArgNumber()));
    inputs.push_back(std::move(*entry));
  }
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  for (auto [i, value] : llvm::enumerate(ret.getOperands())) {
    auto name = func.getResultAttrOfType<StringAttr>(i, "moe.name");
    FailureOr<llvm::json::Object> entry = describe(
        value, name ? name.str() : "result" + std::to_string(i), "output");
    if (failed(entry))
      return failure();
    addSplit(*entry, func.getResultAttrDict(i));
    outputs.push_back(std::move(*entry));
  }
  llvm::json::Object manifest{{"name", func.getSymName().str()},
                              {"entry", ("moe_entry_" + func.getSymName()).str()},
                              {"inputs", std::move(inputs)},
                              {"outputs", std::move(outputs)}};
  // No rank of an expert-parallel function holds all the weights the
  // reference evaluator would need.
  ExpertParallelAttr ep;
  func.walk([&](LayerOp anyLayer) {
    if (!ep)
      ep = anyLayer.getExpertParallelAttr();
  });
  if (ep)
    manifest["expert_parallel"] =
        llvm::json::Object{{"ranks", ep.getRanks()},
                           {"num_experts", ep.getNumExperts()},
                           {"experts_per_rank", ep.getExpertsPerRank()}};
  else if (layer)
    manifest["reference"] = referenceFor(layer);
  return manifest;
}

struct MoEExportABIPass : moe::impl::MoEExportABIBase<MoEExportABIPass> {
  using MoEExportABIBase::MoEExportABIBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (target != "cpu" && target != "cuda") {
      module.emitError() << "unknown target '" << target
                         << "' (expected cpu or cuda)";
      return signalPassFailure();
    }
    llvm::json::Array functions;
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isExternal() || !func.isPublic())
        continue;
      FailureOr<llvm::json::Object> entry = FunctionManifest(func).build();
      if (failed(entry))
        return signalPassFailure();
      functions.push_back(std::move(*entry));
      // The names now live in the manifest; LLVM has no use for them.
      for (unsigned i = 0; i < func.getNumArguments(); ++i) {
        func.removeArgAttr(i, "moe.name");
        func.removeArgAttr(i, "moe.split");
      }
      for (unsigned i = 0; i < func.getNumResults(); ++i)
        for (StringRef name : {"moe.split", "moe.name"})
          func.removeResultAttr(i, StringAttr::get(&getContext(), name));
      func->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(),
                    UnitAttr::get(&getContext()));
    }
    if (functions.empty()) {
      module.emitError("module has no public function to export");
      return signalPassFailure();
    }
    llvm::json::Object manifest{{"format", "moe-module-1"},
                                {"target", target},
                                {"functions", std::move(functions)}};
    std::string text;
    llvm::raw_string_ostream os(text);
    os << llvm::json::Value(std::move(manifest));
    module->setAttr("moe.manifest", StringAttr::get(&getContext(), text));
  }
};

} // namespace
