"""lif: leaky integrate-and-fire neurons over a sequence, exact (sequential reset) with surrogate gradients.

Files: naive.py (the step-by-step reference), torch_recurrence.py (the PyTorch path), triton.py (the Triton glue;
the kernels are kernels/lif.py, installed as spikessm.kernels.lif). Both paths walk time in order ("sequential",
the only algorithm: the reset makes the recurrence non-linear). They are registered as one torch.library custom op
pair (forward and backward, a `triton` flag choosing the path) so that torch.compile sees one opaque node instead of
unrolling the loop over time. A reverse run flips the sequence around the op.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from ..common.backend import pick
from ..common.checks import LOW_PRECISION, REAL_STATE, is_empty, needs_grad, per_channel, require_bool, \
    require_rank, require_same_device, require_shape, require_tensor, state_or_zeros
from ..common.custom_op import Op
from ..common.neuron import check_neuron_parameters, require_reset, resolve_alpha
from ..common.outputs import ScanOutput
from . import torch_recurrence
from . import triton as triton_glue

OP = "lif"


def _forward(
    x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, h0: Optional[torch.Tensor], reset: str,
    surrogate: str, alpha: float, detach_reset: bool, triton: bool, save_membrane: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns spikes, the pre-reset membrane (saved for the backward; the Triton kernel writes it only when
    save_membrane, else an empty tensor comes back) and the final membrane."""
    if triton:
        return triton_glue.lif_fwd(x, beta, threshold, h0, reset, save_membrane)
    return torch_recurrence.lif_fwd(x, beta, threshold, h0, reset)


def _forward_fake(x, beta, threshold, h0, reset, surrogate, alpha, detach_reset, triton, save_membrane):
    dtype = torch_recurrence.state_dtype(x)
    membrane_shape = x.shape if save_membrane or not triton else (0,)
    return torch.empty_like(x), x.new_empty(membrane_shape, dtype=dtype), x.new_empty((x.shape[0], x.shape[2]),
                                                                                      dtype=dtype)


def _backward_impl(
    x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, h0: Optional[torch.Tensor], m_all: torch.Tensor,
    g_spikes: torch.Tensor, g_final: torch.Tensor, reset: str, surrogate: str, alpha: float, detach_reset: bool,
    triton: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if triton:
        grads = triton_glue.lif_bwd(beta, threshold, h0, m_all, g_spikes, g_final, reset, surrogate, alpha,
                                    detach_reset, x.dtype)
    else:
        grads = torch_recurrence.lif_bwd(beta, threshold, h0, m_all, g_spikes, g_final, reset, surrogate, alpha,
                                       detach_reset, x.dtype)
    dx, dbeta, dthreshold, dh0 = grads
    return dx, dbeta, dthreshold, (dh0 if dh0 is not None else x.new_empty(0))


def _backward_fake(x, beta, threshold, h0, m_all, g_spikes, g_final, reset, surrogate, alpha, detach_reset,
                   triton):
    dh0 = torch.empty_like(h0) if h0 is not None else x.new_empty(0)
    return torch.empty_like(x), torch.empty_like(beta), torch.empty_like(threshold), dh0


def _setup_context(ctx, inputs, output):
    x, beta, threshold, h0, reset, surrogate, alpha, detach_reset, triton, save_membrane = inputs
    ctx.save_for_backward(x, beta, threshold, h0, output[1])
    ctx.options = (reset, surrogate, alpha, detach_reset, triton)
    ctx.saved_membrane = save_membrane


def _backward(ctx, backward_impl, g_spikes, _g_membrane, g_final):
    x, beta, threshold, h0, m_all = ctx.saved_tensors
    if not ctx.saved_membrane:
        raise RuntimeError("lif: the forward ran without saving the membrane (no input required grad when it ran)")
    dx, dbeta, dthreshold, dh0 = backward_impl(x, beta, threshold, h0, m_all, g_spikes.contiguous(),
                                               g_final.contiguous(), *ctx.options)
    return dx, dbeta, dthreshold, (dh0 if h0 is not None else None), None, None, None, None, None, None


lif_op = Op(OP, _forward, _forward_fake, _backward_impl, _backward_fake, _setup_context, _backward)


def check_lif_inputs(op: str, x: torch.Tensor, reset: str, surrogate: str, alpha, beta, threshold,
                     membrane: torch.Tensor | None, membrane_name: str,
                     detach_reset) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Checks the neuron arguments of an op whose neurons take x (B, L, H) as input current; returns alpha
    (resolved), beta and threshold as (H,) tensors in the membrane dtype."""
    B, _, H = x.shape
    require_reset(op, reset)
    alpha = resolve_alpha(op, surrogate, alpha)
    require_bool(op, "detach_reset", detach_reset)
    dtype = torch_recurrence.state_dtype(x)
    beta_t = per_channel(op, "beta", beta, H, dtype, x.device)
    threshold_t = per_channel(op, "threshold", threshold, H, dtype, x.device)
    check_neuron_parameters(op, beta, threshold, surrogate)
    if membrane is not None:
        require_tensor(op, membrane_name, membrane)
        require_shape(op, membrane_name, membrane, (B, H), "(batch, channels)")
        if membrane.dtype != dtype:
            raise TypeError(f"{op}: {membrane_name} must be {dtype} for input of {x.dtype}, got {membrane.dtype}")
    require_same_device(op, {"input": x, "beta": beta_t, "threshold": threshold_t, membrane_name: membrane})
    return alpha, beta_t, threshold_t


def run_lif(x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, h0: Optional[torch.Tensor], *,
            reset: str, surrogate: str, alpha: float, detach_reset: bool, reverse: bool, triton: bool,
            save_membrane: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """lif on checked inputs (beta, threshold (H,) in the membrane dtype): spikes, the pre-reset membrane (empty
    when the Triton kernel ran without save_membrane) and the final membrane; differentiable. The
    implementation every caller inside spikessm uses (the public lif adds the checks and the choice of path)."""
    if reverse:
        x = x.flip(1)
    spikes, membrane, final = lif_op(x=x.contiguous(), beta=beta.contiguous(), threshold=threshold.contiguous(),
                                     h0=h0.contiguous() if h0 is not None else None, reset=reset,
                                     surrogate=surrogate, alpha=alpha, detach_reset=detach_reset, triton=triton,
                                     save_membrane=save_membrane)
    if reverse:
        spikes, membrane = spikes.flip(1), (membrane.flip(1) if membrane.dim() == 3 else membrane)
    return spikes, membrane, final


IMPLEMENTATIONS = {"torch": {"sequential": functools.partial(run_lif, triton=False)},
                   "triton": {"sequential": functools.partial(run_lif, triton=True)}}


def lif(
    x: torch.Tensor,
    beta,
    threshold,
    initial_state: torch.Tensor | None = None,
    *,
    reset: str = "subtract",
    surrogate: str = "atan",
    alpha: float | None = None,
    detach_reset: bool = False,
    reverse: bool = False,
    output_final_state: bool = True,
    backend: str = "auto",
    algorithm: str = "auto",
) -> ScanOutput:
    """Leaky integrate-and-fire neurons, one per channel, run over the whole sequence.

        v_t = beta * v_{t-1} + x_t;   s_t = H(v_t - threshold)   (1 where v_t > threshold)
        reset: "subtract" v_t -= s_t * threshold;  "zero" v_t = 0 where s_t = 1;  "none" no reset

    Binary spiking as in Binary S4D is beta=0, threshold=0, reset="none".

    Args:
        x: (B, L, H) input current; float32, float64, float16 or bfloat16 (the membrane is float32, float64
            for float64 x).
        beta: leak factor in [0, 1]: a float, or a () or (H,) tensor (learnable: gradients flow to it).
        threshold: finite firing threshold: a float, or a () or (H,) tensor (learnable).
        initial_state: (B, H) membrane before the first step processed; None means zeros.
        reset: "subtract", "zero" or "none".
        surrogate: the spike's backward derivative, by name; see spikessm/ops/common/neuron.py ("atan",
            "fast_sigmoid", "triangle", "sigmoid", "rectangle", "leaky").
        alpha: the surrogate's shape parameter, finite and > 0; None takes the surrogate's default (the kernels
            read it in the membrane dtype, so float64 runs keep every digit of it).
        detach_reset: stop gradients through the reset term.
        reverse: run from t = L - 1 down to t = 0 (the sequence is flipped around the same computation).
        output_final_state: return the final membrane (else None).
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".
        algorithm: "auto" or "sequential" (the only one: the reset makes the recurrence sequential).

    beta and threshold values are checked when they are floats or CPU tensors; values of CUDA tensors are not
    read (that would make the host wait for the device). Empty inputs (batch, length or channels 0) return empty
    spikes and the initial state (zeros when None) without running anything.

    Returns:
        ScanOutput(output, final_state): spikes (B, L, H) in x's dtype, values 0 or 1; the membrane (B, H) after
        the last step processed (after its reset), in the membrane dtype, or None when output_final_state is
        False.
    """
    require_tensor(OP, "x", x)
    require_rank(OP, "x", x, (3,), "(batch, length, channels)")
    if x.is_complex() or x.dtype not in REAL_STATE + LOW_PRECISION:
        raise TypeError(f"{OP}: x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    alpha, beta_t, threshold_t = check_lif_inputs(OP, x, reset, surrogate, alpha, beta, threshold, initial_state,
                                                  "initial_state", detach_reset)
    require_bool(OP, "reverse", reverse)
    require_bool(OP, "output_final_state", output_final_state)
    _, _, run = pick(OP, backend, algorithm, x.device, IMPLEMENTATIONS)
    if is_empty(x):
        final = state_or_zeros(initial_state, (x.shape[0], x.shape[2]), beta_t.dtype, x.device)
        return ScanOutput(x.clone(), final if output_final_state else None)
    spikes, _, final = run(x, beta_t, threshold_t, initial_state, reset=reset, surrogate=surrogate, alpha=alpha,
                           detach_reset=detach_reset, reverse=reverse,
                           save_membrane=needs_grad(x, beta_t, threshold_t, initial_state))
    return ScanOutput(spikes, final if output_final_state else None)
