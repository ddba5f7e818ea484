"""PyTorch sides of the GPU benchmark: routing (moe.route semantics), the
Hugging Face Mixtral-style eager per-expert loop, a torch._grouped_mm
version, and the float64 reference. Runs on torch 1.13 (CPU, --smoke) and
2.x (CUDA).

Weights: fc1 [E, 2I, H] (SwiGLU, concatenated: gate rows [0, I), up rows
[I, 2I)), fc2 [E, H, I]; x [T, H]; router logits [T, E] float32.
"""
import torch
import torch.nn.functional as F


def route(logits, bias, r, k):
    """moe.route for the options the benchmark uses: softmax or sigmoid
    scores, optional selection bias, group-limited top-k (max or top2_sum
    group scores), renormalisation, scaling. Computes in logits' dtype
    (float32 for the peers, float64 for the reference). Returns (ids [T, k]
    int64, weights [T, k])."""
    T, E = logits.shape
    if r["scoring"] == "softmax":
        s = torch.softmax(logits, dim=-1)
    elif r["scoring"] == "sigmoid":
        s = torch.sigmoid(logits)
    else:
        raise ValueError(r["scoring"])
    sel = s + bias.to(s.dtype) if bias is not None else s
    G = r.get("num_groups", 1)
    if G > 1:
        gs = sel.view(T, G, E // G)
        if r.get("group_scoring", "max") == "top2_sum":
            gscore = gs.topk(2, dim=-1).values.sum(dim=-1)
        else:
            gscore = gs.max(dim=-1).values
        gidx = gscore.topk(r["top_groups"], dim=-1).indices
        gmask = torch.zeros(T, G, dtype=torch.bool, device=logits.device)
        gmask.scatter_(1, gidx, True)
        mask = gmask.unsqueeze(-1).expand(T, G, E // G).reshape(T, E)
        sel = sel.masked_fill(~mask, float("-inf"))
    ids = sel.topk(k, dim=-1).indices
    w = s.gather(1, ids)
    if r.get("normalize"):
        w = w / w.sum(dim=-1, keepdim=True)
    scaling = r.get("scaling")
    if scaling is not None and scaling != 1.0:
        w = w * scaling
    return ids, w


def swiglu(gu, I):
    return F.silu(gu[:, :I]) * gu[:, I:]


def eager(x, logits, bias, fc1, fc2, r, k):
    """The Hugging Face Mixtral sparse-MoE block's loop: one-hot expert
    mask, loop over the experts that received tokens, gather, two matmuls,
    scale by the routing weight, index_add into the output (all in x's
    dtype, routing weights cast to it, as HF does)."""
    T, H = x.shape
    E, twoI, _ = fc1.shape
    I = twoI // 2
    ids, w = route(logits.float(), bias, r, k)
    w = w.to(x.dtype)
    out = torch.zeros(T, H, dtype=x.dtype, device=x.device)
    mask = F.one_hot(ids, num_classes=E).permute(2, 1, 0)  # [E, k, T]
    hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for e in hit.flatten().tolist():
        slot, tok = torch.where(mask[e])
        cur = x[tok]
        h = swiglu(cur @ fc1[e].t(), I)
        y = (h @ fc2[e].t()) * w[tok, slot, None]
        out.index_add_(0, tok, y.to(x.dtype))
    return out


def have_grouped_mm():
    return hasattr(torch, "_grouped_mm")


def _grouped_mm_emulated(a, b, offs):
    """What torch._grouped_mm(a [M, K], b [G, K, N], offs) computes, by a
    loop (for --smoke on a torch without _grouped_mm: checks the code
    around it, times nothing worth reporting)."""
    out = torch.empty(a.shape[0], b.shape[2], dtype=a.dtype, device=a.device)
    start = 0
    for g, end in enumerate(offs.tolist()):
        out[start:end] = a[start:end] @ b[g]
        start = end
    return out


def grouped(x, logits, bias, fc1, fc2, r, k, emulate=False):
    """Tokens sorted by expert, two torch._grouped_mm calls (fc1, then fc2
    after SwiGLU) with per-expert offsets, the routing weights applied to
    the rows, index_add back to token order (float32 accumulation)."""
    mm = _grouped_mm_emulated if emulate else torch._grouped_mm
    T, H = x.shape
    E, twoI, _ = fc1.shape
    I = twoI // 2
    ids, w = route(logits.float(), bias, r, k)
    flat = ids.flatten()
    _, order = torch.sort(flat, stable=True)
    tok = order // k
    counts = torch.bincount(flat, minlength=E)
    offs = counts.cumsum(0).to(torch.int32)
    xs = x[tok]
    h = swiglu(mm(xs, fc1.transpose(1, 2), offs=offs), I)
    y = mm(h, fc2.transpose(1, 2), offs=offs)
    y = y.float() * w.flatten()[order, None]
    out = torch.zeros(T, H, dtype=torch.float32, device=x.device)
    out.index_add_(0, tok, y)
    return out.to(x.dtype)


def reference(x, logits, bias, fc1, fc2, r, k):
    """float64: routing from the float32 logits computed in float64, every
    expert's weights widened to float64 one expert at a time."""
    T, H = x.shape
    I = fc1.shape[1] // 2
    ids, w = route(logits.double(), bias.double() if bias is not None
                   else None, r, k)
    x64 = x.double()
    out = torch.zeros(T, H, dtype=torch.float64, device=x.device)
    for e in torch.unique(ids).tolist():
        tok, slot = torch.where(ids == e)
        h = swiglu(x64[tok] @ fc1[e].double().t(), I)
        y = (h @ fc2[e].double().t()) * w[tok, slot, None]
        out.index_add_(0, tok, y)
    return out


def rel_error(got, ref):
    """max|got - ref| / max|ref| (inf when got has non-finite values)."""
    got = got.double().reshape(ref.shape)
    if not bool(torch.isfinite(got).all()):
        return float("inf")
    denom = float(ref.abs().max()) if ref.numel() else 0.0
    diff = float((got - ref).abs().max()) if ref.numel() else 0.0
    return diff / denom if denom > 0 else (0.0 if diff == 0 else
                                           float("inf"))
