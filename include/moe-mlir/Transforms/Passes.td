//===- Passes.td - moe-mlir transformation passes -----------*- tablegen -*-===//

#ifndef MOE_TRANSFORMS_PASSES_TD
#define MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoEDecomposeLayer : Pass<"moe-decompose-layer"> {
  let summary = "Decompose moe.layer into route, dispatch, expert and combine";
  let description = [{
    Rewrites every `moe.layer` into the four stage ops so that each stage can
    be fused and lowered on its own:

    ```
    moe.route    logits, or tokens and
                 router_weight [+ score_bias]  -> weights, ids
    moe.dispatch input, ids                    -> rows, offsets, row_tokens,
                                                  slot_rows
    moe.expert   rows, offsets, fc1/fc2/fc3    -> expert output
    moe.combine  expert output, weights, ids,
                 slot_rows [+ input, shared,
                 constants]                    -> output
    ```

    Shared experts become one `moe.expert` per shared expert over all tokens
    (a single expert owning rows `[0, T)`), summed with `linalg.add` and
    handed to `moe.combine`. A `[B, S, H]` input is collapsed to `[B*S, H]` around the
    stages and expanded back.

    Half-precision tokens are widened to f32 for the stages, so that the
    routing weights and expert outputs are not rounded on the way. With
    `bf16-rows`, bf16 tokens of a layer with bf16 routed-expert weights are
    dispatched as bf16 rows instead (widening is exact, so only the bytes
    moved and the GEMM's operand types change), while the expert outputs
    stay f32: the CPU pipeline sets it where `vdpbf16ps` multiplies bf16 by
    bf16; the bf16 shared experts read the bf16 tokens too. With
    `round-f32-rows` as well, f32 tokens of such a layer (bf16 weights of
    an f32 model, from `-moe-convert-expert-weights`) are rounded to bf16
    rows the same way: bf16's precision, which that pass's user has chosen;
    without it they stay f32, so that bf16 weights alone never round a
    model's activations.

    A layer given its `router_weight` instead of logits becomes a
    `moe.route` that computes the logits itself (see `-moe-fuse-router`);
    with `fuse-router=false` (the cuda target, and A/B measurements), a
    separate transposed-B `linalg.generic` computes them first.

    An expert-parallel layer (`#moe.expert_parallel`, from
    `-moe-shard-experts`) exchanges its rows with the ranks that own their
    experts through `moe.all_to_all_start` / `moe.all_to_all_wait`
    (docs/ExpertParallel.md). With `ep-dispatch=expert` a token travels
    once per chosen expert and every expert output comes back; with
    `ep-dispatch=rank` it travels once per rank owning any of its experts,
    with its ids and routing weights, and the rank returns one row, the
    weighted sum of its experts' outputs: fewer bytes whenever a token's
    experts share a rank, for one more exchange (the ids and weights).
    Layers that pass dropped tokens through keep the per-expert form.
  }];
  let options = [
    Option<"bf16Rows", "bf16-rows", "bool", /*default=*/"false",
           "Dispatch bf16 tokens as bf16 rows for bf16 expert weights">,
    Option<"roundF32Rows", "round-f32-rows", "bool", /*default=*/"false",
           "With bf16-rows, round f32 tokens to bf16 rows for bf16 expert "
           "weights too (bf16's precision, which "
           "-moe-convert-expert-weights has chosen)">,
    Option<"fuseRouter", "fuse-router", "bool", /*default=*/"true",
           "Keep a layer's router weight in moe.route (false: a separate "
           "MatMul computes the logits first)">,
    Option<"epDispatch", "ep-dispatch", "std::string", /*default=*/"\"expert\"",
           "Expert-parallel layers: send a row per token and expert "
           "('expert') or per token and destination rank ('rank')">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::tensor::TensorDialect"];
}

def MoEFuseRouter : Pass<"moe-fuse-router"> {
  let summary = "Fold the router's MatMul into moe.layer / moe.route";
  let description = [{
    Rewrites a `moe.layer` or `moe.route` whose logits are a MatMul of
    tokens by a router weight (the transposed-B `linalg.generic`
    `logits[t, e] = sum_h x[t, h] * w[e, h]` on a zero-filled `[T, E]`
    tensor, as the importer builds it for an ONNX MatMul or Gemm by a
    weight) into the form that takes the weight, `router_weight`:

    ```
    logits = linalg.generic x, w  (transposed-B contraction)
    y = moe.layer x, logits fc1 ...
    weights, ids = moe.route logits
    ```
    becomes
    ```
    y = moe.layer x router_weight w fc1 ...
    weights, ids = moe.route x router_weight w
    ```

    A layer is rewritten when the MatMul reads the layer's own input (or
    its `[B*S, H]` collapse); a route takes whatever tokens the MatMul
    reads. The logits must have no other use, operands and result one
    element type, and the expert count must be static.

    The fused route lowers (CPU) to one parallel loop over blocks of 12
    tokens, each computing its `[12, E]` logits with the GEMM kernel into a
    scratch of its own and routing them while they are in L1: the `[T, E]`
    logits are never written out and read back, and the router's MatMul and
    the routing are one worker-pool dispatch instead of two. The cuda target
    takes the unfused form.
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

def MoEGroupSharedExperts : Pass<"moe-group-shared-experts"> {
  let summary = "Run shared experts in the routed experts' grouped schedule";
  let description = [{
    Decomposition gives every shared expert (DeepSeekMoE, Qwen-MoE) a
    `moe.expert` of its own over all tokens, whose output `moe.combine`
    adds to the routed experts' (`shared`, scaled by the shared gate's
    `sigmoid(shared_gate . x)` where there is one). That is two more
    parallel loops per shared expert, a `[T, H]` output written and read
    back, and expert panels too few at decode to keep both threads busy.

    An FFN's intermediate columns do not interact: a shared expert of
    intermediate size `Is` is the sum of `ceil(Is / I)` FFNs of the routed
    experts' size `I`, each over a slice of its columns (SwiGLU's gate and
    linear rows stay together; a partial last slice is padded with zero
    weights, which add nothing). With constant weights this pass appends
    those slices to the routed experts' stacked weights (zero biases where
    the routed experts have biases) and routes every token to each of them:

    ```
    ids'     [T, k + C] = ids, then E, E + 1, ..., E + C - 1
    weights' [T, k + C] = weights, then sigmoid(shared_gate . x) (or 1)
    rows, offsets, row_tokens, slot_rows = moe.dispatch x, ids'
                                           {num_experts = E + C}
    y = moe.expert rows, offsets  (E + C experts)
    out = moe.combine y, weights', ids', slot_rows {num_experts = E + C}
    ```

    so that one grouped schedule runs the routed and the shared work, and
    `-moe-fuse-combine` adds both in fc2's epilogue. Zero-computation
    experts' ids move up by `C`. The sum runs in another order than
    before, so results match to rounding. `moe-compile
    --group-shared-experts` runs it (off by default: against separate
    shared experts it measured within this machine's run-to-run noise,
    0.83-1.16x over runs and layers, benchmarks/RESULTS.md).

    A layer is left as it is unless its routed experts are float (not
    quantised), not yet fused with their gather or combine, every
    projection and bias of the routed and shared experts is a constant of
    one element type, the shared experts read the tokens the routed ones
    are dispatched from, dispatch has no capacity limit, and the padding
    is at most `max-padding` times the shared experts' intermediate size.
    Expert-parallel layers (routed outputs from an exchange) are not
    matched.
  }];
  let options = [
    Option<"maxPadding", "max-padding", "double", "0.25",
           "Largest share of zero-padded intermediate columns, over the "
           "shared experts' own, that grouping may add">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::tensor::TensorDialect"];
}

def MoEFuseCombine : Pass<"moe-fuse-combine"> {
  let summary = "Fold moe.combine's routed part into moe.expert's fc2 "
                "epilogue";
  let description = [{
    Rewrites a `moe.combine` of a `moe.expert`'s output, both fed by one
    `moe.dispatch`, so that the expert scales each row of fc2's output by
    its routing weight and adds it to its token's row of the layer output
    (`moe.expert` with `combine_into`, `row_tokens` and `row_weights`): the
    `[T*k, H]` expert output is never written and read back, and the
    combine's separate pass over it disappears.

    ```
    rows, offsets, row_tokens, slot_rows = moe.dispatch x, ids
    y = moe.expert rows, offsets ...
    out = moe.combine y, weights, ids, slot_rows [extras]
    ```
    becomes
    ```
    row_weights[r] = weights[t, j] where slot_rows[t, j] = r,
                     t = row_tokens[r]                  (a linalg.generic)
    base = zeros [T, H]; the shared experts' output when they are not
           gated and there is nothing else; or moe.combine of an empty
           [0, H] expert output with the extras (gated shared experts,
           zero-computation experts, dropped tokens passed through)
    out = moe.expert rows, offsets ... combine_into base
              row_tokens row_tokens row_weights row_weights
    ```

    Each token's rows are added in increasing row order (by expert, then
    token), whatever the number of threads: the result is deterministic,
    but sums in another order than `moe.combine`'s (by slot), so it
    matches the unfused layer to rounding. Only f32 outputs are fused (a
    narrower accumulator would be rounded at every row); expert-parallel
    layers, whose expert outputs arrive through `moe.all_to_all_wait`, are
    left as they are.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def MoEFuseGather : Pass<"moe-fuse-gather"> {
  let summary = "Let moe.expert read its input rows in place through "
                "dispatch's row tokens";
  let description = [{
    Rewrites a `moe.expert` whose rows and offsets come from one
    `moe.dispatch` so that it reads the tokens themselves, row `r` being
    token `row_tokens[r]` (`moe.expert` with `gather_tokens`):

    ```
    rows, offsets, row_tokens, slot_rows = moe.dispatch x, ids
    y = moe.expert rows, offsets fc1 ...
    ```
    becomes
    ```
    rows, offsets, row_tokens, slot_rows = moe.dispatch x, ids
    y = moe.expert x, offsets gather_tokens row_tokens fc1 ...
    ```

    Dispatch's `rows` are then unused, and its lowering does not copy the
    tokens into them: the `[T*k, H]` copy, written by one thread and read
    back by fc1, is gone. On the CPU the float expert GEMMs look up each
    register block's rows of A once, through the tokens. Experts on int8
    activations (`-moe-int8-activations`) quantise the tokens' rows once
    (not once per expert that took them: k times fewer rows) and their
    kernels read each row's codes through the tokens likewise (int4
    Qwen3-30B-A3B / 2 1.2x at T = 512, benchmarks/RESULTS.md). Other
    quantised experts copy their rows inside the expert (the fused decode
    kernel reads rows staged anyway), so they gain nothing and lose
    nothing. Expert-parallel
    layers, whose rows arrive through `moe.all_to_all_wait`, are left as
    they are. Composes with `-moe-fuse-combine` in either order.
  }];
}

def MoEInt8Activations : Pass<"moe-int8-activations"> {
  let summary = "Quantised experts on int8 activations (AVX512-VNNI)";
  let description = [{
    Marks each quantised `moe.expert` (`#moe.quant`, 4 or 8 bits) that the
    int8 kernels can run with the discardable attribute
    `moe.int8_activations`. The CPU lowering then multiplies differently:
    each projection's input rows are quantised once to int8 with a scale
    per weight block (per row for per-row scales), `q = round(a * 127 /
    amax)`, the way llama.cpp's Q8 path and ONNX Runtime's accuracy level 4
    do, and every 64 weight bytes meet them in `vpdpbusd` (unsigned weight
    codes times signed activation codes, four products per i32 lane), where
    the float kernel converts and multiplies each weight on its own. The
    integer sums are exact; floats appear once per weight block. Experts
    of fewer than 32 rows (17 where a weight scale covers less than 64
    bytes) take dot products along each weight row (one activation vector
    per 64 weight bytes); larger ones take outer products: each panel of
    weight columns is first rearranged in a scratch so that one 64-byte
    load holds the same 4 weight bytes of 16 columns, which `vpdpbusd`
    multiplies (4-bit weights: the low nibbles, then the high ones) by an
    activation row's 4 codes broadcast, in register blocks of 6 rows (3
    with several weight blocks per row; the last rows in blocks of 4, 2
    and 1) by 64 columns, while the weights after the panel's are
    prefetched for the next one, a few lines with each step along K.
    Constant weights that
    `-moe-pack-expert-weights` has stored in that layout (`panel_width`)
    take the outer products at every row count, with no rearranging.

    This changes the numbers: the activations carry a rounding error of up
    to amax / 254 per block, which moves the layer's output by about 1% of
    its largest magnitude (0.6-2.1% on the e2e-int8 cases against a
    float64 reference, the most with per-row scales; 3.5% on int8
    Mixtral-8x7B / 4 at 512 tokens, one scale per 1024 columns, and 0.8%
    on 4-bit Qwen3-30B-A3B / 2, blocks of 32, against the float kernel;
    benchmarks/RESULTS.md). A projection whose layout the kernels do not
    take keeps the float kernel: explicit zero points, a K that is not a
    whole number of 64-byte steps, blocks that are not a multiple of 32
    columns or that straddle 64-byte steps.

    The kernel writes vpdpbusd's semantics in portable vector ops;
    -moe-x86-vnni-dot emits the instruction (`moe-compile
    --int8-activations` asks for a target with AVX512-VNNI).
  }];
}

def MoEPrefetchExperts : Pass<"moe-prefetch-experts",
                              "::mlir::func::FuncOp"> {
  let summary = "Read each layer's experts, and the next layer's guessed "
                "ones, ahead from the module's weights";
  let description = [{
    For weights larger than memory: inserts after every `moe.route` whose
    routed `moe.expert` has constant weights a `moe.prefetch_experts` of the
    route's ids and those weights, so that the runtime's expert cache starts
    reading the chosen experts' pages before the tokens are gathered
    (docs/Runtime.md, "Expert cache"; `moe-compile --prefetch-experts`).
    Routes are numbered from 0 in the order they appear, as
    `-moe-record-routing` numbers them.

    With `pre-gating` (the default) it also guesses the next layer's choice
    as `-moe-record-routing` does (the next route's router run on this
    route's tokens, where both routes take their router weight) and
    prefetches the guessed experts of the next layer's weights
    (`predicted`), a whole layer of compute ahead of their use.

    ```mlir
    %w0, %ids0 = moe.route %x router_weight %r0 {k = 2 : i64} : ...
    ```
    becomes
    ```mlir
    %w0, %ids0 = moe.route %x router_weight %r0 {k = 2 : i64} : ...
    moe.prefetch_experts %ids0, %fc1_0, %fc2_0 {layer = 0 : i64} : ...
    %gw, %guess = moe.route %x router_weight %r1 {k = 2 : i64} : ...
    moe.prefetch_experts %guess, %fc1_1, %fc2_1 {layer = 1 : i64,
                                                 predicted} : ...
    ```

    Expert weights that are function arguments are the caller's memory and
    are not prefetched; expert-parallel layers are left alone.
  }];
  let options = [
    Option<"preGating", "pre-gating", "bool", /*default=*/"true",
           "Also prefetch the next layer's experts as guessed from this "
           "layer's tokens">,
  ];
}

def MoERecordRouting : Pass<"moe-record-routing", "::mlir::ModuleOp"> {
  let summary = "Record every route's expert choices in the routing profile";
  let description = [{
    Inserts a `moe.record_routing` after every `moe.route`, numbering the
    routes of each function from 0 in the order they appear (a decoder's
    layers), so that a run of the module can record its routing profile:
    tokens per expert and pairs of experts chosen together, per layer
    (`moe-compile --record-routing`, then `moe-run --routing-profile=FILE`;
    docs/RoutingProfiles.md).

    ```mlir
    %weights, %ids = moe.route %logits {k = 2 : i64} : ...
    ```
    becomes
    ```mlir
    %weights, %ids = moe.route %logits {k = 2 : i64} : ...
    moe.record_routing %ids {layer = 0 : i64, num_experts = 8 : i64}
        : tensor<?x2xi32>
    ```

    With `pre-gating` (the default) each route whose tokens and router
    weight are operands (`router_weight`, as `-moe-fuse-router` leaves
    them) also runs the next route's router on its own tokens and reports
    that guess of the next layer's choice (`moe.record_routing` with
    `predicted`): the profile then counts how many of layer L + 1's experts
    its router picks from layer L's input already, what pre-gated expert
    prefetching relies on (Pre-gated MoE). The guess is made only where the
    next route's router weight (and score bias) is available there: a
    function argument, or a constant, which is copied.

    ```mlir
    %w0, %ids0 = moe.route %x router_weight %r0 {k = 2 : i64} : ...
    %w1, %ids1 = moe.route %h router_weight %r1 {k = 2 : i64} : ...
    ```
    becomes
    ```mlir
    %w0, %ids0 = moe.route %x router_weight %r0 {k = 2 : i64} : ...
    moe.record_routing %ids0 {layer = 0 : i64, num_experts = 8 : i64} : ...
    %gw, %guess = moe.route %x router_weight %r1 {k = 2 : i64} : ...
    moe.record_routing %guess {layer = 1 : i64, num_experts = 8 : i64,
                               predicted} : ...
    %w1, %ids1 = moe.route %h router_weight %r1 {k = 2 : i64} : ...
    moe.record_routing %ids1 {layer = 1 : i64, num_experts = 8 : i64} : ...
    ```

    The call costs a few microseconds per layer and run when no profile is
    being recorded, the guess one router GEMM per layer; modules for
    profiling are compiled with them, deployed ones without.
  }];
  let options = [
    Option<"preGating", "pre-gating", "bool", /*default=*/"true",
           "Also report each next layer's router run on this layer's "
           "tokens (pre-gating accuracy)">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect"];
}

def MoEPruneExperts : Pass<"moe-prune-experts", "::mlir::ModuleOp"> {
  let summary = "Drop each layer's least-used experts, by a routing profile";
  let description = [{
    Removes from every `moe.layer` the `prune` FFN experts that the routing
    profile `profile` (docs/RoutingProfiles.md, `moe-run
    --routing-profile`) saw take the fewest tokens in that layer (ties drop
    the higher index), as MC-SMoE and expert-pruning work do with a
    calibration set. Layers are numbered per function in order, as the
    profile numbers routes. The experts' weights (with their biases, scales
    and zero points) lose those experts, and so do the router weight's rows
    and the score bias: the route scores only the kept experts, so softmax
    renormalises over them and top-k picks among them; ids are renumbered
    in order (zero-computation experts stay after the FFN experts).

    ```mlir
    %y = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 {k = 2 : i64}
        : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x256x64xf32>,
           tensor<8x64x128xf32>) -> tensor<?x64xf32>
    ```
    with `prune=2` and a profile in which experts 3 and 6 took the fewest
    tokens becomes the same layer on `tensor<6x64xf32>`,
    `tensor<6x256x64xf32>` and `tensor<6x64x128xf32>` constants holding
    experts 0, 1, 2, 4, 5, 7. A remark per layer names the dropped experts
    and the share of the profile's routed tokens they took.

    The weights must be constants and the router the layer's weight
    (`router_weight`, which `-moe-fuse-router` makes of a router MatMul);
    layers with group-limited routing, expert parallelism, or fewer than
    `k` experts left are refused, as is a profile without the layer or
    with another number of experts for it.
  }];
  let options = [
    Option<"profile", "profile", "std::string", /*default=*/"",
           "Routing profile (JSON) whose token counts choose the experts">,
    Option<"prune", "prune", "int64_t", /*default=*/"0",
           "FFN experts to drop from every layer">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def MoEMergeExperts : Pass<"moe-merge-experts", "::mlir::ModuleOp"> {
  let summary = "Fold each layer's least-used experts into similar ones, by "
                "a routing profile";
  let description = [{
    Merges, in every `moe.layer`, the `merge` FFN experts that the routing
    profile `profile` saw take the fewest tokens (ties: the higher index)
    into the remaining ones: each joins the kept expert whose router row has
    the highest cosine similarity to its own (ties: the lower index), and
    every group's weights (biases, fc3 too), router rows and score biases
    become their average weighted by the tokens each member took in the
    profile (evenly when none took any). The merged experts are gone, as
    with `-moe-prune-experts`, but what they computed lives on in the
    averages (MC-SMoE merges by usage-weighted averaging the same way).
    Layers are numbered per function in order, as the profile numbers
    routes. A remark per layer says which expert went into which.

    ```mlir
    %y = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 {k = 2 : i64}
        : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x256x64xf32>,
           tensor<8x64x128xf32>) -> tensor<?x64xf32>
    ```
    with `merge=1` and a profile in which expert 3 took 10 tokens and
    expert 5 (the most similar router row) 30, becomes a layer of 7
    experts whose fifth (old 5) is `0.25 * old 3 + 0.75 * old 5` in every
    weight and in the router row.

    Needs what `-moe-prune-experts` needs (constant weights, the router as
    the layer's weight, no groups, no expert parallelism, k experts left),
    and f32 or bf16 weights: quantised experts cannot be averaged.
  }];
  let options = [
    Option<"profile", "profile", "std::string", /*default=*/"",
           "Routing profile (JSON) whose token counts choose and weigh the "
           "experts">,
    Option<"merge", "merge", "int64_t", /*default=*/"0",
           "FFN experts to fold into others in every layer">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def MoEConvertExpertWeights : Pass<"moe-convert-expert-weights"> {
  let summary = "Store the constant f32 expert weights of moe.layer ops as "
                "bf16";
  let description = [{
    Rounds the constant f32 expert weights of every `moe.layer` (`fc1`,
    `fc2`, `fc3` and their biases; the shared experts' `shared_fc1..3`
    likewise, as a group of their own) to bf16 at compile time, to the
    nearest value with ties to even:

    ```
    %w1 = arith.constant dense<...> : tensor<8x2048x768xf32>
    %y = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 ... : (...) -> tensor<?x768xf32>
    ```
    becomes
    ```
    %w1 = arith.constant dense<...> : tensor<8x2048x768xbf16>
    %y = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 ... : (...) -> tensor<?x768xf32>
    ```

    The weights then take half the memory and half the bandwidth, and
    `-moe-decompose-layer` with `bf16-rows` and `round-f32-rows` (the CPU
    pipeline with AVX512-BF16 sets both with this pass) dispatches the f32
    tokens rounded to bf16 so that
    `vdpbf16ps` multiplies bf16 by bf16, accumulating in f32; the cuda
    target's tensor-core kernels take bf16 weights the same way. The
    layer's input, routing (the router weight stays f32), expert outputs
    and combine stay f32. The results change by bf16's rounding (about
    2^-9 of a weight; measured in benchmarks/RESULTS.md), so this is an
    option (`moe-compile --weight-type=bf16`, which also runs
    `-moe-convert-matmul-weights`), not a default.

    A group is converted only when every weight and bias it has is an f32
    constant with its elements at hand (dense elements or a dense
    resource); quantised layers and weights that are function arguments are
    left as they are. The old constants are erased once unused, and their
    resource blobs released.
  }];
  let options = [
    Option<"elementType", "element-type", "std::string", "\"bf16\"",
           "Element type of the converted weights (only 'bf16')">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def MoEConvertMatmulWeights : Pass<"moe-convert-matmul-weights"> {
  let summary = "Multiply by constant f32 matmul weights as bf16";
  let description = [{
    The dense counterpart of `-moe-convert-expert-weights`: every
    transposed-B contraction `C[..., n] += A[..., k] * B[n, k]` of f32
    tensors whose `B` is a constant (the projections and the LM head of a
    decoder, as the importer writes them) gets a bf16 `B`, rounded to
    nearest with ties to even at compile time, and an `A` rounded to bf16
    elementwise before it; the body widens both, so products and sums stay
    f32, which is what AVX512-BF16's `vdpbf16ps` (the CPU's dot-product
    kernel with `bf16-dot`) computes:

    ```
    %y = linalg.generic {...} ins(%x, %w : tensor<?x768xf32>, tensor<8192x768xf32>) ...
        %p = arith.mulf %a, %b : f32
    ```
    becomes
    ```
    %xb = linalg.generic {...} ins(%x : tensor<?x768xf32>) outs(... : tensor<?x768xbf16>)
    %y = linalg.generic {...} ins(%xb, %wb : tensor<?x768xbf16>, tensor<8192x768xbf16>) ...
        %p = arith.mulf (arith.extf %a), (arith.extf %b) : f32
    ```

    A contraction whose result a `moe.route` or `moe.layer` reads (router
    logits) stays f32, as do contractions of other forms. The old
    constants are erased once unused. `moe-compile --weight-type=bf16` runs
    it with `-moe-convert-expert-weights`, after the fusions that read the
    f32 contractions (router, attention).
  }];
  let options = [
    Option<"elementType", "element-type", "std::string", "\"bf16\"",
           "Element type of the converted weights (only 'bf16')">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def MoEWidenHalfAccumulators : Pass<"moe-widen-half-accumulators"> {
  let summary = "Accumulate f16 and bf16 reductions in f32";
  let description = [{
    A model exported in half precision has its matmuls, norms' sums and
    softmax's sums imported as `linalg.generic` reductions into f16 or bf16
    tensors, so every step of the reduction rounds the running sum to the
    half type (and without AVX512-FP16 each f16 multiply-add is computed
    through f32 and rounded back). Every reduction on tensors whose results
    are all of one half type, and whose body is elementwise float
    arithmetic (arith, math), comparisons, selects and conversions, is
    rebuilt with f32 results: half operands are widened in the body, half
    constants become f32 ones, conversions between the half type and f32
    vanish, and each result is rounded to the half type once, after the
    reduction:

    ```
    %y = linalg.generic {... "reduction"]} ins(%x, %w : tensor<?x768xf16>, tensor<256x768xf16>)
           outs(%zeros : tensor<?x256xf16>) {
      ^bb0(%a: f16, %b: f16, %acc: f16):
        %p = arith.mulf %a, %b : f16
        %s = arith.addf %acc, %p : f16
        linalg.yield %s : f16
    }
    ```
    becomes
    ```
    %y32 = linalg.generic {... "reduction"]} ins(%x, %w : tensor<?x768xf16>, tensor<256x768xf16>)
             outs(%zeros32 : tensor<?x256xf32>) {
      ^bb0(%a: f16, %b: f16, %acc: f32):
        %a32 = arith.extf %a : f16 to f32
        %b32 = arith.extf %b : f16 to f32
        %p = arith.mulf %a32, %b32 : f32
        %s = arith.addf %acc, %p : f32
        linalg.yield %s : f32
    }
    %y = linalg.generic {...} ins(%y32 : tensor<?x256xf32>) outs(... : tensor<?x256xf16>)  // arith.truncf
    ```

    A fill of a constant init becomes the same fill in f32, an init the
    body never reads an empty f32 tensor, any other init is widened
    elementwise. The contraction kernels take the result as they take
    bf16 weights: f16 operands widened as they are loaded, bf16 pairs on
    `vdpbf16ps`. This is how ONNX Runtime's and cuBLAS's half GEMMs
    accumulate; results differ from per-step rounding by less than one
    rounding of the half type per step. Reductions with other results
    (integer, f32, mixed) or other ops in their bodies are left alone.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def MoEPackExpertWeights : Pass<"moe-pack-expert-weights"> {
  let summary = "Store constant expert weights panel-major at compile time";
  let description = [{
    Rewrites the constant f32 weights of every `moe.expert` (fc1, fc2 and
    fc3, `[E, N, K]` out-major) into panels of `panel-width` output
    columns, `[E, N / P, K, P]`, and sets the expert's `panel_width`
    (bf16 weights, with `pack-bf16`: `[E, N / P, K / 2, P, 2]`, pairs of k
    side by side as `vdpbf16ps` multiplies them):

    ```
    %w1 = arith.constant dense<...> : tensor<8x2048x768xf32>
    %y = moe.expert %x, %offsets fc1 %w1 fc2 %w2 ...
    ```
    becomes
    ```
    %p1 = arith.constant dense<...> : tensor<8x32x768x64xf32>
    %y = moe.expert %x, %offsets fc1 %p1 fc2 %p2 ... {panel_width = 64}
    ```

    Each panel is then the `[K, P]` matrix that the CPU's outer-product
    GEMM kernel reads along its columns (four 16-lane vectors per step of
    k for P = 64), so the experts' GEMMs use that kernel at every row count
    without transposing weight panels at run time: that packing read and
    rewrote every weight once per call, and cost about as much as a third
    of the experts' GEMM time at 128 rows per expert (benchmarks/
    RESULTS.md). Products of one to three rows (decode) read each panel as
    several runs of k at once, so that a thread keeps enough cache misses
    in flight. The CPU pipeline runs this pass by default with AVX-512
    (`moe-compile --pack-expert-weights=false` turns it off). Constants only (an AOT compile sees the model's weights);
    weights that are function arguments keep the runtime path.

    With `pack-quantized`, the packed bytes of quantised experts that the
    int8 kernels of `-moe-int8-activations` multiply (marked
    `moe.int8_activations`, no zero points) go in words of 4 bytes,
    `[E, N / P, Kb / 4, P, 4]` for `Kb` bytes per row: 16 columns of a
    panel row are the 64 bytes that `vpdpbusd` multiplies by an
    activation's 4 codes broadcast. Their panel kernel then runs at every
    row count without rearranging each panel's weights per call (a 16 x 16
    transpose of 4-byte words per 1 KiB of weights). Scales keep their
    layout.

    f16 weights of an expert whose rows are f32 (a half-precision model's:
    decomposition widens its tokens) take the f32 layout in f16, which the
    kernel widens as it loads each panel row.

    An expert is left as it is unless every weight is an f32 constant, an
    f16 constant of an expert with f32 rows, or
    with `pack-bf16` a bf16 constant of an expert whose rows are bf16 and
    whose K are even, or with `pack-quantized` a quantised constant of an
    expert the int8 kernels run with P a multiple of 16 (dense elements or
    a dense resource), and its intermediate and hidden sizes split into the
    CPU schedule's column panels as whole weight panels (for P = 64: both
    multiples of 64). The old constants are erased once unused, and their
    resource blobs released.
  }];
  let options = [
    Option<"panelWidth", "panel-width", "int64_t", "64",
           "Output columns per weight panel (the CPU kernel vectorizes "
           "multiples of 16 up to 64; other widths run as plain loops)">,
    Option<"packBf16", "pack-bf16", "bool", "true",
           "Also pack bf16 weights, in pairs of k (for AVX512-BF16's "
           "vdpbf16ps; without it their kernel runs as plain loops)">,
    Option<"packQuantized", "pack-quantized", "bool", "true",
           "Also pack the quantised weights of experts marked "
           "moe.int8_activations, in 4-byte words (for AVX512-VNNI's "
           "vpdpbusd)">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def MoEPackMatmulWeights : Pass<"moe-pack-matmul-weights"> {
  let summary = "Store constant matmul weights panel-major at compile time";
  let description = [{
    Rewrites the matmuls by constant weights outside the experts (a
    decoder's attention projections, its dense MLPs, the LM head: the
    importer's `C[rows..., n] += A[rows..., k] * W[n, k]` contractions, W
    an `[N, K]` constant) so that they read W panel-major,
    `[N / P, K, P]` at `(n floordiv P, k, n mod P)`, as
    -moe-pack-expert-weights stores the experts' weights (bf16 weights of
    bf16 rows in pairs of k, `[N / P, K / 2, P, 2]` with k split into two
    loops):

    ```
    %w = arith.constant dense<...> : tensor<2048x1024xf32>
    %y = linalg.generic {indexing_maps = [(m, n, k) -> (m, k),
                                          (m, n, k) -> (n, k),
                                          (m, n, k) -> (m, n)], ...}
        ins(%x, %w : ...) outs(%zero : tensor<?x2048xf32>)
    ```
    becomes
    ```
    %w = arith.constant dense<...> : tensor<32x1024x64xf32>
    %y = linalg.generic {indexing_maps = [(m, n, k) -> (m, k),
                                          (m, n, k) -> (n floordiv 64, k, n mod 64),
                                          (m, n, k) -> (m, n)], ...}
    ```

    -moe-vectorize-contractions then runs them on the outer-product kernel
    at every row count, its column panels in parallel, instead of the
    dot-product kernel below `pack-min-rows` rows and a transpose of every
    weight panel per call above it. P is `panel-width`, or half or a
    quarter of it (not below 16), whichever divides N first; a weight with
    no such P, or read by anything but such matmuls, keeps its layout. The
    products accumulate into f32: f32 rows by f32 or f16 weights, or with
    `pack-bf16` bf16 rows by bf16 weights of an even K (a bf16 model's).
    f16 rows (an f16 model's) keep the dot-product kernel: widened in the
    outer-product kernel, or once before it, they ran no faster. The CPU pipeline
    runs this pass with AVX-512 (`moe-compile --pack-matmul-weights`).
  }];
  let options = [
    Option<"panelWidth", "panel-width", "int64_t", "64",
           "Output columns per weight panel: 16, 32 or 64">,
    Option<"packBf16", "pack-bf16", "bool", "true",
           "Also pack bf16 weights of bf16 rows, in pairs of k (for "
           "AVX512-BF16's vdpbf16ps)">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect"];
}

def MoEX86VnniDot : Pass<"moe-x86-vnni-dot"> {
  let summary = "Emit AVX512-VNNI's vpdpbusd for u8 x s8 dot products of four";
  let description = [{
    Rewrites the portable form of `vpdpbusd` that kernels write (the int8
    decode kernel of -moe-int8-activations):

    ```
    %p = arith.muli (arith.extui %u : vector<64xi8> to vector<64xi32>),
                    (arith.extsi %s : vector<64xi8> to vector<64xi32>)
    %g = vector.shape_cast %p : vector<64xi32> to vector<16x4xi32>
    %r = vector.multi_reduction <add>, %g, %acc [1]
    ```
    into `llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%acc, %u, %s)`:
    each i32 lane adds the four products of its unsigned and signed bytes
    (exact: a product fits in 16 bits and the sum wraps as the vector ops
    do). Run it after buffer deallocation, which rejects the intrinsic call
    (its memory effects are unknown), and only for targets with
    AVX512-VNNI; without it the portable form compiles to widening
    multiplies and additions.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

def MoEPlaceExperts : Pass<"moe-place-experts", "::mlir::ModuleOp"> {
  let summary = "Renumber each layer's experts so that expert-parallel "
                "ranks share the profile's tokens evenly";
  let description = [{
    Expert placement for expert parallelism (docs/ExpertParallel.md,
    "Placement"): `-moe-shard-experts{ranks=P}` gives each rank a contiguous
    block of every layer's experts, so the rank whose block holds the most
    used experts receives most rows and computes most, and the others wait
    for it. Before sharding, this pass reads each layer's tokens per expert
    from the routing profile (docs/RoutingProfiles.md) and assigns experts
    to the `ranks` blocks greedily (most used first, to the least loaded
    block with room; blocks as large as the partition rule makes them), then
    renumbers the experts so that those blocks are contiguous: a
    permutation of the constant expert weights (every expert-stacked
    operand), the router's rows and the score bias. What the layer computes
    is unchanged (ids are internal to it); only which rank runs which expert
    changes. A remark per layer gives the blocks and the busiest block's
    tokens in the profile, contiguous and placed.

    With `co-activation`, for layers whose rows travel once per token and
    rank (`-moe-decompose-layer{ep-dispatch=rank}`), the balanced placement
    is then improved by swapping experts between blocks, the swap that puts
    the most co-activated pairs (the profile's `coactivation`) into one
    block first, as long as no block takes more than `1 + tolerance` times
    the balanced busiest block's tokens: a token whose experts share a rank
    is sent there once. When the contiguous blocks are within that bound
    too, the same search also starts from them, and the placement that
    sends fewer rows is kept. The remark adds the rows sent, contiguous and
    placed, estimated from the pairs (exact for `k <= 2`, a lower bound for
    larger `k`).

    Layers are numbered per function in order, as the profile numbers them.
    Like pruning, it needs the router as the layer's weight
    (`-moe-fuse-router`), constant weights, ungrouped routing, and a profile
    with the layer and its expert count; each refusal is an error naming
    the layer. With `ranks = 1` it does nothing.
  }];
  let options = [
    Option<"profile", "profile", "std::string", /*default=*/"",
           "Routing profile (JSON) whose token counts place the experts">,
    Option<"ranks", "ranks", "int64_t", /*default=*/"2",
           "Number of ranks the experts will be spread over">,
    Option<"coactivated", "co-activation", "bool", /*default=*/"false",
           "Also put experts that tokens choose together on one rank "
           "(fewer rows with -moe-decompose-layer ep-dispatch=rank)">,
    Option<"tolerance", "tolerance", "double", /*default=*/"0.05",
           "With co-activation: how many more tokens (a fraction) the "
           "busiest rank may take than in the balanced placement">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def MoEShardExperts : Pass<"moe-shard-experts", "::mlir::ModuleOp"> {
  let summary = "Make every moe.layer one rank's part of an expert-parallel layer";
  let description = [{
    Turns the module into an SPMD program for `ranks` processes that share
    the experts (docs/ExpertParallel.md). It declares the one-dimensional
    `shard.grid @moe_ep`; every `moe.layer` gets
    `#moe.expert_parallel<grid = @moe_ep, ranks = P, num_experts = E>` and
    its per-expert operands (weights, biases, scales, zero points) shrink to
    the rank's `ceil(E / P)` experts:

    * a function argument changes type and is marked
      `moe.split = "experts"`: the launcher passes each rank its experts,
      zero-padded;
    * a constant is cut into `P` constants, one per rank, of which
      `scf.index_switch` on `shard.process_linear_index` picks the rank's.

    The layer's `input` and `logits` arguments and the function's results
    are marked `moe.split = "tokens"`: every rank holds its own token rows.
    Shared experts and router weights stay replicated. Capacity-limited
    layers are rejected (capacities are defined over all tokens), as are
    expert weights that are neither arguments nor constants.
  }];
  let options = [
    Option<"ranks", "ranks", "int64_t", /*default=*/"2",
           "Number of processes the experts are spread over">,
  ];
  let dependentDialects = ["::mlir::scf::SCFDialect",
                           "::mlir::shard::ShardDialect",
                           "::mlir::arith::ArithDialect"];
}

def MoEOverlapCommunication : Pass<"moe-overlap-communication",
                                   "::mlir::func::FuncOp"> {
  let summary = "Pipeline expert-parallel exchanges with expert compute";
  let description = [{
    Splits the exchanges of every expert-parallel layer (the route ...
    combine chain that -moe-decompose-layer builds for a layer with
    `#moe.expert_parallel`) into `chunks` chunks and software-pipelines
    them, so that the rows of chunk `i + 1` are in flight while chunk `i`
    computes and chunk `i - 1` returns (Tutel/FasterMoE-style pipelining).
    What a chunk is depends on `split`:

    * `experts`: a range of every rank's local experts. Routing,
      dispatch and the count exchange stay whole; per chunk, the rows bound
      for each rank's experts of the range are packed and sent, run through
      those experts, sent back and unpacked into dispatch order. Three
      stages: send / experts and return / unpack. Every expert's weights
      are read once, as without chunks.
    * `tokens`: a range of the rank's tokens; the whole chain is cloned per
      chunk, with four stages separated by the waits of its three
      exchanges. Each chunk rereads the weights of the experts it touches.

    With `split = auto` (default) the cost model chooses between them (a
    given `chunks` splits by experts when every chunk gets at least one).
    Step `t` of the schedule emits stage `s` of chunk `t - s`. A layer
    decomposed with a row per token and rank
    (`-moe-decompose-layer{ep-dispatch=rank}`) is split by tokens only (a
    row serves several of a rank's experts; `split = experts` is an error
    there), and the model counts its rows as the ranks a token's `k`
    experts fall on, `P (1 - (1 - 1/P)^k)`, with one more latency for the
    exchange of their ids and weights.

    With `chunks = 0` a cost model chooses: an exchange of `b` bytes costs
    `latency + b / bandwidth`, the experts of a chunk the roofline
    `max(flops / peak, bytes / memory bandwidth)` over the weights the
    chunk reads and its rows, and `C` chunks take
    `d + e + r + (C - 1) (max(e, d + r) + overhead)` for per-chunk dispatch
    `d`, expert `e` and return `r` times; it splits only when the best
    count is predicted at least `min-gain` faster than no split. Token
    counts that are dynamic are taken as `tokens`. The defaults describe
    one core of this project's CPU machine with MPI over shared memory;
    moe-compile passes them unchanged. The chosen count and the model's
    predictions are recorded on the function as `moe.overlap`; `report`
    prints the model's table for every candidate.
  }];
  let options = [
    Option<"chunks", "chunks", "int64_t", /*default=*/"0",
           "Token chunks (0: chosen by the cost model, 1: no overlap)">,
    Option<"split", "split", "std::string", /*default=*/"\"auto\"",
           "What a chunk is: 'experts' (a range of every rank's local "
           "experts), 'tokens' (a range of the rank's tokens) or 'auto' "
           "(the cost model's choice; a given chunk count splits by "
           "experts when every chunk gets one)">,
    Option<"maxChunks", "max-chunks", "int64_t", /*default=*/"8",
           "Largest chunk count the cost model considers">,
    Option<"tokens", "tokens", "int64_t", /*default=*/"256",
           "Tokens per rank assumed when the count is dynamic">,
    Option<"bandwidth", "bandwidth", "double", /*default=*/"8.0",
           "Exchange bandwidth per rank, GB/s">,
    Option<"latency", "latency", "double", /*default=*/"20.0",
           "Latency of one exchange, microseconds">,
    Option<"peakFlops", "peak-gflops", "double", /*default=*/"120.0",
           "Expert arithmetic throughput per rank, GFLOP/s">,
    Option<"memoryBandwidth", "memory-bandwidth", "double",
           /*default=*/"12.0", "Memory bandwidth per rank, GB/s">,
    Option<"chunkOverhead", "chunk-overhead", "double", /*default=*/"30.0",
           "Fixed cost of one more chunk, microseconds">,
    Option<"minGain", "min-gain", "double", /*default=*/"0.05",
           "Smallest predicted gain (fraction of the serial time) for which "
           "the cost model splits at all">,
    Option<"report", "report", "bool", /*default=*/"false",
           "Print the cost model's table as a remark">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::tensor::TensorDialect"];
}

def MoEVectorizeContractions : Pass<"moe-vectorize-contractions"> {
  let summary = "Register-tile and vectorize transposed-B matmul contractions";
  let description = [{
    Rewrites memref `linalg.generic` contractions of the form
    `C[m, n] += A[m, k] * B[n, k]` (the expert GEMMs with out-major weights,
    matmuls by ONNX weights), also with leading batch loops indexing all
    three operands alike (`C[b, h, m, n] += A[b, h, m, k] * B[b, h, n, k]`,
    attention's QK^T: one matrix after the other), into loops over `row-tile` x `col-tile` blocks of C whose partial sums
    live in vector registers along k (`vector.load` + `vector.fma`), with a
    single horizontal reduction per element of C and scalar tails for k, m
    and n. Narrow operands (bf16, f16) are widened after the load; with
    `bf16-dot`, contractions of two bf16 operands into f32 use AVX512-BF16's
    `vdpbf16ps` (`x86vector.avx512.dot`) on bf16 pairs instead. Columns of
    C are the outer loop so that a panel of B stays in cache while the rows
    of A pass over it; the full column panels form an `scf.parallel` loop,
    the unit of multithreading.

    Contractions that read B as `[..., k, n]` (attention's probabilities
    times values, activations times activations), f32 with 512-bit vectors
    and a static number of columns that is a multiple of 16, take an
    outer-product kernel instead: one `scf.parallel` over the batch loops
    and chunks of 48 rows, and in each 6-row blocks of C across 64-column
    panels (the last one 16-48 columns) that accumulate, per step of k, the
    broadcast element of A of each row times B's row k (4 vector loads, 24
    FMAs, no horizontal reduction). Other `[k, n]` contractions are left to
    the generic lowering.

    With `pack-min-rows` > 0 and 512-bit vectors, a matmul of f32 operands
    (or bf16 pairs with `bf16-dot`) that has at least that many rows at run
    time takes a second kernel on its full 64-column panels: every block of
    128 steps of k of the panel of B is transposed (16 x 16 shuffle
    transposes) into a `[128, 64]` scratch of the panel's own, and 6 x 64 blocks of C accumulate outer
    products of broadcast elements of A with its rows: 24 accumulators, 4
    loads from L1 and no horizontal reduction per step. The columns past the
    last full panel, and matmuls with fewer rows, keep the dot-product
    kernel. Contractions marked `moe.expert_gemm` (the expert lowering's
    projections by float weights, whose panels only the expert's rows
    reuse) take `expert-pack-min-rows` instead (moe-compile's
    `--expert-pack-min-rows`, 96 in the CPU pipeline: packing pays from
    about 96-128 rows of an expert, benchmarks/RESULTS.md has the A/Bs).

    Contractions by panel-major weights (`-moe-pack-expert-weights`,
    `-moe-pack-matmul-weights`: B read at `(n floordiv P, k, n mod P)`, or
    bf16 pairs of k with `bf16-dot`) take the outer-product block on the
    panels in place, at any row count, prefetching each panel's next 128
    steps of k into L2 as they go. Several loops of rows (a projection over
    `[batch, sequence]` tokens) are collapsed into one. Outside a parallel
    loop (a matmul by a packed ONNX weight, not an expert's task in the
    expert schedule) the panels form an `scf.parallel` loop. A
    contraction marked `moe.next_weights_offset = N` (the expert lowering's
    grouped schedule: its weights are cut from a stacked buffer, and the
    thread running it reads next the weights N elements after its own first
    one) prefetches past its last panel into those, so that the next task
    does not start on cold weights.
  }];
  let options = [
    Option<"vectorBits", "vector-bits", "int64_t", /*default=*/"512",
           "Vector register width in bits">,
    Option<"rowTile", "row-tile", "int64_t", /*default=*/"3",
           "Rows of C per register block">,
    Option<"colTile", "col-tile", "int64_t", /*default=*/"8",
           "Columns of C per register block">,
    Option<"bf16Dot", "bf16-dot", "bool", /*default=*/"false",
           "Multiply bf16 by bf16 with vdpbf16ps (the target has "
           "AVX512-BF16)">,
    Option<"packMinRows", "pack-min-rows", "int64_t", /*default=*/"0",
           "Rows of A from which 512-bit kernels pack 64-column panels of "
           "B and accumulate outer products (0: never)">,
    Option<"expertPackMinRows", "expert-pack-min-rows", "int64_t",
           /*default=*/"0",
           "pack-min-rows for the contractions marked moe.expert_gemm (an "
           "expert's projection by its float weights)">,
  ];
  let dependentDialects = ["::mlir::vector::VectorDialect",
                           "::mlir::x86vector::X86VectorDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::scf::SCFDialect"];
}

def MoECopyRepeatedResults : Pass<"moe-copy-repeated-results",
                                   "::mlir::func::FuncOp"> {
  let summary = "Give every function result its own tensor";
  let description = [{
    A function that returns one tensor value twice (an ONNX graph listing
    an output twice, or two outputs that CSE found equal) would hand one
    buffer to two out-parameters; `-buffer-results-to-out-params` crashes on
    that in MLIR 22. Every repeat after the first is returned as a copy
    (`bufferization.alloc_tensor copy(...)`), which bufferizes to its own
    buffer.
  }];
  let dependentDialects = ["::mlir::bufferization::BufferizationDialect"];
}

def MoEFoldExpandShapeCopies : Pass<"moe-fold-expand-shape-copies"> {
  let summary = "Copy into a collapsed destination instead of out of an "
                "expanded source";
  let description = [{
    Rewrites `memref.copy(memref.expand_shape(src), dst)` with an
    identity-layout `dst` into `memref.copy(src, memref.collapse_shape(dst))`.
    This is how a `[B, S, H]` layer returns its `[B*S, H]` result, and it
    keeps `memref.expand_shape` with several dynamic result dimensions away
    from `-expand-strided-metadata`, which crashes on it in MLIR 22. Other
    such expand_shapes of contiguous memrefs (e.g. an ONNX Reshape to
    `[B, S, H]` that feeds further ops) become the equivalent
    `memref.reinterpret_cast` with row-major strides.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::memref::MemRefDialect"];
}

def MoEParallelizeLoopNests : Pass<"moe-parallelize-loop-nests"> {
  let summary = "Turn scf.for nests over buffers into scf.parallel where "
                "their iterations are independent";
  let description = [{
    Runs on bufferized code. Every outermost `scf.for` nest (not inside a
    parallel loop or kernel) whose body loads and stores buffers, such as an
    imported ScatterElements / ScatterND / NonZero, is considered. A loop of the nest's perfectly
    nested band (loops without `iter_args` and with bounds defined above the
    nest) is parallel when every buffer the nest writes is accessed through
    one memref value only, always with that loop's induction variable as
    the index of the same dimension: distinct iterations then touch
    distinct elements. The nest becomes an `scf.parallel` over its parallel
    loops around the sequential ones, which keep their order (moving a
    loop that carries no dependence outwards is always legal), so that
    `-gpu-map-parallel-loops` and `-convert-parallel-loops-to-gpu` make a
    kernel of it. A scatter into `[T, H]` gets a thread per column that
    applies its updates in order: the result is deterministic and no
    atomics are needed.

    With `wrap-sequential`, a nest without a parallel loop (NonZero's
    compaction) becomes the single iteration of an `scf.parallel`, and so
    does a linalg op on buffers without parallel loops (a fill of a scalar,
    a sum of every element), which would otherwise lower to straight-line
    code or loops outside any `scf.parallel`: one GPU thread runs it, so
    that the host of a cuda module never touches device memory. Run the
    pass before `-convert-linalg-to-parallel-loops`. Nests with results, calls,
    allocations, copies or views made inside are left alone; buffers are
    told apart by their allocation (distinct allocations, globals and
    function arguments do not alias).
  }];
  let options = [
    Option<"wrapSequential", "wrap-sequential", "bool", /*default=*/"false",
           "Also make an scf.parallel of one iteration of nests that have "
           "no parallel loop">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::scf::SCFDialect"];
}

def MoECollapseParallelLoops : Pass<"moe-collapse-parallel-loops"> {
  let summary = "Collapse every outermost scf.parallel into one dimension";
  let description = [{
    Rewrites each outermost multi-dimensional `scf.parallel` without
    reductions into a one-dimensional loop over the product of its trip
    counts, in row-major order (the last dimension varies fastest), with the
    original induction variables recomputed in the body (upstream
    `collapseParallelLoops`). The cuda pipeline then tiles every loop by
    the block size alone: each block takes that many consecutive elements,
    and consecutive threads touch consecutive addresses, whatever the rank
    of the loop (a leading-dimension tiling gave 1-D loops one thread per
    block and left dimensions beyond the third as serial loops).
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::scf::SCFDialect"];
}

def MoELowerStridedCopies : Pass<"moe-lower-strided-copies"> {
  let summary = "Turn memref.copy between non-contiguous memrefs into "
                "linalg.copy";
  let description = [{
    `-finalize-memref-to-llvm` lowers a `memref.copy` whose source or target
    is not contiguous (a slice of a tensor returned from a function, say) to
    a call of `memrefCopy` from MLIR's C runner utilities, which compiled
    modules do not link. As `linalg.copy` the copy becomes plain loops
    instead. Contiguous copies are left to become `memcpy`.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def MoEPromoteReductionAccumulators
    : Pass<"moe-promote-reduction-accumulators"> {
  let summary = "Keep the element a loop reduces into in a register";
  let description = [{
    Linalg's reductions lower to `scf.for` loops that load the output
    element, combine it with a term and store it back every iteration
    (softmax's row maxima and sums, norms' sums of squares), which LLVM can
    neither keep in a register nor vectorize without proving that nothing
    else in the loop reaches the element. For a `memref.store` at the top
    level of an `scf.for` body with loop-invariant indices, whose buffer is
    accessed in the loop only by one `memref.load` of the same element
    before it, and where every other load or store in the loop goes to a
    different root buffer (through views) with one of the two allocated in
    the function (a fresh buffer reaches no other), the element becomes an
    `iter_args` value: loaded before the loop, stored after it. Loops with
    any other memory effect are left alone.
  }];
  let dependentDialects = ["::mlir::memref::MemRefDialect",
                           "::mlir::scf::SCFDialect"];
}

def MoEInterchangeReductions : Pass<"moe-interchange-reductions"> {
  let summary = "Move the output's contiguous dimension inside reduction "
                "loops";
  let description = [{
    For a `linalg.generic` on buffers whose innermost loop is a reduction,
    moves the loop of the output's last index (a parallel loop) innermost
    when every operand is either contiguous along it (it is the operand's
    last index, with unit stride) or independent of it. The attention
    product `O[s, d] += P[s, t] * V[t, d]` then lowers to an inner loop over
    d that reads V and writes O contiguously (a vectorizable axpy) instead
    of a scalar dot product along t with V read a row apart. Ops with a
    strided operand along that dimension (QK^T reads K along its rows) are
    left as they are.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def MoEFuseAttention : Pass<"moe-fuse-attention"> {
  let summary = "Compute attention one block of score rows at a time";
  let description = [{
    Finds `softmax(Q K^T * scale + mask) V` as a chain of linalg ops on
    tensors: a contraction (P V) whose first operand P is computed, through
    ops indexed like P or like its rows, from a row reduction (the softmax's
    max and sum) and a contraction producing P's shape (Q K^T). The P V
    contraction is tiled along the loops indexing P's rows (1 per batch and
    head, `row-tile` queries) in an `scf.forall`, and the chain producing
    those rows is fused into the tile (upstream tile-and-fuse through
    TilingInterface): each tile computes its rows of scores, softmax and
    output end to end, and the full score tensor is never materialized.
    Only ops shaped like the scores or their rows are fused; Q, K, V and
    the mask are read as slices, so nothing is computed twice (the copies
    that tile-and-fuse makes for each reader of the scores merge).

    With `trim-masked-keys`, a tile whose scores get an additive f32 mask
    (a slice of a tensor from outside, keys along its last dimension)
    followed by a softmax (max, shift, exponential, sum, scaling) first
    scans its rows of the mask, 16 keys at a time, for the first and the
    last chunk that some row sees (a value above -1e30; `finfo.min` and
    `-inf` hide a key). The slices of K, V and the mask and the tile's
    score buffers then cover those keys only: a causal mask's tile skips
    the keys after its last row, half of QK^T, softmax and P V over a
    prompt. A hidden key's probability is 0 in a row that sees any key,
    so the result is unchanged; when a row of the tile sees none (a
    padding query), the tile keeps every key.
  }];
  let dependentDialects = ["scf::SCFDialect", "tensor::TensorDialect",
                           "affine::AffineDialect", "arith::ArithDialect",
                           "vector::VectorDialect"];
  let options = [
    Option<"rowTile", "row-tile", "int64_t", /*default=*/"32",
           "Queries (score rows) per tile">,
    Option<"trimKeys", "trim-masked-keys", "bool", /*default=*/"true",
           "Skip the keys that an additive mask hides from every row of a "
           "tile (the future of a causal mask)">,
  ];
}

def MoEFuseElementwise : Pass<"moe-fuse-elementwise"> {
  let summary = "Fuse elementwise linalg producers into consumers that read "
                "each of their elements once";
  let description = [{
    Upstream's elementwise-op fusion patterns (`linalg.generic` producers
    with all-parallel loops merged into the consuming `linalg.generic`,
    splat and scalar constant operands folded into the bodies), restricted
    to producers with a single use whose consumer reads each produced
    element exactly once: the consumer's indexing map for the operand is a
    permutation of its loops. A producer read by a contraction along a
    broadcast dimension (the keys of QK^T) stays a loop of its own rather
    than being recomputed for every element that reads it. Producers that
    only move data (their body yields an input: transposes and broadcasts,
    `linalg.transpose` / `linalg.broadcast` with a single `linalg.generic`
    user are generalized first) fuse into any consumer, since reading
    through them recomputes nothing: torch's `k.transpose(2, 3)` before
    QK^T becomes the indexing of K in the contraction. Grouped-query
    attention's repeat of the keys and values (a broadcast along a unit
    dimension collapsed into the heads) is read in place: the consumer
    indexes the unrepeated tensor at head floordiv repeats. Elementwise chains
    (RMSNorm, RoPE, residual adds, activations) become one loop, and
    producers of reductions (the squares of a norm) fuse into them.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def MoEApproximateMath : Pass<"moe-approximate-math"> {
  let summary = "Polynomial approximations of exp, tanh, erf and logarithms";
  let description = [{
    Rewrites f32 `math.exp`, `math.expm1`, `math.tanh`, `math.erf`,
    `math.log`, `math.log1p` and `math.log2` into upstream's polynomial
    approximations (plain arith ops, a few ulp of error) so that the loops
    around them vectorize instead of calling libm per element, and applies
    upstream's algebraic simplifications (`math.powf` by a constant 2 or
    0.5 becomes a multiply or a square root). Other math ops are left for
    `-convert-math-to-llvm` / `-convert-math-to-libm`.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::vector::VectorDialect"];
}

def MoEDistributeParallelLoops : Pass<"moe-distribute-parallel-loops"> {
  let summary = "Shape scf.parallel nests for the CPU worker pool";
  let description = [{
    Prepares the parallel loops of CPU code (linalg ops lowered with
    `-convert-linalg-to-parallel-loops`, the moe kernels' loops) for
    `-moe-outline-parallel-loops`, which runs one-dimensional loops on the
    runtime's worker pool:

    * an outermost nest whose work (its trip count times the operations of
      its body, nested loops' trips included; a dynamic trip count counts as
      2^20) is below `min-work` becomes serial `scf.for` loops: a pool
      dispatch costs more than it saves;
    * any other outermost nest of rank n > 1 becomes one parallel loop over
      its first n - 1 dimensions in row-major order (indices recovered with
      `affine.delinearize_index`) around a serial `scf.for` over the last
      dimension, the contiguous one that LLVM vectorizes; when the body has
      loops of its own (a reduction, or a dimension that
      `-moe-interchange-reductions` moved inward) all n dimensions form the
      parallel loop;
    * `scf.parallel` loops nested in another one become serial loops: a
      worker runs its share alone.

    Loops with reductions are left alone.
  }];
  let options = [
    Option<"minWork", "min-work", "int64_t", /*default=*/"32768",
           "Smallest work (operations executed) worth a worker-pool dispatch">,
  ];
  let dependentDialects = ["::mlir::affine::AffineDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::scf::SCFDialect"];
}

def MoEOutlineParallelLoops
    : Pass<"moe-outline-parallel-loops", "::mlir::ModuleOp"> {
  let summary = "Outline parallel loops into runtime worker-pool calls";
  let description = [{
    Replaces every outermost one-dimensional `scf.parallel` (without
    reductions) with a private function running a chunk `[begin, end)` of the
    loop's iterations and a `moe.parallel_call` of it over the trip count.
    The body's uses of values from above become captures; constants are
    cloned into the outlined function. Outlined functions identical to an
    earlier one (same signature, same body up to locations: a decoder's
    layers repeat the same loops on other weights) are merged into it.
    A loop whose trip count is only known at run time and whose body does
    less than `min-work` operations per iteration (nested loops' trips
    counted as in `-moe-distribute-parallel-loops`) gets an `scf.if`: below
    min-work operations in all it calls the outlined function directly over
    the whole range instead of dispatching it. Lowering `moe.parallel_call`
    to LLVM calls the runtime's `moe_rt_parallel_for`.
  }];
  let options = [
    Option<"minWork", "min-work", "int64_t", /*default=*/"32768",
           "Smallest work (operations executed) worth a worker-pool dispatch">,
  ];
  let dependentDialects = ["::mlir::func::FuncDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::moe::MoEDialect"];
}

def MoEExportABI : Pass<"moe-export-abi", "::mlir::ModuleOp"> {
  let summary = "Record the compiled-module manifest and request C interfaces";
  let description = [{
    Runs on tensor-level IR, before bufferization, while function signatures
    still say what the caller passes. For every public function it records
    in the module attribute `moe.manifest` the JSON manifest of
    docs/Runtime.md: input and output names, element types and shapes, with
    dynamic dimensions named by symbols that are unified across arguments
    through the moe ops' shape rules (the token count of `moe.layer`'s input
    and logits is one symbol), output shapes expressed in those symbols, and,
    for a function that is a single `moe.layer`, the reference description
    `moe-run --check` evaluates. It marks the functions
    `llvm.emit_c_interface` so that lowering produces the descriptor-based
    entry points that `-moe-emit-abi-entry-points` wraps.

    Fails, naming the function and argument, for non-tensor arguments,
    unsupported element types, and output dimensions that cannot be expressed
    in terms of the inputs.
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "Target recorded in the manifest (cpu or cuda)">,
  ];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

def MoEEmitABIEntryPoints
    : Pass<"moe-emit-abi-entry-points", "::mlir::ModuleOp"> {
  let summary = "Emit the manifest accessor and packed entry points";
  let description = [{
    Runs on LLVM-dialect IR produced from a module that went through
    `-moe-export-abi`. Emits `moe_module_manifest()` returning the manifest
    string and, for every manifest function `f`, `moe_entry_f(ptr args) ->
    i32`, which loads one memref-descriptor pointer per argument (inputs,
    then caller-allocated outputs) from `args` and calls
    `_mlir_ciface_f`. These are the only symbols the runtime looks up.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // MOE_TRANSFORMS_PASSES_TD
