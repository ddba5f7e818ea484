//===- MoEOps.td - moe dialect operations -------------------*- tablegen -*-===//

#ifndef MOE_OPS_TD
#define MOE_OPS_TD

include "MoE/IR/MoEBase.td"
include "MoE/IR/MoEAttrs.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/IR/SymbolInterfaces.td"

// Element types of float weights, biases and quantisation scales.
def MoE_WeightTensor : RankedTensorOf<[F32, F16, BF16]>;
// Projection weights: float, or packed integers (`ui8` bytes) under a
// `#moe.quant` attribute.
def MoE_ProjWeightTensor : RankedTensorOf<[F32, F16, BF16, UI8]>;
def MoE_PackedTensor : RankedTensorOf<[UI8]>;
def MoE_FloatTensor : RankedTensorOf<[F32, F16, BF16, F64]>;
def MoE_IdTensor : RankedTensorOf<[I32]>;

// Attributes shared by moe.route and moe.layer.
defvar RouteAttrs = (ins
  ConfinedAttr<I64Attr, [IntPositive]>:$k,
  DefaultValuedAttr<MoE_ScoringAttr, "Scoring::softmax">:$scoring,
  UnitAttr:$normalize,
  DefaultValuedAttr<I64Attr, "1">:$num_groups,
  DefaultValuedAttr<I64Attr, "1">:$top_groups,
  DefaultValuedAttr<MoE_GroupScoringAttr, "GroupScoring::max">:$group_scoring,
  OptionalAttr<F64Attr>:$top_p,
  DefaultValuedAttr<F64Attr, "1.0">:$scaling
);

// Attributes shared by moe.expert and moe.layer.
defvar ExpertAttrs = (ins
  DefaultValuedAttr<MoE_ActivationAttr, "Activation::relu">:$activation,
  DefaultValuedAttr<MoE_SwigluFusionAttr, "SwigluFusion::interleaved">
      :$swiglu_fusion,
  DefaultValuedAttr<F64Attr, "1.0">:$alpha,
  DefaultValuedAttr<F64Attr, "0.0">:$beta,
  OptionalAttr<F64Attr>:$limit,
  OptionalAttr<MoE_QuantAttr>:$quant
);

// Quantisation operands shared by moe.expert and moe.layer: scales for each
// quantised projection and optional zero points.
defvar QuantOperands = (ins
  Optional<MoE_WeightTensor>:$fc1_scales,
  Optional<MoE_WeightTensor>:$fc2_scales,
  Optional<MoE_WeightTensor>:$fc3_scales,
  Optional<MoE_PackedTensor>:$fc1_zero_points,
  Optional<MoE_PackedTensor>:$fc2_zero_points,
  Optional<MoE_PackedTensor>:$fc3_zero_points
);

//===----------------------------------------------------------------------===//
// RouteOp
//===----------------------------------------------------------------------===//

def MoE_RouteOp : MoE_Op<"route", [Pure, AttrSizedOperandSegments]> {
  let summary = "router: scores, top-k selection and routing weights";
  let description = [{
    Turns router logits `[T, E]` into, per token, `k` expert ids (`i32`, in
    descending score order; `-1` for a slot left empty by top-p) and their
    routing weights. `input` is the logits, or, with `router_weight [E, H]`,
    the tokens `[T, H]` whose logits are `input . router_weight^T` (the
    router's MatMul fused into the route by `-moe-fuse-router`: each block
    of tokens' logits is computed and consumed while it is in cache, never
    written out as `[T, E]`). Per token:

    1. scores: `softmax`, `sigmoid`, or raw logits for `softmax_topk`;
    2. selection scores: scores plus the optional per-expert `bias`
       (DeepSeek-V3's load-balancing correction: it steers selection only);
    3. when `num_groups > 1`, only experts of the `top_groups` best groups
       of `E / num_groups` consecutive experts may be chosen, groups scored by
       `group_scoring`;
    4. top-k on the selection scores, ties won by the lower expert index;
    5. weights: the unbiased scores of the chosen experts (for
       `softmax_topk`, a softmax over the chosen logits);
    6. with `top_p`, slots are kept in order until the kept weight reaches
       `top_p` and the rest emptied (dynamic expert count, `k` a cap);
    7. with `normalize`, weights are divided by their sum;
    8. weights are multiplied by `scaling`.

    Example (Mixtral: softmax, top-2, renormalised):

    ```mlir
    %weights, %ids = moe.route %logits {k = 2 : i64, normalize}
        : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
    // The same with the router's MatMul fused: tokens [T, 4096].
    %weights, %ids = moe.route %x router_weight %w {k = 2 : i64, normalize}
        : tensor<?x4096xf32> router_weight tensor<8x4096xf32>
        -> tensor<?x2xf32>, tensor<?x2xi32>
    ```
  }];
  let arguments = !con((ins MoE_FloatTensor:$input,
                            Optional<MoE_FloatTensor>:$router_weight,
                            Optional<MoE_FloatTensor>:$bias), RouteAttrs);
  let results = (outs MoE_FloatTensor:$weights, MoE_IdTensor:$ids);
  let assemblyFormat = [{
    $input (`router_weight` $router_weight^)? (`bias` $bias^)? attr-dict `:`
    type($input) (`router_weight` type($router_weight)^)?
    (`,` type($bias)^)? `->` type($weights) `,` type($ids)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The number of experts scored: the rows of `router_weight`, else the
    /// columns of the logits.
    int64_t getNumExperts();
    /// The element type of the logits (and so of the scores and weights).
    ::mlir::Type getScoreType();
  }];
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

def MoE_DispatchOp : MoE_Op<"dispatch", [Pure]> {
  let summary = "group token rows by expert";
  let description = [{
    Gathers the rows of `input [T, H]` into `rows [T*k, H]` grouped by expert:
    expert `e` owns rows `offsets[e] .. offsets[e+1]` (`offsets [E+1]`,
    `i32`), in increasing token order. Only assignments with
    `0 <= id < num_experts` are dispatched: larger ids name zero-computation
    experts, handled by `moe.combine`, and `-1` is an empty slot. Rows from
    `offsets[E]` on are zero padding. `row_tokens [T*k]` gives each row's
    token (`-1` for padding) and `slot_rows [T, k]` each assignment's row
    (`-1` when not dispatched).

    Dispatch is dropless unless a capacity is given: with `capacity_factor`
    each expert takes at most `ceil(capacity_factor * T * k / E)` rows
    (GShard), with `expert_capacity = C` at most `C` rows of every group of
    `group_size` consecutive tokens (Switch Transformers' per-sequence
    capacity; one group of all `T` tokens without `group_size`, and a last
    group of `T mod group_size` tokens when it does not divide `T`).
    Assignments compete slot-major (all first choices before any second
    choice) and in token order within a slot; the rest are dropped.

    ```mlir
    %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids
        {num_experts = 8 : i64}
        : tensor<?x4096xf32>, tensor<?x2xi32>
        -> tensor<?x4096xf32>, tensor<9xi32>, tensor<?xi32>, tensor<?x2xi32>
    // At most 6 rows per expert and sequence of %seq tokens.
    %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids
        group_size %seq {num_experts = 4 : i64, expert_capacity = 6 : i64}
        : tensor<?x512xf32>, tensor<?x1xi32>
        -> tensor<?x512xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x1xi32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_IdTensor:$ids,
                       Optional<Index>:$group_size,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_experts,
                       OptionalAttr<F64Attr>:$capacity_factor,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:
                           $expert_capacity);
  let results = (outs MoE_FloatTensor:$rows, MoE_IdTensor:$offsets,
                      MoE_IdTensor:$row_tokens, MoE_IdTensor:$slot_rows);
  let assemblyFormat = [{
    $input `,` $ids (`group_size` $group_size^)? attr-dict `:` type($input)
    `,` type($ids) `->` type($rows) `,` type($offsets) `,` type($row_tokens)
    `,` type($slot_rows)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// ExpertOp
//===----------------------------------------------------------------------===//

def MoE_ExpertOp : MoE_Op<"expert", [Pure, AttrSizedOperandSegments]> {
  let summary = "grouped expert FFN over dispatched rows";
  let description = [{
    Applies expert `e`'s feed-forward network to its rows
    `offsets[e] .. offsets[e+1]` of `rows [N, H]`:
    `y[r] = fc2[e] @ act(fc1[e] @ rows[r] + fc1_bias[e]) + fc2_bias[e]`.
    Weights are stacked per expert, out-major: `fc1 [E, f*I, H]`,
    `fc2 [E, H, I]`, optional `fc3 [E, I, H]`, biases `[E, out]`. `f` is 2
    when `activation` is `swiglu` with an `interleaved` or `concatenated`
    `swiglu_fusion`, else 1. With `fc3` and a non-SwiGLU activation the
    activation is gated: `act(fc1 x) * (fc3 x)`; `swiglu` with `separate`
    fusion takes its linear half from `fc3`. `alpha`, `beta` and `limit`
    parameterise `swiglu` as in ONNX Runtime. Rows from `offsets[E]` on
    produce zeros. Weights are f32, f16 or bf16, all alike; arithmetic is at
    least f32.

    With a `quant` attribute (`#moe.quant<bits, block_size>`) `fc1`, `fc2`
    and `fc3` are packed `ui8` integers, `[E, N, K * bits / 8]` for a logical
    `[E, N, K]` weight, and each comes with its `fcN_scales` (per row
    `[E, N]` or block-wise `[E, N, ceil(K / block_size)]`) and optionally
    its `fcN_zero_points` (`ui8`; see `#moe.quant` for their packing). The
    weights are dequantised, `(q - zp) * scale`, inside the expert kernel;
    biases and scales share one float element type.

    With `panel_width = P` the float weights are stored panel-major:
    `fcN [E, N / P, K, P]` holds the logical `fcN [E, N, K]` as `N / P`
    panels of `P` output columns, element `[e, p, k, j]` being the logical
    `[e, p * P + j, k]`: each panel is a `[K, P]` matrix read along its
    columns, the layout of the CPU's outer-product GEMM kernel. bf16
    weights hold pairs of k side by side, `fcN [E, N / P, K / 2, P, 2]`
    with element `[e, p, t, j, r]` the logical `[e, p * P + j, 2 * t + r]`:
    a panel row is then what AVX512-BF16's `vdpbf16ps` takes, each 32-bit
    lane one column's pair. Quantised weights (with `quant`) hold words of
    four packed bytes side by side, `fcN [E, N / P, Kb / 4, P, 4]` for `Kb`
    packed bytes per row, element `[e, p, w, j, r]` being the packed byte
    `[e, p * P + j, 4 * w + r]`: 16 columns of a panel row are then the
    64 bytes that AVX512-VNNI's `vpdpbusd` multiplies by an activation's
    four codes broadcast. Their block-wise scales are panel-major too,
    `fcN_scales [E, N / P, blocks, P]` with element `[e, p, b, j]` the
    scale `[e, p * P + j, b]`, so that 16 columns' scales of a block are
    one load; per-row scales and zero points keep their layout.
    `-moe-pack-expert-weights` forms these layouts from constant weights at
    compile time, so that the kernel needs no packing per call.

    On the CPU, experts run as two parallel loops over experts x column
    panels (up to 64 columns of float weights; quantised ones up to 128 KiB
    of packed bytes, 64-256 columns): fc1 (and fc3) with the activation
    applied to each panel as it is computed, then fc2. Panels are the outer
    dimension when experts have fewer than 16 rows on average, so that
    threads share every expert's work; experts otherwise, so that a thread
    keeps one expert's rows in cache. For quantised weights, an expert with
    at most 16 rows (decode) multiplies the packed bytes directly, each read
    once and dequantised in registers; with more rows each panel's weight
    rows are dequantised into a scratch of the panel's own for the float
    GEMM kernels.

    With `combine_into`, `row_tokens` and `row_weights` (all three or
    none) the expert also does `moe.combine`'s routed part in fc2's
    epilogue: the result is `combine_into [T, H]` plus, for every row `r`
    with `0 <= row_tokens[r] < T`, `row_weights[r] * y[r]` added to row
    `row_tokens[r]`, and no `[N, H]` row output is materialised. A token's
    rows are added in increasing row order, so the sum does not depend on
    the number of threads. `-moe-fuse-combine` forms it. On the CPU, with
    fewer than 16 rows per expert the fc2 loop runs over column panels
    only, each panel taking the experts one after the other and adding
    each block of rows to the tokens while it is in cache, so that no two
    threads update a token's columns; with more, fc2 keeps experts
    outermost (an expert's rows stay in cache across panels) into rows of
    its own, which one parallel loop over panels then adds to the tokens.

    With `gather_tokens` the expert reads its input rows in place: `rows`
    is then the tokens `[T, H]`, and dispatched row `r` is
    `rows[gather_tokens[r]]`, for the `N` rows `gather_tokens [N]` has. It
    is dispatch's `row_tokens`, and the `[N, H]` copy of the tokens that
    dispatch would make is not needed (`-moe-fuse-gather` forms it). Every
    row an expert owns must name a token in `[0, T)`; the CPU lowering
    clamps other values into range, so they read some token's row rather
    than outside `rows`. On the CPU the float GEMMs of fc1 (and fc3) load
    each row of A through its token; quantised experts copy the rows
    first.

    ```mlir
    %y = moe.expert %rows, %offsets fc1 %q1 fc2 %q2
        fc1_scales %s1 fc2_scales %s2
        {activation = #moe.activation<swiglu>,
         quant = #moe.quant<bits = 4, block_size = 32>}
        : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x32xui8>,
           tensor<4x64x64xui8>, tensor<4x256x2xf32>, tensor<4x64x4xf32>)
        -> tensor<?x64xf32>
    ```

    ```mlir
    %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2
        {activation = #moe.activation<swiglu>,
         swiglu_fusion = #moe.swiglu_fusion<interleaved>}
        : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x512x64xf32>,
           tensor<4x64x256xf32>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = !con((ins MoE_FloatTensor:$rows, MoE_IdTensor:$offsets,
                            Optional<MoE_IdTensor>:$gather_tokens,
                            MoE_ProjWeightTensor:$fc1,
                            Optional<MoE_WeightTensor>:$fc1_bias,
                            MoE_ProjWeightTensor:$fc2,
                            Optional<MoE_WeightTensor>:$fc2_bias,
                            Optional<MoE_ProjWeightTensor>:$fc3,
                            Optional<MoE_WeightTensor>:$fc3_bias),
                       QuantOperands,
                       (ins Optional<MoE_FloatTensor>:$combine_into,
                            Optional<MoE_IdTensor>:$row_tokens,
                            Optional<MoE_FloatTensor>:$row_weights),
                       ExpertAttrs,
                       (ins OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>
                            :$panel_width));
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $rows `,` $offsets (`gather_tokens` $gather_tokens^)? `fc1` $fc1
    (`fc1_bias` $fc1_bias^)? `fc2` $fc2 (`fc2_bias` $fc2_bias^)? (`fc3` $fc3^)? (`fc3_bias` $fc3_bias^)?
    (`fc1_scales` $fc1_scales^)? (`fc2_scales` $fc2_scales^)?
    (`fc3_scales` $fc3_scales^)? (`fc1_zero_points` $fc1_zero_points^)?
    (`fc2_zero_points` $fc2_zero_points^)?
    (`fc3_zero_points` $fc3_zero_points^)?
    (`combine_into` $combine_into^)? (`row_tokens` $row_tokens^)?
    (`row_weights` $row_weights^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Whether the combine's routed part is fused into fc2's epilogue.
    bool combinesRows() { return static_cast<bool>(getCombineInto()); }
    /// Whether the input rows are read in place through `gather_tokens`.
    bool gathersRows() { return static_cast<bool>(getGatherTokens()); }
    /// The operands stacked per expert along dimension 0: fc1, fc2 and
    /// whichever biases, fc3, scales and zero points are present.
    SmallVector<OpOperand *> getExpertStackedOperands();
  }];
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

def MoE_CombineOp : MoE_Op<"combine", [Pure, AttrSizedOperandSegments]> {
  let summary = "weighted scatter of expert outputs back to token order";
  let description = [{
    `out[t]` is the sum over token `t`'s slots `j` of `weights[t, j]` times
    that slot's expert output: `expert_output[slot_rows[t, j]]` for an FFN
    expert (`0 <= ids[t, j] < num_experts`), nothing for an empty
    (`-1`) slot, and for a slot that dispatch dropped for capacity nothing
    or, with `dropped_pass_through`, `input[t]` (Switch Transformers: a
    token over its expert's capacity keeps its hidden state). A slot whose
    row is not a row of `expert_output` contributes nothing either: with an
    empty (`[0, H]`) `expert_output` combine adds only the contributions
    below, which is how `-moe-fuse-combine` leaves it when `moe.expert`
    accumulates the routed experts itself. Ids from `num_experts` on name the
    zero-computation experts listed in `zero_experts`, in order: `zero`
    contributes nothing, `copy` contributes `input[t]`, and the `c`-th
    `constant` expert contributes `a1 * input[t] + a2 * constants[c]` with
    `(a1, a2) = softmax(constant_gates[c] @ input[t])` (MoE++).

    The optional `shared` output of the shared experts is added, scaled by
    `sigmoid(shared_gate . input[t])` when `shared_gate [H]` is given
    (Qwen2-MoE). `input [T, H]` is required by `copy`/`constant` experts and
    by the shared gate.

    ```mlir
    %out = moe.combine %y, %weights, %ids, %slot_rows {num_experts = 8 : i64}
        : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>,
           tensor<?x2xi32>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$expert_output,
                       MoE_FloatTensor:$weights, MoE_IdTensor:$ids,
                       MoE_IdTensor:$slot_rows,
                       Optional<MoE_FloatTensor>:$input,
                       Optional<MoE_FloatTensor>:$shared,
                       Optional<MoE_FloatTensor>:$shared_gate,
                       Optional<MoE_FloatTensor>:$constants,
                       Optional<MoE_FloatTensor>:$constant_gates,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_experts,
                       OptionalAttr<MoE_ZeroExpertArrayAttr>:$zero_experts,
                       UnitAttr:$dropped_pass_through);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $expert_output `,` $weights `,` $ids `,` $slot_rows
    (`input` $input^)? (`shared` $shared^)? (`shared_gate` $shared_gate^)?
    (`constants` $constants^)? (`constant_gates` $constant_gates^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The kinds of the zero-computation experts, in id order: id
    /// `num_experts + z` is of kind `getZeroExpertKinds()[z]`.
    ::llvm::SmallVector<ZeroExpertKind> getZeroExpertKinds();
  }];
}

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

def MoE_LayerOp : MoE_Op<"layer", [Pure, AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "a whole Mixture-of-Experts layer";
  let description = [{
    A complete MoE layer, close to ONNX Runtime's `com.microsoft.MoE`:
    `input [T, H]` or `[B, S, H]` and router `logits [T, E + Z]` (`T = B*S`)
    go through `moe.route` (route attributes, optional `score_bias`),
    `moe.dispatch` (optional `capacity_factor` or `expert_capacity`, the
    latter per sequence of a `[B, S, H]` input with `capacity_per_sequence`;
    `dropped_pass_through` as on `moe.combine`), `moe.expert` (weights
    `fc1`/`fc2`/`fc3` with optional biases and the expert attributes) and
    `moe.combine`. `E` is the number of stacked FFN experts; the `Z`
    entries of `zero_experts` are zero-computation experts routed after
    them (`constants`/`constant_gates` parameterise the `constant` ones).
    Instead of `logits`, the layer may take the router's weight,
    `router_weight [E + Z, H]`: the logits are then `input . router_weight^T`,
    computed inside the route (`-moe-fuse-router` makes this form from a
    router MatMul of the layer's input).

    Shared experts (DeepSeekMoE, Qwen-MoE) that every token visits are given
    stacked as `shared_fc1 [S, f*Is, H]`, `shared_fc2 [S, H, Is]` and, when
    the routed experts have `fc3`, `shared_fc3 [S, Is, H]`; they use the
    routed experts' activation and their outputs are summed, then scaled by
    `sigmoid(shared_gate . x)` when `shared_gate [H]` is given.

    Quantised expert weights (`quant`, `fcN_scales`, `fcN_zero_points`)
    are as on `moe.expert` (ONNX Runtime's `com.microsoft.QMoE`); shared
    experts stay float.

    With `scale_input` (Llama 4) a token's routing weight scales the rows
    its experts read instead of their outputs: `y = sum_j E_{id_j}(w_j x)`
    rather than `sum_j w_j E_{id_j}(x)`, which differ for every non-linear
    expert. Zero-computation experts, `dropped_pass_through` and
    `expert_parallel` are not supported with it.

    With `expert_parallel` the layer is one rank's part of an
    expert-parallel layer (`-moe-shard-experts`): its expert weights hold the
    rank's `ceil(E / P)` experts while `logits` still score all `E`, and
    decomposition routes the rank's tokens to the ranks that own their
    experts with `moe.all_to_all_start`/`moe.all_to_all_wait`.

    `-moe-decompose-layer` rewrites this op into the stage ops.

    ```mlir
    %out = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 fc2_bias %b2
        {k = 2 : i64, normalize, activation = #moe.activation<swiglu>,
         swiglu_fusion = #moe.swiglu_fusion<interleaved>,
         alpha = 1.702, beta = 1.0, limit = 7.0}
        : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x512x64xf32>,
           tensor<4x512xf32>, tensor<4x64x256xf32>, tensor<4x64xf32>)
        -> tensor<?x64xf32>
    ```
  }];
  let arguments = !con(
      (ins MoE_FloatTensor:$input, Optional<MoE_FloatTensor>:$logits,
           Optional<MoE_FloatTensor>:$router_weight,
           MoE_ProjWeightTensor:$fc1, Optional<MoE_WeightTensor>:$fc1_bias,
           MoE_ProjWeightTensor:$fc2, Optional<MoE_WeightTensor>:$fc2_bias,
           Optional<MoE_ProjWeightTensor>:$fc3,
           Optional<MoE_WeightTensor>:$fc3_bias),
      QuantOperands,
      (ins Optional<MoE_FloatTensor>:$score_bias,
           Optional<MoE_WeightTensor>:$shared_fc1,
           Optional<MoE_WeightTensor>:$shared_fc2,
           Optional<MoE_WeightTensor>:$shared_fc3,
           Optional<MoE_FloatTensor>:$shared_gate,
           Optional<MoE_FloatTensor>:$constants,
           Optional<MoE_FloatTensor>:$constant_gates),
      RouteAttrs, ExpertAttrs,
      (ins OptionalAttr<F64Attr>:$capacity_factor,
           OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:
               $expert_capacity,
           UnitAttr:$capacity_per_sequence,
           UnitAttr:$dropped_pass_through,
           UnitAttr:$scale_input,
           OptionalAttr<MoE_ZeroExpertArrayAttr>:$zero_experts,
           OptionalAttr<MoE_ExpertParallelAttr>:$expert_parallel));
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`,` $logits^)? (`router_weight` $router_weight^)?
    `fc1` $fc1 (`fc1_bias` $fc1_bias^)? `fc2` $fc2
    (`fc2_bias` $fc2_bias^)? (`fc3` $fc3^)? (`fc3_bias` $fc3_bias^)?
    (`fc1_scales` $fc1_scales^)? (`fc2_scales` $fc2_scales^)?
    (`fc3_scales` $fc3_scales^)? (`fc1_zero_points` $fc1_zero_points^)?
    (`fc2_zero_points` $fc2_zero_points^)?
    (`fc3_zero_points` $fc3_zero_points^)?
    (`score_bias` $score_bias^)? (`shared_fc1` $shared_fc1^)?
    (`shared_fc2` $shared_fc2^)? (`shared_fc3` $shared_fc3^)?
    (`shared_gate` $shared_gate^)? (`constants` $constants^)?
    (`constant_gates` $constant_gates^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Number of zero-computation experts routed after the FFN experts.
    int64_t getNumZeroExperts() {
      return getZeroExperts() ? getZeroExperts()->size() : 0;
    }
    /// The operands stacked per routed FFN expert along dimension 0: fc1,
    /// fc2 and whichever biases, fc3, scales and zero points are present
    /// (not the router's rows nor the shared experts).
    SmallVector<OpOperand *> getExpertStackedOperands();
  }];
}

//===----------------------------------------------------------------------===//
// Types
//===----------------------------------------------------------------------===//

def MoE_RequestType : TypeDef<MoE_Dialect, "Request"> {
  let mnemonic = "request";
  let summary = "an outstanding collective";
  let description = [{
    The handle of a collective started by `moe.all_to_all_start` and
    completed by the `moe.all_to_all_wait` that takes it.
  }];
}

//===----------------------------------------------------------------------===//
// AllToAllStartOp / AllToAllWaitOp
//===----------------------------------------------------------------------===//

def MoE_AllToAllStartOp : MoE_Op<"all_to_all_start",
    [DeclareOpInterfaceMethods<SymbolUserOpInterface>,
     AllTypesMatch<["dest", "pending"]>]> {
  let summary = "start an all-to-all-v exchange of rows";
  let description = [{
    Starts a non-blocking all-to-all-v among the processes of the
    `shard.grid` `grid` (one dimension, `P` processes). `send [N, ...]`
    holds, for each destination `p` in order, `send_counts[p]` rows;
    `recv_counts[p]` rows arrive from process `p`, in process order, into
    the rows of `dest [M, ...]` (`M` the sum of `recv_counts`). Counts are
    `tensor<P x i32>`; a row is everything after dimension 0, which must be
    static.

    The exchange is in flight until the `moe.all_to_all_wait` that takes
    `request`: `pending` is `dest` being written, whose only use is that
    wait, and `send` must stay untouched until then (the wait takes it as
    well). Splitting start and wait is what lets passes overlap the exchange
    with computation (`-moe-overlap-communication`). Lowering turns the
    pair into the runtime's `moe_rt_comm_all_to_all_v_start` and
    `moe_rt_comm_wait` (docs/ExpertParallel.md).

    ```mlir
    %req, %pending = moe.all_to_all_start %rows, %send_counts, %recv_counts
        into %dest on @moe_ep
        : tensor<?x64xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$send, MoE_IdTensor:$send_counts,
                       MoE_IdTensor:$recv_counts, AnyRankedTensor:$dest,
                       FlatSymbolRefAttr:$grid);
  let results = (outs MoE_RequestType:$request, AnyRankedTensor:$pending);
  let assemblyFormat = [{
    $send `,` $send_counts `,` $recv_counts `into` $dest `on` $grid attr-dict
    `:` type($send) `,` type($send_counts) `,` type($recv_counts) `into`
    type($dest)
  }];
  let builders = [OpBuilder<(ins "Value":$send, "Value":$sendCounts,
                                "Value":$recvCounts, "Value":$dest,
                                "FlatSymbolRefAttr":$grid), [{
    build($_builder, $_state, RequestType::get($_builder.getContext()),
          dest.getType(), send, sendCounts, recvCounts, dest, grid);
  }]>];
  let hasVerifier = 1;
}

def MoE_AllToAllWaitOp : MoE_Op<"all_to_all_wait",
    [AllTypesMatch<["pending", "result"]>]> {
  let summary = "complete an all-to-all-v exchange";
  let description = [{
    Waits for the exchange `request` of a `moe.all_to_all_start` and returns
    the received rows: `pending` (that start's result) now filled. `send`
    is the start's send tensor, taken so that its buffer lives until the
    exchange is complete.

    ```mlir
    %recv = moe.all_to_all_wait %req, %pending, %rows
        : tensor<?x64xf32>, tensor<?x64xf32>
    ```
  }];
  let arguments = (ins MoE_RequestType:$request, AnyRankedTensor:$pending,
                       AnyRankedTensor:$send);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $request `,` $pending `,` $send attr-dict `:` type($pending) `,`
    type($send)
  }];
  let builders = [OpBuilder<(ins "Value":$request, "Value":$pending,
                                "Value":$send), [{
    build($_builder, $_state, pending.getType(), request, pending, send);
  }]>];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// RecordRoutingOp
//===----------------------------------------------------------------------===//

def MoE_RecordRoutingOp : MoE_Op<"record_routing"> {
  let summary = "hand a layer's routing decisions to the routing profile";
  let description = [{
    Passes the expert ids `[T, k]` that a `moe.route` chose (`-1` for an
    empty slot) to the runtime's routing profile as layer `layer` of
    `num_experts` experts: the runtime counts tokens per expert and pairs of
    experts chosen together (`moe-run --routing-profile`,
    docs/RoutingProfiles.md). `-moe-record-routing` inserts one after every
    route; it lowers to a call of the runtime's `moe_rt_record_routing`,
    which ignores it unless a profile is being recorded.

    With `predicted` the ids are not layer `layer`'s choice but a guess of
    it made earlier (pre-gating: layer `layer`'s router run on the previous
    layer's tokens); the runtime keeps them until layer `layer` reports its
    choice and counts how many of the chosen experts were predicted. It
    lowers to `moe_rt_record_predicted_routing`.

    ```mlir
    moe.record_routing %ids {layer = 0 : i64, num_experts = 8 : i64}
        : tensor<?x2xi32>
    moe.record_routing %guess {layer = 1 : i64, num_experts = 8 : i64,
                               predicted} : tensor<?x2xi32>
    ```
  }];
  let arguments = (ins MoE_IdTensor:$ids,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$layer,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_experts,
                       UnitAttr:$predicted);
  let assemblyFormat = "$ids attr-dict `:` type($ids)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// PrefetchExpertsOp
//===----------------------------------------------------------------------===//

def MoE_PrefetchExpertsOp : MoE_Op<"prefetch_experts"> {
  let summary = "hint that some experts' weights are about to be read";
  let description = [{
    Tells the runtime that the experts named in `ids` (`[T, k]`, as a
    `moe.route` returns them; `-1` and ids past the experts are ignored)
    of layer `layer` are about to be read from `weights`, expert-stacked
    tensors (dimension 0 is the expert) that the module holds as
    constants. It changes no value: it lowers, per weight, to a call of the
    runtime's `moe_rt_prefetch_experts` with the weight's address and the
    bytes of one expert, and the runtime's expert cache reads those experts'
    pages ahead on a worker thread and, under a weights memory budget,
    evicts the experts used longest ago (docs/Runtime.md, "Expert cache").

    With `predicted` the ids are a guess made a layer early (layer
    `layer`'s router run on the previous layer's tokens, as
    `-moe-prefetch-experts` builds it), so that the reads overlap the
    previous layer's compute; without it they are the layer's own choice.

    ```mlir
    moe.prefetch_experts %ids, %fc1, %fc2 {layer = 0 : i64}
        : tensor<?x2xi32>, tensor<8x512x64xf32>, tensor<8x64x256xf32>
    moe.prefetch_experts %guess, %fc1_next, %fc2_next {layer = 1 : i64,
        predicted} : tensor<?x2xi32>, tensor<8x512x64xf32>,
        tensor<8x64x256xf32>
    ```
  }];
  let arguments = (ins MoE_IdTensor:$ids,
                       Variadic<AnyRankedTensor>:$weights,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$layer,
                       UnitAttr:$predicted);
  let assemblyFormat = [{
    $ids `,` $weights attr-dict `:` type($ids) `,` type($weights)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// ParallelCallOp
//===----------------------------------------------------------------------===//

def MoE_ParallelCallOp : MoE_Op<"parallel_call",
    [DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "run an outlined loop body on the runtime's worker pool";
  let description = [{
    A lowering-level op, produced by `-moe-outline-parallel-loops` from a
    parallel loop: calls `callee(captures..., begin, end)` on chunks
    `[begin, end)` that partition `[0, count)`, possibly concurrently on the
    runtime's worker pool (`moe_rt_parallel_for`, docs/Runtime.md), and
    returns when all chunks are done. The callee must not depend on how the
    range is split. Lowering to LLVM packs the captures into a stack context
    and emits a trampoline that unpacks them.

    ```mlir
    moe.parallel_call @body(%a, %b) count(%n) : memref<?x64xf32>, f32
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$callee, Index:$count,
                       Variadic<AnyType>:$captures);
  let assemblyFormat = [{
    $callee `(` $captures `)` `count` `(` $count `)` attr-dict
    (`:` type($captures)^)?
  }];
}

#endif // MOE_OPS_TD
