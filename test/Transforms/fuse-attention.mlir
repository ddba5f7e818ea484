// RUN: moe-opt %s --split-input-file --moe-fuse-attention=row-tile=16 | FileCheck %s

// softmax(Q K^T * scale + mask) V with grouped-query keys (2 query heads per
// key head), as the importer and moe-fuse-elementwise leave it. The P V
// contraction is tiled by (batch, head, 16 queries) in an scf.forall and
// the whole score chain is fused into the tile: QK^T, scale and mask, row
// max, shift, row sum of exponentials, division. The only score buffers
// are a tile's [1, 1, 16, 128]; Q, K, V and the mask are read as slices.
// CHECK-LABEL: func @attention
// CHECK-SAME:  (%[[Q:.*]]: tensor<1x4x128x16xf32>, %[[K:.*]]: tensor<1x2x128x16xf32>, %[[V:.*]]: tensor<1x2x128x16xf32>, %[[MASK:.*]]: tensor<1x1x128x128xf32>)
// CHECK-NOT:   tensor<1x4x128x128xf32>
// CHECK:       %[[OUT:.*]] = scf.forall (%[[B:.*]], %[[H:.*]], %[[R:.*]]) = (0, 0, 0) to (1, 4, 128) step (1, 1, 16) shared_outs(%[[ACC:.*]] = %{{.*}})
// CHECK:         %[[KH:.*]] = affine.apply #{{.*}}(%[[H]])
// CHECK:         %[[QT:.*]] = tensor.extract_slice %[[Q]][%[[B]], %[[H]], %[[R]], 0] [1, 1, 16, 16]
// CHECK:         %[[KT:.*]] = tensor.extract_slice %[[K]][%[[B]], %[[KH]], 0, 0] [1, 1, 128, 16]
// CHECK:         %[[S:.*]] = linalg.generic {{.*}} ins(%[[QT]], %[[KT]] : tensor<1x1x16x16xf32>, tensor<1x1x128x16xf32>) outs(%{{.*}} : tensor<1x1x16x128xf32>)
// CHECK:         %[[MT:.*]] = tensor.extract_slice %[[MASK]][%[[B]], 0, %[[R]], 0] [1, 1, 16, 128]
// CHECK:         %[[SM:.*]] = linalg.generic {{.*}} ins(%[[S]], %[[MT]] : tensor<1x1x16x128xf32>, tensor<1x1x16x128xf32>)
// CHECK:         %[[MAX:.*]] = linalg.generic {{.*}} ins(%[[SM]] : tensor<1x1x16x128xf32>) outs(%{{.*}} : tensor<1x1x16xf32>)
// CHECK:           arith.maximumf
// CHECK:         linalg.generic
// CHECK:           arith.subf
// CHECK:         linalg.generic {{.*}} outs(%{{.*}} : tensor<1x1x16xf32>)
// CHECK:           math.exp
// CHECK:         linalg.generic
// CHECK:           arith.divf
// CHECK:         %[[VT:.*]] = tensor.extract_slice %[[V]][%[[B]], %[[KH]], 0, 0] [1, 1, 128, 16]
// CHECK:         %[[PV:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %[[VT]] : {{.*}}) outs(%{{.*}} : tensor<1x1x16x16xf32>)
// CHECK:         tensor.parallel_insert_slice %[[PV]] into %[[ACC]][%[[B]], %[[H]], %[[R]], 0] [1, 1, 16, 16]
// CHECK:       return %[[OUT]]
#q = affine_map<(b, h, i, j, d) -> (b, h, i, d)>
#k = affine_map<(b, h, i, j, d) -> (b, h floordiv 2, j, d)>
#s = affine_map<(b, h, i, j, d) -> (b, h, i, j)>
#id = affine_map<(b, h, i, j) -> (b, h, i, j)>
#mask = affine_map<(b, h, i, j) -> (b, 0, i, j)>
#row = affine_map<(b, h, i, j) -> (b, h, i)>
#p = affine_map<(b, h, i, d, j) -> (b, h, i, j)>
#v = affine_map<(b, h, i, d, j) -> (b, h floordiv 2, j, d)>
#o = affine_map<(b, h, i, d, j) -> (b, h, i, d)>
func.func @attention(%q: tensor<1x4x128x16xf32>, %k: tensor<1x2x128x16xf32>,
                     %v: tensor<1x2x128x16xf32>, %mask: tensor<1x1x128x128xf32>)
    -> tensor<1x4x128x16xf32> {
  %zero = arith.constant 0.0 : f32
  %lowest = arith.constant -3.40282347E+38 : f32
  %scale = arith.constant 0.25 : f32
  %e = tensor.empty() : tensor<1x4x128x128xf32>
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<1x4x128x128xf32>) -> tensor<1x4x128x128xf32>
  %qk = linalg.generic {indexing_maps = [#q, #k, #s], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k : tensor<1x4x128x16xf32>, tensor<1x2x128x16xf32>) outs(%z : tensor<1x4x128x128xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<1x4x128x128xf32>
  %masked = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%qk, %mask : tensor<1x4x128x128xf32>, tensor<1x1x128x128xf32>) outs(%e : tensor<1x4x128x128xf32>) {
  ^bb0(%a: f32, %b: f32, %out: f32):
    %m = arith.mulf %a, %scale : f32
    %s = arith.addf %m, %b : f32
    linalg.yield %s : f32
  } -> tensor<1x4x128x128xf32>
  %re = tensor.empty() : tensor<1x4x128xf32>
  %rl = linalg.fill ins(%lowest : f32) outs(%re : tensor<1x4x128xf32>) -> tensor<1x4x128xf32>
  %max = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%masked : tensor<1x4x128x128xf32>) outs(%rl : tensor<1x4x128xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %m = arith.maximumf %acc, %a : f32
    linalg.yield %m : f32
  } -> tensor<1x4x128xf32>
  %shifted = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%masked, %max : tensor<1x4x128x128xf32>, tensor<1x4x128xf32>) outs(%e : tensor<1x4x128x128xf32>) {
  ^bb0(%a: f32, %b: f32, %out: f32):
    %s = arith.subf %a, %b : f32
    linalg.yield %s : f32
  } -> tensor<1x4x128x128xf32>
  %rz = linalg.fill ins(%zero : f32) outs(%re : tensor<1x4x128xf32>) -> tensor<1x4x128xf32>
  %sum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%shifted : tensor<1x4x128x128xf32>) outs(%rz : tensor<1x4x128xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %x = math.exp %a : f32
    %s = arith.addf %acc, %x : f32
    linalg.yield %s : f32
  } -> tensor<1x4x128xf32>
  %probs = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%shifted, %sum : tensor<1x4x128x128xf32>, tensor<1x4x128xf32>) outs(%e : tensor<1x4x128x128xf32>) {
  ^bb0(%a: f32, %b: f32, %out: f32):
    %x = math.exp %a : f32
    %d = arith.divf %x, %b : f32
    linalg.yield %d : f32
  } -> tensor<1x4x128x128xf32>
  %oe = tensor.empty() : tensor<1x4x128x16xf32>
  %oz = linalg.fill ins(%zero : f32) outs(%oe : tensor<1x4x128x16xf32>) -> tensor<1x4x128x16xf32>
  %out = linalg.generic {indexing_maps = [#p, #v, #o], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
      ins(%probs, %v : tensor<1x4x128x128xf32>, tensor<1x2x128x16xf32>) outs(%oz : tensor<1x4x128x16xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<1x4x128x16xf32>
  return %out : tensor<1x4x128x16xf32>
}

// -----

// A contraction whose first operand is not computed by a softmax (a plain
// matmul, or scores without a row reduction) is left alone.
// CHECK-LABEL: func @not_attention
// CHECK-NOT:   scf.forall
// CHECK:       return
#a = affine_map<(i, j, k) -> (i, k)>
#b = affine_map<(i, j, k) -> (j, k)>
#c = affine_map<(i, j, k) -> (i, j)>
#e2 = affine_map<(i, j) -> (i, j)>
func.func @not_attention(%x: tensor<64x32xf32>, %w: tensor<16x32xf32>) -> tensor<64x16xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x32xf32>
  %relu = linalg.generic {indexing_maps = [#e2, #e2], iterator_types = ["parallel", "parallel"]}
      ins(%x : tensor<64x32xf32>) outs(%e : tensor<64x32xf32>) {
  ^bb0(%a: f32, %out: f32):
    %r = arith.maximumf %a, %zero : f32
    linalg.yield %r : f32
  } -> tensor<64x32xf32>
  %oe = tensor.empty() : tensor<64x16xf32>
  %oz = linalg.fill ins(%zero : f32) outs(%oe : tensor<64x16xf32>) -> tensor<64x16xf32>
  %y = linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%relu, %w : tensor<64x32xf32>, tensor<16x32xf32>) outs(%oz : tensor<64x16xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<64x16xf32>
  return %y : tensor<64x16xf32>
}
