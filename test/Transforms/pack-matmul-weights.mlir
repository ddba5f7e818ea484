// RUN: moe-opt %s --split-input-file --moe-pack-matmul-weights | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-pack-matmul-weights="pack-bf16=false" | FileCheck %s --check-prefix=NOBF16
// RUN: not moe-opt %s --split-input-file --moe-pack-matmul-weights="panel-width=8" 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: panel-width must be 16, 32 or 64, got 8

// A matmul by a constant [N, K] weight reads it as [N / P, K, P] panels:
// element [p, k, j] is the old [p P + j, k]. 16 output columns take
// P = 16 (64 and 32 do not divide them): w[n, k] = 2 n + k becomes the
// rows k = 0 (even numbers) and k = 1 (odd ones).
// CHECK-DAG: #[[A:.*]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG: #[[W:.*]] = affine_map<(d0, d1, d2) -> (d1 floordiv 16, d2, d1 mod 16)>
// CHECK-DAG: #[[C:.*]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @packs_weight
// CHECK: %[[P:.*]] = arith.constant dense<{{\[}}{{\[}}[0.000000e+00, 2.000000e+00, 4.000000e+00, 6.000000e+00, 8.000000e+00, 1.000000e+01, 1.200000e+01, 1.400000e+01, 1.600000e+01, 1.800000e+01, 2.000000e+01, 2.200000e+01, 2.400000e+01, 2.600000e+01, 2.800000e+01, 3.000000e+01], [1.000000e+00, 3.000000e+00, 5.000000e+00, 7.000000e+00, 9.000000e+00, 1.100000e+01, 1.300000e+01, 1.500000e+01, 1.700000e+01, 1.900000e+01, 2.100000e+01, 2.300000e+01, 2.500000e+01, 2.700000e+01, 2.900000e+01, 3.100000e+01]]]> : tensor<1x2x16xf32>
// CHECK: linalg.generic {indexing_maps = [#[[A]], #[[W]], #[[C]]], iterator_types = ["parallel", "parallel", "reduction"]} ins(%{{.*}}, %[[P]] : tensor<?x2xf32>, tensor<1x2x16xf32>)
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK-NOT: tensor<16x2xf32>
#a = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>
func.func @packs_weight(%x: tensor<?x2xf32>, %init: tensor<?x16xf32>) -> tensor<?x16xf32> {
  %w = arith.constant dense<[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0],
                             [8.0, 9.0], [10.0, 11.0], [12.0, 13.0], [14.0, 15.0],
                             [16.0, 17.0], [18.0, 19.0], [20.0, 21.0], [22.0, 23.0],
                             [24.0, 25.0], [26.0, 27.0], [28.0, 29.0], [30.0, 31.0]]> : tensor<16x2xf32>
  %y = linalg.generic {indexing_maps = [#a, #w, #c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %w : tensor<?x2xf32>, tensor<16x2xf32>) outs(%init : tensor<?x16xf32>) {
  ^bb0(%u: f32, %v: f32, %acc: f32):
    %p = arith.mulf %u, %v : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// The widest of 64, 32 and 16 that divides N; rows in several loops stay
// so; a weight two matmuls read is packed once; a splat stays a splat.
// CHECK-DAG: #[[A3:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-DAG: #[[W3:.*]] = affine_map<(d0, d1, d2, d3) -> (d2 floordiv 32, d3, d2 mod 32)>
// CHECK-DAG: #[[C3:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
// CHECK-DAG: #[[W2:.*]] = affine_map<(d0, d1, d2) -> (d1 floordiv 64, d2, d1 mod 64)>
// CHECK-LABEL: func.func @widths_and_rows
// CHECK-DAG: %[[S96:.*]] = arith.constant dense<1.000000e+00> : tensor<3x4x32xf32>
// CHECK-DAG: %[[S128:.*]] = arith.constant dense<2.000000e+00> : tensor<2x4x64xf32>
// CHECK: linalg.generic {indexing_maps = [#[[A3]], #[[W3]], #[[C3]]], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%{{.*}}, %[[S96]] :
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[W2]], #{{.*}}], {{.*}} ins(%{{.*}}, %[[S128]] :
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[W2]], #{{.*}}], {{.*}} ins(%{{.*}}, %[[S128]] :
#a3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#c3 = affine_map<(b, s, n, k) -> (b, s, n)>
#a2 = affine_map<(m, n, k) -> (m, k)>
#w2 = affine_map<(m, n, k) -> (n, k)>
#c2 = affine_map<(m, n, k) -> (m, n)>
func.func @widths_and_rows(%x: tensor<?x?x4xf32>, %init: tensor<?x?x96xf32>, %r: tensor<?x4xf32>, %out: tensor<?x128xf32>) -> (tensor<?x?x96xf32>, tensor<?x128xf32>, tensor<?x128xf32>) {
  %w96 = arith.constant dense<1.0> : tensor<96x4xf32>
  %w128 = arith.constant dense<2.0> : tensor<128x4xf32>
  %y = linalg.generic {indexing_maps = [#a3, #w3, #c3], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%x, %w96 : tensor<?x?x4xf32>, tensor<96x4xf32>) outs(%init : tensor<?x?x96xf32>) {
  ^bb0(%u: f32, %v: f32, %acc: f32):
    %p = arith.mulf %u, %v : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x?x96xf32>
  %z = linalg.generic {indexing_maps = [#a2, #w2, #c2], iterator_types = ["parallel", "parallel", "reduction"]} ins(%r, %w128 : tensor<?x4xf32>, tensor<128x4xf32>) outs(%out : tensor<?x128xf32>) {
  ^bb0(%u: f32, %v: f32, %acc: f32):
    %p = arith.mulf %u, %v : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x128xf32>
  %z2 = linalg.generic {indexing_maps = [#a2, #w2, #c2], iterator_types = ["parallel", "parallel", "reduction"]} ins(%r, %w128 : tensor<?x4xf32>, tensor<128x4xf32>) outs(%out : tensor<?x128xf32>) {
  ^bb0(%u: f32, %v: f32, %acc: f32):
    %p = arith.mulf %u, %v : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x128xf32>
  return %y, %z, %z2 : tensor<?x?x96xf32>, tensor<?x128xf32>, tensor<?x128xf32>
}

// -----

// bf16 rows by bf16 weights into f32: pairs of k, [N / P, K / 2, P, 2],
// with k split into k2 and r (k = 2 k2 + r); element [p, t, j, r] is the
// old [p P + j, 2 t + r]. Without pack-bf16 the weight stays.
// CHECK-DAG: #[[PA:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2 * 2 + d3)>
// CHECK-DAG: #[[PW:.*]] = affine_map<(d0, d1, d2, d3) -> (d1 floordiv 16, d2, d1 mod 16, d3)>
// CHECK-DAG: #[[PC:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1)>
// CHECK-LABEL: func.func @bf16_pairs
// CHECK: %[[P:.*]] = arith.constant dense<{{.*}}> : tensor<1x2x16x2xbf16>
// CHECK: linalg.generic {indexing_maps = [#[[PA]], #[[PW]], #[[PC]]], iterator_types = ["parallel", "parallel", "reduction", "reduction"]} ins(%{{.*}}, %[[P]] : tensor<?x4xbf16>, tensor<1x2x16x2xbf16>)
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: arith.extf %{{.*}} : bf16 to f32
// NOBF16-LABEL: func.func @bf16_pairs
// NOBF16: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x4xbf16>, tensor<16x4xbf16>)
#a = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>
func.func @bf16_pairs(%x: tensor<?x4xbf16>, %init: tensor<?x16xf32>) -> tensor<?x16xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0],
                             [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0],
                             [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0],
                             [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]> : tensor<16x4xbf16>
  %y = linalg.generic {indexing_maps = [#a, #w, #c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %w : tensor<?x4xbf16>, tensor<16x4xbf16>) outs(%init : tensor<?x16xf32>) {
  ^bb0(%u: bf16, %v: bf16, %acc: f32):
    %u32 = arith.extf %u : bf16 to f32
    %v32 = arith.extf %v : bf16 to f32
    %p = arith.mulf %u32, %v32 : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Left as they are: a weight also read by something else (a tied
// embedding's gather), N that 16 does not divide, a body that does more
// than accumulate the product, bf16 weights of f32 rows, an f32 weight
// accumulated into bf16, and f16 rows (an f16 model's).
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: floordiv
// CHECK: return
#a = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>
func.func @left_alone(%x: tensor<?x4xf32>, %xh: tensor<?x4xf16>, %init: tensor<?x16xf32>, %init8: tensor<?x8xf32>, %initb: tensor<?x16xbf16>, %i: index) -> (tensor<?x16xf32>, f32, tensor<?x8xf32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xbf16>, tensor<?x16xf32>) {
  %tied = arith.constant dense<1.0> : tensor<16x4xf32>
  %y = linalg.generic {indexing_maps = [#a, #w, #c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %tied : tensor<?x4xf32>, tensor<16x4xf32>) outs(%init : tensor<?x16xf32>) {
  ^bb0(%u: f32, %v: f32, %acc: f32):
    %p = arith.mulf %u, %v : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x16xf32>
  %e = tensor.extract %tied[%i, %i] : tensor<16x4xf32>
  %w8 = arith.constant dense<2.0> : tensor<8x4xf32>
  %y8 = linalg.generic {indexing_maps = [#a, #w, #c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %w8 : tensor<?x4xf32>, tensor<8x4xf32>) outs(%init8 : tensor<?x8xf32>) {
  ^bb0(%u: f32, %v: f32, %acc: f32):
    %p = arith.mulf %u, %v : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x8xf32>
  %w3 = arith.constant dense<3.0> : tensor<16x4xf32>
  %ym = linalg.generic {indexing_maps = [#a, #w, #c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %w3 : tensor<?x4xf32>, tensor<16x4xf32>) outs(%init : tensor<?x16xf32>) {
  ^bb0(%u: f32, %v: f32, %acc: f32):
    %p = arith.mulf %u, %v : f32
    %s = arith.maximumf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x16xf32>
  %wb = arith.constant dense<4.0> : tensor<16x4xbf16>
  %yb = linalg.generic {indexing_maps = [#a, #w, #c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %wb : tensor<?x4xf32>, tensor<16x4xbf16>) outs(%init : tensor<?x16xf32>) {
  ^bb0(%u: f32, %v: bf16, %acc: f32):
    %v32 = arith.extf %v : bf16 to f32
    %p = arith.mulf %u, %v32 : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x16xf32>
  %w5 = arith.constant dense<5.0> : tensor<16x4xf32>
  %yc = linalg.generic {indexing_maps = [#a, #w, #c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %w5 : tensor<?x4xf32>, tensor<16x4xf32>) outs(%initb : tensor<?x16xbf16>) {
  ^bb0(%u: f32, %v: f32, %acc: bf16):
    %p = arith.mulf %u, %v : f32
    %pb = arith.truncf %p : f32 to bf16
    %s = arith.addf %acc, %pb : bf16
    linalg.yield %s : bf16
  } -> tensor<?x16xbf16>
  %wh = arith.constant dense<0.5> : tensor<16x4xf16>
  %yh = linalg.generic {indexing_maps = [#a, #w, #c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%xh, %wh : tensor<?x4xf16>, tensor<16x4xf16>) outs(%init : tensor<?x16xf32>) {
  ^bb0(%u: f16, %v: f16, %acc: f32):
    %u32 = arith.extf %u : f16 to f32
    %v32 = arith.extf %v : f16 to f32
    %p = arith.mulf %u32, %v32 : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x16xf32>
  return %y, %e, %y8, %ym, %yb, %yc, %yh : tensor<?x16xf32>, f32, tensor<?x8xf32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xbf16>, tensor<?x16xf32>
}
