"""s4d_lif's "chunked" algorithm on the Triton kernel of kernels/s4d_scan/chunked.py with its LIF readout
(installed as spikessm.kernels.s4d_scan.chunked).

Forward: one kernel reads u and writes spikes. Each chunk's (T, batch) y tile goes from the tensor-core products
straight into the neurons' walk in registers: neither y nor the SSM states reach memory. When gradients are
needed it also writes the pre-reset membrane (B, L, H) and the states entering each chunk.

Backward: given the membrane, the neurons' adjoint does not depend on the SSM, so it is lif's backward kernel
(spike gradients -> dLoss/dy, beta, threshold, initial membrane) followed by the chunked S4D backward
(spikessm/ops/s4d_scan/triton_chunked.py). dLoss/dy passes through memory between the two; the S4D backward's operator
gradients read it from memory in any case (batched products on the host). Registered as custom ops
(spikessm/ops/common/custom_op.py).
"""
from __future__ import annotations

from typing import Optional

import torch

from spikessm.kernels.common.launch import complex_planes

from ..common.backend import kernels
from ..common.checks import needs_grad
from ..common.custom_op import register
from ..lif import triton_sequential as lif_triton
from ..s4d_scan import triton_chunked as s4d_scan_chunked


def forward(
    u: torch.Tensor, conv: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor, a_chunk: torch.Tensor,
    w_in_last: torch.Tensor, a_last: torch.Tensor, D: Optional[torch.Tensor], z0: Optional[torch.Tensor],
    v0: Optional[torch.Tensor], beta: torch.Tensor, threshold: torch.Tensor, reset: str, surrogate: str,
    alpha: float, detach_reset: bool, fire_on_tie: bool, reverse: bool, store_states: bool,
    store_membrane: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """spikes, final SSM state planes, final membrane, pre-reset membrane and states entering each chunk (the last
    two empty unless stored: the backward needs both)."""
    spikes, zT, states, vT, membrane = kernels("s4d_scan.chunked").s4d_lif_chunked_fwd(
        u=u, conv=conv, w_in=w_in, w_out=w_out, a_chunk=a_chunk, w_in_last=w_in_last, a_last=a_last, D=D, z0=z0, v0=v0,
        beta=beta, threshold=threshold, reset=reset, reverse=reverse, store_states=store_states,
        store_membrane=store_membrane, fire_on_tie=fire_on_tie)
    empty = beta.new_empty(0)
    return (spikes, zT, vT, membrane if membrane is not None else empty,
            states if states is not None else a_chunk.new_empty(0))


def forward_fake(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, z0, v0, beta, threshold, reset, surrogate,
                  alpha, detach_reset, fire_on_tie, reverse, store_states, store_membrane):
    Bsz, L, H = u.shape
    T, N = conv.shape[-1], a_chunk.shape[-1]
    return (torch.empty_like(u), a_chunk.new_empty((Bsz, 2, H, N)), beta.new_empty((Bsz, H)),
            beta.new_empty((Bsz, L, H) if store_membrane else (0,)),
            a_chunk.new_empty(kernels("s4d_scan.chunked").states_shape(Bsz, L, H, N, T) if store_states else (0,)))


def setup_context(ctx, inputs, output):
    (u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, z0, v0, beta, threshold, reset, surrogate, alpha,
     detach_reset, fire_on_tie, reverse, store_states, store_membrane) = inputs
    if not (store_states and store_membrane):
        raise RuntimeError("s4d_lif: backward through a forward that ran without gradients enabled")
    ctx.save_for_backward(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, v0, beta, threshold, output[3],
                          output[4])
    ctx.has_z0 = z0 is not None
    ctx.options = (reset, surrogate, alpha, detach_reset, fire_on_tie, reverse)


def backward(
    u: torch.Tensor, conv: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor, a_chunk: torch.Tensor,
    w_in_last: torch.Tensor, a_last: torch.Tensor, D: Optional[torch.Tensor], has_z0: bool,
    v0: Optional[torch.Tensor], beta: torch.Tensor, threshold: torch.Tensor, membrane: torch.Tensor,
    states: torch.Tensor, g_spikes: torch.Tensor, gT: torch.Tensor, gvT: torch.Tensor, reset: str, surrogate: str,
    alpha: float, detach_reset: bool, fire_on_tie: bool, reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(du, dconv, dw_in, dw_out, da_chunk, dw_in_last, da_last, dD, dz0, dv0, dbeta, dthreshold); dD, dz0 and dv0
    are empty when absent."""
    def in_order(x):  # lif's kernels walk time forwards: reverse runs see their steps flipped
        return x.flip(1).contiguous() if reverse else x

    # lif's backward kernel on the neurons, whose input is y: dLoss/dy comes back in the state dtype (y never was
    # rounded to u's dtype)
    gy, dbeta, dthreshold, dv0 = lif_triton.adjoint(
        beta, threshold, v0, in_order(membrane), in_order(g_spikes), gvT, reset, surrogate, alpha, detach_reset,
        x_dtype=membrane.dtype, fire_on_tie=fire_on_tie)
    grads = s4d_scan_chunked.backward(u=u, conv=conv, w_in=w_in, w_out=w_out, a_chunk=a_chunk, w_in_last=w_in_last,
                                      a_last=a_last, D=D, has_z0=has_z0, states=states, gy=in_order(gy), gT=gT,
                                      reverse=reverse)
    # a custom op cannot return None: without v0 its gradient is an unused empty tensor
    return (*grads, dv0 if dv0 is not None else beta.new_empty(0), dbeta, dthreshold)


def backward_fake(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, has_z0, v0, beta, threshold, membrane,
                   states, g_spikes, gT, gvT, reset, surrogate, alpha, detach_reset, fire_on_tie, reverse):
    def like(t):
        return torch.empty_like(t) if t is not None else u.new_empty(0)

    dz0 = a_chunk.new_empty((u.shape[0], 2, u.shape[2], a_chunk.shape[-1]) if has_z0 else (0,))
    return (like(u), like(conv), like(w_in), like(w_out), like(a_chunk), like(w_in_last), like(a_last), like(D),
            dz0, like(v0), like(beta), like(threshold))


def input_gradients(ctx, backward, g_spikes, gT, gvT, _g_membrane, _g_states):
    u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, v0, beta, threshold, membrane, states = ctx.saved_tensors
    grads = backward(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, ctx.has_z0, v0, beta, threshold,
                          membrane, states, g_spikes.contiguous(), gT.contiguous(), gvT.contiguous(), *ctx.options)
    *operators, dD, dz0, dv0, dbeta, dthreshold = grads
    return (*operators, dD if D is not None else None, dz0 if ctx.has_z0 else None,
            dv0 if v0 is not None else None, dbeta, dthreshold) + (None,) * 8


op = register(__name__)


def run(u, A, B, C, D, h0, v0, beta, threshold, *, reset: str, surrogate: str, alpha: float, detach_reset: bool,
        reverse: bool, output_membrane: bool, fire_on_tie: bool = False):
    """As triton_sequential.run, on the chunked kernel."""
    def contiguous(t):
        return t.contiguous() if t is not None else None

    u, D, h0, v0, beta, threshold = (contiguous(t) for t in (u, D, h0, v0, beta, threshold))
    with torch.autocast(u.device.type, enabled=False):  # the operators in their inputs' precision
        grad = needs_grad(u, A, B, C, D, h0, v0, beta, threshold)
        z0 = complex_planes(h0) if h0 is not None else None
        conv, w_in, w_out, a_chunk, w_in_last, a_last = s4d_scan_chunked.chunk_operators(A, B, C, u.shape[1])
        spikes, zT, vT, membrane, _ = op(
            u=u, conv=conv, w_in=w_in, w_out=w_out, a_chunk=a_chunk, w_in_last=w_in_last, a_last=a_last, D=D, z0=z0,
            v0=v0, beta=beta, threshold=threshold, reset=reset, surrogate=surrogate, alpha=alpha,
            detach_reset=detach_reset, fire_on_tie=fire_on_tie, reverse=reverse, store_states=grad,
            store_membrane=grad or output_membrane)
    return spikes, torch.complex(zT[:, 0], zT[:, 1]), vT, (membrane.detach() if output_membrane else None)
