// RUN: moe-opt %s --convert-moe-to-gpu --split-input-file --verify-diagnostics

func.func @capacity(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>) -> tensor<?x16xf32> {
  // expected-error @below {{capacity-limited dispatch (capacity_factor, expert_capacity) is not supported by the cuda target yet}}
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64, capacity_factor = 1.25 : f64} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  return %rows : tensor<?x16xf32>
}

// -----

func.func @pass_through(%y: tensor<?x16xf32>, %w: tensor<?x1xf32>, %ids: tensor<?x1xi32>, %slots: tensor<?x1xi32>, %x: tensor<?x16xf32>) -> tensor<?x16xf32> {
  // expected-error @below {{moe.combine with dropped_pass_through is not supported by the cuda target yet}}
  %out = moe.combine %y, %w, %ids, %slots input %x {num_experts = 4 : i64, dropped_pass_through} : (tensor<?x16xf32>, tensor<?x1xf32>, tensor<?x1xi32>, tensor<?x1xi32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

func.func @layer(%x: tensor<?x16xf32>, %logits: tensor<?x4xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  // expected-error @below {{moe.layer (run -moe-decompose-layer first) is not supported by the cuda target yet}}
  %y = moe.layer %x, %logits fc1 %w1 fc2 %w2 {k = 2 : i64, activation = #moe.activation<relu>} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
