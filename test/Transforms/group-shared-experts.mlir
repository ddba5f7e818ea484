// RUN: moe-opt %s --split-input-file --moe-decompose-layer --canonicalize --moe-group-shared-experts="max-padding=0.5" --canonicalize | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-decompose-layer --canonicalize --moe-group-shared-experts --canonicalize | FileCheck %s --check-prefix=DEFAULT
// RUN: moe-opt %s --split-input-file --moe-decompose-layer --canonicalize --moe-group-shared-experts --moe-prefetch-experts | FileCheck %s --check-prefix=PREFETCH
// RUN: not moe-opt %s --split-input-file --moe-group-shared-experts="max-padding=-1" 2>&1 | FileCheck %s --check-prefix=ERROR

// ERROR: max-padding must not be negative, got -1

// A gated shared expert of 4 columns next to routed experts of 2
// (interleaved SwiGLU): two slices of its gate and linear row pairs and of
// fc2's columns become experts 2 and 3, which every token visits with the
// gate's sigmoid(x . g) as weight.
// CHECK-LABEL: func @gated_interleaved
// CHECK-SAME:    (%[[X:.*]]: tensor<?x2xf32>, %[[LOGITS:.*]]: tensor<?x2xf32>)
// CHECK-DAG:     %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG:     %[[GATE:.*]] = arith.constant dense<[5.000000e-01, -5.000000e-01]> : tensor<2xf32>
// CHECK-DAG:     %[[FC1:.*]] = arith.constant dense<{{\[}}{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00], [5.000000e+00, 6.000000e+00], [7.000000e+00, 8.000000e+00]], {{\[}}[1.100000e+01, 1.200000e+01], [1.300000e+01, 1.400000e+01], [1.500000e+01, 1.600000e+01], [1.700000e+01, 1.800000e+01]], {{\[}}[2.100000e+01, 2.200000e+01], [2.300000e+01, 2.400000e+01], [2.500000e+01, 2.600000e+01], [2.700000e+01, 2.800000e+01]], {{\[}}[2.900000e+01, 3.000000e+01], [3.100000e+01, 3.200000e+01], [3.300000e+01, 3.400000e+01], [3.500000e+01, 3.600000e+01]]]> : tensor<4x4x2xf32>
// CHECK-DAG:     %[[FC2:.*]] = arith.constant dense<{{\[}}{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]], {{\[}}[5.000000e+00, 6.000000e+00], [7.000000e+00, 8.000000e+00]], {{\[}}[4.100000e+01, 4.200000e+01], [4.500000e+01, 4.600000e+01]], {{\[}}[4.300000e+01, 4.400000e+01], [4.700000e+01, 4.800000e+01]]]> : tensor<4x2x2xf32>
// CHECK:         %[[W:.*]], %[[IDS:.*]] = moe.route %[[LOGITS]]
// CHECK:         %[[DOT:.*]] = linalg.matvec ins(%[[X]], %[[GATE]] : tensor<?x2xf32>, tensor<2xf32>)
// CHECK:         %[[IDS2:.*]] = linalg.generic
// CHECK-SAME:        outs(%{{.*}} : tensor<?x3xi32>)
// CHECK:           %[[J:.*]] = linalg.index 1
// CHECK:           %[[ROUTED:.*]] = arith.cmpi ult, %[[J]], %c1
// CHECK:           %[[ID:.*]] = tensor.extract %[[IDS]]
// CHECK:           %[[SHIFTED:.*]] = arith.addi %[[ID]], %c2_i32
// CHECK:           %[[ZERO_EXPERT:.*]] = arith.cmpi sge, %[[ID]], %c2_i32
// CHECK:           %[[KEPT:.*]] = arith.select %[[ZERO_EXPERT]], %[[SHIFTED]], %[[ID]]
// CHECK:           %[[SLICE:.*]] = arith.subi %[[J]], %c1
// CHECK:           %[[SLICE32:.*]] = arith.index_cast %[[SLICE]] : index to i32
// CHECK:           %[[SLICE_ID:.*]] = arith.addi %[[SLICE32]], %c2_i32
// CHECK:           arith.select %[[ROUTED]], %[[KEPT]], %[[SLICE_ID]]
// CHECK:         %[[W2:.*]] = linalg.generic
// CHECK-SAME:        ins(%[[DOT]] : tensor<?xf32>) outs(%{{.*}} : tensor<?x3xf32>)
// CHECK:         ^bb0(%[[G:.*]]: f32, %{{.*}}: f32):
// CHECK:           %[[WEIGHT:.*]] = tensor.extract %[[W]]
// CHECK:           %[[NEG:.*]] = arith.negf %[[G]]
// CHECK:           %[[EXP:.*]] = math.exp %[[NEG]]
// CHECK:           %[[DEN:.*]] = arith.addf %[[EXP]], %[[ONE]]
// CHECK:           %[[SIGMOID:.*]] = arith.divf %[[ONE]], %[[DEN]]
// CHECK:           arith.select %{{.*}}, %[[WEIGHT]], %[[SIGMOID]]
// CHECK:         %[[ROWS:.*]], %[[OFFSETS:.*]], %{{.*}}, %[[SLOTS:.*]] = moe.dispatch %[[X]], %[[IDS2]] {num_experts = 4 : i64}
// CHECK-SAME:      -> tensor<?x2xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x3xi32>
// CHECK:         %[[Y:.*]] = moe.expert %[[ROWS]], %[[OFFSETS]] fc1 %[[FC1]] fc2 %[[FC2]] {activation = #moe.activation<swiglu>}
// CHECK:         %[[OUT:.*]] = moe.combine %[[Y]], %[[W2]], %[[IDS2]], %[[SLOTS]] {num_experts = 4 : i64}
// CHECK-SAME:      : (tensor<?x2xf32>, tensor<?x3xf32>, tensor<?x3xi32>, tensor<?x3xi32>) -> tensor<?x2xf32>
// CHECK-NEXT:    return %[[OUT]]
// -moe-prefetch-experts still finds the routed experts (through the ids'
// extension) and reads ahead from the grouped weights.
// PREFETCH-LABEL: func @gated_interleaved
// PREFETCH:         %{{.*}}, %[[IDS:.*]] = moe.route
// PREFETCH-NEXT:    moe.prefetch_experts %[[IDS]], %{{.*}}, %{{.*}} {layer = 0 : i64} : tensor<?x1xi32>, tensor<4x4x2xf32>, tensor<4x2x2xf32>
// DEFAULT-LABEL: func @gated_interleaved
// DEFAULT:         moe.dispatch {{.*}} {num_experts = 4 : i64}
// DEFAULT-NOT:     shared
func.func @gated_interleaved(%x: tensor<?x2xf32>, %logits: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %w1 = arith.constant dense<[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], [[11.0, 12.0], [13.0, 14.0], [15.0, 16.0], [17.0, 18.0]]]> : tensor<2x4x2xf32>
  %w2 = arith.constant dense<[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]> : tensor<2x2x2xf32>
  %s1 = arith.constant dense<[[[21.0, 22.0], [23.0, 24.0], [25.0, 26.0], [27.0, 28.0], [29.0, 30.0], [31.0, 32.0], [33.0, 34.0], [35.0, 36.0]]]> : tensor<1x8x2xf32>
  %s2 = arith.constant dense<[[[41.0, 42.0, 43.0, 44.0], [45.0, 46.0, 47.0, 48.0]]]> : tensor<1x2x4xf32>
  %g = arith.constant dense<[0.5, -0.5]> : tensor<2xf32>
  %y = moe.layer %x, %logits fc1 %w1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 shared_gate %g {k = 1 : i64, activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<interleaved>} : (tensor<?x2xf32>, tensor<?x2xf32>, tensor<2x4x2xf32>, tensor<2x2x2xf32>, tensor<1x8x2xf32>, tensor<1x2x4xf32>, tensor<2xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// Concatenated SwiGLU halves, two ungated shared experts of 3 columns next
// to a routed expert of 2: each becomes two slices, the second padded with
// zero rows and columns (2 of 6 columns, within max-padding = 0.5); every
// token visits them with weight 1. Not at the default max-padding (0.25).
// CHECK-LABEL: func @concatenated_padded
// CHECK-DAG:     %[[FC1:.*]] = arith.constant dense<{{\[}}{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00], [5.000000e+00, 6.000000e+00], [7.000000e+00, 8.000000e+00]], {{\[}}[1.000000e+01, 1.050000e+01], [1.100000e+01, 1.150000e+01], [1.300000e+01, 1.350000e+01], [1.400000e+01, 1.450000e+01]], {{\[}}[1.200000e+01, 1.250000e+01], [0.000000e+00, 0.000000e+00], [1.500000e+01, 1.550000e+01], [0.000000e+00, 0.000000e+00]], {{\[}}[2.000000e+01, 2.050000e+01], [2.100000e+01, 2.150000e+01], [2.300000e+01, 2.350000e+01], [2.400000e+01, 2.450000e+01]], {{\[}}[2.200000e+01, 2.250000e+01], [0.000000e+00, 0.000000e+00], [2.500000e+01, 2.550000e+01], [0.000000e+00, 0.000000e+00]]]> : tensor<5x4x2xf32>
// CHECK-DAG:     %[[FC2:.*]] = arith.constant dense<{{\[}}{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]], {{\[}}[3.000000e+01, 3.100000e+01], [3.300000e+01, 3.400000e+01]], {{\[}}[3.200000e+01, 0.000000e+00], [3.500000e+01, 0.000000e+00]], {{\[}}[4.000000e+01, 4.100000e+01], [4.300000e+01, 4.400000e+01]], {{\[}}[4.200000e+01, 0.000000e+00], [4.500000e+01, 0.000000e+00]]]> : tensor<5x2x2xf32>
// CHECK-DAG:     %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK:         %[[W:.*]], %[[IDS:.*]] = moe.route
// CHECK:         %[[IDS2:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<4x5xi32>)
// CHECK:         %[[W2:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<4x5xf32>)
// CHECK:           %[[WEIGHT:.*]] = tensor.extract %[[W]]
// CHECK:           arith.select %{{.*}}, %[[WEIGHT]], %[[ONE]]
// CHECK:         moe.dispatch %{{.*}}, %[[IDS2]] {num_experts = 5 : i64}
// CHECK:         moe.expert {{.*}} fc1 %[[FC1]] fc2 %[[FC2]] {activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<concatenated>}
// CHECK:         moe.combine {{.*}}, %[[W2]], %[[IDS2]], %{{.*}} {num_experts = 5 : i64}
// DEFAULT-LABEL: func @concatenated_padded
// DEFAULT:         moe.dispatch {{.*}} {num_experts = 1 : i64}
// DEFAULT:         moe.combine {{.*}} shared %{{.*}} {num_experts = 1 : i64}
func.func @concatenated_padded(%x: tensor<4x2xf32>, %logits: tensor<4x1xf32>) -> tensor<4x2xf32> {
  %w1 = arith.constant dense<[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]]> : tensor<1x4x2xf32>
  %w2 = arith.constant dense<[[[1.0, 2.0], [3.0, 4.0]]]> : tensor<1x2x2xf32>
  %s1 = arith.constant dense<[[[10.0, 10.5], [11.0, 11.5], [12.0, 12.5], [13.0, 13.5], [14.0, 14.5], [15.0, 15.5]],
                              [[20.0, 20.5], [21.0, 21.5], [22.0, 22.5], [23.0, 23.5], [24.0, 24.5], [25.0, 25.5]]]> : tensor<2x6x2xf32>
  %s2 = arith.constant dense<[[[30.0, 31.0, 32.0], [33.0, 34.0, 35.0]], [[40.0, 41.0, 42.0], [43.0, 44.0, 45.0]]]> : tensor<2x2x3xf32>
  %y = moe.layer %x, %logits fc1 %w1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 {k = 1 : i64, activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<concatenated>} : (tensor<4x2xf32>, tensor<4x1xf32>, tensor<1x4x2xf32>, tensor<1x2x2xf32>, tensor<2x6x2xf32>, tensor<2x2x3xf32>) -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// A gated activation with fc3, biased routed experts and a copy expert: the
// slice's fc3 rows are the shared fc3's, its biases zero, and the copy
// expert's id moves from 2 to 3.
// CHECK-LABEL: func @glu_biases_zero_expert
// CHECK-SAME:    (%[[X:.*]]: tensor<?x2xf32>,
// CHECK-DAG:     %[[FC1:.*]] = arith.constant dense<{{\[}}{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]], {{\[}}[5.000000e+00, 6.000000e+00], [7.000000e+00, 8.000000e+00]], {{\[}}[1.000000e+01, 1.100000e+01], [1.200000e+01, 1.300000e+01]]]> : tensor<3x2x2xf32>
// CHECK-DAG:     %[[FC2:.*]] = arith.constant dense<{{\[}}{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]], {{\[}}[5.000000e+00, 6.000000e+00], [7.000000e+00, 8.000000e+00]], {{\[}}[2.000000e+01, 2.100000e+01], [2.200000e+01, 2.300000e+01]]]> : tensor<3x2x2xf32>
// CHECK-DAG:     %[[FC3:.*]] = arith.constant dense<{{\[}}{{\[}}[9.000000e+00, 9.500000e+00], [8.000000e+00, 8.500000e+00]], {{\[}}[7.000000e+00, 7.500000e+00], [6.000000e+00, 6.500000e+00]], {{\[}}[3.000000e+01, 3.100000e+01], [3.200000e+01, 3.300000e+01]]]> : tensor<3x2x2xf32>
// CHECK-DAG:     %[[B1:.*]] = arith.constant dense<{{\[}}[1.000000e-01, 2.000000e-01], [3.000000e-01, 4.000000e-01], [0.000000e+00, 0.000000e+00]]> : tensor<3x2xf32>
// CHECK-DAG:     %[[B2:.*]] = arith.constant dense<{{\[}}[5.000000e-01, 6.000000e-01], [0.699999988, 8.000000e-01], [0.000000e+00, 0.000000e+00]]> : tensor<3x2xf32>
// CHECK:         %[[IDS2:.*]] = linalg.generic
// CHECK:           %[[ID:.*]] = tensor.extract
// CHECK:           %[[SHIFTED:.*]] = arith.addi %[[ID]], %c1_i32
// CHECK:           %[[ZERO_EXPERT:.*]] = arith.cmpi sge, %[[ID]], %c2_i32
// CHECK:           arith.select %[[ZERO_EXPERT]], %[[SHIFTED]], %[[ID]]
// CHECK:         moe.dispatch %[[X]], %[[IDS2]] {num_experts = 3 : i64}
// CHECK:         moe.expert {{.*}} fc1 %[[FC1]] fc1_bias %[[B1]] fc2 %[[FC2]] fc2_bias %[[B2]] fc3 %[[FC3]] {activation = #moe.activation<silu>}
// CHECK:         moe.combine {{.*}} input %[[X]] {num_experts = 3 : i64, zero_experts = [#moe.zero_expert<copy>]}
func.func @glu_biases_zero_expert(%x: tensor<?x2xf32>, %logits: tensor<?x3xf32>) -> tensor<?x2xf32> {
  %w1 = arith.constant dense<[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]> : tensor<2x2x2xf32>
  %b1 = arith.constant dense<[[0.1, 0.2], [0.3, 0.4]]> : tensor<2x2xf32>
  %w2 = arith.constant dense<[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]> : tensor<2x2x2xf32>
  %b2 = arith.constant dense<[[0.5, 0.6], [0.7, 0.8]]> : tensor<2x2xf32>
  %w3 = arith.constant dense<[[[9.0, 9.5], [8.0, 8.5]], [[7.0, 7.5], [6.0, 6.5]]]> : tensor<2x2x2xf32>
  %s1 = arith.constant dense<[[[10.0, 11.0], [12.0, 13.0]]]> : tensor<1x2x2xf32>
  %s2 = arith.constant dense<[[[20.0, 21.0], [22.0, 23.0]]]> : tensor<1x2x2xf32>
  %s3 = arith.constant dense<[[[30.0, 31.0], [32.0, 33.0]]]> : tensor<1x2x2xf32>
  %y = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 fc2_bias %b2 fc3 %w3 shared_fc1 %s1 shared_fc2 %s2 shared_fc3 %s3 {k = 2 : i64, activation = #moe.activation<silu>, zero_experts = [#moe.zero_expert<copy>]} : (tensor<?x2xf32>, tensor<?x3xf32>, tensor<2x2x2xf32>, tensor<2x2xf32>, tensor<2x2x2xf32>, tensor<2x2xf32>, tensor<2x2x2xf32>, tensor<1x2x2xf32>, tensor<1x2x2xf32>, tensor<1x2x2xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// Left alone: weights that are arguments (they would be copied on every
// call), and a dispatch with a capacity (the slices' rows would count
// against it).
// CHECK-LABEL: func @left_alone
// CHECK-COUNT-2: moe.combine {{.*}} shared
// CHECK-NOT:     moe.combine
func.func @left_alone(%x: tensor<8x2xf32>, %logits: tensor<8x2xf32>, %w1: tensor<2x4x2xf32>, %w2: tensor<2x2x2xf32>, %s1: tensor<1x4x2xf32>, %s2: tensor<1x2x2xf32>) -> (tensor<8x2xf32>, tensor<8x2xf32>) {
  %y = moe.layer %x, %logits fc1 %w1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 {k = 1 : i64, activation = #moe.activation<swiglu>} : (tensor<8x2xf32>, tensor<8x2xf32>, tensor<2x4x2xf32>, tensor<2x2x2xf32>, tensor<1x4x2xf32>, tensor<1x2x2xf32>) -> tensor<8x2xf32>
  %c1 = arith.constant dense<1.0> : tensor<2x4x2xf32>
  %c2 = arith.constant dense<2.0> : tensor<2x2x2xf32>
  %c3 = arith.constant dense<3.0> : tensor<1x4x2xf32>
  %c4 = arith.constant dense<4.0> : tensor<1x2x2xf32>
  %z = moe.layer %x, %logits fc1 %c1 fc2 %c2 shared_fc1 %c3 shared_fc2 %c4 {k = 1 : i64, activation = #moe.activation<swiglu>, capacity_factor = 1.0} : (tensor<8x2xf32>, tensor<8x2xf32>, tensor<2x4x2xf32>, tensor<2x2x2xf32>, tensor<1x4x2xf32>, tensor<1x2x2xf32>) -> tensor<8x2xf32>
  return %y, %z : tensor<8x2xf32>, tensor<8x2xf32>
}
