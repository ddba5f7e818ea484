#!/usr/bin/python3
"""Builds the ONNX Runtime MoE golden model and its inputs.

Writes <out_dir>/model.onnx (one com.microsoft.MoE node) and one
<input name>.npy per graph input. Nothing here is committed except this
script: the data is regenerated from the integer generator below, which
test/unit/OrtGoldenTest.cpp implements identically in C++.

Usage: /usr/bin/python3 make_model.py OUT_DIR
Needs numpy and onnx (Debian: python3-numpy python3-onnx).
"""
import os
import sys

import numpy as np
from onnx import TensorProto, checker, helper, save

# Shapes of ORT's test_moe_cpu.py (batch 2 x seq 32 -> T = 64 tokens).
BATCH, SEQ, HIDDEN, INTER, EXPERTS, TOP_K = 2, 32, 64, 256, 4, 2

# gpt-oss SwiGLU parameters. ONNX float attributes are float32, so the
# evaluator must use float32(1.702), not the double 1.702.
ALPHA, BETA, LIMIT = 1.702, 1.0, 7.0

# name -> (shape, seed, scale). Scales are powers of two so every generated
# value is exactly representable in float32. Keep in sync with
# test/unit/OrtGoldenTest.cpp.
TENSORS = {
    "input": ((BATCH, SEQ, HIDDEN), 1, 1.0),
    "router_probs": ((BATCH * SEQ, EXPERTS), 2, 2.0),
    "fc1_experts_weights": ((EXPERTS, 2 * INTER, HIDDEN), 3, 1.0),
    "fc1_experts_bias": ((EXPERTS, 2 * INTER), 4, 0.5),
    "fc2_experts_weights": ((EXPERTS, HIDDEN, INTER), 5, 0.0625),
    "fc2_experts_bias": ((EXPERTS, HIDDEN), 6, 0.25),
}


def lcg_values(seed, count, scale):
    """32-bit LCG x <- x*1664525 + 1013904223 (mod 2^32), advanced once
    before each value; value = ((x >> 8) / 2^24 * 2 - 1) * scale, i.e. the
    top 24 bits mapped to [-scale, scale) in steps of scale / 2^23."""
    x = seed & 0xFFFFFFFF
    out = np.empty(count, dtype=np.float64)
    for i in range(count):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = ((x >> 8) - (1 << 23)) * (scale / (1 << 23))
    as_f32 = out.astype(np.float32)
    assert np.array_equal(as_f32.astype(np.float64), out), "value not exact"
    return as_f32


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_model.py OUT_DIR")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)

    graph_inputs = []
    for name, (shape, seed, scale) in TENSORS.items():
        values = lcg_values(seed, int(np.prod(shape)), scale).reshape(shape)
        np.save(os.path.join(out_dir, name + ".npy"), values)
        graph_inputs.append(
            helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))

    node = helper.make_node(
        "MoE",
        inputs=list(TENSORS.keys()),
        outputs=["output"],
        domain="com.microsoft",
        k=TOP_K,
        activation_type="swiglu",
        swiglu_fusion=1,  # interleaved: gate = 2i, linear = 2i + 1
        activation_alpha=ALPHA,
        activation_beta=BETA,
        swiglu_limit=LIMIT,
        normalize_routing_weights=1,
    )
    output = helper.make_tensor_value_info(
        "output", TensorProto.FLOAT, [BATCH, SEQ, HIDDEN])
    graph = helper.make_graph([node], "moe_swiglu_golden", graph_inputs,
                              [output])
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17),
                       helper.make_opsetid("com.microsoft", 1)],
        producer_name="moe-mlir golden")
    # The MoE schema lives in ORT, not in the onnx package: check the graph
    # structure only.
    checker.check_model(model)
    save(model, os.path.join(out_dir, "model.onnx"))
    print("wrote", out_dir)


if __name__ == "__main__":
    main()
