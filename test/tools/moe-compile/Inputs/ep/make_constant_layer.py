"""Writes a layer whose expert weights are constants (as imported ONNX
initializers are) and token inputs for it: DIR/layer.mlir, DIR/x.npy,
DIR/logits.npy. E = 5 experts, so 2 and 4 ranks split them unevenly."""
import os
import sys

import numpy as np

out = sys.argv[1]
rng = np.random.default_rng(1)
E, H, I, T = 5, 8, 12, 11
w1 = rng.standard_normal((E, 2 * I, H)).astype(np.float32)
w2 = rng.standard_normal((E, H, I)).astype(np.float32)
b1 = rng.standard_normal((E, 2 * I)).astype(np.float32)


def dense(a):
    text = np.array2string(a, separator=", ", threshold=10**9,
                           floatmode="unique")
    return "dense<" + text.replace("\n", "") + ">"


def ty(a):
    return "tensor<" + "x".join(map(str, a.shape)) + "xf32>"


with open(os.path.join(out, "layer.mlir"), "w") as f:
    f.write(f"""func.func @layer(%x: tensor<?x{H}xf32>, %logits: tensor<?x{E}xf32>)
    -> tensor<?x{H}xf32> {{
  %w1 = arith.constant {dense(w1)} : {ty(w1)}
  %w2 = arith.constant {dense(w2)} : {ty(w2)}
  %b1 = arith.constant {dense(b1)} : {ty(b1)}
  %y = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2
      {{k = 2 : i64, normalize, activation = #moe.activation<swiglu>,
       swiglu_fusion = #moe.swiglu_fusion<interleaved>}}
      : (tensor<?x{H}xf32>, tensor<?x{E}xf32>, {ty(w1)}, {ty(b1)}, {ty(w2)})
      -> tensor<?x{H}xf32>
  return %y : tensor<?x{H}xf32>
}}
""")
np.save(os.path.join(out, "x.npy"),
        rng.standard_normal((T, H)).astype(np.float32))
np.save(os.path.join(out, "logits.npy"),
        rng.standard_normal((T, E)).astype(np.float32))
