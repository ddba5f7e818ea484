// An expert-parallel candidate whose experts dominate: H = 1024, I = 2048,
// 8 experts, top-2 (weights are arguments; only their types matter here).
func.func @layer(%x: tensor<?x1024xf32>, %logits: tensor<?x8xf32>,
                 %fc1: tensor<8x2048x1024xf32>, %fc2: tensor<8x1024x2048xf32>)
    -> tensor<?x1024xf32> {
  %y = moe.layer %x, %logits fc1 %fc1 fc2 %fc2 {k = 2 : i64}
      : (tensor<?x1024xf32>, tensor<?x8xf32>, tensor<8x2048x1024xf32>,
         tensor<8x1024x2048xf32>) -> tensor<?x1024xf32>
  return %y : tensor<?x1024xf32>
}
