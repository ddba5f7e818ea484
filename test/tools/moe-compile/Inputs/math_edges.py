#!/usr/bin/env python3
"""Unary float functions at their edges, for moe-compile's polynomial
approximations (-moe-approximate-math).

  math_edges.py make DIR     writes DIR/model.onnx (Exp, Tanh, Erf, Log,
                             Sigmoid of one input) and DIR/x.npy
  math_edges.py check DIR    compares DIR/out<i>.npy with float64 numpy:
                             equal, both NaN, or within 2e-6 relative
"""
import math
import os
import sys

import numpy as np

OPS = ["Exp", "Tanh", "Erf", "Log", "Sigmoid"]


def make(folder):
    import onnx
    from onnx import TensorProto, helper
    os.makedirs(folder, exist_ok=True)
    edges = [-np.inf, -3.4e38, -1e30, -100, -88.5, -87, -50, -10, -1, -1e-3, 0,
             1e-3, 1, 10, 50, 87, 88.5, 88.8, 89, 100, 1e30, np.inf, np.nan]
    x = np.array(edges + list(np.linspace(-20, 20, 81)), dtype=np.float32)
    np.save(os.path.join(folder, "x.npy"), x)
    n = len(x)
    nodes = [helper.make_node(op, ["x"], [op.lower()]) for op in OPS]
    graph = helper.make_graph(
        nodes, "edges", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info(op.lower(), TensorProto.FLOAT, [n]) for op in OPS])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              os.path.join(folder, "model.onnx"))


def check(folder):
    x = np.load(os.path.join(folder, "x.npy")).astype(np.float64)
    erf = np.vectorize(lambda v: v if math.isnan(v) else math.erf(v))
    with np.errstate(all="ignore"):
        refs = [np.exp(x), np.tanh(x), erf(x), np.log(np.where(x >= 0, x, np.nan)),
                1 / (1 + np.exp(-x))]
    failed = 0
    for i, (op, ref) in enumerate(zip(OPS, refs)):
        ref = ref.astype(np.float32).astype(np.float64)
        out = np.load(os.path.join(folder, f"out{i}.npy")).astype(np.float64)
        with np.errstate(all="ignore"):
            ok = ((np.isnan(ref) & np.isnan(out)) | (ref == out) |
                  (np.abs(out - ref) <= 2e-6 * np.maximum(1, np.abs(ref))))
        bad = [(x[j], out[j], ref[j]) for j in np.flatnonzero(~ok)]
        print(f"{op}: {len(bad)} of {len(x)} off", bad[:4])
        failed += len(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    sys.exit(make(sys.argv[2]) if sys.argv[1] == "make" else check(sys.argv[2]))
