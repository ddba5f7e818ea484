// RUN: moe-opt %s --split-input-file --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" | FileCheck %s

// Routing becomes a parallel loop over blocks of 12 tokens, each routed in
// turn with a scratch of its own, writing freshly allocated [T, k] weights
// and ids. A token's scores are vectors of 16 f32 (E = 8: one chunk, its
// lanes past E masked): a softmax by vector reductions, then k rounds of a
// vector maximum (maxnumf) and the lowest expert holding it among those not
// yet taken, a mask carried from round to round.
// CHECK-LABEL: func @route
// CHECK-SAME:  (%[[L:.*]]: memref<?x8xf32>)
// CHECK:       %[[T:.*]] = memref.dim %[[L]], %{{.*}} : memref<?x8xf32>
// CHECK-DAG:   %[[W:.*]] = memref.alloc(%[[T]]) {{.*}} : memref<?x2xf32>
// CHECK-DAG:   %[[IDS:.*]] = memref.alloc(%[[T]]) {{.*}} : memref<?x2xi32>
// CHECK-DAG:   %[[C12:.*]] = arith.constant 12 : index
// CHECK:       scf.parallel (%[[T0:.*]]) = (%{{.*}}) to (%[[T]]) step (%[[C12]])
// CHECK:         %[[NEXT:.*]] = arith.addi %[[T0]], %[[C12]]
// CHECK:         %[[END:.*]] = arith.minui %[[NEXT]], %[[T]]
// CHECK:         memref.alloc() : memref<8xf32>
// CHECK:         scf.for %[[TOKEN:.*]] = %[[T0]] to %[[END]]
// CHECK:           %[[MASK:.*]] = arith.constant dense<[true, true, true, true, true, true, true, true, false, false, false, false, false, false, false, false]> : vector<16xi1>
// CHECK:           %[[ROW:.*]] = vector.maskedload %[[L]][%[[TOKEN]], %{{.*}}], %[[MASK]], %{{.*}} : memref<?x8xf32>, vector<16xi1>, vector<16xf32> into vector<16xf32>
// CHECK:           vector.reduction <maximumf>, %[[ROW]] : vector<16xf32> into f32
// CHECK:           math.exp %{{.*}} : vector<16xf32>
// CHECK:           vector.reduction <add>
// CHECK:           scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[FREE:.*]] = %[[MASK]]) -> (vector<16xi1>)
// CHECK:             arith.select %[[FREE]]
// CHECK:             vector.reduction <maxnumf>
// CHECK:             vector.reduction <minsi>
// CHECK:             vector.reduction <minsi>
// CHECK:             memref.store %{{.*}}, %[[IDS]]
// CHECK:       return %[[W]], %[[IDS]]
// CHECK-NOT:   moe.route
func.func @route(%logits: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %ids = moe.route %logits {k = 2 : i64, normalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %ids : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// The router fused: one parallel loop over blocks of 12 tokens, each with
// its own [12, E] logits (zeroed, then the transposed-B contraction of the
// block's token rows) and scratch, routed into the block's rows of the
// results.
// CHECK-LABEL: func @route_router_weight
// CHECK-SAME:  (%[[X:.*]]: memref<?x64xf32>, %[[R:.*]]: memref<8x64xf32>)
// CHECK:       %[[T:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x64xf32>
// CHECK-DAG:   %[[W:.*]] = memref.alloc(%[[T]]) {{.*}} : memref<?x2xf32>
// CHECK-DAG:   %[[IDS:.*]] = memref.alloc(%[[T]]) {{.*}} : memref<?x2xi32>
// CHECK-DAG:   %[[C12:.*]] = arith.constant 12 : index
// CHECK:       scf.parallel (%[[T0:.*]]) = (%{{.*}}) to (%[[T]]) step (%[[C12]])
// CHECK:         %[[N:.*]] = arith.minui %[[C12]],
// CHECK:         %[[BLOCK:.*]] = memref.alloc() : memref<12x8xf32>
// CHECK:         %[[LOGITS:.*]] = memref.subview %[[BLOCK]][0, 0] [%[[N]], 8] [1, 1]
// CHECK:         linalg.fill ins(%{{.*}} : f32) outs(%[[LOGITS]]
// CHECK:         %[[ROWS:.*]] = memref.subview %[[X]][%[[T0]], 0] [%[[N]], 64] [1, 1]
// CHECK:         linalg.generic
// CHECK-SAME:      ins(%[[ROWS]], %[[R]] : {{.*}}) outs(%[[LOGITS]] : {{.*}})
// CHECK:           arith.mulf
// CHECK:           arith.addf
// CHECK:         memref.alloc() : memref<8xf32>
// CHECK:         memref.subview %[[W]][%[[T0]], 0] [%[[N]], 2] [1, 1]
// CHECK:         memref.subview %[[IDS]][%[[T0]], 0] [%[[N]], 2] [1, 1]
// CHECK:         scf.for %[[TOKEN:.*]] = %{{.*}} to %[[N]]
// CHECK:           vector.maskedload %[[LOGITS]][%[[TOKEN]], %{{.*}}]
// CHECK:           math.exp
// CHECK:       return %[[W]], %[[IDS]]
// CHECK-NOT:   moe.route
func.func @route_router_weight(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %ids = moe.route %x router_weight %r {k = 2 : i64, normalize} : tensor<?x64xf32> router_weight tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %ids : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// Capacity is computed once, in f64, as ceil(c * T * k / E).
// CHECK-LABEL: func @dispatch_capacity
// CHECK:       %[[CF:.*]] = arith.constant 1.250000e+00 : f64
// CHECK:       arith.mulf %[[CF]]
// CHECK:       math.ceil
// CHECK:       arith.cmpi ult
// CHECK-NOT:   moe.dispatch
func.func @dispatch_capacity(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>) -> (tensor<?x16xf32>, tensor<5xi32>) {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64, capacity_factor = 1.25} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  return %rows, %offsets : tensor<?x16xf32>, tensor<5xi32>
}

// -----

// An absolute capacity per group of %g tokens: a loop over ceil(T / g)
// groups, each resetting its per-expert admissions and competing over its
// own tokens [g * i, min(g * i + g, T)).
// CHECK-LABEL: func @dispatch_expert_capacity
// CHECK-SAME:  (%{{.*}}: memref<?x16xf32>, %{{.*}}: memref<?x1xi32>, %[[G:.*]]: index)
// CHECK-DAG:   %[[C3:.*]] = arith.constant 3 : index
// CHECK:       %[[SIZE:.*]] = arith.maxui %[[G]], %{{.*}} : index
// CHECK:       %[[GROUPS:.*]] = arith.ceildivui %{{.*}}, %[[SIZE]] : index
// CHECK:       scf.for %[[I:.*]] = %{{.*}} to %[[GROUPS]]
// CHECK:         %[[FIRST:.*]] = arith.muli %[[I]], %[[SIZE]]
// CHECK:         %[[END:.*]] = arith.addi %[[FIRST]], %[[SIZE]]
// CHECK:         %[[LAST:.*]] = arith.minui %[[END]], %{{.*}}
// CHECK:         scf.for %{{.*}} = %[[FIRST]] to %[[LAST]]
// CHECK:           arith.cmpi ult, %{{.*}}, %[[C3]]
// CHECK-NOT:   moe.dispatch
func.func @dispatch_expert_capacity(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %g: index) -> (tensor<?x16xf32>, tensor<5xi32>) {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids group_size %g {num_experts = 4 : i64, expert_capacity = 3 : i64} : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x1xi32>
  return %rows, %offsets : tensor<?x16xf32>, tensor<5xi32>
}

// -----

// Float experts run as two parallel loops over experts x column panels:
// fc1 with the activation on the panel just computed, then fc2. With one
// panel of I = 32 and of H = 16 columns the loops are over experts only;
// interleaved SwiGLU reads gate and linear columns through strided index
// maps.
// CHECK-DAG:   #[[GATE:.*]] = affine_map<(d0, d1) -> (d0, d1 * 2)>
// CHECK-DAG:   #[[LIN:.*]] = affine_map<(d0, d1) -> (d0, d1 * 2 + 1)>
// CHECK-LABEL: func @expert_swiglu
// CHECK:       scf.parallel (%[[E:.*]], %{{.*}}) = (%{{.*}}, %{{.*}}) to (%c4{{.*}}, %{{.*}})
// CHECK:         scf.if
// CHECK:           memref.subview %{{.*}}[%[[E]], 0, 0] [1, 64, 16] [1, 1, 1]
// CHECK:           linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]
// CHECK-SAME:        attrs = {moe.expert_gemm}
// CHECK:           linalg.generic {indexing_maps = [#[[GATE]], #[[LIN]], #{{.*}}]
// CHECK:             arith.minimumf
// CHECK:             math.exp
// CHECK:       scf.parallel (%[[E2:.*]], %{{.*}}) = (%{{.*}}, %{{.*}}) to (%c4{{.*}}, %{{.*}})
// CHECK:           memref.subview %{{.*}}[%[[E2]], 0, 0] [1, 16, 32] [1, 1, 1]
// CHECK:           linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]
// CHECK:       linalg.fill
// CHECK-NOT:   moe.expert
func.func @expert_swiglu(%rows: tensor<?x16xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x64x16xbf16>, %w2: tensor<4x16x32xbf16>) -> tensor<?x16xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>, limit = 7.0} : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x64x16xbf16>, tensor<4x16x32xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// I = 128 splits into two panels of 64 columns (bias included). With fewer
// than 16 rows per expert on average (64 rows for 4 experts) panels are
// the outer dimension, so that threads share every expert's columns;
// otherwise experts are, so that a thread keeps an expert's rows in cache.
// CHECK-LABEL: func @expert_panels
// CHECK:       %[[PANELS:.*]] = arith.ceildivui %c128{{.*}}, %c64{{.*}} : index
// CHECK:       %[[FEW:.*]] = arith.cmpi ult, %[[ROWS:.*]], %c64{{.*}} : index
// CHECK:       scf.if %[[FEW]] {
// CHECK:         scf.parallel (%[[P:.*]], %[[E:.*]]) = (%{{.*}}, %{{.*}}) to (%[[PANELS]], %c4{{.*}})
// CHECK:           %[[FIRST:.*]] = arith.muli %[[P]], %c64
// CHECK:           %[[C:.*]] = memref.subview %{{.*}}[%{{.*}}, %[[FIRST]]] [%{{.*}}, 64] [1, 1] : memref<?x128xf32> to memref<?x64xf32, strided<[128, 1], offset: ?>>
// CHECK:           %[[BIAS:.*]] = memref.subview %{{.*}}[%[[E]], 0] [1, 128]
// CHECK:           memref.subview %[[BIAS]][%[[FIRST]]] [64] [1]
// CHECK:           %[[W:.*]] = memref.subview %{{.*}}[%[[E]], 0, 0] [1, 128, 24] [1, 1, 1]
// CHECK:           memref.subview %[[W]][%[[FIRST]], 0] [64, 24] [1, 1]
// CHECK:           linalg.generic {{.*}} outs(%[[C]] :
// CHECK:             math.erf
// CHECK:       } else {
// CHECK:         scf.parallel (%[[E2:.*]], %[[P2:.*]]) = (%{{.*}}, %{{.*}}) to (%c4{{.*}}, %[[PANELS]])
// CHECK:           arith.muli %[[P2]], %c64
// The second loop: H = 24 is one panel.
// CHECK:       scf.parallel
// CHECK:           memref.subview %{{.*}}[%{{.*}}, 0, 0] [1, 24, 128] [1, 1, 1]
// CHECK-NOT:   scf.parallel
// CHECK:       linalg.fill
func.func @expert_panels(%rows: tensor<?x24xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x128x24xf32>, %b1: tensor<4x128xf32>, %w2: tensor<4x24x128xf32>) -> tensor<?x24xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc1_bias %b1 fc2 %w2 {activation = #moe.activation<gelu>} : (tensor<?x24xf32>, tensor<5xi32>, tensor<4x128x24xf32>, tensor<4x128xf32>, tensor<4x24x128xf32>) -> tensor<?x24xf32>
  return %y : tensor<?x24xf32>
}

// -----

// Panel-major bf16 weights ([E, N / 64, K / 2, 64, 2]): whole panels are
// sliced, and the contraction splits k into pairs, k = 2 k2 + r, each loop
// a dimension of B.
// CHECK-DAG: #[[PA:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2 * 2 + d3)>
// CHECK-DAG: #[[PB:.*]] = affine_map<(d0, d1, d2, d3) -> (d1 floordiv 64, d2, d1 mod 64, d3)>
// CHECK-LABEL: func @expert_bf16_panels
// CHECK:       memref.subview %{{.*}}[%{{.*}}, 0, 0, 0] [1, 32, 64, 2] [1, 1, 1, 1] : memref<2x32x64x2xbf16, strided<[4096, 128, 2, 1], offset: ?>> to memref<1x32x64x2xbf16, strided<[4096, 128, 2, 1], offset: ?>>
// Each GEMM is marked with where the weights its thread reads next start:
// panels first (few rows per expert), the next expert's same panel, 2 x 32
// x 64 x 2 elements on; experts first, the expert's next panel, right
// after its own 32 x 64 x 2.
// CHECK:       linalg.generic {indexing_maps = [#[[PA]], #[[PB]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction", "reduction"]} ins(%{{.*}}, %{{.*}} : memref<?x64xbf16, {{.*}}>, memref<1x32x64x2xbf16, {{.*}}>) outs(%{{.*}} : memref<?x64xf32, {{.*}}>) attrs =  {moe.expert_gemm, moe.next_weights_offset = 8192 : i64}
// CHECK:       } else {
// CHECK:       linalg.generic {{.*}} memref<1x32x64x2xbf16, {{.*}}>) outs(%{{.*}} : memref<?x64xf32, {{.*}}>) attrs =  {moe.expert_gemm, moe.next_weights_offset = 4096 : i64}
func.func @expert_bf16_panels(%rows: tensor<?x64xbf16>, %offsets: tensor<3xi32>, %w1: tensor<2x2x32x64x2xbf16>, %w2: tensor<2x1x64x64x2xbf16>) -> tensor<?x64xbf16> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 {activation = #moe.activation<relu>, panel_width = 64 : i64} : (tensor<?x64xbf16>, tensor<3xi32>, tensor<2x2x32x64x2xbf16>, tensor<2x1x64x64x2xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// Combine accumulates per token in f32 and guards every id and row index.
// CHECK-LABEL: func @combine_copy
// CHECK:       memref.alloca() : memref<16xf32>
// CHECK:       scf.for
// CHECK:         arith.cmpi slt
// CHECK:         arith.cmpi eq, %{{.*}}, %{{.*}} : index
// CHECK-NOT:   moe.combine
func.func @combine_copy(%y: tensor<?x16xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>, %slot_rows: tensor<?x2xi32>, %x: tensor<?x16xf32>) -> tensor<?x16xf32> {
  %out = moe.combine %y, %w, %ids, %slot_rows input %x {num_experts = 4 : i64, zero_experts = [#moe.zero_expert<copy>]} : (tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// Grouped routing (like SparseMixer and logits that are not f32) keeps the
// element-wise form: per round an argmax loop over the scores in memory.
// CHECK-LABEL: func @route_groups_elementwise
// CHECK-NOT:   vector.
// CHECK:       memref.load
// CHECK:       arith.cmpf ogt
// CHECK-NOT:   vector.
// CHECK:       return
func.func @route_groups_elementwise(%logits: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %ids = moe.route %logits {k = 2 : i64, num_groups = 4 : i64, top_groups = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %ids : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// A static token count allocates static buffers.
// CHECK-LABEL: func @route_static
// CHECK-DAG:   memref.alloc() {{.*}} : memref<8x1xf32>
// CHECK-DAG:   memref.alloc() {{.*}} : memref<8x1xi32>
func.func @route_static(%logits: tensor<8x4xf32>) -> (tensor<8x1xf32>, tensor<8x1xi32>) {
  %w, %ids = moe.route %logits {k = 1 : i64, scoring = #moe.scoring<sigmoid>} : tensor<8x4xf32> -> tensor<8x1xf32>, tensor<8x1xi32>
  return %w, %ids : tensor<8x1xf32>, tensor<8x1xi32>
}

// -----

// Concatenated SwiGLU computes a panel's gate columns from fc1's first I
// rows and its linear columns from the same panel of the last I rows, into
// separate [rows, panel] views, so the activation loop runs over the
// panel's columns.
// CHECK-LABEL: func @expert_swiglu_concatenated
// CHECK:       %[[FIRST:.*]] = arith.muli %{{.*}}, %c32
// CHECK:       %[[GATE:.*]] = memref.subview %[[FC1OUT:.*]][%[[ROW:.*]], %[[FIRST]]] [%{{.*}}, 32] [1, 1]
// CHECK:       memref.subview %{{.*}}[%[[FIRST]], 0] [32, 16] [1, 1]
// CHECK:       %[[SECOND:.*]] = arith.addi %[[FIRST]], %c32
// CHECK:       %[[LIN:.*]] = memref.subview %[[FC1OUT]][%[[ROW]], %[[SECOND]]] [%{{.*}}, 32] [1, 1]
// CHECK:       memref.subview %{{.*}}[%[[SECOND]], 0] [32, 16] [1, 1]
// CHECK:       linalg.generic {{.*}} ins(%[[GATE]], %[[LIN]] : {{.*}}) outs(%{{.*}} : memref<?x32xf32, {{.*}}>)
func.func @expert_swiglu_concatenated(%rows: tensor<?x16xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x64x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<concatenated>} : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x64x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Experts with more than 16 rows (the else branch; the decode kernel is
// below) dequantise each panel's weight rows (here fc1's 2 x 256
// interleaved rows of the panel: quantised panels are sized by their bytes,
// 128 KiB up to 256 columns) into a scratch of the panel's own, so that
// panels run in parallel: 16 packed bytes become 32 floats (low nibble =
// even column), and the float contraction runs on it into the panel's
// output columns. No buffer the size of a dequantised weight
// ([4, 1024, 64] or [1024, 64]) is allocated.
// CHECK-LABEL: func @expert_int4_block
// CHECK-NOT:     memref<4x1024x64xf32>
// CHECK-NOT:     memref<1024x64xf32>
// CHECK:         scf.parallel (%{{.*}}, %[[X:.*]]) =
// CHECK:           %[[FIRST:.*]] = arith.muli %{{.*}}, %c2 : index
// CHECK:           %[[C:.*]] = memref.subview %{{.*}}[%{{.*}}, %[[FIRST]]] [%{{.*}}, 512] [1, 1]
// CHECK:           } else {
// CHECK:             %[[PANEL:.*]] = memref.alloc() {alignment = 64 : i64} : memref<512x64xf32>
// CHECK:             scf.parallel
// CHECK:               vector.load %{{.*}}[%[[X]], %{{.*}}, %{{.*}}] : memref<4x1024x32xui8>, vector<16xui8>
// CHECK:               arith.andi %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK:               arith.shrui %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK:               vector.interleave %{{.*}}, %{{.*}} : vector<16xf32> -> vector<32xf32>
// CHECK:               vector.store %{{.*}}, %[[PANEL]][
// CHECK:             linalg.generic {{.*}} ins(%{{.*}}, %[[PANEL]] : {{.*}}) outs(%[[C]] : {{.*}})
// CHECK-NOT:           moe.expert_gemm
func.func @expert_int4_block(%rows: tensor<?x64xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x1024x32xui8>, %w2: tensor<4x64x256xui8>, %s1: tensor<4x1024x2xf32>, %s2: tensor<4x64x16xf32>, %z1: tensor<4x1024x1xui8>) -> tensor<?x64xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 fc1_zero_points %z1 {activation = #moe.activation<swiglu>, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x1024x32xui8>, tensor<4x64x256xui8>, tensor<4x1024x2xf32>, tensor<4x64x16xf32>, tensor<4x1024x1xui8>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// An expert with at most 16 rows (decode) multiplies the packed weight as
// it is. All rows are first staged in f32 (one parallel loop before the
// experts), each 64-column vector step deinterleaved (even columns, then
// odd) to match the nibbles. Then, per panel of 64 weight rows, a loop over
// tiles of 16 weight rows; per weight row, groups of up
// to 4 activation rows, switched on the group size so that each case has a
// static number of accumulators (registers); per block of 64 columns, its
// scale and zero point, then 32 packed bytes widened once, split into low
// nibbles (even columns) and high nibbles (odd columns), dequantised as
// q * scale - zp * scale by one FMA each and FMA'd into an even and an odd
// accumulator per activation row; the columns of a block past its last
// whole vector (none here) go byte by byte, and a row's accumulators are
// added and reduced once, into C. More rows take the panel path in the else
// branch.
// CHECK-LABEL: func @expert_int4_decode
// CHECK:         %[[ALL:.*]] = memref.subview %{{.*}}[0, 0] [%{{.*}}, 256] [1, 1] : memref<?x256xf32> to memref<?x256xf32, strided<[256, 1]>>
// CHECK:         scf.parallel (%[[M:.*]]) =
// CHECK:           vector.load %{{.*}}[%[[M]], %{{.*}}] : memref<?x256xf32>, vector<64xf32>
// CHECK:           %[[EVEN:.*]], %[[ODD:.*]] = vector.deinterleave %{{.*}} : vector<64xf32> -> vector<32xf32>
// CHECK:           vector.store %[[EVEN]], %[[ALL]][%[[M]], %{{.*}}]
// CHECK:           vector.store %[[ODD]], %[[ALL]][%[[M]], %{{.*}}]
// CHECK:         scf.parallel (%[[X:.*]], %{{.*}}) =
// CHECK:             %[[STAGED:.*]] = memref.subview %[[ALL]][
// CHECK:             %[[DECODE:.*]] = arith.cmpi ule, %{{.*}}, %c16{{.*}} : index
// CHECK-NEXT:        scf.if %[[DECODE]] {
// CHECK:             scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
// CHECK:               scf.for %[[N:.*]] =
// CHECK:                 scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c4
// CHECK:                   %[[GROUP:.*]] = arith.minui %c4{{.*}}, %{{.*}} : index
// CHECK:                   scf.index_switch %[[GROUP]]
// CHECK-NEXT:              case 1 {
// CHECK:                     scf.for %[[BLK:.*]] = %{{.*}} to %c4{{.*}} step %{{.*}} iter_args({{.*}}) -> (vector<32xf32>, vector<32xf32>, f32) {
// CHECK:                       memref.load %{{.*}}[%[[X]], %[[N]], %[[BLK]]] : memref<4x64x4xf32>
// CHECK:                       memref.load %{{.*}}[%[[X]], %[[N]], %{{.*}}] : memref<4x64x2xui8>
// CHECK:                       scf.for %{{.*}} iter_args({{.*}}) -> (vector<32xf32>, vector<32xf32>, f32) {
// CHECK:                         vector.load %{{.*}}[%[[X]], %[[N]], %{{.*}}] : memref<4x64x128xui8>, vector<32xui8>
// CHECK:                         arith.extui %{{.*}} : vector<32xi8> to vector<32xi32>
// CHECK:                         arith.andi %{{.*}}, %{{.*}} : vector<32xi32>
// CHECK:                         arith.shrui %{{.*}}, %{{.*}} : vector<32xi32>
// CHECK-NOT:                     vector.interleave
// CHECK:                         vector.fma %{{.*}} : vector<32xf32>
// CHECK:                         vector.load %[[STAGED]]
// CHECK:                         vector.fma %{{.*}} : vector<32xf32>
// CHECK:                         vector.fma %{{.*}} : vector<32xf32>
// CHECK:                         vector.load %[[STAGED]]
// CHECK:                         vector.fma %{{.*}} : vector<32xf32>
// CHECK:                     arith.addf %{{.*}}, %{{.*}} : vector<32xf32>
// CHECK-NEXT:                vector.reduction <add>, %{{.*}} fastmath<reassoc> : vector<32xf32> into f32
// CHECK:                     memref.store
// CHECK-NOT:                 vector.reduction
// CHECK:                   case 2 {
// CHECK-COUNT-6:               vector.fma
// CHECK:                   case 3 {
// CHECK-COUNT-8:               vector.fma
// CHECK:                   default {
// CHECK-COUNT-10:              vector.fma
// CHECK:           } else {
// CHECK:             scf.parallel
// CHECK:             linalg.generic
func.func @expert_int4_decode(%rows: tensor<?x256xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x64x128xui8>, %w2: tensor<4x256x16xui8>, %s1: tensor<4x64x4xf32>, %s2: tensor<4x256x1xf32>, %z1: tensor<4x64x2xui8>) -> tensor<?x256xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 fc1_zero_points %z1 {activation = #moe.activation<swiglu>, quant = #moe.quant<bits = 4, block_size = 64>} : (tensor<?x256xf32>, tensor<5xi32>, tensor<4x64x128xui8>, tensor<4x256x16xui8>, tensor<4x64x4xf32>, tensor<4x256x1xf32>, tensor<4x64x2xui8>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

// With the combine fused (-moe-fuse-combine) and fewer than 16 rows per
// expert, fc2 is one parallel loop over the 2 column panels of H = 128,
// accumulating in place into combine_into: a panel allocates a 128 x 64
// block, takes the experts in order and each expert's rows in blocks of at
// most 128; a block's fc2 output is scaled by the rows' routing weights and
// added to the rows of their tokens (rows without a token in [0, T) are
// skipped). No [N, H] output is allocated there and no padding is filled.
// CHECK-LABEL: func @expert_combine_rows
// CHECK-SAME:    (%{{.*}}: memref<?x128xf32>, %[[OFF:.*]]: memref<5xi32>, %{{.*}}: memref<4x256x128xf32>, %[[W2:.*]]: memref<4x128x128xf32>, %[[INTO:.*]]: memref<?x128xf32>, %[[TOK:.*]]: memref<?xi32>, %[[RW:.*]]: memref<?xf32>)
// CHECK:         %[[ACT:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x128xf32>
// fc1 and the activation: the grouped loops over panels x experts.
// CHECK-COUNT-2: scf.parallel (%{{.*}}, %{{.*}}) =
// CHECK:         %[[PANELS:.*]] = arith.ceildivui %c128{{.*}}, %c64{{.*}} : index
// CHECK:         scf.parallel (%[[P:.*]]) = (%{{.*}}) to (%[[PANELS]])
// CHECK:           %[[FIRST:.*]] = arith.muli %[[P]], %c64{{.*}} : index
// CHECK:           %[[BLOCK:.*]] = memref.alloc() {alignment = 64 : i64} : memref<128x64xf32>
// CHECK:           scf.for %[[X:.*]] = %{{.*}} to %c4{{.*}} step %c1{{.*}} {
// CHECK:             memref.load %[[OFF]][%[[X]]] : memref<5xi32>
// CHECK:             %[[COUNT:.*]] = arith.subi
// CHECK:             scf.for %[[R0:.*]] = %{{.*}} to %[[COUNT]] step %c128{{.*}} {
// CHECK:               %[[N:.*]] = arith.minui %c128{{.*}}, %{{.*}} : index
// CHECK:               %[[START:.*]] = arith.addi %{{.*}}, %[[R0]] : index
// CHECK:               %[[C:.*]] = memref.subview %[[BLOCK]][0, 0] [%[[N]], 64] [1, 1]
// CHECK:               %[[A:.*]] = memref.subview %[[ACT]][%[[START]], 0] [%[[N]], 128] [1, 1]
// CHECK:               linalg.fill ins(%{{.*}} : f32) outs(%[[C]] :
// CHECK:               %[[WX:.*]] = memref.subview %[[W2]][%[[X]], 0, 0] [1, 128, 128]
// CHECK:               %[[WP:.*]] = memref.subview %[[WX]][%[[FIRST]], 0] [64, 128] [1, 1]
// CHECK:               linalg.generic {{.*}} ins(%[[A]], %[[WP]] : {{.*}}) outs(%[[C]] : {{.*}})
// CHECK:               scf.for %[[R:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:                 %[[ROW:.*]] = arith.addi %[[START]], %[[R]] : index
// CHECK:                 %[[T32:.*]] = memref.load %[[TOK]][%[[ROW]]] : memref<?xi32>
// CHECK:                 %[[T:.*]] = arith.index_cast %[[T32]] : i32 to index
// CHECK:                 scf.if %{{.*}} {
// CHECK:                   %[[WEIGHT:.*]] = memref.load %[[RW]][%[[ROW]]] : memref<?xf32>
// CHECK:                   %[[FROM:.*]] = memref.subview %[[C]][%[[R]], 0] [1, 64] [1, 1]
// CHECK:                   %[[TOROW:.*]] = memref.subview %[[INTO]][%[[T]], 0] [1, 128] [1, 1]
// CHECK:                   %[[TO:.*]] = memref.subview %[[TOROW]][%[[FIRST]]] [64] [1]
// CHECK:                   linalg.generic {{.*}} ins(%[[FROM]] : {{.*}}) outs(%[[TO]] : {{.*}})
// CHECK:                     %[[SCALED:.*]] = arith.mulf %[[WEIGHT]], %{{.*}} : f32
// CHECK:                     arith.addf %{{.*}}, %[[SCALED]] : f32
// With 16 rows per expert or more, experts stay outermost for the GEMM,
// into rows of their own, and a parallel loop over panels adds the
// dispatched rows to their tokens.
// CHECK:         } else {
// CHECK:           %[[YROWS:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x128xf32>
// CHECK:           scf.parallel (%[[X2:.*]], %[[P2:.*]]) = (%{{.*}}, %{{.*}}) to (%c4{{.*}}, %{{.*}})
// CHECK:             linalg.generic {{.*}} outs(%{{.*}} : memref<?x64xf32, strided<[128, 1], offset: ?>>)
// CHECK:           scf.parallel (%[[P3:.*]]) =
// CHECK:             %[[FIRST3:.*]] = arith.muli %[[P3]], %c64{{.*}} : index
// CHECK:             %[[ALL:.*]] = memref.subview %[[YROWS]][0, %[[FIRST3]]] [%{{.*}}, 64] [1, 1]
// CHECK:             scf.for
// CHECK:               memref.load %[[TOK]]
// CHECK:               scf.if
// CHECK:                 memref.subview %[[ALL]]
// CHECK:                 linalg.generic
// CHECK-NOT:     linalg.fill ins(%{{.*}}) outs(%[[INTO]]
// CHECK:         return %[[INTO]]
func.func @expert_combine_rows(%rows: tensor<?x128xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x256x128xf32>, %w2: tensor<4x128x128xf32>, %into: tensor<?x128xf32>, %tokens: tensor<?xi32>, %weights: tensor<?xf32>) -> tensor<?x128xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 combine_into %into row_tokens %tokens row_weights %weights {activation = #moe.activation<swiglu>} : (tensor<?x128xf32>, tensor<5xi32>, tensor<4x256x128xf32>, tensor<4x128x128xf32>, tensor<?x128xf32>, tensor<?xi32>, tensor<?xf32>) -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}

// -----

// Gathered rows (-moe-fuse-gather): dispatch writes the offsets and row
// tokens but copies no token rows (its rows are unused), and fc1 reads the
// tokens in place: a contraction over the expert's row tokens whose body
// loads A's element from token min(row_tokens[r], T - 1).
// CHECK-LABEL: func @dispatch_gathered
// CHECK-SAME:    (%[[X:.*]]: memref<?x16xf32>, %{{.*}}: memref<?x2xi32>, %{{.*}}: memref<4x32x16xf32>, %{{.*}}: memref<4x16x32xf32>)
// CHECK:         %[[TOK:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?xi32>
// CHECK-NOT:     memref.store %{{.*}} : memref<?x16xf32>
// CHECK:         %[[N:.*]] = memref.dim %[[TOK]], %{{.*}} : memref<?xi32>
// CHECK:         memref.alloc(%[[N]]) {alignment = 64 : i64} : memref<?x32xf32>
// CHECK:         scf.parallel
// CHECK:           %[[TOKS:.*]] = memref.subview %[[TOK]][%{{.*}}] [%{{.*}}] [1]
// CHECK:           %[[T:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x16xf32>
// CHECK:           %[[LAST:.*]] = arith.subi %[[T]], %{{.*}} : index
// CHECK:           linalg.generic {{.*}} ins(%[[TOKS]], %{{.*}} : memref<?xi32, strided<[1], offset: ?>>, memref<32x16xf32, strided<[16, 1], offset: ?>>)
// CHECK:             %[[ROW:.*]] = arith.index_cast %{{.*}} : i32 to index
// CHECK:             %[[CLAMPED:.*]] = arith.minui %[[ROW]], %[[LAST]] : index
// CHECK:             %[[K:.*]] = linalg.index 2 : index
// CHECK:             memref.load %[[X]][%[[CLAMPED]], %[[K]]] : memref<?x16xf32>
func.func @dispatch_gathered(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  %y = moe.expert %x, %offsets gather_tokens %row_tokens fc1 %w1 fc2 %w2 : (tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Marked by -moe-int8-activations (4-bit, blocks of 32 columns, H = 256):
// each projection's input rows are first quantised to int8, one parallel
// loop over rows: per block, its largest magnitude, then 32 columns at a
// time rounded, narrowed to i8 and stored deinterleaved (even columns, then
// odd, per 128-column step); each block's -8 * sum q goes into the first of
// its i32 lanes, the others are zeros. The decode kernel starts a row's
// i32 lanes from those, adds for each 64 weight bytes the products of its
// low nibbles with the even codes and of its high nibbles with the odd ones,
// four per lane (vpdpbusd's semantics, -moe-x86-vnni-dot), then converts
// the lanes once per step of four blocks, each block scaled by its weight
// scale times its activation scale.
// CHECK-LABEL: func @expert_int4_int8_activations
// CHECK:         %[[CODES:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x256xi8>
// CHECK:         %[[SCALES:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// CHECK:         %[[CORR:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x32xi32>
// CHECK:         scf.parallel (%[[M:.*]]) =
// CHECK:           vector.store %{{.*}}, %[[CORR]][%[[M]], %{{.*}}] : memref<?x32xi32>, vector<16xi32>
// CHECK:           vector.reduction <maximumf>, %{{.*}} : vector<32xf32> into f32
// CHECK:           memref.store %{{.*}}, %[[SCALES]][%[[M]], %{{.*}}] : memref<?x8xf32>
// CHECK:             math.roundeven %{{.*}} : vector<32xf32>
// CHECK:             arith.trunci %{{.*}} : vector<32xi32> to vector<32xi8>
// CHECK:             vector.deinterleave %{{.*}} : vector<32xi8> -> vector<16xi8>
// CHECK:           %[[SUM:.*]] = vector.reduction <add>, %{{.*}} : vector<32xi32> into i32
// CHECK:           %[[NEG:.*]] = arith.muli %[[SUM]], %c-8_i32 : i32
// CHECK:           memref.store %[[NEG]], %[[CORR]][%[[M]], %{{.*}}] : memref<?x32xi32>
// CHECK:         scf.parallel (%[[X:.*]], %{{.*}}) =
// CHECK:             scf.if
// CHECK:                 scf.index_switch
// CHECK-NEXT:            case 1 {
// CHECK:                   scf.for %[[UNIT:.*]] = %{{.*}} to %c2{{.*}} iter_args(%{{.*}}) -> (vector<16xf32>) {
// CHECK:                     %[[START:.*]] = vector.load %{{.*}} : memref<?x32xi32, {{.*}}>, vector<16xi32>
// CHECK:                     scf.for %{{.*}} iter_args(%{{.*}} = %[[START]]) -> (vector<16xi32>) {
// CHECK:                       vector.load %{{.*}}[%[[X]], %{{.*}}, %{{.*}}] : memref<4x256x128xui8>, vector<64xui8>
// CHECK:                       arith.andi %{{.*}} : vector<64xi8>
// CHECK:                       arith.shrui %{{.*}} : vector<64xi8>
// CHECK:                       arith.extui %{{.*}} : vector<64xi8> to vector<64xi32>
// CHECK:                       arith.extsi %{{.*}} : vector<64xi8> to vector<64xi32>
// CHECK:                       vector.multi_reduction <add>, %{{.*}} [1] : vector<16x4xi32> to vector<16xi32>
// CHECK:                       vector.multi_reduction <add>, %{{.*}} [1] : vector<16x4xi32> to vector<16xi32>
// CHECK:                     vector.load %{{.*}}[%[[X]], %{{.*}}, %{{.*}}] : memref<4x256x8xf32>, vector<4xf32>
// CHECK:                     vector.shuffle %{{.*}} [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3] : vector<4xf32>, vector<4xf32>
// CHECK:                     arith.sitofp %{{.*}} : vector<16xi32> to vector<16xf32>
// CHECK:                     vector.fma %{{.*}} : vector<16xf32>
// CHECK:                   vector.reduction <add>, %{{.*}} fastmath<reassoc> : vector<16xf32> into f32
// CHECK:                 default {
// CHECK-COUNT-8:             vector.multi_reduction
func.func @expert_int4_int8_activations(%rows: tensor<?x256xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x256x128xui8>, %w2: tensor<4x256x64xui8>, %s1: tensor<4x256x8xf32>, %s2: tensor<4x256x4xf32>) -> tensor<?x256xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {activation = #moe.activation<swiglu>, moe.int8_activations, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x256xf32>, tensor<5xi32>, tensor<4x256x128xui8>, tensor<4x256x64xui8>, tensor<4x256x8xf32>, tensor<4x256x4xf32>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

// The same expert with its weights and block-wise scales panel-major
// (-moe-pack-expert-weights): the outer-product kernel runs at every row
// count (no dot-product kernel's switch over row counts, no scratch, no
// transposes). 16
// columns' word is one 64-byte load from the weights viewed as
// [E, N / 64, words, 256] bytes, and 16 columns' scales of a block one load.
// The next task's lines are prefetched by their offsets in the weights
// viewed as one run of bytes, a few with each block's step along K (the
// 12 f32 sums of 3 rows by 4 vectors are the loop's).
// CHECK-LABEL: func @expert_int4_panels_int8_activations
// CHECK-NOT:     {{vector.shuffle|scf.index_switch}}
// CHECK:         %[[WORDS:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0], [1], [2], [3, 4]] : memref<4x4x32x64x4xui8> into memref<4x4x32x256xui8>
// CHECK-NOT:     memref.alloc
// CHECK-NOT:     {{vector.shuffle|scf.index_switch}}
// CHECK:         %[[BYTES:.*]] = memref.collapse_shape %[[WORDS]] {{\[}}[0, 1, 2, 3]] : memref<4x4x32x256xui8> into memref<131072xui8>
// CHECK-NOT:     {{vector.shuffle|scf.index_switch}}
// CHECK:         scf.for %{{.*}} = %{{.*}} to %c8{{.*}} step %c1{{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
// CHECK-NEXT:      arith.muli
// CHECK-NEXT:      arith.addi
// CHECK-NEXT:      %[[LO:.*]] = arith.minui
// CHECK-NEXT:      arith.addi
// CHECK-NEXT:      %[[HI:.*]] = arith.minui
// CHECK:           scf.for %[[LINE:.*]] = %[[LO]] to %[[HI]]
// CHECK:             %[[BYTE:.*]] = arith.muli %[[LINE]], %c64{{.*}} : index
// CHECK-NEXT:        memref.prefetch %[[BYTES]][%[[BYTE]]], read, locality<2>, data : memref<131072xui8>
// CHECK-NOT:     {{vector.shuffle|scf.index_switch}}
// CHECK:         vector.load %[[WORDS]][%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}] : memref<4x4x32x256xui8>, vector<64xui8>
// CHECK-NOT:     {{vector.shuffle|scf.index_switch}}
// CHECK:         vector.load %{{.*}} : memref<4x4x8x64xf32>, vector<16xf32>
// CHECK-NOT:     {{vector.shuffle|scf.index_switch}}
// CHECK:         return
func.func @expert_int4_panels_int8_activations(%rows: tensor<?x256xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x4x32x64x4xui8>, %w2: tensor<4x4x16x64x4xui8>, %s1: tensor<4x4x8x64xf32>, %s2: tensor<4x4x4x64xf32>) -> tensor<?x256xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {activation = #moe.activation<swiglu>, moe.int8_activations, panel_width = 64 : i64, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x256xf32>, tensor<5xi32>, tensor<4x4x32x64x4xui8>, tensor<4x4x16x64x4xui8>, tensor<4x4x8x64xf32>, tensor<4x4x4x64xf32>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

// Reading the tokens' rows in place (-moe-fuse-gather), the int8 kernels
// take fc1's input as codes quantised once per token: the codes, scales and
// corrections have a row per token (the rows' dimension, not the dispatched
// rows'), no gathered copy of the float rows is made, and the kernel reads
// each dispatched row's codes at its token's row (clamped to the last).
// CHECK-LABEL: func @expert_int4_panels_int8_activations_gathered
// CHECK-SAME:      (%[[TOKENS_IN:.*]]: memref<?x256xf32>, %{{.*}}: memref<5xi32>, %[[ROW_TOKENS:.*]]: memref<?xi32>,
// CHECK-NOT:     memref.load %[[TOKENS_IN]]
// CHECK:         %[[T:.*]] = memref.dim %[[TOKENS_IN]], %c0
// CHECK:         %[[CODES:.*]] = memref.alloc(%[[T]]) {alignment = 64 : i64} : memref<?x256xi8>
// CHECK:         memref.alloc(%[[T]]) {alignment = 64 : i64} : memref<?x8xf32>
// CHECK:         memref.alloc(%[[T]]) {alignment = 64 : i64} : memref<?x32xi32>
// CHECK:         scf.parallel (%[[X:.*]], %{{.*}}) =
// CHECK:           memref.subview %[[ROW_TOKENS]]
// CHECK:           %[[ROWS:.*]] = memref.dim %[[CODES]], %c0{{.*}} : memref<?x256xi8>
// CHECK:           %[[LAST:.*]] = arith.subi %[[ROWS]], %c1{{.*}} : index
// CHECK:           %[[TOKEN:.*]] = memref.load %{{.*}}[%{{.*}}] : memref<?xi32, strided<[1], offset: ?>>
// CHECK:           %[[TOKEN_INDEX:.*]] = arith.index_cast %[[TOKEN]] : i32 to index
// CHECK:           %[[ROW:.*]] = arith.minui %[[TOKEN_INDEX]], %[[LAST]] : index
// CHECK:           vector.load %[[CODES]][%[[ROW]], %{{.*}}] : memref<?x256xi8>, vector<4xi8>
// CHECK-NOT:     memref.load %[[TOKENS_IN]]
// CHECK:         return
func.func @expert_int4_panels_int8_activations_gathered(%tokens: tensor<?x256xf32>, %offsets: tensor<5xi32>, %row_tokens: tensor<?xi32>, %w1: tensor<4x4x32x64x4xui8>, %w2: tensor<4x4x16x64x4xui8>, %s1: tensor<4x4x8x64xf32>, %s2: tensor<4x4x4x64xf32>) -> tensor<?x256xf32> {
  %y = moe.expert %tokens, %offsets gather_tokens %row_tokens fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {activation = #moe.activation<swiglu>, moe.int8_activations, panel_width = 64 : i64, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x256xf32>, tensor<5xi32>, tensor<?xi32>, tensor<4x4x32x64x4xui8>, tensor<4x4x16x64x4xui8>, tensor<4x4x8x64xf32>, tensor<4x4x4x64xf32>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

// With per-row scales (one broadcast per weight row and unit) the int8
// kernel takes four weight rows per step and groups of at most two
// activation rows, except for experts of 3-4 rows (one group, one weight
// row at a time, as the float kernel), then the tile's last rows one by
// one. The four rows' sums meet in one shuffle tree: two rows' 16 lanes
// halved into one vector, twice, then the 4 x 4 lanes halved in place down
// to four sums, added to C with one vector<4xf32> load and store.
// CHECK-LABEL: func @expert_int8_rows_int8_activations
// CHECK:         %[[ONE_GROUP:.*]] = arith.andi %{{.*}}, %{{.*}} : i1
// CHECK:         scf.if %[[ONE_GROUP]] {
// CHECK:           scf.for %{{.*}} step %c1
// CHECK:             scf.for %{{.*}} step %c4
// CHECK:         } else {
// CHECK:           scf.for %{{.*}} step %c4
// CHECK:             scf.for %{{.*}} step %c2
// CHECK:               case 1 {
// CHECK-COUNT-4:         vector.multi_reduction <add>, %{{.*}} [1] : vector<16x4xi32> to vector<16xi32>
// CHECK:                 vector.shuffle %{{.*}}, %{{.*}} [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23] : vector<16xf32>, vector<16xf32>
// CHECK:                 vector.shuffle %{{.*}}, %{{.*}} [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31] : vector<16xf32>, vector<16xf32>
// CHECK:                 vector.shuffle %{{.*}}, %{{.*}} [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27] : vector<16xf32>, vector<16xf32>
// CHECK:                 %[[SUMS:.*]] = arith.addf %{{.*}}, %{{.*}} : vector<4xf32>
// CHECK:                 %[[OLD:.*]] = vector.load %{{.*}} : memref<?x64xf32, {{.*}}>, vector<4xf32>
// CHECK:                 %[[NEW:.*]] = arith.addf %[[OLD]], %[[SUMS]] : vector<4xf32>
// CHECK:                 vector.store %[[NEW]], %{{.*}} : memref<?x64xf32, {{.*}}>, vector<4xf32>
// CHECK:               default {
// CHECK-COUNT-8:         vector.multi_reduction <add>
// CHECK:           scf.for %{{.*}} step %c1
// From 16 rows per expert on, outer products: the panel's weight columns are
// first rearranged into a scratch of [quads, columns] i32 (K = 128: 32 quads
// of 4 codes), 16 columns' 64 bytes at a time transposed as 16 x 16 lanes,
// four rounds of shuffles swapping one bit of the lane and vector indices
// (the last: lanes 1 apart). Then blocks of 6 rows by 4 vectors of 16
// columns: 24 i32 accumulators started at their row's -128 * sum q, each
// step one 64-byte load per vector and one activation quad broadcast per
// row, then converted, scaled and written to C, which is not zeroed first
// (through masks, for the panel's last columns).
// CHECK:         } else {
// CHECK:           %[[PACKED:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<32x?xi32>
// CHECK:           memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<1x?xf32>
// CHECK-COUNT-16:    vector.load %{{.*}} : memref<2x64x128xui8>, vector<64xui8>
// CHECK-COUNT-8:     vector.shuffle %{{.*}}, %{{.*}} [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]
// CHECK-COUNT-8:     vector.shuffle %{{.*}}, %{{.*}} [0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27]
// CHECK-COUNT-8:     vector.shuffle %{{.*}}, %{{.*}} [0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29]
// CHECK-COUNT-8:     vector.shuffle %{{.*}}, %{{.*}} [0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30]
// CHECK-COUNT-16:    vector.store %{{.*}}, %[[PACKED]][%{{.*}}, %{{.*}}] : memref<32x?xi32>, vector<16xi32>
// CHECK:           scf.for
// CHECK:             scf.for
// CHECK-COUNT-4:       vector.create_mask %{{.*}} : vector<16xi1>
// CHECK:               scf.for %{{.*}} iter_args({{.*}}) -> (vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>) {
// CHECK-COUNT-4:         vector.load %[[PACKED]][%{{.*}}, %{{.*}}] : memref<32x?xi32>, vector<16xi32>
// CHECK:                 %[[QUAD:.*]] = vector.load %{{.*}} : memref<?x128xi8, {{.*}}>, vector<4xi8>
// CHECK:                 %[[LANE:.*]] = vector.bitcast %[[QUAD]] : vector<4xi8> to vector<1xi32>
// CHECK:                 vector.broadcast %[[LANE]] : vector<1xi32> to vector<16xi32>
// CHECK-COUNT-24:        vector.multi_reduction <add>, %{{.*}} [1] : vector<16x4xi32> to vector<16xi32>
// CHECK-NOT:           vector.maskedload
// CHECK:               arith.sitofp %{{.*}} : vector<16xi32> to vector<16xf32>
// CHECK:               vector.fma
// CHECK:               vector.maskedstore
func.func @expert_int8_rows_int8_activations(%rows: tensor<?x128xf32>, %offsets: tensor<3xi32>, %w1: tensor<2x64x128xui8>, %w2: tensor<2x128x64xui8>, %s1: tensor<2x64xf32>, %s2: tensor<2x128xf32>) -> tensor<?x128xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {activation = #moe.activation<relu>, moe.int8_activations, quant = #moe.quant<bits = 8>} : (tensor<?x128xf32>, tensor<3xi32>, tensor<2x64x128xui8>, tensor<2x128x64xui8>, tensor<2x64xf32>, tensor<2x128xf32>) -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}

// -----

// Panel-major weights (panel_width = 64): each projection's GEMM reads its
// panels of the expert's weight in place, B at (n floordiv 64, k, n mod 64):
// fc1's interleaved SwiGLU panel of 128 columns is two weight panels; the
// expert's next ones (one panel of I, of H each here) follow them.
// CHECK-DAG: #[[PANEL_B:.*]] = affine_map<(d0, d1, d2) -> (d1 floordiv 64, d2, d1 mod 64)>
// CHECK-LABEL: func.func @expert_panels
// CHECK: memref.subview %{{.*}}[%{{.*}}, 0, 0, 0] [1, 2, 64, 64] [1, 1, 1, 1] : memref<4x2x64x64xf32> to memref<2x64x64xf32, strided<[4096, 64, 1], offset: ?>>
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[PANEL_B]], #{{.*}}], {{.*}} ins(%{{.*}}, %{{.*}} : memref<?xi32, strided<[1], offset: ?>>, memref<2x64x64xf32, strided<[4096, 64, 1], offset: ?>>) outs(%{{.*}} : memref<?x128xf32, {{.*}}>) attrs = {moe.expert_gemm, moe.next_weights_offset = 8192 : i64}
// CHECK: memref.subview %{{.*}}[%{{.*}}, 0, 0, 0] [1, 1, 64, 64] [1, 1, 1, 1] : memref<4x1x64x64xf32> to memref<1x64x64xf32, strided<[4096, 64, 1], offset: ?>>
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[PANEL_B]], #{{.*}}], {{.*}} ins(%{{.*}}, %{{.*}} : memref<?x64xf32, strided<[64, 1], offset: ?>>, memref<1x64x64xf32, strided<[4096, 64, 1], offset: ?>>) {{.*}} attrs = {moe.expert_gemm, moe.next_weights_offset = 4096 : i64}
func.func @expert_panels(%x: tensor<?x64xf32>, %offsets: tensor<5xi32>, %row_tokens: tensor<?xi32>, %w1: tensor<4x2x64x64xf32>, %w2: tensor<4x1x64x64xf32>) -> tensor<?x64xf32> {
  %y = moe.expert %x, %offsets gather_tokens %row_tokens fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>, panel_width = 64 : i64} : (tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32>, tensor<4x2x64x64xf32>, tensor<4x1x64x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
