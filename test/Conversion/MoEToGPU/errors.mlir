// RUN: moe-opt %s --convert-moe-to-gpu --split-input-file --verify-diagnostics

func.func @layer(%x: tensor<?x16xf32>, %logits: tensor<?x4xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  // expected-error @below {{moe.layer (run -moe-decompose-layer first) is not supported by the cuda target yet}}
  %y = moe.layer %x, %logits fc1 %w1 fc2 %w2 {k = 2 : i64, activation = #moe.activation<relu>} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
