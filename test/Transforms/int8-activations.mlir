// RUN: moe-opt %s --split-input-file --moe-int8-activations | FileCheck %s

// A 4-bit expert with blocks of 32 columns and K = 256 (fc1) and 128 (fc2),
// whole 128-column steps: marked for the int8 decode kernel.
// CHECK-LABEL: func @int4_blocks
// CHECK:         moe.expert {{.*}} {activation = #moe.activation<swiglu>, moe.int8_activations, quant = #moe.quant<bits = 4, block_size = 32>}
func.func @int4_blocks(%rows: tensor<?x256xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x256x128xui8>, %w2: tensor<4x256x64xui8>, %s1: tensor<4x256x8xf32>, %s2: tensor<4x256x4xf32>) -> tensor<?x256xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {activation = #moe.activation<swiglu>, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x256xf32>, tensor<5xi32>, tensor<4x256x128xui8>, tensor<4x256x64xui8>, tensor<4x256x8xf32>, tensor<4x256x4xf32>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

// 8-bit, per-row scales: K = 128 (fc1) is two 64-byte steps; fc2's K = 72
// is not, and keeps the float kernel, but one projection is enough to mark
// the expert.
// CHECK-LABEL: func @int8_rows_fc1_only
// CHECK:         moe.expert {{.*}}{moe.int8_activations, quant
func.func @int8_rows_fc1_only(%rows: tensor<?x128xf32>, %offsets: tensor<3xi32>, %w1: tensor<2x72x128xui8>, %w2: tensor<2x128x72xui8>, %s1: tensor<2x72xf32>, %s2: tensor<2x128xf32>) -> tensor<?x128xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {activation = #moe.activation<relu>, quant = #moe.quant<bits = 8>} : (tensor<?x128xf32>, tensor<3xi32>, tensor<2x72x128xui8>, tensor<2x128x72xui8>, tensor<2x72xf32>, tensor<2x128xf32>) -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}

// -----

// Not marked: explicit zero points on both projections, a K that is not a
// whole number of steps (H = 72), blocks of 16 columns, float weights.
// CHECK-LABEL: func @not_marked
// CHECK-NOT:     moe.int8_activations
// CHECK:         return
func.func @not_marked(%rows: tensor<?x256xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x256x128xui8>, %w2: tensor<4x256x64xui8>, %s1: tensor<4x256x8xf32>, %s2: tensor<4x256x4xf32>, %z1: tensor<4x256x4xui8>, %z2: tensor<4x256x2xui8>,
                     %r72: tensor<?x72xf32>, %q1: tensor<4x40x72xui8>, %q2: tensor<4x72x40xui8>, %t1: tensor<4x40xf32>, %t2: tensor<4x72xf32>,
                     %b1: tensor<4x256x128xui8>, %b2: tensor<4x256x64xui8>, %u1: tensor<4x256x16xf32>, %u2: tensor<4x256x8xf32>,
                     %f1: tensor<4x256x256xf32>, %f2: tensor<4x256x128xf32>) -> (tensor<?x256xf32>, tensor<?x72xf32>, tensor<?x256xf32>, tensor<?x256xf32>) {
  %zp = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 fc1_zero_points %z1 fc2_zero_points %z2 {activation = #moe.activation<swiglu>, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x256xf32>, tensor<5xi32>, tensor<4x256x128xui8>, tensor<4x256x64xui8>, tensor<4x256x8xf32>, tensor<4x256x4xf32>, tensor<4x256x4xui8>, tensor<4x256x2xui8>) -> tensor<?x256xf32>
  %ragged = moe.expert %r72, %offsets fc1 %q1 fc2 %q2 fc1_scales %t1 fc2_scales %t2 {activation = #moe.activation<relu>, quant = #moe.quant<bits = 8>} : (tensor<?x72xf32>, tensor<5xi32>, tensor<4x40x72xui8>, tensor<4x72x40xui8>, tensor<4x40xf32>, tensor<4x72xf32>) -> tensor<?x72xf32>
  %small = moe.expert %rows, %offsets fc1 %b1 fc2 %b2 fc1_scales %u1 fc2_scales %u2 {activation = #moe.activation<swiglu>, quant = #moe.quant<bits = 4, block_size = 16>} : (tensor<?x256xf32>, tensor<5xi32>, tensor<4x256x128xui8>, tensor<4x256x64xui8>, tensor<4x256x16xf32>, tensor<4x256x8xf32>) -> tensor<?x256xf32>
  %float = moe.expert %rows, %offsets fc1 %f1 fc2 %f2 {activation = #moe.activation<swiglu>} : (tensor<?x256xf32>, tensor<5xi32>, tensor<4x256x256xf32>, tensor<4x256x128xf32>) -> tensor<?x256xf32>
  return %zp, %ragged, %small, %float : tensor<?x256xf32>, tensor<?x72xf32>, tensor<?x256xf32>, tensor<?x256xf32>
}
