"""moe_mlir.routing_profile(): the routing of modules compiled with
record_routing=True, counted per layer, written as JSON and merged across
runs (docs/RoutingProfiles.md)."""

import json

import numpy as np
import pytest

import moe_mlir
from conftest import E, EXAMPLE_LAYER, layer_inputs


def expected(logits, k=2):
    """Tokens per expert and co-activated pairs of the top-k of `logits`."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    pairs = np.zeros((E, E), np.int64)
    for a, b in top:
        pairs[a, b] += 1
        pairs[b, a] += 1
    return np.bincount(top.ravel(), minlength=E), pairs


def test_profile_counts_and_merges(tmp_path, cache_dir):
    layer = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache_dir,
                             record_routing=True)
    path = tmp_path / "profile.json"
    per_expert, pairs, tokens = np.zeros(E, np.int64), np.zeros((E, E), np.int64), 0
    for runs, (count, seed) in enumerate([(9, 1), (30, 2)], start=1):
        inputs = layer_inputs(count, seed=seed)
        with moe_mlir.routing_profile(path):
            layer(*inputs)
        n, p = expected(inputs[1])
        per_expert, pairs, tokens = per_expert + n, pairs + p, tokens + count
        doc = json.loads(path.read_text())
        assert doc["format"] == "moe-routing-profile" and doc["version"] == 1
        assert doc["records"] == runs
        assert doc["layers"] == [dict(
            layer=0, experts=E, top_k=2, records=runs, tokens=tokens,
            empty_slots=0, tokens_per_expert=per_expert.tolist(),
            coactivation=pairs.tolist(),
            # One layer: nothing before it to predict its choice from.
            pre_gating=dict(tokens=0, slots=0, hits=0, exact_tokens=0))]

    # merge=False starts the file over.
    inputs = layer_inputs(5, seed=3)
    with moe_mlir.routing_profile(path, merge=False):
        layer(*inputs)
    doc = json.loads(path.read_text())
    assert doc["records"] == 1
    assert doc["layers"][0]["tokens_per_expert"] == expected(inputs[1])[0].tolist()


def test_profile_needs_record_routing(tmp_path, layer):
    path = tmp_path / "profile.json"
    with pytest.raises(moe_mlir.InvalidArgumentError, match="record_routing=True"):
        with moe_mlir.routing_profile(path):
            layer(*layer_inputs(4))
    assert not path.exists()


def test_profile_of_another_model_is_refused(tmp_path, cache_dir):
    layer = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache_dir,
                             record_routing=True)
    path = tmp_path / "profile.json"
    other = dict(format="moe-routing-profile", version=1, records=1,
                 layers=[dict(layer=0, experts=8, top_k=2, records=1, tokens=0,
                              empty_slots=0, tokens_per_expert=[0] * 8,
                              coactivation=[[0] * 8] * 8)])
    path.write_text(json.dumps(other))
    with pytest.raises(moe_mlir.InvalidArgumentError, match="another model"):
        with moe_mlir.routing_profile(path):
            layer(*layer_inputs(4))
    assert json.loads(path.read_text()) == other


def test_compile_takes_the_profile_back(tmp_path, cache_dir):
    # The flags reach moe-compile: the example layer takes its logits as an
    # input, so pruning and placement (which read the router's rows) refuse
    # it by name, and --ep-dispatch is checked.
    layer = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache_dir,
                             record_routing=True)
    path = tmp_path / "profile.json"
    with moe_mlir.routing_profile(path):
        layer(*layer_inputs(16))
    with pytest.raises(moe_mlir.CompileError,
                       match="cannot prune layer 0: its router is not the "
                             "layer's weight"):
        moe_mlir.compile(EXAMPLE_LAYER, routing_profile=str(path),
                         prune_experts=1)
    with pytest.raises(moe_mlir.CompileError,
                       match="cannot place the experts of layer 0"):
        moe_mlir.compile(EXAMPLE_LAYER, routing_profile=str(path),
                         expert_parallel=2, ep_dispatch="rank",
                         place_experts=True)
    with pytest.raises(moe_mlir.CompileError,
                       match="--ep-dispatch must be 'expert' or 'rank'"):
        moe_mlir.compile(EXAMPLE_LAYER, expert_parallel=2, ep_dispatch="token")
