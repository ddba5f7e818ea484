// RUN: moe-opt %s --split-input-file --moe-decompose-layer --moe-overlap-communication="chunks=3 split=tokens" | FileCheck %s --check-prefix=PIPE
// RUN: moe-opt %s --split-input-file --moe-decompose-layer --moe-overlap-communication="bandwidth=0.5 split=tokens" | FileCheck %s --check-prefix=AUTO
// RUN: moe-opt %s --split-input-file --moe-decompose-layer --moe-overlap-communication=report=true -o /dev/null 2>&1 | FileCheck %s --check-prefix=REPORT
// RUN: moe-opt %s --split-input-file --moe-decompose-layer --moe-overlap-communication=chunks=2 | FileCheck %s --check-prefix=EXP
// RUN: moe-opt %s --split-input-file --moe-decompose-layer=ep-dispatch=rank --moe-overlap-communication=chunks=2 | FileCheck %s --check-prefix=RANK
// RUN: moe-opt %s --split-input-file --moe-decompose-layer=ep-dispatch=rank --moe-overlap-communication="chunks=2 report=true" -o /dev/null 2>&1 | FileCheck %s --check-prefix=RANK-REPORT
// RUN: not moe-opt %s --split-input-file --moe-decompose-layer=ep-dispatch=rank --moe-overlap-communication="chunks=2 split=experts" 2>&1 | FileCheck %s --check-prefix=RANK-EXPERTS

// split=experts (the default), chunks = 2: routing, dispatch and the count
// exchange stay whole; each chunk is one of every rank's two local experts.
// A chunk's rows for each rank are packed into one send tensor, and the
// chunks are pipelined over three stages (send / experts and return /
// unpack): chunk 1's rows are sent before chunk 0's experts run, and chunk
// 0's results are unpacked into dispatch order after chunk 1's experts.
// The layer's combine reads the unpacked rows.
// EXP-LABEL: func.func @ep_small
// EXP-SAME:  attributes {moe.overlap = {chunks = 2 : i64,
// EXP:       moe.route
// EXP-NOT:   moe.route
// EXP:       %[[ROWS:.*]], %[[OFFS:.*]], %{{.*}}, %[[SLOTS:.*]] = moe.dispatch
// EXP:       %[[CREQ:.*]], %[[CPEND:.*]] = moe.all_to_all_start %{{.*}} into %{{.*}} on @moe_ep : tensor<4xi32>
// EXP:       %[[COUNTS:.*]] = moe.all_to_all_wait %[[CREQ]], %[[CPEND]]
// EXP:       %[[P0A:.*]] = tensor.insert_slice %{{.*}} into %{{.*}}[%{{.*}}, 0]
// EXP:       %[[P0:.*]] = tensor.insert_slice %{{.*}} into %[[P0A]]
// EXP:       %[[RREQ0:.*]], %[[RPEND0:.*]] = moe.all_to_all_start %[[P0]], %[[SC0:[^ ,]+]], %[[RC0:[^ ,]+]] into
// EXP:       %[[P1A:.*]] = tensor.insert_slice %{{.*}} into %{{.*}}[%{{.*}}, 0]
// EXP:       %[[P1:.*]] = tensor.insert_slice %{{.*}} into %[[P1A]]
// EXP:       %[[RREQ1:.*]], %[[RPEND1:.*]] = moe.all_to_all_start %[[P1]], %[[SC1:[^ ,]+]], %[[RC1:[^ ,]+]] into
// EXP:       %[[IN0:.*]] = moe.all_to_all_wait %[[RREQ0]], %[[RPEND0]], %[[P0]]
// EXP:       scf.for
// EXP:       moe.dispatch %[[IN0]], %{{.*}} {num_experts = 2 : i64}
// EXP:       %[[Y0:.*]] = moe.expert
// EXP:       %[[B0:.*]] = moe.combine %[[Y0]], {{.*}} {num_experts = 2 : i64}
// EXP:       %[[BREQ0:.*]], %[[BPEND0:.*]] = moe.all_to_all_start %[[B0]], %[[RC0]], %[[SC0]] into
// EXP:       %[[IN1:.*]] = moe.all_to_all_wait %[[RREQ1]], %[[RPEND1]], %[[P1]]
// EXP:       moe.dispatch %[[IN1]], %{{.*}} {num_experts = 2 : i64}
// EXP:       %[[Y1:.*]] = moe.expert
// EXP:       %[[B1:.*]] = moe.combine %[[Y1]]
// EXP:       %[[BREQ1:.*]], %[[BPEND1:.*]] = moe.all_to_all_start %[[B1]], %[[RC1]], %[[SC1]] into
// EXP:       moe.all_to_all_wait %[[BREQ0]], %[[BPEND0]], %[[B0]]
// EXP:       tensor.insert_slice
// EXP:       %[[U0:.*]] = tensor.insert_slice
// EXP:       moe.all_to_all_wait %[[BREQ1]], %[[BPEND1]], %[[B1]]
// EXP:       %[[U1A:.*]] = tensor.insert_slice %{{.*}} into %[[U0]]
// EXP:       %[[U1:.*]] = tensor.insert_slice %{{.*}} into %[[U1A]]
// EXP:       moe.combine %[[U1]], %{{.*}}, %{{.*}}, %[[SLOTS]] {num_experts = 4 : i64}
// EXP-NOT:   moe.all_to_all
// EXP:       return

// chunks = 3: the rank's tokens [0, T) are cut at T * i / 3 and every chunk
// runs the whole expert-parallel chain; the four stages of the chunks are
// interleaved (step t emits stage s of chunk t - s) so that, e.g., chunk 1's
// route, dispatch and count exchange start before chunk 0's rows arrive,
// and chunk 0's return exchange is in flight while chunk 1's experts run.
// Each chunk's output lands in its rows of the result.
// PIPE-LABEL: func.func @ep_small
// PIPE-SAME:  (%[[X:.*]]: tensor<?x16xf32>, %[[L:.*]]: tensor<?x4xf32>, %[[W1:.*]]: tensor<2x8x16xf32>, %[[W2:.*]]: tensor<2x16x8xf32>) -> tensor<?x16xf32> attributes {moe.overlap = {chunks = 3 : i64,
// PIPE:       %[[T:.*]] = tensor.dim %[[L]], %{{.*}} : tensor<?x4xf32>
// PIPE:       %[[S0:.*]] = arith.divui %{{.*}}, %{{.*}} : index
// PIPE:       %[[S1:.*]] = arith.divui %{{.*}}, %{{.*}} : index
// PIPE:       %[[S2:.*]] = arith.divui %{{.*}}, %{{.*}} : index
// PIPE:       %[[L0:.*]] = tensor.extract_slice %[[L]][%[[S0]], 0] [%{{.*}}, 4] [1, 1]
// PIPE:       %[[X0:.*]] = tensor.extract_slice %[[X]][%[[S0]], 0] [%{{.*}}, 16] [1, 1]
// PIPE:       %[[L1:.*]] = tensor.extract_slice %[[L]][%[[S1]], 0]
// PIPE:       %[[X1:.*]] = tensor.extract_slice %[[X]][%[[S1]], 0]
// PIPE:       %[[L2:.*]] = tensor.extract_slice %[[L]][%[[S2]], 0]
// PIPE:       %[[X2:.*]] = tensor.extract_slice %[[X]][%[[S2]], 0]
// PIPE:       %[[OUT:.*]] = tensor.empty(%[[T]]) : tensor<?x16xf32>
// Step 0: chunk 0 stage 0.
// PIPE:       %[[W_0:.*]], %[[IDS_0:.*]] = moe.route %[[L0]]
// PIPE-NEXT:  %[[ROWS_0:.*]], %{{.*}}, %{{.*}}, %[[SLOTS_0:.*]] = moe.dispatch %[[X0]], %[[IDS_0]] {num_experts = 4 : i64}
// PIPE:       %[[CREQ_0:.*]], %{{.*}} = moe.all_to_all_start %{{.*}} : tensor<4xi32>, tensor<2xi32>, tensor<2xi32> into tensor<4xi32>
// Step 1: chunk 1 stage 0, then chunk 0 stage 1.
// PIPE:       moe.route %[[L1]]
// PIPE-NEXT:  %[[ROWS_1:.*]], %{{.*}}, %{{.*}}, %{{.*}} = moe.dispatch %[[X1]]
// PIPE:       %[[CREQ_1:.*]], %{{.*}} = moe.all_to_all_start %{{.*}} : tensor<4xi32>
// PIPE:       moe.all_to_all_wait %[[CREQ_0]],
// PIPE:       %[[RREQ_0:.*]], %{{.*}} = moe.all_to_all_start %[[ROWS_0]], {{.*}} : tensor<?x16xf32>
// PIPE:       %[[LIDS_0:.*]]:2 = scf.for
// Step 2: chunk 2 stage 0, chunk 1 stage 1, chunk 0 stage 2 (its experts,
// then the start of its return exchange).
// PIPE:       moe.route %[[L2]]
// PIPE-NEXT:  %[[ROWS_2:.*]], %{{.*}}, %{{.*}}, %{{.*}} = moe.dispatch %[[X2]]
// PIPE:       %[[CREQ_2:.*]], %{{.*}} = moe.all_to_all_start %{{.*}} : tensor<4xi32>
// PIPE:       moe.all_to_all_wait %[[CREQ_1]],
// PIPE:       %[[RREQ_1:.*]], %{{.*}} = moe.all_to_all_start %[[ROWS_1]],
// PIPE:       %[[LIDS_1:.*]]:2 = scf.for
// PIPE:       %[[RECV_0:.*]] = moe.all_to_all_wait %[[RREQ_0]],
// PIPE-NEXT:  %[[LROWS_0:.*]], %[[LOFF_0:.*]], %{{.*}}, %{{.*}} = moe.dispatch %[[RECV_0]], %[[LIDS_0]]#0 {num_experts = 2 : i64}
// PIPE-NEXT:  %[[Y_0:.*]] = moe.expert %[[LROWS_0]], %[[LOFF_0]] fc1 %[[W1]] fc2 %[[W2]]
// PIPE-NEXT:  %[[LOUT_0:.*]] = moe.combine %[[Y_0]], {{.*}} {num_experts = 2 : i64}
// PIPE-NEXT:  %[[BREQ_0:.*]], %{{.*}} = moe.all_to_all_start %[[LOUT_0]],
// Step 3: chunk 2 stage 1, chunk 1 stage 2, chunk 0 stage 3 (return wait,
// final combine, insertion at its offset).
// PIPE:       moe.all_to_all_wait %[[CREQ_2]],
// PIPE:       %[[RREQ_2:.*]], %{{.*}} = moe.all_to_all_start %[[ROWS_2]],
// PIPE:       %[[LIDS_2:.*]]:2 = scf.for
// PIPE:       %[[RECV_1:.*]] = moe.all_to_all_wait %[[RREQ_1]],
// PIPE-NEXT:  moe.dispatch %[[RECV_1]], %[[LIDS_1]]#0
// PIPE-NEXT:  moe.expert
// PIPE-NEXT:  %[[LOUT_1:.*]] = moe.combine
// PIPE-NEXT:  %[[BREQ_1:.*]], %{{.*}} = moe.all_to_all_start %[[LOUT_1]],
// PIPE-NEXT:  %[[BACK_0:.*]] = moe.all_to_all_wait %[[BREQ_0]],
// PIPE-NEXT:  %[[C_0:.*]] = moe.combine %[[BACK_0]], %[[W_0]], %[[IDS_0]], %[[SLOTS_0]] {num_experts = 4 : i64}
// PIPE:       %[[OUT_0:.*]] = tensor.insert_slice %[[C_0]] into %[[OUT]][%[[S0]], 0]
// Step 4: chunk 2 stage 2, chunk 1 stage 3.
// PIPE:       %[[RECV_2:.*]] = moe.all_to_all_wait %[[RREQ_2]],
// PIPE-NEXT:  moe.dispatch %[[RECV_2]], %[[LIDS_2]]#0
// PIPE-NEXT:  moe.expert
// PIPE-NEXT:  %[[LOUT_2:.*]] = moe.combine
// PIPE-NEXT:  %[[BREQ_2:.*]], %{{.*}} = moe.all_to_all_start %[[LOUT_2]],
// PIPE-NEXT:  %[[BACK_1:.*]] = moe.all_to_all_wait %[[BREQ_1]],
// PIPE-NEXT:  %[[C_1:.*]] = moe.combine %[[BACK_1]]
// PIPE:       %[[OUT_1:.*]] = tensor.insert_slice %[[C_1]] into %[[OUT_0]][%[[S1]], 0]
// Step 5: chunk 2 stage 3.
// PIPE-NEXT:  %[[BACK_2:.*]] = moe.all_to_all_wait %[[BREQ_2]],
// PIPE-NEXT:  %[[C_2:.*]] = moe.combine %[[BACK_2]]
// PIPE:       %[[OUT_2:.*]] = tensor.insert_slice %[[C_2]] into %[[OUT_1]][%[[S2]], 0]
// PIPE-NEXT:  return %[[OUT_2]] : tensor<?x16xf32>
// With the default model (256 tokens of 16 features) the exchanges'
// latency dominates and one chunk is best: the IR is the plain chain.
// AUTO-LABEL: func.func @ep_small
// AUTO-SAME:  attributes {moe.overlap = {chunks = 1 : i64, communication_share = {{.*}} : f64, predicted_us = [[US:.*]] : f64, serial_us = [[US]] : f64, split = "none", tokens = 256 : i64}}
// AUTO-NOT:   tensor.extract_slice
// AUTO:       moe.route %arg1 {k = 2 : i64}
// AUTO-NOT:   moe.route
// AUTO:       return
// The report lists no split, then expert chunks up to the rank's two
// experts, then token chunks up to max-chunks.
// REPORT:      remark: expert-parallel overlap model (2 ranks, 256 tokens per rank):
// REPORT-NEXT: split    chunks  dispatch_us  expert_us  return_us  total_us  gain
// REPORT-NEXT: {{^none +1 }}
// REPORT-NEXT: {{^experts +2 }}
// REPORT-NEXT: {{^tokens +2 }}
// REPORT:      {{^tokens +8 }}
// REPORT-NEXT: chosen: none, 1 chunk
// A row per token and rank (ep-dispatch=rank) serves several of a rank's
// experts, so only token chunks split it: the report has no expert rows,
// its exchanges carry the ranks a token's experts fall on (P (1 - (1 -
// 1/P)^k) = 1.5 rows a token here, not k = 2) and pay a latency more for
// the ids and weights; chunks=2 clones the chain per token chunk, each
// with its four exchanges (counts; rows with ids and weights; results).
// RANK-REPORT:      remark: expert-parallel overlap model (2 ranks, 256 tokens per rank):
// RANK-REPORT-NEXT: split    chunks  dispatch_us  expert_us  return_us  total_us  gain
// RANK-REPORT-NEXT: {{^none +1 }}
// RANK-REPORT-NEXT: {{^tokens +2 }}
// RANK-REPORT:      chosen: tokens, 2 chunks
// RANK-LABEL: func.func @ep_small
// RANK-SAME:  moe.overlap = {chunks = 2 : i64, {{.*}}, split = "tokens"
// RANK-COUNT-8: moe.all_to_all_start
// RANK-NOT:   moe.all_to_all_start
// RANK:       return
// RANK-EXPERTS: error: -moe-overlap-communication: split=experts needs a row per token and expert (-moe-decompose-layer ep-dispatch=expert); this layer sends a row per token and rank
shard.grid @moe_ep(shape = 2)
func.func @ep_small(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) -> tensor<?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 4>} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// Large experts (H = 1024, I = 2048): the experts dominate. On a slow link
// (AUTO, 0.5 GB/s, token chunks only) splitting hides the exchanges until,
// past 6 chunks, each chunk is bound by rereading the weights; on the
// default link the exchanges are too small to be worth a split (REPORT).
// PIPE-LABEL: func.func @ep_large
// PIPE-SAME:  moe.overlap = {chunks = 3 : i64
// AUTO-LABEL: func.func @ep_large
// AUTO-SAME:  attributes {moe.overlap = {chunks = 6 : i64, communication_share = {{.*}}, tokens = 256 : i64}}
// AUTO-COUNT-6: moe.route
// AUTO-NOT:   moe.route
// AUTO:       return
// REPORT:      remark: expert-parallel overlap model (2 ranks, 256 tokens per rank):
// REPORT-NEXT: split    chunks  dispatch_us  expert_us  return_us  total_us  gain
// REPORT-NEXT: none          1        171.1    35791.4      151.1   36113.5  1.00x
// REPORT-NEXT: experts       2        105.5    17895.7       85.5   36012.5  1.00x
// REPORT-NEXT: experts       3         83.7    11930.5       63.7   35998.8  1.00x
// REPORT-NEXT: experts       4         72.8     8947.8       52.8   36006.9  1.00x
// REPORT-NEXT: tokens        2        105.5    17895.7       85.5   36012.5  1.00x
// REPORT:      tokens        7         58.7     5642.3       38.7   39773.8  0.91x
// REPORT-NEXT: tokens        8         56.4     5636.1       36.4   45391.5  0.80x
// With the default (shared-memory) link the best split gains 0.3%, below
// min-gain: the model keeps one chunk.
// REPORT-NEXT: chosen: none, 1 chunk
shard.grid @moe_ep(shape = 2)
func.func @ep_large(%x: tensor<?x1024xf32>, %l: tensor<?x8xf32>, %w1: tensor<4x2048x1024xf32>, %w2: tensor<4x1024x2048xf32>) -> tensor<?x1024xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64, expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 8>} : (tensor<?x1024xf32>, tensor<?x8xf32>, tensor<4x2048x1024xf32>, tensor<4x1024x2048xf32>) -> tensor<?x1024xf32>
  return %0 : tensor<?x1024xf32>
}

// -----

// A layer without expert parallelism has no exchanges to overlap: it is left
// alone and the function gets no moe.overlap.
// PIPE-LABEL: func.func @not_expert_parallel
// PIPE-NOT:   moe.overlap
// PIPE:       moe.route
// PIPE-NOT:   moe.route
// AUTO-LABEL: func.func @not_expert_parallel
// AUTO-NOT:   moe.overlap
// REPORT-NOT: remark
func.func @not_expert_parallel(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}
