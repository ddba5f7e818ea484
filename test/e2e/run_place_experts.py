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

Then a layer whose tokens choose experts j and j + 4 together (contiguous
blocks split every pair) is compiled with a row per token and rank
(`--ep-dispatch=rank`), contiguous and with `--place-experts` (which then
groups co-activated experts). Both must compute what the single-process
module computes; the remark's rows must fall; and the bytes the runtime
counts between the ranks per run (`moe-run --benchmark`) must equal
numpy's count from the routing exactly, for both modules and for the
per-expert dispatch, and be lowest with the placement.
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
from bf16_layer import layer_mlir, paired_layer, reference, skewed_layer  # noqa: E402
from e2e_tools import parse_args, record_profile, run  # noqa: E402
from run_ep_case import Launcher  # noqa: E402

H, I, E, K, RANKS = 64, 64, 8, 2, 2
# The partition rule's blocks (E divisible by RANKS here).
CONTIGUOUS = [list(range(r * E // RANKS, (r + 1) * E // RANKS)) for r in range(RANKS)]


def top_k(x, router):
    """Each token's K experts (float64 logits, ties to the lower expert)."""
    return np.argsort(-(x.astype(np.float64) @ router.T.astype(np.float64)),
                      axis=1, kind="stable")[:, :K]


def blocks_of(remark):
    """The experts by rank of the remark's layer 0, or None."""
    m = re.search(r"layer 0: experts by rank ((?:\[[\d, ]+\] ?)+)", remark)
    return m and [[int(e) for e in b.split(",")]
                  for b in re.findall(r"\[([\d, ]+)\]", m[1])]


def run_ep(launcher, moe_run, so, x_path, y_path):
    """The EP module's gathered output for x under mpirun -np RANKS."""
    run(launcher.command(RANKS, [moe_run, so, f"--input=@{x_path}",
                                 f"--output=@{y_path}"]))
    return np.load(y_path).astype(np.float64)


def rows_per_rank(x, router, blocks):
    """Rows each rank's block of experts receives for tokens x."""
    top = top_k(x, router)
    return [int(np.isin(top, block).sum()) for block in blocks]


def exchange_bytes(x, router, blocks, dispatch):
    """Bytes all ranks send each other per run for tokens x split over the
    ranks by the token rule: the counts, the rows of other ranks' experts
    (per slot, or per distinct rank with 2k ids and weights), and the
    results back."""
    T = x.shape[0]
    top = top_k(x, router)
    owner = np.empty(E, int)
    for r, block in enumerate(blocks):
        owner[block] = r
    home = np.repeat(np.arange(RANKS),
                     [T // RANKS + (1 if r < T % RANKS else 0) for r in range(RANKS)])
    row = H * 4
    if dispatch == "expert":
        remote = int((owner[top] != home[:, None]).sum())
        counts = RANKS * (RANKS - 1) * (E // RANKS) * 4
        return counts + 2 * remote * row
    remote = sum(len(set(owner[top[t]]) - {home[t]}) for t in range(T))
    counts = RANKS * (RANKS - 1) * 4
    return counts + remote * (row + 2 * K * 4 + row)


def measured_bytes(launcher, moe_run, so, x_path):
    out = run(launcher.command(RANKS, [moe_run, so, f"--input=@{x_path}",
                                       "--benchmark=2", "--threads=1"])).stdout
    m = re.search(r"all-to-all per run: \d+ exchanges per rank, (\d+) bytes "
                  r"between ranks in all", out)
    if not m:
        sys.exit(f"FAIL: no all-to-all line from moe-run --benchmark:\n{out}")
    return int(m[1])


def check_rank_dispatch(work, compile_, moe_run, launcher):
    """Co-activated experts placed together, rows sent once per rank."""
    weights, tokens = paired_layer(np.random.default_rng(11), H, I, E)
    mlir = os.path.join(work, "paired.mlir")
    with open(mlir, "w") as f:
        f.write(layer_mlir(H, I, E, K, dtype="f32", constants=weights))
    single = os.path.join(work, "paired_single.so")
    run([compile_, mlir, "-o", single])
    profile_dir = os.path.join(work, "paired")
    os.makedirs(profile_dir, exist_ok=True)
    profile, counts = record_profile(compile_, moe_run, mlir, profile_dir,
                                     [tokens(256)])
    modules = {}
    for name, flags in [
            ("expert", []),
            ("rank", ["--ep-dispatch=rank"]),
            ("rank_placed", ["--ep-dispatch=rank", f"--routing-profile={profile}",
                             "--place-experts"])]:
        modules[name] = os.path.join(work, f"paired_{name}.so")
        remark = run([compile_, mlir, f"--expert-parallel={RANKS}", *flags,
                      "-o", modules[name]]).stderr
    m = re.search(r"layer 0: experts by rank .*; rows sent per token and rank "
                  r"(\d+) contiguous, (\d+) placed", remark)
    if not m or not int(m[2]) < int(m[1]):
        sys.exit(f"FAIL: no co-activation remark with fewer rows placed:\n{remark}")
    placed_blocks = blocks_of(remark)

    held_out = tokens(300)
    x_path = os.path.join(work, "paired_x.npy")
    np.save(x_path, held_out)
    y_single = os.path.join(work, "paired_y_single.npy")
    run([moe_run, single, f"--input=@{x_path}", f"--output=@{y_single}"])
    want = np.load(y_single).astype(np.float64)
    moved = {}
    for name, so in modules.items():
        got = run_ep(launcher, moe_run, so, x_path,
                     os.path.join(work, f"paired_y_{name}.npy"))
        err = np.abs(got - want).max() / np.abs(want).max()
        if not err <= 1e-5:
            sys.exit(f"FAIL: paired {name} under mpirun -np {RANKS}: {err:.3g} "
                     f"of max|out| off the single-process module")
        blocks = placed_blocks if name == "rank_placed" else CONTIGUOUS
        expected = exchange_bytes(held_out, weights["router"], blocks,
                                  "expert" if name == "expert" else "rank")
        moved[name] = measured_bytes(launcher, moe_run, so, x_path)
        if moved[name] != expected:
            sys.exit(f"FAIL: paired {name}: the runtime counted {moved[name]} bytes "
                     f"between ranks per run, numpy's routing gives {expected}")
        print(f"ok: paired {name}, mpirun -np {RANKS}: {err:.2g} off the single "
              f"process, {moved[name]} bytes between ranks per run (= numpy)")
    # Contiguous blocks split every pair: a row per rank then saves little
    # and carries 2k ids and weights more per row; grouped, far fewer rows.
    if not moved["rank_placed"] < min(moved["rank"], moved["expert"]):
        sys.exit(f"FAIL: bytes per run {moved}: co-activated placement should "
                 f"send fewer than either contiguous module")
    print(f"ok: paired profile {counts}; blocks {placed_blocks}; bytes per run "
          f"{moved['expert']} per expert, {moved['rank']} per rank, "
          f"{moved['rank_placed']} per rank placed")


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
    m = re.search(r"layer 0: experts by rank .*; busiest "
                  r"rank's tokens in the profile (\d+) contiguous, (\d+) placed",
                  remark)
    if not m:
        sys.exit(f"FAIL: no placement remark from moe-compile:\n{remark}")
    blocks = blocks_of(remark)
    contiguous_load, placed_load = int(m[1]), int(m[2])
    half = E // RANKS
    expected = [sum(counts[e] for e in b) for b in CONTIGUOUS]
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
        got = run_ep(launcher, moe_run, so, x_path,
                     os.path.join(work, f"y_{name}.npy"))
        err = np.abs(got - want).max() / np.abs(want).max()
        ref_err = np.abs(got - ref).max() / np.abs(ref).max()
        if not (err <= 1e-5 and ref_err <= 1e-5):
            sys.exit(f"FAIL: {name} under mpirun -np {RANKS}: {err:.3g} of "
                     f"max|out| off the single-process module, {ref_err:.3g} "
                     f"off float64")
        print(f"ok: {name}, mpirun -np {RANKS}: {err:.2g} off the single "
              f"process, {ref_err:.2g} off float64")
    before = rows_per_rank(held_out, weights["router"], CONTIGUOUS)
    after = rows_per_rank(held_out, weights["router"], blocks)
    if not max(after) < max(before):
        sys.exit(f"FAIL: held-out rows per rank {after} placed, {before} "
                 f"contiguous: the busiest rank does not receive fewer")
    print(f"ok: profile {counts}; blocks {blocks}; held-out rows per rank "
          f"{before} contiguous, {after} placed")

    check_rank_dispatch(work, compile_, moe_run, launcher)

    for flags, message in [
            (["--routing-profile=" + profile, "--place-experts"],
             "--place-experts places experts on the ranks of --expert-parallel"),
            ([f"--expert-parallel={RANKS}", "--place-experts"],
             "--place-experts needs --routing-profile=FILE"),
            ([f"--expert-parallel={RANKS}", "--ep-dispatch=token"],
             "--ep-dispatch must be 'expert' or 'rank', got 'token'"),
            (["--ep-dispatch=rank"],
             "--ep-dispatch chooses how --expert-parallel=P (P >= 2)")]:
        bad = run([compile_, mlir, "-o", os.path.join(work, "bad.so")] + flags,
                  expect_ok=False)
        if message not in bad.stderr:
            sys.exit(f"FAIL: {' '.join(flags)}: expected '{message}' in\n{bad.stderr}")
    print("PASS")


if __name__ == "__main__":
    main()
