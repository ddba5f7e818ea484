// RUN: moe-opt %s --split-input-file --moe-fuse-gather | FileCheck %s

// The expert reads the tokens themselves, row r being token row_tokens[r];
// dispatch's rows are left unused (its lowering then skips the copy).
// CHECK-LABEL: func @gather_rows
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[IDS:.*]]: tensor<?x2xi32>, %[[W:.*]]: tensor<?x2xf32>, %[[W1:.*]]: tensor<4x256x64xf32>, %[[W2:.*]]: tensor<4x64x128xf32>)
// CHECK:         %[[ROWS:.*]], %[[OFF:.*]], %[[TOK:.*]], %[[SLOTS:.*]] = moe.dispatch %[[X]], %[[IDS]]
// CHECK:         %[[Y:.*]] = moe.expert %[[X]], %[[OFF]] gather_tokens %[[TOK]] fc1 %[[W1]] fc2 %[[W2]] {activation = #moe.activation<swiglu>}
// CHECK-SAME:      : (tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32>, tensor<4x256x64xf32>, tensor<4x64x128xf32>) -> tensor<?x64xf32>
// CHECK:         moe.combine %[[Y]], %[[W]], %[[IDS]], %[[SLOTS]]
func.func @gather_rows(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x128xf32>) -> tensor<?x64xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x128xf32>) -> tensor<?x64xf32>
  %out = moe.combine %y, %w, %ids, %slot_rows {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x64xf32>
  return %out : tensor<?x64xf32>
}

// -----

// With the combine already fused, the expert keeps its combine operands
// and gets the gather too: row_tokens serves both.
// CHECK-LABEL: func @gather_and_combine
// CHECK-SAME:    (%[[X:.*]]: tensor<8x64xf32>, %[[IDS:.*]]: tensor<8x2xi32>, %[[RW:.*]]: tensor<16xf32>, %[[BASE:.*]]: tensor<8x64xf32>, %[[W1:.*]]: tensor<4x128x64xf32>, %[[W2:.*]]: tensor<4x64x128xf32>)
// CHECK:         %[[ROWS:.*]], %[[OFF:.*]], %[[TOK:.*]], %[[SLOTS:.*]] = moe.dispatch %[[X]], %[[IDS]]
// CHECK:         moe.expert %[[X]], %[[OFF]] gather_tokens %[[TOK]] fc1 %[[W1]] fc2 %[[W2]] combine_into %[[BASE]] row_tokens %[[TOK]] row_weights %[[RW]]
// CHECK-SAME:      -> tensor<8x64xf32>
func.func @gather_and_combine(%x: tensor<8x64xf32>, %ids: tensor<8x2xi32>, %rw: tensor<16xf32>, %base: tensor<8x64xf32>, %w1: tensor<4x128x64xf32>, %w2: tensor<4x64x128xf32>) -> tensor<8x64xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<8x64xf32>, tensor<8x2xi32> -> tensor<16x64xf32>, tensor<5xi32>, tensor<16xi32>, tensor<8x2xi32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 combine_into %base row_tokens %row_tokens row_weights %rw : (tensor<16x64xf32>, tensor<5xi32>, tensor<4x128x64xf32>, tensor<4x64x128xf32>, tensor<8x64xf32>, tensor<16xi32>, tensor<16xf32>) -> tensor<8x64xf32>
  return %y : tensor<8x64xf32>
}

// -----

// Quantised experts are rewritten alike (their lowering copies the rows).
// CHECK-LABEL: func @quantized
// CHECK:         %[[ROWS:.*]], %[[OFF:.*]], %[[TOK:.*]], %[[SLOTS:.*]] = moe.dispatch %[[X:[^,]*]],
// CHECK:         moe.expert %[[X]], %[[OFF]] gather_tokens %[[TOK]] fc1
// CHECK-SAME:      quant = #moe.quant<bits = 4, block_size = 32>
func.func @quantized(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %q1: tensor<4x256x32xui8>, %q2: tensor<4x64x64xui8>, %s1: tensor<4x256x2xf32>, %s2: tensor<4x64x4xf32>) -> tensor<?x64xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  %y = moe.expert %rows, %offsets fc1 %q1 fc2 %q2 fc1_scales %s1 fc2_scales %s2 {activation = #moe.activation<swiglu>, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x32xui8>, tensor<4x64x64xui8>, tensor<4x256x2xf32>, tensor<4x64x4xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Rows that are not dispatch's (here an argument, as after an expert
// exchange), or whose offsets are another dispatch's, are left alone.
// CHECK-LABEL: func @not_dispatched
// CHECK:         moe.expert %arg0, %arg1 fc1
// CHECK-NOT:     gather_tokens
func.func @not_dispatched(%rows: tensor<?x64xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x128x64xf32>, %w2: tensor<4x64x128xf32>) -> tensor<?x64xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x128x64xf32>, tensor<4x64x128xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func @other_offsets
// CHECK:         %[[ROWS:.*]], %{{.*}}, %{{.*}}, %{{.*}} = moe.dispatch
// CHECK:         moe.expert %[[ROWS]], %arg2 fc1
// CHECK-NOT:     gather_tokens
func.func @other_offsets(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %offsets: tensor<5xi32>, %w1: tensor<4x128x64xf32>, %w2: tensor<4x64x128xf32>) -> tensor<?x64xf32> {
  %rows, %o, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x128x64xf32>, tensor<4x64x128xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
