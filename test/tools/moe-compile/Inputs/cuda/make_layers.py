#!/usr/bin/python3
"""Writes one layer.mlir per kernel family of the cuda target into OUT_DIR,
taken from the end-to-end cases (test/e2e/cases.py), as OUT_DIR/<name>.mlir.
"""
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "..", "e2e"))
import gen_case  # noqa: E402

# file name -> e2e case
FAMILIES = {
    "bf16_swiglu_interleaved": "bf16_swiglu_interleaved",
    "f16_swiglu_concatenated": "f16_swiglu_concatenated",
    "bf16_glu_silu_fc3_bias": "bf16_glu_silu",
    "f32_gelu_bias": "act_gelu",
    "f32_shared_zero_experts": "zero_with_shared",
    "f32_shared_gate": "shared2_gate",
    "f32_constant_experts": "zero_all_kinds",
    "bf16_sigmoid_groups_relu": "everything_deepseek",
    "bf16_shared": "shared2_bf16",
    "f32_top_p": "route_top_p_sigmoid",
}


def main():
    out = sys.argv[1]
    for name, case in FAMILIES.items():
        work = tempfile.mkdtemp()
        try:
            gen_case.generate(case, work)
            shutil.copy(os.path.join(work, "layer.mlir"),
                        os.path.join(out, name + ".mlir"))
        finally:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
