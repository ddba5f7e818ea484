#!/usr/bin/python3
"""Writes one end-to-end test case: a `moe.layer` function and its inputs.

    gen_case.py --list        names of the registered (CPU) cases
    gen_case.py --list-all    every case, known failures included
    gen_case.py --list-gpu    names of the registered GPU cases
    gen_case.py --list-gpu-all  every GPU case, known failures included
    gen_case.py --show CASE   the case's spec with the defaults filled in
    gen_case.py CASE DIR      writes DIR/layer.mlir, DIR/in<i>_<name>.npy
                              and DIR/case.json (what run_case.py needs)

The cases live in cases.py (CPU, ctest label `e2e`) and gpu_cases.py
(CUDA, label `gpu`); names are unique across both. Every case gets its own fixed seed (CRC-32 of
its name), so the files are identical on every run and every machine.
Standard library + NumPy only; --list and --show need no NumPy.
"""

import json
import os
import sys
import zlib

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as case_list  # noqa: E402
import gpu_cases  # noqa: E402

# Defaults of a case spec; cases.py overrides what it needs.
DEFAULTS = {
    "tokens": 64,            # T, or a [B, S] pair for a 3-D input
    "H": 64,                 # hidden size
    "I": 32,                 # expert intermediate size
    "E": 8,                  # routed FFN experts
    "k": 2,
    "dtype": "f32",          # expert weights: f32, bf16 or f16
    "act_dtype": "f32",      # input (and so output) element type: f32,
                             # bf16 or f16; the router logits stay f32
    "bf16_file": "bits",     # bf16 weights on disk: 'bits' ('<u2') or 'f32'
    "activation": "silu",    # identity, relu, gelu, gelu_tanh, silu, swiglu
    "glu": False,            # fc3 (gated activation) for non-swiglu
    "fusion": "interleaved", # swiglu: interleaved, concatenated, separate
    "alpha": None,
    "beta": None,
    "limit": None,
    "bias": False,           # fc1/fc2/fc3 biases
    "scoring": "softmax",    # softmax, sigmoid, softmax_topk, sparse_mixer
    "normalize": True,
    "score_bias": False,
    "num_groups": 1,
    "top_groups": 1,
    "group_scoring": "max",  # max, top2_sum
    "top_p": None,
    "scaling": None,
    "capacity_factor": None,
    "expert_capacity": None, # absolute rows per expert (and sequence with
    "capacity_per_sequence": False,  # a [B, S] input)
    "dropped_pass_through": False,   # dropped slots keep the token
    "scale_input": False,    # routing weights scale the experts' input rows
                             # (Llama 4)
    "shared": 0,             # S shared experts
    "shared_I": None,        # their intermediate size (default: I)
    "shared_gate": False,
    "zero_experts": [],      # kinds: zero, copy, constant
    # Router logits: 'random'; 'one_expert' (every token strongly prefers
    # expert `target`); 'zero_tokens' (every `zero_every`-th token strongly
    # prefers the experts of kind `zero`, so that it reaches no FFN expert);
    # 'near_ties' (every other token's next two experts within 1-2% of its
    # best: band-based sparse_mixer routing sees them).
    "logits": "random",
    # 'logits': the layer takes the router logits; 'weight': it takes the
    # router weight [E + Z, H] (in the input's element type) and computes
    # them (moe.layer router_weight, -moe-fuse-router's form). Only with
    # 'random' logits.
    "router": "logits",
    "logit_scale": 1.5,
    "target": 0,
    "zero_every": 3,
    "quant_bits": None,      # 8 or 4: packed ui8 weights under #moe.quant
    "block_size": 0,         # quantisation block along K (0: per row)
    "zero_points": False,    # quantised: fcN_zero_points operands
    "weight_scale": 1.0,     # multiplies the fc1/fc3 weights (bigger
                             # pre-activations reach swiglu's limit)
}

KEYS = set(DEFAULTS) | {"name", "known_failure"}


def all_cases():
    """Every case spec, CPU then GPU."""
    return list(case_list.CASES) + list(gpu_cases.GPU_CASES)


def is_gpu_case(name):
    return any(c["name"] == name for c in gpu_cases.GPU_CASES)


def spec_of(name):
    """The case `name` with the defaults filled in."""
    for c in all_cases():
        if c["name"] == name:
            unknown = set(c) - KEYS
            if unknown:
                sys.exit("gen_case.py: case %s: unknown keys %s"
                         % (name, sorted(unknown)))
            spec = dict(DEFAULTS)
            spec.update(c)
            return spec
    sys.exit("gen_case.py: no case named '%s' (see --list-all)" % name)


def check_names():
    seen = set()
    for c in all_cases():
        if c["name"] in seen:
            sys.exit("gen_case.py: duplicate case name %s" % c["name"])
        seen.add(c["name"])


# --------------------------------------------------------------------------
# MLIR
# --------------------------------------------------------------------------

def tensor_type(shape, dtype):
    dims = "x".join("?" if d is None else str(d) for d in shape)
    return "tensor<%sx%s>" % (dims, dtype)


def fmt_float(v):
    return repr(float(v))


def layer_attributes(s):
    attrs = ["k = %d : i64" % s["k"]]
    if s["scoring"] != "softmax":
        attrs.append("scoring = #moe.scoring<%s>" % s["scoring"])
    if s["normalize"]:
        attrs.append("normalize")
    if s["num_groups"] != 1:
        attrs.append("num_groups = %d : i64" % s["num_groups"])
        attrs.append("top_groups = %d : i64" % s["top_groups"])
        attrs.append("group_scoring = #moe.group_scoring<%s>"
                     % s["group_scoring"])
    if s["top_p"] is not None:
        attrs.append("top_p = %s" % fmt_float(s["top_p"]))
    if s["scaling"] is not None:
        attrs.append("scaling = %s" % fmt_float(s["scaling"]))
    attrs.append("activation = #moe.activation<%s>" % s["activation"])
    if s["activation"] == "swiglu":
        attrs.append("swiglu_fusion = #moe.swiglu_fusion<%s>" % s["fusion"])
        for key in ("alpha", "beta", "limit"):
            if s[key] is not None:
                attrs.append("%s = %s" % (key, fmt_float(s[key])))
    if s["quant_bits"]:
        attrs.append("quant = #moe.quant<bits = %d, block_size = %d>"
                     % (s["quant_bits"], s["block_size"]))
    if s["capacity_factor"] is not None:
        attrs.append("capacity_factor = %s" % fmt_float(s["capacity_factor"]))
    if s["expert_capacity"] is not None:
        attrs.append("expert_capacity = %d : i64" % s["expert_capacity"])
    if s["capacity_per_sequence"]:
        attrs.append("capacity_per_sequence")
    if s["dropped_pass_through"]:
        attrs.append("dropped_pass_through")
    if s["scale_input"]:
        attrs.append("scale_input")
    if s["zero_experts"]:
        attrs.append("zero_experts = [%s]" % ", ".join(
            "#moe.zero_expert<%s>" % z for z in s["zero_experts"]))
    return "{" + ", ".join(attrs) + "}"


def operand_specs(s):
    """(operand name, shape, element type) of every moe.layer operand, in
    operand (= function argument) order. None is a dynamic dimension."""
    H, I, E = s["H"], s["I"], s["E"]
    Z = len(s["zero_experts"])
    C = s["zero_experts"].count("constant")
    wt = s["dtype"]
    swiglu = s["activation"] == "swiglu"
    fused = swiglu and s["fusion"] != "separate"
    has_fc3 = (swiglu and s["fusion"] == "separate") or \
        (not swiglu and s["glu"])
    f = 2 if fused else 1
    three_d = isinstance(s["tokens"], (list, tuple))

    # Quantised projections are packed ui8 [E, N, K / pack] with f32 scales
    # (and biases) and optional ui8 zero points (MoE.md).
    bits = s["quant_bits"]
    pack = 8 // bits if bits else 1
    pw = "ui8" if bits else wt

    ops = []
    ops.append(("input", [None, None, H] if three_d else [None, H],
                s["act_dtype"]))
    if s["router"] == "weight":
        if s["logits"] != "random":
            sys.exit("gen_case.py: %s: a router weight gives 'random' "
                     "logits only" % s["name"])
        ops.append(("router_weight", [E + Z, H], s["act_dtype"]))
    elif s["router"] == "logits":
        ops.append(("logits", [None, E + Z], "f32"))
    else:
        sys.exit("gen_case.py: %s: unknown router %s" % (s["name"],
                                                        s["router"]))
    ops.append(("fc1", [E, f * I, H // pack], pw))
    if s["bias"]:
        ops.append(("fc1_bias", [E, f * I], wt))
    ops.append(("fc2", [E, H, I // pack], pw))
    if s["bias"]:
        ops.append(("fc2_bias", [E, H], wt))
    if has_fc3:
        ops.append(("fc3", [E, I, H // pack], pw))
        if s["bias"]:
            ops.append(("fc3_bias", [E, I], wt))
    if bits:
        if wt != "f32" or s["shared"] or H % pack or I % pack:
            sys.exit("gen_case.py: %s: quantised cases need f32 scales, no "
                     "shared experts and H, I multiples of %d"
                     % (s["name"], pack))
        block = s["block_size"]
        projections = [("fc1", f * I, H), ("fc2", H, I)]
        if has_fc3:
            projections.append(("fc3", I, H))
        def scale_shape(n, k):
            return [E, n, -(-k // block)] if block else [E, n]
        for p, n, k in projections:
            ops.append((p + "_scales", scale_shape(n, k), "f32"))
        if s["zero_points"]:
            for p, n, k in projections:
                shape = scale_shape(n, k)
                if bits == 4:
                    shape[-1] = -(-shape[-1] // 2)
                ops.append((p + "_zero_points", shape, "ui8"))
    if s["score_bias"]:
        ops.append(("score_bias", [E + Z], "f32"))
    S = s["shared"]
    if S:
        Is = s["shared_I"] or I
        ops.append(("shared_fc1", [S, f * Is, H], wt))
        ops.append(("shared_fc2", [S, H, Is], wt))
        if has_fc3:
            ops.append(("shared_fc3", [S, Is, H], wt))
        if s["shared_gate"]:
            ops.append(("shared_gate", [H], "f32"))
    elif s["shared_gate"]:
        sys.exit("gen_case.py: %s: shared_gate needs shared experts"
                 % s["name"])
    if C:
        ops.append(("constants", [C, H], "f32"))
        ops.append(("constant_gates", [C, 2, H], "f32"))
    return ops


def write_mlir(path, s, ops):
    args, names, types = [], [], []
    for name, shape, dtype in ops:
        t = tensor_type(shape, dtype)
        args.append("%%%s: %s" % (name, t))
        types.append(t)
        names.append(name)
    result = types[0]
    if names[1] == "router_weight":
        parts = ["%%%s router_weight %%%s" % (names[0], names[1])]
    else:
        parts = ["%%%s, %%%s" % (names[0], names[1])]
    for name in names[2:]:
        parts.append("%s %%%s" % (name, name))
    text = []
    text.append("// Generated by test/e2e/gen_case.py for case '%s'; do not "
                "edit." % s["name"])
    text.append("func.func @moe_layer(%s)" % (",\n    ".join(args)))
    text.append("    -> %s {" % result)
    text.append("  %%y = moe.layer %s" % " ".join(parts))
    text.append("      %s" % layer_attributes(s))
    text.append("      : (%s)" % ", ".join(types))
    text.append("      -> %s" % result)
    text.append("  return %%y : %s" % result)
    text.append("}")
    with open(path, "w") as fh:
        fh.write("\n".join(text) + "\n")


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

def to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns ('<u2')."""
    import numpy as np
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    u = u.astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def token_count(s):
    t = s["tokens"]
    return t[0] * t[1] if isinstance(t, (list, tuple)) else t


def make_logits(s, rng):
    import numpy as np
    T = token_count(s)
    E = s["E"]
    kinds = s["zero_experts"]
    n = E + len(kinds)
    logits = rng.standard_normal((T, n)) * s["logit_scale"]
    zero_tokens = []
    mode = s["logits"]
    if mode == "one_expert":
        logits[:, s["target"]] += 12.0
    elif mode == "zero_tokens":
        zero_ids = [E + i for i, z in enumerate(kinds) if z == "zero"]
        if not zero_ids:
            sys.exit("gen_case.py: %s: 'zero_tokens' needs a zero expert"
                     % s["name"])
        for t in range(0, T, s["zero_every"]):
            logits[t, zero_ids] += 12.0
            zero_tokens.append(t)
    elif mode == "near_ties":
        # Every other token gets experts within ~1% of its best logits, so
        # that band-based routing (sparse_mixer) sees several in its band;
        # the gaps stay far above float32 rounding.
        for t in range(0, T, 2):
            order = np.argsort(-logits[t])
            best = logits[t, order[0]]
            logits[t, order[1]] = best - 0.008 * max(abs(best), 1.0)
            logits[t, order[2]] = best - 0.015 * max(abs(best), 1.0)
    elif mode != "random":
        sys.exit("gen_case.py: %s: unknown logits mode %s" % (s["name"], mode))
    return logits.astype(np.float32), zero_tokens


def expected_zero_tokens(s, zero_tokens):
    """Tokens whose output must be exactly 0: they reach no FFN expert and
    no copy/constant expert, and there is no shared expert."""
    if s["shared"]:
        return []
    T = token_count(s)
    if s["logits"] == "zero_tokens":
        n_zero = s["zero_experts"].count("zero")
        # All k slots go to zero experts, or top_p keeps only the first slot
        # (whose weight is ~1 after the +12 boost).
        if s["k"] <= n_zero or (s["top_p"] is not None and s["top_p"] < 0.9):
            return zero_tokens
        return []
    if (s["logits"] == "one_expert" and s["k"] == 1 and
            s["capacity_factor"] is not None and not s["zero_experts"] and
            s["target"] < s["E"]):
        import math
        cap = math.ceil(s["capacity_factor"] * T * 1 / s["E"])
        return list(range(min(cap, T), T))
    return []


def make_inputs(s, ops, rng):
    """Arrays in function-argument order (float32 or float16 values)."""
    import numpy as np
    H, I = s["H"], s["I"]
    Is = s["shared_I"] or I
    arrays = []
    zero_tokens = []
    for name, shape, _ in ops:
        if name == "input":
            t = s["tokens"]
            full = list(t) + [H] if isinstance(t, (list, tuple)) else [t, H]
            a = rng.standard_normal(full)
        elif name == "logits":
            a, zero_tokens = make_logits(s, rng)
        elif name == "router_weight":
            # Logits of about logit_scale's spread for unit-variance tokens.
            a = rng.standard_normal(shape) * (s["logit_scale"] / np.sqrt(H))
        elif s["quant_bits"] and name in ("fc1", "fc2", "fc3"):
            a = rng.integers(0, 256, size=shape)  # packed codes
        elif name.endswith("_zero_points"):
            # Codes around the middle of the range, packed like the weights.
            levels = 1 << s["quant_bits"]
            if s["quant_bits"] == 4:
                a = rng.integers(4, 12, size=shape) | (
                    rng.integers(4, 12, size=shape) << 4)
            else:
                a = rng.integers(levels // 4, 3 * levels // 4, size=shape)
        elif name.endswith("_scales"):
            # Dequantised weights of about unit variance over K inputs:
            # codes spread over `levels` have a standard deviation of
            # levels / sqrt(12).
            levels = 1 << s["quant_bits"]
            k = H if name in ("fc1_scales", "fc3_scales") else I
            a = rng.uniform(0.5, 1.5, size=shape) * (
                np.sqrt(12.0) / (levels * np.sqrt(k)))
            if name != "fc2_scales":
                a = a * s["weight_scale"]
        elif name in ("fc1", "fc3", "shared_fc1", "shared_fc3"):
            a = rng.standard_normal(shape) * (s["weight_scale"] / np.sqrt(H))
        elif name == "fc2":
            a = rng.standard_normal(shape) / np.sqrt(I)
        elif name == "shared_fc2":
            a = rng.standard_normal(shape) / np.sqrt(Is)
        elif name.endswith("_bias") and name != "score_bias":
            a = rng.standard_normal(shape) * 0.2
        elif name == "score_bias":
            # Large enough to change the selection now and then.
            a = rng.standard_normal(shape) * (
                0.3 if s["scoring"] == "sigmoid" else 0.5)
        elif name == "shared_gate":
            a = rng.standard_normal(shape) / np.sqrt(H)
        elif name == "constants":
            a = rng.standard_normal(shape)
        elif name == "constant_gates":
            a = rng.standard_normal(shape) / np.sqrt(H)
        else:
            raise AssertionError(name)
        arrays.append(np.asarray(a, dtype=np.int64 if np.issubdtype(
            np.asarray(a).dtype, np.integer) else np.float32))
    return arrays, zero_tokens


def write_inputs(directory, s, ops, arrays):
    import numpy as np
    files = []
    for i, ((name, _, dtype), a) in enumerate(zip(ops, arrays)):
        path = os.path.join(directory, "in%02d_%s.npy" % (i, name))
        if dtype == "bf16":
            if s["bf16_file"] == "bits":
                np.save(path, to_bf16_bits(a))
            elif s["bf16_file"] == "f32":
                np.save(path, a.astype(np.float32))  # moe-run: f32 -> bf16
            else:
                sys.exit("gen_case.py: bad bf16_file %s" % s["bf16_file"])
        elif dtype == "f16":
            np.save(path, a.astype(np.float16))
        elif dtype == "ui8":
            np.save(path, a.astype(np.uint8))
        else:
            np.save(path, a.astype(np.float32))
        files.append(os.path.basename(path))
    return files


def generate(name, directory):
    import numpy as np
    s = spec_of(name)
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    ops = operand_specs(s)
    write_mlir(os.path.join(directory, "layer.mlir"), s, ops)
    arrays, zero_tokens = make_inputs(s, ops, rng)
    files = write_inputs(directory, s, ops, arrays)
    meta = {
        "name": name,
        "inputs": files,
        "hidden": s["H"],
        "tokens": token_count(s),
        "expect_zero_tokens": expected_zero_tokens(s, zero_tokens),
        "spec": s,
    }
    with open(os.path.join(directory, "case.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    return meta


def main(argv):
    check_names()
    if len(argv) == 2 and argv[1] in ("--list", "--list-all", "--list-gpu",
                                      "--list-gpu-all"):
        gpu = argv[1].startswith("--list-gpu")
        for c in gpu_cases.GPU_CASES if gpu else case_list.CASES:
            if argv[1].endswith("-all") or not c.get("known_failure"):
                print(c["name"])
        return 0
    if len(argv) == 3 and argv[1] == "--show":
        print(json.dumps(spec_of(argv[2]), indent=1))
        return 0
    if len(argv) == 3 and not argv[1].startswith("-"):
        generate(argv[1], argv[2])
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
