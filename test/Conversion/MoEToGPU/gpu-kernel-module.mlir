// RUN: moe-opt %s --moe-gpu-kernel-module | FileCheck %s
// RUN: moe-opt %s --moe-gpu-kernel-module --gpu-kernel-outlining | FileCheck %s --check-prefix=OUTLINED

// A launch without a kernel module gets the moe kernels' one; a launch that
// names its module and function keeps them.
// CHECK-LABEL: func @launches
// CHECK:       gpu.launch {{.*}} module(@moe_kernels)
// CHECK-NOT:     function(
// CHECK:       gpu.launch {{.*}} module(@moe_kernels) function(@moe_route)
// Outlining then makes one gpu.module holding both kernels.
// OUTLINED:     gpu.module @moe_kernels
// OUTLINED-DAG:   gpu.func @moe_route
// OUTLINED-DAG:   gpu.func @launches_kernel
// OUTLINED-NOT: gpu.module
func.func @launches(%a: memref<4xf32>) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %v = arith.constant 1.0 : f32
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    memref.store %v, %a[%tx] : memref<4xf32>
    gpu.terminator
  }
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1)
             module(@moe_kernels) function(@moe_route) {
    memref.store %v, %a[%tx] : memref<4xf32>
    gpu.terminator
  }
  return
}
