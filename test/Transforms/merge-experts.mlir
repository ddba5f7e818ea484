// RUN: moe-opt %s --split-input-file --moe-merge-experts="profile=%S/Inputs/prune-profile.json merge=1" --verify-diagnostics | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-merge-experts="profile=%S/Inputs/prune-profile.json merge=2" 2>&1 | FileCheck %s --check-prefix=TWO

// Layer 0 of the profile took 5, 1, 9 and 1 tokens. merge=1 folds expert 3
// (the least used; the tie with 1 goes to the higher index) into expert 1,
// whose router row is the most like its own: with one token each, every
// weight, router row and bias of the group is their mean (expert e holds
// e in the weights and the bias).
// CHECK-LABEL: func.func @fold_one
// CHECK-DAG: %[[R:.*]] = arith.constant dense<{{\[}}[1.000000e+00, 0.000000e+00], [1.250000e-01, 1.000000e+00], [1.000000e+00, 1.000000e+00]]> : tensor<3x2xf32>
// CHECK-DAG: %[[B:.*]] = arith.constant dense<[0.000000e+00, 2.000000e+00, 2.000000e+00]> : tensor<3xf32>
// CHECK-DAG: %[[FC1:.*]] = arith.constant dense<{{\[}}[{{\[}}0.000000e+00, 0.000000e+00]], {{\[}}[2.000000e+00, 2.000000e+00]], {{\[}}[2.000000e+00, 2.000000e+00]]]> : tensor<3x1x2xf32>
// CHECK: moe.layer %{{.*}} router_weight %[[R]] fc1 %[[FC1]] fc2 %{{.*}} score_bias %[[B]]
// CHECK-SAME: (tensor<?x2xf32>, tensor<3x2xf32>, tensor<3x1x2xf32>, tensor<3x2x1xf32>, tensor<3xf32>) -> tensor<?x2xf32>
// merge=2 folds 3 and then 1 into expert 2 (9 tokens): weights 9/11,
// 1/11, 1/11; the router row becomes (9 * [1, 1] + [0.25, 1] + [0, 1]) / 11.
// TWO: remark: layer 0: merged experts 3 into 2, 1 into 2 of 4 (2 of 16 routed tokens in the profile)
// TWO-LABEL: func.func @fold_one
// TWO-DAG: arith.constant dense<{{\[}}[1.000000e+00, 0.000000e+00], [0.840909{{[0-9]*}}, 1.000000e+00]]> : tensor<2x2xf32>
// TWO-DAG: arith.constant dense<{{\[}}[{{\[}}0.000000e+00, 0.000000e+00]], {{\[}}[2.000000e+00, 2.000000e+00]]]> : tensor<2x1x2xf32>
func.func @fold_one(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %r = arith.constant dense<[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.25, 1.0]]> : tensor<4x2xf32>
  %b = arith.constant dense<[0.0, 1.0, 2.0, 3.0]> : tensor<4xf32>
  %fc1 = arith.constant dense<[[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 2.0]], [[3.0, 3.0]]]> : tensor<4x1x2xf32>
  %fc2 = arith.constant dense<[[[0.0], [0.0]], [[1.0], [1.0]], [[2.0], [2.0]], [[3.0], [3.0]]]> : tensor<4x2x1xf32>
  // expected-remark @below {{layer 0: merged experts 3 into 1 of 4 (1 of 16 routed tokens in the profile)}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 score_bias %b {k = 1 : i64}
      : (tensor<?x2xf32>, tensor<4x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>, tensor<4xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// bf16 weights are averaged in f32 and rounded back.
// CHECK-LABEL: func.func @bf16
// CHECK: arith.constant dense<{{\[}}[{{\[}}0.000000e+00, 0.000000e+00]], {{\[}}[2.000000e+00, 2.000000e+00]], {{\[}}[2.000000e+00, 2.000000e+00]]]> : tensor<3x1x2xbf16>
func.func @bf16(%x: tensor<?x2xbf16>) -> tensor<?x2xbf16> {
  %r = arith.constant dense<[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.25, 1.0]]> : tensor<4x2xbf16>
  %fc1 = arith.constant dense<[[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 2.0]], [[3.0, 3.0]]]> : tensor<4x1x2xbf16>
  %fc2 = arith.constant dense<1.0> : tensor<4x2x1xbf16>
  // expected-remark @below {{layer 0: merged experts 3 into 1 of 4}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 {k = 1 : i64}
      : (tensor<?x2xbf16>, tensor<4x2xbf16>, tensor<4x1x2xbf16>, tensor<4x2x1xbf16>) -> tensor<?x2xbf16>
  return %y : tensor<?x2xbf16>
}
