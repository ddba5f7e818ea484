#!/usr/bin/env bash
# Configures and builds moe-mlir into build/ (tools in build/bin).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-deps.sh"

if [[ ! -f "$root/build/build.ninja" ]]; then
  cmake -G Ninja -S "$root" -B "$root/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir
fi
ninja -C "$root/build"

# ONNX Runtime 1.30 for the tests that compare imported models with it.
"$root/scripts/install-ort.sh" "$root/build/ort"
