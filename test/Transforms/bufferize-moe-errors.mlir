// RUN: moe-opt %s --split-input-file --verify-diagnostics --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map"

// Panel-major weights whose panels the CPU schedule cannot take whole are
// an error, not a wrong read: I = 112 splits into column panels of 56,
// which are not whole panels of 16.
func.func @expert_panels_misfit(%x: tensor<?x32xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x7x32x16xf32>, %w2: tensor<4x2x112x16xf32>) -> tensor<?x32xf32> {
  // expected-error @+2 {{failed to bufferize op}}
  // expected-error @+1 {{panel-major weights of width 16 need the CPU schedule's column panels of I = 112 and H = 32 to be whole weight panels}}
  %y = moe.expert %x, %offsets fc1 %w1 fc2 %w2 {panel_width = 16 : i64} : (tensor<?x32xf32>, tensor<5xi32>, tensor<4x7x32x16xf32>, tensor<4x2x112x16xf32>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// Panel-major quantised weights are read by the int8 panel kernel alone:
// without the int8 activations' mark the float kernels would read them as
// rows, so the lowering refuses them.
func.func @quant_panels_without_int8(%x: tensor<?x64xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x1x16x64x4xui8>, %w2: tensor<4x1x16x64x4xui8>, %s: tensor<4x64xf32>) -> tensor<?x64xf32> {
  // expected-error @+2 {{failed to bufferize op}}
  // expected-error @+1 {{panel-major quantised weights need the int8 kernels (moe.int8_activations, no zero points, f32 rows and K of whole 64-byte steps) and a panel width that is a multiple of 16, got 64}}
  %y = moe.expert %x, %offsets fc1 %w1 fc2 %w2 fc1_scales %s fc2_scales %s {panel_width = 64 : i64, quant = #moe.quant<bits = 8, block_size = 0>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x1x16x64x4xui8>, tensor<4x1x16x64x4xui8>, tensor<4x64xf32>, tensor<4x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// ... and 16 columns (a vpdpbusd's lanes) from a multiple of 16 are one
// load: panels of 8 columns are refused.
func.func @quant_panels_of_8(%x: tensor<?x64xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x8x16x8x4xui8>, %w2: tensor<4x8x16x8x4xui8>, %s: tensor<4x64xf32>) -> tensor<?x64xf32> {
  // expected-error @+2 {{failed to bufferize op}}
  // expected-error @+1 {{panel-major quantised weights need the int8 kernels (moe.int8_activations, no zero points, f32 rows and K of whole 64-byte steps) and a panel width that is a multiple of 16, got 8}}
  %y = moe.expert %x, %offsets fc1 %w1 fc2 %w2 fc1_scales %s fc2_scales %s {moe.int8_activations, panel_width = 8 : i64, quant = #moe.quant<bits = 8, block_size = 0>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x8x16x8x4xui8>, tensor<4x8x16x8x4xui8>, tensor<4x64xf32>, tensor<4x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
