"""s4d_lif's "sequential" algorithm on the Triton kernels of kernels/s4d_scan/sequential.py with their LIF
readout (installed as spikessm.kernels.s4d_scan.sequential): one kernel reads u and writes spikes, walking time
step by step; neither the SSM states nor the SSM output y reach memory. When gradients are needed it also writes
the pre-reset membrane (B, L, H), from which one reverse walk gets every gradient (no state is saved or
recomputed). Registered as custom ops (spikessm/ops/common/custom_op.py).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..common.backend import kernels
from ..common.checks import needs_grad
from ..common.custom_op import register
from ..lif.leaky import leaky_derivative


def forward(
    u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor],
    h0: Optional[torch.Tensor], v0: Optional[torch.Tensor], beta: torch.Tensor, threshold: torch.Tensor,
    reset: str, surrogate: str, alpha: float, detach_reset: bool, fire_on_tie: bool, reverse: bool,
    store_membrane: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """spikes, final SSM state, final membrane, and the pre-reset membrane (empty unless store_membrane: the
    backward needs it, and output_membrane returns it)."""
    spikes, hT, vT, membrane = kernels("s4d_scan.sequential").s4d_lif_fwd(
        u=u, A=A, B=B, C=C, D=D, h0=h0, v0=v0, beta=beta, threshold=threshold, reset=reset, reverse=reverse,
        store_membrane=store_membrane, fire_on_tie=fire_on_tie)
    return spikes, hT, vT, membrane if membrane is not None else beta.new_empty(0)


def forward_fake(u, A, B, C, D, h0, v0, beta, threshold, reset, surrogate, alpha, detach_reset, fire_on_tie,
                 reverse, store_membrane):
    Bsz, L, H = u.shape
    return (torch.empty_like(u), A.new_empty((Bsz, H, A.shape[1])), beta.new_empty((Bsz, H)),
            beta.new_empty((Bsz, L, H)) if store_membrane else beta.new_empty(0))


def setup_context(ctx, inputs, output):
    (u, A, B, C, D, h0, v0, beta, threshold, reset, surrogate, alpha, detach_reset, fire_on_tie, reverse,
     store_membrane) = inputs
    if not store_membrane:
        raise RuntimeError("s4d_lif: backward through a forward that ran without gradients enabled")
    ctx.save_for_backward(u, A, B, C, D, h0, v0, beta, threshold, output[3], output[0])
    ctx.options = (reset, surrogate, alpha, detach_reset, fire_on_tie, reverse)


def backward(
    u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor],
    h0: Optional[torch.Tensor], v0: Optional[torch.Tensor], beta: torch.Tensor, threshold: torch.Tensor,
    membrane: torch.Tensor, spikes: torch.Tensor, g_spikes: torch.Tensor, gT: torch.Tensor, gvT: torch.Tensor,
    reset: str, surrogate: str, alpha: float, detach_reset: bool, fire_on_tie: bool, reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor, torch.Tensor]:
    """(du, dA, dB, dC, dD, dh0, dv0, dbeta, dthreshold); absent inputs get distinct empty placeholders."""
    # "leaky" depends on the spike history, which the kernel's backward does not see: computed here, read there
    sigma = leaky_derivative(spikes.to(beta.dtype), beta, threshold, reverse=reverse) if surrogate == "leaky" else None
    grads = kernels("s4d_scan.sequential").s4d_lif_bwd(
        u=u, A=A, B=B, C=C, D=D, h0=h0, v0=v0, beta=beta, threshold=threshold, membrane=membrane, g_spikes=g_spikes,
        gT=gT, gvT=gvT, reset=reset, surrogate=surrogate, alpha=alpha, detach_reset=detach_reset, reverse=reverse,
        sigma=sigma, fire_on_tie=fire_on_tie)
    return tuple(g if g is not None else u.new_empty(0) for g in grads)


def backward_fake(u, A, B, C, D, h0, v0, beta, threshold, membrane, spikes, g_spikes, gT, gvT, reset, surrogate,
                   alpha, detach_reset, fire_on_tie, reverse):
    def like(t):
        return torch.empty_like(t) if t is not None else u.new_empty(0)

    return (like(u), like(A), like(B), like(C), like(D), like(h0), like(v0), like(beta), like(threshold))


def input_gradients(ctx, backward, g_spikes, gT, gvT, _g_membrane):
    u, A, B, C, D, h0, v0, beta, threshold, membrane, spikes = ctx.saved_tensors
    grads = backward(u, A, B, C, D, h0, v0, beta, threshold, membrane, spikes, g_spikes.contiguous(),
                          gT.contiguous(), gvT.contiguous(), *ctx.options)
    present = (u, A, B, C, D, h0, v0, beta, threshold)
    return tuple(g if t is not None else None for g, t in zip(grads, present)) + (None,) * 7


op = register(__name__)


def run(u, A, B, C, D, h0, v0, beta, threshold, *, reset: str, surrogate: str, alpha: float, detach_reset: bool,
        reverse: bool, output_membrane: bool, fire_on_tie: bool = False):
    """Spikes, the final SSM state (B, H, N), the final membrane (B, H) and the pre-reset membrane (B, L, H) or
    None unless output_membrane; differentiable. Arguments as s4d_lif's, checked (beta, threshold (H,) in the
    membrane dtype)."""
    def contiguous(t):
        return t.contiguous() if t is not None else None

    inputs = dict(u=contiguous(u), A=contiguous(A), B=contiguous(B), C=contiguous(C), D=contiguous(D),
                  h0=contiguous(h0), v0=contiguous(v0), beta=contiguous(beta), threshold=contiguous(threshold))
    spikes, ssm_state, v_state, membrane = op(
        **inputs, reset=reset, surrogate=surrogate, alpha=alpha, detach_reset=detach_reset, fire_on_tie=fire_on_tie,
        reverse=reverse,
        store_membrane=needs_grad(*inputs.values()) or output_membrane)
    return spikes, ssm_state, v_state, (membrane.detach() if output_membrane else None)
