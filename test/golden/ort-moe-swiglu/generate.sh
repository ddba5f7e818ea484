#!/bin/sh
# Regenerates expected_output.npy: builds the model and inputs in a temporary
# folder with make_model.py, runs them with onnxruntime-node, keeps only the
# output. See README.md for the one-time onnxruntime-node install.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 "$here/make_model.py" "$work"
node "$here/run_ort.mjs" "$work" "$here/expected_output.npy"
