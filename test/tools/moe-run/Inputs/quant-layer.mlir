// A 4-bit, block-wise (32), zero-pointed SwiGLU layer with its packed
// weights as inputs (check-quant.test).
func.func @qmoe(%x: tensor<?x64xf32>, %logits: tensor<?x4xf32>,
                %w1: tensor<4x128x32xui8>, %b1: tensor<4x128xf32>,
                %w2: tensor<4x64x32xui8>, %b2: tensor<4x64xf32>,
                %s1: tensor<4x128x2xf32>, %s2: tensor<4x64x2xf32>,
                %z1: tensor<4x128x1xui8>, %z2: tensor<4x64x1xui8>)
    -> tensor<?x64xf32> {
  %y = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 fc2_bias %b2
      fc1_scales %s1 fc2_scales %s2 fc1_zero_points %z1 fc2_zero_points %z2
      {k = 2 : i64, scoring = #moe.scoring<softmax_topk>,
       activation = #moe.activation<swiglu>, alpha = 1.702, beta = 1.0,
       limit = 7.0, quant = #moe.quant<bits = 4, block_size = 32>}
      : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x128x32xui8>,
         tensor<4x128xf32>, tensor<4x64x32xui8>, tensor<4x64xf32>,
         tensor<4x128x2xf32>, tensor<4x64x2xf32>, tensor<4x128x1xui8>,
         tensor<4x64x1xui8>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
