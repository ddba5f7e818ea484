#!/usr/bin/env python3
"""A whole Hugging Face-style MoE decoder on the cuda target, without a GPU.

  cuda_model.py FAMILY WORKDIR [--ptxas PATH] [--mode static|dynamic ...]
                [--kv-cache] [--export-arg=ARG ...]

For each export mode, exports FAMILY with test/lib/hf_moe.py (small config,
torch eager's outputs saved), then
  * compiles it with moe-compile --target=cuda --emit=ptx for sm_80 and
    sm_90 and, with --ptxas, assembles every PTX module;
  * compiles it with --target=cuda --emulate-cuda-kernels (every kernel of
    the cuda pipeline run as host loops) and compares each output with
    torch eager's (test/lib/onnx_vs_ort.py --no-ort, 1e-5 relative); the
    dynamic export, traced with batch 1 and sequence 8, also runs on
    batch 2, sequence 5;
  * with --executor, compiles it with --target=cuda --gpu-binary=executor
    and runs the cuda module itself (host code, kernels, device buffers)
    on the moe GPU executor (tools/gpu-executor, a CUDA driver that runs
    the kernels on the CPU with their block and warp semantics), compared
    with torch eager as above.
Prints one line per step ("FAMILY MODE sm_80 ptx: N modules",
"... ptxas-ok", "... emulated output 0 ... PASS", "... executor output 0
... PASS") for FileCheck; exits 1
when a tool fails. Tools come from $MOE_TOOLS_DIR (set by lit).
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
LIB = os.path.join(ROOT, "test", "lib")


def run(cmd, what):
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if result.returncode != 0:
        print(f"{what}: FAILED ({result.returncode}): {' '.join(cmd)}\n{result.stdout}")
        sys.exit(1)
    return result.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("family")
    parser.add_argument("workdir")
    parser.add_argument("--ptxas")
    parser.add_argument("--mode", action="append", choices=["static", "dynamic"])
    parser.add_argument("--kv-cache", action="store_true")
    parser.add_argument("--executor", metavar="LIB",
                        help="libmoe_gpu_executor.so: also run the cuda "
                             "module on it")
    parser.add_argument("--export-arg", action="append", default=[],
                        help="passed to hf_moe.py (a smaller config)")
    args = parser.parse_args()
    if args.executor:
        # moe-run (through onnx_vs_ort.py) loads it as the CUDA driver.
        os.environ["MOE_CUDA_DRIVER"] = args.executor
    tools = os.environ.get("MOE_TOOLS_DIR", "")
    compile_tool = os.path.join(tools, "moe-compile")

    for mode in args.mode or ["static", "dynamic"]:
        tag = f"{args.family} {mode}{' kv' if args.kv_cache else ''}"
        out = os.path.join(args.workdir, mode + ("-kv" if args.kv_cache else ""))
        export = [sys.executable, os.path.join(LIB, "hf_moe.py"), args.family, out,
                  "--" + mode]
        if args.kv_cache:
            export += ["--kv-cache", "--past", "3"]
        export += args.export_arg
        run(export, f"{tag} export")
        model = os.path.join(out, "model.onnx")

        for arch in ["sm_80", "sm_90"]:
            ptx = os.path.join(out, arch + ".ptx")
            run([compile_tool, model, "--target=cuda", "--cuda-arch=" + arch,
                 "--emit=ptx", "-o", ptx], f"{tag} {arch} compile")
            # One module per `//--- NAME.ptx` header (moe-compile --emit=ptx).
            text = open(ptx).read()
            modules = re.split(r"^//--- (\S+)\.ptx\n", text, flags=re.M)[1:]
            print(f"{tag} {arch} ptx: {len(modules) // 2} modules")
            for name, body in zip(modules[::2], modules[1::2]):
                if not args.ptxas:
                    continue
                path = os.path.join(out, f"{arch}.{name}.ptx")
                with open(path, "w") as f:
                    f.write(body)
                run([args.ptxas, "-arch=" + arch, path, "-o",
                     os.path.join(out, f"{arch}.{name}.cubin")],
                    f"{tag} {arch} ptxas {name}")
                print(f"{tag} {arch} ptxas-ok {name}")

        inputs = open(os.path.join(out, "inputs.txt")).read().split()
        # The kernels as host loops are one large function: LLVM's
        # optimiser would take most of the test's time (-O0).
        compare_with_torch(tag, "emulated", model, inputs, out,
                           ["--target=cuda", "--emulate-cuda-kernels", "-O0"])
        if args.executor:
            compare_with_torch(tag, "executor", model, inputs, out,
                               ["--target=cuda", "--cuda-arch=sm_90",
                                "--gpu-binary=executor"])
        if mode == "dynamic" and not args.kv_cache:
            run_other_shape(args, tag, out)


def compare_with_torch(tag, variant, model, inputs, out, compile_args):
    """Compiles `model` with `compile_args` into OUT/VARIANT, runs it and
    prints one "TAG VARIANT output I ... PASS" line per output against
    torch eager's."""
    compare = run([sys.executable, os.path.join(LIB, "onnx_vs_ort.py"), model,
                   *inputs, "--no-ort", "--workdir", os.path.join(out, variant),
                   *["--compile-arg=" + a for a in compile_args],
                   "--expected", os.path.join(out, "torch_{i}.npy")],
                  f"{tag} {variant}")
    for line in compare.splitlines():
        print(f"{tag} {variant} {line}")


def run_other_shape(args, tag, out):
    """Runs the dynamic model compiled from a [1, 8] trace on batch 2,
    sequence 5 (another export of the same weights gives the inputs and
    torch eager's answers)."""
    import numpy as np
    other = out + "-b2s5"
    run([sys.executable, os.path.join(LIB, "hf_moe.py"), args.family, other,
         "--dynamic", "--batch", "2", "--seq", "5", *args.export_arg],
        f"{tag} export b2s5")
    inputs = open(os.path.join(other, "inputs.txt")).read().split()
    lib = os.path.join(out, "emulated", "model.so")
    got = os.path.join(other, "ours0.npy")
    run([os.path.join(os.environ.get("MOE_TOOLS_DIR", ""), "moe-run"), lib,
         *[f"--input=@{p}" for p in inputs], f"--output=@{got}"],
        f"{tag} run b2s5")
    ours = np.load(got).astype(np.float64)
    want = np.load(os.path.join(other, "torch_0.npy"))
    rel = float(np.abs(ours - want).max() / np.abs(want).max())
    good = ours.shape == want.shape and rel <= 1e-5
    print(f"{tag} emulated batch 2 seq 5 output 0 {want.dtype}{list(want.shape)}: "
          f"max|ours-expected|/max|expected| = {rel:.3g} (bound 1e-05): "
          f"{'PASS' if good else 'FAIL'}")


if __name__ == "__main__":
    main()
