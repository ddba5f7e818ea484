#!/usr/bin/python3
"""Turns benchmarks/gpu results (bench.py run: env.json, results.jsonl) into
the "GPU (H100), bf16" section of benchmarks/RESULTS.md.

  report.py RESULTS_DIR [OUT.md]   table printed; with OUT.md, the section
                                   between the GPU markers is replaced (or
                                   appended), the rest of the file is kept
  report.py --placeholder OUT.md   writes the section saying that no GPU
                                   measurement exists yet

A --smoke run (tiny shapes on a CPU) is never written into RESULTS.md
unless --allow-smoke is given (then marked as such): it measures nothing.
"""
import json
import os
import statistics
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roofline  # noqa: E402

BEGIN = "<!-- BEGIN GPU RESULTS (benchmarks/gpu/report.py): edits here are lost -->"
END = "<!-- END GPU RESULTS -->"
TITLE = "## GPU (H100), bf16"
PEERS = ["eager", "grouped", "triton"]
PEER_NAMES = {"eager": "PyTorch eager loop", "grouped": "torch._grouped_mm",
              "triton": "Triton fused MoE"}

REPRODUCE = """```sh
# on the compiler machine (moe-compile with --target=cuda):
benchmarks/gpu/run.sh prepare --arch=sm_90       # -> build/gpu-bench/bundle (a few MB)
# carry build/gpu-bench/bundle and the source tree to the GPU machine, there:
benchmarks/gpu/run.sh run --bundle=build/gpu-bench/bundle   # weights made there from fixed seeds
benchmarks/gpu/run.sh report                     # this section of RESULTS.md
```"""


def placeholder():
    models_line = "; ".join(
        "%s %.2f TB/s, %.0f TFLOP/s dense bf16" % (
            g["desc"], g["bandwidth"] / 1e12, g["bf16_flops"] / 1e12)
        for g in roofline.GPUS.values())
    return f"""{BEGIN}
{TITLE}

**No measurement exists yet.** This section is generated from a run of
`benchmarks/gpu/run.sh run` on a machine with an NVIDIA GPU; none has
happened. It will compare moe-mlir's CUDA modules (`moe-run --benchmark`,
CUDA events) with the PyTorch eager per-expert loop, `torch._grouped_mm`
and a Triton fused-MoE kernel on full-size Mixtral-8x7B, DeepSeek-V3
(routed experts), Qwen3-30B-A3B and OLMoE layers in bf16 at T = 1, 16, 64,
512 and 4096 tokens (benchmarks/README.md, "GPU benchmark"). To produce it:

{REPRODUCE}

Until then, what those layers should take: the roofline model
(`benchmarks/gpu/roofline.py`; **a model, not a measurement**) with the
datasheet numbers ({models_line}), for uniform random routing. A measured
run puts the same model, from its own routing, next to each time.

{roofline.table(list(roofline.M.MODELS), roofline.M.TOKENS)}
{END}"""


def fmt_ms(v):
    return "%.4f" % v if v < 1 else "%.3f" % v if v < 10 else "%.2f" % v


def load(res):
    with open(os.path.join(res, "env.json")) as f:
        env = json.load(f)
    rows = {}
    with open(os.path.join(res, "results.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            # A later line for the same (model, T, side) wins (reruns).
            rows[(r["model"], r["T"], r["side"])] = r
    return env, rows


def table(env, rows):
    order = []
    for (m, T, _), r in rows.items():
        if (m, T) not in order:
            order.append((m, T))
    model_order = list(dict.fromkeys(m for m, _ in order))
    order.sort(key=lambda mt: (model_order.index(mt[0]), mt[1]))
    # The roofline model of the measured GPU (roofline.py), from the run's
    # own bytes and FLOPs, when it is one the model knows.
    gpu = roofline.gpu_of(env.get("gpu") or env.get("device"))
    head = ("| model | T | experts used | ours ms | ours GB/s | ours TFLOP/s "
            "| roofline ms (model) | ours % of roofline "
            "| eager ms | grouped_mm ms | Triton ms | ours vs eager "
            "| ours vs grouped_mm | ours vs Triton |")
    out = [head, "|" + "---|" * head.count(" |")]
    notes = set()
    for m, T in order:
        get = {s: rows.get((m, T, s)) for s in ["ours"] + PEERS}
        ref = next(r for r in get.values() if r)
        w = ref["work"]

        def ms(r):
            if r is None:
                return None, "-"
            if r.get("median_ms") is not None:
                return r["median_ms"], fmt_ms(r["median_ms"])
            st = r.get("status", "?")
            if r.get("reason"):
                notes.add("%s: %s" % (r["side"], r["reason"]))
            return None, {"skipped": "skipped", "wrong": "wrong result",
                          "error": "error", "checked-only":
                          "not timed"}.get(st, st)

        ours, ours_s = ms(get["ours"])
        cells = [ref["desc"], str(T),
                 "%d/%d" % (w["experts_touched"], ref["E"]), ours_s]
        if ours:
            cells += ["%.0f" % (w["bytes"] / ours / 1e6),
                      "%.3g" % (w["flops"] / ours / 1e9)]
        else:
            cells += ["-", "-"]
        bound = roofline.model_ms(w, gpu)[2] if gpu else None
        cells.append(fmt_ms(bound) if bound else "-")
        cells.append("%.0f%%" % (100 * bound / ours) if bound and ours
                     else "-")
        peer_ms = {}
        for p in PEERS:
            peer_ms[p], s = ms(get[p])
            cells.append(s)
        for p in PEERS:
            cells.append("**%.2fx**" % (peer_ms[p] / ours)
                         if ours and peer_ms[p] else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out), sorted(notes)


def checks(rows):
    out = ["| model | T | " + " | ".join(["ours"] + [PEER_NAMES[p]
                                                      for p in PEERS]) + " |",
           "|---|---|---|---|---|---|"]
    seen = []
    for (m, T, _), r in rows.items():
        if (m, T) not in seen:
            seen.append((m, T))
    for m, T in seen:
        cells = []
        desc = None
        for s in ["ours"] + PEERS:
            r = rows.get((m, T, s))
            if r:
                desc = r["desc"]
            if r is None or r.get("rel_error") is None:
                cells.append(r["status"] if r else "-")
            else:
                cells.append("%.2g%s" % (r["rel_error"], "" if r["status"] in
                                         ("ok", "checked-only") else " FAIL"))
        out.append("| %s | %d | %s |" % (desc, T, " | ".join(cells)))
    return "\n".join(out)


def section(env, rows):
    tab, notes = table(env, rows)
    prep = env.get("prepared", {})
    smoke = env.get("smoke")
    gpu = env.get("gpu") or env.get("device")
    note_text = "".join("\n* %s" % n for n in notes)
    arch = prep.get("arch") if prep.get("target") == "cuda" else ""
    how = ("every call timed by CUDA events, all inputs and weights\nresident "
           "on the GPU" if str(env.get("device", "")).startswith("cuda")
           else "timed by the host clock on the CPU")
    smoke_text = ("\n**Smoke run (tiny shapes, %s): checks the scripts, "
                  "measures nothing.**\n" % env.get("device")) if smoke else ""
    return f"""{BEGIN}
{TITLE}
{smoke_text}
Measured {env['date']} on {gpu} (compute capability
{env.get('compute_cap', '-')}; `nvidia-smi`: {env.get('nvidia_smi') or '-'}),
torch {env['torch']} (CUDA {env.get('cuda') or '-'}), Triton
{env.get('triton') or '-'}, modules compiled by moe-mlir `{prep.get('commit',
'?')}` for `{prep.get('target')}` {arch or ''} with
{prep.get('act')} activations. Median of {env['runs']} timed runs
(a quarter of that, at least 5, for T >= 1024) after {env['warmup']}
warm-up runs; {how}, no L2 flush between runs (ours: `moe-run
--benchmark=N`, the same method).

{tab}

* *experts used*: experts receiving at least one token. *GB/s*: bytes of
  the bf16 fc1 + fc2 weights of those experts, plus x and y (bf16) and
  the float32 logits, over the median time; *TFLOP/s*: 2 x routed slots x
  3 x H x I (SwiGLU gate, up and down projections) over the median time.
* *roofline ms (model)*: max(bytes / HBM bandwidth, FLOPs / dense bf16
  peak) with the datasheet numbers of the GPU (benchmarks/gpu/roofline.py;
  a model, not a measurement); *% of roofline*: that time over ours.
* *ours vs X*: X's median / ours (> 1: ours is faster).
* Every side's output was checked against a float64 reference (routing
  in float64 from the same float32 logits, float64 matmuls on the bf16
  weights) before timing: max|diff| / max|ref| at most 2e-2, else the side
  is reported as "wrong result" and not timed. Ours was also checked with
  `moe-run --check` (the float64 reference evaluator) at T = 1 and 16,
  except for DeepSeek-V3, whose weights in float64 would take 90 GB of
  host memory.{note_text}

<details><summary>Max relative error against the float64 reference</summary>

{checks(rows)}

</details>

**Reproduce.**

{REPRODUCE}
{END}"""


def write(out, text):
    old = open(out).read() if os.path.exists(out) else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text + "\n"
    with open(out, "w") as f:
        f.write(new)
    print("wrote %s" % out)


def main(argv):
    if len(argv) == 3 and argv[1] == "--placeholder":
        write(argv[2], placeholder())
        return 0
    allow_smoke = "--allow-smoke" in argv
    argv = [a for a in argv if a != "--allow-smoke"]
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    env, rows = load(argv[1])
    text = section(env, rows)
    print(table(env, rows)[0])
    if len(argv) == 3:
        if env.get("smoke") and not allow_smoke:
            sys.exit("report.py: %s is a --smoke run: not written into %s "
                     "(--allow-smoke to write it anyway)" % (argv[1],
                                                              argv[2]))
        write(argv[2], text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
