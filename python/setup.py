"""Installs the moe_mlir package from a moe-mlir build tree.

    scripts/build.sh                                 # or any CMake build
    pip install --no-build-isolation python/         # Debian's setuptools and pybind11

The extension (src/RuntimeModule.cpp) is compiled here against the build's
libmoe_runtime.so, and the installed package carries copies of the runtime
libraries (moe_mlir/lib) and of the tools it drives (moe_mlir/bin:
moe-compile, moe-opt, moe-run, moe-import-onnx), so that it works without
the build tree. The build tree is $MOE_MLIR_BUILD_DIR, default ../build.
A build without the compiler (-DMOE_BUILD_COMPILER=OFF) installs a package
that runs modules but finds the compiler tools through $MOE_MLIR_TOOLS_DIR
or PATH.
"""

import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

import pybind11

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.abspath(os.environ.get("MOE_MLIR_BUILD_DIR", os.path.join(ROOT, "build")))
LIBRARIES = ["libmoe_runtime.so", "libmoe_runtime_mpi.so"]
TOOLS = ["moe-compile", "moe-opt", "moe-run", "moe-import-onnx"]

if not os.path.isfile(os.path.join(BUILD, "lib", "libmoe_runtime.so")):
    raise SystemExit(
        f"moe_mlir: no libmoe_runtime.so in {BUILD}/lib: build moe-mlir first "
        "(scripts/build.sh) or set MOE_MLIR_BUILD_DIR to its build tree")


class BuildPyWithBinaries(build_py):
    """Copies the runtime libraries and the tools into the package."""

    def run(self):
        super().run()
        package = os.path.join(self.build_lib, "moe_mlir")
        for sub, names in (("lib", LIBRARIES), ("bin", TOOLS)):
            os.makedirs(os.path.join(package, sub), exist_ok=True)
            for name in names:
                source = os.path.join(BUILD, sub, name)
                if os.path.isfile(source):
                    shutil.copy2(source, os.path.join(package, sub, name))
                else:
                    print(f"moe_mlir: {source} not built; not packaged")


runtime = Extension(
    "moe_mlir._runtime",
    sources=[os.path.relpath(os.path.join(HERE, "src", "RuntimeModule.cpp"))],
    include_dirs=[os.path.join(ROOT, "runtime", "include"), pybind11.get_include()],
    library_dirs=[os.path.join(BUILD, "lib")],
    libraries=["moe_runtime", "dl"],
    # The copy of libmoe_runtime.so installed beside the extension.
    runtime_library_dirs=["$ORIGIN/lib"],
    extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden"],
    language="c++",
)

setup(
    name="moe_mlir",
    version="0.1.0",
    description="Python front end of moe-mlir, an MLIR compiler for Mixture-of-Experts layers",
    packages=["moe_mlir"],
    package_dir={"moe_mlir": os.path.relpath(os.path.join(HERE, "moe_mlir"))},
    ext_modules=[runtime],
    cmdclass={"build_py": BuildPyWithBinaries},
    python_requires=">=3.9",
    zip_safe=False,
)
