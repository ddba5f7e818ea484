// RUN: moe-opt %s --split-input-file --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" | FileCheck %s

// A start/wait pair becomes the runtime's non-blocking all-to-all-v: the
// grid's size, the aligned pointers of send, send counts, dest and receive
// counts, and the bytes of one row (64 f32 = 256); the wait calls
// moe_rt_comm_wait on the request handle. The received rows are dest's
// buffer.
// CHECK-DAG:   func.func private @moe_rt_comm_wait(i64)
// CHECK-DAG:   func.func private @moe_rt_comm_all_to_all_v_start(i64, index, index, index, index, i64) -> i64
// CHECK-LABEL: func.func @exchange
// CHECK-SAME:  (%[[S:.*]]: memref<?x64xf32>, %[[SC:.*]]: memref<2xi32>, %[[RC:.*]]: memref<2xi32>, %[[N:.*]]: index) -> memref<?x64xf32>
// CHECK:       %[[D:.*]] = memref.alloc(%[[N]]) {alignment = 64 : i64} : memref<?x64xf32>
// CHECK-NEXT:  %[[P:.*]] = arith.constant 2 : i64
// CHECK-NEXT:  %[[SP:.*]] = memref.extract_aligned_pointer_as_index %[[S]] : memref<?x64xf32> -> index
// CHECK-NEXT:  %[[SCP:.*]] = memref.extract_aligned_pointer_as_index %[[SC]] : memref<2xi32> -> index
// CHECK-NEXT:  %[[DP:.*]] = memref.extract_aligned_pointer_as_index %[[D]] : memref<?x64xf32> -> index
// CHECK-NEXT:  %[[RCP:.*]] = memref.extract_aligned_pointer_as_index %[[RC]] : memref<2xi32> -> index
// CHECK-NEXT:  %[[UNIT:.*]] = arith.constant 256 : i64
// CHECK-NEXT:  %[[REQ:.*]] = call @moe_rt_comm_all_to_all_v_start(%[[P]], %[[SP]], %[[SCP]], %[[DP]], %[[RCP]], %[[UNIT]]) : (i64, index, index, index, index, i64) -> i64
// CHECK:       %[[H:.*]] = builtin.unrealized_conversion_cast %{{.*}} : !moe.request to i64
// CHECK-NEXT:  call @moe_rt_comm_wait(%[[H]]) : (i64) -> ()
// CHECK-NEXT:  return %[[D]] : memref<?x64xf32>
shard.grid @moe_ep(shape = 2)
func.func @exchange(%s: tensor<?x64xf32>, %sc: tensor<2xi32>, %rc: tensor<2xi32>, %n: index) -> tensor<?x64xf32> {
  %d = tensor.empty(%n) : tensor<?x64xf32>
  %req, %pending = moe.all_to_all_start %s, %sc, %rc into %d on @moe_ep : tensor<?x64xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x64xf32>
  %r = moe.all_to_all_wait %req, %pending, %s : tensor<?x64xf32>, tensor<?x64xf32>
  return %r : tensor<?x64xf32>
}

// -----

// The count exchange of -moe-decompose-layer: rank-1 i32 tensors, a unit of
// one i32 (4 bytes), on a grid of 4.
// CHECK-LABEL: func.func @counts
// CHECK:       %[[P:.*]] = arith.constant 4 : i64
// CHECK:       %[[UNIT:.*]] = arith.constant 4 : i64
// CHECK-NEXT:  call @moe_rt_comm_all_to_all_v_start(%[[P]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[UNIT]])
// CHECK:       call @moe_rt_comm_wait(
shard.grid @moe_ep(shape = 4)
func.func @counts(%s: tensor<8xi32>, %c: tensor<4xi32>) -> tensor<8xi32> {
  %d = tensor.empty() : tensor<8xi32>
  %req, %pending = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<8xi32>, tensor<4xi32>, tensor<4xi32> into tensor<8xi32>
  %r = moe.all_to_all_wait %req, %pending, %s : tensor<8xi32>, tensor<8xi32>
  return %r : tensor<8xi32>
}
