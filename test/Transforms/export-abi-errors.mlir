// RUN: moe-opt %s --split-input-file --moe-export-abi --verify-diagnostics

// expected-error @+1 {{input 'arg0' must be a ranked tensor, got 'memref<4xf32>'}}
func.func @memref_arg(%m: memref<4xf32>) {
  return
}

// -----

// expected-error @+1 {{input 'arg0' has unsupported element type 'i16'}}
func.func @i16_arg(%t: tensor<4xi16>) -> tensor<4xi16> {
  return %t : tensor<4xi16>
}

// -----

// Dispatched rows number T * k, which the manifest cannot express.
// expected-error @+1 {{output 'result0' dimension 0 is dynamic and cannot be expressed in terms of the function's inputs}}
func.func @rows_out(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>) -> tensor<?x16xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  return %rows : tensor<?x16xf32>
}

// -----

// expected-error @+1 {{cannot export 'half_static': the router's token count is the product of a static and a dynamic dimension of the [B, S, H] input; make both dynamic or both static}}
func.func @half_static(%x: tensor<2x?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<2x?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<2x?x16xf32>, tensor<?x4xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<2x?x16xf32>
  return %0 : tensor<2x?x16xf32>
}

// -----

// expected-error @+1 {{module has no public function to export}}
module {
  func.func private @hidden(%t: tensor<4xf32>) -> tensor<4xf32> {
    return %t : tensor<4xf32>
  }
}
