#!/usr/bin/env python3
"""Whole-model benchmark: Hugging Face-style MoE decoders exported by torch
(dynamic axes, KV cache) compiled by moe-compile, against ONNX Runtime 1.30
(graph optimisations on) on the same ONNX file and torch eager in fp32 and
bf16, same machine, same run, interleaved passes.

  bench.py [--quick] [--models mixtral,qwen2_moe] [--passes P] [--runs N]
           [--threads T] [--out FILE] [--work DIR] [--bf16-weights]
           [--half f16|bf16 ...]

Cases: prefill of 128 and 512 tokens on an empty cache, and one decode step
after 512 cached positions. For every (model, case) each pass times ours
(moe-run --benchmark), ONNX Runtime (test/lib/ort_run.mjs --optimize) and
torch (fp32, bf16) in turn, N runs each; the table reports the median of the
passes' medians. Before timing, every case's logits are compared with torch
eager fp32 (and ONNX Runtime's).

With --half KIND, the export converted to f16 or bf16 (test/lib/half_onnx.py:
weights, constants, inputs and casts in that type, as a half-precision export
holds them) is compiled too and timed in the same passes ("ours f16", "ours
bf16"), its logits compared with torch eager fp32; its table puts it beside
ours f32, torch eager bf16 (the same model in the type users run it in) and
ONNX Runtime f32 (whose CPU provider cannot run these half graphs).

Derived columns: tokens/s; for decode the bytes a step must read (the
weights it uses: attention, router, the top-k experts, shared experts,
lm_head; plus the KV cache) per second and its fraction of this machine's
read bandwidth (benchmarks/membw.c, measured in the run); for prefill the
model's FLOPs per second and their fraction of the peak rate of the
instruction our f32 kernels use (vfmadd231ps with 512-bit vectors, measured
in registers by benchmarks/peak.c in the run; torch's f32 GEMM rate is
printed beside it). moe-compile's time and peak memory for each
model are reported next to the size of its weights.

Environment: ORT_NODE_MODULES (a node_modules folder with onnxruntime-node;
default build/ort/node_modules from scripts/build.sh). Needs build/bin
(scripts/build.sh), /usr/bin/python3 with torch, onnx and numpy, node, gcc.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

MODELS = {
    # Mixtral-style: 8 experts, top-2, renormalised, GQA.
    "mixtral": dict(family="mixtral", layers=4, hidden=768, heads=12, kv_heads=4,
                    head_dim=64, inter=1024, experts=8, top_k=2, vocab=8192),
    # Qwen-MoE-style: 16 fine-grained experts, top-4, a gated shared expert,
    # q/k/v biases.
    "qwen2_moe": dict(family="qwen2_moe", layers=4, hidden=768, heads=12, kv_heads=4,
                      head_dim=64, inter=384, experts=16, top_k=4, shared_inter=1536,
                      vocab=8192),
    # Llama-4-Scout-style: 16 experts, top-1 sigmoid scaling the experts'
    # input, a shared expert, every token through every expert in the
    # exported graph (dense bmm).
    "llama4": dict(family="llama4", layers=4, hidden=768, heads=12, kv_heads=4,
                   head_dim=64, inter=1024, experts=16, top_k=1, shared_inter=1024,
                   vocab=8192),
    # DBRX-style: 16 experts, top-4 divided by the p-norm, experts as views
    # of fused parameters.
    "dbrx": dict(family="dbrx", layers=4, hidden=768, heads=12, kv_heads=4,
                 head_dim=64, inter=512, experts=16, top_k=4, vocab=8192),
}
DEFAULT_MODELS = ["mixtral", "qwen2_moe"]
CASES = [("prefill T=128", 128, 0), ("prefill T=512", 512, 0), ("decode past=512", 1, 512)]


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(cmd)}\n"
                         f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result


def case_dir(work, name, case):
    return os.path.join(work, name, re.sub(r"[^a-z0-9]+", "-", case.lower()).strip("-"))


def size_flags(spec):
    return [f"--{k.replace('_', '-')}={v}" for k, v in spec.items() if k != "family"]


def prepare(work, name, spec):
    """Exports the model once and writes every case's inputs and torch's
    fp32 outputs."""
    hf = os.path.join(ROOT, "test", "lib", "hf_moe.py")
    export = os.path.join(work, name, "export")
    if not os.path.exists(os.path.join(export, "model.onnx")):
        log(f"== {name}: exporting with torch.onnx.export")
        run([sys.executable, hf, spec["family"], export, "--dynamic", "--kv-cache",
             "--seq", "8"] + size_flags(spec))
    for case, seq, past in CASES:
        folder = case_dir(work, name, case)
        if not os.path.exists(os.path.join(folder, "inputs.txt")):
            log(f"== {name}: inputs for {case}")
            run([sys.executable, hf, spec["family"], folder, "--dynamic", "--kv-cache",
                 "--no-export", "--seq", str(seq), "--past", str(past)] + size_flags(spec))
    return os.path.join(export, "model.onnx")


def compile_model(work, name, onnx_path, flags=(), suffix=""):
    so = os.path.join(work, name, f"model{suffix}.so")
    log(f"== {name}: moe-compile {' '.join(flags)}")
    result = run(["/usr/bin/time", "-f", "TIME %e %M",
                  os.path.join(ROOT, "build", "bin", "moe-compile"), onnx_path,
                  *flags, "-o", so])
    seconds, kib = re.search(r"TIME ([\d.]+) (\d+)", result.stderr).groups()
    return so, float(seconds), int(kib) * 1024


def half_folder(folder, kind):
    return os.path.join(folder, kind)


def convert_half(work, name, onnx_path, kind):
    """The export and every case's inputs converted to KIND (half_onnx.py),
    compiled; returns the module."""
    half_dir = os.path.join(work, name, f"export-{kind}")
    os.makedirs(half_dir, exist_ok=True)
    half_onnx = os.path.join(half_dir, "model.onnx")
    tool = os.path.join(ROOT, "test", "lib", "half_onnx.py")
    if not os.path.exists(half_onnx):
        log(f"== {name}: converting the export to {kind}")
        run([sys.executable, tool, kind, onnx_path, half_onnx])
    for case, _, _ in CASES:
        folder = case_dir(work, name, case)
        target = half_folder(folder, kind)
        if os.path.exists(os.path.join(target, "inputs.txt")):
            continue
        os.makedirs(target, exist_ok=True)
        import numpy as np
        from half_onnx import to_half
        converted = []
        for path in inputs_of(folder):
            values = np.load(path)
            out = os.path.join(target, os.path.basename(path))
            np.save(out, to_half(values, kind) if values.dtype == np.float32 else values)
            converted.append(out)
        with open(os.path.join(target, "inputs.txt"), "w") as f:
            f.write("\n".join(converted) + "\n")
    so, seconds, _ = compile_model(work, name, half_onnx, suffix=f"-{kind}")
    log(f"== {name}: {kind} export compiled in {seconds:.1f} s")
    return so


def inputs_of(folder):
    with open(os.path.join(folder, "inputs.txt")) as f:
        return [line.strip() for line in f if line.strip()]


def ours(so, folder, runs, threads, output=None, output_f32=False):
    cmd = [os.path.join(ROOT, "build", "bin", "moe-run"), so, f"--threads={threads}"]
    cmd += [f"--input=@{p}" for p in inputs_of(folder)]
    if output:
        cmd.append(f"--output=@{output}")
        if output_f32:
            cmd.append("--output-f32")
    else:
        cmd.append(f"--benchmark={runs}")
    result = run(cmd)
    if output:
        return None
    # moe-run prints sub-millisecond times in us.
    m = re.search(r"time: median ([\d.]+) (us|ms|s)\b", result.stdout)
    if not m:
        sys.exit(f"moe-run printed no median time:\n{result.stdout}")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


# Models whose ONNX Runtime session crashed with graph optimisations on
# (ORT 1.30 dies with SIGSEGV on the DBRX-style export): they run without.
ORT_UNOPTIMIZED = set()


def ort(onnx_path, folder, runs, threads, prefix=None):
    script = os.path.join(ROOT, "test", "lib", "ort_run.mjs")
    out = prefix or os.path.join(folder, "ort_")
    cmd = ["node", script, onnx_path, out] + inputs_of(folder)
    cmd.append(f"--threads={threads}")
    if runs:
        cmd.append(f"--bench={runs}")
    if onnx_path not in ORT_UNOPTIMIZED:
        result = subprocess.run(cmd + ["--optimize"], capture_output=True, text=True)
        if result.returncode < 0:
            log(f"   ONNX Runtime crashed (signal {-result.returncode}) with graph "
                f"optimisations on {onnx_path}: it runs without them")
            ORT_UNOPTIMIZED.add(onnx_path)
        elif result.returncode != 0:
            raise SystemExit(f"command failed ({result.returncode}): {' '.join(cmd)}\n"
                             f"{result.stdout}{result.stderr}")
    if onnx_path in ORT_UNOPTIMIZED:
        result = run(cmd)
    if runs:
        return float(result.stdout.strip().splitlines()[-1]) / 1000.0


class Torch:
    """The torch model (rebuilt from its seed: the same weights as the export)
    in fp32 and bf16."""

    def __init__(self, spec, threads):
        import torch
        import hf_moe
        self.torch = torch
        torch.set_num_threads(threads)
        overrides = {k: v for k, v in spec.items() if k != "family"}
        _, self.fp32 = hf_moe.build(spec["family"], 0, "matmul", True, **overrides)
        _, bf16 = hf_moe.build(spec["family"], 0, "matmul", True, **overrides)
        self.bf16 = bf16.to(torch.bfloat16)

    def time(self, folder, runs, dtype):
        import numpy as np
        torch = self.torch
        model = self.fp32 if dtype == "fp32" else self.bf16
        tensors = [torch.from_numpy(np.load(p)) for p in inputs_of(folder)]
        if dtype == "bf16":
            tensors = tensors[:2] + [t.to(torch.bfloat16) for t in tensors[2:]]
        times = []
        with torch.no_grad():
            model(*tensors)
            for _ in range(runs):
                start = time.perf_counter()
                model(*tensors)
                times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)


def gemm_gflops(threads):
    """torch's f32 GEMM rate here (the prefill reference)."""
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * 2048 ** 3 / min(times) / 1e9


def fma_peak(work, threads):
    """vfmadd231ps's rate on this machine (benchmarks/peak.c, median
    GFLOP/s): the compute roof of our f32 kernels."""
    binary = os.path.join(work, "peak")
    if not os.path.exists(binary):
        run(["gcc", "-O2", "-march=native", "-pthread",
             os.path.join(ROOT, "benchmarks", "peak.c"), "-o", binary])
    out = run([binary, str(threads), "5"]).stdout
    return float(re.search(r"peak fma: .* median ([\d.]+) GFLOP/s", out).group(1))


def membw(work, threads):
    binary = os.path.join(work, "membw")
    if not os.path.exists(binary):
        run(["gcc", "-O3", "-march=native", "-pthread",
             os.path.join(ROOT, "benchmarks", "membw.c"), "-o", binary])
    out = run([binary, str(threads), "1024", "10"]).stdout
    return float(re.search(r"median ([\d.]+) GB/s", out).group(1))


def model_costs(spec):
    """Parameters one token uses, all parameters, and per-layer KV sizes."""
    from hf_moe import config
    cfg = config(spec["family"], **{k: v for k, v in spec.items() if k != "family"})
    h, hd = cfg["hidden"], cfg["head_dim"]
    attention = h * cfg["heads"] * hd * 2 + h * cfg["kv_heads"] * hd * 2
    expert = 3 * h * cfg["inter"]
    shared = 3 * h * cfg.get("shared_inter", 0) + (h if cfg.get("shared_gate") else 0)
    router = h * cfg["experts"]
    per_layer_active = attention + router + cfg["top_k"] * expert + shared
    per_layer_all = attention + router + cfg["experts"] * expert + shared
    head = cfg["vocab"] * h
    return dict(active=cfg["layers"] * per_layer_active + head,
                total=cfg["layers"] * per_layer_all + 2 * head,
                kv_per_position=cfg["layers"] * 2 * cfg["kv_heads"] * hd,
                attention_flops_per_pair=cfg["layers"] * 4 * cfg["heads"] * hd)


def max_rel(a, b):
    import numpy as np
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 pass of 2 runs (checks the scripts)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated, of: " + ", ".join(MODELS))
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=os.path.join(ROOT, "build", "bench", "whole-model"))
    parser.add_argument("--out", help="Markdown table to write (default: stdout only)")
    parser.add_argument("--half", action="append", default=[], choices=["f16", "bf16"],
                        help="also time the export converted to this type "
                             "(columns 'ours f16' / 'ours bf16')")
    parser.add_argument("--bf16-weights", action="store_true",
                        help="also time ours compiled with --weight-type=bf16 "
                             "(columns 'ours bf16w'; its logits' error is printed)")
    args = parser.parse_args()
    if args.quick:
        args.passes, args.runs = 1, 2
    os.environ.setdefault("ORT_NODE_MODULES", os.path.join(ROOT, "build", "ort", "node_modules"))
    import numpy as np

    names = args.models.split(",")
    for name in names:
        if name not in MODELS:
            raise SystemExit(f"unknown model '{name}' (known: {', '.join(MODELS)})")
    os.makedirs(args.work, exist_ok=True)
    bandwidth = membw(args.work, args.threads)
    gemm = gemm_gflops(args.threads)
    fma_rate = fma_peak(args.work, args.threads)
    log(f"== machine: memory read {bandwidth:.1f} GB/s, FMA peak {fma_rate:.0f} GFLOP/s, "
        f"torch f32 GEMM {gemm:.0f} GFLOP/s ({args.threads} threads)")

    rows, builds = [], []
    for name in names:
        spec = MODELS[name]
        onnx_path = prepare(args.work, name, spec)
        so, seconds, peak = compile_model(args.work, name, onnx_path)
        costs = model_costs(spec)
        builds.append((name, costs["total"] * 4, seconds, peak))
        log(f"== {name}: {costs['total'] * 4 / 1e6:.0f} MB of weights, compiled in "
            f"{seconds:.1f} s, peak {peak / 1e9:.2f} GB")
        so_bf16 = None
        if args.bf16_weights:
            so_bf16, _, _ = compile_model(args.work, name, onnx_path,
                                          ["--weight-type=bf16"], "-bf16w")
        halves = {}
        for kind in args.half:
            halves[kind] = convert_half(args.work, name, onnx_path, kind)
        # Same answers first.
        for case, _, _ in CASES:
            folder = case_dir(args.work, name, case)
            out = os.path.join(folder, "ours_logits.npy")
            ours(so, folder, 0, args.threads, output=out)
            ort(onnx_path, folder, 0, args.threads, prefix=os.path.join(folder, "ort_"))
            reference = np.load(os.path.join(folder, "torch_0.npy"))
            log(f"   {case}: max rel. error vs torch: ours {max_rel(np.load(out), reference):.1e}, "
                f"ORT {max_rel(np.load(os.path.join(folder, 'ort_0.npy')), reference):.1e}")
            if so_bf16:
                out = os.path.join(folder, "ours_bf16w_logits.npy")
                ours(so_bf16, folder, 0, args.threads, output=out)
                log(f"   {case}: max rel. error vs torch: ours bf16w "
                    f"{max_rel(np.load(out), reference):.1e}")
            for kind, so_half in halves.items():
                out = os.path.join(folder, f"ours_{kind}_logits.npy")
                ours(so_half, half_folder(folder, kind), 0, args.threads, output=out,
                     output_f32=True)
                log(f"   {case}: max rel. error vs torch: ours {kind} "
                    f"{max_rel(np.load(out), reference):.1e}")
        model = Torch(spec, args.threads)
        samples = {}
        for p in range(args.passes):
            for case, _, _ in CASES:
                folder = case_dir(args.work, name, case)
                got = samples.setdefault(case, {"ours": [], "ort": [], "fp32": [], "bf16": []})
                got["ours"].append(ours(so, folder, args.runs, args.threads))
                if so_bf16:
                    got.setdefault("ours_bf16w", []).append(
                        ours(so_bf16, folder, args.runs, args.threads))
                for kind, so_half in halves.items():
                    got.setdefault(f"ours_{kind}", []).append(
                        ours(so_half, half_folder(folder, kind), args.runs, args.threads))
                got["ort"].append(ort(onnx_path, folder, args.runs, args.threads))
                got["fp32"].append(model.time(folder, args.runs, "fp32"))
                got["bf16"].append(model.time(folder, args.runs, "bf16"))
                log(f"   pass {p + 1}/{args.passes} {case}: " +
                    ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in got.items()))
        del model
        for case, seq, past in CASES:
            ms = {k: statistics.median(v) for k, v in samples[case].items()}
            tokens = seq
            if seq == 1:
                step_bytes = 4 * (costs["active"] + costs["kv_per_position"] * past)
                rate = step_bytes / (ms["ours"] / 1e3) / 1e9
                derived = f"{rate:.1f} GB/s ({100 * rate / bandwidth:.0f}% of {bandwidth:.0f})"
            else:
                flops = 2 * costs["active"] * seq + costs["attention_flops_per_pair"] * seq * seq
                rate = flops / (ms["ours"] / 1e3) / 1e9
                derived = (f"{rate:.0f} GFLOP/s ({100 * rate / fma_rate:.0f}% of "
                           f"{fma_rate:.0f})")
            rows.append((name, case, ms, tokens / (ms["ours"] / 1e3), derived))

    lines = [f"Machine: {args.threads} threads on every side; memory read {bandwidth:.1f} GB/s "
             f"(membw), FMA peak {fma_rate:.0f} GFLOP/s (peak.c; the prefill rates' reference), "
             f"torch f32 GEMM {gemm:.0f} GFLOP/s; median of {args.passes} interleaved "
             f"passes of {args.runs} runs.", "",
             "| model | case | ours ms | ORT ms | torch fp32 ms | torch bf16 ms | ORT/ours | "
             "torch fp32/ours | ours tokens/s | ours rate (prefill: of FMA peak; decode: of membw) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, case, ms, tps, derived in rows:
        unoptimized = os.path.join(args.work, name, "export", "model.onnx") in ORT_UNOPTIMIZED
        lines.append(f"| {name} | {case} | {ms['ours']:.2f} | "
                     f"{ms['ort']:.2f}{' (no graph opt.)' if unoptimized else ''} | "
                     f"{ms['fp32']:.2f} | {ms['bf16']:.2f} | {ms['ort'] / ms['ours']:.2f}x | "
                     f"{ms['fp32'] / ms['ours']:.2f}x | {tps:.0f} | {derived} |")
    if args.bf16_weights:
        lines += ["", "| model | case | ours bf16w ms | ours f32 / bf16w | "
                  "torch bf16 / ours bf16w | ORT / ours bf16w |", "|---|---|---:|---:|---:|---:|"]
        for name, case, ms, _, _ in rows:
            b = ms["ours_bf16w"]
            lines.append(f"| {name} | {case} | {b:.2f} | {ms['ours'] / b:.2f}x | "
                         f"{ms['bf16'] / b:.2f}x | {ms['ort'] / b:.2f}x |")
    for kind in args.half:
        lines += ["", f"| model | case | ours {kind} ms | ours f32 / {kind} | "
                  f"torch bf16 / ours {kind} | ORT f32 / ours {kind} |",
                  "|---|---|---:|---:|---:|---:|"]
        for name, case, ms, _, _ in rows:
            h = ms[f"ours_{kind}"]
            lines.append(f"| {name} | {case} | {h:.2f} | {ms['ours'] / h:.2f}x | "
                         f"{ms['bf16'] / h:.2f}x | {ms['ort'] / h:.2f}x |")
    lines += ["", "| model | weights | moe-compile time | moe-compile peak memory |",
              "|---|---:|---:|---:|"]
    for name, weight_bytes, seconds, peak in builds:
        lines.append(f"| {name} | {weight_bytes / 1e6:.0f} MB | {seconds:.1f} s | "
                     f"{peak / 1e9:.2f} GB ({peak / weight_bytes:.1f}x the weights) |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
