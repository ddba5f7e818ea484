// RUN: moe-opt %s --split-input-file --convert-shard-to-moe-runtime --verify-diagnostics | FileCheck %s

// The rank query becomes a call of moe_rt_comm_rank with the grid's size;
// the i64 answer is cast to index. The grid is removed and the runtime
// function is declared once.
// CHECK-NOT:   shard.grid
// CHECK:       func.func private @moe_rt_comm_rank(i64) -> i64
// CHECK-LABEL: func.func @rank
// CHECK-NEXT:  %[[P:.*]] = arith.constant 4 : i64
// CHECK-NEXT:  %[[R:.*]] = call @moe_rt_comm_rank(%[[P]]) : (i64) -> i64
// CHECK-NEXT:  %[[I:.*]] = arith.index_cast %[[R]] : i64 to index
// CHECK-NEXT:  return %[[I]] : index
// CHECK-NOT:   shard.
shard.grid @moe_ep(shape = 4)
func.func @rank() -> index {
  %r = shard.process_linear_index on @moe_ep : index
  return %r : index
}

// -----

// What -moe-shard-experts builds for a constant weight: the rank picks its
// constant; only the query changes.
// CHECK-NOT:   shard.grid
// CHECK:       func.func private @moe_rt_comm_rank(i64) -> i64
// CHECK-LABEL: func.func @select_shard
// CHECK-NEXT:  %[[P:.*]] = arith.constant 2 : i64
// CHECK-NEXT:  %[[R:.*]] = call @moe_rt_comm_rank(%[[P]]) : (i64) -> i64
// CHECK-NEXT:  %[[I:.*]] = arith.index_cast %[[R]] : i64 to index
// CHECK-NEXT:  %[[S:.*]] = scf.index_switch %[[I]] -> tensor<2xf32>
// CHECK:       return %[[S]]
shard.grid @moe_ep(shape = 2)
func.func @select_shard() -> tensor<2xf32> {
  %r = shard.process_linear_index on @moe_ep : index
  %s = scf.index_switch %r -> tensor<2xf32>
  case 0 {
    %c = arith.constant dense<[1.0, 2.0]> : tensor<2xf32>
    scf.yield %c : tensor<2xf32>
  }
  default {
    %c = arith.constant dense<[3.0, 0.0]> : tensor<2xf32>
    scf.yield %c : tensor<2xf32>
  }
  return %s : tensor<2xf32>
}

// -----

// Only one-dimensional grids of static size map to the runtime's group.
shard.grid @g2(shape = 2x2)
func.func @rank_2d() -> index {
  // expected-error @+1 {{'shard.process_linear_index' op needs a one-dimensional shard.grid of static size to be lowered to the moe runtime}}
  %r = shard.process_linear_index on @g2 : index
  return %r : index
}

// -----

shard.grid @gdyn(shape = ?)
func.func @rank_dynamic() -> index {
  // expected-error @+1 {{'shard.process_linear_index' op needs a one-dimensional shard.grid of static size to be lowered to the moe runtime}}
  %r = shard.process_linear_index on @gdyn : index
  return %r : index
}
