// RUN: moe-opt %s --split-input-file --moe-record-routing | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-record-routing=pre-gating=false | FileCheck %s --check-prefix=NOGUESS
// RUN: moe-opt %s --split-input-file --moe-record-routing --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" | FileCheck %s --check-prefix=CALL

// Every route of a function reports its ids, numbered in order: the
// decoder's layers. The number of experts is the logits' columns.
// CHECK-LABEL: func.func @two_layers
// CHECK: %{{.*}}, %[[IDS0:.*]] = moe.route
// CHECK-NEXT: moe.record_routing %[[IDS0]] {layer = 0 : i64, num_experts = 8 : i64} : tensor<?x2xi32>
// CHECK: %{{.*}}, %[[IDS1:.*]] = moe.route
// CHECK-NEXT: moe.record_routing %[[IDS1]] {layer = 1 : i64, num_experts = 4 : i64} : tensor<?x1xi32>
// Bufferized: a call of the runtime with the layer, the experts, the ids'
// rows and columns and their address.
// CALL: func.func private @moe_rt_record_routing(i64, i64, index, index, index)
// CALL-LABEL: func.func @two_layers
// CALL: %[[ADDR:.*]] = memref.extract_aligned_pointer_as_index
// CALL: call @moe_rt_record_routing(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[ADDR]]) : (i64, i64, index, index, index) -> ()
func.func @two_layers(%l0: tensor<?x8xf32>, %l1: tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x1xi32>) {
  %w0, %i0 = moe.route %l0 {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w1, %i1 = moe.route %l1 {k = 1 : i64} : tensor<?x4xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return %i0, %i1 : tensor<?x2xi32>, tensor<?x1xi32>
}

// -----

// Each function numbers its own routes from 0.
// CHECK-LABEL: func.func @second
// CHECK: moe.record_routing %{{.*}} {layer = 0 : i64, num_experts = 16 : i64}
func.func @second(%l: tensor<3x16xf32>) -> tensor<3x4xi32> {
  %w, %i = moe.route %l {k = 4 : i64} : tensor<3x16xf32> -> tensor<3x4xf32>, tensor<3x4xi32>
  return %i : tensor<3x4xi32>
}

// -----

// Pre-gating: after layer 0's report, layer 1's route (its attributes, its
// router weight) runs on layer 0's tokens and reports its ids as a
// prediction of layer 1; the last layer predicts nothing.
// CHECK-LABEL: func.func @guess_next
// CHECK-SAME: (%[[X:.*]]: tensor<5x32xf32>, %[[H:.*]]: tensor<5x32xf32>, %[[R0:.*]]: tensor<8x32xf32>, %[[R1:.*]]: tensor<16x32xf32>, %[[B1:.*]]: tensor<16xf32>)
// CHECK: %{{.*}}, %[[IDS0:.*]] = moe.route %[[X]] router_weight %[[R0]] {k = 2 : i64, normalize}
// CHECK-NEXT: moe.record_routing %[[IDS0]] {layer = 0 : i64, num_experts = 8 : i64}
// CHECK-NEXT: %{{.*}}, %[[GUESS:.*]] = moe.route %[[X]] router_weight %[[R1]] bias %[[B1]] {k = 4 : i64, scoring = #moe.scoring<sigmoid>} : tensor<5x32xf32> router_weight tensor<16x32xf32>, tensor<16xf32> -> tensor<5x4xf32>, tensor<5x4xi32>
// CHECK-NEXT: moe.record_routing %[[GUESS]] {layer = 1 : i64, num_experts = 16 : i64, predicted} : tensor<5x4xi32>
// CHECK-NEXT: %{{.*}}, %[[IDS1:.*]] = moe.route %[[H]] router_weight %[[R1]] bias %[[B1]]
// CHECK-NEXT: moe.record_routing %[[IDS1]] {layer = 1 : i64, num_experts = 16 : i64} : tensor<5x4xi32>
// CHECK-NOT: predicted
// CHECK: return
// NOGUESS-LABEL: func.func @guess_next
// NOGUESS-NOT: predicted
// NOGUESS: return
// A prediction lowers to the runtime's call for predictions.
// CALL: func.func private @moe_rt_record_predicted_routing(i64, i64, index, index, index)
// CALL-LABEL: func.func @guess_next
// CALL: call @moe_rt_record_routing(
// CALL: call @moe_rt_record_predicted_routing(
// CALL: call @moe_rt_record_routing(
func.func @guess_next(%x: tensor<5x32xf32>, %h: tensor<5x32xf32>, %r0: tensor<8x32xf32>, %r1: tensor<16x32xf32>, %b1: tensor<16xf32>) -> (tensor<5x2xi32>, tensor<5x4xi32>) {
  %w0, %i0 = moe.route %x router_weight %r0 {k = 2 : i64, normalize} : tensor<5x32xf32> router_weight tensor<8x32xf32> -> tensor<5x2xf32>, tensor<5x2xi32>
  %w1, %i1 = moe.route %h router_weight %r1 bias %b1 {k = 4 : i64, scoring = #moe.scoring<sigmoid>} : tensor<5x32xf32> router_weight tensor<16x32xf32>, tensor<16xf32> -> tensor<5x4xf32>, tensor<5x4xi32>
  return %i0, %i1 : tensor<5x2xi32>, tensor<5x4xi32>
}

// -----

// A router weight made after the first route is copied when it is a
// constant (here: defined between the routes), and the guess keeps the
// first route's dynamic token count.
// CHECK-LABEL: func.func @constant_weight
// CHECK: moe.record_routing %{{.*}} {layer = 0 : i64, num_experts = 4 : i64} : tensor<?x1xi32>
// CHECK-NEXT: %[[COPY:.*]] = arith.constant dense<1.000000e+00> : tensor<4x8xf32>
// CHECK-NEXT: %{{.*}}, %[[GUESS:.*]] = moe.route %{{.*}} router_weight %[[COPY]] {k = 2 : i64} : tensor<?x8xf32> router_weight tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK-NEXT: moe.record_routing %[[GUESS]] {layer = 1 : i64, num_experts = 4 : i64, predicted} : tensor<?x2xi32>
func.func @constant_weight(%x: tensor<?x8xf32>, %h: tensor<7x8xf32>, %r0: tensor<4x8xf32>) -> (tensor<?x1xi32>, tensor<7x2xi32>) {
  %w0, %i0 = moe.route %x router_weight %r0 {k = 1 : i64} : tensor<?x8xf32> router_weight tensor<4x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  %r1 = arith.constant dense<1.0> : tensor<4x8xf32>
  %w1, %i1 = moe.route %h router_weight %r1 {k = 2 : i64} : tensor<7x8xf32> router_weight tensor<4x8xf32> -> tensor<7x2xf32>, tensor<7x2xi32>
  return %i0, %i1 : tensor<?x1xi32>, tensor<7x2xi32>
}

// -----

// No guess where the next router weight is computed after this route, nor
// from routes on logits (their tokens are not at hand).
// CHECK-LABEL: func.func @no_guess
// CHECK-NOT: predicted
// CHECK: return
func.func @no_guess(%x: tensor<5x8xf32>, %h: tensor<5x8xf32>, %r0: tensor<4x8xf32>, %l: tensor<5x4xf32>, %s: f32) -> (tensor<5x1xi32>, tensor<5x1xi32>, tensor<5x1xi32>) {
  %w0, %i0 = moe.route %x router_weight %r0 {k = 1 : i64} : tensor<5x8xf32> router_weight tensor<4x8xf32> -> tensor<5x1xf32>, tensor<5x1xi32>
  %e = tensor.empty() : tensor<4x8xf32>
  %r1 = linalg.fill ins(%s : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
  %w1, %i1 = moe.route %h router_weight %r1 {k = 1 : i64} : tensor<5x8xf32> router_weight tensor<4x8xf32> -> tensor<5x1xf32>, tensor<5x1xi32>
  %w2, %i2 = moe.route %l {k = 1 : i64} : tensor<5x4xf32> -> tensor<5x1xf32>, tensor<5x1xi32>
  return %i0, %i1, %i2 : tensor<5x1xi32>, tensor<5x1xi32>, tensor<5x1xi32>
}
