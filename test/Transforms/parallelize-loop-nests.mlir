// RUN: moe-opt %s --split-input-file --moe-parallelize-loop-nests | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-parallelize-loop-nests=wrap-sequential | FileCheck %s --check-prefix=WRAP

// A bufferized ScatterElements (axis 0) into [8, 64]: rows come from
// data, so the row loop is sequential; every access to the written buffer
// has the column loop's variable as its column: a thread per column, each
// applying its updates in order.
// CHECK-LABEL: func @scatter_rows
// CHECK-SAME:  (%[[IDX:.*]]: memref<?x64xi64>, %[[UPD:.*]]: memref<?x64xf32>, %[[OUT:.*]]: memref<8x64xf32>, %[[N:.*]]: index)
// CHECK:       scf.parallel (%[[COL:.*]]) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
// CHECK-NEXT:    scf.for %[[ROW:.*]] = %{{.*}} to %[[N]] step %{{.*}} {
// CHECK-NEXT:      %[[I:.*]] = memref.load %[[IDX]][%[[ROW]], %[[COL]]]
// CHECK-NEXT:      %[[T:.*]] = arith.index_cast %[[I]]
// CHECK-NEXT:      %[[U:.*]] = memref.load %[[UPD]][%[[ROW]], %[[COL]]]
// CHECK-NEXT:      %[[OLD:.*]] = memref.load %[[OUT]][%[[T]], %[[COL]]]
// CHECK-NEXT:      %[[NEW:.*]] = arith.addf %[[OLD]], %[[U]]
// CHECK-NEXT:      memref.store %[[NEW]], %[[OUT]][%[[T]], %[[COL]]]
// CHECK-NEXT:    }
// CHECK-NEXT:    scf.reduce
// CHECK-NOT:   scf.for
// WRAP-LABEL:  func @scatter_rows
func.func @scatter_rows(%idx: memref<?x64xi64>, %upd: memref<?x64xf32>, %out: memref<8x64xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  scf.for %r = %c0 to %n step %c1 {
    scf.for %c = %c0 to %c64 step %c1 {
      %i = memref.load %idx[%r, %c] : memref<?x64xi64>
      %t = arith.index_cast %i : i64 to index
      %u = memref.load %upd[%r, %c] : memref<?x64xf32>
      %old = memref.load %out[%t, %c] : memref<8x64xf32>
      %new = arith.addf %old, %u : f32
      memref.store %new, %out[%t, %c] : memref<8x64xf32>
    }
  }
  return
}

// -----

// Both loops index the written buffer directly: both are parallel.
// CHECK-LABEL: func @elementwise
// CHECK:       scf.parallel (%[[I:.*]], %[[J:.*]]) = (%{{.*}}, %{{.*}}) to (%{{.*}}, %{{.*}})
// CHECK-NOT:   scf.for
// WRAP-LABEL:  func @elementwise
func.func @elementwise(%a: memref<4x8xf32>, %b: memref<4x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c4 step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      %v = memref.load %a[%i, %j] : memref<4x8xf32>
      memref.store %v, %b[%i, %j] : memref<4x8xf32>
    }
  }
  return
}

// -----

// A sum into a scalar carries a dependence through memory in every loop:
// left alone, or run by one thread with wrap-sequential.
// CHECK-LABEL: func @sum_to_scalar
// CHECK-NOT:   scf.parallel
// WRAP-LABEL:  func @sum_to_scalar
// WRAP:        %[[C0:c0_.*]] = arith.constant 0 : index
// WRAP-NEXT:   %[[C1:.*]] = arith.constant 1 : index
// WRAP-NEXT:   scf.parallel (%{{.*}}) = (%[[C0]]) to (%[[C1]]) step (%[[C1]]) {
// WRAP-NEXT:     scf.for
// WRAP-NEXT:       scf.for
func.func @sum_to_scalar(%x: memref<2x8xi64>, %acc: memref<i64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c2 step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      %v = memref.load %x[%i, %j] : memref<2x8xi64>
      %s = memref.load %acc[] : memref<i64>
      %t = arith.addi %s, %v : i64
      memref.store %t, %acc[] : memref<i64>
    }
  }
  return
}

// -----

// NonZero's compaction carries the output position: no loop of its band
// (the band ends at the first loop with iter_args) is parallel. Its
// unused result is dropped with wrap-sequential.
// CHECK-LABEL: func @compaction
// CHECK-NOT:   scf.parallel
// WRAP-LABEL:  func @compaction
// WRAP:        scf.parallel
// WRAP-NEXT:     scf.for {{.*}} iter_args
func.func @compaction(%mask: memref<8xi1>, %out: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %n = scf.for %i = %c0 to %c8 step %c1 iter_args(%pos = %c0) -> (index) {
    %m = memref.load %mask[%i] : memref<8xi1>
    %next = scf.if %m -> (index) {
      %v = arith.index_cast %i : index to i64
      memref.store %v, %out[%pos] : memref<?xi64>
      %p = arith.addi %pos, %c1 : index
      scf.yield %p : index
    } else {
      scf.yield %pos : index
    }
    scf.yield %next : index
  }
  return
}

// -----

// A result the host uses keeps the loop on the host.
// WRAP-LABEL:  func @used_result
// WRAP-NOT:    scf.parallel
func.func @used_result(%x: memref<8xi64>) -> i64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0 : i64
  %s = scf.for %i = %c0 to %c8 step %c1 iter_args(%acc = %zero) -> (i64) {
    %v = memref.load %x[%i] : memref<8xi64>
    %t = arith.addi %acc, %v : i64
    scf.yield %t : i64
  }
  return %s : i64
}

// -----

// Two views of one buffer: the analysis does not see which elements they
// share, so nothing is parallel.
// CHECK-LABEL: func @aliasing_views
// CHECK-NOT:   scf.parallel
// WRAP-LABEL:  func @aliasing_views
func.func @aliasing_views(%a: memref<8x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %t = memref.transpose %a (i, j) -> (j, i) : memref<8x8xf32> to memref<8x8xf32, strided<[1, 8]>>
  scf.for %i = %c0 to %c8 step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      %v = memref.load %t[%i, %j] : memref<8x8xf32, strided<[1, 8]>>
      memref.store %v, %a[%i, %j] : memref<8x8xf32>
    }
  }
  return
}

// -----

// A column broadcast (stride 0) repeats elements along its dimension: that
// dimension does not tell iterations apart.
// CHECK-LABEL: func @zero_stride
// CHECK-NOT:   scf.parallel
// WRAP-LABEL:  func @zero_stride
func.func @zero_stride(%a: memref<8x8xf32, strided<[0, 1]>>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c8 step %c1 {
    %w = memref.load %a[%i, %c0] : memref<8x8xf32, strided<[0, 1]>>
    %x = arith.addf %w, %v : f32
    memref.store %x, %a[%i, %c0] : memref<8x8xf32, strided<[0, 1]>>
  }
  return
}

// -----

// Calls (and allocations, copies) inside a nest keep it on the host.
// WRAP-LABEL:  func @with_call
// WRAP-NOT:    scf.parallel
func.func private @opaque(index)
func.func @with_call(%a: memref<8xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c8 step %c1 {
    memref.store %v, %a[%i] : memref<8xf32>
    func.call @opaque(%i) : (index) -> ()
  }
  return
}

// -----

// The inner loop's bound depends on the outer variable: it cannot move
// outwards, so only the outer loop (parallel) becomes the scf.parallel.
// CHECK-LABEL: func @triangular
// CHECK:       scf.parallel (%[[I:.*]]) =
// CHECK-NEXT:    scf.for %{{.*}} = %{{.*}} to %[[I]]
// WRAP-LABEL:  func @triangular
func.func @triangular(%a: memref<8x8xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c8 step %c1 {
    scf.for %j = %c0 to %i step %c1 {
      memref.store %v, %a[%i, %j] : memref<8x8xf32>
    }
  }
  return
}

// -----

// Loops inside kernels or parallel loops are not host code: untouched.
// WRAP-LABEL:  func @inside_parallel
// WRAP:        scf.parallel
// WRAP-NEXT:     scf.for
// WRAP-NOT:      scf.parallel
func.func @inside_parallel(%a: memref<8x8xf32>, %acc: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    scf.for %j = %c0 to %c8 step %c1 {
      %v = memref.load %a[%i, %j] : memref<8x8xf32>
      %s = memref.load %acc[%i] : memref<8xf32>
      %t = arith.addf %s, %v : f32
      memref.store %t, %acc[%i] : memref<8xf32>
    }
    scf.reduce
  }
  return
}

// -----

// Linalg ops without parallel loops get a one-iteration scf.parallel with
// wrap-sequential (before they become straight-line code or loops); the
// others are left to -convert-linalg-to-parallel-loops.
// CHECK-LABEL: func @linalg_ops
// CHECK-NOT:   scf.parallel
// WRAP-LABEL:  func @linalg_ops
// WRAP:        scf.parallel
// WRAP-NEXT:     linalg.fill {{.*}} memref<f32>
// WRAP-NEXT:     scf.reduce
// WRAP:        scf.parallel
// WRAP-NEXT:     linalg.reduce
// WRAP:        scf.reduce
// WRAP:        }
// WRAP-NEXT:   linalg.fill {{.*}} memref<4xf32>
// WRAP-NEXT:   return
func.func @linalg_ops(%x: memref<4x16xf32>, %sum: memref<f32>, %row: memref<4xf32>) {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%sum : memref<f32>)
  linalg.reduce ins(%x : memref<4x16xf32>) outs(%sum : memref<f32>) dimensions = [0, 1]
    (%in: f32, %a: f32) {
      %v = arith.addf %in, %a : f32
      linalg.yield %v : f32
    }
  linalg.fill ins(%zero : f32) outs(%row : memref<4xf32>)
  return
}

// -----

// A dynamic stride outside the identity layout may be zero: not a proof.
// CHECK-LABEL: func @dynamic_stride
// CHECK-NOT:   scf.parallel
// WRAP-LABEL:  func @dynamic_stride
func.func @dynamic_stride(%a: memref<8xf32, strided<[?]>>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c8 step %c1 {
    memref.store %v, %a[%i] : memref<8xf32, strided<[?]>>
  }
  return
}
