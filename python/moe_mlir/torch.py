"""torch front end: `moe_mlir.torch.compile(nn.Module, example_inputs)`.

The module is exported with torch.onnx.export (TorchScript tracing, opset
17), imported by moe-compile (which raises the MoE blocks PyTorch spells out
op by op back to moe.layer) and compiled; the result is called with torch
tensors and returns torch tensors.
"""

import os
import tempfile

import torch

from .compiler import compile as _compile_model
from .errors import InvalidArgumentError


class CompiledModule:
    """A compiled torch module: call it like the original (positional tensor
    arguments, in the order of example_inputs). `module` is the underlying
    moe_mlir.Module, `onnx_path` the exported graph when keep_onnx was
    given."""

    def __init__(self, module, input_names, output_names, single, onnx_path):
        self.module = module
        self.input_names = input_names
        self.output_names = output_names
        self.onnx_path = onnx_path
        self._single = single

    @property
    def signature(self):
        return self.module.signature

    def __call__(self, *inputs):
        if len(inputs) != len(self.input_names):
            raise InvalidArgumentError(
                f"the compiled module takes {len(self.input_names)} inputs "
                f"({', '.join(self.input_names)}), got {len(inputs)}")
        outs = self.module(*inputs)
        if not isinstance(outs, tuple):
            outs = (outs,)
        outs = tuple(o if isinstance(o, torch.Tensor) else torch.from_numpy(o)
                     for o in outs)
        return outs[0] if self._single else outs


def _dynamic_axes(dynamic, names, examples):
    """torch.onnx's dynamic_axes for `dynamic`: True makes every dimension
    but the last of every input symbolic (tokens, batch and sequence vary;
    feature sizes are the model's), False none, a dict is taken as is."""
    if isinstance(dynamic, dict):
        return dynamic
    if not dynamic:
        return None
    axes = {}
    for name, example in zip(names, examples):
        if example.dim() > 1:
            axes[name] = {d: f"{name}_{d}" for d in range(example.dim() - 1)}
        elif example.dim() == 1:
            axes[name] = {0: f"{name}_0"}
    return axes


def compile(model, example_inputs, dynamic=True, *, input_names=None,
            output_names=None, keep_onnx=None, **options):
    """Exports `model` (an nn.Module) with torch.onnx on `example_inputs`
    (a tensor or a tuple of tensors), compiles it with moe-compile and
    returns a callable over torch tensors.

    `dynamic`: True (every input dimension but the last is symbolic), False
    (the example shapes are baked in) or torch.onnx's dynamic_axes dict
    keyed by input name. `input_names` / `output_names` name the graph's
    inputs and outputs (default input_<i> / output_<i>). `keep_onnx` is a
    path to keep the exported graph at. `options` go to moe_mlir.compile
    (target=, cache_dir=, moe-compile's flags).
    """
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgumentError(
            f"moe_mlir.torch.compile takes an nn.Module, not {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    if not all(isinstance(t, torch.Tensor) for t in example_inputs):
        raise InvalidArgumentError("example_inputs must be torch tensors")
    names = list(input_names or [f"input_{i}" for i in range(len(example_inputs))])
    with torch.no_grad():
        outputs = model(*example_inputs)
    single = isinstance(outputs, torch.Tensor)
    count = 1 if single else len(outputs)
    outs = list(output_names or [f"output_{i}" for i in range(count)])

    with tempfile.TemporaryDirectory(prefix="moe_mlir_torch_") as tmp:
        path = os.fspath(keep_onnx) if keep_onnx else os.path.join(tmp, "model.onnx")
        with torch.no_grad():
            torch.onnx.export(model, example_inputs, path, input_names=names,
                              output_names=outs, opset_version=17,
                              dynamic_axes=_dynamic_axes(dynamic, names, example_inputs))
        module = _compile_model(path, **options)
    return CompiledModule(module, names, outs, single, path if keep_onnx else None)
