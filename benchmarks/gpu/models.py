"""Model shapes, deterministic weights and inputs, routing and work counts of
the GPU benchmark (benchmarks/gpu). NumPy only, so that `prepare` runs on the
compiler machine and `gen` on the GPU machine write the same bytes from the
same seeds.

Weights (bf16 stored as '<u2' bit patterns in .npy, what moe-run reads):
  fc1 [E, 2I, H]  SwiGLU, concatenated: rows [0, I) gate, [I, 2I) up
  fc2 [E, H, I]
Every expert e of matrix m is drawn from numpy.random.default_rng([seed, m,
e]) (standard normal float32 times 1/sqrt(fan-in), rounded to bf16 to
nearest even), so the files do not depend on how many processes write them.
"""
import json
import os
import sys

import numpy as np

# Bump when generated data changes meaning.
GENERATOR_VERSION = 1

# name: description, H, I, E, k, routing, seed. Routing keys as moe.route's
# attributes (docs/Dialects/MoE.md).
_SOFTMAX_NORM = dict(scoring="softmax", normalize=True)
MODELS = {
    "mixtral-8x7b": dict(
        desc="Mixtral-8x7B", H=4096, I=14336, E=8, k=2,
        routing=_SOFTMAX_NORM, seed=5101),
    "deepseek-v3": dict(
        desc="DeepSeek-V3 routed experts", H=7168, I=2048, E=256, k=8,
        routing=dict(scoring="sigmoid", normalize=True, score_bias=True,
                     num_groups=8, top_groups=4, group_scoring="top2_sum",
                     scaling=2.5),
        seed=5102),
    "qwen3-30b-a3b": dict(
        desc="Qwen3-30B-A3B", H=2048, I=768, E=128, k=8,
        routing=_SOFTMAX_NORM, seed=5103),
    # OLMoE-1B-7B does not renormalise the top-k weights
    # (norm_topk_prob = false).
    "olmoe-1b-7b": dict(
        desc="OLMoE-1B-7B", H=2048, I=1024, E=64, k=8,
        routing=dict(scoring="softmax", normalize=False), seed=5104),
}

# --smoke: the same routing on tiny shapes (runs on a CPU in seconds).
SMOKE_SHAPES = {
    "mixtral-8x7b": dict(H=64, I=96, E=8, k=2),
    "deepseek-v3": dict(H=64, I=32, E=32, k=8),
    "qwen3-30b-a3b": dict(H=64, I=32, E=16, k=4),
    "olmoe-1b-7b": dict(H=64, I=48, E=16, k=4),
}

TOKENS = [1, 16, 64, 512, 4096]
SMOKE_TOKENS = [1, 7, 16]
TOLERANCE = 2e-2  # max|diff| / max|ref| against the float64 reference


def model(name, smoke=False):
    if name not in MODELS:
        sys.exit("unknown model %s; known: %s" % (name, ", ".join(MODELS)))
    m = dict(MODELS[name])
    m["name"] = name
    if smoke:
        m.update(SMOKE_SHAPES[name])
        m["desc"] += " (smoke shape)"
        m["name"] = name + "-smoke"
    return m


def weight_bytes_total(m):
    return 2 * m["E"] * 3 * m["I"] * m["H"]


# ---------------------------------------------------------------------------
# bf16 helpers
# ---------------------------------------------------------------------------

def to_bf16_bits(a):
    """float32 -> bfloat16 bit patterns ('<u2'), round to nearest even
    (finite inputs)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (u >> np.uint32(16)).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(
        np.float32)


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------

def _expert_slab(seed, matrix, e, shape, fan_in):
    g = np.random.default_rng([seed, matrix, e])
    a = g.standard_normal(shape, dtype=np.float32)
    a *= np.float32(fan_in ** -0.5)
    return to_bf16_bits(a)


def _write_experts(job):
    path, seed, matrix, shape, fan_in, experts = job
    mm = np.load(path, mmap_mode="r+")
    for e in experts:
        mm[e] = _expert_slab(seed, matrix, e, shape, fan_in)
    mm.flush()
    del mm
    return len(experts)


def gen_weights(m, out_dir, jobs=None):
    """Writes out_dir/fc1.npy, fc2.npy (and score_bias.npy) unless
    out_dir/weights.json says they are there already."""
    os.makedirs(out_dir, exist_ok=True)
    H, I, E, seed = m["H"], m["I"], m["E"], m["seed"]
    config = {"generator": GENERATOR_VERSION, "H": H, "I": I, "E": E,
              "seed": seed}
    cfg_path = os.path.join(out_dir, "weights.json")
    files = [os.path.join(out_dir, f) for f in ("fc1.npy", "fc2.npy")]
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            if json.load(f) == config and all(map(os.path.exists, files)):
                print("  %s: weights present in %s" % (m["name"], out_dir),
                      flush=True)
                return
        os.remove(cfg_path)
    print("  %s: generating %.2f GB of bf16 weights in %s" % (
        m["name"], weight_bytes_total(m) / 1e9, out_dir), flush=True)
    specs = [("fc1.npy", 1, (2 * I, H), H), ("fc2.npy", 2, (H, I), I)]
    work = []
    jobs = jobs or max(1, min(16, os.cpu_count() or 1))
    for fname, matrix, shape, fan_in in specs:
        path = os.path.join(out_dir, fname)
        np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16,
                                  shape=(E,) + shape).flush()
        chunks = [list(range(E))[i::jobs] for i in range(jobs)]
        work += [(path, seed, matrix, shape, fan_in, c) for c in chunks if c]
    if jobs > 1 and len(work) > 2:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            pool.map(_write_experts, work)
    else:
        for w in work:
            _write_experts(w)
    if m["routing"].get("score_bias"):
        g = np.random.default_rng([seed, 3])
        np.save(os.path.join(out_dir, "score_bias.npy"),
                (g.standard_normal(E) * 0.05).astype(np.float32))
    with open(cfg_path, "w") as f:
        json.dump(config, f)


# ---------------------------------------------------------------------------
# Routing (float64, NumPy): the semantics of moe.route for the options used
# here, for the work counts and to keep the inputs away from routing ties.
# ---------------------------------------------------------------------------

def route_np(logits, bias, r, k):
    """Returns (ids [T, k], weights [T, k], margin [T]): margin is the
    smallest gap in selection score at a decision boundary (k-th vs next
    expert, top_groups-th vs next group)."""
    lg = np.asarray(logits, dtype=np.float64)
    T, E = lg.shape
    if r["scoring"] == "softmax":
        z = lg - lg.max(axis=1, keepdims=True)
        s = np.exp(z)
        s /= s.sum(axis=1, keepdims=True)
        # Softmax is monotone: measure the gap on the logits.
        gap_space = lg
    elif r["scoring"] == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-lg))
        gap_space = None
    else:
        raise ValueError(r["scoring"])
    sel = s + (np.asarray(bias, np.float64) if bias is not None else 0.0)
    if gap_space is None:
        gap_space = sel
    margin = np.full(T, np.inf)
    G = r.get("num_groups", 1)
    mask = np.ones((T, E), dtype=bool)
    if G > 1:
        gs = sel.reshape(T, G, E // G)
        if r.get("group_scoring", "max") == "top2_sum":
            srt = -np.sort(-gs, axis=2)
            gscore = srt[:, :, 0] + srt[:, :, 1]
        else:
            gscore = gs.max(axis=2)
        tg = r["top_groups"]
        order = np.argsort(-gscore, axis=1, kind="stable")
        keep = order[:, :tg]
        gsorted = np.take_along_axis(gscore, order, axis=1)
        if tg < G:
            margin = np.minimum(margin, gsorted[:, tg - 1] - gsorted[:, tg])
        gmask = np.zeros((T, G), dtype=bool)
        np.put_along_axis(gmask, keep, True, axis=1)
        mask = np.repeat(gmask, E // G, axis=1)
    masked = np.where(mask, sel, -np.inf)
    ids = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    gsp = np.where(mask, gap_space, -np.inf)
    srt = -np.sort(-gsp, axis=1)
    if k < mask.sum(axis=1).min():
        margin = np.minimum(margin, srt[:, k - 1] - srt[:, k])
    w = np.take_along_axis(s, ids, axis=1)
    if r.get("normalize"):
        w = w / w.sum(axis=1, keepdims=True)
    w = w * r.get("scaling", 1.0)
    return ids, w, margin


MIN_MARGIN = 1e-3


def gen_inputs(m, T, out_dir):
    """x [T, H] (bf16 bits and float32 copies), logits [T, E] float32:
    normal(0, 1), each token redrawn until its routing decisions are at
    least MIN_MARGIN from a tie (so float32 and float64 routing agree).
    Returns the file names and the work counts."""
    H, E, k = m["H"], m["E"], m["k"]
    g = np.random.default_rng([m["seed"], 1000 + T])
    x = g.standard_normal((T, H), dtype=np.float32)
    bias = None
    if m["routing"].get("score_bias"):
        gb = np.random.default_rng([m["seed"], 3])
        bias = (gb.standard_normal(E) * 0.05).astype(np.float32)
    logits = g.standard_normal((T, E), dtype=np.float32)
    for _ in range(100):
        _, _, margin = route_np(logits, bias, m["routing"], k)
        bad = np.nonzero(margin < MIN_MARGIN)[0]
        if bad.size == 0:
            break
        logits[bad] = g.standard_normal((bad.size, E), dtype=np.float32)
    else:
        raise RuntimeError("could not draw logits away from ties")
    ids, _, _ = route_np(logits, bias, m["routing"], k)
    os.makedirs(out_dir, exist_ok=True)
    names = {"x_bf16": "x_T%d.npy" % T, "x_f32": "x_T%d_f32.npy" % T,
             "logits": "logits_T%d.npy" % T}
    np.save(os.path.join(out_dir, names["x_bf16"]), to_bf16_bits(x))
    np.save(os.path.join(out_dir, names["x_f32"]),
            bf16_bits_to_f32(to_bf16_bits(x)))
    np.save(os.path.join(out_dir, names["logits"]), logits)
    return names, work_of(m, ids, T)


def work_of(m, ids, T):
    """Bytes and FLOPs of one run with this routing: the weights of the
    experts that receive a token, x, logits (and bias) read, y written
    (bf16 activations); 2 * slots * 3 * H * I matmul FLOPs (SwiGLU: gate,
    up, down)."""
    H, I, E = m["H"], m["I"], m["E"]
    touched = int(np.unique(ids).size) if ids.size else 0
    slots = int(ids.size)
    per_expert = 2 * 3 * H * I
    act = 2 * T * H * 2 + 4 * T * E
    return {"T": T, "experts_touched": touched, "slots": slots,
            "weight_bytes": touched * per_expert, "activation_bytes": act,
            "bytes": touched * per_expert + act,
            "flops": 2 * slots * 3 * H * I}


# ---------------------------------------------------------------------------
# moe.layer
# ---------------------------------------------------------------------------

def layer_mlir(m, act="bf16"):
    H, I, E, k, r = m["H"], m["I"], m["E"], m["k"], m["routing"]
    attrs = ["k = %d : i64" % k]
    if r["scoring"] != "softmax":
        attrs.append("scoring = #moe.scoring<%s>" % r["scoring"])
    if r.get("normalize"):
        attrs.append("normalize")
    if r.get("num_groups", 1) > 1:
        attrs += ["num_groups = %d : i64" % r["num_groups"],
                  "top_groups = %d : i64" % r["top_groups"],
                  "group_scoring = #moe.group_scoring<%s>"
                  % r["group_scoring"]]
    if r.get("scaling") is not None:
        attrs.append("scaling = %r" % float(r["scaling"]))
    attrs += ["activation = #moe.activation<swiglu>",
              "swiglu_fusion = #moe.swiglu_fusion<concatenated>",
              "alpha = 1.0", "beta = 0.0"]
    xt = "tensor<?x%dx%s>" % (H, act)
    lt = "tensor<?x%dxf32>" % E
    w1 = "tensor<%dx%dx%dxbf16>" % (E, 2 * I, H)
    w2 = "tensor<%dx%dx%dxbf16>" % (E, H, I)
    args = ["%%x: %s" % xt, "%%router_logits: %s" % lt, "%%fc1: %s" % w1,
            "%%fc2: %s" % w2]
    operands = "%x, %router_logits fc1 %fc1 fc2 %fc2"
    types = [xt, lt, w1, w2]
    if r.get("score_bias"):
        bt = "tensor<%dxf32>" % E
        args.append("%%score_bias: %s" % bt)
        operands += " score_bias %score_bias"
        types.append(bt)
    return """// Generated by benchmarks/gpu/models.py: %s, H=%d, I=%d, E=%d,
// top-%d; SwiGLU experts (concatenated gate/up rows, alpha 1, beta 0), bf16
// weights, %s activations; weights are arguments, tokens dynamic.
func.func @moe_layer(%s) -> %s {
  %%y = moe.layer %s
         {%s}
       : (%s) -> %s
  return %%y : %s
}
""" % (m["desc"], H, I, E, k, act, ",\n                     ".join(args), xt,
       operands, ",\n          ".join(attrs), ", ".join(types), xt, xt)
