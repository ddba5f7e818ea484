// RUN: moe-opt %s --split-input-file --moe-export-abi | FileCheck %s

// A single-layer function: inputs are named after the layer operands, the
// token count of input and logits is one symbol, the output is expressed in
// it, and the layer's attributes become the reference description.
// CHECK:      module attributes {moe.manifest = "{\22format\22:\22moe-module-1\22,\22functions\22:[{\22entry\22:\22moe_entry_ort_layer\22,
// CHECK-SAME: \22inputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22input\22,\22shape\22:[\22s0\22,64]},{\22dtype\22:\22f32\22,\22name\22:\22logits\22,\22shape\22:[\22s0\22,4]},{\22dtype\22:\22f32\22,\22name\22:\22fc1\22,\22shape\22:[4,512,64]},{\22dtype\22:\22f32\22,\22name\22:\22fc1_bias\22,\22shape\22:[4,512]},{\22dtype\22:\22f32\22,\22name\22:\22fc2\22,\22shape\22:[4,64,256]},{\22dtype\22:\22f32\22,\22name\22:\22fc2_bias\22,\22shape\22:[4,64]}],
// CHECK-SAME: \22name\22:\22ort_layer\22,\22outputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22result0\22,\22shape\22:[\22s0\22,64]}],
// CHECK-SAME: \22reference\22:{\22attributes\22:{\22activation\22:\22swiglu\22,\22alpha\22:1.702,\22beta\22:1,\22capacity_factor\22:null,\22capacity_per_sequence\22:false,\22dropped_pass_through\22:false,\22expert_capacity\22:null,\22group_scoring\22:\22max\22,\22k\22:2,\22limit\22:7,\22normalize\22:true,\22num_groups\22:1,\22scale_input\22:false,\22scaling\22:1,\22scoring\22:\22softmax\22,\22swiglu_fusion\22:\22interleaved\22,\22top_groups\22:1,\22top_p\22:null,\22zero_experts\22:[]},
// CHECK-SAME: \22op\22:\22layer\22,\22operands\22:{\22fc1\22:2,\22fc1_bias\22:3,\22fc2\22:4,\22fc2_bias\22:5,\22input\22:0,\22logits\22:1}}}],\22target\22:\22cpu\22}"}
// CHECK: func.func @ort_layer({{.*}}) -> tensor<?x64xf32> attributes {llvm.emit_c_interface}
func.func @ort_layer(%x: tensor<?x64xf32>, %logits: tensor<?x4xf32>, %w1: tensor<4x512x64xf32>, %b1: tensor<4x512xf32>, %w2: tensor<4x64x256xf32>, %b2: tensor<4x64xf32>) -> tensor<?x64xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 fc2_bias %b2 {k = 2 : i64, normalize, activation = #moe.activation<swiglu>, alpha = 1.702, beta = 1.0, limit = 7.0} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x512x64xf32>, tensor<4x512xf32>, tensor<4x64x256xf32>, tensor<4x64xf32>) -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}

// -----

// [B, S, H] input: the router's token count is the product of both symbols.
// CHECK: \22name\22:\22input\22,\22shape\22:[\22s0\22,\22s1\22,16]},{\22dtype\22:\22f32\22,\22name\22:\22logits\22,\22shape\22:[\22s0*s1\22,4]}
// CHECK-SAME: \22outputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22result0\22,\22shape\22:[\22s0\22,\22s1\22,16]}]
func.func @batched(%x: tensor<?x?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>) -> tensor<?x?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x?x16xf32>, tensor<?x4xf32>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> tensor<?x?x16xf32>
  return %0 : tensor<?x?x16xf32>
}

// -----

// A dynamic dimension that must equal a static one is pinned to it.
// CHECK: \22name\22:\22input\22,\22shape\22:[8,16]},{\22dtype\22:\22f32\22,\22name\22:\22logits\22,\22shape\22:[8,4]}
func.func @pinned(%x: tensor<8x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<8x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<8x16xf32>, tensor<?x4xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<8x16xf32>
  return %0 : tensor<8x16xf32>
}

// -----

// Stage ops: the tokens of %x and %l are related through dispatch of the
// routed ids; names come from moe.name or the position; no reference.
// CHECK: \22inputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22tokens\22,\22shape\22:[\22s0\22,16]},{\22dtype\22:\22f32\22,\22name\22:\22arg1\22,\22shape\22:[\22s0\22,4]}
// CHECK-SAME: \22outputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22result0\22,\22shape\22:[\22s0\22,16]},{\22dtype\22:\22i32\22,\22name\22:\22result1\22,\22shape\22:[\22s0\22,2]}]}]
// CHECK-NOT: reference
func.func @stages(%x: tensor<?x16xf32> {moe.name = "tokens"}, %l: tensor<?x4xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x2xi32>) {
  %w, %ids = moe.route %l {k = 2 : i64} : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  %out = moe.combine %y, %w, %ids, %slot_rows {num_experts = 4 : i64} : (tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x16xf32>
  return %out, %ids : tensor<?x16xf32>, tensor<?x2xi32>
}
