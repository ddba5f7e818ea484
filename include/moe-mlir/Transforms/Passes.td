//===- Passes.td - moe-mlir transformation passes -----------*- tablegen -*-===//

#ifndef MOE_TRANSFORMS_PASSES_TD
#define MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoEDecomposeLayer : Pass<"moe-decompose-layer"> {
  let summary = "Decompose moe.layer into route, dispatch, expert and combine";
  let description = [{
    Rewrites every `moe.layer` into the four stage ops so that each stage can
    be fused and lowered on its own:

    ```
    moe.route    logits [+ score_bias]         -> weights, ids
    moe.dispatch input, ids                    -> rows, offsets, row_tokens,
                                                  slot_rows
    moe.expert   rows, offsets, fc1/fc2/fc3    -> expert output
    moe.combine  expert output, weights, ids,
                 slot_rows [+ input, shared,
                 constants]                    -> output
    ```

    Shared experts become one `moe.expert` per shared expert over all tokens
    (a single expert owning rows `[0, T)`), summed and handed to
    `moe.combine`. A `[B, S, H]` input is collapsed to `[B*S, H]` around the
    stages and expanded back.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::tensor::TensorDialect"];
}

#endif // MOE_TRANSFORMS_PASSES_TD
