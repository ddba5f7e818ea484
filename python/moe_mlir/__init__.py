"""moe_mlir: compile Mixture-of-Experts layers and models with moe-mlir and
run them from Python.

    import moe_mlir
    layer = moe_mlir.compile("layer.mlir")          # or .onnx, onnx.ModelProto, MLIR text
    y = layer(x, logits, fc1, fc1_bias, fc2, fc2_bias)
    print(layer.signature)
    layer.check(x, logits, fc1, fc1_bias, fc2, fc2_bias)   # vs. float64 reference

See python/README.md for the whole API: moe_mlir.load, moe_mlir.opt,
moe_mlir.generate, moe_mlir.torch.compile and moe_mlir.distributed.
"""

from .errors import (CompileError, DeviceError, Error, InternalError,
                     InvalidArgumentError, InvalidModuleError, NotFoundError,
                     UnavailableError)
from .runtime import (BenchmarkResult, CheckResult, Module, Signature,
                      TensorSpec, expert_cache, expert_cache_stats,
                      get_num_threads, load, routing_profile,
                      set_num_threads)
from .compiler import compile, opt
from .generation import generate

__all__ = [
    "BenchmarkResult", "CheckResult", "CompileError", "DeviceError", "Error",
    "InternalError", "InvalidArgumentError", "InvalidModuleError", "Module",
    "NotFoundError", "Signature", "TensorSpec", "UnavailableError", "compile",
    "expert_cache", "expert_cache_stats", "generate", "get_num_threads",
    "load", "opt", "routing_profile", "set_num_threads",
]
