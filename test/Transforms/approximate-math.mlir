// RUN: moe-opt %s --split-input-file --moe-approximate-math | FileCheck %s

// exp, tanh and erf become arithmetic (no libm call left for the loop
// vectorizer to stop at); x^2 becomes a multiply; sin is left to libm.
// CHECK-LABEL: func @activations
// CHECK-SAME:  (%[[X:.*]]: f32)
// CHECK-NOT:   math.exp
// CHECK-NOT:   math.tanh
// CHECK-NOT:   math.erf
// CHECK-NOT:   math.powf
// CHECK:       arith.mulf %[[X]], %[[X]]
// CHECK:       math.sin %[[X]]
func.func @activations(%x: f32) -> (f32, f32, f32, f32, f32) {
  %two = arith.constant 2.0 : f32
  %e = math.exp %x : f32
  %t = math.tanh %x : f32
  %g = math.erf %x : f32
  %p = math.powf %x, %two : f32
  %s = math.sin %x : f32
  return %e, %t, %g, %p, %s : f32, f32, f32, f32, f32
}
