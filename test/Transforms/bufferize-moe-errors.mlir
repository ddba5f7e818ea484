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
