#!/usr/bin/env bash
# Builds moe-mlir and runs the main job on the bundled example: ONNX
# Runtime's test_moe_cpu.py layer (H=64, I=256, E=4, top-2, interleaved
# SwiGLU, examples/ort_swiglu_layer.mlir) is compiled ahead of time to a
# shared library, run by the runtime on generated inputs, checked against the
# float64 reference evaluator, and timed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"

bin="$root/build/bin"
work="$root/build/example"
mkdir -p "$work"
example="$root/examples/ort_swiglu_layer.mlir"

echo "== moe-opt --moe-decompose-layer (the layer's four stages)"
"$bin/moe-opt" --moe-decompose-layer "$example" | grep -E "moe\.(route|dispatch|expert|combine)" | sed 's/ {.*//'

echo "== moe-compile $example --target=cpu -o $work/layer.so"
"$bin/moe-compile" "$example" --target=cpu -o "$work/layer.so" -mlir-timing \
  2>&1 | grep -E "Total|MLIR lowering|LLVM optimization|Code generation|Link"

echo "== inputs: 64 tokens"
/usr/bin/python3 "$root/examples/make_inputs.py" "$work" 64

inputs=()
for name in x router_logits fc1 fc1_bias fc2 fc2_bias; do
  inputs+=("--input=@$work/$name.npy")
done
echo "== moe-run $work/layer.so ... --check --benchmark=200"
"$bin/moe-run" "$work/layer.so" "${inputs[@]}" --output="@$work/y.npy" \
  --check --benchmark=200
echo "== output written to $work/y.npy"
