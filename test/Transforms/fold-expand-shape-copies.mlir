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

// A strided destination cannot be collapsed in general: the copy stays,
// reading the expanded source through a reinterpret_cast.
// CHECK-LABEL: func @strided_destination
// CHECK:       %[[VIEW:.*]] = memref.reinterpret_cast
// CHECK:       memref.copy %[[VIEW]]
func.func @strided_destination(%src: memref<?x16xf32>, %b: index, %s: index, %dst: memref<?x?x16xf32, strided<[?, ?, 1]>>) {
  %e = memref.expand_shape %src [[0, 1], [2]] output_shape [%b, %s, 16] : memref<?x16xf32> into memref<?x?x16xf32>
  memref.copy %e, %dst : memref<?x?x16xf32> to memref<?x?x16xf32, strided<[?, ?, 1]>>
  return
}

// -----

// An expand_shape with two dynamic sizes in one group that is not copied
// out becomes a reinterpret_cast with row-major strides.
// CHECK-LABEL: func @expand_feeds_loops
// CHECK-SAME:  (%[[SRC:.*]]: memref<?x16xf32>, %[[B:.*]]: index, %[[S:.*]]: index)
// CHECK:       %[[STRIDE:.*]] = arith.muli %[[S]], %c16
// CHECK:       %[[VIEW:.*]] = memref.reinterpret_cast %[[SRC]] to offset: [0], sizes: [%[[B]], %[[S]], 16], strides: [%[[STRIDE]], 16, 1] : memref<?x16xf32> to memref<?x?x16xf32>
// CHECK:       memref.load %[[VIEW]]
// CHECK-NOT:   memref.expand_shape
func.func @expand_feeds_loops(%src: memref<?x16xf32>, %b: index, %s: index) -> f32 {
  %c0 = arith.constant 0 : index
  %e = memref.expand_shape %src [[0, 1], [2]] output_shape [%b, %s, 16] : memref<?x16xf32> into memref<?x?x16xf32>
  %v = memref.load %e[%c0, %c0, %c0] : memref<?x?x16xf32>
  return %v : f32
}
