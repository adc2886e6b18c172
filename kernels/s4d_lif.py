"""S4D state update, readout and LIF neuron in one kernel: reads u, writes spikes.

Per chunk of BLOCK_T steps the S4D part is the chunked scan of s4d_scan (states on chip); its output y is a
(BLOCK_T, BLOCK_H) register tile that the LIF then walks row by row (tl.static_range; a row is taken out of the
tile with a masked reduction, ~T^2 BLOCK_H work per chunk, small beside the T N BLOCK_H of the scan). Neither the
(B, L, H, N) states nor y reach memory. The forward saves the SSM state and the membrane at each chunk end when
gradients are needed; the backward recomputes the chunk's states, y and membranes from them, runs the LIF
adjoint over the rows in reverse to get dLoss/dy, and feeds that to the S4D adjoint of s4d_scan.
"""
import torch
import triton
import triton.language as tl

from .affine_scan import check_chunk_size, last_row_3d, load_complex, real_view
from .lif import RESET_CODES, SURROGATE_CODES, _post_reset, _reset_derivatives, _surrogate
from .s4d_scan import (DEFAULT_CHUNK, load_ssm_parameters, ssm_chunk_adjoint, ssm_chunk_entry_state,
                       ssm_chunk_gradients, ssm_chunk_recompute, ssm_chunk_states)


@triton.jit
def _row(tile, rows, r: tl.constexpr):
    """Row r of a (BLOCK_T, M) tile as an (M,) vector."""
    return tl.sum(tl.where(rows[:, None] == r, tile, 0.0), axis=0)


@triton.jit
def _set_row(tile, rows, r: tl.constexpr, value):
    return tl.where(rows[:, None] == r, value[None, :], tile)


@triton.jit
def _s4d_lif_fwd_kernel(
    u_ptr, A_ptr, B_ptr, C_ptr, D_ptr, h0_ptr, v0_ptr, beta_ptr, th_ptr,
    s_ptr, mem_ptr, hT_ptr, vT_ptr, states_ptr, vstates_ptr,
    L, H, N, n_chunks,
    HAS_D: tl.constexpr, HAS_H0: tl.constexpr, HAS_V0: tl.constexpr, SAVE_STATES: tl.constexpr,
    OUTPUT_MEMBRANE: tl.constexpr, RESET: tl.constexpr, REVERSE: tl.constexpr,
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
    beta = tl.load(beta_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    th = tl.load(th_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)

    state_offs = pid_b * H * N * 2 + hn
    h_re, h_im = load_complex(h0_ptr, state_offs, mask_hn, HAS_H0, True, zero)
    v = tl.zeros([BLOCK_H], dtype=acc_dtype)
    if HAS_V0:
        v = tl.load(v0_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0).to(acc_dtype)

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
        h_re = last_row_3d(x_re, rows, BLOCK_T)
        h_im = last_row_3d(x_im, rows, BLOCK_T)

        spikes = tl.zeros([BLOCK_T, BLOCK_H], dtype=acc_dtype)
        membrane = tl.zeros([BLOCK_T, BLOCK_H], dtype=acc_dtype)
        for r in tl.static_range(BLOCK_T):
            pre = beta * v + _row(y, rows, r)
            spiked = pre > th
            v = tl.where(c * BLOCK_T + r < L, _post_reset(pre, spiked, th, RESET), v)
            spikes = _set_row(spikes, rows, r, spiked.to(acc_dtype))
            membrane = _set_row(membrane, rows, r, pre)
        tl.store(s_ptr + u_offs, spikes.to(s_ptr.dtype.element_ty), mask=m)
        if OUTPUT_MEMBRANE:
            tl.store(mem_ptr + u_offs, membrane, mask=m)
        if SAVE_STATES:
            s_offs = (pid_b * n_chunks + c) * H * N * 2 + hn
            tl.store(states_ptr + s_offs, h_re, mask=mask_hn)
            tl.store(states_ptr + s_offs + 1, h_im, mask=mask_hn)
            tl.store(vstates_ptr + (pid_b * n_chunks + c) * H + offs_h, v, mask=mask_h)

    tl.store(hT_ptr + state_offs, h_re, mask=mask_hn)
    tl.store(hT_ptr + state_offs + 1, h_im, mask=mask_hn)
    tl.store(vT_ptr + pid_b * H + offs_h, v, mask=mask_h)


@triton.jit
def _s4d_lif_bwd_kernel(
    u_ptr, A_ptr, B_ptr, C_ptr, D_ptr, h0_ptr, v0_ptr, beta_ptr, th_ptr, states_ptr, vstates_ptr,
    gs_ptr, gT_ptr, gvT_ptr, sigma_ptr,
    du_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dh0_ptr, dv0_ptr, dbeta_ptr, dth_ptr,
    L, H, N, n_chunks, alpha,
    HAS_D: tl.constexpr, HAS_H0: tl.constexpr, HAS_V0: tl.constexpr, HAS_GT: tl.constexpr,
    HAS_GVT: tl.constexpr, RESET: tl.constexpr, SURROGATE: tl.constexpr, DETACH_RESET: tl.constexpr,
    REVERSE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = dh0_ptr.dtype.element_ty

    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_n = tl.arange(0, BLOCK_N)
    mask_h = offs_h < H
    mask_hn = mask_h[:, None] & (offs_n[None, :] < N)
    hn = (offs_h[:, None] * N + offs_n[None, :]) * 2
    zero = tl.zeros([BLOCK_H, BLOCK_N], dtype=acc_dtype)
    zero_h = tl.zeros([BLOCK_H], dtype=acc_dtype)
    A_re, A_im, B_re, B_im, C_re, C_im = load_ssm_parameters(A_ptr, B_ptr, C_ptr, hn, mask_hn, zero)
    D = zero_h
    if HAS_D:
        D = tl.load(D_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    beta = tl.load(beta_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    th = tl.load(th_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)

    state_offs = pid_b * H * N * 2 + hn
    h0_re, h0_im = load_complex(h0_ptr, state_offs, mask_hn, HAS_H0, True, zero)
    g_re, g_im = load_complex(gT_ptr, state_offs, mask_hn, HAS_GT, True, zero)
    v0 = zero_h
    if HAS_V0:
        v0 = tl.load(v0_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    g_v = zero_h  # gradient of the post-reset membrane
    if HAS_GVT:
        g_v = tl.load(gvT_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0).to(acc_dtype)

    dA_re, dA_im, dB_re, dB_im, dC_re, dC_im = zero, zero, zero, zero, zero, zero
    dD = zero_h
    dbeta = zero_h
    dth = zero_h

    rows = tl.arange(0, BLOCK_T)
    for k in range(0, n_chunks):
        c = n_chunks - 1 - k
        start = c * BLOCK_T
        i = start + rows
        valid = i < L
        has_prev = valid & (rows >= 1)
        if REVERSE:
            t = L - 1 - i
            t_prev = t + 1
        else:
            t = i
            t_prev = t - 1
        m = valid[:, None] & mask_h[None, :]
        u_offs = (pid_b * L + t[:, None]) * H + offs_h[None, :]
        u = tl.load(u_ptr + u_offs, mask=m, other=0.0).to(acc_dtype)
        u_prev = tl.load(u_ptr + (pid_b * L + t_prev[:, None]) * H + offs_h[None, :],
                         mask=has_prev[:, None] & mask_h[None, :], other=0.0).to(acc_dtype)
        gs = tl.load(gs_ptr + u_offs, mask=m, other=0.0).to(acc_dtype)
        if SURROGATE == 5:  # "leaky": computed outside the kernel from the spike history
            sigma_tile = tl.load(sigma_ptr + u_offs, mask=m, other=0.0).to(acc_dtype)

        # States entering the chunk (for c = 0 the load of chunk 0 is in bounds and discarded), then the chunk's
        # exclusive states, states and y, recomputed.
        hb_re, hb_im = ssm_chunk_entry_state(states_ptr, pid_b, c, n_chunks, H, N, hn, mask_hn, h0_re, h0_im)
        v = tl.where(c > 0, tl.load(vstates_ptr + (pid_b * n_chunks + tl.maximum(c - 1, 0)) * H + offs_h,
                                    mask=mask_h, other=0.0), v0)
        xe_re, xe_im, x_re, x_im = ssm_chunk_recompute(A_re, A_im, B_re, B_im, u, u_prev, rows, hb_re, hb_im)
        y = tl.sum(C_re * x_re - C_im * x_im, axis=2) + D[None, :] * u

        # Recompute the membranes, then the LIF adjoint over the rows in reverse: gy = dLoss/dy.
        pre_tile = tl.zeros([BLOCK_T, BLOCK_H], dtype=acc_dtype)
        vprev_tile = tl.zeros([BLOCK_T, BLOCK_H], dtype=acc_dtype)
        for r in tl.static_range(BLOCK_T):
            vprev_tile = _set_row(vprev_tile, rows, r, v)
            pre = beta * v + _row(y, rows, r)
            pre_tile = _set_row(pre_tile, rows, r, pre)
            v = _post_reset(pre, pre > th, th, RESET)
        gy = tl.zeros([BLOCK_T, BLOCK_H], dtype=acc_dtype)
        for q in tl.static_range(BLOCK_T):
            r = BLOCK_T - 1 - q  # compile-time: the loop is unrolled
            live = start + r < L
            pre = _row(pre_tile, rows, r)
            spike = (pre > th).to(acc_dtype)
            if SURROGATE == 5:
                sigma = _row(sigma_tile, rows, r)
            else:
                sigma = _surrogate(pre - th, alpha, SURROGATE)
            cr = _row(gs, rows, r) * sigma
            dv_dm, dv_dth = _reset_derivatives(pre, spike, sigma, th, RESET, DETACH_RESET)
            g_m = tl.where(live, cr + g_v * dv_dm, 0.0)
            dbeta += g_m * _row(vprev_tile, rows, r)
            dth += tl.where(live, g_v * dv_dth - cr, 0.0)
            g_v = tl.where(live, beta * g_m, g_v)
            gy = _set_row(gy, rows, r, g_m)

        # S4D adjoint with that gy, on the time-reversed tile, flipped back to forward rows.
        i_rev = start + BLOCK_T - 1 - rows
        gt_re, gt_im, g_re, g_im = ssm_chunk_adjoint(A_re, A_im, C_re, C_im, tl.flip(gy, 0), i_rev + 1 < L, valid,
                                                     g_re, g_im, rows, BLOCK_T)
        gA_re, gA_im, gB_re, gB_im, gC_re, gC_im, du = ssm_chunk_gradients(gt_re, gt_im, xe_re, xe_im, x_re, x_im,
                                                                          u, gy, B_re, B_im)
        dA_re += gA_re
        dA_im += gA_im
        dB_re += gB_re
        dB_im += gB_im
        dC_re += gC_re
        dC_im += gC_im
        du += D[None, :] * gy
        dD += tl.sum(gy * u, axis=0)
        tl.store(du_ptr + u_offs, du.to(du_ptr.dtype.element_ty), mask=m)

    pA_re = A_re.reshape(BLOCK_H, BLOCK_N)
    pA_im = A_im.reshape(BLOCK_H, BLOCK_N)
    if HAS_H0:
        tl.store(dh0_ptr + state_offs, pA_re * g_re + pA_im * g_im, mask=mask_hn)
        tl.store(dh0_ptr + state_offs + 1, pA_re * g_im - pA_im * g_re, mask=mask_hn)
    if HAS_V0:
        tl.store(dv0_ptr + pid_b * H + offs_h, g_v, mask=mask_h)
    tl.store(dA_ptr + state_offs, dA_re, mask=mask_hn)
    tl.store(dA_ptr + state_offs + 1, dA_im, mask=mask_hn)
    tl.store(dB_ptr + state_offs, dB_re, mask=mask_hn)
    tl.store(dB_ptr + state_offs + 1, dB_im, mask=mask_hn)
    tl.store(dC_ptr + state_offs, dC_re, mask=mask_hn)
    tl.store(dC_ptr + state_offs + 1, dC_im, mask=mask_hn)
    tl.store(dD_ptr + pid_b * H + offs_h, dD, mask=mask_h)
    tl.store(dbeta_ptr + pid_b * H + offs_h, dbeta, mask=mask_h)
    tl.store(dth_ptr + pid_b * H + offs_h, dth, mask=mask_h)


FWD_NUM_WARPS = 4
BWD_NUM_WARPS = 8


def _blocks(H: int, N: int, chunk_size: int | None) -> tuple[int, int, int]:
    block_t = check_chunk_size("s4d_lif", chunk_size, DEFAULT_CHUNK)
    block_n = triton.next_power_of_2(N)
    block_h = max(1, min(triton.next_power_of_2(H), 2048 // (block_t * block_n)))
    return block_t, block_h, block_n


def s4d_lif_fwd(u, A, B, C, D, h0, v0, beta, threshold, reset: str, reverse: bool, save_states: bool,
                output_membrane: bool, chunk_size: int | None = None):
    """Forward launcher. u (B, L, H) real; A, B, C (H, N) complex; D (H,) or None; h0 (B, H, N) complex or None;
    v0 (B, H) or None; beta, threshold (H,) in the state's real dtype.

    Returns spikes (u's dtype), final SSM state (B, H, N), final membrane (B, H), the pre-reset membrane
    (B, L, H) or None, and the chunk-end SSM states (B, n_chunks, H, N) and membranes (B, n_chunks, H) or None."""
    Bsz, L, H = u.shape
    N = A.shape[1]
    block_t, block_h, block_n = _blocks(H, N, chunk_size)
    n_chunks = triton.cdiv(L, block_t)
    real = beta.dtype
    spikes = torch.empty_like(u)
    membrane = torch.empty((Bsz, L, H), dtype=real, device=u.device) if output_membrane else None
    hT = torch.empty((Bsz, H, N), dtype=A.dtype, device=u.device)
    vT = torch.empty((Bsz, H), dtype=real, device=u.device)
    states = torch.empty((Bsz, n_chunks, H, N), dtype=A.dtype, device=u.device) if save_states else None
    vstates = torch.empty((Bsz, n_chunks, H), dtype=real, device=u.device) if save_states else None
    _s4d_lif_fwd_kernel[(triton.cdiv(H, block_h), Bsz)](
        u, real_view(A), real_view(B), real_view(C), D if D is not None else vT,
        real_view(h0 if h0 is not None else hT), v0 if v0 is not None else vT, beta, threshold,
        spikes, membrane if membrane is not None else vT, real_view(hT), vT,
        real_view(states if states is not None else hT), vstates if vstates is not None else vT,
        L, H, N, n_chunks,
        HAS_D=D is not None, HAS_H0=h0 is not None, HAS_V0=v0 is not None, SAVE_STATES=save_states,
        OUTPUT_MEMBRANE=output_membrane, RESET=RESET_CODES[reset], REVERSE=reverse,
        BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_N=block_n, num_warps=FWD_NUM_WARPS,
    )
    return spikes, hT, vT, membrane, states, vstates


def s4d_lif_bwd(u, A, B, C, D, h0, v0, beta, threshold, states, vstates, g_spikes, gT, gvT, reset: str,
                surrogate: str, alpha: float, detach_reset: bool, reverse: bool, chunk_size: int, sigma=None):
    """Backward launcher; states, vstates and chunk_size come from s4d_lif_fwd with save_states. For surrogate
    "leaky", `sigma` (B, L, H) is its derivative at every step (it depends on the spike history).

    Returns du, dA, dB, dC, dD (or None), dh0 (or None), dv0 (or None), dbeta, dthreshold."""
    Bsz, L, H = u.shape
    N = A.shape[1]
    block_t, block_h, block_n = _blocks(H, N, chunk_size)
    n_chunks = triton.cdiv(L, block_t)
    real = beta.dtype
    du = torch.empty_like(u)
    dA, dB, dC, dh0 = (torch.empty((Bsz, H, N), dtype=A.dtype, device=u.device) for _ in range(4))
    dD, dv0, dbeta, dth = (torch.empty((Bsz, H), dtype=real, device=u.device) for _ in range(4))
    if (surrogate == "leaky") != (sigma is not None):
        raise ValueError("s4d_lif_bwd: sigma is needed for, and only for, the 'leaky' surrogate")
    _s4d_lif_bwd_kernel[(triton.cdiv(H, block_h), Bsz)](
        u, real_view(A), real_view(B), real_view(C), D if D is not None else dD,
        real_view(h0 if h0 is not None else dh0), v0 if v0 is not None else dv0, beta, threshold,
        real_view(states), vstates, g_spikes, real_view(gT if gT is not None else dh0),
        gvT if gvT is not None else dv0, sigma if sigma is not None else du,
        du, real_view(dA), real_view(dB), real_view(dC), dD, real_view(dh0), dv0, dbeta, dth,
        L, H, N, n_chunks, float(alpha),
        HAS_D=D is not None, HAS_H0=h0 is not None, HAS_V0=v0 is not None, HAS_GT=gT is not None,
        HAS_GVT=gvT is not None, RESET=RESET_CODES[reset], SURROGATE=SURROGATE_CODES[surrogate],
        DETACH_RESET=detach_reset, REVERSE=reverse,
        BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_N=block_n, num_warps=BWD_NUM_WARPS,
    )
    return (du, dA.sum(0), dB.sum(0), dC.sum(0), dD.sum(0) if D is not None else None,
            dh0 if h0 is not None else None, dv0 if v0 is not None else None, dbeta.sum(0), dth.sum(0))
