#!/usr/bin/env bash
# MoE layer benchmark: moe-mlir's compiled moe.layer against ONNX Runtime's
# com.microsoft.MoE (onnxruntime-node 1.30, CPU) on the same f32 weights, for
# three real model shapes scaled to fit 24 GiB, at several token counts,
# next to this machine's measured memory bandwidth.
#
# Usage: benchmarks/run.sh [options]
#   --quick             few repetitions (for checking the scripts); writes
#                       build/bench/RESULTS-quick.md instead of
#                       benchmarks/RESULTS.md
#   --runs=N            timed runs per measurement for T < 256 (default 100;
#                       quick 5)                              env BENCH_RUNS
#   --runs-large=N      timed runs for T >= 256 (default 20; quick 2)
#                                                       env BENCH_RUNS_LARGE
#   --passes=P          repeat every (model, T) measurement P times, both
#                       sides interleaved, and report the median of the P
#                       medians (default 3; quick 1)        env BENCH_PASSES
#   --rotations=R       different (x, logits) token tensors ORT rotates over
#                       (default 4)                      env BENCH_ROTATIONS
#   --models=a,b        subset of: mixtral-8x7b-div4, olmoe-div2,
#                       qwen3-30b-a3b-div2 (default: all)
#   --tokens=1,16       token counts (default 1,16,64,512)
#   --threads=N         threads for both sides (default 2)
#   --out=FILE          Markdown report to write (default: see --quick)
#   --wait-idle[=SEC]   before measuring, wait (up to SEC, default 1200 s)
#                       until the 1-minute load average is below 0.5
#   -h, --help
#
# Environment: ORT_NODE_MODULES=<node_modules folder holding
# onnxruntime-node>; when unset, build/bench/node_modules is used and
# installed there on first use (npm, --ignore-scripts: the CPU library ships
# in the package). BENCH_DIR (default build/bench) is the scratch folder for
# weights (about 2.7 GB on disk), models, the compiled layers and the logs;
# nothing there belongs in git.
#
# Needs: build/bin/moe-compile and moe-run (scripts/build.sh), gcc,
# /usr/bin/python3 with numpy and onnx, node >= 18 and npm.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
here="$root/benchmarks"
bin="$root/build/bin"
bench="${BENCH_DIR:-$root/build/bench}"
py=/usr/bin/python3

quick=0
runs="${BENCH_RUNS:-}"
runs_large="${BENCH_RUNS_LARGE:-}"
rotations="${BENCH_ROTATIONS:-4}"
passes="${BENCH_PASSES:-}"
models="mixtral-8x7b-div4,olmoe-div2,qwen3-30b-a3b-div2"
tokens="1,16,64,512"
threads=2
out=""
wait_idle=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --runs=*) runs="${arg#*=}" ;;
    --runs-large=*) runs_large="${arg#*=}" ;;
    --rotations=*) rotations="${arg#*=}" ;;
    --passes=*) passes="${arg#*=}" ;;
    --models=*) models="${arg#*=}" ;;
    --tokens=*) tokens="${arg#*=}" ;;
    --threads=*) threads="${arg#*=}" ;;
    --out=*) out="${arg#*=}" ;;
    --wait-idle) wait_idle=1200 ;;
    --wait-idle=*) wait_idle="${arg#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $quick == 1 ]]; then
  runs="${runs:-5}"; runs_large="${runs_large:-2}"; passes="${passes:-1}"
  out="${out:-$bench/RESULTS-quick.md}"
else
  runs="${runs:-100}"; runs_large="${runs_large:-20}"; passes="${passes:-3}"
  out="${out:-$here/RESULTS.md}"
fi

for tool in moe-compile moe-run; do
  [[ -x "$bin/$tool" ]] || {
    echo "run.sh: $bin/$tool missing: build first (scripts/build.sh)" >&2
    exit 1
  }
done
mkdir -p "$bench"

# --- onnxruntime-node -------------------------------------------------------
if [[ -z "${ORT_NODE_MODULES:-}" ]]; then
  ORT_NODE_MODULES="$bench/node_modules"
  if [[ ! -f "$ORT_NODE_MODULES/onnxruntime-node/package.json" ]]; then
    echo "== installing onnxruntime-node 1.30.0 into $bench/node_modules"
    # Without the postinstall, which fetches CUDA bits (and fails offline);
    # the npm package ships the CPU library itself.
    (cd "$bench" && ONNXRUNTIME_NODE_INSTALL=skip \
       npm install --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30.0)
  fi
fi
export ORT_NODE_MODULES
ort_version=$(node -e "console.log(require(process.argv[1]+'/onnxruntime-node/package.json').version)" "$ORT_NODE_MODULES")

# --- memory bandwidth reader ---------------------------------------------------
gcc -O3 -march=native -pthread -Wall "$here/membw.c" -o "$bench/membw"

# --- wait for a quiet machine --------------------------------------------------
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

# --- models ------------------------------------------------------------------------
echo "== generating models and inputs in $bench/models (weights once)"
$py "$here/make_models.py" gen "$bench/models" --models="$models" \
  --tokens="$tokens" --rotations="$rotations"

# CPU time of the whole machine and of this script with its children, to
# report how much other processes ran during the measurements.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
own_ticks() { sed 's/.*) //' /proc/$$/stat | awk '{ print $12 + $13 + $14 + $15 }'; }
busy0=$(busy_ticks); own0=$(own_ticks); wall0=$(date +%s.%N)

res="$bench/results"
rm -rf "$res"
mkdir -p "$res"
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "cpu_family_model=$(lscpu | sed -n 's/^CPU family: *//p' | head -1)/$(lscpu | sed -n 's/^Model: *//p' | head -1)"
  echo "cpus=$(nproc)"
  echo "threads_per_core=$(lscpu | sed -n 's/^Thread(s) per core: *//p' | head -1)"
  echo "l3=$(lscpu | sed -n 's/^L3 cache: *//p' | head -1)"
  echo "hypervisor=$(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1)"
  echo "mem_kib=$(awk '/^MemTotal/ {print $2}' /proc/meminfo)"
  echo "kernel=$(uname -sr)"
  echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "gcc=$(gcc -dumpfullversion)"
  echo "node=$(node --version)"
  echo "ort=$ort_version"
  echo "numpy=$($py -c 'import numpy; print(numpy.__version__)')"
  echo "onnx=$($py -c 'import onnx; print(onnx.__version__)')"
  echo "llvm=$(ls -d /usr/lib/llvm-* 2>/dev/null | sed 's|.*/llvm-||' | sort -n | tail -1)"
  echo "commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "runs=$runs"
  echo "runs_large=$runs_large"
  echo "rotations=$rotations"
  echo "passes=$passes"
  echo "threads=$threads"
  echo "quick=$quick"
  echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$res/env.txt"

echo "== memory bandwidth (before)"
"$bench/membw" "$threads" 1024 20 | tee "$res/membw_before.txt"

IFS=, read -r -a model_list <<< "$models"
IFS=, read -r -a token_list <<< "$tokens"

echo "== onnxruntime-node fixed cost per session.run (Identity on [T, 1024])"
node "$here/ort_bench.mjs" "$bench/models/identity-h1024" overhead \
  --tokens="$tokens" --hidden=1024 --runs=200 --threads="$threads" \
  | tee "$res/ort_overhead.jsonl" | sed 's/^/   /'
status=0
for m in "${model_list[@]}"; do
  d="$bench/models/$m"
  mkdir -p "$res/$m"
  echo "== $m: moe-compile"
  "$bin/moe-compile" "$d/layer.mlir" -o "$d/layer.so"
  weights=(--input="@$d/fc1.npy" --input="@$d/fc2.npy")

  # Equality check on T=16 before timing: ours (also against the float64
  # reference evaluator) and ORT on the same inputs.
  echo "== $m: check T=16 (ours vs ORT, ours vs float64 reference)"
  x16="$d/x_T16_r0.npy"; l16="$d/logits_T16_r0.npy"
  "$bin/moe-run" "$d/layer.so" --input="@$x16" --input="@$l16" "${weights[@]}" \
    --threads="$threads" --output="@$res/$m/ours_T16.npy" --check \
    > "$res/$m/check_ref.txt" 2>&1 || true
  node "$here/ort_bench.mjs" "$d" run "$x16" "$l16" "$res/$m/ort_T16.npy" \
    --threads="$threads"
  sed 's/^/   ours vs reference: /' "$res/$m/check_ref.txt"
  if $py "$here/make_models.py" compare "$res/$m/ours_T16.npy" \
       "$res/$m/ort_T16.npy" > "$res/$m/check_ort.txt"; then :; else
    status=1
  fi
  sed 's/^/   ours vs ORT:       /' "$res/$m/check_ort.txt"

  # Timing, interleaved per token count so that both sides see the same
  # machine state.
  for ((p = 1; p <= passes; ++p)); do
    for T in "${token_list[@]}"; do
      n=$runs; [[ $T -ge 256 ]] && n=$runs_large
      tag="T${T}_p$p"
      # This machine's bandwidth drifts with its neighbours: sample it next
      # to every measurement (10 x 1 GiB, about 0.3 s).
      "$bench/membw" "$threads" 1024 10 > "$res/$m/membw_$tag.txt"
      echo "== $m: T=$T, pass $p/$passes: $(cat "$res/$m/membw_$tag.txt")"
      run_ours() {
        echo "== $m: T=$T, pass $p/$passes: moe-run --benchmark=$n"
        "$bin/moe-run" "$d/layer.so" --input="@$d/x_T${T}_r0.npy" \
          --input="@$d/logits_T${T}_r0.npy" "${weights[@]}" \
          --threads="$threads" --benchmark="$n" | tee "$res/$m/ours_$tag.txt" |
          sed 's/^/   /'
      }
      run_ort() {
        echo "== $m: T=$T, pass $p/$passes: onnxruntime-node, $n runs over" \
             "$rotations token tensors"
        node "$here/ort_bench.mjs" "$d" bench --tokens="$T" --runs="$n" \
          --runs-large="$runs_large" --rotations="$rotations" \
          --threads="$threads" > "$res/$m/ort_$tag.json"
        sed 's/^/   /' "$res/$m/ort_$tag.json"
      }
      # Alternate which side goes first, so neither always follows the
      # other's cache and page-cache footprint.
      if ((p % 2)); then run_ours; run_ort; else run_ort; run_ours; fi
    done
  done
done

echo "== memory bandwidth (after)"
"$bench/membw" "$threads" 1024 20 | tee "$res/membw_after.txt"
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$res/env.txt"
hz=$(getconf CLK_TCK)
awk -v b="$(( $(busy_ticks) - busy0 ))" -v o="$(( $(own_ticks) - own0 ))" \
    -v hz="$hz" -v w0="$wall0" -v w1="$(date +%s.%N)" 'BEGIN {
  printf "wall_s=%.0f\nbusy_cpu_s=%.1f\nown_cpu_s=%.1f\nother_cpu_s=%.1f\n",
         w1 - w0, b / hz, o / hz, (b - o) / hz }' >> "$res/env.txt"
echo "== CPU time during the run: $(grep -E '^(wall_s|busy_cpu_s|own_cpu_s|other_cpu_s)=' "$res/env.txt" | tr '\n' ' ')"

$py "$here/report.py" "$res" "$bench/models" "$out"
if [[ $status != 0 ]]; then
  echo "run.sh: the equality check against ONNX Runtime FAILED (see above)" >&2
fi
exit $status
