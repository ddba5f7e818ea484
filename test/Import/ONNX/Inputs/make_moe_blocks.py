#!/usr/bin/env python3
"""Exports MoE blocks written the way model code writes them, with
torch.onnx.export (TorchScript, torch 1.13), for the raising tests.

  make_moe_blocks.py FORM OUTDIR [--tokens T] [--hidden H] [--inter I]
                     [--experts E] [--top-k K] [--seed S]

Writes OUTDIR/model.onnx (batch and sequence dims symbolic), OUTDIR/x.npy
([batch, T/batch, H] float32, fixed seed) and OUTDIR/torch_y.npy (the
module's own output); for `mixtral` also OUTDIR/fused.onnx, the
same layer (same weights) as the router MatMul + com.microsoft.MoE that
ONNX Runtime's model builders emit.

Forms:
  mixtral       Hugging Face MixtralSparseMoeBlock: softmax -> top-k ->
                renormalise -> one_hot -> per-expert where/index_add_,
                SiLU-gated experts (w2(silu(w1 x) * w3 x)).
  mixtral-skip  the same with `if top_x.shape[0] == 0: continue`, traced on
                one token: the export holds only the k experts it reached.
  qwen2         Hugging Face Qwen2MoeSparseMoeBlock: no renormalising, plus
                a shared expert scaled by sigmoid(shared_expert_gate(x)).
  shared        the same with an ungated shared expert (DeepSeekMoE style).
  switch        per-expert branches with top-2 routing, no renormalisation,
                biased ReLU experts (nn.Linear with bias: Gemm); switch-gelu,
                switch-gelu-tanh with GELU (erf, tanh); switch-not-gelu with
                x * erf(x / sqrt 2), a look-alike that must not be raised.
  gathered      TopK on the logits -> Gather(stacked weights) -> per-token
                MatMul -> Softmax over the k -> weighted ReduceSum
                (onnxruntime-genai style decomposition).
  tiled         the dense form (Hugging Face gpt-oss style): Tile tokens to
                every expert, batched MatMul over stacked weights, combine
                with a dense [T, E] routing matrix built by TopK -> Softmax
                -> ScatterElements, ReduceSum over experts.
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
import torch
import torch.nn as nn
import torch.nn.functional as F


class GatedExpert(nn.Module):
    def __init__(self, hidden, inter):
        super().__init__()
        self.w1 = nn.Linear(hidden, inter, bias=False)
        self.w2 = nn.Linear(inter, hidden, bias=False)
        self.w3 = nn.Linear(hidden, inter, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MixtralBlock(nn.Module):
    def __init__(self, hidden, inter, experts, top_k, skip_empty=False):
        super().__init__()
        self.top_k, self.num_experts, self.skip_empty = top_k, experts, skip_empty
        self.gate = nn.Linear(hidden, experts, bias=False)
        self.experts = nn.ModuleList(GatedExpert(hidden, inter) for _ in range(experts))

    def forward(self, hidden_states):
        batch, seq, hidden = hidden_states.shape
        hidden_states = hidden_states.view(-1, hidden)
        router_logits = self.gate(hidden_states)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected = torch.topk(routing_weights, self.top_k, dim=-1)
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
        routing_weights = routing_weights.to(hidden_states.dtype)
        final = torch.zeros((batch * seq, hidden), dtype=hidden_states.dtype)
        mask = F.one_hot(selected, num_classes=self.num_experts).permute(2, 1, 0)
        for e in range(self.num_experts):
            idx, top_x = torch.where(mask[e])
            if self.skip_empty and top_x.shape[0] == 0:
                continue
            current = hidden_states[None, top_x].reshape(-1, hidden)
            out = self.experts[e](current) * routing_weights[top_x, idx, None]
            final.index_add_(0, top_x, out.to(hidden_states.dtype))
        return final.reshape(batch, seq, hidden)


class Qwen2MoeBlock(MixtralBlock):
    """Hugging Face Qwen2MoeSparseMoeBlock: Mixtral's routed experts without
    renormalising (norm_topk_prob=False), plus a shared expert every token
    visits, scaled by sigmoid(shared_expert_gate(x)) (or not, `gated`)."""

    def __init__(self, hidden, inter, experts, top_k, shared_inter, gated=True):
        super().__init__(hidden, inter, experts, top_k)
        self.shared_expert = GatedExpert(hidden, shared_inter)
        self.shared_expert_gate = nn.Linear(hidden, 1, bias=False) if gated else None

    def forward(self, hidden_states):
        batch, seq, hidden = hidden_states.shape
        hidden_states = hidden_states.view(-1, hidden)
        router_logits = self.gate(hidden_states)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected = torch.topk(routing_weights, self.top_k, dim=-1)
        routing_weights = routing_weights.to(hidden_states.dtype)
        final = torch.zeros((batch * seq, hidden), dtype=hidden_states.dtype)
        mask = F.one_hot(selected, num_classes=self.num_experts).permute(2, 1, 0)
        for e in range(self.num_experts):
            idx, top_x = torch.where(mask[e])
            current = hidden_states[None, top_x].reshape(-1, hidden)
            out = self.experts[e](current) * routing_weights[top_x, idx, None]
            final.index_add_(0, top_x, out.to(hidden_states.dtype))
        shared = self.shared_expert(hidden_states)
        if self.shared_expert_gate is not None:
            shared = torch.sigmoid(self.shared_expert_gate(hidden_states)) * shared
        final = final + shared
        return final.reshape(batch, seq, hidden)


class NotGelu(nn.Module):
    def forward(self, x):
        return x * torch.erf(x / 2 ** 0.5)


class SwitchExpert(nn.Module):
    def __init__(self, hidden, inter, act):
        super().__init__()
        self.fc1 = nn.Linear(hidden, inter)
        self.fc2 = nn.Linear(inter, hidden)
        self.act = act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwitchBlock(nn.Module):
    """Top-1 (or top-k without renormalising) with biased experts; half the
    experts are written with ReLU, half with GELU is not allowed (one MLP
    kind per block), so `act` picks one."""

    def __init__(self, hidden, inter, experts, top_k, act):
        super().__init__()
        self.top_k, self.num_experts = top_k, experts
        self.router = nn.Linear(hidden, experts, bias=False)
        self.experts = nn.ModuleList(SwitchExpert(hidden, inter, act) for _ in range(experts))

    def forward(self, x):
        batch, seq, hidden = x.shape
        x = x.reshape(-1, hidden)
        probs = torch.softmax(self.router(x), dim=-1)
        weights, selected = torch.topk(probs, self.top_k, dim=-1)
        out = torch.zeros_like(x)
        mask = F.one_hot(selected, num_classes=self.num_experts).permute(2, 1, 0)
        for e in range(self.num_experts):
            slot, rows = torch.where(mask[e])
            y = self.experts[e](x[rows]) * weights[rows, slot, None]
            out.index_add_(0, rows, y)
        return out.reshape(batch, seq, hidden)


class SwitchCapacityBlock(nn.Module):
    """Switch Transformers' sparse MLP: top-1 by argmax, at most `capacity`
    tokens per expert, counted per sequence (`scope="sequence"`, as
    transformers does) or over the whole batch ("batch"). Tokens over the
    capacity keep their hidden state and the output is scaled by the router
    probability (`dropped="keep"`), or get zeros and no scale ("zero")."""

    def __init__(self, hidden, inter, experts, capacity, scope, dropped):
        super().__init__()
        self.num_experts, self.capacity = experts, capacity
        self.scope, self.dropped = scope, dropped
        self.router = nn.Linear(hidden, experts, bias=False)
        self.experts = nn.ModuleList(SwitchExpert(hidden, inter, nn.ReLU())
                                     for _ in range(experts))

    def forward(self, x):
        batch, seq, hidden = x.shape
        probs = torch.softmax(self.router(x), dim=-1)
        mask = F.one_hot(torch.argmax(probs, dim=-1), num_classes=self.num_experts)
        if self.scope == "sequence":
            priority = torch.cumsum(mask, dim=-2)
        else:
            priority = torch.cumsum(mask.reshape(-1, self.num_experts), dim=0).reshape(mask.shape)
        mask = mask * (priority <= self.capacity)
        flat = x.reshape(-1, hidden)
        out = flat.clone() if self.dropped == "keep" else torch.zeros_like(flat)
        for e in range(self.num_experts):
            rows = torch.nonzero(mask[:, :, e].reshape(-1)).squeeze(-1)
            out.index_put_((rows,), self.experts[e](flat[rows]))
        out = out.reshape(batch, seq, hidden)
        if self.dropped == "keep":
            out = torch.max(probs, dim=-1).values.unsqueeze(-1) * out
        return out


class GatheredBlock(nn.Module):
    """TopK -> gather each token's expert weights -> per-token matmuls."""

    def __init__(self, hidden, inter, experts, top_k):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Parameter(torch.randn(hidden, experts) / hidden ** 0.5)
        self.w1 = nn.Parameter(torch.randn(experts, 2 * inter, hidden) / hidden ** 0.5)
        self.w2 = nn.Parameter(torch.randn(experts, hidden, inter) / inter ** 0.5)
        self.inter = inter

    def forward(self, x):
        batch, seq, hidden = x.shape
        x = x.reshape(-1, hidden)
        logits = x @ self.router
        values, selected = torch.topk(logits, self.top_k, dim=-1)
        weights = torch.softmax(values, dim=-1)                      # [T, k]
        w1 = self.w1[selected]                                       # [T, k, 2I, H]
        a = torch.matmul(w1, x[:, None, :, None]).squeeze(-1)        # [T, k, 2I]
        gate, up = a[..., :self.inter], a[..., self.inter:]
        h = F.silu(gate) * up                                        # [T, k, I]
        w2 = self.w2[selected]                                       # [T, k, H, I]
        y = torch.matmul(w2, h[..., None]).squeeze(-1)               # [T, k, H]
        out = (y * weights[..., None]).sum(dim=1)
        return out.reshape(batch, seq, hidden)


class TiledBlock(nn.Module):
    """Every token through every expert, combined by a dense routing matrix
    (gpt-oss's reference implementation; interleaved gate/up, clamped)."""

    def __init__(self, hidden, inter, experts, top_k):
        super().__init__()
        self.top_k, self.num_experts = top_k, experts
        self.router = nn.Linear(hidden, experts)
        self.gate_up = nn.Parameter(torch.randn(experts, hidden, 2 * inter) / hidden ** 0.5)
        self.gate_up_bias = nn.Parameter(torch.randn(experts, 2 * inter) * 0.1)
        self.down = nn.Parameter(torch.randn(experts, inter, hidden) / inter ** 0.5)
        self.down_bias = nn.Parameter(torch.randn(experts, hidden) * 0.1)
        self.alpha, self.limit = 1.702, 7.0

    def forward(self, x):
        batch, seq, hidden = x.shape
        x = x.reshape(-1, hidden)
        logits = self.router(x)
        values, selected = torch.topk(logits, self.top_k, dim=-1)
        routing = torch.zeros_like(logits).scatter_(1, selected, torch.softmax(values, dim=1))
        tokens = x.shape[0]
        xs = x.repeat(self.num_experts, 1).view(self.num_experts, tokens, hidden)
        gate_up = torch.bmm(xs, self.gate_up) + self.gate_up_bias[:, None, :]
        gate, up = gate_up[..., ::2], gate_up[..., 1::2]
        gate = gate.clamp(max=self.limit)
        up = up.clamp(min=-self.limit, max=self.limit)
        glu = gate * torch.sigmoid(gate * self.alpha)
        y = torch.bmm((up + 1) * glu, self.down) + self.down_bias[:, None, :]
        y = y * routing.transpose(0, 1)[..., None]
        return y.sum(dim=0).reshape(batch, seq, hidden)


def export(module, x, path):
    with torch.no_grad():
        torch.onnx.export(module, (x,), path, input_names=["x"], output_names=["y"],
                          opset_version=17,
                          dynamic_axes={"x": {0: "batch", 1: "seq"},
                                        "y": {0: "batch", 1: "seq"}})


def fused_model(block, hidden, inter, experts, top_k, path):
    """The same Mixtral layer as ORT's fused com.microsoft.MoE (SwiGLU,
    interleaved gate/up)."""
    gate = block.gate.weight.detach().numpy().T.copy()                  # [H, E]
    # Interleaved gate/up rows (swiglu_fusion=1): the layout ONNX Runtime's
    # CPU MoE kernel requires.
    fc1 = np.stack([np.stack([e.w1.weight.detach().numpy(),
                              e.w3.weight.detach().numpy()], axis=1).reshape(2 * inter, hidden)
                    for e in block.experts])
    fc2 = np.stack([e.w2.weight.detach().numpy() for e in block.experts])
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Reshape", ["x", "flat_shape"], ["x2d"]),
        helper.make_node("MatMul", ["x2d", "gate"], ["logits"]),
        helper.make_node("MoE", ["x2d", "logits", "fc1", "", "fc2"], ["y2d"],
                         domain="com.microsoft", k=top_k, activation_type="swiglu",
                         swiglu_fusion=1, normalize_routing_weights=1),
        helper.make_node("Reshape", ["y2d", "shape"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1, hidden], np.int64), "flat_shape"),
             numpy_helper.from_array(gate.astype(np.float32), "gate"),
             numpy_helper.from_array(fc1.astype(np.float32), "fc1"),
             numpy_helper.from_array(fc2.astype(np.float32), "fc2")]
    graph = helper.make_graph(
        nodes, "fused_moe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", hidden])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("form", choices=["mixtral", "mixtral-skip", "qwen2", "shared", "switch",
                                         "switch-gelu", "switch-gelu-tanh", "switch-not-gelu",
                                         "switch-capacity", "switch-capacity-batch",
                                         "switch-capacity-zero", "gathered", "tiled"])
    parser.add_argument("outdir")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--inter", type=int, default=48)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2,
                        help="x is [batch, tokens / batch, H]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    os.makedirs(args.outdir, exist_ok=True)
    H, I, E, K = args.hidden, args.inter, args.experts, args.top_k
    x = torch.randn(args.batch, max(args.tokens // args.batch, 1), H)

    if args.form in ("mixtral", "mixtral-skip"):
        block = MixtralBlock(H, I, E, K, skip_empty=args.form == "mixtral-skip").eval()
        # Tracing sees one token: with skip_empty only its k experts stay.
        trace_x = x[:1, :1] if args.form == "mixtral-skip" else x
        export(block, trace_x, os.path.join(args.outdir, "model.onnx"))
        if args.form == "mixtral":
            fused_model(block, H, I, E, K, os.path.join(args.outdir, "fused.onnx"))
    elif args.form in ("qwen2", "shared"):
        block = Qwen2MoeBlock(H, I, E, K, shared_inter=2 * I, gated=args.form == "qwen2").eval()
        export(block, x, os.path.join(args.outdir, "model.onnx"))
    elif args.form.startswith("switch-capacity"):
        # 4 experts, 3 tokens each per sequence (or batch) of 8: the
        # capacity binds.
        block = SwitchCapacityBlock(
            H, I, 4, 3, "batch" if args.form.endswith("batch") else "sequence",
            "zero" if args.form.endswith("zero") else "keep").eval()
        export(block, x, os.path.join(args.outdir, "model.onnx"))
    elif args.form.startswith("switch"):
        act = {"switch": nn.ReLU(), "switch-gelu": nn.GELU(),
               "switch-gelu-tanh": nn.GELU(approximate="tanh"),
               # Looks like GELU's erf form but is not: no raising.
               "switch-not-gelu": NotGelu()}[args.form]
        block = SwitchBlock(H, I, E, K, act).eval()
        export(block, x, os.path.join(args.outdir, "model.onnx"))
    elif args.form == "gathered":
        block = GatheredBlock(H, I, E, K).eval()
        export(block, x, os.path.join(args.outdir, "model.onnx"))
    else:
        block = TiledBlock(H, I, E, K).eval()
        export(block, x, os.path.join(args.outdir, "model.onnx"))
    np.save(os.path.join(args.outdir, "x.npy"), x.numpy().astype(np.float32))
    with torch.no_grad():
        np.save(os.path.join(args.outdir, "torch_y.npy"), block(x).numpy())


if __name__ == "__main__":
    main()
