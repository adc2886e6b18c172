"""s4d_scan's "sequential" algorithm on the Triton kernels of kernels/s4d_scan/sequential.py (installed as
spikessm.kernels.s4d_scan.sequential): one kernel walks time step by step with the states in registers, and the
backward gets every gradient from one reverse walk of adjoint recurrences, without saving or recomputing states.

Registered as torch.library custom ops (forward and backward), so torch.compile sees single opaque nodes.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..common.custom_op import Op


def _kernels():
    from spikessm.kernels.s4d_scan import sequential as kernels  # imported on first use: Triton is optional

    return kernels

OP = "s4d_scan"


def _forward(
    u: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    h0: Optional[torch.Tensor],
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns y and the final state."""
    return _kernels().s4d_scan_fwd(
        u=u, A=A, B=B, C=C, D=D, h0=h0, reverse=reverse)


def _forward_fake(u, A, B, C, D, h0, reverse):
    return torch.empty_like(u), A.new_empty((u.shape[0], u.shape[2], A.shape[1]))


def _backward_impl(
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
    du, dA, dB, dC, dD, dh0 = _kernels().s4d_scan_bwd(
        u=u, A=A, B=B, C=C, D=D, h0=h0, gy=gy, gT=gT, reverse=reverse)
    # A custom op cannot return None or the same tensor twice: absent inputs get distinct empty placeholders.
    return (du, dA, dB, dC, (dD.to(D.dtype) if D is not None else A.new_empty(0)),
            (dh0 if dh0 is not None else A.new_empty(0)))


def _backward_fake(u, A, B, C, D, h0, gy, gT, reverse):
    return (
        torch.empty_like(u), torch.empty_like(A), torch.empty_like(B), torch.empty_like(C),
        torch.empty_like(D) if D is not None else A.new_empty(0),
        torch.empty_like(h0) if h0 is not None else A.new_empty(0),
    )


def _setup_context(ctx, inputs, output):
    u, A, B, C, D, h0, reverse = inputs
    ctx.save_for_backward(u, A, B, C, D, h0)
    ctx.reverse = reverse


def _backward(ctx, backward_impl, gy, gT):
    u, A, B, C, D, h0 = ctx.saved_tensors
    du, dA, dB, dC, dD, dh0 = backward_impl(u, A, B, C, D, h0, gy.contiguous(), gT.contiguous(), ctx.reverse)
    return du, dA, dB, dC, (dD if D is not None else None), (dh0 if h0 is not None else None), None


sequential_op = Op(OP, _forward, _forward_fake, _backward_impl, _backward_fake, _setup_context, _backward)


def s4d_scan_triton_sequential(u, A, B, C, D, h0, *, reverse: bool, output_final_state: bool):
    """y (B, L, H) in u's dtype and the final state (B, H, N), or None when not output_final_state;
    differentiable. Arguments as s4d_scan's, checked."""
    y, final_state = sequential_op(u=u.contiguous(), A=A.contiguous(), B=B.contiguous(), C=C.contiguous(),
                                   D=D.contiguous() if D is not None else None,
                                   h0=h0.contiguous() if h0 is not None else None, reverse=reverse)
    return y, (final_state if output_final_state else None)
