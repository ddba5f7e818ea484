#!/usr/bin/python3
"""Graph fuzzing of whole MoE decoder models: graph_fuzz.py over the
exports of test/lib/hf_moe.py.

Usage: fuzz_models.py IMPORTER WORKDIR [--families F,...] [--modes M,...]
                      [--count N] [--compile MOE_COMPILE] [--compile-every N]
                      [--jobs J] [--seed S] [--timeout SECONDS]
                      [--compile-timeout SECONDS]
Exports every family in every mode (static, dynamic, static-kv,
dynamic-kv: --static or --dynamic, with or without --kv-cache; default:
all eleven families, all four modes) into WORKDIR/<family>-<mode> (kept, and
reused when there), imports the export itself, then COUNT mutated copies
of it with the edits drawn half from the MoE blocks (graph_fuzz.py
--focus /mlp/). Prints a line per model and the totals; exits 1 when
anything crashed (each crash is printed and its copy kept).
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graph_fuzz  # noqa: E402

HF_MOE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                      "lib", "hf_moe.py")
FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3",
            "olmoe", "gpt_oss", "phimoe", "switch", "llama4", "dbrx"]
MODES = {"static": ["--static"], "dynamic": ["--dynamic"],
         "static-kv": ["--static", "--kv-cache"],
         "dynamic-kv": ["--dynamic", "--kv-cache"]}


def export(family, mode, outdir):
    """The export's path, or None (with the reason printed) when torch
    cannot export the model."""
    model = os.path.join(outdir, "model.onnx")
    if not os.path.exists(model):
        result = subprocess.run([sys.executable, HF_MOE, family, outdir] + MODES[mode],
                                capture_output=True)
        if result.returncode != 0:
            last = result.stderr.decode(errors="replace").strip().splitlines()[-1:]
            print("fuzz_models: %s-%s: hf_moe.py cannot export it: %s"
                  % (family, mode, last[0] if last else result.returncode))
            return None
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("importer")
    parser.add_argument("work")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--compile", dest="compile_tool")
    parser.add_argument("--compile-every", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1)
    # The nth model's mutants are drawn with seed S + n.
    parser.add_argument("--seed", type=int, default=4321)
    parser.add_argument("--timeout", type=int, default=120)
    # A whole decoder whose MoE blocks are not raised takes LLVM minutes.
    parser.add_argument("--compile-timeout", type=int, default=600)
    args = parser.parse_args()

    totals = {"models": 0, "unexported": 0, "imported": 0, "rejected": 0,
              "compiled": 0, "built": 0, "crashes": 0}
    for index, (family, mode) in enumerate(
            (f, m) for f in args.families.split(",") for m in args.modes.split(",")):
        name = "%s-%s" % (family, mode)
        start = time.time()
        model = export(family, mode, os.path.join(args.work, name))
        if not model:
            totals["unexported"] += 1
            continue
        # The export itself: a crash counts; when it is rejected, its mutants
        # still exercise raising (which sees the whole graph first) and the
        # nodes before the one rejected.
        crashed, code = graph_fuzz.run([args.importer, model, "-o", os.devnull],
                                       args.timeout)
        if crashed:
            print("fuzz_models: %s: the unmutated export crashed: %s" % (name, code))
            totals["crashes"] += 1
            continue
        note = "" if code == 0 else " (the export itself is rejected)"
        counts = graph_fuzz.fuzz(args.importer, model,
                                 os.path.join(args.work, name, "mutants"),
                                 args.count, seed=args.seed + index, focus="/mlp/",
                                 compile_tool=args.compile_tool,
                                 compile_every=args.compile_every, jobs=args.jobs,
                                 timeout=args.timeout,
                                 compile_timeout=args.compile_timeout)
        for crash in counts["crashes"]:
            print("fuzz_models: %s" % crash)
        print("fuzz_models: %s: %d mutated graphs: %d imported (%d compiled, %d "
              "built a module), %d rejected with an error, %d crashes (%.0f s)%s"
              % (name, args.count, counts["imported"], counts["compiled"],
                 counts["built"], counts["rejected"], len(counts["crashes"]),
                 time.time() - start, note),
              flush=True)
        totals["models"] += 1
        for key in ("imported", "rejected", "compiled", "built"):
            totals[key] += counts[key]
        totals["crashes"] += len(counts["crashes"])
    # The compiles that did not build a module were rejected with an error
    # (or crashed: counted as crashes).
    print("fuzz_models: %d models (%d more not exported), %d mutated graphs: %d "
          "imported (%d compiled), %d rejected with an error, %d crashes; "
          "%d of the compiled built a module"
          % (totals["models"], totals["unexported"], totals["models"] * args.count,
             totals["imported"], totals["compiled"], totals["rejected"],
             totals["crashes"], totals["built"]))
    sys.exit(1 if totals["crashes"] else 0)


if __name__ == "__main__":
    main()
