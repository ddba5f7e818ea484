"""A fused-MoE peer in Triton (our own code, in the style of a grouped GEMM
over expert-sorted token blocks, as vLLM's fused_moe): imported only on the
GPU machine (Triton 3.x); benchmarks/gpu/bench.py imports it lazily and
skips it with a message where Triton or CUDA is missing.

    ids, w = route(logits)                         (torch, float32)
    align: (token, slot) pairs sorted by expert, each expert's run padded to
           a multiple of BLOCK_M (torch ops on the device, no host sync)
    kernel 1: h[slot] = silu(x[tok] @ gate[e]^T) * (x[tok] @ up[e]^T)
              (gate and up tiles of the same columns in one program: the
              SwiGLU is the epilogue)
    kernel 2: y[slot] = w[slot] * (h[slot] @ fc2[e]^T)
    out = y.view(T, k, H).sum(1)

Weights: fc1 [E, 2I, H] (gate rows [0, I), up rows [I, 2I)), fc2 [E, H, I],
bf16, used as they are (no transposed copies).
"""
import torch
import triton
import triton.language as tl

from torch_moe import route


def _configs():
    out = []
    for bn, bk, warps, stages in ((64, 64, 4, 4), (128, 64, 4, 4),
                                  (64, 128, 4, 3), (128, 64, 8, 3),
                                  (64, 64, 8, 5), (128, 128, 8, 3)):
        out.append(triton.Config({"BLOCK_N": bn, "BLOCK_K": bk,
                                  "GROUP_M": 8},
                                 num_warps=warps, num_stages=stages))
    return out


@triton.jit
def _tile_ids(EM, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              GROUP_M: tl.constexpr):
    """This program's (row block, column block), GROUP_M row blocks at a
    time so that neighbouring programs share weight tiles in L2."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(EM, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.autotune(configs=_configs(), key=["N", "K", "EM", "BLOCK_M"])
@triton.jit
def _gemm1_swiglu(x_ptr, w_ptr, out_ptr, sorted_ids_ptr, expert_ids_ptr,
                  num_post_ptr, N, K, EM, num_valid, top_k,
                  stride_xm, stride_we, stride_wn, stride_om,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    # N = I (columns of h), K = H.
    pid_m, pid_n = _tile_ids(EM, N, BLOCK_M, BLOCK_N, GROUP_M)

    num_post = tl.load(num_post_ptr)
    if pid_m * BLOCK_M >= num_post:
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slot = tl.load(sorted_ids_ptr + offs_m)
    row_ok = slot < num_valid
    tok = (slot // top_k).to(tl.int64)
    e = tl.load(expert_ids_ptr + pid_m).to(tl.int64)

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = x_ptr + tok[:, None] * stride_xm + offs_k[None, :]
    # B tiles [BLOCK_K, BLOCK_N] of the row-major [2I, H] expert matrix.
    g_ptrs = (w_ptr + e * stride_we + offs_n[None, :].to(tl.int64) * stride_wn
              + offs_k[:, None])
    u_ptrs = g_ptrs + N * stride_wn
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - kk * BLOCK_K
        a = tl.load(a_ptrs, mask=row_ok[:, None] & (offs_k[None, :] < k_left),
                    other=0.0)
        b_mask = (offs_k[:, None] < k_left) & col_ok[None, :]
        bg = tl.load(g_ptrs, mask=b_mask, other=0.0)
        bu = tl.load(u_ptrs, mask=b_mask, other=0.0)
        acc_g = tl.dot(a, bg, acc=acc_g)
        acc_u = tl.dot(a, bu, acc=acc_u)
        a_ptrs += BLOCK_K
        g_ptrs += BLOCK_K
        u_ptrs += BLOCK_K
    h = acc_g * tl.sigmoid(acc_g) * acc_u
    o_ptrs = out_ptr + slot[:, None].to(tl.int64) * stride_om + offs_n[None, :]
    tl.store(o_ptrs, h.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & col_ok[None, :])


@triton.autotune(configs=_configs(), key=["N", "K", "EM", "BLOCK_M"])
@triton.jit
def _gemm2_weighted(h_ptr, w_ptr, out_ptr, sorted_ids_ptr, expert_ids_ptr,
                    num_post_ptr, topw_ptr, N, K, EM, num_valid,
                    stride_hm, stride_we, stride_wn, stride_om,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    # N = H (output columns), K = I; rows are slots.
    pid_m, pid_n = _tile_ids(EM, N, BLOCK_M, BLOCK_N, GROUP_M)

    num_post = tl.load(num_post_ptr)
    if pid_m * BLOCK_M >= num_post:
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slot = tl.load(sorted_ids_ptr + offs_m)
    row_ok = slot < num_valid
    slot64 = slot.to(tl.int64)
    e = tl.load(expert_ids_ptr + pid_m).to(tl.int64)

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = h_ptr + slot64[:, None] * stride_hm + offs_k[None, :]
    b_ptrs = (w_ptr + e * stride_we + offs_n[None, :].to(tl.int64) * stride_wn
              + offs_k[:, None])
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - kk * BLOCK_K
        a = tl.load(a_ptrs, mask=row_ok[:, None] & (offs_k[None, :] < k_left),
                    other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & col_ok[None, :],
                    other=0.0)
        acc = tl.dot(a, b, acc=acc)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    wt = tl.load(topw_ptr + slot64, mask=row_ok, other=0.0)
    acc = acc * wt[:, None]
    o_ptrs = out_ptr + slot64[:, None] * stride_om + offs_n[None, :]
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & col_ok[None, :])


def block_m_for(T, k, E):
    """Rows per block from the average rows per expert."""
    avg = T * k / E
    if avg <= 16:
        return 16
    if avg <= 64:
        return 32
    if avg <= 256:
        return 64
    return 128


def align(ids, E, block_m):
    """(sorted_ids [EM] int32: slot t*k+j sorted by expert, every expert's
    run padded to a multiple of block_m with the invalid slot T*k;
    expert_ids [EM / block_m] int32: each block's expert; num_post [1]
    int32: the padded length; EM: an upper bound of it, a Python int known
    without a host sync)."""
    Tk = ids.numel()
    dev = ids.device
    flat = ids.flatten()
    counts = torch.bincount(flat, minlength=E)
    padded = (counts + block_m - 1) // block_m * block_m
    pend = padded.cumsum(0)
    pstart = pend - padded
    cstart = counts.cumsum(0) - counts
    sorted_e, order = torch.sort(flat, stable=True)
    rank = torch.arange(Tk, device=dev) - cstart[sorted_e]
    dest = pstart[sorted_e] + rank
    EM = Tk + min(E, Tk) * (block_m - 1)
    EM = (EM + block_m - 1) // block_m * block_m
    sorted_ids = torch.full((EM,), Tk, dtype=torch.int32, device=dev)
    sorted_ids[dest] = order.to(torch.int32)
    starts = torch.arange(0, EM, block_m, device=dev)
    expert_ids = torch.searchsorted(pend, starts, right=True)
    expert_ids = expert_ids.clamp_(max=E - 1).to(torch.int32)
    num_post = pend[-1:].to(torch.int32)
    return sorted_ids, expert_ids, num_post, EM


def fused_moe(x, logits, bias, fc1, fc2, r, k):
    T, H = x.shape
    E, twoI, _ = fc1.shape
    I = twoI // 2
    assert x.is_contiguous() and fc1.is_contiguous() and fc2.is_contiguous()
    ids, w = route(logits.float(), bias, r, k)
    bm = block_m_for(T, k, E)
    sorted_ids, expert_ids, num_post, EM = align(ids, E, bm)
    Tk = T * k
    h = torch.empty(Tk, I, dtype=x.dtype, device=x.device)
    y = torch.empty(Tk, H, dtype=x.dtype, device=x.device)
    topw = w.flatten().float().contiguous()

    def grid1(meta):
        return (triton.cdiv(EM, meta["BLOCK_M"]) *
                triton.cdiv(I, meta["BLOCK_N"]),)

    _gemm1_swiglu[grid1](x, fc1, h, sorted_ids, expert_ids, num_post,
                         I, H, EM, Tk, k, x.stride(0), fc1.stride(0),
                         fc1.stride(1), h.stride(0), BLOCK_M=bm)

    def grid2(meta):
        return (triton.cdiv(EM, meta["BLOCK_M"]) *
                triton.cdiv(H, meta["BLOCK_N"]),)

    _gemm2_weighted[grid2](h, fc2, y, sorted_ids, expert_ids, num_post, topw,
                           H, I, EM, Tk, h.stride(0), fc2.stride(0),
                           fc2.stride(1), y.stride(0), BLOCK_M=bm)
    return y.view(T, k, H).sum(dim=1)
