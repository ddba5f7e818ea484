//===- MoEBase.td - moe dialect definition -----------------*- tablegen -*-===//

#ifndef MOE_BASE_TD
#define MOE_BASE_TD

include "mlir/IR/OpBase.td"

def MoE_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::mlir::moe";
  let summary = "Mixture-of-Experts layers as first-class ops";
  let description = [{
    The `moe` dialect describes Mixture-of-Experts (MoE) layers with value
    (tensor) semantics. `moe.layer` is a whole layer, close to ONNX Runtime's
    `com.microsoft.MoE`; `moe.route`, `moe.dispatch`, `moe.expert` and
    `moe.combine` are the four stages it decomposes into, so that routing,
    token grouping, grouped expert GEMMs and the weighted combine can each be
    fused and lowered on their own.

    Conventions shared by all ops: expert ids are `i32` and `-1` marks an
    empty routing slot; expert weights are stacked on a leading expert
    dimension and stored out-major like `nn.Linear`
    (`fc1 [E, f*I, H]`, `fc2 [E, H, I]`, `fc3 [E, I, H]`); per-expert row
    offsets are `i32` prefix sums of length `E + 1`. The semantics are
    defined precisely in docs/Dialects/MoE.md and implemented in float64 by
    the reference evaluator.
  }];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let extraClassDeclaration = [{
    /// Unit attribute on a `memref.extract_aligned_pointer_as_index` whose
    /// address the host dereferences (the counts of an exchange): on the
    /// cuda target that buffer must stay in host memory.
    static constexpr ::llvm::StringLiteral getHostAddressAttrName() {
      return ::llvm::StringLiteral("moe.host_address");
    }
  }];
}

class MoE_Op<string mnemonic, list<Trait> traits = []>
    : Op<MoE_Dialect, mnemonic, traits>;

#endif // MOE_BASE_TD
