"""Leaky integrate-and-fire neurons over a sequence: forward and backward, membrane in registers.

Grid: one program per (block of BLOCK_H channels, batch element), walking time one step at a time (the reset
makes the recurrence non-linear, so there is no associative scan). The forward writes the spikes and the
pre-reset membrane m_t (the backward's only saved state); the backward walks time in reverse with the surrogate
inline and sums the gradients of beta and threshold on chip into per-batch partial sums.

    m_t = beta v_{t-1} + x_t;  s_t = H(m_t - threshold);  v_t = m_t - threshold s_t | m_t (1 - s_t) | m_t
    Gm_t = gs_t sigma_t + Gv_t dv/dm_t;  Gv_{t-1} = beta Gm_t   (sigma = the surrogate derivative)
"""
import math

import torch
import triton
import triton.language as tl

HALF_PI = tl.constexpr(math.pi / 2)
# "leaky" depends on the spike history: its derivative comes from the ops layer and is read from memory.
SURROGATE_CODES = {"atan": 0, "fast_sigmoid": 1, "triangle": 2, "sigmoid": 3, "rectangle": 4, "leaky": 5}
RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}


@triton.jit
def _surrogate(x, alpha, SURROGATE: tl.constexpr):
    """d spike / d x at x = m - threshold; formulas as in spikessm.ops.surrogates."""
    if SURROGATE == 0:
        z = HALF_PI * alpha * x
        d = (0.5 * alpha) / (1.0 + z * z)
    elif SURROGATE == 1:
        z = 1.0 + alpha * tl.abs(x)
        d = 1.0 / (z * z)
    elif SURROGATE == 2:
        d = tl.maximum(1.0 - tl.abs(x) / alpha, 0.0) / alpha
    elif SURROGATE == 3:
        sig = 1.0 / (1.0 + tl.exp(-alpha * x))
        d = alpha * sig * (1.0 - sig)
    else:
        d = tl.where(tl.abs(x) < 0.5 * alpha, 1.0 / alpha, 0.0)
    return d


@triton.jit
def _post_reset(m, spiked, threshold, RESET: tl.constexpr):
    if RESET == 0:
        v = tl.where(spiked, m - threshold, m)
    elif RESET == 1:
        v = tl.where(spiked, 0.0, m)
    else:
        v = m
    return v


@triton.jit
def _reset_derivatives(m, s, sigma, th, RESET: tl.constexpr, DETACH_RESET: tl.constexpr):
    """(dv/dm, dv/dthreshold) of the reset at pre-reset membrane m, spike s (0/1) and surrogate sigma."""
    one = tl.full(m.shape, 1.0, m.dtype)
    zero = tl.zeros(m.shape, m.dtype)
    if RESET == 0:
        if DETACH_RESET:
            dv_dm = one
            dv_dth = -s
        else:
            dv_dm = 1.0 - th * sigma
            dv_dth = th * sigma - s
    elif RESET == 1:
        if DETACH_RESET:
            dv_dm = 1.0 - s
            dv_dth = zero
        else:
            dv_dm = (1.0 - s) - m * sigma
            dv_dth = m * sigma
    else:
        dv_dm = one
        dv_dth = zero
    return dv_dm, dv_dth


@triton.jit
def _lif_fwd_kernel(
    x_ptr, beta_ptr, th_ptr, h0_ptr, s_ptr, m_ptr, vT_ptr,
    L, H,
    HAS_H0: tl.constexpr, RESET: tl.constexpr, BLOCK_H: tl.constexpr,
):
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = vT_ptr.dtype.element_ty
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = offs_h < H
    beta = tl.load(beta_ptr + offs_h, mask=mask, other=0.0).to(acc_dtype)
    th = tl.load(th_ptr + offs_h, mask=mask, other=0.0).to(acc_dtype)
    v = tl.zeros([BLOCK_H], dtype=acc_dtype)
    if HAS_H0:
        v = tl.load(h0_ptr + pid_b * H + offs_h, mask=mask, other=0.0).to(acc_dtype)
    row = pid_b * L * H + offs_h
    for t in range(0, L):
        x = tl.load(x_ptr + row + t * H, mask=mask, other=0.0).to(acc_dtype)
        m = beta * v + x
        spiked = m > th
        tl.store(m_ptr + row + t * H, m, mask=mask)
        tl.store(s_ptr + row + t * H, spiked.to(s_ptr.dtype.element_ty), mask=mask)
        v = _post_reset(m, spiked, th, RESET)
    tl.store(vT_ptr + pid_b * H + offs_h, v, mask=mask)


@triton.jit
def _lif_bwd_kernel(
    beta_ptr, th_ptr, h0_ptr, m_ptr, gs_ptr, gT_ptr, sigma_ptr, dx_ptr, dbeta_ptr, dth_ptr, dh0_ptr,
    L, H, alpha,
    HAS_H0: tl.constexpr, HAS_GT: tl.constexpr, RESET: tl.constexpr, SURROGATE: tl.constexpr,
    DETACH_RESET: tl.constexpr, BLOCK_H: tl.constexpr,
):
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = dbeta_ptr.dtype.element_ty
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = offs_h < H
    beta = tl.load(beta_ptr + offs_h, mask=mask, other=0.0).to(acc_dtype)
    th = tl.load(th_ptr + offs_h, mask=mask, other=0.0).to(acc_dtype)
    h0 = tl.zeros([BLOCK_H], dtype=acc_dtype)
    if HAS_H0:
        h0 = tl.load(h0_ptr + pid_b * H + offs_h, mask=mask, other=0.0).to(acc_dtype)
    g_v = tl.zeros([BLOCK_H], dtype=acc_dtype)  # gradient of the post-reset membrane v_t
    if HAS_GT:
        g_v = tl.load(gT_ptr + pid_b * H + offs_h, mask=mask, other=0.0).to(acc_dtype)
    dbeta = tl.zeros([BLOCK_H], dtype=acc_dtype)
    dth = tl.zeros([BLOCK_H], dtype=acc_dtype)
    row = pid_b * L * H + offs_h
    for k in range(0, L):
        t = L - 1 - k
        m = tl.load(m_ptr + row + t * H, mask=mask, other=0.0).to(acc_dtype)
        gs = tl.load(gs_ptr + row + t * H, mask=mask, other=0.0).to(acc_dtype)
        spiked = m > th
        s = spiked.to(acc_dtype)
        if SURROGATE == 5:
            sigma = tl.load(sigma_ptr + row + t * H, mask=mask, other=0.0).to(acc_dtype)
        else:
            sigma = _surrogate(m - th, alpha, SURROGATE)
        c = gs * sigma
        dv_dm, dv_dth = _reset_derivatives(m, s, sigma, th, RESET, DETACH_RESET)
        g_m = c + g_v * dv_dm
        tl.store(dx_ptr + row + t * H, g_m.to(dx_ptr.dtype.element_ty), mask=mask)
        # v_{t-1}: the post-reset membrane of the previous step, or the initial state
        # (at t = 0 the load of step 0 is in bounds and discarded)
        m_prev = tl.load(m_ptr + row + tl.maximum(t - 1, 0) * H, mask=mask, other=0.0).to(acc_dtype)
        v_prev = tl.where(t > 0, _post_reset(m_prev, m_prev > th, th, RESET), h0)
        dbeta += g_m * v_prev
        dth += g_v * dv_dth - c
        g_v = beta * g_m
    tl.store(dbeta_ptr + pid_b * H + offs_h, dbeta, mask=mask)
    tl.store(dth_ptr + pid_b * H + offs_h, dth, mask=mask)
    if HAS_H0:
        tl.store(dh0_ptr + pid_b * H + offs_h, g_v, mask=mask)


def _block_h(B: int, H: int) -> int:
    # Small blocks give more programs: one program walks all of time, so the grid is the only parallelism.
    block_h = min(128, triton.next_power_of_2(H))
    while block_h > 32 and B * triton.cdiv(H, block_h) < 1024:
        block_h //= 2
    return block_h


def lif_fwd(x, beta, threshold, h0, reset: str):
    """Same arguments and results as spikessm.ops.lif_recurrence.lif_fwd: x (B, L, H) contiguous; beta,
    threshold (H,) in the state dtype; h0 (B, H) or None -> spikes (x's dtype), pre-reset membrane, final state."""
    B, L, H = x.shape
    dtype = beta.dtype
    spikes = torch.empty_like(x)
    m_all = torch.empty((B, L, H), dtype=dtype, device=x.device)
    vT = torch.empty((B, H), dtype=dtype, device=x.device)
    block_h = _block_h(B, H)
    _lif_fwd_kernel[(triton.cdiv(H, block_h), B)](
        x, beta, threshold, h0 if h0 is not None else vT, spikes, m_all, vT, L, H,
        HAS_H0=h0 is not None, RESET=RESET_CODES[reset], BLOCK_H=block_h,
    )
    return spikes, m_all, vT


def lif_bwd(beta, threshold, h0, m_all, g_spikes, g_final, reset: str, surrogate: str, alpha: float,
            detach_reset: bool, x_dtype: torch.dtype, sigma=None):
    """Same arguments and results as spikessm.ops.lif_recurrence.lif_bwd; for surrogate "leaky", `sigma` (B, L, H)
    is its derivative at every step (it depends on the spike history, which the backward does not see)."""
    if (surrogate == "leaky") != (sigma is not None):
        raise ValueError("lif_bwd: sigma is needed for, and only for, the 'leaky' surrogate")
    B, L, H = m_all.shape
    dx = torch.empty((B, L, H), dtype=x_dtype, device=m_all.device)
    dbeta = torch.empty((B, H), dtype=m_all.dtype, device=m_all.device)
    dth = torch.empty_like(dbeta)
    dh0 = torch.empty_like(dbeta)
    block_h = _block_h(B, H)
    _lif_bwd_kernel[(triton.cdiv(H, block_h), B)](
        beta, threshold, h0 if h0 is not None else dh0, m_all, g_spikes,
        g_final if g_final is not None else dh0, sigma if sigma is not None else m_all, dx, dbeta, dth, dh0,
        L, H, float(alpha),
        HAS_H0=h0 is not None, HAS_GT=g_final is not None, RESET=RESET_CODES[reset],
        SURROGATE=SURROGATE_CODES[surrogate], DETACH_RESET=detach_reset, BLOCK_H=block_h,
    )
    return dx, dbeta.sum(0), dth.sum(0), (dh0 if h0 is not None else None)
