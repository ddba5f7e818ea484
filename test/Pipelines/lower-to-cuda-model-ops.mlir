// The ops around the MoE layers of a whole model on the cuda target: a
// reshape of dynamic sizes (which crashed -expand-strided-metadata), an
// imported scatter (an scf.for nest on tensors) and a sum to a scalar all
// become kernels of one gpu.module, and the host code only allocates,
// copies and launches.
// RUN: moe-opt %s --moe-lower-to-cuda="lower-to-llvm=false" | FileCheck %s --check-prefix=GPU
// RUN: moe-opt %s --moe-lower-to-cuda | FileCheck %s --check-prefix=LLVM
// RUN: moe-opt %s --moe-lower-to-cuda="emulate-kernels=true" | FileCheck %s --check-prefix=EMU

// GPU-LABEL: func.func @model_ops
// GPU-NOT:     memref.load
// GPU-NOT:     memref.store
// The elementwise op over [B*S, 16], collapsed to one dimension: 128
// consecutive elements per block.
// GPU:         gpu.launch blocks({{.*}}) threads({{.*}}) in (%{{.*}} = %c128, %{{.*}} = %c1, %{{.*}} = %c1) module(@moe_kernels)
// GPU:           arith.mulf
// The scatter: a thread per column, applying the rows in order.
// GPU:         gpu.launch
// GPU:           scf.if
// GPU-NEXT:        scf.for
// GPU:               memref.load
// GPU:               memref.store
// GPU:           gpu.terminator
// The sum: its initial fill and its loops, each on one thread.
// GPU:         gpu.launch
// GPU:           scf.if
// GPU-NEXT:        memref.store
// GPU:         gpu.launch
// GPU:           scf.if
// GPU-NEXT:        scf.for
// GPU-NEXT:          scf.for
// GPU:           gpu.terminator
// GPU-NOT:     memref.load
// GPU-NOT:     memref.store
// GPU:         return

// LLVM:        gpu.binary @moe_kernels
// LLVM-NOT:    gpu.binary
// LLVM:        llvm.func @moe_entry_model_ops

// Emulated: the same kernels as host loops, device memory as host memory,
// a CPU module.
// EMU-NOT:     gpu.
// EMU-DAG:     \22target\22:\22cpu\22
// EMU-DAG:     llvm.func @moe_entry_model_ops
// EMU-NOT:     gpu.
func.func @model_ops(%x: tensor<?x?x16xf32>, %idx: tensor<?x16xi64>, %upd: tensor<?x16xf32>)
    -> (tensor<?x?x16xf32>, tensor<4x16xf32>, tensor<f32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %zero = arith.constant 0.0 : f32
  // [B, S, 16] -> [B*S, 16] -> [B, S, 16] around an elementwise op.
  %b = tensor.dim %x, %c0 : tensor<?x?x16xf32>
  %s = tensor.dim %x, %c1 : tensor<?x?x16xf32>
  %flat = tensor.collapse_shape %x [[0, 1], [2]] : tensor<?x?x16xf32> into tensor<?x16xf32>
  %n = tensor.dim %flat, %c0 : tensor<?x16xf32>
  %e = tensor.empty(%n) : tensor<?x16xf32>
  %sq = linalg.mul ins(%flat, %flat : tensor<?x16xf32>, tensor<?x16xf32>) outs(%e : tensor<?x16xf32>) -> tensor<?x16xf32>
  %y = tensor.expand_shape %sq [[0, 1], [2]] output_shape [%b, %s, 16] : tensor<?x16xf32> into tensor<?x?x16xf32>
  // ScatterElements (axis 0) of updates into zeros, as the importer writes it.
  %init = arith.constant dense<0.0> : tensor<4x16xf32>
  %rows = tensor.dim %idx, %c0 : tensor<?x16xi64>
  %scattered = scf.for %r = %c0 to %rows step %c1 iter_args(%acc = %init) -> (tensor<4x16xf32>) {
    %inner = scf.for %c = %c0 to %c16 step %c1 iter_args(%acc2 = %acc) -> (tensor<4x16xf32>) {
      %i = tensor.extract %idx[%r, %c] : tensor<?x16xi64>
      %t = arith.index_cast %i : i64 to index
      %u = tensor.extract %upd[%r, %c] : tensor<?x16xf32>
      %old = tensor.extract %acc2[%t, %c] : tensor<4x16xf32>
      %new = arith.addf %old, %u : f32
      %ins = tensor.insert %new into %acc2[%t, %c] : tensor<4x16xf32>
      scf.yield %ins : tensor<4x16xf32>
    }
    scf.yield %inner : tensor<4x16xf32>
  }
  // A sum to a scalar (one thread).
  %z = tensor.empty() : tensor<f32>
  %zf = linalg.fill ins(%zero : f32) outs(%z : tensor<f32>) -> tensor<f32>
  %sum = linalg.reduce ins(%scattered : tensor<4x16xf32>) outs(%zf : tensor<f32>) dimensions = [0, 1]
    (%in: f32, %a: f32) {
      %v = arith.addf %in, %a : f32
      linalg.yield %v : f32
    }
  return %y, %scattered, %sum : tensor<?x?x16xf32>, tensor<4x16xf32>, tensor<f32>
}
