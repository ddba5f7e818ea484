// RUN: moe-opt %s --split-input-file --moe-place-experts="profile=%S/Inputs/coactivation-profile.json ranks=2 co-activation" --verify-diagnostics | FileCheck %s
// RUN: not moe-opt %s --split-input-file --moe-place-experts="profile=%S/Inputs/coactivation-profile.json ranks=2 co-activation tolerance=0.2" 2>&1 >/dev/null | FileCheck %s --check-prefix=LOOSE

// Layer 0 of the profile: 20 tokens of k = 2 balanced over 4 experts, 8
// of them choosing experts 0 and 2, 8 choosing 1 and 3. The contiguous
// blocks {0, 1} {2, 3} are balanced (20 and 20 tokens) but send a row per
// token and rank 40 - 2 = 38 times; {0, 2} {1, 3} are as balanced and send
// 40 - 16 = 24 rows. The experts become 0, 2, 1, 3 (expert e holds e).
// CHECK-LABEL: func.func @pairs_together
// CHECK-DAG: %[[R:.*]] = arith.constant dense<{{\[}}[0.000000e+00], [2.000000e+00], [1.000000e+00], [3.000000e+00]]> : tensor<4x1xf32>
// CHECK-DAG: %[[W:.*]] = arith.constant dense<{{\[}}[{{\[}}0.000000e+00]], {{\[}}[2.000000e+00]], {{\[}}[1.000000e+00]], {{\[}}[3.000000e+00]]]> : tensor<4x1x1xf32>
// CHECK: moe.layer %{{.*}} router_weight %[[R]] fc1 %[[W]] fc2 %{{.*}} {k = 2 : i64}
// LOOSE: remark: layer 0: experts by rank [0, 2] [1, 3]
func.func @pairs_together(%x: tensor<?x1xf32>) -> tensor<?x1xf32> {
  %r = arith.constant dense<[[0.0], [1.0], [2.0], [3.0]]> : tensor<4x1xf32>
  %w = arith.constant dense<[[[0.0]], [[1.0]], [[2.0]], [[3.0]]]> : tensor<4x1x1xf32>
  // expected-remark @below {{layer 0: experts by rank [0, 2] [1, 3]; busiest rank's tokens in the profile 20 contiguous, 20 placed; rows sent per token and rank 38 contiguous, 24 placed}}
  %y = moe.layer %x router_weight %r fc1 %w fc2 %w {k = 2 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  return %y : tensor<?x1xf32>
}

// -----

// Layer 1: experts 0 and 2 are chosen together 10 times but take 12
// tokens each; a block {0, 2} would take 24 tokens where the balanced
// blocks take 20, beyond the default tolerance (5%: 21). Nothing moves.
// With tolerance=0.2 (24 allowed) they are grouped: 40 - 16 = 24 rows.
// CHECK-LABEL: func.func @pairs_too_heavy
// CHECK: %[[R:.*]] = arith.constant dense<{{\[}}[0.000000e+00], [1.000000e+00], [2.000000e+00], [3.000000e+00]]> : tensor<4x1xf32>
// LOOSE: remark: layer 0: experts by rank [0, 2] [1, 3]
// LOOSE: remark: layer 1: experts by rank [0, 2] [1, 3]; busiest rank's tokens in the profile 20 contiguous, 24 placed; rows sent per token and rank 38 contiguous, 24 placed
func.func @pairs_too_heavy(%x: tensor<?x1xf32>) -> tensor<?x1xf32> {
  %w = arith.constant dense<1.0> : tensor<4x1x1xf32>
  %r0 = arith.constant dense<1.0> : tensor<4x1xf32>
  // expected-remark @below {{layer 0: experts by rank [0, 2] [1, 3]}}
  %h = moe.layer %x router_weight %r0 fc1 %w fc2 %w {k = 2 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  %r = arith.constant dense<[[0.0], [1.0], [2.0], [3.0]]> : tensor<4x1xf32>
  // expected-remark @below {{layer 1: experts by rank [0, 1] [2, 3]; busiest rank's tokens in the profile 20 contiguous, 20 placed; rows sent per token and rank 38 contiguous, 38 placed}}
  %y = moe.layer %h router_weight %r fc1 %w fc2 %w {k = 2 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  return %y : tensor<?x1xf32>
}

// -----

// Layer 2 of the profile has no co-activation counts: refused, named.
func.func @no_pairs(%x: tensor<?x1xf32>) -> tensor<?x1xf32> {
  %w = arith.constant dense<1.0> : tensor<4x1x1xf32>
  %r = arith.constant dense<1.0> : tensor<4x1xf32>
  // expected-remark @below {{layer 0}}
  %h = moe.layer %x router_weight %r fc1 %w fc2 %w {k = 2 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  // expected-remark @below {{layer 1}}
  %h1 = moe.layer %h router_weight %r fc1 %w fc2 %w {k = 2 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  // expected-error @below {{cannot place the experts of layer 2 by co-activation: the routing profile has no 'coactivation' for it}}
  %y = moe.layer %h1 router_weight %r fc1 %w fc2 %w {k = 2 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  return %y : tensor<?x1xf32>
}
