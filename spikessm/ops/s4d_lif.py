"""s4d_lif: an S4D layer's state update and readout followed by LIF neurons, fused.

The Triton kernels read u and write spikes: neither the SSM states nor the SSM output y reach memory. When
gradients are needed they also write the pre-reset membrane (B, L, H). Two algorithms, as for s4d_scan:
  * "sequential" (spikessm.kernels.s4d_scan with its LIF readout) walks time step by step; one reverse walk
    gets every gradient from the membrane (no state is saved or recomputed).
  * "chunked" (spikessm.kernels.s4d_chunked with its LIF readout, spikessm.ops.s4d_lif_chunked_kernel) computes y
    in 64-step tiles of tensor-core products that the neurons then walk in registers; its backward is lif's
    backward kernel followed by the chunked S4D backward.
The PyTorch path is s4d_scan followed by lif, which is also the definition the kernels are tested against.
"""
from __future__ import annotations

from typing import Optional

import torch

from .backend import use_triton
from .dispatch import Op
from .lif import check_lif_inputs, lif_op, needs_grad
from .s4d_chunked import s4d_scan_chunked
from .s4d_lif_chunked_kernel import s4d_lif_chunked_kernel
from .s4d_scan import check_algorithm, check_ssm_inputs
from .surrogates import leaky_derivative

OP = "s4d_lif"


def _kernels():
    from spikessm.kernels import s4d_scan as k

    return k


def _forward(
    u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor],
    h0: Optional[torch.Tensor], v0: Optional[torch.Tensor], beta: torch.Tensor, threshold: torch.Tensor,
    reset: str, surrogate: str, alpha: float, detach_reset: bool, reverse: bool, store_membrane: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """spikes, final SSM state, final membrane, and the pre-reset membrane (empty unless store_membrane: the
    backward needs it, and output_membrane returns it)."""
    spikes, hT, vT, membrane = _kernels().s4d_lif_fwd(u, A, B, C, D, h0, v0, beta, threshold, reset, reverse,
                                                      store_membrane)
    return spikes, hT, vT, membrane if membrane is not None else beta.new_empty(0)


def _forward_fake(u, A, B, C, D, h0, v0, beta, threshold, reset, surrogate, alpha, detach_reset, reverse,
                  store_membrane):
    Bsz, L, H = u.shape
    return (torch.empty_like(u), A.new_empty((Bsz, H, A.shape[1])), beta.new_empty((Bsz, H)),
            beta.new_empty((Bsz, L, H)) if store_membrane else beta.new_empty(0))


def _backward_impl(
    u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor],
    h0: Optional[torch.Tensor], v0: Optional[torch.Tensor], beta: torch.Tensor, threshold: torch.Tensor,
    membrane: torch.Tensor, spikes: torch.Tensor, g_spikes: torch.Tensor, gT: torch.Tensor, gvT: torch.Tensor,
    reset: str, surrogate: str, alpha: float, detach_reset: bool, reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor, torch.Tensor]:
    """(du, dA, dB, dC, dD, dh0, dv0, dbeta, dthreshold); absent inputs get distinct empty placeholders."""
    sigma = None
    if surrogate == "leaky":  # depends on the spike history, in processing order
        steps = spikes.to(beta.dtype)
        sigma = leaky_derivative(steps.flip(1) if reverse else steps, beta, threshold)
        sigma = (sigma.flip(1) if reverse else sigma).contiguous()
    grads = _kernels().s4d_lif_bwd(u, A, B, C, D, h0, v0, beta, threshold, membrane, g_spikes, gT, gvT, reset,
                                   surrogate, alpha, detach_reset, reverse, sigma)
    return tuple(g if g is not None else u.new_empty(0) for g in grads)


def _backward_fake(u, A, B, C, D, h0, v0, beta, threshold, membrane, spikes, g_spikes, gT, gvT, reset, surrogate,
                   alpha, detach_reset, reverse):
    def like(t):
        return torch.empty_like(t) if t is not None else u.new_empty(0)

    return (like(u), like(A), like(B), like(C), like(D), like(h0), like(v0), like(beta), like(threshold))


def _setup_context(ctx, inputs, output):
    (u, A, B, C, D, h0, v0, beta, threshold, reset, surrogate, alpha, detach_reset, reverse,
     store_membrane) = inputs
    if not store_membrane:
        raise RuntimeError(f"{OP}: backward through a forward that ran without gradients enabled")
    ctx.save_for_backward(u, A, B, C, D, h0, v0, beta, threshold, output[3], output[0])
    ctx.options = (reset, surrogate, alpha, detach_reset, reverse)


def _backward(ctx, backward_impl, g_spikes, gT, gvT, _g_membrane):
    u, A, B, C, D, h0, v0, beta, threshold, membrane, spikes = ctx.saved_tensors
    grads = backward_impl(u, A, B, C, D, h0, v0, beta, threshold, membrane, spikes, g_spikes.contiguous(),
                          gT.contiguous(), gvT.contiguous(), *ctx.options)
    present = (u, A, B, C, D, h0, v0, beta, threshold)
    return tuple(g if t is not None else None for g, t in zip(grads, present)) + (None,) * 6


_op = Op(OP, _forward, _forward_fake, _backward_impl, _backward_fake, _setup_context, _backward)


def s4d_lif(
    u: torch.Tensor,
    A_bar: torch.Tensor,
    B_bar: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    beta,
    threshold,
    reset: str = "subtract",
    surrogate: str = "atan",
    alpha: float | None = None,
    initial_state: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    detach_reset: bool = False,
    reverse: bool = False,
    output_membrane: bool = False,
    backend: str = "auto",
    algorithm: str = "auto",
):
    """S4D state update and readout, then LIF neurons on its output: s4d_scan followed by lif, in one kernel.
    y stays in the state's precision between the two (for a bfloat16/float16 u it is not rounded to u's dtype).

        y_t = Re(sum_n C x_t) + D u_t  with  x_t = A_bar x_{t-1} + B_bar u_t      (see s4d_scan)
        v_t = beta v_{t-1} + y_t;  s_t = H(v_t - threshold);  reset                (see lif)

    Args:
        u, A_bar, B_bar, C, D: as in s4d_scan: (B, L, H) real; (H, N) complex; (H,) real or None.
        beta, threshold, reset, surrogate, alpha, detach_reset: as in lif.
        initial_state: None, or (SSM state (B, H, N) complex or None, membrane (B, H) or None).
        reverse: run both the SSM and the neurons from t = L - 1 down to t = 0.
        output_membrane: also return the pre-reset membrane (B, L, H), for analysis (no gradient).
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".
        algorithm: the S4D part's algorithm, as in s4d_scan: "sequential" (Triton only: one kernel walks time
            step by step), "chunked" (64-step chunks of matrix products: the PyTorch path, or on Triton a kernel
            of tl.dot products whose output tiles the neurons walk in registers), or "auto": "sequential" on
            Triton, "chunked" on PyTorch.

    Returns:
        spikes: (B, L, H) in u's dtype, values 0 or 1.
        final_state: (SSM state (B, H, N), membrane (B, H)) after the last step processed; pass it back as
            initial_state to continue a stream.
        membrane: (B, L, H), only when output_membrane.
    """
    h0, v0 = initial_state if initial_state is not None else (None, None)
    check_ssm_inputs(u, A_bar, B_bar, C, D, h0)
    alpha, beta_t, threshold_t = check_lif_inputs(OP, u, reset, surrogate, alpha, beta, threshold, v0,
                                                  "initial membrane")
    triton = use_triton(backend, u.device, OP)
    check_algorithm(OP, algorithm, triton)

    if not triton:
        # y in the state's precision, as the kernel keeps it: a 16-bit u must not round y before the neurons
        y, ssm_state = s4d_scan_chunked(u.to(A_bar.real.dtype), A_bar, B_bar, C, D, h0, bool(reverse))
        y_steps = y.flip(1) if reverse else y
        # (the PyTorch path always returns the membrane: save_membrane only concerns the kernel)
        spikes, membrane, v_state = lif_op(y_steps.contiguous(), beta_t.contiguous(), threshold_t.contiguous(),
                                           v0, reset, surrogate, alpha, bool(detach_reset), False, True)
        if reverse:
            spikes, membrane = spikes.flip(1), membrane.flip(1)
        result = (spikes.to(u.dtype), (ssm_state, v_state))
        return result + (membrane.detach(),) if output_membrane else result

    contiguous = [t.contiguous() if t is not None else None for t in (u, A_bar, B_bar, C, D, h0, v0, beta_t,
                                                                          threshold_t)]
    if algorithm == "chunked":
        spikes, ssm_state, v_state, membrane = s4d_lif_chunked_kernel(
            *contiguous, reset, surrogate, alpha, bool(detach_reset), bool(reverse), bool(output_membrane))
    else:
        spikes, ssm_state, v_state, membrane = _op(
            *contiguous, reset, surrogate, alpha, bool(detach_reset), bool(reverse),
            needs_grad(*contiguous) or bool(output_membrane))
    result = (spikes, (ssm_state, v_state))
    return result + (membrane.detach(),) if output_membrane else result
