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

# ONNX Runtime 1.30 (onnxruntime-node, which ships the CPU library) for the
# tests that compare imported models with it. --ignore-scripts skips the
# postinstall, which fetches CUDA bits and fails offline.
ort="$root/build/ort"
if [[ ! -f "$ort/node_modules/onnxruntime-node/package.json" ]]; then
  mkdir -p "$ort"
  (cd "$ort" && ONNXRUNTIME_NODE_INSTALL=skip \
     npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
       onnxruntime-node@1.30.0)
fi
