#!/usr/bin/python3
"""End-to-end check of expert prefetching and the expert cache's budget
(`moe-compile --prefetch-experts`, `moe-run --weights-memory-limit`,
docs/Runtime.md "Expert cache").

Three MoE layers in a row (8 experts, top-2, routers in the layers, all
weights constants in the module, 9 MiB) are compiled with
--prefetch-experts. moe-run runs them under a 1 MiB budget with each
read-ahead mode and with no budget; every output must match the float64
reference (1e-5 of max|ref|): evicting and reading ahead never change what
is computed. The cache's counts must be numpy's: the expert slices used
(per layer, its distinct chosen experts times its two weights) and, of
those, the ones pre-gating predicted (the layer's router on the previous
layer's input); under the budget experts are evicted until only the last
layer's remain counted. Misuses fail or warn with a message.

    run_prefetch_experts.py --bin DIR --work DIR
"""
import os
import re
import sys

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
import numpy as np  # noqa: E402
from bf16_layer import _resource_hex, reference  # noqa: E402
from e2e_tools import parse_args, run  # noqa: E402

H, I, E, K, LAYERS, T = 128, 256, 8, 2, 3, 16
LIMIT = 1 << 20
SLICE_BYTES = {"fc1": 2 * I * H * 4, "fc2": H * I * 4}


def model_mlir(layers):
    consts, body, blobs = [], [], []
    value = "%x"
    for n, weights in enumerate(layers):
        types = dict(router=f"tensor<{E}x{H}xf32>",
                     fc1=f"tensor<{E}x{2 * I}x{H}xf32>",
                     fc2=f"tensor<{E}x{H}x{I}xf32>")
        for name, ty in types.items():
            consts.append(f"  %{name}{n} = arith.constant "
                          f"dense_resource<{name}{n}> : {ty}")
            blobs.append(f"      {name}{n}: \"{_resource_hex(weights[name], 'f32')}\"")
        body.append(
            f"  %y{n} = moe.layer {value} router_weight %router{n} fc1 %fc1{n} "
            f"fc2 %fc2{n}\n"
            f"      {{k = {K} : i64, normalize, activation = #moe.activation<swiglu>,\n"
            f"       swiglu_fusion = #moe.swiglu_fusion<interleaved>}}\n"
            f"      : (tensor<?x{H}xf32>, {types['router']}, {types['fc1']}, "
            f"{types['fc2']}) -> tensor<?x{H}xf32>")
        value = f"%y{n}"
    return (f"func.func @layers(%x: tensor<?x{H}xf32>) -> tensor<?x{H}xf32> {{\n" +
            "\n".join(consts) + "\n" + "\n".join(body) +
            f"\n  return {value} : tensor<?x{H}xf32>\n}}\n"
            "{-#\n  dialect_resources: {\n    builtin: {\n" + ",\n".join(blobs) +
            "\n    }\n  }\n#-}\n")


def top_k(x, router):
    logits = x.astype(np.float64) @ router.astype(np.float64).T
    return np.argsort(-logits, axis=-1, kind="stable")[:, :K]


def cache_line(stdout, when="run"):
    m = re.search(r"expert cache \(" + re.escape(when) +
                  r"\): (\d+) expert slices used \(([\d.]+) MiB\), (\d+) "
                  r"predicted beforehand .*; read ahead ([\d.]+) MiB; (\d+) "
                  r"evicted \(([\d.]+) MiB\)", stdout)
    if not m:
        sys.exit(f"FAIL: no expert cache line for '{when}' in:\n{stdout}")
    resident = re.search(r"evicted \([\d.]+ MiB\); ([\d.]+) MiB resident", stdout)
    return dict(used=int(m[1]), predicted=int(m[3]), read_ahead=float(m[4]),
                evicted=int(m[5]), resident=float(resident[1]))


def main():
    work, compile_tool, run_tool = parse_args(__doc__, "prefetch-experts")

    rng = np.random.default_rng(11)
    layers = [dict(router=rng.standard_normal((E, H), dtype=np.float32),
                   fc1=(rng.standard_normal((E, 2 * I, H)) / np.sqrt(H)).astype(np.float32),
                   fc2=(rng.standard_normal((E, H, I)) / np.sqrt(I)).astype(np.float32))
              for _ in range(LAYERS)]
    x = rng.standard_normal((T, H), dtype=np.float32)
    source = os.path.join(work, "layers.mlir")
    with open(source, "w") as f:
        f.write(model_mlir(layers))
    x_path = os.path.join(work, "x.npy")
    np.save(x_path, x)

    # float64 reference, and numpy's count of what the cache must see.
    inputs, value = [], x.astype(np.float64)
    for w in layers:
        inputs.append(value)
        value = reference(value, w["router"], w["fc1"], w["fc2"], K)
    ref = value
    used = predicted = 0
    for n, w in enumerate(layers):
        chosen = set(top_k(inputs[n], w["router"]).ravel().tolist())
        used += 2 * len(chosen)
        last_layer_bytes = len(chosen) * sum(SLICE_BYTES.values())
        if n > 0:
            guessed = set(top_k(inputs[n - 1], w["router"]).ravel().tolist())
            predicted += 2 * len(chosen & guessed)
    used_bytes = sum(SLICE_BYTES.values()) * used // 2

    so = os.path.join(work, "layers.so")
    run([compile_tool, source, "--prefetch-experts", "-o", so])
    symbols = run(["nm", "-D", "--undefined-only", so]).stdout
    if "moe_rt_prefetch_experts" not in symbols:
        sys.exit("FAIL: the module compiled with --prefetch-experts does not "
                 "call moe_rt_prefetch_experts")
    plain = os.path.join(work, "plain.so")
    run([compile_tool, source, "-o", plain])
    if "moe_rt_prefetch_experts" in run(["nm", "-D", "--undefined-only", plain]).stdout:
        sys.exit("FAIL: a module compiled without --prefetch-experts calls "
                 "moe_rt_prefetch_experts")

    def check_output(y_path, what):
        y = np.load(y_path).astype(np.float64)
        err = np.abs(y - ref).max() / np.abs(ref).max()
        if not err <= 1e-5:
            sys.exit(f"FAIL: {what}: max|y - ref| / max|ref| = {err:.3g}")
        return err

    for label, flags in [
            ("budget, read ahead all", [f"--weights-memory-limit={LIMIT}"]),
            ("budget, read ahead chosen", ["--weights-memory-limit=1M", "--read-ahead=chosen"]),
            ("budget, read ahead none", ["--weights-memory-limit=1024K", "--read-ahead=none"]),
            ("no budget", ["--read-ahead=all"])]:
        y_path = os.path.join(work, "y.npy")
        out = run([run_tool, so, f"--input=@{x_path}", f"--output=@{y_path}",
                   "--threads=2"] + flags).stdout
        err = check_output(y_path, label)
        stats = cache_line(out)
        if stats["used"] != used or stats["predicted"] != predicted:
            sys.exit(f"FAIL: {label}: the cache counted {stats['used']} slices "
                     f"used, {stats['predicted']} predicted; numpy: {used}, "
                     f"{predicted}\n{out}")
        budget = "no budget" not in label
        if budget and stats["evicted"] == 0:
            sys.exit(f"FAIL: {label}: nothing evicted under a {LIMIT}-byte "
                     f"budget for {used_bytes} bytes of experts\n{out}")
        if not budget and stats["evicted"] != 0:
            sys.exit(f"FAIL: {label}: experts evicted without a budget\n{out}")
        if "none" in label and stats["read_ahead"] != 0:
            sys.exit(f"FAIL: {label}: the cache read ahead\n{out}")
        # Under the budget only the last layer's experts stay counted (a
        # layer's own experts are never evicted, even beyond the budget).
        if budget and abs(stats["resident"] - last_layer_bytes / 2**20) > 0.05:
            sys.exit(f"FAIL: {label}: {stats['resident']} MiB resident, expected "
                     f"the last layer's {last_layer_bytes / 2**20:.2f} MiB\n{out}")
        print(f"{label}: max rel err {err:.2g}, slices used {stats['used']}, "
              f"predicted {stats['predicted']}, evicted {stats['evicted']}, "
              f"read ahead {stats['read_ahead']} MiB, resident "
              f"{stats['resident']} MiB")

    # Misuses: a clear message each.
    bad = run([run_tool, so, f"--input=@{x_path}", "--weights-memory-limit=lots"],
              expect_ok=False)
    if "--weights-memory-limit expects a size in bytes" not in bad.stderr:
        sys.exit(f"FAIL: bad --weights-memory-limit message:\n{bad.stderr}")
    bad = run([run_tool, so, f"--input=@{x_path}", "--read-ahead=some"],
              expect_ok=False)
    if "--read-ahead expects none, chosen or all" not in bad.stderr:
        sys.exit(f"FAIL: bad --read-ahead message:\n{bad.stderr}")
    warned = run([run_tool, plain, f"--input=@{x_path}", "--weights-memory-limit=1M"])
    if "announced no experts" not in warned.stderr:
        sys.exit(f"FAIL: no warning for a module without prefetching:\n"
                 f"{warned.stderr}")
    bad = run([compile_tool, source, "--prefetch-experts", "--expert-parallel=2",
               "-o", os.path.join(work, "ep.so")], expect_ok=False)
    if "--prefetch-experts is for single-process CPU modules" not in bad.stderr:
        sys.exit(f"FAIL: --prefetch-experts with --expert-parallel:\n{bad.stderr}")
    print("PASS")


if __name__ == "__main__":
    main()
