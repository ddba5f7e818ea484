#!/usr/bin/python3
"""Writes random inputs for check-quant.test's quantised layer (numpy).

  mkquant.py OUTDIR T BITS BLOCK
      x.npy [T, 64], logits.npy [T, 4], and for fc1 ([4, 128, 64]) and fc2
      ([4, 64, 64]): packed weights (u8), scales (per row for BLOCK 0, else
      [E, N, 64 / BLOCK]), zero points packed as MoE.md says, and biases.
"""
import os
import sys

import numpy as np


def main():
    out, tokens, bits, block = (sys.argv[1], int(sys.argv[2]),
                                int(sys.argv[3]), int(sys.argv[4]))
    rng = np.random.default_rng(11)
    os.makedirs(out, exist_ok=True)
    save = lambda name, a: np.save(os.path.join(out, name + ".npy"), a)
    save("x", rng.standard_normal((tokens, 64)).astype(np.float32))
    save("logits", rng.standard_normal((tokens, 4)).astype(np.float32))
    for name, rows in (("fc1", 128), ("fc2", 64)):
        k = 64
        q = rng.integers(0, 1 << bits, size=(4, rows, k), dtype=np.uint8)
        if bits == 4:
            q = q[:, :, 0::2] | (q[:, :, 1::2] << 4)
        save(name, q.astype(np.uint8))
        blocks = k // block if block else 0
        shape = (4, rows, blocks) if block else (4, rows)
        save(name + "_scales",
             rng.uniform(0.01, 0.03, size=shape).astype(np.float32))
        zp = rng.integers(0, 1 << bits, size=shape, dtype=np.uint8)
        if bits == 4:
            zp = zp[..., 0::2] | (zp[..., 1::2] << 4)
        save(name + "_zp", zp.astype(np.uint8))
        save(name + "_bias",
             (0.1 * rng.standard_normal((4, rows))).astype(np.float32))


if __name__ == "__main__":
    main()
