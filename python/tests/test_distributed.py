"""Expert-parallel modules in one process: a module compiled for one rank
runs without MPI, one for two ranks asks for mpirun. The two-rank run under
mpirun is mpi_expert_parallel.py (ctest: python.mpi_expert_parallel)."""

import numpy as np
import pytest

import moe_mlir
from conftest import EXAMPLE_LAYER, E, H, assert_close, layer_inputs, layer_reference


def test_one_rank_without_mpi(cache_dir):
    module = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache_dir, expert_parallel=1)
    assert module.expert_parallel == 1
    assert [s.split for s in module.signature.inputs][:3] == ["tokens", "tokens", "experts"]
    inputs = layer_inputs(9)
    assert_close(module(*inputs), layer_reference(*inputs))
    # The rank's own part: with one rank, the whole layer.
    assert_close(module.call_local(*inputs), layer_reference(*inputs))
    bad = layer_inputs(9)
    bad[2] = bad[2][:2]
    with pytest.raises(moe_mlir.InvalidArgumentError, match="compiled for 4 experts"):
        module(*bad)


def test_two_ranks_need_mpirun(cache_dir, monkeypatch):
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE", raising=False)
    monkeypatch.delenv("PMI_SIZE", raising=False)
    module = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache_dir, expert_parallel=2)
    assert module.expert_parallel == 2
    assert module.signature.inputs[2].shape[0] == E // 2
    with pytest.raises(moe_mlir.UnavailableError, match="mpirun -np 2"):
        module(*layer_inputs(4))
    with pytest.raises(moe_mlir.InvalidArgumentError):
        module.benchmark(*layer_inputs(4))
