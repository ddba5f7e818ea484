// RUN: moe-opt %s --split-input-file --convert-nvvm-to-gpu-executor | FileCheck %s
// RUN: moe-opt %s --split-input-file --convert-nvvm-to-gpu-executor=check-memory=false | FileCheck %s --check-prefix=NOCHECK

// A kernel gets an entry that loads each argument through cuLaunchKernel's
// parameter array; special registers become executor calls.

// CHECK-LABEL: llvm.func internal @ids(
// CHECK-NOT:     nvvm.kernel
// CHECK:         %[[TIDX:.*]] = llvm.mlir.constant(0 : i32) : i32
// CHECK:         %[[TID:.*]] = llvm.call @moe_gpuexec_sreg(%[[TIDX]]) : (i32) -> i32
// CHECK:         %[[CTAIDY:.*]] = llvm.mlir.constant(7 : i32) : i32
// CHECK:         llvm.call @moe_gpuexec_sreg(%[[CTAIDY]]) : (i32) -> i32
// CHECK:         %[[LANEID:.*]] = llvm.mlir.constant(12 : i32) : i32
// CHECK:         llvm.call @moe_gpuexec_sreg(%[[LANEID]]) : (i32) -> i32
// CHECK:         llvm.getelementptr %arg0[%[[TID]]]
// CHECK:       llvm.func @moe_gpuexec_sreg(i32) -> i32
// CHECK:       llvm.func @__moe_gpuexec_entry_ids(%[[PARAMS:.*]]: !llvm.ptr)
// CHECK:         %[[P0:.*]] = llvm.getelementptr %[[PARAMS]][0] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK:         %[[A0:.*]] = llvm.load %[[P0]] : !llvm.ptr -> !llvm.ptr
// CHECK:         %[[V0:.*]] = llvm.load %[[A0]] : !llvm.ptr -> !llvm.ptr
// CHECK:         %[[P1:.*]] = llvm.getelementptr %[[PARAMS]][1] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK:         %[[A1:.*]] = llvm.load %[[P1]] : !llvm.ptr -> !llvm.ptr
// CHECK:         %[[V1:.*]] = llvm.load %[[A1]] : !llvm.ptr -> i64
// CHECK:         llvm.call @ids(%[[V0]], %[[V1]]) : (!llvm.ptr, i64) -> ()
// CHECK:         llvm.return
llvm.func @ids(%out: !llvm.ptr, %n: i64) attributes {gpu.kernel, nvvm.kernel} {
  %tid = nvvm.read.ptx.sreg.tid.x : i32
  %block = nvvm.read.ptx.sreg.ctaid.y : i32
  %lane = nvvm.read.ptx.sreg.laneid : i32
  %sum0 = llvm.add %tid, %block : i32
  %sum = llvm.add %sum0, %lane : i32
  %at = llvm.getelementptr %out[%tid] : (!llvm.ptr, i32) -> !llvm.ptr, i32
  llvm.store %sum, %at : i32, !llvm.ptr
  llvm.return
}

// -----

// mma.sync: the operand registers go through stack slots allocated at entry;
// the result struct is rebuilt from the executor's D registers. Each call
// site has its own number.

// CHECK-LABEL: llvm.func @mma_bf16(
// CHECK-NOT:     moe_gpuexec_check_access
// CHECK:         %[[D1:.*]] = llvm.alloca %{{.*}} x i32 {alignment = 16 : i64} : (i64) -> !llvm.ptr
// CHECK-COUNT-6: llvm.alloca
// CHECK:         %[[A0:.*]] = llvm.alloca %{{.*}} x i32 {alignment = 16 : i64} : (i64) -> !llvm.ptr
// CHECK:         %[[A0_0:.*]] = llvm.getelementptr %[[A0]][0] : (!llvm.ptr) -> !llvm.ptr, i32
// CHECK:         llvm.store %arg0, %[[A0_0]] : i32, !llvm.ptr
// CHECK:         %[[CW:.*]] = llvm.bitcast %arg2 : f32 to i32
// CHECK:         llvm.store %[[CW]], %{{.*}} : i32, !llvm.ptr
// CHECK:         %[[SITE0:.*]] = llvm.mlir.constant(0 : i32) : i32
// CHECK:         %[[BF16:.*]] = llvm.mlir.constant(1 : i32) : i32
// CHECK:         %[[CF32:.*]] = llvm.mlir.constant(0 : i32) : i32
// CHECK:         %[[DF32:.*]] = llvm.mlir.constant(0 : i32) : i32
// CHECK:         llvm.call @moe_gpuexec_mma_m16n8k16(%[[SITE0]], %[[BF16]], %[[CF32]], %[[DF32]], %[[A0]], %{{.*}}, %{{.*}}, %[[D0:.*]]) : (i32, i32, i32, i32, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr) -> ()
// CHECK:         %[[D0_0:.*]] = llvm.getelementptr %[[D0]][0] : (!llvm.ptr) -> !llvm.ptr, i32
// CHECK:         %[[W:.*]] = llvm.load %[[D0_0]] : !llvm.ptr -> i32
// CHECK:         llvm.bitcast %[[W]] : i32 to f32
// CHECK:         llvm.insertvalue {{.*}}[3] : !llvm.struct<(f32, f32, f32, f32)>
// CHECK:         %[[SITE1:.*]] = llvm.mlir.constant(1 : i32) : i32
// CHECK:         llvm.call @moe_gpuexec_mma_m16n8k16(%[[SITE1]], {{.*}}, %[[D1]])
// CHECK-NOT:     nvvm.mma.sync
llvm.func @mma_bf16(%a: i32, %b: i32, %c: f32) -> !llvm.struct<(f32, f32, f32, f32)> {
  %d = nvvm.mma.sync A[%a, %a, %a, %a] B[%b, %b] C[%c, %c, %c, %c]
    {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>,
     multiplicandAPtxType = #nvvm.mma_type<bf16>,
     multiplicandBPtxType = #nvvm.mma_type<bf16>,
     shape = #nvvm.shape<m = 16, n = 8, k = 16>}
    : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
  %c0 = llvm.extractvalue %d[0] : !llvm.struct<(f32, f32, f32, f32)>
  %e = nvvm.mma.sync A[%a, %a, %a, %a] B[%b, %b] C[%c0, %c, %c, %c]
    {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>,
     multiplicandAPtxType = #nvvm.mma_type<bf16>,
     multiplicandBPtxType = #nvvm.mma_type<bf16>,
     shape = #nvvm.shape<m = 16, n = 8, k = 16>}
    : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
  llvm.return %e : !llvm.struct<(f32, f32, f32, f32)>
}

// -----

// f16 multiplicands and accumulators travel as 32-bit words.

// CHECK-LABEL: llvm.func @mma_f16(
// CHECK:         llvm.bitcast %arg0 : vector<2xf16> to i32
// CHECK:         %[[SITE:.*]] = llvm.mlir.constant(0 : i32) : i32
// CHECK:         %[[F16:.*]] = llvm.mlir.constant(0 : i32) : i32
// CHECK:         %[[CHALF:.*]] = llvm.mlir.constant(1 : i32) : i32
// CHECK:         %[[DHALF:.*]] = llvm.mlir.constant(1 : i32) : i32
// CHECK:         llvm.call @moe_gpuexec_mma_m16n8k16(%[[SITE]], %[[F16]], %[[CHALF]], %[[DHALF]],
// CHECK:         llvm.bitcast %{{.*}} : i32 to vector<2xf16>
// CHECK:         llvm.insertvalue {{.*}}[1] : !llvm.struct<(vector<2xf16>, vector<2xf16>)>
llvm.func @mma_f16(%a: vector<2xf16>, %c: vector<2xf16>) -> !llvm.struct<(vector<2xf16>, vector<2xf16>)> {
  %d = nvvm.mma.sync A[%a, %a, %a, %a] B[%a, %a] C[%c, %c]
    {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>,
     shape = #nvvm.shape<m = 16, n = 8, k = 16>}
    : (vector<2xf16>, vector<2xf16>, vector<2xf16>) -> !llvm.struct<(vector<2xf16>, vector<2xf16>)>
  llvm.return %d : !llvm.struct<(vector<2xf16>, vector<2xf16>)>
}

// -----

// shfl.sync: f32 values as words, the predicate read back from its slot.

// CHECK-LABEL: llvm.func @shfl(
// CHECK:         %[[DOWN:.*]] = llvm.mlir.constant(1 : i32) : i32
// CHECK:         %[[W:.*]] = llvm.bitcast %arg1 : f32 to i32
// CHECK:         %[[R:.*]] = llvm.call @moe_gpuexec_shfl_sync(%{{.*}}, %[[DOWN]], %arg0, %[[W]], %arg2, %arg3, %[[VALID:.*]]) : (i32, i32, i32, i32, i32, i32, !llvm.ptr) -> i32
// CHECK:         llvm.bitcast %[[R]] : i32 to f32
// CHECK:         %[[P:.*]] = llvm.load %[[VALID]] : !llvm.ptr -> i32
// CHECK:         llvm.trunc %[[P]] : i32 to i1
// CHECK:         %[[BFLY:.*]] = llvm.mlir.constant(2 : i32) : i32
// CHECK:         llvm.call @moe_gpuexec_shfl_sync(%{{.*}}, %[[BFLY]], %arg0, %arg4,
llvm.func @shfl(%mask: i32, %v: f32, %off: i32, %clamp: i32, %w: i32) -> i32 {
  %r = nvvm.shfl.sync down %mask, %v, %off, %clamp {return_value_and_is_valid} : f32 -> !llvm.struct<(f32, i1)>
  %s = nvvm.shfl.sync bfly %mask, %w, %off, %clamp : i32 -> i32
  llvm.return %s : i32
}

// -----

// Shared memory: each kernel's static globals laid out in the executor's
// per-block buffer (16-byte aligned), dynamic shared memory after them;
// address space 3 becomes the host's, as do the casts to generic pointers.
// A kernel's layout holds the globals it uses only.

// CHECK-NOT:   addr_space = 3
// CHECK-LABEL: llvm.func internal @shared(
// CHECK:         %[[STATIC:.*]] = llvm.mlir.constant(68 : i64) : i64
// CHECK:         %[[BASE0:.*]] = llvm.call @moe_gpuexec_shared_memory(%[[STATIC]]) : (i64) -> !llvm.ptr
// CHECK:         %[[TILE:.*]] = llvm.getelementptr %[[BASE0]][0] : (!llvm.ptr) -> !llvm.ptr, i8
// CHECK:         %[[STATIC1:.*]] = llvm.mlir.constant(68 : i64) : i64
// CHECK:         %[[BASE1:.*]] = llvm.call @moe_gpuexec_shared_memory(%[[STATIC1]])
// CHECK:         %[[FLAG:.*]] = llvm.getelementptr %[[BASE1]][64] : (!llvm.ptr) -> !llvm.ptr, i8
// CHECK:         %[[STATIC2:.*]] = llvm.mlir.constant(68 : i64) : i64
// CHECK:         %[[BASE2:.*]] = llvm.call @moe_gpuexec_shared_memory(%[[STATIC2]])
// CHECK:         %[[DYN:.*]] = llvm.getelementptr %[[BASE2]][80] : (!llvm.ptr) -> !llvm.ptr, i8
// CHECK:         llvm.call @moe_gpuexec_ldmatrix(%{{.*}}, %[[TILE]], %{{.*}}, %{{.*}}, %{{.*}}) : (i32, !llvm.ptr, i32, i32, !llvm.ptr) -> ()
// CHECK:         llvm.call @moe_gpuexec_cp_async(%[[DYN]], %arg0, %{{.*}}, %arg1) : (!llvm.ptr, !llvm.ptr, i32, i32) -> ()
// CHECK:         llvm.call @moe_gpuexec_cp_async_commit() : () -> ()
// CHECK:         llvm.call @moe_gpuexec_cp_async_wait(%{{.*}}) : (i32) -> ()
// CHECK:         llvm.call @moe_gpuexec_barrier(%{{.*}}) : (i32) -> ()
// CHECK:         llvm.store %{{.*}}, %[[FLAG]] : i32, !llvm.ptr
llvm.mlir.global internal @tile() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<32 x i16>
llvm.mlir.global internal @flag() {addr_space = 3 : i32} : i32
llvm.mlir.global external @__dynamic_shmem__0() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<0 x i8>
llvm.func @shared(%src: !llvm.ptr<1>, %n: i32) attributes {gpu.kernel} {
  %tile = llvm.mlir.addressof @tile : !llvm.ptr<3>
  %flag = llvm.mlir.addressof @flag : !llvm.ptr<3>
  %dyn = llvm.mlir.addressof @__dynamic_shmem__0 : !llvm.ptr<3>
  %m = nvvm.ldmatrix %tile {num = 4 : i32, layout = #nvvm.mma_layout<col>, shape = #nvvm.ld_st_matrix_shape<m = 8, n = 8>, eltType = #nvvm.ld_st_matrix_elt_type<b16>} : (!llvm.ptr<3>) -> !llvm.struct<(i32, i32, i32, i32)>
  nvvm.cp.async.shared.global %dyn, %src, 16, cache = cg, %n : !llvm.ptr<3>, !llvm.ptr<1>, i32
  nvvm.cp.async.commit.group
  nvvm.cp.async.wait.group 0
  nvvm.barrier0
  %generic = llvm.addrspacecast %flag : !llvm.ptr<3> to !llvm.ptr
  %one = llvm.mlir.constant(1 : i32) : i32
  llvm.store %one, %generic : i32, !llvm.ptr
  %m0 = llvm.extractvalue %m[0] : !llvm.struct<(i32, i32, i32, i32)>
  %dyn1 = llvm.getelementptr %dyn[4] : (!llvm.ptr<3>) -> !llvm.ptr<3>, i32
  llvm.store %m0, %dyn1 : i32, !llvm.ptr<3>
  llvm.return
}

// CHECK-LABEL: llvm.func internal @flag_only(
// CHECK:         %[[FLAGBYTES:.*]] = llvm.mlir.constant(4 : i64) : i64
// CHECK:         %[[BASE:.*]] = llvm.call @moe_gpuexec_shared_memory(%[[FLAGBYTES]])
// CHECK:         llvm.getelementptr %[[BASE]][0] : (!llvm.ptr) -> !llvm.ptr, i8
llvm.func @flag_only() attributes {gpu.kernel} {
  %flag = llvm.mlir.addressof @flag : !llvm.ptr<3>
  %one = llvm.mlir.constant(1 : i32) : i32
  llvm.store %one, %flag : i32, !llvm.ptr<3>
  llvm.return
}

// -----

// Memory checks: global and shared accesses (loads, stores, atomics, memory
// intrinsics) are preceded by moe_gpuexec_check_access(address, bytes,
// is_store, site) on a generic pointer; the thread's own stack slots are
// not checked.

// CHECK-LABEL: llvm.func @accesses(
// CHECK:         %[[SLOT:.*]] = llvm.alloca
// CHECK:         %[[FOUR:.*]] = llvm.mlir.constant(4 : i64) : i64
// CHECK:         %[[LOAD:.*]] = llvm.mlir.constant(0 : i32) : i32
// CHECK:         llvm.call @moe_gpuexec_check_access(%arg0, %[[FOUR]], %[[LOAD]], %{{.*}}) : (!llvm.ptr, i64, i32, i32) -> ()
// CHECK-NEXT:    %[[V:.*]] = llvm.load %arg0 : !llvm.ptr -> f32
// CHECK-NOT:     moe_gpuexec_check_access
// CHECK:         llvm.store %[[V]], %[[SLOT]]
// CHECK:         %[[EIGHT:.*]] = llvm.mlir.constant(8 : i64) : i64
// CHECK:         %[[STORE:.*]] = llvm.mlir.constant(1 : i32) : i32
// CHECK:         llvm.call @moe_gpuexec_check_access(%arg1, %[[EIGHT]], %[[STORE]], %{{.*}})
// CHECK-NEXT:    llvm.atomicrmw add %arg1
// CHECK:         %[[LEN:.*]] = llvm.zext %arg2 : i32 to i64
// CHECK:         llvm.call @moe_gpuexec_check_access(%arg0, %[[LEN]], %{{.*}}, %{{.*}})
// CHECK:         llvm.call @moe_gpuexec_check_access(%arg1, %[[LEN]], %{{.*}}, %{{.*}})
// CHECK-NEXT:    "llvm.intr.memcpy"
// NOCHECK-LABEL: llvm.func @accesses(
// NOCHECK-NOT:   moe_gpuexec_check_access
llvm.func @accesses(%in: !llvm.ptr<1>, %out: !llvm.ptr, %n: i32) {
  %one = llvm.mlir.constant(1 : i64) : i64
  %slot = llvm.alloca %one x f32 : (i64) -> !llvm.ptr
  %v = llvm.load %in : !llvm.ptr<1> -> f32
  llvm.store %v, %slot : f32, !llvm.ptr
  %old = llvm.atomicrmw add %out, %one monotonic : !llvm.ptr, i64
  "llvm.intr.memcpy"(%out, %in, %n) <{isVolatile = false}> : (!llvm.ptr, !llvm.ptr<1>, i32) -> ()
  llvm.return
}
