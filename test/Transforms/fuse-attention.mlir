// RUN: moe-opt %s --split-input-file --moe-fuse-attention=row-tile=16 | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-fuse-attention="row-tile=16 trim-masked-keys=false" | FileCheck %s --check-prefix=ALL-KEYS

// softmax(Q K^T * scale + mask) V with grouped-query keys (2 query heads per
// key head), as the importer and moe-fuse-elementwise leave it. The P V
// contraction is tiled by (batch, head, 16 queries) in an scf.forall and
// the whole score chain is fused into the tile: QK^T, scale and mask, row
// max, shift, row sum of exponentials, division. The only score buffers
// are a tile's [1, 1, 16, keys]; Q, K, V and the mask are read as slices.
// The tile first scans its rows of the mask, 16 keys at a time: the last
// chunk and the first chunk that some row sees (a value above -1e30), and
// whether every row sees a key between them. The slices of K, V and the
// mask and the score buffers then cover those keys only (all of them when
// a row sees none).
// CHECK-LABEL: func @attention
// CHECK-SAME:  (%[[Q:.*]]: tensor<1x4x128x16xf32>, %[[K:.*]]: tensor<1x2x128x16xf32>, %[[V:.*]]: tensor<1x2x128x16xf32>, %[[MASK:.*]]: tensor<1x1x128x128xf32>)
// CHECK-NOT:   tensor<1x4x128x128xf32>
// CHECK:       %[[OUT:.*]] = scf.forall (%[[B:.*]], %[[H:.*]], %[[R:.*]]) = (0, 0, 0) to (1, 4, 128) step (1, 1, 16) shared_outs(%[[ACC:.*]] = %{{.*}})
// CHECK:         %[[KH:.*]] = affine.apply #{{.*}}(%[[H]])
// CHECK:         %[[QT:.*]] = tensor.extract_slice %[[Q]][%[[B]], %[[H]], %[[R]], 0] [1, 1, 16, 16]
// CHECK:         %[[SCAN:.*]] = tensor.extract_slice %[[MASK]][%[[B]], 0, %[[R]], 0] [1, 1, 16, 128]
// CHECK:         %[[END:.*]] = scf.while
// CHECK:           scf.for
// CHECK:             vector.transfer_read %[[SCAN]]
// CHECK:             arith.cmpf ugt, %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK:             vector.reduction <or>, %{{.*}} : vector<16xi1> into i1
// CHECK:         %[[BEGIN:.*]] = scf.while
// CHECK:           scf.for
// CHECK:         } do {
// CHECK:         %[[EVERY:.*]] = scf.for
// CHECK:           scf.while
// CHECK:             vector.transfer_read %[[SCAN]]
// CHECK:         %[[FIRST:.*]] = arith.muli %[[BEGIN]], %[[C16:.*]] : index
// CHECK:         %[[LO:.*]] = arith.select %[[EVERY]], %[[FIRST]], %{{.*}} : index
// CHECK:         %[[LAST:.*]] = arith.muli %[[END]], %[[C16]] : index
// CHECK:         %[[CLAMPED:.*]] = arith.minui %[[LAST]], %[[C128:.*]] : index
// CHECK:         %[[HI:.*]] = arith.select %[[EVERY]], %[[CLAMPED]], %[[C128]] : index
// CHECK:         %[[LEN:.*]] = arith.subi %[[HI]], %[[LO]] : index
// CHECK:         %[[KT:.*]] = tensor.extract_slice %[[K]][%[[B]], %[[KH]], %[[LO]], 0] [1, 1, %[[LEN]], 16]
// CHECK:         %[[SE:.*]] = tensor.empty(%[[LEN]]) : tensor<1x1x16x?xf32>
// CHECK:         %[[S:.*]] = linalg.generic {{.*}} ins(%[[QT]], %[[KT]] : tensor<1x1x16x16xf32>, tensor<1x1x?x16xf32>) outs(%{{.*}} : tensor<1x1x16x?xf32>)
// CHECK:         %[[MT:.*]] = tensor.extract_slice %[[MASK]][%[[B]], 0, %[[R]], %[[LO]]] [1, 1, 16, %[[LEN]]]
// CHECK:         %[[SM:.*]] = linalg.generic {{.*}} ins(%[[S]], %[[MT]] : tensor<1x1x16x?xf32>, tensor<1x1x16x?xf32>) outs(%[[SE]] : tensor<1x1x16x?xf32>)
// CHECK:         %[[MAX:.*]] = linalg.generic {{.*}} ins(%[[SM]] : tensor<1x1x16x?xf32>) outs(%{{.*}} : tensor<1x1x16xf32>)
// CHECK:           arith.maximumf
// CHECK:         linalg.generic
// CHECK:           arith.subf
// CHECK:         linalg.generic {{.*}} outs(%{{.*}} : tensor<1x1x16xf32>)
// CHECK:           math.exp
// CHECK:         linalg.generic
// CHECK:           arith.divf
// CHECK:         %[[VT:.*]] = tensor.extract_slice %[[V]][%[[B]], %[[KH]], %[[LO]], 0] [1, 1, %[[LEN]], 16]
// CHECK:         %[[PV:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %[[VT]] : tensor<1x1x16x?xf32>, tensor<1x1x?x16xf32>) outs(%{{.*}} : tensor<1x1x16x16xf32>)
// CHECK:         tensor.parallel_insert_slice %[[PV]] into %[[ACC]][%[[B]], %[[H]], %[[R]], 0] [1, 1, 16, 16]
// CHECK:       return %[[OUT]]

// Without the trimming, every tile reads all 128 keys.
// ALL-KEYS-LABEL: func @attention
// ALL-KEYS-NOT:   scf.while
// ALL-KEYS:       tensor.extract_slice %{{.*}}[%{{.*}}, %{{.*}}, 0, 0] [1, 1, 128, 16]
// ALL-KEYS:       linalg.generic {{.*}} outs(%{{.*}} : tensor<1x1x16x128xf32>)
// ALL-KEYS:       tensor.extract_slice %{{.*}}[%{{.*}}, 0, %{{.*}}, 0] [1, 1, 16, 128]
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

// Dynamic batch, queries and keys (a dynamic-axes export). The scores'
// extents are tensor.dim of different tensors of the chain; resolved to
// the one size they share, the copies of QK^T fused for each reader of the
// scores merge, and the tile computes QK^T once.
// CHECK-LABEL: func @attention_dynamic
// CHECK:       scf.forall
// CHECK:         scf.while
// CHECK-COUNT-1: ins(%{{.*}}, %{{.*}} : tensor<1x1x?x16xf32>, tensor<1x1x?x16xf32>) outs(%{{.*}} : tensor<1x1x?x?xf32>)
// CHECK-NOT:     ins(%{{.*}}, %{{.*}} : tensor<1x1x?x16xf32>, tensor<1x1x?x16xf32>) outs(%{{.*}} : tensor<1x1x?x?xf32>)
// CHECK:         tensor.parallel_insert_slice
#q = affine_map<(b, h, i, j, d) -> (b, h, i, d)>
#k = affine_map<(b, h, i, j, d) -> (b, h floordiv 2, j, d)>
#s = affine_map<(b, h, i, j, d) -> (b, h, i, j)>
#id = affine_map<(b, h, i, j) -> (b, h, i, j)>
#mask = affine_map<(b, h, i, j) -> (b, 0, i, j)>
#row = affine_map<(b, h, i, j) -> (b, h, i)>
#p = affine_map<(b, h, i, d, j) -> (b, h, i, j)>
#v = affine_map<(b, h, i, d, j) -> (b, h floordiv 2, j, d)>
#o = affine_map<(b, h, i, d, j) -> (b, h, i, d)>
func.func @attention_dynamic(%q: tensor<?x4x?x16xf32>, %k: tensor<?x2x?x16xf32>,
                             %v: tensor<?x2x?x16xf32>, %mask: tensor<?x1x?x?xf32>)
    -> tensor<?x4x?x16xf32> {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %zero = arith.constant 0.0 : f32
  %lowest = arith.constant -3.40282347E+38 : f32
  %scale = arith.constant 0.25 : f32
  %batch = tensor.dim %q, %c0 : tensor<?x4x?x16xf32>
  %queries = tensor.dim %q, %c2 : tensor<?x4x?x16xf32>
  %keys = tensor.dim %k, %c2 : tensor<?x2x?x16xf32>
  %e = tensor.empty(%batch, %queries, %keys) : tensor<?x4x?x?xf32>
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<?x4x?x?xf32>) -> tensor<?x4x?x?xf32>
  %qk = linalg.generic {indexing_maps = [#q, #k, #s], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k : tensor<?x4x?x16xf32>, tensor<?x2x?x16xf32>) outs(%z : tensor<?x4x?x?xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<?x4x?x?xf32>
  %masked = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%qk, %mask : tensor<?x4x?x?xf32>, tensor<?x1x?x?xf32>) outs(%e : tensor<?x4x?x?xf32>) {
  ^bb0(%a: f32, %b: f32, %out: f32):
    %m = arith.mulf %a, %scale : f32
    %s = arith.addf %m, %b : f32
    linalg.yield %s : f32
  } -> tensor<?x4x?x?xf32>
  %re = tensor.empty(%batch, %queries) : tensor<?x4x?xf32>
  %rl = linalg.fill ins(%lowest : f32) outs(%re : tensor<?x4x?xf32>) -> tensor<?x4x?xf32>
  %max = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%masked : tensor<?x4x?x?xf32>) outs(%rl : tensor<?x4x?xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %m = arith.maximumf %acc, %a : f32
    linalg.yield %m : f32
  } -> tensor<?x4x?xf32>
  %shifted = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%masked, %max : tensor<?x4x?x?xf32>, tensor<?x4x?xf32>) outs(%e : tensor<?x4x?x?xf32>) {
  ^bb0(%a: f32, %b: f32, %out: f32):
    %s = arith.subf %a, %b : f32
    linalg.yield %s : f32
  } -> tensor<?x4x?x?xf32>
  %rz = linalg.fill ins(%zero : f32) outs(%re : tensor<?x4x?xf32>) -> tensor<?x4x?xf32>
  %sum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%shifted : tensor<?x4x?x?xf32>) outs(%rz : tensor<?x4x?xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %x = math.exp %a : f32
    %s = arith.addf %acc, %x : f32
    linalg.yield %s : f32
  } -> tensor<?x4x?xf32>
  %probs = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%shifted, %sum : tensor<?x4x?x?xf32>, tensor<?x4x?xf32>) outs(%e : tensor<?x4x?x?xf32>) {
  ^bb0(%a: f32, %b: f32, %out: f32):
    %x = math.exp %a : f32
    %d = arith.divf %x, %b : f32
    linalg.yield %d : f32
  } -> tensor<?x4x?x?xf32>
  %oe = tensor.empty(%batch, %queries) : tensor<?x4x?x16xf32>
  %oz = linalg.fill ins(%zero : f32) outs(%oe : tensor<?x4x?x16xf32>) -> tensor<?x4x?x16xf32>
  %out = linalg.generic {indexing_maps = [#p, #v, #o], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
      ins(%probs, %v : tensor<?x4x?x?xf32>, tensor<?x2x?x16xf32>) outs(%oz : tensor<?x4x?x16xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<?x4x?x16xf32>
  return %out : tensor<?x4x?x16xf32>
}

// -----

// Scores capped after the mask (tanh): a hidden key's probability is no
// longer 0, so the tile keeps every key.
// CHECK-LABEL: func @attention_capped_after_mask
// CHECK:       scf.forall
// CHECK-NOT:     scf.while
// CHECK:         tensor.extract_slice %{{.*}}[%{{.*}}, %{{.*}}, 0, 0] [1, 1, 64, 16]
// CHECK:         math.tanh
#q = affine_map<(b, h, i, j, d) -> (b, h, i, d)>
#k = affine_map<(b, h, i, j, d) -> (b, h, j, d)>
#s = affine_map<(b, h, i, j, d) -> (b, h, i, j)>
#id = affine_map<(b, h, i, j) -> (b, h, i, j)>
#mask = affine_map<(b, h, i, j) -> (b, 0, i, j)>
#row = affine_map<(b, h, i, j) -> (b, h, i)>
#p = affine_map<(b, h, i, d, j) -> (b, h, i, j)>
#v = affine_map<(b, h, i, d, j) -> (b, h, j, d)>
#o = affine_map<(b, h, i, d, j) -> (b, h, i, d)>
func.func @attention_capped_after_mask(%q: tensor<1x2x64x16xf32>, %k: tensor<1x2x64x16xf32>,
                                       %v: tensor<1x2x64x16xf32>, %mask: tensor<1x1x64x64xf32>)
    -> tensor<1x2x64x16xf32> {
  %zero = arith.constant 0.0 : f32
  %lowest = arith.constant -3.40282347E+38 : f32
  %e = tensor.empty() : tensor<1x2x64x64xf32>
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<1x2x64x64xf32>) -> tensor<1x2x64x64xf32>
  %qk = linalg.generic {indexing_maps = [#q, #k, #s], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k : tensor<1x2x64x16xf32>, tensor<1x2x64x16xf32>) outs(%z : tensor<1x2x64x64xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<1x2x64x64xf32>
  %masked = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%qk, %mask : tensor<1x2x64x64xf32>, tensor<1x1x64x64xf32>) outs(%e : tensor<1x2x64x64xf32>) {
  ^bb0(%a: f32, %b: f32, %out: f32):
    %s = arith.addf %a, %b : f32
    linalg.yield %s : f32
  } -> tensor<1x2x64x64xf32>
  %capped = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%masked : tensor<1x2x64x64xf32>) outs(%e : tensor<1x2x64x64xf32>) {
  ^bb0(%a: f32, %out: f32):
    %t = math.tanh %a : f32
    linalg.yield %t : f32
  } -> tensor<1x2x64x64xf32>
  %re = tensor.empty() : tensor<1x2x64xf32>
  %rl = linalg.fill ins(%lowest : f32) outs(%re : tensor<1x2x64xf32>) -> tensor<1x2x64xf32>
  %max = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%capped : tensor<1x2x64x64xf32>) outs(%rl : tensor<1x2x64xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %m = arith.maximumf %acc, %a : f32
    linalg.yield %m : f32
  } -> tensor<1x2x64xf32>
  %rz = linalg.fill ins(%zero : f32) outs(%re : tensor<1x2x64xf32>) -> tensor<1x2x64xf32>
  %sum = linalg.generic {indexing_maps = [#id, #row, #row], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%capped, %max : tensor<1x2x64x64xf32>, tensor<1x2x64xf32>) outs(%rz : tensor<1x2x64xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %d = arith.subf %a, %b : f32
    %x = math.exp %d : f32
    %s = arith.addf %acc, %x : f32
    linalg.yield %s : f32
  } -> tensor<1x2x64xf32>
  %probs = linalg.generic {indexing_maps = [#id, #row, #row, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%capped, %max, %sum : tensor<1x2x64x64xf32>, tensor<1x2x64xf32>, tensor<1x2x64xf32>) outs(%e : tensor<1x2x64x64xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32, %out: f32):
    %d = arith.subf %a, %b : f32
    %x = math.exp %d : f32
    %r = arith.divf %x, %c : f32
    linalg.yield %r : f32
  } -> tensor<1x2x64x64xf32>
  %oe = tensor.empty() : tensor<1x2x64x16xf32>
  %oz = linalg.fill ins(%zero : f32) outs(%oe : tensor<1x2x64x16xf32>) -> tensor<1x2x64x16xf32>
  %out = linalg.generic {indexing_maps = [#p, #v, #o], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
      ins(%probs, %v : tensor<1x2x64x64xf32>, tensor<1x2x64x16xf32>) outs(%oz : tensor<1x2x64x16xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<1x2x64x16xf32>
  return %out : tensor<1x2x64x16xf32>
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

// -----

// A half-precision model's chain, as -moe-widen-half-accumulators and
// -moe-fuse-elementwise leave it: f16 scores and mask between f32 sums, with
// the sums rounded to f16 (extf/truncf in the bodies). The chain is the
// same softmax, so it is fused; the scan reads the f16 mask as stored and
// widens it, and hides keys at or below f16's lowest value, -65504 (what a
// half-precision export writes for finfo.min).
// CHECK-LABEL: func @attention_f16
// CHECK-SAME:  %[[MASK:[^:]*]]: tensor<1x1x128x128xf16>)
// CHECK:       scf.forall (%[[B:.*]], %{{.*}}, %[[R:.*]]) = (0, 0, 0) to (1, 4, 128) step (1, 1, 16)
// CHECK:         %[[SCAN:.*]] = tensor.extract_slice %[[MASK]][%[[B]], 0, %[[R]], 0] [1, 1, 16, 128]
// CHECK:         %[[HIDDEN:.*]] = arith.constant dense<-6.550400e+04> : vector<16xf32>
// CHECK:         scf.while
// CHECK:           %[[CHUNK:.*]] = vector.transfer_read %[[SCAN]]{{.*}} : tensor<1x1x16x128xf16>, vector<16xf16>
// CHECK:           %[[WIDE:.*]] = arith.extf %[[CHUNK]] : vector<16xf16> to vector<16xf32>
// CHECK:           arith.cmpf ugt, %[[WIDE]], %[[HIDDEN]] : vector<16xf32>
// CHECK:         linalg.generic {{.*}} outs(%{{.*}} : tensor<1x1x16x16xf32>)
// CHECK:       return
#h16map = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d4)>
#h16map1 = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1 floordiv 2, d3, d4)>
#h16map2 = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3)>
#h16map3 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#h16map4 = affine_map<(d0, d1, d2, d3) -> (d0, 0, d2, d3)>
#h16map5 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
#h16map6 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#h16map7 = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1 floordiv 2, d4, d3)>
module {
func.func @attention_f16(%arg0: tensor<1x4x128x16xf16>, %arg1: tensor<1x2x128x16xf16>, %arg2: tensor<1x2x128x16xf16>, %arg3: tensor<1x1x128x128xf16>) -> tensor<1x4x128x16xf16> {
  %cst = arith.constant -6.550400e+04 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %cst_1 = arith.constant 2.500000e-01 : f16
  %0 = tensor.empty() : tensor<1x4x128x128xf16>
  %1 = tensor.empty() : tensor<1x4x128x128xf32>
  %2 = linalg.fill ins(%cst_0 : f32) outs(%1 : tensor<1x4x128x128xf32>) -> tensor<1x4x128x128xf32>
  %3 = linalg.generic {indexing_maps = [#h16map, #h16map1, #h16map2], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%arg0, %arg1 : tensor<1x4x128x16xf16>, tensor<1x2x128x16xf16>) outs(%2 : tensor<1x4x128x128xf32>) {
  ^bb0(%in: f16, %in_2: f16, %out: f32):
    %22 = arith.extf %in : f16 to f32
    %23 = arith.extf %in_2 : f16 to f32
    %24 = arith.mulf %22, %23 : f32
    %25 = arith.addf %out, %24 : f32
    linalg.yield %25 : f32
  } -> tensor<1x4x128x128xf32>
  %4 = linalg.generic {indexing_maps = [#h16map3, #h16map4, #h16map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%3, %arg3 : tensor<1x4x128x128xf32>, tensor<1x1x128x128xf16>) outs(%0 : tensor<1x4x128x128xf16>) {
  ^bb0(%in: f32, %in_2: f16, %out: f16):
    %22 = arith.truncf %in : f32 to f16
    %23 = arith.mulf %22, %cst_1 : f16
    %24 = arith.addf %23, %in_2 : f16
    linalg.yield %24 : f16
  } -> tensor<1x4x128x128xf16>
  %5 = tensor.empty() : tensor<1x4x128xf32>
  %6 = linalg.fill ins(%cst : f32) outs(%5 : tensor<1x4x128xf32>) -> tensor<1x4x128xf32>
  %7 = linalg.generic {indexing_maps = [#h16map3, #h16map5], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%4 : tensor<1x4x128x128xf16>) outs(%6 : tensor<1x4x128xf32>) {
  ^bb0(%in: f16, %out: f32):
    %22 = arith.extf %in : f16 to f32
    %23 = arith.maximumf %out, %22 : f32
    linalg.yield %23 : f32
  } -> tensor<1x4x128xf32>
  %8 = tensor.empty() : tensor<1x4x128xf16>
  %9 = linalg.generic {indexing_maps = [#h16map6, #h16map6], iterator_types = ["parallel", "parallel", "parallel"]} ins(%7 : tensor<1x4x128xf32>) outs(%8 : tensor<1x4x128xf16>) {
  ^bb0(%in: f32, %out: f16):
    %22 = arith.truncf %in : f32 to f16
    linalg.yield %22 : f16
  } -> tensor<1x4x128xf16>
  %10 = linalg.generic {indexing_maps = [#h16map3, #h16map5, #h16map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%4, %9 : tensor<1x4x128x128xf16>, tensor<1x4x128xf16>) outs(%0 : tensor<1x4x128x128xf16>) {
  ^bb0(%in: f16, %in_2: f16, %out: f16):
    %22 = arith.subf %in, %in_2 : f16
    linalg.yield %22 : f16
  } -> tensor<1x4x128x128xf16>
  %11 = tensor.empty() : tensor<1x4x128xf32>
  %12 = linalg.fill ins(%cst_0 : f32) outs(%11 : tensor<1x4x128xf32>) -> tensor<1x4x128xf32>
  %13 = linalg.generic {indexing_maps = [#h16map3, #h16map5], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%10 : tensor<1x4x128x128xf16>) outs(%12 : tensor<1x4x128xf32>) {
  ^bb0(%in: f16, %out: f32):
    %22 = arith.extf %in : f16 to f32
    %23 = math.exp %22 : f32
    %24 = arith.addf %out, %23 : f32
    linalg.yield %24 : f32
  } -> tensor<1x4x128xf32>
  %14 = tensor.empty() : tensor<1x4x128xf16>
  %15 = linalg.generic {indexing_maps = [#h16map6, #h16map6], iterator_types = ["parallel", "parallel", "parallel"]} ins(%13 : tensor<1x4x128xf32>) outs(%14 : tensor<1x4x128xf16>) {
  ^bb0(%in: f32, %out: f16):
    %22 = arith.truncf %in : f32 to f16
    linalg.yield %22 : f16
  } -> tensor<1x4x128xf16>
  %16 = linalg.generic {indexing_maps = [#h16map3, #h16map5, #h16map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%10, %15 : tensor<1x4x128x128xf16>, tensor<1x4x128xf16>) outs(%0 : tensor<1x4x128x128xf16>) {
  ^bb0(%in: f16, %in_2: f16, %out: f16):
    %22 = math.exp %in : f16
    %23 = arith.divf %22, %in_2 : f16
    linalg.yield %23 : f16
  } -> tensor<1x4x128x128xf16>
  %17 = tensor.empty() : tensor<1x4x128x16xf32>
  %18 = linalg.fill ins(%cst_0 : f32) outs(%17 : tensor<1x4x128x16xf32>) -> tensor<1x4x128x16xf32>
  %19 = linalg.generic {indexing_maps = [#h16map, #h16map7, #h16map2], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%16, %arg2 : tensor<1x4x128x128xf16>, tensor<1x2x128x16xf16>) outs(%18 : tensor<1x4x128x16xf32>) {
  ^bb0(%in: f16, %in_2: f16, %out: f32):
    %22 = arith.extf %in : f16 to f32
    %23 = arith.extf %in_2 : f16 to f32
    %24 = arith.mulf %22, %23 : f32
    %25 = arith.addf %out, %24 : f32
    linalg.yield %25 : f32
  } -> tensor<1x4x128x16xf32>
  %20 = tensor.empty() : tensor<1x4x128x16xf16>
  %21 = linalg.generic {indexing_maps = [#h16map3, #h16map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%19 : tensor<1x4x128x16xf32>) outs(%20 : tensor<1x4x128x16xf16>) {
  ^bb0(%in: f32, %out: f16):
    %22 = arith.truncf %in : f32 to f16
    linalg.yield %22 : f16
  } -> tensor<1x4x128x16xf16>
  return %21 : tensor<1x4x128x16xf16>
}
}
