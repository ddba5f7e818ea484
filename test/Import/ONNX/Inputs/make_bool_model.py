#!/usr/bin/env python3
"""A graph with bool inputs and outputs (masks): Greater, Where, And.

  make_bool_model.py OUTDIR
Writes OUTDIR/model.onnx and x.npy, y.npy, mask.npy (fixed seed), plus
bad_mask.npy, a '|b1' file holding a byte that is not 0 or 1."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
f32, b = TensorProto.FLOAT, TensorProto.BOOL
nodes = [helper.make_node("Greater", ["x", "y"], ["gt"]),
         helper.make_node("Where", ["mask", "x", "y"], ["picked"]),
         helper.make_node("And", ["gt", "mask"], ["both"])]
graph = helper.make_graph(
    nodes, "bools",
    [helper.make_tensor_value_info("x", f32, ["T", 5]),
     helper.make_tensor_value_info("y", f32, ["T", 5]),
     helper.make_tensor_value_info("mask", b, ["T", 5])],
    [helper.make_tensor_value_info("gt", b, ["T", 5]),
     helper.make_tensor_value_info("picked", f32, ["T", 5]),
     helper.make_tensor_value_info("both", b, ["T", 5])])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
          os.path.join(out, "model.onnx"))
rng = np.random.default_rng(0)
np.save(os.path.join(out, "x.npy"), rng.standard_normal((4, 5)).astype(np.float32))
np.save(os.path.join(out, "y.npy"), rng.standard_normal((4, 5)).astype(np.float32))
mask = rng.random((4, 5)) > 0.5
np.save(os.path.join(out, "mask.npy"), mask)
bad = os.path.join(out, "bad_mask.npy")
np.save(bad, mask)
data = bytearray(open(bad, "rb").read())
data[-1] = 2
open(bad, "wb").write(bytes(data))
