// RUN: not moe-opt %s --moe-host-buffers-to-gpu 2>&1 | FileCheck %s

// An imported op's location names its node (an ONNX node): a host access
// that no kernel holds says which node it comes from.
// CHECK: error: host code of a cuda module accesses a buffer outside a kernel ('memref.store'); it would read device memory
// CHECK: note: the access comes from '/layers.0/ScatterND', which no kernel holds
func.func @named(%out: memref<8xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c8 = arith.constant 8 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %c8 step %c1 {
    memref.store %v, %out[%i] : memref<8xf32> loc("/layers.0/ScatterND"("model.onnx":0:0))
  }
  return
}
