#!/usr/bin/python3
"""End-to-end check of routing profiles (docs/RoutingProfiles.md).

A function of two MoE layers (8 experts top-2, then 4 experts top-1), whose
router logits are inputs, is compiled with `moe-compile --record-routing`
and run by `moe-run --routing-profile=FILE` on three token sets. After
every run the profile must hold exactly the counts numpy computes from the
logits (tokens per expert, pairs of experts chosen together, per layer),
added up over the runs so far (profiles merge). Then the failures: a
module compiled without --record-routing, a profile that is not one, and a
profile whose layers have other shapes must each exit non-zero with a
message and leave the file as it was.

Pre-gating: a function of three layers whose routers are weights (the
router MatMul fused into the route, as whole models have it), each layer's
output returned. Its profile must count, for layers 1 and 2, how many of
the experts chosen from the layer's input (the previous layer's output)
are among those the same router picks from the previous layer's input,
as numpy computes them from the outputs moe-run wrote.

    run_routing_profile.py --bin DIR --work DIR
"""
import json
import os
import sys

import numpy as np

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
from e2e_tools import parse_args, run  # noqa: E402

H, I = 32, 16
LAYERS = [(8, 2), (4, 1)]  # (experts, top-k)


def layer_mlir():
    args = ["%x: tensor<?x32xf32>"]
    body = []
    value = "%x"
    for n, (E, k) in enumerate(LAYERS):
        args += [f"%logits{n}: tensor<?x{E}xf32>",
                 f"%fc1_{n}: tensor<{E}x{2 * I}x{H}xf32>",
                 f"%fc2_{n}: tensor<{E}x{H}x{I}xf32>"]
        body.append(
            f"  %y{n} = moe.layer {value}, %logits{n} fc1 %fc1_{n} fc2 %fc2_{n}\n"
            f"      {{k = {k} : i64, activation = #moe.activation<swiglu>,\n"
            f"       swiglu_fusion = #moe.swiglu_fusion<interleaved>}}\n"
            f"      : (tensor<?x{H}xf32>, tensor<?x{E}xf32>, "
            f"tensor<{E}x{2 * I}x{H}xf32>, tensor<{E}x{H}x{I}xf32>)\n"
            f"      -> tensor<?x{H}xf32>")
        value = f"%y{n}"
    return ("func.func @two_layers(" + ", ".join(args) +
            ") -> tensor<?x32xf32> {\n" + "\n".join(body) +
            f"\n  return {value} : tensor<?x32xf32>\n}}\n")


GUESS_LAYERS, GUESS_E, GUESS_K = 3, 8, 2
SEED = 3
NO_GUESS = dict(tokens=0, slots=0, hits=0, exact_tokens=0)


def guess_mlir():
    """Layers routed by their router weights; returns every layer's output."""
    args = ["%x: tensor<?x32xf32>"]
    body = []
    value = "%x"
    E = GUESS_E
    for n in range(GUESS_LAYERS):
        args += [f"%router{n}: tensor<{E}x{H}xf32>",
                 f"%fc1_{n}: tensor<{E}x{2 * I}x{H}xf32>",
                 f"%fc2_{n}: tensor<{E}x{H}x{I}xf32>"]
        body.append(
            f"  %y{n} = moe.layer {value} router_weight %router{n} fc1 %fc1_{n} "
            f"fc2 %fc2_{n}\n"
            f"      {{k = {GUESS_K} : i64, normalize, "
            f"activation = #moe.activation<swiglu>,\n"
            f"       swiglu_fusion = #moe.swiglu_fusion<interleaved>}}\n"
            f"      : (tensor<?x{H}xf32>, tensor<{E}x{H}xf32>, "
            f"tensor<{E}x{2 * I}x{H}xf32>, tensor<{E}x{H}x{I}xf32>)\n"
            f"      -> tensor<?x{H}xf32>")
        value = f"%y{n}"
    results = ", ".join(f"%y{n}" for n in range(GUESS_LAYERS))
    types = ", ".join(["tensor<?x32xf32>"] * GUESS_LAYERS)
    return ("func.func @three_layers(" + ", ".join(args) + f") -> ({types}) {{\n"
            + "\n".join(body) + f"\n  return {results} : {types}\n}}\n")


def top_k(logits, k):
    """Per token the k largest logits' experts, as a set; fails on a near
    tie (relative to the token's logits, whose float32 rounding it is),
    where float32 summation order could pick either expert."""
    order = np.argsort(-logits, axis=1, kind="stable")
    ranked = np.take_along_axis(logits, order, axis=1)
    gap = (ranked[:, k - 1] - ranked[:, k]) / np.abs(logits).max(axis=1)
    if gap.min() < 1e-4:
        sys.exit(f"FAIL: test inputs have a near tie in top-{k} "
                 f"(relative gap {gap.min():.2e}); choose another seed")
    return [set(row) for row in order[:, :k].tolist()]


def check_pre_gating(compile_, moe_run, work):
    # Its own seed: one whose logits have no near ties (top_k checks).
    rng = np.random.default_rng(SEED)
    mlir = os.path.join(work, "three_layers.mlir")
    with open(mlir, "w") as f:
        f.write(guess_mlir())
    so = os.path.join(work, "three_layers.so")
    run([compile_, mlir, "--record-routing", "-o", so])
    E, k = GUESS_E, GUESS_K
    weights = []
    routers = []
    for n in range(GUESS_LAYERS):
        router = rng.standard_normal((E, H)).astype(np.float32)
        routers.append(router.astype(np.float64))
        for name, value in (
                (f"router{n}", router),
                (f"fc1_{n}", rng.standard_normal((E, 2 * I, H)) / 8),
                (f"fc2_{n}", rng.standard_normal((E, H, I)) / 8)):
            path = os.path.join(work, f"guess_{name}.npy")
            np.save(path, np.asarray(value, np.float32))
            weights.append(path)
    profile = os.path.join(work, "pre_gating.json")
    if os.path.exists(profile):
        os.remove(profile)
    want = [dict(NO_GUESS) for _ in range(GUESS_LAYERS)]
    for step, tokens in enumerate([24, 7]):
        x = rng.standard_normal((tokens, H)).astype(np.float32)
        x_path = os.path.join(work, f"guess_x{step}.npy")
        np.save(x_path, x)
        outputs = [os.path.join(work, f"guess_y{n}_{step}.npy")
                   for n in range(GUESS_LAYERS)]
        run([moe_run, so, f"--input=@{x_path}",
             *[f"--input=@{w}" for w in weights],
             f"--routing-profile={profile}",
             *[f"--output=@{o}" for o in outputs]])
        layer_inputs = [x] + [np.load(o) for o in outputs[:-1]]
        for n in range(1, GUESS_LAYERS):
            chosen = top_k(layer_inputs[n].astype(np.float64) @ routers[n].T, k)
            guessed = top_k(layer_inputs[n - 1].astype(np.float64) @ routers[n].T, k)
            hits = sum(len(c & g) for c, g in zip(chosen, guessed))
            want[n]["tokens"] += tokens
            want[n]["slots"] += tokens * k
            want[n]["hits"] += hits
            want[n]["exact_tokens"] += sum(c == g for c, g in zip(chosen, guessed))
        with open(profile) as f:
            doc = json.load(f)
        for n in range(GUESS_LAYERS):
            got = doc["layers"][n]["pre_gating"]
            if got != want[n]:
                sys.exit(f"FAIL: pre-gating, run {step} layer {n}:\n"
                         f" got  {got}\n want {want[n]}")
    print("ok: pre-gating counts of layers 1 and 2 over two runs: " +
          ", ".join(f"{w['hits']}/{w['slots']} experts predicted, "
                    f"{w['exact_tokens']}/{w['tokens']} tokens exactly"
                    for w in want[1:]))


def expected_counts(logits, E, k):
    """Tokens per expert and the co-activation matrix of top-k choices."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    per_expert = np.bincount(top.ravel(), minlength=E)
    pairs = np.zeros((E, E), np.int64)
    for row in top:
        for a in range(k):
            for b in range(a + 1, k):
                pairs[row[a], row[b]] += 1
                pairs[row[b], row[a]] += 1
    return per_expert, pairs


def main():
    work, compile_, moe_run = parse_args(__doc__, "routing-profile")
    mlir = os.path.join(work, "layers.mlir")
    with open(mlir, "w") as f:
        f.write(layer_mlir())
    so = os.path.join(work, "layers.so")
    run([compile_, mlir, "--record-routing", "-o", so])
    plain = os.path.join(work, "plain.so")
    run([compile_, mlir, "-o", plain])

    rng = np.random.default_rng(7)
    weights = []
    for n, (E, k) in enumerate(LAYERS):
        for name, shape in ((f"fc1_{n}", (E, 2 * I, H)), (f"fc2_{n}", (E, H, I))):
            path = os.path.join(work, name + ".npy")
            np.save(path, (rng.standard_normal(shape) / 8).astype(np.float32))
            weights.append(path)

    profile = os.path.join(work, "profile.json")
    if os.path.exists(profile):
        os.remove(profile)
    totals = [[np.zeros(E, np.int64), np.zeros((E, E), np.int64), 0]
              for E, _ in LAYERS]
    inputs = []
    for step, tokens in enumerate([13, 1, 40]):
        x = rng.standard_normal((tokens, H)).astype(np.float32)
        files = [os.path.join(work, f"x{step}.npy")]
        np.save(files[0], x)
        for n, (E, k) in enumerate(LAYERS):
            logits = rng.standard_normal((tokens, E)).astype(np.float32)
            path = os.path.join(work, f"logits{n}_{step}.npy")
            np.save(path, logits)
            per_expert, pairs = expected_counts(logits, E, k)
            totals[n][0] += per_expert
            totals[n][1] += pairs
            totals[n][2] += tokens
            files += [path, weights[2 * n], weights[2 * n + 1]]
        inputs = [f"--input=@{p}" for p in files]
        out = run([moe_run, so, *inputs, f"--routing-profile={profile}",
                   f"--output=@{os.path.join(work, 'y.npy')}"]).stdout
        if f"routing profile: {len(LAYERS)} route reports added to" not in out:
            sys.exit(f"FAIL: moe-run did not report the profile:\n{out}")
        with open(profile) as f:
            doc = json.load(f)
        if (doc.get("format"), doc.get("version"), doc.get("records")) != \
                ("moe-routing-profile", 1, len(LAYERS) * (step + 1)):
            sys.exit(f"FAIL: run {step}: header {doc}")
        for n, (E, k) in enumerate(LAYERS):
            got = doc["layers"][n]
            want = dict(layer=n, experts=E, top_k=k, records=step + 1,
                        tokens=int(totals[n][2]), empty_slots=0,
                        tokens_per_expert=totals[n][0].tolist(),
                        coactivation=totals[n][1].tolist(),
                        pre_gating=NO_GUESS)
            if got != want:
                sys.exit(f"FAIL: run {step} layer {n}:\n got  {got}\n want {want}")
        print(f"ok: after run {step + 1} ({tokens} tokens) the profile holds "
              f"the counts of all {step + 1} runs")

    def must_fail(cmd, message, what, path):
        """`cmd` fails with `message` and leaves the profile at `path`."""
        before = open(path).read()
        result = run(cmd, expect_ok=False)
        if message not in result.stderr:
            sys.exit(f"FAIL: {what}: expected '{message}' in:\n{result.stderr}")
        if open(path).read() != before:
            sys.exit(f"FAIL: {what}: the profile changed")
        print(f"ok: {what}: exits {result.returncode}: {message}")

    must_fail([moe_run, plain, *inputs, f"--routing-profile={profile}"],
              "compile the module with moe-compile --record-routing",
              "a module compiled without --record-routing", profile)
    other = os.path.join(work, "other.json")
    with open(other, "w") as f:
        json.dump(dict(format="moe-routing-profile", version=1, records=1,
                       layers=[dict(layer=0, experts=16, top_k=2, records=1,
                                    tokens=0, empty_slots=0,
                                    tokens_per_expert=[0] * 16,
                                    coactivation=[[0] * 16] * 16)]), f)
    must_fail([moe_run, so, *inputs, f"--routing-profile={other}"],
              "layer 0 routes to top-2 of 16 experts there, top-2 of 8 in "
              "this run", "a profile of another model", other)
    with open(other, "w") as f:
        f.write("{\"layers\": []}")
    must_fail([moe_run, so, *inputs, f"--routing-profile={other}"],
              "not a routing profile", "a file that is not a profile", other)

    # A profile written before pre-gating was counted (no 'pre_gating')
    # still merges: its layers count none.
    with open(other, "w") as f:
        json.dump(dict(format="moe-routing-profile", version=1, records=0,
                       layers=[dict(layer=0, experts=8, top_k=2, records=0,
                                    tokens=0, empty_slots=0,
                                    tokens_per_expert=[0] * 8,
                                    coactivation=[[0] * 8] * 8)]), f)
    run([moe_run, so, *inputs, f"--routing-profile={other}"])
    with open(other) as f:
        if json.load(f)["layers"][0]["pre_gating"] != NO_GUESS:
            sys.exit("FAIL: merging a profile without 'pre_gating'")
    print("ok: a profile without 'pre_gating' merges")

    check_pre_gating(compile_, moe_run, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
