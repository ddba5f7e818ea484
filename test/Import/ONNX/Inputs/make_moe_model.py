#!/usr/bin/python3
"""Writes small com.microsoft.MoE models for the importer tests.

Usage: make_moe_model.py KIND OUT.onnx
KIND: initializers  weights and biases as initializers, 3-D input, swiglu
      inputs        weights as graph inputs, symbolic token dim, silu + fc3
      external      like initializers, fc1 stored as external data
      legacy        like initializers, in ORT's pre-1.23 layout
                    (fc1 [E, H, 2I], fc2 [E, I, H])
      sparse_mixer  use_sparse_mixer = 1, weights as graph inputs; also
                    writes OUT.<input>.npy for every graph input
      sparse_mixer_k3  use_sparse_mixer = 1 with k = 3 (invalid)
      unknown_op    a lone Det node (not supported)
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save
from onnx.external_data_helper import convert_model_to_external_data

E, H, I = 4, 8, 16


def main():
    kind, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(7)
    f32 = TensorProto.FLOAT
    if kind == "unknown_op":
        node = helper.make_node("Det", ["x"], ["y"], name="act")
        graph = helper.make_graph(
            [node], "det", [helper.make_tensor_value_info("x", f32, [2, 2])],
            [helper.make_tensor_value_info("y", f32, [])])
        save(helper.make_model(graph), out)
        return
    swiglu = kind != "inputs"
    fc1_rows = 2 * I if swiglu else I
    weights = {
        "fc1": rng.standard_normal((E, fc1_rows, H)).astype(np.float32),
        "fc1_b": rng.standard_normal((E, fc1_rows)).astype(np.float32),
        "fc2": rng.standard_normal((E, H, I)).astype(np.float32),
    }
    inputs = ["x", "logits", "fc1", "fc1_b", "fc2"]
    attrs = dict(k=2, normalize_routing_weights=1)
    if swiglu:
        attrs.update(activation_type="swiglu", swiglu_fusion=1,
                     activation_alpha=1.702, activation_beta=1.0,
                     swiglu_limit=7.0)
    else:
        weights["fc3"] = rng.standard_normal((E, I, H)).astype(np.float32)
        inputs += ["", "fc3"]
        attrs.update(activation_type="silu")
    if kind.startswith("sparse_mixer"):
        attrs["use_sparse_mixer"] = 1
    if kind == "sparse_mixer_k3":
        attrs["k"] = 3
    node = helper.make_node("MoE", inputs, ["y"], domain="com.microsoft",
                            name="moe", **attrs)
    x_shape = ["T", H] if kind == "inputs" else [2, 3, H]
    graph_inputs = [helper.make_tensor_value_info("x", f32, x_shape),
                    helper.make_tensor_value_info(
                        "logits", f32, ["T" if kind == "inputs" else 6, E])]
    initializers = []
    if kind == "legacy":
        weights["fc1"] = weights["fc1"].transpose(0, 2, 1).copy()
        weights["fc2"] = weights["fc2"].transpose(0, 2, 1).copy()
    for name, value in weights.items():
        if kind in ("inputs", "sparse_mixer"):
            graph_inputs.append(
                helper.make_tensor_value_info(name, f32, list(value.shape)))
        else:
            initializers.append(numpy_helper.from_array(value, name))
    graph = helper.make_graph(
        [node], "moe_test", graph_inputs,
        [helper.make_tensor_value_info("y", f32, x_shape)], initializers)
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    if kind == "external":
        convert_model_to_external_data(
            model, all_tensors_to_one_file=True,
            location=os.path.basename(out) + ".data", size_threshold=1024)
    save(model, out)
    if kind == "sparse_mixer":
        # Inputs for a run: logits with near ties in every other token (the
        # next expert within 1% of the best), so SparseMixer's band holds
        # more than the chosen expert.
        x = rng.standard_normal((2, 3, H)).astype(np.float32)
        logits = (rng.standard_normal((6, E)) * 2).astype(np.float32)
        for t in range(0, 6, 2):
            order = np.argsort(-logits[t])
            logits[t, order[1]] = logits[t, order[0]] - 0.01 * abs(logits[t, order[0]])
        for name, value in dict(x=x, logits=logits, **weights).items():
            np.save("%s.%s.npy" % (out, name), value)


if __name__ == "__main__":
    main()
