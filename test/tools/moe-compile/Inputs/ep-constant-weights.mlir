// Expert weights that are constants, different per expert: an
// expert-parallel module selects its rank's share at run time.
func.func @ep_constant(%x: tensor<?x4xf32>, %l: tensor<?x2xf32>) -> tensor<?x4xf32> {
  %w1 = arith.constant dense<[[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], [[0.5, 0.25, 0.125, 1.0], [2.0, 4.0, 8.0, 16.0]]]> : tensor<2x2x4xf32>
  %w2 = arith.constant dense<[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], [[0.5, 0.25], [0.125, 1.0], [2.0, 4.0], [8.0, 16.0]]]> : tensor<2x4x2xf32>
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 1 : i64, activation = #moe.activation<relu>} : (tensor<?x4xf32>, tensor<?x2xf32>, tensor<2x2x4xf32>, tensor<2x4x2xf32>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}
