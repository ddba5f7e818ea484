// RUN: moe-opt %s --split-input-file --moe-convert-expert-weights | FileCheck %s
// RUN: not moe-opt %s --split-input-file --moe-convert-expert-weights="element-type=f16" 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: element-type must be 'bf16', got 'f16'

// Constant f32 weights become bf16, rounded to nearest with ties to even
// (1 + 2^-8, halfway between 1 and the next bf16, goes to 1; 0.1 rounds
// up to 0x3DCD), a NaN stays a NaN, dense elements stay dense elements and
// a dense resource becomes a new resource; the router weight and the
// tokens stay f32.
// CHECK-LABEL: func.func @rounds_to_bf16
// CHECK-DAG:  %[[W1:.*]] = arith.constant dense_resource<fc1_bf16> : tensor<2x2x2xbf16>
// CHECK-DAG:  %[[W2:.*]] = arith.constant dense<{{\[}}{{\[}}[1.000980e-01, 2.001950e-01], [3.004060e+38, 0x7FC0]], {{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]]]> : tensor<2x2x2xbf16>
// CHECK:      moe.layer %{{.*}} router_weight %{{.*}} fc1 %[[W1]] fc2 %[[W2]] {k = 1 : i64} : (tensor<?x2xf32>, tensor<2x2xf32>, tensor<2x2x2xbf16>, tensor<2x2x2xbf16>) -> tensor<?x2xf32>
// CHECK-NOT:  tensor<2x2x2xf32>
// CHECK:      fc1_bf16: "0x40000000803FCD3D40C0803F0040003F803EC0BF"
func.func @rounds_to_bf16(%x: tensor<?x2xf32>, %r: tensor<2x2xf32>) -> tensor<?x2xf32> {
  %w1 = arith.constant dense_resource<fc1> : tensor<2x2x2xf32>
  %w2 = arith.constant dense<[[[0.1, 0.2], [3.0e+38, 0x7FC00000]], [[1.0, 2.0], [3.0, 4.0]]]> : tensor<2x2x2xf32>
  %y = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 {k = 1 : i64} : (tensor<?x2xf32>, tensor<2x2xf32>, tensor<2x2x2xf32>, tensor<2x2x2xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
{-#
  dialect_resources: {
    builtin: {
      fc1: "0x040000000000803FCDCCCC3D000040C00080803F000000400000003F0000803E0000C0BF"
    }
  }
#-}

// -----

// fc3 and the biases go with fc1 and fc2; splats stay splats; a constant
// two layers share is converted once. The shared experts are a group of
// their own.
// CHECK-LABEL: func.func @group_with_biases
// CHECK-DAG:  %[[S1:.*]] = arith.constant dense<1.000000e+00> : tensor<2x4x2xbf16>
// CHECK-DAG:  %[[B1:.*]] = arith.constant dense<5.000000e-01> : tensor<2x4xbf16>
// CHECK-DAG:  %[[S2:.*]] = arith.constant dense<2.000000e+00> : tensor<2x2x4xbf16>
// CHECK-DAG:  %[[S3:.*]] = arith.constant dense<3.000000e+00> : tensor<2x4x2xbf16>
// CHECK-DAG:  %[[SH1:.*]] = arith.constant dense<4.000000e+00> : tensor<1x4x2xbf16>
// CHECK-DAG:  %[[SH2:.*]] = arith.constant dense<5.000000e+00> : tensor<1x2x4xbf16>
// CHECK-DAG:  %[[SH3:.*]] = arith.constant dense<6.000000e+00> : tensor<1x4x2xbf16>
// CHECK-NOT:  arith.constant
// CHECK:      moe.layer {{.*}} fc1 %[[S1]] fc1_bias %[[B1]] fc2 %[[S2]] fc3 %[[S3]] shared_fc1 %[[SH1]] shared_fc2 %[[SH2]] shared_fc3 %[[SH3]]
// CHECK:      moe.layer {{.*}} fc1 %[[S1]] fc1_bias %[[B1]] fc2 %[[S2]] fc3 %[[S3]] {
func.func @group_with_biases(%x: tensor<?x2xf32>, %logits: tensor<?x2xf32>) -> (tensor<?x2xf32>, tensor<?x2xf32>) {
  %w1 = arith.constant dense<1.0> : tensor<2x4x2xf32>
  %b1 = arith.constant dense<0.5> : tensor<2x4xf32>
  %w2 = arith.constant dense<2.0> : tensor<2x2x4xf32>
  %w3 = arith.constant dense<3.0> : tensor<2x4x2xf32>
  %s1 = arith.constant dense<4.0> : tensor<1x4x2xf32>
  %s2 = arith.constant dense<5.0> : tensor<1x2x4xf32>
  %s3 = arith.constant dense<6.0> : tensor<1x4x2xf32>
  %y = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 fc3 %w3 shared_fc1 %s1 shared_fc2 %s2 shared_fc3 %s3 {k = 1 : i64, activation = #moe.activation<silu>} : (tensor<?x2xf32>, tensor<?x2xf32>, tensor<2x4x2xf32>, tensor<2x4xf32>, tensor<2x2x4xf32>, tensor<2x4x2xf32>, tensor<1x4x2xf32>, tensor<1x2x4xf32>, tensor<1x4x2xf32>) -> tensor<?x2xf32>
  %z = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 fc3 %w3 {k = 1 : i64, activation = #moe.activation<silu>} : (tensor<?x2xf32>, tensor<?x2xf32>, tensor<2x4x2xf32>, tensor<2x4xf32>, tensor<2x2x4xf32>, tensor<2x4x2xf32>) -> tensor<?x2xf32>
  return %y, %z : tensor<?x2xf32>, tensor<?x2xf32>
}

// -----

// A group is converted whole or not at all: a bias that is an argument
// keeps the routed experts f32 (weights and biases share one type), while
// the shared experts, all constants, are converted. Weights that are
// arguments, and bf16 ones, are left as they are.
// CHECK-LABEL: func.func @left_alone
// CHECK:      moe.layer {{.*}} : (tensor<?x2xf32>, tensor<?x2xf32>, tensor<2x4x2xf32>, tensor<2x4xf32>, tensor<2x2x4xf32>, tensor<1x4x2xbf16>, tensor<1x2x4xbf16>) -> tensor<?x2xf32>
// CHECK:      moe.layer {{.*}} : (tensor<?x2xf32>, tensor<?x2xf32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>) -> tensor<?x2xf32>
// CHECK:      moe.layer {{.*}} : (tensor<?x2xf32>, tensor<?x2xf32>, tensor<2x4x2xbf16>, tensor<2x2x4xbf16>) -> tensor<?x2xf32>
func.func @left_alone(%x: tensor<?x2xf32>, %logits: tensor<?x2xf32>, %b1: tensor<2x4xf32>, %a1: tensor<2x4x2xf32>, %h1: tensor<2x4x2xbf16>, %h2: tensor<2x2x4xbf16>) -> (tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32>) {
  %w1 = arith.constant dense<1.0> : tensor<2x4x2xf32>
  %w2 = arith.constant dense<2.0> : tensor<2x2x4xf32>
  %s1 = arith.constant dense<4.0> : tensor<1x4x2xf32>
  %s2 = arith.constant dense<5.0> : tensor<1x2x4xf32>
  %y = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 {k = 1 : i64} : (tensor<?x2xf32>, tensor<?x2xf32>, tensor<2x4x2xf32>, tensor<2x4xf32>, tensor<2x2x4xf32>, tensor<1x4x2xf32>, tensor<1x2x4xf32>) -> tensor<?x2xf32>
  %z = moe.layer %x, %logits fc1 %a1 fc2 %w2 {k = 1 : i64} : (tensor<?x2xf32>, tensor<?x2xf32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>) -> tensor<?x2xf32>
  %v = moe.layer %x, %logits fc1 %h1 fc2 %h2 {k = 1 : i64} : (tensor<?x2xf32>, tensor<?x2xf32>, tensor<2x4x2xbf16>, tensor<2x2x4xbf16>) -> tensor<?x2xf32>
  return %y, %z, %v : tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32>
}

// -----

// Quantised layers keep their packed weights and float scales.
// CHECK-LABEL: func.func @quantised
// CHECK:      moe.layer {{.*}} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x32xui8>, tensor<4x64x64xui8>, tensor<4x256x2xf32>, tensor<4x64x4xf32>) -> tensor<?x64xf32>
func.func @quantised(%x: tensor<?x64xf32>, %logits: tensor<?x4xf32>) -> tensor<?x64xf32> {
  %w1 = arith.constant dense<17> : tensor<4x256x32xui8>
  %w2 = arith.constant dense<17> : tensor<4x64x64xui8>
  %s1 = arith.constant dense<0.5> : tensor<4x256x2xf32>
  %s2 = arith.constant dense<0.5> : tensor<4x64x4xf32>
  %y = moe.layer %x, %logits fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {k = 2 : i64, activation = #moe.activation<swiglu>, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x32xui8>, tensor<4x64x64xui8>, tensor<4x256x2xf32>, tensor<4x64x4xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
