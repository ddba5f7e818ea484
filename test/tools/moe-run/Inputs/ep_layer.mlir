// A small layer for the expert-parallel launcher tests: 4 experts, top-2.
func.func @layer(%x: tensor<?x8xf32>, %logits: tensor<?x4xf32>,
                 %fc1: tensor<4x16x8xf32>, %fc2: tensor<4x8x16xf32>)
    -> tensor<?x8xf32> {
  %y = moe.layer %x, %logits fc1 %fc1 fc2 %fc2 {k = 2 : i64}
      : (tensor<?x8xf32>, tensor<?x4xf32>, tensor<4x16x8xf32>,
         tensor<4x8x16xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}
