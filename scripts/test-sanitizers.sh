#!/usr/bin/env bash
# Builds moe-mlir with AddressSanitizer and UndefinedBehaviorSanitizer into
# build-asan/ (-DMOE_ENABLE_SANITIZERS=ON) and runs, against the
# instrumented tools and runtime: the unit tests, the runtime tests (those
# that need neither MPI nor a GPU) and the lit suite (the importer's tests
# and fuzzing, the tools' tests, the expert-parallel ones under mpirun
# included; not the whole-model suites). Extra arguments go to lit, e.g.
# `scripts/test-sanitizers.sh --filter fuzz`.
# CMAKE_BUILD_PARALLEL_LEVEL limits the build's jobs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-asan"
"$root/scripts/install-deps.sh"

start=$SECONDS
# -O1, as ASan recommends: a third less compile time than Release's -O3,
# which dominates this step, and stacks that still read well.
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -G Ninja -S "$root" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DMOE_ENABLE_SANITIZERS=ON
fi
cmake --build "$build"
echo "test-sanitizers: build took $((SECONDS - start)) s"

# The lit tests look for ONNX Runtime in <build>/ort: share build/ort when
# scripts/build.sh has installed it there.
if [[ -d "$root/build/ort" && ! -e "$build/ort" ]]; then
  ln -s "$root/build/ort" "$build/ort"
fi
"$root/scripts/install-ort.sh" "$build/ort"

# Every finding aborts (a signal, not exit code 1, which the fuzz tests and
# `not` would take for a clean error). The tools link the sanitizer runtimes
# themselves (GCC links them dynamically), so nothing is preloaded: python
# and node, which the tests also run, stay as they are.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="abort_on_error=1:halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0"
export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-22/bin/llvm-symbolizer

start=$SECONDS
# The unit and runtime tests (everything ctest runs but lit, below, and the
# labelled suites: the end-to-end cases compile a module each, several
# hundred in all, which CI's time cannot afford instrumented; the importer
# and compiler paths they take are the lit tests' too).
CTEST_PARALLEL_LEVEL="${CTEST_PARALLEL_LEVEL:-$(nproc)}" \
  ctest --test-dir "$build" --output-on-failure -E '^(lit|gpu-executor(-direct)?\..*)$' \
  -LE '^(mpi|gpu|e2e|e2e-unfused|e2e-packed|e2e-int8|cuda-emulated)$'
# The whole-model suites (test/Import/ONNX/hf-models, every family exported
# and compiled twice, and test/tools/moe-compile/cuda-models) take half an
# hour uninstrumented on two cores and would triple under the sanitizers;
# they exercise the same importer and pipeline code as the op-level and
# fuzz tests kept here, and run in the normal build's suite.
/usr/lib/llvm-22/bin/lit -sv "$build/test" \
  --filter-out 'Import/ONNX/hf-models/|tools/moe-compile/cuda-models/' "$@"
echo "test-sanitizers: tests took $((SECONDS - start)) s"
