"""Exceptions of the moe_mlir package.

Every failure of the runtime surfaces as a subclass of `Error` carrying the
runtime's message (moe_last_error()), chosen by the C API's status. The
classes also derive from the built-in exception a Python caller would expect
(a bad argument is a ValueError, a missing file a FileNotFoundError), so
that generic handlers keep working.
"""


class Error(RuntimeError):
    """Base class of every moe_mlir error."""


class InvalidArgumentError(Error, ValueError):
    """A bad call: wrong dtype, shape, rank or number of inputs, ..."""


class NotFoundError(Error, FileNotFoundError):
    """No such file, function or tool."""


class IOError_(Error, OSError):
    """A file exists but cannot be read."""


class InvalidModuleError(Error):
    """Not a compiled module, a corrupt one, or a bad manifest."""


class UnavailableError(Error):
    """The module cannot run here: no CUDA driver, no communicator, ..."""


class InternalError(Error):
    """The module failed while running, or memory ran out."""


class DeviceError(Error):
    """The CUDA driver reported an error."""


class CompileError(Error):
    """A compiler tool (moe-compile, moe-opt, moe-import-onnx) failed; the
    message is its diagnostics."""


# In the order of moe_status (moe/runtime.h).
_BY_STATUS = {
    1: InvalidArgumentError,
    2: NotFoundError,
    3: IOError_,
    4: InvalidModuleError,
    5: UnavailableError,
    6: InternalError,
    7: DeviceError,
}


def error_class(status, name=None):
    """The exception class of a moe_status value (used by the extension)."""
    return _BY_STATUS.get(status, Error)
