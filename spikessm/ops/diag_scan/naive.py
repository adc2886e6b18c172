"""The step-by-step reference of diag_scan: one Python iteration per time step, differentiable by ordinary
autograd, exact in whatever dtype it is given (use float64 / complex128 for ground truth).

It is the definition the fast paths are tested against, not a path for real work.
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
