#!/usr/bin/env bash
# Builds moe-mlir and runs every test: the lit suite (round-trips, verifier
# diagnostics, passes) and the GoogleTest unit tests (reference evaluator,
# .npy I/O, ONNX Runtime golden).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"
# As many tests at once as there are cores (the MPI cases reserve one slot
# per rank): on two cores a third less time than one at a time, which
# leaves most cores idle while a test compiles or starts Python.
export CTEST_PARALLEL_LEVEL="${CTEST_PARALLEL_LEVEL:-$(nproc)}"
ctest --test-dir "$root/build" --output-on-failure "$@"
