#!/usr/bin/python3
"""Runs end-to-end cases: generate, moe-compile, moe-run --check.

    run_case.py --bin DIR --work DIR CASE...     run these cases
    run_case.py --bin DIR --work DIR --all       every registered case
    run_case.py --bin DIR --work DIR --negative CHECK
                                                 one bad-input check (below)

GPU cases (gpu_cases.py, ctest label `gpu`):

    run_case.py --bin DIR --work DIR --target=cuda CASE...
    run_case.py --bin DIR --work DIR --target=cuda --all-gpu
        probe the GPU (nvidia-smi, libcuda.so.1), compile with
        `--target=cuda --cuda-arch=<its compute capability>` and run
        `moe-run --check --tolerance=2e-2`. Without a usable GPU every case
        prints `SKIP <case>: <reason>` and the exit code is 77 (ctest's
        SKIP_RETURN_CODE) when nothing ran.
    ... --target=cuda --compile-only [--cuda-arch=sm_90]
        generate and compile only (no GPU needed: for a machine with the
        compiler but without the GPU)
    ... --target=cuda --run-only
        run WORK/CASE/layer.so as compiled by --compile-only (a machine
        with the GPU and moe-run but without the compiler)

GPU cases on the moe GPU executor (ctest label `gpu-executor`), no GPU
needed:

    run_case.py --bin DIR --work DIR --target=executor CASE...
        compile with `--target=cuda --cuda-arch=sm_90 --gpu-binary=executor`
        and run with MOE_CUDA_DRIVER=<DIR>/../lib/libmoe_gpu_executor.so,
        the CUDA driver that runs the kernels on the CPU with their warp
        and block semantics (tools/gpu-executor); same checks and tolerance
        as on a GPU.

MOE_CUDA_ARCH=sm_XX overrides the detected architecture. A GPU case runs
on the CPU too (`--target=cpu`, moe-run's default tolerances), which checks
its spec without a GPU.

For every case: gen_case.py writes WORK/CASE/{layer.mlir, *.npy}, then

    moe-compile layer.mlir -o layer.so
    moe-run layer.so --input=@... --check --output=@out.npy

must both exit 0, moe-run must print `: PASS` and must not warn about
output elements that still hold the NaN poison, and the tokens the case
routes to no expert at all (case.json's expect_zero_tokens) must come out
exactly 0. The tolerance is moe-run's default (1e-5 relative to max|ref|
for f32, 2e-2 when bf16/f16 is involved); only a variant whose compile
flags approximate on purpose sets another (MOE_E2E_TOLERANCE, e.g. the
int8-activation kernel's 3e-2).

The negative checks run a compiled real module on bad inputs and require a
non-zero exit and a specific `moe-run: error:` message on stderr.
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, HERE)
import gen_case  # noqa: E402


class Failure(Exception):
    pass


class NoGPU(Exception):
    """No usable CUDA GPU here; the text says why."""


SKIP_RETURN_CODE = 77   # ctest: SKIP_RETURN_CODE, see CMakeLists.txt
GPU_TOLERANCE = "2e-2"  # max|diff| / max|ref|, bf16/f16 and f32 alike
DEFAULT_CUDA_ARCH = "sm_90"


def probe_gpu():
    """Returns (cuda_arch, description) of GPU 0, or raises NoGPU.

    A GPU is usable when nvidia-smi lists one and the driver library
    (libcuda.so.1) loads and initialises (cuInit). The architecture is the
    compute capability nvidia-smi reports (sm_<major><minor>), else the
    driver's, else sm_90; MOE_CUDA_ARCH overrides it."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        raise NoGPU("nvidia-smi not found on PATH")
    cap, name = None, None
    try:
        p = subprocess.run([smi, "--query-gpu=name,compute_cap",
                            "--format=csv,noheader"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True,
                           timeout=60)
        rows = [r for r in p.stdout.splitlines() if r.strip()]
        if p.returncode == 0 and rows and "," in rows[0]:
            name, _, c = rows[0].rpartition(",")
            name, c = name.strip(), c.strip()
            if re.match(r"^\d+\.\d+$", c):
                cap = c
        else:
            # Older drivers lack the compute_cap field: is there a GPU?
            p = subprocess.run([smi, "-L"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=60)
            rows = [r for r in p.stdout.splitlines() if r.startswith("GPU ")]
            if p.returncode != 0 or not rows:
                first = (p.stdout.strip().splitlines() or ["no output"])[0]
                raise NoGPU("nvidia-smi failed (exit %d): %s"
                            % (p.returncode, first))
            name = rows[0]
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NoGPU("nvidia-smi could not run: %s" % e)

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        raise NoGPU("libcuda.so.1 cannot be loaded: %s" % e)
    rc = cuda.cuInit(0)
    if rc != 0:
        raise NoGPU("cuInit failed with CUDA error %d" % rc)
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        raise NoGPU("the CUDA driver sees no device")
    if cap is None:
        dev = ctypes.c_int(0)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        if (cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0 and
                cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev) == 0
                and cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76,
                                              dev) == 0):
            cap = "%d.%d" % (major.value, minor.value)
    arch = ("sm_" + cap.replace(".", "")) if cap else DEFAULT_CUDA_ARCH
    arch = os.environ.get("MOE_CUDA_ARCH") or arch
    return arch, "%s, compute capability %s" % (name, cap or "unknown")


def run(cmd, cwd, what):
    """Runs `cmd`; returns (returncode, stdout, stderr)."""
    start = time.time()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    elapsed = time.time() - start
    print("$ %s   [%s, %.2f s, exit %d]" % (" ".join(cmd), what, elapsed,
                                            p.returncode))
    for line in (p.stdout + p.stderr).splitlines():
        print("  | " + line)
    return p.returncode, p.stdout, p.stderr



class Unsupported(Exception):
    """The case uses a feature the variant under test lacks (exit 77)."""


def compile_case(name, bin_dir, work, cuda_arch=None, gpu_binary=None):
    """Generates the case and compiles it, for the CPU or, with
    `cuda_arch`, for that GPU architecture (`gpu_binary`: moe-compile's
    --gpu-binary)."""
    directory = os.path.join(work, name)
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    meta = gen_case.generate(name, directory)
    cmd = [os.path.join(bin_dir, "moe-compile"), "layer.mlir"]
    if cuda_arch:
        cmd += ["--target=cuda", "--cuda-arch=" + cuda_arch]
    if gpu_binary:
        cmd.append("--gpu-binary=" + gpu_binary)
    # Extra moe-compile flags for a variant of the suite, e.g.
    # --emulate-cuda-kernels (the cuda target's kernels run as host loops).
    cmd += os.environ.get("MOE_E2E_COMPILE_ARGS", "").split()
    rc, _, err = run(cmd + ["-o", "layer.so"], directory, "compile")
    if rc != 0 and ("is not supported by the cuda target yet" in err or
                    "needs a target with AVX512-VNNI" in err):
        raise Unsupported(err.strip().splitlines()[0])
    if rc != 0:
        raise Failure("moe-compile failed (exit %d)" % rc)
    if cuda_arch:
        meta["cuda_arch"] = cuda_arch
        with open(os.path.join(directory, "case.json"), "w") as fh:
            json.dump(meta, fh, indent=1)
            fh.write("\n")
    return directory, meta


def load_compiled(name, work):
    """The case as `--compile-only` left it in WORK/CASE."""
    directory = os.path.join(work, name)
    meta_path = os.path.join(directory, "case.json")
    if not (os.path.exists(meta_path) and
            os.path.exists(os.path.join(directory, "layer.so"))):
        raise Failure("%s has no compiled case (run with --compile-only "
                      "first)" % directory)
    with open(meta_path) as fh:
        return directory, json.load(fh)


def run_case(name, bin_dir, work, cuda_arch=None, run_only=False,
             gpu_binary=None):
    if run_only:
        directory, meta = load_compiled(name, work)
        built = meta.get("cuda_arch")
        if cuda_arch and built and built != cuda_arch:
            print("note: compiled for %s, the GPU is %s" % (built, cuda_arch))
    else:
        directory, meta = compile_case(name, bin_dir, work, cuda_arch,
                                       gpu_binary)
    cmd = [os.path.join(bin_dir, "moe-run"), "layer.so"]
    cmd += ["--input=@" + f for f in meta["inputs"]]
    cmd += ["--check", "--output=@out.npy", "--output-f32"]
    if cuda_arch:
        cmd.append("--tolerance=" + GPU_TOLERANCE)
    elif os.environ.get("MOE_E2E_TOLERANCE"):
        # A variant whose compile flags approximate on purpose (e.g.
        # --int8-activations) states its bound.
        cmd.append("--tolerance=" + os.environ["MOE_E2E_TOLERANCE"])
    rc, out, err = run(cmd, directory, "run")
    if rc != 0:
        raise Failure("moe-run --check failed (exit %d)" % rc)
    if not re.search(r"^check: .*: PASS$", out, re.M):
        raise Failure("moe-run printed no 'check: ... PASS' line")
    if "poison" in err:
        raise Failure("the module left output elements unwritten")

    zero_tokens = meta["expect_zero_tokens"]
    if zero_tokens:
        import numpy as np
        y = np.load(os.path.join(directory, "out.npy"))
        y = y.reshape(-1, meta["hidden"])
        rows = y[zero_tokens]
        bad = np.argwhere(rows != 0)
        if bad.size:
            t = zero_tokens[bad[0][0]]
            raise Failure(
                "%d of %d tokens routed to no expert have non-zero outputs; "
                "first: token %d, element %d = %r (expected exactly 0)"
                % (len(set(bad[:, 0])), len(zero_tokens), t, bad[0][1],
                   float(y[t, bad[0][1]])))
        print("exact zeros: %d tokens routed to no expert are 0"
              % len(zero_tokens))


# ----------------------------------------------------------------------------
# Negative checks: bad inputs against a compiled real module.
# ----------------------------------------------------------------------------

# The module: bf16 weights with biases, softmax top-2 over 8 experts,
# H = 40, run on T = 5 tokens.
NEGATIVE_CASE = "negative_module"
NEGATIVE_SPEC = dict(name=NEGATIVE_CASE, tokens=5, E=8, k=2, H=40, I=24,
                     dtype="bf16", bias=True, activation="silu")


def negative_setup(bin_dir, work):
    gen_case.case_list.CASES.append(NEGATIVE_SPEC)
    directory, meta = compile_case(NEGATIVE_CASE, bin_dir, work)
    # The module runs on its own inputs.
    cmd = [os.path.join(bin_dir, "moe-run"), "layer.so", "--check"]
    cmd += ["--input=@" + f for f in meta["inputs"]]
    rc, _, _ = run(cmd, directory, "run")
    if rc != 0:
        raise Failure("the negative checks' module does not run on its own "
                      "inputs (exit %d)" % rc)
    return directory, meta


def negative(check, bin_dir, work):
    import numpy as np
    directory = os.path.join(work, NEGATIVE_CASE)
    meta_path = os.path.join(directory, "case.json")
    if not os.path.exists(os.path.join(directory, "layer.so")):
        directory, meta = negative_setup(bin_dir, work)
    else:
        with open(meta_path) as fh:
            meta = json.load(fh)
    inputs = list(meta["inputs"])
    bad_dir = os.path.join(directory, check)
    os.makedirs(bad_dir, exist_ok=True)

    def bad_file(name, array):
        path = os.path.join(bad_dir, name)
        np.save(path, array)
        return os.path.relpath(path, directory)

    x = np.load(os.path.join(directory, inputs[0]))
    logits = np.load(os.path.join(directory, inputs[1]))
    if check == "logits_tokens":
        # 7 router rows for 5 tokens: the token symbol disagrees.
        inputs[1] = bad_file("logits.npy", np.zeros((7, 8), np.float32))
        expect = (r"moe-run: error: input 1 'logits': dimension 0 is 7 but "
                  r"symbol \w+ is 5 \(bound by input 0 'input'\)")
    elif check == "hidden_size":
        inputs[0] = bad_file("x.npy", np.zeros((5, 41), np.float32))
        expect = (r"moe-run: error: input 0 'input': dimension 1 is 41 but "
                  r"the function expects 40 \(shape \[\w+, 40\]\)")
    elif check == "expert_count":
        # fc2 for 9 experts where the module was compiled for 8.
        fc2 = np.load(os.path.join(directory, inputs[4]))
        inputs[4] = bad_file("fc2.npy", np.concatenate([fc2, fc2[:1]]))
        expect = (r"moe-run: error: input 4 'fc2': dimension 0 is 9 but the "
                  r"function expects 8 \(shape \[8, 40, 24\]\)")
    elif check == "logits_dtype":
        inputs[1] = bad_file("logits.npy", logits.astype(np.int32))
        expect = (r"moe-run: error: input 1 'logits': \S+logits\.npy holds "
                  r"i32 \('<i4'\) but the function expects f32 \('<f4'\)")
    elif check == "weights_f16_for_bf16":
        fc1 = np.load(os.path.join(directory, inputs[2]))
        # The stored bits are bf16; any f16 file is refused, whatever it holds.
        inputs[2] = bad_file("fc1.npy", np.zeros(fc1.shape, np.float16))
        expect = (r"moe-run: error: input 2 'fc1': \S+fc1\.npy holds f16 "
                  r"\('<f2'\) but the function expects bf16 \('<u2'\)")
    elif check == "input_rank":
        inputs[0] = bad_file("x.npy", x.reshape(1, 5, 40))
        expect = (r"moe-run: error: input 0 'input': rank is 3 but the "
                  r"function expects rank 2")
    elif check == "missing_input":
        inputs = inputs[:-1]
        expect = (r"moe-run: error: function 'moe_layer' takes %d inputs "
                  r"\(input: f32\[\w+, 40\], .*\) but %d --input were given"
                  % (len(meta["inputs"]), len(meta["inputs"]) - 1))
    else:
        raise Failure("unknown negative check '%s'" % check)

    cmd = [os.path.join(bin_dir, "moe-run"), "layer.so", "--check"]
    cmd += ["--input=@" + f for f in inputs]
    rc, out, err = run(cmd, directory, "run, expected to fail")
    if rc == 0:
        raise Failure("moe-run accepted the bad input (exit 0)")
    if rc < 0:
        raise Failure("moe-run died of signal %d instead of reporting the "
                      "bad input" % -rc)
    if not re.search(expect, err):
        raise Failure("stderr lacks the expected message /%s/" % expect)
    print("expected error seen: /%s/" % expect)


NEGATIVE_CHECKS = ["logits_tokens", "hidden_size", "expert_count",
                   "logits_dtype", "weights_f16_for_bf16", "input_rank",
                   "missing_input"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True,
                    help="directory with moe-compile and moe-run")
    ap.add_argument("--work", required=True,
                    help="scratch directory (one subdirectory per case)")
    ap.add_argument("--all", action="store_true",
                    help="every registered case")
    ap.add_argument("--negative", metavar="CHECK",
                    help="one of: setup, " + ", ".join(NEGATIVE_CHECKS))
    ap.add_argument("--target", choices=["cpu", "cuda", "executor"],
                    default="cpu",
                    help="cuda: compile for the GPU and run there (skipped "
                         "with exit code 77 without a GPU); executor: "
                         "compile for the GPU and run on the moe GPU "
                         "executor (the CPU)")
    ap.add_argument("--all-gpu", action="store_true",
                    help="every registered GPU case")
    ap.add_argument("--cuda-arch", metavar="sm_XX",
                    help="with --compile-only: the architecture (default "
                         "MOE_CUDA_ARCH, else the GPU's, else sm_90)")
    ap.add_argument("--compile-only", action="store_true",
                    help="generate and compile, do not run (no GPU needed)")
    ap.add_argument("--run-only", action="store_true",
                    help="run the modules --compile-only left in WORK")
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    bin_dir = os.path.abspath(args.bin)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    if args.target == "cpu" and (args.compile_only or args.run_only or
                                 args.cuda_arch):
        ap.error("--compile-only, --run-only and --cuda-arch need "
                 "--target=cuda")
    if args.compile_only and args.run_only:
        ap.error("--compile-only and --run-only exclude each other")

    if args.negative:
        try:
            if args.negative == "setup":
                negative_setup(bin_dir, work)
            else:
                negative(args.negative, bin_dir, work)
        except Failure as e:
            print("FAIL negative.%s: %s" % (args.negative, e))
            return 1
        print("PASS negative.%s" % args.negative)
        return 0

    names = list(args.cases)
    if args.all:
        names += [c["name"] for c in gen_case.case_list.CASES
                  if not c.get("known_failure")]
    if args.all_gpu:
        names += [c["name"] for c in gen_case.gpu_cases.GPU_CASES
                  if not c.get("known_failure")]
    if not names:
        ap.error("no cases given")
    for name in names:
        gen_case.spec_of(name)  # exits on an unknown name

    cuda_arch = None
    gpu_binary = None
    if args.target == "executor":
        if args.compile_only or args.run_only:
            ap.error("--compile-only and --run-only need --target=cuda")
        cuda_arch = (args.cuda_arch or os.environ.get("MOE_CUDA_ARCH") or
                     DEFAULT_CUDA_ARCH)
        gpu_binary = "executor"
        executor = os.path.join(os.path.dirname(bin_dir), "lib",
                                "libmoe_gpu_executor.so")
        if not os.path.exists(executor):
            print("FAIL: the GPU executor %s is not built" % executor)
            return 1
        os.environ["MOE_CUDA_DRIVER"] = executor
        print("GPU executor: %s; compiling for %s" % (executor, cuda_arch))
    elif args.target == "cuda":
        # moe-run and the modules find libmoe_runtime.so by an absolute
        # RUNPATH into the build tree they were linked in; a tree carried
        # to the GPU machine has it next to bin/.
        lib = os.path.join(os.path.dirname(bin_dir), "lib")
        if os.path.isdir(lib):
            old = os.environ.get("LD_LIBRARY_PATH")
            os.environ["LD_LIBRARY_PATH"] = lib + (":" + old if old else "")
        if args.compile_only:
            cuda_arch = (args.cuda_arch or os.environ.get("MOE_CUDA_ARCH") or
                         None)
            if not cuda_arch:
                try:
                    cuda_arch = probe_gpu()[0]
                except NoGPU:
                    cuda_arch = DEFAULT_CUDA_ARCH
            print("compiling for %s (no GPU needed)" % cuda_arch)
        else:
            try:
                cuda_arch, what = probe_gpu()
            except NoGPU as e:
                for name in names:
                    print("SKIP %s: no usable CUDA GPU: %s" % (name, e))
                return SKIP_RETURN_CODE
            if args.cuda_arch and args.cuda_arch != cuda_arch:
                print("note: --cuda-arch=%s ignored, the GPU is %s"
                      % (args.cuda_arch, cuda_arch))
            print("GPU: %s; compiling for %s" % (what, cuda_arch))

    failed = []
    for name in names:
        try:
            if args.compile_only:
                compile_case(name, bin_dir, work, cuda_arch)
                print("COMPILED %s" % name)
                continue
            run_case(name, bin_dir, work, cuda_arch, args.run_only,
                     gpu_binary)
            print("PASS %s" % name)
        except Unsupported as e:
            print("SKIP %s: %s" % (name, e))
            if len(names) == 1:
                return SKIP_RETURN_CODE
        except Failure as e:
            print("FAIL %s: %s" % (name, e))
            failed.append(name)
    if len(names) > 1:
        done = "compiled" if args.compile_only else "passed"
        print("%d of %d cases %s" % (len(names) - len(failed), len(names),
                                     done))
        if failed:
            print("failed: " + " ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
