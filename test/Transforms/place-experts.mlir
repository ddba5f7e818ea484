// RUN: moe-opt %s --split-input-file --moe-place-experts="profile=%S/Inputs/prune-profile.json ranks=2" --verify-diagnostics | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-place-experts="profile=%S/Inputs/prune-profile.json ranks=1" | FileCheck %s --check-prefix=ONE

// Layer 0 of the profile takes [5, 1, 9, 1] tokens: the blocks {0, 1} and
// {2, 3} give the busiest rank 10 tokens, as any placement must (9 + 1):
// nothing is renumbered. Layer 1 takes [4, 6, 0, 4] on its FFN experts and
// 2 on a zero-computation expert (id 4): contiguous blocks {0, 1} and
// {2, 3} give 10 and 4; placed {1, 2} and {0, 3} give 6 and 8, so its
// experts become 1, 2, 0, 3 (expert e holds the value e here) in the router
// rows, the score bias and every expert-stacked constant, and the zero
// expert's router row stays last. Splats stay splats.
// CHECK-LABEL: func.func @two_layers
// CHECK-DAG: %[[R0:.*]] = arith.constant dense<{{\[}}[0.000000e+00], [1.000000e+00], [2.000000e+00], [3.000000e+00]]> : tensor<4x1xf32>
// CHECK-DAG: %[[W0:.*]] = arith.constant dense<1.000000e+00> : tensor<4x1x1xf32>
// CHECK: %[[H:.*]] = moe.layer %{{.*}} router_weight %[[R0]] fc1 %[[W0]] fc2 %[[W0]] {k = 1 : i64}
// CHECK-DAG: %[[R1:.*]] = arith.constant dense<{{\[}}[1.000000e+00], [2.000000e+00], [0.000000e+00], [3.000000e+00], [4.000000e+00]]> : tensor<5x1xf32>
// CHECK-DAG: %[[B1:.*]] = arith.constant dense<[1.000000e+00, 2.000000e+00, 0.000000e+00, 3.000000e+00, 4.000000e+00]> : tensor<5xf32>
// CHECK-DAG: %[[FC1:.*]] = arith.constant dense<{{\[}}[{{\[}}1.000000e+00]], {{\[}}[2.000000e+00]], {{\[}}[0.000000e+00]], {{\[}}[3.000000e+00]]]> : tensor<4x1x1xf32>
// CHECK: %[[FC2:.*]] = arith.constant dense<2.000000e+00> : tensor<4x1x1xf32>
// CHECK-NEXT: moe.layer %[[H]] router_weight %[[R1]] fc1 %[[FC1]] fc2 %[[FC2]] score_bias %[[B1]] {k = 1 : i64, zero_experts = [#moe.zero_expert<zero>]}
// With one rank there is nothing to place: no remark, nothing changed.
// ONE-LABEL: func.func @two_layers
// ONE: %[[R1:.*]] = arith.constant dense<{{\[}}[0.000000e+00], [1.000000e+00], [2.000000e+00], [3.000000e+00], [4.000000e+00]]> : tensor<5x1xf32>
// ONE: moe.layer %{{.*}} router_weight %[[R1]]
func.func @two_layers(%x: tensor<?x1xf32>) -> tensor<?x1xf32> {
  %r0 = arith.constant dense<[[0.0], [1.0], [2.0], [3.0]]> : tensor<4x1xf32>
  %w0 = arith.constant dense<1.0> : tensor<4x1x1xf32>
  // expected-remark @below {{layer 0: experts by rank [0, 1] [2, 3]; busiest rank's tokens in the profile 10 contiguous, 10 placed}}
  %h = moe.layer %x router_weight %r0 fc1 %w0 fc2 %w0 {k = 1 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  %r1 = arith.constant dense<[[0.0], [1.0], [2.0], [3.0], [4.0]]> : tensor<5x1xf32>
  %b1 = arith.constant dense<[0.0, 1.0, 2.0, 3.0, 4.0]> : tensor<5xf32>
  %w1 = arith.constant dense<[[[0.0]], [[1.0]], [[2.0]], [[3.0]]]> : tensor<4x1x1xf32>
  %v1 = arith.constant dense<2.0> : tensor<4x1x1xf32>
  // expected-remark @below {{layer 1: experts by rank [1, 2] [0, 3]; busiest rank's tokens in the profile 10 contiguous, 8 placed}}
  %y = moe.layer %h router_weight %r1 fc1 %w1 fc2 %v1 score_bias %b1 {k = 1 : i64, zero_experts = [#moe.zero_expert<zero>]}
      : (tensor<?x1xf32>, tensor<5x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>, tensor<5xf32>) -> tensor<?x1xf32>
  return %y : tensor<?x1xf32>
}

// -----

// Like pruning, placement reads the router's rows: a logits-fed layer is
// refused with the layer named.
func.func @logits_fed(%x: tensor<?x1xf32>, %logits: tensor<?x4xf32>) -> tensor<?x1xf32> {
  %w0 = arith.constant dense<1.0> : tensor<4x1x1xf32>
  // expected-error @below {{cannot place the experts of layer 0: its router is not the layer's weight}}
  %h = moe.layer %x, %logits fc1 %w0 fc2 %w0 {k = 1 : i64}
      : (tensor<?x1xf32>, tensor<?x4xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  return %h : tensor<?x1xf32>
}
