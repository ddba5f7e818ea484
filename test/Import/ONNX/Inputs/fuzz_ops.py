#!/usr/bin/python3
"""Feeds semantically damaged ONNX models of the standard ops to a tool.

Usage: fuzz_ops.py TOOL MODELS_DIR WORKDIR [PER_MODEL] [--compile]
For every MODELS_DIR/*/model.onnx, writes PER_MODEL variants with one
mutation each (an attribute set to an odd value, an input dropped or
renamed, a graph input's shape or element type changed, an initializer
reshaped) and runs TOOL on it (`TOOL MODEL` for moe-import-onnx, `TOOL
MODEL -o OUT` with --compile). The tool must exit 0 or 1, never die of a
signal. Prints a summary; exits 1 naming the first model that crashed it.
"""
import glob
import os
import random
import subprocess
import sys

import onnx
from onnx import TensorProto, helper, numpy_helper

ODD_INTS = [-7, -2, -1, 0, 1, 2, 3, 9, 1 << 40]
TYPES = [TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32,
         TensorProto.BOOL, TensorProto.UINT8, TensorProto.FLOAT16,
         TensorProto.STRING]


def mutate(model, rng):
    graph = model.graph
    kind = rng.randrange(6)
    if kind == 0 and graph.node:
        node = rng.choice(graph.node)
        if node.attribute:
            attr = rng.choice(node.attribute)
            if attr.type == onnx.AttributeProto.INT:
                attr.i = rng.choice(ODD_INTS)
            elif attr.type == onnx.AttributeProto.INTS:
                attr.ints[:] = [rng.choice(ODD_INTS)
                                for _ in range(rng.randrange(4))]
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = rng.choice([-1.0, 0.0, 1e30, float("nan")])
            elif attr.type == onnx.AttributeProto.STRING:
                attr.s = b"bogus"
        else:
            node.attribute.append(helper.make_attribute(
                rng.choice(["axis", "perm", "keepdims"]), rng.choice(ODD_INTS)))
    elif kind == 1 and graph.node:
        node = rng.choice(graph.node)
        if node.input and rng.random() < 0.5:
            del node.input[rng.randrange(len(node.input))]
        else:
            node.input.append(rng.choice(["", node.input[0] if node.input
                                          else "x"]))
    elif kind == 2 and graph.input:
        inp = rng.choice(graph.input)
        dims = inp.type.tensor_type.shape.dim
        if dims and rng.random() < 0.7:
            d = rng.choice(dims)
            if rng.random() < 0.5:
                d.dim_param = "N"
            else:
                d.dim_value = rng.choice([0, 1, 2, 5, 7])
        else:
            dims.add().dim_value = rng.choice([1, 3])
    elif kind == 3 and graph.input:
        rng.choice(graph.input).type.tensor_type.elem_type = rng.choice(TYPES)
    elif kind == 4 and graph.initializer:
        init = rng.choice(graph.initializer)
        array = numpy_helper.to_array(init)
        if array.size > 1 and rng.random() < 0.5:
            array = array.reshape(-1)[: array.size // 2]
        else:
            array = array.reshape([1] + list(array.shape))
        init.CopyFrom(numpy_helper.from_array(array, init.name))
    elif graph.node:
        node = rng.choice(graph.node)
        node.op_type = rng.choice(["Gather", "Reshape", "Concat", "Slice",
                                   "TopK", "MatMul", "Softmax", "Expand"])


def main():
    tool, models, work = sys.argv[1:4]
    per_model = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    compile_ = "--compile" in sys.argv
    os.makedirs(work, exist_ok=True)
    rng = random.Random(4321)
    outcomes = {0: 0, 1: 0}
    for path in sorted(glob.glob(os.path.join(models, "*", "model.onnx"))):
        base = onnx.load(path)
        for i in range(per_model):
            model = onnx.ModelProto()
            model.CopyFrom(base)
            mutate(model, rng)
            name = os.path.join(
                work, f"{os.path.basename(os.path.dirname(path))}_{i}.onnx")
            onnx.save(model, name)
            cmd = [tool, name] + (["-o", name + ".so"] if compile_ else [])
            try:
                result = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, timeout=120)
            except subprocess.TimeoutExpired:
                sys.exit(f"fuzz_ops: {name}: hangs")
            if result.returncode not in (0, 1):
                sys.exit(f"fuzz_ops: {name}: exit {result.returncode}\n"
                         f"{result.stderr.decode()[-2000:]}")
            outcomes[result.returncode] += 1
    print(f"fuzz_ops: {sum(outcomes.values())} mutated models: "
          f"{outcomes[0]} accepted, {outcomes[1]} rejected with an error, "
          "0 crashes")


if __name__ == "__main__":
    main()
