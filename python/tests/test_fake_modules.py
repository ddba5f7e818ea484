"""The runtime's hand-written test modules (runtime/test/fake_*.c, built into
the build tree's lib/): several functions, symbolic output shapes, bf16, a
failing entry, a wrong result for check(), and cuda modules without a GPU
(no driver: a clear error; the fake driver: results)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import moe_mlir

try:
    from moe_mlir import _build_config
    LIB = _build_config.LIBRARY_DIR
except ImportError:  # an installed package: no build tree
    LIB = None


def fake(name):
    path = os.path.join(LIB or "", f"libmoe_fake_{name}.so")
    if not LIB or not os.path.isfile(path):
        pytest.skip(f"{path} not built")
    return path


def test_functions_and_symbolic_shapes():
    module = moe_mlir.load(fake("module"))
    assert module.functions[:3] == ["add", "scale_rows", "flatten"]
    assert module.name == "add"
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(module(a, a), a + a)
    flatten = module.function("flatten")
    assert flatten.signature.outputs[0].shape == ("B*S", 4)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    y = flatten(x, np.zeros(4, np.int32))
    assert y.shape == (6, 4)


def test_bf16_bits():
    widen = moe_mlir.load(fake("module"), "widen")
    values = np.array([1.0, -2.5, 0.15625], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    y, same = widen(bits)
    np.testing.assert_array_equal(y, values)
    assert same.dtype == np.uint16
    np.testing.assert_array_equal(same, bits)


def test_failing_entry_is_an_exception():
    fail = moe_mlir.load(fake("module"), "fail")
    with pytest.raises(moe_mlir.InternalError):
        fail(np.zeros(1, np.float32))


def test_check_catches_a_wrong_layer():
    module = moe_mlir.load(fake("module"))
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(s).astype(np.float32)
            for s in [(5, 4), (5, 2), (2, 3, 4), (2, 4, 3)]]
    assert module.function("layer").check(*args).passed
    wrong = module.function("layer_wrong").check(*args)
    assert not wrong.passed and "FAIL" in wrong.report
    with pytest.raises(moe_mlir.InvalidArgumentError, match="no reference"):
        module.check(args[0][:, :3], args[0][:, :3])


@pytest.mark.parametrize("variant", ["no_manifest", "bad_json", "no_entry", "bad_format",
                                     "null_manifest", "unbound_symbol"])
def test_broken_modules(variant):
    with pytest.raises(moe_mlir.InvalidModuleError):
        moe_mlir.load(fake(variant))


def test_cuda_module_without_driver():
    # In a process of its own: the driver is opened once per process.
    code = (
        "import numpy as np, moe_mlir\n"
        f"m = moe_mlir.load({fake('cuda_module')!r})\n"
        "assert m.target == 'cuda'\n"
        "try:\n"
        "    m(np.ones(4, np.float32))\n"
        "except moe_mlir.UnavailableError as e:\n"
        "    print('unavailable:', e)\n")
    env = dict(os.environ, MOE_CUDA_DRIVER="/nonexistent/libcuda.so.1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "unavailable:" in out and "no CUDA driver" in out


def test_cuda_module_on_the_fake_driver():
    code = (
        "import numpy as np, moe_mlir\n"
        f"m = moe_mlir.load({fake('cuda_module')!r})\n"
        "x = np.arange(8, dtype=np.float32)\n"
        "np.testing.assert_array_equal(m(x), x)\n"
        "r = m.benchmark(x, iterations=3)\n"
        "assert r.clock == 'cuda_events', r\n"
        "print('ok')\n")
    env = dict(os.environ, MOE_CUDA_DRIVER=fake("cuda_driver"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
