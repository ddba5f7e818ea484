"""Finding and running the compiler tools (moe-compile, moe-opt, moe-run,
moe-import-onnx).

The tools are looked up in, in order: $MOE_MLIR_TOOLS_DIR, the package's own
bin/ (an installed package carries copies), the build tree the package was
built in (_build_config.TOOLS_DIR), and PATH.
"""

import os
import shutil
import subprocess

from .errors import CompileError, NotFoundError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _candidate_dirs():
    env = os.environ.get("MOE_MLIR_TOOLS_DIR")
    if env:
        yield env
    yield os.path.join(_PACKAGE_DIR, "bin")
    try:
        from . import _build_config
        yield _build_config.TOOLS_DIR
    except ImportError:
        pass


def find_tool(name):
    """The path of tool `name`; NotFoundError naming where it looked."""
    searched = []
    for directory in _candidate_dirs():
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        searched.append(directory)
    path = shutil.which(name)
    if path:
        return path
    raise NotFoundError(
        f"cannot find {name} (looked in {', '.join(searched + ['PATH'])}; "
        "build the compiler or set MOE_MLIR_TOOLS_DIR)")


def run_tool(name, args, input_text=None):
    """Runs tool `name` with `args`; returns its stdout, raises CompileError
    with its diagnostics when it fails."""
    path = find_tool(name)
    result = subprocess.run([path] + [str(a) for a in args], input=input_text,
                            capture_output=True, text=True)
    if result.returncode != 0:
        message = result.stderr.strip() or result.stdout.strip()
        raise CompileError(f"{name} failed (exit {result.returncode}):\n{message}")
    return result.stdout


def tool_identity(name):
    """A string that changes whenever the tool is rebuilt: the compile
    cache's key includes it so that a new compiler never reuses old
    modules."""
    path = find_tool(name)
    st = os.stat(path)
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"
