//===- Raising.cpp - Decomposed MoE subgraphs into fused MoE nodes ----------===//
//
// Exporters spell an MoE block out in standard ops in a few recurring ways.
// Each matcher here recognises one of them on the ONNX graph itself (before
// anything is imported) and replaces the node that produces the block's
// output with one `moe_mlir.RaisedMoE` node; the dead remainder of the block
// is dropped afterwards. The RaisedMoE node names the router logits, the
// tokens and every expert's weights (per expert, or stacked); MoENodes.cpp
// stacks them into moe.layer's layout.
//
// Matching works on meaning, not on exact node sequences: it looks through
// the shape plumbing (Reshape, Unsqueeze, Squeeze, Flatten, float Casts)
// exporters put between the ops that compute, and anchors on those: the
// router's TopK, the expert MLPs' MatMul/Gemm with constant weights, and the
// scatter/sum that combines the experts' outputs.
//
//===----------------------------------------------------------------------===//

#include "Raising.h"
#include "WeightViews.h"

#include "GraphImporter.h"
#include "GraphEvaluator.h"
#include "GraphIndex.h"

#include "moe-mlir/Reference/Reference.h"

#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <cmath>
#include <cstdio>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::onnx_import;

namespace {

using onnx::NodeProto;

//===----------------------------------------------------------------------===//
// Graph queries
//===----------------------------------------------------------------------===//

/// Input `i` of `node`, or "" when it has fewer inputs: matchers probe
/// operands before knowing the node is well formed.
const std::string &in(const NodeProto *node, int i) {
  static const std::string none;
  return i < node->input_size() ? node->input(i) : none;
}

/// Output `i` of `node`, or "".
const std::string &out(const NodeProto *node, int i) {
  static const std::string none;
  return i < node->output_size() ? node->output(i) : none;
}

bool isOp(const NodeProto *node, StringRef opType) {
  return node && node->op_type() == opType &&
         (node->domain().empty() || node->domain() == "ai.onnx");
}

/// f32, f16 or bf16: the element types a model's float weights and
/// activations come in (half-precision exports hold the latter two).
bool isFloatElementType(int32_t onnxType) {
  return onnxType == onnx::TensorProto::FLOAT ||
         onnxType == onnx::TensorProto::FLOAT16 ||
         onnxType == onnx::TensorProto::BFLOAT16;
}

/// Ops that move or relabel data without computing: looked through when
/// following a value to the op that computes it.
bool isPlumbing(const NodeProto *node) {
  if (!node || !(node->domain().empty() || node->domain() == "ai.onnx"))
    return false;
  StringRef op = node->op_type();
  if (op == "Cast") {
    const onnx::AttributeProto *to = findAttribute(*node, "to");
    return to && isFloatElementType(int32_t(to->i()));
  }
  return op == "Reshape" || op == "Unsqueeze" || op == "Squeeze" ||
         op == "Flatten" || op == "Identity" || op == "Expand";
}

/// The op computing `name`, looking through plumbing.
const NodeProto *computedBy(const GraphIndex &g, std::string name,
                            std::string *through = nullptr) {
  const NodeProto *node = g.producer(name);
  for (int steps = 0; node && isPlumbing(node) && steps < 16; ++steps) {
    name = in(node, 0);
    node = g.producer(name);
  }
  if (through)
    *through = name;
  return node;
}

/// `name` with leading plumbing stripped: the value it is a view of.
std::string viewSource(const GraphIndex &g, const std::string &name) {
  std::string source;
  computedBy(g, name, &source);
  return source;
}

/// Whether input `i` of `node` only contributes its shape, never its values
/// (Shape, Size), or is itself a shape operand (the target shape of a
/// Reshape/Expand/ConstantOfShape/Tile): value searches skip those, which
/// in a whole model lead back through every layer above.
bool isShapeOperand(const NodeProto *node, int i) {
  StringRef op = node->op_type();
  if (op == "Shape" || op == "Size")
    return true;
  if (op == "ConstantOfShape")
    return i == 0;
  return i == 1 && (op == "Reshape" || op == "Expand" || op == "Tile");
}

/// Nodes reachable backwards from `name` through the values it is computed
/// from, nearest first, at most `budget` of them.
SmallVector<const NodeProto *> ancestors(const GraphIndex &g,
                                         const std::string &name,
                                         int budget) {
  SmallVector<const NodeProto *> found;
  llvm::DenseSet<const NodeProto *> seen;
  std::deque<std::string> work{name};
  while (!work.empty() && (int)found.size() < budget) {
    std::string value = work.front();
    work.pop_front();
    const NodeProto *node = g.producer(value);
    if (!node || !seen.insert(node).second)
      continue;
    found.push_back(node);
    for (auto [i, in] : llvm::enumerate(node->input()))
      if (!in.empty() && !isShapeOperand(node, i))
        work.push_back(in);
  }
  return found;
}

//===----------------------------------------------------------------------===//
// Expert MLPs
//===----------------------------------------------------------------------===//

/// y = x W (+ b) with a constant W: MatMul(x, W) [+ Add b] or Gemm.
struct Linear {
  std::string input, weight, bias;
  /// W is [in, out] (MatMul, Gemm transB=0) rather than [out, in].
  bool inMajor = true;
};

std::optional<Linear> matchLinear(const GraphIndex &g, const std::string &value) {
  const NodeProto *node = computedBy(g, value);
  Linear linear;
  if (isOp(node, "Add")) {
    for (int side : {0, 1}) {
      const NodeProto *mm = computedBy(g, in(node, side));
      const std::string &bias = in(node, 1 - side);
      if ((isOp(mm, "MatMul") || isOp(mm, "Gemm")) && g.isInitializer(bias) &&
          g.dims(bias).size() == 1) {
        std::optional<Linear> inner = matchLinear(g, in(node, side));
        if (!inner || !inner->bias.empty())
          return std::nullopt;
        inner->bias = bias;
        return inner;
      }
    }
    return std::nullopt;
  }
  if (isOp(node, "MatMul") && g.isInitializer(in(node, 1)) &&
      g.dims(in(node, 1)).size() == 2) {
    linear.input = in(node, 0);
    linear.weight = in(node, 1);
    return linear;
  }
  if (isOp(node, "Gemm") && g.isInitializer(in(node, 1)) &&
      g.dims(in(node, 1)).size() == 2) {
    auto attr = [&](StringRef name, double def) {
      const onnx::AttributeProto *a = findAttribute(*node, name);
      return a ? (a->type() == onnx::AttributeProto::FLOAT ? a->f() : a->i())
               : def;
    };
    if (attr("alpha", 1.0) != 1.0 || attr("beta", 1.0) != 1.0 ||
        attr("transA", 0) != 0)
      return std::nullopt;
    linear.input = in(node, 0);
    linear.weight = in(node, 1);
    linear.inMajor = attr("transB", 0) == 0;
    if (node->input_size() > 2 && !in(node, 2).empty()) {
      if (!g.isInitializer(in(node, 2)) || g.dims(in(node, 2)).size() != 1)
        return std::nullopt;
      linear.bias = in(node, 2);
    }
    return linear;
  }
  return std::nullopt;
}

/// The activation computed from `pre` into `value`: relu, silu (x *
/// sigmoid(x)), gelu (Gelu or the Erf form exporters write), gelu_tanh.
/// A float constant operand of a binary node: the other side's value.
std::optional<double> constantOperand(const GraphIndex &g,
                                      const NodeProto *node,
                                      std::string &other) {
  for (int side : {0, 1})
    if (std::optional<double> v = g.scalar(in(node, side))) {
      other = in(node, 1 - side);
      return v;
    }
  return std::nullopt;
}

/// `value` as a scalar function of `input`, evaluated at `x`: the
/// elementwise ops between them (scalar constants only) are interpreted.
/// nullopt when something else (another tensor, a non-elementwise op) feeds
/// `value`, or the walk is too deep.
std::optional<double> evaluateAt(const GraphIndex &g, const std::string &value,
                                 const std::string &input, double x,
                                 int depth = 0) {
  if (value == input)
    return x;
  if (std::optional<double> c = g.scalar(value))
    return c;
  const NodeProto *node = g.producer(value);
  if (!node || depth > 24)
    return std::nullopt;
  if (isPlumbing(node))
    return evaluateAt(g, in(node, 0), input, x, depth + 1);
  auto arg = [&](int i) {
    return evaluateAt(g, in(node, i), input, x, depth + 1);
  };
  StringRef op = node->op_type();
  if (op == "Erf" || op == "Tanh" || op == "Sigmoid" || op == "Neg" ||
      op == "Relu" || op == "Sqrt" || op == "Exp") {
    std::optional<double> a = arg(0);
    if (!a)
      return std::nullopt;
    if (op == "Erf")
      return std::erf(*a);
    if (op == "Tanh")
      return std::tanh(*a);
    if (op == "Sigmoid")
      return 1.0 / (1.0 + std::exp(-*a));
    if (op == "Neg")
      return -*a;
    if (op == "Relu")
      return std::max(*a, 0.0);
    if (op == "Sqrt")
      return std::sqrt(*a);
    return std::exp(*a);
  }
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" ||
      op == "Pow") {
    std::optional<double> a = arg(0), b = arg(1);
    if (!a || !b)
      return std::nullopt;
    if (op == "Add")
      return *a + *b;
    if (op == "Sub")
      return *a - *b;
    if (op == "Mul")
      return *a * *b;
    if (op == "Div")
      return *a / *b;
    return std::pow(*a, *b);
  }
  return std::nullopt;
}

/// Whether `value` computes `fn(input)` elementwise: checked by evaluating
/// the subgraph at a few points, which holds whatever association or
/// spelling the exporter chose and rejects look-alikes.
bool computes(const GraphIndex &g, const std::string &value,
              const std::string &input, double (*fn)(double)) {
  for (double x : {-2.5, -0.75, -0.1, 0.3, 1.1, 3.0}) {
    std::optional<double> v = evaluateAt(g, value, input, x);
    if (!v || std::abs(*v - fn(x)) > 1e-5 * (1.0 + std::abs(fn(x))))
      return false;
  }
  return true;
}

double geluErf(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double geluTanh(double x) {
  const double c = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
}

std::optional<std::string> matchActivation(const GraphIndex &g,
                                           const std::string &value,
                                           std::string &pre) {
  const NodeProto *node = computedBy(g, value);
  if (isOp(node, "Relu")) {
    pre = in(node, 0);
    return std::string("relu");
  }
  if (isOp(node, "Gelu")) {
    pre = in(node, 0);
    const onnx::AttributeProto *approx = findAttribute(*node, "approximate");
    return std::string(approx && approx->s() == "tanh" ? "gelu_tanh" : "gelu");
  }
  if (isOp(node, "Mul")) {
    // silu: Mul(a, Sigmoid(a)).
    for (int side : {0, 1}) {
      const NodeProto *sig = computedBy(g, in(node, side));
      if (isOp(sig, "Sigmoid") &&
          viewSource(g, in(sig, 0)) == viewSource(g, in(node, 1 - side))) {
        pre = in(node, 1 - side);
        return std::string("silu");
      }
    }
    // GELU written out (x * 0.5 * (1 + erf(x / sqrt 2)), or the tanh
    // form): the input is what the Erf/Tanh's argument is computed from;
    // the whole product must evaluate to GELU of it.
    for (const NodeProto *n : ancestors(g, value, 16)) {
      if (!isOp(n, "Erf") && !isOp(n, "Tanh"))
        continue;
      // The candidate input: the first non-constant operand found walking
      // the argument's arithmetic back.
      std::string candidate = in(n, 0);
      for (int steps = 0; steps < 8; ++steps) {
        const NodeProto *op = computedBy(g, candidate, &candidate);
        if (!op || !(isOp(op, "Div") || isOp(op, "Mul") || isOp(op, "Add") ||
                     isOp(op, "Pow")))
          break;
        std::string other;
        if (!constantOperand(g, op, other)) {
          // x + c * x^3 (tanh form): follow the first operand.
          other = in(op, 0);
        }
        candidate = other;
      }
      bool erf = isOp(n, "Erf");
      if (computes(g, value, candidate, erf ? geluErf : geluTanh)) {
        pre = candidate;
        return std::string(erf ? "gelu" : "gelu_tanh");
      }
    }
  }
  return std::nullopt;
}

/// One expert's FFN (or all experts' at once, with stacked weights):
/// fc2(act(fc1(x))), a gated fc2(act(fc1(x)) * fc3(x)), or SwiGLU
/// G * sigmoid(alpha * G) * (L + beta) with G, L from fc1's two halves
/// (interleaved or concatenated) or from fc1 and fc3, optionally clamped.
struct ExpertMLP {
  std::string input;
  std::string activation; // relu|gelu|gelu_tanh|silu|identity|swiglu
  Linear fc1, fc2;
  std::optional<Linear> fc3;
  /// For swiglu: separate (fc3), interleaved or concatenated.
  std::string fusion = "separate";
  double alpha = 1.0, beta = 0.0;
  std::optional<double> limit;
};

using LinearMatcher =
    std::function<std::optional<Linear>(const std::string &value)>;

/// Strips a Clip(x, min, max) with constant bounds, reporting them.
std::string stripClip(const GraphIndex &g, const std::string &value,
                      std::optional<double> &lo, std::optional<double> &hi) {
  std::string through;
  const NodeProto *node = computedBy(g, value, &through);
  if (!isOp(node, "Clip"))
    return through;
  if (node->input_size() > 1 && !in(node, 1).empty())
    lo = g.scalar(in(node, 1));
  if (node->input_size() > 2 && !in(node, 2).empty())
    hi = g.scalar(in(node, 2));
  return in(node, 0);
}

/// Half of a fused projection: Slice(a, start, end, axis=-1, step).
struct Half {
  std::string of;
  int64_t start = 0, end = 0, step = 1;
};
/// A Slice of `value` along its last axis. Its bounds are constants, or
/// (torch's `chunk` in a dynamic export) computed from the sliced tensor's
/// shape: then they are evaluated with its last dimension `lastDim` and
/// must not depend on the others.
std::optional<Half> matchHalf(const GraphIndex &g, const std::string &value,
                              int64_t lastDim = 0) {
  const NodeProto *slice = computedBy(g, value);
  if (!isOp(slice, "Slice") || slice->input_size() < 3)
    return std::nullopt;
  auto evaluated = [&](const std::string &bound) -> std::optional<int64_t> {
    if (lastDim <= 0)
      return std::nullopt;
    for (int64_t rank : {3, 2, 4}) {
      std::optional<int64_t> value;
      bool agree = true;
      for (int64_t lead : {3, 5}) {
        GraphEvaluator ev(g, g.opset);
        EvalTensor sliced;
        sliced.shapeOnly = true;
        sliced.shape.assign(rank - 1, lead);
        sliced.shape.push_back(lastDim);
        ev.bind(in(slice, 0), sliced);
        std::optional<EvalTensor> v = ev.evaluate(bound);
        if (!v || v->shapeOnly || v->numel() != 1) {
          agree = false;
          break;
        }
        if (value && *value != int64_t(v->data[0]))
          agree = false;
        value = int64_t(v->data[0]);
      }
      if (agree && value)
        return value;
    }
    return std::nullopt;
  };
  auto one = [&](int i, int64_t def) -> std::optional<int64_t> {
    if (i >= slice->input_size() || in(slice, i).empty())
      return def;
    std::optional<SmallVector<int64_t>> v = g.ints(in(slice, i));
    if (!v)
      return evaluated(in(slice, i));
    if (v->size() != 1)
      return std::nullopt;
    return (*v)[0];
  };
  std::optional<int64_t> start = one(1, 0), end = one(2, INT64_MAX),
                         axis = one(3, -1), step = one(4, 1);
  if (!start || !end || !axis || !step)
    return std::nullopt;
  // The last axis: -1, or a positive index the caller cannot check here
  // (ranks 3 and 4 are what exporters produce for these blocks).
  if (*axis != -1 && *axis != 2 && *axis != 3)
    return std::nullopt;
  return Half{in(slice, 0), *start, *end, *step};
}

/// The SwiGLU product G * sigmoid(alpha * G) * (L + beta), either side
/// first. Fills gate/linear values and the constants.
bool matchSwiGLUProduct(const GraphIndex &g, const NodeProto *mul,
                        std::string &gate, std::string &linear,
                        ExpertMLP &mlp) {
  if (!isOp(mul, "Mul"))
    return false;
  for (int side : {0, 1}) {
    // Gate side: Mul(G, Sigmoid(G)) or Mul(G, Sigmoid(Mul(G, alpha))).
    const NodeProto *gated = computedBy(g, in(mul, side));
    if (!isOp(gated, "Mul"))
      continue;
    for (int gs : {0, 1}) {
      const NodeProto *sig = computedBy(g, in(gated, gs));
      if (!isOp(sig, "Sigmoid"))
        continue;
      std::string gateValue = in(gated, 1 - gs);
      std::string sigArg = in(sig, 0);
      double alpha = 1.0;
      const NodeProto *scaled = computedBy(g, sigArg);
      std::string other;
      if (isOp(scaled, "Mul"))
        if (std::optional<double> a = constantOperand(g, scaled, other)) {
          alpha = *a;
          sigArg = other;
        }
      if (viewSource(g, sigArg) != viewSource(g, gateValue))
        continue;
      // Linear side: L or Add(L, beta).
      std::string linearValue = in(mul, 1 - side);
      double beta = 0.0;
      const NodeProto *shifted = computedBy(g, linearValue);
      if (isOp(shifted, "Add"))
        if (std::optional<double> b = constantOperand(g, shifted, other)) {
          beta = *b;
          linearValue = other;
        }
      // Clamps: G = min(g, limit), L = clamp(l, -limit, limit).
      std::optional<double> glo, ghi, llo, lhi;
      gate = stripClip(g, gateValue, glo, ghi);
      linear = stripClip(g, linearValue, llo, lhi);
      if (glo || (ghi && (!lhi || !llo || *lhi != *ghi || *llo != -*ghi)) ||
          (!ghi && (llo || lhi)))
        return false;
      mlp.alpha = alpha;
      mlp.beta = beta;
      if (ghi)
        mlp.limit = *ghi;
      return true;
    }
  }
  return false;
}

std::optional<ExpertMLP> matchExpertMLP(const GraphIndex &g,
                                        const std::string &value,
                                        const LinearMatcher &linearOf) {
  std::optional<Linear> fc2 = linearOf(value);
  if (!fc2)
    return std::nullopt;
  ExpertMLP mlp;
  mlp.fc2 = *fc2;
  const NodeProto *hidden = computedBy(g, fc2->input);
  std::string gate, linear;
  if (matchSwiGLUProduct(g, hidden, gate, linear, mlp)) {
    mlp.activation = "swiglu";
    // Both halves of one projection, or two projections.
    auto sliced = [&](const std::string &v) -> std::string {
      const NodeProto *slice = computedBy(g, v);
      return isOp(slice, "Slice") ? in(slice, 0) : std::string();
    };
    std::optional<Half> gh, lh;
    std::optional<Linear> fused;
    if (std::string of = sliced(gate); !of.empty() && of == sliced(linear)) {
      fused = linearOf(of);
      if (!fused)
        return std::nullopt;
      SmallVector<int64_t> dims = g.dims(fused->weight);
      int64_t outputs = dims.size() < 2  ? 0
                        : fused->inMajor ? dims.back()
                                         : dims[dims.size() - 2];
      gh = matchHalf(g, gate, outputs);
      lh = matchHalf(g, linear, outputs);
    }
    if (gh && lh && gh->of == lh->of) {
      const Linear *fc1 = &*fused;
      if (gh->step == 2 && lh->step == 2 && gh->start == 0 && lh->start == 1)
        mlp.fusion = "interleaved";
      else if (gh->step == 1 && lh->step == 1 && gh->start == 0 &&
               lh->start > 0)
        mlp.fusion = "concatenated";
      else
        return std::nullopt;
      // Concatenated halves split fc1's outputs in the middle.
      SmallVector<int64_t> dims = g.dims(fc1->weight);
      int64_t outputs = fc1->inMajor ? dims.back() : dims[dims.size() - 2];
      if (mlp.fusion == "concatenated" &&
          (lh->start * 2 != outputs || gh->end != lh->start))
        return std::nullopt;
      mlp.fc1 = *fc1;
      mlp.input = fc1->input;
      return mlp;
    }
    std::optional<Linear> fc1 = linearOf(gate), fc3 = linearOf(linear);
    if (!fc1 || !fc3 || viewSource(g, fc1->input) != viewSource(g, fc3->input))
      return std::nullopt;
    mlp.fc1 = *fc1;
    mlp.fc3 = *fc3;
    mlp.input = fc1->input;
    return mlp;
  }
  // Other gated activations: Mul(act(fc1(x)), fc3(x)).
  if (isOp(hidden, "Mul")) {
    for (int side : {0, 1}) {
      std::string pre;
      std::optional<std::string> act =
          matchActivation(g, in(hidden, side), pre);
      std::optional<Linear> fc1 = act ? linearOf(pre) : std::nullopt;
      std::optional<Linear> fc3 = linearOf(in(hidden, 1 - side));
      if (fc1 && fc3 && viewSource(g, fc1->input) == viewSource(g, fc3->input)) {
        mlp.activation = *act;
        mlp.fc1 = *fc1;
        mlp.fc3 = *fc3;
        mlp.input = fc1->input;
        return mlp;
      }
    }
  }
  std::string pre;
  if (std::optional<std::string> act = matchActivation(g, fc2->input, pre)) {
    std::optional<Linear> fc1 = linearOf(pre);
    if (!fc1)
      return std::nullopt;
    mlp.activation = *act;
    mlp.fc1 = *fc1;
    mlp.input = fc1->input;
    return mlp;
  }
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// Routers
//===----------------------------------------------------------------------===//

/// What moe.route has to do to reproduce a block's routing: found by
/// evaluating the block's routing subgraph (matchRouting).
struct Router {
  /// The router's logits: a linear layer on the tokens.
  std::string logits;
  int64_t k = 0;
  std::string scoring = "softmax"; // softmax|sigmoid|softmax_topk|sparse_mixer
  bool normalize = false;
  int64_t numGroups = 1, topGroups = 1;
  std::string groupScoring = "max";
  double scaling = 1.0;
  /// A per-expert selection bias (DeepSeek-V3's correction), "" if none.
  std::string scoreBias;
};

/// The TopK whose indices `value` is computed from (nearest first), if any.
const NodeProto *findTopK(const GraphIndex &g, const std::string &value) {
  for (const NodeProto *n : ancestors(g, value, 64))
    if (isOp(n, "TopK") && n->output_size() > 1 && !n->output(1).empty())
      return n;
  return nullptr;
}

/// The constant axes of a ReduceSum (input since opset 13, else attribute)
/// whose keepdims (default 1) is `keepDims`; nullopt for anything else.
std::optional<SmallVector<int64_t>>
reduceSumAxes(const GraphIndex &g, const NodeProto *reduce, bool keepDims) {
  if (!isOp(reduce, "ReduceSum"))
    return std::nullopt;
  const onnx::AttributeProto *keep = findAttribute(*reduce, "keepdims");
  if ((keep ? keep->i() != 0 : true) != keepDims)
    return std::nullopt;
  if (!in(reduce, 1).empty())
    return g.ints(in(reduce, 1));
  if (const onnx::AttributeProto *axes = findAttribute(*reduce, "axes"))
    return SmallVector<int64_t>(axes->ints().begin(), axes->ints().end());
  return std::nullopt;
}

/// The [T, k] routing weights a per-token or per-slot gather reads from:
/// `value` with gathers (and the plumbing around them) stripped.
std::string gatheredFrom(const GraphIndex &g, const std::string &value) {
  std::string source;
  const NodeProto *node = computedBy(g, value, &source);
  for (int steps = 0;
       (isOp(node, "Gather") || isOp(node, "GatherElements") ||
        isOp(node, "GatherND")) &&
       steps < 4;
       ++steps)
    node = computedBy(g, in(node, 0), &source);
  return source;
}

/// The router's logits: the nearest linear layer on `tokens` with
/// `numExperts` outputs that `ids` is computed from.
std::optional<std::string> findRouterLogits(const GraphIndex &g,
                                            const std::string &ids,
                                            const std::string &tokens,
                                            int64_t numExperts) {
  for (const NodeProto *n : ancestors(g, ids, 256)) {
    std::optional<Linear> linear = matchLinear(g, out(n, 0));
    if (!linear || viewSource(g, linear->input) != viewSource(g, tokens))
      continue;
    SmallVector<int64_t> dims = g.dims(linear->weight);
    if (dims.size() == 2 && dims[linear->inMajor ? 1 : 0] == numExperts)
      return out(n, 0);
  }
  return std::nullopt;
}

/// Sample router logits [T, E]: ordinary, large and small magnitudes, rows
/// with near-ties at several relative distances from the maximum (which
/// SparseMixer's band and top-k tie-breaks depend on) and all-negative rows
/// (where masking with 0 and excluding differ). Continuous draws: no exact
/// ties.
::moe::reference::Tensor sampleLogits(int64_t tokens, int64_t experts,
                                    unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  ::moe::reference::Tensor logits;
  logits.shape = {tokens, experts};
  logits.data.assign(tokens * experts, 0.0);
  const double nearTies[] = {0.001, 0.008, 0.012, 0.019, 0.021, 0.03, 0.05};
  for (int64_t t = 0; t < tokens; ++t) {
    double *row = &logits.data[t * experts];
    int kind = t % 5;
    double scale = kind == 1 ? 6.0 : kind == 2 ? 0.3 : 2.0;
    for (int64_t e = 0; e < experts; ++e)
      row[e] = scale * normal(rng) + (kind == 4 ? -8.0 : 0.0);
    if (kind == 3) {
      int64_t top = std::max_element(row, row + experts) - row;
      for (int64_t j = 0; j < std::min<int64_t>(3, experts - 1); ++j) {
        int64_t e = (top + 1 + j * 2) % experts;
        if (e == top)
          continue;
        double d = nearTies[(t / 5 + j) % std::size(nearTies)];
        row[e] = row[top] - d * std::abs(row[top]);
      }
    }
  }
  return logits;
}

/// Decides what routing the graph computes: `ids` (the experts each token
/// is sent to, [T, k]) and `weights` (their weights, [T, k]) are evaluated
/// from sample router logits and compared, as sets of (expert, weight) per
/// token, with moe.route's reference semantics under each plausible
/// configuration (scoring, renormalisation, expert groups read off the
/// subgraph's reshapes and top-k sizes, a per-expert bias read off its
/// constants); the routed scaling is the measured ratio. The first
/// configuration that agrees on every sample is the router. With
/// `expertMajorWeights`, `weights` is a dense [E, T] matrix (Llama 4's
/// scores), zero off the chosen experts.
std::optional<Router> matchRouting(const GraphIndex &g, const std::string &ids,
                                   const std::string &weights,
                                   const std::string &tokens,
                                   int64_t numExperts, std::string &why,
                                   bool expertMajorWeights) {
  std::optional<std::string> logits =
      findRouterLogits(g, ids, tokens, numExperts);
  if (!logits) {
    why = "no router (a linear layer on the tokens with " +
          std::to_string(numExperts) + " outputs) behind the expert choice";
    return std::nullopt;
  }
  std::optional<Linear> gate = matchLinear(g, *logits);
  SmallVector<int64_t> gateDims = g.dims(gate->weight);
  int64_t hidden = gateDims[gate->inMajor ? 0 : 1];
  constexpr int64_t kSamples = 60;
  // The sample logits are [tokens, experts] with up to 4096 tokens: sizes a
  // damaged graph may claim (an expert count of 2^40) are not evaluated.
  if (numExperts < 1 || numExperts > (1 << 12) || hidden < 1) {
    why = "router of " + std::to_string(numExperts) + " experts on " +
          std::to_string(hidden) + " features not evaluated";
    return std::nullopt;
  }

  // Evaluates ids and weights on one set of sample logits.
  struct Evaluated {
    ::moe::reference::Tensor logits;
    std::vector<std::vector<std::pair<int64_t, double>>> slots;
  };
  std::vector<const NodeProto *> visited;
  std::set<int64_t> groupCounts, groupTops;
  int64_t numTokens = kSamples, sourceRank = 2;
  auto evaluateOn = [&](unsigned seed) -> std::optional<Evaluated> {
    Evaluated e;
    // (Larger than the evaluator's largest tensor.)
    if (numTokens * numExperts > (1 << 22)) {
      why = "too many sample logits";
      return std::nullopt;
    }
    e.logits = sampleLogits(numTokens, numExperts, seed);
    GraphEvaluator ev(g, g.opset);
    EvalTensor bound;
    bound.shape = {numTokens, numExperts};
    bound.data = e.logits.data;
    ev.bind(*logits, bound);
    EvalTensor shapeOnly;
    shapeOnly.shape = {numTokens, hidden};
    shapeOnly.shapeOnly = true;
    ev.bind(tokens, shapeOnly);
    // What the tokens are a view of ([B, S, H] hidden states, usually):
    // its shape with the tokens in one dimension.
    EvalTensor source = shapeOnly;
    source.shape.insert(source.shape.begin(), sourceRank - 2, 1);
    ev.bind(viewSource(g, tokens), source);
    std::optional<EvalTensor> idv = ev.evaluate(ids);
    std::optional<EvalTensor> wv = idv ? ev.evaluate(weights) : std::nullopt;
    if (!idv || !wv) {
      why = "routing subgraph not evaluated: " + ev.failure();
      return std::nullopt;
    }
    int64_t k = idv->shape.empty() ? 0 : idv->numel() / numTokens;
    if (k < 1 || idv->shapeOnly || wv->shapeOnly || wv->shape.empty() ||
        idv->numel() != numTokens * k || idv->shape[0] != numTokens ||
        (expertMajorWeights
             ? wv->numel() != numExperts * numTokens
             : wv->numel() != numTokens * k || wv->shape[0] != numTokens)) {
      why = "the expert choice is not [tokens, k]";
      return std::nullopt;
    }
    // A dense [E, T] matrix: each slot's weight is its expert's entry, and
    // the experts not chosen must have none (they would run otherwise).
    auto slotWeight = [&](int64_t t, int64_t j, int64_t id) {
      return expertMajorWeights ? wv->data[id * numTokens + t]
                                : wv->data[t * k + j];
    };
    if (expertMajorWeights)
      for (int64_t t = 0; t < numTokens; ++t)
        for (int64_t e = 0; e < numExperts; ++e) {
          bool chosen = false;
          for (int64_t j = 0; j < k; ++j)
            chosen |= idv->data[t * k + j] == double(e);
          if (!chosen && wv->data[e * numTokens + t] != 0.0) {
            why = "the routing matrix weights experts outside the top-k";
            return std::nullopt;
          }
        }
    e.slots.resize(numTokens);
    for (int64_t t = 0; t < numTokens; ++t) {
      for (int64_t j = 0; j < k; ++j) {
        // Expert ids (compared with the reference's, in [0, E)).
        double id = idv->data[t * k + j];
        if (!(id >= 0 && id < double(numExperts)) || id != std::trunc(id)) {
          why = "the expert choice holds " + std::to_string(id) +
                ", not an expert";
          return std::nullopt;
        }
        e.slots[t].emplace_back(int64_t(id), slotWeight(t, j, int64_t(id)));
      }
      llvm::sort(e.slots[t]);
    }
    // Group counts from the subgraph's reshapes, group top-k sizes from its
    // other TopKs (their operands as evaluated: dynamic exports compute
    // them from sizes).
    for (const NodeProto *n : ev.visited()) {
      const EvalTensor *operand = ev.lookup(in(n, 1));
      if (!operand)
        continue;
      if (isOp(n, "Reshape"))
        for (double d : operand->data)
          if (d > 1 && d < numExperts && numExperts % int64_t(d) == 0)
            groupCounts.insert(int64_t(d));
      if (isOp(n, "TopK") && operand->data.size() == 1 &&
          operand->data[0] != k && operand->data[0] >= 1 &&
          operand->data[0] <= numExperts)
        groupTops.insert(int64_t(operand->data[0]));
    }
    visited = ev.visited();
    return e;
  };
  // A static export fixes the token count in the subgraph's constants
  // (reshape and expand shapes): if the usual sample count does not
  // evaluate, try the sizes those constants hold, and draw as many sample
  // sets as it takes to cover enough tokens.
  std::set<int64_t> tokenCounts;
  for (const std::string &from : {ids, weights})
    for (const NodeProto *n : ancestors(g, from, 256))
      for (const std::string &input : n->input())
        if (std::optional<SmallVector<int64_t>> values = g.ints(input);
            values && values->size() <= 8)
          for (int64_t d : *values)
            if (d > 0 && d <= 4096 && d != kSamples)
              tokenCounts.insert(d);
  // The token count and the rank of the tokens' source (they are usually
  // a [T, H] view of [B, S, H] hidden states) that the subgraph evaluates
  // with, and enough sample sets to cover twice kSamples tokens.
  std::vector<Evaluated> samples;
  auto sampleWith = [&](int64_t count, int64_t rank) {
    numTokens = count;
    sourceRank = rank;
    for (unsigned seed = 17; int64_t(samples.size()) * count < 2 * kSamples;
         seed += 7919) {
      std::optional<Evaluated> e = evaluateOn(seed);
      if (!e)
        return false;
      samples.push_back(std::move(*e));
    }
    return true;
  };
  std::string firstWhy;
  SmallVector<int64_t> counts{kSamples};
  counts.append(tokenCounts.begin(), tokenCounts.end());
  for (int64_t count : counts) {
    for (int64_t rank : {2, 3, 4}) {
      samples.clear();
      if (sampleWith(count, rank))
        break;
      if (firstWhy.empty())
        firstWhy = why;
      samples.clear();
    }
    if (!samples.empty())
      break;
  }
  if (samples.empty()) {
    why = firstWhy;
    return std::nullopt;
  }
  int64_t k = samples[0].slots[0].size();

  // Per-expert biases from the subgraph's constants.
  std::set<std::string> biases{""};
  for (const NodeProto *n : visited) {
    for (const std::string &input : n->input()) {
      const onnx::TensorProto *t = g.constant(input);
      if (!t || !isFloatElementType(t->data_type()))
        continue;
      if (elementCount(*t) == numExperts && numExperts > 1)
        biases.insert(input);
    }
  }
  struct GroupChoice {
    int64_t groups, tops;
    ::moe::reference::GroupScoring scoring;
  };
  std::vector<GroupChoice> groupChoices{{1, 1, ::moe::reference::GroupScoring::Max}};
  for (int64_t groups : groupCounts)
    for (int64_t tops : groupTops)
      if (tops < groups)
        for (auto scoring : {::moe::reference::GroupScoring::Max,
                             ::moe::reference::GroupScoring::Top2Sum})
          if (scoring == ::moe::reference::GroupScoring::Max ||
              numExperts / groups >= 2)
            groupChoices.push_back({groups, tops, scoring});

  using ::moe::reference::Scoring;
  const std::pair<Scoring, const char *> scorings[] = {
      {Scoring::Softmax, "softmax"},
      {Scoring::Sigmoid, "sigmoid"},
      {Scoring::SoftmaxTopK, "softmax_topk"},
      {Scoring::SparseMixer, "sparse_mixer"}};
  for (const std::string &bias : biases) {
    std::optional<::moe::reference::Tensor> biasValues;
    if (!bias.empty()) {
      GraphEvaluator ev(g, g.opset);
      std::optional<EvalTensor> b = ev.evaluate(bias);
      if (!b)
        continue;
      if (int64_t(b->data.size()) != numExperts)
        continue;
      biasValues.emplace();
      biasValues->shape = {numExperts};
      biasValues->data = b->data;
    }
    for (const GroupChoice &group : groupChoices)
      for (auto [scoring, scoringName] : scorings)
        for (bool normalize : {false, true}) {
          // The reference's preconditions (it would throw otherwise).
          if (scoring == Scoring::SparseMixer &&
              (k != 2 || group.groups != 1 || !bias.empty() || normalize))
            continue;
          if (scoring == Scoring::SoftmaxTopK && normalize)
            continue;
          if (k > numExperts ||
              (group.groups > 1 &&
               k > group.tops * (numExperts / group.groups)))
            continue;
          ::moe::reference::RouteOptions options;
          options.k = k;
          options.scoring = scoring;
          options.normalize = normalize;
          options.numGroups = group.groups;
          options.topGroups = group.tops;
          options.groupScoring = group.scoring;
          // Same experts, weights equal up to one common factor.
          std::optional<double> ratio;
          bool agrees = true;
          for (const Evaluated &e : samples) {
            std::optional<::moe::reference::RouteResult> routed =
                ::moe::reference::tryRoute(
                    e.logits, biasValues ? &*biasValues : nullptr, options);
            if (!routed) {
              agrees = false;
              break;
            }
            const ::moe::reference::RouteResult &ref = *routed;
            for (int64_t t = 0; t < int64_t(e.slots.size()) && agrees; ++t) {
              std::vector<std::pair<int64_t, double>> want;
              for (int64_t j = 0; j < k; ++j)
                want.emplace_back(ref.ids.data[t * k + j],
                                  ref.weights.data[t * k + j]);
              llvm::sort(want);
              for (int64_t j = 0; j < k && agrees; ++j) {
                auto [id, got] = e.slots[t][j];
                double expect = want[j].second;
                if (id != want[j].first) {
                  agrees = false;
                  break;
                }
                if (std::abs(expect) < 1e-12) {
                  agrees = std::abs(got) < 1e-9;
                  continue;
                }
                if (!ratio)
                  ratio = got / expect;
                agrees = std::abs(got - *ratio * expect) <=
                         1e-6 * std::abs(*ratio * expect) + 1e-12;
              }
            }
            if (!agrees)
              break;
          }
          if (!agrees || !ratio || !(*ratio > 0) ||
              !(*ratio <= std::numeric_limits<float>::max()))
            continue;
          Router router;
          router.logits = *logits;
          router.k = k;
          router.scoring = scoringName;
          router.normalize = normalize;
          router.numGroups = group.groups;
          router.topGroups = group.tops;
          router.groupScoring =
              group.scoring == ::moe::reference::GroupScoring::Max ? "max"
                                                                 : "top2_sum";
          // The factor as the float the graph's constant holds.
          router.scaling = double(float(*ratio));
          router.scoreBias = bias;
          return router;
        }
  }
  why = "routing matches no moe.route configuration on sample logits";
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// The raised node
//===----------------------------------------------------------------------===//

struct RaisedBlock {
  std::string form;
  std::string input, logits, output;
  Router router;
  int64_t numExperts = 0;
  /// Per expert (size numExperts, missing experts have no MLP), or one
  /// entry holding stacked [E, ...] weights.
  std::vector<std::optional<ExpertMLP>> experts;
  bool stacked = false;
  /// Shared experts every token visits (Qwen2-MoE, DeepSeekMoE), added to
  /// the routed output, optionally scaled by sigmoid(x . gate).
  std::optional<ExpertMLP> shared;
  std::optional<Linear> sharedGate;
  /// Switch-style capacity: at most `capacity` tokens per expert (0: no
  /// limit), per sequence of the [B, S, H] input with `perSequence`;
  /// dropped tokens keep their hidden state with `passThrough`.
  int64_t capacity = 0;
  bool perSequence = false, passThrough = false;
  /// The output is per token ([T, H]) although the input is [B, S, H].
  bool flattenOutput = false;
  /// The routing weights scale the experts' input rows (Llama 4).
  bool scaleInput = false;
  /// The node whose output the raised node produces instead.
  const NodeProto *replaced = nullptr;
};

/// moe_mlir.RaisedMoE: inputs x, logits, then per expert fc1, fc1_bias,
/// fc2, fc2_bias, fc3, fc3_bias ("" when absent); `in_major` lists which
/// weights are [in, out].
NodeProto buildRaisedNode(const RaisedBlock &block) {
  NodeProto node;
  node.set_domain("moe_mlir");
  node.set_op_type("RaisedMoE");
  node.set_name(block.replaced->name().empty()
                    ? block.form
                    : block.replaced->name() + "/raised");
  node.add_input(block.input);
  node.add_input(block.logits);
  onnx::AttributeProto *inMajor = node.add_attribute();
  inMajor->set_name("in_major");
  inMajor->set_type(onnx::AttributeProto::INTS);
  std::string activation = "identity";
  for (const std::optional<ExpertMLP> &mlp : block.experts) {
    auto add = [&](const Linear *linear) {
      node.add_input(linear ? linear->weight : "");
      node.add_input(linear ? linear->bias : "");
      inMajor->add_ints(linear && linear->inMajor ? 1 : 0);
    };
    add(mlp ? &mlp->fc1 : nullptr);
    add(mlp ? &mlp->fc2 : nullptr);
    add(mlp && mlp->fc3 ? &*mlp->fc3 : nullptr);
    if (mlp)
      activation = mlp->activation;
  }
  auto intAttr = [&](StringRef name, int64_t v) {
    onnx::AttributeProto *a = node.add_attribute();
    a->set_name(name.str());
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  };
  if (block.shared) {
    // Appended after the experts: shared fc1, fc2, fc3, gate.
    onnx::AttributeProto *sharedInMajor = node.add_attribute();
    sharedInMajor->set_name("shared_in_major");
    sharedInMajor->set_type(onnx::AttributeProto::INTS);
    for (const Linear *linear :
         {&block.shared->fc1, &block.shared->fc2,
          block.shared->fc3 ? &*block.shared->fc3 : nullptr,
          block.sharedGate ? &*block.sharedGate : nullptr}) {
      node.add_input(linear ? linear->weight : "");
      sharedInMajor->add_ints(linear && linear->inMajor ? 1 : 0);
    }
  }
  intAttr("k", block.router.k);
  intAttr("normalize_routing_weights", block.router.normalize);
  intAttr("num_groups", block.router.numGroups);
  intAttr("top_groups", block.router.topGroups);
  intAttr("num_experts", block.numExperts);
  intAttr("stacked", block.stacked);
  auto stringAttr = [&](StringRef name, StringRef v) {
    onnx::AttributeProto *a = node.add_attribute();
    a->set_name(name.str());
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v.str());
  };
  auto floatAttr = [&](StringRef name, double v) {
    onnx::AttributeProto *a = node.add_attribute();
    a->set_name(name.str());
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  };
  stringAttr("activation_type", activation);
  stringAttr("scoring", block.router.scoring);
  stringAttr("group_scoring", block.router.groupScoring);
  floatAttr("routed_scaling", block.router.scaling);
  // The selection bias, when there is one, is the last input.
  if (!block.router.scoreBias.empty()) {
    intAttr("has_score_bias", 1);
    node.add_input(block.router.scoreBias);
  }
  const ExpertMLP &mlp = **llvm::find_if(
      block.experts, [](const auto &m) { return m.has_value(); });
  if (block.flattenOutput)
    intAttr("flatten_output", 1);
  if (block.scaleInput)
    intAttr("scale_input", 1);
  if (block.capacity > 0) {
    intAttr("expert_capacity", block.capacity);
    intAttr("capacity_per_sequence", block.perSequence);
    intAttr("dropped_pass_through", block.passThrough);
  }
  stringAttr("swiglu_fusion", mlp.fusion);
  floatAttr("activation_alpha", mlp.alpha);
  floatAttr("activation_beta", mlp.beta);
  if (mlp.limit)
    floatAttr("swiglu_limit", *mlp.limit);
  node.add_output(block.output);
  return node;
}

//===----------------------------------------------------------------------===//
// (a) Per-expert branches (TorchScript exports of Hugging Face blocks)
//===----------------------------------------------------------------------===//

/// The update a scatter-add node adds to its accumulator, with the
/// accumulator: ScatterElements/ScatterND(acc, idx, upd, reduction=add), or
/// Add(acc, Scatter(zeros, idx, upd)) (index_add_ as torch 1.13 exports it).
struct Accumulation {
  const NodeProto *node = nullptr;
  std::string accumulator, update;
};

/// Whether every element of a float tensor constant is zero. Its data may
/// be in a file beside the model: torch writes the zero accumulators of
/// index_add_ as Constant nodes, external once a model passes 2 GB.
/// Models exported in half precision hold f16 or bf16 zeros.
bool isZeroTensor(const GraphIndex &g, const onnx::TensorProto &t) {
  if (!isFloatElementType(t.data_type()))
    return false;
  if (t.data_location() == onnx::TensorProto::EXTERNAL || t.has_raw_data())
    return g.withRawBytes(t, [](ArrayRef<char> bytes) {
      return llvm::all_of(bytes, [](char c) { return c == 0; });
    });
  // Without raw data, 16-bit floats are stored as their bits in int32_data.
  if (t.data_type() != onnx::TensorProto::FLOAT)
    return llvm::all_of(t.int32_data(), [](int32_t bits) { return bits == 0; });
  return llvm::all_of(t.float_data(), [](float f) { return f == 0.f; });
}

/// Whether `value` is all zeros: ConstantOfShape with a zero (or default)
/// fill, or a constant zero tensor (static exports fold the former).
bool isZeros(const GraphIndex &g, const std::string &value) {
  const NodeProto *node = computedBy(g, value);
  if (isOp(node, "ConstantOfShape")) {
    const onnx::AttributeProto *v = findAttribute(*node, "value");
    return !v || isZeroTensor(g, v->t());
  }
  if (const onnx::TensorProto *t = g.constant(value))
    return isZeroTensor(g, *t);
  if (node && isOp(node, "Constant"))
    if (const onnx::TensorProto *t = g.constant(out(node, 0)))
      return isZeroTensor(g, *t);
  return false;
}

std::optional<Accumulation> matchScatterAdd(const GraphIndex &g,
                                            const NodeProto *node) {
  auto isScatter = [](const NodeProto *n) {
    return isOp(n, "ScatterElements") || isOp(n, "ScatterND");
  };
  if (isScatter(node)) {
    const onnx::AttributeProto *red = findAttribute(*node, "reduction");
    if (red && red->s() == "add")
      return Accumulation{node, in(node, 0), in(node, 2)};
    return std::nullopt;
  }
  if (isOp(node, "Add")) {
    for (int side : {0, 1}) {
      const NodeProto *scatter = g.producer(in(node, side));
      if (isScatter(scatter) && isZeros(g, in(scatter, 0)))
        return Accumulation{node, in(node, 1 - side), in(scatter, 2)};
    }
  }
  return std::nullopt;
}

/// The expert a branch serves: the branch's token selection reads row `e`
/// of a one-hot expert mask OneHot(ids, E), under transposes. Sets `ids`
/// (the [T, k] expert choice) and `numExperts`.
std::optional<int64_t> branchExpert(const GraphIndex &g,
                                    const std::string &tokens,
                                    std::string &ids, int64_t &numExperts) {
  for (const NodeProto *node : ancestors(g, tokens, 64)) {
    if (!isOp(node, "Gather"))
      continue;
    std::optional<SmallVector<int64_t>> index = g.ints(in(node, 1));
    if (!index || index->size() != 1)
      continue;
    const NodeProto *data = g.producer(in(node, 0));
    while (isOp(data, "Transpose") || isPlumbing(data))
      data = g.producer(in(data, 0));
    if (!isOp(data, "OneHot"))
      continue;
    std::optional<SmallVector<int64_t>> depth = g.ints(in(data, 1));
    if (!depth || depth->size() != 1)
      continue;
    numExperts = (*depth)[0];
    ids = viewSource(g, in(data, 0));
    return (*index)[0];
  }
  return std::nullopt;
}

/// The tokens an expert branch gathers its rows from: Gather(x, rows).
std::optional<std::string> branchTokens(const GraphIndex &g,
                                        const std::string &mlpInput) {
  const NodeProto *gather = computedBy(g, mlpInput);
  if (!isOp(gather, "Gather"))
    return std::nullopt;
  return viewSource(g, in(gather, 0));
}

std::optional<RaisedBlock> matchPerExpertBranches(const GraphIndex &g,
                                                  const NodeProto *last,
                                                  std::string &why) {
  // Walk the accumulation chain back from its last link.
  SmallVector<Accumulation> chain;
  std::optional<Accumulation> link = matchScatterAdd(g, last);
  while (link) {
    chain.push_back(*link);
    if (isZeros(g, link->accumulator))
      break;
    const NodeProto *prev = g.producer(link->accumulator);
    link = prev ? matchScatterAdd(g, prev) : std::nullopt;
  }
  if (chain.empty())
    return std::nullopt;
  if (!isZeros(g, chain.back().accumulator)) {
    // A long chain of scatter-adds is most likely an expert loop: say why
    // it is not one (a single scatter-add is too common to report).
    if (chain.size() > 1)
      why = std::to_string(chain.size()) +
            " scatter-adds into an accumulator that is not a known zero "
            "tensor ('" +
            chain.back().accumulator + "')";
    return std::nullopt;
  }

  RaisedBlock block;
  block.form = "per-expert branches";
  block.replaced = last;
  block.output = out(last, 0);
  std::map<int64_t, ExpertMLP> experts;
  std::string routingWeights, ids;
  for (const Accumulation &acc : chain) {
    // update = MLP(rows) * routing weight.
    const NodeProto *mul = computedBy(g, acc.update);
    if (!isOp(mul, "Mul"))
      return std::nullopt;
    std::optional<ExpertMLP> mlp;
    std::string weights;
    for (int side : {0, 1}) {
      if ((mlp = matchExpertMLP(g, in(mul, side), [&](const std::string &v) {
             return matchLinear(g, v);
           }))) {
        weights = in(mul, 1 - side);
        break;
      }
    }
    if (!mlp) {
      why = "branch '" + acc.node->name() + "': expert MLP not recognised";
      return std::nullopt;
    }
    // Every branch reads its weight out of one [T, k] routing tensor.
    std::string branchWeights = gatheredFrom(g, weights);
    if (routingWeights.empty())
      routingWeights = branchWeights;
    if (branchWeights != routingWeights) {
      why = "branches read different routing weights";
      return std::nullopt;
    }
    int64_t numExperts = 0;
    std::string branchIds;
    std::optional<int64_t> expert =
        branchExpert(g, mlp->input, branchIds, numExperts);
    std::optional<std::string> tokens = branchTokens(g, mlp->input);
    if (expert && ids.empty())
      ids = branchIds;
    if (expert && branchIds != ids) {
      why = "branches select tokens from different expert choices";
      return std::nullopt;
    }
    if (!expert || !tokens) {
      why = "branch '" + acc.node->name() +
            "': token selection from the expert mask not recognised";
      return std::nullopt;
    }
    if (block.input.empty())
      block.input = *tokens;
    if (block.numExperts == 0)
      block.numExperts = numExperts;
    if (*tokens != block.input || numExperts != block.numExperts ||
        *expert < 0 || *expert >= numExperts || experts.count(*expert)) {
      why = "branches disagree on tokens or experts";
      return std::nullopt;
    }
    experts[*expert] = *mlp;
  }
  std::optional<Router> router =
      matchRouting(g, ids, routingWeights, block.input, block.numExperts, why,
                   /*expertMajorWeights=*/false);
  if (!router)
    return std::nullopt;
  block.router = *router;
  block.logits = router->logits;
  // The tokens in the [T, H] shape the router reads them: the gathers see
  // them through reshapes (e.g. hidden_states[None, top_x]) and the output
  // accumulates in [T, H].
  block.input = matchLinear(g, block.logits)->input;
  block.experts.resize(block.numExperts);
  for (auto &[e, mlp] : experts)
    block.experts[e] = mlp;
  // Every branch must compute the same kind of MLP.
  const ExpertMLP &first = experts.begin()->second;
  for (auto &[e, mlp] : experts)
    if (mlp.activation != first.activation || bool(mlp.fc3) != bool(first.fc3) ||
        mlp.fc1.bias.empty() != first.fc1.bias.empty() ||
        mlp.fc2.bias.empty() != first.fc2.bias.empty()) {
      why = "expert branches compute different MLPs";
      return std::nullopt;
    }
  return block;
}

/// Whether `shared` can be the layer's shared expert beside the `routed`
/// experts on `input`: the dialect's shared experts have no biases, share
/// the routed experts' activation and its constants, and read the same
/// tokens. With `separateHalves`, a gated shared expert may keep its gate
/// and up projections apart where the routed ones are halves of one
/// (the import fuses them into the routed layout).
bool fitsAsShared(const GraphIndex &g, const ExpertMLP &shared,
                  const ExpertMLP &routed, const std::string &input,
                  bool separateHalves) {
  bool halves = separateHalves && shared.activation == "swiglu" &&
                shared.fusion == "separate" && routed.activation == "swiglu";
  return shared.fc1.bias.empty() && shared.fc2.bias.empty() &&
         !(shared.fc3 && !shared.fc3->bias.empty()) &&
         shared.activation == routed.activation &&
         ((shared.fusion == routed.fusion &&
           bool(shared.fc3) == bool(routed.fc3)) ||
          halves) &&
         shared.alpha == routed.alpha && shared.beta == routed.beta &&
         shared.limit == routed.limit &&
         viewSource(g, shared.input) == viewSource(g, input);
}

/// Extends a raised block with shared experts: its output feeds
/// Add(routed, shared) where shared = MLP(x) or sigmoid(x . g) * MLP(x).
void matchSharedExperts(const GraphIndex &g, RaisedBlock &block) {
  ArrayRef<const NodeProto *> users = g.users(block.output);
  if (users.size() != 1 || !isOp(users[0], "Add"))
    return;
  const NodeProto *add = users[0];
  const std::string &other =
      in(add, 0) == block.output ? in(add, 1) : in(add, 0);
  auto linearOf = [&](const std::string &v) { return matchLinear(g, v); };
  const ExpertMLP &routed = **llvm::find_if(
      block.experts, [](const auto &m) { return m.has_value(); });
  auto accept = [&](const ExpertMLP &mlp, std::optional<Linear> gate) {
    if (!fitsAsShared(g, mlp, routed, block.input, /*separateHalves=*/false))
      return false;
    if (gate && (!gate->bias.empty() ||
                 viewSource(g, gate->input) != viewSource(g, block.input)))
      return false;
    block.shared = mlp;
    block.sharedGate = gate;
    block.replaced = add;
    block.output = out(add, 0);
    return true;
  };
  if (std::optional<ExpertMLP> mlp = matchExpertMLP(g, other, linearOf)) {
    accept(*mlp, std::nullopt);
    return;
  }
  const NodeProto *mul = computedBy(g, other);
  if (!isOp(mul, "Mul"))
    return;
  for (int side : {0, 1}) {
    const NodeProto *sig = computedBy(g, in(mul, side));
    if (!isOp(sig, "Sigmoid"))
      continue;
    std::optional<Linear> gate = matchLinear(g, in(sig, 0));
    std::optional<ExpertMLP> mlp =
        matchExpertMLP(g, in(mul, 1 - side), linearOf);
    if (gate && mlp && accept(*mlp, gate))
      return;
  }
}

//===----------------------------------------------------------------------===//
// (b) Dense tiled and (c) gathered-weight forms: stacked [E, ...] weights
//===----------------------------------------------------------------------===//

/// Adds a constant stacked bias to a stacked linear: Add(y, b) where b is
/// an initializer (tiled) or Gather(b, indices) (gathered).
std::optional<Linear>
withStackedBias(const GraphIndex &g, const std::string &value,
                const std::function<std::optional<Linear>(const std::string &)>
                    &bare,
                const std::string &indices) {
  const NodeProto *add = computedBy(g, value);
  if (isOp(add, "Add")) {
    for (int side : {0, 1}) {
      std::optional<Linear> linear = bare(in(add, side));
      if (!linear)
        continue;
      std::string bias = in(add, 1 - side);
      if (!indices.empty()) {
        const NodeProto *gather = computedBy(g, bias);
        if (!isOp(gather, "Gather") || in(gather, 1) != indices)
          return std::nullopt;
        bias = in(gather, 0);
      }
      if (!g.isInitializer(bias))
        return std::nullopt;
      linear->bias = bias;
      return linear;
    }
    return std::nullopt;
  }
  return bare(value);
}

/// Per-token MatMul with the weights Gather(W [E, ...], topk indices):
/// W[e] @ x (W [E, out, in]) or x @ W[e] (W [E, in, out]).
std::optional<Linear> matchGatheredLinear(const GraphIndex &g,
                                          const std::string &value,
                                          const std::string &indices) {
  auto bare = [&](const std::string &v) -> std::optional<Linear> {
    const NodeProto *mm = computedBy(g, v);
    if (!isOp(mm, "MatMul"))
      return std::nullopt;
    for (int side : {0, 1}) {
      const NodeProto *gather = computedBy(g, in(mm, side));
      if (!isOp(gather, "Gather") || in(gather, 1) != indices ||
          !g.isInitializer(in(gather, 0)) ||
          g.dims(in(gather, 0)).size() != 3)
        continue;
      const onnx::AttributeProto *axis = findAttribute(*gather, "axis");
      if (axis && axis->i() != 0)
        return std::nullopt;
      Linear linear;
      linear.weight = in(gather, 0);
      linear.input = in(mm, 1 - side);
      linear.inMajor = side == 1;
      return linear;
    }
    return std::nullopt;
  };
  return withStackedBias(g, value, bare, indices);
}

/// Batched MatMul of the tokens tiled to every expert with W [E, in, out].
std::optional<Linear> matchTiledLinear(const GraphIndex &g,
                                       const std::string &value) {
  auto bare = [&](const std::string &v) -> std::optional<Linear> {
    const NodeProto *mm = computedBy(g, v);
    if (!isOp(mm, "MatMul") || !g.isInitializer(in(mm, 1)) ||
        g.dims(in(mm, 1)).size() != 3)
      return std::nullopt;
    Linear linear;
    linear.weight = in(mm, 1);
    linear.input = in(mm, 0);
    return linear;
  };
  return withStackedBias(g, value, bare, "");
}

std::optional<RaisedBlock> matchStackedForms(const GraphIndex &g,
                                             const NodeProto *reduce,
                                             std::string &why) {
  std::optional<SmallVector<int64_t>> axes =
      reduceSumAxes(g, reduce, /*keepDims=*/false);
  if (!axes || axes->size() != 1 || ((*axes)[0] != 0 && (*axes)[0] != 1))
    return std::nullopt;
  const bool tiled = (*axes)[0] == 0;
  const NodeProto *mul = computedBy(g, in(reduce, 0));
  if (!isOp(mul, "Mul"))
    return std::nullopt;
  RaisedBlock block;
  block.form = tiled ? "dense tiled experts" : "gathered expert weights";
  block.replaced = reduce;
  block.output = out(reduce, 0);
  block.stacked = true;
  for (int side : {0, 1}) {
    const std::string &y = in(mul, side);
    const std::string &weights = in(mul, 1 - side);
    RaisedBlock candidate = block;
    std::optional<ExpertMLP> mlp;
    std::string routing, ids;
    if (tiled) {
      // weights = Transpose(ScatterElements(zeros [T, E], topk indices,
      // routing weights, axis = 1)) viewed as [E, T, 1].
      const NodeProto *transpose = computedBy(g, weights);
      const NodeProto *scatter =
          isOp(transpose, "Transpose") ? computedBy(g, in(transpose, 0))
                                       : nullptr;
      if (!isOp(scatter, "ScatterElements") || !isZeros(g, in(scatter, 0)))
        continue;
      const onnx::AttributeProto *axis = findAttribute(*scatter, "axis");
      if (!axis || (axis->i() != 1 && axis->i() != -1))
        continue;
      mlp = matchExpertMLP(g, y, [&](const std::string &v) {
        return matchTiledLinear(g, v);
      });
      if (!mlp)
        continue;
      // The tokens reach the batched MatMul tiled E times.
      // x.repeat(E, 1).view(E, T, H): the [T, H] tokens stacked E times.
      const NodeProto *tile = computedBy(g, mlp->input);
      std::optional<SmallVector<int64_t>> repeats =
          isOp(tile, "Tile") ? g.ints(in(tile, 1)) : std::nullopt;
      SmallVector<int64_t> weightDims = g.dims(mlp->fc1.weight);
      if (!repeats || weightDims.empty() ||
          *repeats != SmallVector<int64_t>{weightDims[0], 1}) {
        why = "experts' input is not the tokens tiled once per expert";
        return std::nullopt;
      }
      mlp->input = in(tile, 0);
      ids = viewSource(g, in(scatter, 1));
      routing = in(scatter, 2);
    } else {
      // The gathers of expert weights use the expert choice's indices.
      const NodeProto *topk = findTopK(g, weights);
      if (!topk)
        continue;
      ids = out(topk, 1);
      mlp = matchExpertMLP(g, y, [&](const std::string &v) {
        return matchGatheredLinear(g, v, ids);
      });
      if (!mlp)
        continue;
      routing = viewSource(g, weights);
    }
    int64_t numExperts = g.dims(mlp->fc1.weight)[0];
    std::optional<Router> router =
        matchRouting(g, ids, routing, mlp->input, numExperts, why,
                     /*expertMajorWeights=*/false);
    if (!router)
      return std::nullopt;
    candidate.router = *router;
    candidate.logits = router->logits;
    candidate.input = matchLinear(g, router->logits)->input;
    candidate.numExperts = g.dims(mlp->fc1.weight)[0];
    candidate.experts = {*mlp};
    return candidate;
  }
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// (e) Input-scaled dense experts (Llama 4)
//===----------------------------------------------------------------------===//

/// Whether `indices` maps row r of an [E * T, ...] index tensor to token
/// r mod T (every entry of a row): the tokens repeated once per expert.
/// Evaluated with `tokens` bound to a sample row count; a static export's
/// constant index fixes its own T.
bool repeatsTokens(const GraphIndex &g, const std::string &indices,
                   const std::string &tokens, int64_t hidden,
                   const std::string &logits, int64_t numExperts) {
  for (int64_t rank : {2, 3}) {
    GraphEvaluator ev(g, g.opset);
    EvalTensor bound;
    bound.shapeOnly = true;
    bound.shape = {7, hidden};
    ev.bind(tokens, bound);
    EvalTensor source = bound;
    source.shape.insert(source.shape.begin(), rank - 2, 1);
    ev.bind(viewSource(g, tokens), source);
    // The repeat count may be read off the router's scores (Llama 4:
    // `router_scores.size(0)`, the scores computed from the logits): any
    // logits will do.
    EvalTensor scores;
    scores.shape = {7, numExperts};
    for (int64_t i = 0; i < 7 * numExperts; ++i)
      scores.data.push_back(double((i * 37) % 101) / 17.0);
    ev.bind(logits, scores);
    std::optional<EvalTensor> idx = ev.evaluate(indices);
    if (!idx || idx->shapeOnly || idx->shape.empty() || idx->numel() == 0)
      continue;
    int64_t rows = idx->shape[0], perRow = idx->numel() / rows;
    if (rows % numExperts)
      continue;
    int64_t numTokens = rows / numExperts;
    bool repeats = true;
    for (int64_t r = 0; r < rows && repeats; ++r)
      for (int64_t c = 0; c < perRow && repeats; ++c)
        repeats = idx->data[r * perRow + c] == double(r % numTokens);
    if (repeats)
      return true;
  }
  return false;
}

/// Llama 4's Llama4TextMoe (anchor: ScatterElements, reduction add, axis
/// 0): every token's row, scaled by a dense [E, T] routing matrix (zero
/// off the top-k), goes through every expert (batched MatMuls over stacked
/// weights); the outputs, [E * T, H], are scatter-added into the shared
/// expert's output (or zeros) at their tokens.
std::optional<RaisedBlock> matchInputScaledExperts(const GraphIndex &g,
                                                   const NodeProto *scatter,
                                                   std::string &why) {
  if (!isOp(scatter, "ScatterElements"))
    return std::nullopt;
  const onnx::AttributeProto *axis = findAttribute(*scatter, "axis");
  if (axis && axis->i() != 0)
    return std::nullopt;
  std::optional<ExpertMLP> mlp =
      matchExpertMLP(g, in(scatter, 2), [&](const std::string &v) {
        return matchTiledLinear(g, v);
      });
  if (!mlp)
    return std::nullopt;
  SmallVector<int64_t> fc1Dims = g.dims(mlp->fc1.weight);
  if (fc1Dims.size() != 3)
    return std::nullopt;
  int64_t numExperts = fc1Dims[0], hidden = fc1Dims[1];
  // The experts not routed to see zero rows: only bias-free ones give 0.
  if (!mlp->fc1.bias.empty() || !mlp->fc2.bias.empty() ||
      (mlp->fc3 && !mlp->fc3->bias.empty())) {
    why = "input-scaled experts with biases (experts not routed to would "
          "add their output for a zero row)";
    return std::nullopt;
  }
  const NodeProto *mul = computedBy(g, mlp->input);
  if (!isOp(mul, "Mul"))
    return std::nullopt;
  for (int side : {0, 1}) {
    // The tokens repeated once per expert: GatherElements/Gather by
    // repeated token indices, or Tile.
    const NodeProto *repeat = computedBy(g, in(mul, side));
    const std::string &scale = in(mul, 1 - side);
    const NodeProto *topk = findTopK(g, scale);
    std::string tokens =
        repeat && repeat->input_size() > 0 ? in(repeat, 0) : std::string();
    std::optional<std::string> logits =
        topk ? findRouterLogits(g, out(topk, 1), tokens, numExperts)
             : std::nullopt;
    if (!logits)
      continue;
    if (isOp(repeat, "GatherElements") || isOp(repeat, "Gather")) {
      const onnx::AttributeProto *gatherAxis = findAttribute(*repeat, "axis");
      if ((gatherAxis && gatherAxis->i() != 0) ||
          !repeatsTokens(g, in(repeat, 1), tokens, hidden, *logits, numExperts))
        continue;
    } else if (isOp(repeat, "Tile")) {
      std::optional<SmallVector<int64_t>> repeats = g.ints(in(repeat, 1));
      if (!repeats || *repeats != SmallVector<int64_t>{numExperts, 1})
        continue;
    } else {
      continue;
    }
    // The scatter writes row r back to token r mod T.
    if (!repeatsTokens(g, in(scatter, 1), tokens, hidden, *logits,
                       numExperts)) {
      why = "the experts' outputs are not added back to their tokens";
      return std::nullopt;
    }
    mlp->input = tokens;
    std::optional<Router> router =
        matchRouting(g, out(topk, 1), scale, tokens, numExperts, why,
                     /*expertMajorWeights=*/true);
    if (!router)
      return std::nullopt;
    RaisedBlock block;
    block.form = "input-scaled dense experts";
    block.replaced = scatter;
    block.output = out(scatter, 0);
    block.stacked = true;
    block.scaleInput = true;
    block.router = *router;
    block.logits = router->logits;
    block.input = matchLinear(g, router->logits)->input;
    block.numExperts = numExperts;
    block.experts = {*mlp};
    // The accumulator: zeros, or the shared expert on the same tokens.
    const std::string &acc = in(scatter, 0);
    if (!isZeros(g, acc)) {
      std::optional<ExpertMLP> shared = matchExpertMLP(
          g, acc, [&](const std::string &v) { return matchLinear(g, v); });
      if (!shared || !fitsAsShared(g, *shared, *mlp, block.input,
                                   /*separateHalves=*/true)) {
        why = "the experts' outputs are added to something other than zeros "
              "or a shared expert like them";
        return std::nullopt;
      }
      block.shared = shared;
    }
    return block;
  }
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// (d) Capacity-limited top-1 (Switch Transformers)
//===----------------------------------------------------------------------===//

/// An assignment (no reduction) ScatterND: data, indices, updates.
bool isAssignment(const NodeProto *node) {
  if (!isOp(node, "ScatterND") && !isOp(node, "ScatterElements"))
    return false;
  const onnx::AttributeProto *red = findAttribute(*node, "reduction");
  return !red || red->s() == "none";
}

/// Whether `node` is the last link of an assignment chain: no assignment
/// continues from its output.
bool endsAssignmentChain(const GraphIndex &g, const NodeProto &node) {
  return isAssignment(&node) &&
         llvm::none_of(g.users(out(&node, 0)), [&](const NodeProto *user) {
           return isAssignment(user) && in(user, 0) == out(&node, 0);
         });
}

/// Switch Transformers' sparse MLP, as torch exports it:
///   next = x.clone()  (or zeros)
///   for each expert e: next[rows_e] = expert_e(x[rows_e])
///   out = p * next    (p: the router probability of the chosen expert)
/// where rows_e are the tokens routed to e that fit in its capacity
/// (top-1 by argmax, a cumulative sum over the sequence compared with the
/// capacity, nonzero). The chain of assignments is matched structurally;
/// which expert each branch serves, the capacity, whether it counts per
/// sequence and the weights are found by evaluating the branches' token
/// selections on sample router logits and comparing them with moe.route +
/// moe.dispatch's reference.
std::optional<RaisedBlock> matchCapacityTop1(const GraphIndex &g,
                                             const NodeProto *last,
                                             std::string &why) {
  // The chain, last link first, and its base.
  SmallVector<const NodeProto *> chain;
  for (const NodeProto *link = last; isAssignment(link) && chain.size() < 1024;
       link = g.producer(in(link, 0)))
    chain.push_back(link);
  std::string base = in(chain.back(), 0);

  struct Branch {
    ExpertMLP mlp;
    std::string rows; // the selected token indices
  };
  std::vector<Branch> branches;
  std::string tokens;
  auto linearOf = [&](const std::string &v) { return matchLinear(g, v); };
  for (const NodeProto *link : chain) {
    std::optional<ExpertMLP> mlp = matchExpertMLP(g, in(link, 2), linearOf);
    if (!mlp)
      return std::nullopt;
    const NodeProto *gather = computedBy(g, mlp->input);
    if (!isOp(gather, "Gather") ||
        viewSource(g, in(gather, 1)) != viewSource(g, in(link, 1))) {
      why = "branch '" + link->name() +
            "': the expert's rows are not the rows it writes";
      return std::nullopt;
    }
    std::string source = viewSource(g, in(gather, 0));
    if (tokens.empty())
      tokens = source;
    if (source != tokens) {
      why = "branches read different tokens";
      return std::nullopt;
    }
    branches.push_back({*mlp, in(gather, 1)});
  }
  bool passThrough = viewSource(g, base) == tokens;
  if (!passThrough && !isZeros(g, base)) {
    why = "the experts' outputs are written into neither the tokens nor "
          "zeros";
    return std::nullopt;
  }

  // The router: a linear layer on the tokens the selection depends on.
  std::optional<std::string> logits;
  int64_t numExperts = 0;
  for (const NodeProto *n : ancestors(g, branches[0].rows, 256)) {
    std::optional<Linear> linear = matchLinear(g, out(n, 0));
    if (!linear || viewSource(g, linear->input) != viewSource(g, tokens))
      continue;
    SmallVector<int64_t> dims = g.dims(linear->weight);
    if (dims.size() != 2)
      continue;
    logits = out(n, 0);
    numExperts = dims[linear->inMajor ? 1 : 0];
    break;
  }
  if (!logits) {
    why = "no router (a linear layer on the tokens) behind the token "
          "selection";
    return std::nullopt;
  }
  Linear gate = *matchLinear(g, *logits);
  SmallVector<int64_t> gateDims = g.dims(gate.weight);
  const int64_t hidden = gateDims[gate.inMajor ? 0 : 1];
  // Sample logits are [4 * 512, E]: sizes a damaged graph may claim are
  // not evaluated.
  if (numExperts < 1 || numExperts > 1024 || hidden < 1) {
    why = "router of " + std::to_string(numExperts) + " experts on " +
          std::to_string(hidden) + " features not evaluated";
    return std::nullopt;
  }
  if (int64_t(branches.size()) != numExperts) {
    why = "the block has " + std::to_string(branches.size()) +
          " expert branches for " + std::to_string(numExperts) +
          " experts (a traced export drops experts it never reached; a "
          "dropped token would keep its hidden state there)";
    return std::nullopt;
  }

  // The weight: out = p * chain (or the chain alone: weight 1).
  const NodeProto *replaced = last;
  std::string weight;
  ArrayRef<const NodeProto *> users = g.users(out(last, 0));
  std::string chainOut = out(last, 0);
  while (users.size() == 1 && isPlumbing(users[0])) {
    chainOut = out(users[0], 0);
    users = g.users(chainOut);
  }
  if (users.size() == 1 && isOp(users[0], "Mul")) {
    replaced = users[0];
    weight = in(replaced, 0) == chainOut ? in(replaced, 1) : in(replaced, 0);
  }
  // The chain writes [T, H] rows; the output keeps that shape unless it
  // was reshaped back (to [B, S, H], as transformers does) before the scale.
  bool perTokenOutput = replaced == last || chainOut == out(last, 0);

  // Sample logits: sequences dominated by one expert each (every expert in
  // turn: the capacity binds), and ordinary ones. The tokens are [B, S, H]
  // when the router reads 3-D hidden states.
  std::string tokenSource = viewSource(g, gate.input);
  const bool sequences = [&] {
    const NodeProto *n = g.producer(gate.input);
    // MatMul on [B, S, H] keeps the sequence axis; a flattening reshape
    // before the router does not.
    return !(n && isOp(n, "MatMul") && isPlumbing(g.producer(in(n, 0))));
  }();
  struct Sample {
    ::moe::reference::Tensor logits; // [T, E]
    int64_t batch, seq;
    std::vector<std::set<int64_t>> selected; // per branch
    std::vector<double> weights;             // per token
  };
  auto sample = [&](int64_t batch, int64_t seq, int64_t firstPattern,
                    unsigned seed) -> std::optional<Sample> {
    Sample s{{}, batch, seq, {}, {}};
    const int64_t T = batch * seq;
    s.logits = sampleLogits(T, numExperts, seed);
    for (int64_t b = 0; b < batch; ++b) {
      int64_t pattern = (firstPattern + b) % (numExperts + 2);
      if (pattern >= numExperts)
        continue;
      for (int64_t t = b * seq; t < (b + 1) * seq; ++t)
        s.logits.data[t * numExperts + pattern] += 12.0;
    }
    GraphEvaluator ev(g, g.opset);
    EvalTensor bound;
    bound.shape = sequences ? std::vector<int64_t>{batch, seq, numExperts}
                            : std::vector<int64_t>{T, numExperts};
    bound.data = s.logits.data;
    ev.bind(*logits, bound);
    EvalTensor shapeOnly;
    shapeOnly.shapeOnly = true;
    shapeOnly.shape = sequences ? std::vector<int64_t>{batch, seq, hidden}
                                : std::vector<int64_t>{T, hidden};
    ev.bind(viewSource(g, gate.input), shapeOnly);
    for (const Branch &branch : branches) {
      std::optional<EvalTensor> rows = ev.evaluate(branch.rows);
      if (!rows) {
        why = "token selection not evaluated: " + ev.failure();
        return std::nullopt;
      }
      std::set<int64_t> picked;
      if (rows->shapeOnly) {
        why = "a branch's token selection is not computed from the router";
        return std::nullopt;
      }
      for (double r : rows->data) {
        if (!(r >= 0 && r < double(T)) || r != std::trunc(r) ||
            !picked.insert(int64_t(r)).second) {
          why = "a branch selects tokens out of range or twice";
          return std::nullopt;
        }
      }
      s.selected.push_back(std::move(picked));
    }
    s.weights.assign(T, 1.0);
    if (!weight.empty()) {
      std::optional<EvalTensor> w = ev.evaluate(weight);
      if (!w || w->shapeOnly || w->numel() != T) {
        why = "the output's scale is not one value per token" +
              (w ? std::string() : ": " + ev.failure());
        return std::nullopt;
      }
      s.weights = w->data;
    }
    return s;
  };

  using namespace ::moe::reference;
  RouteOptions top1;
  top1.k = 1;
  top1.scoring = Scoring::Softmax;
  // Sizes to sample with: long sequences, where a capacity binds; then the
  // [B, S, H] or [T, H] sizes a static export fixed in its constants (there
  // a capacity that never binds is no capacity).
  struct Sizes {
    int64_t batch, seq;
    bool fixed;
  };
  SmallVector<Sizes> sizes{{std::min<int64_t>(4, numExperts + 2), 48, false},
                           {std::min<int64_t>(4, numExperts + 2), 512, false}};
  std::set<std::pair<int64_t, int64_t>> fixedSizes;
  for (const std::string &from : {branches[0].rows, chainOut})
    for (const NodeProto *n : ancestors(g, from, 256))
      for (const std::string &input : n->input())
        if (std::optional<SmallVector<int64_t>> v = g.ints(input)) {
          if (v->size() == 3 && v->back() == hidden && (*v)[0] > 0 &&
              (*v)[1] > 0)
            fixedSizes.insert({(*v)[0], (*v)[1]});
          if (v->size() == 2 && v->back() == hidden && (*v)[0] > 0)
            fixedSizes.insert({1, (*v)[0]});
        }
  for (auto [b, sq] : fixedSizes)
    if (b * sq <= 4096)
      sizes.push_back({sequences ? b : 1, sequences ? sq : b * sq, true});
  std::string firstWhy;
  for (const Sizes &size : sizes) {
    const int64_t seq = size.seq, batch = sequences ? size.batch : 1;
    std::vector<Sample> samples;
    for (int64_t first = 0; first < numExperts + 2; first += batch) {
      std::optional<Sample> s =
          sample(batch, seq, first, 17 + unsigned(first) * 7919);
      if (!s)
        break;
      samples.push_back(std::move(*s));
    }
    if (samples.size() * batch < size_t(numExperts + 2)) {
      if (firstWhy.empty())
        firstWhy = why;
      continue;
    }
    // The capacity: the most tokens a branch kept in one sequence
    // dominated by its expert, if it kept fewer than it was sent.
    int64_t kept = 0;
    bool dropped = false;
    for (const Sample &s : samples) {
      for (const std::set<int64_t> &picked : s.selected) {
        std::map<int64_t, int64_t> perSequence;
        for (int64_t t : picked)
          ++perSequence[sequences ? t / s.seq : 0];
        for (auto [unused, count] : perSequence)
          kept = std::max(kept, count);
      }
      int64_t total = 0;
      for (const std::set<int64_t> &picked : s.selected)
        total += picked.size();
      dropped |= total < s.batch * s.seq;
    }
    if (!dropped && !size.fixed)
      continue; // a capacity above `seq`, if any: try longer sequences
    if (dropped && kept < 1) {
      why = "tokens are dropped although no expert keeps any";
      return std::nullopt;
    }
    // Candidates, per sequence first; dropless when nothing was dropped.
    struct Candidate {
      int64_t capacity;
      bool perSequence;
    };
    SmallVector<Candidate> candidates;
    if (dropped) {
      if (sequences)
        candidates.push_back({kept, true});
      candidates.push_back({kept, false});
    } else {
      candidates.push_back({0, false});
    }
    for (const Candidate &c : candidates) {
      std::optional<double> ratio;
      bool agrees = true;
      for (const Sample &s : samples) {
        std::optional<RouteResult> routed = tryRoute(s.logits, nullptr, top1);
        if (!routed) {
          agrees = false;
          break;
        }
        const int64_t T = s.batch * s.seq;
        Tensor x = Tensor::zeros({T, 1});
        DispatchResult d =
            c.capacity > 0
                ? dispatch(x, routed->ids, numExperts, std::nullopt,
                           c.capacity, c.perSequence ? s.seq : 0)
                : dispatch(x, routed->ids, numExperts);
        // Each branch must keep exactly the tokens admitted to one expert.
        std::vector<std::set<int64_t>> admitted(numExperts);
        for (int64_t t = 0; t < T; ++t)
          if (d.slotRows.data[t] >= 0)
            admitted[routed->ids.data[t]].insert(t);
        std::vector<bool> used(numExperts, false);
        for (const std::set<int64_t> &picked : s.selected) {
          if (picked.empty())
            continue;
          int64_t e = routed->ids.data[*picked.begin()];
          if (used[e] || admitted[e] != picked) {
            agrees = false;
            break;
          }
          used[e] = true;
        }
        for (int64_t e = 0; e < numExperts && agrees; ++e)
          agrees = used[e] || admitted[e].empty();
        // The scale: the routing weight up to one common factor.
        for (int64_t t = 0; t < T && agrees; ++t) {
          double expect = routed->weights.data[t];
          if (!ratio)
            ratio = weight.empty() ? 1.0 / expect : s.weights[t] / expect;
          double want = weight.empty() ? 1.0 : *ratio * expect;
          agrees = std::abs(s.weights[t] - want) <=
                   1e-6 * std::abs(want) + 1e-12;
        }
        if (!agrees)
          break;
      }
      if (!agrees || !ratio)
        continue;
      // Branch b serves the expert its tokens were routed to: identify
      // them on the first sample where each branch kept a token.
      std::vector<int64_t> expertOf(branches.size(), -1);
      for (const Sample &s : samples) {
        RouteResult routed = *tryRoute(s.logits, nullptr, top1);
        for (auto [b, picked] : llvm::enumerate(s.selected))
          if (!picked.empty() && expertOf[b] < 0)
            expertOf[b] = routed.ids.data[*picked.begin()];
      }
      RaisedBlock block;
      block.form = "capacity-limited top-1";
      block.replaced = replaced;
      block.output = out(replaced, 0);
      block.input = gate.input;
      block.flattenOutput = sequences && perTokenOutput;
      block.logits = *logits;
      block.numExperts = numExperts;
      block.experts.resize(numExperts);
      for (auto [b, e] : llvm::enumerate(expertOf)) {
        if (e < 0 || block.experts[e]) {
          why = "a branch's expert is not determined by the samples";
          return std::nullopt;
        }
        block.experts[e] = branches[b].mlp;
      }
      block.router.logits = *logits;
      block.router.k = 1;
      block.router.scoring = "softmax";
      // Without a scale every kept token gets its expert's output as is:
      // top-1 renormalised (weight 1).
      block.router.normalize = weight.empty();
      block.router.scaling = weight.empty() ? 1.0 : double(float(*ratio));
      block.capacity = c.capacity;
      block.perSequence = c.perSequence;
      block.passThrough = passThrough && c.capacity > 0;
      const ExpertMLP &first = branches[0].mlp;
      for (const Branch &branch : branches)
        if (branch.mlp.activation != first.activation ||
            bool(branch.mlp.fc3) != bool(first.fc3) ||
            branch.mlp.fc1.bias.empty() != first.fc1.bias.empty() ||
            branch.mlp.fc2.bias.empty() != first.fc2.bias.empty()) {
          why = "expert branches compute different MLPs";
          return std::nullopt;
        }
      return block;
    }
    why = "token selection matches no top-1 routing with a capacity on "
          "sample logits";
    return std::nullopt;
  }
  why = firstWhy.empty() ? "no capacity observed up to 512 tokens per sequence"
                         : firstWhy;
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// Driver
//===----------------------------------------------------------------------===//

/// A float as the shortest text that reads back as the float it came from.
std::string formatNumber(double v) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", static_cast<double>(static_cast<float>(v)));
  return text;
}

/// The routing in words: "renormalised softmax", "sigmoid, 4 groups
/// (best 2 by top-2 sum), score bias, renormalised, scaled 2.5".
std::string describe(const Router &router) {
  std::string text = router.scoring == "softmax_topk"
                         ? "softmax over the top-k logits"
                     : router.scoring == "sparse_mixer" ? "sparse mixer"
                                                        : router.scoring;
  if (router.normalize && router.scoring == "softmax")
    text = "renormalised";
  else if (router.normalize)
    text += ", renormalised";
  if (router.numGroups > 1)
    text += ", " + std::to_string(router.numGroups) + " groups (best " +
            std::to_string(router.topGroups) + " by " +
            (router.groupScoring == "max" ? "max" : "top-2 sum") + ")";
  if (!router.scoreBias.empty())
    text += ", score bias '" + router.scoreBias + "'";
  if (router.scaling != 1.0)
    text += ", scaled " + formatNumber(router.scaling);
  return text;
}

/// Removes nodes whose outputs nothing live reads.
void eraseDeadNodes(onnx::GraphProto &graph) {
  llvm::StringSet<> live;
  for (const auto &out : graph.output())
    live.insert(out.name());
  SmallVector<bool> keep(graph.node_size(), false);
  for (int i = graph.node_size() - 1; i >= 0; --i) {
    const NodeProto &node = graph.node(i);
    bool used = false;
    for (const std::string &out : node.output())
      used |= live.contains(out);
    if (!used)
      continue;
    keep[i] = true;
    for (const std::string &in : node.input())
      live.insert(in);
  }
  google::protobuf::RepeatedPtrField<NodeProto> kept;
  for (int i = 0; i < graph.node_size(); ++i)
    if (keep[i])
      *kept.Add() = graph.node(i);
  graph.mutable_node()->Swap(&kept);
}

} // namespace

LogicalResult mlir::moe::onnx_import::raiseMoESubgraphs(
    onnx::ModelProto &model, const ImportOptions &options, Location loc,
    const ExternalDataReader &readExternal) {
  if (!options.raise)
    return success();
  onnx::GraphProto &graph = *model.mutable_graph();
  std::vector<RaisedBlock> blocks;
  {
    int64_t opset = 17;
    for (const auto &import : model.opset_import())
      if (import.domain().empty() || import.domain() == "ai.onnx")
        opset = import.version();
    foldWeightViews(graph, opset, readExternal);
    GraphIndex g(graph, opset, readExternal);
    // A block ends in a ReduceSum (stacked forms) or in the last link of an
    // accumulation chain: a scatter-add no other scatter-add continues.
    auto endsChain = [&](const NodeProto &node) {
      return matchScatterAdd(g, &node) &&
             llvm::none_of(g.users(out(&node, 0)), [&](auto *user) {
               std::optional<Accumulation> next = matchScatterAdd(g, user);
               return next && next->accumulator == out(&node, 0);
             });
    };
    for (const NodeProto &node : graph.node()) {
      std::string why;
      std::optional<RaisedBlock> block;
      if (isOp(&node, "ReduceSum")) {
        block = matchStackedForms(g, &node, why);
      } else if (endsChain(node)) {
        block = matchPerExpertBranches(g, &node, why);
        if (block) {
          matchSharedExperts(g, *block);
        } else {
          std::string scaledWhy;
          block = matchInputScaledExperts(g, &node, scaledWhy);
          if (block || !scaledWhy.empty())
            why = scaledWhy;
        }
      } else if (endsAssignmentChain(g, node)) {
        block = matchCapacityTop1(g, &node, why);
      }
      if (block)
        blocks.push_back(std::move(*block));
      else if (!why.empty() && options.raisingLog)
        *options.raisingLog << "raising: not raised at node '" << node.name()
                            << "': " << why << "\n";
    }
  }

  for (const RaisedBlock &block : blocks) {
    int64_t present = llvm::count_if(
        block.experts, [](const auto &mlp) { return mlp.has_value(); });
    if (options.raisingLog) {
      const ExpertMLP &mlp = **llvm::find_if(
          block.experts, [](const auto &m) { return m.has_value(); });
      *options.raisingLog << "raised " << block.form << " at node '"
                          << block.replaced->name() << "' -> moe.layer: "
                          << block.numExperts << " experts, top-"
                          << block.router.k << ", " << describe(block.router)
                          << " routing, " << mlp.activation
                          << (mlp.activation == "swiglu"
                                  ? " (" + mlp.fusion + ", alpha " +
                                        formatNumber(mlp.alpha) +
                                        ", beta " +
                                        formatNumber(mlp.beta) +
                                        (mlp.limit ? ", limit " +
                                                         formatNumber(*mlp.limit)
                                                   : std::string()) +
                                        ")"
                                  : std::string())
                          << " MLP"
                          << (mlp.fc1.bias.empty() ? "" : " with biases")
                          << (block.shared ? (block.sharedGate
                                                  ? ", gated shared expert"
                                                  : ", shared expert")
                                           : "")
                          << (block.capacity > 0
                                  ? ", capacity " +
                                        std::to_string(block.capacity) +
                                        (block.perSequence ? " per sequence"
                                                           : "") +
                                        (block.passThrough
                                             ? " (dropped tokens pass "
                                               "through)"
                                             : "")
                                  : std::string())
                          << ", input '" << block.input << "', logits '"
                          << block.logits << "', output '" << block.output
                          << "'\n";
    }
    if (!block.stacked && present < block.numExperts) {
      std::string missing;
      for (auto [e, mlp] : llvm::enumerate(block.experts))
        if (!mlp)
          missing += (missing.empty() ? "" : ", ") + std::to_string(e);
      emitWarning(loc) << "MoE block at node '" << block.replaced->name()
                       << "' holds " << present << " expert branches but "
                       << "routes to " << block.numExperts
                       << " experts; experts " << missing
                       << " have no branch (a traced export drops experts "
                          "the tracing input never reached), so tokens "
                          "routed to them get no contribution from them, "
                          "exactly as in the exported graph";
    }
  }

  // Replace each block's output node with the raised node, then drop what
  // only the blocks used.
  for (const RaisedBlock &block : blocks) {
    NodeProto raised = buildRaisedNode(block);
    for (NodeProto &node : *graph.mutable_node())
      if (&node == block.replaced) {
        node = raised;
        break;
      }
  }
  if (!blocks.empty())
    eraseDeadNodes(graph);
  return success();
}
