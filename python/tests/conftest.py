"""Shared fixtures of the moe_mlir tests.

The tests run against the package of a build tree (ctest sets PYTHONPATH to
build/python) or an installed one. Compiled modules are cached in
$MOE_MLIR_TEST_CACHE (ctest: build/python/test-cache) through compile()'s
cache_dir, keyed by the compiler binary, so each is compiled once per build.
"""

import os
import pathlib
import sys
import tempfile

import numpy as np
import pytest

import moe_mlir

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE_LAYER = ROOT / "examples" / "ort_swiglu_layer.mlir"
# Hugging Face-style MoE blocks and decoders (test/lib/hf_moe.py).
sys.path.insert(0, str(ROOT / "test" / "lib"))

# The example layer: H=64, 4 experts of I=256, top-2 renormalised softmax
# routing, interleaved SwiGLU with alpha 1.702, beta 1, limit 7, biases.
H, E, I = 64, 4, 256
ALPHA, BETA, LIMIT = 1.702, 1.0, 7.0


@pytest.fixture(scope="session")
def cache_dir():
    path = os.environ.get("MOE_MLIR_TEST_CACHE")
    if path:
        os.makedirs(path, exist_ok=True)
        return path
    return tempfile.mkdtemp(prefix="moe_mlir_test_cache_")


@pytest.fixture(scope="session")
def layer(cache_dir):
    return moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache_dir)


def layer_inputs(tokens, seed=0):
    """Inputs of the example layer in manifest order, as float32 arrays."""
    rng = np.random.default_rng(seed)
    f = lambda *shape, scale=1.0: (scale * rng.standard_normal(shape)).astype(np.float32)
    return [f(tokens, H), f(tokens, E), f(E, 2 * I, H, scale=0.1), f(E, 2 * I, scale=0.1),
            f(E, H, I, scale=0.1), f(E, H, scale=0.1)]


def layer_reference(x, logits, fc1, fc1_bias, fc2, fc2_bias):
    """The example layer in float64 numpy, written from docs/Dialects/MoE.md:
    softmax over the logits, top-2, weights renormalised; fc1 output
    interleaved [g0, l0, g1, l1, ...], G = min(g, limit), L = clamp(l,
    -limit, limit), h = G * sigmoid(alpha * G) * (L + beta)."""
    x, logits = x.astype(np.float64), logits.astype(np.float64)
    fc1, fc1_bias = fc1.astype(np.float64), fc1_bias.astype(np.float64)
    fc2, fc2_bias = fc2.astype(np.float64), fc2_bias.astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        chosen = np.argsort(-probs[t], kind="stable")[:2]
        weights = probs[t, chosen] / probs[t, chosen].sum()
        for e, w in zip(chosen, weights):
            h = fc1[e] @ x[t] + fc1_bias[e]
            g = np.minimum(h[0::2], LIMIT)
            lin = np.clip(h[1::2], -LIMIT, LIMIT)
            act = g / (1.0 + np.exp(-ALPHA * g)) * (lin + BETA)
            y[t] += w * (fc2[e] @ act + fc2_bias[e])
    return y


def assert_close(actual, expected, rtol=1e-5):
    """max|diff| / max|expected| within rtol, moe-run --check's measure."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1e-30)
    err = np.abs(actual - expected).max(initial=0.0) / scale
    assert err <= rtol, f"relative error {err:.3g} > {rtol}"
