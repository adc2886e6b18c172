"""Chunked diagonal linear scan x_t = a_t * x_{t-1} + b_t, forward and backward.

Grid: one program per (block of BLOCK_P channels, batch element). Each program walks the sequence in chunks
of BLOCK_T steps: an associative scan inside the chunk, then the state carried in from the previous chunk is
applied. Channels are the contiguous axis of (B, L, P), so every chunk load is coalesced.

Complex tensors are passed as their real views (``torch.view_as_real``): element k sits at 2k (real) and
2k + 1 (imaginary). State and accumulation use the dtype of the final-state buffer (float32 or float64).
"""
import torch
import triton
import triton.language as tl

from .affine_scan import (check_chunk_size, compose_complex, compose_real, last_row_2d, load_complex,
                          real_view)


@triton.jit
def _diag_scan_fwd_kernel(
    a_ptr, b_ptr, h0_ptr, x_ptr, hT_ptr,
    L, P,
    A_TIME_VARYING: tl.constexpr, HAS_H0: tl.constexpr, COMPLEX: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = hT_ptr.dtype.element_ty
    W: tl.constexpr = 2 if COMPLEX else 1

    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < P
    rows = tl.arange(0, BLOCK_T)
    state_offs = (pid_b * P + offs_p) * W

    zero = tl.zeros([BLOCK_P], dtype=acc_dtype)
    if not A_TIME_VARYING:
        a_re_c, a_im_c = load_complex(a_ptr, offs_p * W, mask_p, True, COMPLEX, zero)
    h_re, h_im = load_complex(h0_ptr, state_offs, mask_p, HAS_H0, COMPLEX, zero)

    for start in range(0, L, BLOCK_T):
        i = start + rows  # processing index
        valid = i < L
        if REVERSE:
            t = L - 1 - i
        else:
            t = i
        offs = ((pid_b * L + t[:, None]) * P + offs_p[None, :]) * W
        m = valid[:, None] & mask_p[None, :]
        # Rows past the end are identity maps (a = 1, b = 0), so the last row is the final state.
        if A_TIME_VARYING:
            a_re = tl.load(a_ptr + offs, mask=m, other=1.0).to(acc_dtype)
        else:
            a_re = tl.where(valid[:, None], a_re_c[None, :], 1.0)
        b_re = tl.load(b_ptr + offs, mask=m, other=0.0).to(acc_dtype)
        if COMPLEX:
            if A_TIME_VARYING:
                a_im = tl.load(a_ptr + offs + 1, mask=m, other=0.0).to(acc_dtype)
            else:
                a_im = tl.where(valid[:, None], a_im_c[None, :], 0.0)
            b_im = tl.load(b_ptr + offs + 1, mask=m, other=0.0).to(acc_dtype)
            pa_re, pa_im, pb_re, pb_im = tl.associative_scan((a_re, a_im, b_re, b_im), 0, compose_complex)
            x_re = pa_re * h_re[None, :] - pa_im * h_im[None, :] + pb_re
            x_im = pa_re * h_im[None, :] + pa_im * h_re[None, :] + pb_im
            tl.store(x_ptr + offs, x_re.to(x_ptr.dtype.element_ty), mask=m)
            tl.store(x_ptr + offs + 1, x_im.to(x_ptr.dtype.element_ty), mask=m)
            h_im = last_row_2d(x_im, rows, BLOCK_T)
        else:
            pa_re, pb_re = tl.associative_scan((a_re, b_re), 0, compose_real)
            x_re = pa_re * h_re[None, :] + pb_re
            tl.store(x_ptr + offs, x_re.to(x_ptr.dtype.element_ty), mask=m)
        h_re = last_row_2d(x_re, rows, BLOCK_T)

    tl.store(hT_ptr + state_offs, h_re, mask=mask_p)
    if COMPLEX:
        tl.store(hT_ptr + state_offs + 1, h_im, mask=mask_p)


@triton.jit
def _diag_scan_bwd_kernel(
    a_ptr, x_ptr, h0_ptr, gx_ptr, gT_ptr, da_ptr, db_ptr, dh0_ptr,
    L, P,
    A_TIME_VARYING: tl.constexpr, HAS_H0: tl.constexpr, HAS_GT: tl.constexpr, COMPLEX: tl.constexpr,
    REVERSE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr,
):
    """Adjoint scan, walking the forward processing order backwards.

    With i the forward processing index and g_i = dLoss/dconj(x_i) (PyTorch's convention):
      g_i = gx_i + conj(a_{i+1}) g_{i+1},  g_{L-1} = gx_{L-1} + gT
      db_i = g_i,  da_i = g_i conj(x_{i-1}) (x_{-1} = h0),  dh0 = conj(a_0) g_0.
    A time-invariant a gets per-batch partial sums of da, written to da_ptr as (B, P).
    """
    pid_p = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = dh0_ptr.dtype.element_ty
    W: tl.constexpr = 2 if COMPLEX else 1

    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < P
    rows = tl.arange(0, BLOCK_T)
    state_offs = (pid_b * P + offs_p) * W

    zero = tl.zeros([BLOCK_P], dtype=acc_dtype)
    if not A_TIME_VARYING:
        a_re_c, a_im_c = load_complex(a_ptr, offs_p * W, mask_p, True, COMPLEX, zero)
    h0_re, h0_im = load_complex(h0_ptr, state_offs, mask_p, HAS_H0, COMPLEX, zero)
    g_re, g_im = load_complex(gT_ptr, state_offs, mask_p, HAS_GT, COMPLEX, zero)
    da_re_sum = zero
    da_im_sum = zero

    for start in range(0, L, BLOCK_T):
        j = start + rows
        i = L - 1 - j  # forward processing index of this row
        valid = j < L
        has_next = valid & (j >= 1)  # step i + 1 exists
        has_prev = valid & (i >= 1)  # step i - 1 exists
        if REVERSE:
            t = j
            step = -1  # memory offset from step i to step i + 1
        else:
            t = i
            step = 1
        row_offs = (pid_b * L + t[:, None]) * P + offs_p[None, :]
        offs = row_offs * W
        offs_next = (row_offs + step * P) * W
        offs_prev = (row_offs - step * P) * W
        m = valid[:, None] & mask_p[None, :]
        m_next = has_next[:, None] & mask_p[None, :]
        m_prev = has_prev[:, None] & mask_p[None, :]

        # Element of the adjoint scan: (conj(a_{i+1}), gx_i); identity past either end.
        if A_TIME_VARYING:
            an_re = tl.load(a_ptr + offs_next, mask=m_next, other=1.0).to(acc_dtype)
        else:
            an_re = tl.where(has_next[:, None], a_re_c[None, :], 1.0)
        gx_re = tl.load(gx_ptr + offs, mask=m, other=0.0).to(acc_dtype)
        xp_re = tl.load(x_ptr + offs_prev, mask=m_prev, other=0.0).to(acc_dtype)
        first = (valid & (i == 0))[:, None]
        xp_re = tl.where(first, h0_re[None, :], xp_re)
        if COMPLEX:
            if A_TIME_VARYING:
                an_im = -tl.load(a_ptr + offs_next + 1, mask=m_next, other=0.0).to(acc_dtype)
            else:
                an_im = tl.where(has_next[:, None], -a_im_c[None, :], 0.0)
            gx_im = tl.load(gx_ptr + offs + 1, mask=m, other=0.0).to(acc_dtype)
            pa_re, pa_im, pb_re, pb_im = tl.associative_scan((an_re, an_im, gx_re, gx_im), 0, compose_complex)
            gt_re = pa_re * g_re[None, :] - pa_im * g_im[None, :] + pb_re
            gt_im = pa_re * g_im[None, :] + pa_im * g_re[None, :] + pb_im
            xp_im = tl.load(x_ptr + offs_prev + 1, mask=m_prev, other=0.0).to(acc_dtype)
            xp_im = tl.where(first, h0_im[None, :], xp_im)
            da_re = gt_re * xp_re + gt_im * xp_im
            da_im = gt_im * xp_re - gt_re * xp_im
            tl.store(db_ptr + offs, gt_re.to(db_ptr.dtype.element_ty), mask=m)
            tl.store(db_ptr + offs + 1, gt_im.to(db_ptr.dtype.element_ty), mask=m)
            if A_TIME_VARYING:
                tl.store(da_ptr + offs, da_re, mask=m)
                tl.store(da_ptr + offs + 1, da_im, mask=m)
            else:
                da_re_sum += tl.sum(tl.where(m, da_re, 0.0), axis=0)
                da_im_sum += tl.sum(tl.where(m, da_im, 0.0), axis=0)
            g_im = last_row_2d(gt_im, rows, BLOCK_T)
        else:
            pa_re, pb_re = tl.associative_scan((an_re, gx_re), 0, compose_real)
            gt_re = pa_re * g_re[None, :] + pb_re
            da_re = gt_re * xp_re
            tl.store(db_ptr + offs, gt_re.to(db_ptr.dtype.element_ty), mask=m)
            if A_TIME_VARYING:
                tl.store(da_ptr + offs, da_re, mask=m)
            else:
                da_re_sum += tl.sum(tl.where(m, da_re, 0.0), axis=0)
        g_re = last_row_2d(gt_re, rows, BLOCK_T)

    # Padded rows are identity maps, so the carry now holds g_0.
    if not A_TIME_VARYING:
        tl.store(da_ptr + state_offs, da_re_sum, mask=mask_p)
        if COMPLEX:
            tl.store(da_ptr + state_offs + 1, da_im_sum, mask=mask_p)
    if HAS_H0:
        if A_TIME_VARYING:
            if REVERSE:
                t0 = L - 1
            else:
                t0 = 0
            a0_re, a0_im = load_complex(a_ptr, ((pid_b * L + t0) * P + offs_p) * W, mask_p, True, COMPLEX, zero)
        else:
            a0_re = a_re_c
            a0_im = a_im_c
        tl.store(dh0_ptr + state_offs, a0_re * g_re + a0_im * g_im, mask=mask_p)
        if COMPLEX:
            tl.store(dh0_ptr + state_offs + 1, a0_re * g_im - a0_im * g_re, mask=mask_p)


DEFAULT_CHUNK = 32
# Enough programs to keep a memory-bound scan's loads in flight: ~8 per SM of an H100 (132 SMs).
TARGET_PROGRAMS = 1024
MIN_BLOCK_P = 16  # 16 channels = 64-128 contiguous bytes per time step: loads stay coalesced


def launch_config(B: int, P: int, is_complex: bool, chunk_size: int | None) -> tuple[int, int, int]:
    """(BLOCK_T, BLOCK_P, num_warps) for a (B, L, P) scan.

    The channel block halves from 64 until the grid has TARGET_PROGRAMS programs (or the block reaches
    MIN_BLOCK_P): one program walks all of time, so small grids leave the GPU idle. Warps follow the tile size,
    ~8 real operands per thread, which keeps every variant well under the register cap on sm_90
    (benchmarks/kernel_resources.py). Heuristic, not yet timed on a GPU.
    """
    block_t = check_chunk_size("diag_scan", chunk_size, DEFAULT_CHUNK)
    block_p = min(64, triton.next_power_of_2(P))
    while block_p > MIN_BLOCK_P and B * triton.cdiv(P, block_p) < TARGET_PROGRAMS:
        block_p //= 2
    operands = block_t * block_p * (2 if is_complex else 1)
    num_warps = max(1, min(8, operands // 256))
    return block_t, block_p, num_warps


def diag_scan_fwd(a, b, h0, reverse: bool, chunk_size: int | None = None):
    """Forward launcher.

    Args:
        a: (P,) or (B, L, P), contiguous; float32/float64/complex64/complex128 (the state dtype).
        b: (B, L, P), contiguous; a's dtype, or float16/bfloat16 when a is float32.
        h0: (B, P) in a's dtype, or None for a zero initial state.
    Returns:
        x: (B, L, P) in b's dtype; final_state: (B, P) in a's dtype.
    """
    B, L, P = b.shape
    x = torch.empty_like(b)
    hT = torch.empty((B, P), dtype=a.dtype, device=b.device)
    block_t, block_p, num_warps = launch_config(B, P, a.is_complex(), chunk_size)
    grid = (triton.cdiv(P, block_p), B)
    _diag_scan_fwd_kernel[grid](
        real_view(a), real_view(b), real_view(h0 if h0 is not None else hT), real_view(x), real_view(hT),
        L, P,
        A_TIME_VARYING=a.dim() == 3, HAS_H0=h0 is not None, COMPLEX=a.is_complex(), REVERSE=reverse,
        BLOCK_T=block_t, BLOCK_P=block_p, num_warps=num_warps,
    )
    return x, hT


def diag_scan_bwd(a, x, h0, gx, gT, reverse: bool, chunk_size: int | None = None):
    """Backward launcher.

    Args:
        a, h0: as in :func:`diag_scan_fwd`; x: (B, L, P) forward output; gx: (B, L, P) gradient of x
        (x's dtype); gT: (B, P) gradient of the final state, or None.
    Returns:
        da: a's shape and dtype; db: (B, L, P) in x's dtype; dh0: (B, P) in a's dtype, or None without h0.
    """
    B, L, P = x.shape
    db = torch.empty_like(x)
    time_varying = a.dim() == 3
    da = torch.empty((B, L, P) if time_varying else (B, P), dtype=a.dtype, device=x.device)
    dh0 = torch.empty((B, P), dtype=a.dtype, device=x.device)
    block_t, block_p, num_warps = launch_config(B, P, a.is_complex(), chunk_size)
    grid = (triton.cdiv(P, block_p), B)
    _diag_scan_bwd_kernel[grid](
        real_view(a), real_view(x), real_view(h0 if h0 is not None else dh0), real_view(gx),
        real_view(gT if gT is not None else dh0), real_view(da), real_view(db), real_view(dh0),
        L, P,
        A_TIME_VARYING=time_varying, HAS_H0=h0 is not None, HAS_GT=gT is not None, COMPLEX=a.is_complex(),
        REVERSE=reverse, BLOCK_T=block_t, BLOCK_P=block_p, num_warps=num_warps,
    )
    if not time_varying:
        da = da.sum(0)
    return da, db, (dh0 if h0 is not None else None)
