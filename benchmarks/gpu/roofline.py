#!/usr/bin/python3
"""Roofline model of the GPU benchmark's layers on H100 and H200 (a model,
not a measurement): for each model and token count T, the bytes a layer
must move (the bf16 fc1 + fc2 weights of the experts that receive a token,
x and y in bf16, the float32 logits) and its matmul FLOPs (2 x routed slots
x 3 x H x I), and the time each bound alone gives:

    memory time  = bytes / HBM bandwidth       (3.35 TB/s H100 SXM, 4.8 H200)
    compute time = FLOPs / dense bf16 peak     (989 TFLOP/s both)
    model time   = max(memory, compute)

Without a routing, the experts touched are the expectation for uniform
random routing, E (1 - (1 - k/E)^T). report.py uses the same functions with
the measured run's own counts to put "% of the roofline" next to measured
times.

    roofline.py                 the table, markdown
    roofline.py --models a,b --tokens 1,16
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import models as M  # noqa: E402

# Datasheet numbers (dense bf16 tensor-core peak, without sparsity).
GPUS = {
    "H100": dict(desc="H100 SXM", bandwidth=3.35e12, bf16_flops=989e12),
    "H200": dict(desc="H200", bandwidth=4.8e12, bf16_flops=989e12),
}


def gpu_of(name):
    """The GPUS key for a device name ("NVIDIA H100 80GB HBM3"), or None."""
    for key in GPUS:
        if key in (name or ""):
            return key
    return None


def expected_work(m, T):
    """work_of's counts for uniform random routing of T tokens."""
    H, I, E, k = m["H"], m["I"], m["E"], m["k"]
    touched = E * (1.0 - (1.0 - k / E) ** T)
    per_expert = 2 * 3 * H * I
    act = 2 * T * H * 2 + 4 * T * E
    return {"T": T, "experts_touched": touched, "slots": T * k,
            "bytes": touched * per_expert + act,
            "flops": 2 * T * k * 3 * H * I}


def model_ms(work, gpu):
    """(memory ms, compute ms, model ms) of `work` on GPUS[gpu]."""
    g = GPUS[gpu]
    memory = work["bytes"] / g["bandwidth"] * 1e3
    compute = work["flops"] / g["bf16_flops"] * 1e3
    return memory, compute, max(memory, compute)


def table(names, tokens):
    head = ("| model | T | experts touched | MB moved | GFLOP "
            "| H100 ms (bound) | H200 ms (bound) |")
    out = [head, "|" + "---|" * head.count(" |")]
    for name in names:
        m = M.model(name)
        for T in tokens:
            w = expected_work(m, T)
            cells = [m["desc"], str(T), "%.1f/%d" % (w["experts_touched"],
                                                    m["E"]),
                     "%.0f" % (w["bytes"] / 1e6), "%.1f" % (w["flops"] / 1e9)]
            for gpu in ("H100", "H200"):
                memory, compute, t = model_ms(w, gpu)
                cells.append("%.4f (%s)" % (t, "memory" if memory >= compute
                                             else "compute"))
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated (default: all)")
    ap.add_argument("--tokens", help="comma-separated (default: %s)"
                    % ",".join(map(str, M.TOKENS)))
    args = ap.parse_args()
    names = args.models.split(",") if args.models else list(M.MODELS)
    tokens = ([int(t) for t in args.tokens.split(",")] if args.tokens
              else M.TOKENS)
    print("Roofline model (not a measurement): %s" % ", ".join(
        "%s %.2f TB/s, %.0f TFLOP/s bf16" % (g["desc"], g["bandwidth"] / 1e12,
                                            g["bf16_flops"] / 1e12)
        for g in GPUS.values()))
    print()
    print(table(names, tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
