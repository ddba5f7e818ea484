//===- Reference.h - float64 reference evaluator for the moe ops -*- C++ -*-===//
//
// A plain, slow, obviously-correct evaluator of the `moe` dialect's ops in
// float64. It implements docs/Dialects/MoE.md literally and is the oracle the
// compiled kernels and the ONNX Runtime golden tests are checked against.
//
// Deliberately plain C++17 with only the standard library: the runtime tool
// (moe-run) links it, and the runtime must not depend on MLIR or LLVM.
//
// Every entry point validates its operands and throws std::invalid_argument
// with a message naming the function and the offending operand, instead of
// reading out of bounds or returning a silently wrong result.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_REFERENCE_REFERENCE_H
#define MOE_MLIR_REFERENCE_REFERENCE_H

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

namespace moe::reference {

//===----------------------------------------------------------------------===//
// Tensors
//===----------------------------------------------------------------------===//

/// A dense, row-major (C order) tensor. Fields are public so that callers can
/// fill `data` directly; the evaluator re-checks `shape` against `data` on
/// entry, so an inconsistent tensor is reported rather than read past its end.
template <typename ElemT> struct BasicTensor {
  std::vector<int64_t> shape;
  std::vector<ElemT> data;

  BasicTensor() = default;
  /// Throws std::invalid_argument when a dimension is negative or
  /// `data.size()` is not the product of `shape`.
  BasicTensor(std::vector<int64_t> shape, std::vector<ElemT> data);

  /// A tensor of `shape` filled with `value`.
  static BasicTensor filled(std::vector<int64_t> shape, ElemT value);
  static BasicTensor zeros(std::vector<int64_t> shape) {
    return filled(std::move(shape), ElemT(0));
  }

  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  /// Number of elements the shape describes (1 for rank 0). Throws on a
  /// negative dimension or on int64 overflow.
  int64_t numel() const;

  /// Bounds-checked element access by multi-index; throws std::out_of_range
  /// when the index count differs from the rank or an index is out of range.
  /// Meant for tests and tools; the evaluator itself indexes `data` directly.
  ElemT &at(std::initializer_list<int64_t> index);
  const ElemT &at(std::initializer_list<int64_t> index) const;
  template <typename... I> ElemT &operator()(I... i) {
    return at({static_cast<int64_t>(i)...});
  }
  template <typename... I> const ElemT &operator()(I... i) const {
    return at({static_cast<int64_t>(i)...});
  }

private:
  int64_t flatIndex(std::initializer_list<int64_t> index) const;
};

/// float64 activations and weights.
using Tensor = BasicTensor<double>;
/// Expert ids, offsets and row indices. The dialect uses i32 for these; the
/// evaluator uses int64 so that it never has to think about overflow.
using IntTensor = BasicTensor<int64_t>;

/// Packed bytes of quantised weights and their zero points (`ui8`).
using ByteTensor = BasicTensor<uint8_t>;

extern template struct BasicTensor<double>;
extern template struct BasicTensor<int64_t>;
extern template struct BasicTensor<uint8_t>;

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

/// How router logits become scores (MoE.md, moe.route step 1).
enum class Scoring {
  Softmax,    ///< s = softmax(logits) over all E+Z experts.
  Sigmoid,    ///< s = sigmoid(logits), elementwise.
  SoftmaxTopK, ///< select on raw logits, softmax over the k chosen logits.
  SparseMixer  ///< SparseMixer top-2: softmax over the jitter band of each
               ///< chosen logit (k = 2, no groups, bias or top-p).
};

/// How a group's score is formed when group-limited routing is on.
enum class GroupScoring {
  Max,    ///< the largest selection score in the group.
  Top2Sum ///< the sum of the two largest selection scores in the group.
};

struct RouteOptions {
  /// Experts per token (upper bound when top-p is on); 1 <= k <= E+Z.
  int64_t k = 1;
  Scoring scoring = Scoring::Softmax;
  /// Divide the kept weights by their sum (skipped when the sum is 0).
  bool normalize = false;
  /// Group-limited routing (DeepSeek-V3): numGroups must divide E+Z and
  /// 1 <= topGroups <= numGroups. numGroups == 1 disables it.
  int64_t numGroups = 1;
  int64_t topGroups = 1;
  GroupScoring groupScoring = GroupScoring::Max;
  /// Dynamic top-p cap; must be > 0 when given.
  std::optional<double> topP;
  /// routed_scaling_factor, applied last.
  double scaling = 1.0;
};

struct RouteResult {
  Tensor weights; ///< [T, k]; 0 in empty slots.
  IntTensor ids;  ///< [T, k]; expert index in [0, E+Z) or -1 for an empty slot.
};

/// The router's logits `x . routerWeight^T`: [T, H] x [E, H] -> [T, E]
/// (moe.route and moe.layer with `router_weight`).
Tensor routerLogits(const Tensor &x, const Tensor &routerWeight);

/// moe.route. `logits` is [T, E+Z] and must be finite; `bias` (may be null)
/// is the per-expert selection bias [E+Z], which only steers selection.
RouteResult route(const Tensor &logits, const Tensor *bias,
                  const RouteOptions &options);

/// route() for callers built without exceptions (the ONNX importer checks
/// raised routers against it): nullopt where route() would throw.
std::optional<RouteResult> tryRoute(const Tensor &logits, const Tensor *bias,
                                    const RouteOptions &options) noexcept;

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

struct DispatchResult {
  Tensor rows;         ///< [T*k, H]; rows >= offsets[E] are zero padding.
  IntTensor offsets;   ///< [E+1]; expert e owns rows offsets[e]..offsets[e+1].
  IntTensor rowTokens; ///< [T*k]; token of each row, -1 for padding.
  IntTensor slotRows;  ///< [T, k]; row of assignment (t, j), -1 if none.
};

/// moe.dispatch. `x` is [T, H], `ids` is [T, k] with entries >= -1 (ids >= E
/// are zero-computation experts and are not dispatched). With
/// `capacityFactor = c` (> 0) every expert keeps at most
/// C = ceil(c * (T*k) / E) rows, evaluated in double in exactly that order;
/// assignments compete slot-major, then in token order. With
/// `expertCapacity = C` (> 0, exclusive with capacityFactor) every expert
/// keeps at most C rows of each group of `groupSize` consecutive tokens
/// (0: one group of all T tokens; the last group may be shorter).
DispatchResult dispatch(const Tensor &x, const IntTensor &ids,
                        int64_t numExperts,
                        std::optional<double> capacityFactor = std::nullopt,
                        std::optional<int64_t> expertCapacity = std::nullopt,
                        int64_t groupSize = 0);

//===----------------------------------------------------------------------===//
// moe.expert
//===----------------------------------------------------------------------===//

enum class Activation { Identity, Relu, Gelu, GeluTanh, Silu, SwiGLU };

/// Where SwiGLU's gate `g` and linear part `l` come from. The numbering
/// matches ONNX Runtime's `swiglu_fusion` attribute (0, 1, 2).
enum class SwigluFusion {
  Separate,    ///< g = fc1 output, l = fc3 output.
  Interleaved, ///< fc1 output is [g0, l0, g1, l1, ...].
  Concatenated ///< fc1 output is [g0..g(I-1), l0..l(I-1)].
};

/// Stacked expert weights, out-major like nn.Linear (MoE.md, Notation):
/// fc1 [E, f*I, H], fc2 [E, H, I], fc3 [E, I, H]; biases [E, out].
/// f = 2 for interleaved / concatenated SwiGLU, else 1.
struct ExpertWeights {
  Tensor fc1, fc2;
  std::optional<Tensor> fc1Bias, fc2Bias, fc3, fc3Bias;
};

/// Defaults are the dialect's attribute defaults (relu, interleaved, 1, 0).
struct ExpertOptions {
  Activation activation = Activation::Relu;
  /// Only read when activation == SwiGLU.
  SwigluFusion fusion = SwigluFusion::Interleaved;
  /// SwiGLU parameters: h = G * sigmoid(alpha * G) * (L + beta); ignored by
  /// the other activations.
  double alpha = 1.0, beta = 0.0;
  /// SwiGLU clamp: G = min(g, limit), L = clamp(l, -limit, limit); >= 0.
  /// Rejected for other activations rather than silently ignored.
  std::optional<double> limit;
};

/// moe.expert. `rows` is [N, H], `offsets` is [E+1] with offsets[0] = 0,
/// non-decreasing, offsets[E] <= N. Returns y [N, H]; rows >= offsets[E]
/// are zero. With fc3 and a non-SwiGLU activation the activation is gated:
/// h = act(a) * (fc3 @ row + b3).
Tensor expert(const Tensor &rows, const IntTensor &offsets,
              const ExpertWeights &weights, const ExpertOptions &options);

//===----------------------------------------------------------------------===//
// Quantised weights
//===----------------------------------------------------------------------===//

/// `#moe.quant<bits, block_size>` (MoE.md, "Quantised weights").
struct Quantization {
  int64_t bits = 8;      ///< 4 or 8.
  int64_t blockSize = 0; ///< 0: one scale per row; else a power of two >= 16.
};

/// Dequantises one projection to W [E, N, K], W = (q - zp) * scale, where
/// `packed` is [E, N, K * bits / 8] (4-bit: low nibble = even column),
/// `scales` is [E, N] (per row) or [E, N, ceil(K / blockSize)], and
/// `zeroPoints` (null: zp = 2^(bits-1)) has the scales' shape for 8 bits
/// and is packed two a byte along the scales' last axis for 4 bits. The
/// moe dialect dequantises inside its kernels; the evaluator dequantises up
/// front and then runs the float path, which is the same arithmetic.
Tensor dequantize(const ByteTensor &packed, const Tensor &scales,
                  const ByteTensor *zeroPoints, const Quantization &quant);

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

/// Kinds of zero-computation experts; expert id E + z has kind
/// zeroExperts[z].
enum class ZeroExpert {
  Zero,    ///< contributes nothing (AdaMoE null expert).
  Copy,    ///< contributes w * x[t].
  Constant ///< contributes w * (a1 * x[t] + a2 * v[c]) (MoE++).
};

/// Optional operands of moe.combine; a null pointer means "absent".
struct CombineOperands {
  /// x [T, H]; required when a Copy or Constant expert exists or when
  /// sharedGate is given.
  const Tensor *input = nullptr;
  /// Output of the shared experts [T, H].
  const Tensor *shared = nullptr;
  /// Qwen2-MoE shared_expert_gate [H]; requires `shared`.
  const Tensor *sharedGate = nullptr;
  /// MoE++ constant vectors [Nc, H] and gates [Nc, 2, H], Nc = number of
  /// Constant entries in zeroExperts; both present exactly when Nc > 0.
  const Tensor *constants = nullptr;
  const Tensor *constantGates = nullptr;
  /// A routed slot that dispatch dropped (slot row -1) contributes
  /// w * x[t] (Switch Transformers); requires `input`.
  bool droppedPassThrough = false;
};

/// moe.combine. `expertOut` is y [N, H]; `weights`, `ids`, `slotRows` are
/// [T, k]. Ids must lie in [-1, E+Z); slotRows must be in [-1, N) for routed
/// ids and -1 for every other id.
Tensor combine(const Tensor &expertOut, const Tensor &weights,
               const IntTensor &ids, const IntTensor &slotRows,
               int64_t numExperts, const std::vector<ZeroExpert> &zeroExperts,
               const CombineOperands &operands = {});

//===----------------------------------------------------------------------===//
// moe.layer
//===----------------------------------------------------------------------===//

struct LayerWeights {
  /// Routed experts; E is experts.fc1.shape[0].
  ExpertWeights experts;
  /// Router selection bias [E+Z].
  std::optional<Tensor> routerBias;
  /// Shared experts stacked [S, ...] in the same layout as `experts`; each is
  /// applied to every token with the routed activation options and their
  /// outputs are summed.
  std::optional<ExpertWeights> shared;
  std::optional<Tensor> sharedGate;    ///< [H]
  std::optional<Tensor> constants;     ///< [Nc, H]
  std::optional<Tensor> constantGates; ///< [Nc, 2, H]
};

struct LayerOptions {
  RouteOptions route;
  ExpertOptions expert;
  std::optional<double> capacityFactor;
  /// Absolute capacity per expert and group of `capacityGroup` consecutive
  /// tokens (0: all tokens; moe.layer's capacity_per_sequence is S).
  std::optional<int64_t> expertCapacity;
  int64_t capacityGroup = 0;
  /// Dropped assignments keep the token (moe.combine's
  /// dropped_pass_through).
  bool droppedPassThrough = false;
  /// The routing weights scale the experts' input rows, not their outputs
  /// (moe.layer's scale_input).
  bool scaleInput = false;
  std::vector<ZeroExpert> zeroExperts; ///< Z entries.
};

/// moe.layer: route over E+Z experts -> dispatch -> expert -> combine, plus
/// shared experts. `x` is [T, H], `logits` is [T, E+Z]. Returns [T, H].
Tensor layer(const Tensor &x, const Tensor &logits, const LayerWeights &weights,
             const LayerOptions &options);

//===----------------------------------------------------------------------===//
// Scalar helpers (exposed so tests and tools use the same definitions).
//===----------------------------------------------------------------------===//

/// Applies an elementwise activation (everything but SwiGLU).
double activate(Activation activation, double x);
/// h = G * sigmoid(alpha * G) * (L + beta), G = min(g, limit),
/// L = clamp(l, -limit, limit).
double swiglu(double g, double l, double alpha, double beta,
              std::optional<double> limit);

} // namespace moe::reference

#endif // MOE_MLIR_REFERENCE_REFERENCE_H
