"""What the e2e scripts that drive moe-compile and moe-run share: their
command line (--bin DIR --work DIR), running a tool that must succeed, or
fail, and recording a routing profile.

Standard library, and NumPy for the profile's token files.
"""
import argparse
import json
import os
import subprocess
import sys


def parse_args(doc, name):
    """(work folder for `name`, moe-compile, moe-run) from --bin and --work;
    the work folder is created."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)
    return (work, os.path.join(args.bin, "moe-compile"),
            os.path.join(args.bin, "moe-run"))


def run(cmd, expect_ok=True):
    """Runs `cmd`; exits the test with its output when it fails (or, with
    `expect_ok` false, when it succeeds)."""
    result = subprocess.run(cmd, capture_output=True, text=True)
    if (result.returncode == 0) != expect_ok:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {result.returncode}\n"
                 f"{result.stdout}{result.stderr}")
    return result


def record_profile(moe_compile, moe_run, source, work, token_sets):
    """Compiles `source` with --record-routing and records a routing profile
    (work/profile.json, started anew) with one run per token array; returns
    its path and layer 0's tokens per expert."""
    import numpy as np
    profiling = os.path.join(work, "profiling.so")
    run([moe_compile, source, "--record-routing", "-o", profiling])
    profile = os.path.join(work, "profile.json")
    if os.path.exists(profile):
        os.remove(profile)
    for step, tokens in enumerate(token_sets):
        path = os.path.join(work, f"calibration{step}.npy")
        np.save(path, tokens)
        run([moe_run, profiling, f"--input=@{path}", f"--routing-profile={profile}"])
    with open(profile) as f:
        return profile, json.load(f)["layers"][0]["tokens_per_expert"]
