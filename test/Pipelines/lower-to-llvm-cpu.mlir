// RUN: moe-opt %s --moe-lower-to-llvm-cpu | FileCheck %s

// The whole layer lowers to the LLVM dialect; only the manifest accessor
// and the packed entry point stay externally visible, and no moe, tensor or
// memref op survives.
// CHECK-NOT:   moe.
// CHECK-DAG:   llvm.func internal @_mlir_ciface_moe_layer(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr)
// CHECK-DAG:   llvm.func @moe_module_manifest() -> !llvm.ptr
// CHECK-DAG:   llvm.func @moe_entry_moe_layer(%{{.*}}: !llvm.ptr) -> i32
// CHECK-NOT:   memref.
func.func @moe_layer(%x: tensor<?x64xf32>, %logits: tensor<?x4xf32>, %w1: tensor<4x512x64xf32>, %b1: tensor<4x512xf32>, %w2: tensor<4x64x256xf32>, %b2: tensor<4x64xf32>) -> tensor<?x64xf32> {
  %y = moe.layer %x, %logits fc1 %w1 fc1_bias %b1 fc2 %w2 fc2_bias %b2 {k = 2 : i64, normalize, activation = #moe.activation<swiglu>, alpha = 1.702, beta = 1.0, limit = 7.0} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x512x64xf32>, tensor<4x512xf32>, tensor<4x64x256xf32>, tensor<4x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
