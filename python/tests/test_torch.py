"""moe_mlir.torch.compile on Hugging Face-style MoE blocks (test/lib/hf_moe.py),
compared with torch eager."""

import numpy as np
import pytest
import torch

import hf_moe
import moe_mlir
import moe_mlir.torch
from conftest import assert_close


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_moe_block_matches_eager(family, cache_dir, tmp_path):
    cfg = hf_moe.config(family)
    torch.manual_seed(0)
    block = hf_moe.make_moe(cfg, 0).eval()
    example = torch.randn(1, 4, cfg["hidden"])
    onnx_path = tmp_path / "block.onnx"
    compiled = moe_mlir.torch.compile(block, (example,), cache_dir=cache_dir,
                                      keep_onnx=onnx_path)
    assert onnx_path.is_file() and compiled.onnx_path == str(onnx_path)
    # dynamic=True: batch and sequence are symbols.
    shape = compiled.signature.inputs[0].shape
    assert isinstance(shape[0], str) and isinstance(shape[1], str)
    for batch, seq in [(1, 4), (2, 9), (1, 1), (3, 16)]:
        x = torch.randn(batch, seq, cfg["hidden"])
        with torch.no_grad():
            expected = block(x)
        y = compiled(x)
        assert isinstance(y, torch.Tensor) and y.shape == expected.shape
        assert_close(y.numpy(), expected.numpy(), rtol=1e-5)


def test_static_export_and_multiple_outputs(cache_dir):
    class TwoOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(8, 8)

        def forward(self, x, y):
            h = self.linear(x)
            return torch.relu(h) + y, h.sum(dim=-1)

    model = TwoOutputs().eval()
    x, y = torch.randn(3, 8), torch.randn(3, 8)
    compiled = moe_mlir.torch.compile(model, (x, y), dynamic=False, cache_dir=cache_dir,
                                      input_names=["x", "y"], output_names=["a", "b"])
    assert compiled.signature.inputs[0].shape == (3, 8)
    a, b = compiled(x, y)
    with torch.no_grad():
        ea, eb = model(x, y)
    assert_close(a.numpy(), ea.numpy())
    assert_close(b.numpy(), eb.numpy())
    with pytest.raises(moe_mlir.InvalidArgumentError, match="dimension 0"):
        compiled(torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(moe_mlir.InvalidArgumentError, match="takes 2 inputs"):
        compiled(x)


def test_bad_arguments():
    with pytest.raises(moe_mlir.InvalidArgumentError, match="nn.Module"):
        moe_mlir.torch.compile(lambda x: x, (torch.randn(2),))
    with pytest.raises(moe_mlir.InvalidArgumentError, match="torch tensors"):
        moe_mlir.torch.compile(torch.nn.ReLU(), (np.zeros(2),))


def test_module_zero_copy_inputs(cache_dir):
    # Module calls read torch CPU tensors and numpy arrays in place: an
    # identity-like model sees writes made to the input after export.
    model = torch.nn.Sequential(torch.nn.ReLU()).eval()
    x = torch.rand(2, 5)
    compiled = moe_mlir.torch.compile(model, (x,), cache_dir=cache_dir)
    x.add_(1.0)
    assert torch.equal(compiled(x), torch.relu(x))
    out = compiled.module(x.numpy())
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, torch.relu(x).numpy())
