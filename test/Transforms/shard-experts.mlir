// RUN: moe-opt %s --split-input-file --moe-shard-experts=ranks=2 --verify-diagnostics | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-shard-experts=ranks=3 --verify-diagnostics | FileCheck %s --check-prefix=P3

// Weights passed as arguments: every per-expert operand (fc1, fc1_bias,
// fc2) shrinks to ceil(4 / 2) = 2 experts along dimension 0 and is marked
// split by experts; input, logits and the result are split by tokens. The
// grid is declared once and the layer records the full expert count.
// CHECK:       shard.grid @moe_ep(shape = 2)
// CHECK-LABEL: func.func @weight_args
// CHECK-SAME:  (%[[X:.*]]: tensor<?x16xf32> {moe.split = "tokens"}, %[[L:.*]]: tensor<?x4xf32> {moe.split = "tokens"}, %[[W1:.*]]: tensor<2x8x16xf32> {moe.split = "experts"}, %[[B1:.*]]: tensor<2x8xf32> {moe.split = "experts"}, %[[W2:.*]]: tensor<2x16x8xf32> {moe.split = "experts"}) -> (tensor<?x16xf32> {moe.split = "tokens"})
// CHECK-NEXT:  %[[Y:.*]] = moe.layer %[[X]], %[[L]] fc1 %[[W1]] fc1_bias %[[B1]] fc2 %[[W2]] {activation = #moe.activation<silu>, expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 4>, k = 2 : i64} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<2x8x16xf32>, tensor<2x8xf32>, tensor<2x16x8xf32>) -> tensor<?x16xf32>
// CHECK-NEXT:  return %[[Y]] : tensor<?x16xf32>
// P3-LABEL:    func.func @weight_args
// P3-SAME:     tensor<2x8x16xf32> {moe.split = "experts"}, %{{.*}}: tensor<2x8xf32> {moe.split = "experts"}, %{{.*}}: tensor<2x16x8xf32> {moe.split = "experts"}
// P3:          expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 3, num_experts = 4>
func.func @weight_args(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x8x16xf32>, %b1: tensor<4x8xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc1_bias %b1 fc2 %w2 {k = 2 : i64, activation = #moe.activation<silu>} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x8x16xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// E = 5 does not divide over P = 2: every rank holds ceil(5 / 2) = 3
// experts (rank 1 owns two and a zero padding expert); the logits still
// score all 5.
// CHECK:       shard.grid @moe_ep(shape = 2)
// CHECK-LABEL: func.func @uneven
// CHECK-SAME:  (%{{.*}}: tensor<6x16xf32> {moe.split = "tokens"}, %{{.*}}: tensor<6x5xf32> {moe.split = "tokens"}, %{{.*}}: tensor<3x8x16xf32> {moe.split = "experts"}, %{{.*}}: tensor<3x16x8xf32> {moe.split = "experts"}) -> (tensor<6x16xf32> {moe.split = "tokens"})
// CHECK-NEXT:  moe.layer
// CHECK-SAME:  expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 5>
// CHECK-SAME:  : (tensor<6x16xf32>, tensor<6x5xf32>, tensor<3x8x16xf32>, tensor<3x16x8xf32>) -> tensor<6x16xf32>
// P3-LABEL:    func.func @uneven
// P3-SAME:     tensor<2x8x16xf32> {moe.split = "experts"}, %{{.*}}: tensor<2x16x8xf32> {moe.split = "experts"}
func.func @uneven(%x: tensor<6x16xf32>, %l: tensor<6x5xf32>, %w1: tensor<5x8x16xf32>, %w2: tensor<5x16x8xf32>) -> tensor<6x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, activation = #moe.activation<silu>} : (tensor<6x16xf32>, tensor<6x5xf32>, tensor<5x8x16xf32>, tensor<5x16x8xf32>) -> tensor<6x16xf32>
  return %0 : tensor<6x16xf32>
}

// -----

// A constant bias is cut into one constant per rank, chosen by
// scf.index_switch on the rank (shard.process_linear_index, hoisted to the
// function entry); the last rank is the default region. With E = 5, P = 2
// rank 0 owns experts 0-2 and rank 1 experts 3-4 plus a row of zero padding.
// The constant does not travel as an argument, so it gets no moe.split.
// CHECK:       shard.grid @moe_ep(shape = 2)
// CHECK-LABEL: func.func @constant_bias
// CHECK-SAME:  (%[[X:.*]]: tensor<?x2xf32> {moe.split = "tokens"}, %[[L:.*]]: tensor<?x5xf32> {moe.split = "tokens"}, %[[W1:.*]]: tensor<3x2x2xf32> {moe.split = "experts"}, %[[W2:.*]]: tensor<3x2x2xf32> {moe.split = "experts"}) -> (tensor<?x2xf32> {moe.split = "tokens"})
// CHECK-NEXT:  %[[RANK:.*]] = shard.process_linear_index on @moe_ep : index
// CHECK:       %[[B:.*]] = scf.index_switch %[[RANK]] -> tensor<3x2xf32>
// CHECK-NEXT:  case 0 {
// CHECK-NEXT:    %[[C0:.*]] = arith.constant dense<{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00], [5.000000e+00, 6.000000e+00]]> : tensor<3x2xf32>
// CHECK-NEXT:    scf.yield %[[C0]] : tensor<3x2xf32>
// CHECK-NEXT:  }
// CHECK-NEXT:  default {
// CHECK-NEXT:    %[[C1:.*]] = arith.constant dense<{{\[}}[7.000000e+00, 8.000000e+00], [9.000000e+00, 1.000000e+01], [0.000000e+00, 0.000000e+00]]> : tensor<3x2xf32>
// CHECK-NEXT:    scf.yield %[[C1]] : tensor<3x2xf32>
// CHECK-NEXT:  }
// CHECK-NEXT:  %[[Y:.*]] = moe.layer %[[X]], %[[L]] fc1 %[[W1]] fc1_bias %[[B]] fc2 %[[W2]] {expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 5>, k = 1 : i64} : (tensor<?x2xf32>, tensor<?x5xf32>, tensor<3x2x2xf32>, tensor<3x2xf32>, tensor<3x2x2xf32>) -> tensor<?x2xf32>
// CHECK-NEXT:  return %[[Y]]
// With P = 3 (experts 0-1, 2-3, 4) there are two cases and the last rank's
// constant is one expert and one padding expert.
// P3-LABEL:    func.func @constant_bias
// P3:          scf.index_switch %{{.*}} -> tensor<2x2xf32>
// P3-NEXT:     case 0 {
// P3-NEXT:       arith.constant dense<{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]]> : tensor<2x2xf32>
// P3:          case 1 {
// P3-NEXT:       arith.constant dense<{{\[}}[5.000000e+00, 6.000000e+00], [7.000000e+00, 8.000000e+00]]> : tensor<2x2xf32>
// P3:          default {
// P3-NEXT:       arith.constant dense<{{\[}}[9.000000e+00, 1.000000e+01], [0.000000e+00, 0.000000e+00]]> : tensor<2x2xf32>
func.func @constant_bias(%x: tensor<?x2xf32>, %l: tensor<?x5xf32>, %w1: tensor<5x2x2xf32>, %w2: tensor<5x2x2xf32>) -> tensor<?x2xf32> {
  %b1 = arith.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]> : tensor<5x2xf32>
  %0 = moe.layer %x, %l fc1 %w1 fc1_bias %b1 fc2 %w2 {k = 1 : i64} : (tensor<?x2xf32>, tensor<?x5xf32>, tensor<5x2x2xf32>, tensor<5x2xf32>, tensor<5x2x2xf32>) -> tensor<?x2xf32>
  return %0 : tensor<?x2xf32>
}

// -----

// A splat constant weight: each rank's part repeats the splat value over its
// own experts and pads with zeros (rank 1 of 5 / 2).
// CHECK-LABEL: func.func @splat_weight
// CHECK:       scf.index_switch %{{.*}} -> tensor<3x2x2xf32>
// CHECK-NEXT:  case 0 {
// CHECK-NEXT:    arith.constant dense<5.000000e-01> : tensor<3x2x2xf32>
// CHECK:       default {
// CHECK-NEXT:    arith.constant dense<{{\[}}{{\[}}[5.000000e-01, 5.000000e-01], [5.000000e-01, 5.000000e-01]], {{\[}}[5.000000e-01, 5.000000e-01], [5.000000e-01, 5.000000e-01]], {{\[}}[0.000000e+00, 0.000000e+00], [0.000000e+00, 0.000000e+00]]]> : tensor<3x2x2xf32>
func.func @splat_weight(%x: tensor<?x2xf32>, %l: tensor<?x5xf32>, %w1: tensor<5x2x2xf32>) -> tensor<?x2xf32> {
  %w2 = arith.constant dense<0.5> : tensor<5x2x2xf32>
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 1 : i64} : (tensor<?x2xf32>, tensor<?x5xf32>, tensor<5x2x2xf32>, tensor<5x2x2xf32>) -> tensor<?x2xf32>
  return %0 : tensor<?x2xf32>
}

// -----

// Capacities are defined over all tokens: a capacity-limited layer cannot be
// split.
func.func @capacity(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'moe.layer' op with capacity_factor cannot be made expert-parallel: capacities are defined over all tokens, but each rank routes only its own}}
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, capacity_factor = 1.25} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// The exchange sends the dispatched rows before any scaling.
func.func @scale_input(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'moe.layer' op with scale_input cannot be made expert-parallel yet: the exchange sends unscaled rows}}
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 1 : i64, scoring = #moe.scoring<sigmoid>, scale_input} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// A computed expert weight (here fc1_bias, operand #3) can be neither
// re-typed nor cut.
func.func @computed_weight(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %b1 = tensor.empty() : tensor<4x8xf32>
  // expected-error @+1 {{'moe.layer' op expert weights must be function arguments or constants to be split over ranks; operand #3 is neither}}
  %0 = moe.layer %x, %l fc1 %w1 fc1_bias %b1 fc2 %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x8x16xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// A weight argument with another use cannot change type.
func.func @weight_other_use(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> (tensor<?x16xf32>, index) {
  %c0 = arith.constant 0 : index
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  // expected-error @+1 {{'tensor.dim' op uses expert weight argument #2, which -moe-shard-experts splits over the ranks}}
  %d = tensor.dim %w1, %c0 : tensor<4x8x16xf32>
  return %0, %d : tensor<?x16xf32>, index
}

// -----

// Results are gathered by token rows, so the function may return only the
// layer's output.
func.func @other_result(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> (tensor<?x16xf32>, tensor<?x4xf32>) {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  // expected-error @+1 {{'func.return' op result #1 of an expert-parallel function must be the layer's output, which ranks gather by token rows}}
  return %0, %l : tensor<?x16xf32>, tensor<?x4xf32>
}

// -----

// The expert count must be static.
func.func @dynamic_experts(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<?x8x16xf32>, %w2: tensor<?x16x8xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'moe.layer' op needs a static number of experts to be made expert-parallel}}
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<?x8x16xf32>, tensor<?x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// An existing @moe_ep of another size is not reused.
func.func @grid_clash(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}
// expected-error @+1 {{@moe_ep exists with another shape than the}}
shard.grid @moe_ep(shape = 4)
