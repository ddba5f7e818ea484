#!/usr/bin/env bash
# Installs everything moe-mlir needs to build and test from Debian 12's
# packages (LLVM/MLIR 22 come from bookworm-security). Idempotent: when every
# package is already there it touches nothing and needs no network.
set -euo pipefail

packages=(
  # toolchain
  cmake ninja-build g++ git
  # LLVM/MLIR 22: libraries, mlir-tblgen/mlir-opt, lit/FileCheck/not, NVPTX llc
  libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools clang-22 lld-22
  # ONNX import: the onnx protobuf classes and protobuf
  libonnx-dev libprotobuf-dev
  # the runtime's manifest reader (header-only JSON, with a CMake config)
  nlohmann-json3-dev
  # unit tests
  libgtest-dev libgmock-dev
  # expert-parallel runs and their tests: mpirun, libmpi (libmoe_runtime_mpi.so)
  openmpi-bin libopenmpi-dev
  # test-model generation and numerics
  python3 python3-numpy python3-onnx python3-torch
  # the moe_mlir Python package (python/): pybind11 and Python's headers for
  # its extension, setuptools for pip install, pytest for its tests, mpi4py
  # for expert-parallel runs from Python
  python3-dev pybind11-dev python3-pybind11 python3-setuptools python3-pip
  python3-pytest python3-mpi4py
  # a real BLAS for torch and numpy (Debian's default is the reference BLAS:
  # torch's f32 GEMM ran at 5 GFLOP/s, a useless benchmark peer)
  libopenblas0-pthread
)
# ONNX Runtime (the peer imported models are checked against) runs under
# node; scripts/build.sh installs onnxruntime-node with npm. A node from
# elsewhere (e.g. NodeSource's nodejs, which bundles npm) is fine.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
