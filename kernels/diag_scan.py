"""Chunked diagonal linear scan x_t = a_t * x_{t-1} + b_t, forward and backward.

Grid: one program per (block of BLOCK_P channels, batch element). Each program walks the sequence in chunks
of BLOCK_T steps: it folds the state carried in from the previous chunk into the chunk's first step, then an
associative scan over the chunk gives every state. Channels are the contiguous axis of (B, L, P), so every
chunk load is coalesced.

Where a chunk's steps of a channel sit is up to the launch shape (launch_config): when a chunk row of the tile
fills the program's lanes and warps (BLOCK_P x element bytes = 16 bytes x 32 x num_warps), Triton gives each
thread whole columns, all BLOCK_T steps of them, and the scan is a serial loop in registers with no shuffles
or barriers; narrower blocks spread the steps over lanes (shuffles) and warps (shared memory).

Complex tensors are passed as their real views (``torch.view_as_real``): element k sits at 2k (real) and
2k + 1 (imaginary). A chunk of complex data is loaded as a (BLOCK_T, 2 BLOCK_P) tile of contiguous rows and
split into real and imaginary parts in registers (common/affine.py's load_complex). State and accumulation use the
dtype of the final-state buffer (float32 or float64). Per-channel vectors are (1, BLOCK_P) tiles. Offsets
inside a chunk are int32 and loop invariant; only the chunk's base offset (int64) changes from chunk to chunk.
"""
import torch
import triton
import triton.language as tl

from .common.affine import compose_complex, compose_real, last_row, load_complex, store_complex
from .common.launch import cdiv, check_chunk_size, check_stages, next_power_of_2, real_view


@triton.jit
def diag_scan_fwd_kernel(
    a_ptr, b_ptr, h0_ptr, x_ptr, hT_ptr,
    L, P,
    A_TIME_VARYING: tl.constexpr, HAS_H0: tl.constexpr, COMPLEX: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, STAGES: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = hT_ptr.dtype.element_ty
    W: tl.constexpr = 2 if COMPLEX else 1

    # Columns of the real view: W per channel.
    cols = (pid_p * BLOCK_P * W + tl.arange(0, BLOCK_P * W))[None, :]
    mask_c = cols < P * W
    rows = tl.arange(0, BLOCK_T)
    state_offs = pid_b * P * W + cols
    zero = tl.zeros([1, BLOCK_P], dtype=acc_dtype)
    zero_tile = tl.zeros([BLOCK_T, BLOCK_P], dtype=acc_dtype)

    if not A_TIME_VARYING:
        a_re_c, a_im_c = load_complex(a_ptr, cols, mask_c, True, COMPLEX, zero)
    h_re, h_im = load_complex(h0_ptr, state_offs, mask_c, HAS_H0, COMPLEX, zero)
    # Row r of a chunk is processing step start + r: its offset from the chunk's first step.
    if REVERSE:
        step_offs = -P * W
    else:
        step_offs = P * W
    chunk_offs = rows[:, None] * step_offs + cols

    for start in tl.range(0, L, BLOCK_T, num_stages=STAGES):
        if REVERSE:
            t0 = L - 1 - start
        else:
            t0 = start
        base = (pid_b * L + t0) * P * W
        valid = (rows < L - start)[:, None]
        m = valid & mask_c
        # Rows past the end are identity maps (a = 1, b = 0), so the last row is the final state.
        b_re, b_im = load_complex(b_ptr + base, chunk_offs, m, True, COMPLEX, zero_tile)
        if A_TIME_VARYING:
            a_re, a_im = load_complex(a_ptr + base, chunk_offs, m, True, COMPLEX, zero_tile)
            a_re = tl.where(valid, a_re, 1.0)
        else:
            a_re = tl.where(valid, a_re_c, 1.0)
            a_im = tl.where(valid, a_im_c, 0.0)
        # The carried-in state enters as part of the first step's input: x_start = a x_prev + b.
        first = rows[:, None] == 0
        if COMPLEX:
            b_re = tl.where(first, b_re + a_re * h_re - a_im * h_im, b_re)
            b_im = tl.where(first, b_im + a_re * h_im + a_im * h_re, b_im)
            _, _, x_re, x_im = tl.associative_scan((a_re, a_im, b_re, b_im), 0, compose_complex)
            h_im = last_row(x_im, rows, BLOCK_T)
        else:
            b_re = tl.where(first, b_re + a_re * h_re, b_re)
            _, x_re = tl.associative_scan((a_re, b_re), 0, compose_real)
            x_im = x_re  # unused
        store_complex(x_ptr + base, chunk_offs, x_re, x_im, m, COMPLEX)
        h_re = last_row(x_re, rows, BLOCK_T)

    store_complex(hT_ptr, state_offs, h_re, h_im, mask_c, COMPLEX)


@triton.jit
def diag_scan_bwd_kernel(
    a_ptr, x_ptr, h0_ptr, gx_ptr, gT_ptr, da_ptr, db_ptr, dh0_ptr,
    L, P,
    A_TIME_VARYING: tl.constexpr, HAS_H0: tl.constexpr, HAS_GT: tl.constexpr, COMPLEX: tl.constexpr,
    REVERSE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, STAGES: tl.constexpr,
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

    cols = (pid_p * BLOCK_P * W + tl.arange(0, BLOCK_P * W))[None, :]
    mask_c = cols < P * W
    rows = tl.arange(0, BLOCK_T)
    state_offs = pid_b * P * W + cols
    zero = tl.zeros([1, BLOCK_P], dtype=acc_dtype)
    zero_tile = tl.zeros([BLOCK_T, BLOCK_P], dtype=acc_dtype)

    if not A_TIME_VARYING:
        a_re_c, a_im_c = load_complex(a_ptr, cols, mask_c, True, COMPLEX, zero)
    h0_re, h0_im = load_complex(h0_ptr, state_offs, mask_c, HAS_H0, COMPLEX, zero)
    g_re, g_im = load_complex(gT_ptr, state_offs, mask_c, HAS_GT, COMPLEX, zero)
    da_re_sum = zero
    da_im_sum = zero
    # Row r of a chunk is processing step i = L - 1 - (start + r). step_offs is the memory offset from step i
    # to step i + 1, so row r sits at -r * step_offs from the chunk's first row.
    if REVERSE:
        step_offs = -P * W
    else:
        step_offs = P * W
    chunk_offs = cols - rows[:, None] * step_offs

    for start in tl.range(0, L, BLOCK_T, num_stages=STAGES):
        if REVERSE:
            t0 = start
        else:
            t0 = L - 1 - start
        base = (pid_b * L + t0) * P * W
        j = (start + rows)[:, None]
        valid = j < L
        has_next = valid & (j >= 1)  # step i + 1 exists
        m = valid & mask_c
        m_next = has_next & mask_c
        m_prev = (j < L - 1) & mask_c  # step i - 1 exists

        # Element of the adjoint scan: (conj(a_{i+1}), gx_i); identity past either end.
        if A_TIME_VARYING:
            an_re, an_im = load_complex(a_ptr + base + step_offs, chunk_offs, m_next, True, COMPLEX, zero_tile)
            an_re = tl.where(has_next, an_re, 1.0)
            an_im = -an_im
        else:
            an_re = tl.where(has_next, a_re_c, 1.0)
            an_im = tl.where(has_next, -a_im_c, 0.0)
        gx_re, gx_im = load_complex(gx_ptr + base, chunk_offs, m, True, COMPLEX, zero_tile)
        xp_re, xp_im = load_complex(x_ptr + base - step_offs, chunk_offs, m_prev, True, COMPLEX, zero_tile)
        if HAS_H0:
            first = j == L - 1  # step i = 0: its previous state is h0
            xp_re = tl.where(first, h0_re, xp_re)
            xp_im = tl.where(first, h0_im, xp_im)
        # The carried-in adjoint g_{i+1} enters as part of the first row's element: g_i = gx_i + conj(a) g_{i+1}.
        head = rows[:, None] == 0
        if COMPLEX:
            gx_re = tl.where(head, gx_re + an_re * g_re - an_im * g_im, gx_re)
            gx_im = tl.where(head, gx_im + an_re * g_im + an_im * g_re, gx_im)
            _, _, gt_re, gt_im = tl.associative_scan((an_re, an_im, gx_re, gx_im), 0, compose_complex)
            da_re = gt_re * xp_re + gt_im * xp_im
            da_im = gt_im * xp_re - gt_re * xp_im
            g_im = last_row(gt_im, rows, BLOCK_T)
        else:
            gx_re = tl.where(head, gx_re + an_re * g_re, gx_re)
            _, gt_re = tl.associative_scan((an_re, gx_re), 0, compose_real)
            gt_im = gt_re  # unused
            da_re = gt_re * xp_re
            da_im = da_re  # unused
        store_complex(db_ptr + base, chunk_offs, gt_re, gt_im, m, COMPLEX)
        if A_TIME_VARYING:
            store_complex(da_ptr + base, chunk_offs, da_re, da_im, m, COMPLEX)
        else:
            # Rows past the end and masked channels have x_prev = 0, so their da is 0.
            da_re_sum += tl.sum(da_re, axis=0, keep_dims=True)
            if COMPLEX:
                da_im_sum += tl.sum(da_im, axis=0, keep_dims=True)
        g_re = last_row(gt_re, rows, BLOCK_T)

    # Padded rows are identity maps, so the carry now holds g_0.
    if not A_TIME_VARYING:
        store_complex(da_ptr, state_offs, da_re_sum, da_im_sum, mask_c, COMPLEX)
    if HAS_H0:
        if A_TIME_VARYING:
            if REVERSE:
                t_first = L - 1
            else:
                t_first = 0
            a0_re, a0_im = load_complex(a_ptr + (pid_b * L + t_first) * P * W, cols, mask_c, True, COMPLEX, zero)
        else:
            a0_re = a_re_c
            a0_im = a_im_c
        store_complex(dh0_ptr, state_offs, a0_re * g_re + a0_im * g_im, a0_re * g_im - a0_im * g_re, mask_c,
                      COMPLEX)


# Real data: chunk length and channel blocks of the plan measured on an H100 (benchmarks/results/scans-*.txt:
# 73% of copy bandwidth for float32 with a time-varying a).
DEFAULT_CHUNK = 32
# Enough programs to keep a memory-bound scan's loads in flight: ~8 per SM of an H100 (132 SMs).
TARGET_PROGRAMS = 1024
MIN_BLOCK_P = 16  # 16 channels = 64-128 contiguous bytes per time step: loads stay coalesced
# Complex data: a chunk row is one warp's 16-byte loads (512 bytes), so each thread owns two complex64 channels
# (one complex128) for the whole chunk, and the chunk holds about CHUNK_LOAD_BYTES of loads per channel: enough
# loads in flight per thread to cover memory latency on S5-like shapes (B=8, P=1536: ~3 MB over the GPU), few
# enough registers to stay under the cap (benchmarks/kernel_resources.py).
ROW_BYTES = 16 * 32
CHUNK_LOAD_BYTES = 256
# Chunks loaded ahead: with STAGES > 1 Triton's pipeliner copies the next STAGES - 1 chunks into shared memory
# (cp.async) while one is scanned. 1, a plain loop, is what the H100 timings measured; deeper pipelines cost
# 0-9% more loop instructions in sm_90 compiles and are left to benchmarks/tune_kernels.py.
STAGES = 1


def launch_config(B: int, P: int, dtype: torch.dtype, time_varying: bool, backward: bool,
                  chunk_size: int | None = None) -> tuple[int, int, int]:
    """(BLOCK_T, BLOCK_P, num_warps) for a (B, L, P) scan whose state has `dtype`; chunk_size overrides BLOCK_T.

    Complex: one warp per program, BLOCK_P = ROW_BYTES / element size, the chunk's steps of a channel in one
    thread (no shuffles or barriers); BLOCK_T from the bytes the pass loads per step (b, and a when time-varying;
    the backward loads gx and x, and a). Static instruction counts fell ~10x against the plan real data uses; not
    yet timed on a GPU (benchmarks/tune_kernels.py sweeps it).

    Real: the channel block halves from 64 until the grid has TARGET_PROGRAMS programs (or the block reaches
    MIN_BLOCK_P), and warps follow the tile size, ~8 operands per thread; this spreads a chunk's steps over lanes
    and warps.
    """
    if dtype.is_complex:
        loads_per_step = (2 if backward else 1) + int(time_varying)
        default_t = max(2, 1 << (CHUNK_LOAD_BYTES // (loads_per_step * dtype.itemsize)).bit_length() - 1)
        block_t = check_chunk_size("diag_scan", chunk_size, default_t)
        return block_t, min(ROW_BYTES // dtype.itemsize, next_power_of_2(P)), 1
    block_t = check_chunk_size("diag_scan", chunk_size, DEFAULT_CHUNK)
    block_p = min(64, next_power_of_2(P))
    while block_p > MIN_BLOCK_P and B * cdiv(P, block_p) < TARGET_PROGRAMS:
        block_p //= 2
    num_warps = max(1, min(8, block_t * block_p // 256))
    return block_t, block_p, num_warps


def diag_scan_fwd(a, b, h0, reverse: bool, chunk_size: int | None = None, plan: tuple[int, int, int] | None = None,
                  stages: int = STAGES):
    """Forward launcher. `plan` = (BLOCK_T, BLOCK_P, num_warps) replaces launch_config's, and `stages` sets the
    pipeline depth (for tuning).

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
    block_t, block_p, num_warps = plan or launch_config(B, P, a.dtype, time_varying=a.dim() == 3, backward=False,
                                                         chunk_size=chunk_size)
    grid = (cdiv(P, block_p), B)
    diag_scan_fwd_kernel[grid](
        real_view(a), real_view(b), real_view(h0 if h0 is not None else hT), real_view(x), real_view(hT),
        L, P,
        A_TIME_VARYING=a.dim() == 3, HAS_H0=h0 is not None, COMPLEX=a.is_complex(), REVERSE=reverse,
        BLOCK_T=block_t, BLOCK_P=block_p, STAGES=check_stages("diag_scan", stages), num_warps=num_warps,
    )
    return x, hT


def diag_scan_bwd(a, x, h0, gx, gT, reverse: bool, chunk_size: int | None = None,
                  plan: tuple[int, int, int] | None = None, stages: int = STAGES):
    """Backward launcher. `plan` and `stages` as in :func:`diag_scan_fwd`.

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
    block_t, block_p, num_warps = plan or launch_config(B, P, a.dtype, time_varying=time_varying,
                                                         backward=True, chunk_size=chunk_size)
    grid = (cdiv(P, block_p), B)
    diag_scan_bwd_kernel[grid](
        real_view(a), real_view(x), real_view(h0 if h0 is not None else dh0), real_view(gx),
        real_view(gT if gT is not None else dh0), real_view(da), real_view(db), real_view(dh0),
        L, P,
        A_TIME_VARYING=time_varying, HAS_H0=h0 is not None, HAS_GT=gT is not None, COMPLEX=a.is_complex(),
        REVERSE=reverse, BLOCK_T=block_t, BLOCK_P=block_p, STAGES=check_stages("diag_scan", stages),
        num_warps=num_warps,
    )
    if not time_varying:
        da = da.sum(0)
    return da, db, (dh0 if h0 is not None else None)
