"""The step-by-step reference of s4d_lif: s4d_scan's reference followed by lif's, one Python iteration per time
step, differentiable by ordinary autograd, exact in whatever dtype it is given (use float64 / complex128 for
ground truth).

It is the definition the fast paths are tested against, not a path for real work.
"""
from __future__ import annotations

import torch

from ..lif.naive import lif_loop
from ..s4d_scan.naive import s4d_scan_loop


def s4d_lif_loop(
    u: torch.Tensor,
    A_bar: torch.Tensor,
    B_bar: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    initial_state: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    *,
    beta,
    threshold,
    reset: str = "subtract",
    surrogate: str = "atan",
    alpha: float = 2.0,
    detach_reset: bool = False,
    reverse: bool = False,
    fire_on_tie: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """s4d_scan_loop, then lif_loop on its output y (both reversed when reverse).

    Returns:
        spikes: (B, L, H); final state: (SSM state (B, H, N), membrane (B, H)).
    """
    h0, v0 = initial_state if initial_state is not None else (None, None)
    y, ssm_state = s4d_scan_loop(u, A_bar, B_bar, C, D, h0, reverse=reverse)
    spikes, membrane = lif_loop(y, beta, threshold, reset=reset, surrogate=surrogate, alpha=alpha, initial_state=v0,
                                detach_reset=detach_reset, reverse=reverse, fire_on_tie=fire_on_tie)
    return spikes, (ssm_state, membrane)
