// RUN: moe-opt %s --split-input-file --moe-vectorize-contractions="row-tile=2 col-tile=2" | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-vectorize-contractions="row-tile=2 col-tile=4 bf16-dot=1" | FileCheck %s --check-prefix=DOT
// RUN: moe-opt %s --split-input-file --moe-vectorize-contractions="pack-min-rows=32" | FileCheck %s --check-prefix=PACK
// RUN: moe-opt %s --split-input-file --moe-vectorize-contractions="expert-pack-min-rows=24" | FileCheck %s --check-prefix=EXPERT
// RUN: not moe-opt %s --split-input-file --moe-vectorize-contractions="row-tile=0" 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: moe-opt %s --split-input-file --moe-vectorize-contractions | FileCheck %s --check-prefix=PANEL
// RUN: moe-opt %s --split-input-file --moe-vectorize-contractions="bf16-dot=1" | FileCheck %s --check-prefix=PAIRS
// BAD: error: row-tile and col-tile must be at least 1, vector-bits at least 32 and pack-min-rows and expert-pack-min-rows at least 0

#a = affine_map<(m, n, k) -> (m, k)>
#b = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>

// A 2x2 register block: two A rows and two widened bf16 W rows per k step
// feed four FMAs on vector<16xf32> partial sums. Each row of the block is
// reduced by one transposing tree (pairs of shuffles and an add, halving the
// vector each step) into a vector<2xf32> added to C's row at once. Full
// column panels are the parallel loop; the odd column is a serial tail.
// K (64) is a multiple of 16: no masked tail step.
// CHECK-LABEL: func @matmul_transpose_b
// CHECK-SAME:  (%[[A:.*]]: memref<?x64xf32>, %[[W:.*]]: memref<6x64xbf16>, %[[C:.*]]: memref<?x6xf32>)
// CHECK:       scf.parallel (%[[N0:.*]]) = (%{{.*}}) to (%{{.*}}) step (%[[C2:.*]]) {
// CHECK:         scf.for %[[M0:.*]] = %{{.*}} to %{{.*}} step %[[C2]] {
// CHECK:           %[[ACC:.*]]:4 = scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %[[C16:.*]] iter_args(%[[S00:.*]] = %{{.*}}, %[[S01:.*]] = %{{.*}}, %[[S10:.*]] = %{{.*}}, %[[S11:.*]] = %{{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK-DAG:         vector.load %[[A]][%{{.*}}, %[[K]]] : memref<?x64xf32>, vector<16xf32>
// CHECK-DAG:         %[[W0:.*]] = vector.load %[[W]][%{{.*}}, %[[K]]] : memref<6x64xbf16>, vector<16xbf16>
// CHECK:             arith.extf %[[W0]] : vector<16xbf16> to vector<16xf32>
// CHECK-COUNT-4:     vector.fma
// CHECK:             scf.yield
// CHECK-NOT:       vector.maskedload
// CHECK:           %[[LO:.*]] = vector.shuffle %[[ACC]]#0, %[[ACC]]#1 [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]
// CHECK:           %[[HI:.*]] = vector.shuffle %[[ACC]]#0, %[[ACC]]#1 [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]
// CHECK:           arith.addf %[[LO]], %[[HI]] : vector<16xf32>
// CHECK:           vector.shuffle {{.*}} [0, 1, 2, 3, 8, 9, 10, 11] : vector<16xf32>, vector<16xf32>
// CHECK:           vector.shuffle {{.*}} [0, 1, 4, 5] : vector<8xf32>, vector<8xf32>
// CHECK:           vector.shuffle {{.*}} [0, 2] : vector<4xf32>, vector<4xf32>
// CHECK:           %[[SUMS:.*]] = arith.addf {{.*}} : vector<2xf32>
// CHECK:           %[[OLD:.*]] = vector.load %[[C]][%[[M0]], %[[N0]]] : memref<?x6xf32>, vector<2xf32>
// CHECK:           %[[NEW:.*]] = arith.addf %[[OLD]], %[[SUMS]] : vector<2xf32>
// CHECK:           vector.store %[[NEW]], %[[C]][%[[M0]], %[[N0]]] : memref<?x6xf32>, vector<2xf32>
// CHECK-NOT:   linalg.generic
// With bf16-dot, bf16 x f32 is still widened: vdpbf16ps needs both bf16.
// DOT-LABEL: func @matmul_transpose_b
// DOT-NOT:     x86vector.avx512.dot
// DOT:         vector.fma
func.func @matmul_transpose_b(%a: memref<?x64xf32>, %w: memref<6x64xbf16>, %c: memref<?x6xf32>) {
  linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %w : memref<?x64xf32>, memref<6x64xbf16>) outs(%c : memref<?x6xf32>) {
  ^bb0(%x: f32, %y: bf16, %acc: f32):
    %y32 = arith.extf %y : bf16 to f32
    %p = arith.mulf %x, %y32 : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#a = affine_map<(m, n, k) -> (m, k)>
#b = affine_map<(m, n, k) -> (k, n)>
#c = affine_map<(m, n, k) -> (m, n)>

// B read as [k, n] takes the outer-product kernel only with whole 16-lane
// vectors of columns; 4 columns stay a linalg.generic.
// CHECK-LABEL: func @matmul_plain
// CHECK:       linalg.generic
// CHECK-NOT:   vector.fma
func.func @matmul_plain(%a: memref<4x8xf32>, %b: memref<8x4xf32>, %c: memref<4x4xf32>) {
  linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %b : memref<4x8xf32>, memref<8x4xf32>) outs(%c : memref<4x4xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#a = affine_map<(m, n, k) -> (m, k)>
#b = affine_map<(m, n, k) -> (k, n)>
#c = affine_map<(m, n, k) -> (m, n)>

// B read as [k, n] with 80 columns: one parallel loop over chunks of 48
// rows; in each, 6-row blocks of a 64-column panel (4 vectors of B's row k,
// a broadcast element of A per row, 24 FMAs per step) and of the 16-column
// rest (1 vector, 6 FMAs), the rows past the last whole block as one
// smaller block.
// CHECK-LABEL: func @matmul_plain_panels
// CHECK-SAME:  (%[[A:.*]]: memref<?x8xf32>, %[[B:.*]]: memref<8x80xf32>, %[[C:.*]]: memref<?x80xf32>)
// CHECK:       scf.parallel (%[[CHUNK:.*]]) =
// CHECK:         scf.for %[[M0:.*]] =
// CHECK:           scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args({{.*}}) -> (vector<16xf32>, {{.*}})
// CHECK-COUNT-4:     vector.load %[[B]][%[[K]], %{{.*}}] : memref<8x80xf32>, vector<16xf32>
// CHECK:             memref.load %[[A]][%{{.*}}, %[[K]]]
// CHECK:             vector.broadcast %{{.*}} : f32 to vector<16xf32>
// CHECK-COUNT-4:     vector.fma
// CHECK:           scf.if
// CHECK:         scf.for
// CHECK:           scf.for %{{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK-COUNT-6:     vector.fma
// CHECK-NOT:   linalg.generic
func.func @matmul_plain_panels(%a: memref<?x8xf32>, %b: memref<8x80xf32>, %c: memref<?x80xf32>) {
  linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %b : memref<?x8xf32>, memref<8x80xf32>) outs(%c : memref<?x80xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#a = affine_map<(m, n, k) -> (m, k)>
#b = affine_map<(m, n, k) -> (k, n)>
#c = affine_map<(m, n, k) -> (m, n)>

// A half-precision model's probabilities times values (f16 A and B into
// f32, -moe-widen-half-accumulators): the same outer-product blocks, B's
// rows loaded as f16 vectors and A's elements as f16, each widened.
// CHECK-LABEL: func @matmul_plain_f16
// CHECK-SAME:  (%[[A:.*]]: memref<?x8xf16>, %[[B:.*]]: memref<8x64xf16>, %[[C:.*]]: memref<?x64xf32>)
// CHECK:       scf.parallel
// CHECK:           scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args({{.*}}) -> (vector<16xf32>, {{.*}})
// CHECK:             %[[ROW:.*]] = vector.load %[[B]][%[[K]], %{{.*}}] : memref<8x64xf16>, vector<16xf16>
// CHECK:             arith.extf %[[ROW]] : vector<16xf16> to vector<16xf32>
// CHECK:             %[[X:.*]] = memref.load %[[A]][%{{.*}}, %[[K]]] : memref<?x8xf16>
// CHECK:             %[[XW:.*]] = arith.extf %[[X]] : f16 to f32
// CHECK:             vector.broadcast %[[XW]] : f32 to vector<16xf32>
// CHECK-COUNT-4:     vector.fma
// CHECK-NOT:   linalg.generic
func.func @matmul_plain_f16(%a: memref<?x8xf16>, %b: memref<8x64xf16>, %c: memref<?x64xf32>) {
  linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %b : memref<?x8xf16>, memref<8x64xf16>) outs(%c : memref<?x64xf32>) {
  ^bb0(%x: f16, %y: f16, %acc: f32):
    %xw = arith.extf %x : f16 to f32
    %yw = arith.extf %y : f16 to f32
    %p = arith.mulf %xw, %yw : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#a = affine_map<(m, n, k) -> (m, k)>
#b = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>

// With pack-min-rows, a matmul with at least that many rows packs each
// 64-column panel of W, up to 1024 steps of k at a time, into a scratch of
// its own (here the 40 steps there are, in 16-step blocks: 48 rows): 16 x 16 blocks of W's rows transposed by shuffles (4 steps of 16),
// then 6 x 64 outer-product blocks over 128-step slices of it. The 16
// columns past the panel, and fewer rows, take the dot-product kernel.
// PACK-LABEL: func @packed_panels
// PACK-SAME:  (%[[A:.*]]: memref<?x40xf32>, %[[W:.*]]: memref<80x40xf32>, %[[C:.*]]: memref<?x80xf32>)
// PACK:       %[[ROWS:.*]] = memref.dim %[[C]], %c0
// PACK:       %[[ENOUGH:.*]] = arith.cmpi uge, %[[ROWS]], %c32
// PACK:       scf.if %[[ENOUGH]] {
// PACK:         scf.parallel
// PACK:           %[[PACKED:.*]] = memref.alloc() {alignment = 64 : i64} : memref<48x64xf32>
// PACK:           scf.for
// PACK-COUNT-16:    vector.maskedload %[[W]]
// PACK-COUNT-64:    vector.shuffle
// PACK-COUNT-16:    vector.store %{{.*}}, %[[PACKED]]
// PACK:           scf.for
// PACK:             scf.for {{.*}} -> (vector<16xf32>, {{.*}})
// PACK-COUNT-4:       vector.load %[[PACKED]]
// PACK:               vector.broadcast
// PACK-COUNT-4:       vector.fma
// PACK:           memref.dealloc %[[PACKED]]
// PACK:         scf.parallel
// PACK:       } else {
// PACK:         scf.parallel
// PACK-NOT:       memref.alloc
// PACK:       return
func.func @packed_panels(%a: memref<?x40xf32>, %w: memref<80x40xf32>, %c: memref<?x80xf32>) {
  linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %w : memref<?x40xf32>, memref<80x40xf32>) outs(%c : memref<?x80xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#a = affine_map<(m, n, k) -> (m, k)>
#b = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>

// An expert's GEMM (moe.expert_gemm) packs from expert-pack-min-rows rows;
// other matmuls from pack-min-rows (0 here: never).
// EXPERT-LABEL: func @expert_packed_panels
// EXPERT:       %[[ROWS:.*]] = memref.dim %{{.*}}, %c0
// EXPERT:       %[[ENOUGH:.*]] = arith.cmpi uge, %[[ROWS]], %c24
// EXPERT:       scf.if %[[ENOUGH]] {
// EXPERT:         memref.alloc() {alignment = 64 : i64} : memref<48x64xf32>
// EXPERT:       } else {
// EXPERT:       return
// EXPERT-LABEL: func @plain_matmul
// EXPERT-NOT:   scf.if
// EXPERT-NOT:   memref.alloc
// EXPERT:       return
func.func @expert_packed_panels(%a: memref<?x40xf32>, %w: memref<80x40xf32>, %c: memref<?x80xf32>) {
  linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %w : memref<?x40xf32>, memref<80x40xf32>) outs(%c : memref<?x80xf32>) attrs = {moe.expert_gemm} {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

func.func @plain_matmul(%a: memref<?x40xf32>, %w: memref<80x40xf32>, %c: memref<?x80xf32>) {
  linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %w : memref<?x40xf32>, memref<80x40xf32>) outs(%c : memref<?x80xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#q = affine_map<(b, h, s, t, d) -> (b, h, s, d)>
#k = affine_map<(b, h, s, t, d) -> (b, h, t, d)>
#s = affine_map<(b, h, s, t, d) -> (b, h, s, t)>

// Attention's QK^T: leading batch loops (batch, head) index all three
// operands alike; each (b, h) matrix gets the same register-tiled kernel on
// rank-reduced views, one after the other.
// CHECK-LABEL: func @batched_scores
// CHECK-SAME:  (%[[Q:.*]]: memref<?x4x128x16xf32>, %[[K:.*]]: memref<?x4x128x16xf32>, %[[S:.*]]: memref<?x4x128x128xf32>)
// CHECK:       scf.for %[[B:.*]] = %{{.*}} to %{{.*}} step
// CHECK:         scf.for %[[H:.*]] = %{{.*}} to %{{.*}} step
// CHECK-DAG:       %[[QM:.*]] = memref.subview %[[Q]][%[[B]], %[[H]], 0, 0] [1, 1, 128, 16] [1, 1, 1, 1] : memref<?x4x128x16xf32> to memref<128x16xf32, strided<[16, 1], offset: ?>>
// CHECK-DAG:       %[[KM:.*]] = memref.subview %[[K]][%[[B]], %[[H]], 0, 0] [1, 1, 128, 16] [1, 1, 1, 1]
// CHECK-DAG:       %[[SM:.*]] = memref.subview %[[S]][%[[B]], %[[H]], 0, 0] [1, 1, 128, 128] [1, 1, 1, 1]
// CHECK:           scf.parallel
// CHECK:             vector.load %[[QM]]
// CHECK:             vector.load %[[KM]]
// CHECK-COUNT-4:     vector.fma
// CHECK-NOT:   linalg.generic
func.func @batched_scores(%q: memref<?x4x128x16xf32>, %k: memref<?x4x128x16xf32>, %s: memref<?x4x128x128xf32>) {
  linalg.generic {indexing_maps = [#q, #k, #s],
                  iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k : memref<?x4x128x16xf32>, memref<?x4x128x16xf32>) outs(%s : memref<?x4x128x128xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %r = arith.addf %acc, %p : f32
    linalg.yield %r : f32
  }
  return
}

// -----

#q = affine_map<(h, s, t, d) -> (h, s, d)>
#k = affine_map<(h, s, t, d) -> (h floordiv 3, t, d)>
#s = affine_map<(h, s, t, d) -> (h, s, t)>

// Grouped-query QK^T: query head h reads key head h / 3.
// CHECK-LABEL: func @grouped_scores
// CHECK-SAME:  (%[[Q:.*]]: memref<12x?x16xf32>, %[[K:.*]]: memref<4x?x16xf32>, %[[S:.*]]: memref<12x?x?xf32>)
// CHECK:       scf.for %[[H:.*]] = %{{.*}} to %{{.*}} step
// CHECK:         %[[G:.*]] = arith.divui %[[H]], %c3
// CHECK:         memref.subview %[[K]][%[[G]], 0, 0]
// CHECK:         scf.parallel
// CHECK-NOT:   linalg.generic
func.func @grouped_scores(%q: memref<12x?x16xf32>, %k: memref<4x?x16xf32>, %s: memref<12x?x?xf32>) {
  linalg.generic {indexing_maps = [#q, #k, #s],
                  iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k : memref<12x?x16xf32>, memref<4x?x16xf32>) outs(%s : memref<12x?x?xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %r = arith.addf %acc, %p : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// B with fewer batch dimensions than the leading loops (neither form):
// left as it is (the matcher read B's map past its results).
// CHECK-LABEL: func @b_rank3_many_loops
// CHECK:       linalg.generic
func.func @b_rank3_many_loops(%a: memref<2x2x2x2x4x8xf32>, %w: memref<2x6x8xf32>, %c: memref<2x2x2x2x4x6xf32>) {
  linalg.generic {indexing_maps = [affine_map<(b0, b1, b2, b3, m, n, k) -> (b0, b1, b2, b3, m, k)>, affine_map<(b0, b1, b2, b3, m, n, k) -> (b0, n, k)>, affine_map<(b0, b1, b2, b3, m, n, k) -> (b0, b1, b2, b3, m, n)>],
                  iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel", "parallel", "reduction"]}
      ins(%a, %w : memref<2x2x2x2x4x8xf32>, memref<2x6x8xf32>) outs(%c : memref<2x2x2x2x4x6xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %r = arith.addf %acc, %p : f32
    linalg.yield %r : f32
  }
  return
}

// -----

#a = affine_map<(m, n, k) -> (m, k)>
#b = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>

// Two bf16 operands: with bf16-dot, each step takes 32 k (16 pairs) into
// vdpbf16ps, unwidened. K = 72 leaves 8: one more step with masked loads
// reading zeros past the end instead of a scalar loop per element of C.
// Without the option, the same contraction widens both and steps by 16.
// DOT-LABEL: func @bf16_both
// DOT-SAME:  (%[[A:.*]]: memref<?x72xbf16>, %[[W:.*]]: memref<8x72xbf16>, %[[C:.*]]: memref<?x8xf32>)
// DOT:         %[[C32:.*]] = arith.constant 32 : index
// DOT:         scf.parallel
// DOT:           scf.for
// DOT:             scf.for %[[K:.*]] = %{{.*}} to %[[KV:.*]] step %[[C32]]
// DOT-DAG:           %[[AV:.*]] = vector.load %[[A]][%{{.*}}, %[[K]]] : memref<?x72xbf16>, vector<32xbf16>
// DOT-DAG:           %[[WV:.*]] = vector.load %[[W]][%{{.*}}, %[[K]]] : memref<8x72xbf16>, vector<32xbf16>
// DOT:               x86vector.avx512.dot %{{.*}}, %[[AV]], %[[WV]] : vector<32xbf16> -> vector<16xf32>
// DOT:             %[[MASK:.*]] = vector.create_mask %{{.*}} : vector<32xi1>
// DOT:             vector.maskedload %[[A]][%{{.*}}, %[[KV]]], %[[MASK]], %{{.*}} : memref<?x72xbf16>, vector<32xi1>, vector<32xbf16> into vector<32xbf16>
// DOT-COUNT-4:     vector.maskedload %[[W]]
// DOT-COUNT-8:     x86vector.avx512.dot
// DOT:             vector.store {{.*}} : memref<?x8xf32>, vector<4xf32>
// CHECK-LABEL: func @bf16_both
// CHECK-NOT:   x86vector.avx512.dot
// CHECK:       arith.extf {{.*}} : vector<16xbf16> to vector<16xf32>
// CHECK:       vector.fma
func.func @bf16_both(%a: memref<?x72xbf16>, %w: memref<8x72xbf16>, %c: memref<?x8xf32>) {
  linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %w : memref<?x72xbf16>, memref<8x72xbf16>) outs(%c : memref<?x8xf32>) {
  ^bb0(%x: bf16, %y: bf16, %acc: f32):
    %x32 = arith.extf %x : bf16 to f32
    %y32 = arith.extf %y : bf16 to f32
    %p = arith.mulf %x32, %y32 : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#tok = affine_map<(m, n, k) -> (m)>
#b = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>

// A gathered A (moe.expert with gather_tokens): row m is row
// min(tokens[m], last) of the source, looked up once per register block
// before the loop over k, whose loads then read the source in place.
// CHECK-LABEL: func @gathered_rows
// CHECK-SAME:  (%[[SRC:.*]]: memref<?x64xf32>, %[[TOK:.*]]: memref<?xi32>, %[[W:.*]]: memref<4x64xf32>, %[[C:.*]]: memref<?x4xf32>, %[[LAST:.*]]: index)
// CHECK:       scf.parallel
// CHECK:         scf.for %[[M0:.*]] =
// CHECK:           %[[T0:.*]] = memref.load %[[TOK]][%[[M0]]] : memref<?xi32>
// CHECK:           %[[I0:.*]] = arith.index_cast %[[T0]] : i32 to index
// CHECK:           %[[R0:.*]] = arith.minui %[[I0]], %[[LAST]] : index
// CHECK:           %[[T1:.*]] = memref.load %[[TOK]]
// CHECK:           %[[I1:.*]] = arith.index_cast %[[T1]] : i32 to index
// CHECK:           %[[R1:.*]] = arith.minui %[[I1]], %[[LAST]] : index
// CHECK:           scf.for %[[K:.*]] = {{.*}} iter_args
// CHECK-DAG:         vector.load %[[SRC]][%[[R0]], %[[K]]] : memref<?x64xf32>, vector<16xf32>
// CHECK-DAG:         vector.load %[[SRC]][%[[R1]], %[[K]]] : memref<?x64xf32>, vector<16xf32>
// CHECK-COUNT-4:     vector.fma
// CHECK-NOT:   linalg.generic
// The packed panels read A's broadcast elements through the tokens too.
// PACK-LABEL: func @gathered_rows
// PACK:         memref.load %{{.*}}[%{{.*}}] : memref<?xi32>
// PACK:         arith.minui
// PACK:         memref.load %{{.*}} : memref<?x64xf32>
// PACK-NOT:   linalg.generic
func.func @gathered_rows(%src: memref<?x64xf32>, %tokens: memref<?xi32>, %w: memref<4x64xf32>, %c: memref<?x4xf32>, %last: index) {
  linalg.generic {indexing_maps = [#tok, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%tokens, %w : memref<?xi32>, memref<4x64xf32>) outs(%c : memref<?x4xf32>) {
  ^bb0(%t: i32, %y: f32, %acc: f32):
    %i = arith.index_cast %t : i32 to index
    %row = arith.minui %i, %last : index
    %k = linalg.index 2 : index
    %x = memref.load %src[%row, %k] : memref<?x64xf32>
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#tok = affine_map<(m, n, k) -> (m)>
#b = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>

// A row that is not clamped is not the gathered form: left to the generic
// lowering.
// CHECK-LABEL: func @gathered_unclamped
// CHECK:       linalg.generic
// PACK-LABEL: func @gathered_unclamped
// PACK:       linalg.generic
func.func @gathered_unclamped(%src: memref<?x64xf32>, %tokens: memref<?xi32>, %w: memref<4x64xf32>, %c: memref<?x4xf32>) {
  linalg.generic {indexing_maps = [#tok, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%tokens, %w : memref<?xi32>, memref<4x64xf32>) outs(%c : memref<?x4xf32>) {
  ^bb0(%t: i32, %y: f32, %acc: f32):
    %row = arith.index_cast %t : i32 to index
    %k = linalg.index 2 : index
    %x = memref.load %src[%row, %k] : memref<?x64xf32>
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Panel-major weights (-moe-pack-expert-weights): B is read in place as
// [K, 64] panels by the outer-product block, at any row count, with the
// next 128 steps of k prefetched through a flat view of the panels; the
// gathered form looks its rows up through the tokens.
// Outside a parallel loop (not an expert's task) the panels are one: they
// write disjoint columns of C, and each thread's next panel follows its
// own (no prefetches).
// PANEL-LABEL: func.func @panel_matmul
// PANEL-NOT: linalg.generic
// PANEL: scf.parallel
// PANEL-NOT: memref.prefetch
// PANEL: vector.load %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] : memref<2x96x64xf32>, vector<16xf32>
// PANEL: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
#panel_a = affine_map<(m, n, k) -> (m, k)>
#panel_b = affine_map<(m, n, k) -> (n floordiv 64, k, n mod 64)>
#panel_c = affine_map<(m, n, k) -> (m, n)>
func.func @panel_matmul(%a: memref<?x96xf32>, %w: memref<2x96x64xf32>, %c: memref<?x128xf32>) {
  linalg.generic {indexing_maps = [#panel_a, #panel_b, #panel_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %w : memref<?x96xf32>, memref<2x96x64xf32>) outs(%c : memref<?x128xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// PANEL-LABEL: func.func @panel_matmul_gathered
// PANEL-NOT: linalg.generic
// PANEL: arith.minui
// PANEL: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
#gather_a = affine_map<(m, n, k) -> (m)>
func.func @panel_matmul_gathered(%src: memref<?x96xf32>, %tokens: memref<?xi32>, %w: memref<1x96x64xf32>, %c: memref<?x64xf32>, %last: index) {
  linalg.generic {indexing_maps = [#gather_a, #panel_b, #panel_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%tokens, %w : memref<?xi32>, memref<1x96x64xf32>) outs(%c : memref<?x64xf32>) {
  ^bb0(%t: i32, %y: f32, %acc: f32):
    %ti = arith.index_cast %t : i32 to index
    %row = arith.minui %ti, %last : index
    %k = linalg.index 2 : index
    %x = memref.load %src[%row, %k] : memref<?x96xf32>
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// f16 panels (a half-precision model's experts) into f32 rows: each
// 16-column vector of a panel row is loaded as f16 and widened.
// PANEL-LABEL: func.func @panel_matmul_f16
// PANEL-NOT: linalg.generic
// PANEL: %[[H:.*]] = vector.load %{{.*}} : memref<2x96x64xf16>, vector<16xf16>
// PANEL: %[[HW:.*]] = arith.extf %[[H]] : vector<16xf16> to vector<16xf32>
// PANEL: vector.fma %{{.*}}, %[[HW]], %{{.*}} : vector<16xf32>
func.func @panel_matmul_f16(%a: memref<?x96xf32>, %w: memref<2x96x64xf16>, %c: memref<?x128xf32>) {
  linalg.generic {indexing_maps = [#panel_a, #panel_b, #panel_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %w : memref<?x96xf32>, memref<2x96x64xf16>) outs(%c : memref<?x128xf32>) {
  ^bb0(%x: f32, %y: f16, %acc: f32):
    %yw = arith.extf %y : f16 to f32
    %p = arith.mulf %x, %yw : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// Panels cut from a stacked buffer, marked with where the weights the
// thread reads next start (moe.next_weights_offset, in elements from the
// panels' first): the prefetches address the whole buffer from the
// panels' offset in it, so that the last k-block's run past the panels
// reaches the next weights. Right after these panels (the expert's next
// ones), the flat offset goes on as it is; further on (the next expert's
// same panels), offsets past the panels skip the gap (18432 - 12288).
// PANEL-LABEL: func.func @panel_matmul_next_panels
// PANEL: %[[BUFFER:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2, 3]] : memref<4x3x96x64xf32> into memref<73728xf32>
// PANEL: %{{.*}}, %[[OFFSET:.*]], %{{.*}}:3, %{{.*}}:3 = memref.extract_strided_metadata %[[CUT:.*]] : memref<2x96x64xf32, strided<[6144, 64, 1], offset: ?>>
// PANEL-NOT: arith.cmpi uge
// PANEL: memref.prefetch %[[BUFFER]][%{{.*}}], read, locality<2>, data : memref<73728xf32>
// PANEL: vector.load %[[CUT]]
// PANEL-LABEL: func.func @panel_matmul_next_expert
// PANEL-DAG: %[[GAP:.*]] = arith.constant 6144 : index
// PANEL-DAG: %[[PANELS:.*]] = arith.constant 12288 : index
// PANEL: %[[PAST:.*]] = arith.cmpi uge, %[[START:.*]], %[[PANELS]] : index
// PANEL: %[[SKIP:.*]] = arith.select %[[PAST]], %[[GAP]], %{{.*}} : index
// PANEL: arith.addi %[[START]], %[[SKIP]] : index
func.func @panel_matmul_next_panels(%a: memref<?x96xf32>, %buffer: memref<4x3x96x64xf32>, %x: index, %c: memref<?x128xf32>) {
  %cut = memref.subview %buffer[%x, 0, 0, 0] [1, 2, 96, 64] [1, 1, 1, 1] : memref<4x3x96x64xf32> to memref<2x96x64xf32, strided<[6144, 64, 1], offset: ?>>
  linalg.generic {indexing_maps = [#panel_a, #panel_b, #panel_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %cut : memref<?x96xf32>, memref<2x96x64xf32, strided<[6144, 64, 1], offset: ?>>) outs(%c : memref<?x128xf32>) attrs = {moe.next_weights_offset = 12288 : i64} {
  ^bb0(%v: f32, %y: f32, %acc: f32):
    %p = arith.mulf %v, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

func.func @panel_matmul_next_expert(%a: memref<?x96xf32>, %buffer: memref<4x3x96x64xf32>, %x: index, %c: memref<?x128xf32>) {
  %cut = memref.subview %buffer[%x, 0, 0, 0] [1, 2, 96, 64] [1, 1, 1, 1] : memref<4x3x96x64xf32> to memref<2x96x64xf32, strided<[6144, 64, 1], offset: ?>>
  linalg.generic {indexing_maps = [#panel_a, #panel_b, #panel_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %cut : memref<?x96xf32>, memref<2x96x64xf32, strided<[6144, 64, 1], offset: ?>>) outs(%c : memref<?x128xf32>) attrs = {moe.next_weights_offset = 18432 : i64} {
  ^bb0(%v: f32, %y: f32, %acc: f32):
    %p = arith.mulf %v, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// Rows in several loops (a matmul by a packed ONNX weight over [batch,
// sequence] tokens) are collapsed into one.
// PANEL-LABEL: func.func @panel_matmul_row_loops
// PANEL-NOT: linalg.generic
// PANEL-DAG: memref.collapse_shape %{{.*}} {{\[}}[0, 1], [2]] : memref<?x?x96xf32> into memref<?x96xf32>
// PANEL-DAG: memref.collapse_shape %{{.*}} {{\[}}[0, 1], [2]] : memref<?x?x128xf32> into memref<?x128xf32>
// PANEL: scf.parallel
// PANEL: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
#rows_a = affine_map<(b, s, n, k) -> (b, s, k)>
#rows_b = affine_map<(b, s, n, k) -> (n floordiv 64, k, n mod 64)>
#rows_c = affine_map<(b, s, n, k) -> (b, s, n)>
func.func @panel_matmul_row_loops(%a: memref<?x?x96xf32>, %w: memref<2x96x64xf32>, %c: memref<?x?x128xf32>) {
  linalg.generic {indexing_maps = [#rows_a, #rows_b, #rows_c], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%a, %w : memref<?x?x96xf32>, memref<2x96x64xf32>) outs(%c : memref<?x?x128xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// Inside a task of a parallel loop (the expert schedule's) the panels run
// one after the other, and the next 128 steps of k are prefetched through
// a flat view of the panels.
// PANEL-LABEL: func.func @panel_matmul_in_task
// PANEL: scf.parallel
// PANEL: %[[FLAT:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2]] : memref<2x96x64xf32> into memref<12288xf32>
// PANEL-NOT: scf.parallel
// PANEL: memref.prefetch %[[FLAT]][%{{.*}}], read, locality<2>, data : memref<12288xf32>
// PANEL: vector.fma
func.func @panel_matmul_in_task(%a: memref<?x96xf32>, %w: memref<2x96x64xf32>, %c: memref<?x128xf32>, %tasks: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.parallel (%i) = (%c0) to (%tasks) step (%c1) {
    linalg.generic {indexing_maps = [#panel_a, #panel_b, #panel_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %w : memref<?x96xf32>, memref<2x96x64xf32>) outs(%c : memref<?x128xf32>) {
    ^bb0(%x: f32, %y: f32, %acc: f32):
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      linalg.yield %s : f32
    }
    scf.reduce
  }
  return
}

// A panel width the kernel does not take (8 columns) keeps its loops.
// PANEL-LABEL: func.func @panel_matmul_narrow
// PANEL: linalg.generic
#narrow_b = affine_map<(m, n, k) -> (n floordiv 8, k, n mod 8)>
func.func @panel_matmul_narrow(%a: memref<?x96xf32>, %w: memref<2x96x8xf32>, %c: memref<?x16xf32>) {
  linalg.generic {indexing_maps = [#panel_a, #narrow_b, #panel_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %w : memref<?x96xf32>, memref<2x96x8xf32>) outs(%c : memref<?x16xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Panel-major bf16 weights hold pairs of k ([N / 64, K / 2, 64, 2], loops
// m, n, k2, r with k = 2 k2 + r): with AVX512-BF16 a panel row is one
// vector<32xbf16> per 16 columns, multiplied by A's pair broadcast as an
// i32 with vdpbf16ps; without it (PANEL) the loops stay.
// PAIRS-LABEL: func.func @panel_pairs
// PAIRS-NOT: linalg.generic
// PAIRS: memref.collapse_shape %{{.*}} {{\[}}[0], [1], [2, 3]] : memref<2x48x64x2xbf16> into memref<2x48x128xbf16>
// PAIRS: vector.bitcast %{{.*}} : vector<2xbf16> to vector<1xi32>
// PAIRS: vector.load %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] : memref<2x48x128xbf16>, vector<32xbf16>
// PAIRS: x86vector.avx512.dot %{{.*}}, %{{.*}}, %{{.*}} : vector<32xbf16> -> vector<16xf32>
// PANEL-LABEL: func.func @panel_pairs
// PANEL: linalg.generic
#pairs_a = affine_map<(m, n, k, r) -> (m, k * 2 + r)>
#pairs_b = affine_map<(m, n, k, r) -> (n floordiv 64, k, n mod 64, r)>
#pairs_c = affine_map<(m, n, k, r) -> (m, n)>
func.func @panel_pairs(%a: memref<?x96xbf16>, %w: memref<2x48x64x2xbf16>, %c: memref<?x128xf32>) {
  linalg.generic {indexing_maps = [#pairs_a, #pairs_b, #pairs_c], iterator_types = ["parallel", "parallel", "reduction", "reduction"]} ins(%a, %w : memref<?x96xbf16>, memref<2x48x64x2xbf16>) outs(%c : memref<?x128xf32>) {
  ^bb0(%x: bf16, %y: bf16, %acc: f32):
    %x32 = arith.extf %x : bf16 to f32
    %y32 = arith.extf %y : bf16 to f32
    %p = arith.mulf %x32, %y32 : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// The gathered form finds k as 2 k2 + r from the loop indices.
// PAIRS-LABEL: func.func @panel_pairs_gathered
// PAIRS-NOT: linalg.generic
// PAIRS: arith.minui
// PAIRS: x86vector.avx512.dot %{{.*}}, %{{.*}}, %{{.*}} : vector<32xbf16> -> vector<16xf32>
#pairs_gather_a = affine_map<(m, n, k, r) -> (m)>
func.func @panel_pairs_gathered(%src: memref<?x96xbf16>, %tokens: memref<?xi32>, %w: memref<1x48x64x2xbf16>, %c: memref<?x64xf32>, %last: index) {
  linalg.generic {indexing_maps = [#pairs_gather_a, #pairs_b, #pairs_c], iterator_types = ["parallel", "parallel", "reduction", "reduction"]} ins(%tokens, %w : memref<?xi32>, memref<1x48x64x2xbf16>) outs(%c : memref<?x64xf32>) {
  ^bb0(%t: i32, %y: bf16, %acc: f32):
    %ti = arith.index_cast %t : i32 to index
    %row = arith.minui %ti, %last : index
    %k2 = linalg.index 2 : index
    %r = linalg.index 3 : index
    %c2 = arith.constant 2 : index
    %k2x2 = arith.muli %k2, %c2 : index
    %k = arith.addi %k2x2, %r : index
    %x = memref.load %src[%row, %k] : memref<?x96xbf16>
    %x32 = arith.extf %x : bf16 to f32
    %y32 = arith.extf %y : bf16 to f32
    %p = arith.mulf %x32, %y32 : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}
