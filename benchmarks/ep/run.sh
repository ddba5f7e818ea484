#!/usr/bin/env bash
# Expert-parallel overlap benchmark on the CPU: one MoE layer per shape,
# compiled with --expert-parallel=P and --overlap-chunks=C for C in 1
# (serial), 2, 3, 4 and auto, run under `mpirun -np P moe-run --benchmark`,
# passes interleaved; table of T, C, median ms, ratio to C = 1 and the C
# that `auto` picked. The single-rank module (P threads) is timed beside
# them for reference.
#
# Usage: benchmarks/ep/run.sh [options]
#   --quick             few repetitions (checks the scripts); writes
#                       build/bench-ep/RESULTS-ep-quick.md instead of the
#                       EP section of benchmarks/RESULTS.md
#   --runs=N            timed runs per measurement for T < 256 (default 50;
#                       quick 3)                                 env BENCH_RUNS
#   --runs-large=N      timed runs for T >= 256 (default 10; quick 2)
#                                                          env BENCH_RUNS_LARGE
#   --passes=P          passes over every (model, T, C), the order of the
#                       modules rotating; median of the per-pass medians
#                       (default 3; quick 1)                   env BENCH_PASSES
#   --models=a,b        subset of: mixtral-div4 (H=1024, I=3584, E=8, k=2),
#                       e64-k6 (H=1024, I=512, E=64, k=6) (default: both)
#   --tokens=64,256     token counts (default 64,256,1024)
#   --chunks=1,2,auto   overlap settings (default 1,2,3,4,auto; 1 is the
#                       serial baseline the ratios refer to)
#   --np=P              ranks (default 2)
#   --threads=N         cores to use: each rank gets N / P threads, the
#                       single-rank reference N (default 2)
#   --no-single         skip the single-rank reference rows
#   --out=FILE          Markdown report (default: see --quick); a file with
#                       the EP markers gets that block replaced
#   --wait-idle[=SEC]   before measuring, wait (up to SEC, default 1200 s)
#                       until the 1-minute load average is below 0.5
#   -h, --help
#
# Environment: MOE_BIN (default build/bin): moe-compile and moe-run.
# BENCH_EP_DIR (default build/bench-ep): weights (about 0.8 GB),
# modules, logs (results/). MOE_MPIRUN: the launcher (default mpirun on
# PATH); MOE_MPIRUN_ARGS: extra launcher flags. EP_AUTO_REGEX: a regex whose
# first group is the chunk count in `moe-compile --overlap-chunks=auto
# --emit=mlir` output, when the built-in ones (bench_ep.py AUTO_PATTERNS)
# do not match the compiler's attribute.
#
# Needs: build/bin/moe-compile with --expert-parallel and --overlap-chunks,
# build/bin/moe-run with EP support (--comm-timeout), an MPI launcher,
# /usr/bin/python3 with numpy.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/benchmarks/ep"
bin="${MOE_BIN:-$root/build/bin}"
work="${BENCH_EP_DIR:-$root/build/bench-ep}"
py=/usr/bin/python3

quick=0
runs="${BENCH_RUNS:-}"
runs_large="${BENCH_RUNS_LARGE:-}"
passes="${BENCH_PASSES:-}"
models="mixtral-div4,e64-k6"
tokens="64,256,1024"
chunks="1,2,3,4,auto"
np=2
threads=2
single=1
out=""
wait_idle=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --runs=*) runs="${arg#*=}" ;;
    --runs-large=*) runs_large="${arg#*=}" ;;
    --passes=*) passes="${arg#*=}" ;;
    --models=*) models="${arg#*=}" ;;
    --tokens=*) tokens="${arg#*=}" ;;
    --chunks=*) chunks="${arg#*=}" ;;
    --np=*) np="${arg#*=}" ;;
    --threads=*) threads="${arg#*=}" ;;
    --no-single) single=0 ;;
    --out=*) out="${arg#*=}" ;;
    --wait-idle) wait_idle=1200 ;;
    --wait-idle=*) wait_idle="${arg#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $quick == 1 ]]; then
  runs="${runs:-3}"; runs_large="${runs_large:-2}"; passes="${passes:-1}"
  out="${out:-$work/RESULTS-ep-quick.md}"
else
  runs="${runs:-50}"; runs_large="${runs_large:-10}"; passes="${passes:-3}"
  out="${out:-$root/benchmarks/RESULTS.md}"
fi

for tool in moe-compile moe-run; do
  [[ -x "$bin/$tool" ]] || {
    echo "run.sh: $bin/$tool missing: build first (scripts/build.sh)" >&2
    exit 1
  }
done
mpirun="${MOE_MPIRUN:-$(command -v mpirun || command -v mpiexec || true)}"
[[ -n "$mpirun" ]] || { echo "run.sh: no mpirun/mpiexec on PATH (set MOE_MPIRUN)" >&2; exit 1; }
# (The help text is captured first: grep -q closing the pipe early would
# fail the pipeline under pipefail.)
compile_help=$("$bin/moe-compile" --help 2>&1 || true)
if ! grep -q -- '--expert-parallel' <<< "$compile_help"; then
  echo "run.sh: $bin/moe-compile has no --expert-parallel option yet" >&2
  exit 1
fi
mkdir -p "$work"

# --- wait for a quiet machine (as benchmarks/run.sh) -------------------------
load1() { cut -d' ' -f1 /proc/loadavg; }
if [[ $wait_idle -gt 0 ]]; then
  waited=0
  while awk -v l="$(load1)" 'BEGIN { exit !(l > 0.5) }'; do
    if [[ $waited -ge $wait_idle ]]; then
      echo "== load $(load1) still above 0.5 after ${waited}s: measuring anyway"
      break
    fi
    echo "== load average $(cut -d' ' -f1-3 /proc/loadavg): waiting 60 s"
    sleep 60
    waited=$((waited + 60))
  done
fi

extra=()
[[ $single == 0 ]] && extra+=(--no-single)
[[ $quick == 1 ]] && extra+=(--quick)
exec "$py" "$here/bench_ep.py" run --bin "$bin" --work "$work" --out "$out" \
  --root "$root" --mpirun "$mpirun" --models="$models" --tokens="$tokens" \
  --chunks="$chunks" --np="$np" --threads="$threads" --runs="$runs" \
  --runs-large="$runs_large" --passes="$passes" "${extra[@]}"
