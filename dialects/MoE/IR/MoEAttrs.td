//===- MoEAttrs.td - moe dialect enum attributes ------------*- tablegen -*-===//

#ifndef MOE_ATTRS_TD
#define MOE_ATTRS_TD

include "MoE/IR/MoEBase.td"
include "mlir/IR/EnumAttr.td"

def MoE_ScoringSoftmax : I32EnumAttrCase<"softmax", 0>;
def MoE_ScoringSigmoid : I32EnumAttrCase<"sigmoid", 1>;
def MoE_ScoringSoftmaxTopK : I32EnumAttrCase<"softmax_topk", 2>;
def MoE_ScoringSparseMixer : I32EnumAttrCase<"sparse_mixer", 3>;
def MoE_Scoring : I32EnumAttr<"Scoring", "how router logits become scores",
    [MoE_ScoringSoftmax, MoE_ScoringSigmoid, MoE_ScoringSoftmaxTopK,
     MoE_ScoringSparseMixer]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_ScoringAttr : EnumAttr<MoE_Dialect, MoE_Scoring, "scoring"> {
  let summary = "router scoring function";
  let description = [{
    `softmax`: softmax over all experts, then top-k (Switch, OLMoE, ONNX
    Runtime's MoE). `sigmoid`: independent sigmoid per expert, then top-k
    (DeepSeek-V3). `softmax_topk`: top-k on the raw logits, then softmax over
    the k chosen logits only (Mixtral's formulation, ONNX Runtime's CPU QMoE).
    `sparse_mixer`: SparseMixer top-2 (Phi-3.5-MoE, ONNX Runtime's
    `use_sparse_mixer`): for the best and then the second-best logit `m`,
    the weight is a softmax over only the experts whose logit is close to
    `m` (`m - x <= 0.02 * max(|x|, m)`; for the second, the first expert is
    excluded), evaluated at `m`. Needs `k = 2`, no groups, bias or top-p.
  }];
  let assemblyFormat = "`<` $value `>`";
}

def MoE_GroupScoringMax : I32EnumAttrCase<"max", 0>;
def MoE_GroupScoringTop2Sum : I32EnumAttrCase<"top2_sum", 1>;
def MoE_GroupScoring : I32EnumAttr<"GroupScoring",
    "how an expert group is scored for group-limited routing",
    [MoE_GroupScoringMax, MoE_GroupScoringTop2Sum]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_GroupScoringAttr
    : EnumAttr<MoE_Dialect, MoE_GroupScoring, "group_scoring"> {
  let summary = "group score for group-limited routing";
  let description = [{
    `max`: a group scores its best expert (DeepSeek-V2). `top2_sum`: a group
    scores the sum of its two best experts (DeepSeek-V3).
  }];
  let assemblyFormat = "`<` $value `>`";
}

def MoE_ActivationIdentity : I32EnumAttrCase<"identity", 0>;
def MoE_ActivationRelu : I32EnumAttrCase<"relu", 1>;
def MoE_ActivationGelu : I32EnumAttrCase<"gelu", 2>;
def MoE_ActivationGeluTanh : I32EnumAttrCase<"gelu_tanh", 3>;
def MoE_ActivationSilu : I32EnumAttrCase<"silu", 4>;
def MoE_ActivationSwiglu : I32EnumAttrCase<"swiglu", 5>;
def MoE_Activation : I32EnumAttr<"Activation", "expert activation function",
    [MoE_ActivationIdentity, MoE_ActivationRelu, MoE_ActivationGelu,
     MoE_ActivationGeluTanh, MoE_ActivationSilu, MoE_ActivationSwiglu]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_ActivationAttr : EnumAttr<MoE_Dialect, MoE_Activation, "activation"> {
  let summary = "activation between an expert's two projections";
  let description = [{
    `identity`, `relu`, `gelu` (erf form), `gelu_tanh` (tanh approximation)
    and `silu` apply elementwise to `fc1`'s output; with an `fc3` projection
    they become gated (GLU-family) activations `act(fc1 x) * (fc3 x)`.
    `swiglu` is ONNX Runtime's parameterised SwiGLU
    `G * sigmoid(alpha * G) * (L + beta)` with optional clamping `limit`,
    whose gate and linear halves are laid out as `swiglu_fusion` says.
  }];
  let assemblyFormat = "`<` $value `>`";
}

def MoE_SwigluSeparate : I32EnumAttrCase<"separate", 0>;
def MoE_SwigluInterleaved : I32EnumAttrCase<"interleaved", 1>;
def MoE_SwigluConcatenated : I32EnumAttrCase<"concatenated", 2>;
def MoE_SwigluFusion : I32EnumAttr<"SwigluFusion",
    "where SwiGLU's gate and linear halves live",
    [MoE_SwigluSeparate, MoE_SwigluInterleaved, MoE_SwigluConcatenated]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_SwigluFusionAttr
    : EnumAttr<MoE_Dialect, MoE_SwigluFusion, "swiglu_fusion"> {
  let summary = "layout of SwiGLU's gate and linear projections";
  let description = [{
    Mirrors ONNX Runtime's `swiglu_fusion`: `separate` (0) keeps the gate in
    `fc1` and the linear part in `fc3`; `interleaved` (1) stores both in
    `fc1 [E, 2I, H]` with gate row `2i` and linear row `2i+1`;
    `concatenated` (2) stores the gate in rows `[0, I)` and the linear part in
    rows `[I, 2I)`.
  }];
  let assemblyFormat = "`<` $value `>`";
}

def MoE_ZeroExpertZero : I32EnumAttrCase<"zero", 0>;
def MoE_ZeroExpertCopy : I32EnumAttrCase<"copy", 1>;
def MoE_ZeroExpertConstant : I32EnumAttrCase<"constant", 2>;
def MoE_ZeroExpertKind : I32EnumAttr<"ZeroExpertKind",
    "kind of zero-computation expert",
    [MoE_ZeroExpertZero, MoE_ZeroExpertCopy, MoE_ZeroExpertConstant]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_ZeroExpertKindAttr
    : EnumAttr<MoE_Dialect, MoE_ZeroExpertKind, "zero_expert"> {
  let summary = "a zero-computation expert";
  let description = [{
    Experts that cost (almost) nothing, appended after the FFN experts in
    routing order. `zero` contributes nothing (AdaMoE's null expert, which
    lets a token use fewer experts); `copy` returns the token unchanged
    (MoE++); `constant` returns `a1 * x + a2 * v` with a learned vector `v`
    and `(a1, a2) = softmax(Wc x)` (MoE++).
  }];
  let assemblyFormat = "`<` $value `>`";
}

def MoE_QuantAttr : AttrDef<MoE_Dialect, "Quant"> {
  let mnemonic = "quant";
  let summary = "integer quantisation of the expert weights";
  let description = [{
    Marks the expert weights `fc1`/`fc2`/`fc3` as `bits`-bit unsigned
    integers packed into `ui8` bytes (ONNX Runtime's QMoE layout): a weight
    `[E, N, K]` is stored as `[E, N, K * bits / 8]`, and with `bits = 4` the
    low nibble of a byte holds the even column and the high nibble the odd
    one. A weight dequantises as `(q - zp) * scale`.

    `block_size = 0` (the default) gives one scale per output row
    (`scales [E, N]`); a power of two `>= 16` gives one scale per
    `block_size` consecutive input columns (`scales [E, N, ceil(K / block)]`).
    Zero points are optional `ui8` operands; without them `zp` is
    `2^(bits-1)`. 8-bit zero points have the scales' shape; 4-bit ones are
    packed two to a byte like the weights, along the blocks
    (`[E, N, ceil(ceil(K / block) / 2)]`) or, per row, along the rows
    (`[E, ceil(N / 2)]`).

    ```mlir
    #moe.quant<bits = 4, block_size = 32>
    ```
  }];
  let parameters = (ins "int64_t":$bits,
                        DefaultValuedParameter<"int64_t", "0">:$block_size);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Quantised values per storage byte.
    int64_t getPackFactor() const { return 8 / getBits(); }
  }];
}

def MoE_ZeroExpertArrayAttr
    : TypedArrayAttrBase<MoE_ZeroExpertKindAttr,
                         "array of zero-computation expert kinds">;

def MoE_ExpertParallelAttr : AttrDef<MoE_Dialect, "ExpertParallel"> {
  let mnemonic = "expert_parallel";
  let summary = "the expert-parallel partition of a layer's experts";
  let description = [{
    Marks a `moe.layer` as one rank's part of a layer whose `num_experts`
    experts are spread over the `ranks` processes of the `shard.grid`
    `grid`: rank `r` owns experts `[lo(r), lo(r+1))`,
    `lo(r) = r * (E / P) + min(r, E % P)`, and its expert weights hold
    `ceil(E / P)` experts, zero padding after its own. The layer's tokens
    are the rank's own; routing is local and tokens travel to the ranks that
    own their experts and back (docs/ExpertParallel.md).

    ```mlir
    #moe.expert_parallel<grid = @moe_ep, ranks = 4, num_experts = 6>
    ```
  }];
  let parameters = (ins "FlatSymbolRefAttr":$grid, "int64_t":$ranks,
                        "int64_t":$num_experts);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Experts per rank, the largest share: ceil(E / P).
    int64_t getExpertsPerRank() const {
      return (getNumExperts() + getRanks() - 1) / getRanks();
    }
    /// The first expert of rank `rank` (`rank == ranks` gives E).
    int64_t getFirstExpert(int64_t rank) const {
      return getFirstExpert(getNumExperts(), getRanks(), rank);
    }
    /// The partition rule: of `numExperts` experts over `ranks` ranks, the
    /// first one rank `rank` owns (the first E % P ranks own one more).
    static int64_t getFirstExpert(int64_t numExperts, int64_t ranks,
                                  int64_t rank) {
      return rank * (numExperts / ranks) + std::min(rank, numExperts % ranks);
    }
  }];
}

#endif // MOE_ATTRS_TD
