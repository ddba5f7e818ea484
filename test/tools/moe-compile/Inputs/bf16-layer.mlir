// A small bf16 layer (K = 40 leaves a partial vector step for both GEMMs).
func.func @moe_layer(%x: tensor<?x40xbf16>, %logits: tensor<?x4xf32>,
                     %fc1: tensor<4x48x40xbf16>, %fc2: tensor<4x40x24xbf16>)
    -> tensor<?x40xbf16> {
  %y = moe.layer %x, %logits fc1 %fc1 fc2 %fc2
         {k = 2 : i64, normalize, activation = #moe.activation<swiglu>,
          swiglu_fusion = #moe.swiglu_fusion<interleaved>,
          alpha = 1.0, beta = 0.0}
       : (tensor<?x40xbf16>, tensor<?x4xf32>, tensor<4x48x40xbf16>,
          tensor<4x40x24xbf16>) -> tensor<?x40xbf16>
  return %y : tensor<?x40xbf16>
}
