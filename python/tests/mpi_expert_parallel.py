"""Run under `mpirun -np 2`: the example layer compiled with
--expert-parallel=2, called from Python on every rank with the whole
tensors, must give the single-process module's result on every rank (and
the float64 reference's); the rank-local call must give this rank's token
rows. Exits non-zero on any mismatch. Argument: a compile cache directory.
"""

import pathlib
import sys

import numpy as np

import moe_mlir
from moe_mlir import distributed

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from conftest import EXAMPLE_LAYER, assert_close, layer_inputs, layer_reference  # noqa: E402


def main():
    cache = sys.argv[1] if len(sys.argv) > 1 else None
    rank, size = distributed.init()
    assert size == 2, f"run under mpirun -np 2 (got {size} ranks)"
    # Rank 0 compiles, the other reads the cache.
    from mpi4py import MPI
    if rank == 0:
        full = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache)
        ep = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache, expert_parallel=2)
    MPI.COMM_WORLD.Barrier()
    if rank != 0:
        full = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache)
        ep = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache, expert_parallel=2)
    for tokens in (1, 7, 32):
        inputs = layer_inputs(tokens, seed=tokens)
        y = ep(*inputs)
        np.testing.assert_allclose(y, full(*inputs), rtol=1e-5, atol=1e-6)
        assert_close(y, layer_reference(*inputs))
        # Rank-local call on this rank's parts.
        begin, end = moe_mlir._runtime.partition_range(tokens, 2, rank)
        ebegin, eend = moe_mlir._runtime.partition_range(4, 2, rank)
        parts = [a[begin:end] for a in inputs[:2]] + [a[ebegin:eend] for a in inputs[2:]]
        local = ep.call_local(*parts)
        np.testing.assert_allclose(local, y[begin:end], rtol=1e-6, atol=1e-7)
    print(f"rank {rank}: expert-parallel results match", flush=True)


if __name__ == "__main__":
    main()
