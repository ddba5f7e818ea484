#!/usr/bin/env python3
"""Compiles an ONNX model with moe-compile, runs it with moe-run and with
ONNX Runtime (test/lib/ort_run.mjs) on the same .npy inputs, and compares
every output.

  onnx_vs_ort.py MODEL.onnx IN.npy... [--rtol 1e-5] [--workdir DIR]
                 [--compile-arg=ARG ...] [--expected PATTERN]

Float outputs pass when max|ours - ort| <= rtol * max|ort|; integer and
bool outputs must be equal. With --expected (e.g. `dir/torch_{i}.npy`),
output i is also compared, the same way, with that file: the model's own
framework's answer (torch eager). Prints one line per output and exits 1 on any
mismatch. Tools come from $MOE_TOOLS_DIR, onnxruntime-node from
$ORT_NODE_MODULES (both set by test/lit.cfg.py).
"""
import argparse
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"onnx_vs_ort: {' '.join(cmd)} failed ({result.returncode}):\n"
                 f"{result.stdout}")
    return result.stdout


def compare(what, got, want, peer, rtol):
    """Prints one line comparing `got` with `peer`'s `want`; True on PASS."""
    if got.shape != want.shape:
        print(f"{what}: shape {got.shape} != {peer}'s {want.shape}: FAIL")
        return False
    if np.issubdtype(want.dtype, np.floating):
        # Infinities must be the same ones; the rest is compared relative
        # to the largest finite value.
        got64, want64 = got.astype(np.float64), want.astype(np.float64)
        finite = np.isfinite(want64)
        same_inf = bool(np.array_equal(got64[~finite], want64[~finite],
                                       equal_nan=True))
        scale = float(np.abs(want64[finite]).max()) if finite.any() else 0.0
        err = float(np.abs(got64[finite] - want64[finite]).max()) if finite.any() else 0.0
        rel = err / scale if scale > 0 else err
        good = (bool(rel <= rtol) and same_inf
                and not np.isnan(got64[~np.isnan(want64)]).any())
        print(f"{what} {want.dtype}{list(want.shape)}: max|ours-{peer}|/max|{peer}| "
              f"= {rel:.3g} (bound {rtol:g}): {'PASS' if good else 'FAIL'}")
    else:
        good = bool(np.array_equal(got.astype(want.dtype), want))
        vs = "" if peer == "ort" else " vs " + peer
        print(f"{what} {want.dtype}{list(want.shape)}: exact{vs}: "
              f"{'PASS' if good else 'FAIL'}")
    return good


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("inputs", nargs="*")
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--workdir")
    parser.add_argument("--compile-arg", action="append", default=[])
    parser.add_argument("--expected",
                        help="also compare output i with this .npy ({i} is replaced)")
    parser.add_argument("--no-ort", action="store_true",
                        help="compare with --expected only")
    args = parser.parse_args()

    tools = os.environ.get("MOE_TOOLS_DIR", "")
    work = args.workdir or os.path.splitext(args.model)[0] + ".out"
    os.makedirs(work, exist_ok=True)
    lib = os.path.join(work, "model.so")
    run([os.path.join(tools, "moe-compile"), args.model, "-o", lib,
         *args.compile_arg])
    signature = run([os.path.join(tools, "moe-run"), lib, "--print-signature"])
    # "name(in: f32[T, H], ...) -> (out: f32[T, H], ...)": one "name: type"
    # per output after the arrow.
    arrow = next(line for line in signature.splitlines() if "->" in line)
    outputs = len(re.findall(r"[\w.]+: \w+\[", arrow.split("->", 1)[1]))
    ours = [os.path.join(work, f"ours{i}.npy") for i in range(outputs)]
    run([os.path.join(tools, "moe-run"), lib,
         *[f"--input=@{p}" for p in args.inputs],
         *[f"--output=@{p}" for p in ours]])
    if not args.no_ort:
        run(["node", os.path.join(HERE, "ort_run.mjs"), args.model,
             os.path.join(work, "ort"), *args.inputs])

    ok = True
    for i, path in enumerate(ours):
        got = np.load(path)
        if not args.no_ort:
            ok &= compare(f"output {i}", got, np.load(os.path.join(work, f"ort{i}.npy")),
                          "ort", args.rtol)
        if args.expected:
            ok &= compare(f"output {i}", got, np.load(args.expected.replace("{i}", str(i))),
                          "expected", args.rtol)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
