"""Compiling models: `compile()` and `opt()`.

Both drive the command-line tools (moe-compile, moe-opt) rather than linking
the compiler: the package then needs no MLIR at run time, a compiler crash
cannot take the Python process with it, and the options are exactly the
tools' flags.
"""

import hashlib
import os
import shutil
import tempfile
import weakref

from ._tools import run_tool, tool_identity
from .errors import InvalidArgumentError, NotFoundError
from .runtime import Module

# moe-compile's flags (moe-compile --help) as keyword arguments:
# gemm_row_tile=3 becomes --gemm-row-tile=3, no_raise=True --no-raise.
_COMPILE_FLAGS = {
    "cuda_arch", "emit", "emulate_cuda_kernels", "ep_dispatch",
    "expert_parallel", "gemm_col_tile", "gemm_row_tile", "gpu_binary",
    "inline_constants", "linker", "mattr", "mcpu", "merge_experts",
    "no_raise", "overlap_chunks", "overlap_model", "overlap_tokens",
    "place_experts", "prefetch_experts", "prune_experts", "record_routing",
    "routing_profile", "runtime_dir", "O",
}


def _flags(options):
    flags = []
    for key in sorted(options):
        value = options[key]
        if key not in _COMPILE_FLAGS:
            raise TypeError(
                f"compile() got an unknown option '{key}' (moe-compile's "
                f"flags: {', '.join(sorted(_COMPILE_FLAGS))}; extra_args= "
                "passes anything else)")
        if value is None or value is False:
            continue
        flag = "-" + key if len(key) == 1 else "--" + key.replace("_", "-")
        flags.append(flag if value is True else f"{flag}={value}")
    return flags


def _model_source(model):
    """(suffix, bytes, path or None) of a model given as a path, an
    onnx.ModelProto, serialized ONNX bytes or MLIR text."""
    if hasattr(model, "SerializeToString"):
        return ".onnx", model.SerializeToString(), None
    if isinstance(model, (bytes, bytearray)):
        return ".onnx", bytes(model), None
    if isinstance(model, os.PathLike) or (
            isinstance(model, str) and "\n" not in model and
            (model.endswith((".onnx", ".mlir")) or os.path.isfile(model))):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise NotFoundError(f"no such model file: {path}")
        suffix = os.path.splitext(path)[1]
        if suffix not in (".onnx", ".mlir"):
            raise InvalidArgumentError(
                f"{path}: expected a .onnx or .mlir file")
        with open(path, "rb") as f:
            return suffix, f.read(), path
    if isinstance(model, str):
        return ".mlir", model.encode(), None
    raise InvalidArgumentError(
        "compile() takes a .onnx or .mlir path, an onnx.ModelProto, ONNX "
        f"bytes or MLIR text, not {type(model).__name__}")


def compile(model, target="cpu", *, output=None, cache_dir=None,
            function=None, extra_args=(), **options):
    """Compiles `model` with moe-compile and loads the result.

    `model` is a path to a .onnx or .mlir file, an onnx.ModelProto, ONNX
    bytes, or MLIR text. `options` are moe-compile's flags with underscores
    (gemm_row_tile=3, expert_parallel=2, no_raise=True, O=2; see
    `moe-compile --help`); `extra_args` are passed verbatim. The module is
    written to `output` when given; else, with `cache_dir`, to a file named
    by a hash of the model's content, the target, the options and the
    compiler binary, reused by later calls with the same key; else to a
    temporary file that lives as long as the Module. A compiler failure
    raises CompileError with moe-compile's diagnostics.
    """
    suffix, content, path = _model_source(model)
    if target not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"target must be 'cpu' or 'cuda', not {target!r}")
    flags = [f"--target={target}"] + _flags(options) + [str(a) for a in extra_args]
    if any(f.startswith("--emit") and f != "--emit=so" for f in flags):
        raise InvalidArgumentError(
            "compile() loads the module it builds; use the moe-compile tool "
            "for the other --emit stages")

    owned = None
    if output is not None:
        out_path = os.fspath(output)
    elif cache_dir is not None:
        key = hashlib.sha256()
        for part in (content, suffix.encode(), "\0".join(flags).encode(),
                     tool_identity("moe-compile").encode()):
            key.update(hashlib.sha256(part).digest())
        os.makedirs(cache_dir, exist_ok=True)
        out_path = os.path.join(os.fspath(cache_dir), key.hexdigest()[:32] + ".so")
        if os.path.isfile(out_path):
            return Module(out_path, function)
    else:
        owned = tempfile.mkdtemp(prefix="moe_mlir_")
        out_path = os.path.join(owned, "module.so")

    with tempfile.TemporaryDirectory(prefix="moe_mlir_src_") as tmp:
        if path is None:
            path = os.path.join(tmp, "model" + suffix)
            with open(path, "wb") as f:
                f.write(content)
        # Written under a temporary name and renamed: a concurrent reader of
        # the cache never sees a partial module.
        partial = out_path + f".partial.{os.getpid()}"
        try:
            run_tool("moe-compile", [path, "-o", partial] + flags)
            os.replace(partial, out_path)
        except BaseException:
            if os.path.exists(partial):
                os.remove(partial)
            if owned:
                shutil.rmtree(owned, ignore_errors=True)
            raise
    module = Module(out_path, function)
    if owned:
        # The temporary directory goes when the module (and every Module
        # sharing its file through function()) is gone.
        module._owned_files = _TemporaryFiles(owned)
    return module


class _TemporaryFiles:
    def __init__(self, directory):
        self.directory = directory
        self._finalizer = weakref.finalize(self, shutil.rmtree, directory, True)


def opt(ir, pipeline, *, extra_args=()):
    """Runs a pass pipeline over MLIR text with moe-opt and returns the
    result as text. `pipeline` is a textual pass pipeline:
    "moe-decompose-layer,canonicalize", anchored on the module unless it
    names an op itself ("builtin.module(func.func(cse))"). A pass failure or
    a parse error raises CompileError with moe-opt's diagnostics."""
    if not isinstance(ir, str):
        raise InvalidArgumentError(f"opt() takes MLIR text, not {type(ir).__name__}")
    pipeline = pipeline.strip()
    if not pipeline.startswith("builtin.module("):
        pipeline = f"builtin.module({pipeline})"
    return run_tool("moe-opt", [f"--pass-pipeline={pipeline}", "-"] +
                    [str(a) for a in extra_args], input_text=ir)
