"""rf: resonate-and-fire neurons over a sequence (complex membrane, threshold on its real part), exact, with
surrogate gradients; optionally several dendritic branches per neuron and an adaptive threshold.

Files: naive.py (the step-by-step reference), torch_sequential.py (the PyTorch "sequential" path: a forward loop
and an explicit adjoint), triton_sequential.py (the same on the Triton kernels of kernels/rf.py, installed as
spikessm.kernels.rf), parallel.py (the "parallel" algorithm for neurons whose spikes do not act on their
membrane: diag_scan, then a pointwise threshold, on either backend). Each sequential implementation is a custom op
pair (spikessm/ops/common/custom_op.py), so torch.compile sees one opaque node instead of unrolling the loop over
time. A reverse run flips the sequence around the op.

Where the equations come from (the three papers' full texts could not be read here; what each gives is from its
abstract, its public code or README, and /work/shared/reference/deploy.md, and what they leave open is chosen
below and marked "our choice"):
  * The RF neuron, a damped complex oscillator z' = (-a + i omega) z + I, fires when Re z crosses a threshold
    (Izhikevich 2001; the form PRF and S5-RF start from). Discretised with one step dt:
    lam = exp((-a + i omega) dt). How a, omega and dt are parameterised and initialised is the layer's business
    (spikessm.layers.RF); this op takes lam.
  * PRF (Huang et al. 2024, arXiv 2410.03530; its public model code, `ParallelResonateFire`): the membrane is
    z_t = lam z_{t-1} + dt x_t and s_t = H(Re z_t - threshold) with no spike-triggered reset: the reset is
    "decoupled" from the spikes (the oscillation itself carries Re z back below the threshold), so the membrane
    is a linear recurrence, trained in parallel (an FFT convolution there, diag_scan's scan here) and equal to
    the sequential neuron. Here that is reset="none", and algorithm="parallel" runs it that way. It is not a
    fourth reset mode: it computes exactly what "none" computes.
  * D-RF (Zhang et al. 2025, arXiv 2509.17186): several dendritic RF branches per neuron (frequency bands) and
    a soma with an adaptive threshold that rises with the recent spiking. Our choices: every branch receives the
    neuron's input, the soma's membrane is sum_k weight_k Re z[k], and the threshold is th_t = threshold +
    adapt_scale a_{t-1} with the spike trace a_t = adapt_decay a_{t-1} + s_t.
  * S5-RF (Huber et al. 2025, arXiv 2504.00719; its README): RF neurons as the state of an S5-style layer, no
    refractory period (no reset), HiPPO-initialised frequencies; an initialisation, so the layer's.
Reset modes on top of the papers' none (our choices, following lif's): "subtract" takes the threshold that fired
off Re z (one branch only: a soma of several branches has no membrane of its own to subtract from), "zero" sets
the whole complex membrane (every branch) to 0, so that no stored oscillation brings the neuron back to fire.
"""
from __future__ import annotations

import functools
import math

import torch

from ..common.backend import algorithms, pick
from ..common.checks import (COMPLEX_FOR_REAL, LOW_PRECISION, REAL_STATE, check_choice, check_run_settings,
                             check_surrogate, check_threshold, is_empty, per_channel, require_bool, require_rank,
                             require_same_device, require_shape, require_tensor)
from ..common.outputs import RFState, ScanOutput
from ..common.reset import RESETS
from . import parallel, torch_sequential, triton_sequential

OP = "rf"


# Each backend's algorithms, its default ("auto") first.
IMPLEMENTATIONS = {
    "torch": {"sequential": torch_sequential.run, "parallel": functools.partial(parallel.run, backend="torch")},
    "triton": {"sequential": triton_sequential.run, "parallel": functools.partial(parallel.run, backend="triton")},
}
ALGORITHMS = algorithms(IMPLEMENTATIONS)


# ----------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------


def _cpu_values(t: torch.Tensor) -> torch.Tensor | None:
    """The values of a tensor to check: None for a tensor on another device than the CPU (reading it would wait
    for the device) and under torch.compile (a graph cannot branch on values)."""
    if torch.compiler.is_compiling() or t.device.type != "cpu" or t.numel() == 0:
        return None
    return t.detach()


def _show(values: torch.Tensor):
    return values.item() if values.numel() == 1 else values.tolist()


def _check_range(name: str, value, low: float, high: float, what: str) -> None:
    """A float or a tensor's CPU values finite and in [low, high] (NaN refused)."""
    if isinstance(value, (int, float)):
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"{OP}: {name} must be {what}, got {float(value)}")
        return
    v = _cpu_values(value)
    if v is not None and not bool((torch.isfinite(v) & (v >= low) & (v <= high)).all()):
        raise ValueError(f"{OP}: {name} must be {what}, got {_show(v)}")


def _initial_state(initial_state) -> tuple:
    """(membrane, trace) from None, an RFState or a plain pair."""
    if initial_state is None:
        return None, None
    if not isinstance(initial_state, tuple) or len(initial_state) != 2:
        raise TypeError(f"{OP}: initial_state must be None, an RFState or a pair (membrane or None, trace or None), "
                        f"got {type(initial_state).__name__}")
    return initial_state[0], initial_state[1]


def check_rf_inputs(x, lam, threshold, weight, adapt_decay, adapt_scale, membrane, trace, reset, surrogate, alpha,
                    detach_reset):
    """Every argument of rf but the flags; returns (alpha, lam (H, K), weight, threshold, rho, kappa, h0 (B, H, K),
    a0) in the op's internal shapes and the state dtypes."""
    require_tensor(OP, "x", x)
    require_rank(OP, "x", x, (3,), "(batch, length, channels)")
    if x.is_complex() or x.dtype not in REAL_STATE + LOW_PRECISION:
        raise TypeError(f"{OP}: x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    B, _, H = x.shape
    real = torch_sequential.state_dtype(x)
    cdtype = COMPLEX_FOR_REAL[real]
    require_tensor(OP, "lam", lam)
    require_rank(OP, "lam", lam, (1, 2), "(channels,) or (channels, branches)")
    if lam.shape[0] != H or (lam.dim() == 2 and lam.shape[1] < 1):
        raise ValueError(f"{OP}: lam must be (channels,) or (channels, branches) with x's {H} channels and at least "
                         f"one branch, got shape {tuple(lam.shape)}")
    if lam.dtype != cdtype:
        raise TypeError(f"{OP}: lam must be {cdtype} for x of {x.dtype}, got {lam.dtype}")
    K = lam.shape[1] if lam.dim() == 2 else 1
    values = _cpu_values(lam)
    if values is not None:
        magnitude = values.abs()
        # |lam| = exp(-a dt) <= 1 with a >= 0: a decaying oscillation (a few ulps over 1 for a = 0, from rounding)
        if not bool((magnitude <= 1 + 4 * torch.finfo(real).eps).all()):
            raise ValueError(f"{OP}: lam must satisfy |lam| <= 1 (a decaying membrane), got max |lam| = "
                             f"{magnitude.max().item()}")
    check_choice(OP, "reset", reset, RESETS)
    if reset == "subtract" and (K > 1 or weight is not None):
        raise ValueError(f"{OP}: reset='subtract' needs one branch and no branch weights (a soma of several "
                         f"branches has no membrane of its own to subtract from); use 'zero' or 'none'")
    alpha = check_surrogate(OP, surrogate, alpha, pointwise=True)
    require_bool(OP, "detach_reset", detach_reset)
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        check_threshold(OP, "threshold", threshold)
    threshold_t = per_channel(OP, "threshold", threshold, H, real, x.device)
    t_values = _cpu_values(threshold_t) if isinstance(threshold, torch.Tensor) else None
    if t_values is not None and not bool(torch.isfinite(t_values).all()):
        raise ValueError(f"{OP}: threshold must be a finite number, got {_show(t_values)}")
    weight_t = None
    if weight is not None:
        require_tensor(OP, "weight", weight)
        require_shape(OP, "weight", weight, (H, K), "(channels, branches), lam's shape")
        if weight.is_complex() or weight.dtype != real:
            raise TypeError(f"{OP}: weight must be {real} for x of {x.dtype}, got {weight.dtype}")
        w_values = _cpu_values(weight)
        if w_values is not None and not bool(torch.isfinite(w_values).all()):
            raise ValueError(f"{OP}: weight must be finite, got {_show(w_values)}")
        weight_t = weight
    if (adapt_decay is None) != (adapt_scale is None):
        raise ValueError(f"{OP}: an adaptive threshold needs both adapt_decay and adapt_scale (or neither), got "
                         f"adapt_decay={adapt_decay!r}, adapt_scale={adapt_scale!r}")
    rho = kappa = None
    if adapt_decay is not None:
        rho = per_channel(OP, "adapt_decay", adapt_decay, H, real, x.device)
        kappa = per_channel(OP, "adapt_scale", adapt_scale, H, real, x.device)
        _check_range("adapt_decay", adapt_decay, 0.0, 1.0, "in [0, 1]")
        _check_range("adapt_scale", adapt_scale, 0.0, math.inf, "a finite number >= 0 (the threshold rises after "
                     "a spike)")
    membrane_shape = (B, H, K) if lam.dim() == 2 else (B, H)
    if membrane is not None:
        require_tensor(OP, "initial_state.membrane", membrane)
        require_shape(OP, "initial_state.membrane", membrane, membrane_shape,
                      "(batch, channels" + (", branches)" if lam.dim() == 2 else ")"))
        if membrane.dtype != cdtype:
            raise TypeError(f"{OP}: initial_state.membrane must be {cdtype} for x of {x.dtype}, got {membrane.dtype}")
    if trace is not None:
        if rho is None:
            raise ValueError(f"{OP}: initial_state has a trace, but the threshold does not adapt (adapt_decay and "
                             "adapt_scale are None)")
        require_tensor(OP, "initial_state.trace", trace)
        require_shape(OP, "initial_state.trace", trace, (B, H), "(batch, channels)")
        if trace.dtype != real:
            raise TypeError(f"{OP}: initial_state.trace must be {real} for x of {x.dtype}, got {trace.dtype}")
    require_same_device(OP, {"x": x, "lam": lam, "threshold": threshold_t, "weight": weight_t, "adapt_decay": rho,
                             "adapt_scale": kappa, "initial_state.membrane": membrane, "initial_state.trace": trace})
    lam_hk = lam if lam.dim() == 2 else lam[:, None]
    h0 = membrane if membrane is None or lam.dim() == 2 else membrane[..., None]
    return alpha, lam_hk, weight_t, threshold_t, rho, kappa, h0, trace


# ----------------------------------------------------------------------------------------------------------
# The op
# ----------------------------------------------------------------------------------------------------------


def rf(
    x: torch.Tensor,
    lam: torch.Tensor,
    threshold,
    initial_state: RFState | tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    *,
    weight: torch.Tensor | None = None,
    adapt_decay=None,
    adapt_scale=None,
    reset: str = "subtract",
    surrogate: str = "atan",
    alpha: float | None = None,
    detach_reset: bool = False,
    reverse: bool = False,
    output_final_state: bool = True,
    backend: str = "auto",
    algorithm: str = "auto",
) -> ScanOutput:
    """Resonate-and-fire neurons, one per channel, each with one or K dendritic branches, over the sequence.

        zeta_t = lam z_{t-1} + x_t                     complex membrane; x enters on the real axis, as it is
        m_t = Re zeta_t  |  sum_k weight_k Re zeta_t[k]    the soma (K branches; weight None: all 1)
        th_t = threshold  |  threshold + adapt_scale a_{t-1}     (adaptive threshold, D-RF)
        s_t = H(m_t - th_t)   (1 where m_t > th_t);   a_t = adapt_decay a_{t-1} + s_t   (the spike trace)
        reset: "subtract" Re z_t = Re zeta_t - th_t s_t (one branch) | "zero" z_t = 0 where s_t = 1 (every branch)
               | "none" z_t = zeta_t (PRF's decoupled reset: the spikes never act on the membrane)

    Sources of each line, and which are our choices, are in this module's docstring (spikessm/ops/rf); the
    derivation of the kernels is in docs/kernels.md.

    Args:
        x: (B, L, H) input current; float32, float64, float16 or bfloat16 (the state is complex64 / float32,
            complex128 / float64 for float64 x).
        lam: (H,) complex, one branch per neuron, or (H, K) for K branches; |lam| <= 1 (lam = exp((-a + i omega)
            dt) with a >= 0); complex64 (complex128 for float64 x). Learnable: gradients flow to it.
        threshold: finite firing threshold: a float, or a () or (H,) tensor (learnable).
        initial_state: None, an RFState(membrane, trace) or a pair: the membrane, (B, H) complex for lam (H,) or
            (B, H, K) for lam (H, K), and the spike trace (B, H) real (adaptive thresholds only); None parts mean
            zeros.
        weight: (H, K) real branch weights of the soma (learnable), or None for all 1.
        adapt_decay, adapt_scale: the adaptive threshold's trace decay in [0, 1] and its rise per unit of trace
            (>= 0): floats or () / (H,) tensors (learnable); both None (default): a fixed threshold.
        reset: "subtract" (default, as lif; needs one branch and no weight), "zero" or "none".
        surrogate, alpha: the spike's backward derivative and its shape parameter, as in lif ("leaky", lif's
            leak-aware derivative, is refused).
        detach_reset: stop gradients through the spike in the reset term.
        reverse: run from t = L - 1 down to t = 0 (the sequence is flipped around the same computation).
        output_final_state: return the final RFState (else None).
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".
        algorithm: "auto" or "sequential" (the exact walk over time, with any reset), or "parallel" (reset "none"
            without adaptation only: diag_scan over time, then a pointwise threshold; PRF's parallel training).

    Values of lam, threshold, weight and the adaptation parameters are checked when they are floats or CPU
    tensors (reading CUDA tensors would make the host wait). Empty inputs (batch, length or channels 0) return
    empty spikes and the initial state (zeros when None) without running anything.

    Returns:
        ScanOutput(output, final_state): spikes (B, L, H) in x's dtype, values 0 or 1; RFState(membrane, trace)
        after the last step processed (the membrane after its reset, lam's trailing shape; the trace None without
        adaptation), or None when output_final_state is False.
    """
    membrane, trace = _initial_state(initial_state)
    alpha, lam_hk, weight_t, threshold_t, rho, kappa, h0, a0 = check_rf_inputs(
        x, lam, threshold, weight, adapt_decay, adapt_scale, membrane, trace, reset, surrogate, alpha, detach_reset)
    check_run_settings(OP, reverse=reverse, output_final_state=output_final_state, backend=backend,
                       algorithm=algorithm, algorithms=ALGORITHMS)
    _, _, run = pick(OP, backend, algorithm, x.device, IMPLEMENTATIONS)
    B, _, H = x.shape
    if is_empty(x):
        zT = h0.clone() if h0 is not None else torch.zeros(B, H, lam_hk.shape[1], dtype=lam.dtype, device=x.device)
        aT = (a0.clone() if a0 is not None else torch.zeros(B, H, dtype=threshold_t.dtype, device=x.device)
              if rho is not None else None)
        spikes = x.clone()
    else:
        spikes, zT, aT = run(x, lam_hk, weight_t, threshold_t, rho, kappa, h0, a0, reset=reset, surrogate=surrogate,
                             alpha=alpha, detach_reset=detach_reset, reverse=reverse)
    if not output_final_state:
        return ScanOutput(spikes, None)
    return ScanOutput(spikes, RFState(zT if lam.dim() == 2 else zT[..., 0], aT))
