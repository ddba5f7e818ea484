// RUN: moe-opt %s --split-input-file --moe-collapse-parallel-loops | FileCheck %s

// A [B, H, S, S] loop becomes one loop over B*H*S*S, row-major: the last
// dimension is the remainder, varying fastest.
// CHECK-LABEL: func @four_dims
// CHECK-SAME:  (%[[A:.*]]: memref<?x4x?x?xf32>, %[[B:.*]]: index, %[[S:.*]]: index)
// CHECK:       scf.parallel (%[[I:.*]]) = (%{{.*}}) to (%[[N:.*]]) step (%{{.*}}) {
// CHECK:         %[[D3:.*]] = arith.remsi %[[I]], %[[S]]
// CHECK:         %[[R3:.*]] = arith.divsi %[[I]], %[[S]]
// CHECK:         %[[D2:.*]] = arith.remsi %[[R3]], %[[S]]
// CHECK:         %[[R2:.*]] = arith.divsi %[[R3]], %[[S]]
// CHECK:         %[[D1:.*]] = arith.remsi %[[R2]], %{{.*}}
// CHECK:         %[[D0:.*]] = arith.divsi %[[R2]], %{{.*}}
// CHECK:         memref.store %{{.*}}, %[[A]][%[[D0]], %[[D1]], %[[D2]], %[[D3]]]
// CHECK-NOT:   scf.parallel
func.func @four_dims(%a: memref<?x4x?x?xf32>, %b: index, %s: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %v = arith.constant 1.0 : f32
  scf.parallel (%i, %j, %k, %l) = (%c0, %c0, %c0, %c0) to (%b, %c4, %s, %s) step (%c1, %c1, %c1, %c1) {
    memref.store %v, %a[%i, %j, %k, %l] : memref<?x4x?x?xf32>
    scf.reduce
  }
  return
}

// -----

// One-dimensional loops, loops with reductions and nested loops are left
// alone.
// CHECK-LABEL: func @left_alone
// CHECK:       scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step
// CHECK:       scf.parallel (%{{.*}}, %{{.*}}) = {{.*}} init
// CHECK:       scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step
// CHECK-NEXT:    scf.parallel (%{{.*}}, %{{.*}}) =
func.func @left_alone(%a: memref<8x8xf32>, %s: memref<8xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0.0 : f32
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    memref.store %zero, %s[%i] : memref<8xf32>
    scf.reduce
  }
  %sum = scf.parallel (%i, %j) = (%c0, %c0) to (%c8, %c8) step (%c1, %c1) init (%zero) -> f32 {
    %v = memref.load %a[%i, %j] : memref<8x8xf32>
    scf.reduce(%v : f32) {
    ^bb0(%x: f32, %y: f32):
      %r = arith.addf %x, %y : f32
      scf.reduce.return %r : f32
    }
  }
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    scf.parallel (%j, %k) = (%c0, %c0) to (%c8, %c8) step (%c1, %c1) {
      memref.store %zero, %a[%j, %k] : memref<8x8xf32>
      scf.reduce
    }
    scf.reduce
  }
  return %sum : f32
}
