// RUN: moe-opt %s --split-input-file --moe-distribute-parallel-loops --canonicalize | FileCheck %s

// A [B, 4, 512] loop: B*4 rows in parallel, each a serial (vectorizable)
// loop over the contiguous last dimension.
// CHECK-LABEL: func @rows
// CHECK-SAME:  (%[[A:.*]]: memref<?x4x512xf32>, %[[B:.*]]: index)
// CHECK:       %[[ROWS:.*]] = arith.muli %{{.*}}, %c4
// CHECK:       scf.parallel (%[[R:.*]]) = (%c0) to (%[[ROWS]]) step (%c1) {
// CHECK:         %[[IDX:.*]]:2 = affine.delinearize_index %[[R]] into (%{{.*}}, 4)
// CHECK:         scf.for %[[K:.*]] = %c0 to %c512 step %c1 {
// CHECK:           memref.store %{{.*}}, %[[A]][%[[IDX]]#0, %[[IDX]]#1, %[[K]]]
// CHECK-NOT:   scf.parallel
func.func @rows(%a: memref<?x4x512xf32>, %b: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c512 = arith.constant 512 : index
  %v = arith.constant 1.0 : f32
  scf.parallel (%i, %j, %k) = (%c0, %c0, %c0) to (%b, %c4, %c512) step (%c1, %c1, %c1) {
    memref.store %v, %a[%i, %j, %k] : memref<?x4x512xf32>
    scf.reduce
  }
  return
}

// -----

// 256 stores are not worth a dispatch: serial loops, outermost first.
// CHECK-LABEL: func @small
// CHECK-NOT:   scf.parallel
// CHECK:       scf.for %[[I:.*]] = %c0 to %c4 step %c1 {
// CHECK-NEXT:    scf.for %[[J:.*]] = %c0 to %c64 step %c1 {
// CHECK-NEXT:      memref.store %{{.*}}, %{{.*}}[%[[I]], %[[J]]]
func.func @small(%a: memref<4x64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c64 = arith.constant 64 : index
  %v = arith.constant 1.0 : f32
  scf.parallel (%i, %j) = (%c0, %c0) to (%c4, %c64) step (%c1, %c1) {
    memref.store %v, %a[%i, %j] : memref<4x64xf32>
    scf.reduce
  }
  return
}

// -----

// Attention's P x V as linalg lowers it after -moe-interchange-reductions:
// the body has loops of its own, so both dimensions of the nest (heads and
// queries) are parallel work, and the nested parallel loop is serial.
// CHECK-LABEL: func @with_inner_loops
// CHECK:       scf.parallel (%[[R:.*]]) = (%c0) to (%c512) step (%c1) {
// CHECK:         %[[IDX:.*]]:2 = affine.delinearize_index %[[R]] into (4, 128)
// CHECK:         scf.for %[[T:.*]] = %c0 to %c128 step %c1 {
// CHECK-NEXT:      scf.for %[[D:.*]] = %c0 to %c64 step %c1 {
// CHECK:             memref.store %{{.*}}, %{{.*}}[%[[IDX]]#0, %[[IDX]]#1, %[[D]]]
// CHECK-NOT:   scf.parallel
func.func @with_inner_loops(%p: memref<4x128x128xf32>, %v: memref<4x128x64xf32>, %o: memref<4x128x64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c64 = arith.constant 64 : index
  %c128 = arith.constant 128 : index
  scf.parallel (%h, %s) = (%c0, %c0) to (%c4, %c128) step (%c1, %c1) {
    scf.for %t = %c0 to %c128 step %c1 {
      scf.parallel (%d) = (%c0) to (%c64) step (%c1) {
        %x = memref.load %p[%h, %s, %t] : memref<4x128x128xf32>
        %y = memref.load %v[%h, %t, %d] : memref<4x128x64xf32>
        %z = memref.load %o[%h, %s, %d] : memref<4x128x64xf32>
        %m = arith.mulf %x, %y : f32
        %n = arith.addf %z, %m : f32
        memref.store %n, %o[%h, %s, %d] : memref<4x128x64xf32>
        scf.reduce
      }
    }
    scf.reduce
  }
  return
}

// -----

// A one-dimensional loop with enough work stays as it is; loops with
// reductions are left alone.
// CHECK-LABEL: func @one_dim_and_reduction
// CHECK:       scf.parallel (%{{.*}}) = (%c0) to (%c65536) step (%c1) {
// CHECK:       scf.parallel (%{{.*}}) = (%c0) to (%c8) step (%c1) init
func.func @one_dim_and_reduction(%a: memref<65536xf32>, %s: memref<8xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c65536 = arith.constant 65536 : index
  %v = arith.constant 1.0 : f32
  %zero = arith.constant 0.0 : f32
  scf.parallel (%i) = (%c0) to (%c65536) step (%c1) {
    memref.store %v, %a[%i] : memref<65536xf32>
    scf.reduce
  }
  %sum = scf.parallel (%i) = (%c0) to (%c8) step (%c1) init (%zero) -> f32 {
    %x = memref.load %s[%i] : memref<8xf32>
    scf.reduce(%x : f32) {
    ^bb0(%l: f32, %r: f32):
      %y = arith.addf %l, %r : f32
      scf.reduce.return %y : f32
    }
  }
  return %sum : f32
}

// -----

// Loops of unknown trip counts nested four deep estimate more work than an
// int64_t holds: the estimate saturates rather than wrapping around to a
// small number, so the 16 panels stay a parallel loop (the fused combine's
// fc2 loop over panels, experts and row blocks was once serialised so).
// CHECK-LABEL: func @saturated_estimate
// CHECK:       scf.parallel (%{{.*}}) = (%c0) to (%c16) step (%c1) {
func.func @saturated_estimate(%a: memref<?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %v = arith.constant 1.0 : f32
  %c8 = arith.constant 8 : index
  scf.parallel (%p) = (%c0) to (%c16) step (%c1) {
    scf.for %x = %c0 to %c8 step %c1 {
      memref.store %v, %a[%x] : memref<?xf32>
      scf.for %i = %c0 to %n step %c1 {
        scf.for %j = %c0 to %n step %c1 {
          scf.for %k = %c0 to %n step %c1 {
            scf.for %l = %c0 to %n step %c1 {
              memref.store %v, %a[%l] : memref<?xf32>
            }
          }
        }
      }
    }
    scf.reduce
  }
  return
}
