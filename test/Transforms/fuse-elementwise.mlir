// RUN: moe-opt %s --split-input-file --moe-fuse-elementwise | FileCheck %s

// RMSNorm as the importer writes it: x^2 (with the exponent a splat
// constant), its row sum, the scale and the weight. The squares fuse into
// the sum (read once per element), the exponent becomes a constant in the
// body; the scale and the weight multiply fuse into one loop.
// CHECK-LABEL: func @rms_norm
// CHECK-SAME:  (%[[X:.*]]: tensor<128x64xf32>, %[[W:.*]]: tensor<64xf32>)
// CHECK:       %[[SUM:.*]] = linalg.generic
// CHECK-SAME:    iterator_types = ["parallel", "reduction"]
// CHECK-SAME:    ins(%[[X]] : tensor<128x64xf32>)
// CHECK:         math.powf %{{.*}}, %cst
// CHECK:         arith.addf
// CHECK:       %[[OUT:.*]] = linalg.generic
// CHECK-SAME:    ins(%[[X]], %[[SUM]], %[[W]] :
// CHECK:         arith.divf
// CHECK:         math.sqrt
// CHECK:         arith.mulf
// CHECK:         arith.mulf
// CHECK:       return %[[OUT]]
#id = affine_map<(i, j) -> (i, j)>
#row = affine_map<(i, j) -> (i)>
#col = affine_map<(i, j) -> (j)>
#scalar = affine_map<(i, j) -> ()>
func.func @rms_norm(%x: tensor<128x64xf32>, %w: tensor<64xf32>) -> tensor<128x64xf32> {
  %two = arith.constant dense<2.0> : tensor<f32>
  %zero = arith.constant 0.0 : f32
  %n = arith.constant 64.0 : f32
  %e0 = tensor.empty() : tensor<128x64xf32>
  %sq = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %two : tensor<128x64xf32>, tensor<f32>) outs(%e0 : tensor<128x64xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %p = math.powf %a, %b : f32
    linalg.yield %p : f32
  } -> tensor<128x64xf32>
  %e1 = tensor.empty() : tensor<128xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e1 : tensor<128xf32>) -> tensor<128xf32>
  %sum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%sq : tensor<128x64xf32>) outs(%init : tensor<128xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %s = arith.addf %acc, %a : f32
    linalg.yield %s : f32
  } -> tensor<128xf32>
  %scaled = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %sum : tensor<128x64xf32>, tensor<128xf32>) outs(%e0 : tensor<128x64xf32>) {
  ^bb0(%a: f32, %s: f32, %o: f32):
    %mean = arith.divf %s, %n : f32
    %r = math.sqrt %mean : f32
    %y = arith.mulf %a, %r : f32
    linalg.yield %y : f32
  } -> tensor<128x64xf32>
  %out = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]}
      ins(%scaled, %w : tensor<128x64xf32>, tensor<64xf32>) outs(%e0 : tensor<128x64xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %y = arith.mulf %a, %b : f32
    linalg.yield %y : f32
  } -> tensor<128x64xf32>
  return %out : tensor<128x64xf32>
}

// -----

// Rotated keys feeding QK^T: the contraction reads each key once per
// query, so the rotation stays a loop of its own rather than being
// recomputed 128 times per element.
// CHECK-LABEL: func @keys_into_scores
// CHECK:       %[[ROT:.*]] = linalg.generic
// CHECK-SAME:    iterator_types = ["parallel", "parallel"]
// CHECK:         arith.mulf
// CHECK:       linalg.generic
// CHECK-SAME:    iterator_types = ["parallel", "parallel", "reduction"]
// CHECK-SAME:    ins(%{{.*}}, %[[ROT]] :
func.func @keys_into_scores(%q: tensor<128x16xf32>, %k: tensor<128x16xf32>, %c: tensor<128x16xf32>) -> tensor<128x128xf32> {
  %zero = arith.constant 0.0 : f32
  %e0 = tensor.empty() : tensor<128x16xf32>
  %rot = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]}
      ins(%k, %c : tensor<128x16xf32>, tensor<128x16xf32>) outs(%e0 : tensor<128x16xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %y = arith.mulf %a, %b : f32
    linalg.yield %y : f32
  } -> tensor<128x16xf32>
  %e1 = tensor.empty() : tensor<128x128xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e1 : tensor<128x128xf32>) -> tensor<128x128xf32>
  %s = linalg.generic {indexing_maps = [affine_map<(s, t, d) -> (s, d)>, affine_map<(s, t, d) -> (t, d)>, affine_map<(s, t, d) -> (s, t)>],
                       iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%q, %rot : tensor<128x16xf32>, tensor<128x16xf32>) outs(%init : tensor<128x128xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %r = arith.addf %acc, %m : f32
    linalg.yield %r : f32
  } -> tensor<128x128xf32>
  return %s : tensor<128x128xf32>
}

// -----

// Torch's `q @ k.transpose(2, 3)`: the transpose only moves data, so it
// fuses into the contraction although K is read once per query; K is read
// in place, in the batched transposed-B form of -moe-vectorize-contractions.
// CHECK-DAG:   #[[Q:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-DAG:   #[[K:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2, d3)>
// CHECK-LABEL: func @transposed_keys
// CHECK-SAME:  (%[[QA:.*]]: tensor<4x128x16xf32>, %[[KA:.*]]: tensor<4x128x16xf32>)
// CHECK-NOT:   linalg.transpose
// CHECK:       linalg.generic {indexing_maps = [#[[Q]], #[[K]], #{{.*}}]
// CHECK-SAME:    ins(%[[QA]], %[[KA]] :
func.func @transposed_keys(%q: tensor<4x128x16xf32>, %k: tensor<4x128x16xf32>) -> tensor<4x128x128xf32> {
  %zero = arith.constant 0.0 : f32
  %e0 = tensor.empty() : tensor<4x16x128xf32>
  %kt = linalg.transpose ins(%k : tensor<4x128x16xf32>) outs(%e0 : tensor<4x16x128xf32>) permutation = [0, 2, 1]
  %e1 = tensor.empty() : tensor<4x128x128xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e1 : tensor<4x128x128xf32>) -> tensor<4x128x128xf32>
  %s = linalg.generic {indexing_maps = [affine_map<(h, s, t, d) -> (h, s, d)>, affine_map<(h, s, t, d) -> (h, d, t)>, affine_map<(h, s, t, d) -> (h, s, t)>],
                       iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %kt : tensor<4x128x16xf32>, tensor<4x16x128xf32>) outs(%init : tensor<4x128x128xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %r = arith.addf %acc, %m : f32
    linalg.yield %r : f32
  } -> tensor<4x128x128xf32>
  return %s : tensor<4x128x128xf32>
}

// -----

// Grouped-query attention's repeat_kv (4 key heads, each for 3 query heads:
// a broadcast along a new unit dimension collapsed into 12 heads): the
// contraction reads the 4 heads in place at head floordiv 3, and the size
// query of the repeated tensor is answered from the unrepeated one.
// CHECK-DAG:   #[[KMAP:.*]] = affine_map<(d0, d1, d2, d3) -> (d0 floordiv 3, d2, d3)>
// CHECK-LABEL: func @repeated_keys
// CHECK-SAME:  (%[[Q:.*]]: tensor<12x?x16xf32>, %[[K:.*]]: tensor<4x1x?x16xf32>)
// CHECK:       %[[K4:.*]] = tensor.collapse_shape %[[K]] {{\[}}[0, 1], [2], [3]] : tensor<4x1x?x16xf32> into tensor<4x?x16xf32>
// CHECK:       %[[T:.*]] = tensor.dim %[[K4]], %c1
// CHECK-NOT:   tensor<4x3x?x16xf32>
// CHECK:       linalg.generic {indexing_maps = [#{{.*}}, #[[KMAP]], #{{.*}}]
// CHECK-SAME:    ins(%[[Q]], %[[K4]] :
func.func @repeated_keys(%q: tensor<12x?x16xf32>, %k: tensor<4x1x?x16xf32>) -> tensor<12x?x?xf32> {
  %zero = arith.constant 0.0 : f32
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %t = tensor.dim %k, %c2 : tensor<4x1x?x16xf32>
  %e0 = tensor.empty(%t) : tensor<4x3x?x16xf32>
  %rep = linalg.generic {indexing_maps = [affine_map<(g, r, t, d) -> (g, 0, t, d)>, affine_map<(g, r, t, d) -> (g, r, t, d)>],
                         iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%k : tensor<4x1x?x16xf32>) outs(%e0 : tensor<4x3x?x16xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<4x3x?x16xf32>
  %k12 = tensor.collapse_shape %rep [[0, 1], [2], [3]] : tensor<4x3x?x16xf32> into tensor<12x?x16xf32>
  %kt = tensor.dim %k12, %c1 : tensor<12x?x16xf32>
  %s = tensor.dim %q, %c1 : tensor<12x?x16xf32>
  %e1 = tensor.empty(%s, %kt) : tensor<12x?x?xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e1 : tensor<12x?x?xf32>) -> tensor<12x?x?xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(h, s, t, d) -> (h, s, d)>, affine_map<(h, s, t, d) -> (h, t, d)>, affine_map<(h, s, t, d) -> (h, s, t)>],
                       iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k12 : tensor<12x?x16xf32>, tensor<12x?x16xf32>) outs(%init : tensor<12x?x?xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %y = arith.addf %acc, %m : f32
    linalg.yield %y : f32
  } -> tensor<12x?x?xf32>
  return %r : tensor<12x?x?xf32>
}
