// RUN: moe-opt %s --split-input-file --moe-decompose-layer | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-decompose-layer=bf16-rows=1 | FileCheck %s --check-prefix=NARROW
// RUN: moe-opt %s --split-input-file --moe-decompose-layer="bf16-rows=1 round-f32-rows=1" | FileCheck %s --check-prefix=ROUND
// RUN: moe-opt %s --split-input-file --moe-decompose-layer=fuse-router=0 | FileCheck %s --check-prefix=UNFUSED

// The ONNX Runtime test_moe_cpu.py layer: the [B, S, H] input is collapsed
// around the four stages and every layer attribute lands on its stage.
// CHECK-LABEL: func @ort_swiglu
// CHECK-SAME: (%[[X:.*]]: tensor<2x32x64xf32>, %[[L:.*]]: tensor<64x4xf32>, %[[W1:.*]]: tensor<4x512x64xf32>, %[[B1:.*]]: tensor<4x512xf32>, %[[W2:.*]]: tensor<4x64x256xf32>, %[[B2:.*]]: tensor<4x64xf32>)
// CHECK:      %[[T:.*]] = tensor.collapse_shape %[[X]] {{\[}}[0, 1], [2]] : tensor<2x32x64xf32> into tensor<64x64xf32>
// CHECK-NEXT: %[[W:.*]], %[[IDS:.*]] = moe.route %[[L]] {k = 2 : i64, normalize} : tensor<64x4xf32> -> tensor<64x2xf32>, tensor<64x2xi32>
// CHECK-NEXT: %[[ROWS:.*]], %[[OFF:.*]], %{{.*}}, %[[SLOTS:.*]] = moe.dispatch %[[T]], %[[IDS]] {num_experts = 4 : i64} : tensor<64x64xf32>, tensor<64x2xi32> -> tensor<128x64xf32>, tensor<5xi32>, tensor<128xi32>, tensor<64x2xi32>
// CHECK-NEXT: %[[Y:.*]] = moe.expert %[[ROWS]], %[[OFF]] fc1 %[[W1]] fc1_bias %[[B1]] fc2 %[[W2]] fc2_bias %[[B2]] {activation = #moe.activation<swiglu>, alpha = 1.702000e+00 : f64, beta = 1.000000e+00 : f64, limit = 7.000000e+00 : f64} : (tensor<128x64xf32>, tensor<5xi32>, tensor<4x512x64xf32>, tensor<4x512xf32>, tensor<4x64x256xf32>, tensor<4x64xf32>) -> tensor<128x64xf32>
// CHECK-NEXT: %[[OUT:.*]] = moe.combine %[[Y]], %[[W]], %[[IDS]], %[[SLOTS]] {num_experts = 4 : i64} : (tensor<128x64xf32>, tensor<64x2xf32>, tensor<64x2xi32>, tensor<64x2xi32>) -> tensor<64x64xf32>
// CHECK-NEXT: %[[R:.*]] = tensor.expand_shape %[[OUT]] {{\[}}[0, 1], [2]] output_shape [2, 32, 64] : tensor<64x64xf32> into tensor<2x32x64xf32>
// CHECK-NEXT: return %[[R]]
// CHECK-NOT:  moe.layer
func.func @ort_swiglu(%x: tensor<2x32x64xf32>, %logits: tensor<64x4xf32>, %w1: tensor<4x512x64xf32>, %b1: tensor<4x512xf32>, %w2: tensor<4x64x256xf32>, %b2: tensor<4x64xf32>) -> tensor<2x32x64xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 fc2_bias %b2 {k = 2 : i64, normalize, activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<interleaved>, alpha = 1.702, beta = 1.0, limit = 7.0} : (tensor<2x32x64xf32>, tensor<64x4xf32>, tensor<4x512x64xf32>, tensor<4x512xf32>, tensor<4x64x256xf32>, tensor<4x64xf32>) -> tensor<2x32x64xf32>
  return %0 : tensor<2x32x64xf32>
}

// -----

// DeepSeek-V3-style routing with capacity: dynamic token count, route
// attributes and the score bias go to moe.route, capacity to moe.dispatch.
// CHECK-LABEL: func @deepseek_routing
// CHECK-SAME: (%[[X:.*]]: tensor<?x32xf32>, %[[L:.*]]: tensor<?x16xf32>, %{{.*}}, %{{.*}}, %[[SB:.*]]: tensor<16xf32>)
// CHECK:      %[[W:.*]], %[[IDS:.*]] = moe.route %[[L]] bias %[[SB]] {group_scoring = #moe.group_scoring<top2_sum>, k = 4 : i64, normalize, num_groups = 4 : i64, scaling = 2.500000e+00 : f64, scoring = #moe.scoring<sigmoid>, top_groups = 2 : i64} : tensor<?x16xf32>, tensor<16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
// CHECK-NEXT: moe.dispatch %[[X]], %[[IDS]] {capacity_factor = 1.500000e+00 : f64, num_experts = 16 : i64} : tensor<?x32xf32>, tensor<?x4xi32> -> tensor<?x32xf32>, tensor<17xi32>, tensor<?xi32>, tensor<?x4xi32>
// CHECK-NEXT: moe.expert
// CHECK-SAME: {activation = #moe.activation<silu>}
// CHECK-NEXT: moe.combine
// CHECK-NEXT: return
func.func @deepseek_routing(%x: tensor<?x32xf32>, %logits: tensor<?x16xf32>, %w1: tensor<16x8x32xbf16>, %w2: tensor<16x32x8xbf16>, %sb: tensor<16xf32>) -> tensor<?x32xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 score_bias %sb {k = 4 : i64, scoring = #moe.scoring<sigmoid>, normalize, num_groups = 4 : i64, top_groups = 2 : i64, group_scoring = #moe.group_scoring<top2_sum>, scaling = 2.5, activation = #moe.activation<silu>, capacity_factor = 1.5} : (tensor<?x32xf32>, tensor<?x16xf32>, tensor<16x8x32xbf16>, tensor<16x32x8xbf16>, tensor<16xf32>) -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

// Switch Transformers: an absolute capacity per sequence groups dispatch by
// the input's sequence length; combine gets the tokens to pass the dropped
// ones through.
// CHECK-LABEL: func @switch_capacity
// CHECK-SAME: (%[[X:.*]]: tensor<?x?x32xf32>, %[[L:.*]]: tensor<?x4xf32>,
// CHECK-DAG:  %[[C1:.*]] = arith.constant 1 : index
// CHECK:      %[[T:.*]] = tensor.collapse_shape %[[X]] {{\[\[}}0, 1], [2]]
// CHECK:      %[[W:.*]], %[[IDS:.*]] = moe.route %[[L]] {k = 1 : i64}
// CHECK-NEXT: %[[S:.*]] = tensor.dim %[[X]], %[[C1]] : tensor<?x?x32xf32>
// CHECK-NEXT: %[[ROWS:.*]], %[[OFF:.*]], %{{.*}}, %[[SLOTS:.*]] = moe.dispatch %[[T]], %[[IDS]] group_size %[[S]] {expert_capacity = 6 : i64, num_experts = 4 : i64}
// CHECK-NEXT: %[[Y:.*]] = moe.expert %[[ROWS]], %[[OFF]]
// CHECK-NEXT: moe.combine %[[Y]], %[[W]], %[[IDS]], %[[SLOTS]] input %[[T]] {dropped_pass_through, num_experts = 4 : i64}
func.func @switch_capacity(%x: tensor<?x?x32xf32>, %logits: tensor<?x4xf32>, %w1: tensor<4x8x32xf32>, %w2: tensor<4x32x8xf32>) -> tensor<?x?x32xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 {k = 1 : i64, activation = #moe.activation<relu>, expert_capacity = 6 : i64, capacity_per_sequence, dropped_pass_through} : (tensor<?x?x32xf32>, tensor<?x4xf32>, tensor<4x8x32xf32>, tensor<4x32x8xf32>) -> tensor<?x?x32xf32>
  return %0 : tensor<?x?x32xf32>
}

// -----

// Two gated shared experts run as one-expert moe.expert ops over all tokens
// (offsets [0, T]); their sum and the gate go to combine, as do the
// zero-computation experts, which are routed but never dispatched.
// CHECK-LABEL: func @shared_and_zero_experts
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[L:.*]]: tensor<?x6xf32>, %[[W1:.*]]: tensor<4x256x64xbf16>, %[[W2:.*]]: tensor<4x64x256xbf16>, %[[W3:.*]]: tensor<4x256x64xbf16>, %[[S1:.*]]: tensor<2x128x64xbf16>, %[[S2:.*]]: tensor<2x64x128xbf16>, %[[S3:.*]]: tensor<2x128x64xbf16>, %[[G:.*]]: tensor<64xf32>, %[[C:.*]]: tensor<1x64xf32>, %[[CG:.*]]: tensor<1x2x64xf32>)
// CHECK-DAG:  %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:  %[[ZERO:.*]] = arith.constant 0 : i32
// CHECK:      %[[W:.*]], %[[IDS:.*]] = moe.route %[[L]] {k = 3 : i64}
// CHECK-NEXT: %[[ROWS:.*]], %[[OFF:.*]], %{{.*}}, %[[SLOTS:.*]] = moe.dispatch %[[X]], %[[IDS]] {num_experts = 4 : i64}
// CHECK-NEXT: %[[Y:.*]] = moe.expert %[[ROWS]], %[[OFF]] fc1 %[[W1]] fc2 %[[W2]] fc3 %[[W3]] {activation = #moe.activation<silu>}
// CHECK-NEXT: %[[T:.*]] = tensor.dim %[[X]], %[[C0]]
// CHECK-NEXT: %[[T32:.*]] = arith.index_cast %[[T]] : index to i32
// CHECK-NEXT: %[[ALL:.*]] = tensor.from_elements %[[ZERO]], %[[T32]] : tensor<2xi32>
// CHECK-NEXT: %[[A1:.*]] = tensor.extract_slice %[[S1]][0, 0, 0] [1, 128, 64] [1, 1, 1]
// CHECK-NEXT: %[[A2:.*]] = tensor.extract_slice %[[S2]][0, 0, 0] [1, 64, 128] [1, 1, 1]
// CHECK-NEXT: %[[A3:.*]] = tensor.extract_slice %[[S3]][0, 0, 0] [1, 128, 64] [1, 1, 1]
// CHECK-NEXT: %[[SA:.*]] = moe.expert %[[X]], %[[ALL]] fc1 %[[A1]] fc2 %[[A2]] fc3 %[[A3]] {activation = #moe.activation<silu>} : (tensor<?x64xf32>, tensor<2xi32>, tensor<1x128x64xbf16>, tensor<1x64x128xbf16>, tensor<1x128x64xbf16>) -> tensor<?x64xf32>
// CHECK-NEXT: %[[B1:.*]] = tensor.extract_slice %[[S1]][1, 0, 0] [1, 128, 64] [1, 1, 1]
// CHECK-NEXT: %[[B2:.*]] = tensor.extract_slice %[[S2]][1, 0, 0] [1, 64, 128] [1, 1, 1]
// CHECK-NEXT: %[[B3:.*]] = tensor.extract_slice %[[S3]][1, 0, 0] [1, 128, 64] [1, 1, 1]
// CHECK-NEXT: %[[SB:.*]] = moe.expert %[[X]], %[[ALL]] fc1 %[[B1]] fc2 %[[B2]] fc3 %[[B3]]
// CHECK-NEXT: %[[D:.*]] = tensor.dim %[[SB]], %[[C0]]
// CHECK-NEXT: %[[INIT:.*]] = tensor.empty(%[[D]]) : tensor<?x64xf32>
// CHECK-NEXT: %[[SHARED:.*]] = linalg.add ins(%[[SA]], %[[SB]] : tensor<?x64xf32>, tensor<?x64xf32>) outs(%[[INIT]] : tensor<?x64xf32>) -> tensor<?x64xf32>
// CHECK-NEXT: %[[OUT:.*]] = moe.combine %[[Y]], %[[W]], %[[IDS]], %[[SLOTS]] input %[[X]] shared %[[SHARED]] shared_gate %[[G]] constants %[[C]] constant_gates %[[CG]] {num_experts = 4 : i64, zero_experts = [#moe.zero_expert<zero>, #moe.zero_expert<constant>]}
// CHECK-NEXT: return %[[OUT]]
func.func @shared_and_zero_experts(%x: tensor<?x64xf32>, %logits: tensor<?x6xf32>, %w1: tensor<4x256x64xbf16>, %w2: tensor<4x64x256xbf16>, %w3: tensor<4x256x64xbf16>, %s1: tensor<2x128x64xbf16>, %s2: tensor<2x64x128xbf16>, %s3: tensor<2x128x64xbf16>, %g: tensor<64xf32>, %c: tensor<1x64xf32>, %cg: tensor<1x2x64xf32>) -> tensor<?x64xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 fc3 %w3 shared_fc1 %s1 shared_fc2 %s2 shared_fc3 %s3 shared_gate %g constants %c constant_gates %cg {k = 3 : i64, activation = #moe.activation<silu>, zero_experts = [#moe.zero_expert<zero>, #moe.zero_expert<constant>]} : (tensor<?x64xf32>, tensor<?x6xf32>, tensor<4x256x64xbf16>, tensor<4x64x256xbf16>, tensor<4x256x64xbf16>, tensor<2x128x64xbf16>, tensor<2x64x128xbf16>, tensor<2x128x64xbf16>, tensor<64xf32>, tensor<1x64xf32>, tensor<1x2x64xf32>) -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}

// -----

// A single shared expert needs no slicing.
// CHECK-LABEL: func @one_shared_expert
// CHECK-SAME: %[[S1:[^:]*]]: tensor<1x32x16xf32>, %[[S2:[^:]*]]: tensor<1x16x32xf32>)
// CHECK-NOT:  tensor.extract_slice
// CHECK:      %[[SHARED:.*]] = moe.expert %{{.*}}, %{{.*}} fc1 %[[S1]] fc2 %[[S2]]
// CHECK-NEXT: moe.combine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} shared %[[SHARED]] {num_experts = 2 : i64}
func.func @one_shared_expert(%x: tensor<8x16xf32>, %logits: tensor<8x2xf32>, %w1: tensor<2x32x16xf32>, %w2: tensor<2x16x32xf32>, %s1: tensor<1x32x16xf32>, %s2: tensor<1x16x32xf32>) -> tensor<8x16xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 {k = 1 : i64} : (tensor<8x16xf32>, tensor<8x2xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>, tensor<1x32x16xf32>, tensor<1x16x32xf32>) -> tensor<8x16xf32>
  return %0 : tensor<8x16xf32>
}

// -----

// Half-precision activations and logits are widened to f32 for the stages
// and the output rounded back once.
// CHECK-LABEL: func @half_precision
// CHECK:       %[[X32:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<?x16xf16>) outs(%{{.*}} : tensor<?x16xf32>)
// CHECK:         arith.extf %{{.*}} : f16 to f32
// CHECK:       %[[L32:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<?x4xbf16>) outs(%{{.*}} : tensor<?x4xf32>)
// CHECK:       moe.route %[[L32]] {{.*}} : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK:       moe.dispatch %[[X32]], {{.*}} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>
// CHECK:       %[[Y:.*]] = moe.combine {{.*}} -> tensor<?x16xf32>
// CHECK:       %[[OUT:.*]] = linalg.generic {{.*}} ins(%[[Y]] : tensor<?x16xf32>) outs(%{{.*}} : tensor<?x16xf16>)
// CHECK:         arith.truncf %{{.*}} : f32 to f16
// CHECK:       return %[[OUT]]
func.func @half_precision(%x: tensor<?x16xf16>, %logits: tensor<?x4xbf16>, %w1: tensor<4x32x16xf16>, %w2: tensor<4x16x32xf16>) -> tensor<?x16xf16> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x16xf16>, tensor<?x4xbf16>, tensor<4x32x16xf16>, tensor<4x16x32xf16>) -> tensor<?x16xf16>
  return %0 : tensor<?x16xf16>
}

// -----

// bf16 tokens with bf16 expert weights. By default they are widened to f32
// before dispatch like any half-precision input; with bf16-rows they are
// dispatched as they are, and the expert outputs are f32 all the same, so
// that combine rounds once, at the output.
// CHECK-LABEL: func @bf16_rows
// CHECK:       %[[WIDE:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<?x32xbf16>) outs(%{{.*}} : tensor<?x32xf32>)
// CHECK:       moe.dispatch %[[WIDE]], %{{.*}} {num_experts = 4 : i64} : tensor<?x32xf32>
// CHECK:       moe.expert {{.*}} : (tensor<?x32xf32>, {{.*}}) -> tensor<?x32xf32>
// NARROW-LABEL: func @bf16_rows
// NARROW-SAME:  (%[[X:.*]]: tensor<?x32xbf16>,
// NARROW:        %[[ROWS:.*]], %[[OFFSETS:.*]], %{{.*}}, %[[SLOTS:.*]] = moe.dispatch %[[X]], %{{.*}} {num_experts = 4 : i64} : tensor<?x32xbf16>, tensor<?x2xi32> -> tensor<?x32xbf16>,
// NARROW:        %[[Y:.*]] = moe.expert %[[ROWS]], %[[OFFSETS]] {{.*}} : (tensor<?x32xbf16>, tensor<5xi32>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>) -> tensor<?x32xf32>
// NARROW:        %[[OUT:.*]] = moe.combine %[[Y]], {{.*}} -> tensor<?x32xf32>
// NARROW:        linalg.generic {{.*}} ins(%[[OUT]] : tensor<?x32xf32>) outs(%{{.*}} : tensor<?x32xbf16>)
func.func @bf16_rows(%x: tensor<?x32xbf16>, %logits: tensor<?x4xf32>, %w1: tensor<4x16x32xbf16>, %w2: tensor<4x32x16xbf16>) -> tensor<?x32xbf16> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x32xbf16>, tensor<?x4xf32>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>) -> tensor<?x32xbf16>
  return %0 : tensor<?x32xbf16>
}

// -----

// bf16-rows leaves f32 weights alone: the tokens are widened.
// NARROW-LABEL: func @bf16_tokens_f32_weights
// NARROW:        moe.dispatch %{{.*}}, %{{.*}} {num_experts = 4 : i64} : tensor<?x32xf32>
func.func @bf16_tokens_f32_weights(%x: tensor<?x32xbf16>, %logits: tensor<?x4xf32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>) -> tensor<?x32xbf16> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x32xbf16>, tensor<?x4xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>) -> tensor<?x32xbf16>
  return %0 : tensor<?x32xbf16>
}

// -----

// f32 tokens with bf16 expert weights (-moe-convert-expert-weights): with
// bf16-rows and round-f32-rows the tokens are rounded to bf16 rows once,
// for the routed experts' dispatch and the shared experts (bf16 too)
// alike; the route and the combine keep the f32 tokens, and the expert
// outputs are f32. bf16-rows alone keeps the f32 rows (bf16 weights alone
// do not round a model's activations).
// NARROW-LABEL: func @f32_tokens_bf16_weights
// NARROW-NOT:    arith.truncf
// NARROW:        moe.dispatch %{{.*}}, %{{.*}} {num_experts = 4 : i64} : tensor<?x32xf32>
// NARROW-NOT:    arith.truncf
// NARROW:        return
// ROUND-LABEL: func @f32_tokens_bf16_weights
// ROUND-SAME:  (%[[X:.*]]: tensor<?x32xf32>, %[[R:.*]]: tensor<4x32xf32>
// ROUND:        %[[ROUNDED:.*]] = linalg.generic {{.*}} ins(%[[X]] : tensor<?x32xf32>) outs(%{{.*}} : tensor<?x32xbf16>)
// ROUND:          arith.truncf %{{.*}} : f32 to bf16
// ROUND:        moe.route %[[X]] router_weight %[[R]]
// ROUND:        %[[ROWS:.*]], %[[OFFSETS:.*]], %{{.*}}, %{{.*}} = moe.dispatch %[[ROUNDED]], %{{.*}} {num_experts = 4 : i64} : tensor<?x32xbf16>, tensor<?x2xi32> -> tensor<?x32xbf16>,
// ROUND:        moe.expert %[[ROWS]], %[[OFFSETS]] {{.*}} : (tensor<?x32xbf16>, tensor<5xi32>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>) -> tensor<?x32xf32>
// ROUND:        moe.expert %[[ROUNDED]], %{{.*}} fc1 {{.*}} : (tensor<?x32xbf16>, tensor<2xi32>, tensor<1x16x32xbf16>, tensor<1x32x16xbf16>) -> tensor<?x32xf32>
// ROUND:        moe.combine {{.*}} -> tensor<?x32xf32>
func.func @f32_tokens_bf16_weights(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %w1: tensor<4x16x32xbf16>, %w2: tensor<4x32x16xbf16>, %s1: tensor<1x16x32xbf16>, %s2: tensor<1x32x16xbf16>) -> tensor<?x32xf32> {
  %0 = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 {k = 2 : i64} : (tensor<?x32xf32>, tensor<4x32xf32>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>, tensor<1x16x32xbf16>, tensor<1x32x16xbf16>) -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

// Only the shared experts' weights bf16: with round-f32-rows they get
// rounded rows of their own; the routed f32 experts read the f32 tokens.
// ROUND-LABEL: func @bf16_shared_weights_only
// ROUND-SAME:  (%[[X:.*]]: tensor<?x32xf32>,
// ROUND:        %[[ROUNDED:.*]] = linalg.generic {{.*}} ins(%[[X]] : tensor<?x32xf32>) outs(%{{.*}} : tensor<?x32xbf16>)
// ROUND:        moe.dispatch %[[X]], %{{.*}} {num_experts = 4 : i64} : tensor<?x32xf32>
// ROUND:        moe.expert %[[ROUNDED]], %{{.*}} fc1 {{.*}} : (tensor<?x32xbf16>, tensor<2xi32>, tensor<1x16x32xbf16>, tensor<1x32x16xbf16>) -> tensor<?x32xf32>
func.func @bf16_shared_weights_only(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %s1: tensor<1x16x32xbf16>, %s2: tensor<1x32x16xbf16>) -> tensor<?x32xf32> {
  %0 = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 {k = 2 : i64} : (tensor<?x32xf32>, tensor<4x32xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>, tensor<1x16x32xbf16>, tensor<1x32x16xbf16>) -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

// A layer given the router weight: the route computes the logits from the
// tokens; with fuse-router=0 a transposed-B contraction computes them
// first. A bf16 router weight follows the tokens, widened to f32.
// CHECK-LABEL: func @router_weight
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[R:.*]]: tensor<8x64xbf16>
// CHECK:      %[[T:.*]] = linalg.generic {{.*}} ins(%[[X]] : tensor<?x64xbf16>)
// CHECK:      %[[RF:.*]] = linalg.generic {{.*}} ins(%[[R]] : tensor<8x64xbf16>)
// CHECK:      moe.route %[[T]] router_weight %[[RF]] {k = 2 : i64} : tensor<?x64xf32> router_weight tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK:      moe.dispatch %[[T]],
// UNFUSED-LABEL: func @router_weight
// UNFUSED-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[R:.*]]: tensor<8x64xbf16>
// UNFUSED:      %[[T:.*]] = linalg.generic {{.*}} ins(%[[X]] : tensor<?x64xbf16>)
// UNFUSED:      %[[RF:.*]] = linalg.generic {{.*}} ins(%[[R]] : tensor<8x64xbf16>)
// UNFUSED:      %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<?x8xf32>)
// UNFUSED:      %[[L:.*]] = linalg.generic {indexing_maps = [#[[$LHS:.*]], #[[$RHS:.*]], #[[$OUT:.*]]], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[T]], %[[RF]] : tensor<?x64xf32>, tensor<8x64xf32>) outs(%[[ZERO]] : tensor<?x8xf32>)
// UNFUSED:        arith.mulf
// UNFUSED:        arith.addf
// UNFUSED:      moe.route %[[L]] {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
func.func @router_weight(%x: tensor<?x64xbf16>, %r: tensor<8x64xbf16>, %w1: tensor<8x32x64xf32>, %w2: tensor<8x64x32xf32>) -> tensor<?x64xbf16> {
  %y = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// Llama 4 (scale_input): each dispatched row is scaled by its slot's
// routing weight (found through slot_rows, 0 for padding rows), the experts
// read the scaled rows, and combine sums their outputs with unit weights.
// CHECK-LABEL: func @scale_input
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[L:.*]]: tensor<?x4xf32>, %[[W1:.*]]: tensor<4x16x16xf32>, %[[W2:.*]]: tensor<4x16x8xf32>)
// CHECK:      %[[W:.*]], %[[IDS:.*]] = moe.route %[[L]] {k = 2 : i64, scoring = #moe.scoring<sigmoid>}
// CHECK-NEXT: %[[ROWS:.*]], %[[OFF:.*]], %[[TOKENS:.*]], %[[SLOTS:.*]] = moe.dispatch %[[X]], %[[IDS]]
// CHECK:      %[[RW:.*]] = linalg.generic {{.*}} ins(%[[TOKENS]] : tensor<?xi32>) outs(%{{.*}} : tensor<?xf32>)
// CHECK-COUNT-2: tensor.extract %[[SLOTS]]
// CHECK:      %[[SCALED:.*]] = linalg.generic {{.*}} ins(%[[ROWS]], %[[RW]] : tensor<?x16xf32>, tensor<?xf32>)
// CHECK:        arith.mulf
// CHECK:      %[[ONES:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<?x2xf32>)
// CHECK:      %[[Y:.*]] = moe.expert %[[SCALED]], %[[OFF]] fc1 %[[W1]] fc2 %[[W2]]
// CHECK-NEXT: moe.combine %[[Y]], %[[ONES]], %[[IDS]], %[[SLOTS]]
func.func @scale_input(%x: tensor<?x16xf32>, %logits: tensor<?x4xf32>, %w1: tensor<4x16x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %0 = moe.layer %x, %logits fc1 %w1 fc2 %w2 {k = 2 : i64, scoring = #moe.scoring<sigmoid>, scale_input, activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<concatenated>} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x16x16xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}
