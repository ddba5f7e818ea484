#!/usr/bin/env python3
"""A whole Hugging Face-style MoE decoder (test/lib/hf_moe.py) imported,
raised, compiled and run on the host against torch eager and ONNX Runtime.

  hf_model.py FAMILY WORKDIR [--mode static|dynamic ...] [--no-other-shape]
              [--padded-shape B,S,P ...]
              [--decode-steps N] [--export-arg=ARG ...] [--compile-arg=ARG ...]

For each export mode (default: static, then dynamic):
  * exports FAMILY with hf_moe.py (batch 1, sequence 8; torch eager's
    outputs saved);
  * imports it with moe-import-onnx --print-raising and prints each raised
    block, each reason given for a block not raised, and
    "FAMILY MODE raised N of L MoE blocks (layers ...)", L the layers whose
    MLP is a sparse MoE block (hf_moe.py's config.json), a block counted
    for the layer its node names are under (/layers.K/);
  * compiles it with moe-compile, runs it with moe-run, and compares every
    output with torch eager's and with ONNX Runtime's on the same file
    (test/lib/ort_run.mjs), 1e-5 relative (onnx_vs_ort.compare);
  * the static export is also compiled with the weights inside the LLVM
    module (--inline-constants): its outputs must be bit-identical;
  * with --external-data, the static export is also saved with every
    tensor of 1 KiB or more (initializers and Constant nodes' values) in a
    file of its own beside the model, as torch.onnx.export writes models
    over 2 GB; it must raise alike ("FAMILY static external-data raised
    ...") and give bit-identical outputs;
  * the dynamic export also runs on batch 2, sequence 5 (hf_moe.py
    --no-export with the same seed gives the inputs and torch eager's
    outputs for the same weights), and on each --padded-shape B,S,P:
    B sequences of S tokens, the first left-padded by P (its attention
    mask 0 there), long enough for several blocks of attention rows.
With --half f16|bf16: the dynamic export converted to that type
(test/lib/half_onnx.py) must raise alike ("FAMILY f16 raised ...") and its
logits, run on the half inputs, stay within --half-rtol of torch eager's
f32 logits.
With --decode-steps N: exports FAMILY with a KV cache and dynamic axes,
imports it as above ("FAMILY decode raised ..."), and runs a prefill of 8
tokens on an empty past and N decode steps of one token. The tokens are
torch eager's greedy choices (hf_moe.py --decode-steps, where each step's
past is torch's own present), fed to all three; our compiled module and
ONNX Runtime are each fed their own presents of the step before, so each
runs a real decode loop. Logits and every present are compared at every
step with ONNX Runtime's and with torch's (1e-5 relative).

Prints one line per check for FileCheck; exits 1 when a tool fails (the
comparisons print FAIL and exit 1 at the end). Tools come from
$MOE_TOOLS_DIR, onnxruntime-node from $ORT_NODE_MODULES (set by lit).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
LIB = os.path.join(ROOT, "test", "lib")
sys.path.insert(0, LIB)
from onnx_vs_ort import compare  # noqa: E402

TOOLS = os.environ.get("MOE_TOOLS_DIR", "")


def run(cmd, what):
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if result.returncode != 0:
        print(f"{what}: FAILED ({result.returncode}): {' '.join(cmd)}\n{result.stdout}")
        sys.exit(1)
    return result.stdout


def export(args, out, *flags):
    run([sys.executable, os.path.join(LIB, "hf_moe.py"), args.family, out, *flags,
         *args.export_arg], f"{args.family} export {out}")
    return os.path.join(out, "model.onnx")


def check_raising(tag, out):
    """Imports OUTDIR/model.onnx with --print-raising; prints the raised
    blocks, the reasons for blocks not raised and the count against the
    MoE layers (for FileCheck to judge: the exit status does not depend
    on it)."""
    model = os.path.join(out, "model.onnx")
    log = run([os.path.join(TOOLS, "moe-import-onnx"), model, "--print-raising",
               "-o", os.path.join(out, "model.mlir")], f"{tag} import")
    moe_layers = json.load(open(os.path.join(out, "config.json")))["moe_layers"]
    raised = {}
    for line in log.splitlines():
        layer = re.search(r"'/layers\.(\d+)/", line)
        if line.startswith("raised "):
            print(f"{tag} {line}")
            key = int(layer.group(1)) if layer else -1  # -1: outside the layers
            raised[key] = raised.get(key, 0) + 1
        elif line.startswith("raising: not raised"):
            print(f"{tag} {line}")
    # One moe.layer per MoE layer, none anywhere else.
    got = sum(1 for i in moe_layers if raised.get(i) == 1)
    extra = sum(n for i, n in raised.items() if i not in moe_layers or n > 1)
    # "unraised", not "not raised": lit substitutes the `not` tool in RUN
    # lines, so --implicit-check-not="not raised" would never match.
    for i in moe_layers:
        if i not in raised:
            print(f"{tag} layer {i}: MoE block unraised")
    layers = ", ".join(str(i) for i in moe_layers)
    print(f"{tag} raised {got} of {len(moe_layers)} MoE blocks (layers {layers})"
          + (f", {extra} other blocks raised" if extra else ""))


def output_names(model):
    return [o.name for o in onnx.load(model, load_external_data=False).graph.output]


def run_ours(lib, inputs, prefix, count, what):
    paths = [f"{prefix}{i}.npy" for i in range(count)]
    run([os.path.join(TOOLS, "moe-run"), lib, *[f"--input=@{p}" for p in inputs],
         *[f"--output=@{p}" for p in paths]], what)
    return [np.load(p) for p in paths]


def run_ort(model, inputs, prefix, count, what):
    run(["node", os.path.join(LIB, "ort_run.mjs"), model, prefix, *inputs], what)
    return [np.load(f"{prefix}{i}.npy") for i in range(count)]


def check_outputs(tag, names, ours, ort, torch_dir, rtol):
    ok = True
    for i, name in enumerate(names):
        ok &= compare(f"{tag} {name}", ours[i], ort[i], "ort", rtol)
        ok &= compare(f"{tag} {name}", ours[i],
                      np.load(os.path.join(torch_dir, f"torch_{i}.npy")), "torch", rtol)
    return ok


def externalize(model_path, out_dir, min_bytes=1024):
    """Saves the model in OUT_DIR with every tensor of at least MIN_BYTES
    (initializers and Constant nodes' values) in a file of its own, the
    layout torch.onnx.export gives models over 2 GB."""
    model = onnx.load(model_path)
    os.makedirs(out_dir, exist_ok=True)
    tensors = list(model.graph.initializer) + [
        a.t for n in model.graph.node if n.op_type == "Constant"
        for a in n.attribute if a.name == "value"]
    for i, t in enumerate(tensors):
        raw = t.raw_data
        if len(raw) < min_bytes:
            continue
        location = f"tensor_{i}"
        with open(os.path.join(out_dir, location), "wb") as f:
            f.write(raw)
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in (("location", location), ("length", str(len(raw)))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
    onnx.save(model, os.path.join(out_dir, "model.onnx"))


def check_mode(args, mode):
    tag = f"{args.family} {mode}"
    out = os.path.join(args.workdir, mode)
    model = export(args, out, "--" + mode)
    check_raising(tag, out)
    ok = True
    lib = os.path.join(out, "model.so")
    run([os.path.join(TOOLS, "moe-compile"), model, *args.compile_arg, "-o", lib],
        f"{tag} compile")
    names = output_names(model)
    inputs = open(os.path.join(out, "inputs.txt")).read().split()
    ours = run_ours(lib, inputs, os.path.join(out, "ours"), len(names), f"{tag} run")
    ort = run_ort(model, inputs, os.path.join(out, "ort"), len(names), f"{tag} ort")
    ok &= check_outputs(tag, names, ours, ort, out, args.rtol)
    def same_bits(label, model_path, prefix, *compile_args):
        """Compiles MODEL_PATH (with COMPILE_ARGS), runs it on the same
        inputs and prints whether its outputs are bit-identical to ours."""
        lib_path = prefix + ".so"
        run([os.path.join(TOOLS, "moe-compile"), model_path, *args.compile_arg,
             *compile_args, "-o", lib_path], f"{tag} compile {label}")
        same = run_ours(lib_path, inputs, prefix, len(names), f"{tag} run {label}")
        identical = all(np.array_equal(a, b) for a, b in zip(ours, same))
        print(f"{tag} {label}: {'bit-identical' if identical else 'differ: FAIL'}")
        return identical

    if mode == "static":
        # The weights as an object of their own (the default) and inside
        # the LLVM module must give the same bits.
        ok &= same_bits("external vs inline constants", model,
                        os.path.join(out, "inline"), "--inline-constants")
    if mode == "static" and args.external_data:
        ext = out + "-external"
        externalize(model, ext)
        with open(os.path.join(out, "config.json")) as src, \
                open(os.path.join(ext, "config.json"), "w") as dst:
            dst.write(src.read())
        check_raising(f"{tag} external-data", ext)
        ok &= same_bits("external-data vs in-file tensors",
                        os.path.join(ext, "model.onnx"), os.path.join(ext, "ours"))
    def other_shape(suffix, label, *flags):
        """Runs the dynamic export's module and ONNX Runtime on inputs of
        another shape (hf_moe.py --no-export with FLAGS: same weights)."""
        other = out + suffix
        export(args, other, "--dynamic", *flags, "--no-export")
        inputs = open(os.path.join(other, "inputs.txt")).read().split()
        ours = run_ours(lib, inputs, os.path.join(other, "ours"), len(names),
                        f"{tag} run {label}")
        ort = run_ort(model, inputs, os.path.join(other, "ort"), len(names),
                      f"{tag} ort {label}")
        return check_outputs(f"{tag} {label}", names, ours, ort, other, args.rtol)

    if mode == "dynamic" and not args.no_other_shape:
        ok &= other_shape("-b2s5", "batch 2 seq 5", "--batch", "2", "--seq", "5")
    for shape in args.padded_shape if mode == "dynamic" else []:
        batch, seq, pad = shape.split(",")
        ok &= other_shape(f"-b{batch}s{seq}p{pad}",
                          f"batch {batch} seq {seq} left-padded {pad}",
                          "--batch", batch, "--seq", seq, "--pad", pad)
    return ok


def check_decode(args):
    tag = f"{args.family} decode"
    out = os.path.join(args.workdir, "decode")
    model = export(args, out, "--dynamic", "--kv-cache",
                   "--decode-steps", str(args.decode_steps))
    check_raising(tag, out)
    ok = True
    lib = os.path.join(out, "model.so")
    run([os.path.join(TOOLS, "moe-compile"), model, *args.compile_arg, "-o", lib],
        f"{tag} compile")
    names = output_names(model)
    worst = {"ort": 0.0, "torch": 0.0}
    presents = {"ours": None, "ort": None}
    for step in range(args.decode_steps + 1):
        d = os.path.join(out, "steps", str(step))
        torch_inputs = open(os.path.join(d, "inputs.txt")).read().split()
        feeds = {}
        for side in presents:
            feeds[side] = []
            for path in torch_inputs:
                name = os.path.basename(path)[len("in_"):-len(".npy")]
                if step == 0 or not name.startswith("past_key_values."):
                    feeds[side].append(path)  # tokens, mask, the empty past
                    continue
                present = name.replace("past_key_values.", "present.")
                feeds[side].append(f"{presents[side]}{names.index(present)}.npy")
        ours = run_ours(lib, feeds["ours"], os.path.join(d, "ours"), len(names),
                        f"{tag} step {step} run")
        ort = run_ort(model, feeds["ort"], os.path.join(d, "ort"), len(names),
                      f"{tag} step {step} ort")
        presents = {"ours": os.path.join(d, "ours"), "ort": os.path.join(d, "ort")}
        ok &= check_outputs(f"{tag} step {step}", names, ours, ort, d, args.rtol)
        for i in range(len(names)):
            for peer, want in [("ort", ort[i]),
                               ("torch", np.load(os.path.join(d, f"torch_{i}.npy")))]:
                if ours[i].shape == want.shape and want.size:
                    err = float(np.abs(ours[i].astype(np.float64) - want).max() /
                                max(float(np.abs(want).max()), 1e-30))
                    worst[peer] = max(worst[peer], err)
    print(f"{tag} max over {args.decode_steps + 1} steps and {len(names)} outputs: "
          f"vs ort {worst['ort']:.3g}, vs torch {worst['torch']:.3g}")
    return ok


def check_half(args, kind):
    """The dynamic export converted to KIND (test/lib/half_onnx.py): its
    MoE blocks must raise as the f32 file's do, and its logits stay within
    --half-rtol of torch eager's f32 ones. (ONNX Runtime's CPU provider
    cannot run such a graph: it casts half ops it has no kernel for to f32
    and then rejects its own casts.)"""
    tag = f"{args.family} {kind}"
    # One f32 export for every kind.
    source = os.path.join(args.workdir, "half-source")
    if not os.path.exists(os.path.join(source, "model.onnx")):
        export(args, source, "--dynamic")
    out = os.path.join(args.workdir, kind)
    os.makedirs(out, exist_ok=True)
    model = os.path.join(out, "model.onnx")
    f32_inputs = open(os.path.join(source, "inputs.txt")).read().split()
    inputs = [os.path.join(out, os.path.basename(p)) for p in f32_inputs]
    pairs = [x for pair in zip(f32_inputs, inputs) for x in pair]
    run([sys.executable, os.path.join(LIB, "half_onnx.py"), kind,
         os.path.join(source, "model.onnx"), model, *pairs], f"{tag} convert")
    for name in ("config.json", "torch_0.npy"):
        shutil.copy(os.path.join(source, name), out)
    check_raising(tag, out)
    lib = os.path.join(out, "model.so")
    run([os.path.join(TOOLS, "moe-compile"), model, *args.compile_arg, "-o", lib],
        f"{tag} compile")
    names = output_names(model)
    paths = [os.path.join(out, f"ours{i}.npy") for i in range(len(names))]
    run([os.path.join(TOOLS, "moe-run"), lib, "--output-f32",
         *[f"--input=@{p}" for p in inputs], *[f"--output=@{p}" for p in paths]],
        f"{tag} run")
    torch = np.load(os.path.join(out, "torch_0.npy"))
    return compare(f"{tag} {names[0]}", np.load(paths[0]), torch, "torch",
                   args.half_rtol)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("family")
    parser.add_argument("workdir")
    parser.add_argument("--mode", action="append", choices=["static", "dynamic"])
    parser.add_argument("--no-modes", action="store_true",
                        help="only the decode run")
    parser.add_argument("--no-other-shape", action="store_true")
    parser.add_argument("--padded-shape", action="append", default=[],
                        metavar="BATCH,SEQ,PAD",
                        help="also run the dynamic export on BATCH sequences of SEQ "
                             "tokens, the first left-padded by PAD (repeatable)")
    parser.add_argument("--external-data", action="store_true",
                        help="also check the static export with its tensors "
                             "in files beside the model")
    parser.add_argument("--decode-steps", type=int, default=0)
    parser.add_argument("--half", action="append", default=[],
                        choices=["f16", "bf16"],
                        help="also check the dynamic export converted to "
                             "this type (test/lib/half_onnx.py)")
    parser.add_argument("--half-rtol", type=float, default=1e-2)
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--export-arg", action="append", default=[],
                        help="passed to hf_moe.py (a smaller config)")
    parser.add_argument("--compile-arg", action="append", default=[],
                        help="passed to moe-compile (a pipeline option)")
    args = parser.parse_args()
    ok = True
    if not args.no_modes:
        for mode in args.mode or ["static", "dynamic"]:
            ok &= check_mode(args, mode)
    if args.decode_steps:
        ok &= check_decode(args)
    for kind in args.half:
        ok &= check_half(args, kind)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
