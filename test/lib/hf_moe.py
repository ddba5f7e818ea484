#!/usr/bin/env python3
"""Small Hugging Face-style MoE decoder language models, written the way the
transformers modelling files write them (no hub access here: our own small
configs, random weights), and their torch.onnx.export.

  hf_moe.py FAMILY OUTDIR [--static | --dynamic] [--kv-cache] [--seq S]
            [--batch B] [--past P] [--pad N] [--layers N] [--seed S] [--rope FORM]
            [--hidden H] [--experts E] [--heads N] [--kv-heads N]
            [--head-dim D] [--shared-inter I] ...

Writes OUTDIR/model.onnx, the inputs as OUTDIR/in_<name>.npy (in graph
input order, listed in OUTDIR/inputs.txt), torch eager's outputs as
OUTDIR/torch_<i>.npy and the configuration as OUTDIR/config.json (with
"moe_layers", the decoder layers whose MLP is a sparse MoE block).
`--kv-cache` adds past_key_values inputs and present outputs (past length
P; 0 is a prefill, which is exported with past 1 and run with past 0), and
OUTDIR/steps/<n>/ holds a prefill and decode steps when `--decode-steps N`
is given.

Families (the MoE block each is known for; the decoder around it is the
family's: RMSNorm or LayerNorm, GQA or MLA attention, RoPE, causal mask):
  mixtral     softmax -> top-k -> renormalise, one_hot/where/index_add_ loop
  qwen2_moe   no renormalising, shared expert gated by sigmoid(gate(x)),
              q/k/v biases
  qwen3_moe   renormalised top-k, per-head q/k RMSNorm
  deepseek_v2 softmax scores, group-limited top-k (group max), routed
              scaling, shared experts, MLA attention, first layer dense
  deepseek_v3 sigmoid scores + correction bias, group-limited top-k (top-2
              sum), renormalised, routed scaling, shared experts, MLA
  olmoe       64-expert style top-k without renormalising, q/k RMSNorm over
              the whole projection
  gpt_oss     router bias, top-k on logits then softmax, dense tiled experts
              (bmm over stacked weights) with biases and clamped SwiGLU,
              attention sinks and a sliding window on alternate layers
  phimoe      SparseMixer top-2 routing, LayerNorm, biased projections
  switch      top-1 with an expert capacity (dropped tokens pass through),
              router probability scaling
  llama4      sigmoid top-1 whose score scales the expert's *input*, dense
              experts over all tokens (bmm, gate/up halves of one weight),
              scatter_add_ into the shared expert's output; q/k L2 norm
              after RoPE, no RoPE on every second layer
  dbrx        softmax top-k divided by its p-norm (p = 1), experts as views
              of fused [E*I, H] parameters (w2 not transposed), fused Wqkv
              clamped by clip_qkv, LayerNorm without bias
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------
# Configurations: small, but with every structural feature of the family.
# ----------------------------------------------------------------------------

BASE = dict(vocab=256, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16,
            inter=96, experts=8, top_k=2, rope_theta=10000.0, eps=1e-6,
            norm="rms", qkv_bias=False, o_bias=False, lm_head_bias=False,
            qk_norm=None, attention="gqa", sinks=False, sliding_window=None,
            tie_embeddings=False)

FAMILIES = {
    "mixtral": dict(router="softmax", normalize=True, experts_form="loop"),
    "qwen2_moe": dict(router="softmax", normalize=False, experts_form="loop",
                      qkv_bias=True, shared_inter=128, shared_gate=True),
    "qwen3_moe": dict(router="softmax", normalize=True, experts_form="loop",
                      qk_norm="head"),
    "deepseek_v2": dict(router="softmax", normalize=False, experts_form="loop_tk",
                        n_group=4, topk_group=2, group_scoring="max",
                        scaling=16.0 / 10.0, shared_inter=64, first_dense=1,
                        dense_inter=160, attention="mla", experts=8, top_k=3),
    "deepseek_v3": dict(router="sigmoid", normalize=True, experts_form="loop_tk",
                        n_group=4, topk_group=2, group_scoring="top2_sum",
                        scaling=2.5, score_bias=True, shared_inter=64,
                        first_dense=1, dense_inter=160, attention="mla",
                        experts=16, top_k=4, layers=3),
    "olmoe": dict(router="softmax", normalize=False, experts_form="loop",
                  qk_norm="full", experts=16, top_k=4, inter=32, kv_heads=4),
    "gpt_oss": dict(router="topk_softmax", experts_form="dense", router_bias=True,
                    qkv_bias=True, o_bias=True, sinks=True, sliding_window=4,
                    swiglu_alpha=1.702, swiglu_limit=7.0, experts=8, top_k=2),
    "phimoe": dict(router="sparsemixer", experts_form="loop", norm="layer",
                   qkv_bias=True, o_bias=True, lm_head_bias=True, eps=1e-5,
                   jitter_eps=0.01),
    "switch": dict(router="switch", experts_form="switch", experts=4, top_k=1,
                   capacity=6, expert_act="relu", expert_bias=False),
    "llama4": dict(router="sigmoid_input", experts_form="llama4", top_k=1,
                   shared_inter=80, qk_norm="l2", nope_every=2),
    "dbrx": dict(router="pnorm", experts_form="dbrx", norm="layer_nobias",
                 fused_qkv=True, clip_qkv=4.0, experts=8, top_k=4, eps=1e-5),
}


# The sizes a command line may override (benchmarks build bigger models).
SIZE_KEYS = ("layers", "hidden", "experts", "top_k", "inter", "vocab", "heads",
             "kv_heads", "head_dim", "shared_inter")


def config(family, **overrides):
    cfg = dict(BASE)
    cfg.update(FAMILIES[family])
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    cfg["family"] = family
    return cfg


# ----------------------------------------------------------------------------
# Building blocks.
# ----------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype)


class LayerNormNoBias(nn.Module):
    """DBRX's LayerNorm: a weight and no bias."""

    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(size))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, None, self.eps)


class L2Norm(nn.Module):
    """Llama 4's q/k norm: x / rms(x) over the head, no weight."""

    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def make_norm(cfg, size):
    if cfg["norm"] == "layer_nobias":
        return LayerNormNoBias(size, cfg["eps"])
    if cfg["norm"] == "layer":
        norm = nn.LayerNorm(size, eps=cfg["eps"])
        with torch.no_grad():
            norm.weight.add_(0.1 * torch.randn(size))
            norm.bias.add_(0.1 * torch.randn(size))
        return norm
    return RMSNorm(size, cfg["eps"])


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions. `form` is how the model code computes
    the angles: `matmul` (transformers >= 4.38: inv_freq @ position_ids),
    `outer` (older code: torch.outer over a cached table, then indexed by
    position ids) or `einsum` (einsum("i,j->ij"), older still)."""

    def __init__(self, dim, theta, form):
        super().__init__()
        self.form = form
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x, position_ids, total_len):
        if self.form == "matmul":
            inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
            pos = position_ids[:, None, :].float()
            freqs = (inv @ pos).transpose(1, 2)
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        t = torch.arange(total_len, device=x.device, dtype=torch.int64).type_as(self.inv_freq)
        if self.form == "outer":
            freqs = torch.outer(t, self.inv_freq)
        else:
            freqs = torch.einsum("i,j->ij", t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        return cos[position_ids], sin[position_ids]


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q, k, cos, sin):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def apply_rotary_interleaved(q, k, cos, sin):
    """DeepSeek's RoPE: the rotary half of q/k is stored interleaved and
    de-interleaved before rotate_half."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    b, h, s, d = q.shape
    q = q.view(b, h, s, d // 2, 2).transpose(4, 3).reshape(b, h, s, d)
    b, h, s, d = k.shape
    k = k.view(b, h, s, d // 2, 2).transpose(4, 3).reshape(b, h, s, d)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(x, n_rep):
    b, kvh, s, d = x.shape
    if n_rep == 1:
        return x
    x = x[:, :, None, :, :].expand(b, kvh, n_rep, s, d)
    return x.reshape(b, kvh * n_rep, s, d)


def causal_mask(attention_mask, q_len, past_len, dtype, sliding_window=None):
    """[B, 1, q, past+q] additive mask: 0 where key j is visible from query
    i (j <= past + i, inside the window, not padding), finfo.min elsewhere
    (as transformers' _prepare_4d_causal_attention_mask)."""
    total = past_len + q_len
    min_value = torch.finfo(dtype).min
    q_pos = torch.arange(q_len, dtype=torch.int64) + past_len
    k_pos = torch.arange(total, dtype=torch.int64)
    visible = k_pos[None, :] <= q_pos[:, None]
    if sliding_window is not None:
        visible = visible & (k_pos[None, :] > q_pos[:, None] - sliding_window)
    visible = visible[None, None, :, :] & attention_mask[:, None, None, :].bool()
    zero = torch.zeros((), dtype=dtype)
    return torch.where(visible, zero, torch.tensor(min_value, dtype=dtype))


class Attention(nn.Module):
    """Grouped-query attention (Llama/Mixtral/Qwen/OLMoE/gpt-oss/Phi)."""

    def __init__(self, cfg, layer):
        super().__init__()
        h, d = cfg["hidden"], cfg["head_dim"]
        self.heads, self.kv_heads, self.head_dim = cfg["heads"], cfg["kv_heads"], d
        self.fused_qkv, self.clip_qkv = cfg.get("fused_qkv"), cfg.get("clip_qkv")
        if self.fused_qkv:
            self.Wqkv = nn.Linear(h, (self.heads + 2 * self.kv_heads) * d,
                                  bias=cfg["qkv_bias"])
        else:
            self.q_proj = nn.Linear(h, self.heads * d, bias=cfg["qkv_bias"])
            self.k_proj = nn.Linear(h, self.kv_heads * d, bias=cfg["qkv_bias"])
            self.v_proj = nn.Linear(h, self.kv_heads * d, bias=cfg["qkv_bias"])
        self.o_proj = nn.Linear(self.heads * d, h, bias=cfg["o_bias"])
        self.qk_norm = cfg["qk_norm"]
        if self.qk_norm == "head":
            self.q_norm, self.k_norm = RMSNorm(d, cfg["eps"]), RMSNorm(d, cfg["eps"])
        elif self.qk_norm == "full":
            self.q_norm = RMSNorm(self.heads * d, cfg["eps"])
            self.k_norm = RMSNorm(self.kv_heads * d, cfg["eps"])
        elif self.qk_norm == "l2":
            self.qk_l2 = L2Norm(cfg["eps"])
        nope_every = cfg.get("nope_every")
        self.use_rope = not nope_every or (layer + 1) % nope_every != 0
        self.sinks = nn.Parameter(torch.randn(self.heads)) if cfg["sinks"] else None
        self.sliding_window = cfg["sliding_window"] if layer % 2 == 0 else None
        self.scaling = d ** -0.5

    def forward(self, x, cos, sin, masks, past):
        b, s, _ = x.shape
        if self.fused_qkv:
            qkv = self.Wqkv(x)
            if self.clip_qkv is not None:
                qkv = qkv.clamp(min=-self.clip_qkv, max=self.clip_qkv)
            q, k, v = qkv.split([self.heads * self.head_dim, self.kv_heads * self.head_dim,
                                 self.kv_heads * self.head_dim], dim=2)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.qk_norm == "full":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(b, s, self.heads, self.head_dim)
        k = k.view(b, s, self.kv_heads, self.head_dim)
        if self.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.use_rope:
            q, k = apply_rotary(q, k, cos, sin)
            if self.qk_norm == "l2":
                q, k = self.qk_l2(q), self.qk_l2(k)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        rep = self.heads // self.kv_heads
        k, v = repeat_kv(k, rep), repeat_kv(v, rep)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        scores = scores + (masks[1] if self.sliding_window else masks[0])
        if self.sinks is not None:
            sinks = self.sinks.reshape(1, -1, 1, 1).expand(b, -1, s, -1)
            scores = torch.cat([scores, sinks], dim=-1)
            scores = scores - scores.max(dim=-1, keepdim=True).values
            probs = F.softmax(scores, dim=-1, dtype=torch.float32)[..., :-1]
        else:
            probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, -1)
        return self.o_proj(out), present


class MLAttention(nn.Module):
    """DeepSeek-V2/V3 multi-head latent attention (no q LoRA, as the
    V2-Lite configuration): keys and values from a compressed latent, a
    shared rotary key, interleaved RoPE."""

    def __init__(self, cfg, layer):
        super().__init__()
        h = cfg["hidden"]
        self.heads = cfg["heads"]
        self.nope, self.rope, self.v_dim, self.rank = 16, 8, 16, 32
        self.q_head = self.nope + self.rope
        self.q_proj = nn.Linear(h, self.heads * self.q_head, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(h, self.rank + self.rope, bias=False)
        self.kv_a_layernorm = RMSNorm(self.rank, cfg["eps"])
        self.kv_b_proj = nn.Linear(self.rank, self.heads * (self.nope + self.v_dim), bias=False)
        self.o_proj = nn.Linear(self.heads * self.v_dim, h, bias=False)
        self.scaling = self.q_head ** -0.5

    def forward(self, x, cos, sin, masks, past):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.heads, self.q_head).transpose(1, 2)
        q_nope, q_pe = torch.split(q, [self.nope, self.rope], dim=-1)
        compressed = self.kv_a_proj_with_mqa(x)
        compressed, k_pe = torch.split(compressed, [self.rank, self.rope], dim=-1)
        k_pe = k_pe.view(b, s, 1, self.rope).transpose(1, 2)
        kv = self.kv_b_proj(self.kv_a_layernorm(compressed))
        kv = kv.view(b, s, self.heads, self.nope + self.v_dim).transpose(1, 2)
        k_nope, v = torch.split(kv, [self.nope, self.v_dim], dim=-1)
        q_pe, k_pe = apply_rotary_interleaved(q_pe, k_pe, cos, sin)
        q = torch.cat([q_nope, q_pe], dim=-1)
        k = torch.cat([k_nope, k_pe.expand(b, self.heads, s, self.rope)], dim=-1)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling + masks[0]
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, -1)
        return self.o_proj(out), present


class GatedMLP(nn.Module):
    """down(silu(gate(x)) * up(x)): Llama/Mixtral/Qwen/DeepSeek experts."""

    def __init__(self, hidden, inter):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MixtralExpert(nn.Module):
    """Mixtral's expert names: w2(silu(w1 x) * w3 x)."""

    def __init__(self, hidden, inter):
        super().__init__()
        self.w1 = nn.Linear(hidden, inter, bias=False)
        self.w2 = nn.Linear(inter, hidden, bias=False)
        self.w3 = nn.Linear(hidden, inter, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SwitchExpert(nn.Module):
    """T5/Switch dense: wo(act(wi x))."""

    def __init__(self, hidden, inter, act, bias):
        super().__init__()
        self.wi = nn.Linear(hidden, inter, bias=bias)
        self.wo = nn.Linear(inter, hidden, bias=bias)
        self.act = {"relu": nn.ReLU(), "gelu": nn.GELU()}[act]

    def forward(self, x):
        return self.wo(self.act(self.wi(x)))


# ----------------------------------------------------------------------------
# Routers.
# ----------------------------------------------------------------------------

def route_softmax(logits, k, normalize):
    weights = F.softmax(logits, dim=1, dtype=torch.float)
    weights, selected = torch.topk(weights, k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, selected


def route_deepseek(gate, x, cfg):
    """DeepSeek-V2 (softmax, group max, no renormalising) and V3 (sigmoid,
    correction bias, group top-2 sum, renormalised) MoEGate, eval mode."""
    t = x.shape[0]
    logits = F.linear(x.float(), gate.weight.float())
    if cfg["router"] == "sigmoid":
        scores = logits.sigmoid()
    else:
        scores = logits.softmax(dim=-1, dtype=torch.float32)
    choice = scores + gate.e_score_correction_bias[None] if cfg.get("score_bias") else scores
    groups = choice.view(t, cfg["n_group"], -1)
    if cfg["group_scoring"] == "max":
        group_scores = groups.max(dim=-1).values
    else:
        group_scores = groups.topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = torch.topk(group_scores, k=cfg["topk_group"], dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores)
    group_mask.scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(
        t, cfg["n_group"], cfg["experts"] // cfg["n_group"]).reshape(t, -1)
    choice = choice.masked_fill(~score_mask.bool(), 0.0)
    _, topk_idx = torch.topk(choice, k=cfg["top_k"], dim=-1, sorted=False)
    weights = scores.gather(1, topk_idx)
    if cfg["normalize"]:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * cfg["scaling"], topk_idx


def sparsemixer(scores, jitter_eps):
    """Phi-3.5-MoE's SparseMixer top-2, eval mode."""
    with torch.no_grad():
        threshold, max_ind = scores.max(dim=-1, keepdim=True)
        factor = scores.abs().clamp(min=threshold)
        threshold = ((threshold - scores) / factor) > (2 * jitter_eps)
    gates = torch.softmax(scores.masked_fill(threshold, float("-inf")), dim=-1)
    first = gates.gather(dim=-1, index=max_ind)
    masked_scores = torch.scatter(scores, -1, max_ind, float("-inf"))
    with torch.no_grad():
        threshold, max_ind2 = masked_scores.max(dim=-1, keepdim=True)
        factor = scores.abs().clamp(min=threshold)
        threshold = ((threshold - scores) / factor) > (2 * jitter_eps)
    gates2 = torch.softmax(masked_scores.masked_fill(threshold, float("-inf")), dim=-1)
    second = gates2.gather(dim=-1, index=max_ind2)
    return torch.cat((first, second), dim=-1), torch.cat((max_ind, max_ind2), dim=-1)


# ----------------------------------------------------------------------------
# Sparse MoE blocks.
# ----------------------------------------------------------------------------

class SparseMoeBlock(nn.Module):
    """The routed experts (and shared experts) of every family but gpt-oss
    and switch, with the family's router and its expert loop:
    `loop`: one_hot(...).permute(2, 1, 0), where(mask[e]) -> (slot, token),
    index_add_ (Mixtral, Qwen, OLMoE, PhiMoE); `loop_tk`: permute(2, 0, 1),
    where -> (token, slot) (transformers' DeepSeek-V3)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h, e = cfg["hidden"], cfg["experts"]
        self.gate = nn.Linear(h, e, bias=False)
        if cfg.get("score_bias"):
            self.gate.register_buffer("e_score_correction_bias", 0.1 * torch.randn(e))
        make = MixtralExpert if cfg["family"] == "mixtral" else GatedMLP
        self.experts = nn.ModuleList(make(h, cfg["inter"]) for _ in range(e))
        self.shared_expert = GatedMLP(h, cfg["shared_inter"]) if cfg.get("shared_inter") else None
        self.shared_expert_gate = nn.Linear(h, 1, bias=False) if cfg.get("shared_gate") else None

    def forward(self, hidden_states):
        cfg = self.cfg
        b, s, h = hidden_states.shape
        x = hidden_states.view(-1, h)
        if cfg["router"] in ("softmax",) and cfg["family"] not in ("deepseek_v2",):
            weights, selected = route_softmax(self.gate(x), cfg["top_k"], cfg["normalize"])
        elif cfg["router"] == "sparsemixer":
            weights, selected = sparsemixer(self.gate(x), cfg["jitter_eps"])
        else:
            weights, selected = route_deepseek(self.gate, x, cfg)
        weights = weights.to(x.dtype)
        final = torch.zeros((b * s, h), dtype=x.dtype)
        if cfg["experts_form"] == "loop":
            mask = F.one_hot(selected, num_classes=cfg["experts"]).permute(2, 1, 0)
            for e in range(cfg["experts"]):
                idx, top_x = torch.where(mask[e])
                current = x[None, top_x].reshape(-1, h)
                out = self.experts[e](current) * weights[top_x, idx, None]
                final.index_add_(0, top_x, out.to(x.dtype))
        else:
            mask = F.one_hot(selected, num_classes=cfg["experts"]).permute(2, 0, 1)
            for e in range(cfg["experts"]):
                tokens, slots = torch.where(mask[e])
                out = self.experts[e](x[tokens]) * weights[tokens, slots].unsqueeze(-1)
                final.index_add_(0, tokens, out)
        if self.shared_expert is not None:
            shared = self.shared_expert(x)
            if self.shared_expert_gate is not None:
                shared = torch.sigmoid(self.shared_expert_gate(x)) * shared
            final = final + shared
        return final.reshape(b, s, h)


class GptOssMoeBlock(nn.Module):
    """gpt-oss: router with bias, top-k on the logits, softmax over the k,
    scattered into a dense [T, E] matrix; experts run densely over stacked
    weights (transformers' GptOssExperts inference path) with interleaved
    gate/up, clamping, alpha and (up + 1)."""

    def __init__(self, cfg):
        super().__init__()
        h, i, e = cfg["hidden"], cfg["inter"], cfg["experts"]
        self.top_k, self.experts_n, self.hidden = cfg["top_k"], e, h
        self.router = nn.Linear(h, e, bias=True)
        self.gate_up_proj = nn.Parameter(torch.randn(e, h, 2 * i) / h ** 0.5)
        self.gate_up_proj_bias = nn.Parameter(0.1 * torch.randn(e, 2 * i))
        self.down_proj = nn.Parameter(torch.randn(e, i, h) / i ** 0.5)
        self.down_proj_bias = nn.Parameter(0.1 * torch.randn(e, h))
        self.alpha, self.limit = cfg["swiglu_alpha"], cfg["swiglu_limit"]

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        x = hidden_states.reshape(-1, h)
        logits = self.router(x)
        top_value, top_index = torch.topk(logits, self.top_k, dim=-1)
        top_value = F.softmax(top_value, dim=1, dtype=top_value.dtype)
        scores = torch.zeros_like(logits).scatter_(1, top_index, top_value)
        t = x.shape[0]
        xs = x.repeat(self.experts_n, 1).view(self.experts_n, -1, h)
        gate_up = torch.bmm(xs, self.gate_up_proj) + self.gate_up_proj_bias[..., None, :]
        gate, up = gate_up[..., ::2], gate_up[..., 1::2]
        gate = gate.clamp(min=None, max=self.limit)
        up = up.clamp(min=-self.limit, max=self.limit)
        glu = gate * torch.sigmoid(gate * self.alpha)
        out = torch.bmm((up + 1) * glu, self.down_proj) + self.down_proj_bias[..., None, :]
        out = out.view(self.experts_n, t, h)
        out = out * scores.transpose(0, 1).view(self.experts_n, t)[..., None]
        return out.sum(dim=0).reshape(b, s, h)


class SwitchMoeBlock(nn.Module):
    """Switch Transformers' SparseMLP: top-1 router with an expert capacity
    per sequence (tokens beyond an expert's capacity are not processed and
    keep their hidden state), output scaled by the router probability."""

    def __init__(self, cfg):
        super().__init__()
        h, e = cfg["hidden"], cfg["experts"]
        self.classifier = nn.Linear(h, e, bias=cfg.get("expert_bias", False))
        self.experts_n, self.capacity = e, cfg["capacity"]
        self.experts = nn.ModuleDict({
            f"expert_{i}": SwitchExpert(h, cfg["inter"], cfg["expert_act"], cfg["expert_bias"])
            for i in range(e)})

    def forward(self, hidden_states):
        logits = self.classifier(hidden_states)
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)
        expert_index = torch.argmax(probs, dim=-1)
        mask = F.one_hot(expert_index, num_classes=self.experts_n)
        priority = torch.cumsum(mask, dim=-2)
        mask = mask * (priority <= self.capacity)
        router_probs = torch.max(probs, dim=-1).values.unsqueeze(-1)
        # transformers writes `next_states[mask[:, :, idx].bool()] =
        # expert(hidden_states[...])`; torch 1.13 exports that boolean
        # assignment with an Expand of the [B, S] mask to [B, S, H] that
        # ONNX Runtime rejects at run time ("invalid expand shape"), so the
        # same assignment is written with the selected rows' indices, as
        # index_put_: `next_states[rows] = value` views the value without
        # its leading size-1 dimensions first, which the trace records as a
        # Reshape to the traced shape ([H] when an expert had one row), so
        # the export would only run where that expert has one row again.
        b, s, h = hidden_states.shape
        x = hidden_states.reshape(-1, h)
        next_states = x.clone()
        for idx, expert in enumerate(self.experts.values()):
            rows = torch.nonzero(mask[:, :, idx].reshape(-1)).squeeze(-1)
            next_states.index_put_((rows,), expert(x[rows]).to(next_states.dtype))
        return router_probs * next_states.reshape(b, s, h)


class Llama4MoeBlock(nn.Module):
    """Llama 4's Llama4TextMoe: top-k of the logits scattered into a [E, T]
    matrix of -inf, sigmoid (0 for the experts not chosen); every token's
    row, scaled by its score, goes through every expert (bmm over stacked
    gate_up_proj [E, H, 2I], gate and up its two halves); the experts'
    outputs are scatter-added into the shared expert's output."""

    def __init__(self, cfg):
        super().__init__()
        h, i, e = cfg["hidden"], cfg["inter"], cfg["experts"]
        self.top_k, self.experts_n, self.hidden, self.inter = cfg["top_k"], e, h, i
        self.router = nn.Linear(h, e, bias=False)
        self.gate_up_proj = nn.Parameter(torch.randn(e, h, 2 * i) / h ** 0.5)
        self.down_proj = nn.Parameter(torch.randn(e, i, h) / i ** 0.5)
        self.shared_expert = GatedMLP(h, cfg["shared_inter"])

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        x = hidden_states.view(-1, h)
        router_logits = self.router(x).transpose(0, 1)
        tokens = b * s
        top_value, top_index = torch.topk(router_logits.transpose(0, 1), self.top_k, dim=1)
        scores = (torch.full_like(router_logits.transpose(0, 1), float("-inf"))
                  .scatter_(1, top_index, top_value).transpose(0, 1))
        indices = torch.arange(tokens).view(1, -1).expand(scores.size(0), -1)
        scores = torch.sigmoid(scores.float()).to(x.dtype)
        indices = indices.reshape(-1, 1).expand(-1, h)
        routed_in = torch.gather(input=x, dim=0, index=indices)
        routed_in = routed_in * scores.reshape(-1, 1)
        xs = routed_in.view(self.experts_n, -1, h)
        gate_up = torch.bmm(xs, self.gate_up_proj)
        gate, up = gate_up.chunk(2, dim=-1)
        routed_out = torch.bmm(up * F.silu(gate), self.down_proj).view(-1, h)
        out = self.shared_expert(x)
        out.scatter_add_(dim=0, index=indices, src=routed_out.view(-1, h))
        return out.reshape(b, s, h)


class DbrxMoeBlock(nn.Module):
    """DBRX's DbrxFFN: softmax, top-k, divided by the top weights' p-norm
    (moe_normalize_expert_weights = 1); the experts' weights are slices of
    fused [E*I, H] parameters (w1, v1, w2), w2 used untransposed."""

    def __init__(self, cfg):
        super().__init__()
        h, i, e = cfg["hidden"], cfg["inter"], cfg["experts"]
        self.top_k, self.experts_n, self.hidden, self.inter = cfg["top_k"], e, h, i
        self.layer = nn.Linear(h, e, bias=False)
        self.w1 = nn.Parameter(torch.randn(e * i, h) / h ** 0.5)
        self.v1 = nn.Parameter(torch.randn(e * i, h) / h ** 0.5)
        self.w2 = nn.Parameter(torch.randn(e * i, h) / i ** 0.5)

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        x = hidden_states.view(-1, h)
        weights = self.layer(x).softmax(dim=-1, dtype=torch.float32)
        top_weights, top_experts = torch.topk(weights, self.top_k, dim=-1)
        top_weights = top_weights / torch.norm(top_weights, p=1, dim=-1, keepdim=True)
        top_weights = top_weights.to(x.dtype)
        out = torch.zeros_like(x)
        mask = F.one_hot(top_experts, num_classes=self.experts_n).permute(2, 1, 0)
        w1 = [w.squeeze(0) for w in self.w1.view(self.experts_n, self.inter, h).chunk(self.experts_n, 0)]
        v1 = [w.squeeze(0) for w in self.v1.view(self.experts_n, self.inter, h).chunk(self.experts_n, 0)]
        w2 = [w.squeeze(0) for w in self.w2.view(self.experts_n, self.inter, h).chunk(self.experts_n, 0)]
        for e in range(self.experts_n):
            topk_idx, token_idx = torch.where(mask[e])
            tokens = x[None, token_idx].reshape(-1, h)
            inter = F.silu(tokens.matmul(w1[e].t())) * tokens.matmul(v1[e].t())
            expert_out = inter.matmul(w2[e]) * top_weights[token_idx, topk_idx, None]
            out.index_add_(0, token_idx, expert_out)
        return out.reshape(b, s, h)


class DenseMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.mlp = GatedMLP(cfg["hidden"], cfg["dense_inter"])

    def forward(self, x):
        return self.mlp(x)


def make_moe(cfg, layer):
    if layer < cfg.get("first_dense", 0):
        return DenseMLP(cfg)
    if cfg["experts_form"] == "dense":
        return GptOssMoeBlock(cfg)
    if cfg["experts_form"] == "switch":
        return SwitchMoeBlock(cfg)
    if cfg["experts_form"] == "llama4":
        return Llama4MoeBlock(cfg)
    if cfg["experts_form"] == "dbrx":
        return DbrxMoeBlock(cfg)
    return SparseMoeBlock(cfg)


# ----------------------------------------------------------------------------
# The decoder.
# ----------------------------------------------------------------------------

class DecoderLayer(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.self_attn = (MLAttention if cfg["attention"] == "mla" else Attention)(cfg, layer)
        self.input_layernorm = make_norm(cfg, cfg["hidden"])
        self.post_attention_layernorm = make_norm(cfg, cfg["hidden"])
        self.mlp = make_moe(cfg, layer)

    def forward(self, x, cos, sin, masks, past):
        residual = x
        x, present = self.self_attn(self.input_layernorm(x), cos, sin, masks, past)
        x = residual + x
        residual = x
        x = residual + self.mlp(self.post_attention_layernorm(x))
        return x, present


class CausalLM(nn.Module):
    """input_ids [B, S], attention_mask [B, past + S] (and with a KV cache
    past_key_values as 2 * layers tensors [B, kv_heads, past, d]) ->
    logits [B, S, vocab] (and the present keys and values)."""

    def __init__(self, cfg, rope_form="matmul", kv_cache=False):
        super().__init__()
        self.cfg, self.kv_cache = cfg, kv_cache
        self.embed_tokens = nn.Embedding(cfg["vocab"], cfg["hidden"])
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg["layers"]))
        self.norm = make_norm(cfg, cfg["hidden"])
        self.lm_head = nn.Linear(cfg["hidden"], cfg["vocab"], bias=cfg["lm_head_bias"])
        rope_dim = 8 if cfg["attention"] == "mla" else cfg["head_dim"]
        self.rotary_emb = RotaryEmbedding(rope_dim, cfg["rope_theta"], rope_form)

    def forward(self, input_ids, attention_mask, *past_key_values):
        b, s = input_ids.shape
        past_len = past_key_values[0].shape[2] if past_key_values else 0
        x = self.embed_tokens(input_ids)
        position_ids = torch.arange(past_len, past_len + s, dtype=torch.int64).unsqueeze(0)
        cos, sin = self.rotary_emb(x, position_ids, past_len + s)
        masks = (causal_mask(attention_mask, s, past_len, x.dtype),
                 causal_mask(attention_mask, s, past_len, x.dtype, self.cfg["sliding_window"])
                 if self.cfg["sliding_window"] else None)
        presents = []
        for i, layer in enumerate(self.layers):
            past = past_key_values[2 * i: 2 * i + 2] if past_key_values else None
            x, present = layer(x, cos, sin, masks, past)
            presents.extend(present)
        logits = self.lm_head(self.norm(x))
        if self.kv_cache:
            return (logits, *presents)
        return logits


def kv_shape(cfg):
    """[kv_heads, key_dim], [kv_heads, value_dim] of one layer's cache."""
    if cfg["attention"] == "mla":
        return (cfg["heads"], 24), (cfg["heads"], 16)
    return (cfg["kv_heads"], cfg["head_dim"]), (cfg["kv_heads"], cfg["head_dim"])


def moe_layers(cfg):
    """Indices of the layers whose MLP is a sparse MoE block (DeepSeek's
    first `first_dense` layers are dense)."""
    return [i for i in range(cfg["layers"]) if i >= cfg.get("first_dense", 0)]


def input_names(cfg, kv_cache):
    names = ["input_ids", "attention_mask"]
    if kv_cache:
        for i in range(cfg["layers"]):
            names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
    return names


def output_names(cfg, kv_cache):
    names = ["logits"]
    if kv_cache:
        for i in range(cfg["layers"]):
            names += [f"present.{i}.key", f"present.{i}.value"]
    return names


def make_inputs(cfg, batch, seq, past, kv_cache, generator, pad=0):
    """Random tokens and an attention mask of ones, but for the first `pad`
    positions of the first sequence (left padding: their queries see no
    key, the other queries not them)."""
    ids = torch.randint(0, cfg["vocab"], (batch, seq), generator=generator)
    mask = torch.ones((batch, past + seq), dtype=torch.int64)
    mask[0, :pad] = 0
    inputs = [ids, mask]
    if kv_cache:
        (kh, kd), (vh, vd) = kv_shape(cfg)
        for _ in range(cfg["layers"]):
            inputs.append(torch.randn((batch, kh, past, kd), generator=generator))
            inputs.append(torch.randn((batch, vh, past, vd), generator=generator))
    return inputs


def build(family, seed=0, rope_form="matmul", kv_cache=False, **overrides):
    torch.manual_seed(seed)
    cfg = config(family, **overrides)
    model = CausalLM(cfg, rope_form, kv_cache).eval()
    return cfg, model


def export(model, cfg, inputs, path, dynamic, kv_cache):
    names, outs = input_names(cfg, kv_cache), output_names(cfg, kv_cache)
    axes = None
    if dynamic:
        axes = {"input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "total_sequence"},
                "logits": {0: "batch", 1: "sequence"}}
        for n in names[2:]:
            axes[n] = {0: "batch", 2: "past_sequence"}
        for n in outs[1:]:
            axes[n] = {0: "batch", 2: "total_sequence"}
    with torch.no_grad():
        torch.onnx.export(model, tuple(inputs), path, input_names=names,
                          output_names=outs, opset_version=17, dynamic_axes=axes)


def save_case(outdir, cfg, model, inputs, kv_cache):
    os.makedirs(outdir, exist_ok=True)
    names = input_names(cfg, kv_cache)
    paths = []
    for name, value in zip(names, inputs):
        path = os.path.join(outdir, f"in_{name}.npy")
        np.save(path, value.numpy())
        paths.append(path)
    with open(os.path.join(outdir, "inputs.txt"), "w") as f:
        f.write("\n".join(paths) + "\n")
    with torch.no_grad():
        outs = model(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    for i, o in enumerate(outs):
        np.save(os.path.join(outdir, f"torch_{i}.npy"), o.numpy())
    return outs


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("outdir")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--static", dest="dynamic", action="store_false")
    mode.add_argument("--dynamic", dest="dynamic", action="store_true")
    parser.add_argument("--kv-cache", action="store_true")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=8)
    parser.add_argument("--past", type=int, default=0,
                        help="past length of the exported case (with --kv-cache)")
    parser.add_argument("--decode-steps", type=int, default=0,
                        help="also write a prefill and N decode steps (--kv-cache)")
    parser.add_argument("--rope", choices=["matmul", "outer", "einsum"], default="matmul")
    parser.add_argument("--no-export", action="store_true",
                        help="write the inputs and torch eager's outputs only (another "
                             "shape for a model exported before with the same flags)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pad", type=int, default=0,
                        help="left-pad the first sequence: its first N positions "
                             "masked out by the attention mask")
    for key in SIZE_KEYS:
        parser.add_argument("--" + key.replace("_", "-"), type=int)
    args = parser.parse_args()

    overrides = {k: getattr(args, k) for k in SIZE_KEYS}
    cfg, model = build(args.family, args.seed, args.rope, args.kv_cache, **overrides)
    gen = torch.Generator().manual_seed(args.seed + 1)
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "config.json"), "w") as f:
        json.dump(dict(cfg, moe_layers=moe_layers(cfg)), f, indent=1)
    # An empty past cannot be traced (zero-sized dims become constants):
    # export with one past position, then run with any past length.
    export_past = max(args.past, 1) if args.kv_cache else 0
    trace_inputs = make_inputs(cfg, args.batch, args.seq, export_past, args.kv_cache, gen,
                               args.pad)
    path = os.path.join(args.outdir, "model.onnx")
    if not args.no_export:
        export(model, cfg, trace_inputs, path, args.dynamic, args.kv_cache)
    if not args.kv_cache or args.past == export_past:
        save_case(args.outdir, cfg, model, trace_inputs, args.kv_cache)
    else:
        save_case(args.outdir, cfg, model,
                  make_inputs(cfg, args.batch, args.seq, args.past, True, gen, args.pad),
                  True)

    if args.decode_steps:
        # Prefill with an empty past, then N decode steps of one token, each
        # fed the previous step's present (torch's own) and the argmax token.
        inputs = make_inputs(cfg, args.batch, args.seq, 0, True, gen)
        for step in range(args.decode_steps + 1):
            outs = save_case(os.path.join(args.outdir, "steps", str(step)), cfg, model,
                             inputs, True)
            next_ids = outs[0][:, -1:, :].argmax(dim=-1)
            total = outs[1].shape[2]
            inputs = [next_ids, torch.ones((args.batch, total + 1), dtype=torch.int64),
                      *outs[1:]]


if __name__ == "__main__":
    main()
