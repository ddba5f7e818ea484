#!/usr/bin/env python3
"""Small PyTorch modules exported with torch.onnx.export (symbolic batch and
sequence dimensions), the way real models reach the importer.

  make_torch_models.py NAME OUTDIR    writes OUTDIR/model.onnx and in0.npy
  make_torch_models.py --list         prints the names

The exports carry the exporter's shape subgraphs (Shape, Gather, Unsqueeze,
Concat, Reshape on symbolic sizes) around the compute.
"""
import os
import sys
import warnings

import numpy as np
import torch
from torch import nn

H = 16


class MLPBlock(nn.Module):
    """Pre-norm feed-forward block with a residual."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(H)
        self.up = nn.Linear(H, 2 * H)
        self.down = nn.Linear(2 * H, H)

    def forward(self, x):
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))


class Router(nn.Module):
    """A top-2 softmax router over tokens flattened from [B, S, H]."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(H, 8, bias=False)

    def forward(self, x):
        tokens = x.reshape(-1, x.shape[-1])
        probs = torch.softmax(self.gate(tokens), dim=-1)
        weights, ids = torch.topk(probs, 2, dim=-1)
        return weights / weights.sum(dim=-1, keepdim=True), ids


class Attention(nn.Module):
    """Multi-head self-attention with reshapes on symbolic sizes."""

    def __init__(self, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(H, 3 * H)
        self.out = nn.Linear(H, H)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).split(H, dim=-1)

        def split_heads(t):
            return t.reshape(b, s, self.heads, H // self.heads).transpose(1, 2)

        q, k, v = split_heads(q), split_heads(k), split_heads(v)
        scores = q @ k.transpose(-1, -2) / (H // self.heads) ** 0.5
        ctx = torch.softmax(scores, dim=-1) @ v
        return self.out(ctx.transpose(1, 2).reshape(b, s, H))


class RMSNormSwiGLU(nn.Module):
    """RMS norm (spelled out: pow, mean, rsqrt) and a SwiGLU feed-forward."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, H))
        self.gate = nn.Linear(H, 2 * H, bias=False)
        self.up = nn.Linear(H, 2 * H, bias=False)
        self.down = nn.Linear(2 * H, H, bias=False)

    def forward(self, x):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight
        return self.down(nn.functional.silu(self.gate(x)) * self.up(x))


class ExpandFlip(nn.Module):
    """expand(-1, S, -1) (exported as Where(Equal(shape, -1), 1, shape)) and
    flip (a Slice with step -1) on symbolic sizes."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(H, H)

    def forward(self, x):
        b, s, h = x.shape
        pooled = self.proj(x.mean(dim=1)).unsqueeze(1).expand(-1, s, -1)
        return x.flip(1) + pooled


class RotaryCausal(nn.Module):
    """Rotary position embedding from torch.arange(seq_len) and causally
    masked attention scores (torch.triu -> Trilu) on symbolic sizes."""

    def __init__(self):
        super().__init__()
        self.register_buffer(
            "inv_freq", 1.0 / (100.0 ** (torch.arange(0, H, 2).float() / H)))

    def forward(self, x):
        b, s, h = x.shape
        pos = torch.arange(s).float()
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        half = torch.cat([-x[..., h // 2:], x[..., : h // 2]], dim=-1)
        x = x * emb.cos() + half * emb.sin()
        scores = x @ x.transpose(1, 2) / h ** 0.5
        mask = torch.triu(torch.ones(s, s), diagonal=1).bool()
        scores = scores.masked_fill(mask, float("-inf"))
        return torch.softmax(scores, dim=-1) @ x


class DecomposedMoE(nn.Module):
    """A top-2 MoE as eager PyTorch writes it: per expert, the tokens that
    chose it (torch.where -> NonZero), their rows gathered, the expert MLP,
    and the weighted rows added back (index_add -> ScatterElements)."""

    def __init__(self, experts=4):
        super().__init__()
        self.gate = nn.Linear(H, experts, bias=False)
        self.experts = nn.ModuleList([
            nn.Sequential(nn.Linear(H, 2 * H), nn.SiLU(), nn.Linear(2 * H, H))
            for _ in range(experts)])

    def forward(self, x):
        b, s, h = x.shape
        tokens = x.reshape(-1, h)
        weights, chosen = torch.topk(torch.softmax(self.gate(tokens), -1), 2)
        weights = weights / weights.sum(-1, keepdim=True)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)
            rows = expert(tokens[token]) * weights[token, slot].unsqueeze(-1)
            out = out.index_add(0, token, rows)
        return out.reshape(b, s, h)


MODELS = {"mlp_block": MLPBlock, "router": Router, "attention": Attention,
          "rmsnorm_swiglu": RMSNormSwiGLU, "expand_flip": ExpandFlip,
          "rotary_causal": RotaryCausal,
          "moe_decomposed": DecomposedMoE}


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(MODELS))
        return
    if len(sys.argv) != 3 or sys.argv[1] not in MODELS:
        sys.exit(f"usage: {sys.argv[0]} NAME OUTDIR | --list")
    name, out = sys.argv[1:]
    torch.manual_seed(0)
    module = MODELS[name]().eval()
    x = torch.from_numpy(
        np.random.default_rng(1).uniform(-2, 2, (2, 5, H)).astype(np.float32))
    os.makedirs(out, exist_ok=True)
    outputs = ["y", "ids"] if name == "router" else ["y"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), os.path.join(out, "model.onnx"),
                          input_names=["x"], output_names=outputs,
                          dynamic_axes={"x": {0: "batch", 1: "seq"}},
                          opset_version=17)
    np.save(os.path.join(out, "in0.npy"), x.numpy())


if __name__ == "__main__":
    main()
