// RUN: moe-opt %s --split-input-file --moe-fold-expand-shape-copies | FileCheck %s

// CHECK-LABEL: func @copy_out_of_expand
// CHECK-SAME:  (%[[SRC:.*]]: memref<?x16xf32>, %{{.*}}: index, %{{.*}}: index, %[[DST:.*]]: memref<?x?x16xf32>)
// CHECK:       %[[FLAT:.*]] = memref.collapse_shape %[[DST]] {{\[}}[0, 1], [2]] : memref<?x?x16xf32> into memref<?x16xf32>
// CHECK-NEXT:  memref.copy %[[SRC]], %[[FLAT]] : memref<?x16xf32> to memref<?x16xf32>
// CHECK-NOT:   memref.expand_shape
func.func @copy_out_of_expand(%src: memref<?x16xf32>, %b: index, %s: index, %dst: memref<?x?x16xf32>) {
  %e = memref.expand_shape %src [[0, 1], [2]] output_shape [%b, %s, 16] : memref<?x16xf32> into memref<?x?x16xf32>
  memref.copy %e, %dst : memref<?x?x16xf32> to memref<?x?x16xf32>
  return
}

// -----

// A strided destination cannot be collapsed in general; leave it.
// CHECK-LABEL: func @strided_destination
// CHECK:       memref.expand_shape
// CHECK:       memref.copy
func.func @strided_destination(%src: memref<?x16xf32>, %b: index, %s: index, %dst: memref<?x?x16xf32, strided<[?, ?, 1]>>) {
  %e = memref.expand_shape %src [[0, 1], [2]] output_shape [%b, %s, 16] : memref<?x16xf32> into memref<?x?x16xf32>
  memref.copy %e, %dst : memref<?x?x16xf32> to memref<?x?x16xf32, strided<[?, ?, 1]>>
  return
}
