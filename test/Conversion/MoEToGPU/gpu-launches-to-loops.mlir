// RUN: moe-opt %s --split-input-file --moe-gpu-launches-to-loops --verify-diagnostics | FileCheck %s

// Blocks outermost, then threads, each thread's body in an alloca scope;
// device memory is host memory.
// CHECK-LABEL: func @kernel
// CHECK-SAME:  (%[[IN:.*]]: memref<?xf32>, %[[N:.*]]: index, %[[GRID:.*]]: index)
// CHECK:       %[[BUF:.*]] = memref.alloc(%[[N]]) : memref<?xf32>
// CHECK:       memref.copy %[[IN]], %[[BUF]]
// CHECK:       scf.for %[[BZ:.*]] = %{{.*}} to %{{.*}}
// CHECK:         scf.for %[[BY:.*]] = %{{.*}} to %{{.*}}
// CHECK:           scf.for %[[BX:.*]] = %{{.*}} to %[[GRID]]
// CHECK:             scf.for %[[TZ:.*]] = %{{.*}} to %{{.*}}
// CHECK:               scf.for %[[TY:.*]] = %{{.*}} to %{{.*}}
// CHECK:                 scf.for %[[TX:.*]] = %{{.*}} to %{{.*}}
// CHECK:                   memref.alloca_scope {
// CHECK:                     %[[I:.*]] = arith.addi %[[TX]], %{{.*}}
// CHECK:                     memref.load %[[BUF]][%[[I]]]
// CHECK:       memref.dealloc %[[BUF]]
// CHECK-NOT:   gpu.
func.func @kernel(%in: memref<?xf32>, %n: index, %grid: index) {
  %c1 = arith.constant 1 : index
  %c128 = arith.constant 128 : index
  %buf = gpu.alloc (%n) : memref<?xf32>
  gpu.memcpy %buf, %in : memref<?xf32>, memref<?xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %grid, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c128, %sy = %c1, %sz = %c1) {
    %base = arith.muli %bx, %sx : index
    %i = arith.addi %tx, %base : index
    %live = arith.cmpi ult, %i, %n : index
    scf.if %live {
      %v = memref.load %buf[%i] : memref<?xf32>
      %w = arith.addf %v, %v : f32
      memref.store %w, %buf[%i] : memref<?xf32>
    }
    gpu.terminator
  }
  gpu.dealloc %buf : memref<?xf32>
  return
}

// -----

func.func @barrier() {
  %c1 = arith.constant 1 : index
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    // expected-error @below {{cannot run 'gpu.barrier' as host loops (threads run one at a time)}}
    gpu.barrier
    gpu.terminator
  }
  return
}
