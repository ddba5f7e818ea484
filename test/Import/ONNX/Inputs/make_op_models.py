#!/usr/bin/env python3
"""Small ONNX models of the standard ai.onnx ops, with inputs.

  make_op_models.py NAME OUTDIR     writes OUTDIR/model.onnx and the graph
                                    inputs as OUTDIR/in0.npy, in1.npy, ...
  make_op_models.py --list          prints the case names

Inputs are drawn from fixed seeds. A graph input whose declared shape holds
a string (e.g. "T") has a symbolic, dynamic dimension there; the .npy holds
one concrete size.
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

f32, i64, i32, b1 = (TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32,
                     TensorProto.BOOL)
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def rand(shape, seed, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def ints(values, dtype=np.int64):
    return np.array(values, dtype=dtype)


class Model:
    """A graph being built: inputs (with .npy data), initializers, nodes."""

    def __init__(self, opset=17):
        self.opset = opset
        self.nodes, self.inputs, self.data, self.inits = [], [], [], []
        self.outputs = []
        self.domains = {}

    def input(self, name, array, shape=None):
        dtype = {np.float32: f32, np.int64: i64, np.int32: i32,
                 np.bool_: b1}[array.dtype.type]
        self.inputs.append(helper.make_tensor_value_info(
            name, dtype, shape if shape is not None else list(array.shape)))
        self.data.append(array)
        return name

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, outputs, domain="", **attrs):
        if domain:
            self.domains[domain] = 1
        self.nodes.append(helper.make_node(
            op, inputs, outputs, name=f"{op.lower()}{len(self.nodes)}",
            domain=domain, **attrs))
        return outputs[0]

    def output(self, name, dtype=f32):
        self.outputs.append(helper.make_tensor_value_info(name, dtype, None))

    def save(self, out):
        graph = helper.make_graph(self.nodes, "ops", self.inputs, self.outputs,
                                  self.inits)
        opsets = [helper.make_opsetid("", self.opset)] + [
            helper.make_opsetid(d, v) for d, v in self.domains.items()]
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 8
        os.makedirs(out, exist_ok=True)
        save(model, os.path.join(out, "model.onnx"))
        for i, array in enumerate(self.data):
            np.save(os.path.join(out, f"in{i}.npy"), array)


# --- Group 1: MatMul/Gemm, arithmetic, shapes ------------------------------

@case
def matmul(m):
    # 2-D, batched, broadcast batch, vector operands.
    a = m.input("a", rand([3, 4], 1))
    b = m.input("b", rand([4, 5], 2))
    m.output(m.node("MatMul", [a, b], ["y2d"]))
    c = m.input("c", rand([2, 3, 4], 3))
    d = m.input("d", rand([2, 4, 5], 4))
    m.output(m.node("MatMul", [c, d], ["ybatch"]))
    e = m.input("e", rand([2, 1, 3, 4], 5))
    m.output(m.node("MatMul", [e, m.const("w", rand([3, 4, 5], 6))], ["ybcast"]))
    v = m.input("v", rand([4], 7))
    m.output(m.node("MatMul", [v, d], ["yvec"]))
    m.output(m.node("MatMul", [c, v], ["yvec2"]))


@case
def matmul_panels(m):
    # Activations times activations with whole 16-lane vectors of columns:
    # the outer-product kernel of -moe-vectorize-contractions. 80 columns
    # are a 64-column panel and a 16-column one; 53 rows are a 48-row task
    # and 5 rows (a 5-row register block), 50 rows 48 + 2.
    a = m.input("a", rand([53, 40], 1))
    b = m.input("b", rand([40, 80], 2))
    m.output(m.node("MatMul", [a, b], ["y2d"]))
    p = m.input("p", rand([2, 3, 50, 24], 3))
    v = m.input("v", rand([2, 3, 24, 64], 4))
    m.output(m.node("MatMul", [p, v], ["ybatch"]))
    x = m.input("x", rand([13, 16], 5), ["T", 16])
    y = m.input("y", rand([16, 48], 6))
    m.output(m.node("MatMul", [x, y], ["ydyn"]))


def weight_panels_model(m, batch, tokens):
    # Matmuls by constant weights, stored panel-major at compile time
    # (-moe-pack-matmul-weights): 48, 96 and 128 columns take panels of 16,
    # 32 and 64; 20 columns stay out-major. K = 200 is a k-block of 128 and
    # a partial one. Rows over two dynamic dimensions (collapsed by the
    # kernel), and a 2-D Gemm by a transposed weight.
    x = m.input("x", rand([batch, tokens, 200], 1), ["B", "T", 200])
    for seed, columns in enumerate((48, 96, 128, 20)):
        w = m.const(f"w{columns}", rand([200, columns], 10 + seed))
        m.output(m.node("MatMul", [x, w], [f"y{columns}"]))
    x2 = m.input("x2", rand([batch * tokens, 200], 2), ["R", 200])
    m.output(m.node("Gemm", [x2, m.const("wt", rand([64, 200], 20))], ["ygemm"],
                    transB=1))


@case
def matmul_weight_panels(m):
    # 2 x 7 = 14 rows: two 6-row register blocks and a 2-row one.
    weight_panels_model(m, 2, 7)


@case
def matmul_weight_panels_decode(m):
    # 1 and 3 rows: the decode-sized kernels (one row, three rows).
    weight_panels_model(m, 1, 1)


@case
def matmul_weight_panels_t3(m):
    weight_panels_model(m, 1, 3)


@case
def matmul_dynamic(m):
    x = m.input("x", rand([5, 8], 1), ["T", 8])
    m.output(m.node("MatMul", [x, m.const("w", rand([8, 6], 2))], ["y"]))
    xb = m.input("xb", rand([2, 3, 8], 3), ["B", "S", 8])
    m.output(m.node("MatMul", [xb, m.const("w2", rand([8, 4], 4))], ["yb"]))
    # One dynamic leading dimension: rows collapse into one GEMM.
    xs = m.input("xs", rand([2, 5, 8], 5), [2, "S", 8])
    m.output(m.node("MatMul", [xs, m.const("w3", rand([8, 3], 6))], ["ys"]))
    # The inner size only known at run time (a Reshape to [B, S, -1] before
    # an output projection): still the weight's K.
    xk = m.input("xk", rand([2, 3, 8], 7), ["B", "S", "K"])
    m.output(m.node("MatMul", [xk, m.const("w4", rand([8, 5], 8))], ["yk"]))


@case
def gemm(m):
    a = m.input("a", rand([3, 4], 1))
    b = m.const("b", rand([5, 4], 2))
    c = m.const("c", rand([5], 3))
    m.output(m.node("Gemm", [a, b, c], ["y"], transB=1, alpha=0.5, beta=2.0))
    at = m.input("at", rand([4, 3], 4))
    b2 = m.const("b2", rand([4, 5], 5))
    c2 = m.const("c2", rand([3, 1], 6))
    m.output(m.node("Gemm", [at, b2, c2], ["y2"], transA=1))
    m.output(m.node("Gemm", [a, b2], ["y3"], alpha=3.0))


@case
def gemm_dynamic(m):
    # nn.Linear as exported: x [T, 8] @ W^T + b.
    x = m.input("x", rand([7, 8], 1), ["T", 8])
    m.output(m.node("Gemm", [x, m.const("w", rand([6, 8], 2)),
                             m.const("bias", rand([6], 3))], ["y"], transB=1))


@case
def arith(m):
    x = m.input("x", rand([2, 3, 4], 1))
    y = m.input("y", rand([3, 1], 2))
    z = m.input("z", rand([4], 3, 0.5, 2.0))
    m.output(m.node("Add", [x, y], ["add"]))
    m.output(m.node("Sub", [z, x], ["sub"]))
    m.output(m.node("Mul", [x, m.const("s", np.array(1.5, np.float32))], ["mul"]))
    m.output(m.node("Div", [x, z], ["div"]))
    m.output(m.node("Pow", [z, y], ["pow"]))


@case
def arith_dynamic(m):
    x = m.input("x", rand([5, 4], 1), ["T", 4])
    y = m.input("y", rand([1, 4], 2))
    s = m.node("Add", [x, y], ["s"])
    m.output(m.node("Mul", [s, x], ["y_out"]))


@case
def arith_dynamic_pair(m):
    # Two inputs with their own symbols: the manifest requires them equal,
    # and pins a symbol broadcast against a static size.
    x = m.input("x", rand([5, 4], 1), ["T", 4])
    y = m.input("y", rand([5, 4], 2), ["U", 4])
    z = m.input("z", rand([1, 4], 3), [1, "V"])
    m.output(m.node("Add", [x, y], ["sum"]))
    m.output(m.node("Mul", [z, m.node("Neg", [x], ["n"])], ["prod"]))


@case
def arith_int(m):
    a = m.input("a", ints([[1, -2, 3], [4, 5, -6]]))
    b = m.input("b", ints([2, -3, 4]))
    m.output(m.node("Add", [a, b], ["add"]), i64)
    m.output(m.node("Mul", [a, b], ["mul"]), i64)
    m.output(m.node("Div", [a, b], ["div"]), i64)


@case
def unary(m):
    x = m.input("x", rand([3, 5], 1, -4.0, 4.0))
    m.output(m.node("Sigmoid", [x], ["sig"]))
    m.output(m.node("Relu", [x], ["relu"]))
    m.output(m.node("Tanh", [x], ["tanh"]))
    m.output(m.node("Neg", [x], ["neg"]))
    m.output(m.node("Exp", [x], ["exp"]))
    a = m.node("Abs", [x], ["abs"])
    m.output(m.node("Sqrt", [a], ["sqrt"]))


@case
def unary_dynamic(m):
    x = m.input("x", rand([6, 4], 1, -4.0, 4.0), ["T", 4])
    s = m.node("Sigmoid", [x], ["sig"])
    m.output(m.node("Relu", [m.node("Tanh", [s], ["t"])], ["y"]))


@case
def softmax(m):
    x = m.input("x", rand([2, 3, 5], 1, -5.0, 5.0))
    m.output(m.node("Softmax", [x], ["last"]))
    m.output(m.node("Softmax", [x], ["mid"], axis=1))
    m.output(m.node("LogSoftmax", [x], ["log"]))


@case
def softmax_opset11(m):
    # Before opset 13 Softmax normalises over every dimension from `axis`.
    m.opset = 11
    x = m.input("x", rand([2, 3, 5], 1, -5.0, 5.0))
    m.output(m.node("Softmax", [x], ["y"]))


@case
def softmax_dynamic(m):
    x = m.input("x", rand([7, 6], 1, -5.0, 5.0), ["T", 6])
    m.output(m.node("Softmax", [x], ["y"]))


@case
def cast(m):
    x = m.input("x", rand([2, 5], 1, -9.0, 9.0))
    m.output(m.node("Cast", [x], ["to_i64"], to=i64), i64)
    m.output(m.node("Cast", [x], ["to_i32"], to=i32), i32)
    n = m.input("n", ints([[3, -1, 0], [7, 2, 5]]))
    m.output(m.node("Cast", [n], ["to_f32"], to=f32))
    mask = m.node("Cast", [n], ["mask"], to=b1)
    m.output(m.node("Cast", [mask], ["back"], to=f32))


@case
def cast_half(m):
    # f16/bf16 through Cast: rounding to half precision, f16 arithmetic.
    x = m.input("x", rand([3, 5], 1, -9.0, 9.0))
    h = m.node("Cast", [x], ["h"], to=TensorProto.FLOAT16)
    m.output(m.node("Mul", [h, h], ["sq"]), TensorProto.FLOAT16)
    bf = m.node("Cast", [x], ["bf"], to=TensorProto.BFLOAT16)
    m.output(m.node("Cast", [bf], ["back"], to=f32))
    m.output(m.node("Cast", [m.node("Cast", [bf], ["bh"], to=TensorProto.FLOAT16)],
                    ["back2"], to=f32))


@case
def cast_dynamic(m):
    x = m.input("x", rand([4, 3], 1, -9.0, 9.0), ["T", 3])
    m.output(m.node("Cast", [x], ["y"], to=i64), i64)


@case
def constant(m):
    x = m.input("x", rand([2, 3], 1))
    c = m.node("Constant", [], ["c"], value=numpy_helper.from_array(rand([3], 2)))
    m.output(m.node("Add", [x, c], ["y"]))
    k = m.node("Constant", [], ["k"], value_float=2.5)
    m.output(m.node("Mul", [x, k], ["z"]))


@case
def squeeze(m):
    m.opset = 13
    x = m.input("x", rand([2, 1, 3, 1], 1))
    s = m.node("Squeeze", [x, m.const("ax", ints([1, -1]))], ["s"])
    m.output(s)
    m.output(m.node("Unsqueeze", [s, m.const("ax2", ints([0, 3]))], ["u"]))
    m.output(m.node("Squeeze", [x], ["all"]))


@case
def squeeze_opset11(m):
    m.opset = 11
    x = m.input("x", rand([2, 1, 3], 1))
    s = m.node("Squeeze", [x], ["s"], axes=[1])
    m.output(m.node("Unsqueeze", [s], ["u"], axes=[-1]))


@case
def squeeze_dynamic(m):
    m.opset = 13
    x = m.input("x", rand([5, 3], 1), ["T", 3])
    u = m.node("Unsqueeze", [x, m.const("ax", ints([1]))], ["u"])
    m.output(m.node("Squeeze", [m.node("Relu", [u], ["r"]),
                                m.const("ax1", ints([1]))], ["y"]))


@case
def reshape(m):
    x = m.input("x", rand([2, 3, 4], 1))
    m.output(m.node("Reshape", [x, m.const("s1", ints([0, -1]))], ["a"]))
    m.output(m.node("Reshape", [x, m.const("s2", ints([4, 1, -1]))], ["b"]))
    m.output(m.node("Reshape", [x, m.const("s3", ints([-1]))], ["c"]))
    m.output(m.node("Flatten", [x], ["f"], axis=2))


@case
def reshape_dynamic(m):
    x = m.input("x", rand([5, 3, 4], 1), ["T", 3, 4])
    a = m.node("Reshape", [x, m.const("s1", ints([0, -1]))], ["a"])
    m.output(a)
    m.output(m.node("Reshape", [a, m.const("s2", ints([0, 2, 6]))], ["b"]))
    # A dynamic size reshaped to literal sizes (must be 5 at run time).
    m.output(m.node("Reshape", [x, m.const("s3", ints([5, 12]))], ["c"]))


@case
def shape_fold(m):
    # The export pattern Shape -> Gather -> Unsqueeze -> Concat -> Reshape
    # folds to a constant shape.
    m.opset = 13
    x = m.input("x", rand([2, 3, 4], 1))
    shape = m.node("Shape", [x], ["shape"])
    d0 = m.node("Gather", [shape, m.const("zero", ints(0))], ["d0"], axis=0)
    u = m.node("Unsqueeze", [d0, m.const("ax", ints([0]))], ["u"])
    tail = m.node("Slice", [shape, m.const("st", ints([1])),
                            m.const("en", ints([3]))], ["tail"])
    prod = m.node("ReduceProd", [tail], ["prod"], keepdims=1)
    target = m.node("Concat", [u, prod], ["target"], axis=0)
    m.output(m.node("Reshape", [x, target], ["y"]))
    m.output(shape, i64)


@case
def shape_dynamic(m):
    x = m.input("x", rand([5, 4], 1), ["T", 4])
    m.output(m.node("Shape", [x], ["s"]), i64)
    m.output(m.node("Size", [x], ["n"]), i64)


@case
def shape_dynamic_reshape(m):
    # The export pattern around a projection with symbolic batch and
    # sequence: the shape arithmetic on Shape(x) stays symbolic.
    m.opset = 13
    x = m.input("x", rand([2, 3, 8], 1), ["B", "S", 8])
    shape = m.node("Shape", [x], ["shape"])
    b = m.node("Gather", [shape, m.const("i0", ints(0))], ["b"])
    s = m.node("Gather", [shape, m.const("i1", ints(1))], ["s"])
    bs = m.node("Mul", [b, s], ["bs"])
    rows = m.node("Concat", [m.node("Unsqueeze", [bs, m.const("a0", ints([0]))],
                                    ["bs1"]), m.const("h", ints([8]))],
                  ["rows"], axis=0)
    flat = m.node("Reshape", [x, rows], ["flat"])
    y = m.node("MatMul", [flat, m.const("w", rand([8, 4], 2))], ["y"])
    back = m.node("Concat", [m.node("Slice", [shape, m.const("st", ints([0])),
                                              m.const("en", ints([2]))],
                                    ["bsv"]),
                             m.const("n", ints([4]))], ["back"], axis=0)
    m.output(m.node("Reshape", [y, back], ["out"]))
    # [B, -1] next to Shape's B: the -1 is S * 8.
    first = m.node("Slice", [shape, m.const("s0", ints([0])),
                             m.const("e1", ints([1]))], ["first"])
    keep = m.node("Concat", [first, m.const("m1", ints([-1]))], ["keep"], axis=0)
    merged = m.node("Reshape", [x, keep], ["merged"])
    m.output(m.node("Reshape", [m.node("Relu", [merged], ["r"]), shape],
                    ["again"]))
    m.output(m.node("ConstantOfShape", [back], ["zeros"]))


@case
def reshape_dynamic_feed(m):
    # [B*S, H] back to a symbolic [B, S, H] that feeds further ops (an
    # expand_shape with two dynamic sizes in one group, not copied out).
    x = m.input("x", rand([2, 3, 8], 1), ["B", "S", 8])
    flat = m.node("Reshape", [x, m.const("rows", ints([-1, 8]))], ["flat"])
    back = m.node("Reshape", [m.node("Relu", [flat], ["r"]),
                              m.node("Shape", [x], ["shape"])], ["back"])
    m.output(m.node("Add", [back, x], ["y"]))


@case
def transpose(m):
    x = m.input("x", rand([2, 3, 4], 1))
    m.output(m.node("Transpose", [x], ["rev"]))
    m.output(m.node("Transpose", [x], ["p"], perm=[1, 0, 2]))


@case
def transpose_dynamic(m):
    x = m.input("x", rand([5, 3, 4], 1), ["T", 3, 4])
    m.output(m.node("Transpose", [x], ["y"], perm=[1, 0, 2]))


@case
def concat(m):
    a = m.input("a", rand([2, 3], 1))
    b = m.input("b", rand([2, 2], 2))
    m.output(m.node("Concat", [a, b, a], ["y"], axis=1))
    m.output(m.node("Concat", [a, m.const("c", rand([1, 3], 3))], ["z"], axis=-2))


@case
def concat_dynamic(m):
    a = m.input("a", rand([5, 3], 1), ["T", 3])
    m.output(m.node("Concat", [a, m.node("Neg", [a], ["n"])], ["y"], axis=1))


@case
def slice(m):
    m.opset = 13
    x = m.input("x", rand([4, 6, 5], 1))
    m.output(m.node("Slice", [x, m.const("s", ints([1, -4])),
                              m.const("e", ints([3, 100])),
                              m.const("a", ints([0, 2])),
                              m.const("st", ints([1, 2]))], ["y"]))
    m.output(m.node("Slice", [x, m.const("s2", ints([2])),
                              m.const("e2", ints([-1]))], ["z"]))


@case
def slice_backward(m):
    m.opset = 13
    x = m.input("x", rand([4, 6, 5], 1))
    big = np.iinfo(np.int64).max
    # Flip, every other element backwards from the end, a clamped range.
    m.output(m.node("Slice", [x, m.const("s", ints([-1])),
                              m.const("e", ints([-big])),
                              m.const("a", ints([1])),
                              m.const("st", ints([-1]))], ["flip"]))
    m.output(m.node("Slice", [x, m.const("s2", ints([100, 3])),
                              m.const("e2", ints([-100, 0])),
                              m.const("a2", ints([2, 0])),
                              m.const("st2", ints([-2, -1]))], ["steps"]))
    v = m.input("v", rand([7, 3], 2), ["T", 3])
    m.output(m.node("Slice", [v, m.const("s3", ints([big])),
                              m.const("e3", ints([-big])),
                              m.const("a3", ints([0])),
                              m.const("st3", ints([-1]))], ["flip_dynamic"]))


@case
def slice_opset9(m):
    m.opset = 9
    x = m.input("x", rand([4, 6], 1))
    m.output(m.node("Slice", [x], ["y"], starts=[1, 0], ends=[3, -2], axes=[0, 1]))


@case
def slice_dynamic(m):
    m.opset = 13
    x = m.input("x", rand([5, 8], 1), ["T", 8])
    m.output(m.node("Slice", [x, m.const("s", ints([2])), m.const("e", ints([6])),
                              m.const("a", ints([1]))], ["y"]))


@case
def gather(m):
    x = m.input("x", rand([5, 4], 1))
    m.output(m.node("Gather", [x, m.const("i", ints([[0, 4], [-1, 2]]))], ["rows"]))
    m.output(m.node("Gather", [x, m.const("j", ints(2))], ["col"], axis=1))
    idx = m.input("idx", ints([3, 0, 3], np.int32))
    m.output(m.node("Gather", [x, idx], ["dyn"], axis=0))


@case
def gather_dynamic(m):
    # An embedding lookup: constant table, token ids of dynamic length.
    ids = m.input("ids", ints([3, 0, 7, 7, 1]), ["T"])
    m.output(m.node("Gather", [m.const("table", rand([8, 6], 1)), ids], ["y"]))


# --- Group 2: reductions, normalisations, selection, broadcasting ----------

@case
def reduce(m):
    m.opset = 18
    x = m.input("x", rand([2, 3, 4], 1))
    m.output(m.node("ReduceSum", [x, m.const("a1", ints([1]))], ["sum"]))
    m.output(m.node("ReduceMean", [x, m.const("a2", ints([-1, 0]))], ["mean"],
                    keepdims=0))
    m.output(m.node("ReduceMax", [x], ["max"], keepdims=0))
    m.output(m.node("ReduceMin", [x, m.const("a3", ints([2]))], ["min"]))


@case
def reduce_opset13(m):
    # ReduceSum takes axes as an input from opset 13, ReduceMean from 18.
    m.opset = 13
    x = m.input("x", rand([2, 3, 4], 1))
    m.output(m.node("ReduceSum", [x, m.const("a", ints([0, 2]))], ["sum"],
                    keepdims=0))
    m.output(m.node("ReduceMean", [x], ["mean"], axes=[1]))


@case
def reduce_dynamic(m):
    m.opset = 18
    x = m.input("x", rand([5, 6], 1), ["T", 6])
    m.output(m.node("ReduceMean", [x, m.const("a", ints([1]))], ["mean"]))
    m.output(m.node("ReduceSum", [x, m.const("b", ints([0]))], ["sum"],
                    keepdims=0))


@case
def reduce_norms(m):
    # The norms and log-sums (torch.norm(p=1) exports ReduceL1: DBRX's
    # router); LogSumExp on logits large enough that exp overflows f32
    # unless the max is taken out first, and on a row of -inf.
    m.opset = 18
    x = m.input("x", rand([2, 3, 4], 1, -2.0, 2.0), ["B", 3, 4])
    m.output(m.node("ReduceL1", [x, m.const("a1", ints([-1]))], ["l1"]))
    m.output(m.node("ReduceL2", [x, m.const("a2", ints([0, 2]))], ["l2"],
                    keepdims=0))
    m.output(m.node("ReduceSumSquare", [x, m.const("a3", ints([1]))], ["ss"]))
    ax = m.node("Abs", [x], ["ax"])
    m.output(m.node("ReduceLogSum", [ax, m.const("a4", ints([2]))], ["ls"],
                    keepdims=0))
    m.output(m.node("ReduceLogSumExp", [x], ["lse"], keepdims=0))
    big = m.node("Mul", [x, m.const("k", np.array([300.0], np.float32))], ["big"])
    m.output(m.node("ReduceLogSumExp", [big, m.const("a5", ints([2]))],
                    ["lse_big"]))
    ninf = m.const("ninf", np.full([1, 3, 4], -np.inf, np.float32))
    rows = m.node("Concat", [big, ninf], ["rows"], axis=0)
    m.output(m.node("ReduceLogSumExp", [rows, m.const("a6", ints([2]))],
                    ["lse_inf"]))
    m.output(m.node("ReduceL1", [x, m.const("a7", ints([]))], ["l1_noop"],
                    noop_with_empty_axes=1))


@case
def reduce_norms_opset13(m):
    # axes as an attribute; integers through ReduceL1.
    m.opset = 13
    x = m.input("x", rand([3, 5], 1, -2.0, 2.0))
    m.output(m.node("ReduceL1", [x], ["l1"], axes=[1]))
    m.output(m.node("ReduceL2", [x], ["l2"], axes=[0], keepdims=0))
    i = m.input("i", np.array([[3, -4, 5], [-1, 0, 2]], np.int64))
    m.output(m.node("ReduceL1", [i], ["l1_int"], axes=[1]), i64)


def weight_views_model(m, tokens):
    # Views of weights whose parameters come from Shape of the activations,
    # as dynamic exports write them (lib/Import/ONNX/WeightViews.cpp folds
    # the ones that do not depend on the token count before raising).
    m.opset = 17
    x = m.input("x", rand([tokens, 4], 1), ["T", 4])
    w = m.const("w", rand([6, 4], 2))
    w3 = m.const("w3", rand([2, 3, 4], 3))
    shape = m.node("Shape", [x], ["shape"])
    t = m.node("Unsqueeze", [m.node("Gather", [shape, m.const("i0", ints(0))], ["t0"]),
                             m.const("u0", ints([0]))], ["t"])
    h = m.node("Unsqueeze", [m.node("Gather", [shape, m.const("i1", ints(1))], ["h0"]),
                             m.const("u1", ints([0]))], ["h"])
    # W[:T]: depends on T, never folded.
    a = m.node("Slice", [w, m.const("s0", ints([0])), t, m.const("ax0", ints([0]))], ["a"])
    m.output(m.node("Add", [x, a], ["out_slice_t"]))
    # Reshape to [H, 6]: one size read off x, fixed by the element count.
    target = m.node("Concat", [h, m.const("c6", ints([6]))], ["target"], axis=0)
    b = m.node("Reshape", [w3, target], ["b"])
    m.output(m.node("MatMul", [x, b], ["out_reshape"]))
    # W3[1]^T and a Split's second part transposed.
    c = m.node("Transpose", [m.node("Gather", [w3, m.const("one", ints(1))], ["g"], axis=0)],
               ["c"])
    m.output(m.node("MatMul", [x, c], ["out_gather_t"]))
    parts = ["d0", "d1"]
    m.node("Split", [w, m.const("sp", ints([2, 4]))], parts, axis=0)
    m.output(m.node("MatMul", [x, m.node("Transpose", ["d1"], ["d1t"])], ["out_split"]))
    # Slice, Squeeze, Unsqueeze, Reshape to a constant shape, Transpose.
    e = m.node("Slice", [w3, m.const("s1", ints([1])), m.const("e1", ints([2])),
                         m.const("ax1", ints([0]))], ["e0"])
    e = m.node("Unsqueeze", [m.node("Squeeze", [e, m.const("sq", ints([0]))], ["e1s"]),
                             m.const("us", ints([0]))], ["e2"])
    e = m.node("Reshape", [e, m.const("r34", ints([3, 4]))], ["e3"])
    m.output(m.node("MatMul", [x, m.node("Transpose", [e], ["e4"])], ["out_chain"]))
    # A target with two sizes read off x: not folded, still right.
    h2 = m.node("Add", [h, m.const("two", ints([2]))], ["h2"])
    r = m.node("Reshape", [w, m.node("Concat", [h, h2], ["target2"], axis=0)], ["r"])
    m.output(m.node("MatMul", [x, r], ["out_two_unknown"]))


@case
def weight_views(m):
    weight_views_model(m, 5)


@case
def weight_views_t2(m):
    weight_views_model(m, 2)


@case
def gelu(m):
    m.opset = 20
    x = m.input("x", rand([3, 7], 1, -4.0, 4.0))
    m.output(m.node("Erf", [x], ["erf"]))
    m.output(m.node("Gelu", [x], ["gelu"]))
    m.output(m.node("Gelu", [x], ["tanh"], approximate="tanh"))
    m.output(m.node("Gelu", [x], ["ms"], domain="com.microsoft"))


@case
def fused_gelu(m):
    # ONNX Runtime's fused activations (com.microsoft).
    x = m.input("x", rand([3, 8], 1, -4.0, 4.0), ["T", 8])
    bias = m.const("bias", rand([8], 2))
    m.output(m.node("FastGelu", [x, bias], ["fast"], domain="com.microsoft"))
    m.output(m.node("FastGelu", [x], ["fast_nobias"], domain="com.microsoft"))
    m.output(m.node("BiasGelu", [x, bias], ["biasgelu"], domain="com.microsoft"))
    m.output(m.node("QuickGelu", [x], ["quick"], domain="com.microsoft",
                    alpha=1.5))


@case
def layernorm(m):
    x = m.input("x", rand([2, 3, 8], 1))
    scale = m.const("scale", rand([8], 2))
    bias = m.const("bias", rand([8], 3))
    m.output(m.node("LayerNormalization", [x, scale, bias], ["y"], epsilon=1e-3))
    m.node("LayerNormalization", [x, m.const("s2", rand([3, 8], 4))],
           ["y2", "mean", "inv"], axis=1)
    for name in ("y2", "mean", "inv"):
        m.output(name)
    m.output(m.node("SimplifiedLayerNormalization", [x, scale], ["rms"],
                    epsilon=1e-6))


@case
def skip_layernorm(m):
    # ONNX Runtime's fused norms (com.microsoft) as its transformer optimiser
    # leaves them around a fused MoE; output 3 is input + skip + bias.
    x = m.input("x", rand([2, 3, 8], 1), ["B", "S", 8])
    skip = m.input("skip", rand([2, 3, 8], 2), ["B", "S", 8])
    gamma = m.const("gamma", rand([8], 3))
    beta = m.const("beta", rand([8], 4))
    bias = m.const("bias", rand([8], 5))
    m.node("SkipLayerNormalization", [x, skip, gamma, beta, bias],
           ["y", "", "", "sum"], domain="com.microsoft", epsilon=1e-5)
    m.node("SkipSimplifiedLayerNormalization", [x, skip, gamma],
           ["rms", "", "", "rms_sum"], domain="com.microsoft", epsilon=1e-6)
    for name in ("y", "sum", "rms", "rms_sum"):
        m.output(name)


@case
def layernorm_dynamic(m):
    x = m.input("x", rand([5, 8], 1), ["T", 8])
    m.output(m.node("LayerNormalization", [x, m.const("scale", rand([8], 2)),
                                           m.const("bias", rand([8], 3))], ["y"]))


@case
def rmsnorm_dynamic(m):
    # ONNX Runtime's RMS norm (its fusions spell it SimplifiedLayerNormalization
    # in the ai.onnx domain) over [B, S, H].
    x = m.input("x", rand([2, 4, 8], 1), ["B", "S", 8])
    m.output(m.node("SimplifiedLayerNormalization",
                    [x, m.const("scale", rand([8], 2))], ["y"], epsilon=1e-6))


@case
def rmsnorm_ms(m):
    # The same in the com.microsoft domain (imported; ONNX Runtime has no
    # kernel for it there).
    x = m.input("x", rand([2, 8], 1))
    m.output(m.node("SimplifiedLayerNormalization",
                    [x, m.const("scale", rand([8], 2))], ["y"],
                    domain="com.microsoft", epsilon=1e-6))


@case
def rmsnorm(m):
    m.opset = 23
    x = m.input("x", rand([2, 4, 8], 1))
    m.output(m.node("RMSNormalization", [x, m.const("scale", rand([8], 2))],
                    ["y"], epsilon=1e-6))


@case
def select(m):
    m.opset = 13
    x = m.input("x", rand([3, 4], 1))
    y = m.input("y", rand([4], 2))
    m.output(m.node("Clip", [x, m.const("lo", np.array(-0.5, np.float32)),
                             m.const("hi", np.array(1.0, np.float32))], ["clip"]))
    m.output(m.node("Clip", [x, "", m.const("hi2", np.array(0.0, np.float32))],
                    ["clip_hi"]))
    m.output(m.node("Min", [x, y], ["min"]))
    m.output(m.node("Max", [x, y, m.const("z", rand([3, 1], 3))], ["max"]))
    gt = m.node("Greater", [x, y], ["gt"])
    m.output(m.node("Where", [gt, x, m.const("zero", np.array(0, np.float32))],
                    ["where"]))
    n = m.input("n", ints([[1, 2, 3], [3, 2, 1]]))
    eq = m.node("Equal", [n, m.const("two", ints(2))], ["eq"])
    m.output(m.node("Cast", [eq], ["eq_f"], to=f32))
    m.output(m.node("Where", [eq, n, m.const("neg", ints(-1))], ["where_i"]), i64)


@case
def clip_opset6(m):
    m.opset = 6
    x = m.input("x", rand([3, 4], 1))
    m.output(m.node("Clip", [x], ["y"], min=-0.5, max=0.5))


@case
def select_dynamic(m):
    x = m.input("x", rand([5, 4], 1), ["T", 4])
    mask = m.node("Less", [x, m.const("c", np.array(0.25, np.float32))], ["mask"])
    m.output(m.node("Where", [mask, x, m.node("Neg", [x], ["n"])], ["y"]))
    m.output(m.node("Clip", [x, m.const("lo", np.array(-1.0, np.float32))], ["clip"]))


@case
def expand_tile(m):
    x = m.input("x", rand([3, 1], 1))
    m.output(m.node("Expand", [x, m.const("s", ints([2, 3, 4]))], ["expand"]))
    m.output(m.node("Expand", [x, m.const("s2", ints([1, 1]))], ["same"]))
    m.output(m.node("Tile", [x, m.const("r", ints([2, 3]))], ["tile"]))


@case
def expand_tile_dynamic(m):
    x = m.input("x", rand([5, 1], 1), ["T", 1])
    m.output(m.node("Expand", [x, m.const("s", ints([1, 4]))], ["expand"]))
    m.output(m.node("Tile", [x, m.const("r", ints([1, 3]))], ["tile"]))
    # To the (symbolic) shape of another input.
    y = m.input("y", rand([2, 5, 3], 2), [2, "T", 3])
    m.output(m.node("Expand", [x, m.node("Shape", [y], ["ys"])], ["like"]))


@case
def split(m):
    m.opset = 13
    x = m.input("x", rand([6, 4], 1))
    m.node("Split", [x, m.const("sp", ints([1, 2, 3]))], ["a", "b", "c"])
    m.node("Split", [x], ["d", "e"], axis=1)
    for name in "abcde":
        m.output(name)


@case
def split_opset18(m):
    m.opset = 18
    x = m.input("x", rand([2, 7], 1), ["T", 7])
    m.node("Split", [x], ["a", "b", "c"], axis=1, num_outputs=3)
    for name in ("a", "b", "c"):
        m.output(name)


@case
def split_opset11(m):
    m.opset = 11
    x = m.input("x", rand([5, 2], 1))
    m.node("Split", [x], ["a", "b"], split=[2, 3])
    for name in ("a", "b"):
        m.output(name)


@case
def constant_of_shape(m):
    x = m.input("x", rand([2, 3], 1))
    shape = m.node("Shape", [x], ["shape"])
    ones = m.node("ConstantOfShape", [shape], ["ones"],
                  value=numpy_helper.from_array(np.array([1.5], np.float32)))
    m.output(m.node("Add", [x, ones], ["y"]))
    m.output(m.node("ConstantOfShape", [m.const("s", ints([2, 2]))], ["z"]))
    m.output(m.node("ConstantOfShape", [m.const("s3", ints([3]))], ["k"],
                    value=numpy_helper.from_array(ints([7]))), i64)


@case
def extras(m):
    # Cheap extras that exports use around MoE blocks: rotary sin/cos,
    # routing argmax and positions (CumSum), variadic Sum/Mean, LeakyRelu,
    # Softplus, inference Dropout, Trilu, Range.
    m.opset = 14
    x = m.input("x", rand([3, 6], 1, -3.0, 3.0))
    m.output(m.node("Sin", [x], ["sin"]))
    m.output(m.node("Cos", [x], ["cos"]))
    m.output(m.node("Softplus", [x], ["softplus"]))
    m.output(m.node("LeakyRelu", [x], ["leaky"], alpha=0.2))
    y = m.input("y", rand([6], 2))
    m.output(m.node("Sum", [x, y, x], ["sum"]))
    m.output(m.node("Mean", [x, y], ["mean"]))
    m.output(m.node("Dropout", [x], ["drop"]))
    m.output(m.node("ArgMax", [x], ["argmax"], axis=1), i64)
    m.output(m.node("ArgMin", [x], ["argmin"], axis=0, keepdims=0), i64)
    ties = m.input("ties", np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]],
                                    np.float32))
    m.output(m.node("ArgMax", [ties], ["first"], axis=-1), i64)
    m.output(m.node("ArgMax", [ties], ["last"], axis=-1, select_last_index=1),
             i64)
    one = m.const("one", ints(1))
    m.output(m.node("CumSum", [x, one], ["cumsum"]))
    m.output(m.node("CumSum", [x, one], ["cumsum_ex_rev"], exclusive=1,
                    reverse=1))
    mask = m.input("mask", ints([[1, 0, 1, 1], [0, 1, 1, 0]]))
    m.output(m.node("CumSum", [mask, m.const("zero", ints(0))], ["positions"]),
             i64)
    m.output(m.node("Trilu", [x, one], ["upper"]))
    m.output(m.node("Trilu", [x, m.const("km1", ints(-1))], ["lower"], upper=0))
    m.output(m.node("Range", [m.const("r0", ints(2)), m.const("r1", ints(11)),
                              m.const("r2", ints(3))], ["range"]), i64)


@case
def extras_dynamic(m):
    x = m.input("x", rand([5, 8], 1, -3.0, 3.0), ["T", 8])
    m.output(m.node("ArgMax", [x], ["argmax"], axis=1, keepdims=0), i64)
    m.output(m.node("CumSum", [x, m.const("zero", ints(0))], ["cumsum"]))


@case
def einsum(m):
    # The contractions torch exports as Einsum: outer products (RoPE's
    # torch.outer / einsum("i,j->ij")), attention scores, batched matmuls,
    # implicit outputs, diagonals, traces, ellipses with broadcasting.
    v = m.input("v", rand([5], 1))
    w = m.input("w", rand([3], 2))
    q = m.input("q", rand([2, 3, 4, 8], 3))
    k = m.input("k", rand([2, 3, 6, 8], 4))
    a = m.input("a", rand([4, 5], 5))
    b = m.input("b", rand([5, 6], 6))
    sq = m.input("sq", rand([4, 4], 7))
    e1 = m.input("e1", rand([2, 1, 4, 5], 8))
    e2 = m.input("e2", rand([2, 3, 5, 6], 9))
    bil = m.input("bil", rand([3, 5, 5], 10))
    for name, ins, eq in (("outer", [v, w], "i,j->ij"),
                          ("scores", [q, k], "bhqd,bhkd->bhqk"),
                          ("matmul_implicit", [a, b], "ij,jk"),
                          ("transpose", [q], "bhqd->bqhd"),
                          ("diag", [sq], "ii->i"),
                          ("trace", [sq], "ii"),
                          ("dot", [v, v], "i,i->"),
                          ("sum_all", [a], "ij->"),
                          ("ellipsis", [e1, e2], "...ij,...jk->...ik"),
                          ("bilinear", [a, bil, b], "ik,jlk,lm->ijm")):
        m.output(m.node("Einsum", ins, [name], equation=eq))


@case
def einsum_dynamic(m):
    # RoPE's angle table for a symbolic sequence length.
    t = m.input("t", rand([7], 1), ["S"])
    inv = m.const("inv", rand([4], 2, 0.0, 1.0))
    m.output(m.node("Einsum", [t, inv], ["freqs"], equation="i,j->ij"))
    x = m.input("x", rand([2, 7, 8], 3), ["B", "S", 8])
    m.output(m.node("Einsum", [x, x], ["gram"], equation="bsd,btd->bst"))


@case
def bad_einsum(m):
    x = m.input("x", rand([2, 3], 1))
    m.output(m.node("Einsum", [x], ["y"], equation="ijk->ij"))


@case
def range_dynamic(m):
    # Range bounds known only at run time: a limit computed from data
    # (int64), a start from a symbolic size, and a float range. Results whose
    # length depends on data cannot be graph outputs (the caller allocates
    # outputs from the manifest): their sums and sums of squares are.
    x = m.input("x", rand([6, 4], 1), ["S", 4])
    limit = m.input("limit", ints(5))
    start = m.node("Gather", [m.node("Shape", [x], ["shape"]),
                              m.const("zero", ints(0))], ["s0"])

    def summed(value, name, dtype=i64):
        m.output(m.node("ReduceSum", [value], [name + "_sum"], keepdims=0), dtype)
        square = m.node("Mul", [value, value], [name + "_sq"])
        m.output(m.node("ReduceSum", [square], [name + "_sumsq"], keepdims=0), dtype)

    lim = m.node("Add", [limit, m.const("two", ints(2))], ["lim"])
    summed(m.node("Range", [m.const("one", ints(1)), lim, m.const("d2", ints(2))],
                  ["r_data"]), "r_data")
    end = m.node("Mul", [start, m.const("three", ints(3))], ["end"])
    m.output(m.node("Range", [start, end, m.const("d1", ints(1))], ["r_shape"]), i64)
    fstart = m.input("fstart", np.array(0.5, np.float32))
    summed(m.node("Range", [fstart, m.const("flimit", np.array(-2.0, np.float32)),
                            m.const("fdelta", np.array(-0.75, np.float32))],
                  ["r_float"]), "r_float", f32)
    # Slices whose bounds are computed from a symbolic size (x[:S - 2]) or
    # from data (x[-(S - 2) + limit - 5:], Neg not being shape arithmetic).
    end1 = m.node("Sub", [m.node("Unsqueeze", [start, m.const("ax0", ints([0]))], ["s1"]),
                          m.const("two1", ints([2]))], ["end1"])
    head = m.node("Slice", [x, m.const("st", ints([0])), end1, m.const("ax", ints([0]))],
                  ["head"])
    summed(head, "head", f32)
    shift = m.node("Sub", [m.node("Unsqueeze", [limit, m.const("ax2", ints([0]))], ["l1"]),
                           m.const("five", ints([5]))], ["shift"])
    neg = m.node("Add", [m.node("Neg", [end1], ["negend"]), shift], ["tailstart"])
    tail = m.node("Slice", [x, neg, m.const("big", ints([1 << 62])),
                            m.const("ax1", ints([0]))], ["tail"])
    summed(tail, "tail", f32)


@case
def gathernd(m):
    data = m.input("data", rand([3, 4, 5], 1))
    idx = m.input("idx", ints([[0, 1], [2, 3], [-1, 0]]))
    m.output(m.node("GatherND", [data, idx], ["rows"]))
    one = m.input("one", ints([[1], [0], [2], [1]]))
    m.output(m.node("GatherND", [data, one], ["planes"]))
    batch = m.input("batch", ints([[[1, 4]], [[0, 0]], [[3, 2]]]))
    m.output(m.node("GatherND", [data, batch], ["batched"], batch_dims=1))
    full = m.input("full", ints([[2, 3, 4], [0, 0, 0]]))
    m.output(m.node("GatherND", [data, full], ["elements"]))


# --- Group 3: TopK, gathers and scatters, OneHot, NonZero ------------------

@case
def topk(m):
    # Router-style top-k with ties (lower index first, as ONNX Runtime).
    x = m.input("x", np.array([[0.5, 2.0, 2.0, -1.0, 0.5, 3.0],
                               [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                               [-3.0, 4.0, 0.0, 4.0, -3.0, 2.0]], np.float32))
    k = m.const("k", ints([3]))
    m.node("TopK", [x, k], ["v", "i"])
    m.node("TopK", [x, m.const("k2", ints([2]))], ["sv", "si"], largest=0)
    y = m.input("y", rand([4, 3, 2], 2))
    m.node("TopK", [y, m.const("k1", ints([2]))], ["av", "ai"], axis=1)
    for name, t in (("v", f32), ("i", i64), ("sv", f32), ("si", i64),
                    ("av", f32), ("ai", i64)):
        m.output(name, t)


@case
def topk_dynamic(m):
    logits = m.input("logits", rand([7, 8], 1), ["T", 8])
    probs = m.node("Softmax", [logits], ["probs"])
    m.node("TopK", [probs, m.const("k", ints([2]))], ["v", "i"])
    m.output("v")
    m.output("i", i64)


@case
def gather_elements(m):
    x = m.input("x", rand([3, 4], 1))
    idx = m.input("idx", ints([[0, 2], [3, -1], [1, 1]]))
    m.output(m.node("GatherElements", [x, idx], ["y"], axis=1))
    idx0 = m.const("idx0", ints([[2, 0, 1, 1]]))
    m.output(m.node("GatherElements", [x, idx0], ["z"], axis=0))


@case
def scatter(m):
    m.opset = 18
    data = m.input("data", rand([3, 4], 1))
    idx = m.input("idx", ints([[1, 3], [0, 0], [2, -1]]))
    upd = m.input("upd", rand([3, 2], 2))
    m.output(m.node("ScatterElements", [data, idx, upd], ["none"], axis=1))
    m.output(m.node("ScatterElements", [data, idx, upd], ["add"], axis=1,
                    reduction="add"))
    nd_idx = m.const("nd_idx", ints([[2], [0], [2]]))
    nd_upd = m.const("nd_upd", rand([3, 4], 3))
    m.output(m.node("ScatterND", [data, nd_idx, nd_upd], ["nd_add"],
                    reduction="add"))
    pt_idx = m.const("pt_idx", ints([[0, 1], [2, 3]]))
    pt_upd = m.const("pt_upd", rand([2], 4))
    m.output(m.node("ScatterND", [data, pt_idx, pt_upd], ["nd"]))


@case
def onehot(m):
    idx = m.input("idx", ints([[0, 3], [-1, 2]]))
    depth = m.const("depth", np.array(4, np.int64))
    values = m.const("values", np.array([0.0, 5.0], np.float32))
    m.output(m.node("OneHot", [idx, depth, values], ["y"]))
    m.output(m.node("OneHot", [idx, depth, values], ["z"], axis=0))


@case
def nonzero(m):
    # The count is data-dependent: reduce to a static shape before the end.
    x = m.input("x", np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]], np.float32))
    nz = m.node("NonZero", [x], ["nz"])
    m.output(m.node("ReduceSum", [nz, m.const("ax", ints([1]))], ["sum"],
                    keepdims=0), i64)
    m.output(m.node("ReduceMax", [nz], ["max"], keepdims=0), i64)


# --- Standard ops around a fused MoE ---------------------------------------

@case
def moe_block(m):
    # A decoder's MoE half as ONNX Runtime's optimiser leaves it: a fused RMS
    # norm of the residual stream, the router projection, com.microsoft.MoE
    # (interleaved SwiGLU experts) and the residual add, with a symbolic
    # token count.
    H, E, I = 16, 4, 24
    rng = np.random.default_rng(7)
    x = m.input("x", rand([6, H], 1), ["T", H])
    skip = m.input("skip", rand([6, H], 2), ["T", H])
    m.node("SkipSimplifiedLayerNormalization",
           [x, skip, m.const("gamma", rand([H], 3, 0.5, 1.5))],
           ["normed", "", "", "residual"], domain="com.microsoft",
           epsilon=1e-6)
    logits = m.node("MatMul", ["normed", m.const("router", rand([H, E], 4))],
                    ["logits"])
    w = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float32)
    m.node("MoE", ["normed", logits, m.const("fc1", w(E, 2 * I, H)),
                   m.const("fc1_b", w(E, 2 * I)), m.const("fc2", w(E, H, I))],
           ["moe"], domain="com.microsoft", k=2, normalize_routing_weights=1,
           activation_type="swiglu", swiglu_fusion=1, activation_alpha=1.702,
           activation_beta=1.0, swiglu_limit=7.0)
    m.output(m.node("Add", ["residual", "moe"], ["y"]))


# --- Bad models (standard-ops-errors.test) ----------------------------------

@case
def bad_attribute(m):
    m.opset = 20
    x = m.input("x", rand([2, 3], 1))
    m.output(m.node("Gelu", [x], ["y"], approximate="fast"))


@case
def bad_unknown_attribute(m):
    x = m.input("x", rand([2, 3], 1))
    m.output(m.node("Relu", [x], ["y"], alpha=0.5))


@case
def bad_rank(m):
    a = m.input("a", rand([2, 3, 4], 1))
    m.output(m.node("Gemm", [a, m.const("b", rand([4, 5], 2))], ["y"]))


@case
def bad_input_count(m):
    x = m.input("x", rand([2, 3], 1))
    m.output(m.node("Add", [x], ["y"]))


@case
def bad_broadcast(m):
    x = m.input("x", rand([2, 3], 1))
    m.output(m.node("Add", [x, m.input("z", rand([4], 2))], ["y"]))


@case
def bad_perm(m):
    x = m.input("x", rand([2, 3], 1))
    m.output(m.node("Transpose", [x], ["y"], perm=[0, 0]))


@case
def bad_axis(m):
    x = m.input("x", rand([2, 3], 1))
    m.output(m.node("Concat", [x, x], ["y"], axis=5))


@case
def bad_element_type(m):
    x = m.input("x", ints([1, 2]))
    m.output(m.node("Sigmoid", [x], ["y"]), i64)


@case
def bad_shape_input(m):
    x = m.input("x", rand([2, 3], 1))
    s = m.input("s", ints([3, 2]))
    m.output(m.node("Reshape", [x, s], ["y"]))


@case
def bad_reshape_overflow(m):
    # Sizes whose product overflows int64 (the import multiplied them
    # unchecked).
    x = m.input("x", rand([2, 3], 1))
    m.output(m.node("Reshape", [x, m.const("s", ints([1 << 40, 1 << 40]))], ["y"]))


@case
def bad_range(m):
    # limit is not a scalar: the error names it ("limit" outlives the loop
    # over the three operands that formats it).
    m.output(m.node("Range", [m.const("r0", ints(2)), m.const("r1", ints([11, 12])),
                              m.const("r2", ints(3))], ["range"]), i64)


@case
def bad_range_overflow(m):
    # limit - start overflows int64 (the fold computed it unchecked).
    big = np.iinfo(np.int64)
    m.output(m.node("Range", [m.const("r0", ints(int(big.min))),
                              m.const("r1", ints(int(big.max))),
                              m.const("r2", ints(1))], ["range"]), i64)


@case
def bad_matmul(m):
    a = m.input("a", rand([2, 3], 1))
    m.output(m.node("MatMul", [a, m.input("b", rand([4, 5], 2))], ["y"]))


@case
def bad_reduction(m):
    m.opset = 18
    d = m.input("d", rand([3], 1))
    i = m.input("i", ints([0]))
    m.output(m.node("ScatterElements", [d, i, m.input("u", rand([1], 2))],
                    ["y"], reduction="avg"))


@case
def bad_topk(m):
    x = m.input("x", rand([2, 3], 1))
    m.node("TopK", [x, m.const("k", ints([4]))], ["v", "i"])
    m.output("v")


@case
def bad_nonzero_output(m):
    # A data-dependent size cannot be a graph output (the runtime allocates
    # outputs from the manifest).
    x = m.input("x", rand([2, 3], 1))
    m.output(m.node("NonZero", [x], ["nz"]), i64)


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(CASES))
        return
    if len(sys.argv) != 3 or sys.argv[1] not in CASES:
        sys.exit(f"usage: {sys.argv[0]} NAME OUTDIR | --list")
    model = Model()
    CASES[sys.argv[1]](model)
    model.save(sys.argv[2])


if __name__ == "__main__":
    main()
