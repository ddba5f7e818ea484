#!/usr/bin/env bash
# Raised vs fused: the same Mixtral-style layer given two ways, both compiled
# by moe-compile and timed by moe-run in the same run, interleaved:
#   raised  a PyTorch (TorchScript) export of Hugging Face's
#           MixtralSparseMoeBlock: per-expert NonZero/Gather/MLP/ScatterElements
#           branches that moe-import-onnx raises to one moe.layer;
#   fused   router MatMul + com.microsoft.MoE (what ONNX Runtime's model
#           builders emit), the same weights;
# and ONNX Runtime 1.30 running the fused model, for reference.
#
# Usage: benchmarks/raising.sh [--tokens "1 16 64 512"] [--passes 3]
#                              [--threads 2] [--shape H,I,E,K]
# Prints one line per token count: median times and the ratio fused/raised
# (>= 1 means the raised export runs at least as fast as the fused op).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/build/bin"
tokens="1 16 64 512"
passes=3
threads=2
shape="1024,3584,8,2" # Mixtral-8x7B with H and I divided by 4 (RESULTS.md)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tokens) tokens="$2"; shift 2 ;;
    --passes) passes="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --shape) shape="$2"; shift 2 ;;
    *) echo "raising.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
IFS=, read -r H I E K <<< "$shape"
for tool in moe-compile moe-run; do
  [[ -x "$bin/$tool" ]] || { echo "raising.sh: build first (scripts/build.sh)" >&2; exit 1; }
done
export ORT_NODE_MODULES="${ORT_NODE_MODULES:-$root/build/ort/node_modules}"
work="$root/build/bench/raising"
mkdir -p "$work"

echo "== exporting the Mixtral-style block (H=$H I=$I E=$E k=$K) with torch.onnx"
/usr/bin/python3 "$root/test/Import/ONNX/Inputs/make_moe_blocks.py" mixtral "$work" \
  --hidden "$H" --inter "$I" --experts "$E" --top-k "$K" --tokens 4 --batch 1 2>/dev/null
echo "== compiling both"
"$bin/moe-compile" "$work/model.onnx" --print-raising -o "$work/raised.so"
"$bin/moe-compile" "$work/fused.onnx" -o "$work/fused.so"

median() { sed -n 's/.*time: median \([0-9.]*\) \([mun]*s\).*/\1 \2/p' "$1" |
  awk '{v=$1; if ($2=="ms") v*=1e3; else if ($2=="s") v*=1e6; else if ($2=="ns") v/=1e3; print v}'; }

printf "%6s %14s %14s %14s %10s %10s\n" T "raised (us)" "fused (us)" "ORT fused (us)" fused/raised ORT/raised
for T in $tokens; do
  /usr/bin/python3 -c "import numpy as np; np.save('$work/x_$T.npy', np.random.default_rng($T).standard_normal((1, $T, $H)).astype(np.float32))"
  runs=$(( T >= 512 ? 20 : 200 ))
  best_r=""; best_f=""; best_o=""
  for ((p = 1; p <= passes; ++p)); do
    "$bin/moe-run" "$work/raised.so" --input=@"$work/x_$T.npy" --threads="$threads" --benchmark="$runs" > "$work/r_$T.txt"
    "$bin/moe-run" "$work/fused.so" --input=@"$work/x_$T.npy" --threads="$threads" --benchmark="$runs" > "$work/f_$T.txt"
    o=$(node "$root/test/lib/ort_run.mjs" "$work/fused.onnx" "$work/ort_" "$work/x_$T.npy" \
          --bench="$runs" --threads="$threads" || echo nan)
    r=$(median "$work/r_$T.txt"); f=$(median "$work/f_$T.txt")
    best_r=$(python3 -c "print(min(float('$r'), float('${best_r:-inf}')))")
    best_f=$(python3 -c "print(min(float('$f'), float('${best_f:-inf}')))")
    best_o=$(python3 -c "print(min(float('$o'), float('${best_o:-inf}')))")
  done
  python3 -c "r,f,o=$best_r,$best_f,float('$best_o'); print('%6d %14.1f %14.1f %14.1f %10.2f %10.2f' % ($T, r, f, o, f/r, o/r))"
done
