// RUN: moe-opt %s --split-input-file --moe-fuse-router | FileCheck %s

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// The router MatMul of the layer's own input becomes its router weight; the
// MatMul and its zero-filled init are gone.
// CHECK-LABEL: func @layer
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[R:.*]]: tensor<8x64xf32>, %[[W1:.*]]: tensor<8x32x64xf32>, %[[W2:.*]]: tensor<8x64x32xf32>)
// CHECK-NOT:     linalg
// CHECK:         %[[Y:.*]] = moe.layer %[[X]] router_weight %[[R]] fc1 %[[W1]] fc2 %[[W2]] {k = 2 : i64, normalize}
// CHECK-SAME:      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
// CHECK-NEXT:    return %[[Y]]
func.func @layer(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %w1: tensor<8x32x64xf32>, %w2: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x64xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty(%t) : tensor<?x8xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x8xf32>) -> tensor<?x8xf32>
  %logits = linalg.generic {indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %r : tensor<?x64xf32>, tensor<8x64xf32>) outs(%init : tensor<?x8xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x8xf32>
  %y = moe.layer %x, %logits fc1 %w1 fc2 %w2 {k = 2 : i64, normalize} : (tensor<?x64xf32>, tensor<?x8xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// A [B, S, H] layer whose router reads its [B*S, H] collapse; operands of
// the product in the other order, the sum too.
// CHECK-LABEL: func @layer_3d
// CHECK-SAME:    (%[[X:.*]]: tensor<2x5x64xf32>, %[[R:.*]]: tensor<4x64xf32>
// CHECK:         moe.layer %[[X]] router_weight %[[R]] fc1
func.func @layer_3d(%x: tensor<2x5x64xf32>, %r: tensor<4x64xf32>, %w1: tensor<4x32x64xf32>, %w2: tensor<4x64x32xf32>) -> tensor<2x5x64xf32> {
  %flat = tensor.collapse_shape %x [[0, 1], [2]] : tensor<2x5x64xf32> into tensor<10x64xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<10x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<10x4xf32>) -> tensor<10x4xf32>
  %logits = linalg.generic {indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "parallel", "reduction"]} ins(%flat, %r : tensor<10x64xf32>, tensor<4x64xf32>) outs(%init : tensor<10x4xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %b, %a : f32
    %s = arith.addf %p, %acc : f32
    linalg.yield %s : f32
  } -> tensor<10x4xf32>
  %y = moe.layer %x, %logits fc1 %w1 fc2 %w2 {k = 1 : i64} : (tensor<2x5x64xf32>, tensor<10x4xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<2x5x64xf32>
  return %y : tensor<2x5x64xf32>
}

// -----

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// The importer's form: the layer and its router both read the [B*S, H]
// collapse of the normed hidden states.
// CHECK-LABEL: func @layer_of_collapse
// CHECK:         %[[FLAT:.*]] = tensor.collapse_shape
// CHECK-NEXT:    moe.layer %[[FLAT]] router_weight %{{.*}} fc1
func.func @layer_of_collapse(%x: tensor<?x?x64xf32>, %r: tensor<4x64xf32>, %w1: tensor<4x32x64xf32>, %w2: tensor<4x64x32xf32>) -> tensor<?x64xf32> {
  %c0 = arith.constant 0 : index
  %flat = tensor.collapse_shape %x [[0, 1], [2]] : tensor<?x?x64xf32> into tensor<?x64xf32>
  %t = tensor.dim %flat, %c0 : tensor<?x64xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty(%t) : tensor<?x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x4xf32>) -> tensor<?x4xf32>
  %logits = linalg.generic {indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "parallel", "reduction"]} ins(%flat, %r : tensor<?x64xf32>, tensor<4x64xf32>) outs(%init : tensor<?x4xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x4xf32>
  %y = moe.layer %flat, %logits fc1 %w1 fc2 %w2 {k = 1 : i64} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// A route takes whatever tokens its router MatMul reads, its bias stays.
// CHECK-LABEL: func @route
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[R:.*]]: tensor<16x64xf32>, %[[B:.*]]: tensor<16xf32>)
// CHECK:         %[[W:.*]], %[[I:.*]] = moe.route %[[X]] router_weight %[[R]] bias %[[B]] {k = 4 : i64, scoring = #moe.scoring<sigmoid>}
// CHECK-SAME:      : tensor<?x64xf32> router_weight tensor<16x64xf32>, tensor<16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
func.func @route(%x: tensor<?x64xf32>, %r: tensor<16x64xf32>, %bias: tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x64xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty(%t) : tensor<?x16xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x16xf32>) -> tensor<?x16xf32>
  %logits = linalg.generic {indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %r : tensor<?x64xf32>, tensor<16x64xf32>) outs(%init : tensor<?x16xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x16xf32>
  %w, %i = moe.route %logits bias %bias {k = 4 : i64, scoring = #moe.scoring<sigmoid>} : tensor<?x16xf32>, tensor<16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %i : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// Not fused: logits used elsewhere too, a layer routing other tokens than
// its input, a router with a bias added in the body, a non-zero init.
// CHECK-LABEL: func @not_fused
// CHECK:         linalg.generic
// CHECK:         moe.route %{{.*}} {k = 2 : i64} : tensor<?x8xf32> ->
// CHECK:         linalg.generic
// CHECK:         moe.layer %{{.*}}, %{{.*}} fc1
// CHECK:         linalg.generic
// CHECK:         moe.route %{{.*}} {k = 2 : i64} : tensor<?x8xf32> ->
// CHECK:         linalg.generic
// CHECK:         moe.route %{{.*}} {k = 2 : i64} : tensor<?x8xf32> ->
func.func @not_fused(%x: tensor<?x64xf32>, %other: tensor<?x64xf32>, %r: tensor<8x64xf32>, %w1: tensor<8x32x64xf32>, %w2: tensor<8x64x32xf32>) -> (tensor<?x2xf32>, tensor<?x8xf32>, tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xf32>) {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x64xf32>
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %empty = tensor.empty(%t) : tensor<?x8xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x8xf32>) -> tensor<?x8xf32>
  %ones = linalg.fill ins(%one : f32) outs(%empty : tensor<?x8xf32>) -> tensor<?x8xf32>
  %shared = linalg.generic {indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %r : tensor<?x64xf32>, tensor<8x64xf32>) outs(%init : tensor<?x8xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x8xf32>
  %w0, %i0 = moe.route %shared {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %others = linalg.generic {indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "parallel", "reduction"]} ins(%other, %r : tensor<?x64xf32>, tensor<8x64xf32>) outs(%init : tensor<?x8xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x8xf32>
  %y = moe.layer %x, %others fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x64xf32>, tensor<?x8xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %biased = linalg.generic {indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %r : tensor<?x64xf32>, tensor<8x64xf32>) outs(%init : tensor<?x8xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %q = arith.addf %p, %one : f32
    %s = arith.addf %acc, %q : f32
    linalg.yield %s : f32
  } -> tensor<?x8xf32>
  %w2r, %i2 = moe.route %biased {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %from_ones = linalg.generic {indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %r : tensor<?x64xf32>, tensor<8x64xf32>) outs(%ones : tensor<?x8xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<?x8xf32>
  %w3, %i3 = moe.route %from_ones {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w0, %shared, %y, %w2r, %w3 : tensor<?x2xf32>, tensor<?x8xf32>, tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xf32>
}
