// RUN: moe-opt %s --split-input-file --moe-emit-abi-entry-points --verify-diagnostics | FileCheck %s

// Every argument descriptor (two inputs, then one output) is loaded from the
// packed array and handed to the C interface; everything but the ABI
// symbols becomes internal.
// CHECK-LABEL: llvm.func internal @_mlir_ciface_f(
// CHECK:       llvm.mlir.global internal constant @moe_manifest_text("{\22format\22:\22moe-module-1\22,
// CHECK-SAME:  \00")
// CHECK:       llvm.func @moe_module_manifest() -> !llvm.ptr {
// CHECK-NEXT:    %[[TEXT:.*]] = llvm.mlir.addressof @moe_manifest_text : !llvm.ptr
// CHECK-NEXT:    llvm.return %[[TEXT]] : !llvm.ptr
// CHECK:       llvm.func @moe_entry_f(%[[ARGS:.*]]: !llvm.ptr) -> i32 {
// CHECK:         %[[P0:.*]] = llvm.getelementptr %[[ARGS]][0] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK-NEXT:    %[[D0:.*]] = llvm.load %[[P0]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT:    %[[P1:.*]] = llvm.getelementptr %[[ARGS]][1] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK-NEXT:    %[[D1:.*]] = llvm.load %[[P1]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT:    %[[P2:.*]] = llvm.getelementptr %[[ARGS]][2] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK-NEXT:    %[[D2:.*]] = llvm.load %[[P2]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT:    llvm.call @_mlir_ciface_f(%[[D0]], %[[D1]], %[[D2]]) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> ()
// CHECK-NEXT:    %[[OK:.*]] = llvm.mlir.constant(0 : i32) : i32
// CHECK-NEXT:    llvm.return %[[OK]] : i32
// CHECK-NOT:   moe.manifest
module attributes {moe.manifest = "{\22format\22:\22moe-module-1\22,\22target\22:\22cpu\22,\22functions\22:[{\22name\22:\22f\22,\22entry\22:\22moe_entry_f\22,\22inputs\22:[{\22name\22:\22a\22,\22dtype\22:\22f32\22,\22shape\22:[4]},{\22name\22:\22b\22,\22dtype\22:\22f32\22,\22shape\22:[4]}],\22outputs\22:[{\22name\22:\22result0\22,\22dtype\22:\22f32\22,\22shape\22:[4]}]}]}"} {
  llvm.func @_mlir_ciface_f(%a: !llvm.ptr, %b: !llvm.ptr, %out: !llvm.ptr) {
    llvm.return
  }
}

// -----

// expected-error @+1 {{no 'moe.manifest' attribute: run -moe-export-abi on the tensor-level module first}}
module {
}

// -----

// expected-error @+1 {{missing C interface '_mlir_ciface_g' for manifest function 'g'}}
module attributes {moe.manifest = "{\22functions\22:[{\22name\22:\22g\22,\22entry\22:\22moe_entry_g\22,\22inputs\22:[],\22outputs\22:[]}]}"} {
}

// -----

module attributes {moe.manifest = "{\22functions\22:[{\22name\22:\22h\22,\22entry\22:\22moe_entry_h\22,\22inputs\22:[{\22name\22:\22a\22,\22dtype\22:\22f32\22,\22shape\22:[4]}],\22outputs\22:[{\22name\22:\22r\22,\22dtype\22:\22f32\22,\22shape\22:[4]}]}]}"} {
  // expected-error @+1 {{expected 2 descriptor-pointer arguments (inputs, then outputs) and no results; were the results turned into out-parameters?}}
  llvm.func @_mlir_ciface_h(%a: !llvm.ptr) -> !llvm.ptr {
    llvm.return %a : !llvm.ptr
  }
}

// -----

// expected-error @+1 {{malformed 'moe.manifest': a function needs 'name', 'entry', 'inputs' and 'outputs'}}
module attributes {moe.manifest = "{\22functions\22:[{\22name\22:\22g\22}]}"} {
}

// -----

// expected-error @+1 {{malformed 'moe.manifest': no 'functions' array}}
module attributes {moe.manifest = "[1, 2]"} {
}
