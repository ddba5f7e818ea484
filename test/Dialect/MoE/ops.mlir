// RUN: moe-opt %s --split-input-file | FileCheck %s
// Round-trip: print, parse the printed form again, and compare.
// RUN: moe-opt %s --split-input-file | moe-opt --split-input-file | FileCheck %s
// Generic form survives as well.
// RUN: moe-opt %s --split-input-file --mlir-print-op-generic | moe-opt --split-input-file | FileCheck %s

// CHECK-LABEL: func @route_softmax
// CHECK: %{{.*}}, %{{.*}} = moe.route %{{.*}} {k = 2 : i64, normalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
func.func @route_softmax(%logits: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %ids = moe.route %logits {k = 2 : i64, normalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %ids : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// The router's MatMul inside the route: tokens and router weight, bias too.
// CHECK-LABEL: func @route_router_weight
// CHECK: moe.route %{{.*}} router_weight %{{.*}} {k = 2 : i64, normalize} : tensor<?x64xf32> router_weight tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK: moe.route %{{.*}} router_weight %{{.*}} bias %{{.*}} {k = 2 : i64, scoring = #moe.scoring<sigmoid>} : tensor<?x64xf32> router_weight tensor<8x64xf32>, tensor<8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
func.func @route_router_weight(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %bias: tensor<8xf32>) -> (tensor<?x2xi32>, tensor<?x2xi32>) {
  %w, %ids = moe.route %x router_weight %r {k = 2 : i64, normalize} : tensor<?x64xf32> router_weight tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w2, %ids2 = moe.route %x router_weight %r bias %bias {k = 2 : i64, scoring = #moe.scoring<sigmoid>} : tensor<?x64xf32> router_weight tensor<8x64xf32>, tensor<8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %ids, %ids2 : tensor<?x2xi32>, tensor<?x2xi32>
}

// -----

// A layer given the router weight [E + zero experts, H] instead of logits.
// CHECK-LABEL: func @layer_router_weight
// CHECK: moe.layer %{{.*}} router_weight %{{.*}} fc1 %{{.*}} fc2 %{{.*}} {k = 2 : i64, zero_experts = [#moe.zero_expert<copy>]} : (tensor<2x3x64xf32>, tensor<5x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<2x3x64xf32>
func.func @layer_router_weight(%x: tensor<2x3x64xf32>, %r: tensor<5x64xf32>, %w1: tensor<4x32x64xf32>, %w2: tensor<4x64x32xf32>) -> tensor<2x3x64xf32> {
  %y = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 {k = 2 : i64, zero_experts = [#moe.zero_expert<copy>]} : (tensor<2x3x64xf32>, tensor<5x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<2x3x64xf32>
  return %y : tensor<2x3x64xf32>
}

// -----

// DeepSeek-V3 routing: sigmoid scores, bias-corrected selection, 8 groups
// scored by their two best experts, 4 kept, scaled weights.
// CHECK-LABEL: func @route_deepseek
// CHECK: moe.route %{{.*}} bias %{{.*}} {group_scoring = #moe.group_scoring<top2_sum>, k = 8 : i64, normalize, num_groups = 8 : i64, scaling = 2.500000e+00 : f64, scoring = #moe.scoring<sigmoid>, top_groups = 4 : i64} : tensor<?x256xf32>, tensor<256xf32> -> tensor<?x8xf32>, tensor<?x8xi32>
func.func @route_deepseek(%logits: tensor<?x256xf32>, %bias: tensor<256xf32>) -> (tensor<?x8xf32>, tensor<?x8xi32>) {
  %w, %ids = moe.route %logits bias %bias {k = 8 : i64, scoring = #moe.scoring<sigmoid>, normalize, num_groups = 8 : i64, top_groups = 4 : i64, group_scoring = #moe.group_scoring<top2_sum>, scaling = 2.5} : tensor<?x256xf32>, tensor<256xf32> -> tensor<?x8xf32>, tensor<?x8xi32>
  return %w, %ids : tensor<?x8xf32>, tensor<?x8xi32>
}

// -----

// Top-p routing with k as the cap, and Mixtral's top-k-then-softmax.
// CHECK-LABEL: func @route_top_p
// CHECK: moe.route %{{.*}} {k = 4 : i64, top_p = 4.000000e-01 : f64} : tensor<3x16xbf16> -> tensor<3x4xbf16>, tensor<3x4xi32>
// CHECK: moe.route %{{.*}} {k = 2 : i64, scoring = #moe.scoring<softmax_topk>} : tensor<3x16xbf16> -> tensor<3x2xbf16>, tensor<3x2xi32>
// CHECK: moe.route %{{.*}} {k = 2 : i64, scoring = #moe.scoring<sparse_mixer>} : tensor<3x16xbf16> -> tensor<3x2xbf16>, tensor<3x2xi32>
func.func @route_top_p(%logits: tensor<3x16xbf16>) -> (tensor<3x4xi32>, tensor<3x2xi32>, tensor<3x2xi32>) {
  %w, %ids = moe.route %logits {k = 4 : i64, top_p = 0.4} : tensor<3x16xbf16> -> tensor<3x4xbf16>, tensor<3x4xi32>
  %w2, %ids2 = moe.route %logits {k = 2 : i64, scoring = #moe.scoring<softmax_topk>} : tensor<3x16xbf16> -> tensor<3x2xbf16>, tensor<3x2xi32>
  %w3, %ids3 = moe.route %logits {k = 2 : i64, scoring = #moe.scoring<sparse_mixer>} : tensor<3x16xbf16> -> tensor<3x2xbf16>, tensor<3x2xi32>
  return %ids, %ids2, %ids3 : tensor<3x4xi32>, tensor<3x2xi32>, tensor<3x2xi32>
}

// -----

// CHECK-LABEL: func @dispatch_capacity
// CHECK: moe.dispatch %{{.*}}, %{{.*}} {capacity_factor = 1.250000e+00 : f64, num_experts = 8 : i64} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xf32>, tensor<9xi32>, tensor<32xi32>, tensor<16x2xi32>
func.func @dispatch_capacity(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>) -> tensor<32x64xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 8 : i64, capacity_factor = 1.25} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xf32>, tensor<9xi32>, tensor<32xi32>, tensor<16x2xi32>
  return %rows : tensor<32x64xf32>
}

// -----

// Switch Transformers: at most 6 rows per expert and sequence of %seq
// tokens; combine keeps the dropped tokens.
// CHECK-LABEL: func @dispatch_combine_expert_capacity
// CHECK: moe.dispatch %{{.*}}, %{{.*}} group_size %{{.*}} {expert_capacity = 6 : i64, num_experts = 4 : i64} : tensor<?x64xf32>, tensor<?x1xi32> -> tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x1xi32>
// CHECK: moe.combine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} input %{{.*}} {dropped_pass_through, num_experts = 4 : i64}
func.func @dispatch_combine_expert_capacity(%x: tensor<?x64xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %seq: index) -> tensor<?x64xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids group_size %seq {num_experts = 4 : i64, expert_capacity = 6 : i64} : tensor<?x64xf32>, tensor<?x1xi32> -> tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x1xi32>
  %y = moe.combine %rows, %w, %ids, %slot_rows input %x {num_experts = 4 : i64, dropped_pass_through} : (tensor<?x64xf32>, tensor<?x1xf32>, tensor<?x1xi32>, tensor<?x1xi32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func @layer_switch_capacity
// CHECK: moe.layer %{{.*}}, %{{.*}} fc1 %{{.*}} fc2 %{{.*}} {capacity_per_sequence, dropped_pass_through, expert_capacity = 6 : i64, k = 1 : i64}
func.func @layer_switch_capacity(%x: tensor<?x?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x128x64xf32>, %w2: tensor<4x64x128xf32>) -> tensor<?x?x64xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 1 : i64, activation = #moe.activation<relu>, expert_capacity = 6 : i64, capacity_per_sequence, dropped_pass_through} : (tensor<?x?x64xf32>, tensor<?x4xf32>, tensor<4x128x64xf32>, tensor<4x64x128xf32>) -> tensor<?x?x64xf32>
  return %0 : tensor<?x?x64xf32>
}

// -----

// CHECK-LABEL: func @expert_swiglu_interleaved
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %{{.*}} fc1_bias %{{.*}} fc2 %{{.*}} fc2_bias %{{.*}} {activation = #moe.activation<swiglu>, alpha = 1.702000e+00 : f64, beta = 1.000000e+00 : f64, limit = 7.000000e+00 : f64}
func.func @expert_swiglu_interleaved(%rows: tensor<?x64xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x512x64xf32>, %b1: tensor<4x512xf32>, %w2: tensor<4x64x256xf32>, %b2: tensor<4x64xf32>) -> tensor<?x64xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc1_bias %b1 fc2 %w2 fc2_bias %b2 {activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<interleaved>, alpha = 1.702, beta = 1.0, limit = 7.0} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x512x64xf32>, tensor<4x512xf32>, tensor<4x64x256xf32>, tensor<4x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// SwiGLU with separate gate/up weights (fc3) in bf16, and a GeGLU-style
// gated gelu; f16 weights with plain relu.
// CHECK-LABEL: func @expert_variants
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %{{.*}} fc2 %{{.*}} fc3 %{{.*}} {activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<separate>}
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %{{.*}} fc2 %{{.*}} fc3 %{{.*}} fc3_bias %{{.*}} {activation = #moe.activation<gelu_tanh>}
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %{{.*}} fc2 %{{.*}} :
func.func @expert_variants(%rows: tensor<?x32xf32>, %offsets: tensor<3xi32>, %w1: tensor<2x48x32xbf16>, %w2: tensor<2x32x48xbf16>, %w3: tensor<2x48x32xbf16>, %b3: tensor<2x48xbf16>, %h1: tensor<2x48x32xf16>, %h2: tensor<2x32x48xf16>) -> (tensor<?x32xf32>, tensor<?x32xf32>, tensor<?x32xf32>) {
  %a = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc3 %w3 {activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<separate>} : (tensor<?x32xf32>, tensor<3xi32>, tensor<2x48x32xbf16>, tensor<2x32x48xbf16>, tensor<2x48x32xbf16>) -> tensor<?x32xf32>
  %b = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc3 %w3 fc3_bias %b3 {activation = #moe.activation<gelu_tanh>} : (tensor<?x32xf32>, tensor<3xi32>, tensor<2x48x32xbf16>, tensor<2x32x48xbf16>, tensor<2x48x32xbf16>, tensor<2x48xbf16>) -> tensor<?x32xf32>
  %c = moe.expert %rows, %offsets fc1 %h1 fc2 %h2 : (tensor<?x32xf32>, tensor<3xi32>, tensor<2x48x32xf16>, tensor<2x32x48xf16>) -> tensor<?x32xf32>
  return %a, %b, %c : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?x32xf32>
}

// -----

// CHECK-LABEL: func @combine_plain
// CHECK: moe.combine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {num_experts = 8 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x64xf32>
func.func @combine_plain(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>, %slot_rows: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %out = moe.combine %y, %w, %ids, %slot_rows {num_experts = 8 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x64xf32>
  return %out : tensor<?x64xf32>
}

// -----

// MoE++ zero-computation experts next to a gated shared expert.
// CHECK-LABEL: func @combine_zero_and_shared
// CHECK: moe.combine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} input %{{.*}} shared %{{.*}} shared_gate %{{.*}} constants %{{.*}} constant_gates %{{.*}} {num_experts = 4 : i64, zero_experts = [#moe.zero_expert<zero>, #moe.zero_expert<copy>, #moe.zero_expert<constant>]}
func.func @combine_zero_and_shared(%y: tensor<?x16xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>, %slot_rows: tensor<?x2xi32>, %x: tensor<?x16xf32>, %s: tensor<?x16xf32>, %g: tensor<16xf32>, %v: tensor<1x16xf32>, %cg: tensor<1x2x16xf32>) -> tensor<?x16xf32> {
  %out = moe.combine %y, %w, %ids, %slot_rows input %x shared %s shared_gate %g constants %v constant_gates %cg {num_experts = 4 : i64, zero_experts = [#moe.zero_expert<zero>, #moe.zero_expert<copy>, #moe.zero_expert<constant>]} : (tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<16xf32>, tensor<1x16xf32>, tensor<1x2x16xf32>) -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// ONNX Runtime's test_moe_cpu.py configuration on a [B, S, H] input.
// CHECK-LABEL: func @layer_ort_swiglu
// CHECK: moe.layer %{{.*}}, %{{.*}} fc1 %{{.*}} fc1_bias %{{.*}} fc2 %{{.*}} fc2_bias %{{.*}} {activation = #moe.activation<swiglu>, alpha = 1.702000e+00 : f64, beta = 1.000000e+00 : f64, k = 2 : i64, limit = 7.000000e+00 : f64, normalize} : (tensor<2x32x64xf32>, tensor<64x4xf32>, tensor<4x512x64xf32>, tensor<4x512xf32>, tensor<4x64x256xf32>, tensor<4x64xf32>) -> tensor<2x32x64xf32>
func.func @layer_ort_swiglu(%x: tensor<2x32x64xf32>, %logits: tensor<64x4xf32>, %w1: tensor<4x512x64xf32>, %b1: tensor<4x512xf32>, %w2: tensor<4x64x256xf32>, %b2: tensor<4x64xf32>) -> tensor<2x32x64xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 fc2_bias %b2 {k = 2 : i64, normalize, activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<interleaved>, alpha = 1.702, beta = 1.0, limit = 7.0} : (tensor<2x32x64xf32>, tensor<64x4xf32>, tensor<4x512x64xf32>, tensor<4x512xf32>, tensor<4x64x256xf32>, tensor<4x64xf32>) -> tensor<2x32x64xf32>
  return %0 : tensor<2x32x64xf32>
}

// -----

// Everything at once: separate fc3, bias-corrected grouped routing,
// shared experts with a gate, zero-computation experts and capacity.
// CHECK-LABEL: func @layer_everything
// CHECK: moe.layer %{{.*}}, %{{.*}} fc1 %{{.*}} fc2 %{{.*}} fc3 %{{.*}} score_bias %{{.*}} shared_fc1 %{{.*}} shared_fc2 %{{.*}} shared_fc3 %{{.*}} shared_gate %{{.*}} constants %{{.*}} constant_gates %{{.*}} {activation = #moe.activation<silu>, capacity_factor = 1.250000e+00 : f64, k = 2 : i64, num_groups = 2 : i64, zero_experts = [#moe.zero_expert<zero>, #moe.zero_expert<constant>]}
func.func @layer_everything(%x: tensor<?x64xf32>, %logits: tensor<?x6xf32>, %w1: tensor<4x256x64xbf16>, %w2: tensor<4x64x256xbf16>, %w3: tensor<4x256x64xbf16>, %sb: tensor<6xf32>, %s1: tensor<2x128x64xbf16>, %s2: tensor<2x64x128xbf16>, %s3: tensor<2x128x64xbf16>, %g: tensor<64xf32>, %c: tensor<1x64xf32>, %cg: tensor<1x2x64xf32>) -> tensor<?x64xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 fc3 %w3 score_bias %sb shared_fc1 %s1 shared_fc2 %s2 shared_fc3 %s3 shared_gate %g constants %c constant_gates %cg {k = 2 : i64, activation = #moe.activation<silu>, num_groups = 2 : i64, top_groups = 1 : i64, zero_experts = [#moe.zero_expert<zero>, #moe.zero_expert<constant>], capacity_factor = 1.25} : (tensor<?x64xf32>, tensor<?x6xf32>, tensor<4x256x64xbf16>, tensor<4x64x256xbf16>, tensor<4x256x64xbf16>, tensor<6xf32>, tensor<2x128x64xbf16>, tensor<2x64x128xbf16>, tensor<2x128x64xbf16>, tensor<64xf32>, tensor<1x64xf32>, tensor<1x2x64xf32>) -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func @parallel_call
// CHECK: moe.parallel_call @body(%{{.*}}, %{{.*}}) count(%{{.*}}) : memref<?xf32>, f32
// CHECK: moe.parallel_call @no_captures() count(%{{.*}})
func.func private @body(%buf: memref<?xf32>, %scale: f32, %begin: index, %end: index)
func.func private @no_captures(%begin: index, %end: index)
func.func @parallel_call(%buf: memref<?xf32>, %scale: f32, %n: index) {
  moe.parallel_call @body(%buf, %scale) count(%n) : memref<?xf32>, f32
  moe.parallel_call @no_captures() count(%n)
  return
}

// -----

// Quantised experts: 4-bit weights packed two a byte (fc1 [4, 256, 64] is
// stored [4, 256, 32]), block-wise f16 scales and packed zero points.
// CHECK-LABEL: func @expert_int4_block
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %{{.*}} fc1_bias %{{.*}} fc2 %{{.*}} fc1_scales %{{.*}} fc2_scales %{{.*}} fc1_zero_points %{{.*}} {activation = #moe.activation<swiglu>, quant = #moe.quant<bits = 4, block_size = 32>}
func.func @expert_int4_block(%rows: tensor<?x64xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x256x32xui8>, %b1: tensor<4x256xf16>, %w2: tensor<4x64x64xui8>, %s1: tensor<4x256x2xf16>, %s2: tensor<4x64x4xf16>, %z1: tensor<4x256x1xui8>) -> tensor<?x64xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc1_bias %b1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 fc1_zero_points %z1 {activation = #moe.activation<swiglu>, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x32xui8>, tensor<4x256xf16>, tensor<4x64x64xui8>, tensor<4x256x2xf16>, tensor<4x64x4xf16>, tensor<4x256x1xui8>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// The same weights panel-major: fc1's logical [4, 256, 32] bytes as 4
// panels of 64 columns by 8 words of 4 bytes, its block-wise scales
// [4, 256, 2] as 4 panels of 2 blocks by 64 columns.
// CHECK-LABEL: func @expert_int4_panels
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %{{.*}} fc2 %{{.*}} fc1_scales %{{.*}} fc2_scales %{{.*}} {activation = #moe.activation<swiglu>, panel_width = 64 : i64, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x4x8x64x4xui8>, tensor<4x1x16x64x4xui8>, tensor<4x4x2x64xf16>, tensor<4x1x4x64xf16>) -> tensor<?x64xf32>
func.func @expert_int4_panels(%rows: tensor<?x64xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x4x8x64x4xui8>, %w2: tensor<4x1x16x64x4xui8>, %s1: tensor<4x4x2x64xf16>, %s2: tensor<4x1x4x64xf16>) -> tensor<?x64xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {activation = #moe.activation<swiglu>, panel_width = 64 : i64, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x4x8x64x4xui8>, tensor<4x1x16x64x4xui8>, tensor<4x4x2x64xf16>, tensor<4x1x4x64xf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// ONNX Runtime's QMoE: 8-bit per-row scales and zero points, a gated fc3,
// top-k on the raw logits then a softmax over the k.
// CHECK-LABEL: func @layer_int8_row
// CHECK: moe.layer %{{.*}}, %{{.*}} fc1 %{{.*}} fc2 %{{.*}} fc3 %{{.*}} fc1_scales %{{.*}} fc2_scales %{{.*}} fc3_scales %{{.*}} fc1_zero_points %{{.*}} fc2_zero_points %{{.*}} fc3_zero_points %{{.*}} {activation = #moe.activation<silu>, k = 2 : i64, quant = #moe.quant<bits = 8>, scoring = #moe.scoring<softmax_topk>}
func.func @layer_int8_row(%x: tensor<2x3x64xf32>, %logits: tensor<6x4xf32>, %w1: tensor<4x128x64xui8>, %w2: tensor<4x64x128xui8>, %w3: tensor<4x128x64xui8>, %s1: tensor<4x128xf32>, %s2: tensor<4x64xf32>, %s3: tensor<4x128xf32>, %z1: tensor<4x128xui8>, %z2: tensor<4x64xui8>, %z3: tensor<4x128xui8>) -> tensor<2x3x64xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 fc3 %w3 fc1_scales %s1 fc2_scales %s2 fc3_scales %s3 fc1_zero_points %z1 fc2_zero_points %z2 fc3_zero_points %z3 {k = 2 : i64, scoring = #moe.scoring<softmax_topk>, activation = #moe.activation<silu>, quant = #moe.quant<bits = 8, block_size = 0>} : (tensor<2x3x64xf32>, tensor<6x4xf32>, tensor<4x128x64xui8>, tensor<4x64x128xui8>, tensor<4x128x64xui8>, tensor<4x128xf32>, tensor<4x64xf32>, tensor<4x128xf32>, tensor<4x128xui8>, tensor<4x64xui8>, tensor<4x128xui8>) -> tensor<2x3x64xf32>
  return %0 : tensor<2x3x64xf32>
}

// -----

// Expert parallelism: an all-to-all-v started and waited for on a shard.grid
// (the request is a !moe.request), and a layer that is one rank's part of
// an expert-parallel layer (3 of ceil(5 / 2) experts).
// CHECK-LABEL: func @all_to_all
// CHECK-SAME:  (%[[S:.*]]: tensor<?x64xf32>, %[[SC:.*]]: tensor<2xi32>, %[[RC:.*]]: tensor<2xi32>, %[[D:.*]]: tensor<?x64xf32>)
// CHECK:       %[[REQ:.*]], %[[PEND:.*]] = moe.all_to_all_start %[[S]], %[[SC]], %[[RC]] into %[[D]] on @moe_ep : tensor<?x64xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x64xf32>
// CHECK-NEXT:  %[[R:.*]] = moe.all_to_all_wait %[[REQ]], %[[PEND]], %[[S]] : tensor<?x64xf32>, tensor<?x64xf32>
// CHECK-NEXT:  return %[[R]]
// CHECK-LABEL: func.func private @request_type(!moe.request) -> !moe.request
// CHECK-LABEL: func @layer_expert_parallel
// CHECK:       moe.layer %{{.*}}, %{{.*}} fc1 %{{.*}} fc2 %{{.*}} {expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 5>, k = 2 : i64} : (tensor<?x16xf32>, tensor<?x5xf32>, tensor<3x8x16xf32>, tensor<3x16x8xf32>) -> tensor<?x16xf32>
shard.grid @moe_ep(shape = 2)
func.func @all_to_all(%s: tensor<?x64xf32>, %sc: tensor<2xi32>, %rc: tensor<2xi32>, %d: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %req, %pending = moe.all_to_all_start %s, %sc, %rc into %d on @moe_ep : tensor<?x64xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x64xf32>
  %r = moe.all_to_all_wait %req, %pending, %s : tensor<?x64xf32>, tensor<?x64xf32>
  return %r : tensor<?x64xf32>
}
func.func private @request_type(!moe.request) -> !moe.request
func.func @layer_expert_parallel(%x: tensor<?x16xf32>, %l: tensor<?x5xf32>, %w1: tensor<3x8x16xf32>, %w2: tensor<3x16x8xf32>) -> tensor<?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 5>} : (tensor<?x16xf32>, tensor<?x5xf32>, tensor<3x8x16xf32>, tensor<3x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// CHECK-LABEL: func.func @prefetch_experts
// CHECK:       moe.prefetch_experts %{{.*}}, %{{.*}}, %{{.*}} {layer = 1 : i64, predicted} : tensor<?x2xi32>, tensor<8x512x64xf32>, tensor<8x64x256xf32>
// CHECK:       moe.record_routing %{{.*}} {layer = 1 : i64, num_experts = 8 : i64, predicted} : tensor<?x2xi32>
func.func @prefetch_experts(%ids: tensor<?x2xi32>, %w1: tensor<8x512x64xf32>, %w2: tensor<8x64x256xf32>) {
  moe.prefetch_experts %ids, %w1, %w2 {layer = 1 : i64, predicted} : tensor<?x2xi32>, tensor<8x512x64xf32>, tensor<8x64x256xf32>
  moe.record_routing %ids {layer = 1 : i64, num_experts = 8 : i64, predicted} : tensor<?x2xi32>
  return
}
