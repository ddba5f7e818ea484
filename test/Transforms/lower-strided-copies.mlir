// RUN: moe-opt %s --split-input-file --moe-lower-strided-copies | FileCheck %s

// A copy out of a slice becomes linalg.copy (loops later), not a call of
// the runner utilities' memrefCopy.
// CHECK-LABEL: func @copy_out_of_slice
// CHECK-SAME:  (%[[SRC:.*]]: memref<?x8xf32>, %[[DST:.*]]: memref<?x4xf32>)
// CHECK:       %[[VIEW:.*]] = memref.subview %[[SRC]]
// CHECK-NEXT:  linalg.copy ins(%[[VIEW]] : memref<?x4xf32, strided<[8, 1], offset: 2>>) outs(%[[DST]] : memref<?x4xf32>)
// CHECK-NOT:   memref.copy
func.func @copy_out_of_slice(%src: memref<?x8xf32>, %dst: memref<?x4xf32>) {
  %c0 = arith.constant 0 : index
  %n = memref.dim %src, %c0 : memref<?x8xf32>
  %view = memref.subview %src[0, 2] [%n, 4] [1, 1] : memref<?x8xf32> to memref<?x4xf32, strided<[8, 1], offset: 2>>
  memref.copy %view, %dst : memref<?x4xf32, strided<[8, 1], offset: 2>> to memref<?x4xf32>
  return
}

// -----

// Contiguous copies stay memref.copy (they become memcpy).
// CHECK-LABEL: func @contiguous
// CHECK:       memref.copy
// CHECK-NOT:   linalg.copy
func.func @contiguous(%src: memref<?x8xf32>, %dst: memref<?x8xf32>) {
  memref.copy %src, %dst : memref<?x8xf32> to memref<?x8xf32>
  return
}
