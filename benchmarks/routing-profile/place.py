#!/usr/bin/python3
"""Expert placement for expert parallelism: the all-to-all bytes and the
layer's time, placed by a routing profile against contiguous blocks, with
a row per token and expert and with a row per token and rank.

Two synthetic layers with their routers and constant weights (H 512, I
512, E 16, top-2, SwiGLU, f32):
  skewed   tokens lean towards the high-numbered experts (as trained
           routers do): contiguous blocks put the hot experts on one rank;
  paired   tokens choose experts j and j + 8 together (about 70%):
           contiguous blocks split every pair.
Each is profiled on calibration tokens (`moe-compile --record-routing`,
`moe-run --routing-profile`), then compiled for P ranks four ways:

  contiguous         --expert-parallel=P (a row per token and expert)
  balanced           ... --routing-profile --place-experts
  contiguous, rank   --expert-parallel=P --ep-dispatch=rank (a row per token
                     and rank, with the token's ids and weights)
  co-activated, rank ... --ep-dispatch=rank --routing-profile --place-experts
                     (balanced, then co-activated pairs put on one rank)

and timed under `mpirun -np P moe-run --threads=1 --benchmark` (the
slowest rank's time per run) on held-out tokens, interleaved over passes.
The bytes are the runtime's counts of what the exchanges moved between
ranks per run (moe-run's "all-to-all per run" line: all ranks together,
and the rank that received most); rows computed per rank come from the
routing (numpy, the same tokens).

Where the whole-model benchmark's decoder profiles exist
(build/bench/whole-model/<model>/profile.json, from
benchmarks/routing-profile/prune.py), their per-layer token counts are
placed too and the busiest rank's share of the tokens reported (random
router weights: little skew).

  place.py [--ranks 2] [--tokens 1024] [--passes 3] [--runs 20] [--work DIR]

Needs build/bin (scripts/build.sh) and mpirun.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin")
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
sys.dont_write_bytecode = True
import numpy as np  # noqa: E402
from bf16_layer import layer_mlir, paired_layer, skewed_layer  # noqa: E402
from e2e_tools import record_profile  # noqa: E402
from run_ep_case import Launcher  # noqa: E402

H, I, E, K = 512, 512, 16, 2


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL ({result.returncode}): {' '.join(cmd)}\n"
                 f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def blocks_of(placement, ranks):
    """Rank r's experts: contiguous blocks, or the remark's placement."""
    if placement is not None:
        return placement
    per = [E // ranks + (1 if r < E % ranks else 0) for r in range(ranks)]
    first = np.cumsum([0] + per)
    return [list(range(first[r], first[r + 1])) for r in range(ranks)]


def rows_per_rank(x, router, blocks, ranks):
    """The rows each rank's experts compute for tokens x."""
    top = np.argsort(-(x.astype(np.float64) @ router.T.astype(np.float64)),
                     axis=1, kind="stable")[:, :K]
    owner = np.empty(E, int)
    for r, block in enumerate(blocks):
        owner[block] = r
    return np.bincount(owner[top].ravel(), minlength=ranks)


def placement_of(stderr):
    m = re.search(r"layer 0: experts by rank ((?:\[[\d, ]+\] ?)+)", stderr)
    if not m:
        sys.exit(f"no placement remark:\n{stderr}")
    return [[int(e) for e in b.split(",")] for b in re.findall(r"\[([\d, ]+)\]", m[1])]


def place_profile(model_dir, ranks, work):
    """-moe-place-experts's remarks for an exported decoder and its
    profile: per layer, the busiest rank's tokens and the rows sent per
    token and rank (from the profile's pairs), contiguous and placed."""
    mlir = os.path.join(work, os.path.basename(model_dir) + ".mlir")
    run([os.path.join(BIN, "moe-import-onnx"),
         os.path.join(model_dir, "export", "model.onnx"), "-o", mlir])
    err = run([os.path.join(BIN, "moe-opt"), mlir, "--moe-fuse-router",
               f"--moe-place-experts=profile={os.path.join(model_dir, 'profile.json')} "
               f"ranks={ranks} co-activation", "-o", os.devnull]).stderr
    return [tuple(int(v) for v in m) for m in re.findall(
        r"layer (\d+): experts by rank .*; busiest rank's tokens in the profile "
        r"(\d+) contiguous, (\d+) placed; rows sent per token and rank (\d+) "
        r"contiguous, (\d+) placed", err)]


VARIANTS = [
    # (name, extra moe-compile flags, placed by the profile)
    ("contiguous", [], False),
    ("balanced", ["--place-experts"], True),
    ("contiguous, rank", ["--ep-dispatch=rank"], False),
    ("co-activated, rank", ["--ep-dispatch=rank", "--place-experts"], True),
]


def bench_layer(name, weights, tokens, args, launcher, compile_, moe_run):
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)
    router = weights["router"]
    mlir = os.path.join(work, "layer.mlir")
    with open(mlir, "w") as f:
        f.write(layer_mlir(H, I, E, K, dtype="f32", constants=weights))
    log(f"== {name}: profiling")
    profile, counts = record_profile(compile_, moe_run, mlir, work, [tokens(4096)])

    log(f"== {name}: compiling")
    modules, placements = {}, {}
    for variant, flags, placed in VARIANTS:
        path = os.path.join(work, variant.replace(", ", "_").replace("-", "_") + ".so")
        if placed:
            flags = flags + [f"--routing-profile={profile}"]
        out = run([compile_, mlir, f"--expert-parallel={args.ranks}", *flags,
                   "-o", path])
        modules[variant] = path
        placements[variant] = placement_of(out.stderr) if placed else None

    x = tokens(args.tokens)
    x_path = os.path.join(work, "x.npy")
    np.save(x_path, x)
    times = {v: [] for v in modules}
    moved = {}
    for p in range(args.passes):
        for variant in (list(modules) if p % 2 == 0 else list(modules)[::-1]):
            out = run(launcher.command(args.ranks, [
                moe_run, modules[variant], f"--input=@{x_path}", "--threads=1",
                f"--benchmark={args.runs}"])).stdout
            m = re.search(r"time: median ([\d.]+) (us|ms|s)\b", out)
            ms = float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]]
            times[variant].append(ms)
            m = re.search(r"all-to-all per run: (\d+) exchanges per rank, (\d+) bytes "
                          r"between ranks in all, at most (\d+) received", out)
            if not m:
                sys.exit(f"no all-to-all line in moe-run's output:\n{out}")
            moved[variant] = (int(m[1]), int(m[2]) / 1e6, int(m[3]) / 1e6)
            log(f"pass {p + 1} {variant}: {ms:.3f} ms")

    print(f"\n{name.capitalize()} synthetic layer (H {H}, I {I}, E {E}, top-{K}, f32, "
          f"constant weights), {args.ranks} ranks, {args.tokens} held-out tokens; "
          f"profile on 4096 calibration tokens: tokens per expert {counts}.\n")
    print("| placement, dispatch | experts per rank | rows computed per rank | "
          "exchanges per rank | MB between ranks (all) | MB received (busiest rank) "
          "| median ms (passes) | vs contiguous |")
    print("|---|---|---|---:|---:|---:|---|---:|")
    base = statistics.median(times["contiguous"])
    for variant in modules:
        blocks = blocks_of(placements[variant], args.ranks)
        rows = rows_per_rank(x, router, blocks, args.ranks)
        exchanges, total, busiest = moved[variant]
        median = statistics.median(times[variant])
        print(f"| {variant} | {' '.join(str(b) for b in blocks)} | "
              f"{' / '.join(str(r) for r in rows)} | {exchanges} | {total:.3f} | "
              f"{busiest:.3f} | {median:.3f} "
              f"({', '.join(f'{t:.3f}' for t in times[variant])}) | "
              f"{base / median:.2f}x |")


def main():
    global I
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--layers", default="skewed,paired")
    parser.add_argument("--inter", type=int, default=I,
                        help="the experts' intermediate size (smaller: the "
                             "exchanges weigh more against the experts)")
    parser.add_argument("--work", default=os.path.join(ROOT, "build", "bench", "place"))
    args = parser.parse_args()
    I = args.inter
    os.makedirs(args.work, exist_ok=True)
    launcher = Launcher()
    compile_, moe_run = os.path.join(BIN, "moe-compile"), os.path.join(BIN, "moe-run")

    layers = {
        # The high-numbered experts take most tokens (H == I: one fan-in).
        "skewed": lambda: skewed_layer(np.random.default_rng(21), H, I, E,
                                       spread=(-2.0, 5.0), fan=np.sqrt(H)),
        "paired": lambda: paired_layer(np.random.default_rng(22), H, I, E,
                                       fan=np.sqrt(H)),
    }
    for name in filter(None, args.layers.split(",")):
        if name not in layers:
            sys.exit(f"unknown layer {name!r} (skewed, paired)")
        weights, tokens = layers[name]()
        bench_layer(name, weights, tokens, args, launcher, compile_, moe_run)

    rows = []
    for model in ("mixtral", "qwen2_moe"):
        model_dir = os.path.join(ROOT, "build", "bench", "whole-model", model)
        if not os.path.exists(os.path.join(model_dir, "profile.json")):
            continue
        with open(os.path.join(model_dir, "profile.json")) as f:
            layers = {l["layer"]: l for l in json.load(f)["layers"]}
        for layer, busy_c, busy_p, rows_c, rows_p in place_profile(
                model_dir, args.ranks, args.work):
            total = sum(layers[layer]["tokens_per_expert"])
            rows.append((model, layer, layers[layer]["top_k"], busy_c / total,
                         busy_p / total, rows_c, rows_p))
    if rows:
        print(f"\nHF-style decoder profiles, {args.ranks} ranks, placed with "
              f"co-activation (-moe-place-experts co-activation): the busiest rank's "
              f"share of the routed tokens, and the rows sent per token and rank "
              f"(estimated from the profile's pairs: exact for k <= 2, a lower "
              f"bound above).\n")
        print("| model | layer | k | busiest share contiguous | placed | rows contiguous "
              "| placed | change |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for model, layer, k, bc, bp, rc, rp in rows:
            print(f"| {model} | {layer} | {k} | {100 * bc:.1f}% | {100 * bp:.1f}% | "
                  f"{rc} | {rp} | {100 * (rp - rc) / rc:+.0f}% |")


if __name__ == "__main__":
    main()
