// RUN: moe-opt %s --split-input-file --moe-export-abi --verify-diagnostics | FileCheck %s

// Dynamic output sizes of upstream tensor ops (what ai.onnx graphs import
// to) are traced to the inputs through the value-bounds analysis: the
// transposed, sliced result's sizes are the inputs' symbols.
// CHECK: \22inputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22arg0\22,\22shape\22:[\22s0\22,\22s1\22,8]}]
// CHECK-SAME: \22outputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22result0\22,\22shape\22:[\22s1\22,\22s0\22,4]}]
func.func @transpose_slice(%x: tensor<?x?x8xf32>) -> tensor<?x?x4xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %b = tensor.dim %x, %c0 : tensor<?x?x8xf32>
  %s = tensor.dim %x, %c1 : tensor<?x?x8xf32>
  %slice = tensor.extract_slice %x[0, 0, 2] [%b, %s, 4] [1, 1, 1] : tensor<?x?x8xf32> to tensor<?x?x4xf32>
  %init = tensor.empty(%s, %b) : tensor<?x?x4xf32>
  %t = linalg.transpose ins(%slice : tensor<?x?x4xf32>) outs(%init : tensor<?x?x4xf32>) permutation = [1, 0, 2]
  return %t : tensor<?x?x4xf32>
}

// -----

// Tokens flattened from [B, S, H]: the size is the product of two symbols,
// also after ops that keep it.
// CHECK: \22inputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22arg0\22,\22shape\22:[\22s0\22,\22s1\22,8]}]
// CHECK-SAME: \22outputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22result0\22,\22shape\22:[\22s0*s1\22,8]}]
func.func @flatten_tokens(%x: tensor<?x?x8xf32>) -> tensor<?x8xf32> {
  %c0 = arith.constant 0 : index
  %rows = tensor.collapse_shape %x [[0, 1], [2]] : tensor<?x?x8xf32> into tensor<?x8xf32>
  %n = tensor.dim %rows, %c0 : tensor<?x8xf32>
  %init = tensor.empty(%n) : tensor<?x8xf32>
  %y = linalg.copy ins(%rows : tensor<?x8xf32>) outs(%init : tensor<?x8xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// Dimensions a linalg op indexes with the same loop are one symbol; one
// that meets a static size is pinned to it (x's second dimension is 4).
// CHECK: \22inputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22arg0\22,\22shape\22:[\22s0\22,4]},{\22dtype\22:\22f32\22,\22name\22:\22arg1\22,\22shape\22:[\22s0\22,4]}]
// CHECK-SAME: \22outputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22result0\22,\22shape\22:[\22s0\22,4]}]
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @related(%x: tensor<?x?xf32>, %y: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x?xf32>
  %init = tensor.empty(%n) : tensor<?x4xf32>
  %sum = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %y : tensor<?x?xf32>, tensor<?x4xf32>) outs(%init : tensor<?x4xf32>) {
  ^bb0(%a: f32, %b: f32, %out: f32):
    %r = arith.addf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<?x4xf32>
  return %sum : tensor<?x4xf32>
}

// -----

// A sum of input sizes and a constant: the keys of a KV cache (past + new)
// and one attention-sink column appended to the scores. The constant is
// counted once (it was doubled: a [.., s0+s1+2] output whose last column
// was never written).
// CHECK: \22inputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22arg0\22,\22shape\22:[\22s0\22,4]},{\22dtype\22:\22f32\22,\22name\22:\22arg1\22,\22shape\22:[\22s1\22,4]}]
// CHECK-SAME: \22outputs\22:[{\22dtype\22:\22f32\22,\22name\22:\22result0\22,\22shape\22:[\22s0+s1+1\22,4]}]
func.func @sum_plus_constant(%past: tensor<?x4xf32>, %new: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %c0 = arith.constant 0 : index
  %p = tensor.dim %past, %c0 : tensor<?x4xf32>
  %n = tensor.dim %new, %c0 : tensor<?x4xf32>
  %rows = affine.apply affine_map<()[s0, s1] -> (s0 + s1 + 1)>()[%p, %n]
  %init = tensor.empty(%rows) : tensor<?x4xf32>
  %with_past = tensor.insert_slice %past into %init[0, 0] [%p, 4] [1, 1] : tensor<?x4xf32> into tensor<?x4xf32>
  %keys = tensor.insert_slice %new into %with_past[%p, 0] [%n, 4] [1, 1] : tensor<?x4xf32> into tensor<?x4xf32>
  %sink = arith.constant dense<0.0> : tensor<1x4xf32>
  %last = affine.apply affine_map<()[s0, s1] -> (s0 + s1)>()[%p, %n]
  %scores = tensor.insert_slice %sink into %keys[%last, 0] [1, 4] [1, 1] : tensor<1x4xf32> into tensor<?x4xf32>
  return %scores : tensor<?x4xf32>
}

// -----

// A size that is not one of the inputs' (a data-dependent count) cannot be
// described.
// expected-error @below {{output 'result0' dimension 0 is dynamic and cannot be expressed in terms of the function's inputs}}
func.func @data_dependent(%x: tensor<?xf32>, %len: tensor<i64>) -> tensor<?xf32> {
  %v = tensor.extract %len[] : tensor<i64>
  %n = arith.index_cast %v : i64 to index
  %slice = tensor.extract_slice %x[0] [%n] [1] : tensor<?xf32> to tensor<?xf32>
  return %slice : tensor<?xf32>
}
