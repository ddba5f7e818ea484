#!/usr/bin/env bash
# Installs ONNX Runtime 1.30 (onnxruntime-node, which ships the CPU library)
# into DIR (default build/ort), for the tests that compare imported models
# with it. --ignore-scripts skips the postinstall, which fetches CUDA bits
# and fails offline. Does nothing when it is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ort="${1:-$root/build/ort}"
if [[ ! -f "$ort/node_modules/onnxruntime-node/package.json" ]]; then
  mkdir -p "$ort"
  (cd "$ort" && ONNXRUNTIME_NODE_INSTALL=skip \
     npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
       onnxruntime-node@1.30.0)
fi
