#!/usr/bin/python3
"""Writes deterministic inputs for examples/ort_swiglu_layer.mlir.

Usage: /usr/bin/python3 examples/make_inputs.py OUT_DIR [TOKENS]
Writes x.npy [T, 64], router_logits.npy [T, 4], fc1.npy [4, 512, 64],
fc1_bias.npy [4, 512], fc2.npy [4, 64, 256], fc2_bias.npy [4, 64] (float32),
in the order the function takes them.
"""
import os
import sys

import numpy as np

HIDDEN, INTER, EXPERTS = 64, 256, 4


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = sys.argv[1]
    tokens = int(sys.argv[2]) if len(sys.argv) == 3 else 64
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(2026)

    def normal(shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    arrays = {
        "x": normal((tokens, HIDDEN), 1.0),
        "router_logits": normal((tokens, EXPERTS), 1.0),
        "fc1": normal((EXPERTS, 2 * INTER, HIDDEN), HIDDEN ** -0.5),
        "fc1_bias": normal((EXPERTS, 2 * INTER), 0.1),
        "fc2": normal((EXPERTS, HIDDEN, INTER), INTER ** -0.5),
        "fc2_bias": normal((EXPERTS, HIDDEN), 0.1),
    }
    for name, array in arrays.items():
        np.save(os.path.join(out, name + ".npy"), array)


if __name__ == "__main__":
    main()
