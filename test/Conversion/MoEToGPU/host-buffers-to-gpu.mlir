// RUN: moe-opt %s --split-input-file --moe-host-buffers-to-gpu --verify-diagnostics | FileCheck %s

// Buffers become device buffers freed at the end of their block; copies
// become gpu.memcpy; constants are uploaded for the kernels that read them.
// CHECK-LABEL: func @buffers
// CHECK:       %[[CST:.*]] = memref.get_global @weights
// CHECK:       %[[W:.*]] = gpu.alloc () : memref<4xf32>
// CHECK:       gpu.memcpy %[[W]], %[[CST]]
// CHECK:       %[[T:.*]] = gpu.alloc () : memref<4xf32>
// CHECK:       gpu.memcpy %[[T]], %[[W]]
// CHECK:       gpu.launch
// CHECK:         memref.load %[[T]]
// CHECK:       gpu.dealloc %[[W]]
// CHECK:       gpu.dealloc %[[T]]
// CHECK-NOT:   memref.dealloc
memref.global "private" constant @weights : memref<4xf32> = dense<1.0>
func.func @buffers(%out: memref<4xf32>) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %w = memref.get_global @weights : memref<4xf32>
  %t = memref.alloc() : memref<4xf32>
  memref.copy %w, %t : memref<4xf32> to memref<4xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    %v = memref.load %t[%tx] : memref<4xf32>
    memref.store %v, %out[%tx] : memref<4xf32>
    gpu.terminator
  }
  memref.dealloc %t : memref<4xf32>
  return
}

// -----

// A buffer the host initialises (a bufferized tensor.from_elements) and a
// kernel then accumulates into in place (a sum to a scalar): the kernel
// works on the uploaded copy, and the host's later read of the sum is a
// download of that copy, not a read of the stale host buffer. The read
// before any device use stays a host read.
// CHECK-LABEL: func @host_initialised_then_accumulated
// CHECK:       %[[HOST:.*]] = memref.alloc() : memref<i64>
// CHECK:       memref.store %{{.*}}, %[[HOST]][]
// CHECK:       %[[DEV:.*]] = gpu.alloc () : memref<i64>
// CHECK:       gpu.memcpy %[[DEV]], %[[HOST]]
// CHECK:       %[[BEFORE:.*]] = memref.load %[[HOST]][]
// CHECK:       gpu.launch
// CHECK:         memref.load %[[DEV]][]
// CHECK:         memref.store %{{.*}}, %[[DEV]][]
// CHECK:       %[[COPY:.*]] = memref.alloc() : memref<i64>
// CHECK:       gpu.memcpy %[[COPY]], %[[DEV]]
// CHECK:       %[[AFTER:.*]] = memref.load %[[COPY]][]
// CHECK:       arith.addi %[[BEFORE]], %[[AFTER]]
func.func @host_initialised_then_accumulated(%x: memref<8xi64>) -> i64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0 : i64
  %acc = memref.alloc() : memref<i64>
  memref.store %zero, %acc[] : memref<i64>
  %before = memref.load %acc[] : memref<i64>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    scf.for %i = %c0 to %c8 step %c1 {
      %v = memref.load %x[%i] : memref<8xi64>
      %s = memref.load %acc[] : memref<i64>
      %t = arith.addi %s, %v : i64
      memref.store %t, %acc[] : memref<i64>
    }
    gpu.terminator
  }
  %after = memref.load %acc[] : memref<i64>
  %r = arith.addi %before, %after : i64
  return %r : i64
}

// -----

// The host reads a count that a kernel computed: downloaded before the
// read.
// CHECK-LABEL: func @host_reads_device_result
// CHECK:       %[[DEV:.*]] = gpu.alloc () : memref<i64>
// CHECK:       gpu.launch
// CHECK:       %[[COPY:.*]] = memref.alloc() : memref<i64>
// CHECK:       gpu.memcpy %[[COPY]], %[[DEV]]
// CHECK:       memref.load %[[COPY]][]
func.func @host_reads_device_result() -> i64 {
  %c1 = arith.constant 1 : index
  %seven = arith.constant 7 : i64
  %count = memref.alloc() : memref<i64>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %seven, %count[] : memref<i64>
    gpu.terminator
  }
  %n = memref.load %count[] : memref<i64>
  return %n : i64
}

// -----

// A loop on the host that stores into a buffer kernels also use would write
// device memory from the host.
func.func @host_loop(%out: memref<8xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c8 = arith.constant 8 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %c8 step %c1 {
    // expected-error @below {{host code of a cuda module accesses a buffer outside a kernel ('memref.store'); it would read device memory}}
    memref.store %v, %out[%i] : memref<8xf32>
  }
  return
}
