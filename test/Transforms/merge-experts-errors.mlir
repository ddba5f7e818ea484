// RUN: moe-opt %s --split-input-file --moe-merge-experts="profile=%S/Inputs/prune-profile.json merge=1" --verify-diagnostics

// Merging averages weights: f32 or bf16 only.
func.func @f16(%x: tensor<?x2xf16>) -> tensor<?x2xf16> {
  %r = arith.constant dense<1.0> : tensor<4x2xf16>
  %fc1 = arith.constant dense<1.0> : tensor<4x1x2xf16>
  %fc2 = arith.constant dense<1.0> : tensor<4x2x1xf16>
  // expected-error @below {{cannot merge layer 0: merging averages f32 or bf16 weights, not f16}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 {k = 1 : i64}
      : (tensor<?x2xf16>, tensor<4x2xf16>, tensor<4x1x2xf16>, tensor<4x2x1xf16>) -> tensor<?x2xf16>
  return %y : tensor<?x2xf16>
}

// -----

// The checks it shares with pruning, here k.
func.func @too_many(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %r = arith.constant dense<1.0> : tensor<4x2xf32>
  %fc1 = arith.constant dense<1.0> : tensor<4x1x2xf32>
  %fc2 = arith.constant dense<1.0> : tensor<4x2x1xf32>
  // expected-error @below {{cannot merge layer 0: removing 1 of 4 experts leaves fewer than k = 4}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 {k = 4 : i64}
      : (tensor<?x2xf32>, tensor<4x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// Weights that are arguments cannot be averaged at compile time.
func.func @argument(%x: tensor<?x2xf32>, %fc2: tensor<4x2x1xf32>) -> tensor<?x2xf32> {
  %r = arith.constant dense<1.0> : tensor<4x2xf32>
  %fc1 = arith.constant dense<1.0> : tensor<4x1x2xf32>
  // expected-error @below {{cannot merge layer 0: its weights must be constants}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 {k = 1 : i64}
      : (tensor<?x2xf32>, tensor<4x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
