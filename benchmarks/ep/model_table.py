#!/usr/bin/env python3
"""Predicted expert-parallel layer times from -moe-overlap-communication's
cost model, for DeepSeek-V3 and Mixtral layers on H100 clusters.

For every configuration it writes the layer (bf16 expert weights, f32
activations as the compiler's exchanges carry them), runs

  moe-opt --moe-shard-experts=ranks=P --moe-decompose-layer --canonicalize
          --moe-overlap-communication="tokens=... bandwidth=... report=true"

and reads the model's table from the remark: the serial (one chunk) time,
the communication share, the chosen chunk count and its predicted time.
Nothing here is measured; the hardware numbers are assumptions, listed in
the output.

Usage: model_table.py --bin build/bin [--out FILE]
  --out FILE  a file with this script's BEGIN/END markers
              (benchmarks/RESULTS.md) gets the block between them replaced;
              any other file is overwritten.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

# name: (H, I, E, k)
MODELS = {
    "DeepSeek-V3": (7168, 2048, 256, 8),
    "Mixtral-8x7B": (4096, 14336, 8, 2),
}

# One H100 SXM: bf16 grouped GEMMs at 600 TFLOP/s (of 989 peak), HBM3 at
# 3000 GB/s (of 3350).
GPU = {"peak-gflops": 600000.0, "memory-bandwidth": 3000.0,
       "chunk-overhead": 20.0}
# Per-GPU all-to-all bandwidth (GB/s) and latency (us) of one exchange.
LINKS = {
    "NVLink": {"bandwidth": 400.0, "latency": 15.0},
    "IB-64": {"bandwidth": 50.0, "latency": 50.0},
    "IB-256": {"bandwidth": 50.0, "latency": 100.0},
}

# (model, GPUs in the all-to-all group, GPUs in the job, link, tokens/GPU)
CONFIGS = [
    ("DeepSeek-V3", 8, 8, "NVLink", 4096),
    ("DeepSeek-V3", 64, 64, "IB-64", 4096),
    ("DeepSeek-V3", 256, 256, "IB-256", 4096),
    ("DeepSeek-V3", 8, 8, "NVLink", 512),
    ("DeepSeek-V3", 64, 64, "IB-64", 512),
    ("DeepSeek-V3", 256, 256, "IB-256", 512),
    # Mixtral has 8 experts: at 64 and 256 GPUs expert parallelism stays 8
    # wide (one node, NVLink) and the rest is data parallelism, so the layer
    # is the 8-GPU one; the IB row places the 8 ranks on 8 nodes instead.
    ("Mixtral-8x7B", 8, 8, "NVLink", 4096),
    ("Mixtral-8x7B", 8, 64, "NVLink", 4096),
    ("Mixtral-8x7B", 8, 256, "NVLink", 4096),
    ("Mixtral-8x7B", 8, 8, "IB-64", 4096),
    ("Mixtral-8x7B", 8, 8, "NVLink", 512),
]

ROW = re.compile(r"^(none|experts|tokens)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+"
                 r"([\d.]+)\s+([\d.]+)\s+([\d.]+)x$")
CHOSEN = re.compile(r"^chosen: (none|experts|tokens), (\d+) chunks?$")


def layer_text(h, i, e, k):
    return f"""func.func @layer(%x: tensor<?x{h}xf32>, %logits: tensor<?x{e}xf32>,
    %fc1: tensor<{e}x{2 * i}x{h}xbf16>, %fc2: tensor<{e}x{h}x{i}xbf16>)
    -> tensor<?x{h}xf32> {{
  %y = moe.layer %x, %logits fc1 %fc1 fc2 %fc2
      {{k = {k} : i64, activation = #moe.activation<swiglu>,
       swiglu_fusion = #moe.swiglu_fusion<concatenated>}}
      : (tensor<?x{h}xf32>, tensor<?x{e}xf32>, tensor<{e}x{2 * i}x{h}xbf16>,
         tensor<{e}x{h}x{i}xbf16>) -> tensor<?x{h}xf32>
  return %y : tensor<?x{h}xf32>
}}
"""


def predict(moe_opt, work, model, ranks, link, tokens):
    h, i, e, k = MODELS[model]
    path = os.path.join(work, "%s.mlir" % model)
    with open(path, "w") as f:
        f.write(layer_text(h, i, e, k))
    options = dict(GPU, **LINKS[link])
    options.update(tokens=tokens, **{"max-chunks": 16})
    opts = " ".join("%s=%s" % kv for kv in options.items()) + " report=true"
    cmd = [moe_opt, path, "--moe-shard-experts=ranks=%d" % ranks,
           "--moe-decompose-layer", "--canonicalize",
           "--moe-overlap-communication=%s" % opts, "-o", os.devnull]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("model_table.py: %s failed:\n%s" % (" ".join(cmd),
                                                      out.stderr))
    rows = {}
    chosen = None
    for line in out.stderr.splitlines():
        m = ROW.match(line)
        if m:
            rows[(m.group(1), int(m.group(2)))] = [
                float(v) for v in m.groups()[2:]]
        m = CHOSEN.match(line)
        if m:
            chosen = (m.group(1), int(m.group(2)))
    d, ex, r, serial, _ = rows[("none", 1)]
    return {"serial": serial, "comm": (d + r) / serial, "chosen": chosen,
            "best": rows[chosen][3], "expert": ex}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out")
    args = ap.parse_args()
    moe_opt = os.path.join(args.bin, "moe-opt")
    lines = [
        "| model | GPUs (EP group) | link | tokens/GPU | serial layer (ms) "
        "| communication share | chosen split, C | overlapped (ms) | gain |",
        "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as work:
        for model, ranks, gpus, link, tokens in CONFIGS:
            p = predict(moe_opt, work, model, ranks, link, tokens)
            lines.append(
                "| %s | %d (%d) | %s | %d | %.2f | %.0f%% | %s, %d | %.2f | "
                "%.2fx |" % (model, gpus, ranks, link, tokens,
                             p["serial"] / 1e3, 100 * p["comm"],
                             p["chosen"][0], p["chosen"][1],
                             p["best"] / 1e3, p["serial"] / p["best"]))
    assumptions = [
        "",
        "Assumptions (per GPU): %s; links: %s. Rows travel as f32 "
        "(the compiler widens activations before dispatch), balanced "
        "routing, (P-1)/P of the rows cross the link, dispatch and return "
        "share it." % (
            ", ".join("%s=%g" % kv for kv in GPU.items()),
            "; ".join("%s %g GB/s, %g us" % (n, v["bandwidth"], v["latency"])
                      for n, v in LINKS.items())),
    ]
    text = "\n".join(lines + assumptions) + "\n"
    if args.out:
        write_block(args.out, text)
    sys.stdout.write(text)


BEGIN = ("<!-- BEGIN EP MODEL (benchmarks/ep/model_table.py): edits here are "
         "lost -->")
END = "<!-- END EP MODEL -->"


def write_block(path, text):
    old = open(path).read() if os.path.exists(path) else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + BEGIN + "\n" + text + END + tail
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
