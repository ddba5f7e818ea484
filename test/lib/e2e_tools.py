"""What the e2e scripts that drive moe-compile and moe-run share: their
command line (--bin DIR --work DIR) and running a tool that must succeed,
or fail.

Standard library only.
"""
import argparse
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
