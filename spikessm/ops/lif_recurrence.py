"""The PyTorch path of lif: a forward loop without autograd and an explicit adjoint, both walking small
(batch, channels) slices that stay in cache.

Forward, per step (exact LIF, sequential because of the reset):
    m_t = beta v_{t-1} + x_t          (membrane before the reset; saved for the backward)
    s_t = H(m_t - threshold)
    v_t = R(m_t, s_t)                 subtract: m - threshold s;  zero: m (1 - s);  none: m

Backward. With sigma_t the surrogate derivative at m_t - threshold, gs the gradient of the spikes and Gv_t that
of v_t, the gradient of m_t is  Gm_t = gs_t sigma_t + Gv_t dv/dm_t,  and  Gv_{t-1} = beta Gm_t: a linear
recurrence backwards in time. Time is walked in chunks of CHUNK steps from the end: per chunk, sigma and the
reset's derivatives are computed at once on a cache-sized slice, then the recurrence costs two small ops per
step. (Whole-sequence vectorisation streams every temporary through memory and was slower on a CPU than an
autograd loop; see benchmarks/bench_lif.py.)
"""
from __future__ import annotations

import torch

from .surrogates import derivative, leaky_derivative

RESETS = ("subtract", "zero", "none")


def state_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _post_reset(m, spiked, threshold, reset):
    if reset == "subtract":
        return torch.where(spiked, m - threshold, m)
    if reset == "zero":
        return m.masked_fill(spiked, 0.0)
    return m


def lif_fwd(x, beta, threshold, h0, reset: str):
    """x: (B, L, H); beta, threshold: (H,) state dtype; h0: (B, H) or None.

    Returns spikes (B, L, H) in x's dtype, the pre-reset membrane m (B, L, H) and the final state (B, H),
    both in the state dtype."""
    dtype = state_dtype(x)
    B, L, H = x.shape
    v = h0.to(dtype) if h0 is not None else x.new_zeros(B, H, dtype=dtype)
    m_all = torch.empty(B, L, H, dtype=dtype, device=x.device)
    x_steps = x.to(dtype).unbind(1)
    for t in range(L):
        m = torch.addcmul(x_steps[t], beta, v, out=m_all[:, t])
        v = _post_reset(m, m > threshold, threshold, reset) if reset != "none" else m
    spikes = (m_all > threshold).to(x.dtype)  # the same comparison as in the loop
    return spikes, m_all, v.clone()  # without a reset v is a view of m_all


CHUNK = 32


def _reset_derivatives(m, spiked, sigma, threshold, reset, detach_reset):
    """(dv/dm, dv/dthreshold) of the reset, elementwise; None stands for 1 (dv/dm) or 0 (dv/dthreshold)."""
    s = spiked.to(m.dtype)
    if reset == "subtract":
        if detach_reset:
            return None, -s
        return 1 - threshold * sigma, threshold * sigma - s
    if reset == "zero":
        if detach_reset:
            return 1 - s, None
        return (1 - s) - m * sigma, m * sigma
    return None, None


def lif_bwd(beta, threshold, h0, m_all, g_spikes, g_final, reset: str, surrogate: str, alpha: float,
            detach_reset: bool, x_dtype: torch.dtype):
    """Gradients (dx (B, L, H) in x_dtype, dbeta (H,), dthreshold (H,), dh0 (B, H) or None)."""
    dtype = m_all.dtype
    B, L, H = m_all.shape
    dx = torch.empty(B, L, H, dtype=x_dtype, device=m_all.device)
    dbeta = m_all.new_zeros(H)
    dthreshold = m_all.new_zeros(H)
    g_v = g_final.to(dtype).clone() if g_final is not None else m_all.new_zeros(B, H)  # gradient of v_(end-1)
    if surrogate == "leaky":  # depends on the spike history: computed for all steps at once
        leaky = leaky_derivative((m_all > threshold).to(dtype), beta, threshold)
    for end in range(L, 0, -CHUNK):
        start = max(0, end - CHUNK)
        m = m_all[:, start:end]
        spiked = m > threshold
        sigma = leaky[:, start:end] if surrogate == "leaky" else derivative(surrogate, m - threshold, alpha)
        c = g_spikes[:, start:end].to(dtype) * sigma
        dv_dm, dv_dth = _reset_derivatives(m, spiked, sigma, threshold, reset, detach_reset)

        g_m = torch.empty_like(m)  # gradient of m_t
        g_v_end = g_v
        for k in range(end - start - 1, -1, -1):
            if dv_dm is None:
                torch.add(c[:, k], g_v, out=g_m[:, k])
            else:
                torch.addcmul(c[:, k], g_v, dv_dm[:, k], out=g_m[:, k])
            g_v = beta * g_m[:, k]
        dx[:, start:end] = g_m

        if start > 0:
            prev = m_all[:, start - 1:end - 1]
            v_prev = _post_reset(prev, prev > threshold, threshold, reset)
        else:
            first = h0.to(dtype)[:, None] if h0 is not None else m_all.new_zeros(B, 1, H)
            rest = m_all[:, :end - 1]
            v_prev = torch.cat([first, _post_reset(rest, rest > threshold, threshold, reset)], dim=1)
        dbeta += (g_m * v_prev).sum((0, 1))
        dthreshold -= c.sum((0, 1))
        if dv_dth is not None:
            # gradient of v_t inside the chunk: beta * g_m_(t+1), and the carried-in value at the chunk's end
            g_v_chunk = torch.cat([beta * g_m[:, 1:], g_v_end[:, None]], dim=1)
            dthreshold += (g_v_chunk * dv_dth).sum((0, 1))
    return dx, dbeta, dthreshold, (g_v if h0 is not None else None)
