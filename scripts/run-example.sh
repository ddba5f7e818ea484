#!/usr/bin/env bash
# Builds moe-mlir and runs the main job on the bundled example: the
# ONNX Runtime test_moe_cpu.py layer (H=64, I=256, E=4, top-2, interleaved
# SwiGLU) is parsed, verified and decomposed into route/dispatch/expert/
# combine. (Compiling it to a .so and running it comes with the CPU backend.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"

example="$root/examples/ort_swiglu_layer.mlir"
echo "== moe-opt --moe-decompose-layer $example"
"$root/build/bin/moe-opt" --moe-decompose-layer "$example"
