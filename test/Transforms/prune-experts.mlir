// RUN: moe-opt %s --split-input-file --moe-prune-experts="profile=%S/Inputs/prune-profile.json prune=2" --verify-diagnostics | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-prune-experts="profile=%S/Inputs/prune-profile.json prune=1" 2>/dev/null | FileCheck %s --check-prefix=ONE
// RUN: moe-opt %s --split-input-file --moe-prune-experts="profile=%S/Inputs/prune-profile.json prune=0" 2>/dev/null | FileCheck %s --check-prefix=NONE

// Layer 0 of the profile: experts 1 and 3 took 1 token each, 0 took 5 and
// 2 took 9. prune=2 drops 1 and 3 from every per-expert constant (expert e
// holds the value e here) and from the router's rows; prune=1 drops 3
// (ties drop the higher index); prune=0 changes nothing.
// CHECK-LABEL: func.func @two_of_four
// CHECK-DAG: %[[R:.*]] = arith.constant dense<{{\[}}[0.000000e+00, 0.000000e+00], [2.000000e+00, 2.000000e+00]]> : tensor<2x2xf32>
// CHECK-DAG: %[[B:.*]] = arith.constant dense<[0.000000e+00, 2.000000e+00]> : tensor<2xf32>
// CHECK-DAG: %[[FC1:.*]] = arith.constant dense<{{\[}}[{{\[}}0.000000e+00, 0.000000e+00]], {{\[}}[2.000000e+00, 2.000000e+00]]]> : tensor<2x1x2xf32>
// CHECK-DAG: %[[FC2:.*]] = arith.constant dense<{{\[}}[{{\[}}0.000000e+00], [0.000000e+00]], {{\[}}[2.000000e+00], [2.000000e+00]]]> : tensor<2x2x1xf32>
// CHECK: moe.layer %{{.*}} router_weight %[[R]] fc1 %[[FC1]] fc2 %[[FC2]] score_bias %[[B]] {k = 1 : i64}
// CHECK-SAME: (tensor<?x2xf32>, tensor<2x2xf32>, tensor<2x1x2xf32>, tensor<2x2x1xf32>, tensor<2xf32>) -> tensor<?x2xf32>
// ONE-LABEL: func.func @two_of_four
// ONE: moe.layer {{.*}} : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<3x1x2xf32>, tensor<3x2x1xf32>, tensor<3xf32>) -> tensor<?x2xf32>
// NONE-LABEL: func.func @two_of_four
// NONE: moe.layer {{.*}} : (tensor<?x2xf32>, tensor<4x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>, tensor<4xf32>) -> tensor<?x2xf32>
func.func @two_of_four(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %r = arith.constant dense<[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]> : tensor<4x2xf32>
  %b = arith.constant dense<[0.0, 1.0, 2.0, 3.0]> : tensor<4xf32>
  %fc1 = arith.constant dense<[[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 2.0]], [[3.0, 3.0]]]> : tensor<4x1x2xf32>
  %fc2 = arith.constant dense<[[[0.0], [0.0]], [[1.0], [1.0]], [[2.0], [2.0]], [[3.0], [3.0]]]> : tensor<4x2x1xf32>
  // expected-remark @below {{layer 0: pruned experts 1, 3 of 4 (2 of 16 routed tokens in the profile)}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 score_bias %b {k = 1 : i64}
      : (tensor<?x2xf32>, tensor<4x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>, tensor<4xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// Layer 1 (the second layer of a function) has 4 FFN experts and a
// zero-computation expert after them (id 4): only FFN experts are
// dropped (2, then 3 of the two with 4 tokens), and the zero expert's
// router row stays last. Splat constants stay splats.
// CHECK-LABEL: func.func @second_layer_zero_expert
// CHECK: moe.layer
// CHECK-DAG: %[[R1:.*]] = arith.constant dense<{{\[}}[0.000000e+00], [1.000000e+00], [4.000000e+00]]> : tensor<3x1xf32>
// CHECK-DAG: %[[W1:.*]] = arith.constant dense<1.000000e+00> : tensor<2x1x1xf32>
// CHECK: moe.layer %{{.*}} router_weight %[[R1]] fc1 %[[W1]] fc2 %{{.*}} {k = 1 : i64, zero_experts = [#moe.zero_expert<zero>]}
func.func @second_layer_zero_expert(%x: tensor<?x1xf32>) -> tensor<?x1xf32> {
  %r0 = arith.constant dense<1.0> : tensor<4x1xf32>
  %w0 = arith.constant dense<1.0> : tensor<4x1x1xf32>
  %v0 = arith.constant dense<1.0> : tensor<4x1x1xf32>
  // expected-remark @below {{layer 0: pruned experts 1, 3 of 4}}
  %h = moe.layer %x router_weight %r0 fc1 %w0 fc2 %v0 {k = 1 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  %r1 = arith.constant dense<[[0.0], [1.0], [2.0], [3.0], [4.0]]> : tensor<5x1xf32>
  %w1 = arith.constant dense<1.0> : tensor<4x1x1xf32>
  %v1 = arith.constant dense<1.0> : tensor<4x1x1xf32>
  // expected-remark @below {{layer 1: pruned experts 2, 3 of 4 (4 of 14 routed tokens in the profile)}}
  %y = moe.layer %h router_weight %r1 fc1 %w1 fc2 %v1 {k = 1 : i64, zero_experts = [#moe.zero_expert<zero>]}
      : (tensor<?x1xf32>, tensor<5x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  return %y : tensor<?x1xf32>
}
