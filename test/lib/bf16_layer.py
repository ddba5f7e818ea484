"""A bf16 MoE layer with its router in the function, as MLIR, and its
float64 reference: what benchmarks/bf16/bench.py times and
test/e2e/run_constant_weights.py checks; and f32 weights whose routing is
skewed (the profile-guided tests and benchmarks).

The layer: x [T, H] -> logits = x W_r^T (f32 accumulation) -> top-k softmax
with renormalisation -> interleaved SwiGLU experts (fc1 [E, 2I, H]: row 2i
the gate, 2i + 1 the linear half; fc2 [E, H, I]) -> y [T, H]. Its weights
are function arguments, or (`constants`) constants in the module as dense
resource blobs, as a deployed model's weights are: those are what
moe-compile can store panel-major at compile time.

Standard library + NumPy.
"""
import numpy as np


def round_bf16(a):
    """float32 values rounded to the nearest bf16 (ties to even)."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def bf16_bits(a):
    """The bf16 bit patterns of float32 values that are bf16 already."""
    return (np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
            >> 16).astype("<u2")


def _resource_hex(a, dtype):
    """A dense resource blob's text: the alignment (little-endian u32) and
    the elements' bytes, in hex."""
    if dtype == "ui8":
        data, alignment = np.ascontiguousarray(a, dtype=np.uint8), 1
    elif dtype == "bf16":
        data, alignment = bf16_bits(a), 2
    elif dtype == "f16":
        data, alignment = np.ascontiguousarray(a, dtype="<f2"), 2
    else:
        data, alignment = np.ascontiguousarray(a, dtype="<f4"), 4
    return "0x" + alignment.to_bytes(4, "little").hex() + data.tobytes().hex()


def quantize(w, bits, block_size):
    """Symmetric quantisation of float weights [E, N, K] the way QMoE
    stores them without zero points: codes q = round(w / scale) + 2^(bits
    - 1) with a scale per row (block_size 0) or per block of k, 4-bit codes
    packed two a byte (even k in the low nibble). Returns the packed codes
    (ui8 [E, N, K * bits / 8]), the f32 scales ([E, N] or [E, N, K /
    block]) and the dequantised weights (float64) the reference takes."""
    E, N, K = w.shape
    block = block_size or K
    blocks = w.astype(np.float64).reshape(E, N, K // block, block)
    zero = 1 << (bits - 1)
    scales = (np.abs(blocks).max(-1) / (zero - 1)).astype(np.float32)
    scales[scales == 0] = 1
    codes = np.clip(np.rint(blocks / scales[..., None]) + zero, 0,
                    2 * zero - 1).astype(np.uint8)
    dequantised = ((codes.astype(np.float64) - zero) *
                   scales[..., None]).reshape(E, N, K)
    codes = codes.reshape(E, N, K)
    if bits == 4:
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
    if not block_size:
        scales = scales[..., 0]
    return codes, scales, dequantised


def layer_mlir(H, I, E, k, dtype="bf16", constants=None, shared=None,
               quant=None):
    """The layer's function `@moe_layer`. Weights (router [E, H], fc1, fc2,
    of `dtype`, bf16, f16 or f32; x and y have it too) are arguments after x, or
    with `constants` (a dict of router, fc1 and fc2 arrays) constants.
    `shared` = (S, Is, gated) adds S shared experts of intermediate size Is
    (shared_fc1 [S, 2 Is, H], shared_fc2 [S, H, Is], interleaved like the
    routed ones) and, when gated, a shared_gate [H] (Qwen2-MoE).
    `quant` = (bits, block_size) makes the experts' weights quantised:
    fc1 and fc2 are then quantize()'s packed codes, with fc1_scales and
    fc2_scales (f32 layers only)."""
    fI = 2 * I
    t = dtype
    types = dict(router=f"tensor<{E}x{H}x{t}>", fc1=f"tensor<{E}x{fI}x{H}x{t}>",
                 fc2=f"tensor<{E}x{H}x{I}x{t}>")
    element = dict.fromkeys(types, t)
    quant_operands, quant_attr = "", ""
    if quant:
        bits, block = quant
        for name, n, depth in (("fc1", fI, H), ("fc2", H, I)):
            types[name] = f"tensor<{E}x{n}x{depth * bits // 8}xui8>"
            element[name] = "ui8"
            blocks = f"x{depth // block}" if block else ""
            types[f"{name}_scales"] = f"tensor<{E}x{n}{blocks}xf32>"
            element[f"{name}_scales"] = "f32"
        quant_operands = " fc1_scales %fc1_scales fc2_scales %fc2_scales"
        quant_attr = (f", quant = #moe.quant<bits = {bits}, "
                      f"block_size = {block}>")
    shared_operands, shared_types = "", ""
    if shared:
        S, Is, gated = shared
        types.update(shared_fc1=f"tensor<{S}x{2 * Is}x{H}x{t}>",
                     shared_fc2=f"tensor<{S}x{H}x{Is}x{t}>")
        shared_operands = " shared_fc1 %shared_fc1 shared_fc2 %shared_fc2"
        shared_types = f", {types['shared_fc1']}, {types['shared_fc2']}"
        if gated:
            types.update(shared_gate=f"tensor<{H}x{t}>")
            shared_operands += " shared_gate %shared_gate"
            shared_types += f", {types['shared_gate']}"
    if constants is None:
        params = "".join(f", %{n}: {ty}" for n, ty in types.items())
        consts = ""
        resources = ""
    else:
        params = ""
        consts = "".join(
            f"  %{n} = arith.constant dense_resource<{n}> : {ty}\n"
            for n, ty in types.items())
        blobs = ",\n".join(
            f"      {n}: \"{_resource_hex(constants[n], element.get(n, t))}\""
            for n in types)
        resources = ("{-#\n  dialect_resources: {\n    builtin: {\n" + blobs +
                     "\n    }\n  }\n#-}\n")
    quant_types = "".join(f", {types[f'{n}_scales']}" for n in ("fc1", "fc2")) \
        if quant else ""
    # bf16 and f16 products are taken in f32.
    widen, a, b = (f"    %a32 = arith.extf %a : {t} to f32\n"
                   f"    %b32 = arith.extf %b : {t} to f32\n", "%a32", "%b32") \
        if t in ("bf16", "f16") else ("", "%a", "%b")
    return f"""// Generated by test/lib/bf16_layer.py: an MoE layer with its router.
#x_map = affine_map<(m, n, k) -> (m, k)>
#w_map = affine_map<(m, n, k) -> (n, k)>
#c_map = affine_map<(m, n, k) -> (m, n)>
func.func @moe_layer(%x: tensor<?x{H}x{t}>{params}) -> tensor<?x{H}x{t}> {{
{consts}  %c0 = arith.constant 0 : index
  %tokens = tensor.dim %x, %c0 : tensor<?x{H}x{t}>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty(%tokens) : tensor<?x{E}xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x{E}xf32>) -> tensor<?x{E}xf32>
  %logits = linalg.generic {{indexing_maps = [#x_map, #w_map, #c_map],
                            iterator_types = ["parallel", "parallel", "reduction"]}}
      ins(%x, %router : tensor<?x{H}x{t}>, {types["router"]})
      outs(%init : tensor<?x{E}xf32>) {{
  ^bb0(%a: {t}, %b: {t}, %acc: f32):
{widen}    %p = arith.mulf {a}, {b} : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }} -> tensor<?x{E}xf32>
  %y = moe.layer %x, %logits fc1 %fc1 fc2 %fc2{quant_operands}{shared_operands}
         {{k = {k} : i64, normalize, activation = #moe.activation<swiglu>,
          swiglu_fusion = #moe.swiglu_fusion<interleaved>,
          alpha = 1.0, beta = 0.0{quant_attr}}}
       : (tensor<?x{H}x{t}>, tensor<?x{E}xf32>, {types["fc1"]},
          {types["fc2"]}{quant_types}{shared_types}) -> tensor<?x{H}x{t}>
  return %y : tensor<?x{H}x{t}>
}}
{resources}"""


def _swiglu_ffn(w1, w2, x64):
    h = w1.astype(np.float64) @ x64
    gate, up = h[0::2], h[1::2]
    return w2.astype(np.float64) @ (gate / (1 + np.exp(-gate)) * up)


def reference(x, router, fc1, fc2, k, shared_fc1=None, shared_fc2=None,
              shared_gate=None):
    """float64 evaluation of the layer on the given (bf16 or f32) values,
    with its shared experts (and their gate) when given."""
    x64 = x.astype(np.float64)
    logits = x64 @ router.astype(np.float64).T
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    y = np.zeros_like(x64)
    for t in range(x.shape[0]):
        w = probs[t, top[t]]
        w /= w.sum()
        for e, we in zip(top[t], w):
            y[t] += we * _swiglu_ffn(fc1[e], fc2[e], x64[t])
        if shared_fc1 is not None:
            s = sum(_swiglu_ffn(w1, w2, x64[t])
                    for w1, w2 in zip(shared_fc1, shared_fc2))
            if shared_gate is not None:
                s = s / (1 + np.exp(-(shared_gate.astype(np.float64) @ x64[t])))
            y[t] += s
    return y


def skewed_layer(rng, H, I, E, spread=(-2.0, 3.0), fan=8.0):
    """f32 weights (router, fc1, fc2) of a layer whose routing is skewed, as
    trained routers' is, and a sampler of its tokens: tokens share a
    direction that the routers' rows follow more the higher the expert
    (by `spread`), so the high-numbered experts take most tokens."""
    lean = rng.standard_normal(H)
    lean /= np.linalg.norm(lean)
    router = rng.standard_normal((E, H)) + np.linspace(*spread, E)[:, None] * lean
    weights = dict(router=router.astype(np.float32),
                   fc1=(rng.standard_normal((E, 2 * I, H)) / fan).astype(np.float32),
                   fc2=(rng.standard_normal((E, H, I)) / fan).astype(np.float32))

    def tokens(count):
        return (rng.standard_normal((count, H)) + 2 * lean).astype(np.float32)

    return weights, tokens


def paired_layer(rng, H, I, E, strength=20.0, fan=8.0):
    """f32 weights (router, fc1, fc2) of a top-2 layer whose experts come in
    pairs that tokens choose together, the pairs far apart in numbering
    (expert j with j + E/2), and a sampler of its tokens: each token leans
    towards one pair's direction, which both routers' rows of the pair
    follow (by `strength`). Contiguous expert-parallel blocks split every
    pair; placing each pair on one rank halves the rows a token needs
    when it travels once per rank."""
    pairs = E // 2
    directions = rng.standard_normal((pairs, H))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    router = rng.standard_normal((E, H))
    router[:pairs] += strength * directions
    router[pairs:2 * pairs] += strength * directions
    weights = dict(router=router.astype(np.float32),
                   fc1=(rng.standard_normal((E, 2 * I, H)) / fan).astype(np.float32),
                   fc2=(rng.standard_normal((E, H, I)) / fan).astype(np.float32))

    def tokens(count):
        pair = rng.integers(0, pairs, count)
        return (rng.standard_normal((count, H)) +
                4.0 * directions[pair]).astype(np.float32)

    return weights, tokens
