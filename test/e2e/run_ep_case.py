#!/usr/bin/python3
"""Expert-parallel end-to-end cases: an SPMD module under mpirun against
the single-rank module (docs/ExpertParallel.md).

    run_ep_case.py --bin DIR --work DIR --np P CASE...   these cases at P ranks
    run_ep_case.py --bin DIR --work DIR --all            every case at each
                                                         of its `ranks`
    run_ep_case.py --bin DIR --work DIR --negative CHECK one negative check
    run_ep_case.py --list-tests                          "<case> <P>" lines
                                                         (what CMake registers)
    run_ep_case.py --list-emulated-tests                 the same for the
                                                         executor subset

For one case at P ranks, in WORK/<case>/np<P>/: gen_case.py writes
layer.mlir and the inputs (ep_cases.py: the case list), then

    moe-compile layer.mlir --target=cpu -o single.so
    moe-run single.so --input=@... --check --output=@ref.npy
    moe-compile layer.mlir --target=cpu --expert-parallel=P \\
        --ep-dispatch=D [--overlap-chunks=C] \\
        -o ep[_D][_cC].so   (each `dispatch` mode and its `overlap` variants)
    mpirun [--allow-run-as-root] --oversubscribe \\
        --bind-to none -np P moe-run ep.so --input=@... --output=@y.npy \\
        --threads=1 --comm-timeout=S2     (killed after S s)

The single-rank run must pass `--check` (float64 reference); every EP
module's manifest must carry `expert_parallel` {ranks: P, experts_per_rank:
ceil(E / P)} and the token/expert splits of the contract; the gathered
y.npy must have exactly ref.npy's shape and dtype and max|y - ref| /
max|ref| <= 1e-6, with no NaN (rows no rank wrote).

Negative checks (`--negative CHECK`; `setup` compiles the P = 2 module they
share and checks that it runs under `mpirun -np 2`):

    wrong_np    the P = 2 module under `mpirun -np 3`: non-zero exit, no
                hang, an error naming both 2 and 3
    no_mpirun   the P = 2 module run by plain moe-run: non-zero exit, no
                hang, an error naming 2 and the single process (1 / mpirun
                / MPI / communicator)

Tool support: when moe-compile does not know --expert-parallel or
--overlap-chunks, or moe-run does not know --comm-timeout, the case FAILS
with that reason; `--allow-missing-ep` (or MOE_EP_ALLOW_MISSING=1) turns
that into `SKIP <case>: <reason>` and exit 77 instead (for working trees
where the compiler or runtime side has not landed yet; ctest does not pass
it).

Environment: MOE_E2E_COMPILE_ARGS (extra moe-compile flags for every
module of the case, the single-rank one included, split on spaces: e.g.
--emulate-cuda-kernels, the cuda target's kernels as host loops),
MOE_MPIRUN (the launcher; default: `mpirun` on PATH),
MOE_MPIRUN_ARGS (extra launcher arguments, split on spaces),
MOE_EP_TIMEOUT (seconds per launched job, default 120),
MOE_EP_COMM_TIMEOUT (moe-run --comm-timeout, default 60).
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import ep_cases  # noqa: E402
import gen_case  # noqa: E402
from session_run import run_in_session  # noqa: E402

SKIP_RETURN_CODE = 77
TOLERANCE = 1e-6           # max|diff| / max|ref|, EP against single rank
KILL_GRACE_S = 10          # SIGKILL this long after SIGTERM (timeouts)
# gen_case.py names its cases (and seeds their inputs) by name; the EP
# cases get a prefix so that they never collide with cases.py.
GEN_PREFIX = "ep_"


class Failure(Exception):
    pass


class Unsupported(Exception):
    """The tools lack expert-parallel support (the text says which)."""


# ----------------------------------------------------------------------------
# Case specs
# ----------------------------------------------------------------------------

def ep_spec(name):
    """(EP settings, gen_case spec dict) of the case `name`."""
    for c in ep_cases.EP_CASES:
        if c["name"] == name:
            ep = dict(ep_cases.EP_DEFAULTS)
            ep.update({k: v for k, v in c.items() if k in ep_cases.EP_KEYS})
            layer = {k: v for k, v in c.items() if k not in ep_cases.EP_KEYS}
            layer["name"] = GEN_PREFIX + name
            if ep["route"] not in ("random", "first_rank", "last_rank"):
                sys.exit("run_ep_case.py: %s: unknown route %r"
                         % (name, ep["route"]))
            return ep, layer
    sys.exit("run_ep_case.py: no EP case named '%s' (see --list-tests)"
             % name)


def check_case_list():
    seen = set()
    gen_names = {c["name"] for c in gen_case.all_cases()}
    for c in ep_cases.EP_CASES:
        n = c["name"]
        if n in seen:
            sys.exit("run_ep_case.py: duplicate EP case %s" % n)
        if GEN_PREFIX + n in gen_names:
            sys.exit("run_ep_case.py: EP case %s collides with gen_case.py's "
                     "%s%s" % (n, GEN_PREFIX, n))
        seen.add(n)


def list_tests(names=None):
    check_case_list()
    for c in ep_cases.EP_CASES:
        if names is not None and c["name"] not in names:
            continue
        ep, _ = ep_spec(c["name"])
        for p in ep["ranks"]:
            print("%s %d" % (c["name"], p))


# ----------------------------------------------------------------------------
# Partition rules (docs/ExpertParallel.md)
# ----------------------------------------------------------------------------

def split_lo(n, p, r):
    """First index rank r of p owns of n items (experts or token rows)."""
    return r * (n // p) + min(r, n % p)


def split_ranges(n, p):
    return [(split_lo(n, p, r), split_lo(n, p, r + 1)) for r in range(p)]


def rank_of(n, p, i):
    for r, (lo, hi) in enumerate(split_ranges(n, p)):
        if lo <= i < hi:
            return r
    raise AssertionError((n, p, i))


# ----------------------------------------------------------------------------
# Running things
# ----------------------------------------------------------------------------

def run(cmd, cwd, what, timeout=None, env=None):
    """Runs `cmd` in a session of its own (test/lib/session_run.py); returns
    (returncode, stdout, stderr). A command still running `timeout` seconds
    later is ended with its ranks and returns 124."""
    start = time.time()
    rc, out, err, killed, leftovers = run_in_session(
        cmd, cwd=cwd, timeout=timeout, env=env, grace=KILL_GRACE_S)
    if killed:
        err += ("\n(run_ep_case.py: still running after %g s: %s sent, "
                "its session killed)" % (timeout, killed))
    if leftovers:
        err += ("\n(run_ep_case.py: killed %d processes left behind in the "
                "command's session)" % leftovers)
    elapsed = time.time() - start
    print("$ %s   [%s, %.2f s, exit %d]" % (" ".join(cmd), what, elapsed, rc))
    for line in (out + err).splitlines():
        print("  | " + line)
    sys.stdout.flush()
    return rc, out, err


UNKNOWN_FLAG = re.compile(
    r"(?i)(unknown|unrecognized|unrecognised|invalid|unsupported)"
    r"[^\n]*(option|argument|flag)[^\n]*?--?(expert-parallel|overlap-chunks|"
    r"comm-timeout)|--?(expert-parallel|overlap-chunks|comm-timeout)[^\n]*"
    r"(unknown|unrecognized|unrecognised|not supported|unsupported)")


def lacks_flag(text):
    """The line saying that a tool does not know one of the EP flags."""
    for line in text.splitlines():
        if UNKNOWN_FLAG.search(line):
            return line.strip()
    return None


class Launcher:
    """mpirun (Open MPI or MPICH/Hydra) with the flags this machine needs."""

    def __init__(self, path=None):
        self.path = path or os.environ.get("MOE_MPIRUN") or \
            shutil.which("mpirun") or shutil.which("mpiexec")
        if not self.path:
            raise Failure("no mpirun (or mpiexec) on PATH; set MOE_MPIRUN")
        self.timeout = float(os.environ.get("MOE_EP_TIMEOUT", "120"))
        self.comm_timeout = os.environ.get("MOE_EP_COMM_TIMEOUT", "60")
        try:
            version = subprocess.run(
                [self.path, "--version"], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, universal_newlines=True,
                timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Failure("%s --version failed: %s" % (self.path, e))
        self.open_mpi = "Open MPI" in version or "OpenRTE" in version
        self.flags = []
        if self.open_mpi:
            # Two cores run four ranks; none is pinned to a core.
            self.flags += ["--oversubscribe", "--bind-to", "none"]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                self.flags.insert(0, "--allow-run-as-root")
        else:
            self.flags += ["-bind-to", "none"]
        self.flags += os.environ.get("MOE_MPIRUN_ARGS", "").split()

    def command(self, np_, argv):
        return [self.path] + self.flags + ["-np", str(np_)] + argv

    def launch(self, np_, argv, cwd, what):
        return run(self.command(np_, argv), cwd, what, timeout=self.timeout)


def timed_out(rc):
    return rc == 124


def allowed_missing(args):
    return args.allow_missing_ep or os.environ.get("MOE_EP_ALLOW_MISSING") \
        in ("1", "yes", "true", "ON")


# ----------------------------------------------------------------------------
# Manifest (read from the module's bytes: docs/Runtime.md)
# ----------------------------------------------------------------------------

def read_manifest(so_path):
    with open(so_path, "rb") as fh:
        data = fh.read()
    m = re.search(rb'\{\s*"format"\s*:\s*"moe-module-', data)
    if not m:
        return None
    i = m.start()
    j = data.find(b"\0", i)
    text = data[i:j if j > 0 else len(data)].decode("utf-8", "replace")
    try:
        return json.JSONDecoder().raw_decode(text)[0]
    except ValueError:
        return None


EXPERT_OPERANDS = ("fc1", "fc2", "fc3", "fc1_bias", "fc2_bias", "fc3_bias")


def check_manifest(so_path, P, E):
    m = read_manifest(so_path)
    if m is None:
        print("note: no manifest found in %s; manifest checks skipped"
              % os.path.basename(so_path))
        return
    fns = m.get("functions") or []
    if len(fns) != 1:
        raise Failure("manifest has %d functions, expected 1" % len(fns))
    fn = fns[0]
    ep = fn.get("expert_parallel")
    emax = -(-E // P)
    want = {"ranks": P, "num_experts": E, "experts_per_rank": emax}
    if not isinstance(ep, dict):
        raise Failure("the --expert-parallel=%d module's manifest has no "
                      "expert_parallel entry" % P)
    for key, value in want.items():
        if ep.get(key) != value:
            raise Failure("manifest expert_parallel.%s is %r, expected %r "
                          "(full entry %s)" % (key, ep.get(key), value,
                                               json.dumps(ep)))
    if "reference" in fn:
        raise Failure("the EP function's manifest carries a reference entry")
    splits = {}
    for arg in fn.get("inputs", []):
        name, split = arg.get("name"), arg.get("split")
        splits[name] = split
        if split not in (None, "tokens", "experts"):
            raise Failure("input %s: unknown split %r" % (name, split))
        if name in ("input", "logits") and split != "tokens":
            raise Failure("input %s: split is %r, expected 'tokens'"
                          % (name, split))
        if name in EXPERT_OPERANDS:
            if split != "experts":
                raise Failure("input %s: split is %r, expected 'experts'"
                              % (name, split))
            if not arg.get("shape") or arg["shape"][0] != emax:
                raise Failure("input %s: manifest shape %s, dimension 0 "
                              "should be experts_per_rank = %d"
                              % (name, arg.get("shape"), emax))
    for out in fn.get("outputs", []):
        if out.get("split") != "tokens":
            raise Failure("output %s: split is %r, expected 'tokens'"
                          % (out.get("name"), out.get("split")))
    print("manifest: expert_parallel %s; splits %s" % (
        json.dumps(ep, sort_keys=True),
        ", ".join("%s=%s" % (k, v or "replicated")
                  for k, v in splits.items())))


# ----------------------------------------------------------------------------
# Inputs and routing
# ----------------------------------------------------------------------------

def route_logits(directory, meta, ep, layer, ranks):
    """Applies the case's `route` to the logits file; returns the logits
    (computed from the tokens for a layer given its router weight)."""
    import numpy as np
    path = os.path.join(directory, meta["inputs"][1])
    if layer["router"] == "weight":
        if ep["route"] != "random":
            sys.exit("run_ep_case.py: %s: a router weight gives 'random' "
                     "routing only" % layer["name"])
        x = np.load(os.path.join(directory, meta["inputs"][0]))
        x = x.reshape(-1, x.shape[-1]).astype(np.float64)
        return (x @ np.load(path).astype(np.float64).T).astype(np.float32)
    logits = np.load(path)
    E, k = layer["E"], layer["k"]
    if ep["route"] != "random":
        pmax = max(ranks)
        r = 0 if ep["route"] == "first_rank" else pmax - 1
        lo, hi = split_ranges(E, pmax)[r]
        if hi - lo < k:
            sys.exit("run_ep_case.py: %s: rank %d of %d owns %d experts, "
                     "fewer than k = %d" % (layer["name"], r, pmax, hi - lo,
                                            k))
        logits = logits.copy()
        logits[:, lo:hi] += np.float32(12.0)
        np.save(path, logits.astype(np.float32))
    return logits


def routing_summary(logits, layer, ep, P):
    """Per-rank tokens, experts and received (token, expert) slots at P,
    from the top-k of the logits (the cases use monotone scoring without
    score bias, so the top-k logits are the selected experts). For a
    one-rank route, checks that every token's k best are on that rank."""
    import numpy as np
    T, E, k = logits.shape[0], layer["E"], layer["k"]
    tokens = [hi - lo for lo, hi in split_ranges(T, P)]
    experts = [hi - lo for lo, hi in split_ranges(E, P)]
    slots = [0] * P
    top = np.argsort(-logits[:, :E], axis=1, kind="stable")[:, :k] \
        if T else np.zeros((0, k), dtype=np.int64)
    for e in top.reshape(-1):
        slots[rank_of(E, P, int(e))] += 1
    print("P=%d: tokens per rank %s, experts per rank %s (padded to %d), "
          "routed slots received per rank %s"
          % (P, tokens, experts, -(-E // P), slots))
    if ep["route"] != "random":
        r = 0 if ep["route"] == "first_rank" else P - 1
        if slots[r] != T * k:
            raise Failure("the case's logits do not send every token's %d "
                          "best experts to rank %d (%d of %d slots)"
                          % (k, r, slots[r], T * k))
        print("every token's %d best experts live on rank %d" % (k, r))


# ----------------------------------------------------------------------------
# One case at P ranks
# ----------------------------------------------------------------------------

def compile_module(bin_dir, directory, out, extra):
    # MOE_E2E_COMPILE_ARGS (as for run_case.py) goes to every compile, the
    # single-rank one included, so that both sides run the same kernels.
    cmd = [os.path.join(bin_dir, "moe-compile"), "layer.mlir",
           "--target=cpu"] + extra + \
        os.environ.get("MOE_E2E_COMPILE_ARGS", "").split() + ["-o", out]
    rc, out_text, err = run(cmd, directory, "compile")
    if rc != 0:
        missing = lacks_flag(out_text + err)
        if missing:
            raise Unsupported("moe-compile lacks expert-parallel support: "
                              + missing)
        raise Failure("moe-compile %s failed (exit %d)"
                      % (" ".join(extra), rc))


def load_output(path):
    import numpy as np
    a = np.load(path)
    if a.dtype == np.uint16:   # bf16 bits
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return a


def compare(y_path, ref_path, what):
    import numpy as np
    if not os.path.exists(y_path):
        raise Failure("%s: no output file %s (rank 0 writes the gathered "
                      "output)" % (what, os.path.basename(y_path)))
    raw_y, raw_ref = np.load(y_path), np.load(ref_path)
    if raw_y.shape != raw_ref.shape:
        raise Failure("%s: output shape %s, the single-rank module's is %s"
                      % (what, list(raw_y.shape), list(raw_ref.shape)))
    if raw_y.dtype != raw_ref.dtype:
        raise Failure("%s: output dtype %s, the single-rank module's is %s"
                      % (what, raw_y.dtype, raw_ref.dtype))
    y = load_output(y_path).astype(np.float64)
    ref = load_output(ref_path).astype(np.float64)
    if y.size == 0:
        print("%s: empty output, shape %s as expected" % (what,
                                                          list(y.shape)))
        return 0.0
    bad = ~np.isfinite(y)
    if bad.any():
        row = np.argwhere(bad)[0]
        raise Failure("%s: %d non-finite output elements (rows no rank "
                      "wrote?); first at %s = %r"
                      % (what, int(bad.sum()), row.tolist(),
                         float(y[tuple(row)])))
    diff = np.abs(y - ref)
    scale = float(np.max(np.abs(ref)))
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    rel = float(diff.max()) / scale if scale > 0 else (
        0.0 if diff.max() == 0 else math.inf)
    ok = rel <= TOLERANCE
    print("%s: shape %s, max|diff| %.3g at %s, max|diff| / max|ref| %.3g "
          "(tolerance %g): %s" % (what, list(y.shape), float(diff.max()),
                                  list(map(int, worst)), rel, TOLERANCE,
                                  "PASS" if ok else "FAIL"))
    if not ok:
        raise Failure("%s differs from the single-rank module: max|diff| / "
                      "max|ref| = %.3g > %g" % (what, rel, TOLERANCE))
    return rel


def variant_tag(dispatch, chunks):
    tag = "ep" if dispatch == "expert" else "ep_" + dispatch
    return tag if chunks is None else "%s_c%s" % (tag, chunks)


def variants(ep):
    """(--ep-dispatch mode, --overlap-chunks) of every EP module of a case."""
    return [(d, c) for d in ep["dispatch"]
            for c in (ep["overlap"] if d == "expert" else ep["rank_overlap"])]


def generate(name, P, work):
    """Writes WORK/<name>/np<P>/ with the case's layer and inputs."""
    ep, layer = ep_spec(name)
    directory = os.path.join(work, name, "np%d" % P)
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    if not any(c["name"] == layer["name"] for c in gen_case.case_list.CASES):
        gen_case.case_list.CASES.append(layer)
    meta = gen_case.generate(layer["name"], directory)
    logits = route_logits(directory, meta, ep, gen_case.spec_of(
        layer["name"]), ep["ranks"] + [P])
    return directory, meta, ep, gen_case.spec_of(layer["name"]), logits


def run_ep_case(name, P, bin_dir, work, launcher):
    directory, meta, ep, layer, logits = generate(name, P, work)
    routing_summary(logits, layer, ep, P)
    inputs = ["--input=@" + f for f in meta["inputs"]]
    moe_run = os.path.join(bin_dir, "moe-run")

    # The single-rank module, itself checked against the float64 reference.
    compile_module(bin_dir, directory, "single.so", [])
    rc, out, err = run([moe_run, "single.so"] + inputs +
                       ["--check", "--output=@ref.npy"], directory,
                       "single rank")
    if rc != 0 or not re.search(r"^check: .*: PASS$", out, re.M):
        raise Failure("the single-rank module fails moe-run --check "
                      "(exit %d)" % rc)
    if "poison" in err:
        raise Failure("the single-rank module left output elements "
                      "unwritten")

    worst = 0.0
    for dispatch, chunks in variants(ep):
        tag = variant_tag(dispatch, chunks)
        extra = ["--expert-parallel=%d" % P, "--ep-dispatch=" + dispatch]
        if chunks is not None:
            extra.append("--overlap-chunks=%s" % chunks)
        compile_module(bin_dir, directory, tag + ".so", extra)
        check_manifest(os.path.join(directory, tag + ".so"), P, layer["E"])
        y = "y_%s.npy" % tag
        argv = [moe_run, tag + ".so"] + inputs + [
            "--output=@" + y, "--threads=1",
            "--comm-timeout=%s" % launcher.comm_timeout]
        rc, out, err = launcher.launch(P, argv, directory,
                                       "%s under mpirun -np %d" % (tag, P))
        text = out + err
        if rc != 0:
            missing = lacks_flag(text)
            if missing:
                raise Unsupported("moe-run lacks expert-parallel support: "
                                  + missing)
            if timed_out(rc):
                raise Failure("%s under mpirun -np %d did not finish within "
                              "%g s (hang?)" % (tag, P, launcher.timeout))
            raise Failure("%s under mpirun -np %d failed (exit %d)"
                          % (tag, P, rc))
        if "poison" in err:
            raise Failure("%s: the module left output elements unwritten"
                          % tag)
        rel = compare(os.path.join(directory, y),
                      os.path.join(directory, "ref.npy"),
                      "%s np%d" % (tag, P))
        worst = max(worst, rel)
    print("EP result: %d variant(s) %s at P=%d, worst max|diff| / max|ref| "
          "%.3g" % (len(variants(ep)),
                    ", ".join(variant_tag(*v) for v in variants(ep)), P,
                    worst))


# ----------------------------------------------------------------------------
# Negative checks
# ----------------------------------------------------------------------------

NEGATIVE_CASE = "negative_ep_module"
NEGATIVE_SPEC = dict(name=GEN_PREFIX + NEGATIVE_CASE, tokens=5, E=8, k=2,
                     H=40, I=24, bias=True, activation="silu")
NEGATIVE_P = 2
NEGATIVE_CHECKS = ["wrong_np", "no_mpirun"]


def negative_setup(bin_dir, work, launcher):
    directory = os.path.join(work, NEGATIVE_CASE)
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    gen_case.case_list.CASES.append(NEGATIVE_SPEC)
    meta = gen_case.generate(NEGATIVE_SPEC["name"], directory)
    compile_module(bin_dir, directory, "single.so", [])
    compile_module(bin_dir, directory, "ep.so",
                   ["--expert-parallel=%d" % NEGATIVE_P])
    moe_run = os.path.join(bin_dir, "moe-run")
    inputs = ["--input=@" + f for f in meta["inputs"]]
    rc, _, _ = run([moe_run, "single.so"] + inputs + ["--output=@ref.npy"],
                   directory, "single rank")
    if rc != 0:
        raise Failure("the single-rank module does not run (exit %d)" % rc)
    rc, out, err = launcher.launch(
        NEGATIVE_P, [moe_run, "ep.so"] + inputs +
        ["--output=@y.npy", "--threads=1",
         "--comm-timeout=%s" % launcher.comm_timeout], directory,
        "ep.so under mpirun -np %d" % NEGATIVE_P)
    if rc != 0:
        missing = lacks_flag(out + err)
        if missing:
            raise Unsupported("moe-run lacks expert-parallel support: "
                              + missing)
        raise Failure("the negative checks' EP module does not run under "
                      "mpirun -np %d (exit %d)" % (NEGATIVE_P, rc))
    compare(os.path.join(directory, "y.npy"),
            os.path.join(directory, "ref.npy"), "ep np%d" % NEGATIVE_P)
    return directory, meta


def error_lines(text):
    return [l for l in text.splitlines() if re.search(r"(?i)error|abort", l)]


def negative(check, bin_dir, work, launcher):
    directory = os.path.join(work, NEGATIVE_CASE)
    if not os.path.exists(os.path.join(directory, "ep.so")):
        negative_setup(bin_dir, work, launcher)
    with open(os.path.join(directory, "case.json")) as fh:
        meta = json.load(fh)
    moe_run = os.path.join(bin_dir, "moe-run")
    inputs = ["--input=@" + f for f in meta["inputs"]]
    argv = [moe_run, "ep.so"] + inputs + ["--output=@y_%s.npy" % check,
                                          "--threads=1"]
    if check == "wrong_np":
        wrong = NEGATIVE_P + 1
        rc, out, err = launcher.launch(
            wrong, argv + ["--comm-timeout=%s" % launcher.comm_timeout],
            directory, "ep.so (P=%d) under mpirun -np %d, expected to fail"
            % (NEGATIVE_P, wrong))
        # Both sizes on one error line.
        want = [r"\b%d\b" % NEGATIVE_P, r"\b%d\b" % wrong]
        what = "an error line naming both %d and %d" % (NEGATIVE_P, wrong)
    elif check == "no_mpirun":
        # A clean environment: nothing that makes the process believe it
        # was started by a launcher.
        env = {k: v for k, v in os.environ.items()
               if not re.match(r"^(OMPI_|PMIX_|PMI_|MPI_LOCALRANKID|HYDRA_)",
                               k)}
        cmd = argv + ["--comm-timeout=%s" % launcher.comm_timeout]
        rc, out, err = run(cmd, directory, "ep.so (P=%d) without mpirun, "
                           "expected to fail" % NEGATIVE_P,
                           timeout=launcher.timeout, env=env)
        want = [r"\b%d\b" % NEGATIVE_P,
                r"(?i)\b1\b|mpirun|mpiexec|\bMPI\b|communicator|launcher"]
        what = ("an error line naming %d and the missing launcher or group "
                "(1 / mpirun / MPI / communicator)" % NEGATIVE_P)
    else:
        raise Failure("unknown negative check '%s'" % check)
    text = out + err
    if rc == 0:
        raise Failure("the EP module ran without complaint (exit 0)")
    if timed_out(rc):
        raise Failure("no answer within %g s: the mismatch hangs instead of "
                      "failing" % launcher.timeout)
    missing = lacks_flag(text)
    if missing:
        raise Unsupported("moe-run lacks expert-parallel support: " + missing)
    if rc < 0:
        raise Failure("killed by signal %d instead of reporting the error"
                      % -rc)
    lines = [l for l in error_lines(text)
             if all(re.search(w, l) for w in want)]
    if not lines:
        raise Failure("exit %d, but no %s in the output" % (rc, what))
    print("expected error seen (exit %d): %s" % (rc, lines[0].strip()))


# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", help="directory with moe-compile and moe-run")
    ap.add_argument("--work", help="scratch directory")
    ap.add_argument("--np", type=int, dest="np_",
                    help="process count for the named cases")
    ap.add_argument("--all", action="store_true",
                    help="every case at each of its ranks")
    ap.add_argument("--negative", metavar="CHECK",
                    help="one of: setup, " + ", ".join(NEGATIVE_CHECKS))
    ap.add_argument("--mpirun", help="the launcher (default: $MOE_MPIRUN, "
                                     "else mpirun on PATH)")
    ap.add_argument("--allow-missing-ep", action="store_true",
                    help="skip (exit 77) instead of failing when the tools "
                         "lack expert-parallel support")
    ap.add_argument("--list-tests", action="store_true",
                    help="print '<case> <P>' per test and exit")
    ap.add_argument("--list-emulated-tests", action="store_true",
                    help="print '<case> <P>' per test of the subset run "
                         "as cuda modules on the GPU executor and exit")
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    if args.list_tests:
        list_tests()
        return 0
    if args.list_emulated_tests:
        unknown = set(ep_cases.EMULATED_CASES) - \
            {c["name"] for c in ep_cases.EP_CASES}
        if unknown:
            sys.exit("run_ep_case.py: EMULATED_CASES names unknown cases: "
                     + ", ".join(sorted(unknown)))
        list_tests(set(ep_cases.EMULATED_CASES))
        return 0
    if not args.bin or not args.work:
        ap.error("--bin and --work are required")
    check_case_list()
    bin_dir = os.path.abspath(args.bin)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)

    def skip_or_fail(label, e):
        if allowed_missing(args):
            print("SKIP %s: %s" % (label, e))
            return SKIP_RETURN_CODE
        print("FAIL %s: %s (not skipped: pass --allow-missing-ep while the "
              "compiler or runtime side has not landed)" % (label, e))
        return 1

    try:
        launcher = Launcher(args.mpirun)
    except Failure as e:
        print("FAIL: %s" % e)
        return 1
    print("launcher: %s %s (timeout %g s per job, --comm-timeout=%s)"
          % (launcher.path, " ".join(launcher.flags), launcher.timeout,
             launcher.comm_timeout))

    if args.negative:
        label = "ep.negative.%s" % args.negative
        try:
            if args.negative == "setup":
                negative_setup(bin_dir, work, launcher)
            else:
                negative(args.negative, bin_dir, work, launcher)
        except Unsupported as e:
            return skip_or_fail(label, e)
        except Failure as e:
            print("FAIL %s: %s" % (label, e))
            return 1
        print("PASS %s" % label)
        return 0

    runs = []
    if args.all:
        for c in ep_cases.EP_CASES:
            ep, _ = ep_spec(c["name"])
            runs += [(c["name"], p) for p in ep["ranks"]
                     if args.np_ is None or p == args.np_]
    if args.cases:
        if args.np_ is None:
            ap.error("--np P is needed with case names")
        for name in args.cases:
            ep_spec(name)  # exits on an unknown name
            runs.append((name, args.np_))
    if not runs:
        ap.error("no cases given")

    failed, skipped = [], []
    for name, p in runs:
        label = "ep.%s.np%d" % (name, p)
        print("== %s" % label)
        try:
            run_ep_case(name, p, bin_dir, work, launcher)
            print("PASS %s" % label)
        except Unsupported as e:
            rc = skip_or_fail(label, e)
            (skipped if rc == SKIP_RETURN_CODE else failed).append(label)
        except Failure as e:
            print("FAIL %s: %s" % (label, e))
            failed.append(label)
    if len(runs) > 1:
        print("%d of %d passed, %d skipped" % (
            len(runs) - len(failed) - len(skipped), len(runs), len(skipped)))
        if failed:
            print("failed: " + " ".join(failed))
    if failed:
        return 1
    if skipped and len(skipped) == len(runs):
        return SKIP_RETURN_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
