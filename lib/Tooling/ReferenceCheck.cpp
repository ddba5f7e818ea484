//===- ReferenceCheck.cpp - moe-run --check against lib/Reference ---------===//

#include "moe-mlir/Tooling/ReferenceCheck.h"

#include "JsonSupport.h"
#include "moe-mlir/Tooling/Diagnostics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <set>
#include <utility>

namespace moe::tooling {

namespace ref = moe::reference;
using rt::findMember;
using rt::isInt64;
using rt::Json;
using rt::jsonKindName;
using rt::parseJson;

namespace {

const Json *attr(const Json &attrs, const char *name) {
  const Json *v = findMember(attrs, name);
  return v && !v->is_null() ? v : nullptr;
}

int64_t intAttr(const Json &attrs, const char *name, int64_t dflt) {
  const Json *v = attr(attrs, name);
  if (!v)
    return dflt;
  if (!isInt64(*v))
    fail(std::string("reference attribute '") + name +
         "' must be an integer, not " + jsonKindName(*v));
  return v->get<int64_t>();
}

std::optional<double> numberAttr(const Json &attrs, const char *name) {
  const Json *v = attr(attrs, name);
  if (!v)
    return std::nullopt;
  if (!v->is_number())
    fail(std::string("reference attribute '") + name +
         "' must be a number, not " + jsonKindName(*v));
  return v->get<double>();
}

bool boolAttr(const Json &attrs, const char *name) {
  const Json *v = attr(attrs, name);
  if (!v)
    return false;
  if (!v->is_boolean())
    fail(std::string("reference attribute '") + name +
         "' must be a boolean, not " + jsonKindName(*v));
  return v->get<bool>();
}

/// Decodes an enum spelled as in the dialect; `what` names it in errors.
template <typename E>
E enumValue(const Json &v, const std::string &what,
            const std::vector<std::pair<const char *, E>> &cases) {
  std::string spelled = v.is_string() ? v.get<std::string>() : "";
  std::string all;
  for (const auto &c : cases) {
    if (spelled == c.first)
      return c.second;
    all += (all.empty() ? "" : ", ") + std::string(c.first);
  }
  fail(what + " is " +
       (v.is_string() ? "'" + spelled + "'" : std::string(jsonKindName(v))) +
       ", expected one of " + all);
}

template <typename E>
E enumAttr(const Json &attrs, const char *name, E dflt,
           const std::vector<std::pair<const char *, E>> &cases) {
  const Json *v = attr(attrs, name);
  return v ? enumValue(*v, std::string("reference attribute '") + name + "'",
                       cases)
           : dflt;
}

const std::vector<std::pair<const char *, ref::ZeroExpert>> kZeroKinds = {
    {"zero", ref::ZeroExpert::Zero},
    {"copy", ref::ZeroExpert::Copy},
    {"constant", ref::ZeroExpert::Constant}};

} // namespace

Reference parseReference(const moe_function *fn) {
  const char *text = moe_function_reference_json(fn);
  if (!text)
    fail(std::string("function '") + moe_function_name(fn) +
         "' has no reference section in its manifest; --check needs one");
  Reference r;
  Json root;
  try {
    root = parseJson(text);
  } catch (const std::exception &e) {
    fail(std::string("reference section: ") + e.what());
  }
  const Json *op = findMember(root, "op");
  if (!op || !op->is_string())
    fail("reference section: missing \"op\"");
  if (op->get<std::string>() != "layer")
    fail("reference op '" + op->get<std::string>() +
         "' is not supported by --check (only 'layer')");

  static const std::set<std::string> kKnown = {"input",
                                               "logits",
                                               "router_weight",
                                               "fc1",
                                               "fc1_bias",
                                               "fc2",
                                               "fc2_bias",
                                               "fc3",
                                               "fc3_bias",
                                               "score_bias",
                                               "shared_fc1",
                                               "shared_fc2",
                                               "shared_fc3",
                                               "shared_gate",
                                               "constants",
                                               "constant_gates",
                                               "fc1_scales",
                                               "fc2_scales",
                                               "fc3_scales",
                                               "fc1_zero_points",
                                               "fc2_zero_points",
                                               "fc3_zero_points"};
  const Json *ops = findMember(root, "operands");
  if (!ops || !ops->is_object())
    fail("reference section: \"operands\" must be an object");
  int64_t numInputs = moe_function_input_count(fn);
  for (const auto &[name, index] : ops->items()) {
    if (!kKnown.count(name))
      fail("reference operand '" + name + "' is not a moe.layer operand");
    if (!isInt64(index) || index.get<int64_t>() < 0 ||
        index.get<int64_t>() >= numInputs)
      fail("reference operand '" + name + "' must be an input index in [0, " +
           std::to_string(numInputs) + ")");
    r.operands[name] = static_cast<size_t>(index.get<int64_t>());
  }
  for (const char *required : {"input", "fc1", "fc2"})
    if (!r.operand(required))
      fail(std::string("reference section lacks the '") + required +
           "' operand");
  if (bool(r.operand("logits")) == bool(r.operand("router_weight")))
    fail("reference section needs exactly one of the 'logits' and "
         "'router_weight' operands");

  const Json *attrs = findMember(root, "attributes");
  const Json a = attrs && attrs->is_object() ? *attrs : Json::object();
  // Defaults are the dialect's (MoEOps.td) for absent attributes.
  ref::RouteOptions &ro = r.options.route;
  ro.k = intAttr(a, "k", 1);
  ro.scoring = enumAttr<ref::Scoring>(
      a, "scoring", ref::Scoring::Softmax,
      {{"softmax", ref::Scoring::Softmax},
       {"sigmoid", ref::Scoring::Sigmoid},
       {"softmax_topk", ref::Scoring::SoftmaxTopK},
       {"sparse_mixer", ref::Scoring::SparseMixer}});
  if (const Json *n = attr(a, "normalize")) {
    if (!n->is_boolean())
      fail("reference attribute 'normalize' must be a boolean");
    ro.normalize = n->get<bool>();
  }
  ro.numGroups = intAttr(a, "num_groups", 1);
  ro.topGroups = intAttr(a, "top_groups", 1);
  ro.groupScoring = enumAttr<ref::GroupScoring>(
      a, "group_scoring", ref::GroupScoring::Max,
      {{"max", ref::GroupScoring::Max},
       {"top2_sum", ref::GroupScoring::Top2Sum}});
  ro.topP = numberAttr(a, "top_p");
  ro.scaling = numberAttr(a, "scaling").value_or(1.0);

  ref::ExpertOptions &eo = r.options.expert;
  eo.activation = enumAttr<ref::Activation>(
      a, "activation", ref::Activation::Relu,
      {{"identity", ref::Activation::Identity},
       {"relu", ref::Activation::Relu},
       {"gelu", ref::Activation::Gelu},
       {"gelu_tanh", ref::Activation::GeluTanh},
       {"silu", ref::Activation::Silu},
       {"swiglu", ref::Activation::SwiGLU}});
  eo.fusion = enumAttr<ref::SwigluFusion>(
      a, "swiglu_fusion", ref::SwigluFusion::Interleaved,
      {{"separate", ref::SwigluFusion::Separate},
       {"interleaved", ref::SwigluFusion::Interleaved},
       {"concatenated", ref::SwigluFusion::Concatenated}});
  eo.alpha = numberAttr(a, "alpha").value_or(1.0);
  eo.beta = numberAttr(a, "beta").value_or(0.0);
  eo.limit = numberAttr(a, "limit");
  r.options.capacityFactor = numberAttr(a, "capacity_factor");
  if (std::optional<double> c = numberAttr(a, "expert_capacity"))
    r.options.expertCapacity = static_cast<int64_t>(*c);
  r.perSequenceCapacity = boolAttr(a, "capacity_per_sequence");
  r.options.droppedPassThrough = boolAttr(a, "dropped_pass_through");
  r.options.scaleInput = boolAttr(a, "scale_input");
  if (attr(a, "weight_bits")) {
    ref::Quantization q;
    q.bits = intAttr(a, "weight_bits", 8);
    q.blockSize = intAttr(a, "block_size", 0);
    r.quant = q;
  }
  if (const Json *z = attr(a, "zero_experts")) {
    if (!z->is_array())
      fail("reference attribute 'zero_experts' must be an array");
    for (size_t i = 0; i < z->size(); ++i)
      r.options.zeroExperts.push_back(enumValue(
          (*z)[i],
          "reference attribute 'zero_experts' entry " + std::to_string(i),
          kZeroKinds));
  }
  return r;
}

ref::Tensor refTensor(const HostTensor &t, bool flatten) {
  std::vector<int64_t> shape = t.shape;
  if (flatten && shape.size() >= 3)
    shape = {product(shape, 0, shape.size() - 1), shape.back()};
  return ref::Tensor(shape, toDoubles(t));
}

ref::Tensor referenceLogits(const Reference &r,
                            const std::vector<HostTensor> &inputs) {
  if (auto logits = r.operand("logits"))
    return refTensor(inputs[*logits], true);
  try {
    return ref::routerLogits(refTensor(inputs[*r.operand("input")], true),
                             refTensor(inputs[*r.operand("router_weight")],
                                       false));
  } catch (const std::exception &e) {
    fail(std::string("the router's logits: ") + e.what());
  }
}

namespace {

ref::Tensor evaluateReference(const Reference &r,
                              const std::vector<HostTensor> &inputs) {
  auto get = [&](const char *name) -> std::optional<ref::Tensor> {
    if (auto i = r.operand(name))
      return refTensor(inputs[*i], std::strcmp(name, "input") == 0 ||
                                       std::strcmp(name, "logits") == 0);
    return std::nullopt;
  };
  // Quantised projections are dequantised up front; the evaluator then runs
  // its float path (MoE.md: the same arithmetic the kernel does in place).
  auto weight = [&](const char *name) -> std::optional<ref::Tensor> {
    if (!r.quant)
      return get(name);
    std::optional<size_t> index = r.operand(name);
    if (!index)
      return std::nullopt;
    auto bytes =
        [&](const std::string &operand) -> std::optional<ref::ByteTensor> {
      std::optional<size_t> i = r.operand(operand);
      if (!i)
        return std::nullopt;
      const HostTensor &t = inputs[*i];
      if (t.dtype != MOE_DTYPE_U8)
        fail("--check: quantised operand '" + operand + "' must be u8, not " +
             moe_dtype_name(t.dtype));
      return ref::ByteTensor(
          t.shape, std::vector<uint8_t>(t.data.get(), t.data.get() + t.bytes));
    };
    std::string scales = std::string(name) + "_scales";
    std::optional<ref::Tensor> s = get(scales.c_str());
    if (!s)
      fail("reference section: quantised '" + std::string(name) + "' needs '" +
           scales + "'");
    std::optional<ref::ByteTensor> zp =
        bytes(std::string(name) + "_zero_points");
    try {
      return ref::dequantize(*bytes(name), *s, zp ? &*zp : nullptr, *r.quant);
    } catch (const std::exception &e) {
      fail(std::string("--check: cannot dequantise '") + name +
           "': " + e.what());
    }
  };
  ref::LayerWeights w;
  w.experts.fc1 = *weight("fc1");
  w.experts.fc2 = *weight("fc2");
  w.experts.fc1Bias = get("fc1_bias");
  w.experts.fc2Bias = get("fc2_bias");
  w.experts.fc3 = weight("fc3");
  w.experts.fc3Bias = get("fc3_bias");
  w.routerBias = get("score_bias");
  if (r.operand("shared_fc1") || r.operand("shared_fc2")) {
    if (!r.operand("shared_fc1") || !r.operand("shared_fc2"))
      fail("reference section: shared_fc1 and shared_fc2 go together");
    ref::ExpertWeights s;
    s.fc1 = *get("shared_fc1");
    s.fc2 = *get("shared_fc2");
    s.fc3 = get("shared_fc3");
    w.shared = std::move(s);
  }
  w.sharedGate = get("shared_gate");
  w.constants = get("constants");
  w.constantGates = get("constant_gates");
  ref::LayerOptions options = r.options;
  if (r.perSequenceCapacity) {
    const HostTensor &input = inputs[*r.operand("input")];
    if (input.shape.size() != 3)
      fail("--check: a per-sequence capacity needs a [B, S, H] input");
    options.capacityGroup = input.shape[1];
  }
  try {
    return ref::layer(*get("input"), referenceLogits(r, inputs), w, options);
  } catch (const std::exception &e) {
    fail(std::string("--check: the reference evaluator rejected the "
                     "inputs: ") +
         e.what());
  }
}

} // namespace

bool runCheck(const moe_function *fn, std::optional<double> tolerance,
              const std::vector<HostTensor> &inputs,
              const std::vector<HostTensor> &outputs) {
  Reference r = parseReference(fn);
  if (outputs.empty())
    fail("--check: the function has no outputs");
  ref::Tensor expected = evaluateReference(r, inputs);
  const HostTensor &got = outputs[0];
  if (got.numel() != expected.numel())
    fail("--check: output 0 has " + std::to_string(got.numel()) +
         " elements but the reference result " + shapeString(expected.shape) +
         " has " + std::to_string(expected.numel()));
  std::vector<double> actual = toDoubles(got);

  double maxAbs = 0, maxRef = 0;
  int64_t worst = 0;
  bool nonFinite = false;
  for (size_t i = 0; i < actual.size(); ++i) {
    double d = std::fabs(actual[i] - expected.data[i]);
    if (!std::isfinite(d)) {
      nonFinite = true;
      worst = static_cast<int64_t>(i);
      continue;
    }
    if (d > maxAbs) {
      maxAbs = d;
      if (!nonFinite)
        worst = static_cast<int64_t>(i);
    }
    maxRef = std::max(maxRef, std::fabs(expected.data[i]));
  }
  if (nonFinite)
    maxAbs = INFINITY;
  double rel = maxRef > 0 ? maxAbs / maxRef : (maxAbs == 0 ? 0 : INFINITY);

  bool lowPrecision = false;
  for (const HostTensor &t : inputs)
    lowPrecision |= t.dtype == MOE_DTYPE_F16 || t.dtype == MOE_DTYPE_BF16;
  for (const HostTensor &t : outputs)
    lowPrecision |= t.dtype == MOE_DTYPE_F16 || t.dtype == MOE_DTYPE_BF16;
  double tol = tolerance.value_or(lowPrecision ? 2e-2 : 1e-5);
  bool pass = rel <= tol;
  std::printf("check: max abs error %.3g, max rel error %.3g (max|diff| / "
              "max|ref|), tolerance %.3g: %s\n",
              maxAbs, rel, tol, pass ? "PASS" : "FAIL");
  if (!pass)
    std::printf("check: worst element %lld: got %.9g, expected %.9g%s\n",
                static_cast<long long>(worst), actual[worst],
                expected.data[worst],
                nonFinite ? " (non-finite values in the output)" : "");
  return pass;
}


} // namespace moe::tooling
