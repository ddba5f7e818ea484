#!/usr/bin/python3
"""Runs end-to-end cases: generate, moe-compile, moe-run --check.

    run_case.py --bin DIR --work DIR CASE...     run these cases
    run_case.py --bin DIR --work DIR --all       every registered case
    run_case.py --bin DIR --work DIR --negative CHECK
                                                 one bad-input check (below)

For every case: gen_case.py writes WORK/CASE/{layer.mlir, *.npy}, then

    moe-compile layer.mlir -o layer.so
    moe-run layer.so --input=@... --check --output=@out.npy

must both exit 0, moe-run must print `: PASS` and must not warn about
output elements that still hold the NaN poison, and the tokens the case
routes to no expert at all (case.json's expect_zero_tokens) must come out
exactly 0. The tolerance is moe-run's default (1e-5 relative to max|ref|
for f32, 2e-2 when bf16/f16 is involved); it is never loosened here.

The negative checks run a compiled real module on bad inputs and require a
non-zero exit and a specific `moe-run: error:` message on stderr.
"""

import argparse
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


SKIP_EXIT = 77


class Unsupported(Exception):
    """The case uses a feature the variant under test lacks (exit 77)."""


def compile_case(name, bin_dir, work):
    directory = os.path.join(work, name)
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    meta = gen_case.generate(name, directory)
    # Extra moe-compile flags for a variant of the suite, e.g.
    # --emulate-cuda-kernels (the cuda target's kernels run as host loops).
    extra = os.environ.get("MOE_E2E_COMPILE_ARGS", "").split()
    rc, out, err = run([os.path.join(bin_dir, "moe-compile"), "layer.mlir",
                        "-o", "layer.so"] + extra, directory, "compile")
    if rc != 0 and "is not supported by the cuda target yet" in err:
        raise Unsupported(err.strip().splitlines()[0])
    if rc != 0:
        raise Failure("moe-compile failed (exit %d)" % rc)
    return directory, meta


def run_case(name, bin_dir, work):
    directory, meta = compile_case(name, bin_dir, work)
    cmd = [os.path.join(bin_dir, "moe-run"), "layer.so"]
    cmd += ["--input=@" + f for f in meta["inputs"]]
    cmd += ["--check", "--output=@out.npy", "--output-f32"]
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
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    bin_dir = os.path.abspath(args.bin)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)

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

    names = args.cases
    if args.all:
        names = [c["name"] for c in gen_case.case_list.CASES
                 if not c.get("known_failure")]
    if not names:
        ap.error("no cases given")
    failed = []
    for name in names:
        try:
            run_case(name, bin_dir, work)
            print("PASS %s" % name)
        except Unsupported as e:
            print("SKIP %s: %s" % (name, e))
            if len(names) == 1:
                return SKIP_EXIT
        except Failure as e:
            print("FAIL %s: %s" % (name, e))
            failed.append(name)
    if len(names) > 1:
        print("%d of %d cases passed" % (len(names) - len(failed), len(names)))
        if failed:
            print("failed: " + " ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
