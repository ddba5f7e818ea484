// RUN: moe-opt %s --split-input-file --moe-x86-vnni-dot | FileCheck %s

// Sums of four u8 x s8 products become vpdpbusd, in either operand order.
// CHECK-LABEL: func @dot
// CHECK-SAME:      (%[[ACC:.*]]: vector<16xi32>, %[[U:.*]]: vector<64xi8>, %[[S:.*]]: vector<64xi8>)
// CHECK:         %[[D:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%[[ACC]], %[[U]], %[[S]]) : (vector<16xi32>, vector<64xi8>, vector<64xi8>) -> vector<16xi32>
// CHECK:         %[[E:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%[[D]], %[[U]], %[[S]])
// CHECK-NOT:     vector.multi_reduction
// CHECK:         return %[[E]]
func.func @dot(%acc: vector<16xi32>, %u: vector<64xi8>, %s: vector<64xi8>) -> vector<16xi32> {
  %wu = arith.extui %u : vector<64xi8> to vector<64xi32>
  %ws = arith.extsi %s : vector<64xi8> to vector<64xi32>
  %p = arith.muli %wu, %ws : vector<64xi32>
  %g = vector.shape_cast %p : vector<64xi32> to vector<16x4xi32>
  %r = vector.multi_reduction <add>, %g, %acc [1] : vector<16x4xi32> to vector<16xi32>
  %q = arith.muli %ws, %wu : vector<64xi32>
  %h = vector.shape_cast %q : vector<64xi32> to vector<16x4xi32>
  %t = vector.multi_reduction <add>, %h, %r [1] : vector<16x4xi32> to vector<16xi32>
  return %t : vector<16xi32>
}

// -----

// Not the instruction: both bytes signed, sums of eight, a maximum.
// CHECK-LABEL: func @not_dot
// CHECK-NOT:     llvm.call_intrinsic
// CHECK-COUNT-3: vector.multi_reduction
func.func @not_dot(%acc: vector<16xi32>, %acc8: vector<8xi32>, %u: vector<64xi8>, %s: vector<64xi8>) -> (vector<16xi32>, vector<8xi32>, vector<16xi32>) {
  %wu = arith.extui %u : vector<64xi8> to vector<64xi32>
  %ws = arith.extsi %s : vector<64xi8> to vector<64xi32>
  %wt = arith.extsi %u : vector<64xi8> to vector<64xi32>
  %signed = arith.muli %wt, %ws : vector<64xi32>
  %g = vector.shape_cast %signed : vector<64xi32> to vector<16x4xi32>
  %r = vector.multi_reduction <add>, %g, %acc [1] : vector<16x4xi32> to vector<16xi32>
  %p = arith.muli %wu, %ws : vector<64xi32>
  %e = vector.shape_cast %p : vector<64xi32> to vector<8x8xi32>
  %r8 = vector.multi_reduction <add>, %e, %acc8 [1] : vector<8x8xi32> to vector<8xi32>
  %f = vector.shape_cast %p : vector<64xi32> to vector<16x4xi32>
  %m = vector.multi_reduction <maxsi>, %f, %acc [1] : vector<16x4xi32> to vector<16xi32>
  return %r, %r8, %m : vector<16xi32>, vector<8xi32>, vector<16xi32>
}
