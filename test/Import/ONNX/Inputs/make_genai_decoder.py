#!/usr/bin/env python3
"""A small MoE decoder in the graph form onnxruntime-genai's model builder
emits for CPU (gpt-oss style), with random weights from fixed seeds.

  make_genai_decoder.py fp32|int4 OUTDIR [--accuracy-level N]

writes OUTDIR/model.onnx. Inputs: input_ids, attention_mask and
past_key_values.{i}.key/.value ([batch, kv_heads, past, head]); outputs:
logits, then present.{i}.key/.value, as the builder names them (past keys
and values interleaved per layer, as in v0.10.0). Per layer:

  SimplifiedLayerNormalization (layer 0) or SkipSimplifiedLayerNormalization
  -> packed QKV MatMul + Add (bias) -> GroupQueryAttention (do_rotary, cos/sin
  caches, head sinks; a 4-token local window on even layers) -> o_proj
  MatMul + Add -> SkipSimplifiedLayerNormalization -> router MatMul + Add ->
  Reshape [-1, E] -> com.microsoft.MoE (fp32) or QMoE (int4): interleaved
  SwiGLU, alpha 1.702, beta 1, swiglu_limit 7, top-2, biases

then a final SkipSimplifiedLayerNormalization and the lm_head MatMul writing
logits. seqlens_k and total_sequence_length come from attention_mask as the
builder computes them. The int4 variant is what the builder's int4 recipe
makes of the same weights: the embedding a GatherBlockQuantized over INT4
data, every MatMul with a constant weight a MatMulNBits (symmetric, block
32, named <matmul>_Q4, keeping its output's name), the experts QMoE with
block-wise 4-bit weights (scale = max|w| / 8, stored q + 8). The builder
writes accuracy_level 4; the default here is 0, at which ONNX Runtime
computes MatMulNBits in float32 (see docs/ImportONNX-StandardOps.md).
"""
import argparse
import os

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

f32, i64, i32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
INT4 = 22  # TensorProto.INT4 (onnx 1.16), which the onnx package here lacks

VOCAB, HIDDEN, LAYERS = 96, 64, 2
HEADS, KV_HEADS, HEAD = 4, 2, 16
EXPERTS, TOP_K, INTER = 4, 2, 32
CONTEXT, EPS, BLOCK = 64, 1e-5, 32
WINDOW = 4


class Graph:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []

    def random(self, shape, scale):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def norm_weight(self, name):
        return self.const(name, 1.0 + self.random([HIDDEN], 0.2))

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op, name, inputs, outputs, domain="", **attrs):
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name,
                                           domain=domain, **attrs))
        return outputs[0]


def quantize_rows_4bit(w, block):
    """MatMulNBits' symmetric 4-bit encoding of w [N, K] along K: per block
    the value of largest magnitude v gives scale = v / -8 and q = round(w /
    scale) + 8 in [0, 15], two per byte, low nibble first."""
    n, k = w.shape
    blocks = (k + block - 1) // block
    padded = np.zeros((n, blocks * block), np.float32)
    padded[:, :k] = w
    b = padded.reshape(n, blocks, block)
    idx = np.abs(b).argmax(axis=2)
    v = np.take_along_axis(b, idx[..., None], axis=2)[..., 0]
    scale = (v / -8.0).astype(np.float32)
    safe = np.where(scale == 0, 1.0, scale)
    q = np.clip(np.round(b / safe[..., None]) + 8, 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return packed, scale.reshape(-1)


def quantize_experts_4bit(w, block):
    """QMoE's CPU encoding of w [E, N, K] (cuda_quantizer.py): scale =
    max|w| / 8 per block of K, q = clamp(round(w / scale), -8, 7) + 8."""
    e, n, k = w.shape
    b = w.reshape(e, n, k // block, block)
    scale = (np.abs(b).max(axis=3) / 8.0).astype(np.float32)
    safe = np.where(scale == 0, 1.0, scale)
    q = (np.clip(np.round(b / safe[..., None]), -8, 7) + 8).astype(np.uint8)
    q = q.reshape(e, n, k)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return packed, scale


def build(variant, accuracy_level):
    g = Graph(seed=2024)
    int4 = variant == "int4"

    def linear(x, prefix, k, n, bias=False, out=None):
        """MatMul by a constant [K, N] weight (MatMulNBits in int4), + bias."""
        wname = f"{prefix[1:].replace('/', '.')}.MatMul.weight"
        w = g.random([k, n], 1.0 / np.sqrt(k))
        y = out or f"{prefix}/MatMul/output_0"
        if int4:
            packed, scales = quantize_rows_4bit(w.T, BLOCK)
            y = g.node("MatMulNBits", f"{prefix}/MatMul_Q4",
                       [x, g.const(f"{wname}_Q4", packed),
                        g.const(f"{wname}_scales", scales)], [y],
                       domain="com.microsoft", K=k, N=n, bits=4,
                       block_size=BLOCK, accuracy_level=accuracy_level)
        else:
            y = g.node("MatMul", f"{prefix}/MatMul", [x, g.const(wname, w)], [y])
        if bias:
            bname = g.const(f"{prefix[1:].replace('/', '.')}.Add.bias",
                            g.random([n], 0.1))
            y = g.node("Add", f"{prefix}/Add", [y, bname],
                       [f"{prefix}/Add/output_0"])
        return y

    # attention_mask -> seqlens_k, total_sequence_length (base.py 5457-5495).
    c = "/model/constant_nodes"
    g.node("Constant", f"{c}/axes", [], [f"{c}/axes/output_0"],
           value=numpy_helper.from_array(np.array([1], np.int64)))
    g.node("Constant", f"{c}/one", [], [f"{c}/one/output_0"],
           value=numpy_helper.from_array(np.array(1, np.int64)))
    m = "/model/attn_mask_reformat/attn_mask_subgraph"
    g.node("ReduceSum", f"{m}/ReduceSum", ["attention_mask", f"{c}/axes/output_0"],
           [f"{m}/ReduceSum/output_0"], keepdims=0)
    g.node("Sub", f"{m}/Sub", [f"{m}/ReduceSum/output_0", f"{c}/one/output_0"],
           [f"{m}/Sub/output_0"])
    seqlens = g.node("Cast", f"{m}/Sub/Cast", [f"{m}/Sub/output_0"],
                     [f"{m}/Sub/Cast/output_0"], to=i32)
    g.node("Shape", f"{m}/Shape", ["attention_mask"], [f"{m}/Shape/output_0"])
    g.node("Gather", f"{m}/Gather", [f"{m}/Shape/output_0", f"{c}/one/output_0"],
           [f"{m}/Gather/output_0"], axis=0)
    total = g.node("Cast", f"{m}/Gather/Cast", [f"{m}/Gather/output_0"],
                   [f"{m}/Gather/Cast/output_0"], to=i32)

    # Embedding.
    embed = g.random([VOCAB, HIDDEN], 1.0)
    if int4:
        # quantize_gather: symmetric INT4 blocks along the hidden axis.
        blocks = embed.reshape(VOCAB, HIDDEN // BLOCK, BLOCK)
        scale = (np.abs(blocks).max(axis=2) / 7.0).astype(np.float32)
        q = np.clip(np.round(blocks / scale[..., None]), -8, 7).astype(np.int64)
        flat = q.reshape(-1) & 0xF
        data = TensorProto()
        data.name, data.data_type = "model.embed_tokens.weight_Q4", INT4
        data.dims.extend([VOCAB, HIDDEN])
        data.raw_data = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()
        g.inits.append(data)
        x = g.node("GatherBlockQuantized", "/model/embed_tokens/GatherBlockQuantized",
                   [data.name, "input_ids", g.const("model.embed_tokens.weight_scales", scale)],
                   ["/model/embed_tokens/Gather/output_0"], domain="com.microsoft",
                   gather_axis=0, quantize_axis=1, block_size=BLOCK, bits=4)
    else:
        ename = g.const("model.embed_tokens.weight", embed)
        x = g.node("Gather", "/model/embed_tokens/Gather", [ename, "input_ids"],
                   ["/model/embed_tokens/Gather/output_0"])

    half = HEAD // 2
    inv = 1.0 / (150000.0 ** (np.arange(half) / half))
    angles = np.arange(CONTEXT)[:, None] * inv[None, :]
    cos = g.const("cos_cache", np.cos(angles).astype(np.float32))
    sin = g.const("sin_cache", np.sin(angles).astype(np.float32))

    residual, skip = x, None
    for i in range(LAYERS):
        p = f"/model/layers.{i}"
        gamma = g.norm_weight(f"model.layers.{i}.input_layernorm.weight")
        if skip is None:
            # Layer 0: the ai.onnx-domain norm (base.py 2474-2476).
            h = g.node("SimplifiedLayerNormalization", f"{p}/input_layernorm/LayerNorm",
                       [residual, gamma], [f"{p}/input_layernorm/output_0"],
                       epsilon=EPS, axis=-1, stash_type=1)
        else:
            # Output 3 (input + skip) carries the residual stream on.
            h = g.node("SkipSimplifiedLayerNormalization",
                       f"{p}/input_layernorm/SkipLayerNorm", [residual, skip, gamma],
                       [f"{p}/input_layernorm/output_0", "", "",
                        f"{p}/input_layernorm/output_3"],
                       domain="com.microsoft", epsilon=EPS)
            residual = f"{p}/input_layernorm/output_3"
        qkv = linear(h, f"{p}/attn/qkv_proj", HIDDEN,
                     (HEADS + 2 * KV_HEADS) * HEAD, bias=True)
        sinks = g.const(f"model.layers.{i}.attn.sinks", g.random([HEADS], 1.0))
        attn = g.node(
            "GroupQueryAttention", f"{p}/attn/GroupQueryAttention",
            [qkv, "", "", f"past_key_values.{i}.key", f"past_key_values.{i}.value",
             seqlens, total, cos, sin, "", "", sinks],
            [f"{p}/attn/GroupQueryAttention/output_0", f"present.{i}.key",
             f"present.{i}.value"],
            domain="com.microsoft", num_heads=HEADS, kv_num_heads=KV_HEADS,
            scale=float(1.0 / np.sqrt(HEAD)),
            local_window_size=WINDOW if i % 2 == 0 else -1, softcap=0.0,
            do_rotary=1, rotary_interleaved=0)
        o = linear(attn, f"{p}/attn/o_proj", HEADS * HEAD, HIDDEN, bias=True)
        gamma2 = g.norm_weight(f"model.layers.{i}.post_attention_layernorm.weight")
        normed = g.node("SkipSimplifiedLayerNormalization",
                        f"{p}/post_attention_layernorm/SkipLayerNorm",
                        [residual, o, gamma2],
                        [f"{p}/post_attention_layernorm/output_0", "", "",
                         f"{p}/post_attention_layernorm/output_3"],
                        domain="com.microsoft", epsilon=EPS)
        residual = f"{p}/post_attention_layernorm/output_3"
        # Router: MatMul + Add -> Reshape [-1, E] (raw logits).
        router = linear(normed, f"{p}/moe/router", HIDDEN, EXPERTS, bias=True)
        shape = g.const(f"{p}/moe/router/shape", np.array([-1, EXPERTS], np.int64))
        probs = g.node("Reshape", f"{p}/moe/router/Reshape", [router, shape],
                       [f"{p}/moe/router/Reshape/output_0"])
        # Experts: fc1 [E, 2I, H] (gate/linear interleaved), fc2 [E, H, I].
        w1 = g.random([EXPERTS, 2 * INTER, HIDDEN], 1.0 / np.sqrt(HIDDEN))
        b1 = g.random([EXPERTS, 2 * INTER], 0.1)
        w2 = g.random([EXPERTS, HIDDEN, INTER], 1.0 / np.sqrt(INTER))
        b2 = g.random([EXPERTS, HIDDEN], 0.1)
        attrs = dict(activation_alpha=1.702, activation_beta=1.0,
                     activation_type="swiglu", k=TOP_K,
                     normalize_routing_weights=1, swiglu_fusion=1,
                     use_sparse_mixer=0, swiglu_limit=7.0)
        w = f"model.layers.{i}.moe.experts"
        if int4:
            q1, s1 = quantize_experts_4bit(w1, BLOCK)
            q2, s2 = quantize_experts_4bit(w2, BLOCK)
            moe = g.node("QMoE", f"{p}/moe/QMoE",
                         [normed, probs, g.const(f"{w}.fc1_q", q1),
                          g.const(f"{w}.fc1_scales", s1), g.const(f"{w}.fc1_bias", b1),
                          g.const(f"{w}.fc2_q", q2), g.const(f"{w}.fc2_scales", s2),
                          g.const(f"{w}.fc2_bias", b2), "", "", "", "", "", ""],
                         [f"{p}/moe/output_0"], domain="com.microsoft",
                         expert_weight_bits=4, block_size=BLOCK, **attrs)
        else:
            moe = g.node("MoE", f"{p}/moe/MoE",
                         [normed, probs, g.const(f"{w}.fc1", w1),
                          g.const(f"{w}.fc1_bias", b1), g.const(f"{w}.fc2", w2),
                          g.const(f"{w}.fc2_bias", b2), "", ""],
                         [f"{p}/moe/output_0"], domain="com.microsoft", **attrs)
        skip = moe

    gamma = g.norm_weight("model.norm.weight")
    final = g.node("SkipSimplifiedLayerNormalization", "/model/norm/SkipLayerNorm",
                   [residual, skip, gamma], ["/model/norm/output_0"],
                   domain="com.microsoft", epsilon=EPS)
    linear(final, "/lm_head", HIDDEN, VOCAB, out="logits")

    dims = ["batch_size", "sequence_length"]
    inputs = [helper.make_tensor_value_info("input_ids", i64, dims),
              helper.make_tensor_value_info("attention_mask", i64,
                                            ["batch_size", "total_sequence_length"])]
    outputs = [helper.make_tensor_value_info("logits", f32, dims + [VOCAB])]
    for i in range(LAYERS):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(
                f"past_key_values.{i}.{kind}", f32,
                ["batch_size", KV_HEADS, "past_sequence_length", HEAD]))
            outputs.append(helper.make_tensor_value_info(
                f"present.{i}.{kind}", f32,
                ["batch_size", KV_HEADS, "total_sequence_length", HEAD]))
    graph = helper.make_graph(g.nodes, "main_graph", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)],
        producer_name="onnxruntime-genai")
    model.ir_version = 10
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=["fp32", "int4"])
    parser.add_argument("outdir")
    parser.add_argument("--accuracy-level", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    save(build(args.variant, args.accuracy_level),
         os.path.join(args.outdir, "model.onnx"))


if __name__ == "__main__":
    main()
