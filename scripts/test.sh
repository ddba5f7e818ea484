#!/usr/bin/env bash
# Builds moe-mlir and runs every test: the lit suite (round-trips, verifier
# diagnostics, passes) and the GoogleTest unit tests (reference evaluator,
# .npy I/O, ONNX Runtime golden).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"
ctest --test-dir "$root/build" --output-on-failure "$@"
