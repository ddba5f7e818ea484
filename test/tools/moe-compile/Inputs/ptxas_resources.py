"""Reads `ptxas -v` output (stdin) and prints one line per kernel:

    KERNEL ARCH regs=R smem=S stack=F spills=N

Exits 1 when a kernel spills registers or needs more than --max-registers
registers per thread (so that a block of 128 threads keeps the occupancy
the tiles were sized for). A stack frame alone is reported, not an error:
the per-token kernels keep small arrays (a token's scores) in local memory
on purpose."""
import argparse
import re
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--max-registers", type=int, default=128)
args = ap.parse_args()

kernels = []
current = None
for line in sys.stdin:
    m = re.search(r"Compiling entry function '(\w+)' for '(\w+)'", line)
    if m:
        current = {"name": m.group(1), "arch": m.group(2)}
        kernels.append(current)
        continue
    if current is None:
        continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                  r"(\d+) bytes spill loads", line)
    if m:
        current["stack"] = int(m.group(1))
        current["spills"] = int(m.group(2)) + int(m.group(3))
    m = re.search(r"Used (\d+) registers", line)
    if m:
        current["regs"] = int(m.group(1))
        s = re.search(r"(\d+) bytes smem", line)
        current["smem"] = int(s.group(1)) if s else 0

bad = False
for k in sorted(kernels, key=lambda k: (k["arch"], k["name"])):
    print("%s %s regs=%d smem=%d stack=%d spills=%d"
          % (k["name"], k["arch"], k.get("regs", -1), k.get("smem", 0),
             k.get("stack", 0), k.get("spills", 0)))
    if k.get("spills", 0) or k.get("regs", 0) > args.max_registers:
        print("error: %s (%s) spills or needs more than %d registers"
              % (k["name"], k["arch"], args.max_registers))
        bad = True
if not kernels:
    print("error: no kernel in the ptxas output")
    bad = True
sys.exit(1 if bad else 0)
