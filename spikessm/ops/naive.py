"""Plain step-by-step references for the scan ops: one Python iteration per time step, differentiable by
ordinary autograd, exact in whatever dtype they are given (use float64 / complex128 for ground truth).

They are the definitions the fast paths are tested against, not a path for real work.
"""
from __future__ import annotations

import torch


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
