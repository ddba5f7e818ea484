#!/usr/bin/env python3
"""Overhead of a moe_mlir Python call over the runtime's C API.

  PYTHONPATH=build/python /usr/bin/python3 benchmarks/python/overhead.py
      [--tokens 1] [--iterations 20000] [--repeats 5] [--threads N]

Compiles the example layer (examples/ort_swiglu_layer.mlir: H=64, 4 experts,
I=256, top-2) and times, on the same inputs:

  C       a C loop over moe_invoke() (inputs described once, outputs
          allocated once: what a C caller pays per call, the layer's work
          included)
  numpy   module(*arrays): the Python call with numpy arrays
  torch   module(*tensors): torch CPU tensors in, torch tensors out
  named   module(**arrays): inputs by name

Each is the best of --repeats runs of --iterations calls; the overhead is
its difference from C.
"""

import argparse
import os
import pathlib
import time

import numpy as np

import moe_mlir

ROOT = pathlib.Path(__file__).resolve().parents[2]


def per_call(fn, iterations, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter() - start) / iterations)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        moe_mlir.set_num_threads(args.threads)

    layer = moe_mlir.compile(ROOT / "examples" / "ort_swiglu_layer.mlir")
    rng = np.random.default_rng(0)
    shapes = [(args.tokens, 64), (args.tokens, 4), (4, 512, 64), (4, 512), (4, 64, 256), (4, 64)]
    arrays = [(0.1 * rng.standard_normal(s)).astype(np.float32) for s in shapes]
    named = dict(zip(layer.signature.input_names, arrays))

    results = {}
    best_c = float("inf")
    for _ in range(args.repeats):
        best_c = min(best_c, layer.time_c_invoke(*arrays, iterations=args.iterations))
    results["C"] = best_c
    results["numpy"] = per_call(lambda: layer(*arrays), args.iterations, args.repeats)
    try:
        import torch
        tensors = [torch.from_numpy(a) for a in arrays]
        results["torch"] = per_call(lambda: layer(*tensors), args.iterations, args.repeats)
    except ImportError:
        pass
    results["named"] = per_call(lambda: layer(**named), args.iterations, args.repeats)

    print(f"example layer, T={args.tokens}, {moe_mlir.get_num_threads()} threads, "
          f"{args.iterations} calls x {args.repeats}")
    print(f"{'path':8s} {'us/call':>10s} {'overhead us':>12s}")
    for name, seconds in results.items():
        overhead = "" if name == "C" else f"{(seconds - best_c) * 1e6:12.2f}"
        print(f"{name:8s} {seconds * 1e6:10.2f} {overhead}")


if __name__ == "__main__":
    main()
