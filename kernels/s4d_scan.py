"""Fused S4D state update and readout; the (B, L, H, N) states never reach memory.

  x_t[h, n] = A[h, n] x_{t-1}[h, n] + B[h, n] u_t[h];   y_t[h] = Re(sum_n C[h, n] x_t[h, n]) + D[h] u_t[h]

Grid: one program per (block of BLOCK_H channels, batch element), holding a (BLOCK_H, BLOCK_N) complex state.
Time is walked in chunks of BLOCK_T steps: a (BLOCK_T, BLOCK_H, BLOCK_N) associative scan inside the chunk,
the carried state applied, the readout reduced over N on chip. The forward optionally saves the state at the
end of each chunk, (B, n_chunks, H, N), 1/BLOCK_T of the full states; the backward walks the chunks in
reverse, recomputes the chunk's states from the saved one and runs the adjoint scan on a time-reversed tile.
Gradients of the (H, N) parameters are summed on chip over time and written as per-batch partial sums.

Complex tensors are passed as real views (element k at 2k, 2k + 1). State dtype = the final-state buffer's.
"""
import torch
import triton
import triton.language as tl

from .affine_scan import check_chunk_size, compose_complex, last_row_3d, load_complex, real_view


@triton.jit
def load_ssm_parameters(A_ptr, B_ptr, C_ptr, hn, mask_hn, zero):
    """Real and imaginary parts of A, B, C at (BLOCK_H, BLOCK_N) offsets `hn`, as (1, BLOCK_H, BLOCK_N) tiles
    that broadcast over a chunk. Padded states get A = B = C = 0 and so contribute nothing."""
    A_re, A_im = load_complex(A_ptr, hn, mask_hn, True, True, zero)
    B_re, B_im = load_complex(B_ptr, hn, mask_hn, True, True, zero)
    C_re, C_im = load_complex(C_ptr, hn, mask_hn, True, True, zero)
    return (A_re[None, :, :], A_im[None, :, :], B_re[None, :, :], B_im[None, :, :],
            C_re[None, :, :], C_im[None, :, :])


@triton.jit
def ssm_chunk_states(A_re, A_im, B_re, B_im, u, valid, h_re, h_im):
    """States of one chunk, (BLOCK_T, BLOCK_H, BLOCK_N) real and imaginary parts, from the carried-in state h.
    u: (BLOCK_T, BLOCK_H). Rows past the end (valid false) are identity maps, so the last row is the state
    after the last step."""
    v3 = valid[:, None, None]
    pa_re, pa_im, pb_re, pb_im = tl.associative_scan(
        (tl.where(v3, A_re, 1.0), tl.where(v3, A_im, 0.0), B_re * u[:, :, None], B_im * u[:, :, None]),
        0, compose_complex)
    x_re = pa_re * h_re[None, :, :] - pa_im * h_im[None, :, :] + pb_re
    x_im = pa_re * h_im[None, :, :] + pa_im * h_re[None, :, :] + pb_im
    return x_re, x_im


@triton.jit
def ssm_chunk_entry_state(states_ptr, pid_b, c, n_chunks, H, N, hn, mask_hn, h0_re, h0_im):
    """Backward: the state entering chunk c, i.e. the saved end of chunk c - 1, or the initial state for c = 0
    (whose load of chunk 0 is in bounds and discarded)."""
    offs = (pid_b * n_chunks + tl.maximum(c - 1, 0)) * H * N * 2 + hn
    has_saved = c > 0
    hb_re = tl.where(has_saved, tl.load(states_ptr + offs, mask=mask_hn, other=0.0), h0_re)
    hb_im = tl.where(has_saved, tl.load(states_ptr + offs + 1, mask=mask_hn, other=0.0), h0_im)
    return hb_re, hb_im


@triton.jit
def ssm_chunk_recompute(A_re, A_im, B_re, B_im, u, u_prev, rows, hb_re, hb_im):
    """Backward: exclusive states xe_i = x_{i-1} (a scan of (A, B u_{i-1}) with an identity first row, from the
    state hb entering the chunk) and states x_i = A xe_i + B u_i of one chunk."""
    v_first = (rows >= 1)[:, None, None]
    pa_re, pa_im, pb_re, pb_im = tl.associative_scan(
        (tl.where(v_first, A_re, 1.0), tl.where(v_first, A_im, 0.0), B_re * u_prev[:, :, None],
         B_im * u_prev[:, :, None]), 0, compose_complex)
    xe_re = pa_re * hb_re[None, :, :] - pa_im * hb_im[None, :, :] + pb_re
    xe_im = pa_re * hb_im[None, :, :] + pa_im * hb_re[None, :, :] + pb_im
    x_re = A_re * xe_re - A_im * xe_im + B_re * u[:, :, None]
    x_im = A_re * xe_im + A_im * xe_re + B_im * u[:, :, None]
    return xe_re, xe_im, x_re, x_im


@triton.jit
def ssm_chunk_adjoint(A_re, A_im, C_re, C_im, gy_rev, has_next, valid, g_re, g_im, rows, BLOCK_T: tl.constexpr):
    """Backward: adjoint states of one chunk in forward row order (zero on rows past the end), and the carry
    for the previous chunk. The scan runs on the time-reversed tile (row r holds step start + BLOCK_T - 1 - r):
    gy_rev is dLoss/dy there, has_next says whether that step has a successor; g is the carry from the next
    chunk."""
    hn3 = has_next[:, None, None]
    pa_re, pa_im, pb_re, pb_im = tl.associative_scan(
        (tl.where(hn3, A_re, 1.0), tl.where(hn3, -A_im, 0.0), C_re * gy_rev[:, :, None],
         -C_im * gy_rev[:, :, None]), 0, compose_complex)
    gr_re = pa_re * g_re[None, :, :] - pa_im * g_im[None, :, :] + pb_re
    gr_im = pa_re * g_im[None, :, :] + pa_im * g_re[None, :, :] + pb_im
    v3 = valid[:, None, None]
    gt_re = tl.where(v3, tl.flip(gr_re, 0), 0.0)
    gt_im = tl.where(v3, tl.flip(gr_im, 0), 0.0)
    return gt_re, gt_im, last_row_3d(gr_re, rows, BLOCK_T), last_row_3d(gr_im, rows, BLOCK_T)


@triton.jit
def ssm_chunk_gradients(gt_re, gt_im, xe_re, xe_im, x_re, x_im, u, gy, B_re, B_im):
    """Backward: one chunk's sums of dA = g conj(xe), dB = g u, dC = gy conj(x), and du = Re(conj(B) g)
    summed over the states (without the D term)."""
    dA_re = tl.sum(gt_re * xe_re + gt_im * xe_im, axis=0)
    dA_im = tl.sum(gt_im * xe_re - gt_re * xe_im, axis=0)
    dB_re = tl.sum(gt_re * u[:, :, None], axis=0)
    dB_im = tl.sum(gt_im * u[:, :, None], axis=0)
    dC_re = tl.sum(gy[:, :, None] * x_re, axis=0)
    dC_im = -tl.sum(gy[:, :, None] * x_im, axis=0)
    du = tl.sum(gt_re * B_re + gt_im * B_im, axis=2)
    return dA_re, dA_im, dB_re, dB_im, dC_re, dC_im, du


@triton.jit
def _s4d_scan_fwd_kernel(
    u_ptr, A_ptr, B_ptr, C_ptr, D_ptr, h0_ptr, y_ptr, hT_ptr, states_ptr,
    L, H, N, n_chunks,
    HAS_D: tl.constexpr, HAS_H0: tl.constexpr, SAVE_STATES: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = hT_ptr.dtype.element_ty

    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_n = tl.arange(0, BLOCK_N)
    mask_h = offs_h < H
    mask_hn = mask_h[:, None] & (offs_n[None, :] < N)
    hn = (offs_h[:, None] * N + offs_n[None, :]) * 2
    zero = tl.zeros([BLOCK_H, BLOCK_N], dtype=acc_dtype)
    A_re, A_im, B_re, B_im, C_re, C_im = load_ssm_parameters(A_ptr, B_ptr, C_ptr, hn, mask_hn, zero)
    if HAS_D:
        D = tl.load(D_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)

    state_offs = pid_b * H * N * 2 + hn
    h_re, h_im = load_complex(h0_ptr, state_offs, mask_hn, HAS_H0, True, zero)

    rows = tl.arange(0, BLOCK_T)
    for c in range(0, n_chunks):
        i = c * BLOCK_T + rows
        valid = i < L
        if REVERSE:
            t = L - 1 - i
        else:
            t = i
        u_offs = (pid_b * L + t[:, None]) * H + offs_h[None, :]
        m = valid[:, None] & mask_h[None, :]
        u = tl.load(u_ptr + u_offs, mask=m, other=0.0).to(acc_dtype)
        x_re, x_im = ssm_chunk_states(A_re, A_im, B_re, B_im, u, valid, h_re, h_im)
        y = tl.sum(C_re * x_re - C_im * x_im, axis=2)
        if HAS_D:
            y += D[None, :] * u
        tl.store(y_ptr + u_offs, y.to(y_ptr.dtype.element_ty), mask=m)
        h_re = last_row_3d(x_re, rows, BLOCK_T)
        h_im = last_row_3d(x_im, rows, BLOCK_T)
        if SAVE_STATES:
            s_offs = (pid_b * n_chunks + c) * H * N * 2 + hn
            tl.store(states_ptr + s_offs, h_re, mask=mask_hn)
            tl.store(states_ptr + s_offs + 1, h_im, mask=mask_hn)

    tl.store(hT_ptr + state_offs, h_re, mask=mask_hn)
    tl.store(hT_ptr + state_offs + 1, h_im, mask=mask_hn)


@triton.jit
def _s4d_scan_bwd_kernel(
    u_ptr, A_ptr, B_ptr, C_ptr, D_ptr, h0_ptr, states_ptr, gy_ptr, gT_ptr,
    du_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dh0_ptr,
    L, H, N, n_chunks,
    HAS_D: tl.constexpr, HAS_H0: tl.constexpr, HAS_GT: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Adjoint of the fused S4D scan (g_i = dLoss/dconj(x_i), PyTorch's convention):
      g_i = conj(C) gy_i + conj(A) g_{i+1},  g_{L-1} = conj(C) gy_{L-1} + gT
      du_i = sum_n Re(conj(B) g_i) + D gy_i,  dA = sum_i g_i conj(x_{i-1}),  dB = sum_i g_i u_i,
      dC = sum_i gy_i conj(x_i),  dD = sum_i gy_i u_i,  dh0 = conj(A) g_0.
    """
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = dh0_ptr.dtype.element_ty

    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_n = tl.arange(0, BLOCK_N)
    mask_h = offs_h < H
    mask_hn = mask_h[:, None] & (offs_n[None, :] < N)
    hn = (offs_h[:, None] * N + offs_n[None, :]) * 2
    zero = tl.zeros([BLOCK_H, BLOCK_N], dtype=acc_dtype)
    A_re, A_im, B_re, B_im, C_re, C_im = load_ssm_parameters(A_ptr, B_ptr, C_ptr, hn, mask_hn, zero)
    if HAS_D:
        D = tl.load(D_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)

    state_offs = pid_b * H * N * 2 + hn
    h0_re, h0_im = load_complex(h0_ptr, state_offs, mask_hn, HAS_H0, True, zero)
    g_re, g_im = load_complex(gT_ptr, state_offs, mask_hn, HAS_GT, True, zero)

    dA_re, dA_im, dB_re, dB_im, dC_re, dC_im = zero, zero, zero, zero, zero, zero
    dD = tl.zeros([BLOCK_H], dtype=acc_dtype)

    rows = tl.arange(0, BLOCK_T)
    for k in range(0, n_chunks):
        c = n_chunks - 1 - k
        start = c * BLOCK_T
        i = start + rows
        i_rev = start + BLOCK_T - 1 - rows
        valid = i < L
        valid_rev = i_rev < L
        has_prev = valid & (rows >= 1)
        if REVERSE:
            t = L - 1 - i
            t_prev = t + 1
            t_rev = L - 1 - i_rev
        else:
            t = i
            t_prev = t - 1
            t_rev = i_rev
        m = valid[:, None] & mask_h[None, :]
        u_offs = (pid_b * L + t[:, None]) * H + offs_h[None, :]
        u = tl.load(u_ptr + u_offs, mask=m, other=0.0).to(acc_dtype)
        u_prev = tl.load(u_ptr + (pid_b * L + t_prev[:, None]) * H + offs_h[None, :],
                         mask=has_prev[:, None] & mask_h[None, :], other=0.0).to(acc_dtype)
        gy = tl.load(gy_ptr + u_offs, mask=m, other=0.0).to(acc_dtype)
        gy_rev = tl.load(gy_ptr + (pid_b * L + t_rev[:, None]) * H + offs_h[None, :],
                         mask=valid_rev[:, None] & mask_h[None, :], other=0.0).to(acc_dtype)

        hb_re, hb_im = ssm_chunk_entry_state(states_ptr, pid_b, c, n_chunks, H, N, hn, mask_hn, h0_re, h0_im)
        xe_re, xe_im, x_re, x_im = ssm_chunk_recompute(A_re, A_im, B_re, B_im, u, u_prev, rows, hb_re, hb_im)
        gt_re, gt_im, g_re, g_im = ssm_chunk_adjoint(A_re, A_im, C_re, C_im, gy_rev, i_rev + 1 < L, valid,
                                                     g_re, g_im, rows, BLOCK_T)
        gA_re, gA_im, gB_re, gB_im, gC_re, gC_im, du = ssm_chunk_gradients(gt_re, gt_im, xe_re, xe_im, x_re, x_im,
                                                                          u, gy, B_re, B_im)
        dA_re += gA_re
        dA_im += gA_im
        dB_re += gB_re
        dB_im += gB_im
        dC_re += gC_re
        dC_im += gC_im
        if HAS_D:
            du += D[None, :] * gy
            dD += tl.sum(gy * u, axis=0)
        tl.store(du_ptr + u_offs, du.to(du_ptr.dtype.element_ty), mask=m)

    # The carry now holds g_0 (padded rows are identity maps in the adjoint scan).
    pA_re = A_re.reshape(BLOCK_H, BLOCK_N)
    pA_im = A_im.reshape(BLOCK_H, BLOCK_N)
    if HAS_H0:
        tl.store(dh0_ptr + state_offs, pA_re * g_re + pA_im * g_im, mask=mask_hn)
        tl.store(dh0_ptr + state_offs + 1, pA_re * g_im - pA_im * g_re, mask=mask_hn)
    tl.store(dA_ptr + state_offs, dA_re, mask=mask_hn)
    tl.store(dA_ptr + state_offs + 1, dA_im, mask=mask_hn)
    tl.store(dB_ptr + state_offs, dB_re, mask=mask_hn)
    tl.store(dB_ptr + state_offs + 1, dB_im, mask=mask_hn)
    tl.store(dC_ptr + state_offs, dC_re, mask=mask_hn)
    tl.store(dC_ptr + state_offs + 1, dC_im, mask=mask_hn)
    if HAS_D:
        tl.store(dD_ptr + pid_b * H + offs_h, dD, mask=mask_h)


# Chunk length, from a sweep on an H100 at B=32, L=4096, H=256, N=64 (benchmarks/results/tune-lif-*.txt):
# s4d_scan fwd+bwd 22.1 / 15.0 / 54.0 / 86.6 ms at 4 / 8 / 16 / 32 steps (the chunk's log-depth scan and the
# tile's registers both grow with it); s4d_lif, which shares it, 33.8 / 38.2 ms at 4 / 8 and 149 ms at 32.
DEFAULT_CHUNK = 8
FWD_NUM_WARPS = 4
# The backward holds a chunk's states, exclusive states and adjoints at once: 8 warps keep it near 210
# registers per thread on sm_90 instead of the 255 cap (benchmarks/kernel_resources.py). Not yet timed on a GPU.
BWD_NUM_WARPS = 8


def _blocks(H: int, N: int, chunk_size: int | None) -> tuple[int, int, int]:
    block_t = check_chunk_size("s4d_scan", chunk_size, DEFAULT_CHUNK)
    block_n = triton.next_power_of_2(N)
    # Keep a chunk tile near 2048 elements: enough work per program without spilling registers.
    block_h = max(1, min(triton.next_power_of_2(H), 2048 // (block_t * block_n)))
    return block_t, block_h, block_n


def s4d_scan_fwd(u, A, B, C, D, h0, reverse: bool, save_states: bool, chunk_size: int | None = None):
    """Forward launcher.

    Args:
        u: (B, L, H) real, contiguous. A, B, C: (H, N) complex (the state dtype), contiguous.
        D: (H,) real or None. h0: (B, H, N) complex or None.
    Returns:
        y: (B, L, H) in u's dtype; final_state: (B, H, N); chunk_states: (B, n_chunks, H, N) states at the
        end of each chunk when save_states, else None.
    """
    Bsz, L, H = u.shape
    N = A.shape[1]
    block_t, block_h, block_n = _blocks(H, N, chunk_size)
    n_chunks = triton.cdiv(L, block_t)
    y = torch.empty_like(u)
    hT = torch.empty((Bsz, H, N), dtype=A.dtype, device=u.device)
    states = torch.empty((Bsz, n_chunks, H, N), dtype=A.dtype, device=u.device) if save_states else None
    grid = (triton.cdiv(H, block_h), Bsz)
    _s4d_scan_fwd_kernel[grid](
        u, real_view(A), real_view(B), real_view(C), D if D is not None else u,
        real_view(h0 if h0 is not None else hT), y, real_view(hT), real_view(states if states is not None else hT),
        L, H, N, n_chunks,
        HAS_D=D is not None, HAS_H0=h0 is not None, SAVE_STATES=save_states, REVERSE=reverse,
        BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_N=block_n, num_warps=FWD_NUM_WARPS,
    )
    return y, hT, states


def s4d_scan_bwd(u, A, B, C, D, h0, chunk_states, gy, gT, reverse: bool, chunk_size: int):
    """Backward launcher; chunk_states and chunk_size come from :func:`s4d_scan_fwd` with save_states.

    Returns du (u's shape and dtype), dA, dB, dC ((H, N), A's dtype), dD ((H,) or None), dh0 ((B, H, N) or None).
    """
    Bsz, L, H = u.shape
    N = A.shape[1]
    block_t, block_h, block_n = _blocks(H, N, chunk_size)
    n_chunks = triton.cdiv(L, block_t)
    du = torch.empty_like(u)
    # Per-batch partial sums of the parameter gradients, reduced over the batch below.
    dA, dB, dC = (torch.empty((Bsz, H, N), dtype=A.dtype, device=u.device) for _ in range(3))
    dD = torch.empty((Bsz, H), dtype=A.real.dtype, device=u.device)
    dh0 = torch.empty((Bsz, H, N), dtype=A.dtype, device=u.device)
    grid = (triton.cdiv(H, block_h), Bsz)
    _s4d_scan_bwd_kernel[grid](
        u, real_view(A), real_view(B), real_view(C), D if D is not None else u,
        real_view(h0 if h0 is not None else dh0), real_view(chunk_states), gy, real_view(gT if gT is not None else dh0),
        du, real_view(dA), real_view(dB), real_view(dC), dD, real_view(dh0),
        L, H, N, n_chunks,
        HAS_D=D is not None, HAS_H0=h0 is not None, HAS_GT=gT is not None, REVERSE=reverse,
        BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_N=block_n, num_warps=BWD_NUM_WARPS,
    )
    dD = dD.sum(0) if D is not None else None
    return du, dA.sum(0), dB.sum(0), dC.sum(0), dD, (dh0 if h0 is not None else None)
