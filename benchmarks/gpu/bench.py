#!/usr/bin/python3
"""GPU benchmark driver (see benchmarks/README.md, "GPU benchmark"; run.sh
wraps it).

  bench.py prepare --bin DIR --bundle DIR [--arch sm_90] [--act bf16|f32]
                   [--target cuda|cpu] [--models a,b] [--smoke]
      on the compiler machine: layer.mlir per model, moe-compile to
      layer.so, moe-run and libmoe_runtime.so copied next to them (a few
      MB to carry to the GPU machine; no weights).
  bench.py gen --data DIR [--models a,b] [--tokens 1,16] [--smoke]
      weights (bf16 .npy, fixed seeds) and token inputs; on the GPU
      machine (or anywhere: the bytes are the same).
  bench.py run --bundle DIR --data DIR --results DIR [--device cuda|cpu]
               [--models a,b] [--tokens 1,16] [--runs N] [--warmup N]
               [--sides ours,eager,grouped,triton] [--smoke]
      checks every side against the float64 reference (2e-2 relative to
      max|ref|), then times the sides that passed; one JSON line per
      (model, T, side) in RESULTS/results.jsonl.

Needs numpy and torch (1.13 or 2.x); Triton only for the triton side on
CUDA (imported lazily, skipped with a message when missing).
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import models as M  # noqa: E402

SIDES = ["ours", "eager", "grouped", "triton"]
UNITS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_list(s, conv=str):
    return [conv(v) for v in s.split(",") if v] if s else None


def model_list(args):
    names = parse_list(args.models) or list(M.MODELS)
    return [M.model(n, args.smoke) for n in names]


def token_list(args):
    return parse_list(args.tokens, int) or (M.SMOKE_TOKENS if args.smoke
                                             else M.TOKENS)


# ---------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------

def cmd_prepare(args):
    bin_dir = os.path.abspath(args.bin)
    bundle = os.path.abspath(args.bundle)
    os.makedirs(os.path.join(bundle, "bin"), exist_ok=True)
    os.makedirs(os.path.join(bundle, "lib"), exist_ok=True)
    shutil.copy2(os.path.join(bin_dir, "moe-run"),
                 os.path.join(bundle, "bin", "moe-run"))
    lib_dir = os.path.join(os.path.dirname(bin_dir), "lib")
    for n in os.listdir(lib_dir):
        if n.startswith("libmoe_runtime.so"):
            shutil.copy2(os.path.join(lib_dir, n),
                         os.path.join(bundle, "lib", n))
    info = {"target": args.target, "arch": args.arch, "act": args.act,
            "smoke": args.smoke, "models": {}}
    for m in model_list(args):
        d = os.path.join(bundle, m["name"])
        os.makedirs(d, exist_ok=True)
        mlir = os.path.join(d, "layer.mlir")
        with open(mlir, "w") as f:
            f.write(M.layer_mlir(m, args.act))
        cmd = [os.path.join(bin_dir, "moe-compile"), mlir]
        if args.target == "cuda":
            cmd += ["--target=cuda", "--cuda-arch=" + args.arch]
        cmd += ["-o", os.path.join(d, "layer.so")]
        print("$ " + " ".join(cmd), flush=True)
        t0 = time.time()
        p = subprocess.run(cmd)
        if p.returncode != 0:
            sys.exit("prepare: moe-compile failed for %s (exit %d)"
                     % (m["name"], p.returncode))
        info["models"][m["name"]] = {
            "H": m["H"], "I": m["I"], "E": m["E"], "k": m["k"],
            "compile_s": round(time.time() - t0, 2)}
    info["commit"] = git_commit()
    with open(os.path.join(bundle, "prepared.json"), "w") as f:
        json.dump(info, f, indent=1)
    size = sum(os.path.getsize(os.path.join(dp, n))
               for dp, _, ns in os.walk(bundle) for n in ns)
    print("prepared %s (%.1f MB; %s, %s activations)" % (
        bundle, size / 1e6, args.target + (" " + args.arch if
                                           args.target == "cuda" else ""),
        args.act))


def git_commit():
    try:
        c = subprocess.run(["git", "-C", HERE, "rev-parse", "--short",
                            "HEAD"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL,
                           universal_newlines=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", HERE, "diff", "--quiet",
                                "HEAD", "--"]).returncode != 0
        return (c or "unknown") + (" (with uncommitted changes)"
                                   if dirty else "")
    except OSError:
        return "unknown"


# ---------------------------------------------------------------------------
# gen
# ---------------------------------------------------------------------------

def cmd_gen(args):
    for m in model_list(args):
        d = os.path.join(args.data, m["name"])
        M.gen_weights(m, d, args.jobs)
        work = {}
        for T in token_list(args):
            names, w = M.gen_inputs(m, T, d)
            work[str(T)] = dict(w, files=names)
        with open(os.path.join(d, "work.json"), "w") as f:
            json.dump({"model": m, "work": work}, f, indent=1)
        print("  %s: inputs for T = %s" % (
            m["name"], ", ".join(sorted(work, key=int))), flush=True)


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------

class Timer:
    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.startswith("cuda")

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def __call__(self, fn, runs, warmup):
        """Median and min milliseconds of `runs` calls after `warmup`:
        CUDA events around each call on CUDA, perf_counter on CPU."""
        for _ in range(warmup):
            fn()
        self.sync()
        ms = []
        for _ in range(runs):
            if self.cuda:
                a = self.torch.cuda.Event(enable_timing=True)
                b = self.torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ms.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ms), min(ms)


def load_bf16(torch, path, device):
    import numpy as np
    a = np.load(path)  # writable host copy; '<u2' bf16 bits
    t = torch.from_numpy(a.view(np.int16))
    return t.to(device).view(torch.bfloat16)


def parse_moe_run_time(text):
    m = re.search(r"time: median ([\d.]+) (ns|us|ms|s), min ([\d.]+) "
                  r"(ns|us|ms|s)", text)
    if not m:
        return None
    return (float(m.group(1)) * UNITS[m.group(2)],
            float(m.group(3)) * UNITS[m.group(4)])


def run_ours(args, bundle, prepared, m, d, T, files, runs, check):
    """moe-run on the prepared module: one run writes y (and --check at
    the check token counts), then --benchmark=runs. Returns (y path,
    timing, log text)."""
    act = prepared["act"]
    x = files["x_bf16"] if act == "bf16" else files["x_f32"]
    inputs = [os.path.join(d, x), os.path.join(d, files["logits"]),
              os.path.join(d, "fc1.npy"), os.path.join(d, "fc2.npy")]
    if m["routing"].get("score_bias"):
        inputs.append(os.path.join(d, "score_bias.npy"))
    y = os.path.join(args.results, "%s_T%d_ours.npy" % (m["name"], T))
    cmd = [os.path.join(bundle, "bin", "moe-run"),
           os.path.join(bundle, m["name"], "layer.so")]
    cmd += ["--input=@" + p for p in inputs]
    cmd += ["--output=@" + y, "--output-f32", "--benchmark=%d" % runs]
    if check:
        cmd += ["--check", "--tolerance=%g" % M.TOLERANCE]
    if args.device == "cpu":
        cmd += ["--threads=%d" % (os.cpu_count() or 1)]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.path.join(bundle, "lib") + (
        ":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    print("    $ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, env=env)
    text = p.stdout
    for line in text.splitlines():
        print("    | " + line)
    if p.returncode != 0:
        return None, None, "moe-run exit %d: %s" % (
            p.returncode, (text.strip().splitlines() or ["no output"])[-1])
    return y, parse_moe_run_time(text), text


def cmd_run(args):
    import numpy as np
    import torch
    import torch_moe as P

    bundle = os.path.abspath(args.bundle)
    with open(os.path.join(bundle, "prepared.json")) as f:
        prepared = json.load(f)
    if prepared["smoke"] != args.smoke:
        sys.exit("run: the bundle was prepared %s --smoke" %
                 ("with" if prepared["smoke"] else "without"))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("run: --device=%s but torch sees no CUDA device (torch %s)"
                 % (args.device, torch.__version__))
    if (prepared["target"] == "cuda") != args.device.startswith("cuda"):
        print("note: the bundle's modules target %s, the peers run on %s"
              % (prepared["target"], args.device))
    sides = parse_list(args.sides) or SIDES
    os.makedirs(args.results, exist_ok=True)
    timer = Timer(torch, args.device)
    dev = args.device

    triton_mod, triton_why = None, None
    if "triton" in sides:
        if not dev.startswith("cuda"):
            triton_why = "Triton needs a CUDA device (--device=%s)" % dev
        else:
            try:
                import triton_moe as triton_mod  # noqa: F811
            except Exception as e:  # ImportError, or Triton's own errors
                triton_why = "cannot import Triton: %s" % e
        if triton_why:
            print("SKIP triton: " + triton_why)
    grouped_emulated = False
    grouped_why = None
    if "grouped" in sides and not P.have_grouped_mm():
        grouped_why = ("torch %s has no torch._grouped_mm" %
                       torch.__version__)
        if args.smoke:
            grouped_emulated = True
            print("SKIP grouped: %s (--smoke checks the code around it with "
                  "a loop standing in for it; not timed)" % grouped_why)
        else:
            print("SKIP grouped: " + grouped_why)

    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "device": dev,
           "prepared": prepared, "runs": args.runs, "warmup": args.warmup,
           "smoke": args.smoke, "host": platform.node(),
           "cpu": platform.processor()}
    if dev.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        cap = torch.cuda.get_device_capability(0)
        env["compute_cap"] = "%d.%d" % cap
        try:
            import triton
            env["triton"] = triton.__version__
        except Exception:
            env["triton"] = None
        try:
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                 "clocks.max.sm,clocks.max.mem,power.limit",
                 "--format=csv,noheader"], stdout=subprocess.PIPE,
                universal_newlines=True).stdout.strip()
        except OSError:
            env["nvidia_smi"] = None
    with open(os.path.join(args.results, "env.json"), "w") as f:
        json.dump(env, f, indent=1)

    out = open(os.path.join(args.results, "results.jsonl"), "a")
    failures = 0

    def record(row):
        out.write(json.dumps(row) + "\n")
        out.flush()

    for m in model_list(args):
        d = os.path.join(args.data, m["name"])
        with open(os.path.join(d, "work.json")) as f:
            work = json.load(f)["work"]
        print("== %s (H=%d I=%d E=%d k=%d): loading weights" % (
            m["name"], m["H"], m["I"], m["E"], m["k"]), flush=True)
        fc1 = load_bf16(torch, os.path.join(d, "fc1.npy"), dev)
        fc2 = load_bf16(torch, os.path.join(d, "fc2.npy"), dev)
        if args.smoke and dev == "cpu" and not args.cpu_bf16:
            # bf16 matmuls on a CPU are slow and not what is measured
            # here; the smoke run checks the code paths in float32.
            fc1, fc2 = fc1.float(), fc2.float()
        bias = None
        if m["routing"].get("score_bias"):
            bias = torch.from_numpy(np.load(os.path.join(
                d, "score_bias.npy"))).to(dev)
        r, k = m["routing"], m["k"]
        for T in token_list(args):
            w = work.get(str(T))
            if w is None:
                print("SKIP %s T=%d: no inputs (run gen with --tokens)"
                      % (m["name"], T))
                continue
            files = w["files"]
            x = load_bf16(torch, os.path.join(d, files["x_bf16"]), dev)
            x = x.to(fc1.dtype)
            logits = torch.from_numpy(np.load(os.path.join(
                d, files["logits"]))).to(dev)
            ref = P.reference(x, logits, bias, fc1, fc2, r, k)
            runs = args.runs if T < 1024 else max(5, args.runs // 4)
            base = {"model": m["name"], "desc": m["desc"], "H": m["H"],
                    "I": m["I"], "E": m["E"], "k": m["k"], "T": T,
                    "work": {kk: vv for kk, vv in w.items()
                             if kk != "files"}, "runs": runs}
            print("== %s T=%d: %d of %d experts touched, %.3g GB, %.3g "
                  "GFLOP" % (m["name"], T, w["experts_touched"], m["E"],
                             w["bytes"] / 1e9, w["flops"] / 1e9),
                  flush=True)

            peers = {}
            if "eager" in sides:
                peers["eager"] = lambda: P.eager(x, logits, bias, fc1, fc2,
                                                 r, k)
            if "grouped" in sides and (P.have_grouped_mm() or
                                       grouped_emulated):
                peers["grouped"] = lambda: P.grouped(
                    x, logits, bias, fc1, fc2, r, k,
                    emulate=grouped_emulated)
            if "triton" in sides and triton_mod is not None:
                peers["triton"] = lambda: triton_mod.fused_moe(
                    x, logits, bias, fc1, fc2, r, k)
            for side in SIDES[1:]:
                if side in sides and side not in peers:
                    why = triton_why if side == "triton" else grouped_why
                    record(dict(base, side=side, status="skipped",
                                reason=why))
            for side, fn in peers.items():
                try:
                    got = fn()
                    timer.sync()
                    err = P.rel_error(got, ref)
                except Exception as e:  # report, go on with the others
                    print("  %-8s FAIL: %s: %s" % (side, type(e).__name__,
                                                    e))
                    record(dict(base, side=side, status="error",
                                reason="%s: %s" % (type(e).__name__, e)))
                    failures += 1
                    continue
                ok = err <= M.TOLERANCE
                row = dict(base, side=side, rel_error=err,
                           status="ok" if ok else "wrong")
                if not ok:
                    print("  %-8s FAIL: max rel error %.3g > %g: not timed"
                          % (side, err, M.TOLERANCE))
                    failures += 1
                elif side == "grouped" and grouped_emulated:
                    row["status"] = "checked-only"
                    row["reason"] = grouped_why + " (emulated, not timed)"
                    print("  %-8s max rel error %.3g (emulated "
                          "_grouped_mm: not timed)" % (side, err))
                else:
                    med, best = timer(fn, runs, args.warmup)
                    row.update(median_ms=med, min_ms=best)
                    print("  %-8s max rel error %.3g; median %.4g ms "
                          "(min %.4g)" % (side, err, med, best), flush=True)
                record(row)
                del got

            if "ours" in sides:
                # moe-run --check widens every weight to float64 on the
                # host: not for DeepSeek-V3's 90 GB of it (ours is still
                # checked against the float64 reference above).
                f64_bytes = 8 * 3 * m["E"] * m["H"] * m["I"]
                check = (T in (1, 16) or args.smoke) and f64_bytes < 24e9
                if T in (1, 16) and not check:
                    print("  ours     (no moe-run --check: the float64 "
                          "weights would take %.0f GB of host memory)"
                          % (f64_bytes / 1e9))
                y, timing, text = run_ours(args, bundle, prepared, m, d, T,
                                           files, runs, check)
                if y is None:
                    print("  ours     FAIL: " + text)
                    record(dict(base, side="ours", status="error",
                                reason=text))
                    failures += 1
                    continue
                got = torch.from_numpy(np.load(y)).to(dev)
                err = P.rel_error(got, ref)
                os.remove(y)
                row = dict(base, side="ours", rel_error=err)
                mc = re.search(r"^check: .*$", text, re.M)
                if mc:
                    row["moe_run_check"] = mc.group(0)
                if err > M.TOLERANCE or (mc and not
                                         mc.group(0).endswith("PASS")):
                    print("  ours     FAIL: max rel error %.3g (%s)"
                          % (err, mc.group(0) if mc else "no --check"))
                    row["status"] = "wrong"
                    failures += 1
                elif timing is None:
                    row.update(status="error",
                               reason="no timing line in moe-run's output")
                    failures += 1
                else:
                    row.update(status="ok", median_ms=timing[0],
                               min_ms=timing[1])
                    bench = re.search(r"^benchmark: .*$", text, re.M)
                    if bench:
                        row["moe_run_benchmark"] = bench.group(0)
                    print("  ours     max rel error %.3g; median %.4g ms "
                          "(min %.4g)" % (err, timing[0], timing[1]))
                record(row)
        del fc1, fc2
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
    out.close()
    print("results: %s" % os.path.join(args.results, "results.jsonl"))
    if failures:
        print("run: %d side(s) failed their check or did not run" % failures)
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models", help="subset of: " + ",".join(M.MODELS))
    common.add_argument("--smoke", action="store_true",
                        help="tiny shapes, tokens %s" % M.SMOKE_TOKENS)

    p = sub.add_parser("prepare", parents=[common])
    p.add_argument("--bin", required=True, help="build/bin of moe-mlir")
    p.add_argument("--bundle", required=True)
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--target", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--act", choices=["bf16", "f32"], default="bf16",
                   help="the layer's activation type (x and y)")
    g = sub.add_parser("gen", parents=[common])
    g.add_argument("--data", required=True)
    g.add_argument("--tokens")
    g.add_argument("--jobs", type=int, default=None)
    r = sub.add_parser("run", parents=[common])
    r.add_argument("--bundle", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--results", required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--tokens")
    r.add_argument("--runs", type=int, default=50)
    r.add_argument("--warmup", type=int, default=10)
    r.add_argument("--sides", help="subset of: " + ",".join(SIDES))
    r.add_argument("--cpu-bf16", action="store_true",
                   help="--smoke on a CPU: keep bf16 weights in torch")
    args = ap.parse_args()
    if args.cmd == "prepare":
        return cmd_prepare(args)
    if args.cmd == "gen":
        return cmd_gen(args)
    if args.cmd == "run":
        return cmd_run(args)
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main() or 0)
