// RUN: moe-opt %s -moe-copy-repeated-results --split-input-file | FileCheck %s

// The second return of %y is a copy of it.
// CHECK-LABEL: func.func @repeated(
// CHECK-SAME:    %[[X:.*]]: tensor<?xf32>
// CHECK:         %[[Y:.*]] = math.exp %[[X]]
// CHECK:         %[[COPY:.*]] = bufferization.alloc_tensor() copy(%[[Y]])
// CHECK:         return %[[Y]], %[[COPY]], %[[X]]
func.func @repeated(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>, tensor<?xf32>) {
  %y = math.exp %x : tensor<?xf32>
  return %y, %y, %x : tensor<?xf32>, tensor<?xf32>, tensor<?xf32>
}

// -----

// Distinct results are left alone.
// CHECK-LABEL: func.func @distinct(
// CHECK-NOT:     bufferization.alloc_tensor
// CHECK:         return
func.func @distinct(%x: tensor<4xf32>, %y: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  return %x, %y : tensor<4xf32>, tensor<4xf32>
}
