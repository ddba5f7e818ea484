#!/usr/bin/env python3
"""Runs a decoder in onnxruntime-genai's graph form (input_ids,
attention_mask, past_key_values.N.key/value -> logits, present.N.key/value)
through a prefill and then single-token decode steps, compiled with
moe-compile and run with moe-run, and with ONNX Runtime
(test/lib/ort_run.mjs), comparing every output at every step.

  genai_decode_vs_ort.py MODEL.onnx --workdir DIR [--steps 8]
                         [--lengths 5,3] [--rtol 1e-5] [--seed 0]

The prefill feeds empty past tensors ([B, kv_heads, 0, head]) and prompts
of the given lengths (one per batch row, right-padded with attention_mask
0s as genai pads batched prompts); each decode step feeds one token per
row, the attention mask grown by a 1, and as past each runtime's own
presents of the step before, so that both run a real decode loop. The
token is the argmax of ONNX Runtime's last logits (the same for both).
Prints one line per output and step (onnx_vs_ort.compare) and a summary of
the largest relative error of each output; exits 1 on any mismatch.
"""
import argparse
import os
import sys

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_vs_ort import HERE, compare, run  # noqa: E402


def dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else None
            for d in value_info.type.tensor_type.shape.dim]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--lengths", default="5",
                        help="prompt length of each batch row")
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    graph = onnx.load(args.model, load_external_data=False).graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    outputs = [o.name for o in graph.output]
    vocab = dims(graph.output[0])[-1]
    lengths = [int(n) for n in args.lengths.split(",")]
    batch, prompt = len(lengths), max(lengths)

    tools = os.environ.get("MOE_TOOLS_DIR", "")
    os.makedirs(args.workdir, exist_ok=True)
    lib = os.path.join(args.workdir, "model.so")
    run([os.path.join(tools, "moe-compile"), args.model, "-o", lib])

    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, vocab, (batch, prompt)).astype(np.int64)
    mask = np.array([[1] * n + [0] * (prompt - n) for n in lengths], np.int64)
    pasts = {}
    for i in inputs:
        if i.name.startswith("past_key_values."):
            shape = dims(i)
            pasts[i.name] = np.zeros((batch, shape[1], 0, shape[3]), np.float32)
    past = {"ours": dict(pasts), "ort": dict(pasts)}

    ok = True
    worst = {}
    for step in range(args.steps + 1):
        feeds = {"ours": [], "ort": []}
        d = os.path.join(args.workdir, f"step{step}")
        os.makedirs(d, exist_ok=True)
        for side in feeds:
            for n, i in enumerate(inputs):
                value = {"input_ids": ids, "attention_mask": mask}.get(i.name)
                if value is None:
                    value = past[side][i.name]
                path = os.path.join(d, f"{side}_in{n}.npy")
                np.save(path, value)
                feeds[side].append(path)
        ours = [os.path.join(d, f"ours{n}.npy") for n in range(len(outputs))]
        run([os.path.join(tools, "moe-run"), lib,
             *[f"--input=@{p}" for p in feeds["ours"]],
             *[f"--output=@{p}" for p in ours]])
        run(["node", os.path.join(HERE, "ort_run.mjs"), args.model,
             os.path.join(d, "ort"), *feeds["ort"]])
        results = {"ours": {}, "ort": {}}
        for n, name in enumerate(outputs):
            got = np.load(ours[n])
            want = np.load(os.path.join(d, f"ort{n}.npy"))
            results["ours"][name], results["ort"][name] = got, want
            ok &= compare(f"step {step} {name}", got, want, "ort", args.rtol)
            if got.shape == want.shape and want.size:
                err = float(np.abs(got.astype(np.float64) - want).max() /
                            max(float(np.abs(want).max()), 1e-30))
                worst[name] = max(worst.get(name, 0.0), err)
        for side in past:
            for name in past[side]:
                past[side][name] = results[side][name.replace(
                    "past_key_values.", "present.")]
        # Next token: ONNX Runtime's greedy choice at each row's last token.
        logits = results["ort"][outputs[0]]
        last = [n - 1 for n in lengths] if step == 0 else [0] * batch
        ids = logits[np.arange(batch), last].argmax(axis=-1)[:, None]
        ids = ids.astype(np.int64)
        mask = np.concatenate([mask, np.ones((batch, 1), np.int64)], axis=1)
    for name, err in worst.items():
        print(f"max over steps {name}: {err:.3g}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
