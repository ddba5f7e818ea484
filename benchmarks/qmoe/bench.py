#!/usr/bin/python3
"""Router-in-graph layer benchmark: moe-mlir against ONNX Runtime's
com.microsoft.QMoE on quantised expert weights and com.microsoft.MoE on f32
ones, at decode and prefill token counts, next to this machine's measured
memory bandwidth.

Usage:
  /usr/bin/python3 benchmarks/qmoe/bench.py [--models=a,b] [--tokens=1,16]
      [--passes=P] [--runs=N] [--runs-large=M] [--rotations=R] [--threads=2]
      [--variant=NAME:MOE_COMPILE[:FLAGS] ...] [--no-ort] [--dir=DIR]

Models (one ONNX graph each, as users have them: x [T, H] -> router MatMul
-> QMoE or MoE, SwiGLU experts interleaved as swiglu_fusion = 1; quantised
ones with f32 scales, no zero points):
  mixtral-int8   Mixtral-8x7B / 4: H 1024, I 3584, E 8, k 2, 8-bit per-row
  qwen3-int4     Qwen3-30B-A3B / 2: H 1024, I 384, E 128, k 8, 4-bit,
                 block_size 32
  mixtral-f32    Mixtral-8x7B / 4, f32 (--models=... only)
  olmoe-f32      OLMoE-1B-7B / 2: H 1024, I 512, E 64, k 8, f32
  qwen3-f32      Qwen3-30B-A3B / 2, f32

Every variant (default `ours:build/bin/moe-compile`; give several, e.g. an
old build as `before:/path/moe-compile`, or one compiler with other flags as
`unfused:build/bin/moe-compile:--fuse-router=false` (FLAGS split at
spaces), to compare them under the same load) compiles model.onnx to a .so that this script runs in-process through
libmoe_runtime.so's C API (the call moe-run makes), timing moe_invoke over R
different token sets in turn, so that consecutive runs route to different
experts and the touched weights do not stay in L3 (moe-run --benchmark
repeats one input). ONNX Runtime (ort_qmoe.mjs, onnxruntime-node 1.30 from
$ORT_NODE_MODULES, default build/ort/node_modules) gets the same token
sets. Each pass runs every variant and ORT once per model, interleaved;
the table reports the median of the per-pass medians.

Weight bytes touched per run: packed weights and scales of the experts the
R token sets route to (averaged over the sets) plus the router's weight.
GB/s is that over the median time; `%bw` is that over the median of
benchmarks/membw.c (same thread count) measured before and after.
GFLOP/s counts the router's and the k experts' multiply-adds (x 2) per
token; `%peak` is that over the rate of the instruction the variant's
expert kernel uses (vfmadd231ps, or vpdpbusd with --int8-activations on
quantised experts) as benchmarks/peak.c measures it in registers (the
best of its medians before and after): the roofline's compute roof.

Scratch (models, .so files, inputs) goes to DIR (default build/bench-qmoe).
"""
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "benchmarks", "qmoe")

# name: (description, H, I, E, k, bits, block_size, seed)
MODELS = {
    "mixtral-int8": ("int8 Mixtral-8x7B / 4", 1024, 3584, 8, 2, 8, 0, 11),
    "qwen3-int4": ("int4 Qwen3-30B-A3B / 2", 1024, 384, 128, 8, 4, 32, 22),
    # bits 0: f32 weights, com.microsoft.MoE.
    "mixtral-f32": ("Mixtral-8x7B / 4", 1024, 3584, 8, 2, 0, 0, 33),
    "olmoe-f32": ("OLMoE-1B-7B / 2", 1024, 512, 64, 8, 0, 0, 44),
    "qwen3-f32": ("Qwen3-30B-A3B / 2", 1024, 384, 128, 8, 0, 0, 55),
}


def quantize(rng, E, n, k, bits, block):
    """Random packed codes [E, n, k * bits / 8] and f32 scales ([E, n] or
    [E, n, k / block]) of weights of about unit variance over k inputs."""
    levels = 1 << bits
    q = rng.integers(0, levels, size=(E, n, k), dtype=np.uint8)
    if bits == 4:
        q = q[:, :, 0::2] | (q[:, :, 1::2] << 4)
    shape = (E, n) if block == 0 else (E, n, k // block)
    scales = (rng.uniform(0.5, 1.5, size=shape) * np.sqrt(12.0) /
              (levels * np.sqrt(k))).astype(np.float32)
    return q.astype(np.uint8), scales


def generate(name, out, tokens, rotations):
    _, H, I, E, k, bits, block, seed = MODELS[name]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    wr = (rng.standard_normal((H, E)) / np.sqrt(H)).astype(np.float32)
    if bits:
        q1, s1 = quantize(rng, E, 2 * I, H, bits, block)
        q2, s2 = quantize(rng, E, H, I, bits, block)
    else:
        q1 = (rng.standard_normal((E, 2 * I, H), dtype=np.float32) *
              np.float32(H ** -0.5))
        q2 = (rng.standard_normal((E, H, I), dtype=np.float32) *
              np.float32(I ** -0.5))
        s1 = s2 = np.zeros((E, 0), np.float32)
    if not os.path.exists(os.path.join(out, "model.onnx")):
        attrs = dict(k=k, activation_type="swiglu", swiglu_fusion=1,
                     activation_alpha=1.702, activation_beta=1.0,
                     swiglu_limit=7.0, normalize_routing_weights=1)
        weights = dict(router=wr, fc1=q1, fc2=q2)
        if bits:
            attrs["expert_weight_bits"] = bits
            if block:
                attrs["block_size"] = block
            moe = helper.make_node("QMoE", ["x", "logits", "fc1", "fc1_s", "",
                                            "fc2", "fc2_s", ""], ["y"],
                                   domain="com.microsoft", **attrs)
            weights.update(fc1_s=s1, fc2_s=s2)
        else:
            moe = helper.make_node("MoE", ["x", "logits", "fc1", "", "fc2"],
                                   ["y"], domain="com.microsoft", **attrs)
        nodes = [helper.make_node("MatMul", ["x", "router"], ["logits"]), moe]
        inits = [numpy_helper.from_array(v, n) for n, v in weights.items()]
        graph = helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", H])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", H])],
            inits)
        save(helper.make_model(graph, opset_imports=[
            helper.make_opsetid("", 17),
            helper.make_opsetid("com.microsoft", 1)]),
            os.path.join(out, "model.onnx"))
    per_expert = (q1[0].nbytes + s1[0].nbytes + q2[0].nbytes + s2[0].nbytes)
    work = {}
    for T in tokens:
        touched = []
        for r in range(rotations):
            x = np.random.default_rng([seed, T, r]).standard_normal(
                (T, H)).astype(np.float32)
            np.save(os.path.join(out, f"x_T{T}_r{r}.npy"), x)
            logits = x @ wr
            top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
            touched.append(len(np.unique(top)))
        work[T] = float(np.mean(touched)) * per_expert + wr.nbytes
    return work


class Runtime:
    """The runtime's C API through ctypes: load a module, invoke its one
    function on an f32 [T, H] input."""

    class Tensor(ctypes.Structure):
        _fields_ = [("dtype", ctypes.c_int), ("rank", ctypes.c_int32),
                    ("shape", ctypes.c_int64 * 8), ("data", ctypes.c_void_p)]

    def __init__(self, threads):
        self.lib = ctypes.CDLL(os.path.join(ROOT, "build", "lib",
                                            "libmoe_runtime.so"))
        self.lib.moe_last_error.restype = ctypes.c_char_p
        self.lib.moe_module_function.restype = ctypes.c_void_p
        self.lib.moe_module_function.argtypes = [ctypes.c_void_p,
                                                 ctypes.c_int64]
        self.lib.moe_invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_void_p,
                                        ctypes.c_int64]
        self.check(self.lib.moe_set_num_threads(ctypes.c_int64(threads)))

    def check(self, status):
        if status != 0:
            sys.exit("runtime: " + self.lib.moe_last_error().decode())

    def load(self, so):
        module = ctypes.c_void_p()
        self.check(self.lib.moe_module_load(so.encode(), ctypes.byref(module)))
        return self.lib.moe_module_function(module, 0)

    def tensor(self, a):
        t = self.Tensor()
        t.dtype, t.rank = 0, a.ndim
        for i, d in enumerate(a.shape):
            t.shape[i] = d
        t.data = a.ctypes.data
        return t

    def invoke(self, fn, x, y):
        tx, ty = self.tensor(x), self.tensor(y)
        self.check(self.lib.moe_invoke(fn, ctypes.byref(tx), 1,
                                       ctypes.byref(ty), 1))

    def bench(self, fn, xs, runs):
        ys = [np.empty_like(x) for x in xs]
        for x, y in zip(xs, ys):
            self.invoke(fn, x, y)
        ms = []
        for i in range(runs):
            j = i % len(xs)
            t0 = time.perf_counter()
            self.invoke(fn, xs[j], ys[j])
            ms.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ms)


def peaks(exe, threads):
    """Median rate of each instruction benchmarks/peak.c measures here
    (fma, bf16, vnni), in G(FL)OP/s."""
    out = subprocess.run([exe, str(threads), "5"], check=True,
                         capture_output=True, text=True).stdout
    rates = {}
    for line in out.splitlines():
        kind = line.split()[1].rstrip(":")
        rates[kind] = float(line.split("median ")[1].split()[0])
    return rates


def flops(name, T):
    """Multiply-adds x 2 of one call at T tokens: the router and each
    token's k experts (SwiGLU fc1 of 2I x H, fc2 of H x I)."""
    _, H, I, E, k, *_ = MODELS[name]
    return 2 * T * (H * E + k * 3 * I * H)


def membw(exe, threads):
    line = subprocess.run([exe, str(threads), "1024", "10"], check=True,
                          capture_output=True, text=True).stdout.strip()
    return float(line.split("median ")[1].split(" GB/s")[0])


def main():
    o = dict(models="mixtral-int8,qwen3-int4", tokens="1,16,64,512",
             passes="3", runs="60", **{"runs-large": "6"}, rotations="8",
             threads="2", dir=os.path.join(ROOT, "build", "bench-qmoe"))
    variants, use_ort = [], True
    for a in sys.argv[1:]:
        if a in ("-h", "--help"):
            sys.exit(__doc__)
        if a == "--no-ort":
            use_ort = False
            continue
        key, _, value = a[2:].partition("=")
        if key == "variant":
            name, compiler, *flags = value.split(":", 2)
            variants.append([name, compiler, flags[0].split() if flags
                             else []])
        elif key in o:
            o[key] = value
        else:
            sys.exit(f"unknown option {a}\n{__doc__}")
    variants = variants or [["ours", os.path.join(ROOT, "build", "bin",
                                                  "moe-compile"), []]]
    models = o["models"].split(",")
    tokens = [int(t) for t in o["tokens"].split(",")]
    threads, rotations = int(o["threads"]), int(o["rotations"])
    env = dict(os.environ, MOE_NUM_THREADS=str(threads))
    env.setdefault("ORT_NODE_MODULES",
                   os.path.join(ROOT, "build", "ort", "node_modules"))

    bw_exe = os.path.join(o["dir"], "membw")
    os.makedirs(o["dir"], exist_ok=True)
    subprocess.run(["gcc", "-O3", "-march=native", "-pthread",
                    os.path.join(ROOT, "benchmarks", "membw.c"), "-o",
                    bw_exe], check=True)
    bw = [membw(bw_exe, threads)]
    print(f"membw ({threads} threads): {bw[0]:.1f} GB/s", flush=True)
    peak_exe = os.path.join(o["dir"], "peak")
    subprocess.run(["gcc", "-O2", "-march=native", "-pthread",
                    os.path.join(ROOT, "benchmarks", "peak.c"), "-o",
                    peak_exe], check=True)
    peak = peaks(peak_exe, threads)
    print("instruction peaks (%d threads): " % threads +
          ", ".join(f"{k} {v:.0f}" for k, v in peak.items()), flush=True)

    rt = Runtime(threads)
    work, fns, xs = {}, {}, {}
    for m in models:
        d = os.path.join(o["dir"], m)
        work[m] = generate(m, d, tokens, rotations)
        xs[m] = {T: [np.load(os.path.join(d, f"x_T{T}_r{r}.npy"))
                     for r in range(rotations)] for T in tokens}
        for name, compiler, flags in variants:
            so = os.path.join(d, f"{name}.so")
            t0 = time.time()
            subprocess.run([compiler, os.path.join(d, "model.onnx"), "-o",
                            so] + flags, check=True)
            print(f"{m}: {name} compiled in {time.time() - t0:.1f} s",
                  flush=True)
            fns[m, name] = rt.load(so)
        # Agreement with ONNX Runtime on one token set.
        if use_ort:
            x = xs[m][tokens[0]][0]
            ort_out = os.path.join(d, "ort_out.npy")
            subprocess.run(["node", os.path.join(HERE, "ort_qmoe.mjs"), d,
                            "run", os.path.join(d, f"x_T{tokens[0]}_r0.npy"),
                            ort_out, f"--threads={threads}"], check=True,
                           env=env)
            ref = np.load(ort_out)
            for name, *_ in variants:
                y = np.empty_like(x)
                rt.invoke(fns[m, name], x, y)
                err = np.abs(y - ref).max() / np.abs(ref).max()
                print(f"{m}: {name} vs ORT at T={tokens[0]}: "
                      f"max|diff|/max|ORT| = {err:.2g}", flush=True)

    times = {}  # (model, side, T) -> per-pass medians
    for p in range(int(o["passes"])):
        for m in models:
            d = os.path.join(o["dir"], m)
            # Variants side by side for each T, in turn first (every
            # other pass reversed), so that drifting machine speed does not
            # favour one of them.
            order = [v[0] for v in variants][::1 if p % 2 == 0 else -1]
            for T in tokens:
                runs = int(o["runs-large"] if T >= 256 else o["runs"])
                for name in order:
                    ms = rt.bench(fns[m, name], xs[m][T], runs)
                    times.setdefault((m, name, T), []).append(ms)
                    print(f"pass {p}: {m} {name} T={T}: {ms:.3f} ms",
                          flush=True)
            if not use_ort:
                continue
            out = subprocess.run(
                ["node", os.path.join(HERE, "ort_qmoe.mjs"), d, "bench",
                 f"--tokens={o['tokens']}", f"--runs={o['runs']}",
                 f"--runs-large={o['runs-large']}",
                 f"--rotations={rotations}", f"--threads={threads}"],
                check=True, capture_output=True, text=True, env=env).stdout
            for line in out.splitlines():
                r = json.loads(line)
                times.setdefault((m, "ort", r["tokens"]), []).append(
                    r["median_ms"])
                print(f"pass {p}: {m} ort T={r['tokens']}: "
                      f"{r['median_ms']:.3f} ms", flush=True)
    bw.append(membw(bw_exe, threads))
    bandwidth = statistics.median(bw)
    for kind, rate in peaks(peak_exe, threads).items():
        peak[kind] = max(peak.get(kind, 0), rate)

    def instruction(model, variant):
        """The instruction a variant's expert kernel multiplies with:
        vpdpbusd for quantised experts with int8 activations, else FMA
        (float weights, or quantised ones dequantised to f32)."""
        flags = next(f for n, _, f in variants if n == variant)
        quantised = MODELS[model][5] != 0
        return "vnni" if quantised and "--int8-activations" in flags \
            else "fma"

    print(f"\nmemory bandwidth ({threads} threads, membw.c median, before/"
          f"after): {bw[0]:.1f} / {bw[1]:.1f} GB/s; {o['passes']} passes, "
          f"{rotations} token sets rotated, {threads} threads; instruction "
          "peaks (benchmarks/peak.c, best median of before/after): " +
          ", ".join(f"{k} {v:.0f}" for k, v in peak.items()) +
          " G(FL)OP/s; %peak is a variant's FLOP rate over the peak of the "
          "instruction its kernel uses\n")
    sides = [n for n, *_ in variants] + (["ort"] if use_ort else [])
    head = "| model | T | MB touched |"
    for s in sides:
        head += f" {s} ms |"
        if s != "ort":
            head += (f" {s} GB/s | {s} %bw | {s} GFLOP/s | {s} %peak |" +
                     (" ORT/" + s + " |"
                      if use_ort else ""))
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for m in models:
        for T in tokens:
            mb = work[m][T] / 1e6
            row = f"| {m} | {T} | {mb:.1f} |"
            ort_ms = (statistics.median(times[m, "ort", T])
                      if use_ort else None)
            for s in sides:
                ms = statistics.median(times[m, s, T])
                row += f" {ms:.3f} |"
                if s != "ort":
                    gbs = work[m][T] / ms / 1e6
                    row += f" {gbs:.1f} | {100 * gbs / bandwidth:.0f}% |"
                    rate = flops(m, T) / ms / 1e6
                    row += (f" {rate:.0f} | "
                            f"{100 * rate / peak[instruction(m, s)]:.0f}% |")
                    if use_ort:
                        row += f" {ort_ms / ms:.2f} |"
            print(row)


if __name__ == "__main__":
    main()
