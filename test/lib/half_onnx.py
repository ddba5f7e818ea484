#!/usr/bin/env python3
"""Converts an f32 ONNX model, and .npy inputs for it, to float16 or
bfloat16 the way a half-precision export holds them: every f32 initializer,
Constant value and graph input/output becomes the half type, and every
Cast to f32 casts to it instead, so the graph computes in that type
throughout. Values beyond the type's range are clamped to its largest
finite value first, as exporters write masks (torch.finfo(dtype).min).

  half_onnx.py f16|bf16 IN.onnx OUT.onnx [IN.npy OUT.npy]...

(Debian's onnx 1.12 has no float16 converter, and torch 1.13 cannot run a
model in half precision on the CPU to export it.) bf16 arrays are written
as uint16 bits, the project's .npy convention.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

LIMITS = {"f16": 65504.0, "bf16": 3.3895313892515355e38}


def bf16_bits(values):
    """Round-to-nearest-even bf16 bits of float32 values."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def to_half(values, kind):
    """float32 values as float16, or as bf16 bits (uint16)."""
    clamped = np.clip(values.astype(np.float32), -LIMITS[kind], LIMITS[kind])
    return clamped.astype(np.float16) if kind == "f16" else bf16_bits(clamped)


def convert_tensor(tensor, kind):
    if tensor.data_type != TensorProto.FLOAT:
        return
    half = to_half(numpy_helper.to_array(tensor), kind)
    out = TensorProto()
    out.name = tensor.name
    out.dims.extend(tensor.dims)
    out.data_type = TensorProto.FLOAT16 if kind == "f16" else TensorProto.BFLOAT16
    out.raw_data = half.tobytes()
    tensor.CopyFrom(out)


def convert_graph(graph, kind):
    half_type = TensorProto.FLOAT16 if kind == "f16" else TensorProto.BFLOAT16
    for tensor in graph.initializer:
        convert_tensor(tensor, kind)
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = half_type
    del graph.value_info[:]  # the f32 types recorded by shape inference
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                convert_tensor(attr.t, kind)
            elif attr.type == onnx.AttributeProto.GRAPH:
                convert_graph(attr.g, kind)
            elif (node.op_type == "Cast" and attr.name == "to"
                  and attr.i == TensorProto.FLOAT):
                attr.i = half_type


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in LIMITS or len(sys.argv) % 2:
        sys.exit(__doc__)
    kind = sys.argv[1]
    model = onnx.load(sys.argv[2])
    convert_graph(model.graph, kind)
    onnx.save(model, sys.argv[3])
    for src, dst in zip(sys.argv[4::2], sys.argv[5::2]):
        values = np.load(src)
        np.save(dst, to_half(values, kind) if values.dtype == np.float32 else values)


if __name__ == "__main__":
    main()
