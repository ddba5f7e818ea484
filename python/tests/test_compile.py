"""compile() from every kind of model (path, MLIR text, onnx.ModelProto),
its options and cache, opt(), and their errors."""

import os

import numpy as np
import onnx
import pytest
import torch

import moe_mlir
from conftest import EXAMPLE_LAYER, H, assert_close, layer_inputs, layer_reference


def test_compile_mlir_text_to_output(tmp_path):
    out = tmp_path / "layer.so"
    module = moe_mlir.compile(EXAMPLE_LAYER.read_text(), output=out)
    assert module.path == str(out) and out.is_file()
    inputs = layer_inputs(5)
    assert_close(module(*inputs), layer_reference(*inputs))


def test_compile_temporary_module_is_removed():
    module = moe_mlir.compile(EXAMPLE_LAYER)
    directory = os.path.dirname(module.path)
    assert os.path.isdir(directory)
    inputs = layer_inputs(2)
    assert_close(module(*inputs), layer_reference(*inputs))
    del module
    assert not os.path.exists(directory)


def test_cache_reuses_by_content_and_options(tmp_path):
    cache = tmp_path / "cache"
    first = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache)
    stamp = os.stat(first.path).st_mtime_ns
    # Same content under another name (MLIR text): the same cached module.
    again = moe_mlir.compile(EXAMPLE_LAYER.read_text(), cache_dir=cache)
    assert again.path == first.path and os.stat(again.path).st_mtime_ns == stamp
    # Other options: another module.
    tiled = moe_mlir.compile(EXAMPLE_LAYER, cache_dir=cache, gemm_row_tile=2, gemm_col_tile=4)
    assert tiled.path != first.path
    assert len([f for f in os.listdir(cache) if f.endswith(".so")]) == 2
    inputs = layer_inputs(11)
    assert_close(tiled(*inputs), layer_reference(*inputs))


def test_compile_onnx_model_proto(tmp_path, cache_dir):
    # A plain ONNX graph (MatMul + Relu) exported by torch, passed as a
    # ModelProto.
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU()).eval()
    x = torch.randn(3, 16)
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamic_axes={"x": {0: "n"}})
    proto = onnx.load(str(path))
    module = moe_mlir.compile(proto, cache_dir=cache_dir)
    assert module.signature.input_names == ["x"]
    for n in (1, 5):
        x = torch.randn(n, 16)
        with torch.no_grad():
            expected = model(x)
        assert_close(module(x.numpy()), expected.numpy())
    # The same model from its path: same content, same cached module.
    assert moe_mlir.compile(path, cache_dir=cache_dir).path == module.path


def test_compile_errors(tmp_path):
    with pytest.raises(moe_mlir.NotFoundError):
        moe_mlir.compile(tmp_path / "missing.onnx")
    with pytest.raises(moe_mlir.CompileError, match="moe-compile failed"):
        moe_mlir.compile("func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> { return %y : tensor<4xf32> }")
    with pytest.raises(TypeError, match="unknown option 'tile'"):
        moe_mlir.compile(EXAMPLE_LAYER, tile=3)
    with pytest.raises(moe_mlir.InvalidArgumentError, match="target"):
        moe_mlir.compile(EXAMPLE_LAYER, target="tpu")
    with pytest.raises(moe_mlir.InvalidArgumentError):
        moe_mlir.compile(42)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage")
    with pytest.raises(moe_mlir.CompileError):
        moe_mlir.compile(corrupt)


def test_opt_pipeline():
    text = EXAMPLE_LAYER.read_text()
    decomposed = moe_mlir.opt(text, "moe-decompose-layer")
    for stage in ("moe.route", "moe.dispatch", "moe.expert", "moe.combine"):
        assert stage in decomposed
    assert "moe.layer" not in decomposed
    # Several passes, and an explicitly anchored pipeline.
    assert "moe.route" in moe_mlir.opt(text, "moe-decompose-layer,canonicalize")
    assert "moe.route" in moe_mlir.opt(
        text, "builtin.module(func.func(moe-decompose-layer))")
    with pytest.raises(moe_mlir.CompileError, match="no-such-pass"):
        moe_mlir.opt(text, "no-such-pass")
    with pytest.raises(moe_mlir.CompileError):
        moe_mlir.opt("this is not MLIR", "canonicalize")


def test_opt_result_compiles():
    text = moe_mlir.opt(EXAMPLE_LAYER.read_text(), "moe-decompose-layer")
    module = moe_mlir.compile(text)
    inputs = layer_inputs(4)
    assert_close(module(*inputs), layer_reference(*inputs))
