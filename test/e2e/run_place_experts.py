#!/usr/bin/python3
"""End-to-end check of expert placement for expert parallelism
(`moe-compile --expert-parallel=2 --routing-profile=F --place-experts`,
docs/ExpertParallel.md "Placement").

A layer with its router and constant weights whose tokens lean towards the
high-numbered experts (a skewed profile: contiguous blocks put the hot
experts on one rank) is profiled on calibration tokens, then compiled for
two ranks with and without placement. Under `mpirun -np 2` both must
compute what the single-process module computes (1e-5 of max|out|) and the
float64 reference; the remark must report a busier contiguous rank than
placed one, and numpy's count of the rows each rank receives on held-out
tokens must fall for the busiest rank with the blocks the remark names.
Misuses fail with a message.

    run_place_experts.py --bin DIR --work DIR [--mpirun PATH]
"""
import os
import re
import sys

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
from bf16_layer import layer_mlir, reference, skewed_layer  # noqa: E402
from e2e_tools import parse_args, record_profile, run  # noqa: E402
from run_ep_case import Launcher  # noqa: E402

H, I, E, K, RANKS = 64, 64, 8, 2, 2


def rows_per_rank(x, router, blocks):
    """Rows each rank's block of experts receives for tokens x."""
    top = np.argsort(-(x.astype(np.float64) @ router.T.astype(np.float64)),
                     axis=1, kind="stable")[:, :K]
    return [int(np.isin(top, block).sum()) for block in blocks]


def main():
    args = sys.argv[1:]
    mpirun = None
    if "--mpirun" in args:
        i = args.index("--mpirun")
        mpirun = args[i + 1]
        del args[i:i + 2]
    sys.argv[1:] = args
    work, compile_, moe_run = parse_args(__doc__, "place-experts")
    launcher = Launcher(mpirun)

    # The high-numbered experts take most tokens.
    weights, tokens = skewed_layer(np.random.default_rng(9), H, I, E)

    mlir = os.path.join(work, "layer.mlir")
    with open(mlir, "w") as f:
        f.write(layer_mlir(H, I, E, K, dtype="f32", constants=weights))
    single = os.path.join(work, "single.so")
    run([compile_, mlir, "-o", single])
    profile, counts = record_profile(compile_, moe_run, mlir, work, [tokens(256)])

    placed = os.path.join(work, "placed.so")
    remark = run([compile_, mlir, f"--expert-parallel={RANKS}",
                  f"--routing-profile={profile}", "--place-experts",
                  "-o", placed]).stderr
    m = re.search(r"layer 0: experts by rank ((?:\[[\d, ]+\] ?)+); busiest "
                  r"rank's tokens in the profile (\d+) contiguous, (\d+) placed",
                  remark)
    if not m:
        sys.exit(f"FAIL: no placement remark from moe-compile:\n{remark}")
    blocks = [[int(e) for e in b.split(",")] for b in re.findall(r"\[([\d, ]+)\]", m[1])]
    contiguous_load, placed_load = int(m[2]), int(m[3])
    half = E // RANKS
    contiguous_blocks = [list(range(r * half, (r + 1) * half)) for r in range(RANKS)]
    expected = [sum(counts[e] for e in b) for b in contiguous_blocks]
    if contiguous_load != max(expected) or not placed_load < contiguous_load:
        sys.exit(f"FAIL: remark says {contiguous_load} contiguous, {placed_load} "
                 f"placed; the profile {counts} gives {expected} contiguous")
    if sorted(e for b in blocks for e in b) != list(range(E)) or \
            any(len(b) != half for b in blocks):
        sys.exit(f"FAIL: the placed blocks {blocks} are not a partition of "
                 f"the {E} experts into {RANKS} blocks of {half}")
    contiguous = os.path.join(work, "contiguous.so")
    run([compile_, mlir, f"--expert-parallel={RANKS}", "-o", contiguous])

    held_out = tokens(300)
    x_path = os.path.join(work, "x.npy")
    np.save(x_path, held_out)
    y_single = os.path.join(work, "y_single.npy")
    run([moe_run, single, f"--input=@{x_path}", f"--output=@{y_single}"])
    want = np.load(y_single).astype(np.float64)
    ref = reference(held_out, weights["router"], weights["fc1"], weights["fc2"], K)
    for name, so in [("contiguous", contiguous), ("placed", placed)]:
        y_path = os.path.join(work, f"y_{name}.npy")
        run(launcher.command(RANKS, [moe_run, so, f"--input=@{x_path}",
                                     f"--output=@{y_path}"]))
        got = np.load(y_path).astype(np.float64)
        err = np.abs(got - want).max() / np.abs(want).max()
        ref_err = np.abs(got - ref).max() / np.abs(ref).max()
        if not (err <= 1e-5 and ref_err <= 1e-5):
            sys.exit(f"FAIL: {name} under mpirun -np {RANKS}: {err:.3g} of "
                     f"max|out| off the single-process module, {ref_err:.3g} "
                     f"off float64")
        print(f"ok: {name}, mpirun -np {RANKS}: {err:.2g} off the single "
              f"process, {ref_err:.2g} off float64")
    before = rows_per_rank(held_out, weights["router"], contiguous_blocks)
    after = rows_per_rank(held_out, weights["router"], blocks)
    if not max(after) < max(before):
        sys.exit(f"FAIL: held-out rows per rank {after} placed, {before} "
                 f"contiguous: the busiest rank does not receive fewer")
    print(f"ok: profile {counts}; blocks {blocks}; held-out rows per rank "
          f"{before} contiguous, {after} placed")

    for flags, message in [
            (["--routing-profile=" + profile, "--place-experts"],
             "--place-experts places experts on the ranks of --expert-parallel"),
            ([f"--expert-parallel={RANKS}", "--place-experts"],
             "--place-experts needs --routing-profile=FILE")]:
        bad = run([compile_, mlir, "-o", os.path.join(work, "bad.so")] + flags,
                  expect_ok=False)
        if message not in bad.stderr:
            sys.exit(f"FAIL: {' '.join(flags)}: expected '{message}' in\n{bad.stderr}")
    print("PASS")


if __name__ == "__main__":
    main()
