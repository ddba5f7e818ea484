// RUN: moe-opt %s --split-input-file --moe-record-routing | FileCheck %s
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
