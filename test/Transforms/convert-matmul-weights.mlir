// RUN: moe-opt %s --split-input-file --moe-convert-matmul-weights | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-convert-matmul-weights | FileCheck %s --check-prefix=ERASED
// RUN: not moe-opt %s --split-input-file --moe-convert-matmul-weights="element-type=f16" 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: element-type must be 'bf16', got 'f16'

// A projection by a constant out-major weight ([N, K], the batch and
// sequence loops as rows): the weight becomes a bf16 constant (0.1 rounds
// to 0x3DCD, printed 1.000980e-01), the activations are rounded to bf16
// elementwise first, and the body widens both so that the sum stays f32.
// CHECK-DAG:  #[[$ID:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @projection
// CHECK-SAME:  (%[[X:.*]]: tensor<?x?x2xf32>, %[[INIT:.*]]: tensor<?x?x3xf32>)
// CHECK:       %[[XB:.*]] = linalg.generic {indexing_maps = [#[[$ID]], #[[$ID]]], iterator_types = ["parallel", "parallel", "parallel"]} ins(%[[X]] : tensor<?x?x2xf32>) outs(%{{.*}} : tensor<?x?x2xbf16>)
// CHECK:         arith.truncf %{{.*}} : f32 to bf16
// CHECK:       %[[W:.*]] = arith.constant dense<{{\[}}[1.000000e+00, 1.000980e-01], [-2.000000e+00, 5.000000e-01], [3.000000e+00, 2.500000e-01]]> : tensor<3x2xbf16>
// CHECK:       %[[Y:.*]] = linalg.generic {{.*}} ins(%[[XB]], %[[W]] : tensor<?x?x2xbf16>, tensor<3x2xbf16>) outs(%[[INIT]] : tensor<?x?x3xf32>)
// CHECK-NEXT:  ^bb0(%[[A:.*]]: bf16, %[[B:.*]]: bf16, %[[ACC:.*]]: f32):
// CHECK-NEXT:    %[[AW:.*]] = arith.extf %[[A]] : bf16 to f32
// CHECK-NEXT:    %[[BW:.*]] = arith.extf %[[B]] : bf16 to f32
// CHECK-NEXT:    %[[P:.*]] = arith.mulf %[[AW]], %[[BW]] : f32
// CHECK-NEXT:    %[[S:.*]] = arith.addf %[[ACC]], %[[P]] : f32
// CHECK-NEXT:    linalg.yield %[[S]] : f32
// CHECK:       return %[[Y]]
// The f32 constant is erased.
// ERASED-NOT:  tensor<3x2xf32>
#proj_a = affine_map<(b, s, n, k) -> (b, s, k)>
#proj_w = affine_map<(b, s, n, k) -> (n, k)>
#proj_c = affine_map<(b, s, n, k) -> (b, s, n)>
func.func @projection(%x: tensor<?x?x2xf32>, %init: tensor<?x?x3xf32>) -> tensor<?x?x3xf32> {
  %w = arith.constant dense<[[1.0, 0.1], [-2.0, 0.5], [3.0, 0.25]]> : tensor<3x2xf32>
  %y = linalg.generic {indexing_maps = [#proj_a, #proj_w, #proj_c], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%x, %w : tensor<?x?x2xf32>, tensor<3x2xf32>) outs(%init : tensor<?x?x3xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x?x3xf32>
  return %y : tensor<?x?x3xf32>
}

// -----

// Two projections of the same activations (a norm's output feeding q and
// k) share one rounding.
// CHECK-LABEL: func.func @shared_activations
// CHECK-COUNT-1: arith.truncf
// CHECK-NOT:   arith.truncf
// CHECK:       return
#sh_a = affine_map<(m, n, k) -> (m, k)>
#sh_w = affine_map<(m, n, k) -> (n, k)>
#sh_c = affine_map<(m, n, k) -> (m, n)>
func.func @shared_activations(%x: tensor<?x4xf32>, %init: tensor<?x2xf32>) -> (tensor<?x2xf32>, tensor<?x2xf32>) {
  %wq = arith.constant dense<0.5> : tensor<2x4xf32>
  %wk = arith.constant dense<0.25> : tensor<2x4xf32>
  %q = linalg.generic {indexing_maps = [#sh_a, #sh_w, #sh_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %wq : tensor<?x4xf32>, tensor<2x4xf32>) outs(%init : tensor<?x2xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x2xf32>
  %k = linalg.generic {indexing_maps = [#sh_a, #sh_w, #sh_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %wk : tensor<?x4xf32>, tensor<2x4xf32>) outs(%init : tensor<?x2xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x2xf32>
  return %q, %k : tensor<?x2xf32>, tensor<?x2xf32>
}

// -----

// Left f32: router logits a moe.route reads (they choose the experts), a
// weight that is an argument, a weight read as [K, N], and a body that
// does more than multiply and add.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT:   bf16
// CHECK:       return
#mm_a = affine_map<(m, n, k) -> (m, k)>
#mm_wt = affine_map<(m, n, k) -> (n, k)>
#mm_w = affine_map<(m, n, k) -> (k, n)>
#mm_c = affine_map<(m, n, k) -> (m, n)>
func.func @left_alone(%x: tensor<?x4xf32>, %init: tensor<?x4xf32>, %arg: tensor<4x4xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x4xf32>) {
  %r = arith.constant dense<0.5> : tensor<4x4xf32>
  %logits = linalg.generic {indexing_maps = [#mm_a, #mm_wt, #mm_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %r : tensor<?x4xf32>, tensor<4x4xf32>) outs(%init : tensor<?x4xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x4xf32>
  %weights, %ids = moe.route %logits {k = 2 : i64} : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %by_arg = linalg.generic {indexing_maps = [#mm_a, #mm_wt, #mm_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %arg : tensor<?x4xf32>, tensor<4x4xf32>) outs(%init : tensor<?x4xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x4xf32>
  %k_major = linalg.generic {indexing_maps = [#mm_a, #mm_w, #mm_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %r : tensor<?x4xf32>, tensor<4x4xf32>) outs(%init : tensor<?x4xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x4xf32>
  %scaled = linalg.generic {indexing_maps = [#mm_a, #mm_wt, #mm_c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %r : tensor<?x4xf32>, tensor<4x4xf32>) outs(%init : tensor<?x4xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %two = arith.constant 2.0 : f32
    %a2 = arith.mulf %a, %two : f32
    %p = arith.mulf %a2, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x4xf32>
  return %weights, %ids, %by_arg, %k_major, %scaled : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x4xf32>
}
