"""lif: leaky integrate-and-fire neurons over a sequence, exact (sequential reset) with surrogate gradients.

Files: naive.py (the step-by-step reference), torch_sequential.py (the PyTorch path), triton_sequential.py (on the
kernels of kernels/lif.py, installed as spikessm.kernels.lif) and leaky.py (the "leaky" surrogate's derivative,
which both need). Both implementations walk time in order ("sequential", the only algorithm: the reset makes the
recurrence non-linear), and each is a pair of custom ops (spikessm/ops/common/custom_op.py), so that
torch.compile sees one opaque node instead of unrolling the loop over time. A reverse run flips the sequence
around the implementation.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..common.backend import algorithms, pick
from ..common.checks import (LOW_PRECISION, REAL_STATE, check_neuron_settings, check_run_settings, is_empty,
                             needs_grad, per_channel, require_rank, require_same_device, require_shape,
                             require_tensor, state_or_zeros)
from ..common.outputs import ScanOutput
from . import torch_sequential, triton_sequential

OP = "lif"
IMPLEMENTATIONS = {"torch": {"sequential": torch_sequential.run}, "triton": {"sequential": triton_sequential.run}}
ALGORITHMS = algorithms(IMPLEMENTATIONS)


def check_lif_tensors(op: str, x: torch.Tensor, beta, threshold, membrane: torch.Tensor | None,
                      membrane_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The neuron tensors of a call of an op whose neurons take x (B, L, H) as input current (lif, s4d_lif):
    returns beta and threshold as (H,) tensors in the membrane dtype, after checking their shapes, the
    membrane's shape and dtype, and that all are on x's device."""
    B, _, H = x.shape
    dtype = torch_sequential.state_dtype(x)
    beta_t = per_channel(op, "beta", beta, H, dtype, x.device)
    threshold_t = per_channel(op, "threshold", threshold, H, dtype, x.device)
    if membrane is not None:
        require_tensor(op, membrane_name, membrane)
        require_shape(op, membrane_name, membrane, (B, H), "(batch, channels)")
        if membrane.dtype != dtype:
            raise TypeError(f"{op}: {membrane_name} must be {dtype} for input of {x.dtype}, got {membrane.dtype}")
    require_same_device(op, {"input": x, "beta": beta_t, "threshold": threshold_t, membrane_name: membrane})
    return beta_t, threshold_t


def run_lif(run: Callable, x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, h0: Optional[torch.Tensor],
            *, reset: str, surrogate: str, alpha: float, detach_reset: bool, reverse: bool,
            save_membrane: bool, fire_on_tie: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One of lif's implementations (`run`, a value of IMPLEMENTATIONS) on checked inputs (beta, threshold (H,)
    in the membrane dtype), in either direction of time: spikes, the pre-reset membrane (empty unless
    save_membrane) and the final membrane; differentiable. s4d_lif's PyTorch path runs its neurons through it."""
    if reverse:
        x = x.flip(1)
    spikes, membrane, final = run(x.contiguous(), beta.contiguous(), threshold.contiguous(),
                                  h0.contiguous() if h0 is not None else None, reset=reset, surrogate=surrogate,
                                  alpha=alpha, detach_reset=detach_reset, fire_on_tie=fire_on_tie,
                                  save_membrane=save_membrane)
    if reverse:
        spikes, membrane = spikes.flip(1), (membrane.flip(1) if membrane.dim() == 3 else membrane)
    return spikes, membrane, final


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
    fire_on_tie: bool = False,
    reverse: bool = False,
    output_final_state: bool = True,
    backend: str = "auto",
    algorithm: str = "auto",
) -> ScanOutput:
    """Leaky integrate-and-fire neurons, one per channel, run over the whole sequence.

        m_t = beta * v_{t-1} + x_t;   s_t = H(m_t - threshold)   (1 where m_t > threshold; m_t >= threshold
                                                                  with fire_on_tie)
        reset: "subtract"  v_t = m_t - s_t * threshold;  "zero"  v_t = 0 where s_t = 1, else m_t;  "none"  v_t = m_t
               "subtract_after_decay"  m_t = v_{t-1} + x_t (no leak here) and v_t = beta * m_t - s_t * threshold:
               m_t = beta * m_{t-1} + x_t - threshold * s_{t-1}, snntorch's Leaky (reset_delay=True, its default;
               with detach_reset=True, as snntorch detaches it), where "subtract" takes the threshold off before
               the decay (spikingjelly's order). See docs/neurons.md.

    Binary spiking as in Binary S4D is beta=0, threshold=0, reset="none".

    Args:
        x: (B, L, H) input current; float32, float64, float16 or bfloat16 (the membrane is float32, float64
            for float64 x).
        beta: leak factor in [0, 1]: a float, or a () or (H,) tensor (learnable: gradients flow to it).
        threshold: finite firing threshold: a float, or a () or (H,) tensor (learnable).
        initial_state: (B, H) membrane before the first step processed; None means zeros.
        reset: "subtract", "zero", "none" or "subtract_after_decay".
        surrogate: the spike's backward derivative, by name; see spikessm/ops/common/surrogate.py ("atan",
            "fast_sigmoid", "triangle", "sigmoid", "rectangle", "leaky").
        alpha: the surrogate's shape parameter, finite and > 0; None takes the surrogate's default (the kernels
            read it in the membrane dtype, so float64 runs keep every digit of it).
        detach_reset: stop gradients through the reset term.
        fire_on_tie: spike where v_t >= threshold (spikingjelly's rule) instead of v_t > threshold (snntorch's,
            the default); the two differ only where v_t equals the threshold exactly, as with integer inputs
            such as event counts. The surrogate gradient is the same. See docs/neurons.md.
        reverse: run from t = L - 1 down to t = 0 (the sequence is flipped around the same computation).
        output_final_state: return the final membrane (else None).
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".
        algorithm: "auto" or "sequential" (the only one: the reset makes the recurrence sequential).

    beta and threshold values are checked when they are floats or CPU tensors; values of CUDA tensors are not
    read (that would make the host wait for the device). Empty inputs (batch, length or channels 0) return empty
    spikes and the initial state (zeros when None) without running anything.

    Returns:
        ScanOutput(output, final_state): spikes (B, L, H) in x's dtype, values 0 or 1; the state v (B, H) after
        the last step processed (the membrane after its reset; after decay beta m - s threshold), in the membrane
        dtype, or None when output_final_state is False.
    """
    alpha = check_neuron_settings(OP, beta=beta, threshold=threshold, reset=reset, surrogate=surrogate,
                                  alpha=alpha, detach_reset=detach_reset, fire_on_tie=fire_on_tie)
    check_run_settings(OP, reverse=reverse, output_final_state=output_final_state, backend=backend,
                       algorithm=algorithm, algorithms=ALGORITHMS)
    return lif_prechecked(x, beta, threshold, initial_state, reset=reset, surrogate=surrogate, alpha=alpha,
                          detach_reset=detach_reset, fire_on_tie=fire_on_tie, reverse=reverse,
                          output_final_state=output_final_state, backend=backend, algorithm=algorithm)


def lif_prechecked(x: torch.Tensor, beta, threshold, initial_state: torch.Tensor | None = None, *, reset: str,
                   surrogate: str, alpha: float, detach_reset: bool, fire_on_tie: bool = False,
                   reverse: bool = False, output_final_state: bool = True, backend: str,
                   algorithm: str = "auto") -> ScanOutput:
    """lif with settings its caller has checked (lif itself, or the LIF layer when it was built; alpha given as a
    number): checks only the tensors of the call, then runs. See spikessm/ops/common/checks.py."""
    require_tensor(OP, "x", x)
    require_rank(OP, "x", x, (3,), "(batch, length, channels)")
    if x.is_complex() or x.dtype not in REAL_STATE + LOW_PRECISION:
        raise TypeError(f"{OP}: x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    beta_t, threshold_t = check_lif_tensors(OP, x, beta, threshold, initial_state, "initial_state")
    _, _, run = pick(OP, backend, algorithm, x.device, IMPLEMENTATIONS)
    if is_empty(x):
        final = state_or_zeros(initial_state, (x.shape[0], x.shape[2]), beta_t.dtype, x.device)
        return ScanOutput(x.clone(), final if output_final_state else None)
    spikes, _, final = run_lif(run, x, beta_t, threshold_t, initial_state, reset=reset, surrogate=surrogate,
                               alpha=alpha, detach_reset=detach_reset, reverse=reverse, fire_on_tie=fire_on_tie,
                               save_membrane=needs_grad(x, beta_t, threshold_t, initial_state))
    return ScanOutput(spikes, final if output_final_state else None)
