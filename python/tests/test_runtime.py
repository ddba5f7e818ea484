"""load(), Module calls, signature, benchmark() and check() on the example
layer, with numpy and torch inputs, and the errors of bad calls."""

import shutil

import numpy as np
import pytest
import torch

import moe_mlir
from conftest import (E, H, I, assert_close, layer_inputs, layer_reference)


def test_signature(layer):
    sig = layer.signature
    assert sig.name == "moe_layer"
    assert sig.input_names == ["input", "logits", "fc1", "fc1_bias", "fc2", "fc2_bias"]
    assert [s.dtype for s in sig.inputs] == ["f32"] * 6
    # The token count is a symbol, the rest static.
    assert isinstance(sig.inputs[0].shape[0], str) and sig.inputs[0].shape[1] == H
    assert sig.inputs[2].shape == (E, 2 * I, H)
    assert len(sig.outputs) == 1 and sig.outputs[0].shape[1] == H
    assert str(sig).startswith("moe_layer(input: f32[")
    assert layer.target == "cpu"
    assert layer.functions == ["moe_layer"]
    assert layer.manifest["functions"][0]["name"] == "moe_layer"


@pytest.mark.parametrize("tokens", [1, 7, 64])
def test_numpy_matches_float64_reference(layer, tokens):
    inputs = layer_inputs(tokens, seed=tokens)
    y = layer(*inputs)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert y.shape == (tokens, H)
    assert_close(y, layer_reference(*inputs))


def test_zero_tokens(layer):
    y = layer(*layer_inputs(0))
    assert y.shape == (0, H)


def test_named_and_mixed_arguments(layer):
    inputs = layer_inputs(5)
    expected = layer(*inputs)
    names = layer.signature.input_names
    np.testing.assert_array_equal(layer(**dict(zip(names, inputs))), expected)
    np.testing.assert_array_equal(
        layer(*inputs[:2], **dict(zip(names[2:], inputs[2:]))), expected)


def test_torch_inputs_give_torch_outputs(layer):
    inputs = layer_inputs(9)
    tensors = [torch.from_numpy(a) for a in inputs]
    tensors[0].requires_grad_(True)
    y = layer(*tensors)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert_close(y.numpy(), layer_reference(*inputs))


def test_strided_and_list_inputs(layer):
    inputs = layer_inputs(6)
    expected = layer(*inputs)
    # A transposed view is made contiguous; a Python list takes the
    # manifest's dtype.
    x_t = np.ascontiguousarray(inputs[0].T).T
    assert not x_t.flags.c_contiguous
    np.testing.assert_array_equal(layer(x_t, *inputs[1:]), expected)
    np.testing.assert_array_equal(layer(inputs[0].tolist(), *inputs[1:]), expected)
    t = torch.from_numpy(np.ascontiguousarray(inputs[1].T)).t()
    np.testing.assert_array_equal(layer(inputs[0], t, *inputs[2:]).numpy(), expected)


def test_output_shapes(layer):
    assert layer.output_shapes(*layer_inputs(3)) == [("f32", (3, H))]


def test_wrong_dtype(layer):
    inputs = layer_inputs(4)
    inputs[1] = inputs[1].astype(np.float64)
    with pytest.raises(moe_mlir.InvalidArgumentError, match="input 1 'logits'.*f64.*f32"):
        layer(*inputs)
    inputs[1] = inputs[1].astype(np.uint32)
    with pytest.raises(moe_mlir.InvalidArgumentError, match="not a moe dtype"):
        layer(*inputs)


def test_wrong_shape(layer):
    inputs = layer_inputs(4)
    inputs[1] = layer_inputs(5)[1]
    # The token count symbol is bound by input 0 and contradicted by 1.
    with pytest.raises(moe_mlir.InvalidArgumentError, match="input 1 'logits'"):
        layer(*inputs)
    inputs = layer_inputs(4)
    inputs[2] = inputs[2][:3]
    with pytest.raises(ValueError, match="input 2 'fc1'"):
        layer(*inputs)


def test_wrong_rank(layer):
    inputs = layer_inputs(4)
    inputs[0] = inputs[0][None]
    with pytest.raises(moe_mlir.InvalidArgumentError, match="input 0 'input'.*rank"):
        layer(*inputs)


def test_missing_extra_and_unknown_inputs(layer):
    inputs = layer_inputs(2)
    with pytest.raises(moe_mlir.InvalidArgumentError, match="missing input 5 'fc2_bias'"):
        layer(*inputs[:5])
    with pytest.raises(moe_mlir.InvalidArgumentError, match="takes 6 inputs"):
        layer(*inputs, inputs[0])
    with pytest.raises(moe_mlir.InvalidArgumentError, match="no input 'bias'"):
        layer(*inputs[:5], bias=inputs[5])
    with pytest.raises(moe_mlir.InvalidArgumentError, match="both positionally and by name"):
        layer(*inputs, fc1=inputs[2])
    with pytest.raises(moe_mlir.InvalidArgumentError, match="expected a numpy array"):
        layer(object(), *inputs[1:])


def test_missing_and_corrupt_modules(layer, tmp_path):
    with pytest.raises(moe_mlir.NotFoundError):
        moe_mlir.load(tmp_path / "nothing.so")
    text = tmp_path / "text.so"
    text.write_text("not a shared object\n")
    with pytest.raises(moe_mlir.InvalidModuleError):
        moe_mlir.load(text)
    truncated = tmp_path / "truncated.so"
    data = open(layer.path, "rb").read()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(moe_mlir.InvalidModuleError):
        moe_mlir.load(truncated)
    # A valid shared object that is not a module (no manifest).
    with pytest.raises(moe_mlir.InvalidModuleError, match="moe_module_manifest"):
        moe_mlir.load(moe_mlir._runtime.runtime_library_path())
    with pytest.raises(moe_mlir.NotFoundError, match="moe_layer"):
        layer.function("no_such_function")


def test_module_outlives_its_file(layer, tmp_path):
    copy = tmp_path / "copy.so"
    shutil.copy(layer.path, copy)
    module = moe_mlir.load(copy)
    copy.unlink()
    inputs = layer_inputs(3)
    np.testing.assert_array_equal(module(*inputs), layer(*inputs))


def test_benchmark(layer):
    inputs = layer_inputs(16)
    result = layer.benchmark(*inputs, iterations=5, warmup=1)
    assert len(result.times_ms) == 5 and (result.times_ms > 0).all()
    assert result.clock == "steady_clock" and result.device == "host CPU"
    assert_close(result.outputs[0], layer_reference(*inputs))
    with pytest.raises(moe_mlir.InvalidArgumentError):
        layer.benchmark(*inputs, iterations=0)


def test_check_against_reference(layer):
    inputs = layer_inputs(12)
    result = layer.check(*inputs)
    assert result.passed and bool(result)
    assert result.max_rel_error <= result.tolerance == 1e-5
    # An impossible tolerance fails (the check compares, it does not pass
    # everything).
    strict = layer.check(*inputs, tolerance=0.0)
    assert not strict.passed and strict.max_abs_error > 0
    bad = layer_inputs(12)
    bad[0] = bad[0].astype(np.float64)
    with pytest.raises(moe_mlir.InvalidArgumentError, match="input 0"):
        layer.check(*bad)


def test_threads():
    before = moe_mlir.get_num_threads()
    moe_mlir.set_num_threads(1)
    assert moe_mlir.get_num_threads() == 1
    moe_mlir.set_num_threads(before)
    assert moe_mlir.get_num_threads() == before


def test_torch_dtype_errors(layer):
    tensors = [torch.from_numpy(a) for a in layer_inputs(3)]
    tensors[2] = tensors[2].double()
    with pytest.raises(moe_mlir.InvalidArgumentError, match="input 2 'fc1'.*f64"):
        layer(*tensors)
    tensors[2] = torch.zeros(4, 512, 64, dtype=torch.complex64)
    with pytest.raises(moe_mlir.InvalidArgumentError, match="torch dtype torch.complex64"):
        layer(*tensors)


@pytest.fixture(scope="module")
def bf16_layer(cache_dir):
    # The example layer with every tensor in bf16.
    from conftest import EXAMPLE_LAYER
    text = EXAMPLE_LAYER.read_text().replace("xf32>", "xbf16>")
    return moe_mlir.compile(text, cache_dir=cache_dir)


def test_bf16_numpy_bits_and_torch(bf16_layer):
    assert [s.dtype for s in bf16_layer.signature.inputs] == ["bf16"] * 6
    tensors = [torch.from_numpy(a).to(torch.bfloat16) for a in layer_inputs(6)]
    y = bf16_layer(*tensors)
    assert y.dtype == torch.bfloat16 and y.shape == (6, H)
    # numpy callers pass and get the bf16 bit patterns as uint16.
    bits = [t.view(torch.int16).numpy().view(np.uint16) for t in tensors]
    y_bits = bf16_layer(*bits)
    assert y_bits.dtype == np.uint16
    np.testing.assert_array_equal(y_bits.view(np.int16), y.view(torch.int16).numpy())
    # Against the float64 reference of the bf16-rounded inputs.
    rounded = [t.float().numpy() for t in tensors]
    assert_close(y.float().numpy(), layer_reference(*rounded), rtol=2e-2)
    for args in (tensors, bits):
        result = bf16_layer.check(*args)
        assert result.passed and result.tolerance == 2e-2
    # Float32 data is not bf16.
    with pytest.raises(moe_mlir.InvalidArgumentError, match="f32 but the function expects bf16"):
        bf16_layer(*layer_inputs(6))


class _DLPackOnly:
    """Exposes an array through DLPack alone (no buffer protocol)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, stream=None):
        return self._array.__dlpack__()

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_dlpack_inputs(layer):
    inputs = layer_inputs(4)
    wrapped = [_DLPackOnly(a) for a in inputs]
    np.testing.assert_array_equal(layer(*wrapped), layer(*inputs))


def test_concurrent_calls(layer):
    # The GIL is released while a module runs: calls from several threads
    # overlap and must each get their own, correct results.
    import threading
    cases = [layer_inputs(t, seed=t) for t in (1, 3, 8, 17)]
    expected = [layer(*c) for c in cases]
    failures = []

    def run(i):
        for _ in range(20):
            if not np.array_equal(layer(*cases[i]), expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
