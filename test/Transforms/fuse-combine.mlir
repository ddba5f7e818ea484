// RUN: moe-opt %s --split-input-file --moe-fuse-combine --cse | FileCheck %s

// The routed experts' rows go straight into a zero-filled [T, H] output:
// the expert gets each row's token (dispatch's row_tokens) and routing
// weight (gathered through slot_rows: the slot of the row's token that
// dispatched it), and the combine is gone.
// CHECK-LABEL: func @routed_only
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[IDS:.*]]: tensor<?x2xi32>, %[[W:.*]]: tensor<?x2xf32>, %[[W1:.*]]: tensor<4x256x64xf32>, %[[W2:.*]]: tensor<4x64x128xf32>)
// CHECK-DAG:     %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:     %[[C1:.*]] = arith.constant 1 : index
// CHECK-DAG:     %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK:         %[[ROWS:.*]], %[[OFF:.*]], %[[TOK:.*]], %[[SLOTS:.*]] = moe.dispatch %[[X]], %[[IDS]]
// CHECK:         %[[T:.*]] = tensor.dim %[[W]], %[[C0]]
// CHECK:         %[[EMPTY:.*]] = tensor.empty(%[[T]]) : tensor<?x64xf32>
// CHECK:         %[[BASE:.*]] = linalg.fill ins(%[[ZERO]] : f32) outs(%[[EMPTY]] : tensor<?x64xf32>)
// CHECK:         %[[N:.*]] = tensor.dim %[[TOK]], %[[C0]]
// CHECK:         %[[INIT:.*]] = tensor.empty(%[[N]]) : tensor<?xf32>
// CHECK:         %[[RW:.*]] = linalg.generic {{.*}} ins(%[[TOK]] : tensor<?xi32>) outs(%[[INIT]] : tensor<?xf32>)
// CHECK:           %[[R:.*]] = arith.index_cast %{{.*}} : index to i32
// CHECK:           %[[TOKEN:.*]] = arith.select
// CHECK:           %[[S0:.*]] = tensor.extract %[[SLOTS]][%[[TOKEN]], %[[C0]]]
// CHECK:           arith.cmpi eq, %[[S0]], %[[R]] : i32
// CHECK:           tensor.extract %[[W]][%[[TOKEN]], %[[C0]]]
// CHECK:           %[[S1:.*]] = tensor.extract %[[SLOTS]][%[[TOKEN]], %[[C1]]]
// CHECK:           arith.cmpi eq, %[[S1]], %[[R]] : i32
// CHECK:           tensor.extract %[[W]][%[[TOKEN]], %[[C1]]]
// CHECK:         %[[OUT:.*]] = moe.expert %[[ROWS]], %[[OFF]] fc1 %[[W1]] fc2 %[[W2]] combine_into %[[BASE]] row_tokens %[[TOK]] row_weights %[[RW]] {activation = #moe.activation<swiglu>}
// CHECK-SAME:      -> tensor<?x64xf32>
// CHECK-NOT:     moe.combine
// CHECK:         return %[[OUT]]
func.func @routed_only(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x128xf32>) -> tensor<?x64xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x128xf32>) -> tensor<?x64xf32>
  %out = moe.combine %y, %w, %ids, %slot_rows {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x64xf32>
  return %out : tensor<?x64xf32>
}

// -----

// What combine adds besides the routed experts (a gated shared expert, a
// copy expert) stays a moe.combine, of an empty expert output; the expert
// accumulates into its result.
// CHECK-LABEL: func @shared_and_copy
// CHECK-SAME:    (%[[X:.*]]: tensor<16x32xf32>, %[[IDS:.*]]: tensor<16x1xi32>, %[[W:.*]]: tensor<16x1xf32>, %{{.*}}: tensor<2x16x32xf32>, %{{.*}}: tensor<2x32x16xf32>, %[[SH:.*]]: tensor<16x32xf32>, %[[GATE:.*]]: tensor<32xf32>)
// CHECK:         %[[ROWS:.*]], %[[OFF:.*]], %[[TOK:.*]], %[[SLOTS:.*]] = moe.dispatch
// CHECK:         %[[NONE:.*]] = tensor.empty() : tensor<0x32xf32>
// CHECK:         %[[BASE:.*]] = moe.combine %[[NONE]], %[[W]], %[[IDS]], %[[SLOTS]] input %[[X]] shared %[[SH]] shared_gate %[[GATE]] {num_experts = 2 : i64, zero_experts = [#moe.zero_expert<copy>]} : (tensor<0x32xf32>, tensor<16x1xf32>, tensor<16x1xi32>, tensor<16x1xi32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<32xf32>) -> tensor<16x32xf32>
// CHECK:         %[[RW:.*]] = linalg.generic {{.*}} ins(%[[TOK]] : tensor<16xi32>)
// CHECK:         moe.expert %[[ROWS]], %[[OFF]] {{.*}} combine_into %[[BASE]] row_tokens %[[TOK]] row_weights %[[RW]]
// CHECK-SAME:      -> tensor<16x32xf32>
func.func @shared_and_copy(%x: tensor<16x32xf32>, %ids: tensor<16x1xi32>, %w: tensor<16x1xf32>, %w1: tensor<2x16x32xf32>, %w2: tensor<2x32x16xf32>, %shared: tensor<16x32xf32>, %gate: tensor<32xf32>) -> tensor<16x32xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 2 : i64} : tensor<16x32xf32>, tensor<16x1xi32> -> tensor<16x32xf32>, tensor<3xi32>, tensor<16xi32>, tensor<16x1xi32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<16x32xf32>, tensor<3xi32>, tensor<2x16x32xf32>, tensor<2x32x16xf32>) -> tensor<16x32xf32>
  %out = moe.combine %y, %w, %ids, %slot_rows input %x shared %shared shared_gate %gate {num_experts = 2 : i64, zero_experts = [#moe.zero_expert<copy>]} : (tensor<16x32xf32>, tensor<16x1xf32>, tensor<16x1xi32>, tensor<16x1xi32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<32xf32>) -> tensor<16x32xf32>
  return %out : tensor<16x32xf32>
}

// -----

// Ungated shared experts (DeepSeek) and nothing else: the routed rows are
// added to the shared experts' output itself.
// CHECK-LABEL: func @ungated_shared
// CHECK-SAME:    %[[SH:[^:]*]]: tensor<16x32xf32>)
// CHECK-NOT:     moe.combine
// CHECK:         moe.expert {{.*}} combine_into %[[SH]] row_tokens
func.func @ungated_shared(%x: tensor<16x32xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %shared: tensor<16x32xf32>) -> tensor<16x32xf32> {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<16x32xf32>, tensor<16x2xi32> -> tensor<32x32xf32>, tensor<5xi32>, tensor<32xi32>, tensor<16x2xi32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 : (tensor<32x32xf32>, tensor<5xi32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>) -> tensor<32x32xf32>
  %out = moe.combine %y, %w, %ids, %slot_rows shared %shared {num_experts = 4 : i64} : (tensor<32x32xf32>, tensor<16x2xf32>, tensor<16x2xi32>, tensor<16x2xi32>, tensor<16x32xf32>) -> tensor<16x32xf32>
  return %out : tensor<16x32xf32>
}

// -----

// Not fused: an expert output that is also returned (it would have to be
// materialised anyway), a bf16 output (a bf16 accumulator would be rounded
// at every row), and expert outputs that do not come from a moe.expert
// (expert parallelism: they arrive by an exchange).
// CHECK-LABEL: func @left_alone
// CHECK-COUNT-3: moe.combine %{{[^,]*}}, %
// CHECK-NOT:     combine_into
func.func @left_alone(%x: tensor<?x64xf32>, %xb: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w1: tensor<4x256x64xf32>, %w2: tensor<4x64x128xf32>, %received: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xbf16>, tensor<?x64xf32>) {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>} : (tensor<?x64xf32>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x128xf32>) -> tensor<?x64xf32>
  %out = moe.combine %y, %w, %ids, %slot_rows {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x64xf32>
  %rowsb, %offsetsb, %row_tokensb, %slot_rowsb = moe.dispatch %xb, %ids {num_experts = 4 : i64} : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  %yb = moe.expert %rowsb, %offsetsb fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>} : (tensor<?x64xbf16>, tensor<5xi32>, tensor<4x256x64xf32>, tensor<4x64x128xf32>) -> tensor<?x64xbf16>
  %outb = moe.combine %yb, %w, %ids, %slot_rowsb {num_experts = 4 : i64} : (tensor<?x64xbf16>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x64xbf16>
  %outr = moe.combine %received, %w, %ids, %slot_rows {num_experts = 4 : i64} : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x64xf32>
  return %y, %out, %outb, %outr : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xbf16>, tensor<?x64xf32>
}
