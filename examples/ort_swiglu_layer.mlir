// ONNX Runtime's test_moe_cpu.py layer as one moe.layer: 64 hidden units,
// 4 experts with 256 intermediate units, top-2 softmax routing with
// renormalised weights, gpt-oss-style interleaved SwiGLU, fc1/fc2 biases.
func.func @moe_layer(%x: tensor<?x64xf32>, %router_logits: tensor<?x4xf32>,
                     %fc1: tensor<4x512x64xf32>, %fc1_bias: tensor<4x512xf32>,
                     %fc2: tensor<4x64x256xf32>, %fc2_bias: tensor<4x64xf32>)
    -> tensor<?x64xf32> {
  %y = moe.layer %x, %router_logits fc1 %fc1 fc1_bias %fc1_bias
         fc2 %fc2 fc2_bias %fc2_bias
         {k = 2 : i64, normalize, activation = #moe.activation<swiglu>,
          swiglu_fusion = #moe.swiglu_fusion<interleaved>,
          alpha = 1.702, beta = 1.0, limit = 7.0}
       : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x512x64xf32>,
          tensor<4x512xf32>, tensor<4x64x256xf32>, tensor<4x64xf32>)
       -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
