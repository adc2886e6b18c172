"""Fused S4D state update and readout, optionally followed by LIF neurons; the states never reach memory.

  x_t[h, n] = A[h, n] x_{t-1}[h, n] + B[h, n] u_t[h];   y_t[h] = Re(sum_n C[h, n] x_t[h, n]) + D[h] u_t[h]
  (LIF readout)  m_t = beta v_{t-1} + y_t;  s_t = H(m_t - threshold);  v_t = reset(m_t, s_t)

Forward. One program per (block of BLOCK_H channels, batch element) holds a (BLOCK_H, BLOCK_N) complex state in
registers and walks time in order, one step at a time: 6 multiply-adds per state and step for the update, 2 for
the readout, then a reduction over the states. A parallel-in-time scan would cost a log-depth tree of complex
map compositions per step instead (an sm_90 compile of a chunked associative scan of this update issued ~3x
the instructions per state and step); walking time sequentially is the cheapest exact order, and the B x H x N
independent states are parallelism enough for the long sequences this targets. Each step reads one (BLOCK_H,)
input vector, fetched two steps ahead; outputs are gathered into (BLOCK_H, T) tiles and written every T steps.

Backward without recomputing a single state. With g_i = dLoss/dconj(x_i) (PyTorch's convention),
g_i = conj(C) gy_i + conj(A) g_{i+1} and g_{L-1} = conj(C) gy_{L-1} + gT. Write g_i = conj(C) q_i + r_i with
  q_i = gy_i + conj(A) q_{i+1}  (q_L = 0),       r_i = conj(A)^{L-1-i} gT,
and let w_i = sum_{k>i} conj(A)^{k-1-i} g_k, so w_i = g_{i+1} + conj(A) w_{i+1}, split the same way as
w_i = conj(C) wq_i + wr_i. Substituting x_i = A^{i+1} h0 + sum_{j<=i} A^{i-j} B u_j into the gradients gives
  dA = sum_i g_i conj(x_{i-1}) = conj(B) sum_j u_j w_j + conj(h0) w_{-1}
  dB = sum_i g_i u_i           = conj(C) sum_j u_j q_j + sum_j u_j r_j
  dC = sum_i gy_i conj(x_i)    = conj(B) sum_j u_j q_j + conj(h0) conj(A) q_0
  du_i = Re(sum_n conj(B) g_i) + D gy_i,    dh0 = conj(A) g_0,
so one reverse walk carrying q, wq (and r, wr when the final state has a gradient) and summing u q, u wq gives
every gradient, with no saved or recomputed state. The LIF adjoint runs in the same walk, from the saved
pre-reset membranes, and hands the S4D adjoint its gy.

Parameters go to the kernels as real planes P = (A_re, A_im, B_re, B_im, C_re, C_im), shape (6, H, N),
contiguous along N so that their loads vectorise, and states as planes (B, 2, H, N) in the same layout. The
state dtype is the planes' dtype (float32, or float64 for float64 inputs).
"""
import torch
import triton
import triton.language as tl

from ..common.launch import cdiv, complex_planes, next_power_of_2
from ..common.neuron import (AFTER_DECAY, LEAKY, RESET_CODES, SURROGATE_CODES, fires, leak_before, post_reset,
                             reset_derivatives, surrogate_alpha, surrogate_derivative)
from ..common.time import time_index


@triton.jit
def _load_planes(P_ptr, hn, mask_hn, HN):
    """The six (BLOCK_H, BLOCK_N) planes of P at offsets hn; padded states get zeros and so contribute nothing."""
    A_re = tl.load(P_ptr + hn, mask=mask_hn, other=0.0)
    A_im = tl.load(P_ptr + HN + hn, mask=mask_hn, other=0.0)
    B_re = tl.load(P_ptr + 2 * HN + hn, mask=mask_hn, other=0.0)
    B_im = tl.load(P_ptr + 3 * HN + hn, mask=mask_hn, other=0.0)
    C_re = tl.load(P_ptr + 4 * HN + hn, mask=mask_hn, other=0.0)
    C_im = tl.load(P_ptr + 5 * HN + hn, mask=mask_hn, other=0.0)
    return A_re, A_im, B_re, B_im, C_re, C_im


@triton.jit
def _load_state(ptr, offs, mask_hn, HN, PRESENT: tl.constexpr, zero):
    """(real, imaginary) planes of a (B, 2, H, N) state at offsets offs of its real plane; zeros if absent."""
    re = zero
    im = zero
    if PRESENT:
        re = tl.load(ptr + offs, mask=mask_hn, other=0.0)
        im = tl.load(ptr + HN + offs, mask=mask_hn, other=0.0)
    return re, im


@triton.jit
def _load_channels(ptr, offs, mask_h, PRESENT: tl.constexpr, zero_h):
    """A (BLOCK_H,) per-channel vector at offsets offs, in zero_h's dtype; zeros for an absent input."""
    x = zero_h
    if PRESENT:
        x = tl.load(ptr + offs, mask=mask_h, other=0.0).to(zero_h.dtype)
    return x


@triton.jit
def _conj_mul(a_re, a_im, b_re, b_im):
    """conj(a) * b."""
    return a_re * b_re + a_im * b_im, a_re * b_im - a_im * b_re


@triton.jit
def _conj_mul_add(a_re, a_im, b_re, b_im, c_re, c_im):
    """conj(a) * b + c, grouped so that it compiles to four fused multiply-adds."""
    return a_re * b_re + (a_im * b_im + c_re), a_re * b_im + (c_im - a_im * b_re)



@triton.jit
def _set_column(tile, cols, j: tl.constexpr, value):
    """tile[:, j] = value for a (BLOCK_H, T) tile; j is a compile-time column, so this is a register move."""
    return tl.where(cols[None, :] == j, value[:, None], tile)


@triton.jit
def _store_tile(ptr, tile, row, cols, start, L, H, mask_h, REVERSE: tl.constexpr):
    """Write a (BLOCK_H, T) tile of processing steps start .. start + T - 1 (the ones in 0 .. L - 1)."""
    i = start + cols
    t = time_index(i, L, REVERSE)
    tl.store(ptr + row[:, None] + t[None, :] * H, tile.to(ptr.dtype.element_ty),
             mask=mask_h[:, None] & ((i >= 0) & (i < L))[None, :])


@triton.jit
def _load_step(ptr, row, i, L, H, mask_h, acc_dtype, REVERSE: tl.constexpr):
    """(BLOCK_H,) values of processing step i, zeros where i is outside 0 .. L - 1."""
    ok = tl.where((i >= 0) & (i < L), mask_h, False)
    return tl.load(ptr + row + time_index(i, L, REVERSE) * H, mask=ok, other=0.0).to(acc_dtype)


@triton.jit
def s4d_fwd_kernel(
    u_ptr, P_ptr, D_ptr, h0_ptr, v0_ptr, beta_ptr, th_ptr,
    out_ptr, m_ptr, hT_ptr, vT_ptr,
    L, H, N,
    HAS_D: tl.constexpr, HAS_H0: tl.constexpr, LIF: tl.constexpr, HAS_V0: tl.constexpr, RESET: tl.constexpr,
    FIRE_ON_TIE: tl.constexpr,
    STORE_M: tl.constexpr, REVERSE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, T: tl.constexpr,
):
    """out = y (B, L, H), or with LIF the spikes (and the pre-reset membrane m when STORE_M); final states."""
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = P_ptr.dtype.element_ty

    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_n = tl.arange(0, BLOCK_N)
    mask_h = offs_h < H
    mask_hn = mask_h[:, None] & (offs_n[None, :] < N)
    hn = offs_h[:, None] * N + offs_n[None, :]
    A_re, A_im, B_re, B_im, C_re, C_im = _load_planes(P_ptr, hn, mask_hn, H * N)
    zero_h = tl.zeros([BLOCK_H], dtype=acc_dtype)
    D = _load_channels(D_ptr, offs_h, mask_h, HAS_D, zero_h)
    state_offs = pid_b * 2 * H * N + hn
    x_re, x_im = _load_state(h0_ptr, state_offs, mask_hn, H * N, HAS_H0, tl.zeros([BLOCK_H, BLOCK_N], acc_dtype))
    # Without an initial state the walk runs on z = x / B instead: z_t = A z_{t-1} + u_t, y_t = Re(sum (C B) z_t)
    # + D u_t, and x_T = B z_T at the end. That drops the two multiplies B u per state and step (6 -> 4 for the
    # update); with an initial state z_0 = h0 / B would divide by B, so x is walked. (For |A| < 1, S4D's domain,
    # |z| stays below max |u| / (1 - |A|); a state with B = 0 contributes C B z = 0.)
    SCALED: tl.constexpr = not HAS_H0
    if SCALED:
        C_re, C_im = C_re * B_re - C_im * B_im, C_re * B_im + C_im * B_re
    if LIF:
        beta = _load_channels(beta_ptr, offs_h, mask_h, True, zero_h)
        th = _load_channels(th_ptr, offs_h, mask_h, True, zero_h)
        v = _load_channels(v0_ptr, pid_b * H + offs_h, mask_h, HAS_V0, zero_h)

    row = pid_b * L * H + offs_h
    cols = tl.arange(0, T)
    n_chunks = tl.cdiv(L, T)
    # When T does not divide L, the first chunk starts before step 0 (steps first .. -1 have zero input and no
    # output), so that the walk ends exactly at step L - 1 and the final states need no masking. From zero
    # states those steps keep them at exactly zero; only an initial state or membrane needs a mask per step.
    first = L - n_chunks * T
    MASK_BEFORE_0: tl.constexpr = HAS_H0 or LIF
    # inputs are loaded two steps ahead of their use
    u_next = _load_step(u_ptr, row, first, L, H, mask_h, acc_dtype, REVERSE)
    u_after = _load_step(u_ptr, row, first + 1, L, H, mask_h, acc_dtype, REVERSE)
    for c in range(0, n_chunks):
        out_tile = tl.zeros([BLOCK_H, T], dtype=acc_dtype)
        m_tile = tl.zeros([BLOCK_H, T], dtype=acc_dtype)
        for j in tl.static_range(T):
            i = first + c * T + j
            u, u_next = u_next, u_after
            u_after = _load_step(u_ptr, row, i + 2, L, H, mask_h, acc_dtype, REVERSE)
            live = i >= 0
            ub = u[:, None]
            if SCALED:
                new_re = A_re * x_re + (ub - A_im * x_im)
                new_im = A_re * x_im + A_im * x_re
            else:
                new_re = A_re * x_re + (B_re * ub - A_im * x_im)
                new_im = A_re * x_im + (B_im * ub + A_im * x_re)
            if MASK_BEFORE_0:
                x_re = tl.where(live, new_re, x_re)
                x_im = tl.where(live, new_im, x_im)
            else:
                x_re = new_re
                x_im = new_im
            y = tl.sum(C_re * x_re - C_im * x_im, axis=1) + D * u
            if LIF:
                m = leak_before(beta, v, RESET) + y
                spiked = fires(m, th, FIRE_ON_TIE)
                v = tl.where(live, post_reset(m, spiked, th, beta, RESET), v)
                out_tile = _set_column(out_tile, cols, j, spiked.to(acc_dtype))
                m_tile = _set_column(m_tile, cols, j, m)
            else:
                out_tile = _set_column(out_tile, cols, j, y)
        _store_tile(out_ptr, out_tile, row, cols, first + c * T, L, H, mask_h, REVERSE)
        if STORE_M:
            _store_tile(m_ptr, m_tile, row, cols, first + c * T, L, H, mask_h, REVERSE)

    if SCALED:
        # B again from memory rather than held in registers through the walk
        B_re = tl.load(P_ptr + 2 * H * N + hn, mask=mask_hn, other=0.0)
        B_im = tl.load(P_ptr + 3 * H * N + hn, mask=mask_hn, other=0.0)
        x_re, x_im = B_re * x_re - B_im * x_im, B_re * x_im + B_im * x_re
    tl.store(hT_ptr + state_offs, x_re, mask=mask_hn)
    tl.store(hT_ptr + H * N + state_offs, x_im, mask=mask_hn)
    if LIF:
        tl.store(vT_ptr + pid_b * H + offs_h, v, mask=mask_h)


@triton.jit
def s4d_bwd_kernel(
    u_ptr, P_ptr, D_ptr, h0_ptr, g_ptr, gT_ptr, m_ptr, sigma_ptr, v0_ptr, beta_ptr, th_ptr, gvT_ptr,
    du_ptr, dP_ptr, dD_ptr, dh0_ptr, dv0_ptr, dbeta_ptr, dth_ptr, alpha_ptr,
    L, H, N,
    HAS_D: tl.constexpr, HAS_H0: tl.constexpr, HAS_GT: tl.constexpr, LIF: tl.constexpr, HAS_V0: tl.constexpr,
    HAS_GVT: tl.constexpr, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, SURROGATE: tl.constexpr,
    DETACH_RESET: tl.constexpr,
    REVERSE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, T: tl.constexpr,
):
    """Reverse walk of the adjoint (module docstring). g is dLoss/dy, or with LIF dLoss/dspikes (then m holds the
    pre-reset membranes and, for the "leaky" surrogate, sigma its derivative; alpha_ptr the surrogate's alpha, in
    the state dtype). Writes du and, per batch element, the partial sums dP (B, 6, H, N) of the parameter
    gradients' real planes, dD, dbeta, dthreshold (B, H)."""
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = P_ptr.dtype.element_ty
    alpha = 0.0
    if LIF:
        alpha = tl.load(alpha_ptr)

    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_n = tl.arange(0, BLOCK_N)
    mask_h = offs_h < H
    mask_hn = mask_h[:, None] & (offs_n[None, :] < N)
    hn = offs_h[:, None] * N + offs_n[None, :]
    HN = H * N
    A_re, A_im, B_re, B_im, C_re, C_im = _load_planes(P_ptr, hn, mask_hn, HN)
    # du needs Re(conj(B) g) = Re(conj(B) conj(C) q) + Re(conj(B) r): K = conj(B C).
    K_re = B_re * C_re - B_im * C_im
    K_im = -(B_re * C_im + B_im * C_re)
    zero = tl.zeros([BLOCK_H, BLOCK_N], dtype=acc_dtype)
    zero_h = tl.zeros([BLOCK_H], dtype=acc_dtype)
    D = _load_channels(D_ptr, offs_h, mask_h, HAS_D, zero_h)
    state_offs = pid_b * 2 * HN + hn
    r_re, r_im = _load_state(gT_ptr, state_offs, mask_hn, HN, HAS_GT, zero)
    q_re, q_im, wq_re, wq_im = zero, zero, zero, zero
    Sq_re, Sq_im, Swq_re, Swq_im = zero, zero, zero, zero
    wr_re, wr_im, Sr_re, Sr_im, Swr_re, Swr_im = zero, zero, zero, zero, zero, zero
    dD = zero_h
    if LIF:
        beta = _load_channels(beta_ptr, offs_h, mask_h, True, zero_h)
        th = _load_channels(th_ptr, offs_h, mask_h, True, zero_h)
        v0 = _load_channels(v0_ptr, pid_b * H + offs_h, mask_h, HAS_V0, zero_h)
        # dLoss/d(post-reset membrane), carried backwards
        g_v = _load_channels(gvT_ptr, pid_b * H + offs_h, mask_h, HAS_GVT, zero_h)
        dbeta = zero_h
        dth = zero_h

    row = pid_b * L * H + offs_h
    cols = tl.arange(0, T)
    n_chunks = tl.cdiv(L, T)
    top = n_chunks * T - 1  # the walk starts at the last step of the last chunk (steps >= L do nothing)
    # inputs are loaded two steps ahead of their use (the next step's, then the one after)
    u_next = _load_step(u_ptr, row, top, L, H, mask_h, acc_dtype, REVERSE)
    u_after = _load_step(u_ptr, row, top - 1, L, H, mask_h, acc_dtype, REVERSE)
    g_next = _load_step(g_ptr, row, top, L, H, mask_h, acc_dtype, REVERSE)
    g_after = _load_step(g_ptr, row, top - 1, L, H, mask_h, acc_dtype, REVERSE)
    if LIF:
        m_next = _load_step(m_ptr, row, top, L, H, mask_h, acc_dtype, REVERSE)
        m_after = _load_step(m_ptr, row, top - 1, L, H, mask_h, acc_dtype, REVERSE)
        if SURROGATE == LEAKY:
            sigma_next = _load_step(sigma_ptr, row, top, L, H, mask_h, acc_dtype, REVERSE)
            sigma_after = _load_step(sigma_ptr, row, top - 1, L, H, mask_h, acc_dtype, REVERSE)
    for k in range(0, n_chunks):
        c = n_chunks - 1 - k
        du_tile = tl.zeros([BLOCK_H, T], dtype=acc_dtype)
        for jj in tl.static_range(T):
            j = T - 1 - jj  # compile-time: the loop is unrolled
            i = c * T + j
            live = i < L
            u, u_next = u_next, u_after
            g_in, g_next = g_next, g_after
            u_after = _load_step(u_ptr, row, i - 2, L, H, mask_h, acc_dtype, REVERSE)
            g_after = _load_step(g_ptr, row, i - 2, L, H, mask_h, acc_dtype, REVERSE)
            if LIF:
                m, m_next = m_next, m_after  # m_next: step i - 1's membrane, for v_prev
                m_after = _load_step(m_ptr, row, i - 2, L, H, mask_h, acc_dtype, REVERSE)
                if SURROGATE == LEAKY:
                    sigma, sigma_next = sigma_next, sigma_after
                    sigma_after = _load_step(sigma_ptr, row, i - 2, L, H, mask_h, acc_dtype, REVERSE)
                else:
                    sigma = surrogate_derivative(m - th, alpha, SURROGATE)
                spike = fires(m, th, FIRE_ON_TIE).to(acc_dtype)
                cr = g_in * sigma
                dv_dm, dv_dth = reset_derivatives(m, spike, sigma, beta, th, RESET, DETACH_RESET)
                gy = tl.where(live, cr + g_v * dv_dm, 0.0)
                dth += tl.where(live, g_v * dv_dth - cr, 0.0)
                if RESET == AFTER_DECAY:  # v_i = beta m_i - th s_i; m_i = v_{i-1} + y_i
                    dbeta += tl.where(live, g_v * m, 0.0)
                    g_v = tl.where(live, gy, g_v)
                else:
                    v_prev = tl.where(i > 0, post_reset(m_next, fires(m_next, th, FIRE_ON_TIE), th, beta, RESET),
                                      v0)
                    dbeta += gy * v_prev
                    g_v = tl.where(live, beta * gy, g_v)
            else:
                gy = g_in
            ub = u[:, None]
            # wq_i = q_{i+1} + conj(A) wq_{i+1}, then q_i = gy_i + conj(A) q_{i+1}. Steps past the end come first
            # in this walk and have gy = u = 0, so q and wq stay 0 through them and need no mask; nor do the sums.
            wq_re, wq_im = _conj_mul_add(A_re, A_im, wq_re, wq_im, q_re, q_im)
            q_re, q_im = _conj_mul_add(A_re, A_im, q_re, q_im, gy[:, None], 0.0)
            Sq_re += ub * q_re
            Sq_im += ub * q_im
            Swq_re += ub * wq_re
            Swq_im += ub * wq_im
            du_n = K_re * q_re - K_im * q_im
            if HAS_GT:
                Sr_re += ub * r_re
                Sr_im += ub * r_im
                Swr_re += ub * wr_re
                Swr_im += ub * wr_im
                du_n += B_re * r_re + B_im * r_im
                # wr_{i-1} = r_i + conj(A) wr_i, r_{i-1} = conj(A) r_i; r starts at gT, so these are masked
                a_re, a_im = _conj_mul_add(A_re, A_im, wr_re, wr_im, r_re, r_im)
                wr_re = tl.where(live, a_re, wr_re)
                wr_im = tl.where(live, a_im, wr_im)
                a_re, a_im = _conj_mul(A_re, A_im, r_re, r_im)
                r_re = tl.where(live, a_re, r_re)
                r_im = tl.where(live, a_im, r_im)
            du = tl.sum(du_n, axis=1) + D * gy
            dD += gy * u
            du_tile = _set_column(du_tile, cols, j, du)
        _store_tile(du_ptr, du_tile, row, cols, c * T, L, H, mask_h, REVERSE)

    # q = q_0 and wq = wq_0 now; r = r_{-1} = conj(A) r_0 and wr = wr_{-1}.
    wq_re, wq_im = _conj_mul_add(A_re, A_im, wq_re, wq_im, q_re, q_im)  # wq_{-1}
    Aq_re, Aq_im = _conj_mul(A_re, A_im, q_re, q_im)  # conj(A) q_0
    dC_re, dC_im = _conj_mul(B_re, B_im, Sq_re, Sq_im)
    dB_re, dB_im = _conj_mul(C_re, C_im, Sq_re, Sq_im)
    dA_re, dA_im = _conj_mul(C_re, C_im, Swq_re, Swq_im)
    w_re, w_im = _conj_mul(C_re, C_im, wq_re, wq_im)  # conj(C) wq_{-1}: w_{-1} without its gT part
    dh0_re, dh0_im = _conj_mul(C_re, C_im, Aq_re, Aq_im)
    if HAS_GT:
        dB_re += Sr_re
        dB_im += Sr_im
        dA_re += Swr_re
        dA_im += Swr_im
        w_re += wr_re
        w_im += wr_im
        dh0_re += r_re
        dh0_im += r_im
    dA_re, dA_im = _conj_mul(B_re, B_im, dA_re, dA_im)
    if HAS_H0:
        h0_re, h0_im = _load_state(h0_ptr, state_offs, mask_hn, HN, True, zero)
        a_re, a_im = _conj_mul(h0_re, h0_im, w_re, w_im)
        dA_re += a_re
        dA_im += a_im
        a_re, a_im = _conj_mul(h0_re, h0_im, Aq_re, Aq_im)
        dC_re += a_re
        dC_im += a_im
        tl.store(dh0_ptr + state_offs, dh0_re, mask=mask_hn)
        tl.store(dh0_ptr + HN + state_offs, dh0_im, mask=mask_hn)
    planes = dP_ptr + pid_b * 6 * HN + hn
    tl.store(planes, dA_re, mask=mask_hn)
    tl.store(planes + HN, dA_im, mask=mask_hn)
    tl.store(planes + 2 * HN, dB_re, mask=mask_hn)
    tl.store(planes + 3 * HN, dB_im, mask=mask_hn)
    tl.store(planes + 4 * HN, dC_re, mask=mask_hn)
    tl.store(planes + 5 * HN, dC_im, mask=mask_hn)
    per_batch = pid_b * H + offs_h
    tl.store(dD_ptr + per_batch, dD, mask=mask_h)
    if LIF:
        tl.store(dbeta_ptr + per_batch, dbeta, mask=mask_h)
        tl.store(dth_ptr + per_batch, dth, mask=mask_h)
        if HAS_V0:
            tl.store(dv0_ptr + per_batch, g_v, mask=mask_h)


# Output tiles are written every T steps: one layout exchange (through shared memory) per T steps instead of per
# step. Launch shapes were chosen from sm_90 compiles (benchmarks/kernel_resources.py), not yet from timings:
# about 8 states per thread keep the forward near 11-14 issued instructions per state and step at 96-128 registers;
# 16 save one instruction but double the registers, 32 spill. The backward holds 12 registers per state (A, K, q,
# wq and the two sums) and 10 more with a final-state gradient (r, wr and theirs); that case and the LIF
# backward (whose per-channel adjoint every thread of a channel's row repeats) each halve the states per thread.
# BLOCK_H stays <= 64: with wider blocks Triton exchanges the per-step (BLOCK_H,) vectors through shared memory
# at every step. Inputs are loaded two steps ahead: a step is ~110 (forward) to ~160 (backward) issued
# instructions per warp, which 2-4 warps per scheduler stretch to ~300-450 cycles, about one trip to DRAM; one
# step ahead would often leave a warp waiting. The second step ahead costs no instructions on sm_90 (the
# unrolled steps rename registers), where Triton's pipeliner through shared memory cost 9-23% more on Triton 3.6.
T = 8
STATES_PER_THREAD = 8
MAX_BLOCK_H = 64
MAX_WARPS = 4
# One program walks all of time, so the grid is all the parallelism there is: below MIN_PROGRAMS programs (two
# per SM of an H100) the states per thread halve, down to MIN_STATES_PER_THREAD, to spread the work over more
# SMs at some cost in instructions per state (~22 per step forward at 2 states per thread).
MIN_PROGRAMS = 264
MIN_STATES_PER_THREAD = 2


def launch_config(B: int, H: int, N: int, states_per_thread: int = STATES_PER_THREAD) -> tuple[int, int, int]:
    """(BLOCK_H, BLOCK_N, num_warps) for a batch of B sequences of H channels with N states each."""
    block_n = next_power_of_2(N)

    def block_h(per_thread):
        return max(1, min(next_power_of_2(H), MAX_BLOCK_H, MAX_WARPS * 32 * per_thread // block_n))

    while states_per_thread > MIN_STATES_PER_THREAD and B * cdiv(H, block_h(states_per_thread)) < MIN_PROGRAMS:
        states_per_thread //= 2
    bh = block_h(states_per_thread)
    warps = max(1, min(MAX_WARPS, bh * block_n // (32 * states_per_thread)))
    return bh, block_n, warps


def backward_states_per_thread(has_gT: bool, lif: bool) -> int:
    return STATES_PER_THREAD >> (int(has_gT) + int(lif))


def parameter_planes(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """(H, N) complex A, B, C -> (6, H, N) real planes (A_re, A_im, B_re, B_im, C_re, C_im), contiguous."""
    return torch.stack((A.real, A.imag, B.real, B.imag, C.real, C.imag)).contiguous()


def state_planes(state: torch.Tensor | None) -> torch.Tensor | None:
    """(B, H, N) complex -> (B, 2, H, N) real planes (common.launch.complex_planes), or None."""
    return None if state is None else complex_planes(state)


def complex_state(planes: torch.Tensor) -> torch.Tensor:
    """Inverse of state_planes."""
    return torch.complex(planes[:, 0], planes[:, 1])


def _forward(u, A, B, C, D, h0, reverse: bool, lif=None):
    Bsz, L, H = u.shape
    N = A.shape[1]
    block_h, block_n, warps = launch_config(Bsz, H, N)
    real = A.real.dtype
    hT = torch.empty((Bsz, 2, H, N), dtype=real, device=u.device)
    out = torch.empty_like(u)
    v0, beta, threshold, reset, store_m, fire_on_tie = (lif if lif is not None else
                                                        (None, None, None, "subtract", False, False))
    membrane = torch.empty((Bsz, L, H), dtype=real, device=u.device) if store_m else None
    vT = torch.empty((Bsz, H), dtype=real, device=u.device) if lif is not None else None
    spare = hT  # stands in for absent pointers; never read or written
    s4d_fwd_kernel[(cdiv(H, block_h), Bsz)](
        u, parameter_planes(A, B, C), D if D is not None else spare, state_planes(h0) if h0 is not None else spare,
        v0 if v0 is not None else spare, beta if beta is not None else spare,
        threshold if threshold is not None else spare,
        out, membrane if membrane is not None else spare, hT, vT if vT is not None else spare,
        L, H, N,
        HAS_D=D is not None, HAS_H0=h0 is not None, LIF=lif is not None, HAS_V0=v0 is not None,
        RESET=RESET_CODES[reset], FIRE_ON_TIE=fire_on_tie, STORE_M=store_m, REVERSE=reverse,
        BLOCK_H=block_h, BLOCK_N=block_n, T=T, num_warps=warps,
    )
    return out, complex_state(hT), vT, membrane


def _backward(u, A, B, C, D, h0, g, gT, reverse: bool, lif=None):
    Bsz, L, H = u.shape
    N = A.shape[1]
    block_h, block_n, warps = launch_config(Bsz, H, N, backward_states_per_thread(gT is not None, lif is not None))
    real = A.real.dtype
    du = torch.empty_like(u)
    dP = torch.empty((Bsz, 6, H, N), dtype=real, device=u.device)
    dD = torch.empty((Bsz, H), dtype=real, device=u.device)
    dh0 = torch.empty((Bsz, 2, H, N), dtype=real, device=u.device) if h0 is not None else None
    if lif is not None:
        membrane, sigma, v0, beta, threshold, gvT, reset, surrogate, alpha, detach_reset, fire_on_tie = lif
        alpha = surrogate_alpha(alpha, real, u.device)
        dv0 = torch.empty((Bsz, H), dtype=real, device=u.device) if v0 is not None else None
        dbeta, dth = (torch.empty((Bsz, H), dtype=real, device=u.device) for _ in range(2))
    else:
        membrane = sigma = v0 = beta = threshold = gvT = dv0 = dbeta = dth = None
        reset, surrogate, alpha, detach_reset, fire_on_tie = "subtract", "atan", None, False, False
    spare = dD  # stands in for absent pointers; never read or written

    def arg(t):
        return t if t is not None else spare

    s4d_bwd_kernel[(cdiv(H, block_h), Bsz)](
        u, parameter_planes(A, B, C), arg(D), arg(state_planes(h0)), g, arg(state_planes(gT)), arg(membrane),
        arg(sigma), arg(v0), arg(beta), arg(threshold), arg(gvT), du, dP, dD, arg(dh0), arg(dv0), arg(dbeta),
        arg(dth), arg(alpha),
        L, H, N,
        HAS_D=D is not None, HAS_H0=h0 is not None, HAS_GT=gT is not None, LIF=lif is not None,
        HAS_V0=v0 is not None, HAS_GVT=gvT is not None, RESET=RESET_CODES[reset], FIRE_ON_TIE=fire_on_tie,
        SURROGATE=SURROGATE_CODES[surrogate], DETACH_RESET=detach_reset, REVERSE=reverse,
        BLOCK_H=block_h, BLOCK_N=block_n, T=T, num_warps=warps,
    )
    planes = dP.sum(0)
    dA, dB, dC = (torch.complex(planes[2 * k], planes[2 * k + 1]) for k in range(3))
    grads = (du, dA, dB, dC, dD.sum(0) if D is not None else None, complex_state(dh0) if h0 is not None else None)
    if lif is None:
        return grads
    return grads + (dv0, dbeta.sum(0), dth.sum(0))


def s4d_scan_fwd(u, A, B, C, D, h0, reverse: bool):
    """Forward launcher.

    Args:
        u: (B, L, H) real, contiguous. A, B, C: (H, N) complex (the state dtype). D: (H,) real or None.
        h0: (B, H, N) complex, contiguous, or None.
    Returns:
        y: (B, L, H) in u's dtype; final_state: (B, H, N) complex.
    """
    y, hT, _, _ = _forward(u, A, B, C, D, h0, reverse)
    return y, hT


def s4d_scan_bwd(u, A, B, C, D, h0, gy, gT, reverse: bool):
    """Backward launcher: gy (B, L, H) = dLoss/dy, contiguous; gT (B, H, N) = dLoss/dfinal_state or None.

    Returns du (u's shape and dtype), dA, dB, dC ((H, N), A's dtype), dD ((H,) or None), dh0 ((B, H, N) or None).
    """
    return _backward(u, A, B, C, D, h0, gy, gT, reverse)


def s4d_lif_fwd(u, A, B, C, D, h0, v0, beta, threshold, reset: str, reverse: bool, store_membrane: bool,
                fire_on_tie: bool = False):
    """Forward launcher of S4D followed by LIF. u, A, B, C, D, h0 as in s4d_scan_fwd; v0 (B, H) or None; beta,
    threshold (H,) in the state's real dtype; fire_on_tie: spike where the membrane equals the threshold too.

    Returns spikes (u's dtype), final SSM state (B, H, N), final membrane (B, H), and the pre-reset membrane
    (B, L, H) when store_membrane (what the backward needs), else None."""
    return _forward(u, A, B, C, D, h0, reverse, (v0, beta, threshold, reset, store_membrane, fire_on_tie))


def s4d_lif_bwd(u, A, B, C, D, h0, v0, beta, threshold, membrane, g_spikes, gT, gvT, reset: str, surrogate: str,
                alpha: float, detach_reset: bool, reverse: bool, sigma=None, fire_on_tie: bool = False):
    """Backward launcher of S4D followed by LIF; membrane is the pre-reset membrane s4d_lif_fwd stored. For the
    "leaky" surrogate, sigma (B, L, H) is its derivative at every step (it depends on the spike history).

    Returns du, dA, dB, dC, dD (or None), dh0 (or None), dv0 (or None), dbeta, dthreshold."""
    if (surrogate == "leaky") != (sigma is not None):
        raise ValueError("s4d_lif_bwd: sigma is needed for, and only for, the 'leaky' surrogate")
    return _backward(u, A, B, C, D, h0, g_spikes, gT, reverse,
                     (membrane, sigma, v0, beta, threshold, gvT, reset, surrogate, alpha, detach_reset, fire_on_tie))
