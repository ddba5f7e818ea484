"""moe_mlir.expert_cache(): the runtime's expert cache, fed by modules
compiled with prefetch_experts=True (docs/Runtime.md, "Expert cache"):
its counts against numpy's routing, its budget, and its argument checks.
"""

import numpy as np
import pytest

import moe_mlir
from bf16_layer import layer_mlir, reference

H, I, E, K = 64, 128, 8, 2


@pytest.fixture
def default_cache():
    yield
    moe_mlir.expert_cache()  # no budget, read ahead all: the default
    moe_mlir.expert_cache_stats(reset=True, wait=True)


def test_counts_and_budget(tmp_path, cache_dir, default_cache):
    rng = np.random.default_rng(5)
    weights = dict(router=rng.standard_normal((E, H), dtype=np.float32),
                   fc1=(rng.standard_normal((E, 2 * I, H)) / 8).astype(np.float32),
                   fc2=(rng.standard_normal((E, H, I)) / 11).astype(np.float32))
    source = tmp_path / "layer.mlir"
    source.write_text(layer_mlir(H, I, E, K, dtype="f32", constants=weights))
    # One expert's fc1 and fc2: 64 KiB + 32 KiB; the budget holds one.
    moe_mlir.expert_cache(memory_limit=100 << 10, read_ahead="chosen")
    layer = moe_mlir.compile(source, cache_dir=cache_dir, prefetch_experts=True)
    moe_mlir.expert_cache_stats(reset=True, wait=True)

    def chosen(x):
        logits = x.astype(np.float64) @ weights["router"].T.astype(np.float64)
        return set(np.argsort(-logits, axis=1)[:, :K].ravel().tolist())

    expert_bytes = (2 * I * H + H * I) * 4
    used = 0
    for seed in (1, 2):
        x = np.random.default_rng(seed).standard_normal((6, H), dtype=np.float32)
        y = layer(x)
        ref = reference(x, weights["router"], weights["fc1"], weights["fc2"], K)
        assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()
        used += len(chosen(x))
        stats = moe_mlir.expert_cache_stats(wait=True)
        assert stats["used"] == 2 * used
        assert stats["used_bytes"] == used * expert_bytes
        assert stats["predicted"] == 0  # one layer: nothing to guess from
        # What a layer is about to read is never evicted, even beyond the
        # budget; everything else is: the first run's experts by the second.
        assert stats["resident_bytes"] == len(chosen(x)) * expert_bytes
        assert (stats["evictions"] > 0) == (seed == 2)


def test_bad_arguments(default_cache):
    with pytest.raises(moe_mlir.InvalidArgumentError, match=">= 0 bytes"):
        moe_mlir.expert_cache(memory_limit=-1)
    with pytest.raises(moe_mlir.InvalidArgumentError, match="read_ahead"):
        moe_mlir.expert_cache(read_ahead="sometimes")
