#!/usr/bin/env bash
# GPU benchmark: moe-mlir's CUDA modules against the PyTorch eager
# per-expert loop, torch._grouped_mm and a Triton fused-MoE kernel, bf16,
# full-size Mixtral-8x7B, DeepSeek-V3 (routed experts), Qwen3-30B-A3B and
# OLMoE layers at T = 1, 16, 64, 512, 4096. Split in two machines:
#
#   benchmarks/gpu/run.sh prepare [options]     on the compiler machine
#       layer.mlir per model, `moe-compile --target=cuda --cuda-arch=ARCH`,
#       moe-run and libmoe_runtime.so copied next to the modules: a bundle
#       of a few MB (no weights) to carry to the GPU machine.
#         --arch=sm_90      sm_80, sm_89, sm_90            (default sm_90)
#         --bin=DIR         moe-mlir's build/bin            (default build/bin)
#         --bundle=DIR      (default build/gpu-bench/bundle)
#         --act=bf16|f32    the layers' activation type    (default bf16)
#         --models=a,b      (default: all four)
#
#   benchmarks/gpu/run.sh run [options]         on the GPU machine
#       generates the weights there from the fixed seeds (bf16 .npy, about
#       27 GB for all four models: DeepSeek-V3's 256 experts are 22.5 GB;
#       kept between runs), checks every side against a float64 reference
#       (2e-2), times them, writes RESULTS_DIR/results.jsonl and a report
#       (RESULTS_DIR/RESULTS-gpu.md). Needs python3 with numpy and torch
#       (2.x with CUDA; Triton for the Triton side); no LLVM/MLIR.
#         --bundle=DIR      what prepare wrote    (default build/gpu-bench/bundle)
#         --data=DIR        weights and inputs    (default build/gpu-bench/data)
#         --results=DIR     (default build/gpu-bench/results)
#         --models=a,b      (default: all four; one at a time keeps each
#                           command short: mixtral-8x7b, deepseek-v3,
#                           qwen3-30b-a3b, olmoe-1b-7b)
#         --tokens=1,16     (default 1,16,64,512,4096)
#         --runs=N          timed runs per (model, T, side) (default 50;
#                           a quarter for T >= 1024)
#         --sides=a,b       subset of ours,eager,grouped,triton
#         --fresh           empty RESULTS_DIR first (default: append; a
#                           rerun of a (model, T, side) replaces its row)
#
#   benchmarks/gpu/run.sh report [--results=DIR] [--out=FILE]
#       the "GPU (H100), bf16" section of benchmarks/RESULTS.md (default
#       --out) from RESULTS_DIR.
#
#   benchmarks/gpu/run.sh smoke                  here, no GPU
#       the whole path at tiny shapes on the CPU: modules compiled for the
#       CPU, torch on the CPU (grouped_mm emulated where torch lacks it,
#       Triton skipped), report to build/gpu-bench/smoke/RESULTS-smoke.md.
#
# Environment: PYTHON (default /usr/bin/python3 when it has torch, else
# python3).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/benchmarks/gpu"
work="$root/build/gpu-bench"
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    PYTHON=/usr/bin/python3
  fi
fi

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
[[ $# -ge 1 ]] || { usage; exit 2; }
step="$1"; shift

arch=sm_90; bin="$root/build/bin"; bundle="$work/bundle"; act=bf16
data="$work/data"; results="$work/results"; models=""; tokens=""
runs=50; sides=""; fresh=0; out="$root/benchmarks/RESULTS.md"
for arg in "$@"; do
  case "$arg" in
    --arch=*) arch="${arg#*=}" ;;
    --bin=*) bin="${arg#*=}" ;;
    --bundle=*) bundle="${arg#*=}" ;;
    --act=*) act="${arg#*=}" ;;
    --data=*) data="${arg#*=}" ;;
    --results=*) results="${arg#*=}" ;;
    --models=*) models="${arg#*=}" ;;
    --tokens=*) tokens="${arg#*=}" ;;
    --runs=*) runs="${arg#*=}" ;;
    --sides=*) sides="${arg#*=}" ;;
    --out=*) out="${arg#*=}" ;;
    --fresh) fresh=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
opt() { [[ -n "$2" ]] && echo "$1=$2" || true; }

case "$step" in
  prepare)
    for tool in moe-compile moe-run; do
      [[ -x "$bin/$tool" ]] || { echo "run.sh: $bin/$tool missing: build first" >&2; exit 1; }
    done
    # shellcheck disable=SC2046
    "$PYTHON" "$here/bench.py" prepare --bin="$bin" --bundle="$bundle" \
      --arch="$arch" --act="$act" $(opt --models "$models")
    echo "carry $bundle (and the source tree) to the GPU machine, then:"
    echo "  benchmarks/gpu/run.sh run --bundle=<its path there>"
    ;;
  run)
    [[ -f "$bundle/prepared.json" ]] || {
      echo "run.sh: $bundle/prepared.json missing: run 'run.sh prepare' on the compiler machine and carry the bundle" >&2
      exit 1
    }
    command -v nvidia-smi >/dev/null && nvidia-smi || echo "run.sh: nvidia-smi not found"
    [[ $fresh == 1 ]] && rm -rf "$results"
    mkdir -p "$results"
    echo "== weights and inputs in $data (generated once, fixed seeds)"
    # shellcheck disable=SC2046
    "$PYTHON" "$here/bench.py" gen --data="$data" $(opt --models "$models") \
      $(opt --tokens "$tokens")
    status=0
    # shellcheck disable=SC2046
    "$PYTHON" "$here/bench.py" run --bundle="$bundle" --data="$data" \
      --results="$results" --device=cuda --runs="$runs" \
      $(opt --models "$models") $(opt --tokens "$tokens") \
      $(opt --sides "$sides") || status=$?
    "$PYTHON" "$here/report.py" "$results" "$results/RESULTS-gpu.md" || status=1
    echo "run.sh: 'benchmarks/gpu/run.sh report --results=$results' writes benchmarks/RESULTS.md"
    exit $status
    ;;
  report)
    "$PYTHON" "$here/report.py" "$results" "$out"
    ;;
  smoke)
    s="$work/smoke"
    rm -rf "$s"
    "$PYTHON" "$here/bench.py" prepare --smoke --target=cpu --bin="$bin" \
      --bundle="$s/bundle" --act="$act"
    "$PYTHON" "$here/bench.py" gen --smoke --data="$s/data"
    status=0
    "$PYTHON" "$here/bench.py" run --smoke --device=cpu --bundle="$s/bundle" \
      --data="$s/data" --results="$s/results" --runs=5 --warmup=1 || status=$?
    "$PYTHON" "$here/report.py" "$s/results" "$s/RESULTS-smoke.md" \
      --allow-smoke >/dev/null
    echo "smoke: report in $s/RESULTS-smoke.md"
    exit $status
    ;;
  *) usage; exit 2 ;;
esac
