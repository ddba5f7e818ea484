"""The GPU end-to-end cases (`ctest -L gpu`): one dict per case, with the
keys and defaults of DEFAULTS in gen_case.py, like cases.py. Every
registered case becomes the ctest test `gpu.<name>`, compiled with
`moe-compile --target=cuda --cuda-arch=<the GPU's>` and checked with
`moe-run --check --tolerance=2e-2` (max|diff| / max|ref| against the float64
reference evaluator). A case with "known_failure": "<why>" is listed by
`gen_case.py --list-gpu-all` but not registered.

Names must differ from cases.py's (gen_case.py checks): they all start with
the weight type (bf16_, f16_, f32_).

Shapes are small but realistic in kind: H and I mostly multiples of 64 (what
the tensor-core tiles see in real models), a few not multiples of 16 or 8
so that the kernels' edge tiles run; token counts 0, 1, 7 (odd), 64 and 300
(not a multiple of any tile); E up to 128 with k up to 8, so that many
experts receive no token at small T.
"""

# Mixtral-like: softmax over all experts, top-2, renormalised (the same as
# a softmax over the two chosen logits), SiLU-gated experts (w1, w3 as a
# separate fc3).
_MIXTRAL = dict(E=8, k=2, H=256, I=512, activation="silu", glu=True)
# DeepSeek-V3-like: sigmoid scores, score bias for the selection only,
# group-limited top-k (top-2-sum group scores), renormalised and scaled.
_DEEPSEEK = dict(E=64, k=8, H=256, I=128, scoring="sigmoid", score_bias=True,
                 num_groups=8, top_groups=4, group_scoring="top2_sum",
                 scaling=2.5, activation="swiglu", fusion="concatenated")
# Qwen3-MoE / OLMoE-like: many small experts, softmax top-8 renormalised.
_QWEN = dict(E=128, k=8, H=128, I=64, activation="swiglu",
             fusion="concatenated")

GPU_CASES = [
    # ---- Mixtral-like, bf16, every token count ----------------------------
    dict(name="bf16_mixtral_t0", dtype="bf16", tokens=0, **_MIXTRAL),
    dict(name="bf16_mixtral_t1", dtype="bf16", tokens=1, **_MIXTRAL),
    dict(name="bf16_mixtral_t7", dtype="bf16", tokens=7, **_MIXTRAL),
    dict(name="bf16_mixtral_t64", dtype="bf16", tokens=64, **_MIXTRAL),
    dict(name="bf16_mixtral_t300", dtype="bf16", tokens=300, **_MIXTRAL),
    dict(name="bf16_mixtral_3d_4x75", dtype="bf16", tokens=[4, 75],
         **_MIXTRAL),
    # bf16 activations in and out (the layer computes in f32 and rounds its
    # output once).
    dict(name="bf16_mixtral_bf16io_t64", dtype="bf16", act_dtype="bf16",
         tokens=64, **_MIXTRAL),
    dict(name="bf16_qwen_bf16io_t7", dtype="bf16", act_dtype="bf16",
         tokens=7, E=128, k=8, H=128, I=64, activation="swiglu",
         fusion="concatenated"),

    # ---- DeepSeek-like: sigmoid scoring with bias ------------------------
    dict(name="bf16_deepseek_t1", dtype="bf16", tokens=1, **_DEEPSEEK),
    dict(name="bf16_deepseek_t7", dtype="bf16", tokens=7, **_DEEPSEEK),
    dict(name="bf16_deepseek_t64", dtype="bf16", tokens=64, **_DEEPSEEK),
    dict(name="bf16_deepseek_t300", dtype="bf16", tokens=300, **_DEEPSEEK),
    dict(name="bf16_deepseek_shared_t64", dtype="bf16", tokens=64, shared=1,
         shared_I=256, **_DEEPSEEK),

    # ---- Qwen3 / OLMoE-like: 128 experts, k = 8 ---------------------------
    # At T = 1 and 7, at most 8 and 56 of the 128 experts receive a token.
    dict(name="bf16_qwen_t1", dtype="bf16", tokens=1, **_QWEN),
    dict(name="bf16_qwen_t7", dtype="bf16", tokens=7, **_QWEN),
    dict(name="bf16_qwen_t300", dtype="bf16", tokens=300, **_QWEN),
    dict(name="bf16_olmoe_unnormalized_t64", dtype="bf16", tokens=64,
         normalize=False, E=64, k=8, H=128, I=128, activation="swiglu",
         fusion="interleaved"),

    # ---- Switch-like: k = 1 ----------------------------------------------
    dict(name="bf16_switch_k1_t64", dtype="bf16", tokens=64, E=16, k=1,
         H=128, I=512, activation="relu", bias=True),
    dict(name="bf16_switch_k1_t7", dtype="bf16", tokens=7, E=16, k=1,
         H=128, I=512, activation="relu", bias=True),
    dict(name="bf16_softmax_topk_k1_t300", dtype="bf16", tokens=300, E=32,
         k=1, scoring="softmax_topk", H=128, I=256),

    # ---- SwiGLU layouts ----------------------------------------------------
    dict(name="bf16_swiglu_interleaved_t300", dtype="bf16", tokens=300,
         activation="swiglu", fusion="interleaved", alpha=1.702, beta=1.0,
         limit=7.0, bias=True, E=8, k=2, H=256, I=256, weight_scale=3.0),
    dict(name="bf16_swiglu_interleaved_t7", dtype="bf16", tokens=7,
         activation="swiglu", fusion="interleaved", E=16, k=4, H=128,
         I=256),
    dict(name="bf16_swiglu_concatenated_t64", dtype="bf16", tokens=64,
         activation="swiglu", fusion="concatenated", alpha=1.702, beta=1.0,
         limit=7.0, bias=True, E=8, k=2, H=256, I=128),
    dict(name="bf16_swiglu_concatenated_t1", dtype="bf16", tokens=1,
         activation="swiglu", fusion="concatenated", E=8, k=2, H=128,
         I=256),
    dict(name="bf16_swiglu_separate_t64", dtype="bf16", tokens=64,
         activation="swiglu", fusion="separate", alpha=1.702, beta=1.0,
         limit=7.0, E=8, k=2, H=128, I=128),

    # ---- plain activations, biases ----------------------------------------
    dict(name="bf16_gelu_t64", dtype="bf16", tokens=64, activation="gelu",
         bias=True, E=8, k=2, H=256, I=512),
    dict(name="bf16_gelu_tanh_t7", dtype="bf16", tokens=7,
         activation="gelu_tanh", E=8, k=2, H=128, I=256),
    dict(name="bf16_relu_t300", dtype="bf16", tokens=300, activation="relu",
         E=16, k=2, H=128, I=256),
    dict(name="bf16_silu_bias_t1", dtype="bf16", tokens=1, activation="silu",
         bias=True, E=8, k=2, H=256, I=256),
    dict(name="bf16_glu_gelu_bias_t64", dtype="bf16", tokens=64,
         activation="gelu", glu=True, bias=True, E=8, k=2, H=128, I=256),

    # ---- edge tiles: H, I not multiples of 16 or 8 --------------------------
    dict(name="bf16_odd_h72_i40_t7", dtype="bf16", tokens=7, E=8, k=2,
         H=72, I=40, activation="silu", glu=True, bias=True),
    dict(name="bf16_odd_h100_i136_t300", dtype="bf16", tokens=300, E=16,
         k=3, H=100, I=136, activation="swiglu", fusion="interleaved"),

    # ---- experts that receive no token ----------------------------------------
    # Every token prefers expert 5: the other 7 get nothing (k = 1).
    dict(name="bf16_one_expert_k1_t64", dtype="bf16", tokens=64, E=8, k=1,
         H=128, I=256, logits="one_expert", target=5),
    # k = 2: expert 3 plus one other per token.
    dict(name="bf16_one_expert_k2_t300", dtype="bf16", tokens=300, E=16,
         k=2, H=128, I=128, logits="one_expert", target=3,
         activation="swiglu", fusion="concatenated"),
    dict(name="bf16_t1_e128_k8_bias", dtype="bf16", tokens=1, E=128, k=8,
         H=128, I=64, bias=True, activation="gelu"),

    # ---- f16 ----------------------------------------------------------------
    dict(name="f16_mixtral_t7", dtype="f16", tokens=7, **_MIXTRAL),
    dict(name="f16_mixtral_t300", dtype="f16", tokens=300, **_MIXTRAL),
    dict(name="f16_swiglu_interleaved_bias_t64", dtype="f16", tokens=64,
         activation="swiglu", fusion="interleaved", alpha=1.702, beta=1.0,
         limit=7.0, bias=True, E=8, k=2, H=256, I=256),
    dict(name="f16_deepseek_t64", dtype="f16", tokens=64, **_DEEPSEEK),
    dict(name="f16_f16io_silu_t64", dtype="f16", act_dtype="f16", tokens=64,
         activation="silu", glu=True, E=8, k=2, H=128, I=256),
    dict(name="f16_relu_t0", dtype="f16", tokens=0, activation="relu", E=8,
         k=2, H=128, I=256),

    # ---- f32 (SIMT kernels) ----------------------------------------------------
    dict(name="f32_mixtral_t7", tokens=7, **_MIXTRAL),
    dict(name="f32_mixtral_t300", tokens=300, **_MIXTRAL),
    dict(name="f32_deepseek_t64", tokens=64, **_DEEPSEEK),
    dict(name="f32_switch_k1_bias_t1", tokens=1, E=16, k=1, H=128, I=512,
         activation="relu", bias=True),
    dict(name="f32_t0", tokens=0, E=8, k=2, H=128, I=128),
]
