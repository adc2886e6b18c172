"""s4d_scan's "sequential" algorithm on the Triton kernels of kernels/s4d_scan/sequential.py (installed as
spikessm.kernels.s4d_scan.sequential): one kernel walks time step by step with the states in registers, and the
backward gets every gradient from one reverse walk of adjoint recurrences, without saving or recomputing states.

Registered as custom ops (spikessm/ops/common/custom_op.py), so torch.compile sees single opaque nodes.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..common.backend import kernels
from ..common.custom_op import register


def forward(
    u: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    h0: Optional[torch.Tensor],
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns y and the final state."""
    return kernels("s4d_scan.sequential").s4d_scan_fwd(u=u, A=A, B=B, C=C, D=D, h0=h0, reverse=reverse)


def forward_fake(u, A, B, C, D, h0, reverse):
    return torch.empty_like(u), A.new_empty((u.shape[0], u.shape[2], A.shape[1]))


def setup_context(ctx, inputs, output):
    u, A, B, C, D, h0, reverse = inputs
    ctx.save_for_backward(u, A, B, C, D, h0)
    ctx.reverse = reverse


def backward(
    u: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    h0: Optional[torch.Tensor],
    gy: torch.Tensor,
    gT: torch.Tensor,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (du, dA, dB, dC, dD, dh0); dD and dh0 are empty when D or h0 is None."""
    du, dA, dB, dC, dD, dh0 = kernels("s4d_scan.sequential").s4d_scan_bwd(
        u=u, A=A, B=B, C=C, D=D, h0=h0, gy=gy, gT=gT, reverse=reverse)
    # A custom op cannot return None or the same tensor twice: absent inputs get distinct empty placeholders.
    return (du, dA, dB, dC, (dD.to(D.dtype) if D is not None else A.new_empty(0)),
            (dh0 if dh0 is not None else A.new_empty(0)))


def backward_fake(u, A, B, C, D, h0, gy, gT, reverse):
    return (
        torch.empty_like(u), torch.empty_like(A), torch.empty_like(B), torch.empty_like(C),
        torch.empty_like(D) if D is not None else A.new_empty(0),
        torch.empty_like(h0) if h0 is not None else A.new_empty(0),
    )


def input_gradients(ctx, backward, gy, gT):
    u, A, B, C, D, h0 = ctx.saved_tensors
    du, dA, dB, dC, dD, dh0 = backward(u, A, B, C, D, h0, gy.contiguous(), gT.contiguous(), ctx.reverse)
    return du, dA, dB, dC, (dD if D is not None else None), (dh0 if h0 is not None else None), None


op = register(__name__)


def run(u, A, B, C, D, h0, *, reverse: bool, output_final_state: bool):
    """y (B, L, H) in u's dtype and the final state (B, H, N), or None when not output_final_state;
    differentiable. Arguments as s4d_scan's, checked."""
    y, final_state = op(u=u.contiguous(), A=A.contiguous(), B=B.contiguous(), C=C.contiguous(),
                        D=D.contiguous() if D is not None else None, h0=h0.contiguous() if h0 is not None else None,
                        reverse=reverse)
    return y, (final_state if output_final_state else None)
