//===- Reference.cpp - float64 reference evaluator for the moe ops --------===//
//
// Implements docs/Dialects/MoE.md step by step. The code favours a one-to-one
// mapping onto the spec's numbered steps over speed: it is an oracle, and a
// reader should be able to check it against the text line by line.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Reference/Reference.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace moe::reference {

//===----------------------------------------------------------------------===//
// BasicTensor
//===----------------------------------------------------------------------===//

namespace {

int64_t shapeNumel(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      throw std::invalid_argument("tensor shape has a negative dimension");
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw std::invalid_argument("tensor shape overflows int64");
    n *= d;
  }
  return n;
}

std::string shapeStr(const std::vector<int64_t> &shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i)
    os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

} // namespace

template <typename ElemT>
BasicTensor<ElemT>::BasicTensor(std::vector<int64_t> s, std::vector<ElemT> d)
    : shape(std::move(s)), data(std::move(d)) {
  if (static_cast<int64_t>(data.size()) != shapeNumel(shape))
    throw std::invalid_argument("tensor of shape " + shapeStr(shape) +
                                " given " + std::to_string(data.size()) +
                                " elements");
}

template <typename ElemT>
BasicTensor<ElemT> BasicTensor<ElemT>::filled(std::vector<int64_t> s,
                                              ElemT value) {
  int64_t n = shapeNumel(s);
  return BasicTensor(std::move(s),
                     std::vector<ElemT>(static_cast<size_t>(n), value));
}

template <typename ElemT> int64_t BasicTensor<ElemT>::numel() const {
  return shapeNumel(shape);
}

template <typename ElemT>
int64_t
BasicTensor<ElemT>::flatIndex(std::initializer_list<int64_t> index) const {
  if (index.size() != shape.size())
    throw std::out_of_range("tensor of rank " + std::to_string(shape.size()) +
                            " indexed with " + std::to_string(index.size()) +
                            " indices");
  int64_t flat = 0;
  size_t dim = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= shape[dim])
      throw std::out_of_range("index " + std::to_string(i) +
                              " out of range for dimension " +
                              std::to_string(dim) + " of shape " +
                              shapeStr(shape));
    flat = flat * shape[dim] + i;
    ++dim;
  }
  if (flat >= static_cast<int64_t>(data.size()))
    throw std::out_of_range("tensor data is shorter than its shape " +
                            shapeStr(shape));
  return flat;
}

template <typename ElemT>
ElemT &BasicTensor<ElemT>::at(std::initializer_list<int64_t> index) {
  return data[static_cast<size_t>(flatIndex(index))];
}

template <typename ElemT>
const ElemT &
BasicTensor<ElemT>::at(std::initializer_list<int64_t> index) const {
  return data[static_cast<size_t>(flatIndex(index))];
}

template struct BasicTensor<double>;
template struct BasicTensor<int64_t>;
template struct BasicTensor<uint8_t>;

//===----------------------------------------------------------------------===//
// Validation helpers
//===----------------------------------------------------------------------===//

namespace {

[[noreturn]] void fail(const char *fn, const std::string &msg) {
  throw std::invalid_argument(std::string("moe::reference::") + fn + ": " +
                              msg);
}

/// Checks that `t` has rank `rank` and that its data matches its shape.
template <typename ElemT>
void checkTensor(const char *fn, const char *name, const BasicTensor<ElemT> &t,
                 int64_t rank) {
  if (t.rank() != rank)
    fail(fn, std::string(name) + " must have rank " + std::to_string(rank) +
                 ", got shape " + shapeStr(t.shape));
  int64_t n;
  try {
    n = t.numel();
  } catch (const std::invalid_argument &e) {
    fail(fn, std::string(name) + ": " + e.what());
  }
  if (static_cast<int64_t>(t.data.size()) != n)
    fail(fn, std::string(name) + " has shape " + shapeStr(t.shape) + " but " +
                 std::to_string(t.data.size()) + " elements");
}

/// Checks rank, data size and every dimension (-1 in `dims` = any).
template <typename ElemT>
void checkShape(const char *fn, const char *name, const BasicTensor<ElemT> &t,
                const std::vector<int64_t> &dims) {
  checkTensor(fn, name, t, static_cast<int64_t>(dims.size()));
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i] >= 0 && t.shape[i] != dims[i]) {
      std::vector<int64_t> expected = dims;
      std::string exp = "[";
      for (size_t j = 0; j < expected.size(); ++j)
        exp += (j ? ", " : "") +
               (expected[j] < 0 ? std::string("?")
                                : std::to_string(expected[j]));
      exp += "]";
      fail(fn, std::string(name) + " must have shape " + exp + ", got " +
                   shapeStr(t.shape));
    }
}

void checkFinite(const char *fn, const char *name, const Tensor &t) {
  for (double v : t.data)
    if (!std::isfinite(v))
      fail(fn, std::string(name) + " contains a non-finite value");
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

/// Numerically stable softmax of `v` in place.
void softmaxInPlace(std::vector<double> &v) {
  if (v.empty())
    return;
  double m = *std::max_element(v.begin(), v.end());
  double sum = 0.0;
  for (double &x : v) {
    x = std::exp(x - m);
    sum += x;
  }
  for (double &x : v)
    x /= sum;
}

/// Indices 0..n-1 ordered by descending `score`, ties broken by the lower
/// index (the tie rule of route steps 3 and 4).
std::vector<int64_t> rankDescending(const std::vector<double> &score) {
  std::vector<int64_t> order(score.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)];
  });
  return order;
}

} // namespace

//===----------------------------------------------------------------------===//
// Scalar helpers
//===----------------------------------------------------------------------===//

double activate(Activation activation, double x) {
  switch (activation) {
  case Activation::Identity:
    return x;
  case Activation::Relu:
    return x > 0.0 ? x : 0.0;
  case Activation::Gelu:
    return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  case Activation::GeluTanh: {
    const double pi = 3.14159265358979323846;
    const double c = std::sqrt(2.0 / pi);
    return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
  }
  case Activation::Silu:
    return x * sigmoid(x);
  case Activation::SwiGLU:
    break;
  }
  throw std::invalid_argument("moe::reference::activate: SwiGLU is not an "
                              "elementwise activation; use swiglu()");
}

double swiglu(double g, double l, double alpha, double beta,
              std::optional<double> limit) {
  if (limit) {
    g = std::min(g, *limit);
    l = std::clamp(l, -*limit, *limit);
  }
  return g * sigmoid(alpha * g) * (l + beta);
}

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

Tensor routerLogits(const Tensor &x, const Tensor &routerWeight) {
  const char *fn = "routerLogits";
  checkTensor(fn, "x", x, 2);
  checkTensor(fn, "router_weight", routerWeight, 2);
  const int64_t T = x.shape[0], H = x.shape[1], E = routerWeight.shape[0];
  checkShape(fn, "router_weight", routerWeight, {E, H});
  Tensor logits = Tensor::zeros({T, E});
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < E; ++e) {
      double sum = 0.0;
      for (int64_t h = 0; h < H; ++h)
        sum += x.data[t * H + h] * routerWeight.data[e * H + h];
      logits.data[t * E + e] = sum;
    }
  return logits;
}

std::optional<RouteResult> tryRoute(const Tensor &logits, const Tensor *bias,
                                    const RouteOptions &options) noexcept {
  try {
    return route(logits, bias, options);
  } catch (const std::exception &) {
    return std::nullopt;
  }
}

RouteResult route(const Tensor &logits, const Tensor *bias,
                  const RouteOptions &opt) {
  const char *fn = "route";
  checkTensor(fn, "logits", logits, 2);
  const int64_t T = logits.shape[0], N = logits.shape[1];
  const int64_t k = opt.k;
  if (N < 1)
    fail(fn, "logits must have at least one expert column");
  if (k < 1 || k > N)
    fail(fn, "k = " + std::to_string(k) + " must be in [1, " +
                 std::to_string(N) + "] (the number of experts)");
  checkFinite(fn, "logits", logits);
  if (bias) {
    checkShape(fn, "bias", *bias, {N});
    checkFinite(fn, "bias", *bias);
  }
  const int64_t G = opt.numGroups;
  if (G < 1 || N % G != 0)
    fail(fn, "num_groups = " + std::to_string(G) +
                 " must be >= 1 and divide the expert count " +
                 std::to_string(N));
  const int64_t groupSize = N / G;
  if (G > 1) {
    if (opt.topGroups < 1 || opt.topGroups > G)
      fail(fn, "top_groups = " + std::to_string(opt.topGroups) +
                   " must be in [1, num_groups = " + std::to_string(G) + "]");
    if (opt.groupScoring == GroupScoring::Top2Sum && groupSize < 2)
      fail(fn, "group_scoring = top2_sum needs at least 2 experts per group");
    if (k > opt.topGroups * groupSize)
      fail(fn, "k = " + std::to_string(k) + " exceeds the " +
                   std::to_string(opt.topGroups * groupSize) +
                   " experts selectable in top_groups groups");
  }
  if (opt.topP && !(*opt.topP > 0.0))
    fail(fn, "top_p must be > 0");
  if (opt.scoring == Scoring::SparseMixer &&
      (k != 2 || G != 1 || bias || opt.topP))
    fail(fn, "sparse_mixer scoring needs k = 2 and no groups, bias or top_p");
  if (!std::isfinite(opt.scaling))
    fail(fn, "scaling must be finite");

  RouteResult result{Tensor::zeros({T, k}), IntTensor::filled({T, k}, -1)};
  std::vector<double> s(static_cast<size_t>(N)), sel(s.size());
  for (int64_t t = 0; t < T; ++t) {
    const double *row = &logits.data[static_cast<size_t>(t * N)];
    // Step 1: scores.
    s.assign(row, row + N);
    if (opt.scoring == Scoring::Softmax)
      softmaxInPlace(s);
    else if (opt.scoring == Scoring::Sigmoid)
      for (double &v : s)
        v = sigmoid(v);
    // Step 2: selection scores.
    for (int64_t e = 0; e < N; ++e)
      sel[e] = s[e] + (bias ? bias->data[static_cast<size_t>(e)] : 0.0);
    // Step 3: group limit -> which experts are selectable.
    std::vector<bool> selectable(static_cast<size_t>(N), true);
    if (G > 1) {
      std::vector<double> groupScore(static_cast<size_t>(G));
      for (int64_t g = 0; g < G; ++g) {
        std::vector<double> members(sel.begin() + g * groupSize,
                                    sel.begin() + (g + 1) * groupSize);
        std::sort(members.begin(), members.end(), std::greater<double>());
        groupScore[g] = opt.groupScoring == GroupScoring::Max
                            ? members[0]
                            : members[0] + members[1];
      }
      std::vector<int64_t> groupOrder = rankDescending(groupScore);
      std::fill(selectable.begin(), selectable.end(), false);
      for (int64_t i = 0; i < opt.topGroups; ++i)
        for (int64_t e = 0; e < groupSize; ++e)
          selectable[groupOrder[i] * groupSize + e] = true;
    }
    // Step 4: top-k among selectable experts.
    std::vector<int64_t> chosen;
    for (int64_t e : rankDescending(sel)) {
      if (static_cast<int64_t>(chosen.size()) == k)
        break;
      if (selectable[e])
        chosen.push_back(e);
    }
    // Step 5: weights.
    std::vector<double> w(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j)
      w[j] = s[chosen[j]];
    if (opt.scoring == Scoring::SoftmaxTopK)
      softmaxInPlace(w);
    if (opt.scoring == Scoring::SparseMixer) {
      // Slot j: softmax at m = logit of its expert over the experts whose
      // logit is within 2 * eps * max(|x|, m) of m; slot 1's band leaves
      // out slot 0's expert.
      const double eps = 0.01;
      for (int64_t j = 0; j < 2; ++j) {
        double m = row[chosen[j]], total = 0.0;
        for (int64_t e = 0; e < N; ++e) {
          bool far = (m - row[e]) > 2 * eps * std::max(std::abs(row[e]), m);
          if (!far && !(j == 1 && e == chosen[0]))
            total += std::exp(row[e] - m);
        }
        w[j] = 1.0 / total;
      }
    }
    // Step 6: top-p. Slot j is kept while the weights kept before it sum to
    // less than p; slot 0 is always kept.
    int64_t kept = k;
    if (opt.topP) {
      double before = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        if (j > 0 && !(before < *opt.topP)) {
          kept = j;
          break;
        }
        before += w[j];
      }
    }
    // Step 7: renormalise over kept slots.
    if (opt.normalize) {
      double sum = 0.0;
      for (int64_t j = 0; j < kept; ++j)
        sum += w[j];
      if (sum != 0.0)
        for (int64_t j = 0; j < kept; ++j)
          w[j] /= sum;
    }
    // Step 8: scale, and write out (empty slots stay id -1, w 0).
    for (int64_t j = 0; j < kept; ++j) {
      result.weights.data[t * k + j] = w[j] * opt.scaling;
      result.ids.data[t * k + j] = chosen[j];
    }
  }
  return result;
}

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

DispatchResult dispatch(const Tensor &x, const IntTensor &ids,
                        int64_t numExperts,
                        std::optional<double> capacityFactor,
                        std::optional<int64_t> expertCapacity,
                        int64_t groupSize) {
  const char *fn = "dispatch";
  checkTensor(fn, "x", x, 2);
  const int64_t T = x.shape[0], H = x.shape[1];
  checkShape(fn, "ids", ids, {T, -1});
  const int64_t k = ids.shape[1];
  const int64_t E = numExperts;
  if (E < 1)
    fail(fn, "num_experts must be >= 1");
  for (int64_t id : ids.data)
    if (id < -1)
      fail(fn, "ids contains " + std::to_string(id) +
                   "; ids must be -1 (empty slot) or >= 0");
  // Capacity in rows per expert; "unbounded" is T*k.
  int64_t capacity = T * k;
  if (capacityFactor) {
    double c = *capacityFactor;
    if (!(c > 0.0) || !std::isfinite(c))
      fail(fn, "capacity_factor must be finite and > 0");
    double cap =
        std::ceil(c * static_cast<double>(T * k) / static_cast<double>(E));
    if (cap < static_cast<double>(capacity))
      capacity = static_cast<int64_t>(cap);
  }
  if (expertCapacity) {
    if (capacityFactor)
      fail(fn, "capacity_factor and expert_capacity are exclusive");
    if (*expertCapacity < 1)
      fail(fn, "expert_capacity must be >= 1");
    capacity = std::min(capacity, *expertCapacity);
  }
  if (groupSize < 0 || (groupSize > 0 && !expertCapacity))
    fail(fn, "a group size must be >= 0 and needs expert_capacity");
  const int64_t group = groupSize > 0 ? groupSize : std::max<int64_t>(T, 1);

  // Admit assignments in priority order: group by group, slot-major, token
  // order inside; `used` counts every admission, `taken` the group's.
  std::vector<int64_t> used(static_cast<size_t>(E), 0);
  std::vector<bool> admitted(static_cast<size_t>(T * k), false);
  for (int64_t first = 0; first < T; first += group) {
    std::vector<int64_t> taken(static_cast<size_t>(E), 0);
    for (int64_t j = 0; j < k; ++j)
      for (int64_t t = first; t < std::min(T, first + group); ++t) {
        int64_t id = ids.data[t * k + j];
        if (id < 0 || id >= E)
          continue;
        if (taken[id] < capacity) {
          ++taken[id];
          ++used[id];
          admitted[t * k + j] = true;
        }
      }
  }

  DispatchResult r{Tensor::zeros({T * k, H}), IntTensor::zeros({E + 1}),
                   IntTensor::filled({T * k}, -1),
                   IntTensor::filled({T, k}, -1)};
  for (int64_t e = 0; e < E; ++e)
    r.offsets.data[e + 1] = r.offsets.data[e] + used[e];
  // Inside an expert: token order, then slot order.
  std::vector<int64_t> next(r.offsets.data.begin(), r.offsets.data.end() - 1);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      if (!admitted[t * k + j])
        continue;
      int64_t e = ids.data[t * k + j];
      int64_t row = next[e]++;
      r.slotRows.data[t * k + j] = row;
      r.rowTokens.data[row] = t;
      std::copy(x.data.begin() + t * H, x.data.begin() + (t + 1) * H,
                r.rows.data.begin() + row * H);
    }
  return r;
}

//===----------------------------------------------------------------------===//
// moe.expert
//===----------------------------------------------------------------------===//

namespace {

/// out[o] = sum_i w[e, o, i] * in[i] + b[e, o]   (w is [E, O, In])
void linear(const Tensor &w, const std::optional<Tensor> &b, int64_t e,
            const double *in, std::vector<double> &out) {
  const int64_t O = w.shape[1], In = w.shape[2];
  out.assign(static_cast<size_t>(O), 0.0);
  const double *we = &w.data[static_cast<size_t>(e * O * In)];
  for (int64_t o = 0; o < O; ++o) {
    double acc = 0.0;
    for (int64_t i = 0; i < In; ++i)
      acc += we[o * In + i] * in[i];
    out[o] = acc + (b ? b->data[static_cast<size_t>(e * O + o)] : 0.0);
  }
}

} // namespace

Tensor dequantize(const ByteTensor &packed, const Tensor &scales,
                  const ByteTensor *zeroPoints, const Quantization &quant) {
  const char *fn = "dequantize";
  const int64_t bits = quant.bits, block = quant.blockSize;
  if (bits != 4 && bits != 8)
    fail(fn, "bits must be 4 or 8, got " + std::to_string(bits));
  if (block != 0 && (block < 16 || (block & (block - 1)) != 0))
    fail(fn, "block size must be 0 or a power of two >= 16, got " +
                 std::to_string(block));
  checkTensor(fn, "packed weights", packed, 3);
  const int64_t pack = 8 / bits;
  const int64_t E = packed.shape[0], N = packed.shape[1],
                K = packed.shape[2] * pack;
  // Per-row scales are one block spanning the row.
  const int64_t blockLen = block ? block : K;
  const int64_t blocks = block ? (K + block - 1) / block : 1;
  if (block)
    checkShape(fn, "scales", scales, {E, N, blocks});
  else
    checkShape(fn, "scales", scales, {E, N});
  // Zero points: one per scale for 8 bits; for 4 bits two a byte along the
  // scales' last axis (rows for per-row scales, blocks otherwise).
  if (zeroPoints) {
    std::vector<int64_t> zpShape = scales.shape;
    if (bits == 4)
      zpShape.back() = (zpShape.back() + 1) / 2;
    if (zeroPoints->shape != zpShape ||
        zeroPoints->numel() != static_cast<int64_t>(zeroPoints->data.size()))
      fail(fn, "zero points must have shape " + shapeStr(zpShape) + ", got " +
                   shapeStr(zeroPoints->shape));
  }
  auto nibbleOrByte = [&](uint8_t byte, int64_t index) -> int64_t {
    return bits == 8 ? byte : (index % 2 == 0 ? byte & 0xF : byte >> 4);
  };
  Tensor w = Tensor::zeros({E, N, K});
  for (int64_t e = 0; e < E; ++e)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < K; ++c) {
        const int64_t b = c / blockLen;
        const double scale =
            scales.data[static_cast<size_t>((e * N + n) * blocks + b)];
        double zp = static_cast<double>(int64_t(1) << (bits - 1));
        if (zeroPoints) {
          // The index along the zero points' packed axis and the byte
          // holding it.
          const int64_t along = block ? b : n;
          const int64_t width = zeroPoints->shape.back();
          const int64_t byteIndex = block ? (e * N + n) * width + along / pack
                                          : e * width + along / pack;
          zp = static_cast<double>(nibbleOrByte(
              zeroPoints->data[static_cast<size_t>(byteIndex)], along));
        }
        const uint8_t byte = packed.data[static_cast<size_t>(
            (e * N + n) * packed.shape[2] + c / pack)];
        const double q = static_cast<double>(nibbleOrByte(byte, c));
        w.data[static_cast<size_t>((e * N + n) * K + c)] = (q - zp) * scale;
      }
  return w;
}

Tensor expert(const Tensor &rows, const IntTensor &offsets,
              const ExpertWeights &wts, const ExpertOptions &opt) {
  const char *fn = "expert";
  checkTensor(fn, "rows", rows, 2);
  const int64_t N = rows.shape[0], H = rows.shape[1];
  checkTensor(fn, "fc1", wts.fc1, 3);
  checkTensor(fn, "fc2", wts.fc2, 3);
  const int64_t E = wts.fc1.shape[0];
  const int64_t I = wts.fc2.shape[2];
  if (E < 1)
    fail(fn, "fc1 must hold at least one expert");

  const bool isSwiglu = opt.activation == Activation::SwiGLU;
  const bool fused =
      isSwiglu && opt.fusion != SwigluFusion::Separate; // g and l in fc1
  const int64_t f = fused ? 2 : 1;
  checkShape(fn, "fc1", wts.fc1, {E, f * I, H});
  checkShape(fn, "fc2", wts.fc2, {E, H, I});
  if (wts.fc1Bias)
    checkShape(fn, "fc1 bias", *wts.fc1Bias, {E, f * I});
  if (wts.fc2Bias)
    checkShape(fn, "fc2 bias", *wts.fc2Bias, {E, H});
  if (wts.fc3Bias && !wts.fc3)
    fail(fn, "fc3 bias given without fc3");
  if (wts.fc3) {
    if (fused)
      fail(fn, "fc3 is not allowed with interleaved/concatenated SwiGLU");
    checkShape(fn, "fc3", *wts.fc3, {E, I, H});
    if (wts.fc3Bias)
      checkShape(fn, "fc3 bias", *wts.fc3Bias, {E, I});
  } else if (isSwiglu && !fused) {
    fail(fn, "separate SwiGLU needs fc3");
  }
  if (opt.limit && !isSwiglu)
    fail(fn, "limit only applies to SwiGLU");
  if (opt.limit && !(*opt.limit >= 0.0))
    fail(fn, "swiglu limit must be >= 0");
  checkShape(fn, "offsets", offsets, {E + 1});
  if (offsets.data[0] != 0)
    fail(fn, "offsets[0] must be 0");
  for (int64_t e = 0; e < E; ++e)
    if (offsets.data[e + 1] < offsets.data[e])
      fail(fn, "offsets must be non-decreasing");
  if (offsets.data[E] > N)
    fail(fn, "offsets[E] = " + std::to_string(offsets.data[E]) +
                 " exceeds the row count " + std::to_string(N));

  Tensor y = Tensor::zeros({N, H});
  std::vector<double> a, l, h(static_cast<size_t>(I)), out;
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = offsets.data[e]; r < offsets.data[e + 1]; ++r) {
      const double *row = &rows.data[static_cast<size_t>(r * H)];
      linear(wts.fc1, wts.fc1Bias, e, row, a);
      if (wts.fc3)
        linear(*wts.fc3, wts.fc3Bias, e, row, l);
      for (int64_t i = 0; i < I; ++i) {
        if (!isSwiglu) {
          h[i] = activate(opt.activation, a[i]);
          if (wts.fc3)
            h[i] *= l[i];
          continue;
        }
        double g, lin;
        switch (opt.fusion) {
        case SwigluFusion::Interleaved:
          g = a[2 * i];
          lin = a[2 * i + 1];
          break;
        case SwigluFusion::Concatenated:
          g = a[i];
          lin = a[I + i];
          break;
        case SwigluFusion::Separate:
        default:
          g = a[i];
          lin = l[i];
          break;
        }
        h[i] = swiglu(g, lin, opt.alpha, opt.beta, opt.limit);
      }
      linear(wts.fc2, wts.fc2Bias, e, h.data(), out);
      std::copy(out.begin(), out.end(), y.data.begin() + r * H);
    }
  return y;
}

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

Tensor combine(const Tensor &y, const Tensor &weights, const IntTensor &ids,
               const IntTensor &slotRows, int64_t numExperts,
               const std::vector<ZeroExpert> &zeroExperts,
               const CombineOperands &ops) {
  const char *fn = "combine";
  checkTensor(fn, "expert output", y, 2);
  const int64_t N = y.shape[0], H = y.shape[1];
  checkTensor(fn, "weights", weights, 2);
  const int64_t T = weights.shape[0], k = weights.shape[1];
  checkShape(fn, "ids", ids, {T, k});
  checkShape(fn, "slot_rows", slotRows, {T, k});
  const int64_t E = numExperts;
  const int64_t Z = static_cast<int64_t>(zeroExperts.size());
  if (E < 1)
    fail(fn, "num_experts must be >= 1");

  // Constant experts are numbered among themselves (c in the spec).
  std::vector<int64_t> constIndex(static_cast<size_t>(Z), -1);
  int64_t Nc = 0;
  bool needsInput = false;
  for (int64_t z = 0; z < Z; ++z) {
    if (zeroExperts[z] == ZeroExpert::Constant)
      constIndex[z] = Nc++;
    if (zeroExperts[z] != ZeroExpert::Zero)
      needsInput = true;
  }
  if (ops.sharedGate || ops.droppedPassThrough)
    needsInput = true;
  if (ops.input)
    checkShape(fn, "input", *ops.input, {T, H});
  else if (needsInput)
    fail(fn, "input x is required by copy/constant experts and by the "
             "shared gate");
  if (ops.shared)
    checkShape(fn, "shared", *ops.shared, {T, H});
  if (ops.sharedGate) {
    if (!ops.shared)
      fail(fn, "shared gate given without shared output");
    checkShape(fn, "shared gate", *ops.sharedGate, {H});
  }
  if (Nc > 0) {
    if (!ops.constants || !ops.constantGates)
      fail(fn, "constant experts need constants [Nc, H] and gates "
               "[Nc, 2, H]");
    checkShape(fn, "constants", *ops.constants, {Nc, H});
    checkShape(fn, "constant gates", *ops.constantGates, {Nc, 2, H});
  } else if (ops.constants || ops.constantGates) {
    fail(fn, "constants/gates given but no zero expert is constant");
  }
  for (int64_t i = 0; i < T * k; ++i) {
    int64_t id = ids.data[i], row = slotRows.data[i];
    if (id < -1 || id >= E + Z)
      fail(fn, "id " + std::to_string(id) + " out of range [-1, " +
                   std::to_string(E + Z) + ")");
    bool routed = id >= 0 && id < E;
    if (routed && (row < -1 || row >= N))
      fail(fn, "slot_rows entry " + std::to_string(row) +
                   " out of range [-1, " + std::to_string(N) + ")");
    if (!routed && row != -1)
      fail(fn, "slot_rows must be -1 for slots that are empty or hold a "
               "zero-computation expert");
  }

  Tensor out = Tensor::zeros({T, H});
  for (int64_t t = 0; t < T; ++t) {
    double *o = &out.data[static_cast<size_t>(t * H)];
    const double *x =
        ops.input ? &ops.input->data[static_cast<size_t>(t * H)] : nullptr;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t id = ids.data[t * k + j];
      const double w = weights.data[t * k + j];
      if (id < 0)
        continue;
      if (id < E) {
        int64_t row = slotRows.data[t * k + j];
        if (row < 0) {
          // Dropped by capacity: nothing, or the token itself.
          if (ops.droppedPassThrough)
            for (int64_t h = 0; h < H; ++h)
              o[h] += w * x[h];
          continue;
        }
        for (int64_t h = 0; h < H; ++h)
          o[h] += w * y.data[row * H + h];
        continue;
      }
      const int64_t z = id - E;
      switch (zeroExperts[z]) {
      case ZeroExpert::Zero:
        break;
      case ZeroExpert::Copy:
        for (int64_t h = 0; h < H; ++h)
          o[h] += w * x[h];
        break;
      case ZeroExpert::Constant: {
        const int64_t c = constIndex[z];
        const double *gate = &ops.constantGates->data[c * 2 * H];
        std::vector<double> a(2, 0.0);
        for (int64_t h = 0; h < H; ++h) {
          a[0] += gate[h] * x[h];
          a[1] += gate[H + h] * x[h];
        }
        softmaxInPlace(a);
        const double *v = &ops.constants->data[c * H];
        for (int64_t h = 0; h < H; ++h)
          o[h] += w * (a[0] * x[h] + a[1] * v[h]);
        break;
      }
      }
    }
    if (ops.shared) {
      double gate = 1.0;
      if (ops.sharedGate) {
        double dot = 0.0;
        for (int64_t h = 0; h < H; ++h)
          dot += ops.sharedGate->data[h] * x[h];
        gate = sigmoid(dot);
      }
      for (int64_t h = 0; h < H; ++h)
        o[h] += ops.shared->data[t * H + h] * gate;
    }
  }
  return out;
}

//===----------------------------------------------------------------------===//
// moe.layer
//===----------------------------------------------------------------------===//

Tensor layer(const Tensor &x, const Tensor &logits, const LayerWeights &wts,
             const LayerOptions &opt) {
  const char *fn = "layer";
  checkTensor(fn, "x", x, 2);
  const int64_t T = x.shape[0], H = x.shape[1];
  checkTensor(fn, "expert fc1", wts.experts.fc1, 3);
  const int64_t E = wts.experts.fc1.shape[0];
  const int64_t Z = static_cast<int64_t>(opt.zeroExperts.size());
  checkShape(fn, "logits", logits, {T, E + Z});

  RouteResult routed = route(
      logits, wts.routerBias ? &*wts.routerBias : nullptr, opt.route);
  DispatchResult d = dispatch(x, routed.ids, E, opt.capacityFactor,
                              opt.expertCapacity, opt.capacityGroup);
  Tensor combineWeights = routed.weights;
  if (opt.scaleInput) {
    if (Z > 0 || opt.droppedPassThrough)
      fail(fn, "scaleInput with zero experts or dropped pass-through");
    // Each slot's row scaled by its weight; the outputs summed unweighted.
    const int64_t k = opt.route.k;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j) {
        int64_t r = d.slotRows.data[t * k + j];
        if (r < 0)
          continue;
        for (int64_t h = 0; h < H; ++h)
          d.rows.data[r * H + h] *= routed.weights.data[t * k + j];
        combineWeights.data[t * k + j] = 1.0;
      }
  }
  Tensor y = expert(d.rows, d.offsets, wts.experts, opt.expert);

  // Shared experts: every token visits each of the S experts; run them as
  // one moe.expert over S copies of x and sum the S results per token.
  std::optional<Tensor> shared;
  if (wts.shared) {
    checkTensor(fn, "shared fc1", wts.shared->fc1, 3);
    const int64_t S = wts.shared->fc1.shape[0];
    Tensor rows = Tensor::zeros({S * T, H});
    IntTensor offsets = IntTensor::zeros({S + 1});
    for (int64_t s = 0; s < S; ++s) {
      std::copy(x.data.begin(), x.data.end(),
                rows.data.begin() + s * T * H);
      offsets.data[s + 1] = (s + 1) * T;
    }
    Tensor ys = expert(rows, offsets, *wts.shared, opt.expert);
    shared = Tensor::zeros({T, H});
    for (int64_t s = 0; s < S; ++s)
      for (int64_t i = 0; i < T * H; ++i)
        shared->data[i] += ys.data[s * T * H + i];
  } else if (wts.sharedGate) {
    fail(fn, "shared gate given without shared experts");
  }

  CombineOperands ops;
  ops.input = &x;
  ops.shared = shared ? &*shared : nullptr;
  ops.sharedGate = wts.sharedGate ? &*wts.sharedGate : nullptr;
  ops.constants = wts.constants ? &*wts.constants : nullptr;
  ops.constantGates = wts.constantGates ? &*wts.constantGates : nullptr;
  ops.droppedPassThrough = opt.droppedPassThrough;
  return combine(y, combineWeights, routed.ids, d.slotRows, E, opt.zeroExperts,
                 ops);
}

} // namespace moe::reference
