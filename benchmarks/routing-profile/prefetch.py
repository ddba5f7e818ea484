#!/usr/bin/python3
"""Pre-gated expert prefetch under a weights memory budget: the stall time
that reading experts ahead removes.

The whole-model benchmark's HF-style decoders (benchmarks/whole-model, torch
exports, weights constants in the module) are compiled with
`moe-compile --prefetch-experts` and run, each variant in a process of its
own (Python API), on a sequence of decode steps whose tokens are drawn at
random (the same sequence for every variant), so consecutive steps route to
different experts. Before each variant the module file is dropped from the
page cache; a few warm-up steps follow, then the timed steps.

Model `synthetic` (--models synthetic): a skewed stack of 4 MoE layers
(H 768, I 1024, 8 experts, top-2, 302 MB of experts, as the Mixtral-style
decoder) whose tokens lean towards the high-numbered experts, one token a
step.

The memory limit is a real one where this runs as root with a cgroup memory
controller (v1 here): the variant runs in a cgroup whose limit is the
resident variant's peak minus the share of the experts' bytes that must not
fit (--limit 0.5: half the experts fit), so the kernel evicts page cache
as it would on a smaller machine. Elsewhere (or --budget) the runtime's
own budget emulates it (--weights-memory-limit: that share of the experts'
bytes). Variants:

  resident   no limit: every expert stays in memory after its first use
  none       the limit; experts read from the file when used (faults and
             the kernel's readahead), nothing read ahead
  chosen     the limit; each layer's chosen experts read ahead by the
             runtime's worker once the layer is routed
  all        and the next layer's experts as guessed from this layer's
             tokens (pre-gating), a layer ahead
  budget-M   (cgroup only) mode M with the runtime's budget as well, 0.9 of
             the experts' share of the limit: the runtime decides which
             experts leave, a whole expert at a time

The stall of a budget variant is its time per step minus the resident
one's. Variants are interleaved, passes repeated; the table gives the median
over passes of each pass's mean step time (stalls are what the mean sees),
the median step, the cache's counts and the process's major page faults.

  prefetch.py [--models mixtral,qwen2_moe] [--limit 0.5] [--budget]
              [--steps N] [--warmup N] [--passes P] [--threads T] [--work DIR]

Needs build/bin and build/python (scripts/build.sh), /usr/bin/python3 with
torch, onnx and numpy for the exports (made when missing).
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin")

DRIVER = r"""
import json, os, resource, sys, time
import numpy as np
import moe_mlir

so, inputs_txt, limit, mode, steps, warmup, threads, seed, vocab, cgroup = sys.argv[1:]
if cgroup != "-":
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
limit, steps, warmup, threads, seed, vocab = (int(limit), int(steps), int(warmup),
                                              int(threads), int(seed), int(vocab))
# A cold start for every variant: none of the module in the page cache.
fd = os.open(so, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)
moe_mlir.set_num_threads(threads)
if mode != "resident":
    moe_mlir.expert_cache(memory_limit=limit, read_ahead=mode)
elif limit:
    sys.exit("the resident variant has no limit")
module = moe_mlir.load(so)
paths = [line.strip() for line in open(inputs_txt) if line.strip()]
inputs = [np.load(p) for p in paths]
rng = np.random.default_rng(seed)
if vocab:
    ids = next(i for i, p in enumerate(paths) if p.endswith("in_input_ids.npy"))
else:
    # The synthetic stack: tokens x [T, H] leaning along its skew direction.
    lean = inputs.pop()
    ids = 0
times = []
faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
for step in range(warmup + steps):
    if step == warmup:
        moe_mlir.expert_cache_stats(reset=True, wait=True)
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
    if vocab:
        inputs[ids] = rng.integers(0, vocab, size=inputs[ids].shape).astype(inputs[ids].dtype)
    else:
        inputs[0] = (rng.standard_normal(inputs[0].shape) + 2 * lean).astype(np.float32)
    start = time.perf_counter()
    module(*inputs)
    if step >= warmup:
        times.append(time.perf_counter() - start)
stats = moe_mlir.expert_cache_stats(wait=True)
stats["major_faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_majflt - faults0
peak = 0
if cgroup != "-":
    with open(os.path.join(cgroup, "memory.max_usage_in_bytes")) as f:
        peak = int(f.read())
print(json.dumps(dict(times=times, stats=stats, peak=peak)))
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(cmd, env=None):
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"FAIL ({result.returncode}): {' '.join(cmd)}\n"
                 f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result.stdout


def whole_model():
    spec = importlib.util.spec_from_file_location(
        "whole_model_bench", os.path.join(ROOT, "benchmarks", "whole-model", "bench.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CGROUP = "/sys/fs/cgroup/memory/moe-prefetch-bench"


def memory_cgroup():
    """A cgroup v1 memory controller group to limit the variants, or None."""
    if not os.path.isdir(os.path.dirname(CGROUP)):
        return None
    try:
        os.makedirs(CGROUP, exist_ok=True)
        with open(os.path.join(CGROUP, "memory.limit_in_bytes"), "w") as f:
            f.write("-1")
        return CGROUP
    except OSError:
        return None


def set_cgroup(cgroup, limit):
    """Empties the group (its page cache charges) and sets its limit."""
    for name, value in [("memory.limit_in_bytes", "-1"), ("memory.force_empty", "0"),
                        ("memory.max_usage_in_bytes", "0"),
                        ("memory.limit_in_bytes", str(limit) if limit else "-1")]:
        with open(os.path.join(cgroup, name), "w") as f:
            f.write(value)


SYNTHETIC = dict(layers=4, hidden=768, inter=1024, experts=8, top_k=2, vocab=0, tokens=1)


def synthetic_stack(work):
    """A skewed synthetic stack (ONNX): layers of router MatMul, MoE (SwiGLU,
    top-2 renormalised) and residual Add. Tokens lean along one direction
    that every router's rows follow more the higher the expert, so the
    high-numbered experts take most tokens in every layer (the residual
    stream keeps the lean). The module's input x and the lean direction are
    listed in inputs.txt."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save
    folder = os.path.join(work, "synthetic")
    path = os.path.join(folder, "model.onnx")
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(path):
        return path, folder
    s = SYNTHETIC
    H, I, E = s["hidden"], s["inter"], s["experts"]
    rng = np.random.default_rng(31)
    nodes, inits, value = [], [], "x"
    lean = rng.standard_normal(H)
    lean /= np.linalg.norm(lean)
    for n in range(s["layers"]):
        router = rng.standard_normal((E, H)) + np.linspace(-2, 4, E)[:, None] * lean
        fc1 = rng.standard_normal((E, 2 * I, H), dtype=np.float32) / np.float32(np.sqrt(H))
        fc2 = rng.standard_normal((E, H, I), dtype=np.float32) / np.float32(np.sqrt(I))
        inits += [numpy_helper.from_array(router.T.astype(np.float32), f"router{n}"),
                  numpy_helper.from_array(fc1, f"fc1_{n}"),
                  numpy_helper.from_array(fc2, f"fc2_{n}")]
        nodes += [helper.make_node("MatMul", [value, f"router{n}"], [f"logits{n}"]),
                  helper.make_node("MoE", [value, f"logits{n}", f"fc1_{n}", "", f"fc2_{n}"],
                                   [f"moe{n}"], domain="com.microsoft", k=s["top_k"],
                                   activation_type="swiglu", swiglu_fusion=1,
                                   normalize_routing_weights=1),
                  helper.make_node("Add", [value, f"moe{n}"], [f"h{n}"])]
        value = f"h{n}"
    graph = helper.make_graph(
        nodes, "skewed_stack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", H])],
        [helper.make_tensor_value_info(value, TensorProto.FLOAT, ["T", H])], inits)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                 helper.make_opsetid("com.microsoft", 1)]),
         path)
    np.save(os.path.join(folder, "in_x.npy"), np.zeros((s["tokens"], H), np.float32))
    np.save(os.path.join(folder, "lean.npy"), lean.astype(np.float32))
    with open(os.path.join(folder, "inputs.txt"), "w") as f:
        f.write(os.path.join(folder, "in_x.npy") + "\n" +
                os.path.join(folder, "lean.npy") + "\n")
    return path, folder


def expert_bytes(spec):
    fc = 3 * spec["hidden"] * spec["inter"] * 4
    return spec["layers"] * spec["experts"] * fc, spec["layers"] * spec["top_k"] * fc


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mixtral,qwen2_moe")
    parser.add_argument("--limit", type=float, default=0.5,
                        help="budget as a fraction of the experts' bytes")
    parser.add_argument("--variants", default="resident,none,chosen,all")
    parser.add_argument("--budget", action="store_true",
                        help="emulate the limit with the runtime's budget even "
                             "where a memory cgroup is available")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=os.path.join(ROOT, "build", "bench", "whole-model"))
    args = parser.parse_args()

    bench = whole_model()
    cgroup = None if args.budget else memory_cgroup()
    log(f"memory limit: {'cgroup ' + cgroup if cgroup else 'the runtime budget'}")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "build", "python"),
               MOE_MLIR_TOOLS_DIR=BIN)
    variants = args.variants.split(",")
    rows = []
    for name in args.models.split(","):
        if name == "synthetic":
            spec = SYNTHETIC
            onnx_path, folder = synthetic_stack(args.work)
        else:
            spec = bench.MODELS[name]
            onnx_path = bench.prepare(args.work, name, spec)
            folder = bench.case_dir(args.work, name, "decode past=512")
        so = os.path.join(args.work, name, "model-prefetch.so")
        if not os.path.exists(so) or os.path.getmtime(so) < os.path.getmtime(
                os.path.join(BIN, "moe-compile")):
            log(f"== {name}: moe-compile --prefetch-experts")
            run([os.path.join(BIN, "moe-compile"), onnx_path, "--prefetch-experts",
                 "-o", so])
        total, per_step = expert_bytes(spec)
        limit = int(total * args.limit)
        results = {v: [] for v in variants}
        cgroup_limit = None

        def measure(v):
            nonlocal cgroup_limit
            if cgroup:
                if v != "resident" and cgroup_limit is None:
                    # The resident variant's peak, less the experts that must
                    # not fit.
                    measure("resident")
                    peak = min(r["peak"] for r in results["resident"])
                    cgroup_limit = peak - int(total * (1 - args.limit))
                set_cgroup(cgroup, None if v == "resident" else cgroup_limit)
            # "budget-MODE": under the cgroup too, the runtime's own budget
            # (a little under the experts' share of the limit) decides
            # which experts leave, a whole expert at a time.
            mode = v.split("-", 1)[1] if v.startswith("budget-") else v
            if v.startswith("budget-"):
                budget = int(total * args.limit * 0.9)
            else:
                budget = 0 if (cgroup or v == "resident") else limit
            out = run(["/usr/bin/python3", "-c", DRIVER, so,
                       os.path.join(folder, "inputs.txt"), str(budget), mode,
                       str(args.steps), str(args.warmup), str(args.threads),
                       "7", str(spec["vocab"]), cgroup or "-"], env=env)
            r = json.loads(out.strip().splitlines()[-1])
            results.setdefault(v, []).append(r)
            log(f"{name} {v}: mean {1e3 * statistics.mean(r['times']):.2f} ms, "
                f"median {1e3 * statistics.median(r['times']):.2f} ms, "
                f"faults {r['stats']['major_faults']}, peak {r['peak'] / 1e6:.0f} MB")

        for p in range(args.passes):
            order = variants if p % 2 == 0 else variants[::-1]
            for v in order:
                measure(v)
        if cgroup:
            limit = cgroup_limit
        rows.append((name, total, per_step, limit, results))

    print(f"\nDecode steps with random tokens, past 512; "
          f"{'memory cgroup limit: resident peak' if cgroup else 'runtime budget: '} "
          f"{'minus ' + format(1 - args.limit, 'g') + ' of' if cgroup else format(args.limit, 'g') + ' of'} "
          f"the experts' bytes; {args.steps} timed steps after {args.warmup}, "
          f"{args.passes} passes, {args.threads} threads.\n")
    print("| model | experts (MB) | limit (MB) | variant | mean step ms | median step ms "
          "| stall ms (mean - resident) | stall vs none | used slices predicted "
          "| read ahead MB/step | evicted MB/step | major faults/step |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, total, per_step, limit, results in rows:
        mean = {v: statistics.median(statistics.mean(r["times"]) for r in rs) * 1e3
                for v, rs in results.items()}
        median = {v: statistics.median(statistics.median(r["times"]) for r in rs) * 1e3
                  for v, rs in results.items()}
        base = mean.get("resident")
        for v, rs in results.items():
            s = rs[-1]["stats"]
            steps = len(rs[-1]["times"])
            stall = mean[v] - base if base is not None else float("nan")
            none_stall = mean["none"] - base if base is not None and "none" in mean else None
            vs = (f"{stall / none_stall:.2f}x" if none_stall and v != "resident"
                  else "")
            pred = (f"{100 * s['used_predicted'] / s['used']:.0f}%"
                    if s["used"] else "")
            print(f"| {name} | {total / 1e6:.0f} | {limit / 1e6 if v != 'resident' else 0:.0f} "
                  f"| {v} | {mean[v]:.2f} | {median[v]:.2f} | "
                  f"{stall:.2f} | {vs} | {pred} | "
                  f"{s['read_ahead_bytes'] / 1e6 / steps:.1f} | "
                  f"{s['evicted_bytes'] / 1e6 / steps:.1f} | "
                  f"{s['major_faults'] / steps:.0f} |")


if __name__ == "__main__":
    main()
