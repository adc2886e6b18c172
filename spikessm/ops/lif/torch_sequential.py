"""The PyTorch path of lif (its "sequential" algorithm on the torch backend): a forward loop without autograd
and an explicit adjoint, both walking small (batch, channels) slices that stay in cache, registered as custom ops
(spikessm/ops/common/custom_op.py). lif's Triton implementation (triton_sequential.py) shares its signatures
and the autograd glue defined here.

Forward, per step (exact LIF, sequential because of the reset):
    m_t = beta v_{t-1} + x_t          (membrane before the reset; saved for the backward)
    s_t = H(m_t - threshold)          1 where m_t > threshold (m_t >= threshold with fire_on_tie)
    v_t = R(m_t, s_t)                 subtract: m - threshold s;  zero: m (1 - s);  none: m
With "subtract_after_decay" the leak moves into the reset: m_t = v_{t-1} + x_t, v_t = beta m_t - threshold s_t
(snntorch's order; spikessm/ops/common/reset.py). Its backward below is the same walk with the factor beta moved
likewise: Gv_{t-1} = Gm_t, dv/dm_t = beta - threshold sigma_t, and dbeta's terms Gv_t m_t.

Backward. With sigma_t the surrogate derivative at m_t - threshold, gs the gradient of the spikes and Gv_t that
of v_t, the gradient of m_t is  Gm_t = gs_t sigma_t + Gv_t dv/dm_t,  and  Gv_{t-1} = beta Gm_t: a linear
recurrence backwards in time. Time is walked in slices of SLICE steps from the end: per slice, sigma and the
reset's derivatives are computed at once on cache-sized tensors, then the recurrence costs one small op per
step (Gm_t = c_t + (beta dv/dm_t) Gm_{t+1}). (Vectorising the whole sequence instead streams every temporary
through memory, which on a CPU is slower than an autograd loop; benchmarks/bench_lif.py times that loop.)
"""
from __future__ import annotations

from typing import Optional

import torch

from ..common.custom_op import register
from ..common.reset import AFTER_DECAY, fires, post_reset
from ..common.surrogate import derivative_
from .leaky import leaky_derivative


def state_dtype(x: torch.Tensor) -> torch.dtype:
    """The membrane's dtype for input x: float64 for float64 x, float32 otherwise."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def walk(x, beta, threshold, h0, reset: str, fire_on_tie: bool = False):
    """The forward loop. x: (B, L, H); beta, threshold: (H,) state dtype; h0: (B, H) or None.

    Returns spikes (B, L, H) in x's dtype, the pre-reset membrane m (B, L, H) and the final state (B, H),
    both in the state dtype. Three small ops per step: each step's spikes are written where they belong and
    the reset is an addcmul with them (torch.where costs several times more on a CPU)."""
    dtype = state_dtype(x)
    B, L, H = x.shape
    v = h0.to(dtype) if h0 is not None else x.new_zeros(B, H, dtype=dtype)
    # A step writes B rows a whole (L, H) plane apart. On a CPU the first touch of fresh pages in that order
    # costs more than zeroing them in order first (page faults; measured ~25% of this function at B=32, L=1k).
    m_all = torch.zeros(B, L, H, dtype=dtype, device=x.device)
    spikes = torch.zeros(B, L, H, dtype=x.dtype, device=x.device)
    x_steps = x.to(dtype).unbind(1)
    after = reset == AFTER_DECAY
    for t in range(L):
        if after:  # the state has leaked already
            m = torch.add(x_steps[t], v, out=m_all[:, t])
        else:
            m = torch.addcmul(x_steps[t], beta, v, out=m_all[:, t])
        v = post_reset(m, fires(m, threshold, fire_on_tie, out=spikes[:, t]), threshold, reset, beta=beta)
    return spikes, m_all, v.clone()  # without a reset v is a view of m_all


SLICE = 32  # steps per backward slice: (B, SLICE, H) temporaries stay in cache


def _reset_derivatives(m, s, sigma, beta, threshold, reset, detach_reset, dv_dm, dv_dth):
    """(dv/dm, dv/dthreshold) of the reset, elementwise, written into the buffers dv_dm and dv_dth (m's
    shape); None stands for 1 (dv/dm) or 0 (dv/dthreshold). s: the spikes as 0/1 in m's dtype."""
    if reset == AFTER_DECAY:  # v = beta m - threshold s
        if detach_reset:
            return dv_dm.copy_(beta.expand(m.shape)), torch.neg(s, out=dv_dth)
        torch.mul(threshold, sigma, out=dv_dth)
        return torch.sub(beta, dv_dth, out=dv_dm), dv_dth.sub_(s)  # beta - threshold sigma, threshold sigma - s
    if reset == "subtract":
        if detach_reset:
            return None, torch.neg(s, out=dv_dth)
        torch.mul(threshold, sigma, out=dv_dth)
        return torch.neg(dv_dth, out=dv_dm).add_(1), dv_dth.sub_(s)  # 1 - threshold sigma, threshold sigma - s
    if reset == "zero":
        torch.neg(s, out=dv_dm).add_(1)
        if detach_reset:
            return dv_dm, None
        torch.mul(m, sigma, out=dv_dth)
        return dv_dm.sub_(dv_dth), dv_dth  # (1 - s) - m sigma, m sigma
    return None, None


def adjoint(beta, threshold, h0, m_all, g_spikes, g_final, reset: str, surrogate: str, alpha: float,
            detach_reset: bool, x_dtype: torch.dtype, fire_on_tie: bool = False):
    """The explicit adjoint: gradients (dx (B, L, H) in x_dtype, dbeta (H,), dthreshold (H,), dh0 (B, H) or None)
    from the pre-reset membrane m_all (B, L, H) and the gradients of the spikes and of the final membrane.

    The chunk-sized intermediates live in buffers allocated once per call and written with out= / in-place
    ops: on a CPU a fresh temporary of a megabyte or more costs page faults every time (the allocator hands
    blocks of that size back to the system when they are freed), which cost more than the arithmetic."""
    dtype = m_all.dtype
    B, L, H = m_all.shape
    dx = torch.empty(B, L, H, dtype=x_dtype, device=m_all.device)
    g_v = g_final.to(dtype) if g_final is not None else m_all.new_zeros(B, H)  # gradient of v_(end-1)
    if surrogate == "leaky":  # depends on the spike history: computed for all steps at once
        leaky = leaky_derivative(fires(m_all, threshold, fire_on_tie).to(dtype), beta, threshold)
    after = reset == AFTER_DECAY
    buffers = m_all.new_empty(7, B, min(SLICE, L), H).unbind(0)
    # dbeta's and dthreshold's terms are summed per (batch, position in the chunk) and reduced over batch and
    # time once at the end: a reduction per chunk costs more than the chunk's arithmetic. The third sum holds
    # dthreshold's terms that still need a factor beta.
    sums = m_all.new_zeros(3, B, min(SLICE, L), H).unbind(0)
    for end in range(L, 0, -SLICE):
        start = max(0, end - SLICE)
        s, sigma, c, dv_dm, dv_dth, v, g_m = (buf[:, :end - start] for buf in buffers)
        sum_beta, sum_threshold, sum_threshold_beta = (buf[:, :end - start] for buf in sums)
        m = m_all[:, start:end]
        fires(m, threshold, fire_on_tie, out=s)
        if surrogate == "leaky":
            sigma = leaky[:, start:end]
        else:
            sigma = derivative_(surrogate, torch.sub(m, threshold, out=sigma), alpha)
        torch.mul(g_spikes[:, start:end], sigma, out=c)
        dv_dm, dv_dth = _reset_derivatives(m, s, sigma, beta, threshold, reset, detach_reset, dv_dm, dv_dth)

        # g_m_k = c_k + dv/dm_k Gv_k with Gv_k = beta g_m_(k+1): beta joins dv/dm, so a step is one op
        # (after decay Gv_k = g_m_(k+1), and dv/dm holds beta already)
        if dv_dm is None:
            torch.add(c[:, -1], g_v, out=g_m[:, -1])
            decay = beta.expand(g_m.shape)
        else:
            torch.addcmul(c[:, -1], g_v, dv_dm[:, -1], out=g_m[:, -1])
            decay = dv_dm if after else dv_dm.mul_(beta)
        for k in range(end - start - 2, -1, -1):
            torch.addcmul(c[:, k], g_m[:, k + 1], decay[:, k], out=g_m[:, k])
        g_v_end, g_v = g_v, (g_m[:, 0].clone() if after else beta * g_m[:, 0])
        dx[:, start:end] = g_m

        if after:  # dbeta's and dthreshold's terms Gv_t m_t and Gv_t dv/dthreshold_t, all inside the chunk
            sum_beta[:, :-1].addcmul_(g_m[:, 1:], m[:, :-1])
            sum_beta[:, -1].addcmul_(g_v_end, m[:, -1])
            sum_threshold.sub_(c)
            sum_threshold[:, :-1].addcmul_(g_m[:, 1:], dv_dth[:, :-1])
            sum_threshold[:, -1].addcmul_(g_v_end, dv_dth[:, -1])
            continue
        # dbeta: the terms g_m_t v_(t-1); v_(t-1) comes from inside the chunk but for its first step
        v = post_reset(m, s, threshold, reset, out=v)
        sum_beta[:, 1:].addcmul_(g_m[:, 1:], v[:, :-1])
        if start > 0:
            before = m_all[:, start - 1]
            sum_beta[:, 0].addcmul_(g_m[:, 0], post_reset(before, fires(before, threshold, fire_on_tie).to(dtype),
                                                                threshold, reset))
        elif h0 is not None:
            sum_beta[:, 0].addcmul_(g_m[:, 0], h0.to(dtype))
        sum_threshold.sub_(c)
        if dv_dth is not None:  # with the gradient of v_t: beta g_m_(t+1) inside the chunk, g_v_end at its end
            sum_threshold_beta[:, :-1].addcmul_(g_m[:, 1:], dv_dth[:, :-1])
            sum_threshold[:, -1].addcmul_(g_v_end, dv_dth[:, -1])
    dbeta, dthreshold, dthreshold_beta = (buf.sum((0, 1)) for buf in sums)
    dthreshold.addcmul_(beta, dthreshold_beta)
    return dx, dbeta, dthreshold, (g_v if h0 is not None else None)


def forward(
    x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, h0: Optional[torch.Tensor], reset: str,
    surrogate: str, alpha: float, detach_reset: bool, fire_on_tie: bool, save_membrane: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spikes, the pre-reset membrane (B, L, H) (what the backward reads; an empty tensor unless save_membrane)
    and the final membrane. The neuron settings that only the backward uses are inputs so that setup_context
    keeps them."""
    spikes, m_all, final = walk(x, beta, threshold, h0, reset, fire_on_tie)
    return spikes, (m_all if save_membrane else m_all.new_empty(0)), final


def forward_fake(x, beta, threshold, h0, reset, surrogate, alpha, detach_reset, fire_on_tie, save_membrane):
    dtype = state_dtype(x)
    return (torch.empty_like(x), x.new_empty(x.shape if save_membrane else (0,), dtype=dtype),
            x.new_empty((x.shape[0], x.shape[2]), dtype=dtype))


def setup_context(ctx, inputs, output):
    x, beta, threshold, h0, reset, surrogate, alpha, detach_reset, fire_on_tie, save_membrane = inputs
    ctx.save_for_backward(x, beta, threshold, h0, output[1])
    ctx.options = (reset, surrogate, alpha, detach_reset, fire_on_tie)
    ctx.saved_membrane = save_membrane


def backward_on(adjoint):
    """The op's backward over `adjoint` (this module's or the Triton kernel's: both take the same arguments)."""
    def backward(
        x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, h0: Optional[torch.Tensor],
        m_all: torch.Tensor, g_spikes: torch.Tensor, g_final: torch.Tensor, reset: str, surrogate: str,
        alpha: float, detach_reset: bool, fire_on_tie: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dx, dbeta, dthreshold, dh0); dh0 is empty without h0."""
        dx, dbeta, dthreshold, dh0 = adjoint(beta, threshold, h0, m_all, g_spikes, g_final, reset, surrogate,
                                             alpha, detach_reset, x.dtype, fire_on_tie)
        return dx, dbeta, dthreshold, (dh0 if dh0 is not None else x.new_empty(0))
    return backward


backward = backward_on(adjoint)


def backward_fake(x, beta, threshold, h0, m_all, g_spikes, g_final, reset, surrogate, alpha, detach_reset,
                  fire_on_tie):
    dh0 = torch.empty_like(h0) if h0 is not None else x.new_empty(0)
    return torch.empty_like(x), torch.empty_like(beta), torch.empty_like(threshold), dh0


def input_gradients(ctx, backward, g_spikes, _g_membrane, g_final):
    x, beta, threshold, h0, m_all = ctx.saved_tensors
    if not ctx.saved_membrane:
        raise RuntimeError("lif: the forward ran without saving the membrane (no input required grad when it ran)")
    dx, dbeta, dthreshold, dh0 = backward(x, beta, threshold, h0, m_all, g_spikes.contiguous(), g_final.contiguous(),
                                          *ctx.options)
    return dx, dbeta, dthreshold, (dh0 if h0 is not None else None), None, None, None, None, None, None


op = register(__name__)


def run(x, beta, threshold, h0, *, reset: str, surrogate: str, alpha: float, detach_reset: bool,
        save_membrane: bool, fire_on_tie: bool = False):
    """Spikes, the pre-reset membrane (empty unless save_membrane) and the final membrane, differentiable; inputs
    checked and contiguous, beta and threshold (H,) in the membrane dtype."""
    return op(x=x, beta=beta, threshold=threshold, h0=h0, reset=reset, surrogate=surrogate, alpha=alpha,
              detach_reset=detach_reset, fire_on_tie=fire_on_tie, save_membrane=save_membrane)
