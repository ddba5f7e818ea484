//===- GraphEvaluator.cpp - Run a small part of an ONNX graph on samples ---===//

#include "GraphEvaluator.h"

#include "moe-mlir/Support/Npy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

using namespace mlir;
using namespace mlir::moe::onnx_import;

using Kind = EvalTensor::Kind;

int64_t EvalTensor::numel() const {
  // Saturates instead of overflowing: shapes come from the graph (constants'
  // dims, reshape and expand targets) and may be anything.
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      n = std::numeric_limits<int64_t>::max();
    else
      n *= d;
  }
  return n;
}

namespace {

/// Elements a single evaluation may touch before it gives up: routers on a
/// few dozen sample tokens stay far below it.
constexpr int64_t kWorkLimit = 1 << 26;
/// Largest tensor an op may produce.
constexpr int64_t kMaxElements = 1 << 22;

/// The element count of `shape` when every size is non-negative and the
/// count at most kMaxElements (so that it can be allocated and indexed).
std::optional<int64_t> allocatable(const std::vector<int64_t> &shape) {
  EvalTensor t;
  t.shape = shape;
  int64_t n = t.numel();
  if (n < 0 || n > kMaxElements)
    return std::nullopt;
  return n;
}

/// `v` truncated to an integer, saturated to int64's range (INT64_MAX, a
/// slice's usual end, is 2^63 as a double); nullopt for NaN. (A C++
/// conversion of a double outside the range is undefined.)
std::optional<int64_t> toInt(double v) {
  if (std::isnan(v))
    return std::nullopt;
  if (v >= 9223372036854775808.0)
    return std::numeric_limits<int64_t>::max();
  if (v < -9223372036854775808.0)
    return std::numeric_limits<int64_t>::min();
  return int64_t(v);
}

std::vector<int64_t> stridesOf(const std::vector<int64_t> &shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = int64_t(shape.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

/// Calls `fn(flat, index)` for every multi-index of `shape` in row-major
/// order.
template <typename Fn> void forEachIndex(const std::vector<int64_t> &shape, Fn fn) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  std::vector<int64_t> index(shape.size(), 0);
  for (int64_t flat = 0; flat < n; ++flat) {
    fn(flat, index);
    for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
      if (++index[d] < shape[d])
        break;
      index[d] = 0;
    }
  }
}

Kind kindOf(int32_t onnxType) {
  switch (onnxType) {
  case onnx::TensorProto::FLOAT:
  case onnx::TensorProto::DOUBLE:
  case onnx::TensorProto::FLOAT16:
  case onnx::TensorProto::BFLOAT16:
    return Kind::Float;
  case onnx::TensorProto::BOOL:
    return Kind::Bool;
  default:
    return Kind::Int;
  }
}

std::optional<EvalTensor> fromProto(const onnx::TensorProto &t) {
  EvalTensor out;
  out.shape.assign(t.dims().begin(), t.dims().end());
  std::optional<int64_t> count = allocatable(out.shape);
  if (!count || t.data_location() == onnx::TensorProto::EXTERNAL)
    return std::nullopt;
  int64_t n = *count;
  out.kind = kindOf(t.data_type());
  auto raw = [&](auto zero) -> bool {
    const std::string &bytes = t.raw_data();
    if (bytes.size() != size_t(n) * sizeof(zero))
      return false;
    for (int64_t i = 0; i < n; ++i) {
      decltype(zero) v;
      std::memcpy(&v, bytes.data() + i * sizeof(zero), sizeof(zero));
      out.data.push_back(double(v));
    }
    return true;
  };
  bool ok = false;
  switch (t.data_type()) {
  case onnx::TensorProto::FLOAT:
    ok = t.has_raw_data() ? raw(float())
                          : (out.data.assign(t.float_data().begin(),
                                             t.float_data().end()),
                             true);
    break;
  case onnx::TensorProto::DOUBLE:
    ok = t.has_raw_data() ? raw(double())
                          : (out.data.assign(t.double_data().begin(),
                                             t.double_data().end()),
                             true);
    break;
  case onnx::TensorProto::INT64:
    ok = t.has_raw_data() ? raw(int64_t())
                          : (out.data.assign(t.int64_data().begin(),
                                             t.int64_data().end()),
                             true);
    break;
  case onnx::TensorProto::INT32:
    ok = t.has_raw_data() ? raw(int32_t())
                          : (out.data.assign(t.int32_data().begin(),
                                             t.int32_data().end()),
                             true);
    break;
  case onnx::TensorProto::FLOAT16:
  case onnx::TensorProto::BFLOAT16: {
    // Half-precision exports: the bits, raw or one per int32_data entry.
    double (*decode)(uint16_t) = t.data_type() == onnx::TensorProto::FLOAT16
                                     ? ::moe::npy::halfToDouble
                                     : ::moe::npy::bf16ToDouble;
    ok = t.has_raw_data()
             ? raw(uint16_t())
             : (out.data.assign(t.int32_data().begin(), t.int32_data().end()),
                true);
    for (double &v : out.data)
      v = decode(uint16_t(v));
    break;
  }
  case onnx::TensorProto::BOOL:
    ok = t.has_raw_data() ? raw(uint8_t())
                          : (out.data.assign(t.int32_data().begin(),
                                             t.int32_data().end()),
                             true);
    break;
  default:
    return std::nullopt;
  }
  if (!ok || int64_t(out.data.size()) != n)
    return std::nullopt;
  return out;
}

/// numpy broadcasting of two shapes; nullopt when they do not broadcast.
std::optional<std::vector<int64_t>> broadcastShapes(const std::vector<int64_t> &a,
                                                    const std::vector<int64_t> &b) {
  size_t rank = std::max(a.size(), b.size());
  std::vector<int64_t> out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t x = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t y = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (x != y && x != 1 && y != 1)
      return std::nullopt;
    out[i] = x == 1 ? y : x;
  }
  return out;
}

/// The flat offset in a tensor of `shape` (broadcast to `outRank`) of the
/// output multi-index `index`.
int64_t broadcastOffset(const std::vector<int64_t> &shape,
                        const std::vector<int64_t> &strides,
                        const std::vector<int64_t> &index) {
  int64_t offset = 0;
  size_t lead = index.size() - shape.size();
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] != 1)
      offset += index[lead + d] * strides[d];
  return offset;
}

const onnx::AttributeProto *attr(const NodeProto &node, StringRef name) {
  return findAttribute(node, name);
}
int64_t intAttr(const NodeProto &node, StringRef name, int64_t def) {
  const onnx::AttributeProto *a = attr(node, name);
  return a ? a->i() : def;
}

} // namespace

void GraphEvaluator::bind(const std::string &name, EvalTensor value) {
  values[name] = std::move(value);
}

bool GraphEvaluator::fail(const std::string &message) {
  if (why.empty())
    why = message;
  return false;
}

std::optional<EvalTensor> GraphEvaluator::evaluate(const std::string &name) {
  if (auto it = values.find(name); it != values.end())
    return it->second;
  if (!why.empty())
    return std::nullopt;
  // Producers first, without recursion: a router is a few dozen nodes, but
  // the walk may start deep in a model.
  std::vector<std::string> stack{name};
  while (!stack.empty()) {
    std::string value = stack.back();
    if (values.count(value)) {
      stack.pop_back();
      continue;
    }
    const NodeProto *node = graph.producer(value);
    if (!node) {
      if (const onnx::TensorProto *t = graph.constant(value)) {
        std::optional<EvalTensor> c = fromProto(*t);
        if (!c)
          return fail("constant '" + value + "' cannot be read"), std::nullopt;
        values[value] = std::move(*c);
        stack.pop_back();
        continue;
      }
      return fail("'" + value + "' is a graph input"), std::nullopt;
    }
    if (node->op_type() == "Constant") {
      if (const onnx::TensorProto *t = graph.constant(value))
        if (std::optional<EvalTensor> c = fromProto(*t)) {
          values[value] = std::move(*c);
          stack.pop_back();
          continue;
        }
      return fail("constant '" + value + "' cannot be read"), std::nullopt;
    }
    bool ready = true;
    for (const std::string &in : node->input())
      if (!in.empty() && !values.count(in)) {
        if (stack.size() > 4096)
          return fail("the subgraph is too deep"), std::nullopt;
        stack.push_back(in);
        ready = false;
      }
    if (!ready)
      continue;
    stack.pop_back();
    if (!run(*node))
      return std::nullopt;
    nodes.push_back(node);
    if (!values.count(value))
      return fail("node '" + node->name() + "' did not produce '" + value + "'"),
             std::nullopt;
  }
  return values[name];
}

bool GraphEvaluator::run(const NodeProto &node) {
  produced.clear();
  if (!compute(node))
    return false;
  for (auto &[name, value] : produced)
    values[name] = std::move(value);
  produced.clear();
  return true;
}

bool GraphEvaluator::compute(const NodeProto &node) {
  const std::string &op = node.op_type();
  if (!node.domain().empty() && node.domain() != "ai.onnx")
    return fail("op " + node.domain() + "." + op + " is not evaluated");
  std::vector<const EvalTensor *> in;
  for (const std::string &name : node.input())
    in.push_back(name.empty() ? nullptr : &values[name]);
  auto input = [&](size_t i) -> const EvalTensor * {
    return i < in.size() ? in[i] : nullptr;
  };
  for (const EvalTensor *t : in)
    if (t) {
      // Reading a shape costs nothing per element.
      if (!t->shapeOnly)
        work += std::max<int64_t>(t->numel(), 0);
      // Shapes pass through views and casts; nothing may read the values.
      if (t->shapeOnly && op != "Shape" && op != "Size" &&
          !((op == "Reshape" || op == "Flatten" || op == "Squeeze" ||
             op == "Unsqueeze" || op == "Cast" || op == "Identity") &&
            t == in[0]))
        return fail("node '" + node.name() + "' (" + op +
                    ") reads the values of the tokens");
    }
  if (work > kWorkLimit)
    return fail("the subgraph is too large to evaluate");
  // Every value has non-negative sizes, at most kMaxElements elements and
  // that many values (none when only its shape is known).
  auto set = [&](int i, EvalTensor t) {
    std::optional<int64_t> n = allocatable(t.shape);
    if (!n)
      return fail("node '" + node.name() + "' produces a bad shape or too "
                  "many elements");
    if (!t.shapeOnly && int64_t(t.data.size()) != *n)
      return fail("node '" + node.name() + "' produces " +
                  std::to_string(t.data.size()) + " values for " +
                  std::to_string(*n) + " elements");
    if (i < node.output_size() && !node.output(i).empty())
      produced.emplace_back(node.output(i), std::move(t));
    return true;
  };
  auto unsupported = [&](const std::string &what) {
    return fail("node '" + node.name() + "' (" + op + "): " + what);
  };
  auto ints = [&](size_t i) -> std::optional<std::vector<int64_t>> {
    const EvalTensor *t = input(i);
    if (!t)
      return std::nullopt;
    std::vector<int64_t> out;
    for (double v : t->data) {
      std::optional<int64_t> i = toInt(v);
      if (!i)
        return std::nullopt;
      out.push_back(*i);
    }
    return out;
  };
  auto intsOrAttr = [&](size_t i, StringRef name)
      -> std::optional<std::vector<int64_t>> {
    if (const onnx::AttributeProto *a = attr(node, name))
      return std::vector<int64_t>(a->ints().begin(), a->ints().end());
    return ints(i);
  };
  if (in.empty() || !in[0])
    return unsupported("no first input");
  const EvalTensor &x = *in[0];
  int64_t rank = int64_t(x.shape.size());

  // Data movement.
  if (op == "Identity" || op == "Dropout")
    return set(0, x);
  if (op == "Cast") {
    EvalTensor out = x;
    // (A shape-only tensor has no data to convert.)
    out.kind = kindOf(int32_t(intAttr(node, "to", onnx::TensorProto::FLOAT)));
    if (out.kind == Kind::Int)
      for (double &v : out.data)
        v = std::trunc(v);
    if (out.kind == Kind::Bool)
      for (double &v : out.data)
        v = v != 0;
    return set(0, out);
  }
  if (op == "Shape" || op == "Size") {
    EvalTensor out;
    out.kind = Kind::Int;
    if (op == "Size") {
      out.data = {double(x.numel())};
      return set(0, out);
    }
    int64_t start = intAttr(node, "start", 0), end = intAttr(node, "end", rank);
    if (start < 0)
      start += rank;
    if (end < 0)
      end += rank;
    start = std::clamp<int64_t>(start, 0, rank);
    end = std::clamp<int64_t>(end, start, rank);
    for (int64_t d = start; d < end; ++d)
      out.data.push_back(double(x.shape[d]));
    out.shape = {end - start};
    return set(0, out);
  }
  if (op == "Reshape" || op == "Flatten" || op == "Unsqueeze" ||
      op == "Squeeze") {
    std::vector<int64_t> shape;
    if (op == "Reshape") {
      std::optional<std::vector<int64_t>> target = ints(1);
      if (!target)
        return unsupported("no shape");
      int64_t known = 1, infer = -1;
      for (size_t i = 0; i < target->size(); ++i) {
        int64_t s = (*target)[i];
        if (s == 0 && !intAttr(node, "allowzero", 0))
          s = i < x.shape.size() ? x.shape[i] : -2;
        if (s == -1) {
          if (infer >= 0)
            return unsupported("two -1 sizes");
          infer = i;
        } else if (s < 0 || (s != 0 && known > kMaxElements / s)) {
          return unsupported("bad size");
        } else {
          known *= s;
        }
        shape.push_back(s);
      }
      if (infer >= 0) {
        if (known == 0 || x.numel() % known)
          return unsupported("sizes do not divide");
        shape[infer] = x.numel() / known;
      }
    } else if (op == "Flatten") {
      std::optional<int64_t> axis = normalizeAxis(intAttr(node, "axis", 1), rank + 1);
      if (!axis)
        return unsupported("bad axis");
      int64_t a = 1, b = 1;
      for (int64_t d = 0; d < rank; ++d)
        (d < *axis ? a : b) *= x.shape[d];
      shape = {a, b};
    } else if (op == "Unsqueeze") {
      std::optional<std::vector<int64_t>> axes = intsOrAttr(1, "axes");
      if (!axes)
        return unsupported("no axes");
      int64_t outRank = rank + int64_t(axes->size());
      std::vector<bool> inserted(outRank, false);
      for (int64_t a : *axes) {
        std::optional<int64_t> n = normalizeAxis(a, outRank);
        if (!n || inserted[*n])
          return unsupported("bad axes");
        inserted[*n] = true;
      }
      for (int64_t d = 0, src = 0; d < outRank; ++d)
        shape.push_back(inserted[d] ? 1 : x.shape[src++]);
    } else {
      std::optional<std::vector<int64_t>> axes = intsOrAttr(1, "axes");
      std::vector<bool> dropped(rank, false);
      if (!axes || axes->empty()) {
        for (int64_t d = 0; d < rank; ++d)
          dropped[d] = x.shape[d] == 1;
      } else {
        for (int64_t a : *axes) {
          std::optional<int64_t> n = normalizeAxis(a, rank);
          if (!n || x.shape[*n] != 1)
            return unsupported("bad axes");
          dropped[*n] = true;
        }
      }
      for (int64_t d = 0; d < rank; ++d)
        if (!dropped[d])
          shape.push_back(x.shape[d]);
    }
    EvalTensor out = x;
    out.shape = shape;
    if (out.numel() != x.numel())
      return unsupported("element count changes");
    return set(0, out);
  }
  if (op == "Transpose") {
    std::vector<int64_t> perm(rank);
    std::iota(perm.rbegin(), perm.rend(), 0);
    if (const onnx::AttributeProto *a = attr(node, "perm"))
      perm.assign(a->ints().begin(), a->ints().end());
    if (int64_t(perm.size()) != rank)
      return unsupported("bad perm");
    EvalTensor out = x;
    std::vector<bool> seen(rank, false);
    for (int64_t d = 0; d < rank; ++d) {
      if (perm[d] < 0 || perm[d] >= rank || seen[perm[d]])
        return unsupported("bad perm");
      seen[perm[d]] = true;
      out.shape[d] = x.shape[perm[d]];
    }
    std::vector<int64_t> strides = stridesOf(x.shape);
    forEachIndex(out.shape, [&](int64_t flat, const std::vector<int64_t> &i) {
      int64_t src = 0;
      for (int64_t d = 0; d < rank; ++d)
        src += i[d] * strides[perm[d]];
      out.data[flat] = x.data[src];
    });
    return set(0, out);
  }
  if (op == "Expand" || op == "Tile") {
    std::optional<std::vector<int64_t>> arg = ints(1);
    if (!arg)
      return unsupported("no shape");
    std::vector<int64_t> shape;
    if (op == "Expand") {
      std::optional<std::vector<int64_t>> b = broadcastShapes(x.shape, *arg);
      if (!b)
        return unsupported("shapes do not broadcast");
      shape = *b;
    } else {
      if (int64_t(arg->size()) != rank)
        return unsupported("bad repeats");
      for (int64_t d = 0; d < rank; ++d) {
        int64_t r = (*arg)[d];
        if (r < 0 || (r != 0 && x.shape[d] > kMaxElements / r))
          return unsupported("bad repeats");
        shape.push_back(x.shape[d] * r);
      }
    }
    std::optional<int64_t> n = allocatable(shape);
    if (!n)
      return unsupported("bad shape or too many elements");
    EvalTensor out = x;
    out.shape = shape;
    out.data.assign(*n, 0);
    std::vector<int64_t> strides = stridesOf(x.shape);
    forEachIndex(shape, [&](int64_t flat, const std::vector<int64_t> &i) {
      if (op == "Expand") {
        out.data[flat] = x.data[broadcastOffset(x.shape, strides, i)];
        return;
      }
      int64_t src = 0;
      for (int64_t d = 0; d < rank; ++d)
        src += (i[d] % x.shape[d]) * strides[d];
      out.data[flat] = x.data[src];
    });
    return set(0, out);
  }
  if (op == "Concat") {
    std::optional<int64_t> axis = normalizeAxis(intAttr(node, "axis", 0), rank);
    if (!axis)
      return unsupported("bad axis");
    EvalTensor out = x;
    out.shape[*axis] = 0;
    for (const EvalTensor *t : in) {
      if (!t || t->shape.size() != x.shape.size())
        return unsupported("ranks differ");
      for (int64_t d = 0; d < rank; ++d)
        if (d != *axis && t->shape[d] != x.shape[d])
          return unsupported("sizes differ");
      out.shape[*axis] += t->shape[*axis];
    }
    out.data.clear();
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < *axis; ++d)
      outer *= x.shape[d];
    for (int64_t d = *axis + 1; d < rank; ++d)
      inner *= x.shape[d];
    for (int64_t o = 0; o < outer; ++o)
      for (const EvalTensor *t : in) {
        int64_t run = t->shape[*axis] * inner;
        out.data.insert(out.data.end(), t->data.begin() + o * run,
                        t->data.begin() + (o + 1) * run);
      }
    return set(0, out);
  }
  if (op == "Split") {
    std::optional<int64_t> axis = normalizeAxis(intAttr(node, "axis", 0), rank);
    if (!axis)
      return unsupported("bad axis");
    std::vector<int64_t> sizes;
    int64_t total = x.shape[*axis];
    if (std::optional<std::vector<int64_t>> s = intsOrAttr(1, "split"))
      sizes = *s;
    else {
      int64_t n = node.output_size();
      if (n < 1)
        return unsupported("no outputs");
      for (int64_t i = 0; i < n; ++i)
        sizes.push_back(total / n + (i < total % n ? 1 : 0));
    }
    // The sizes cover the axis exactly.
    int64_t covered = 0;
    for (int64_t size : sizes) {
      if (size < 0 || size > total - covered)
        return unsupported("bad split");
      covered += size;
    }
    if (covered != total)
      return unsupported("bad split");
    int64_t outer = 1, inner = 1, offset = 0;
    for (int64_t d = 0; d < *axis; ++d)
      outer *= x.shape[d];
    for (int64_t d = *axis + 1; d < rank; ++d)
      inner *= x.shape[d];
    for (size_t i = 0; i < sizes.size(); ++i) {
      EvalTensor out = x;
      out.shape[*axis] = sizes[i];
      out.data.clear();
      for (int64_t o = 0; o < outer; ++o) {
        int64_t base = (o * x.shape[*axis] + offset) * inner;
        out.data.insert(out.data.end(), x.data.begin() + base,
                        x.data.begin() + base + sizes[i] * inner);
      }
      offset += sizes[i];
      if (!set(int(i), std::move(out)))
        return false;
    }
    return true;
  }
  if (op == "Slice") {
    std::optional<std::vector<int64_t>> starts = intsOrAttr(1, "starts"),
                                        ends = intsOrAttr(2, "ends");
    if (!starts || !ends || starts->size() != ends->size())
      return unsupported("bad starts/ends");
    std::vector<int64_t> axes(starts->size()), steps(starts->size(), 1);
    std::iota(axes.begin(), axes.end(), 0);
    if (std::optional<std::vector<int64_t>> a = intsOrAttr(3, "axes"))
      axes = *a;
    if (std::optional<std::vector<int64_t>> s = ints(4))
      steps = *s;
    std::vector<int64_t> begin(rank, 0), step(rank, 1), shape = x.shape;
    for (size_t i = 0; i < axes.size() && i < starts->size(); ++i) {
      std::optional<int64_t> d = normalizeAxis(axes[i], rank);
      if (!d || i >= steps.size() || steps[i] == 0)
        return unsupported("bad axes or steps");
      int64_t n = x.shape[*d], s = (*starts)[i], e = (*ends)[i], st = steps[i];
      if (s < 0)
        s += n;
      if (e < 0)
        e += n;
      // Any step longer than the axis takes at most one element: clamping
      // it keeps the arithmetic below from overflowing.
      st = std::clamp<int64_t>(st, -n - 1, n + 1);
      if (st > 0) {
        s = std::clamp<int64_t>(s, 0, n);
        e = std::clamp<int64_t>(e, 0, n);
        shape[*d] = e > s ? (e - s - 1) / st + 1 : 0;
      } else if (n == 0) {
        s = 0;
        shape[*d] = 0;
      } else {
        s = std::clamp<int64_t>(s, 0, n - 1);
        e = std::clamp<int64_t>(e, -1, n - 1);
        shape[*d] = s > e ? (s - e - 1) / -st + 1 : 0;
      }
      begin[*d] = s;
      step[*d] = st;
    }
    EvalTensor out = x;
    out.shape = shape;
    out.data.assign(*allocatable(shape), 0);
    std::vector<int64_t> strides = stridesOf(x.shape);
    forEachIndex(shape, [&](int64_t flat, const std::vector<int64_t> &i) {
      int64_t src = 0;
      for (int64_t d = 0; d < rank; ++d)
        src += (begin[d] + i[d] * step[d]) * strides[d];
      out.data[flat] = x.data[src];
    });
    return set(0, out);
  }
  if (op == "Gather" || op == "GatherElements") {
    const EvalTensor *idx = input(1);
    std::optional<int64_t> axis = normalizeAxis(intAttr(node, "axis", 0), rank);
    if (!idx || !axis || rank == 0)
      return unsupported("bad inputs");
    int64_t n = x.shape[*axis];
    auto index = [&](double v) -> std::optional<int64_t> {
      if (!(v >= double(-n) && v < double(n)))
        return std::nullopt;
      int64_t i = int64_t(v);
      return i < 0 ? i + n : i;
    };
    std::vector<int64_t> strides = stridesOf(x.shape);
    EvalTensor out = x;
    bool bad = false;
    if (op == "GatherElements") {
      if (idx->shape.size() != x.shape.size())
        return unsupported("ranks differ");
      for (int64_t d = 0; d < rank; ++d)
        if (d != *axis && idx->shape[d] > x.shape[d])
          return unsupported("indices larger than the data");
      out.shape = idx->shape;
      out.data.assign(idx->numel(), 0);
      forEachIndex(idx->shape, [&](int64_t flat, const std::vector<int64_t> &i) {
        std::optional<int64_t> j = index(idx->data[flat]);
        if (!j) {
          bad = true;
          return;
        }
        int64_t src = 0;
        for (int64_t d = 0; d < rank; ++d)
          src += (d == *axis ? *j : i[d]) * strides[d];
        out.data[flat] = x.data[src];
      });
    } else {
      out.shape.assign(x.shape.begin(), x.shape.begin() + *axis);
      out.shape.insert(out.shape.end(), idx->shape.begin(), idx->shape.end());
      out.shape.insert(out.shape.end(), x.shape.begin() + *axis + 1, x.shape.end());
      std::optional<int64_t> count = allocatable(out.shape);
      if (!count)
        return unsupported("too many elements");
      out.data.assign(*count, 0);
      int64_t q = int64_t(idx->shape.size());
      std::vector<int64_t> idxStrides = stridesOf(idx->shape);
      forEachIndex(out.shape, [&](int64_t flat, const std::vector<int64_t> &i) {
        int64_t at = 0;
        for (int64_t d = 0; d < q; ++d)
          at += i[*axis + d] * idxStrides[d];
        std::optional<int64_t> j = index(idx->data[at]);
        if (!j) {
          bad = true;
          return;
        }
        int64_t src = *j * strides[*axis];
        for (int64_t d = 0; d < *axis; ++d)
          src += i[d] * strides[d];
        for (int64_t d = *axis + 1; d < rank; ++d)
          src += i[d - 1 + q] * strides[d];
        out.data[flat] = x.data[src];
      });
    }
    if (bad)
      return unsupported("index out of range");
    return set(0, out);
  }
  if (op == "ScatterElements") {
    const EvalTensor *idx = input(1), *upd = input(2);
    std::optional<int64_t> axis = normalizeAxis(intAttr(node, "axis", 0), rank);
    const onnx::AttributeProto *red = attr(node, "reduction");
    std::string reduction = red ? red->s() : "none";
    if (!idx || !upd || !axis || idx->shape != upd->shape ||
        idx->shape.size() != x.shape.size() ||
        (reduction != "none" && reduction != "add" && reduction != "mul" &&
         reduction != "max" && reduction != "min"))
      return unsupported("bad inputs");
    for (int64_t d = 0; d < rank; ++d)
      if (d != *axis && idx->shape[d] > x.shape[d])
        return unsupported("indices larger than the data");
    EvalTensor out = x;
    std::vector<int64_t> strides = stridesOf(x.shape);
    bool bad = false;
    forEachIndex(idx->shape, [&](int64_t flat, const std::vector<int64_t> &i) {
      double v = idx->data[flat];
      int64_t n = x.shape[*axis];
      if (!(v >= double(-n) && v < double(n))) {
        bad = true;
        return;
      }
      int64_t j = int64_t(v);
      if (j < 0)
        j += n;
      int64_t dst = 0;
      for (int64_t d = 0; d < rank; ++d)
        dst += (d == *axis ? j : i[d]) * strides[d];
      double u = upd->data[flat], &o = out.data[dst];
      o = reduction == "add"   ? o + u
          : reduction == "mul" ? o * u
          : reduction == "max" ? std::max(o, u)
          : reduction == "min" ? std::min(o, u)
                               : u;
    });
    if (bad)
      return unsupported("index out of range");
    return set(0, out);
  }
  if (op == "ConstantOfShape") {
    EvalTensor out;
    out.kind = Kind::Float;
    double fill = 0;
    if (const onnx::AttributeProto *v = attr(node, "value")) {
      std::optional<EvalTensor> t = fromProto(v->t());
      if (!t || t->data.size() != 1)
        return unsupported("bad value");
      out.kind = t->kind;
      fill = t->data[0];
    }
    std::optional<std::vector<int64_t>> shape = ints(0);
    std::optional<int64_t> count = shape ? allocatable(*shape) : std::nullopt;
    if (!count)
      return unsupported("bad shape");
    out.shape = *shape;
    out.data.assign(*count, fill);
    return set(0, out);
  }
  if (op == "Range") {
    const EvalTensor *limit = input(1), *delta = input(2);
    if (!limit || !delta || x.data.size() != 1 || limit->data.size() != 1 ||
        delta->data.size() != 1 || delta->data[0] == 0)
      return unsupported("bad operands");
    double s = x.data[0], l = limit->data[0], d = delta->data[0];
    double length = std::ceil((l - s) / d);
    if (!(length <= double(kMaxElements)))
      return unsupported("too long");
    int64_t count = length > 0 ? int64_t(length) : 0;
    EvalTensor out;
    out.kind = x.kind;
    out.shape = {count};
    for (int64_t i = 0; i < count; ++i)
      out.data.push_back(s + double(i) * d);
    return set(0, out);
  }
  if (op == "NonZero") {
    // [rank, count]: the indices of the non-zero elements in row-major
    // order (the tokens a mask selects).
    std::vector<std::vector<int64_t>> found;
    forEachIndex(x.shape, [&](int64_t flat, const std::vector<int64_t> &i) {
      if (x.data[flat] != 0)
        found.push_back(i);
    });
    EvalTensor out;
    out.kind = Kind::Int;
    out.shape = {rank, int64_t(found.size())};
    out.data.assign(out.numel(), 0);
    for (int64_t d = 0; d < rank; ++d)
      for (size_t j = 0; j < found.size(); ++j)
        out.data[d * found.size() + j] = double(found[j][d]);
    return set(0, out);
  }
  if (op == "OneHot") {
    const EvalTensor *depth = input(1), *onOff = input(2);
    if (!depth || !onOff || depth->data.size() != 1 || onOff->data.size() != 2)
      return unsupported("bad operands");
    std::optional<int64_t> depthValue = toInt(depth->data[0]);
    std::optional<int64_t> axis = normalizeAxis(intAttr(node, "axis", -1), rank + 1);
    if (!depthValue || *depthValue <= 0 || *depthValue > kMaxElements || !axis)
      return unsupported("bad depth or axis");
    int64_t n = *depthValue;
    EvalTensor out;
    out.kind = onOff->kind;
    out.shape = x.shape;
    out.shape.insert(out.shape.begin() + *axis, n);
    std::optional<int64_t> count = allocatable(out.shape);
    if (!count)
      return unsupported("too many elements");
    out.data.assign(*count, onOff->data[0]);
    std::vector<int64_t> strides = stridesOf(out.shape);
    forEachIndex(x.shape, [&](int64_t flat, const std::vector<int64_t> &i) {
      double v = x.data[flat];
      if (!(v >= double(-n) && v < double(n)))
        return;
      int64_t c = int64_t(v);
      if (c < 0)
        c += n;
      int64_t dst = c * strides[*axis];
      for (int64_t d = 0; d < rank; ++d)
        dst += i[d] * strides[d < *axis ? d : d + 1];
      out.data[dst] = onOff->data[1];
    });
    return set(0, out);
  }

  // Elementwise.
  auto unary = [&](auto fn, Kind kind) {
    EvalTensor out = x;
    out.kind = kind;
    for (double &v : out.data)
      v = fn(v);
    return set(0, out);
  };
  if (op == "Neg")
    return unary([](double v) { return -v; }, x.kind);
  if (op == "Abs")
    return unary([](double v) { return std::abs(v); }, x.kind);
  if (op == "Sqrt")
    return unary([](double v) { return std::sqrt(v); }, Kind::Float);
  if (op == "Exp")
    return unary([](double v) { return std::exp(v); }, Kind::Float);
  if (op == "Log")
    return unary([](double v) { return std::log(v); }, Kind::Float);
  if (op == "Reciprocal")
    return unary([](double v) { return 1.0 / v; }, Kind::Float);
  if (op == "Sigmoid")
    return unary([](double v) { return 1.0 / (1.0 + std::exp(-v)); }, Kind::Float);
  if (op == "Tanh")
    return unary([](double v) { return std::tanh(v); }, Kind::Float);
  if (op == "Relu")
    return unary([](double v) { return std::max(v, 0.0); }, x.kind);
  if (op == "Floor")
    return unary([](double v) { return std::floor(v); }, x.kind);
  if (op == "Ceil")
    return unary([](double v) { return std::ceil(v); }, x.kind);
  if (op == "Not")
    return unary([](double v) { return double(v == 0); }, Kind::Bool);
  if (op == "Softplus")
    return unary([](double v) { return std::log1p(std::exp(v)); }, Kind::Float);
  if (op == "Clip") {
    const EvalTensor *lo = input(1), *hi = input(2);
    double l = lo && !lo->data.empty() ? lo->data[0] : -INFINITY;
    double h = hi && !hi->data.empty() ? hi->data[0] : INFINITY;
    if (const onnx::AttributeProto *a = attr(node, "min"))
      l = a->f();
    if (const onnx::AttributeProto *a = attr(node, "max"))
      h = a->f();
    return unary([&](double v) { return std::min(std::max(v, l), h); }, x.kind);
  }
  static const std::map<std::string, double (*)(double, double, bool)> binaries =
      {{"Add", [](double a, double b, bool) { return a + b; }},
       {"Sum", [](double a, double b, bool) { return a + b; }},
       {"Sub", [](double a, double b, bool) { return a - b; }},
       {"Mul", [](double a, double b, bool) { return a * b; }},
       {"Div",
        [](double a, double b, bool isInt) {
          return isInt ? (b == 0 ? 0.0 : std::trunc(a / b)) : a / b;
        }},
       {"Pow", [](double a, double b, bool) { return std::pow(a, b); }},
       {"Max", [](double a, double b, bool) { return std::max(a, b); }},
       {"Min", [](double a, double b, bool) { return std::min(a, b); }},
       {"Equal", [](double a, double b, bool) { return double(a == b); }},
       {"Greater", [](double a, double b, bool) { return double(a > b); }},
       {"Less", [](double a, double b, bool) { return double(a < b); }},
       {"GreaterOrEqual", [](double a, double b, bool) { return double(a >= b); }},
       {"LessOrEqual", [](double a, double b, bool) { return double(a <= b); }},
       {"And", [](double a, double b, bool) { return double(a != 0 && b != 0); }},
       {"Or", [](double a, double b, bool) { return double(a != 0 || b != 0); }},
       {"Xor", [](double a, double b, bool) { return double((a != 0) != (b != 0)); }}};
  if (auto it = binaries.find(op); it != binaries.end()) {
    bool compare = op == "Equal" || op == "Greater" || op == "Less" ||
                   op == "GreaterOrEqual" || op == "LessOrEqual" ||
                   op == "And" || op == "Or" || op == "Xor";
    EvalTensor acc = x;
    for (size_t k = 1; k < in.size(); ++k) {
      const EvalTensor *y = in[k];
      if (!y)
        return unsupported("missing operand");
      std::optional<std::vector<int64_t>> shape = broadcastShapes(acc.shape, y->shape);
      if (!shape)
        return unsupported("shapes do not broadcast");
      EvalTensor out;
      out.shape = *shape;
      out.kind = compare ? Kind::Bool : acc.kind;
      std::optional<int64_t> count = allocatable(*shape);
      if (!count)
        return unsupported("too many elements");
      out.data.assign(*count, 0);
      std::vector<int64_t> sa = stridesOf(acc.shape), sb = stridesOf(y->shape);
      bool isInt = acc.kind != Kind::Float;
      forEachIndex(*shape, [&](int64_t flat, const std::vector<int64_t> &i) {
        out.data[flat] = it->second(acc.data[broadcastOffset(acc.shape, sa, i)],
                                    y->data[broadcastOffset(y->shape, sb, i)], isInt);
      });
      acc = std::move(out);
    }
    return set(0, acc);
  }
  if (op == "Where") {
    const EvalTensor *a = input(1), *b = input(2);
    if (!a || !b)
      return unsupported("missing operand");
    std::optional<std::vector<int64_t>> shape = broadcastShapes(x.shape, a->shape);
    if (shape)
      shape = broadcastShapes(*shape, b->shape);
    if (!shape)
      return unsupported("shapes do not broadcast");
    std::optional<int64_t> count = allocatable(*shape);
    if (!count)
      return unsupported("too many elements");
    EvalTensor out;
    out.shape = *shape;
    out.kind = a->kind;
    out.data.assign(*count, 0);
    std::vector<int64_t> sc = stridesOf(x.shape), sa = stridesOf(a->shape),
                         sb = stridesOf(b->shape);
    forEachIndex(*shape, [&](int64_t flat, const std::vector<int64_t> &i) {
      out.data[flat] = x.data[broadcastOffset(x.shape, sc, i)] != 0
                           ? a->data[broadcastOffset(a->shape, sa, i)]
                           : b->data[broadcastOffset(b->shape, sb, i)];
    });
    return set(0, out);
  }

  // Along one axis: softmax, reductions, arg-extremes, top-k, cumulative
  // sums. `lanes` visits each 1-D lane along `axis`.
  auto lanes = [&](int64_t axis, auto fn) {
    int64_t outer = 1, inner = 1, n = x.shape[axis];
    for (int64_t d = 0; d < axis; ++d)
      outer *= x.shape[d];
    for (int64_t d = axis + 1; d < rank; ++d)
      inner *= x.shape[d];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i)
        fn(o * n * inner + i, inner, n, o * inner + i);
  };
  if (op == "Softmax" || op == "LogSoftmax") {
    int64_t def = opset >= 13 ? -1 : 1;
    std::optional<int64_t> axis = normalizeAxis(intAttr(node, "axis", def), rank);
    if (!axis || (opset < 13 && *axis != rank - 1))
      return unsupported("only the last axis");
    EvalTensor out = x;
    out.kind = Kind::Float;
    lanes(*axis, [&](int64_t base, int64_t stride, int64_t n, int64_t) {
      double m = -INFINITY, sum = 0;
      for (int64_t j = 0; j < n; ++j)
        m = std::max(m, x.data[base + j * stride]);
      for (int64_t j = 0; j < n; ++j)
        sum += std::exp(x.data[base + j * stride] - m);
      for (int64_t j = 0; j < n; ++j) {
        double v = x.data[base + j * stride] - m;
        out.data[base + j * stride] =
            op == "Softmax" ? std::exp(v) / sum : v - std::log(sum);
      }
    });
    return set(0, out);
  }
  if (op == "CumSum") {
    std::optional<std::vector<int64_t>> axisIn = ints(1);
    if (!axisIn || axisIn->size() != 1)
      return unsupported("bad axis");
    std::optional<int64_t> axis = normalizeAxis((*axisIn)[0], rank);
    if (!axis)
      return unsupported("bad axis");
    bool exclusive = intAttr(node, "exclusive", 0), reverse = intAttr(node, "reverse", 0);
    EvalTensor out = x;
    lanes(*axis, [&](int64_t base, int64_t stride, int64_t n, int64_t) {
      double sum = 0;
      for (int64_t s = 0; s < n; ++s) {
        int64_t j = reverse ? n - 1 - s : s;
        double v = x.data[base + j * stride];
        out.data[base + j * stride] = exclusive ? sum : sum + v;
        sum += v;
      }
    });
    return set(0, out);
  }
  if (op == "ReduceMax" || op == "ReduceMin" || op == "ReduceSum" ||
      op == "ReduceMean" || op == "ReduceProd" || op == "ReduceSumSquare" ||
      op == "ReduceL1" || op == "ReduceL2" || op == "ReduceLogSum" ||
      op == "ReduceLogSumExp" || op == "ArgMax" || op == "ArgMin") {
    // The sums of mapped elements: sum x^2, sum |x|, sqrt(sum x^2),
    // log(sum x), log(sum exp x) (shifted by the max, as the import does).
    bool summed = op == "ReduceSum" || op == "ReduceMean" ||
                  op == "ReduceSumSquare" || op == "ReduceL1" ||
                  op == "ReduceL2" || op == "ReduceLogSum" ||
                  op == "ReduceLogSumExp";
    bool arg = op == "ArgMax" || op == "ArgMin";
    std::vector<int64_t> axes;
    if (arg) {
      axes = {intAttr(node, "axis", 0)};
    } else {
      std::optional<std::vector<int64_t>> a = intsOrAttr(1, "axes");
      if (a && !a->empty())
        axes = *a;
      else if (!intAttr(node, "noop_with_empty_axes", 0))
        for (int64_t d = 0; d < rank; ++d)
          axes.push_back(d);
      else if (!summed || op == "ReduceSum" || op == "ReduceMean")
        return set(0, x);
    }
    std::vector<bool> reduced(rank, false);
    for (int64_t a : axes) {
      std::optional<int64_t> n = normalizeAxis(a, rank);
      if (!n)
        return unsupported("bad axes");
      reduced[*n] = true;
    }
    if (arg && axes.size() != 1)
      return unsupported("one axis");
    bool keep = intAttr(node, "keepdims", 1);
    std::vector<int64_t> keptShape;
    for (int64_t d = 0; d < rank; ++d)
      keptShape.push_back(reduced[d] ? 1 : x.shape[d]);
    EvalTensor out;
    out.kind = arg ? Kind::Int : x.kind;
    out.shape = keptShape;
    int64_t n = out.numel();
    double init = op == "ReduceMax" || op == "ArgMax"   ? -INFINITY
                  : op == "ReduceMin" || op == "ArgMin" ? INFINITY
                  : op == "ReduceProd"                  ? 1.0
                                                        : 0.0;
    std::vector<double> acc(n, init), argAt(n, 0), count(n, 0);
    std::vector<int64_t> outStrides = stridesOf(keptShape);
    bool last = intAttr(node, "select_last_index", 0);
    int64_t axis = arg ? *normalizeAxis(axes[0], rank) : 0;
    auto outIndex = [&](const std::vector<int64_t> &i) {
      int64_t o = 0;
      for (int64_t d = 0; d < rank; ++d)
        if (!reduced[d])
          o += i[d] * outStrides[d];
      return o;
    };
    std::vector<double> shift(n, -INFINITY);
    if (op == "ReduceLogSumExp") {
      forEachIndex(x.shape, [&](int64_t flat, const std::vector<int64_t> &i) {
        shift[outIndex(i)] = std::max(shift[outIndex(i)], x.data[flat]);
      });
      for (double &m : shift)
        m = std::isinf(m) ? 0.0 : m;
    }
    forEachIndex(x.shape, [&](int64_t flat, const std::vector<int64_t> &i) {
      int64_t o = outIndex(i);
      double v = x.data[flat];
      count[o] += 1;
      if (op == "ReduceSumSquare" || op == "ReduceL2")
        acc[o] += v * v;
      else if (op == "ReduceL1")
        acc[o] += std::fabs(v);
      else if (op == "ReduceLogSumExp")
        acc[o] += std::exp(v - shift[o]);
      else if (summed)
        acc[o] += v;
      else if (op == "ReduceProd")
        acc[o] *= v;
      else {
        // The first extreme wins, or the last with select_last_index.
        bool max = op == "ReduceMax" || op == "ArgMax";
        bool better = max ? (v > acc[o] || (last && v == acc[o]))
                          : (v < acc[o] || (last && v == acc[o]));
        if (count[o] == 1 || better) {
          acc[o] = v;
          argAt[o] = double(i[axis]);
        }
      }
    });
    for (int64_t o = 0; o < n; ++o) {
      if (op == "ReduceMean")
        acc[o] /= count[o];
      else if (op == "ReduceL2")
        acc[o] = std::sqrt(acc[o]);
      else if (op == "ReduceLogSum")
        acc[o] = std::log(acc[o]);
      else if (op == "ReduceLogSumExp")
        acc[o] = std::log(acc[o]) + shift[o];
    }
    out.data = arg ? argAt : acc;
    if (!keep) {
      std::vector<int64_t> shape;
      for (int64_t d = 0; d < rank; ++d)
        if (!reduced[d])
          shape.push_back(x.shape[d]);
      out.shape = shape;
    }
    return set(0, out);
  }
  if (op == "TopK") {
    std::optional<std::vector<int64_t>> kIn = ints(1);
    std::optional<int64_t> axis = normalizeAxis(intAttr(node, "axis", -1), rank);
    if (!kIn || kIn->size() != 1 || !axis || (*kIn)[0] < 0 ||
        (*kIn)[0] > x.shape[*axis])
      return unsupported("bad k or axis");
    int64_t k = (*kIn)[0];
    bool largest = intAttr(node, "largest", 1);
    EvalTensor values = x, indices;
    values.shape[*axis] = k;
    values.data.assign(values.numel(), 0);
    indices.shape = values.shape;
    indices.kind = Kind::Int;
    indices.data.assign(values.numel(), 0);
    int64_t outInner = 1;
    for (int64_t d = *axis + 1; d < rank; ++d)
      outInner *= x.shape[d];
    lanes(*axis, [&](int64_t base, int64_t stride, int64_t n, int64_t lane) {
      std::vector<int64_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      // Ties go to the lower index (ONNX Runtime's and torch's order).
      // NaN counts as the largest value (as in torch): the order stays a
      // strict weak one.
      auto key = [&](int64_t j) {
        double v = x.data[base + j * stride];
        return std::isnan(v) ? INFINITY : v;
      };
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        double va = key(a), vb = key(b);
        return largest ? va > vb : va < vb;
      });
      int64_t outBase = (lane / outInner) * k * outInner + lane % outInner;
      for (int64_t j = 0; j < k; ++j) {
        values.data[outBase + j * outInner] = x.data[base + order[j] * stride];
        indices.data[outBase + j * outInner] = double(order[j]);
      }
    });
    return set(0, values) && set(1, indices);
  }
  return unsupported("op is not evaluated");
}
