#!/usr/bin/python3
"""End-to-end check of expert weights stored panel-major at compile time.

The e2e cases pass their weights as arguments, which stay out-major; a
deployed model's weights are constants, which moe-compile stores
panel-major (-moe-pack-expert-weights: f32 panels, bf16 pairs of k, f16
panels) and
multiplies with the panel kernel. Here a layer with its router
(test/lib/bf16_layer.py) has its weights as dense resource constants; it is
compiled with moe-compile's defaults (and the flags of the case) and run by
moe-run on token counts that reach every form of that kernel: one to three
rows per expert (decode), partial and full blocks of rows, one and two
blocks of k. Each output is checked against the float64 reference at
1e-5 (f32), 2e-3 (f16) or 2e-2 (bf16) of max|ref|; the
optimised LLVM IR must hold the panel kernel's prefetches (and not
with --pack-expert-weights=false, which shows that check can fail).

The quantised cases (QUANT) compile f32 layers whose expert weights are
QMoE's packed codes with --int8-activations: moe-compile stores them in
panels of 4-byte words (the vpdpbusd operand), which the int8 panel kernel
reads at every row count. The same layer compiled with
--pack-quantized-weights=false (rows, rearranged per call; dot products
at decode) must give the same output within 1e-5 of max|ref|: both
quantise the activations alike and sum the same integers. Both are checked
against the float64 reference of the dequantised weights at 3e-2, the
int8 activations' bound (e2e-int8).

The f32_bf16_weights cases compile f32 layers with
--weight-type=bf16: the IR must hold vdpbf16ps (with AVX512-BF16;
not without the flag), the error must be bf16's (above 1e-5, within 2e-2),
and the same layer compiled for cuda must take the tensor-core kernels and
pass on the GPU executor.

    run_constant_weights.py --bin DIR --work DIR CASE

Exits 77 (skipped) where the CPU has no AVX-512 (no panel kernel) or, for
bf16, no AVX512-BF16.
"""
import argparse
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
import numpy as np  # noqa: E402
from bf16_layer import layer_mlir, quantize, reference, round_bf16  # noqa: E402

BF16_WEIGHTS = "--weight-type=bf16"
INT8 = "--int8-activations"

# name: dtype, H, I, E, k, token counts, extra moe-compile flags, shared
# experts (S, Is, gated) or None. H and I are multiples of 64 (whole weight
# panels); K of 256 and 320 (128 and 160 bf16 pairs) takes one and two
# blocks of k. The shared cases with --group-shared-experts run their
# shared experts as slices of the routed experts' size in the routed
# experts' schedule (-moe-group-shared-experts): a gated one of 2 I (two
# slices), two of 1.75 I (a padded slice each); the default keeps them
# separate. The experts the routed moe.dispatch has after the fusions show
# which.
CASES = {
    "f32": ("f32", 128, 192, 4, 2, [1, 2, 3, 5, 40, 300], [], None),
    "f32_unfused_gather": ("f32", 128, 192, 4, 2, [3, 300], ["--fuse-gather=false"], None),
    "bf16": ("bf16", 256, 320, 4, 2, [1, 2, 3, 5, 40, 300], [], None),
    "bf16_unfused_gather": ("bf16", 256, 320, 4, 2, [3, 300], ["--fuse-gather=false"], None),
    # f16 weights (a half-precision model's): panels of f16 that the f32
    # kernel widens as it loads them, the tokens widened by decomposition.
    "f16": ("f16", 128, 192, 4, 2, [1, 2, 3, 5, 40, 300], [], None),
    "f32_shared_gated": ("f32", 128, 128, 4, 2, [1, 3, 40, 300], ["--group-shared-experts"], (1, 256, True)),
    "f32_shared2_padded": ("f32", 128, 128, 4, 2, [1, 40], ["--group-shared-experts", "--fuse-combine=false"], (2, 224, False)),
    "f32_shared_separate": ("f32", 128, 128, 4, 2, [1, 40], [], (1, 256, True)),
    "bf16_shared_gated": ("bf16", 256, 128, 4, 2, [1, 40], ["--group-shared-experts"], (1, 256, True)),
    # f32 layers whose routed (and shared) expert weights moe-compile stores
    # as bf16 (-moe-convert-expert-weights): bf16 tolerance.
    "f32_bf16_weights": ("f32", 128, 192, 4, 2, [1, 3, 40, 300], [BF16_WEIGHTS], None),
    "f32_bf16_weights_shared": ("f32", 128, 128, 4, 2, [1, 40], [BF16_WEIGHTS], (1, 256, True)),
    # Quantised experts with int8 activations (QUANT gives bits and block
    # size): per-row 8-bit scales with two schedule panels of fc1 (I = 512
    # at 256 columns a panel); 4-bit blocks of 32 (floats sums per block);
    # 8-bit blocks of 64 with fc2's 384 columns in two panels of 192.
    "q8_row_int8act": ("f32", 256, 512, 4, 2, [1, 2, 3, 7, 40, 300], [INT8], None),
    "q4_block32_int8act": ("f32", 256, 256, 4, 2, [1, 3, 40, 300], [INT8], None),
    "q8_block64_int8act": ("f32", 384, 192, 4, 2, [1, 5, 40], [INT8], None),
}
QUANT = {"q8_row_int8act": (8, 0), "q4_block32_int8act": (4, 32),
         "q8_block64_int8act": (8, 64)}


def run(cmd, env=None):
    result = subprocess.run(cmd, capture_output=True, text=True,
                            env=dict(os.environ, **env) if env else None)
    if result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {result.returncode}\n"
                 f"{result.stdout}{result.stderr}")
    return result.stdout


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("case", choices=sorted(CASES))
    args = parser.parse_args()
    dtype, H, I, E, k, tokens, flags, shared = CASES[args.case]
    quant = QUANT.get(args.case)
    needed = {"avx512f"} | ({"avx512_bf16"} if dtype == "bf16" else set()) \
        | ({"avx512_vnni"} if quant else set())
    if not needed <= cpu_flags():
        print(f"SKIP {args.case}: the CPU lacks {' '.join(sorted(needed))}")
        return 77
    work = os.path.join(args.work, args.case)
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(sum(map(ord, args.case)))
    cast = {"bf16": round_bf16,
            "f16": lambda a: a.astype(np.float16)}.get(
                dtype, lambda a: a.astype(np.float32))
    normal = lambda shape, fan_in: cast(
        rng.standard_normal(shape, dtype=np.float32) / np.sqrt(fan_in))
    weights = dict(router=normal((E, H), H), fc1=normal((E, 2 * I, H), H),
                   fc2=normal((E, H, I), I))
    if shared:
        S, Is, gated = shared
        weights.update(shared_fc1=normal((S, 2 * Is, H), H),
                       shared_fc2=normal((S, H, Is), Is))
        if gated:
            weights.update(shared_gate=normal((H,), H))
    constants = weights
    if quant:
        # The codes and scales are the layer's; the reference takes the
        # weights they dequantise to.
        constants = dict(weights)
        for name in ("fc1", "fc2"):
            codes, scales, weights[name] = quantize(weights[name], *quant)
            constants.update({name: codes, f"{name}_scales": scales})
    mlir = os.path.join(work, "layer.mlir")
    with open(mlir, "w") as f:
        f.write(layer_mlir(H, I, E, k, dtype, constants=constants,
                           shared=shared, quant=quant))
    compile_cmd = [os.path.join(args.bin, "moe-compile"), mlir] + flags

    # The quantised experts' weights in words (and not with
    # --pack-quantized-weights=false): the int8 panel kernel alone reads
    # them, so the two modules below take different kernels.
    if quant:
        for pack, expected in (("true", True), ("false", False)):
            ir = subprocess.run(
                compile_cmd + [f"--pack-quantized-weights={pack}",
                               "--emit=mlir", "-o", os.devnull,
                               "--mlir-print-ir-after=moe-pack-expert-weights"],
                capture_output=True, text=True).stderr
            words = re.search(r"moe\.expert .*panel_width = 64.*quant = "
                              r"#moe\.quant.*x64x4xui8>", ir) is not None
            if words != expected:
                sys.exit(f"FAIL: --pack-quantized-weights={pack}: quantised "
                         f"weights in panels of words "
                         f"{'missing' if expected else 'present'}")
    # The panel kernel is the only float kernel that prefetches.
    for pack, expected in (() if quant else
                           (("true", True), ("false", False))):
        ir = run(compile_cmd + [f"--pack-expert-weights={pack}", "--emit=llvm",
                                "-o", "-"])
        if ("@llvm.prefetch" in ir) != expected:
            sys.exit(f"FAIL: --pack-expert-weights={pack}: the panel kernel's "
                     f"prefetches {'missing' if expected else 'present'}")
    if shared:
        S, Is, _ = shared
        slices = S * -(-Is // I)
        grouped = "--group-shared-experts" in flags
        ir = subprocess.run(
            compile_cmd + ["--emit=mlir", "-o", os.devnull,
                           "--mlir-print-ir-after=moe-fuse-gather"],
            capture_output=True, text=True).stderr
        counts = set(re.findall(r"moe\.dispatch .*\{num_experts = (\d+)", ir))
        expected = {str(E + slices if grouped else E)}
        if counts != expected:
            sys.exit(f"FAIL: the routed dispatch has {sorted(counts)} experts "
                     f"after the fusions, expected {expected}")
    # bf16 weights of an f32 layer: with AVX512-BF16 the experts' GEMMs are
    # vdpbf16ps on rows rounded to bf16 (and not without the flag); the
    # error must show bf16's rounding (an f32 layer is within 1e-6), so
    # that an ignored flag fails the check.
    converted = BF16_WEIGHTS in flags
    if converted and "avx512_bf16" in cpu_flags():
        plain = [c for c in compile_cmd if c != BF16_WEIGHTS]
        for cmd, expected in ((compile_cmd, True), (plain, False)):
            ir = run(cmd + ["--emit=llvm", "-o", "-"])
            if ("llvm.x86.avx512bf16.dpbf16ps" in ir) != expected:
                sys.exit(f"FAIL: vdpbf16ps {'missing' if expected else 'present'}"
                         f" in the experts' GEMMs of {' '.join(cmd[1:])}")
    so = os.path.join(work, "layer.so")
    run(compile_cmd + ["-o", so])
    rows_so = None
    if quant:
        rows_so = os.path.join(work, "layer-rows.so")
        run(compile_cmd + ["--pack-quantized-weights=false", "-o", rows_so])
    # On the cuda target the bf16 weights take the tensor-core kernels
    # (f32 expert weights the SIMT ones), run here on the GPU executor.
    modules = [(so, {})]
    executor = os.path.join(args.bin, "..", "lib", "libmoe_gpu_executor.so")
    if converted and os.path.exists(executor):
        cuda = compile_cmd + ["--target=cuda", "--cuda-arch=sm_90"]
        if "mma.sync" not in run(cuda + ["--emit=ptx", "-o", "-"]):
            sys.exit("FAIL: no tensor-core kernel for the bf16 weights on cuda")
        cuda_so = os.path.join(work, "layer-cuda.so")
        run(cuda + ["--gpu-binary=executor", "-o", cuda_so])
        modules.append((cuda_so, {"MOE_CUDA_DRIVER": executor}))

    # f16 outputs carry f16's rounding (2^-11), bf16 ones bf16's (2^-8).
    tolerance = {"bf16": 2e-2, "f16": 2e-3}.get(dtype, 2e-2 if converted else 1e-5)
    if quant:
        tolerance = 3e-2
    for T in tokens:
        x = cast(np.random.default_rng([T, H]).standard_normal(
            (T, H), dtype=np.float32))
        x_path = os.path.join(work, f"x_T{T}.npy")
        y_path = os.path.join(work, f"y_T{T}.npy")
        np.save(x_path, x)
        ref = reference(x, weights["router"], weights["fc1"], weights["fc2"], k,
                        weights.get("shared_fc1"), weights.get("shared_fc2"),
                        weights.get("shared_gate"))
        for module, env in modules:
            run([os.path.join(args.bin, "moe-run"), module, "--threads=2",
                 f"--input=@{x_path}", f"--output=@{y_path}", "--output-f32"],
                env)
            y = np.load(y_path).astype(np.float64)
            error = np.abs(y - ref).max() / np.abs(ref).max()
            status = "ok" if error <= tolerance else "FAIL"
            target = " (cuda, GPU executor)" if env else ""
            print(f"{status}: {args.case}{target} T={T}: max|diff|/max|ref| = "
                  f"{error:.2e} (tolerance {tolerance:g})")
            if error > tolerance or not np.isfinite(y).all():
                return 1
            if converted and error < 1e-5:
                print(f"FAIL: {args.case}{target} T={T}: an f32 result; the "
                      "weights were not converted to bf16")
                return 1
        if rows_so:
            rows_path = os.path.join(work, f"y_rows_T{T}.npy")
            run([os.path.join(args.bin, "moe-run"), rows_so, "--threads=2",
                 f"--input=@{x_path}", f"--output=@{rows_path}",
                 "--output-f32"])
            rows = np.load(rows_path).astype(np.float64)
            y = np.load(y_path).astype(np.float64)
            apart = np.abs(y - rows).max() / np.abs(ref).max()
            status = "ok" if apart <= 1e-5 else "FAIL"
            print(f"{status}: {args.case} T={T}: words vs rows: "
                  f"max|diff|/max|ref| = {apart:.2e} (tolerance 1e-05)")
            if apart > 1e-5:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
