#!/usr/bin/python3
"""bf16 MoE layers: moe-mlir vs torch eager bf16 (oneDNN), the same weights.

Per model (Mixtral-8x7B / 4, OLMoE / 2, Qwen3-30B-A3B / 2, as in
benchmarks/make_models.py) a bf16 layer with the router MatMul inside the
function: x [T, H] bf16 -> logits = x W_r^T (f32 accumulation) -> top-k
softmax with renormalisation -> interleaved SwiGLU experts -> y [T, H] bf16.
Ours: `moe-compile layer.mlir` (vdpbf16ps where the CPU has AVX512-BF16),
timed by `moe-run --benchmark`. Torch: the Hugging Face Mixtral block's
eager loop over experts in bf16 (its best case: gate and up as separate
contiguous weights), timed in this process. Both sides interleaved per
(model, T) and pass, 2 threads each.

The layer comes from test/lib/bf16_layer.py. Its weights are constants in
the module (dense resources), as a deployed model's are, so that
moe-compile stores them panel-major at compile time; `--weights=arguments`
passes them as function arguments instead (out-major, packed at run time).
Several compilations of ours can be timed side by side, interleaved with
torch: `--variant=NAME[:FLAGS]` (repeatable; FLAGS are moe-compile flags,
space-separated), e.g. `--variant=panels --variant=runtime:--pack-expert-weights=false`.

Before timing, at T = 16, every output is compared with a float64 numpy
evaluation of the same bf16 weights and inputs (max|diff| / max|ref|).

Usage: /usr/bin/python3 benchmarks/bf16/bench.py [--work=DIR]
           [--models=a,b] [--tokens=1,16,64,512] [--passes=3] [--threads=2]
           [--weights=constant|arguments] [--variant=NAME[:FLAGS] ...]
           [--compile-arg=ARG ...]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
from bf16_layer import layer_mlir, reference, round_bf16  # noqa: E402

MODELS = {
    # name: (description, H, I, E, k, seed)
    "mixtral-8x7b-div4": ("Mixtral-8x7B / 4", 1024, 3584, 8, 2, 101),
    "olmoe-div2": ("OLMoE-1B-7B / 2", 1024, 512, 64, 8, 202),
    "qwen3-30b-a3b-div2": ("Qwen3-30B-A3B / 2", 1024, 384, 128, 8, 303),
}


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(cmd)}\n"
                 f"{result.stdout}{result.stderr}")
    return result


class Model:
    def __init__(self, work, name, variants, constant_weights):
        """`variants`: (name, moe-compile flags) pairs, each compiled to its
        own module."""
        self.name = name
        self.desc, H, I, E, k, seed = MODELS[name]
        self.H, self.I, self.E, self.k = H, I, E, k
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        rng = np.random.default_rng(seed)
        normal = lambda shape, fan_in: round_bf16(
            rng.standard_normal(shape, dtype=np.float32) / np.sqrt(fan_in))
        log(f"{name}: weights")
        self.router = normal((E, H), H)
        self.fc1 = normal((E, 2 * I, H), H)   # rows 2i gate, 2i + 1 up
        self.fc2 = normal((E, H, I), I)
        self.constant_weights = constant_weights
        weights = dict(router=self.router, fc1=self.fc1, fc2=self.fc2)
        if not constant_weights:
            for n, w in weights.items():
                np.save(os.path.join(self.dir, n + ".npy"), w)
        mlir = os.path.join(self.dir, "layer.mlir")
        with open(mlir, "w") as f:
            f.write(layer_mlir(H, I, E, k, "bf16",
                               constants=weights if constant_weights else None))
        self.sos = {}
        for variant, flags in variants:
            self.sos[variant] = os.path.join(self.dir, f"layer-{variant}.so")
            log(f"{name}: moe-compile ({variant})")
            run([os.path.join(ROOT, "build", "bin", "moe-compile"), mlir, "-o",
                 self.sos[variant]] + flags)
        self.torch_weights = None

    def x_path(self, T):
        path = os.path.join(self.dir, f"x_T{T}.npy")
        if not os.path.exists(path):
            rng = np.random.default_rng([T, self.H])
            np.save(path, round_bf16(rng.standard_normal((T, self.H),
                                                        dtype=np.float32)))
        return path

    def moe_run(self, variant, T, runs=None, output=None, threads=2):
        cmd = [os.path.join(ROOT, "build", "bin", "moe-run"), self.sos[variant],
               f"--threads={threads}", f"--input=@{self.x_path(T)}"]
        if not self.constant_weights:
            cmd += [f"--input=@{os.path.join(self.dir, n + '.npy')}"
                    for n in ("router", "fc1", "fc2")]
        if output:
            cmd += [f"--output=@{output}", "--output-f32"]
        else:
            cmd.append(f"--benchmark={runs}")
        out = run(cmd).stdout
        if output:
            return np.load(output)
        # moe-run prints sub-millisecond times in us.
        m = re.search(r"time: median ([\d.]+) (us|ms|s)\b", out)
        if not m:
            sys.exit(f"moe-run printed no median time:\n{out}")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    def reference(self, x):
        """float64 evaluation of the layer on the bf16 values."""
        return reference(x, self.router, self.fc1, self.fc2, self.k)

    def torch_forward(self, torch, x):
        """The Hugging Face Mixtral sparse block's eager loop, in bf16."""
        if self.torch_weights is None:
            bf = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(torch.bfloat16)
            self.torch_weights = (
                bf(self.router), bf(self.fc1[:, 0::2]), bf(self.fc1[:, 1::2]),
                bf(self.fc2))
        router, gate, up, down = self.torch_weights
        F = torch.nn.functional
        logits = F.linear(x, router)
        probs = F.softmax(logits, dim=1, dtype=torch.float)
        weights, experts = torch.topk(probs, self.k, dim=-1)
        weights /= weights.sum(dim=-1, keepdim=True)
        weights = weights.to(x.dtype)
        y = torch.zeros_like(x)
        mask = F.one_hot(experts, num_classes=self.E).permute(2, 1, 0)
        for e in range(self.E):
            slot, token = torch.where(mask[e])
            if token.numel() == 0:
                continue
            xs = x[token]
            h = F.silu(F.linear(xs, gate[e])) * F.linear(xs, up[e])
            out = F.linear(h, down[e]) * weights[token, slot, None]
            y.index_add_(0, token, out)
        return y

    def torch_time(self, torch, T, runs):
        x = torch.from_numpy(np.load(self.x_path(T))).to(torch.bfloat16)
        times = []
        with torch.no_grad():
            self.torch_forward(torch, x)
            for _ in range(runs):
                start = time.perf_counter()
                self.torch_forward(torch, x)
                times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)

    def flops(self, T):
        return 2 * T * self.k * 3 * self.H * self.I + 2 * T * self.H * self.E


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=os.path.join(ROOT, "build", "bf16-bench"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tokens", default="1,16,64,512")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile-arg", action="append", default=[],
                        help="moe-compile flag for every variant")
    parser.add_argument("--weights", choices=["constant", "arguments"],
                        default="constant")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME[:FLAGS], a compilation of ours to time")
    args = parser.parse_args()
    variants = []
    for spec in args.variant or ["ours"]:
        name, _, flags = spec.partition(":")
        variants.append((name, flags.split() + args.compile_arg))

    import torch
    torch.set_num_threads(args.threads)
    tokens = [int(t) for t in args.tokens.split(",")]
    models = [Model(args.work, n, variants, args.weights == "constant")
              for n in args.models.split(",")]
    names = [v for v, _ in variants]

    print(f"Weights: {args.weights}; variants: "
          + "; ".join(f"{v} ({' '.join(f) or 'defaults'})" for v, f in variants))
    print()
    print("| model | " + " | ".join(f"{v} vs float64" for v in names)
          + " | torch bf16 vs float64 |")
    print("|---|" + "---|" * (len(names) + 1))
    for m in models:
        x = np.load(m.x_path(16))
        ref = m.reference(x)
        scale = np.abs(ref).max()
        errors = []
        for v in names:
            ours = m.moe_run(v, 16, output=os.path.join(m.dir, f"y16-{v}.npy"))
            errors.append(np.abs(ours - ref).max() / scale)
        with torch.no_grad():
            theirs = m.torch_forward(torch, torch.from_numpy(x).to(torch.bfloat16))
        theirs = theirs.float().numpy()
        print(f"| {m.desc} | " + " | ".join(f"{e:.2e}" for e in errors) +
              f" | {np.abs(theirs - ref).max() / scale:.2e} |", flush=True)

    print()
    print("| model | T | " + " | ".join(f"{v} ms" for v in names) +
          " | torch bf16 ms | " + " | ".join(f"torch/{v} (range)" for v in names) +
          " | " + " | ".join(f"{v} GFLOP/s" for v in names) + " |")
    print("|---|---|" + "---:|" * (len(names) + 1) + "---|" * len(names)
          + "---:|" * len(names))
    sides = names + ["torch"]
    for m in models:
        for T in tokens:
            runs = 20 if T >= 256 else 100
            times = {side: [] for side in sides}
            for p in range(args.passes):
                order = sides if p % 2 == 0 else sides[::-1]
                for side in order:
                    if side == "torch":
                        times[side].append(m.torch_time(torch, T, runs))
                    else:
                        times[side].append(
                            m.moe_run(side, T, runs=runs, threads=args.threads))
            med = {side: statistics.median(t) for side, t in times.items()}
            cells = [f"{med[v]:.3f}" for v in names] + [f"{med['torch']:.3f}"]
            for v in names:
                ratios = [b / a for a, b in zip(times[v], times["torch"])]
                cells.append(f"**{med['torch'] / med[v]:.2f}x** "
                             f"({min(ratios):.2f}-{max(ratios):.2f})")
            cells += [f"{m.flops(T) / med[v] / 1e6:.0f}" for v in names]
            print(f"| {m.desc} | {T} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
