// RUN: moe-opt %s --convert-moe-to-gpu --split-input-file | FileCheck %s
// RUN: moe-opt %s --convert-moe-to-gpu=shared-memory-stages=false --split-input-file | FileCheck %s --check-prefix=DIRECT

// Routing: a thread per token, with the per-token scratch in the kernel's
// entry block.
// CHECK-LABEL: func.func @route
// CHECK:         %[[LOGITS:.*]] = bufferization.to_buffer %{{.*}} read_only : tensor<?x8xf32> to memref<?x8xf32>
// CHECK:         %[[W:.*]] = memref.alloc(%{{.*}}) : memref<?x2xf32>
// CHECK:         %[[IDS:.*]] = memref.alloc(%{{.*}}) : memref<?x2xi32>
// CHECK:         gpu.launch
// CHECK-SAME:      threads(%{{.*}}, %{{.*}}, %{{.*}}) in (%{{.*}} = %c128
// CHECK-SAME:      module(@moe_kernels) function(@moe_route)
// CHECK-NEXT:      memref.alloca() : memref<8xf32>
// CHECK:           scf.if
// CHECK:             memref.load %[[LOGITS]]
// CHECK:             memref.store %{{.*}}, %[[IDS]]
// CHECK:         bufferization.to_tensor %[[W]] restrict writable
// CHECK:         bufferization.to_tensor %[[IDS]] restrict writable
func.func @route(%logits: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %ids = moe.route %logits {k = 2 : i64, normalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %ids : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// A static token count (a static export): results are allocated without
// dynamic sizes.
// CHECK-LABEL: func.func @route_static
// CHECK:         memref.alloc() : memref<8x2xf32>
// CHECK:         memref.alloc() : memref<8x2xi32>
func.func @route_static(%logits: tensor<8x8xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>) {
  %w, %ids = moe.route %logits {k = 2 : i64, normalize} : tensor<8x8xf32> -> tensor<8x2xf32>, tensor<8x2xi32>
  return %w, %ids : tensor<8x2xf32>, tensor<8x2xi32>
}

// -----

// Dispatch: count per expert, then place in token order, then gather; no
// barriers or atomics.
// CHECK-LABEL: func.func @dispatch
// CHECK:         %[[COUNTS:.*]] = memref.alloc() : memref<4xi32>
// CHECK:         gpu.launch {{.*}} module(@moe_kernels) function(@moe_dispatch_count)
// CHECK:           memref.store %{{.*}}, %[[COUNTS]]
// CHECK:         gpu.launch {{.*}} module(@moe_kernels) function(@moe_dispatch_place)
// CHECK:           memref.load %[[COUNTS]]
// CHECK:         gpu.launch {{.*}} module(@moe_kernels) function(@moe_dispatch_gather)
// CHECK-NOT:     gpu.barrier
// CHECK-NOT:     memref.atomic_rmw
// CHECK:         return
func.func @dispatch(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>) -> (tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>) {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids {num_experts = 4 : i64} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  return %rows, %offsets, %row_tokens, %slot_rows : tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
}

// -----

// With a capacity the owner of each expert admits its assignments group by
// group (ceil(T / group_size) groups), slot-major and in token order, before
// counting; placing skips the dropped ones (-1 in slot_rows).
// CHECK-LABEL: func.func @dispatch_expert_capacity
// CHECK-SAME:    %[[G:[^:]*]]: index
// CHECK:         %[[SIZE:.*]] = arith.maxui %[[G]], %{{.*}} : index
// CHECK:         gpu.launch {{.*}} module(@moe_kernels) function(@moe_dispatch_count)
// CHECK:           arith.ceildivui %{{.*}}, %[[SIZE]]
// CHECK:           arith.minui
// CHECK:           arith.cmpi ult
// CHECK:         gpu.launch {{.*}} module(@moe_kernels) function(@moe_dispatch_place)
// CHECK-NOT:     memref.atomic_rmw
// CHECK:         return
func.func @dispatch_expert_capacity(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %g: index) -> (tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x1xi32>) {
  %rows, %offsets, %row_tokens, %slot_rows = moe.dispatch %x, %ids group_size %g {num_experts = 4 : i64, expert_capacity = 3 : i64} : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x1xi32>
  return %rows, %offsets, %row_tokens, %slot_rows : tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x1xi32>
}

// -----

// bf16 experts run on tensor cores: m16n8k16 mma.sync with f32
// accumulators, 4 warps per block; interleaved SwiGLU needs the gate and
// linear products (2 x 4 n-tiles per k16 step) and its activation is applied
// in the first GEMM's epilogue, stored as bf16 for the second GEMM.
// K % 8 == 0: each k-tile of 32 is staged in shared memory (A and a buffer
// per product, three stages, rows padded to 40), f32 tokens converted on the
// way, weights by cp.async with zero fill; the next two k-tiles' copies are
// in flight while this one's fragments are read with ldmatrix x4.
// CHECK-LABEL: func.func @expert_bf16
// CHECK:         %[[ACT:.*]] = memref.alloc(%{{.*}}) : memref<?x32xbf16>
// CHECK:         gpu.launch {{.*}} threads({{.*}}) in (%{{.*}} = %c128{{.*}} module(@moe_kernels) function(@moe_expert_up_mma) workgroup(%[[SA:.*]] : memref<3x64x40xbf16, #gpu.address_space<workgroup>>, %[[SG:.*]] : memref<3x32x40xbf16, #gpu.address_space<workgroup>>, %[[SL:.*]] : memref<3x32x40xbf16, #gpu.address_space<workgroup>>)
// CHECK-COUNT-16:  memref.store %{{.*}}, %[[SA]][%c0,
// CHECK:           nvgpu.device_async_copy %{{.*}}, %[[SG]][%c0, {{.*}}], 8, %{{.*}} : memref<4x64x16xbf16> to memref<3x32x40xbf16, #gpu.address_space<workgroup>>
// CHECK:           nvgpu.device_async_copy %{{.*}}, %[[SL]][%c0, {{.*}}], 8, %{{.*}} : memref<4x64x16xbf16> to memref<3x32x40xbf16, #gpu.address_space<workgroup>>
// CHECK:           nvgpu.device_async_create_group
// CHECK:           scf.for
// CHECK:             nvgpu.device_async_copy
// CHECK:             nvgpu.device_async_copy
// CHECK:             %[[GROUP:.*]] = nvgpu.device_async_create_group
// CHECK:             nvgpu.device_async_wait %[[GROUP]] {numGroups = 2 : i32}
// CHECK:             gpu.barrier
// CHECK:             nvgpu.ldmatrix %[[SA]]{{.*}} {numTiles = 4 : i32, transpose = false} : memref<3x64x40xbf16, #gpu.address_space<workgroup>> -> vector<4x2xbf16>
// CHECK:             nvgpu.ldmatrix %[[SG]]{{.*}} {numTiles = 4 : i32, transpose = false}
// CHECK-COUNT-2:     nvvm.mma.sync {{.*}} {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// CHECK-COUNT-14:    nvvm.mma.sync
// CHECK:             gpu.barrier
// CHECK:           math.exp
// CHECK:           memref.store %{{.*}}, %[[ACT]]
// CHECK:         gpu.launch {{.*}} function(@moe_expert_down_mma) workgroup(%{{.*}} : memref<3x64x40xbf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<3x32x40xbf16, #gpu.address_space<workgroup>>)
// CHECK:           nvgpu.device_async_copy %[[ACT]]
// CHECK:           scf.for
// CHECK-COUNT-8:     nvvm.mma.sync
// CHECK:         gpu.launch {{.*}} function(@moe_expert_padding)

// Without shared-memory stages, fragments are loaded from global memory.
// DIRECT-LABEL: func.func @expert_bf16
// DIRECT:         %[[ACT:.*]] = memref.alloc(%{{.*}}) : memref<?x32xbf16>
// DIRECT:         gpu.launch {{.*}} threads({{.*}}) in (%{{.*}} = %c128{{.*}} module(@moe_kernels) function(@moe_expert_up_mma) {
// DIRECT:           scf.for %{{.*}} = %c0 to %c16 step %c16
// DIRECT-COUNT-8:     nvvm.mma.sync {{.*}} {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// DIRECT:           math.exp
// DIRECT:           memref.store %{{.*}}, %[[ACT]]
// DIRECT:         gpu.launch {{.*}} function(@moe_expert_down_mma) {
// DIRECT:           scf.for %{{.*}} = %c0 to %c32 step %c16
// DIRECT-COUNT-4:     nvvm.mma.sync
// DIRECT:         gpu.launch {{.*}} function(@moe_expert_padding)
func.func @expert_bf16(%rows: tensor<?x16xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x64x16xbf16>, %w2: tensor<4x16x32xbf16>) -> tensor<?x16xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 {activation = #moe.activation<swiglu>, swiglu_fusion = #moe.swiglu_fusion<interleaved>} : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x64x16xbf16>, tensor<4x16x32xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// f32 experts run the SIMT kernel: a block per 8-row tile of one expert.
// CHECK-LABEL: func.func @expert_f32
// CHECK:         %[[ACT:.*]] = memref.alloc(%{{.*}}) : memref<?x32xf32>
// CHECK:         gpu.launch {{.*}} function(@moe_expert_up)
// CHECK-NOT:       nvvm.mma.sync
// CHECK:           math.erf
// CHECK:         gpu.launch {{.*}} function(@moe_expert_down)
func.func @expert_f32(%rows: tensor<?x16xf32>, %offsets: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %y = moe.expert %rows, %offsets fc1 %w1 fc2 %w2 {activation = #moe.activation<gelu>} : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Combine: the shared-expert gate (a dot product per token) in its own
// kernel, then a thread per output element.
// CHECK-LABEL: func.func @combine_shared_gate
// CHECK:         %[[GATES:.*]] = memref.alloc(%{{.*}}) : memref<?x1xf32>
// CHECK:         gpu.launch {{.*}} function(@moe_combine_gates)
// CHECK:           memref.store %{{.*}}, %[[GATES]]
// CHECK:         gpu.launch {{.*}} function(@moe_combine)
// CHECK:           scf.for
// CHECK:           memref.load %[[GATES]]
func.func @combine_shared_gate(%y: tensor<?x16xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>, %slots: tensor<?x2xi32>, %x: tensor<?x16xf32>, %shared: tensor<?x16xf32>, %gate: tensor<16xf32>) -> tensor<?x16xf32> {
  %out = moe.combine %y, %w, %ids, %slots input %x shared %shared shared_gate %gate {num_experts = 4 : i64} : (tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}
