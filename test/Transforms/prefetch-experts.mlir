// RUN: moe-opt %s --split-input-file --moe-prefetch-experts | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-prefetch-experts=pre-gating=false | FileCheck %s --check-prefix=NOGUESS
// RUN: moe-opt %s --split-input-file --moe-prefetch-experts --moe-record-routing | FileCheck %s --check-prefix=BOTH
// RUN: moe-opt %s --split-input-file --moe-prefetch-experts --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" | FileCheck %s --check-prefix=CALL

// Two layers with constant expert weights: after each route, its own
// experts are announced (layer 0, then layer 1); after layer 0's, layer 1's
// router runs on layer 0's tokens and its guess is announced for layer 1's
// weights, a layer early. Weights defined before the guess are used as they
// are; a later one (layer 1's fc2) is copied to the guess.
// CHECK-LABEL: func.func @two_layers
// CHECK-SAME: (%[[X:.*]]: tensor<4x64xf32>, %[[R0:.*]]: tensor<8x64xf32>, %[[R1:.*]]: tensor<8x64xf32>)
// CHECK-DAG: %[[A1:.*]] = arith.constant dense<1.000000e+00> : tensor<8x256x64xf32>
// CHECK-DAG: %[[A2:.*]] = arith.constant dense<2.000000e+00> : tensor<8x64x128xf32>
// CHECK-DAG: %[[B1:.*]] = arith.constant dense<3.000000e+00> : tensor<8x256x64xf32>
// CHECK: %{{.*}}, %[[IDS0:.*]] = moe.route %[[X]] router_weight %[[R0]]
// CHECK-NEXT: moe.prefetch_experts %[[IDS0]], %[[A1]], %[[A2]] {layer = 0 : i64} : tensor<4x2xi32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>
// CHECK-NEXT: %{{.*}}, %[[GUESS:.*]] = moe.route %[[X]] router_weight %[[R1]] {k = 2 : i64}
// CHECK-NEXT: %[[B2COPY:.*]] = arith.constant dense<4.000000e+00> : tensor<8x64x128xf32>
// CHECK-NEXT: moe.prefetch_experts %[[GUESS]], %[[B1]], %[[B2COPY]] {layer = 1 : i64, predicted}
// CHECK: moe.dispatch
// CHECK: %[[B2:.*]] = arith.constant dense<4.000000e+00> : tensor<8x64x128xf32>
// CHECK: %{{.*}}, %[[IDS1:.*]] = moe.route %{{.*}} router_weight %[[R1]]
// CHECK-NEXT: moe.prefetch_experts %[[IDS1]], %[[B1]], %[[B2]] {layer = 1 : i64} : tensor<4x2xi32>
// CHECK-NOT: moe.prefetch_experts
// CHECK: return
// NOGUESS-LABEL: func.func @two_layers
// NOGUESS-COUNT-2: moe.prefetch_experts
// NOGUESS-NOT: predicted
// NOGUESS: return
// With -moe-record-routing after it, the guess is not taken for a layer:
// layers are still numbered 0 and 1.
// BOTH-LABEL: func.func @two_layers
// BOTH: moe.record_routing %{{.*}} {layer = 0 : i64, num_experts = 8 : i64}
// BOTH: moe.record_routing %{{.*}} {layer = 1 : i64, num_experts = 8 : i64, predicted}
// BOTH: moe.record_routing %{{.*}} {layer = 1 : i64, num_experts = 8 : i64}
// BOTH-NOT: moe.record_routing
// BOTH: return
// Bufferized: one runtime call per weight, with the layer, whether it is a
// guess, the experts, the ids' shape and address, the weight's address and
// one expert's bytes (256 x 64 x 4, 64 x 128 x 4).
// CALL: func.func private @moe_rt_prefetch_experts(i64, i64, i64, index, index, index, index, i64)
// CALL-LABEL: func.func @two_layers
// CALL: %[[A1:.*]] = memref.get_global @__constant_8x256x64xf32 :
// CALL: %[[A2:.*]] = memref.get_global @__constant_8x64x128xf32 :
// CALL: %[[IDS0:.*]] = memref.extract_aligned_pointer_as_index %{{.*}} : memref<4x2xi32>
// CALL: %[[W1:.*]] = memref.extract_aligned_pointer_as_index %[[A1]]
// CALL: call @moe_rt_prefetch_experts(%c0_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c8_i64{{[_0-9]*}}, %{{.*}}, %{{.*}}, %[[IDS0]], %[[W1]], %c65536_i64{{[_0-9]*}})
// CALL: %[[W2:.*]] = memref.extract_aligned_pointer_as_index %[[A2]]
// CALL: call @moe_rt_prefetch_experts(%c0_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c8_i64{{[_0-9]*}}, %{{.*}}, %{{.*}}, %[[IDS0]], %[[W2]], %c32768_i64{{[_0-9]*}})
// The guess, for layer 1: its copy of fc2 is the same global as fc2.
// CALL: %[[B2:.*]] = memref.get_global @[[B2NAME:.*]] : memref<8x64x128xf32>
// CALL: call @moe_rt_prefetch_experts(%c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c8_i64{{[_0-9]*}}, {{.*}}, %c65536_i64
// CALL: call @moe_rt_prefetch_experts(%c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c8_i64{{[_0-9]*}}, {{.*}}, %c32768_i64
// CALL: memref.get_global @[[B2NAME]] : memref<8x64x128xf32>
// CALL: call @moe_rt_prefetch_experts(%c1_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c8_i64{{[_0-9]*}}, {{.*}}, %c65536_i64
// CALL: call @moe_rt_prefetch_experts(%c1_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c8_i64{{[_0-9]*}}, {{.*}}, %c32768_i64
func.func @two_layers(%x: tensor<4x64xf32>, %r0: tensor<8x64xf32>, %r1: tensor<8x64xf32>) -> tensor<4x64xf32> {
  %a1 = arith.constant dense<1.0> : tensor<8x256x64xf32>
  %a2 = arith.constant dense<2.0> : tensor<8x64x128xf32>
  %b1 = arith.constant dense<3.0> : tensor<8x256x64xf32>
  %w0, %i0 = moe.route %x router_weight %r0 {k = 2 : i64} : tensor<4x64xf32> router_weight tensor<8x64xf32> -> tensor<4x2xf32>, tensor<4x2xi32>
  %rows0, %off0, %tok0, %slots0 = moe.dispatch %x, %i0 {num_experts = 8 : i64} : tensor<4x64xf32>, tensor<4x2xi32> -> tensor<8x64xf32>, tensor<9xi32>, tensor<8xi32>, tensor<4x2xi32>
  %y0 = moe.expert %rows0, %off0 fc1 %a1 fc2 %a2 {activation = #moe.activation<swiglu>} : (tensor<8x64xf32>, tensor<9xi32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>) -> tensor<8x64xf32>
  %h = moe.combine %y0, %w0, %i0, %slots0 {num_experts = 8 : i64} : (tensor<8x64xf32>, tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x64xf32>
  %b2 = arith.constant dense<4.0> : tensor<8x64x128xf32>
  %w1, %i1 = moe.route %h router_weight %r1 {k = 2 : i64} : tensor<4x64xf32> router_weight tensor<8x64xf32> -> tensor<4x2xf32>, tensor<4x2xi32>
  %rows1, %off1, %tok1, %slots1 = moe.dispatch %h, %i1 {num_experts = 8 : i64} : tensor<4x64xf32>, tensor<4x2xi32> -> tensor<8x64xf32>, tensor<9xi32>, tensor<8xi32>, tensor<4x2xi32>
  %y1 = moe.expert %rows1, %off1 fc1 %b1 fc2 %b2 {activation = #moe.activation<swiglu>} : (tensor<8x64xf32>, tensor<9xi32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>) -> tensor<8x64xf32>
  %out = moe.combine %y1, %w1, %i1, %slots1 {num_experts = 8 : i64} : (tensor<8x64xf32>, tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x64xf32>
  return %out : tensor<4x64xf32>
}

// -----

// Expert weights passed as arguments are the caller's memory: nothing is
// announced, for the layer nor as a guess.
// CHECK-LABEL: func.func @argument_weights
// CHECK-NOT: moe.prefetch_experts
// CHECK: return
func.func @argument_weights(%x: tensor<4x64xf32>, %r0: tensor<8x64xf32>, %w1: tensor<8x256x64xf32>, %w2: tensor<8x64x128xf32>) -> tensor<4x64xf32> {
  %w0, %i0 = moe.route %x router_weight %r0 {k = 2 : i64} : tensor<4x64xf32> router_weight tensor<8x64xf32> -> tensor<4x2xf32>, tensor<4x2xi32>
  %rows0, %off0, %tok0, %slots0 = moe.dispatch %x, %i0 {num_experts = 8 : i64} : tensor<4x64xf32>, tensor<4x2xi32> -> tensor<8x64xf32>, tensor<9xi32>, tensor<8xi32>, tensor<4x2xi32>
  %y0 = moe.expert %rows0, %off0 fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>} : (tensor<8x64xf32>, tensor<9xi32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>) -> tensor<8x64xf32>
  %h = moe.combine %y0, %w0, %i0, %slots0 {num_experts = 8 : i64} : (tensor<8x64xf32>, tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x64xf32>
  return %h : tensor<4x64xf32>
}

// -----

// Logits-fed routes have no router weight to guess with: each layer still
// announces its own experts, no guess is made.
// CHECK-LABEL: func.func @logits_fed
// CHECK: moe.prefetch_experts %{{.*}} {layer = 0 : i64}
// CHECK-NOT: predicted
// CHECK: moe.prefetch_experts %{{.*}} {layer = 1 : i64}
// CHECK-NOT: moe.prefetch_experts
// CHECK: return
func.func @logits_fed(%x: tensor<4x64xf32>, %l0: tensor<4x8xf32>, %l1: tensor<4x8xf32>) -> tensor<4x64xf32> {
  %a1 = arith.constant dense<1.0> : tensor<8x256x64xf32>
  %a2 = arith.constant dense<2.0> : tensor<8x64x128xf32>
  %w0, %i0 = moe.route %l0 {k = 2 : i64} : tensor<4x8xf32> -> tensor<4x2xf32>, tensor<4x2xi32>
  %rows0, %off0, %tok0, %slots0 = moe.dispatch %x, %i0 {num_experts = 8 : i64} : tensor<4x64xf32>, tensor<4x2xi32> -> tensor<8x64xf32>, tensor<9xi32>, tensor<8xi32>, tensor<4x2xi32>
  %y0 = moe.expert %rows0, %off0 fc1 %a1 fc2 %a2 {activation = #moe.activation<swiglu>} : (tensor<8x64xf32>, tensor<9xi32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>) -> tensor<8x64xf32>
  %h = moe.combine %y0, %w0, %i0, %slots0 {num_experts = 8 : i64} : (tensor<8x64xf32>, tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x64xf32>
  %w1, %i1 = moe.route %l1 {k = 2 : i64} : tensor<4x8xf32> -> tensor<4x2xf32>, tensor<4x2xi32>
  %rows1, %off1, %tok1, %slots1 = moe.dispatch %h, %i1 {num_experts = 8 : i64} : tensor<4x64xf32>, tensor<4x2xi32> -> tensor<8x64xf32>, tensor<9xi32>, tensor<8xi32>, tensor<4x2xi32>
  %y1 = moe.expert %rows1, %off1 fc1 %a1 fc2 %a2 {activation = #moe.activation<swiglu>} : (tensor<8x64xf32>, tensor<9xi32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>) -> tensor<8x64xf32>
  %out = moe.combine %y1, %w1, %i1, %slots1 {num_experts = 8 : i64} : (tensor<8x64xf32>, tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x64xf32>
  return %out : tensor<4x64xf32>
}
