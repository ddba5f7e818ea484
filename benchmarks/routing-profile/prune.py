#!/usr/bin/python3
"""Expert pruning and merging by a routing profile: output error against
savings.

For each model, a routing profile is recorded on calibration inputs
(`moe-compile --record-routing`, `moe-run --routing-profile`), the model is
compiled with `--prune-experts=N` and `--merge-experts=N` for each N, and
every variant runs the
held-out inputs: the table gives the output's relative RMS error against the
unpruned model (and for decoders how often the top-1 next token stays the
same), the module's size, and the time of a prefill and a decode step
(`moe-run --benchmark`, variants interleaved, median of the passes'
medians).

Models:
  synthetic   one f32 MoE layer with its router (test/lib/bf16_layer.py),
              Mixtral-8x7B / 4 sizes (H 1024, I 3584, E 8, k 2), whose tokens
              lean towards some experts (a skewed profile, as trained
              routers have); calibration 512 tokens, held out 512 and 16.
  mixtral,    the whole-model benchmark's HF-style decoders
  qwen2_moe   (benchmarks/whole-model, random weights; calibration: its
              T = 128 prefill, held out: its T = 512 prefill and decode).

  prune.py [--models synthetic,mixtral,qwen2_moe] [--prune 1,2,4]
           [--merge 1,2,4] [--passes P] [--runs N] [--work DIR]

Needs build/bin (scripts/build.sh) and, for the decoders, the whole-model
benchmark's exports (it makes them when missing).
"""
import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin")
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
sys.dont_write_bytecode = True
import numpy as np  # noqa: E402
from bf16_layer import layer_mlir  # noqa: E402


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(cmd)}\n"
                         f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result


def whole_model_bench():
    path = os.path.join(ROOT, "benchmarks", "whole-model", "bench.py")
    spec = importlib.util.spec_from_file_location("whole_model_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic(work):
    """The layer's MLIR, calibration inputs and held-out cases."""
    H, I, E, k = 1024, 3584, 8, 2
    rng = np.random.default_rng(0)
    lean = rng.standard_normal(H)
    lean /= np.linalg.norm(lean)
    router = rng.standard_normal((E, H)) + np.linspace(-30, 30, E)[:, None] * lean
    weights = dict(router=(router / 8).astype(np.float32),
                   fc1=(rng.standard_normal((E, 2 * I, H)) / 32).astype(np.float32),
                   fc2=(rng.standard_normal((E, H, I)) / 64).astype(np.float32))
    source = os.path.join(work, "layer.mlir")
    with open(source, "w") as f:
        f.write(layer_mlir(H, I, E, k, dtype="f32", constants=weights))

    def inputs(name, count):
        path = os.path.join(work, f"{name}.npy")
        np.save(path, (rng.standard_normal((count, H)) + 2 * lean).astype(np.float32))
        return [path]

    calibration = inputs("calibration", 512)
    cases = {"T=512": inputs("held512", 512), "T=16": inputs("held16", 16)}
    return source, calibration, cases, None


def decoder(work, name):
    bench = whole_model_bench()
    wm_work = os.path.join(ROOT, "build", "bench", "whole-model")
    onnx_path = bench.prepare(wm_work, name, bench.MODELS[name])
    folder = lambda case: bench.case_dir(wm_work, name, case)  # noqa: E731
    calibration = bench.inputs_of(folder("prefill T=128"))
    cases = {"prefill T=512": bench.inputs_of(folder("prefill T=512")),
             "decode past=512": bench.inputs_of(folder("decode past=512"))}
    return onnx_path, calibration, cases, "logits"


def outputs_of(so, inputs, path):
    run([os.path.join(BIN, "moe-run"), so, *[f"--input=@{p}" for p in inputs],
         f"--output=@{path}"])
    return np.load(path).astype(np.float64)


def time_of(so, inputs, runs):
    out = run([os.path.join(BIN, "moe-run"), so, "--threads=2",
               *[f"--input=@{p}" for p in inputs], f"--benchmark={runs}"]).stdout
    m = re.search(r"time: median ([\d.]+) (us|ms|s)\b", out)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def bench_model(name, args):
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)
    source, calibration, cases, _ = (synthetic(work) if name == "synthetic"
                                     else decoder(work, name))
    compile_ = os.path.join(BIN, "moe-compile")
    log(f"== {name}: profile on the calibration inputs")
    profiling = os.path.join(work, "profiling.so")
    run([compile_, source, "--record-routing", "-o", profiling])
    profile = os.path.join(work, "profile.json")
    if os.path.exists(profile):
        os.remove(profile)
    run([os.path.join(BIN, "moe-run"), profiling,
         *[f"--input=@{p}" for p in calibration], f"--routing-profile={profile}"])
    with open(profile) as f:
        layers = json.load(f)["layers"]
    full = ("none", 0)
    variants = {full: os.path.join(work, "full.so")}
    run([compile_, source, "-o", variants[full]])
    remarks = {}
    for how, counts in (("prune", args.prune), ("merge", args.merge)):
        for n in counts:
            so = os.path.join(work, f"{how}{n}.so")
            out = run([compile_, source, f"--routing-profile={profile}",
                       f"--{how}-experts={n}", "-o", so])
            variants[(how, n)] = so
            remarks[(how, n)] = re.findall(r"remark: (layer .*)", out.stderr)
    rows = []
    for case, inputs in cases.items():
        log(f"== {name}: {case}")
        want = outputs_of(variants[full], inputs, os.path.join(work, "full_out.npy"))
        times = {n: [] for n in variants}
        for _ in range(args.passes):
            for n, so in variants.items():
                times[n].append(time_of(so, inputs, args.runs))
        for n, so in variants.items():
            got = outputs_of(so, inputs, os.path.join(work, "out.npy"))
            rms = np.sqrt(((got - want) ** 2).sum() / (want ** 2).sum())
            same = ""
            if name != "synthetic":
                top_got = got.reshape(-1, got.shape[-1]).argmax(-1)
                top_want = want.reshape(-1, want.shape[-1]).argmax(-1)
                same = f"{(top_got == top_want).mean():.1%}"
            rows.append((case, n, rms, same, os.path.getsize(so) / 2**20,
                         statistics.median(times[n]),
                         statistics.median(times[full])))
    return layers, remarks, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="synthetic,mixtral,qwen2_moe")
    parser.add_argument("--prune", default="1,2,4")
    parser.add_argument("--merge", default="1,2,4")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", default=os.path.join(ROOT, "build", "bench", "prune"))
    args = parser.parse_args()
    args.prune = [int(n) for n in args.prune.split(",") if n]
    args.merge = [int(n) for n in args.merge.split(",") if n]
    print("| model | case | experts removed per layer | rel. RMS vs unpruned | same top-1 "
          "| module MiB | ms | unpruned ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        layers, remarks, rows = bench_model(name, args)
        for case, (how, n), rms, same, mib, ms, base in rows:
            print(f"| {name} | {case} | {how} {n} | {rms:.2e} | {same} | {mib:.1f} | "
                  f"{ms:.3f} | {base:.3f} |", flush=True)
        for layer in layers:
            log(f"{name} layer {layer['layer']}: tokens per expert "
                f"{layer['tokens_per_expert']}")
        for (how, n), lines in remarks.items():
            for line in lines:
                log(f"{name} {how} {n}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
