"""The expert-parallel cases (docs/ExpertParallel.md): one dict per case.

Every key of gen_case.py's DEFAULTS may appear (the layer and its inputs are
written by gen_case.py), plus these EP-only keys (EP_DEFAULTS):

  ranks     the process counts P the case runs at; each (case, P) is the
            ctest test `ep.<name>.np<P>`, label `mpi`
  route     'random': the router logits as gen_case.py draws them
            (balanced routing); 'first_rank' / 'last_rank': +12 on the
            experts that rank 0 / the last rank owns at the largest P of
            `ranks`, so that every token's k best experts all live on that
            rank (at every P of the case: the first rank's experts at P = 4
            are a prefix of its experts at P = 2, the last rank's a
            suffix); the driver checks that the k best of every token are
            on that one rank
  dispatch  the --ep-dispatch modes: 'expert' (a row per token and
            expert) and 'rank' (a row per token and rank, with its ids and
            weights); 'expert' is compiled with every `overlap` variant,
            'rank' with every `rank_overlap` one
  rank_overlap  the --overlap-chunks variants of --ep-dispatch=rank (token
            chunks; a few cases only, to keep the label's time)
  overlap   the --overlap-chunks variants compiled besides the plain
            `--expert-parallel=P` module (None: the compiler's default)

For each (case, P) run_ep_case.py compiles the single-rank module
(`--target=cpu`) and the EP module for every `dispatch` mode and `overlap`
entry, runs the
former with moe-run and the latter under `mpirun -np P`, and requires the
gathered output to equal the single-rank one: same shape, max|diff| /
max|ref| <= 1e-6.

Sizes are small (H, I <= 136) so that the whole label runs in a couple of
minutes on two oversubscribed cores; H and I are mostly not multiples of 8.
"""

EP_DEFAULTS = {
    "ranks": [2, 4],
    "route": "random",      # random, first_rank, last_rank
    "dispatch": ["expert", "rank"],  # --ep-dispatch modes
    "rank_overlap": [None],  # --overlap-chunks variants with --ep-dispatch=rank
    "overlap": [None, 3],   # --overlap-chunks variants (None: default)
}

EP_CASES = [
    # ---- balanced routing (random logits) ------------------------------------
    dict(name="balanced_k2", tokens=64, E=8, k=2, H=72, I=40),
    dict(name="balanced_k1_relu_bias", tokens=64, E=8, k=1, H=40, I=56,
         activation="relu", bias=True),
    dict(name="balanced_k4_e16_gelu", tokens=64, E=16, k=4, H=100, I=24,
         activation="gelu"),
    dict(name="balanced_k_eq_e", tokens=64, E=4, k=4, H=40, I=24,
         activation="gelu_tanh"),
    dict(name="balanced_t257", tokens=257, E=8, k=2, H=40, I=24,
         overlap=[None, 3, 4], rank_overlap=[None, 3]),
    # The router's MatMul in the route (moe.layer router_weight): each rank
    # routes its own tokens' rows; overlap chunks slice the tokens.
    dict(name="balanced_router_weight", router="weight", tokens=100, E=8,
         k=2, H=72, I=40, overlap=[None, 3], rank_overlap=[None, 3]),

    # ---- every token's k best experts on one rank -----------------------------
    dict(name="one_rank_first_k1", tokens=64, E=8, k=1, H=40, I=24,
         route="first_rank"),
    dict(name="one_rank_first_k2", tokens=64, E=8, k=2, H=72, I=40,
         route="first_rank"),
    dict(name="one_rank_last_k2", tokens=64, E=8, k=2, H=72, I=40,
         route="last_rank"),
    dict(name="one_rank_first_k3_e12", tokens=64, E=12, k=3, H=40, I=24,
         route="first_rank", activation="silu", glu=True,
         rank_overlap=[None, 3]),
    # E = 6 at P = 4: the last rank owns one expert (5), so k = 1.
    dict(name="one_rank_last_k1_e6", tokens=64, E=6, k=1, H=40, I=24,
         route="last_rank"),

    # ---- ranks with zero tokens (T < P) --------------------------------------
    dict(name="tokens1", tokens=1, E=8, k=2, H=72, I=40),
    dict(name="tokens3", tokens=3, E=8, k=2, H=40, I=56, bias=True),
    dict(name="tokens3_k1_e5", tokens=3, E=5, k=1, H=40, I=24),

    # ---- E not divisible by P (padding experts on the short ranks) -----------
    dict(name="e6_k2", tokens=64, E=6, k=2, H=40, I=56),     # P=4: 2,2,1,1
    dict(name="e5_k2", tokens=64, E=5, k=2, H=72, I=24,      # P=2: 3,2
         bias=True),                                          # P=4: 2,1,1,1
    dict(name="e5_k3_t257", tokens=257, E=5, k=3, H=24, I=40,
         activation="relu"),

    # ---- activations, biases, weights, shared expert ---------------------------
    dict(name="swiglu_bias", tokens=64, E=8, k=2, H=72, I=40,
         activation="swiglu", fusion="interleaved", alpha=1.702, beta=1.0,
         limit=7.0, bias=True),
    dict(name="swiglu_separate", tokens=64, E=8, k=2, H=40, I=56,
         activation="swiglu", fusion="separate"),
    dict(name="gelu_glu_bias", tokens=64, E=8, k=2, H=100, I=136,
         activation="gelu", glu=True, bias=True),
    dict(name="bf16_bias", tokens=64, E=8, k=2, H=72, I=40, dtype="bf16",
         bias=True),
    dict(name="bf16_swiglu_e6", tokens=64, E=6, k=2, H=40, I=24,
         dtype="bf16", activation="swiglu", fusion="concatenated"),
    dict(name="shared_expert", tokens=64, E=8, k=2, H=72, I=40, shared=1,
         shared_gate=True),
    dict(name="shared_expert_t3", tokens=3, E=8, k=2, H=40, I=24, shared=1,
         shared_I=56, activation="gelu", glu=True, rank_overlap=[None, 3]),
]

EP_KEYS = set(EP_DEFAULTS)

# The cases also run as cuda modules on the GPU executor (moe-compile
# --target=cuda --gpu-binary=executor, for the single-rank module and every
# EP module): ep-executor.<case>.np<P>, labels mpi and gpu-executor. A few
# that cover the exchanges' corner cases: balanced routing, every slot on
# one rank, ranks with zero tokens, padding experts, a shared expert.
EMULATED_CASES = ["balanced_k2", "one_rank_first_k2", "tokens3", "e5_k2",
                  "shared_expert_t3"]
