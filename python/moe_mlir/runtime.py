"""Loading and running compiled modules: `load()` and `Module`.

A Module is one function of a compiled .so (the first one unless named),
called with numpy arrays, torch CPU tensors or anything with the buffer or
DLPack protocol, positionally in manifest order or by input name. Dtypes and
shapes come from the manifest and are checked by the runtime, whose message
becomes the exception's. C-contiguous inputs are passed to the module
without a copy; outputs are new numpy arrays (torch tensors when any input
was one, sharing the arrays' memory).

bf16 has no numpy dtype: numpy callers pass and receive bf16 tensors as their
uint16 bit patterns; torch callers use torch.bfloat16.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from typing import NamedTuple, Tuple, Union

import numpy as np

from . import _runtime
from ._tools import find_tool
from .errors import InvalidArgumentError

NUMPY_DTYPES = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(np.uint16),
    "f64": np.dtype(np.float64),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}


class TensorSpec(NamedTuple):
    """One input or output of a function as the manifest declares it. A
    symbolic dimension is its symbol expression ("T", "B*S")."""
    name: str
    dtype: str
    shape: Tuple[Union[int, str], ...]
    split: str = "none"

    @property
    def numpy_dtype(self):
        return NUMPY_DTYPES[self.dtype]

    def __str__(self):
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


class Signature(NamedTuple):
    """A function's name, inputs and outputs."""
    name: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]

    @property
    def input_names(self):
        return [s.name for s in self.inputs]

    @property
    def output_names(self):
        return [s.name for s in self.outputs]

    def __str__(self):
        ins = ", ".join(str(s) for s in self.inputs)
        outs = ", ".join(str(s) for s in self.outputs)
        return f"{self.name}({ins}) -> ({outs})"


class BenchmarkResult(NamedTuple):
    """Times of the entry alone (moe_benchmark: no argument validation or
    transfers), in milliseconds."""
    times_ms: np.ndarray
    clock: str
    device: str
    outputs: tuple

    @property
    def median_ms(self):
        return float(np.median(self.times_ms))

    @property
    def min_ms(self):
        return float(np.min(self.times_ms))

    def __str__(self):
        return (f"{len(self.times_ms)} runs on {self.device} ({self.clock}): "
                f"median {self.median_ms:.4f} ms, min {self.min_ms:.4f} ms")


class CheckResult(NamedTuple):
    """The first output against the float64 reference evaluator, as
    `moe-run --check` reports it: max|diff| and max|diff| / max|ref|."""
    passed: bool
    max_abs_error: float
    max_rel_error: float
    tolerance: float
    report: str

    def __bool__(self):
        return self.passed


def _torch_module():
    # Only a caller that passes torch tensors has imported torch; the numpy
    # path never imports it.
    return sys.modules.get("torch")


_TORCH_CODES = {}


def _torch_dtype_codes(torch):
    """torch dtype -> moe_dtype value (moe/runtime.h)."""
    if not _TORCH_CODES:
        _TORCH_CODES.update({
            torch.float32: 0, torch.float16: 1, torch.bfloat16: 2,
            torch.float64: 3, torch.int32: 4, torch.int64: 5, torch.int8: 6,
            torch.uint8: 7, torch.bool: 8})
    return _TORCH_CODES


def _as_buffer(value, spec, where):
    """`value` as something the extension reads without a copy where the
    layout allows; the second result says whether it came from torch."""
    if isinstance(value, np.ndarray):
        return value, False
    torch = _torch_module()
    if torch is not None and isinstance(value, torch.Tensor):
        # Described to the extension by address (torch tensors have no
        # buffer protocol, and .numpy() costs microseconds per tensor);
        # only a tensor on another device or with gaps is copied first.
        t = value
        if not t.is_cpu:
            # The runtime takes host tensors for every target.
            t = t.cpu()
        if not t.is_contiguous():
            t = t.contiguous()
        code = _torch_dtype_codes(torch).get(t.dtype)
        if code is None:
            raise InvalidArgumentError(
                f"{where}: torch dtype {t.dtype} is not a moe dtype "
                f"(expected {spec.dtype})")
        return (t.data_ptr(), t.shape, code, t), True
    if hasattr(value, "__dlpack__"):
        try:
            return np.from_dlpack(value), False
        except (TypeError, RuntimeError, BufferError):
            pass
    if isinstance(value, (list, tuple, int, float, bool, np.generic)):
        # Python containers and scalars carry no dtype: take the manifest's.
        return np.asarray(value, dtype=spec.numpy_dtype), False
    try:
        return np.asarray(memoryview(value)), False
    except TypeError:
        raise InvalidArgumentError(
            f"{where}: expected a numpy array, a torch tensor or a buffer, "
            f"got {type(value).__name__}") from None


def as_numpy(buffer):
    """A numpy view of a buffer made by _as_buffer (bf16 as uint16)."""
    if isinstance(buffer, tuple):
        t = buffer[3].detach()
        if buffer[2] == 2:  # bf16
            import torch
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.numpy()
    return np.asarray(buffer)


class Module:
    """One function of a compiled module.

    module(*arrays, **named) runs it; a function with one output returns
    that output, one with several returns a tuple. `signature` describes the
    inputs and outputs, `benchmark()` times it, `check()` compares it with
    the float64 reference evaluator.
    """

    def __init__(self, path, function=None, *, _handle=None):
        path = os.fspath(path)
        self._handle = _handle if _handle is not None else _runtime.Module(path)
        functions = self._handle.functions
        if not functions:
            raise InvalidArgumentError(f"module {path} has no functions")
        self._fn = self._handle.function(function) if function else functions[0]
        inputs = tuple(TensorSpec(*a) for a in self._fn.inputs)
        outputs = tuple(TensorSpec(*a) for a in self._fn.outputs)
        self.signature = Signature(self._fn.name, inputs, outputs)
        self._num_inputs = len(inputs)
        self._index = {s.name: i for i, s in enumerate(inputs)}
        self._where = [f"input {i} '{s.name}'" for i, s in enumerate(inputs)]
        ranks, experts, per_rank = self._fn.expert_parallel
        self.expert_parallel = ranks
        self._experts = (experts, per_rank)
        self._single = len(outputs) == 1
        # Keeps a temporary directory (compile() without an output path)
        # alive as long as the module.
        self._owned_files = None

    # -- Introspection ------------------------------------------------------

    @property
    def path(self):
        return self._handle.path

    @property
    def target(self):
        return self._handle.target

    @property
    def manifest(self):
        return json.loads(self._handle.manifest)

    @property
    def functions(self):
        return [f.name for f in self._handle.functions]

    @property
    def name(self):
        return self.signature.name

    def function(self, name):
        """The module's function `name` (NotFoundError lists the others)."""
        m = Module(self.path, name, _handle=self._handle)
        m._owned_files = self._owned_files
        return m

    def __repr__(self):
        return f"<moe_mlir.Module {self.path} [{self.target}]: {self.signature}>"

    # -- Calling -------------------------------------------------------------

    def __call__(self, /, *args, **named):
        # The common case goes straight to the extension: every input a
        # numpy array, in order.
        if not named and len(args) == self._num_inputs and not self.expert_parallel:
            for a in args:
                if type(a) is not np.ndarray:
                    break
            else:
                outs = self._fn.invoke(args)
                return outs[0] if self._single else tuple(outs)
        buffers, from_torch = self._bind(args, named)
        if self.expert_parallel:
            from . import distributed
            outs = distributed.invoke(self, buffers)
        else:
            outs = self._fn.invoke(buffers)
        return self._results(outs, from_torch)

    def call_local(self, /, *args, **named):
        """Runs an expert-parallel function on this rank's parts of the
        inputs (token rows and padded experts as moe_partition_range splits
        them) and returns this rank's outputs, without the slicing and
        gathering of a plain call (moe_mlir.distributed)."""
        if not self.expert_parallel:
            raise InvalidArgumentError(
                f"function '{self.name}' is not expert-parallel; call it directly")
        from . import distributed
        buffers, from_torch = self._bind(args, named)
        return self._results(distributed.invoke(self, buffers, local=True), from_torch)

    def _bind(self, args, named):
        """The inputs in manifest order as buffers, from positional and named
        arguments; and whether any came from torch."""
        sig = self.signature
        if not named and len(args) == self._num_inputs:
            values = args
        else:
            values = self._merge(args, named)
        buffers, from_torch = [], False
        for value, spec, where in zip(values, sig.inputs, self._where):
            buffer, is_torch = _as_buffer(value, spec, where)
            buffers.append(buffer)
            from_torch |= is_torch
        return buffers, from_torch

    def _merge(self, args, named):
        """Positional and named arguments in manifest order."""
        sig = self.signature
        if len(args) > self._num_inputs:
            raise InvalidArgumentError(
                f"function '{sig.name}' takes {self._num_inputs} inputs but "
                f"{len(args)} were given positionally")
        values = list(args) + [None] * (self._num_inputs - len(args))
        given = [True] * len(args) + [False] * (self._num_inputs - len(args))
        for name, value in named.items():
            i = self._index.get(name)
            if i is None:
                raise InvalidArgumentError(
                    f"function '{sig.name}' has no input '{name}' (inputs: "
                    f"{', '.join(sig.input_names)})")
            if given[i]:
                raise InvalidArgumentError(
                    f"input {i} '{name}' given both positionally and by name")
            values[i], given[i] = value, True
        missing = [f"{i} '{sig.inputs[i].name}'" for i, g in enumerate(given) if not g]
        if missing:
            raise InvalidArgumentError(
                f"function '{sig.name}': missing input{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}")
        return values

    def _results(self, outs, to_torch):
        if to_torch:
            import torch
            converted = []
            for array, spec in zip(outs, self.signature.outputs):
                if spec.dtype == "bf16":
                    converted.append(torch.from_numpy(array.view(np.int16)).view(torch.bfloat16))
                else:
                    converted.append(torch.from_numpy(array))
            outs = converted
        return outs[0] if self._single else tuple(outs)

    def output_shapes(self, /, *args, **named):
        """The (dtype, shape) of every output for these inputs, which are
        validated as for a call but not read."""
        buffers, _ = self._bind(args, named)
        return [(d, tuple(s)) for d, s in self._fn.output_shapes(buffers)]

    # -- Benchmark and check --------------------------------------------------

    def benchmark(self, *args, iterations=100, warmup=10, **named):
        """Times the function on these inputs with moe_benchmark (the entry
        alone: warm-up runs, then `iterations` timed runs)."""
        if self.expert_parallel:
            raise InvalidArgumentError(
                "benchmark() runs one process; time an expert-parallel "
                "function under mpirun with moe-run --benchmark")
        buffers, from_torch = self._bind(args, named)
        times, clock, device, outs = self._fn.benchmark(buffers, warmup, iterations)
        outs = self._results(outs, from_torch)
        return BenchmarkResult(times, clock, device,
                               outs if isinstance(outs, tuple) else (outs,))

    def check(self, *args, tolerance=None, **named):
        """Compares the first output with the float64 reference evaluator
        driven by the manifest's `reference` section, as `moe-run --check`
        does (it runs moe-run on the inputs saved as .npy files). Returns a
        CheckResult, true when max|diff| / max|ref| is within `tolerance`
        (moe-run's default: 1e-5, 2e-2 with f16/bf16 tensors)."""
        if self._fn.reference_json is None:
            raise InvalidArgumentError(
                f"function '{self.name}' has no reference section in its "
                "manifest (only moe.layer functions have one)")
        buffers, _ = self._bind(args, named)
        # The runtime's validation first, with its messages.
        self._fn.output_shapes(buffers)
        cmd = [find_tool("moe-run"), self.path, f"--function={self.name}", "--check"]
        if tolerance is not None:
            cmd.append(f"--tolerance={tolerance!r}")
        with tempfile.TemporaryDirectory(prefix="moe_mlir_check_") as tmp:
            for i, buffer in enumerate(buffers):
                path = os.path.join(tmp, f"input{i}.npy")
                np.save(path, np.ascontiguousarray(as_numpy(buffer)))
                cmd.append(f"--input=@{path}")
            result = subprocess.run(cmd, capture_output=True, text=True)
        match = re.search(r"check: max abs error (\S+), max rel error (\S+) .*"
                          r"tolerance (\S+): (PASS|FAIL)", result.stdout)
        if not match:
            message = result.stderr.strip() or result.stdout.strip()
            raise InvalidArgumentError(f"check failed to run: {message}")
        return CheckResult(match.group(4) == "PASS", float(match.group(1)),
                           float(match.group(2)), float(match.group(3)),
                           result.stdout.strip())

    def time_c_invoke(self, *args, iterations=1000, **named):
        """Seconds per call of a C loop over moe_invoke on these inputs: the
        baseline of the Python call overhead (benchmarks/python)."""
        buffers, _ = self._bind(args, named)
        return self._fn.time_c_invoke(buffers, iterations)


def load(path, function=None):
    """Loads a compiled module (.so). `function` picks one of its functions
    by name (default: the first). A missing file raises NotFoundError, a
    corrupt one InvalidModuleError."""
    path = os.fspath(path)
    return Module(path, function)


@contextmanager
def routing_profile(path, merge=True):
    """Records the routing of the modules run inside the `with` block
    (compiled with `record_routing=True`, moe-compile --record-routing):
    tokens per expert and pairs of experts chosen together, per layer. On
    leaving the block the counts are written to `path` as JSON, added to
    the profile already there unless `merge` is False
    (docs/RoutingProfiles.md). Raises InvalidArgumentError when no routing
    was reported or the profile at `path` is of other layer shapes."""
    path = os.fspath(path)
    _runtime.routing_profile_start()
    try:
        yield
    finally:
        _runtime.routing_profile_stop()
    if _runtime.routing_profile_records() == 0:
        raise InvalidArgumentError(
            "routing_profile: the modules run reported no routing; compile "
            "them with record_routing=True (moe-compile --record-routing)")
    _runtime.routing_profile_write(path, bool(merge))


_READ_AHEAD = {"none": 0, "chosen": 1, "all": 2}


def expert_cache(memory_limit=0, read_ahead="all"):
    """Configures the runtime's expert cache, which modules compiled with
    `prefetch_experts=True` (moe-compile --prefetch-experts) feed:
    `memory_limit` bytes of their experts' weights at most stay in memory
    (0: no budget), the ones used longest ago being evicted from the process
    and the page cache; `read_ahead` says what a worker thread reads ahead:
    "all" (each layer's chosen experts and the next layer's predicted
    ones), "chosen" or "none". Configure it before loading the modules
    (docs/Runtime.md, "Expert cache"). Raises InvalidArgumentError for a
    negative limit or another mode."""
    if read_ahead not in _READ_AHEAD:
        raise InvalidArgumentError(
            f"expert_cache: read_ahead must be one of "
            f"{', '.join(_READ_AHEAD)}, not {read_ahead!r}")
    _runtime.expert_cache_configure(int(memory_limit), _READ_AHEAD[read_ahead])


def expert_cache_stats(reset=False, wait=False):
    """The expert cache's counts (a dict: used, used_bytes, used_predicted,
    predicted, read_ahead_bytes, evictions, evicted_bytes, resident_bytes;
    docs/Runtime.md). `wait` first lets the worker finish its reads;
    `reset` zeroes the counts after reading them."""
    if wait:
        _runtime.expert_cache_wait()
    stats = _runtime.expert_cache_stats()
    if reset:
        _runtime.expert_cache_reset_stats()
    return stats


def set_num_threads(n):
    """Sets the runtime's worker-pool size (the calling thread counts as
    one); n <= 0 restores the default ($MOE_NUM_THREADS or all cores)."""
    _runtime.set_num_threads(int(n))


def get_num_threads():
    return _runtime.get_num_threads()
