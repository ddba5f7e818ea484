// RUN: moe-opt %s --split-input-file --convert-nvvm-to-gpu-executor --verify-diagnostics

llvm.func @vote(%mask: i32, %p: i1) -> i32 {
  // expected-error @+1 {{the GPU executor does not model 'nvvm.vote.sync'}}
  %r = nvvm.vote.sync ballot %mask, %p -> i32
  llvm.return %r : i32
}

// -----

llvm.func @named_barrier() {
  %id = llvm.mlir.constant(1 : i32) : i32
  // expected-error @+1 {{the GPU executor runs barrier 0 across the whole block only}}
  nvvm.barrier id = %id
  llvm.return
}

// -----

llvm.func @mma_int8(%a: i32, %b: i32, %c: i32) -> !llvm.struct<(i32, i32, i32, i32)> {
  // expected-error @+1 {{the GPU executor runs f16 and bf16 mma.sync only, not s8}}
  %d = nvvm.mma.sync A[%a, %a, %a, %a] B[%b, %b] C[%c, %c, %c, %c]
    {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>,
     multiplicandAPtxType = #nvvm.mma_type<s8>,
     multiplicandBPtxType = #nvvm.mma_type<s8>,
     intOverflowBehavior = #nvvm.mma_int_overflow<satfinite>,
     shape = #nvvm.shape<m = 16, n = 8, k = 32>}
    : (i32, i32, i32) -> !llvm.struct<(i32, i32, i32, i32)>
  llvm.return %d : !llvm.struct<(i32, i32, i32, i32)>
}

// -----

llvm.func @inline_ptx() {
  // expected-error @+1 {{the GPU executor cannot run inline PTX}}
  llvm.inline_asm has_side_effects "membar.gl;", "" : () -> ()
  llvm.return
}

// -----

llvm.mlir.global internal @tile() {addr_space = 3 : i32} : !llvm.array<8 x f32>
// expected-error @+1 {{the GPU executor lays out shared memory per kernel; a device function using it is not supported}}
llvm.func @device_function() {
  %tile = llvm.mlir.addressof @tile : !llvm.ptr<3>
  llvm.return
}
