#!/usr/bin/env python3
"""Compiles a Hugging Face-style (Mixtral) sparse MoE block from torch and
compares it with torch eager.

  PYTHONPATH=build/python /usr/bin/python3 python/examples/torch_moe_block.py

The block is written the way transformers' modelling files write it: a
router, softmax, top-k with renormalised weights, and a loop over the
experts that gathers each expert's tokens with one_hot / where and adds its
output back with index_add_. torch.onnx exports that loop op by op;
moe-compile's importer raises it back to one moe.layer, which the compiler
lowers to routed expert GEMMs.
"""

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import moe_mlir
import moe_mlir.torch


class Expert(nn.Module):
    def __init__(self, hidden, inter):
        super().__init__()
        self.w1 = nn.Linear(hidden, inter, bias=False)
        self.w2 = nn.Linear(inter, hidden, bias=False)
        self.w3 = nn.Linear(hidden, inter, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoeBlock(nn.Module):
    def __init__(self, hidden=256, inter=512, experts=8, top_k=2):
        super().__init__()
        self.top_k, self.num_experts = top_k, experts
        self.gate = nn.Linear(hidden, experts, bias=False)
        self.experts = nn.ModuleList(Expert(hidden, inter) for _ in range(experts))

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        x = hidden_states.view(-1, h)
        probs = F.softmax(self.gate(x), dim=1, dtype=torch.float)
        weights, selected = torch.topk(probs, self.top_k, dim=-1)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        out = torch.zeros((b * s, h), dtype=x.dtype)
        mask = F.one_hot(selected, num_classes=self.num_experts).permute(2, 1, 0)
        for e in range(self.num_experts):
            slot, token = torch.where(mask[e])
            y = self.experts[e](x[None, token].reshape(-1, h)) * weights[token, slot, None]
            out.index_add_(0, token, y.to(x.dtype))
        return out.reshape(b, s, h)


def main():
    torch.manual_seed(0)
    block = SparseMoeBlock().eval()
    start = time.perf_counter()
    compiled = moe_mlir.torch.compile(block, (torch.randn(1, 8, 256),))
    print(f"compiled in {time.perf_counter() - start:.1f} s: {compiled.signature}")

    for batch, seq in [(1, 1), (1, 16), (4, 64)]:
        x = torch.randn(batch, seq, 256)
        with torch.no_grad():
            expected = block(x)
            eager = min(_time(lambda: block(x)) for _ in range(3))
        y = compiled(x)
        err = ((y - expected).abs().max() / expected.abs().max()).item()
        ours = min(_time(lambda: compiled(x)) for _ in range(3))
        print(f"[{batch}, {seq}, 256]: max|diff|/max|eager| = {err:.2e}, "
              f"eager {eager * 1e3:.3f} ms, moe-mlir {ours * 1e3:.3f} ms")
        assert err < 1e-5


def _time(fn, runs=20):
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs


if __name__ == "__main__":
    main()
