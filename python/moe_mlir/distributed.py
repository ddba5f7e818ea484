"""Expert-parallel modules (moe-compile --expert-parallel=P) from Python.

Run the script under `mpirun -np P python3 script.py`; every rank loads the
same module and calls it with the same whole tensors, as `mpirun -np P
moe-run` does with the same .npy files (docs/ExpertParallel.md). Each rank
passes the runtime its part (token rows and experts split by the manifest's
partition rule, experts padded to Emax with zeros), the ranks exchange
tokens through the MPI communicator of libmoe_runtime_mpi.so, and the
outputs are gathered so that every rank returns the whole result.

MPI is initialised by mpi4py (MPI_THREAD_MULTIPLE, which the communicator's
progress thread needs); `init()` is called by the first expert-parallel call
when the process runs under mpirun, or explicitly. A module compiled for one
rank runs without MPI.
"""

import atexit
import os

import numpy as np

from . import _runtime
from .runtime import as_numpy
from .errors import InvalidArgumentError, UnavailableError

_state = {"initialized": False, "rank": 0, "size": 1, "comm": None}


def _launched_size():
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        if os.environ.get(var):
            return int(os.environ[var])
    return 0


def _mpi_library():
    env = os.environ.get("MOE_RUNTIME_MPI")
    if env:
        return env
    runtime = _runtime.runtime_library_path()
    return os.path.join(os.path.dirname(runtime), "libmoe_runtime_mpi.so")


def init(timeout=None):
    """Initialises MPI (through mpi4py) and installs the runtime's MPI
    communicator; returns (rank, size). `timeout`: seconds a rank waits for
    an exchange before aborting the job (default $MOE_COMM_TIMEOUT or
    120)."""
    if _state["initialized"]:
        return _state["rank"], _state["size"]
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise UnavailableError(
            f"expert parallelism needs mpi4py (Debian: python3-mpi4py): {e}") from None
    if MPI.Query_thread() != MPI.THREAD_MULTIPLE:
        raise UnavailableError(
            "MPI was initialised without MPI_THREAD_MULTIPLE, which the "
            "communicator needs (leave mpi4py.rc.thread_level at 'multiple')")
    rank, size = _runtime.mpi_init(_mpi_library(), float(timeout or 0.0))
    _state.update(initialized=True, rank=rank, size=size, comm=MPI.COMM_WORLD)
    # Before mpi4py finalises MPI (its handler runs after Python's atexit).
    atexit.register(finalize)
    return rank, size


def finalize():
    """Removes the communicator and stops its progress thread."""
    if _state["initialized"]:
        _runtime.mpi_finalize()
        _state.update(initialized=False, rank=0, size=1, comm=None)


def rank():
    return _state["rank"]


def size():
    return _state["size"]


def _ensure_communicator(module):
    ranks = module.expert_parallel
    if _state["initialized"]:
        return
    launched = _launched_size()
    if launched:
        init()
    elif ranks == 1:
        _runtime.install_self_communicator()
    else:
        raise UnavailableError(
            f"function '{module.name}' was compiled for --expert-parallel={ranks}: "
            f"run the script under mpirun -np {ranks}")


def _part(buffer, spec, index, ranks, rank, experts, per_rank, tokens):
    where = f"input {index} '{spec.name}'"
    if spec.split == "none":
        return buffer
    array = as_numpy(buffer)
    if array.ndim == 0:
        raise InvalidArgumentError(f"{where}: a split input needs a dimension 0")
    rows = array.shape[0]
    if spec.split == "tokens":
        if tokens[0] is not None and tokens[0][0] != rows:
            raise InvalidArgumentError(
                f"{where}: dimension 0 is {rows} but input {tokens[0][1]} has "
                f"{tokens[0][0]} token rows (both are split by tokens)")
        tokens[0] = (rows, index)
        begin, end = _runtime.partition_range(rows, ranks, rank)
        return np.ascontiguousarray(array[begin:end])
    if rows != experts:
        raise InvalidArgumentError(
            f"{where}: dimension 0 is {rows} but the function was compiled for "
            f"{experts} experts (pass all of them; each rank takes its own)")
    begin, end = _runtime.partition_range(rows, ranks, rank)
    part = np.zeros((per_rank,) + array.shape[1:], dtype=array.dtype)
    part[:end - begin] = array[begin:end]
    return part


def invoke(module, buffers, local=False):
    """Runs expert-parallel `module` on this rank. With `local`, `buffers`
    are this rank's parts already and the rank's outputs are returned;
    otherwise they are the whole tensors and so are the results."""
    _ensure_communicator(module)
    fn = module._fn
    if local:
        return fn.invoke(buffers)
    ranks = module.expert_parallel
    experts, per_rank = module._experts
    me = _state["rank"]
    tokens = [None]
    parts = [_part(b, spec, i, ranks, me, experts, per_rank, tokens)
             for i, (b, spec) in enumerate(zip(buffers, module.signature.inputs))]
    outs = fn.invoke(parts)
    comm = _state["comm"]
    if comm is None:
        # One rank: its parts are the whole tensors (experts padded).
        return [o[:experts] if s.split == "experts" else o
                for o, s in zip(outs, module.signature.outputs)]
    whole = []
    for out, spec in zip(outs, module.signature.outputs):
        if spec.split == "none":
            whole.append(out)
            continue
        if spec.split == "experts":
            begin, end = _runtime.partition_range(experts, ranks, me)
            out = out[:end - begin]
        whole.append(np.concatenate(comm.allgather(out), axis=0))
    return whole
