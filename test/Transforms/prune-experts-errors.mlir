// RUN: moe-opt %s --split-input-file --moe-prune-experts="profile=%S/Inputs/prune-profile.json prune=2" --verify-diagnostics

// Weights that are not constants cannot be pruned at compile time.
func.func @argument_weights(%x: tensor<?x2xf32>, %fc1: tensor<4x1x2xf32>) -> tensor<?x2xf32> {
  %r = arith.constant dense<1.0> : tensor<4x2xf32>
  %fc2 = arith.constant dense<1.0> : tensor<4x2x1xf32>
  // expected-error @below {{cannot prune layer 0: its weights must be constants}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 {k = 1 : i64}
      : (tensor<?x2xf32>, tensor<4x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// The router must be the layer's weight.
func.func @logits(%x: tensor<?x2xf32>, %l: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %fc1 = arith.constant dense<1.0> : tensor<4x1x2xf32>
  %fc2 = arith.constant dense<1.0> : tensor<4x2x1xf32>
  // expected-error @below {{cannot prune layer 0: its router is not the layer's weight}}
  %y = moe.layer %x, %l fc1 %fc1 fc2 %fc2 {k = 1 : i64}
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// k experts must remain.
func.func @too_many(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %r = arith.constant dense<1.0> : tensor<4x2xf32>
  %fc1 = arith.constant dense<1.0> : tensor<4x1x2xf32>
  %fc2 = arith.constant dense<1.0> : tensor<4x2x1xf32>
  // expected-error @below {{cannot prune layer 0: removing 2 of 4 experts leaves fewer than k = 3}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 {k = 3 : i64}
      : (tensor<?x2xf32>, tensor<4x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// The profile's layer 0 has 4 experts.
func.func @other_model(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %r = arith.constant dense<1.0> : tensor<8x2xf32>
  %fc1 = arith.constant dense<1.0> : tensor<8x1x2xf32>
  %fc2 = arith.constant dense<1.0> : tensor<8x2x1xf32>
  // expected-error @below {{cannot prune layer 0: the routing profile has 4 experts for it, the layer routes to 8 (a profile of another model?)}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 {k = 1 : i64}
      : (tensor<?x2xf32>, tensor<8x2xf32>, tensor<8x1x2xf32>, tensor<8x2x1xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// The profile has no layer 2.
func.func @third_layer(%x: tensor<?x1xf32>) -> tensor<?x1xf32> {
  %r = arith.constant dense<1.0> : tensor<4x1xf32>
  %r1 = arith.constant dense<1.0> : tensor<5x1xf32>
  %w = arith.constant dense<1.0> : tensor<4x1x1xf32>
  %v = arith.constant dense<1.0> : tensor<4x1x1xf32>
  // expected-remark @below {{layer 0: pruned experts}}
  %a = moe.layer %x router_weight %r fc1 %w fc2 %v {k = 1 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  // expected-remark @below {{layer 1: pruned experts}}
  %b = moe.layer %a router_weight %r1 fc1 %w fc2 %v {k = 1 : i64, zero_experts = [#moe.zero_expert<zero>]}
      : (tensor<?x1xf32>, tensor<5x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  // expected-error @below {{cannot prune layer 2: the routing profile has no layer 2}}
  %c = moe.layer %b router_weight %r fc1 %w fc2 %v {k = 1 : i64}
      : (tensor<?x1xf32>, tensor<4x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>) -> tensor<?x1xf32>
  return %c : tensor<?x1xf32>
}

// -----

// Group-limited routing chooses among whole groups.
func.func @groups(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %r = arith.constant dense<1.0> : tensor<4x2xf32>
  %fc1 = arith.constant dense<1.0> : tensor<4x1x2xf32>
  %fc2 = arith.constant dense<1.0> : tensor<4x2x1xf32>
  // expected-error @below {{cannot prune layer 0: group-limited routing needs its groups whole}}
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 {k = 1 : i64, num_groups = 2 : i64, top_groups = 1 : i64}
      : (tensor<?x2xf32>, tensor<4x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
