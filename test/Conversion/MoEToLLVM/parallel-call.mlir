// RUN: moe-opt %s --convert-to-llvm --reconcile-unrealized-casts | FileCheck %s

// The captures are packed into a stack context scoped to the call; the
// trampoline unpacks them into the callee's lowered signature (the memref
// descriptor flattened field by field) and appends the chunk bounds.
// CHECK:       llvm.func @moe_rt_parallel_for(i64, !llvm.ptr, !llvm.ptr)
// CHECK-LABEL: llvm.func @caller
// CHECK:         %[[SP:.*]] = llvm.intr.stacksave : !llvm.ptr
// CHECK:         %[[CTX:.*]] = llvm.alloca %{{.*}} x !llvm.struct<(struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)>, f32)>
// CHECK:         llvm.store %{{.*}}, %[[CTX]]
// CHECK:         %[[FN:.*]] = llvm.mlir.addressof @__moe_trampoline_body : !llvm.ptr
// CHECK:         llvm.call @moe_rt_parallel_for(%{{.*}}, %[[FN]], %[[CTX]]) : (i64, !llvm.ptr, !llvm.ptr) -> ()
// CHECK:         llvm.intr.stackrestore %[[SP]]
// CHECK:       llvm.func internal @__moe_trampoline_body(%[[ARG:.*]]: !llvm.ptr, %[[BEGIN:.*]]: i64, %[[END:.*]]: i64)
// CHECK:         %[[S:.*]] = llvm.load %[[ARG]]
// CHECK:         %[[DESC:.*]] = llvm.extractvalue %[[S]][0]
// CHECK:         %[[SCALE:.*]] = llvm.extractvalue %[[S]][1]
// CHECK:         llvm.call @body(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[SCALE]], %[[BEGIN]], %[[END]]) : (!llvm.ptr, !llvm.ptr, i64, i64, i64, f32, i64, i64) -> ()
func.func private @body(%buf: memref<?xf32>, %scale: f32, %begin: index, %end: index) {
  return
}

func.func @caller(%buf: memref<?xf32>, %scale: f32, %n: index) {
  moe.parallel_call @body(%buf, %scale) count(%n) : memref<?xf32>, f32
  return
}
