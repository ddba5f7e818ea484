// RUN: moe-opt %s --split-input-file --moe-promote-reduction-accumulators | FileCheck %s

// A row sum into a fresh buffer: the element is loaded once before the
// loop, carried as iter_args (the sum may be reassociated) and stored once
// after it.
// CHECK-LABEL: func @row_sums
// CHECK-SAME:  (%[[X:.*]]: memref<4x64xf32>)
// CHECK:       %[[SUM:.*]] = memref.alloc() : memref<4xf32>
// CHECK:       scf.parallel (%[[I:.*]]) =
// CHECK:         %[[INIT:.*]] = memref.load %[[SUM]][%[[I]]]
// CHECK:         %[[R:.*]] = scf.for %[[J:.*]] = {{.*}} iter_args(%[[ACC:.*]] = %[[INIT]]) -> (f32) {
// CHECK:           %[[E:.*]] = math.exp
// CHECK:           %[[NEXT:.*]] = arith.addf %[[ACC]], %[[E]] fastmath<reassoc> : f32
// CHECK:           scf.yield %[[NEXT]] : f32
// CHECK:         }
// CHECK:         memref.store %[[R]], %[[SUM]][%[[I]]]
func.func @row_sums(%x: memref<4x64xf32>) -> memref<4xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c64 = arith.constant 64 : index
  %sum = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    scf.for %j = %c0 to %c64 step %c1 {
      %a = memref.load %x[%i, %j] : memref<4x64xf32>
      %e = math.exp %a : f32
      %acc = memref.load %sum[%i] : memref<4xf32>
      %s = arith.addf %acc, %e : f32
      memref.store %s, %sum[%i] : memref<4xf32>
    }
    scf.reduce
  }
  return %sum : memref<4xf32>
}

// -----

// A running maximum into a view of a fresh buffer, read through another
// argument: promoted, and a maximum keeps its flags.
// CHECK-LABEL: func @row_max_view
// CHECK:       scf.for {{.*}} iter_args(%[[ACC:.*]] = %{{.*}}) -> (f32)
// CHECK:         arith.maximumf %[[ACC]], %{{.*}} : f32
// CHECK:       memref.store
func.func @row_max_view(%x: memref<8xf32>, %i: index) -> memref<2x4xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %buffer = memref.alloc() : memref<2x4xf32>
  %row = memref.subview %buffer[1, 0] [1, 4] [1, 1] : memref<2x4xf32> to memref<4xf32, strided<[1], offset: 4>>
  scf.for %j = %c0 to %c8 step %c1 {
    %a = memref.load %x[%j] : memref<8xf32>
    %acc = memref.load %row[%i] : memref<4xf32, strided<[1], offset: 4>>
    %m = arith.maximumf %acc, %a : f32
    memref.store %m, %row[%i] : memref<4xf32, strided<[1], offset: 4>>
  }
  return %buffer : memref<2x4xf32>
}

// -----

// Left alone: the accumulator's buffer and the input are both arguments
// (they may be one buffer); the index varies with the loop; the loop reads
// the accumulator's buffer at another element; a call may touch memory.
// CHECK-LABEL: func @not_promoted
// CHECK-NOT:   iter_args
// CHECK:       return
func.func private @opaque()
func.func @not_promoted(%x: memref<8xf32>, %out: memref<8xf32>, %i: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %fresh = memref.alloc() : memref<8xf32>
  scf.for %j = %c0 to %c8 step %c1 {
    %a = memref.load %x[%j] : memref<8xf32>
    %acc = memref.load %out[%i] : memref<8xf32>
    %s = arith.addf %acc, %a : f32
    memref.store %s, %out[%i] : memref<8xf32>
  }
  scf.for %j = %c0 to %c8 step %c1 {
    %a = memref.load %x[%j] : memref<8xf32>
    %acc = memref.load %fresh[%j] : memref<8xf32>
    %s = arith.addf %acc, %a : f32
    memref.store %s, %fresh[%j] : memref<8xf32>
  }
  scf.for %j = %c0 to %c8 step %c1 {
    %a = memref.load %fresh[%j] : memref<8xf32>
    %acc = memref.load %fresh[%i] : memref<8xf32>
    %s = arith.addf %acc, %a : f32
    memref.store %s, %fresh[%i] : memref<8xf32>
  }
  scf.for %j = %c0 to %c8 step %c1 {
    %a = memref.load %x[%j] : memref<8xf32>
    %acc = memref.load %fresh[%i] : memref<8xf32>
    %s = arith.addf %acc, %a : f32
    func.call @opaque() : () -> ()
    memref.store %s, %fresh[%i] : memref<8xf32>
  }
  return
}
