#!/usr/bin/python3
"""Expert placement for expert parallelism: the busiest rank's all-to-all
bytes and the layer's time, placed by a routing profile against contiguous
blocks.

A layer with its router and constant weights (H 512, I 512, E 16, top-2,
SwiGLU, f32) whose tokens lean towards the high-numbered experts (a skewed
profile, as trained routers have: contiguous blocks put the hot experts on
one rank) is profiled on calibration tokens (`moe-compile --record-routing`,
`moe-run --routing-profile`), then compiled for P ranks with
`--expert-parallel=P` and with `--routing-profile --place-experts` as well,
and timed under `mpirun -np P moe-run --threads=1 --benchmark` (the
slowest rank's time per run) on held-out tokens, the two interleaved over
passes. Rows and bytes are counted from the routing (numpy, the same
tokens): each slot whose expert another rank owns sends its row there and
gets it back. The busiest rank (most rows to compute, most bytes to
receive) sets the layer's time; the total bytes do not depend on the
placement (rows travel per slot, whichever rank holds the expert).

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
from bf16_layer import layer_mlir, skewed_layer  # noqa: E402
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


def exchange_bytes(x, router, blocks, ranks):
    """For tokens x split over the ranks by rows: the rows each rank's
    experts compute, the dispatch bytes each rank receives (rows of other
    ranks' tokens for its experts; the return exchange sends as many back),
    and the bytes of both exchanges in total."""
    T = x.shape[0]
    top = np.argsort(-(x.astype(np.float64) @ router.T.astype(np.float64)),
                     axis=1, kind="stable")[:, :K]
    owner = np.empty(E, int)
    for r, block in enumerate(blocks):
        owner[block] = r
    home = np.repeat(np.arange(ranks), [T // ranks + (1 if r < T % ranks else 0)
                                        for r in range(ranks)])
    dest = owner[top]
    rows = np.bincount(dest.ravel(), minlength=ranks)
    remote = dest != home[:, None]
    received = np.bincount(dest[remote], minlength=ranks) * H * 4
    return rows, received, 2 * int(remote.sum()) * H * 4


def placement_of(stderr):
    m = re.search(r"layer 0: experts by rank ((?:\[[\d, ]+\] ?)+)", stderr)
    if not m:
        sys.exit(f"no placement remark:\n{stderr}")
    return [[int(e) for e in b.split(",")] for b in re.findall(r"\[([\d, ]+)\]", m[1])]


def balance(counts, ranks):
    """Busiest block's share of the tokens, contiguous and greedy-placed
    (the pass's rule), for one layer's tokens per expert."""
    n = len(counts)
    per = [n // ranks + (1 if r < n % ranks else 0) for r in range(ranks)]
    first = np.cumsum([0] + per)
    contiguous = max(sum(counts[first[r]:first[r + 1]]) for r in range(ranks))
    load, room = [0] * ranks, list(per)
    for e in sorted(range(n), key=lambda e: -counts[e]):
        r = min((r for r in range(ranks) if room[r]), key=lambda r: load[r])
        load[r] += counts[e]
        room[r] -= 1
    total = sum(counts)
    return contiguous / total, min(max(load), contiguous) / total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--work", default=os.path.join(ROOT, "build", "bench", "place"))
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    launcher = Launcher()
    compile_, moe_run = os.path.join(BIN, "moe-compile"), os.path.join(BIN, "moe-run")

    # The high-numbered experts take most tokens (H == I: one fan-in).
    weights, tokens = skewed_layer(np.random.default_rng(21), H, I, E,
                                   spread=(-2.0, 5.0), fan=np.sqrt(H))
    router = weights["router"]

    mlir = os.path.join(args.work, "layer.mlir")
    with open(mlir, "w") as f:
        f.write(layer_mlir(H, I, E, K, dtype="f32", constants=weights))
    log("== profiling")
    profile, counts = record_profile(compile_, moe_run, mlir, args.work, [tokens(4096)])

    log("== compiling")
    modules = {}
    modules["contiguous"] = os.path.join(args.work, "contiguous.so")
    run([compile_, mlir, f"--expert-parallel={args.ranks}", "-o", modules["contiguous"]])
    modules["placed"] = os.path.join(args.work, "placed.so")
    placement = placement_of(run(
        [compile_, mlir, f"--expert-parallel={args.ranks}", f"--routing-profile={profile}",
         "--place-experts", "-o", modules["placed"]]).stderr)

    x = tokens(args.tokens)
    x_path = os.path.join(args.work, "x.npy")
    np.save(x_path, x)
    times = {name: [] for name in modules}
    for p in range(args.passes):
        for name in (list(modules) if p % 2 == 0 else list(modules)[::-1]):
            out = run(launcher.command(args.ranks, [
                moe_run, modules[name], f"--input=@{x_path}", "--threads=1",
                f"--benchmark={args.runs}"])).stdout
            m = re.search(r"time: median ([\d.]+) (us|ms|s)\b", out)
            ms = float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]]
            times[name].append(ms)
            log(f"pass {p + 1} {name}: {ms:.3f} ms")

    print(f"\nSkewed synthetic layer (H {H}, I {I}, E {E}, top-{K}, f32, constant "
          f"weights), {args.ranks} ranks, {args.tokens} held-out tokens; profile on "
          f"4096 calibration tokens: tokens per expert {counts}.\n")
    print("| placement | experts per rank | rows computed per rank | dispatch MB "
          "received per rank | both exchanges MB | median ms (passes) |")
    print("|---|---|---|---|---:|---|")
    for name in modules:
        blocks = blocks_of(placement if name == "placed" else None, args.ranks)
        rows, received, total = exchange_bytes(x, router, blocks, args.ranks)
        print(f"| {name} | {' '.join(str(b) for b in blocks)} | "
              f"{' / '.join(str(r) for r in rows)} | "
              f"{' / '.join(f'{b / 1e6:.2f}' for b in received)} | {total / 1e6:.2f} | "
              f"{statistics.median(times[name]):.3f} "
              f"({', '.join(f'{t:.3f}' for t in times[name])}) |")

    rows = []
    for model in ("mixtral", "qwen2_moe"):
        path = os.path.join(ROOT, "build", "bench", "whole-model", model, "profile.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for layer in json.load(f)["layers"]:
                c, pl = balance(layer["tokens_per_expert"], args.ranks)
                rows.append((model, layer["layer"], c, pl))
    if rows:
        print(f"\nHF-style decoder profiles, {args.ranks} ranks: the busiest rank's "
              f"share of the routed tokens.\n")
        print("| model | layer | contiguous | placed |")
        print("|---|---|---:|---:|")
        for model, layer, c, pl in rows:
            print(f"| {model} | {layer} | {100 * c:.1f}% | {100 * pl:.1f}% |")


if __name__ == "__main__":
    main()
