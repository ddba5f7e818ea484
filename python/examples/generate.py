#!/usr/bin/env python3
"""Runs a small Mixtral-style decoder with a KV cache through moe-mlir and
generates text tokens with moe_mlir.generate(), greedy and sampled.

  PYTHONPATH=build/python /usr/bin/python3 python/examples/generate.py

The decoder (random weights, no hub access) is test/lib/hf_moe.py's,
written like transformers' modelling files and exported with
past_key_values inputs and present outputs. The greedy tokens are checked
against the same decoding in torch eager.
"""

import os
import pathlib
import sys
import tempfile
import time

import torch

import moe_mlir

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "test" / "lib"))
import hf_moe  # noqa: E402


def eager_greedy(cfg, model, prompt, steps):
    (kh, kd), (vh, vd) = hf_moe.kv_shape(cfg)
    b = prompt.shape[0]
    past = [t for _ in range(cfg["layers"])
            for t in (torch.zeros(b, kh, 0, kd), torch.zeros(b, vh, 0, vd))]
    seq = ids = prompt
    with torch.no_grad():
        for _ in range(steps):
            out = model(ids, torch.ones(seq.shape, dtype=torch.int64), *past)
            ids = out[0][:, -1].argmax(-1, keepdim=True)
            seq, past = torch.cat([seq, ids], dim=1), list(out[1:])
    return seq


def main():
    cfg, model = hf_moe.build("mixtral", kv_cache=True, layers=4, hidden=128,
                              inter=256, vocab=512)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "decoder.onnx")
        # Traced with a one-token past; the cache's length stays a symbol.
        inputs = hf_moe.make_inputs(cfg, 1, 4, 1, True, torch.Generator().manual_seed(0))
        hf_moe.export(model, cfg, inputs, path, True, True)
        start = time.perf_counter()
        decoder = moe_mlir.compile(path)
    print(f"compiled in {time.perf_counter() - start:.1f} s")
    print(decoder.signature)

    prompt = torch.randint(0, cfg["vocab"], (2, 6), generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    greedy = moe_mlir.generate(decoder, prompt, 64, progress=True)
    seconds = time.perf_counter() - start
    print(f"greedy: {2 * 64 / seconds:.0f} tokens/s\n{greedy}")
    assert torch.equal(greedy, eager_greedy(cfg, model, prompt, 64)), "differs from torch eager"
    print("greedy tokens match torch eager")

    sampled = moe_mlir.generate(decoder, prompt, 32, do_sample=True, temperature=0.7,
                                top_k=50, top_p=0.9, seed=0)
    print(f"sampled (temperature 0.7, top-k 50, top-p 0.9):\n{sampled}")


if __name__ == "__main__":
    main()
