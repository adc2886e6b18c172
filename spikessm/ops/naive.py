"""Plain step-by-step references for the scan ops: one Python iteration per time step, differentiable by
ordinary autograd, exact in whatever dtype they are given (use float64 / complex128 for ground truth).

They are the definitions the fast paths are tested against, not a path for real work.
"""
from __future__ import annotations

import torch

from .surrogates import derivative


def diag_scan_loop(
    a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None, *, reverse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = a_t * x_{t-1} + b_t, one step at a time.

    Args:
        a: (P,) time-invariant or (B, L, P) time-varying.
        b: (B, L, P).
        initial_state: (B, P) or None (zeros).
        reverse: run from t = L - 1 down to t = 0.
    Returns:
        x: (B, L, P); final_state: (B, P), the state after the last step processed.
    """
    B, L, P = b.shape
    dtype = torch.promote_types(a.dtype, b.dtype)
    h = torch.zeros(B, P, dtype=dtype, device=b.device) if initial_state is None else initial_state.to(dtype)
    a_steps = a.unbind(1) if a.dim() == 3 else [a] * L
    b_steps = b.to(dtype).unbind(1)
    order = range(L - 1, -1, -1) if reverse else range(L)
    xs = [None] * L
    for t in order:
        h = a_steps[t] * h + b_steps[t]
        xs[t] = h
    return torch.stack(xs, dim=1), h


def s4d_scan_loop(
    u: torch.Tensor,
    A_bar: torch.Tensor,
    B_bar: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    *,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D recurrence with readout, one step at a time.

    x_t[h, n] = A_bar[h, n] x_{t-1}[h, n] + B_bar[h, n] u_t[h];  y_t[h] = Re(sum_n C[h, n] x_t[h, n]) + D[h] u_t[h]

    Args:
        u: (B, L, H) real.
        A_bar, B_bar, C: (H, N) complex.
        D: (H,) real or None.
        initial_state: (B, H, N) complex or None (zeros).
    Returns:
        y: (B, L, H) real; final_state: (B, H, N) complex.
    """
    Bsz, L, H = u.shape
    N = A_bar.shape[-1]
    h = (
        torch.zeros(Bsz, H, N, dtype=A_bar.dtype, device=u.device)
        if initial_state is None
        else initial_state
    )
    order = range(L - 1, -1, -1) if reverse else range(L)
    u_steps = u.unbind(1)
    ys = [None] * L
    for t in order:
        h = A_bar * h + B_bar * u_steps[t][..., None]
        y = (C * h).sum(-1).real
        if D is not None:
            y = y + D * u_steps[t]
        ys[t] = y
    return torch.stack(ys, dim=1), h


class _Spike(torch.autograd.Function):
    """Heaviside forward (1 where x > 0); backward multiplies by the given surrogate derivative."""

    @staticmethod
    def forward(ctx, x, surrogate_derivative):
        ctx.save_for_backward(surrogate_derivative)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (d,) = ctx.saved_tensors
        return grad * d, None


def lif_loop(
    x: torch.Tensor,
    beta,
    threshold,
    *,
    reset: str = "subtract",
    surrogate: str = "atan",
    alpha: float = 2.0,
    initial_state: torch.Tensor | None = None,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leaky integrate-and-fire neurons, one step at a time, differentiable by autograd.

    v_t = beta v_{t-1} + x_t; s_t = H(v_t - threshold); then the reset ("subtract": v_t -= s_t threshold,
    "zero": v_t = 0 where s_t = 1, "none"); detach_reset stops gradients through the reset term.

    Args:
        x: (B, L, H). beta, threshold: floats or (H,) tensors. initial_state: (B, H) or None (zeros).
    Returns:
        spikes: (B, L, H) in {0, 1}; final membrane: (B, H).
    """
    v = torch.zeros_like(x[:, 0]) if initial_state is None else initial_state
    trace = count = torch.zeros_like(v)  # for "leaky": leaky spike trace and spike count
    spikes = []
    for x_t in x.unbind(1):
        v = beta * v + x_t
        if surrogate == "leaky":
            fired = (v.detach() > threshold).to(v.dtype)
            trace, count = beta * trace + fired, count + fired
            ratio = torch.where(count > 0, trace / count.clamp_min(1), 0.0)
            d = ((1 + torch.log(torch.as_tensor(beta, dtype=v.dtype)) * ratio) / threshold).detach()
        else:
            d = derivative(surrogate, (v - threshold).detach(), alpha)
        s = _Spike.apply(v - threshold, d)
        r = s.detach() if detach_reset else s
        if reset == "subtract":
            v = v - r * threshold
        elif reset == "zero":
            v = v * (1 - r)
        spikes.append(s)
    return torch.stack(spikes, dim=1), v
