// RUN: moe-opt %s --split-input-file --moe-interchange-reductions | FileCheck %s

// Attention's O[h, s, d] += P[h, s, t] * V[h, t, d]: d, the output's last
// index, moves inside the reduction over t (V and O are contiguous along d,
// P does not depend on it).
// CHECK-DAG:   #[[P:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
// CHECK-DAG:   #[[V:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2, d3)>
// CHECK-DAG:   #[[O:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-LABEL: func @probabilities_times_values
// CHECK:       linalg.generic {indexing_maps = [#[[P]], #[[V]], #[[O]]],
// CHECK-SAME:    iterator_types = ["parallel", "parallel", "reduction", "parallel"]
#p = affine_map<(h, s, d, t) -> (h, s, t)>
#v = affine_map<(h, s, d, t) -> (h, t, d)>
#o = affine_map<(h, s, d, t) -> (h, s, d)>
func.func @probabilities_times_values(%p: memref<4x128x128xf32>, %v: memref<4x128x64xf32>, %o: memref<4x128x64xf32>) {
  linalg.generic {indexing_maps = [#p, #v, #o],
                  iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%p, %v : memref<4x128x128xf32>, memref<4x128x64xf32>) outs(%o : memref<4x128x64xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %m = arith.mulf %x, %y : f32
    %a = arith.addf %acc, %m : f32
    linalg.yield %a : f32
  }
  return
}

// -----

// QK^T reads K along its rows (t is not K's last index): unchanged.
// CHECK-LABEL: func @scores
// CHECK:       iterator_types = ["parallel", "parallel", "parallel", "reduction"]
#q = affine_map<(h, s, t, d) -> (h, s, d)>
#k = affine_map<(h, s, t, d) -> (h, t, d)>
#s = affine_map<(h, s, t, d) -> (h, s, t)>
func.func @scores(%q: memref<4x128x64xf32>, %k: memref<4x128x64xf32>, %s: memref<4x128x128xf32>) {
  linalg.generic {indexing_maps = [#q, #k, #s],
                  iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k : memref<4x128x64xf32>, memref<4x128x64xf32>) outs(%s : memref<4x128x128xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %m = arith.mulf %x, %y : f32
    %a = arith.addf %acc, %m : f32
    linalg.yield %a : f32
  }
  return
}

// -----

// A strided output along its last index, and a row sum whose output has no
// parallel last index left inside: unchanged.
// CHECK-LABEL: func @strided_and_row_sum
// CHECK:       iterator_types = ["parallel", "parallel", "reduction"]
// CHECK:       iterator_types = ["parallel", "reduction"]
#a2 = affine_map<(i, j, k) -> (i, k)>
#w2 = affine_map<(i, j, k) -> (k, j)>
#c2 = affine_map<(i, j, k) -> (i, j)>
func.func @strided_and_row_sum(%a: memref<8x16xf32>, %w: memref<16x8xf32>,
                               %c: memref<8x8xf32, strided<[1, 8]>>,
                               %x: memref<8x16xf32>, %r: memref<8xf32>) {
  linalg.generic {indexing_maps = [#a2, #w2, #c2],
                  iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %w : memref<8x16xf32>, memref<16x8xf32>) outs(%c : memref<8x8xf32, strided<[1, 8]>>) {
  ^bb0(%u: f32, %v: f32, %acc: f32):
    %m = arith.mulf %u, %v : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [affine_map<(i, k) -> (i, k)>, affine_map<(i, k) -> (i)>],
                  iterator_types = ["parallel", "reduction"]}
      ins(%x : memref<8x16xf32>) outs(%r : memref<8xf32>) {
  ^bb0(%u: f32, %acc: f32):
    %s = arith.addf %acc, %u : f32
    linalg.yield %s : f32
  }
  return
}
