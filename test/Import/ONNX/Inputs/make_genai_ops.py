#!/usr/bin/env python3
"""Models of the com.microsoft ops onnxruntime-genai's model builder emits
(GroupQueryAttention, RotaryEmbedding, MatMulNBits, GatherBlockQuantized),
one op per model, with inputs, for comparison with ONNX Runtime.

  make_genai_ops.py NAME OUTDIR     writes OUTDIR/model.onnx and the graph
                                    inputs as OUTDIR/in0.npy, in1.npy, ...
  make_genai_ops.py --list          prints the case names
  make_genai_ops.py reference DIR OURS.npy ORT.npy BOUND
                                    a MatMulNBits model's distances to its
                                    float64 reference (ours within BOUND)

Inputs are drawn from fixed seeds. A graph input whose declared shape holds a
string has a symbolic, dynamic dimension there; the .npy holds one size.
GroupQueryAttention takes seqlens_k and total_sequence_length from an
attention mask as the model builder computes them (ReduceSum - 1, and
Shape[1]); a mask row with trailing zeros is a shorter, right-padded row.
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

f32, i64, i32, u8 = (TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32,
                     TensorProto.UINT8)
# TensorProto.DataType values the onnx Python package here (1.12) lacks.
UINT4, INT4 = 21, 22
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def rand(shape, seed, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


class Model:
    """A graph being built: inputs (with .npy data), initializers, nodes."""

    def __init__(self):
        self.nodes, self.inputs, self.data, self.inits = [], [], [], []
        self.outputs = []

    def input(self, name, array, shape=None):
        dtype = {np.float32: f32, np.int64: i64, np.int32: i32,
                 np.uint8: u8}[array.dtype.type]
        self.inputs.append(helper.make_tensor_value_info(
            name, dtype, shape if shape is not None else list(array.shape)))
        self.data.append(array)
        return name

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def const_4bit(self, name, values, signed):
        """An INT4/UINT4 initializer: two values per byte, low nibble first."""
        flat = values.astype(np.int64).flatten() & 0xF
        if flat.size % 2:
            flat = np.append(flat, 0)
        packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
        tensor = TensorProto()
        tensor.name = name
        tensor.data_type = INT4 if signed else UINT4
        tensor.dims.extend(values.shape)
        tensor.raw_data = packed.tobytes()
        self.inits.append(tensor)
        return name

    def node(self, op, inputs, outputs, domain="", **attrs):
        self.nodes.append(helper.make_node(
            op, inputs, outputs, name=f"{op.lower()}{len(self.nodes)}",
            domain=domain, **attrs))
        return outputs[0]

    def ms(self, op, inputs, outputs, **attrs):
        return self.node(op, inputs, outputs, domain="com.microsoft", **attrs)

    def output(self, name, dtype=f32):
        self.outputs.append(helper.make_tensor_value_info(name, dtype, None))

    def save(self, out):
        graph = helper.make_graph(self.nodes, "genai_ops", self.inputs,
                                  self.outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[
            helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
        # INT4 initializers need IR version 10 (ONNX 1.16).
        model.ir_version = 10
        os.makedirs(out, exist_ok=True)
        save(model, os.path.join(out, "model.onnx"))
        for i, array in enumerate(self.data):
            np.save(os.path.join(out, f"in{i}.npy"), array)


# --- GroupQueryAttention ----------------------------------------------------

def rotary_caches(m, positions, half, seed=0):
    """cos/sin caches [positions, half] as the builder makes them."""
    inv = 1.0 / (10000.0 ** (np.arange(half) / half))
    angles = np.arange(positions)[:, None] * inv[None, :]
    return (m.const("cos_cache", np.cos(angles).astype(np.float32)),
            m.const("sin_cache", np.sin(angles).astype(np.float32)))


def seqlens_and_total(m, mask):
    """The model builder's preprocessing of attention_mask."""
    axes = m.const("axes1", np.array([1], np.int64))
    one = m.const("one", np.array(1, np.int64))
    s = m.node("ReduceSum", [mask, axes], ["mask_sum"], keepdims=0)
    d = m.node("Sub", [s, one], ["mask_sum_m1"])
    seqlens = m.node("Cast", [d], ["seqlens_k"], to=i32)
    shape = m.node("Shape", [mask], ["mask_shape"])
    idx = m.const("idx1", np.array(1, np.int64))
    t = m.node("Gather", [shape, idx], ["total_i64"], axis=0)
    total = m.node("Cast", [t], ["total_seq_len"], to=i32)
    return seqlens, total


def gqa(m, B, S, P, N, M, H, lengths=None, packed=True, dynamic=True,
        rotary=None, sink=False, **attrs):
    """One GroupQueryAttention node on random inputs. `lengths` holds each
    batch row's total length (P + S by default); `rotary` the caches'
    width (rotary dimension / 2) when do_rotary."""
    rng = np.random.default_rng(B * 1000 + S * 100 + P * 10 + N)
    T = P + S
    bs = ["batch", "seq"] if dynamic else [B, S]
    names = []
    if packed:
        names += [m.input("qkv", rng.uniform(-1, 1, (B, S, (N + 2 * M) * H))
                          .astype(np.float32), bs + [(N + 2 * M) * H]), "", ""]
    else:
        for name, heads in (("query", N), ("key", M), ("value", M)):
            names.append(m.input(name, rng.uniform(-1, 1, (B, S, heads * H))
                                 .astype(np.float32), bs + [heads * H]))
    past_shape = ["batch", M, "past", H] if dynamic else [B, M, P, H]
    names.append(m.input("past_key", rng.uniform(-1, 1, (B, M, P, H))
                         .astype(np.float32), past_shape))
    names.append(m.input("past_value", rng.uniform(-1, 1, (B, M, P, H))
                         .astype(np.float32), past_shape))
    lengths = lengths or [T] * B
    mask = np.array([[1] * n + [0] * (T - n) for n in lengths], np.int64)
    mask_in = m.input("attention_mask", mask,
                      ["batch", "total"] if dynamic else [B, T])
    names += list(seqlens_and_total(m, mask_in))
    if rotary:
        names += list(rotary_caches(m, 64, rotary))
    if sink:
        names += ["", "", m.const("sinks", rng.uniform(-1, 1, N).astype(np.float32))]
    m.ms("GroupQueryAttention", names, ["attn", "present_key", "present_value"],
         num_heads=N, kv_num_heads=M, do_rotary=int(bool(rotary)), **attrs)
    for out in ("attn", "present_key", "present_value"):
        m.output(out)


@case
def gqa_prefill(m):
    # Empty past ([B, M, 0, H]), GQA ratio 2, packed QKV.
    gqa(m, B=2, S=7, P=0, N=4, M=2, H=16)


@case
def gqa_prefill_static(m):
    # Static shapes, the past a static [1, 2, 0, 16].
    gqa(m, B=1, S=4, P=0, N=2, M=2, H=16, dynamic=False)


@case
def gqa_decode(m):
    gqa(m, B=2, S=1, P=6, N=4, M=2, H=16)


@case
def gqa_decode_ragged(m):
    # Batch rows of different lengths: row 1 holds 4 tokens, its new key
    # goes to row 3 of its cache and the rest of it stays zero.
    gqa(m, B=2, S=1, P=6, N=8, M=2, H=16, lengths=[7, 4], packed=False)


@case
def gqa_rotary_prefill(m):
    gqa(m, B=2, S=5, P=0, N=8, M=2, H=32, rotary=16, scale=0.125)


@case
def gqa_rotary_decode(m):
    # Multi-head (ratio 1), interleaved pairs, a partial rotary dimension
    # (16 of 32) and static shapes.
    gqa(m, B=1, S=1, P=9, N=4, M=4, H=32, rotary=8, rotary_interleaved=1,
        dynamic=False)


@case
def gqa_window_softcap_prefill(m):
    # Row 1 right-padded: its padding queries' window ends at themselves.
    gqa(m, B=2, S=9, P=0, N=2, M=1, H=16, rotary=8, local_window_size=3,
        softcap=2.0, lengths=[9, 6])


@case
def gqa_window_softcap_decode(m):
    gqa(m, B=2, S=1, P=9, N=4, M=1, H=32, rotary=16, local_window_size=4,
        softcap=1.5, lengths=[10, 6])


@case
def gqa_padded_prefill(m):
    # A right-padded batched prompt, a window and head sinks (gpt-oss).
    gqa(m, B=2, S=7, P=0, N=4, M=2, H=16, lengths=[7, 4], rotary=8,
        local_window_size=2, sink=True)


@case
def gqa_padded_window(m):
    # Without sinks or softcap the window of a padding query ends at itself.
    gqa(m, B=2, S=7, P=0, N=4, M=1, H=16, lengths=[7, 3], local_window_size=2)


@case
def gqa_chunk(m):
    # A later chunk of a prompt (S > 1 after a past of 4), batch 1.
    gqa(m, B=1, S=3, P=4, N=4, M=2, H=32, rotary=16, local_window_size=4)


@case
def gqa_sink_decode(m):
    gqa(m, B=2, S=1, P=5, N=4, M=2, H=16, sink=True, rotary=8,
        lengths=[6, 3])


@case
def gqa_smooth_softmax(m):
    gqa(m, B=1, S=4, P=2, N=2, M=2, H=16, smooth_softmax=1, lengths=[6],
        packed=False)


# --- RotaryEmbedding --------------------------------------------------------

@case
def rope_positions(m):
    # x [B, S, N * H], position_ids [B, S], the whole head turns.
    B, S, N, H = 2, 5, 3, 16
    x = m.input("x", rand([B, S, N * H], 1), ["batch", "seq", N * H])
    pos = m.input("position_ids", np.array([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]],
                                           np.int64), ["batch", "seq"])
    cos, sin = rotary_caches(m, 32, H // 2)
    m.output(m.ms("RotaryEmbedding", [x, pos, cos, sin], ["y"]))


@case
def rope_start_interleaved(m):
    # One start position (p + s), interleaved pairs.
    B, S, N, H = 1, 4, 2, 32
    x = m.input("x", rand([B, S, N * H], 2))
    pos = m.input("position_ids", np.array([3], np.int64))
    cos, sin = rotary_caches(m, 16, H // 2)
    m.output(m.ms("RotaryEmbedding", [x, pos, cos, sin], ["y"], interleaved=1))


@case
def rope_partial_bnsh(m):
    # [B, N, S, H] input, rotary_embedding_dim 16 of a 32-wide head.
    B, N, S, H = 2, 3, 4, 32
    x = m.input("x", rand([B, N, S, H], 3))
    pos = m.input("position_ids", np.array([[5, 6, 7, 8], [0, 2, 4, 6]], np.int64))
    cos, sin = rotary_caches(m, 16, 8)
    m.output(m.ms("RotaryEmbedding", [x, pos, cos, sin], ["y"], num_heads=N,
                  rotary_embedding_dim=16))


@case
def rope_partial_3d(m):
    B, S, N, H = 2, 3, 2, 32
    x = m.input("x", rand([B, S, N * H], 4))
    pos = m.input("position_ids", np.array([[1, 2, 3], [4, 5, 6]], np.int64))
    cos, sin = rotary_caches(m, 16, 8)
    m.output(m.ms("RotaryEmbedding", [x, pos, cos, sin], ["y"], num_heads=N,
                  rotary_embedding_dim=16, interleaved=1))


# --- MatMulNBits ------------------------------------------------------------

def nbits_weight(m, N, K, bits, block, seed, zero_points):
    """Random packed weights, scales and (optionally) zero points."""
    rng = np.random.default_rng(seed)
    blocks = (K + block - 1) // block
    blob = block * bits // 8
    b = m.const("B", rng.integers(0, 256, (N, blocks, blob), dtype=np.uint8))
    s = m.const("scales", rng.uniform(0.01, 0.1, N * blocks).astype(np.float32))
    names = [b, s]
    if zero_points:
        zp_bytes = (blocks * bits + 7) // 8
        names.append(m.const("zero_points", rng.integers(
            0, 256, (N, zp_bytes), dtype=np.uint8)))
    return names


def matmul_nbits(m, a_shape, a_dims, N, K, bits, block, zero_points=False,
                 bias=False, accuracy_level=0, seed=1):
    a = m.input("A", rand(a_shape, seed), a_dims)
    names = [a] + nbits_weight(m, N, K, bits, block, seed + 1, zero_points)
    if bias:
        while len(names) < 5:
            names.append("")
        names.append(m.const("bias", rand([N], seed + 2)))
    m.output(m.ms("MatMulNBits", names, ["Y"], K=K, N=N, bits=bits,
                  block_size=block, accuracy_level=accuracy_level))


@case
def mnb_4bit(m):
    # The model builder's form: symmetric, block 32, A [batch, seq, K].
    matmul_nbits(m, [2, 3, 64], ["batch", "seq", 64], N=48, K=64, bits=4,
                 block=32)


@case
def mnb_4bit_zp_bias(m):
    # Zero points, a bias, block 16 and K not a multiple of it (padded).
    matmul_nbits(m, [5, 40], ["rows", 40], N=24, K=40, bits=4, block=16,
                 zero_points=True, bias=True)


@case
def mnb_8bit_zp(m):
    matmul_nbits(m, [1, 4, 96], [1, "seq", 96], N=32, K=96, bits=8, block=32,
                 zero_points=True)


@case
def mnb_2bit(m):
    matmul_nbits(m, [3, 64], [3, 64], N=16, K=64, bits=2, block=16,
                 zero_points=True)


@case
def mnb_4bit_acc4(m):
    # accuracy_level 4, the builder's default: ONNX Runtime quantises A to
    # int8 per block; we compute in float32.
    matmul_nbits(m, [2, 3, 128], ["batch", "seq", 128], N=64, K=128, bits=4,
                 block=32, accuracy_level=4)


# --- GatherBlockQuantized ---------------------------------------------------

def gather_ids(m, V, shape):
    rng = np.random.default_rng(V)
    # Negative ids count from the end.
    ids = rng.integers(-V, V, shape).astype(np.int64)
    return m.input("ids", ids, ["batch", "seq"])


@case
def gbq_int4(m):
    # INT4 embeddings [V, H], block 32 along H, no zero points.
    V, H, block = 50, 64, 32
    rng = np.random.default_rng(3)
    data = m.const_4bit("embed_q", rng.integers(-8, 8, (V, H)), signed=True)
    scales = m.const("embed_s", rng.uniform(0.01, 0.1, (V, H // block))
                     .astype(np.float32))
    m.output(m.ms("GatherBlockQuantized", [data, gather_ids(m, V, (2, 5)),
                                           scales], ["y"],
                  gather_axis=0, quantize_axis=1, block_size=block))


@case
def gbq_uint4_zp(m):
    V, H, block = 40, 48, 16
    rng = np.random.default_rng(4)
    data = m.const_4bit("embed_q", rng.integers(0, 16, (V, H)), signed=False)
    scales = m.const("embed_s", rng.uniform(0.01, 0.1, (V, H // block))
                     .astype(np.float32))
    zp = m.const_4bit("embed_zp", rng.integers(0, 16, (V, H // block)),
                      signed=False)
    m.output(m.ms("GatherBlockQuantized", [data, gather_ids(m, V, (3, 2)),
                                           scales, zp], ["y"],
                  gather_axis=0, quantize_axis=1, block_size=block))


@case
def gbq_uint8_bits4(m):
    # uint8 data holding two 4-bit values per byte, packed zero points.
    V, H, block = 30, 64, 32
    rng = np.random.default_rng(5)
    data = m.const("embed_q", rng.integers(0, 256, (V, H // 2), dtype=np.uint8))
    scales = m.const("embed_s", rng.uniform(0.01, 0.1, (V, H // block))
                     .astype(np.float32))
    zp = m.const("embed_zp", rng.integers(0, 256, (V, 1), dtype=np.uint8))
    m.output(m.ms("GatherBlockQuantized", [data, gather_ids(m, V, (2, 3)),
                                           scales, zp], ["y"],
                  gather_axis=0, quantize_axis=1, block_size=block, bits=4))


# --- Rejected nodes ---------------------------------------------------------

def gqa_node(m, extra_inputs=(), **attrs):
    """A minimal GroupQueryAttention node for the error cases."""
    gqa_inputs = [m.input("qkv", rand([1, 2, 64], 1)), "", "",
                  m.input("past_key", rand([1, 1, 0, 16], 2)),
                  m.input("past_value", rand([1, 1, 0, 16], 3))]
    mask = m.input("attention_mask", np.ones((1, 2), np.int64))
    gqa_inputs += list(seqlens_and_total(m, mask))
    gqa_inputs += list(extra_inputs)
    m.ms("GroupQueryAttention", gqa_inputs, ["attn", "pk", "pv"],
         num_heads=2, kv_num_heads=1, **attrs)
    m.output("attn")


@case
def bad_gqa_attention_bias(m):
    gqa_node(m, ["", "", "", m.const("bias", rand([1, 1, 2, 2], 4))])


@case
def bad_gqa_sliding_window_cache(m):
    gqa_node(m, local_window_size=4, sliding_window_cache=1)


@case
def bad_gqa_quantized_cache(m):
    gqa_node(m, k_quant_type="PER_TENSOR", v_quant_type="PER_TENSOR",
             kv_cache_bit_width=8)


@case
def bad_gqa_shared_kv(m):
    # ONNX Runtime's shared KV: an empty key appends nothing to the cache.
    q = m.input("query", rand([1, 2, 32], 1))
    k = m.input("key", rand([1, 0, 16], 2))
    v = m.input("value", rand([1, 0, 16], 3))
    past = [m.input("past_key", rand([1, 1, 2, 16], 4)),
            m.input("past_value", rand([1, 1, 2, 16], 5))]
    mask = m.input("attention_mask", np.ones((1, 2), np.int64))
    m.ms("GroupQueryAttention", [q, k, v] + past + list(seqlens_and_total(m, mask)),
         ["attn", "pk", "pv"], num_heads=2, kv_num_heads=1)
    m.output("attn")


@case
def bad_gqa_total_input(m):
    q = m.input("qkv", rand([1, 2, 64], 1))
    seqlens = m.input("seqlens_k", np.array([1], np.int32))
    total = m.input("total", np.array(2, np.int32))
    m.ms("GroupQueryAttention", [q, "", "", "", "", seqlens, total],
         ["attn"], num_heads=2, kv_num_heads=1)
    m.output("attn")


@case
def bad_mnb_g_idx(m):
    a = m.input("A", rand([2, 32], 1))
    names = [a] + nbits_weight(m, 8, 32, 4, 32, 2, False)
    names += ["", m.const("g_idx", np.zeros(32, np.int32))]
    m.output(m.ms("MatMulNBits", names, ["Y"], K=32, N=8, bits=4,
                  block_size=32))


@case
def bad_mnb_huge_block(m):
    # A power-of-2 block size near 2^63: block_size * bits and K + block_size
    # - 1 overflowed int64 (the import now rejects it).
    a = m.input("A", rand([2, 32], 1))
    names = [a] + nbits_weight(m, 8, 32, 8, 32, 2, False)
    m.output(m.ms("MatMulNBits", names, ["Y"], K=32, N=8, bits=8,
                  block_size=1 << 62))


@case
def bad_mnb_float_zp(m):
    a = m.input("A", rand([2, 32], 1))
    names = [a] + nbits_weight(m, 8, 32, 4, 32, 2, False)
    names.append(m.const("zp", np.full((8, 1), 8.0, np.float32)))
    m.output(m.ms("MatMulNBits", names, ["Y"], K=32, N=8, bits=4,
                  block_size=32))


@case
def bad_mnb_weight_input(m):
    a = m.input("A", rand([3, 64], 1))
    b = m.input("B", np.random.default_rng(2).integers(0, 256, (16, 2, 16),
                                                       dtype=np.uint8))
    s = m.const("scales", rand([32], 3, 0.01, 0.1))
    m.output(m.ms("MatMulNBits", [a, b, s], ["Y"], K=64, N=16, bits=4,
                  block_size=32))


@case
def bad_unknown_contrib(m):
    x = m.input("x", rand([2, 4], 1))
    m.output(m.ms("DecoderMaskedMultiHeadAttention", [x], ["y"], num_heads=2))


def nbits_reference(model_dir):
    """Y of a one-node MatMulNBits model in float64, from the stored weights
    dequantised in numpy: (q - zp) * scale along K, plus the bias."""
    import onnx
    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    node = model.graph.node[0]
    attrs = {a.name: a.i for a in node.attribute}
    k, n, bits, block = attrs["K"], attrs["N"], attrs["bits"], attrs["block_size"]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    a = np.load(os.path.join(model_dir, "in0.npy")).astype(np.float64)
    packed = inits[node.input[1]].reshape(n, -1)
    per_byte = 8 // bits
    shifts = np.arange(per_byte) * bits
    q = ((packed[..., None] >> shifts) & ((1 << bits) - 1)).reshape(n, -1)[:, :k]
    blocks = (k + block - 1) // block
    scales = inits[node.input[2]].reshape(n, blocks).astype(np.float64)
    if len(node.input) > 3 and node.input[3]:
        zp_bytes = inits[node.input[3]].reshape(n, -1)
        zp = ((zp_bytes[..., None] >> shifts) & ((1 << bits) - 1)).reshape(n, -1)
        zp = zp[:, :blocks]
    else:
        zp = np.full((n, blocks), 1 << (bits - 1))
    w = (q - np.repeat(zp, block, axis=1)[:, :k]) * np.repeat(scales, block, axis=1)[:, :k]
    y = a @ w.T
    if len(node.input) > 5 and node.input[5]:
        y += inits[node.input[5]].astype(np.float64)
    return y


def compare_reference(model_dir, ours, ort, bound):
    """Distances of ours and ONNX Runtime's outputs to the float64
    reference (relative to its largest magnitude); ours must be within
    `bound`."""
    ref = nbits_reference(model_dir)
    scale = np.abs(ref).max()
    d_ours = np.abs(np.load(ours) - ref).max() / scale
    d_ort = np.abs(np.load(ort) - ref).max() / scale
    good = d_ours <= bound
    print(f"distance to float64 reference: ours {d_ours:.3g}, ORT {d_ort:.3g} "
          f"(bound {bound:g} for ours): {'PASS' if good else 'FAIL'}")
    return good


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(CASES))
        return
    if len(sys.argv) == 6 and sys.argv[1] == "reference":
        sys.exit(0 if compare_reference(sys.argv[2], sys.argv[3], sys.argv[4],
                                        float(sys.argv[5])) else 1)
    if len(sys.argv) != 3 or sys.argv[1] not in CASES:
        sys.exit(f"usage: {sys.argv[0]} NAME OUTDIR | --list\n"
                 f"names: {', '.join(CASES)}")
    m = Model()
    CASES[sys.argv[1]](m)
    m.save(sys.argv[2])


if __name__ == "__main__":
    main()
