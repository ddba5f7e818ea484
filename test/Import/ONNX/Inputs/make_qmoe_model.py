#!/usr/bin/python3
"""Writes small com.microsoft.QMoE models, their inputs and a float64
reference output for the importer tests, and compares outputs with it.

Usage:
  make_qmoe_model.py model KIND OUTDIR   writes OUTDIR/model.onnx, x.npy,
                                         logits.npy and ref.npy
  make_qmoe_model.py compare OURS.npy ORT.npy REF.npy [--slack S]
      prints how far we and ONNX Runtime each are from the float64
      reference (max|out - ref| / max|ref|) and fails when ours is further
      than max(ORT's distance * S, 1e-6)

KIND (weights are initializers; input and logits are graph inputs):
  int8_row        8-bit, per-row scales, SwiGLU interleaved, 2-D input
  int4_row        4-bit, per-row scales, SiLU, 3-D input
  int8_block      8-bit, block_size 32 (I = 80: a partial last block, fc1
                  wider than one dequantised panel), zero points, SwiGLU
  int4_block      4-bit, block_size 32, zero points, SwiGLU, 3-D input
                  (I = 64: ONNX Runtime 1.30 reads 4-bit block-wise zero
                  points as row-packed when a row has a single block, so
                  every projection here has at least two blocks)
  int4_block_sym  4-bit, block_size 32, no zero points, ReLU, 2-D input
  int4_row_zp     4-bit, per-row scales and (row-packed) zero points, ReLU
  int4_block_odd  4-bit, block_size 16, H = I = 48: three blocks a row, so
                  the last zero-point byte is half used; ReLU
  int8_row_norm   8-bit per row, GELU, k = 3, normalize_routing_weights = 1
                  (the same routing: the softmax over the k is normalised)
  int4_f16        4-bit, block_size 32, zero points, SwiGLU, all float16
  int8_inputs     8-bit, block_size 32, zero points, SiLU; weights, scales
                  and zero points are graph inputs (also written as
                  fc1_q.npy, fc1_s.npy, ...: x, logits, fc1_q, fc1_s, fc1_b,
                  fc2_q, fc2_s, fc2_b, fc1_zp, fc2_zp), token count "T"
  int4_single_block  4-bit, block_size 32, zero points, I = 32: fc2 rows
                  are a single block (ONNX Runtime reads these zero points
                  differently; the importer warns)
Error kinds (models the importer must reject):
  bits2           expert_weight_bits = 2
  router_weights  a 15th input (router_weights)
  bad_block       block_size = 24
  prepacked       weights_prepacked = 1
  no_scales       fc1_scales missing
  fp4             quant_type = 'fp4'
  accuracy_level  an attribute ONNX Runtime 1.30's QMoE does not have
  bad_scales      fc1_scales with half the rows fc1 has
"""
import math
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

E = 4


def quantize(rng, n, k, bits, block, zero_points, dtype):
    """Random packed weights [E, n, k * bits / 8], scales (`dtype`) and zero
    points in ONNX Runtime's layout, and the float64 dequantised [E, n, k]."""
    levels = 1 << bits
    q = rng.integers(0, levels, size=(E, n, k), dtype=np.int64)
    blocks = 1 if block == 0 else -(-k // block)
    scales = (rng.uniform(0.5, 1.5, size=(E, n, blocks)) /
              (levels * np.sqrt(k))).astype(dtype)
    if zero_points:
        zp = rng.integers(levels // 4, 3 * levels // 4, size=(E, n, blocks),
                          dtype=np.int64)
    else:
        zp = np.full((E, n, blocks), levels // 2, dtype=np.int64)
    col_block = np.minimum(np.arange(k) // (block or k), blocks - 1)
    w = (q - zp[:, :, col_block]) * scales.astype(np.float64)[:, :, col_block]
    if bits == 4:
        packed = (q[:, :, 0::2] | (q[:, :, 1::2] << 4)).astype(np.uint8)
    else:
        packed = q.astype(np.uint8)
    scales_out = scales[:, :, 0] if block == 0 else scales
    zp_out = None
    if zero_points:
        zp_blocks = zp[:, :, 0] if block == 0 else zp   # [E, n] or [E, n, b]
        if bits == 4:
            # Two per byte, low nibble first, along the last axis (rows for
            # per-row scales, blocks otherwise).
            if zp_blocks.shape[-1] % 2:
                pad = np.zeros(zp_blocks.shape[:-1] + (1,), dtype=np.int64)
                zp_blocks = np.concatenate([zp_blocks, pad], axis=-1)
            zp_blocks = zp_blocks[..., 0::2] | (zp_blocks[..., 1::2] << 4)
        zp_out = zp_blocks.astype(np.uint8)
    return packed, scales_out, zp_out, w


def silu(x):
    return x / (1.0 + np.exp(-x))


def reference(x, logits, k, act, w1, b1, w2, b2, alpha, beta, limit):
    """ORT's CPU QMoE in float64: top-k on the raw logits (ties to the lower
    index), softmax over the k chosen, per-expert FFN."""
    tokens = x.reshape(-1, x.shape[-1]).astype(np.float64)
    lg = logits.astype(np.float64)
    out = np.zeros_like(tokens)
    for t in range(tokens.shape[0]):
        ids = sorted(range(lg.shape[1]), key=lambda e: (-lg[t, e], e))[:k]
        chosen = lg[t, ids]
        p = np.exp(chosen - chosen.max())
        p /= p.sum()
        for e, weight in zip(ids, p):
            a = w1[e] @ tokens[t] + b1[e]
            if act == "swiglu":
                g, l = a[0::2], a[1::2]
                if limit is not None:
                    g = np.minimum(g, limit)
                    l = np.clip(l, -limit, limit)
                h = g / (1.0 + np.exp(-alpha * g)) * (l + beta)
            elif act == "silu":
                h = silu(a)
            elif act == "relu":
                h = np.maximum(a, 0.0)
            elif act == "gelu":
                h = 0.5 * a * (1.0 + np.vectorize(math.erf)(a / math.sqrt(2.0)))
            else:
                raise ValueError(act)
            out[t] += weight * (w2[e] @ h + b2[e])
    return out.reshape(x.shape)


def model(kind, outdir):
    rng = np.random.default_rng(sum(map(ord, kind)))
    cfg = dict(bits=8, block=0, zp=False, act="swiglu", shape=(16,), H=64,
               I=32, k=2)
    cfg.update({
        "int8_row": {},
        "int4_row": dict(bits=4, act="silu", shape=(2, 8)),
        "int8_block": dict(block=32, zp=True, I=80),
        "int4_block": dict(bits=4, block=32, zp=True, shape=(2, 8), I=64),
        "int4_block_sym": dict(bits=4, block=32, act="relu"),
        "int4_row_zp": dict(bits=4, zp=True, act="relu", I=48),
        "int4_block_odd": dict(bits=4, block=16, zp=True, H=48, I=48,
                               act="relu"),
        "int4_single_block": dict(bits=4, block=32, zp=True, I=32),
        "int8_row_norm": dict(normalize=1, act="gelu", k=3),
        "int4_f16": dict(bits=4, block=32, zp=True, I=64, dtype=np.float16),
        "int8_inputs": dict(block=32, zp=True, act="silu", shape=("T",),
                            tokens=12),
    }.get(kind, {}))
    dtype = cfg.get("dtype", np.float32)
    elem = (TensorProto.FLOAT16 if dtype == np.float16 else
            TensorProto.FLOAT)
    bits, block, H, I, k, act = (cfg["bits"], cfg["block"], cfg["H"],
                                 cfg["I"], cfg["k"], cfg["act"])
    f = 2 if act == "swiglu" else 1
    q1, s1, z1, w1 = quantize(rng, f * I, H, bits, block, cfg["zp"], dtype)
    q2, s2, z2, w2 = quantize(rng, H, I, bits, block, cfg["zp"], dtype)
    b1 = (0.1 * rng.standard_normal((E, f * I))).astype(dtype)
    b2 = (0.1 * rng.standard_normal((E, H))).astype(dtype)
    # A symbolic token dimension ("T") is given `tokens` rows of data.
    shape = tuple(cfg.get("tokens", d) if d == "T" else d
                  for d in cfg["shape"])
    x = rng.standard_normal(shape + (H,)).astype(dtype)
    tokens = int(np.prod(shape))
    logits = rng.standard_normal((tokens, E)).astype(dtype)

    inits = {"fc1_q": q1, "fc1_s": s1, "fc1_b": b1, "fc2_q": q2, "fc2_s": s2,
             "fc2_b": b2}
    inputs = ["x", "logits", "fc1_q", "fc1_s", "fc1_b", "fc2_q", "fc2_s",
              "fc2_b", "", "", ""]
    if cfg["zp"]:
        inits.update(fc1_zp=z1, fc2_zp=z2)
        inputs += ["fc1_zp", "fc2_zp"]
    attrs = dict(k=k, expert_weight_bits=bits, activation_type=act,
                 normalize_routing_weights=cfg.get("normalize", 0))
    if block:
        attrs["block_size"] = block
    alpha, beta, limit = 1.0, 0.0, None
    if act == "swiglu":
        alpha, beta, limit = 1.702, 1.0, 7.0
        attrs.update(swiglu_fusion=1, activation_alpha=alpha,
                     activation_beta=beta, swiglu_limit=limit)

    # Error kinds: damage an otherwise good int8_row model.
    if kind == "bits2":
        attrs["expert_weight_bits"] = 2
    elif kind == "router_weights":
        inputs = inputs[:11] + ["", "", "", "logits"]
    elif kind == "bad_block":
        attrs["block_size"] = 24
    elif kind == "prepacked":
        attrs["weights_prepacked"] = 1
    elif kind == "no_scales":
        inputs[3] = ""
    elif kind == "fp4":
        attrs["quant_type"] = "fp4"
    elif kind == "accuracy_level":
        attrs["accuracy_level"] = 4
    elif kind == "bad_scales":
        inits["fc1_s"] = s1[:, :I]

    node = helper.make_node("QMoE", inputs, ["y"], domain="com.microsoft",
                            name="qmoe", **attrs)
    x_shape = list(cfg["shape"]) + [H]
    logits_shape = ["T" if "T" in cfg["shape"] else tokens, E]
    graph_inputs = [helper.make_tensor_value_info("x", elem, x_shape),
                    helper.make_tensor_value_info("logits", elem,
                                                  logits_shape)]
    initializers = [numpy_helper.from_array(v, n) for n, v in inits.items()]
    if kind.endswith("_inputs"):
        # Weights as graph inputs, in `inits` order after x and logits.
        graph_inputs += [
            helper.make_tensor_value_info(
                n, TensorProto.UINT8 if v.dtype == np.uint8 else elem,
                list(v.shape)) for n, v in inits.items()]
        initializers = []
    graph = helper.make_graph(
        [node], "qmoe_test", graph_inputs,
        [helper.make_tensor_value_info("y", elem, x_shape)], initializers)
    onnx_model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    os.makedirs(outdir, exist_ok=True)
    save(onnx_model, os.path.join(outdir, "model.onnx"))
    np.save(os.path.join(outdir, "x.npy"), x)
    np.save(os.path.join(outdir, "logits.npy"), logits)
    if kind.endswith("_inputs"):
        for n, v in inits.items():
            np.save(os.path.join(outdir, n + ".npy"), v)
    ref = reference(x, logits, k, act, w1, b1.astype(np.float64), w2,
                    b2.astype(np.float64), alpha, beta, limit)
    np.save(os.path.join(outdir, "ref.npy"), ref)


def compare(ours_path, ort_path, ref_path, slack):
    ours, ort, ref = (np.load(p).astype(np.float64)
                      for p in (ours_path, ort_path, ref_path))
    scale = np.abs(ref).max()
    ours_err = np.abs(ours - ref).max() / scale
    ort_err = np.abs(ort - ref).max() / scale
    bound = max(ort_err * slack, 1e-6)
    good = ours_err <= bound
    print(f"distance to float64 reference: ours {ours_err:.3g}, "
          f"ORT {ort_err:.3g} (bound {bound:.3g}): "
          f"{'PASS' if good else 'FAIL'}")
    sys.exit(0 if good else 1)


def main():
    if sys.argv[1] == "model":
        model(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "compare":
        slack = 1.5
        if "--slack" in sys.argv:
            slack = float(sys.argv[sys.argv.index("--slack") + 1])
        compare(sys.argv[2], sys.argv[3], sys.argv[4], slack)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
