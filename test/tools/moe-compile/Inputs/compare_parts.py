"""Runs codegen-threads.test's two modules on the export's inputs and prints
whether their outputs are bit-identical and within 1e-5 of torch eager's."""
import os
import subprocess
import sys

import numpy as np

work = sys.argv[1]
inputs = open(os.path.join(work, "m", "inputs.txt")).read().split()
outputs = {}
for name in ("one", "three"):
    out = os.path.join(work, f"{name}.npy")
    subprocess.run([os.path.join(os.environ["MOE_TOOLS_DIR"], "moe-run"),
                    os.path.join(work, f"{name}.so"),
                    *[f"--input=@{p}" for p in inputs], f"--output=@{out}"],
                   check=True)
    outputs[name] = np.load(out)
torch = np.load(os.path.join(work, "m", "torch_0.npy"))
close = np.abs(outputs["one"] - torch).max() / np.abs(torch).max() <= 1e-5
print("bit-identical", np.array_equal(outputs["one"], outputs["three"]),
      "torch", bool(close))
