func.func @f(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 9 : i64} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}
