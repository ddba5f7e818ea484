// RUN: moe-opt %s --split-input-file --moe-pack-expert-weights="panel-width=2" | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-pack-expert-weights | FileCheck %s --check-prefix=WIDE
// RUN: moe-opt %s --split-input-file --moe-pack-expert-weights="panel-width=2 pack-bf16=false" | FileCheck %s --check-prefix=NOBF16
// RUN: moe-opt %s --split-input-file --moe-pack-expert-weights="panel-width=16" | FileCheck %s --check-prefix=WORDS
// RUN: moe-opt %s --split-input-file --moe-pack-expert-weights="panel-width=16 pack-quantized=false" | FileCheck %s --check-prefix=NOQUANT
// RUN: not moe-opt %s --split-input-file --moe-pack-expert-weights="panel-width=0" 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: panel-width must be at least 1, got 0

// Constant weights become panels of two output columns: element
// [e, p, k, j] is the old [e, 2p + j, k]; the expert says so.
// CHECK-LABEL: func.func @packs_constants
// CHECK-DAG: %[[W1:.*]] = arith.constant dense<{{\[}}{{\[}}{{\[}}[0.000000e+00, 2.000000e+00], [1.000000e+00, 3.000000e+00]], {{\[}}[4.000000e+00, 6.000000e+00], [5.000000e+00, 7.000000e+00]]], {{\[}}{{\[}}[8.000000e+00, 1.000000e+01], [9.000000e+00, 1.100000e+01]], {{\[}}[1.200000e+01, 1.400000e+01], [1.300000e+01, 1.500000e+01]]]]> : tensor<2x2x2x2xf32>
// CHECK-DAG: %[[W2:.*]] = arith.constant dense<{{\[}}{{\[}}{{\[}}[0.000000e+00, 4.000000e+00], [1.000000e+00, 5.000000e+00], [2.000000e+00, 6.000000e+00], [3.000000e+00, 7.000000e+00]]], {{\[}}{{\[}}[8.000000e+00, 1.200000e+01], [9.000000e+00, 1.300000e+01], [1.000000e+01, 1.400000e+01], [1.100000e+01, 1.500000e+01]]]]> : tensor<2x1x4x2xf32>
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %[[W1]] fc2 %[[W2]] {panel_width = 2 : i64} : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x2x2x2xf32>, tensor<2x1x4x2xf32>) -> tensor<?x2xf32>
// CHECK-NOT: tensor<2x4x2xf32>
// The default width, 64 columns, does not divide these sizes.
// WIDE-LABEL: func.func @packs_constants
// WIDE-NOT: panel_width
func.func @packs_constants(%rows: tensor<?x2xf32>, %offsets: tensor<3xi32>) -> tensor<?x2xf32> {
  %w1 = arith.constant dense<[[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]],
                              [[8.0, 9.0], [10.0, 11.0], [12.0, 13.0], [14.0, 15.0]]]> : tensor<2x4x2xf32>
  %w2 = arith.constant dense<[[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]],
                              [[8.0, 9.0, 10.0, 11.0], [12.0, 13.0, 14.0, 15.0]]]> : tensor<2x2x4xf32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// A gated expert's fc3 is packed with fc1 and fc2; a splat stays a splat;
// a constant both experts read is packed once.
// CHECK-LABEL: func.func @gated_and_shared
// CHECK-DAG: %[[S1:.*]] = arith.constant dense<1.000000e+00> : tensor<2x2x2x2xf32>
// CHECK-DAG: %[[S2:.*]] = arith.constant dense<2.000000e+00> : tensor<2x1x4x2xf32>
// CHECK-DAG: %[[S3:.*]] = arith.constant dense<3.000000e+00> : tensor<2x2x2x2xf32>
// CHECK: moe.expert {{.*}} fc1 %[[S1]] fc2 %[[S2]] fc3 %[[S3]] {activation = #moe.activation<silu>, panel_width = 2 : i64}
// CHECK: moe.expert {{.*}} fc1 %[[S1]] fc2 %[[S2]] fc3 %[[S3]] {activation = #moe.activation<silu>, panel_width = 2 : i64}
func.func @gated_and_shared(%rows: tensor<?x2xf32>, %offsets: tensor<3xi32>) -> (tensor<?x2xf32>, tensor<?x2xf32>) {
  %w1 = arith.constant dense<1.0> : tensor<2x4x2xf32>
  %w2 = arith.constant dense<2.0> : tensor<2x2x4xf32>
  %w3 = arith.constant dense<3.0> : tensor<2x4x2xf32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc3 %w3 {activation = #moe.activation<silu>} : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>, tensor<2x4x2xf32>) -> tensor<?x2xf32>
  %z = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc3 %w3 {activation = #moe.activation<silu>} : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>, tensor<2x4x2xf32>) -> tensor<?x2xf32>
  return %y, %z : tensor<?x2xf32>, tensor<?x2xf32>
}

// -----

// bf16 weights go in pairs of k: element [e, p, t, j, r] is the old
// [e, 2p + j, 2t + r] (here 4 (2p + j) + 2t + r), a panel row being each
// column's pair side by side.
// CHECK-LABEL: func.func @packs_bf16_pairs
// CHECK-DAG: %[[P1:.*]] = arith.constant dense<{{\[}}{{\[}}{{\[}}{{\[}}[0.000000e+00, 1.000000e+00], [4.000000e+00, 5.000000e+00]], {{\[}}[2.000000e+00, 3.000000e+00], [6.000000e+00, 7.000000e+00]]], {{\[}}{{\[}}[8.000000e+00, 9.000000e+00], [1.200000e+01, 1.300000e+01]], {{\[}}[1.000000e+01, 1.100000e+01], [1.400000e+01, 1.500000e+01]]]]]> : tensor<1x2x2x2x2xbf16>
// CHECK-DAG: %[[P2:.*]] = arith.constant dense<2.000000e+00> : tensor<1x2x2x2x2xbf16>
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %[[P1]] fc2 %[[P2]] {panel_width = 2 : i64} : (tensor<?x4xbf16>, tensor<2xi32>, tensor<1x2x2x2x2xbf16>, tensor<1x2x2x2x2xbf16>) -> tensor<?x4xbf16>
// NOBF16-LABEL: func.func @packs_bf16_pairs
// NOBF16-NOT: panel_width
func.func @packs_bf16_pairs(%rows: tensor<?x4xbf16>, %offsets: tensor<2xi32>) -> tensor<?x4xbf16> {
  %w1 = arith.constant dense<[[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0],
                               [8.0, 9.0, 10.0, 11.0], [12.0, 13.0, 14.0, 15.0]]]> : tensor<1x4x4xbf16>
  %w2 = arith.constant dense<2.0> : tensor<1x4x4xbf16>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x4xbf16>, tensor<2xi32>, tensor<1x4x4xbf16>, tensor<1x4x4xbf16>) -> tensor<?x4xbf16>
  return %y : tensor<?x4xbf16>
}

// -----

// f16 weights of f32 rows (a half-precision model's experts, whose tokens
// decomposition widens) take the f32 layout, in f16: the kernel widens
// each panel row as it loads it.
// CHECK-LABEL: func.func @packs_f16
// CHECK-DAG: %[[H1:.*]] = arith.constant dense<{{\[}}{{\[}}{{\[}}[0.000000e+00, 2.000000e+00], [1.000000e+00, 3.000000e+00]], {{\[}}[4.000000e+00, 6.000000e+00], [5.000000e+00, 7.000000e+00]]]]> : tensor<1x2x2x2xf16>
// CHECK-DAG: %[[H2:.*]] = arith.constant dense<5.000000e-01> : tensor<1x1x4x2xf16>
// CHECK: moe.expert %{{.*}}, %{{.*}} fc1 %[[H1]] fc2 %[[H2]] {panel_width = 2 : i64} : (tensor<?x2xf32>, tensor<2xi32>, tensor<1x2x2x2xf16>, tensor<1x1x4x2xf16>) -> tensor<?x2xf32>
// Not a bf16 option's business.
// NOBF16-LABEL: func.func @packs_f16
// NOBF16: panel_width = 2
func.func @packs_f16(%rows: tensor<?x2xf32>, %offsets: tensor<2xi32>) -> tensor<?x2xf32> {
  %w1 = arith.constant dense<[[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]]> : tensor<1x4x2xf16>
  %w2 = arith.constant dense<0.5> : tensor<1x2x4xf16>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x2xf32>, tensor<2xi32>, tensor<1x4x2xf16>, tensor<1x2x4xf16>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// Left as they are: weights that are arguments, an intermediate size of 3
// (not whole panels of 2), bf16 weights of f32 rows, and bf16 weights of
// an odd K (no whole pairs).
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: panel_width
// CHECK: return
func.func @left_alone(%rows: tensor<?x2xf32>, %offsets: tensor<3xi32>, %w1: tensor<2x4x2xf32>, %w2: tensor<2x2x4xf32>, %rows3: tensor<?x3xbf16>) -> (tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x3xbf16>) {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xf32>, tensor<2x2x4xf32>) -> tensor<?x2xf32>
  %v1 = arith.constant dense<1.0> : tensor<2x3x2xf32>
  %v2 = arith.constant dense<2.0> : tensor<2x2x3xf32>
  %z = moe.expert %rows, %offsets fc1 %v1 fc2 %v2 : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x3x2xf32>, tensor<2x2x3xf32>) -> tensor<?x2xf32>
  %b1 = arith.constant dense<1.0> : tensor<2x4x2xbf16>
  %b2 = arith.constant dense<2.0> : tensor<2x2x4xbf16>
  %u = moe.expert %rows, %offsets fc1 %b1 fc2 %b2 : (tensor<?x2xf32>, tensor<3xi32>, tensor<2x4x2xbf16>, tensor<2x2x4xbf16>) -> tensor<?x2xf32>
  %o1 = arith.constant dense<1.0> : tensor<2x4x3xbf16>
  %o2 = arith.constant dense<2.0> : tensor<2x3x4xbf16>
  %v = moe.expert %rows3, %offsets fc1 %o1 fc2 %o2 : (tensor<?x3xbf16>, tensor<3xi32>, tensor<2x4x3xbf16>, tensor<2x3x4xbf16>) -> tensor<?x3xbf16>
  return %y, %z, %u, %v : tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x3xbf16>
}

// -----

// Block-wise scales go panel-major with their weights: [E, N, blocks] as
// [E, N / P, blocks, P].
// WORDS-LABEL: func.func @packs_block_scales
// WIDE-LABEL: func.func @packs_block_scales
// WIDE: tensor<1x2x4x64xf32>
// WORDS-DAG: %[[Q:.*]] = arith.constant dense<136> : tensor<1x8x16x16x4xui8>
// WORDS-DAG: %[[S:.*]] = arith.constant dense<2.500000e-01> : tensor<1x8x4x16xf32>
// WORDS: moe.expert {{.*}} fc1 %[[Q]] fc2 %[[Q]] fc1_scales %[[S]] fc2_scales %[[S]] {moe.int8_activations, panel_width = 16 : i64, quant = #moe.quant<bits = 4, block_size = 32>}
func.func @packs_block_scales(%rows: tensor<?x128xf32>, %offsets: tensor<2xi32>) -> tensor<?x128xf32> {
  %q = arith.constant dense<136> : tensor<1x128x64xui8>
  %s = arith.constant dense<0.25> : tensor<1x128x4xf32>
  %y = moe.expert %rows, %offsets fc1 %q fc2 %q fc1_scales %s fc2_scales %s {moe.int8_activations, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x128xf32>, tensor<2xi32>, tensor<1x128x64xui8>, tensor<1x128x64xui8>, tensor<1x128x4xf32>, tensor<1x128x4xf32>) -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}

// -----

// Quantised weights of the int8 kernels go in 4-byte words, 16 columns
// from a panel row being one vpdpbusd operand: element [e, p, w, j, r] is
// the packed byte [e, 16p + j, 4w + r]. fc1's row n holds n in every byte,
// so its first panel's rows read 0 0 0 0 1 1 1 1 ... 15 15 15 15 for
// every word (after the blob's alignment, 64). Scales keep their layout.
// WORDS-LABEL: func.func @packs_quantized_words
// WORDS-DAG: %[[Q1:.*]] = arith.constant dense_resource<[[BLOB:.*]]> : tensor<1x4x16x16x4xui8>
// WORDS-DAG: %[[Q2:.*]] = arith.constant dense<136> : tensor<1x4x16x16x4xui8>
// WORDS: moe.expert %{{.*}}, %{{.*}} fc1 %[[Q1]] fc2 %[[Q2]] fc1_scales %{{.*}} fc2_scales %{{.*}} {moe.int8_activations, panel_width = 16 : i64, quant = #moe.quant<bits = 8>} : (tensor<?x64xf32>, tensor<2xi32>, tensor<1x4x16x16x4xui8>, tensor<1x4x16x16x4xui8>, tensor<1x64xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
// WORDS: [[BLOB]]: "0x40000000000000000101010102020202030303030404040405050505060606060707070708080808090909090A0A0A0A0B0B0B0B0C0C0C0C0D0D0D0D0E0E0E0E0F0F0F0F000000000101010102020202030303030404040405050505060606060707070708080808090909090A0A0A0A0B0B0B0B0C0C0C0C0D0D0D0D0E0E0E0E0F0F0F0F
// Panels of 64 columns likewise; without the int8 kernels' mark (%z), with
// pack-quantized=false, or with panels under 16 columns, they keep their
// rows.
// WIDE-LABEL: func.func @packs_quantized_words
// WIDE: moe.expert {{.*}} {moe.int8_activations, panel_width = 64 : i64, {{.*}} tensor<1x1x16x64x4xui8>, tensor<1x1x16x64x4xui8>
// WIDE: moe.expert {{.*}} {quant = #moe.quant<bits = 8>} :
// CHECK-LABEL: func.func @packs_quantized_words
// CHECK-NOT: panel_width
// NOQUANT-LABEL: func.func @packs_quantized_words
// NOQUANT-NOT: panel_width
func.func @packs_quantized_words(%rows: tensor<?x64xf32>, %offsets: tensor<2xi32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %q1 = arith.constant dense_resource<q1> : tensor<1x64x64xui8>
  %q2 = arith.constant dense<136> : tensor<1x64x64xui8>
  %s = arith.constant dense<0.5> : tensor<1x64xf32>
  %y = moe.expert %rows, %offsets fc1 %q1 fc2 %q2 fc1_scales %s fc2_scales %s {moe.int8_activations, quant = #moe.quant<bits = 8, block_size = 0>} : (tensor<?x64xf32>, tensor<2xi32>, tensor<1x64x64xui8>, tensor<1x64x64xui8>, tensor<1x64xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  %z = moe.expert %rows, %offsets fc1 %q2 fc2 %q2 fc1_scales %s fc2_scales %s {quant = #moe.quant<bits = 8, block_size = 0>} : (tensor<?x64xf32>, tensor<2xi32>, tensor<1x64x64xui8>, tensor<1x64x64xui8>, tensor<1x64xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return %y, %z : tensor<?x64xf32>, tensor<?x64xf32>
}

{-#
  dialect_resources: {
    builtin: {
      q1: "0x01000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010102020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030404040404040404040404040404040404040404040404040404040404040404040404040404040404040404040404040404040404040404040404040404040405050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070708080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808090909090909090909090909090909090909090909090909090909090909090909090909090909090909090909090909090909090909090909090909090909090a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111112121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141415151515151515151515151515151515151515151515151515151515151515151515151515151515151515151515151515151515151515151515151515151515161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171718181818181818181818181818181818181818181818181818181818181818181818181818181818181818181818181818181818181818181818181818181818191919191919191919191919191919191919191919191919191919191919191919191919191919191919191919191919191919191919191919191919191919191a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212121212122222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242425252525252525252525252525252525252525252525252525252525252525252525252525252525252525252525252525252525252525252525252525252525262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262727272727272727272727272727272727272727272727272727272727272727272727272727272727272727272727272727272727272727272727272727272728282828282828282828282828282828282828282828282828282828282828282828282828282828282828282828282828282828282828282828282828282828292929292929292929292929292929292929292929292929292929292929292929292929292929292929292929292929292929292929292929292929292929292a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313131313132323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333434343434343434343434343434343434343434343434343434343434343434343434343434343434343434343434343434343434343434343434343434343435353535353535353535353535353535353535353535353535353535353535353535353535353535353535353535353535353535353535353535353535353535363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373738383838383838383838383838383838383838383838383838383838383838383838383838383838383838383838383838383838383838383838383838383838393939393939393939393939393939393939393939393939393939393939393939393939393939393939393939393939393939393939393939393939393939393a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f"
    }
  }
#-}
