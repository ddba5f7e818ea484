// RUN: moe-opt %s --split-input-file --moe-decompose-layer | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-decompose-layer=ep-dispatch=rank | FileCheck %s --check-prefix=RANK

// One rank's part of a layer with E = 5 experts over P = 2 ranks (Emax = 3
// local experts per rank: rank 0 owns 0-2, rank 1 owns 3-4 and a padding
// expert). Routing and dispatch over all 5 experts are local; then
//  1. the per-expert row counts go to the owning ranks: a tensor<6xi32>
//     (P * Emax) of counts in owner order, the padding expert's count 0,
//     exchanged 3 per rank;
//  2. the rows go to their owners (send counts: rows of experts [0, 3) and
//     [3, 5); receive counts: the sums of the received counts per rank);
//  3. an scf.for gives every received row its local expert id (count i of
//     the received counts is local expert i mod 3), the local
//     moe.dispatch / moe.expert / unit-weight moe.combine run the rank's
//     experts on them;
//  4. the outputs go back with the counts swapped, into as many rows as
//     were dispatched, and the final moe.combine over all 5 experts weights
//     them.
// CHECK-LABEL: func.func @ep_uneven
// CHECK-SAME:  (%[[X:.*]]: tensor<?x16xf32>, %[[L:.*]]: tensor<?x5xf32>, %[[W1:.*]]: tensor<3x8x16xf32>, %[[B1:.*]]: tensor<3x8xf32>, %[[W2:.*]]: tensor<3x16x8xf32>)
// CHECK-DAG:   %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG:   %[[C6:.*]] = arith.constant 6 : index
// CHECK-DAG:   %[[EMAX_COUNTS:.*]] = arith.constant dense<3> : tensor<2xi32>
// CHECK-DAG:   %[[ZERO:.*]] = arith.constant 0 : i32
// CHECK-DAG:   %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:   %[[C1:.*]] = arith.constant 1 : index
// CHECK-DAG:   %[[C3:.*]] = arith.constant 3 : index
// CHECK:       %[[W:.*]], %[[IDS:.*]] = moe.route %[[L]] {k = 2 : i64, normalize} : tensor<?x5xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK-NEXT:  %[[ROWS:.*]], %[[OFF:.*]], %{{.*}}, %[[SLOTS:.*]] = moe.dispatch %[[X]], %[[IDS]] {num_experts = 5 : i64} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<6xi32>, tensor<?xi32>, tensor<?x2xi32>
// CHECK-NEXT:  %[[O0:.*]] = tensor.extract %[[OFF]][%[[C0]]] : tensor<6xi32>
// CHECK-NEXT:  %[[O1:.*]] = tensor.extract %[[OFF]][%[[C1]]] : tensor<6xi32>
// CHECK-NEXT:  %[[O2:.*]] = tensor.extract %[[OFF]][%{{.*}}] : tensor<6xi32>
// CHECK-NEXT:  %[[O3:.*]] = tensor.extract %[[OFF]][%[[C3]]] : tensor<6xi32>
// CHECK-NEXT:  %[[O4:.*]] = tensor.extract %[[OFF]][%{{.*}}] : tensor<6xi32>
// CHECK-NEXT:  %[[O5:.*]] = tensor.extract %[[OFF]][%{{.*}}] : tensor<6xi32>
// CHECK-NEXT:  %[[N0:.*]] = arith.subi %[[O1]], %[[O0]] : i32
// CHECK-NEXT:  %[[N1:.*]] = arith.subi %[[O2]], %[[O1]] : i32
// CHECK-NEXT:  %[[N2:.*]] = arith.subi %[[O3]], %[[O2]] : i32
// CHECK-NEXT:  %[[TO0:.*]] = arith.subi %[[O3]], %[[O0]] : i32
// CHECK-NEXT:  %[[N3:.*]] = arith.subi %[[O4]], %[[O3]] : i32
// CHECK-NEXT:  %[[N4:.*]] = arith.subi %[[O5]], %[[O4]] : i32
// CHECK-NEXT:  %[[TO1:.*]] = arith.subi %[[O5]], %[[O3]] : i32
// CHECK-NEXT:  %[[COUNTS:.*]] = tensor.from_elements %[[N0]], %[[N1]], %[[N2]], %[[N3]], %[[N4]], %[[ZERO]] : tensor<6xi32>
// CHECK-NEXT:  %[[CDEST:.*]] = tensor.empty() : tensor<6xi32>
// CHECK-NEXT:  %[[CREQ:.*]], %[[CPEND:.*]] = moe.all_to_all_start %[[COUNTS]], %[[EMAX_COUNTS]], %[[EMAX_COUNTS]] into %[[CDEST]] on @moe_ep : tensor<6xi32>, tensor<2xi32>, tensor<2xi32> into tensor<6xi32>
// CHECK-NEXT:  %[[RCOUNTS:.*]] = moe.all_to_all_wait %[[CREQ]], %[[CPEND]], %[[COUNTS]] : tensor<6xi32>, tensor<6xi32>
// CHECK-NEXT:  %[[R0:.*]] = tensor.extract %[[RCOUNTS]][%[[C0]]] : tensor<6xi32>
// CHECK-NEXT:  %[[R1:.*]] = tensor.extract %[[RCOUNTS]][%[[C1]]] : tensor<6xi32>
// CHECK-NEXT:  %[[R01:.*]] = arith.addi %[[R0]], %[[R1]] : i32
// CHECK-NEXT:  %[[R2:.*]] = tensor.extract %[[RCOUNTS]][%{{.*}}] : tensor<6xi32>
// CHECK-NEXT:  %[[FROM0:.*]] = arith.addi %[[R01]], %[[R2]] : i32
// CHECK-NEXT:  %[[FROM0I:.*]] = arith.index_cast %[[FROM0]] : i32 to index
// CHECK-NEXT:  %[[R3:.*]] = tensor.extract %[[RCOUNTS]][%[[C3]]] : tensor<6xi32>
// CHECK-NEXT:  %[[R4:.*]] = tensor.extract %[[RCOUNTS]][%{{.*}}] : tensor<6xi32>
// CHECK-NEXT:  %[[R34:.*]] = arith.addi %[[R3]], %[[R4]] : i32
// CHECK-NEXT:  %[[R5:.*]] = tensor.extract %[[RCOUNTS]][%{{.*}}] : tensor<6xi32>
// CHECK-NEXT:  %[[FROM1:.*]] = arith.addi %[[R34]], %[[R5]] : i32
// CHECK-NEXT:  %[[FROM1I:.*]] = arith.index_cast %[[FROM1]] : i32 to index
// CHECK-NEXT:  %[[NRECV:.*]] = arith.addi %[[FROM0I]], %[[FROM1I]] : index
// CHECK-NEXT:  %[[SEND_N:.*]] = tensor.from_elements %[[TO0]], %[[TO1]] : tensor<2xi32>
// CHECK-NEXT:  %[[RECV_N:.*]] = tensor.from_elements %[[FROM0]], %[[FROM1]] : tensor<2xi32>
// CHECK-NEXT:  %[[RDEST:.*]] = tensor.empty(%[[NRECV]]) : tensor<?x16xf32>
// CHECK-NEXT:  %[[RREQ:.*]], %[[RPEND:.*]] = moe.all_to_all_start %[[ROWS]], %[[SEND_N]], %[[RECV_N]] into %[[RDEST]] on @moe_ep : tensor<?x16xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x16xf32>
// CHECK-NEXT:  %[[RECV:.*]] = moe.all_to_all_wait %[[RREQ]], %[[RPEND]], %[[ROWS]] : tensor<?x16xf32>, tensor<?x16xf32>
// CHECK-NEXT:  %[[LEMPTY:.*]] = tensor.empty(%[[NRECV]]) : tensor<?x1xi32>
// CHECK-NEXT:  %[[LIDS:.*]]:2 = scf.for %[[I:.*]] = %[[C0]] to %[[C6]] step %[[C1]] iter_args(%[[ACC:.*]] = %[[LEMPTY]], %[[AT:.*]] = %[[C0]]) -> (tensor<?x1xi32>, index) {
// CHECK-NEXT:    %[[CNT:.*]] = tensor.extract %[[RCOUNTS]][%[[I]]] : tensor<6xi32>
// CHECK-NEXT:    %[[CNTI:.*]] = arith.index_cast %[[CNT]] : i32 to index
// CHECK-NEXT:    %[[LOCAL:.*]] = arith.remui %[[I]], %[[C3]] : index
// CHECK-NEXT:    %[[LOCALI:.*]] = arith.index_cast %[[LOCAL]] : index to i32
// CHECK-NEXT:    %[[SL:.*]] = tensor.extract_slice %[[ACC]][%[[AT]], 0] [%[[CNTI]], 1] [1, 1] : tensor<?x1xi32> to tensor<?x1xi32>
// CHECK-NEXT:    %[[FILL:.*]] = linalg.fill ins(%[[LOCALI]] : i32) outs(%[[SL]] : tensor<?x1xi32>) -> tensor<?x1xi32>
// CHECK-NEXT:    %[[INS:.*]] = tensor.insert_slice %[[FILL]] into %[[ACC]][%[[AT]], 0] [%[[CNTI]], 1] [1, 1] : tensor<?x1xi32> into tensor<?x1xi32>
// CHECK-NEXT:    %[[NEXT:.*]] = arith.addi %[[AT]], %[[CNTI]] : index
// CHECK-NEXT:    scf.yield %[[INS]], %[[NEXT]] : tensor<?x1xi32>, index
// CHECK-NEXT:  }
// CHECK-NEXT:  %[[UEMPTY:.*]] = tensor.empty(%[[NRECV]]) : tensor<?x1xf32>
// CHECK-NEXT:  %[[UNIT:.*]] = linalg.fill ins(%[[ONE]] : f32) outs(%[[UEMPTY]] : tensor<?x1xf32>) -> tensor<?x1xf32>
// CHECK-NEXT:  %[[LROWS:.*]], %[[LOFF:.*]], %{{.*}}, %[[LSLOTS:.*]] = moe.dispatch %[[RECV]], %[[LIDS]]#0 {num_experts = 3 : i64} : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<4xi32>, tensor<?xi32>, tensor<?x1xi32>
// CHECK-NEXT:  %[[Y:.*]] = moe.expert %[[LROWS]], %[[LOFF]] fc1 %[[W1]] fc1_bias %[[B1]] fc2 %[[W2]] {activation = #moe.activation<silu>} : (tensor<?x16xf32>, tensor<4xi32>, tensor<3x8x16xf32>, tensor<3x8xf32>, tensor<3x16x8xf32>) -> tensor<?x16xf32>
// CHECK-NEXT:  %[[LOUT:.*]] = moe.combine %[[Y]], %[[UNIT]], %[[LIDS]]#0, %[[LSLOTS]] {num_experts = 3 : i64} : (tensor<?x16xf32>, tensor<?x1xf32>, tensor<?x1xi32>, tensor<?x1xi32>) -> tensor<?x16xf32>
// CHECK-NEXT:  %[[NROWS:.*]] = tensor.dim %[[ROWS]], %[[C0]] : tensor<?x16xf32>
// CHECK-NEXT:  %[[BDEST:.*]] = tensor.empty(%[[NROWS]]) : tensor<?x16xf32>
// CHECK-NEXT:  %[[BREQ:.*]], %[[BPEND:.*]] = moe.all_to_all_start %[[LOUT]], %[[RECV_N]], %[[SEND_N]] into %[[BDEST]] on @moe_ep : tensor<?x16xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x16xf32>
// CHECK-NEXT:  %[[BACK:.*]] = moe.all_to_all_wait %[[BREQ]], %[[BPEND]], %[[LOUT]] : tensor<?x16xf32>, tensor<?x16xf32>
// CHECK-NEXT:  %[[OUT:.*]] = moe.combine %[[BACK]], %[[W]], %[[IDS]], %[[SLOTS]] {num_experts = 5 : i64} : (tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x16xf32>
// CHECK-NEXT:  return %[[OUT]] : tensor<?x16xf32>
// CHECK-NOT:   moe.layer
shard.grid @moe_ep(shape = 2)
// With ep-dispatch=rank a token travels once to every rank owning any of
// its experts:
//  1. each slot's rank from the table expert -> rank ([0, 0, 0, 1, 1]),
//     -1 where an earlier slot of the token has the same rank; moe.dispatch
//     by rank (num_experts = P = 2) packs the rows to send, and a generic
//     gives every packed row its token's ids and weights' bits
//     (tensor<?x4xi32>: 2 ids, then 2 weights);
//  2. one count per rank pair;
//  3. rows and their ids/weights started together, then both waited for;
//  4. ids outside the rank's block [first, last) (the table [0, 3, 5] at
//     shard.process_linear_index) become -1, the others local; the
//     weights are the bits cast back; local dispatch over 3 experts, the
//     experts, and a combine by the received weights: one row per
//     received row;
//  5. the rows back, counts swapped, as many as were sent (offsets[P]);
//     the layer's combine weights a routed slot 1 when it sent the row and
//     0 when its token's row went to that rank from an earlier slot.
// RANK-LABEL: func.func @ep_uneven
// RANK-DAG:   %[[FIRST:.*]] = arith.constant dense<[0, 3, 5]> : tensor<3xi32>
// RANK-DAG:   %[[ONES:.*]] = arith.constant dense<1> : tensor<2xi32>
// RANK-DAG:   %[[RANK_OF:.*]] = arith.constant dense<[0, 0, 0, 1, 1]> : tensor<5xi32>
// RANK:       %[[W:.*]], %[[IDS:.*]] = moe.route
// RANK:       %[[SLOT_RANKS:.*]] = linalg.generic {{.*}} ins(%[[IDS]] : tensor<?x2xi32>)
// RANK:         tensor.extract %[[RANK_OF]]
// RANK:         tensor.extract %[[IDS]]
// RANK:         arith.cmpi eq
// RANK:       %[[ROWS:.*]], %[[OFF:.*]], %[[ROW_TOKENS:.*]], %[[SLOTS:.*]] = moe.dispatch %{{.*}}, %[[SLOT_RANKS]] {num_experts = 2 : i64}
// RANK:       %[[META:.*]] = linalg.generic {{.*}} ins(%[[ROW_TOKENS]] : tensor<?xi32>) outs(%{{.*}} : tensor<?x4xi32>)
// RANK:         tensor.extract %[[IDS]]
// RANK:         %[[WEIGHT:.*]] = tensor.extract %[[W]]
// RANK:         arith.bitcast %[[WEIGHT]] : f32 to i32
// RANK:       %[[SEND:.*]] = tensor.from_elements %{{.*}}, %{{.*}} : tensor<2xi32>
// RANK:       %[[REQ:.*]], %[[PEND:.*]] = moe.all_to_all_start %[[SEND]], %[[ONES]], %[[ONES]]
// RANK:       %[[RECV:.*]] = moe.all_to_all_wait %[[REQ]], %[[PEND]], %[[SEND]]
// RANK:       %[[RREQ:.*]], %[[RPEND:.*]] = moe.all_to_all_start %[[ROWS]], %[[SEND]], %[[RECV]]
// RANK:       %[[MREQ:.*]], %[[MPEND:.*]] = moe.all_to_all_start %[[META]], %[[SEND]], %[[RECV]]
// RANK:       %[[GOT_ROWS:.*]] = moe.all_to_all_wait %[[RREQ]], %[[RPEND]], %[[ROWS]]
// RANK:       %[[GOT_META:.*]] = moe.all_to_all_wait %[[MREQ]], %[[MPEND]], %[[META]]
// RANK:       %[[ME:.*]] = shard.process_linear_index on @moe_ep : index
// RANK:       tensor.extract %[[FIRST]][%[[ME]]]
// RANK:       %[[ID_BITS:.*]] = tensor.extract_slice %[[GOT_META]][0, 0] [%{{.*}}, 2] [1, 1]
// RANK:       %[[LOCAL_IDS:.*]] = linalg.generic {{.*}} ins(%[[ID_BITS]] : tensor<?x2xi32>)
// RANK:       %[[WEIGHT_BITS:.*]] = tensor.extract_slice %[[GOT_META]][0, 2] [%{{.*}}, 2] [1, 1]
// RANK:       %[[LOCAL_W:.*]] = linalg.generic {{.*}} ins(%[[WEIGHT_BITS]] : tensor<?x2xi32>) outs(%{{.*}} : tensor<?x2xf32>)
// RANK:         arith.bitcast %{{.*}} : i32 to f32
// RANK:       %[[LROWS:.*]], %[[LOFF:.*]], %{{.*}}, %[[LSLOTS:.*]] = moe.dispatch %[[GOT_ROWS]], %[[LOCAL_IDS]] {num_experts = 3 : i64}
// RANK:       %[[OUT:.*]] = moe.expert %[[LROWS]], %[[LOFF]]
// RANK:       %[[PARTIAL:.*]] = moe.combine %[[OUT]], %[[LOCAL_W]], %[[LOCAL_IDS]], %[[LSLOTS]] {num_experts = 3 : i64}
// RANK:       moe.all_to_all_start %[[PARTIAL]], %[[RECV]], %[[SEND]]
// RANK:       %[[BACK:.*]] = moe.all_to_all_wait
// RANK:       %[[UNIT:.*]] = linalg.generic {{.*}} ins(%[[W]], %[[IDS]], %[[SLOTS]] : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>)
// RANK:       moe.combine %[[BACK]], %[[UNIT]], %[[IDS]], %[[SLOTS]] {num_experts = 5 : i64}
func.func @ep_uneven(%x: tensor<?x16xf32>, %l: tensor<?x5xf32>, %w1: tensor<3x8x16xf32>, %b1: tensor<3x8xf32>, %w2: tensor<3x16x8xf32>) -> tensor<?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc1_bias %b1 fc2 %w2 {k = 2 : i64, normalize, activation = #moe.activation<silu>, expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 5>} : (tensor<?x16xf32>, tensor<?x5xf32>, tensor<3x8x16xf32>, tensor<3x8xf32>, tensor<3x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// Static token count: the exchanged row counts are only known at run time,
// so the inputs are cast to a dynamic token count, the chain is dynamic and
// the final combine is cast back to the layer's type. Shared experts stay
// replicated: they run on the rank's own tokens and join the final combine.
// CHECK-LABEL: func.func @ep_static_shared
// CHECK-SAME:  (%[[X:.*]]: tensor<6x16xf32>, %[[L:.*]]: tensor<6x4xf32>, %{{.*}}: tensor<2x8x16xf32>, %{{.*}}: tensor<2x16x8xf32>, %[[S1:.*]]: tensor<1x8x16xf32>, %[[S2:.*]]: tensor<1x16x8xf32>)
// CHECK:       %[[XD:.*]] = tensor.cast %[[X]] : tensor<6x16xf32> to tensor<?x16xf32>
// CHECK-NEXT:  %[[LD:.*]] = tensor.cast %[[L]] : tensor<6x4xf32> to tensor<?x4xf32>
// CHECK-NEXT:  %{{.*}}, %[[IDS:.*]] = moe.route %[[LD]]
// CHECK-NEXT:  %[[ROWS:.*]], %{{.*}}, %{{.*}}, %[[SLOTS:.*]] = moe.dispatch %[[XD]], %[[IDS]] {num_experts = 4 : i64} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
// CHECK:       moe.all_to_all_start %{{.*}} : tensor<4xi32>, tensor<2xi32>, tensor<2xi32> into tensor<4xi32>
// CHECK:       moe.all_to_all_start %[[ROWS]], {{.*}} : tensor<?x16xf32>, tensor<2xi32>, tensor<2xi32> into tensor<?x16xf32>
// CHECK:       moe.dispatch %{{.*}} {num_experts = 2 : i64}
// CHECK:       moe.combine %{{.*}} {num_experts = 2 : i64}
// CHECK:       %[[BACK:.*]] = moe.all_to_all_wait
// CHECK:       %[[SHARED:.*]] = moe.expert %[[XD]], %{{.*}} fc1 %[[S1]] fc2 %[[S2]]
// CHECK-NEXT:  %[[OUT:.*]] = moe.combine %[[BACK]], %{{.*}}, %[[IDS]], %[[SLOTS]] shared %[[SHARED]] {num_experts = 4 : i64}
// CHECK-NEXT:  %[[CAST:.*]] = tensor.cast %[[OUT]] : tensor<?x16xf32> to tensor<6x16xf32>
// CHECK-NEXT:  return %[[CAST]] : tensor<6x16xf32>
shard.grid @moe_ep(shape = 2)
func.func @ep_static_shared(%x: tensor<6x16xf32>, %l: tensor<6x4xf32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %s1: tensor<1x8x16xf32>, %s2: tensor<1x16x8xf32>) -> tensor<6x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc2 %w2 shared_fc1 %s1 shared_fc2 %s2 {k = 2 : i64, expert_parallel = #moe.expert_parallel<grid = @moe_ep, ranks = 2, num_experts = 4>} : (tensor<6x16xf32>, tensor<6x4xf32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>, tensor<1x8x16xf32>, tensor<1x16x8xf32>) -> tensor<6x16xf32>
  return %0 : tensor<6x16xf32>
}
