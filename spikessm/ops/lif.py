"""lif: leaky integrate-and-fire neurons over a sequence, exact (sequential reset) with surrogate gradients.

Two paths with the same results: the Triton kernel (spikessm.kernels.lif, membrane in registers) and the
PyTorch path (lif_recurrence). Registered as torch.library custom ops (forward and backward) so that
torch.compile sees one opaque node instead of unrolling the loop over time.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import lif_recurrence
from .backend import use_triton
from .dispatch import Op
from .checks import LOW_PRECISION, REAL_STATE, require_length, require_rank, require_same_device, require_shape, \
    require_tensor
from .surrogates import leaky_derivative, require_leaky_beta, resolve

OP = "lif"


def _impl(triton: bool):
    if triton:
        from spikessm.kernels import lif as kernels

        return kernels
    return lif_recurrence


def _forward(
    x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, h0: Optional[torch.Tensor], reset: str,
    surrogate: str, alpha: float, detach_reset: bool, triton: bool, save_membrane: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns spikes, the pre-reset membrane (saved for the backward; the Triton kernel writes it only when
    save_membrane, else an empty tensor comes back) and the final membrane."""
    if triton:
        return _impl(True).lif_fwd(x, beta, threshold, h0, reset, save_membrane)
    return lif_recurrence.lif_fwd(x, beta, threshold, h0, reset)


def _forward_fake(x, beta, threshold, h0, reset, surrogate, alpha, detach_reset, triton, save_membrane):
    dtype = lif_recurrence.state_dtype(x)
    membrane_shape = x.shape if save_membrane or not triton else (0,)
    return torch.empty_like(x), x.new_empty(membrane_shape, dtype=dtype), x.new_empty((x.shape[0], x.shape[2]),
                                                                                      dtype=dtype)


def _backward_impl(
    x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, h0: Optional[torch.Tensor], m_all: torch.Tensor,
    g_spikes: torch.Tensor, g_final: torch.Tensor, reset: str, surrogate: str, alpha: float, detach_reset: bool,
    triton: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if triton:
        sigma = leaky_derivative((m_all > threshold).to(m_all.dtype), beta, threshold) if surrogate == "leaky" else None
        grads = _impl(True).lif_bwd(beta, threshold, h0, m_all, g_spikes, g_final, reset, surrogate, alpha,
                                    detach_reset, x.dtype, sigma)
    else:
        grads = lif_recurrence.lif_bwd(beta, threshold, h0, m_all, g_spikes, g_final, reset, surrogate, alpha,
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


def needs_grad(*tensors) -> bool:
    """Whether autograd will want a backward through an op on these inputs (None entries ignored)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def per_channel(op: str, name: str, value, H: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A float or a () / (H,) real tensor -> an (H,) tensor in the state dtype (differentiable)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.full((H,), float(value), dtype=dtype, device=device)
    require_tensor(op, name, value)
    if value.is_complex() or not value.is_floating_point():
        raise TypeError(f"{op}: {name} must be a float or a real floating-point tensor, got {value.dtype}")
    if value.dim() == 0:
        return value.to(dtype).expand(H)
    require_shape(op, name, value, (H,), "() or (channels,)")
    return value.to(dtype)


def check_lif_inputs(op: str, x: torch.Tensor, reset: str, surrogate: str, alpha, beta, threshold,
                     membrane: torch.Tensor | None, membrane_name: str) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Checks the neuron arguments of an op whose neurons take x (B, L, H) as input current; returns alpha
    (resolved), beta and threshold as (H,) tensors in the membrane dtype."""
    B, _, H = x.shape
    if reset not in lif_recurrence.RESETS:
        raise ValueError(f"{op}: reset must be one of {lif_recurrence.RESETS}, got {reset!r}")
    alpha = resolve(op, surrogate, alpha)
    require_leaky_beta(op, surrogate, beta)
    dtype = lif_recurrence.state_dtype(x)
    beta_t = per_channel(op, "beta", beta, H, dtype, x.device)
    threshold_t = per_channel(op, "threshold", threshold, H, dtype, x.device)
    if membrane is not None:
        require_tensor(op, membrane_name, membrane)
        require_shape(op, membrane_name, membrane, (B, H), "(batch, channels)")
        if membrane.dtype != dtype:
            raise TypeError(f"{op}: {membrane_name} must be {dtype} for input of {x.dtype}, got {membrane.dtype}")
    require_same_device(op, {"input": x, "beta": beta_t, "threshold": threshold_t, membrane_name: membrane})
    return alpha, beta_t, threshold_t


def lif(
    x: torch.Tensor,
    beta,
    threshold,
    *,
    reset: str = "subtract",
    surrogate: str = "atan",
    alpha: float | None = None,
    initial_state: torch.Tensor | None = None,
    detach_reset: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leaky integrate-and-fire neurons, one per channel, run over the whole sequence.

        v_t = beta * v_{t-1} + x_t;   s_t = H(v_t - threshold)   (1 where v_t > threshold)
        reset: "subtract" v_t -= s_t * threshold;  "zero" v_t = 0 where s_t = 1;  "none" no reset

    Binary spiking as in Binary S4D is beta=0, threshold=0, reset="none".

    Args:
        x: (B, L, H) input current; float32, float64, float16 or bfloat16 (the membrane is float32, float64
            for float64 x).
        beta: leak factor in [0, 1]: a float, or a () or (H,) tensor (learnable: gradients flow to it).
        threshold: firing threshold: a float, or a () or (H,) tensor (learnable).
        reset: "subtract", "zero" or "none".
        surrogate: the spike's backward derivative, by name; see spikessm.ops.surrogates ("atan",
            "fast_sigmoid", "triangle", "sigmoid", "rectangle").
        alpha: the surrogate's shape parameter; None takes the surrogate's default. The Triton kernels take it
            as a float32 scalar, so a float64 run with an alpha that float32 cannot hold exactly (the defaults
            can) differs from the PyTorch path by ~1e-8 relative in the gradients.
        initial_state: (B, H) membrane before the first step; None means zeros.
        detach_reset: stop gradients through the reset term.
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".

    Returns:
        spikes: (B, L, H) in x's dtype, values 0 or 1.
        final_state: (B, H) membrane after the last step (after its reset), in the membrane dtype.
    """
    require_tensor(OP, "x", x)
    require_rank(OP, "x", x, (3,), "(batch, length, channels)")
    require_length(OP, "x", x.shape[1])
    if x.is_complex() or x.dtype not in REAL_STATE + LOW_PRECISION:
        raise TypeError(f"{OP}: x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    alpha, beta_t, threshold_t = check_lif_inputs(OP, x, reset, surrogate, alpha, beta, threshold, initial_state,
                                                  "initial_state")
    triton = use_triton(backend, x.device, OP)
    h0 = initial_state.contiguous() if initial_state is not None else None
    spikes, _, final_state = lif_op(x.contiguous(), beta_t.contiguous(), threshold_t.contiguous(), h0, reset,
                                    surrogate, alpha, bool(detach_reset), triton,
                                    needs_grad(x, beta_t, threshold_t, h0))
    return spikes, final_state
