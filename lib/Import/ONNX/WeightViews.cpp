//===- WeightViews.cpp - Fold reshapes and slices of weights --------------===//
//
// Each chain is followed as a strided view of its initializer (shape,
// element strides, offset), as numpy does, and copied once where something
// other than a layout op reads it. The parameters of the layout ops (target
// shapes, slice bounds, axes, gather indices) are evaluated by
// GraphEvaluator twice, with the graph inputs' dynamic sizes bound to
// different sample sizes: a parameter that differs depends on the inputs,
// and its op is left alone.
//
//===----------------------------------------------------------------------===//

#include "WeightViews.h"
#include "GraphEvaluator.h"

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MathExtras.h"

#include <numeric>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// A strided view of an initializer's elements.
struct View {
  const onnx::TensorProto *source = nullptr;
  SmallVector<int64_t> shape, strides;
  int64_t offset = 0;

  int64_t rank() const { return shape.size(); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  /// Row-major with no gaps (size-1 dimensions may have any stride).
  bool contiguous() const {
    int64_t expected = 1;
    for (int64_t d = rank() - 1; d >= 0; --d) {
      if (shape[d] != 1 && strides[d] != expected)
        return false;
      expected *= shape[d];
    }
    return true;
  }
  static View of(const onnx::TensorProto &t) {
    View v;
    v.source = &t;
    v.shape.assign(t.dims().begin(), t.dims().end());
    v.strides.assign(v.shape.size(), 1);
    for (int64_t d = int64_t(v.shape.size()) - 2; d >= 0; --d)
      v.strides[d] = v.strides[d + 1] * v.shape[d + 1];
    return v;
  }
  /// The same elements in a row-major `shape` (the view is contiguous).
  View reshaped(ArrayRef<int64_t> newShape) const {
    View v;
    v.source = source;
    v.offset = offset;
    v.shape.assign(newShape.begin(), newShape.end());
    v.strides.assign(newShape.size(), 1);
    for (int64_t d = int64_t(newShape.size()) - 2; d >= 0; --d)
      v.strides[d] = v.strides[d + 1] * newShape[d + 1];
    return v;
  }
};

int64_t elementSize(int32_t type) {
  switch (type) {
  case onnx::TensorProto::FLOAT:
  case onnx::TensorProto::INT32:
  case onnx::TensorProto::UINT32:
    return 4;
  case onnx::TensorProto::DOUBLE:
  case onnx::TensorProto::INT64:
  case onnx::TensorProto::UINT64:
    return 8;
  case onnx::TensorProto::FLOAT16:
  case onnx::TensorProto::BFLOAT16:
  case onnx::TensorProto::INT16:
  case onnx::TensorProto::UINT16:
    return 2;
  case onnx::TensorProto::INT8:
  case onnx::TensorProto::UINT8:
  case onnx::TensorProto::BOOL:
    return 1;
  default:
    return 0;
  }
}

int64_t intAttribute(const NodeProto &node, StringRef name, int64_t dflt) {
  const onnx::AttributeProto *a = findAttribute(node, name);
  return a && a->type() == onnx::AttributeProto::INT ? a->i() : dflt;
}

std::optional<SmallVector<int64_t>> intsAttribute(const NodeProto &node,
                                                  StringRef name) {
  const onnx::AttributeProto *a = findAttribute(node, name);
  if (!a || a->type() != onnx::AttributeProto::INTS)
    return std::nullopt;
  return SmallVector<int64_t>(a->ints().begin(), a->ints().end());
}

/// Evaluates the integer parameters of layout ops with the graph's dynamic
/// sizes bound two ways.
class Parameters {
public:
  Parameters(const GraphIndex &index, const onnx::GraphProto &graph,
             int64_t opset)
      : index(index), first(index, opset), second(index, opset) {
    llvm::StringSet<> initializers;
    for (const onnx::TensorProto &t : graph.initializer())
      initializers.insert(t.name());
    // The graph inputs are bound by their shapes, each dynamic size to a
    // sample of its own in each binding (a name shared by several
    // dimensions, one sample), so that a parameter computed from several
    // sizes is not mistaken for a constant either.
    llvm::StringMap<std::pair<int64_t, int64_t>> samples;
    int64_t fresh = 0;
    auto sample = [&](const std::string &param) {
      if (!param.empty())
        if (auto it = samples.find(param); it != samples.end())
          return it->second;
      std::pair<int64_t, int64_t> s = {3 + 2 * fresh, 4 + 3 * fresh};
      ++fresh;
      if (!param.empty())
        samples[param] = s;
      return s;
    };
    for (const onnx::ValueInfoProto &v : graph.input()) {
      if (initializers.contains(v.name()) || !v.type().has_tensor_type() ||
          !v.type().tensor_type().has_shape())
        continue;
      EvalTensor a, b;
      a.shapeOnly = b.shapeOnly = true;
      for (const auto &dim : v.type().tensor_type().shape().dim()) {
        if (dim.has_dim_value()) {
          a.shape.push_back(dim.dim_value());
          b.shape.push_back(dim.dim_value());
          continue;
        }
        auto [sa, sb] = sample(dim.dim_param());
        a.shape.push_back(sa);
        b.shape.push_back(sb);
      }
      first.bind(v.name(), a);
      second.bind(v.name(), b);
    }
    // Parameters read shapes of weights, never their values: large ones
    // are bound by shape (the evaluator would refuse to load them).
    for (const onnx::TensorProto &t : graph.initializer()) {
      std::optional<int64_t> n = elementCount(t);
      if (n && *n > 4096)
        bindShape(t.name(),
                  SmallVector<int64_t>(t.dims().begin(), t.dims().end()));
    }
  }

  void bindShape(const std::string &name, ArrayRef<int64_t> shape) {
    EvalTensor t;
    t.shapeOnly = true;
    t.shape.assign(shape.begin(), shape.end());
    first.bind(name, t);
    second.bind(name, t);
  }

  /// The integer value of `name` (and its shape), when it does not depend
  /// on the dynamic sizes.
  std::optional<std::pair<SmallVector<int64_t>, SmallVector<int64_t>>>
  ints(const std::string &name) {
    if (name.empty())
      return std::nullopt;
    // A parameter read off the activations fails to evaluate; the next
    // one must not inherit that failure.
    first.clearFailure();
    second.clearFailure();
    std::optional<EvalTensor> a = first.evaluate(name);
    if (!a || a->shapeOnly)
      return std::nullopt;
    std::optional<EvalTensor> b = second.evaluate(name);
    if (!b || b->shapeOnly || a->shape != b->shape || a->data != b->data)
      return std::nullopt;
    SmallVector<int64_t> values;
    for (double v : a->data) {
      if (v != std::trunc(v) || std::abs(v) > 9.2e18)
        return std::nullopt;
      values.push_back(int64_t(v));
    }
    return std::make_pair(
        values, SmallVector<int64_t>(a->shape.begin(), a->shape.end()));
  }
  std::optional<SmallVector<int64_t>> values(const std::string &name) {
    auto v = ints(name);
    if (!v)
      return std::nullopt;
    return v->first;
  }

  /// A Reshape's target shape. Exporters build a dynamic one as a Concat
  /// of one-element pieces, some read off the activations' shapes, which
  /// are not known here; one such piece is still determined: the view of
  /// a weight keeps its element count, so it is what -1 would infer (a
  /// graph where it is anything else fails at run time).
  std::optional<SmallVector<int64_t>> reshapeTarget(const std::string &name) {
    if (std::optional<SmallVector<int64_t>> known = values(name))
      return known;
    const NodeProto *concat = index.producer(name);
    if (!concat || concat->op_type() != "Concat" || !concat->domain().empty())
      return std::nullopt;
    SmallVector<int64_t> target;
    int unknown = 0;
    for (const std::string &piece : concat->input()) {
      auto v = ints(piece);
      if (v && v->first.size() == 1) {
        target.push_back(v->first[0]);
        continue;
      }
      if (v)
        return std::nullopt;
      target.push_back(-1);
      ++unknown;
    }
    if (unknown != 1 || llvm::count(target, -1) != 1)
      return std::nullopt;
    return target;
  }

private:
  const GraphIndex &index;
  GraphEvaluator first, second;
};

/// Slices `v` along `axis` from `start` by `step` for `count` elements.
View sliced(View v, int64_t axis, int64_t start, int64_t step, int64_t count) {
  v.offset += start * v.strides[axis];
  v.strides[axis] *= step;
  v.shape[axis] = count;
  return v;
}

/// The views `node` makes of `in` (one per output), or nothing.
std::optional<SmallVector<View>> apply(const NodeProto &node, const View &in,
                                       Parameters &params, int64_t opset) {
  StringRef op = node.op_type();
  int64_t rank = in.rank();
  auto input = [&](int i) -> std::string {
    return i < node.input_size() ? node.input(i) : std::string();
  };
  auto one = [](View v) { return SmallVector<View>{std::move(v)}; };
  if (op == "Identity")
    return one(in);
  if (op == "Reshape" || op == "Flatten") {
    if (!in.contiguous())
      return std::nullopt;
    SmallVector<int64_t> shape;
    if (op == "Flatten") {
      std::optional<int64_t> axis =
          normalizeAxis(intAttribute(node, "axis", 1), rank + 1);
      if (!axis)
        return std::nullopt;
      int64_t outer = 1;
      for (int64_t d = 0; d < *axis; ++d)
        outer *= in.shape[d];
      shape = {outer, in.numel() / std::max<int64_t>(outer, 1)};
      if (outer == 0)
        shape[1] = 0;
      return one(in.reshaped(shape));
    }
    std::optional<SmallVector<int64_t>> target = params.reshapeTarget(input(1));
    if (!target)
      return std::nullopt;
    bool allowZero = intAttribute(node, "allowzero", 0);
    int64_t known = 1, inferred = -1;
    for (auto [d, size] : llvm::enumerate(*target)) {
      if (size == 0 && !allowZero) {
        if (int64_t(d) >= rank)
          return std::nullopt;
        size = in.shape[d];
      }
      if (size == -1) {
        if (inferred >= 0)
          return std::nullopt;
        inferred = d;
        shape.push_back(1);
        continue;
      }
      if (size < 0)
        return std::nullopt;
      shape.push_back(size);
      known *= size;
    }
    if (inferred >= 0) {
      if (known == 0 || in.numel() % known)
        return std::nullopt;
      shape[inferred] = in.numel() / known;
    }
    // A damaged target may claim sizes whose product overflows.
    int64_t count = 1;
    for (int64_t d : shape)
      if (llvm::MulOverflow(count, d, count))
        return std::nullopt;
    if (count != in.numel())
      return std::nullopt;
    return one(in.reshaped(shape));
  }
  if (op == "Squeeze" || op == "Unsqueeze") {
    std::optional<SmallVector<int64_t>> axes =
        opset >= 13
            ? (input(1).empty()
                   ? std::optional<SmallVector<int64_t>>(SmallVector<int64_t>())
                   : params.values(input(1)))
            : intsAttribute(node, "axes");
    if (!axes)
      axes = SmallVector<int64_t>();
    View out = in;
    if (op == "Squeeze") {
      llvm::SmallDenseSet<int64_t> drop;
      for (int64_t a : *axes) {
        std::optional<int64_t> axis = normalizeAxis(a, rank);
        if (!axis || in.shape[*axis] != 1)
          return std::nullopt;
        drop.insert(*axis);
      }
      out.shape.clear();
      out.strides.clear();
      for (int64_t d = 0; d < rank; ++d) {
        if (axes->empty() ? in.shape[d] == 1 : drop.contains(d))
          continue;
        out.shape.push_back(in.shape[d]);
        out.strides.push_back(in.strides[d]);
      }
      return one(out);
    }
    int64_t outRank = rank + axes->size();
    SmallVector<bool> inserted(outRank, false);
    for (int64_t a : *axes) {
      std::optional<int64_t> axis = normalizeAxis(a, outRank);
      if (!axis || inserted[*axis])
        return std::nullopt;
      inserted[*axis] = true;
    }
    out.shape.clear();
    out.strides.clear();
    int64_t next = 0;
    for (int64_t d = 0; d < outRank; ++d) {
      out.shape.push_back(inserted[d] ? 1 : in.shape[next]);
      out.strides.push_back(inserted[d] ? 1 : in.strides[next]);
      next += !inserted[d];
    }
    return one(out);
  }
  if (op == "Transpose") {
    SmallVector<int64_t> perm;
    if (std::optional<SmallVector<int64_t>> p = intsAttribute(node, "perm"))
      perm = *p;
    else
      for (int64_t d = rank - 1; d >= 0; --d)
        perm.push_back(d);
    if (int64_t(perm.size()) != rank)
      return std::nullopt;
    View out = in;
    SmallVector<bool> seen(rank, false);
    for (auto [d, p] : llvm::enumerate(perm)) {
      if (p < 0 || p >= rank || seen[p])
        return std::nullopt;
      seen[p] = true;
      out.shape[d] = in.shape[p];
      out.strides[d] = in.strides[p];
    }
    return one(out);
  }
  if (op == "Slice") {
    std::optional<SmallVector<int64_t>> starts, ends, axes, steps;
    if (opset >= 10) {
      starts = params.values(input(1));
      ends = params.values(input(2));
      axes = input(3).empty() ? std::nullopt : params.values(input(3));
      steps = input(4).empty() ? std::nullopt : params.values(input(4));
      if ((!input(3).empty() && !axes) || (!input(4).empty() && !steps))
        return std::nullopt;
    } else {
      starts = intsAttribute(node, "starts");
      ends = intsAttribute(node, "ends");
      axes = intsAttribute(node, "axes");
    }
    if (!starts || !ends || starts->size() != ends->size())
      return std::nullopt;
    if (!axes)
      axes = llvm::to_vector(llvm::seq<int64_t>(0, starts->size()));
    if (!steps)
      steps = SmallVector<int64_t>(starts->size(), 1);
    if (axes->size() != starts->size() || steps->size() != starts->size())
      return std::nullopt;
    View out = in;
    for (size_t i = 0; i < starts->size(); ++i) {
      std::optional<int64_t> axis = normalizeAxis((*axes)[i], rank);
      int64_t step = (*steps)[i];
      if (!axis || step == 0)
        return std::nullopt;
      int64_t dim = in.shape[*axis];
      int64_t start = (*starts)[i], end = (*ends)[i];
      start = start < 0 ? start + dim : start;
      end = end < 0 ? end + dim : end;
      int64_t count;
      if (step > 0) {
        start = std::clamp<int64_t>(start, 0, dim);
        end = std::clamp<int64_t>(end, 0, dim);
        count = end > start ? (end - start + step - 1) / step : 0;
      } else {
        start = std::clamp<int64_t>(start, 0, dim - 1);
        end = std::clamp<int64_t>(end, -1, dim - 1);
        count = start > end ? (start - end - step - 1) / -step : 0;
      }
      out = sliced(out, *axis, start, step, count);
    }
    return one(out);
  }
  if (op == "Gather") {
    std::optional<int64_t> axis =
        normalizeAxis(intAttribute(node, "axis", 0), rank);
    auto indices = params.ints(input(1));
    if (!axis || !indices || indices->second.size() > 1 ||
        indices->first.empty())
      return std::nullopt;
    int64_t dim = in.shape[*axis];
    SmallVector<int64_t> picks;
    for (int64_t i : indices->first) {
      if (i < -dim || i >= dim)
        return std::nullopt;
      picks.push_back(i < 0 ? i + dim : i);
    }
    // An evenly spaced list is a strided slice; anything else is a copy
    // this folding does not make.
    int64_t step = picks.size() > 1 ? picks[1] - picks[0] : 1;
    for (size_t i = 1; i < picks.size(); ++i)
      if (picks[i] - picks[i - 1] != step)
        return std::nullopt;
    View out = sliced(in, *axis, picks[0], step, picks.size());
    if (indices->second.empty()) {
      out.shape.erase(out.shape.begin() + *axis);
      out.strides.erase(out.strides.begin() + *axis);
    }
    return one(out);
  }
  if (op == "Split") {
    std::optional<int64_t> axis =
        normalizeAxis(intAttribute(node, "axis", 0), rank);
    if (!axis)
      return std::nullopt;
    int64_t dim = in.shape[*axis], parts = node.output_size();
    std::optional<SmallVector<int64_t>> sizes =
        opset >= 13
            ? (input(1).empty() ? std::nullopt : params.values(input(1)))
            : intsAttribute(node, "split");
    if (!sizes) {
      if (!input(1).empty() && opset >= 13)
        return std::nullopt;
      // Equal parts, the last smaller (num_outputs, opset 18).
      int64_t each = parts ? (dim + parts - 1) / parts : 0;
      sizes = SmallVector<int64_t>();
      for (int64_t p = 0, left = dim; p < parts; ++p, left -= each)
        sizes->push_back(std::clamp<int64_t>(left, 0, each));
    }
    if (int64_t(sizes->size()) != parts ||
        std::accumulate(sizes->begin(), sizes->end(), int64_t(0)) != dim)
      return std::nullopt;
    SmallVector<View> outs;
    int64_t start = 0;
    for (int64_t size : *sizes) {
      if (size < 0)
        return std::nullopt;
      outs.push_back(sliced(in, *axis, start, 1, size));
      start += size;
    }
    return outs;
  }
  return std::nullopt;
}

/// Copies the elements of `v` out of `bytes` into a new tensor `name`.
onnx::TensorProto materialize(const View &v, ArrayRef<char> bytes,
                              const std::string &name) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(v.source->data_type());
  for (int64_t d : v.shape)
    t.add_dims(d);
  int64_t size = elementSize(v.source->data_type());
  std::string &out = *t.mutable_raw_data();
  out.resize(size_t(v.numel() * size));
  if (v.numel() == 0)
    return t;
  int64_t rank = v.rank();
  // Runs along the innermost dimension, copied whole when unit-strided.
  int64_t inner = rank ? v.shape.back() : 1;
  int64_t innerStride = rank ? v.strides.back() : 1;
  SmallVector<int64_t> index(std::max<int64_t>(rank - 1, 0), 0);
  char *dst = out.data();
  for (int64_t run = 0, runs = v.numel() / inner; run < runs; ++run) {
    int64_t at = v.offset;
    for (int64_t d = 0; d + 1 < rank; ++d)
      at += index[d] * v.strides[d];
    if (innerStride == 1) {
      std::memcpy(dst, bytes.data() + at * size, inner * size);
      dst += inner * size;
    } else {
      for (int64_t i = 0; i < inner; ++i, dst += size)
        std::memcpy(dst, bytes.data() + (at + i * innerStride) * size, size);
    }
    for (int64_t d = rank - 2; d >= 0; --d) {
      if (++index[d] < v.shape[d])
        break;
      index[d] = 0;
    }
  }
  return t;
}

bool isLayoutOp(StringRef op) {
  return op == "Identity" || op == "Reshape" || op == "Flatten" ||
         op == "Squeeze" || op == "Unsqueeze" || op == "Transpose" ||
         op == "Slice" || op == "Gather" || op == "Split";
}

} // namespace

int64_t mlir::moe::onnx_import::foldWeightViews(
    onnx::GraphProto &graph, int64_t opset,
    const ExternalDataReader &readExternal) {
  // Only layout ops over initializers are candidates; most graphs have none
  // whose parameters were left unfolded, and pay nothing more.
  // An initializer that is also a graph input is a default the caller may
  // replace: not a constant.
  llvm::StringSet<> inputs, initializers;
  for (const onnx::ValueInfoProto &v : graph.input())
    inputs.insert(v.name());
  // Their sizes must add up: a damaged tensor is left to the importer,
  // which reports it.
  for (const onnx::TensorProto &t : graph.initializer()) {
    int64_t size = elementSize(t.data_type());
    std::optional<int64_t> count = elementCount(t);
    if (!size || !count || inputs.contains(t.name()) ||
        llvm::MulOverflow(*count, size, size))
      continue;
    if ((t.has_raw_data() && int64_t(t.raw_data().size()) == size) ||
        t.data_location() == onnx::TensorProto::EXTERNAL)
      initializers.insert(t.name());
  }
  bool any = false;
  for (const NodeProto &node : graph.node())
    any |= isLayoutOp(node.op_type()) && node.input_size() > 0 &&
           initializers.contains(node.input(0));
  if (!any)
    return 0;

  GraphIndex index(graph, opset, readExternal);
  Parameters params(index, graph, opset);
  llvm::StringMap<View> views;
  llvm::DenseSet<const NodeProto *> folded;
  llvm::StringSet<> sources;
  // Shape of a view: its constant value.
  std::vector<onnx::TensorProto> shapeConstants;
  for (const NodeProto &node : graph.node()) {
    if (node.input_size() == 0 || !node.domain().empty())
      continue;
    const std::string &data = node.input(0);
    std::optional<View> in;
    if (auto it = views.find(data); it != views.end())
      in = it->second;
    else if (initializers.contains(data))
      in = View::of(*index.constant(data));
    if (!in)
      continue;
    if (node.op_type() == "Shape" && views.contains(data)) {
      int64_t rank = in->rank();
      int64_t start = intAttribute(node, "start", 0),
              end = intAttribute(node, "end", rank);
      start = std::clamp<int64_t>(start < 0 ? start + rank : start, 0, rank);
      end = std::clamp<int64_t>(end < 0 ? end + rank : end, 0, rank);
      onnx::TensorProto t;
      t.set_name(node.output(0));
      t.set_data_type(onnx::TensorProto::INT64);
      t.add_dims(std::max<int64_t>(end - start, 0));
      for (int64_t d = start; d < end; ++d)
        t.mutable_raw_data()->append(
            reinterpret_cast<const char *>(&in->shape[d]), sizeof(int64_t));
      shapeConstants.push_back(std::move(t));
      folded.insert(&node);
      continue;
    }
    if (!isLayoutOp(node.op_type()))
      continue;
    std::optional<SmallVector<View>> outs = apply(node, *in, params, opset);
    if (!outs || int64_t(outs->size()) != node.output_size())
      continue;
    for (auto [name, view] : llvm::zip(node.output(), *outs)) {
      params.bindShape(name, view.shape);
      views[name] = view;
    }
    sources.insert(in->source->name());
    folded.insert(&node);
  }
  if (folded.empty())
    return 0;

  // What still reads each folded value: a node left in the graph or an
  // output.
  llvm::StringSet<> read;
  for (const NodeProto &node : graph.node())
    if (!folded.contains(&node))
      for (const std::string &name : node.input())
        read.insert(name);
  for (const onnx::ValueInfoProto &out : graph.output())
    read.insert(out.name());

  std::vector<onnx::TensorProto> added;
  std::vector<AsmResourceBlob> blobs;
  for (const auto &[name, view] : views) {
    if (!read.contains(name))
      continue;
    ArrayRef<char> bytes;
    if (view.source->data_location() == onnx::TensorProto::EXTERNAL) {
      FailureOr<AsmResourceBlob> blob =
          readExternal ? readExternal(*view.source)
                       : FailureOr<AsmResourceBlob>(failure());
      if (failed(blob))
        return 0; // Nothing changed yet: the graph stays as it was.
      blobs.push_back(std::move(*blob));
      bytes = blobs.back().getData();
    } else {
      bytes = ArrayRef<char>(view.source->raw_data().data(),
                             view.source->raw_data().size());
    }
    std::optional<int64_t> count = elementCount(*view.source);
    if (!count ||
        int64_t(bytes.size()) != *count * elementSize(view.source->data_type()))
      return 0;
    added.push_back(materialize(view, bytes, std::string(name)));
  }

  // Rewrite: drop the folded nodes, add the values still read, drop the
  // initializers they were views of that nothing reads any more.
  google::protobuf::RepeatedPtrField<NodeProto> kept;
  for (const NodeProto &node : graph.node())
    if (!folded.contains(&node))
      *kept.Add() = node;
  int64_t count = graph.node_size() - kept.size();
  graph.mutable_node()->Swap(&kept);
  for (onnx::TensorProto &t : added)
    *graph.add_initializer() = std::move(t);
  for (onnx::TensorProto &t : shapeConstants)
    if (read.contains(t.name()))
      *graph.add_initializer() = std::move(t);
  llvm::StringSet<> used;
  for (const NodeProto &node : graph.node())
    for (const std::string &name : node.input())
      used.insert(name);
  for (const onnx::ValueInfoProto &v : graph.output())
    used.insert(v.name());
  google::protobuf::RepeatedPtrField<onnx::TensorProto> inits;
  for (onnx::TensorProto &t : *graph.mutable_initializer())
    if (used.contains(t.name()) || !sources.contains(t.name()))
      *inits.Add() = std::move(t);
  graph.mutable_initializer()->Swap(&inits);
  return count;
}
