// RUN: moe-opt %s --split-input-file --moe-outline-parallel-loops --verify-diagnostics | FileCheck %s

// The body runs iterations [begin, end) of the trip count; buffers and the
// bound are captured, constants are cloned into the outlined function.
// CHECK-LABEL: func.func @scale
// CHECK-SAME:  (%[[BUF:.*]]: memref<?xf32>, %[[N:.*]]: index, %[[LB:.*]]: index)
// CHECK-DAG:   %[[C2:.*]] = arith.constant 2 : index
// CHECK:       %[[SPAN:.*]] = arith.subi %[[N]], %[[LB]] : index
// CHECK:       %[[TRIPS:.*]] = arith.ceildivsi %[[SPAN]], %[[C2]] : index
// CHECK:       %[[COUNT:.*]] = arith.maxsi %[[TRIPS]], %{{.*}} : index
// CHECK:       moe.parallel_call @scale_parallel0(%[[BUF]], %[[LB]]) count(%[[COUNT]]) : memref<?xf32>, index
// CHECK-NOT:   scf.parallel
// CHECK:       func.func private @scale_parallel0(%[[B:.*]]: memref<?xf32>, %[[L:.*]]: index, %[[BEGIN:.*]]: index, %[[END:.*]]: index)
// CHECK-DAG:     %[[TWO:.*]] = arith.constant 2.000000e+00 : f32
// CHECK-DAG:     %[[S:.*]] = arith.constant 2 : index
// CHECK:         scf.for %[[I:.*]] = %[[BEGIN]] to %[[END]] step %{{.*}} {
// CHECK:           %[[OFF:.*]] = arith.muli %[[I]], %[[S]] : index
// CHECK:           %[[IV:.*]] = arith.addi %[[L]], %[[OFF]] : index
// CHECK:           %[[V:.*]] = memref.load %[[B]][%[[IV]]]
// CHECK:           arith.mulf %[[V]], %[[TWO]]
func.func @scale(%buf: memref<?xf32>, %n: index, %lb: index) {
  %c2 = arith.constant 2 : index
  %two = arith.constant 2.0 : f32
  scf.parallel (%i) = (%lb) to (%n) step (%c2) {
    %v = memref.load %buf[%i] : memref<?xf32>
    %d = arith.mulf %v, %two : f32
    memref.store %d, %buf[%i] : memref<?xf32>
    scf.reduce
  }
  return
}

// -----

// Nested parallel loops stay inside the outlined body.
// CHECK-LABEL: func.func @nested
// CHECK:       moe.parallel_call @nested_parallel0
// CHECK:       func.func private @nested_parallel0
// CHECK:         scf.parallel
func.func @nested(%buf: memref<?x?xf32>, %n: index, %m: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    scf.parallel (%j) = (%c0) to (%m) step (%c1) {
      %v = memref.load %buf[%i, %j] : memref<?x?xf32>
      memref.store %v, %buf[%j, %i] : memref<?x?xf32>
      scf.reduce
    }
    scf.reduce
  }
  return
}

// -----

func.func @two_d(%buf: memref<?x?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  // expected-error @+1 {{only one-dimensional parallel loops without reductions can run on the runtime's worker pool}}
  scf.parallel (%i, %j) = (%c0, %c0) to (%n, %n) step (%c1, %c1) {
    scf.reduce
  }
  return
}

// -----

// A trip count known only at run time, with ~128 operations per row: fewer
// than 32768 / 129 = 255 rows are not worth a dispatch, so they call the
// outlined body directly over the whole range.
// CHECK-LABEL: func.func @dynamic_rows
// CHECK:       %[[COUNT:.*]] = arith.maxsi
// CHECK:       %[[SMALL:.*]] = arith.cmpi slt, %[[COUNT]], %c255
// CHECK:       scf.if %[[SMALL]] {
// CHECK-NEXT:    func.call @dynamic_rows_parallel0(%{{.*}}, %{{.*}}, %[[COUNT]])
// CHECK-NEXT:  } else {
// CHECK-NEXT:    moe.parallel_call @dynamic_rows_parallel0(%{{.*}}) count(%[[COUNT]])
// CHECK:       func.func private @dynamic_rows_parallel0
func.func @dynamic_rows(%a: memref<?x64xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %v = arith.constant 1.0 : f32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    scf.for %j = %c0 to %c64 step %c1 {
      memref.store %v, %a[%i, %j] : memref<?x64xf32>
    }
    scf.reduce
  }
  return
}

// -----

// The same layer's loop twice (other buffers, same shapes and body): one
// outlined function serves both calls.
// CHECK-LABEL: func.func @two_layers
// CHECK:       moe.parallel_call @two_layers_parallel0(%{{.*}}) count
// CHECK:       moe.parallel_call @two_layers_parallel0(%{{.*}}) count
// CHECK:       func.func private @two_layers_parallel0
// CHECK-NOT:   func.func private @two_layers_parallel1
func.func @two_layers(%a: memref<65536xf32>, %b: memref<65536xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = arith.constant 65536 : index
  %v = arith.constant 1.0 : f32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %v, %a[%i] : memref<65536xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %v, %b[%i] : memref<65536xf32>
    scf.reduce
  }
  return
}
