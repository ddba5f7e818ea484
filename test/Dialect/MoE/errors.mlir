// RUN: moe-opt %s --split-input-file --verify-diagnostics

// Route logits must be [T, E].
func.func @case0(%l: tensor<8xf32>) {
  // expected-error @+1 {{'logits' must have rank 2, got 'tensor<8xf32>'}}
  %w, %i = moe.route %l {k = 2 : i64} : tensor<8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// k cannot exceed the expert count.
func.func @case1(%l: tensor<?x4xf32>) {
  // expected-error @+1 {{k = 5 exceeds the number of experts (4)}}
  %w, %i = moe.route %l {k = 5 : i64} : tensor<?x4xf32> -> tensor<?x5xf32>, tensor<?x5xi32>
  return
}

// -----

// k must be positive.
func.func @case2(%l: tensor<?x4xf32>) {
  // expected-error @+1 {{attribute 'k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %w, %i = moe.route %l {k = 0 : i64} : tensor<?x4xf32> -> tensor<?x0xf32>, tensor<?x0xi32>
  return
}

// -----

// Weights are [T, k].
func.func @case3(%l: tensor<?x4xf32>) {
  // expected-error @+1 {{'weights' dimension 1 is 3 but must be 2 ([T, k])}}
  %w, %i = moe.route %l {k = 2 : i64} : tensor<?x4xf32> -> tensor<?x3xf32>, tensor<?x2xi32>
  return
}

// -----

// Ids follow the token count.
func.func @case4(%l: tensor<5x4xf32>) {
  // expected-error @+1 {{'ids' dimension 0 is 6 but must be 5 ([T, k])}}
  %w, %i = moe.route %l {k = 2 : i64} : tensor<5x4xf32> -> tensor<5x2xf32>, tensor<6x2xi32>
  return
}

// -----

// Ids are i32.
func.func @case5(%l: tensor<?x4xf32>) {
  // expected-error @+1 {{result #1 must be ranked tensor of 32-bit signless integer values, but got 'tensor<?x2xi64>'}}
  %w, %i = moe.route %l {k = 2 : i64} : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi64>
  return
}

// -----

// Weights keep the logits' element type.
func.func @case6(%l: tensor<?x4xf32>) {
  // expected-error @+1 {{'weights' must have the element type of 'logits'}}
  %w, %i = moe.route %l {k = 2 : i64} : tensor<?x4xf32> -> tensor<?x2xf16>, tensor<?x2xi32>
  return
}

// -----

// One bias per expert.
func.func @case7(%l: tensor<?x4xf32>, %b: tensor<5xf32>) {
  // expected-error @+1 {{'bias' dimension 0 is 5 but must be 4 (one per expert)}}
  %w, %i = moe.route %l bias %b {k = 2 : i64} : tensor<?x4xf32>, tensor<5xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// Groups must divide the experts.
func.func @case8(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{num_groups = 3 does not divide the number of experts (8)}}
  %w, %i = moe.route %l {k = 2 : i64, num_groups = 3 : i64, top_groups = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// top_groups cannot exceed num_groups.
func.func @case9(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{top_groups must be in [1, num_groups = 4], got 5}}
  %w, %i = moe.route %l {k = 2 : i64, num_groups = 4 : i64, top_groups = 5 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// top_groups without groups is a mistake, not a no-op.
func.func @case10(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{top_groups = 2 needs group-limited routing (num_groups > 1)}}
  %w, %i = moe.route %l {k = 2 : i64, top_groups = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// num_groups must be at least 1.
func.func @case11(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{num_groups must be at least 1, got 0}}
  %w, %i = moe.route %l {k = 2 : i64, num_groups = 0 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// k must fit in the selectable groups.
func.func @case12(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{k = 3 exceeds the 2 experts in the top_groups = 1 selectable groups of 2}}
  %w, %i = moe.route %l {k = 3 : i64, num_groups = 4 : i64, top_groups = 1 : i64} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

// top2_sum needs two experts per group.
func.func @case13(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{group_scoring top2_sum needs groups of at least 2 experts, got 1}}
  %w, %i = moe.route %l {k = 2 : i64, num_groups = 8 : i64, top_groups = 4 : i64, group_scoring = #moe.group_scoring<top2_sum>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// top_p is a probability mass.
func.func @case14(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{top_p must be in (0, 1], got 1.5}}
  %w, %i = moe.route %l {k = 2 : i64, top_p = 1.5} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// The routed scaling factor is positive.
func.func @case15(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{scaling must be positive and finite, got 0}}
  %w, %i = moe.route %l {k = 2 : i64, scaling = 0.0} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// SparseMixer is top-2 routing.
func.func @sparse_mixer_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{sparse_mixer scoring is top-2 routing: it needs k = 2 and no num_groups, top_p or score bias}}
  %w, %i = moe.route %l {k = 3 : i64, scoring = #moe.scoring<sparse_mixer>} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @sparse_mixer_bias(%x: tensor<?x16xf32>, %l: tensor<?x8xf32>, %w1: tensor<8x32x16xf32>, %w2: tensor<8x16x32xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{sparse_mixer scoring is top-2 routing}}
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 score_bias %b {k = 2 : i64, scoring = #moe.scoring<sparse_mixer>} : (tensor<?x16xf32>, tensor<?x8xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>, tensor<8xf32>) -> tensor<?x16xf32>
  return
}

// -----

// Unknown scoring functions are rejected by the parser.
func.func @case16(%l: tensor<?x8xf32>) {
  // expected-error @+2 {{expected ::mlir::moe::Scoring to be one of: softmax, sigmoid, softmax_topk, sparse_mixer}}
  // expected-error @+1 {{failed to parse MoE_ScoringAttr parameter 'value' which is to be a `::mlir::moe::Scoring`}}
  %w, %i = moe.route %l {k = 2 : i64, scoring = #moe.scoring<tanh>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// Rows hold T * k token rows.
func.func @case17(%x: tensor<16x64xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{'rows' dimension 0 is 16 but must be 32 ([T * k, H])}}
  %r:4 = moe.dispatch %x, %i {num_experts = 4 : i64} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<16x64xf32>, tensor<5xi32>, tensor<32xi32>, tensor<16x2xi32>
  return
}

// -----

// Offsets are num_experts + 1 prefix sums.
func.func @case18(%x: tensor<16x64xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{'offsets' dimension 0 is 4 but must be 5 (num_experts + 1)}}
  %r:4 = moe.dispatch %x, %i {num_experts = 4 : i64} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xf32>, tensor<4xi32>, tensor<32xi32>, tensor<16x2xi32>
  return
}

// -----

// Ids must cover the same tokens.
func.func @case19(%x: tensor<16x64xf32>, %i: tensor<8x2xi32>) {
  // expected-error @+1 {{'ids' dimension 0 is 8 but must be 16 (the token count of 'input')}}
  %r:4 = moe.dispatch %x, %i {num_experts = 4 : i64} : tensor<16x64xf32>, tensor<8x2xi32> -> tensor<32x64xf32>, tensor<5xi32>, tensor<32xi32>, tensor<16x2xi32>
  return
}

// -----

// One row token per row.
func.func @case20(%x: tensor<16x64xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{'row_tokens' dimension 0 is 31 but must be 32 (T * k)}}
  %r:4 = moe.dispatch %x, %i {num_experts = 4 : i64} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xf32>, tensor<5xi32>, tensor<31xi32>, tensor<16x2xi32>
  return
}

// -----

// One slot row per assignment.
func.func @case21(%x: tensor<16x64xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{'slot_rows' dimension 1 is 3 but must be 2 ([T, k])}}
  %r:4 = moe.dispatch %x, %i {num_experts = 4 : i64} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xf32>, tensor<5xi32>, tensor<32xi32>, tensor<16x3xi32>
  return
}

// -----

// Rows are copies of the input.
func.func @case22(%x: tensor<16x64xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{'rows' must have the element type of 'input'}}
  %r:4 = moe.dispatch %x, %i {num_experts = 4 : i64} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xbf16>, tensor<5xi32>, tensor<32xi32>, tensor<16x2xi32>
  return
}

// -----

// Capacity factors are positive.
func.func @case23(%x: tensor<16x64xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{capacity_factor must be positive, got -1}}
  %r:4 = moe.dispatch %x, %i {num_experts = 4 : i64, capacity_factor = -1.0} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xf32>, tensor<5xi32>, tensor<32xi32>, tensor<16x2xi32>
  return
}

// -----

// One capacity at a time.
func.func @dispatch_two_capacities(%x: tensor<16x64xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{'capacity_factor' and 'expert_capacity' are exclusive: give one capacity}}
  %r:4 = moe.dispatch %x, %i {num_experts = 4 : i64, capacity_factor = 1.0, expert_capacity = 3 : i64} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xf32>, tensor<5xi32>, tensor<32xi32>, tensor<16x2xi32>
  return
}

// -----

// Absolute capacities are positive.
func.func @dispatch_zero_capacity(%x: tensor<16x64xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{attribute 'expert_capacity' failed to satisfy constraint}}
  %r:4 = moe.dispatch %x, %i {num_experts = 4 : i64, expert_capacity = 0 : i64} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xf32>, tensor<5xi32>, tensor<32xi32>, tensor<16x2xi32>
  return
}

// -----

// Groups bound an absolute capacity only.
func.func @dispatch_group_without_capacity(%x: tensor<16x64xf32>, %i: tensor<16x2xi32>, %g: index) {
  // expected-error @+1 {{'group_size' needs 'expert_capacity': groups only bound an absolute capacity}}
  %r:4 = moe.dispatch %x, %i group_size %g {num_experts = 4 : i64, capacity_factor = 1.0} : tensor<16x64xf32>, tensor<16x2xi32> -> tensor<32x64xf32>, tensor<5xi32>, tensor<32xi32>, tensor<16x2xi32>
  return
}

// -----

// Dropped tokens pass through from the token input.
func.func @combine_pass_through_without_input(%y: tensor<32x64xf32>, %w: tensor<16x2xf32>, %i: tensor<16x2xi32>, %s: tensor<16x2xi32>) {
  // expected-error @+1 {{'dropped_pass_through' needs the token 'input'}}
  %o = moe.combine %y, %w, %i, %s {num_experts = 4 : i64, dropped_pass_through} : (tensor<32x64xf32>, tensor<16x2xf32>, tensor<16x2xi32>, tensor<16x2xi32>) -> tensor<16x64xf32>
  return
}

// -----

// Legacy in-major weights get a hint about the layout.
func.func @case24(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x64x256xf32>, %w2: tensor<4x256x64xf32>) {
  // expected-error @+1 {{'fc1' has shape [4, 64, 256], which looks in-major; expert weights are out-major: fc1 [E, f*I, H], fc2 [E, H, I]}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x64x256xf32>, tensor<4x256x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// fc1 reads the hidden size.
func.func @case25(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x32xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'fc1' dimension 2 is 32 but must be 64 (the hidden size)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x32xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// fc1 and fc2 stack the same experts.
func.func @case26(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<3x64x256xf32>) {
  // expected-error @+1 {{'fc2' dimension 0 is 3 but must be 4 (the expert count of fc1)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<3x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// fc2 writes the hidden size.
func.func @case27(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x32x256xf32>) {
  // expected-error @+1 {{'fc2' dimension 1 is 32 but must be 64 (the hidden size)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x32x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Fused SwiGLU needs both halves in fc1.
func.func @case28(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'fc1' dimension 1 is 256 but must be 512 (twice the intermediate size of fc2 for fused swiglu)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Without SwiGLU fc1 produces the intermediate size.
func.func @case29(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x128x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'fc1' dimension 1 is 128 but must be 256 (the intermediate size of fc2)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x128x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Fused SwiGLU has no fc3.
func.func @case30(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x512x64xf32>, %w2: tensor<4x64x256xf32>, %w3: tensor<4x256x64xf32>) {
  // expected-error @+1 {{concatenated swiglu keeps both halves in fc1; 'fc3' must be absent}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc3 %w3 {activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<concatenated>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x512x64xf32>, tensor<4x64x256xf32>, tensor<4x256x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Separate SwiGLU takes its linear half from fc3.
func.func @case31(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{separate swiglu needs 'fc3' for its linear half}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<separate>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// fc3 is [E, I, H].
func.func @case32(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>, %w3: tensor<4x128x64xf32>) {
  // expected-error @+1 {{'fc3' dimension 1 is 128 but must be 256 ([E, I, H] of fc1/fc2)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc3 %w3 {activation = #moe.activation<silu>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>, tensor<4x128x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// fc3_bias without fc3.
func.func @case33(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>, %b3: tensor<4x256xf32>) {
  // expected-error @+1 {{'fc3_bias' needs 'fc3'}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc3_bias %b3 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>, tensor<4x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// fc1_bias is [E, fc1 rows].
func.func @case34(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>, %b1: tensor<4x64xf32>) {
  // expected-error @+1 {{'fc1_bias' dimension 1 is 64 but must be 256 ([E, output size] of its projection)}}
  %y = moe.expert %rows, %off fc1 %w1 fc1_bias %b1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Biases are stacked per expert.
func.func @case35(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>, %b2: tensor<64xf32>) {
  // expected-error @+1 {{'fc2_bias' must have rank 2, got 'tensor<64xf32>'}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc2_bias %b2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// All weights share one element type.
func.func @case36(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf16>) {
  // expected-error @+1 {{expert weights and biases must share one element type, got 'f32' and 'f16'}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x256xf16>) -> tensor<?x64xf32>
  return
}

// -----

// Signless integers are not a weight storage type (packed weights are ui8).
func.func @case37(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xi8>, %w2: tensor<4x64x256xi8>) {
  // expected-error @+1 {{operand #2 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type or 8-bit unsigned integer values, but got 'tensor<4x256x64xi8>'}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xi8>, tensor<4x64x256xi8>) -> tensor<?x64xf32>
  return
}

// -----

// Only SwiGLU clamps.
func.func @case38(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'limit' only applies to swiglu, not gelu}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {activation = #moe.activation<gelu>, limit = 7.0} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The SwiGLU limit is positive.
func.func @case39(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x512x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{limit must be positive, got -1}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>, limit = -1.0} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x512x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Offsets have one entry per expert plus one.
func.func @case40(%rows: tensor<?x64xf32>, %off: tensor<4xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'offsets' dimension 0 is 4 but must be 5 (the expert count of fc1 + 1)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<4xi32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The output has one row per input row.
func.func @case41(%rows: tensor<10x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'result' dimension 0 is 12 but must be 10 (the shape of 'rows')}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<10x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<12x64xf32>
  return
}

// -----

// Ids match the weights.
func.func @case42(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x3xi32>, %s: tensor<?x2xi32>) {
  // expected-error @+1 {{'ids' dimension 1 is 3 but must be 2 ([T, k] of 'weights')}}
  %o = moe.combine %y, %w, %i, %s {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x3xi32>, tensor<?x2xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Slot rows match the weights.
func.func @case43(%y: tensor<?x64xf32>, %w: tensor<7x2xf32>, %i: tensor<7x2xi32>, %s: tensor<6x2xi32>) {
  // expected-error @+1 {{'slot_rows' dimension 0 is 6 but must be 7 ([T, k] of 'weights')}}
  %o = moe.combine %y, %w, %i, %s {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<7x2xf32>, tensor<7x2xi32>, tensor<6x2xi32>) -> tensor<7x64xf32>
  return
}

// -----

// The output is [T, H].
func.func @case44(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>) {
  // expected-error @+1 {{'result' dimension 1 is 32 but must be 64 ([T, H])}}
  %o = moe.combine %y, %w, %i, %s {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x32xf32>
  return
}

// -----

// Copy experts read the token input.
func.func @case45(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>) {
  // expected-error @+1 {{a copy expert needs the token 'input'}}
  %o = moe.combine %y, %w, %i, %s {num_experts = 4 : i64, zero_experts = [#moe.zero_expert<copy>]} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared gate scales a shared output.
func.func @case46(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>, %x: tensor<?x64xf32>, %g: tensor<64xf32>) {
  // expected-error @+1 {{'shared_gate' needs the 'shared' expert output}}
  %o = moe.combine %y, %w, %i, %s input %x shared_gate %g {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The shared gate reads the token input.
func.func @case47(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>, %sh: tensor<?x64xf32>, %g: tensor<64xf32>) {
  // expected-error @+1 {{'shared_gate' needs the token 'input'}}
  %o = moe.combine %y, %w, %i, %s shared %sh shared_gate %g {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Constant experts need their vectors and gates.
func.func @case48(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>, %x: tensor<?x64xf32>) {
  // expected-error @+1 {{2 constant expert(s) need 'constants' and 'constant_gates'}}
  %o = moe.combine %y, %w, %i, %s input %x {num_experts = 4 : i64, zero_experts = [#moe.zero_expert<constant>, #moe.zero_expert<constant>]} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Constants without constant experts.
func.func @case49(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>, %x: tensor<?x64xf32>, %v: tensor<1x64xf32>, %cg: tensor<1x2x64xf32>) {
  // expected-error @+1 {{'constants'/'constant_gates' given without constant experts}}
  %o = moe.combine %y, %w, %i, %s input %x constants %v constant_gates %cg {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x64xf32>, tensor<1x64xf32>, tensor<1x2x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// One constant vector per constant expert.
func.func @case50(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>, %x: tensor<?x64xf32>, %v: tensor<2x64xf32>, %cg: tensor<1x2x64xf32>) {
  // expected-error @+1 {{'constants' dimension 0 is 2 but must be 1 ([constant experts, H])}}
  %o = moe.combine %y, %w, %i, %s input %x constants %v constant_gates %cg {num_experts = 4 : i64, zero_experts = [#moe.zero_expert<constant>]} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x64xf32>, tensor<2x64xf32>, tensor<1x2x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Constant gates produce two mixing logits.
func.func @case51(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>, %x: tensor<?x64xf32>, %v: tensor<1x64xf32>, %cg: tensor<1x3x64xf32>) {
  // expected-error @+1 {{'constant_gates' dimension 1 is 3 but must be 2 ([constant experts, 2, H])}}
  %o = moe.combine %y, %w, %i, %s input %x constants %v constant_gates %cg {num_experts = 4 : i64, zero_experts = [#moe.zero_expert<constant>]} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x64xf32>, tensor<1x64xf32>, tensor<1x3x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The token input is [T, H].
func.func @case52(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>, %x: tensor<?x32xf32>) {
  // expected-error @+1 {{'input' dimension 1 is 32 but must be 64 ([T, H])}}
  %o = moe.combine %y, %w, %i, %s input %x {num_experts = 4 : i64, zero_experts = [#moe.zero_expert<copy>]} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The shared output is [T, H].
func.func @case53(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>, %sh: tensor<?x16xf32>) {
  // expected-error @+1 {{'shared' dimension 1 is 16 but must be 64 ([T, H])}}
  %o = moe.combine %y, %w, %i, %s shared %sh {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x16xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The shared gate is a vector over H.
func.func @case54(%y: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xi32>, %x: tensor<?x64xf32>, %sh: tensor<?x64xf32>, %g: tensor<1x64xf32>) {
  // expected-error @+1 {{'shared_gate' must have rank 1, got 'tensor<1x64xf32>'}}
  %o = moe.combine %y, %w, %i, %s input %x shared %sh shared_gate %g {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x64xf32>, tensor<?x64xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The layer takes [T, H] or [B, S, H].
func.func @case55(%x: tensor<64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'input' must be [T, H] or [B, S, H], got 'tensor<64xf32>'}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<64xf32>
  return
}

// -----

// The output has the input's shape.
func.func @case56(%x: tensor<2x8x64xf32>, %l: tensor<16x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'result' dimension 1 is 4 but must be 8 (the shape of 'input')}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<2x8x64xf32>, tensor<16x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<2x4x64xf32>
  return
}

// -----

// Router logits cover B * S tokens.
func.func @case57(%x: tensor<2x8x64xf32>, %l: tensor<15x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'logits' dimension 0 is 15 but must be 16 ([T, E + zero experts])}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<2x8x64xf32>, tensor<15x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

// A layer takes logits or the router weight, not both.
func.func @layer_logits_and_router_weight(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %r: tensor<4x64xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{needs exactly one of 'logits' and 'router_weight'}}
  %o = moe.layer %x, %l router_weight %r fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x64xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// ... and one of them.
func.func @layer_no_router(%x: tensor<?x64xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{needs exactly one of 'logits' and 'router_weight'}}
  %o = moe.layer %x fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x64xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The router weight has a row per routed expert, zero experts included.
func.func @layer_router_weight_rows(%x: tensor<?x64xf32>, %r: tensor<4x64xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'router_weight' dimension 0 is 4 but must be 5 ([experts, H])}}
  %o = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 {k = 2 : i64, zero_experts = [#moe.zero_expert<zero>]} : (tensor<?x64xf32>, tensor<4x64xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// ... and a column per hidden unit of the input.
func.func @layer_router_weight_hidden(%x: tensor<2x3x64xf32>, %r: tensor<4x32xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'router_weight' dimension 1 is 32 but must be 64 ([experts, H])}}
  %o = moe.layer %x router_weight %r fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<2x3x64xf32>, tensor<4x32xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<2x3x64xf32>
  return
}

// -----

// The route's MatMul has one operand type.
func.func @route_router_weight_type(%x: tensor<?x64xf32>, %r: tensor<8x64xbf16>) {
  // expected-error @+1 {{'router_weight' must have the element type of 'input' ('f32')}}
  %w, %i = moe.route %x router_weight %r {k = 2 : i64} : tensor<?x64xf32> router_weight tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// Its input is the tokens [T, H]: the router weight's columns.
func.func @route_router_weight_hidden(%x: tensor<?x32xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{'router_weight' dimension 1 is 64 but must be 32 ([experts, H])}}
  %w, %i = moe.route %x router_weight %r {k = 2 : i64} : tensor<?x32xf32> router_weight tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// k is checked against the router weight's experts.
func.func @route_router_weight_k(%x: tensor<?x64xf32>, %r: tensor<4x64xf32>) {
  // expected-error @+1 {{k = 6 exceeds the number of experts (4)}}
  %w, %i = moe.route %x router_weight %r {k = 6 : i64} : tensor<?x64xf32> router_weight tensor<4x64xf32> -> tensor<?x6xf32>, tensor<?x6xi32>
  return
}

// -----

// Logits include the zero-computation experts.
func.func @case58(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'logits' dimension 1 is 4 but must be 5 ([T, E + zero experts])}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, zero_experts = [#moe.zero_expert<zero>]} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// k counts against all routable experts.
func.func @case59(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{k = 6 exceeds the number of experts (4)}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 6 : i64} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// One score bias per routed expert.
func.func @case60(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>, %b: tensor<5xf32>) {
  // expected-error @+1 {{'score_bias' dimension 0 is 5 but must be 4 (one per routed expert)}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 score_bias %b {k = 2 : i64} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>, tensor<5xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Shared experts need both projections.
func.func @case61(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>, %s1: tensor<1x128x64xf32>) {
  // expected-error @+1 {{shared experts need both 'shared_fc1' and 'shared_fc2'}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 shared_fc1 %s1 {k = 2 : i64} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>, tensor<1x128x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Shared experts use fc3 exactly when routed ones do.
func.func @case62(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>, %s1: tensor<1x128x64xf32>, %s2: tensor<1x64x128xf32>, %s3: tensor<1x128x64xf32>) {
  // expected-error @+1 {{'shared_fc3' must be given exactly when the routed experts have 'fc3'}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 shared_fc3 %s3 {k = 2 : i64} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>, tensor<1x128x64xf32>, tensor<1x64x128xf32>, tensor<1x128x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Shared expert weights are checked like routed ones.
func.func @case63(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>, %s1: tensor<1x128x64xf32>, %s2: tensor<1x64x96xf32>) {
  // expected-error @+1 {{'shared_fc1' dimension 1 is 128 but must be 96 (the intermediate size of shared_fc2)}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 {k = 2 : i64} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>, tensor<1x128x64xf32>, tensor<1x64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared gate without shared experts.
func.func @case64(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>, %g: tensor<64xf32>) {
  // expected-error @+1 {{'shared_fc3'/'shared_gate' need shared experts ('shared_fc1', 'shared_fc2')}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 shared_gate %g {k = 2 : i64} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Layer capacity factors are positive.
func.func @case65(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{capacity_factor must be positive, got 0}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, capacity_factor = 0.0} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A per-sequence capacity needs sequences and a capacity.
func.func @layer_per_sequence_2d(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'capacity_per_sequence' needs 'expert_capacity' and a [B, S, H] input}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 1 : i64, expert_capacity = 4 : i64, capacity_per_sequence} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Nothing is dropped without a capacity.
func.func @layer_pass_through_dropless(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'dropped_pass_through' needs a capacity ('capacity_factor' or 'expert_capacity'): nothing is dropped without one}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 1 : i64, dropped_pass_through} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Layer constant experts need their parameters.
func.func @case66(%x: tensor<?x64xf32>, %l: tensor<?x5xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{1 constant expert(s) need 'constants' and 'constant_gates'}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, zero_experts = [#moe.zero_expert<constant>]} : (tensor<?x64xf32>, tensor<?x5xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The output keeps the input's rank.
func.func @case67(%x: tensor<2x8x64xf32>, %l: tensor<16x4xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'result' must have rank 3 (the shape of 'input'), got rank 2}}
  %o = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<2x8x64xf32>, tensor<16x4xf32>, tensor<4x256x64xf32>, tensor<4x64x256xf32>) -> tensor<16x64xf32>
  return
}

// -----

// Expert weights are stacked: [E, out, in].
func.func @case68(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<256x64xf32>, %w2: tensor<4x64x256xf32>) {
  // expected-error @+1 {{'fc1' must have rank 3, got 'tensor<256x64xf32>'}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<256x64xf32>, tensor<4x64x256xf32>) -> tensor<?x64xf32>
  return
}

// -----

// top_groups must be at least 1.
func.func @case69(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{top_groups must be in [1, num_groups = 4], got 0}}
  %w, %i = moe.route %l {k = 2 : i64, num_groups = 4 : i64, top_groups = 0 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// The callee must exist.
func.func @parallel_call_missing(%n: index) {
  // expected-error @+1 {{'missing' does not reference a function}}
  moe.parallel_call @missing() count(%n)
  return
}

// -----

// The callee takes the captures, then (begin, end).
func.func private @wrong_body(%buf: memref<?xf32>, %begin: index)
func.func @parallel_call_signature(%buf: memref<?xf32>, %n: index) {
  // expected-error @+1 {{callee 'wrong_body' must take the captures, then (begin, end) as index, and return nothing; it has type '(memref<?xf32>, index) -> ()'}}
  moe.parallel_call @wrong_body(%buf) count(%n) : memref<?xf32>
  return
}

// -----

// The callee must be a function, not some other symbol.
memref.global "private" @not_a_function : memref<4xf32>
func.func @parallel_call_global(%n: index) {
  // expected-error @+1 {{'not_a_function' is not a function}}
  moe.parallel_call @not_a_function() count(%n)
  return
}

// -----

// Quantised weights: ui8 bytes need a #moe.quant attribute.
func.func @quant_missing_attr(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x32x64xui8>, %w2: tensor<4x64x32xui8>) {
  // expected-error @+1 {{integer weights 'fc1' need a 'quant' attribute saying how they dequantise}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x32x64xui8>, tensor<4x64x32xui8>) -> tensor<?x64xf32>
  return
}

// -----

func.func @quant_scales_without_attr(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x32x64xf32>, %w2: tensor<4x64x32xf32>, %s1: tensor<4x32xf32>) {
  // expected-error @+1 {{'fc1_scales' needs a 'quant' attribute}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc1_scales %s1 : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>, tensor<4x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @quant_float_weights(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x32x64xf32>, %w2: tensor<4x64x32xui8>, %s1: tensor<4x32xf32>, %s2: tensor<4x64xf32>) {
  // expected-error @+1 {{with 'quant', 'fc1' must hold packed ui8 bytes, got 'f32'}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {quant = #moe.quant<bits = 8>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x32x64xf32>, tensor<4x64x32xui8>, tensor<4x32xf32>, tensor<4x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @quant_missing_scales(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x32x64xui8>, %w2: tensor<4x64x32xui8>, %s1: tensor<4x32xf32>) {
  // expected-error @+1 {{quantised 'fc2' needs 'fc2_scales'}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc1_scales %s1 {quant = #moe.quant<bits = 8>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x32x64xui8>, tensor<4x64x32xui8>, tensor<4x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// 4-bit weights hold two values a byte: fc1 [E, I, H] is stored [E, I, H/2].
func.func @quant_int4_unpacked(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x32x64xui8>, %w2: tensor<4x64x16xui8>, %s1: tensor<4x32xf32>, %s2: tensor<4x64xf32>) {
  // expected-error @+1 {{'fc1' dimension 2 is 64 but must be 32 (the hidden size (packed: 2 values per byte))}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {quant = #moe.quant<bits = 4>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x32x64xui8>, tensor<4x64x16xui8>, tensor<4x32xf32>, tensor<4x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @quant_block_scales(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x32x32xui8>, %w2: tensor<4x64x16xui8>, %s1: tensor<4x32xf32>, %s2: tensor<4x64x1xf32>) {
  // expected-error @+1 {{'fc1_scales' must have rank 3 ([E, N, ceil(K / 32)] block-wise scales of fc1), got rank 2}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x32x32xui8>, tensor<4x64x16xui8>, tensor<4x32xf32>, tensor<4x64x1xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @quant_block_count(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x32x32xui8>, %w2: tensor<4x64x16xui8>, %s1: tensor<4x32x4xf32>, %s2: tensor<4x64x1xf32>) {
  // expected-error @+1 {{'fc1_scales' dimension 2 is 4 but must be 2 ([E, N, ceil(K / 32)] block-wise scales of fc1)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x32x32xui8>, tensor<4x64x16xui8>, tensor<4x32x4xf32>, tensor<4x64x1xf32>) -> tensor<?x64xf32>
  return
}

// -----

// 4-bit per-row zero points pack two rows a byte: [E, ceil(N / 2)].
func.func @quant_int4_row_zero_points(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x32x32xui8>, %w2: tensor<4x64x16xui8>, %s1: tensor<4x32xf32>, %s2: tensor<4x64xf32>, %z1: tensor<4x32xui8>) {
  // expected-error @+1 {{'fc1_zero_points' dimension 1 is 32 but must be 16 ([E, ceil(N / 2)]: 4-bit zero points packed two per byte)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 fc1_zero_points %z1 {quant = #moe.quant<bits = 4>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x32x32xui8>, tensor<4x64x16xui8>, tensor<4x32xf32>, tensor<4x64xf32>, tensor<4x32xui8>) -> tensor<?x64xf32>
  return
}

// -----

func.func @quant_scale_type(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x32x64xui8>, %w2: tensor<4x64x32xui8>, %b1: tensor<4x32xf32>, %s1: tensor<4x32xf16>, %s2: tensor<4x64xf16>) {
  // expected-error @+1 {{expert biases and scales must share one element type, got 'f16' and 'f32'}}
  %y = moe.expert %rows, %off fc1 %w1 fc1_bias %b1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {quant = #moe.quant<bits = 8>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x32x64xui8>, tensor<4x32xf32>, tensor<4x64x32xui8>, tensor<4x32xf16>, tensor<4x64xf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @quant_fc3_scales_without_fc3(%x: tensor<?x64xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x32x64xui8>, %w2: tensor<4x64x32xui8>, %s1: tensor<4x32xf32>, %s2: tensor<4x64xf32>, %s3: tensor<4x32xf32>) {
  // expected-error @+1 {{'fc3_scales' given without 'fc3'}}
  %y = moe.layer %x, %l fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 fc3_scales %s3 {k = 2 : i64, quant = #moe.quant<bits = 8>} : (tensor<?x64xf32>, tensor<?x4xf32>, tensor<4x32x64xui8>, tensor<4x64x32xui8>, tensor<4x32xf32>, tensor<4x64xf32>, tensor<4x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// expected-error @+1 {{#moe.quant bits must be 4 or 8, got 2}}
func.func @quant_bits() attributes {q = #moe.quant<bits = 2>} {
  return
}

// -----

// expected-error @+1 {{#moe.quant block_size must be 0 (per-row scales) or a power of two >= 16, got 24}}
func.func @quant_block_size() attributes {q = #moe.quant<bits = 4, block_size = 24>} {
  return
}

// -----

// Counts hold one entry per process of the grid.
shard.grid @moe_ep(shape = 2)
func.func @a2a_send_counts_size(%s: tensor<?x4xf32>, %c: tensor<3xi32>, %d: tensor<?x4xf32>) {
  // expected-error @+1 {{'send_counts' must hold one count per process of 'moe_ep', tensor<2xi32>, got 'tensor<3xi32>'}}
  %r, %p = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x4xf32>, tensor<3xi32>, tensor<3xi32> into tensor<?x4xf32>
  return
}

// -----

shard.grid @moe_ep(shape = 2)
func.func @a2a_recv_counts_size(%s: tensor<?x4xf32>, %c: tensor<2xi32>, %c3: tensor<3xi32>, %d: tensor<?x4xf32>) {
  // expected-error @+1 {{'recv_counts' must hold one count per process of 'moe_ep', tensor<2xi32>, got 'tensor<3xi32>'}}
  %r, %p = moe.all_to_all_start %s, %c, %c3 into %d on @moe_ep : tensor<?x4xf32>, tensor<2xi32>, tensor<3xi32> into tensor<?x4xf32>
  return
}

// -----

// The grid must exist...
func.func @a2a_no_grid(%s: tensor<?x4xf32>, %c: tensor<2xi32>, %d: tensor<?x4xf32>) {
  // expected-error @+1 {{'moe_ep' does not reference a shard.grid}}
  %r, %p = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x4xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x4xf32>
  return
}

// -----

// ... and be one-dimensional.
shard.grid @moe_ep(shape = 2x2)
func.func @a2a_grid_2d(%s: tensor<?x4xf32>, %c: tensor<2xi32>, %d: tensor<?x4xf32>) {
  // expected-error @+1 {{grid 'moe_ep' must have one static dimension}}
  %r, %p = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x4xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x4xf32>
  return
}

// -----

// Rows sent and received have one shape...
shard.grid @moe_ep(shape = 2)
func.func @a2a_row_shape(%s: tensor<?x4xf32>, %c: tensor<2xi32>, %d: tensor<?x8xf32>) {
  // expected-error @+1 {{rows must have one static shape on both sides, got 'tensor<?x4xf32>' and 'tensor<?x8xf32>'}}
  %r, %p = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x4xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x8xf32>
  return
}

// -----

// ... which is static...
shard.grid @moe_ep(shape = 2)
func.func @a2a_dynamic_row(%s: tensor<?x?xf32>, %c: tensor<2xi32>, %d: tensor<?x?xf32>) {
  // expected-error @+1 {{rows must have one static shape on both sides, got 'tensor<?x?xf32>' and 'tensor<?x?xf32>'}}
  %r, %p = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x?xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x?xf32>
  return
}

// -----

// ... and one element type.
shard.grid @moe_ep(shape = 2)
func.func @a2a_element_type(%s: tensor<?x4xf32>, %c: tensor<2xi32>, %d: tensor<?x4xf16>) {
  // expected-error @+1 {{'send' and 'dest' must be tensors of rows of one element type, got 'tensor<?x4xf32>' and 'tensor<?x4xf16>'}}
  %r, %p = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x4xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x4xf16>
  return
}

// -----

// A wait takes the pending tensor of its own start.
shard.grid @moe_ep(shape = 2)
func.func @a2a_wait_other_pending(%s: tensor<?x4xf32>, %c: tensor<2xi32>, %d: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %r, %p = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x4xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x4xf32>
  %r2, %p2 = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x4xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x4xf32>
  // expected-error @+1 {{'pending' and 'send' must be the 'pending' result and the 'send' operand of the start of 'request'}}
  %x = moe.all_to_all_wait %r, %p2, %s : tensor<?x4xf32>, tensor<?x4xf32>
  %y = moe.all_to_all_wait %r2, %p, %s : tensor<?x4xf32>, tensor<?x4xf32>
  return %x : tensor<?x4xf32>
}

// -----

// ... and the send tensor of its own start.
shard.grid @moe_ep(shape = 2)
func.func @a2a_wait_other_send(%s: tensor<?x4xf32>, %s2: tensor<?x4xf32>, %c: tensor<2xi32>, %d: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %r, %p = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x4xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x4xf32>
  // expected-error @+1 {{'pending' and 'send' must be the 'pending' result and the 'send' operand of the start of 'request'}}
  %x = moe.all_to_all_wait %r, %p, %s2 : tensor<?x4xf32>, tensor<?x4xf32>
  return %x : tensor<?x4xf32>
}

// -----

// The pending tensor is being written: nothing but the wait may use it.
shard.grid @moe_ep(shape = 2)
func.func @a2a_pending_second_use(%s: tensor<?x4xf32>, %c: tensor<2xi32>, %d: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %r, %p = moe.all_to_all_start %s, %c, %c into %d on @moe_ep : tensor<?x4xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x4xf32>
  // expected-error @+1 {{'pending' must have no use but this wait: it is being written until the wait returns}}
  %x = moe.all_to_all_wait %r, %p, %s : tensor<?x4xf32>, tensor<?x4xf32>
  return %p : tensor<?x4xf32>
}

// -----

// A request comes from a start.
func.func @a2a_wait_request_arg(%r: !moe.request, %p: tensor<?x4xf32>, %s: tensor<?x4xf32>) -> tensor<?x4xf32> {
  // expected-error @+1 {{'request' must come from a moe.all_to_all_start}}
  %x = moe.all_to_all_wait %r, %p, %s : tensor<?x4xf32>, tensor<?x4xf32>
  return %x : tensor<?x4xf32>
}

// -----

// An expert-parallel layer holds ceil(E / P) = ceil(5 / 2) = 3 experts.
shard.grid @moe_ep(shape = 2)
func.func @ep_layer_experts(%x: tensor<?x16xf32>, %l: tensor<?x5xf32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'fc1' dimension 0 is 2 but must be 3 (the experts of one rank, ceil(num_experts / ranks))}}
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 5>} : (tensor<?x16xf32>, tensor<?x5xf32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// A scaled input has no meaning for a zero-computation expert.
func.func @scale_input_zero_experts(%x: tensor<?x16xf32>, %l: tensor<?x5xf32>, %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'scale_input' is not supported with zero-computation experts: what a scaled input would mean for them is not defined}}
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 1 : i64, scoring = #moe.scoring<sigmoid>, scale_input, zero_experts = [#moe.zero_expert<copy>]} : (tensor<?x16xf32>, tensor<?x5xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

shard.grid @moe_ep(shape = 2)
func.func @scale_input_ep(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'scale_input' is not supported with expert_parallel}}
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 1 : i64, scale_input, expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 4>} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// Capacities are defined over all tokens, each rank routes only its own.
shard.grid @moe_ep(shape = 2)
func.func @ep_layer_capacity(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{a capacity is not supported with expert_parallel: each rank routes only its own tokens, so capacities would not be the layer's}}
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, capacity_factor = 1.5, expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 4>} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// expected-error @+1 {{#moe.expert_parallel needs ranks >= 1 and num_experts >= 1, got ranks = 0, num_experts = 4}}
func.func @ep_zero_ranks() attributes {ep = #moe.expert_parallel<grid = @moe_ep, ranks = 0, num_experts = 4>} {
  return
}

// -----

// expected-error @+1 {{#moe.expert_parallel needs ranks >= 1 and num_experts >= 1, got ranks = 2, num_experts = 0}}
func.func @ep_zero_experts() attributes {ep = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 0>} {
  return
}

// -----

// The fused combine needs the tokens and weights of the rows too.
func.func @combine_into_alone(%rows: tensor<?x8xf32>, %offsets: tensor<3xi32>, %w1: tensor<2x4x8xf32>, %w2: tensor<2x8x4xf32>, %into: tensor<?x8xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{'combine_into', 'row_tokens' and 'row_weights' go together}}
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 combine_into %into : (tensor<?x8xf32>, tensor<3xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// The fused combine's result is the accumulated output, [T, H].
func.func @combine_into_result(%rows: tensor<?x8xf32>, %offsets: tensor<3xi32>, %w1: tensor<2x4x8xf32>, %w2: tensor<2x8x4xf32>, %into: tensor<5x8xf32>, %tokens: tensor<?xi32>, %weights: tensor<?xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{result type 'tensor<?x8xf32>' must be the type of 'combine_into', 'tensor<5x8xf32>'}}
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 combine_into %into row_tokens %tokens row_weights %weights : (tensor<?x8xf32>, tensor<3xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>, tensor<5x8xf32>, tensor<?xi32>, tensor<?xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

func.func @combine_into_hidden(%rows: tensor<?x8xf32>, %offsets: tensor<3xi32>, %w1: tensor<2x4x8xf32>, %w2: tensor<2x8x4xf32>, %into: tensor<?x6xf32>, %tokens: tensor<?xi32>, %weights: tensor<?xf32>) -> tensor<?x6xf32> {
  // expected-error @+1 {{'combine_into' dimension 1 is 6 but must be 8 (the hidden size of 'rows')}}
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 combine_into %into row_tokens %tokens row_weights %weights : (tensor<?x8xf32>, tensor<3xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>, tensor<?x6xf32>, tensor<?xi32>, tensor<?xf32>) -> tensor<?x6xf32>
  return %y : tensor<?x6xf32>
}

// -----

func.func @row_weights_count(%rows: tensor<16x8xf32>, %offsets: tensor<3xi32>, %w1: tensor<2x4x8xf32>, %w2: tensor<2x8x4xf32>, %into: tensor<8x8xf32>, %tokens: tensor<16xi32>, %weights: tensor<8xf32>) -> tensor<8x8xf32> {
  // expected-error @+1 {{'row_weights' dimension 0 is 8 but must be 16 (the row count of 'rows')}}
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 combine_into %into row_tokens %tokens row_weights %weights : (tensor<16x8xf32>, tensor<3xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>, tensor<8x8xf32>, tensor<16xi32>, tensor<8xf32>) -> tensor<8x8xf32>
  return %y : tensor<8x8xf32>
}

// -----

func.func @gather_tokens_rank(%x: tensor<8x8xf32>, %offsets: tensor<3xi32>, %tokens: tensor<8x2xi32>, %w1: tensor<2x4x8xf32>, %w2: tensor<2x8x4xf32>) -> tensor<16x8xf32> {
  // expected-error @+1 {{'gather_tokens' must have rank 1, got 'tensor<8x2xi32>'}}
  %y = moe.expert %x, %offsets gather_tokens %tokens fc1 %w1 fc2 %w2 : (tensor<8x8xf32>, tensor<3xi32>, tensor<8x2xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<16x8xf32>
  return %y : tensor<16x8xf32>
}

// -----

func.func @gather_result_rows(%x: tensor<8x8xf32>, %offsets: tensor<3xi32>, %tokens: tensor<16xi32>, %w1: tensor<2x4x8xf32>, %w2: tensor<2x8x4xf32>) -> tensor<8x8xf32> {
  // expected-error @+1 {{'result' dimension 0 is 8 but must be 16 (the length of 'gather_tokens' by the hidden size of 'rows')}}
  %y = moe.expert %x, %offsets gather_tokens %tokens fc1 %w1 fc2 %w2 : (tensor<8x8xf32>, tensor<3xi32>, tensor<16xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<8x8xf32>
  return %y : tensor<8x8xf32>
}

// -----

func.func @gather_row_weights(%x: tensor<8x8xf32>, %offsets: tensor<3xi32>, %tokens: tensor<16xi32>, %w1: tensor<2x4x8xf32>, %w2: tensor<2x8x4xf32>, %into: tensor<8x8xf32>, %weights: tensor<8xf32>) -> tensor<8x8xf32> {
  // expected-error @+1 {{'row_weights' dimension 0 is 8 but must be 16 (the length of 'gather_tokens')}}
  %y = moe.expert %x, %offsets gather_tokens %tokens fc1 %w1 fc2 %w2 combine_into %into row_tokens %tokens row_weights %weights : (tensor<8x8xf32>, tensor<3xi32>, tensor<16xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>, tensor<8x8xf32>, tensor<16xi32>, tensor<8xf32>) -> tensor<8x8xf32>
  return %y : tensor<8x8xf32>
}

// -----

// Panel-major weights are [E, N / P, K, P].
func.func @panel_rank(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x1x256x64xf32>) {
  // expected-error @+1 {{'fc1' must have rank 4, got 'tensor<4x256x64xf32>'}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {panel_width = 64 : i64} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x1x256x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A panel holds panel_width columns.
func.func @panel_width_mismatch(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x4x64x64xf32>, %w2: tensor<4x2x256x32xf32>) {
  // expected-error @+1 {{'fc2' dimension 3 is 32 but must be 64 (the panel width of panel-major weights)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {panel_width = 64 : i64} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x4x64x64xf32>, tensor<4x2x256x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The panels' columns together are the logical weight's rows.
func.func @panel_columns(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x4x64x64xf32>, %w2: tensor<4x2x256x64xf32>) {
  // expected-error @+1 {{'fc2' dimension 1 is 128 but must be 64 (the hidden size)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {panel_width = 64 : i64} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x4x64x64xf32>, tensor<4x2x256x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Panel-major bf16 weights are [E, N / P, K / 2, P, 2]: pairs of k.
func.func @panel_bf16_rank(%rows: tensor<?x64xbf16>, %off: tensor<5xi32>, %w1: tensor<4x4x64x64xbf16>, %w2: tensor<4x1x128x64x2xbf16>) {
  // expected-error @+1 {{'fc1' must have rank 5, got 'tensor<4x4x64x64xbf16>'}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {panel_width = 64 : i64} : (tensor<?x64xbf16>, tensor<5xi32>, tensor<4x4x64x64xbf16>, tensor<4x1x128x64x2xbf16>) -> tensor<?x64xbf16>
  return
}

// -----

func.func @panel_bf16_pair(%rows: tensor<?x64xbf16>, %off: tensor<5xi32>, %w1: tensor<4x4x32x64x2xbf16>, %w2: tensor<4x1x64x64x4xbf16>) {
  // expected-error @+1 {{'fc2' dimension 4 is 4 but must be 2 (the pair of k of panel-major bf16 weights)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {panel_width = 64 : i64} : (tensor<?x64xbf16>, tensor<5xi32>, tensor<4x4x32x64x2xbf16>, tensor<4x1x64x64x4xbf16>) -> tensor<?x64xbf16>
  return
}

// -----

// The pairs together are the logical K (fc2's 2 x 64 = 128 is not I = 256).
func.func @panel_bf16_depth(%rows: tensor<?x64xbf16>, %off: tensor<5xi32>, %w1: tensor<4x4x32x64x2xbf16>, %w2: tensor<4x1x64x64x2xbf16>) {
  // expected-error @+1 {{'fc1' dimension 1 is 256 but must be 128 (the intermediate size of fc2)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 {panel_width = 64 : i64} : (tensor<?x64xbf16>, tensor<5xi32>, tensor<4x4x32x64x2xbf16>, tensor<4x1x64x64x2xbf16>) -> tensor<?x64xbf16>
  return
}

// -----

// Block-wise scales of panel-major weights are panel-major too.
func.func @panel_quant_scales(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x4x8x64x4xui8>, %w2: tensor<4x1x32x64x4xui8>, %s1: tensor<4x256x2xf32>, %s2: tensor<4x1x8x64xf32>) {
  // expected-error @+1 {{'fc1_scales' must have rank 4 ([E, N / 64, ceil(K / 32), 64] panel-major block-wise scales of fc1), got rank 3}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {panel_width = 64 : i64, quant = #moe.quant<bits = 4, block_size = 32>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x4x8x64x4xui8>, tensor<4x1x32x64x4xui8>, tensor<4x256x2xf32>, tensor<4x1x8x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Panel-major quantised weights hold 4-byte words of k.
func.func @panel_quant_word(%rows: tensor<?x64xf32>, %off: tensor<5xi32>, %w1: tensor<4x4x8x64x4xui8>, %w2: tensor<4x1x32x64x2xui8>, %s1: tensor<4x256xf32>, %s2: tensor<4x64xf32>) {
  // expected-error @+1 {{'fc2' dimension 4 is 2 but must be 4 (the 4-byte word of panel-major quantised weights)}}
  %y = moe.expert %rows, %off fc1 %w1 fc2 %w2 fc1_scales %s1 fc2_scales %s2 {panel_width = 64 : i64, quant = #moe.quant<bits = 4, block_size = 0>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x4x8x64x4xui8>, tensor<4x1x32x64x2xui8>, tensor<4x256xf32>, tensor<4x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// moe.record_routing takes a route's ids, [T, k].
func.func @record_routing_rank(%ids: tensor<6xi32>) {
  // expected-error @+1 {{'ids' must be [T, k], got 'tensor<6xi32>'}}
  moe.record_routing %ids {layer = 0 : i64, num_experts = 8 : i64} : tensor<6xi32>
  return
}

// -----

func.func @record_routing_experts(%ids: tensor<6x2xi32>) {
  // expected-error @+1 {{attribute 'num_experts' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  moe.record_routing %ids {layer = 0 : i64, num_experts = 0 : i64} : tensor<6x2xi32>
  return
}

// -----

// moe.prefetch_experts names experts by a route's ids, [T, k].
func.func @prefetch_experts_rank(%ids: tensor<6xi32>, %w: tensor<8x16x4xf32>) {
  // expected-error @+1 {{'ids' must be [T, k], got 'tensor<6xi32>'}}
  moe.prefetch_experts %ids, %w {layer = 0 : i64} : tensor<6xi32>, tensor<8x16x4xf32>
  return
}

// -----

func.func @prefetch_experts_no_weight(%ids: tensor<6x2xi32>) {
  // expected-error @+1 {{needs at least one expert-stacked weight}}
  "moe.prefetch_experts"(%ids) {layer = 0 : i64} : (tensor<6x2xi32>) -> ()
  return
}

// -----

// An expert is an address range: the weights' shapes must be static.
func.func @prefetch_experts_dynamic(%ids: tensor<6x2xi32>, %w: tensor<?x16x4xf32>) {
  // expected-error @+1 {{weight #0 must be a static expert-stacked tensor [E, ...], got 'tensor<?x16x4xf32>'}}
  moe.prefetch_experts %ids, %w {layer = 0 : i64} : tensor<6x2xi32>, tensor<?x16x4xf32>
  return
}

// -----

func.func @prefetch_experts_sub_byte(%ids: tensor<6x2xi32>, %w: tensor<8x16x4xi4>) {
  // expected-error @+1 {{weight #0 must have whole-byte elements (an expert's bytes are its address range), got 'i4'}}
  moe.prefetch_experts %ids, %w {layer = 0 : i64} : tensor<6x2xi32>, tensor<8x16x4xi4>
  return
}

// -----

func.func @prefetch_experts_counts(%ids: tensor<6x2xi32>, %w1: tensor<8x16x4xf32>, %w2: tensor<4x4x16xf32>) {
  // expected-error @+1 {{weights must stack the same number of experts: weight #1 has 4, weight #0 has 8}}
  moe.prefetch_experts %ids, %w1, %w2 {layer = 0 : i64} : tensor<6x2xi32>, tensor<8x16x4xf32>, tensor<4x4x16xf32>
  return
}
