# -*- Python -*-
import os
import shlex

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "MOE"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "golden", "e2e", "Inputs", "lib"]

config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moe_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%moe_src_root", config.moe_src_root))
config.substitutions.append(("%moe_obj_root", config.moe_obj_root))
# Debian's python3 with numpy and onnx (a pyenv python3 on PATH may lack them).
config.substitutions.append(("%python", "/usr/bin/python3"))
# Hand-written module following docs/Runtime.md (runtime/test/fake_module.c).
config.substitutions.append(
    ("%fake_module", config.moe_obj_root + "/lib/libmoe_fake_module.so"))
# Its cuda counterpart (runtime/test/fake_cuda_module.c) and the fake CUDA
# driver it runs on without a GPU (MOE_CUDA_DRIVER=%fake_cuda_driver).
config.substitutions.append(
    ("%fake_cuda_module", config.moe_obj_root + "/lib/libmoe_fake_cuda_module.so"))
config.substitutions.append(
    ("%fake_cuda_driver", config.moe_obj_root + "/lib/libmoe_fake_cuda_driver.so"))
# The CUDA driver that runs kernels on the CPU (tools/gpu-executor).
config.substitutions.append(
    ("%gpu_executor", config.moe_obj_root + "/lib/libmoe_gpu_executor.so"))

# ONNX Runtime as the peer that imported models are checked against
# (onnxruntime-node, installed into build/ort by scripts/build.sh).
config.environment["ORT_NODE_MODULES"] = os.path.join(
    config.moe_obj_root, "ort", "node_modules")
config.environment["MOE_TOOLS_DIR"] = config.moe_tools_dir
config.substitutions.append(
    ("%onnx_vs_ort", "/usr/bin/python3 " + config.moe_src_root + "/test/lib/onnx_vs_ort.py"))
config.substitutions.append(
    ("%ort_run", "node " + config.moe_src_root + "/test/lib/ort_run.mjs"))

# An expert-parallel fake module (runtime/test/fake_ep_module.c) and, where
# Open MPI's mpirun and libmoe_runtime_mpi.so exist, feature "mpi" with
# %mpirun (root and more ranks than cores allowed, as in containers and CI).
config.substitutions.append(
    ("%fake_ep_module", config.moe_obj_root + "/lib/libmoe_fake_ep_module.so"))
# Its cuda twin and, with MPI, the fake NCCL over MPI (runtime/test/
# fake_nccl.c) that the NCCL communicator runs on without a GPU.
config.substitutions.append(
    ("%fake_ep_cuda_module",
     config.moe_obj_root + "/lib/libmoe_fake_ep_cuda_module.so"))
config.substitutions.append(
    ("%fake_nccl", config.moe_obj_root + "/lib/libmoe_fake_nccl.so"))
import shutil as _shutil
if _shutil.which("mpirun") and os.path.exists(
        os.path.join(config.moe_obj_root, "lib", "libmoe_runtime_mpi.so")):
    config.available_features.add("mpi")
    mpirun = "mpirun --oversubscribe"
    if config.moe_sanitizers:
        # Open MPI's own leaks are suppressed by stack (scripts/lsan.supp);
        # its libraries have no frame pointers, so the ranks unwind the slow
        # way, which only these small runs can afford.
        mpirun += " -x " + shlex.quote("LSAN_OPTIONS=%s:fast_unwind_on_malloc=0"
                                       % os.environ.get("LSAN_OPTIONS", ""))
    config.substitutions.append(("%mpirun", mpirun))
    config.environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    config.environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"

# The fuzz tests (fuzz.py, graph_fuzz.py) run every damaged model under the
# sanitizers, whose checks catch what a plain build's signals miss, and a
# third of them in a plain build (the importer's start-up is most of their
# time: ~200 s of the suite for all of them).
config.environment["MOE_FUZZ_SHARE"] = "1" if config.moe_sanitizers else "3"

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.moe_tools_dir, config.llvm_tools_dir]
# "not" (LLVM's exit-code inverter) for `RUN: not moe-run ...`: the default
# substitutions only cover "| not".
tools = ["moe-opt", "moe-compile", "moe-import-onnx", "mlir-opt", "mlir-tblgen", "moe-run", "not", "llvm-nm", "llvm-readelf", "split-file"]
llvm_config.add_tool_substitutions(tools, tool_dirs)

# ptxas (CUDA toolkit) checks the PTX of the cuda target: on PATH, in
# $CUDA_HOME/bin or in /usr/local/cuda/bin. Tests needing it say
# `REQUIRES: ptxas` and are reported UNSUPPORTED where it is absent.
import shutil
_ptxas = shutil.which("ptxas") or next(
    (p for p in [os.path.join(os.environ.get("CUDA_HOME", "/nonexistent"), "bin", "ptxas"),
                 "/usr/local/cuda/bin/ptxas"] if os.access(p, os.X_OK)), None)
if _ptxas:
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", _ptxas))
