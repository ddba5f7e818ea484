// RUN: moe-opt %s --moe-lower-to-cuda="expert-parallel=2 overlap-chunks=1 lower-to-llvm=false" | FileCheck %s
// RUN: moe-opt %s --moe-lower-to-cuda="expert-parallel=2 overlap-chunks=1 lower-to-llvm=false" \
// RUN:   | moe-opt --pass-pipeline="builtin.module(gpu-kernel-outlining,func.func(gpu-async-region))" \
// RUN:   | FileCheck %s --check-prefix=ASYNC

// An expert-parallel layer (E = 4 experts over P = 2 ranks) on the cuda
// target, per the contract of docs/ExpertParallel.md: rows and results are
// exchanged between device buffers, the counts handed to the runtime are
// host buffers, and what the host reads of device memory (the dispatch
// offsets, the received per-expert counts) it reads from downloaded copies.

// The constant per-rank counts of the count exchange stay a host global.
// CHECK:       memref.global "private" constant @[[COUNTS:.*]] : memref<2xi32> = dense<2>
// CHECK-LABEL: func.func @ep
// CHECK:         %[[EMAX:.*]] = memref.get_global @[[COUNTS]] : memref<2xi32>
// CHECK-NOT:     gpu.memcpy {{.*}}%[[EMAX]]

// The dispatch kernels write the offsets in device memory; the host reads
// a copy downloaded after them.
// CHECK:         %[[ROWS:.*]] = gpu.alloc  (%{{.*}}) : memref<?x16xf32>
// CHECK:         %[[OFF:.*]] = gpu.alloc  () : memref<5xi32>
// CHECK:         function(@moe_dispatch_place)
// CHECK:         function(@moe_dispatch_gather)
// CHECK:         %[[OFF_HOST:.*]] = memref.alloc() : memref<5xi32>
// CHECK-NEXT:    gpu.memcpy  %[[OFF_HOST]], %[[OFF]] : memref<5xi32>, memref<5xi32>
// CHECK-NEXT:    memref.load %[[OFF_HOST]][%{{.*}}] : memref<5xi32>

// 1. The per-expert counts are built on the host and sent from a device
//    copy; the runtime gets host addresses for the counts.
// CHECK:         %[[SENT_HOST:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xi32>
// CHECK:         memref.store %{{.*}}, %[[SENT_HOST]][%{{.*}}] : memref<4xi32>
// CHECK:         %[[SENT:.*]] = gpu.alloc  () : memref<4xi32>
// CHECK-NEXT:    gpu.memcpy  %[[SENT]], %[[SENT_HOST]] : memref<4xi32>, memref<4xi32>
// CHECK-NEXT:    %[[RECV:.*]] = gpu.alloc  () : memref<4xi32>
// CHECK-NEXT:    %[[P0:.*]] = memref.extract_aligned_pointer_as_index %[[SENT]] : memref<4xi32> -> index
// CHECK-NEXT:    %[[P1:.*]] = memref.extract_aligned_pointer_as_index %[[EMAX]] : memref<2xi32> -> index {moe.host_address}
// CHECK-NEXT:    %[[P2:.*]] = memref.extract_aligned_pointer_as_index %[[RECV]] : memref<4xi32> -> index
// CHECK-NEXT:    %[[P3:.*]] = memref.extract_aligned_pointer_as_index %[[EMAX]] : memref<2xi32> -> index {moe.host_address}
// CHECK-NEXT:    %[[REQ:.*]] = call @moe_rt_comm_all_to_all_v_start(%{{.*}}, %[[P0]], %[[P1]], %[[P2]], %[[P3]], %{{.*}})
// CHECK-NEXT:    call @moe_rt_comm_wait(%[[REQ]]) : (i64) -> ()
// The received counts are downloaded once, after the wait, and read on the
// host (to size the receive buffer and label the rows' local experts).
// CHECK-NEXT:    %[[RECV_HOST:.*]] = memref.alloc() : memref<4xi32>
// CHECK-NEXT:    gpu.memcpy  %[[RECV_HOST]], %[[RECV]] : memref<4xi32>, memref<4xi32>
// CHECK-NEXT:    memref.load %[[RECV_HOST]]

// 2. Rows: device send and receive buffers, host counts.
// CHECK:         %[[SEND_COUNTS:.*]] = memref.alloc() {alignment = 64 : i64} : memref<2xi32>
// CHECK:         %[[RECV_COUNTS:.*]] = memref.alloc() {alignment = 64 : i64} : memref<2xi32>
// CHECK-NOT:     gpu.memcpy
// CHECK:         %[[ARRIVED:.*]] = gpu.alloc  (%{{.*}}) : memref<?x16xf32>
// CHECK-NEXT:    %[[Q0:.*]] = memref.extract_aligned_pointer_as_index %[[ROWS]] : memref<?x16xf32> -> index
// CHECK-NEXT:    %[[Q1:.*]] = memref.extract_aligned_pointer_as_index %[[SEND_COUNTS]] : memref<2xi32> -> index {moe.host_address}
// CHECK-NEXT:    %[[Q2:.*]] = memref.extract_aligned_pointer_as_index %[[ARRIVED]] : memref<?x16xf32> -> index
// CHECK-NEXT:    %[[Q3:.*]] = memref.extract_aligned_pointer_as_index %[[RECV_COUNTS]] : memref<2xi32> -> index {moe.host_address}
// CHECK-NEXT:    %[[REQ2:.*]] = call @moe_rt_comm_all_to_all_v_start(%{{.*}}, %[[Q0]], %[[Q1]], %[[Q2]], %[[Q3]], %c64_i64)
// CHECK-NEXT:    call @moe_rt_comm_wait(%[[REQ2]])
// CHECK:         scf.for
// CHECK:           memref.load %[[RECV_HOST]]
// CHECK:           gpu.launch

// 3. The local experts, then 4. the results back, counts swapped.
// CHECK:         function(@moe_expert_up)
// CHECK:         function(@moe_combine)
// CHECK:         %[[BACK:.*]] = gpu.alloc  (%{{.*}}) : memref<?x16xf32>
// CHECK:         %{{.*}} = memref.extract_aligned_pointer_as_index %[[RECV_COUNTS]] : memref<2xi32> -> index {moe.host_address}
// CHECK:         %{{.*}} = memref.extract_aligned_pointer_as_index %[[BACK]]
// CHECK:         %{{.*}} = memref.extract_aligned_pointer_as_index %[[SEND_COUNTS]] : memref<2xi32> -> index {moe.host_address}
// CHECK:         call @moe_rt_comm_all_to_all_v_start
// CHECK-NEXT:    call @moe_rt_comm_wait
// CHECK:         function(@moe_combine)

// Nothing is freed before the last exchange completes: device buffers at
// the end of the block (stream-ordered), host copies after them.
// CHECK:         gpu.dealloc  %[[ROWS]]
// CHECK:         gpu.dealloc  %[[SENT]]
// CHECK:         memref.dealloc %[[SENT_HOST]]
// CHECK:         gpu.dealloc  %[[RECV]]
// CHECK:         memref.dealloc %[[SEND_COUNTS]]
// CHECK:         memref.dealloc %[[RECV_COUNTS]]
// CHECK:         gpu.dealloc  %[[ARRIVED]]
// CHECK:         gpu.dealloc  %[[BACK]]
// CHECK:         memref.dealloc %[[OFF_HOST]]
// CHECK:         memref.dealloc %[[RECV_HOST]]
// CHECK-NEXT:    return

// gpu-async-region makes the host wait for the stream before each download
// is read and before each exchange starts (the rows it sends were written
// by kernels); nothing of the module's stream is pending when the runtime
// reads `send`.
// ASYNC-LABEL: func.func @ep
// ASYNC:         %[[T:.*]] = gpu.memcpy async [%{{.*}}] %[[OFF_HOST:.*]], %{{.*}} : memref<5xi32>, memref<5xi32>
// ASYNC-NEXT:    gpu.wait [%[[T]]]
// ASYNC-NEXT:    memref.load %[[OFF_HOST]]
// ASYNC:         memref.extract_aligned_pointer_as_index {{.*}} -> index{{$}}
// ASYNC-NEXT:    memref.extract_aligned_pointer_as_index {{.*}} -> index {moe.host_address}
// ASYNC-NEXT:    memref.extract_aligned_pointer_as_index {{.*}} -> index{{$}}
// ASYNC-NEXT:    memref.extract_aligned_pointer_as_index {{.*}} -> index {moe.host_address}
// ASYNC-NEXT:    gpu.wait [%{{.*}}]
// ASYNC-NEXT:    call @moe_rt_comm_all_to_all_v_start
// ASYNC-NEXT:    call @moe_rt_comm_wait
// ASYNC:         memref.extract_aligned_pointer_as_index {{.*}} -> index{{$}}
// ASYNC-NEXT:    memref.extract_aligned_pointer_as_index {{.*}} -> index {moe.host_address}
// ASYNC-NEXT:    memref.extract_aligned_pointer_as_index {{.*}} -> index{{$}}
// ASYNC-NEXT:    memref.extract_aligned_pointer_as_index {{.*}} -> index {moe.host_address}
// ASYNC-NEXT:    gpu.wait [%{{.*}}]
// ASYNC-NEXT:    call @moe_rt_comm_all_to_all_v_start
// ASYNC-NEXT:    call @moe_rt_comm_wait
// ASYNC:         memref.extract_aligned_pointer_as_index {{.*}} -> index{{$}}
// ASYNC-NEXT:    memref.extract_aligned_pointer_as_index {{.*}} -> index {moe.host_address}
// ASYNC-NEXT:    memref.extract_aligned_pointer_as_index {{.*}} -> index{{$}}
// ASYNC-NEXT:    memref.extract_aligned_pointer_as_index {{.*}} -> index {moe.host_address}
// ASYNC-NEXT:    gpu.wait [%{{.*}}]
// ASYNC-NEXT:    call @moe_rt_comm_all_to_all_v_start
// ASYNC-NEXT:    call @moe_rt_comm_wait
func.func @ep(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %w1: tensor<4x8x16xf32>, %b1: tensor<4x8xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %0 = moe.layer %x, %l fc1 %w1 fc1_bias %b1 fc2 %w2 {k = 2 : i64, activation = #moe.activation<silu>} : (tensor<?x16xf32>, tensor<?x4xf32>, tensor<4x8x16xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}
