"""generate() on a Hugging Face-style Mixtral decoder with a KV cache
(test/lib/hf_moe.py), compared with torch eager decoding."""

import numpy as np
import pytest
import torch

import hf_moe
import moe_mlir
from conftest import assert_close


@pytest.fixture(scope="module")
def decoder(cache_dir, tmp_path_factory):
    cfg, model = hf_moe.build("mixtral", kv_cache=True)
    gen = torch.Generator().manual_seed(1)
    # An empty past cannot be traced: export with one past position (the
    # cache's length is a symbol) and run from an empty one.
    inputs = hf_moe.make_inputs(cfg, 1, 4, 1, True, gen)
    path = tmp_path_factory.mktemp("decoder") / "model.onnx"
    hf_moe.export(model, cfg, inputs, str(path), True, True)
    return cfg, model, moe_mlir.compile(path, cache_dir=cache_dir)


def eager_greedy(cfg, model, prompt, steps):
    """Greedy decoding in torch with the model's own cache; the sequences
    and every step's last-position logits."""
    batch = prompt.shape[0]
    (kh, kd), (vh, vd) = hf_moe.kv_shape(cfg)
    past = []
    for _ in range(cfg["layers"]):
        past += [torch.zeros(batch, kh, 0, kd), torch.zeros(batch, vh, 0, vd)]
    seq, ids, logits = prompt, prompt, []
    with torch.no_grad():
        for _ in range(steps):
            out = model(ids, torch.ones(seq.shape, dtype=torch.int64), *past)
            logits.append(out[0][:, -1])
            ids = out[0][:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, ids], dim=1)
            past = list(out[1:])
    return seq, torch.stack(logits)


def test_greedy_matches_eager(decoder):
    cfg, model, module = decoder
    prompt = torch.randint(0, cfg["vocab"], (2, 5), generator=torch.Generator().manual_seed(3))
    seq, scores = moe_mlir.generate(module, prompt, 10, return_scores=True)
    expected, expected_scores = eager_greedy(cfg, model, prompt, 10)
    assert isinstance(seq, torch.Tensor) and seq.shape == (2, 15)
    assert torch.equal(seq, expected)
    assert_close(scores, expected_scores.numpy(), rtol=1e-4)


def test_without_cache_matches_cached(decoder):
    cfg, _, module = decoder
    prompt = np.random.default_rng(4).integers(0, cfg["vocab"], (1, 3))
    cached = moe_mlir.generate(module, prompt, 6)
    uncached = moe_mlir.generate(module, prompt, 6, use_cache=False)
    assert isinstance(cached, np.ndarray)
    np.testing.assert_array_equal(cached, uncached)


def test_sampling(decoder):
    cfg, _, module = decoder
    prompt = np.random.default_rng(5).integers(0, cfg["vocab"], (3, 4))
    a = moe_mlir.generate(module, prompt, 8, do_sample=True, temperature=0.8, seed=7)
    b = moe_mlir.generate(module, prompt, 8, do_sample=True, temperature=0.8, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 12) and (a >= 0).all() and (a < cfg["vocab"]).all()
    np.testing.assert_array_equal(a[:, :4], prompt)
    # top_k=1 leaves only the argmax: greedy.
    np.testing.assert_array_equal(
        moe_mlir.generate(module, prompt, 5, do_sample=True, top_k=1, seed=1),
        moe_mlir.generate(module, prompt, 5))
    # A tiny nucleus is greedy too.
    np.testing.assert_array_equal(
        moe_mlir.generate(module, prompt, 5, do_sample=True, top_p=1e-9, seed=2),
        moe_mlir.generate(module, prompt, 5))


def test_eos_and_progress(decoder, capsys):
    cfg, _, module = decoder
    prompt = np.random.default_rng(6).integers(0, cfg["vocab"], (1, 4))
    greedy = moe_mlir.generate(module, prompt, 6)
    eos = int(greedy[0, 6])  # the third new token
    stopped = moe_mlir.generate(module, prompt, 6, eos_token_id=eos, progress=True)
    np.testing.assert_array_equal(stopped, greedy[:, :7])
    assert "3/6 tokens" in capsys.readouterr().err


def test_bad_arguments(decoder, layer):
    _, _, module = decoder
    with pytest.raises(moe_mlir.InvalidArgumentError, match="input_ids"):
        moe_mlir.generate(layer, np.zeros((1, 2), np.int64), 2)
    with pytest.raises(moe_mlir.InvalidArgumentError, match="batch, sequence"):
        moe_mlir.generate(module, np.zeros(3, np.int64), 2)
