#!/usr/bin/python3
"""End-to-end check of expert pruning and merging by a routing profile
(`moe-compile --routing-profile=FILE --prune-experts=N`, `--merge-experts=N`).

A layer with its router and constant weights (test/lib/bf16_layer.py, f32),
whose tokens lean towards some experts (as trained routers do), is compiled
with --record-routing and run on calibration tokens to record a profile.
Pruned by that profile, the layer must equal the float64 reference of the
transformed layer, the one without the N experts that took the fewest
calibration tokens (ties: the higher index), router rows included, on
held-out tokens (decode and prefill sizes) at 1e-5 of max|ref|. The output
error against the unpruned layer (relative RMS over the held-out tokens)
is printed, as is the module size saved. Merged by the same profile, the
layer must equal the reference of the layer whose N least-used experts
were folded into the kept expert with the most similar router row, each
group's weights and router rows averaged by the tokens they took. Then
misuses must fail with a message: --prune-experts without a profile or
with --merge-experts, too many experts pruned for k, a profile of another
layer shape.

    run_prune_experts.py --bin DIR --work DIR
"""
import json
import os
import sys

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
import numpy as np  # noqa: E402
from bf16_layer import layer_mlir, reference, skewed_layer  # noqa: E402
from e2e_tools import parse_args, record_profile, run  # noqa: E402

H, I, E, K = 64, 64, 8, 2
PRUNE = [1, 3]
MERGE = [1, 3]


def main():
    work, compile_, moe_run = parse_args(__doc__, "prune-experts")

    # The high-numbered experts take most tokens.
    weights, tokens = skewed_layer(np.random.default_rng(5), H, I, E)

    mlir = os.path.join(work, "layer.mlir")
    with open(mlir, "w") as f:
        f.write(layer_mlir(H, I, E, K, dtype="f32", constants=weights))
    full = os.path.join(work, "full.so")
    run([compile_, mlir, "-o", full])
    profile, counts = record_profile(compile_, moe_run, mlir, work,
                                     [tokens(64) for _ in range(3)])
    print(f"profile: tokens per expert {counts}")

    held_out = {count: tokens(count) for count in (1, 5, 300)}
    for n in PRUNE:
        # The n least-used experts, ties dropping the higher index.
        order = sorted(range(E), key=lambda e: (counts[e], -e))
        dropped = sorted(order[:n])
        kept = [e for e in range(E) if e not in dropped]
        pruned = os.path.join(work, f"pruned{n}.so")
        out = run([compile_, mlir, f"--routing-profile={profile}",
                   f"--prune-experts={n}", "-o", pruned])
        remark = "pruned experts " + ", ".join(map(str, dropped)) + f" of {E}"
        if remark not in out.stderr:
            sys.exit(f"FAIL: prune {n}: expected '{remark}' in:\n{out.stderr}")
        worst, diff_sq, full_sq = 0.0, 0.0, 0.0
        for count, x in held_out.items():
            x_path = os.path.join(work, f"x{count}.npy")
            np.save(x_path, x)
            outputs = {}
            for name, so in (("pruned", pruned), ("full", full)):
                y_path = os.path.join(work, f"y_{name}.npy")
                run([moe_run, so, f"--input=@{x_path}", f"--output=@{y_path}"])
                outputs[name] = np.load(y_path).astype(np.float64)
            want = reference(x, weights["router"][kept], weights["fc1"][kept],
                             weights["fc2"][kept], K)
            scale = np.abs(want).max()
            err = np.abs(outputs["pruned"] - want).max() / scale
            worst = max(worst, err)
            if err > 1e-5:
                sys.exit(f"FAIL: prune {n}, T = {count}: max|diff|/max|ref| "
                         f"{err:.2e} against the pruned layer's reference")
            diff_sq += ((outputs["pruned"] - outputs["full"]) ** 2).sum()
            full_sq += (outputs["full"] ** 2).sum()
        dropped_share = sum(counts[e] for e in dropped) / sum(counts)
        print(f"ok: prune {n} (experts {dropped}, {dropped_share:.1%} of the "
              f"calibration tokens): {worst:.1e} of max|ref| off the pruned "
              f"layer's float64 reference; off the unpruned layer by "
              f"{np.sqrt(diff_sq / full_sq):.1e} (relative RMS); "
              f"module {os.path.getsize(pruned) / 1024:.0f} KiB against "
              f"{os.path.getsize(full) / 1024:.0f} KiB")

    for n in MERGE:
        # The n least-used experts, each folded into the kept expert with the
        # most similar router row; groups averaged by the tokens they took.
        order = sorted(range(E), key=lambda e: (counts[e], -e))
        merged = order[:n]
        kept = [e for e in range(E) if e not in merged]
        router = weights["router"].astype(np.float64)
        unit = router / np.linalg.norm(router, axis=1, keepdims=True)
        groups = {k: [k] for k in kept}
        for e in merged:
            groups[max(kept, key=lambda k: (unit[e] @ unit[k], -k))].append(e)

        def average(array):
            rows = []
            for k in kept:
                use = np.array([counts[e] for e in groups[k]], np.float64)
                w = use / use.sum() if use.sum() > 0 else np.full(len(use), 1 / len(use))
                rows.append(sum(wi * array[e].astype(np.float64)
                                for wi, e in zip(w, groups[k])))
            return np.array(rows).astype(np.float32)

        folded = {name: average(array) for name, array in weights.items()}
        so = os.path.join(work, f"merged{n}.so")
        out = run([compile_, mlir, f"--routing-profile={profile}",
                   f"--merge-experts={n}", "-o", so])
        remark = "merged experts " + ", ".join(
            f"{e} into {k}" for k in kept for e in groups[k][1:]) + f" of {E}"
        if remark not in out.stderr:
            sys.exit(f"FAIL: merge {n}: expected '{remark}' in:\n{out.stderr}")
        worst, diff_sq, full_sq = 0.0, 0.0, 0.0
        for count, x in held_out.items():
            x_path = os.path.join(work, f"x{count}.npy")
            np.save(x_path, x)
            y_path = os.path.join(work, "y_merged.npy")
            run([moe_run, so, f"--input=@{x_path}", f"--output=@{y_path}"])
            got = np.load(y_path).astype(np.float64)
            want = reference(x, folded["router"], folded["fc1"], folded["fc2"], K)
            err = np.abs(got - want).max() / np.abs(want).max()
            worst = max(worst, err)
            if err > 1e-5:
                sys.exit(f"FAIL: merge {n}, T = {count}: max|diff|/max|ref| "
                         f"{err:.2e} against the merged layer's reference")
            full = reference(x, weights["router"], weights["fc1"], weights["fc2"], K)
            diff_sq += ((got - full) ** 2).sum()
            full_sq += (full ** 2).sum()
        print(f"ok: merge {n} ({remark}): {worst:.1e} of max|ref| off the "
              f"merged layer's float64 reference; off the unpruned layer by "
              f"{np.sqrt(diff_sq / full_sq):.1e} (relative RMS)")

    def must_fail(cmd, message, what):
        result = run(cmd, expect_ok=False)
        if message not in result.stderr:
            sys.exit(f"FAIL: {what}: expected '{message}' in:\n{result.stderr}")
        print(f"ok: {what}: exits {result.returncode}: {message}")

    bad = os.path.join(work, "bad.so")
    must_fail([compile_, mlir, "--prune-experts=2", "-o", bad],
              "--prune-experts needs --routing-profile=FILE",
              "--prune-experts without a profile")
    must_fail([compile_, mlir, f"--routing-profile={profile}",
               "--prune-experts=1", "--merge-experts=1", "-o", bad],
              "use one of them", "--prune-experts with --merge-experts")
    must_fail([compile_, mlir, f"--routing-profile={profile}",
               f"--prune-experts={E - K + 1}", "-o", bad],
              f"removing {E - K + 1} of {E} experts leaves fewer than k = {K}",
              "too many experts pruned")
    other = os.path.join(work, "other.json")
    with open(other, "w") as f:
        json.dump(dict(format="moe-routing-profile", version=1, records=1,
                       layers=[dict(layer=0, experts=16, top_k=2, records=1,
                                    tokens=0, empty_slots=0,
                                    tokens_per_expert=[0] * 16,
                                    coactivation=[[0] * 16] * 16)]), f)
    must_fail([compile_, mlir, f"--routing-profile={other}", "--prune-experts=1",
               "-o", bad],
              "the routing profile has 16 experts for it, the layer routes to 8",
              "a profile of another model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
