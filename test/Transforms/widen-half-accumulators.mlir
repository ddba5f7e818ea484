// RUN: moe-opt %s --split-input-file --moe-widen-half-accumulators | FileCheck %s

// A half-precision projection (f16 activations and weights into an f16
// result filled with zeros): the sum runs in f32 from an f32 fill, both
// operands widened in the body, and the result is rounded to f16 once.
// CHECK-LABEL: func.func @matmul_f16
// CHECK-SAME:  (%[[X:.*]]: tensor<?x4xf16>, %[[W:.*]]: tensor<3x4xf16>)
// CHECK:       %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK:       %[[EMPTY:.*]] = tensor.empty(%{{.*}}) : tensor<?x3xf32>
// CHECK:       %[[FILL:.*]] = linalg.fill ins(%[[ZERO]] : f32) outs(%[[EMPTY]] : tensor<?x3xf32>)
// CHECK:       %[[SUM:.*]] = linalg.generic {{.*}} ins(%[[X]], %[[W]] : tensor<?x4xf16>, tensor<3x4xf16>) outs(%[[FILL]] : tensor<?x3xf32>)
// CHECK-NEXT:  ^bb0(%[[A:.*]]: f16, %[[B:.*]]: f16, %[[ACC:.*]]: f32):
// CHECK-NEXT:    %[[AW:.*]] = arith.extf %[[A]] : f16 to f32
// CHECK-NEXT:    %[[BW:.*]] = arith.extf %[[B]] : f16 to f32
// CHECK-NEXT:    %[[P:.*]] = arith.mulf %[[AW]], %[[BW]] : f32
// CHECK-NEXT:    %[[S:.*]] = arith.addf %[[ACC]], %[[P]] : f32
// CHECK-NEXT:    linalg.yield %[[S]] : f32
// CHECK:       %[[Y:.*]] = linalg.generic {{.*}} ins(%[[SUM]] : tensor<?x3xf32>) outs(%{{.*}} : tensor<?x3xf16>)
// CHECK-NEXT:  ^bb0(%[[V:.*]]: f32, %{{.*}}: f16):
// CHECK-NEXT:    %[[R:.*]] = arith.truncf %[[V]] : f32 to f16
// CHECK-NEXT:    linalg.yield %[[R]] : f16
// CHECK:       return %[[Y]]
#a = affine_map<(m, n, k) -> (m, k)>
#b = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>
func.func @matmul_f16(%x: tensor<?x4xf16>, %w: tensor<3x4xf16>) -> tensor<?x3xf16> {
  %c0 = arith.constant 0 : index
  %zero = arith.constant 0.0 : f16
  %m = tensor.dim %x, %c0 : tensor<?x4xf16>
  %empty = tensor.empty(%m) : tensor<?x3xf16>
  %fill = linalg.fill ins(%zero : f16) outs(%empty : tensor<?x3xf16>) -> tensor<?x3xf16>
  %y = linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %w : tensor<?x4xf16>, tensor<3x4xf16>) outs(%fill : tensor<?x3xf16>) {
  ^bb0(%in: f16, %wt: f16, %acc: f16):
    %p = arith.mulf %in, %wt : f16
    %s = arith.addf %acc, %p : f16
    linalg.yield %s : f16
  } -> tensor<?x3xf16>
  return %y : tensor<?x3xf16>
}

// -----

// RMSNorm's mean of squares in bf16, with a bf16 constant in the body and
// an init that is not a fill (widened elementwise): the constant becomes
// f32 (0.5 exactly), the init is widened, and the rounding happens once.
// CHECK-LABEL: func.func @sum_of_squares_bf16
// CHECK-SAME:  (%[[X:.*]]: tensor<8x16xbf16>, %[[INIT:.*]]: tensor<8xbf16>)
// CHECK:       %[[WIDE:.*]] = linalg.generic {{.*}} ins(%[[INIT]] : tensor<8xbf16>) outs(%{{.*}} : tensor<8xf32>)
// CHECK:         arith.extf %{{.*}} : bf16 to f32
// CHECK:       %[[SUM:.*]] = linalg.generic {{.*}} ins(%[[X]] : tensor<8x16xbf16>) outs(%[[WIDE]] : tensor<8xf32>)
// CHECK-NEXT:  ^bb0(%[[A:.*]]: bf16, %[[ACC:.*]]: f32):
// CHECK-NEXT:    %[[AW:.*]] = arith.extf %[[A]] : bf16 to f32
// CHECK-NEXT:    %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-NEXT:    %[[SQ:.*]] = arith.mulf %[[AW]], %[[AW]] : f32
// CHECK-NEXT:    %[[SC:.*]] = arith.mulf %[[SQ]], %[[HALF]] : f32
// CHECK-NEXT:    %[[S:.*]] = arith.addf %[[ACC]], %[[SC]] : f32
// CHECK-NEXT:    linalg.yield %[[S]] : f32
// CHECK:       linalg.generic {{.*}} ins(%[[SUM]] : tensor<8xf32>) outs(%{{.*}} : tensor<8xbf16>)
// CHECK:         arith.truncf %{{.*}} : f32 to bf16
#x = affine_map<(i, j) -> (i, j)>
#r = affine_map<(i, j) -> (i)>
func.func @sum_of_squares_bf16(%x: tensor<8x16xbf16>, %init: tensor<8xbf16>) -> tensor<8xbf16> {
  %y = linalg.generic {indexing_maps = [#x, #r], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<8x16xbf16>) outs(%init : tensor<8xbf16>) {
  ^bb0(%in: bf16, %acc: bf16):
    %half = arith.constant 5.0e-01 : bf16
    %sq = arith.mulf %in, %in : bf16
    %scaled = arith.mulf %sq, %half : bf16
    %s = arith.addf %acc, %scaled : bf16
    linalg.yield %s : bf16
  } -> tensor<8xbf16>
  return %y : tensor<8xbf16>
}

// -----

// A reduction whose body never reads its init (each step overwrites it:
// the last shifted exponential) gets an empty f32 init. The exporter's
// widening and rounding around f32 math (extf/truncf between f16 and f32)
// vanish; an f16 value from above the body is widened where it is used.
// CHECK-LABEL: func.func @exp_sum
// CHECK-SAME:  (%[[X:.*]]: tensor<8x16xf16>, %[[INIT:.*]]: tensor<8xf16>, %[[SHIFT:.*]]: f16)
// CHECK:       %[[EMPTY:.*]] = tensor.empty() : tensor<8xf32>
// CHECK:       linalg.generic {{.*}} ins(%[[X]] : tensor<8x16xf16>) outs(%[[EMPTY]] : tensor<8xf32>)
// CHECK-NEXT:  ^bb0(%[[A:.*]]: f16, %{{.*}}: f32):
// CHECK-NEXT:    %[[AW:.*]] = arith.extf %[[A]] : f16 to f32
// CHECK-NEXT:    %[[SW:.*]] = arith.extf %[[SHIFT]] : f16 to f32
// CHECK-NEXT:    %[[D:.*]] = arith.subf %[[AW]], %[[SW]] : f32
// CHECK-NEXT:    %[[E:.*]] = math.exp %[[D]] : f32
// CHECK-NEXT:    linalg.yield %[[E]] : f32
#x = affine_map<(i, j) -> (i, j)>
#r = affine_map<(i, j) -> (i)>
func.func @exp_sum(%x: tensor<8x16xf16>, %init: tensor<8xf16>, %shift: f16) -> tensor<8xf16> {
  %y = linalg.generic {indexing_maps = [#x, #r], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<8x16xf16>) outs(%init : tensor<8xf16>) {
  ^bb0(%in: f16, %acc: f16):
    %d = arith.subf %in, %shift : f16
    %w = arith.extf %d : f16 to f32
    %e = math.exp %w : f32
    %r = arith.truncf %e : f32 to f16
    linalg.yield %r : f16
  } -> tensor<8xf16>
  return %y : tensor<8xf16>
}

// -----

// Left alone: an f32 reduction, an argmax with an integer result, and a
// body op that is not elementwise float arithmetic (a bitcast).
// CHECK-LABEL: func.func @unchanged
// CHECK-NOT:   f32
// CHECK:       return
#x = affine_map<(i, j) -> (i, j)>
#r = affine_map<(i, j) -> (i)>
func.func @unchanged(%x: tensor<8x16xf16>, %init: tensor<8xf16>, %idx: tensor<8xi32>) -> (tensor<8xf16>, tensor<8xi32>, tensor<8xf16>) {
  %m:2 = linalg.generic {indexing_maps = [#x, #r, #r], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<8x16xf16>) outs(%init, %idx : tensor<8xf16>, tensor<8xi32>) {
  ^bb0(%in: f16, %acc: f16, %i: i32):
    %j = linalg.index 1 : index
    %ji = arith.index_cast %j : index to i32
    %gt = arith.cmpf ogt, %in, %acc : f16
    %v = arith.select %gt, %in, %acc : f16
    %k = arith.select %gt, %ji, %i : i32
    linalg.yield %v, %k : f16, i32
  } -> (tensor<8xf16>, tensor<8xi32>)
  %b = linalg.generic {indexing_maps = [#x, #r], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<8x16xf16>) outs(%init : tensor<8xf16>) {
  ^bb0(%in: f16, %acc: f16):
    %bits = arith.bitcast %in : f16 to i16
    %back = arith.bitcast %bits : i16 to f16
    %s = arith.addf %acc, %back : f16
    linalg.yield %s : f16
  } -> tensor<8xf16>
  return %m#0, %m#1, %b : tensor<8xf16>, tensor<8xi32>, tensor<8xf16>
}
