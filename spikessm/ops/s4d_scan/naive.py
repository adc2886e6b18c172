"""The step-by-step reference of s4d_scan: one Python iteration per time step, differentiable by ordinary
autograd, exact in whatever dtype it is given (use float64 / complex128 for ground truth).

It is the definition the fast paths are tested against, not a path for real work.
"""
from __future__ import annotations

import torch


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
