// RUN: moe-opt %s --split-input-file --moe-pack-expert-weights="panel-width=2" | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-pack-expert-weights | FileCheck %s --check-prefix=WIDE
// RUN: moe-opt %s --split-input-file --moe-pack-expert-weights="panel-width=2 pack-bf16=false" | FileCheck %s --check-prefix=NOBF16
// RUN: not moe-opt %s --split-input-file --moe-pack-expert-weights="panel-width=0" 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: panel-width must be at least 1, got 0

// Constant weights become panels of two output columns: element
// [e, p, k, j] is the old [e, 2p + j, k]; the expert says so.
// CHECK-LABEL: func.func @packs_constants
// CHECK-DAG: %[[W1:.*]] = arith.constant dense<{{\[}}{{\[}}{{\[}}[0.000000e+00, 2.000000e+00], [1.000000e+00, 3.000000e+00]], {{\[}}[4.000000e+00, 6.000000e+00], [5.000000e+00, 7.000000e+00]]], {{\[}}{{\[}}[8.000000e+00, 1.000000e+01], [9.000000e+00, 1.100000e+01]], {{\[}}[1.200000e+01, 1.400000e+01], [1.300000e+01, 1.500000e+01]]]]> : tensor<2x2x2x2xf32>
// CHECK-DAG: %[[W2:.*]] = arith.constant dense<{{\[}}{{\[}}{{\[}}[0.000000e+00, 4.000000e+00], [1.000000e+00, 5.000000e+00], [2.000000e+00, 6.000000e+00], [3.000000e+00, 7.000000e+00]]], {{\[}}{{\[}}[8.000000e+00, 1.200000e+01], [9.000000e+00, 1.300000e+01], [1.000000e+01, 1.400000e+01], [1.100000e+01, 1.500000e+01]]]]> : tensor<2x1x4x2xf32>
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %[[W1]] fc2 %[[W2]] {panel_width = 2 : i64} : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x2x2x2xf32>, tensor<2x1x4x2xf32>) -> tensor<?x2xf32>
// CHECK-NOT: tensor<2x4x2xf32>
// The default width, 64 columns, does not divide these sizes.
// WIDE-LABEL: func.func @packs_constants
// WIDE-NOT: panel_width
func.func @packs_constants(%rows: tensor<?x2xf32>, %offsets: tensor<3xi32>) -> tensor<?x2xf32> {
  %w1 = arith.constant dense<[[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]],
                              [[8.0, 9.0], [10.0, 11.0], [12.0, 13.0], [14.0, 15.0]]]> : tensor<2x4x2xf32>
  %w2 = arith.constant dense<[[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]],
                              [[8.0, 9.0, 10.0, 11.0], [12.0, 13.0, 14.0, 15.0]]]> : tensor<2x2x4xf32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// A gated expert's fc3 is packed with fc1 and fc2; a splat stays a splat;
// a constant both experts read is packed once.
// CHECK-LABEL: func.func @gated_and_shared
// CHECK-DAG: %[[S1:.*]] = arith.constant dense<1.000000e+00> : tensor<2x2x2x2xf32>
// CHECK-DAG: %[[S2:.*]] = arith.constant dense<2.000000e+00> : tensor<2x1x4x2xf32>
// CHECK-DAG: %[[S3:.*]] = arith.constant dense<3.000000e+00> : tensor<2x2x2x2xf32>
// CHECK: moe.expert {{.*}} fc1 %[[S1]] fc2 %[[S2]] fc3 %[[S3]] {activation = #moe.activation<silu>, panel_width = 2 : i64}
// CHECK: moe.expert {{.*}} fc1 %[[S1]] fc2 %[[S2]] fc3 %[[S3]] {activation = #moe.activation<silu>, panel_width = 2 : i64}
func.func @gated_and_shared(%rows: tensor<?x2xf32>, %offsets: tensor<3xi32>) -> (tensor<?x2xf32>, tensor<?x2xf32>) {
  %w1 = arith.constant dense<1.0> : tensor<2x4x2xf32>
  %w2 = arith.constant dense<2.0> : tensor<2x2x4xf32>
  %w3 = arith.constant dense<3.0> : tensor<2x4x2xf32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc3 %w3 {activation = #moe.activation<silu>} : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>, tensor<2x4x2xf32>) -> tensor<?x2xf32>
  %z = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc3 %w3 {activation = #moe.activation<silu>} : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>, tensor<2x4x2xf32>) -> tensor<?x2xf32>
  return %y, %z : tensor<?x2xf32>, tensor<?x2xf32>
}

// -----

// bf16 weights go in pairs of k: element [e, p, t, j, r] is the old
// [e, 2p + j, 2t + r] (here 4 (2p + j) + 2t + r), a panel row being each
// column's pair side by side.
// CHECK-LABEL: func.func @packs_bf16_pairs
// CHECK-DAG: %[[P1:.*]] = arith.constant dense<{{\[}}{{\[}}{{\[}}{{\[}}[0.000000e+00, 1.000000e+00], [4.000000e+00, 5.000000e+00]], {{\[}}[2.000000e+00, 3.000000e+00], [6.000000e+00, 7.000000e+00]]], {{\[}}{{\[}}[8.000000e+00, 9.000000e+00], [1.200000e+01, 1.300000e+01]], {{\[}}[1.000000e+01, 1.100000e+01], [1.400000e+01, 1.500000e+01]]]]]> : tensor<1x2x2x2x2xbf16>
// CHECK-DAG: %[[P2:.*]] = arith.constant dense<2.000000e+00> : tensor<1x2x2x2x2xbf16>
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %[[P1]] fc2 %[[P2]] {panel_width = 2 : i64} : (tensor<?x4xbf16>, tensor<2xi32>, tensor<1x2x2x2x2xbf16>, tensor<1x2x2x2x2xbf16>) -> tensor<?x4xbf16>
// NOBF16-LABEL: func.func @packs_bf16_pairs
// NOBF16-NOT: panel_width
func.func @packs_bf16_pairs(%rows: tensor<?x4xbf16>, %offsets: tensor<2xi32>) -> tensor<?x4xbf16> {
  %w1 = arith.constant dense<[[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0],
                               [8.0, 9.0, 10.0, 11.0], [12.0, 13.0, 14.0, 15.0]]]> : tensor<1x4x4xbf16>
  %w2 = arith.constant dense<2.0> : tensor<1x4x4xbf16>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x4xbf16>, tensor<2xi32>, tensor<1x4x4xbf16>, tensor<1x4x4xbf16>) -> tensor<?x4xbf16>
  return %y : tensor<?x4xbf16>
}

// -----

// Left as they are: weights that are arguments, an intermediate size of 3
// (not whole panels of 2), bf16 weights of f32 rows, and bf16 weights of
// an odd K (no whole pairs).
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: panel_width
// CHECK: return
func.func @left_alone(%rows: tensor<?x2xf32>, %offsets: tensor<3xi32>, %w1: tensor<2x4x2xf32>, %w2: tensor<2x2x4xf32>, %rows3: tensor<?x3xbf16>) -> (tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x3xbf16>) {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>) -> tensor<?x2xf32>
  %v1 = arith.constant dense<1.0> : tensor<2x3x2xf32>
  %v2 = arith.constant dense<2.0> : tensor<2x2x3xf32>
  %z = moe.expert %rows, %offsets fc1 %v1 fc2 %v2 : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x3x2xf32>, tensor<2x2x3xf32>) -> tensor<?x2xf32>
  %b1 = arith.constant dense<1.0> : tensor<2x4x2xbf16>
  %b2 = arith.constant dense<2.0> : tensor<2x2x4xbf16>
  %u = moe.expert %rows, %offsets fc1 %b1 fc2 %b2 : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xbf16>, tensor<2x2x4xbf16>) -> tensor<?x2xf32>
  %o1 = arith.constant dense<1.0> : tensor<2x4x3xbf16>
  %o2 = arith.constant dense<2.0> : tensor<2x3x4xbf16>
  %v = moe.expert %rows3, %offsets fc1 %o1 fc2 %o2 : (tensor<?x3xbf16>, tensor<3xi32>, tensor<2x4x3xbf16>, tensor<2x3x4xbf16>) -> tensor<?x3xbf16>
  return %y, %z, %u, %v : tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x3xbf16>
}
