"""Surrogate derivatives of the Heaviside spike, d spike / d v with x = v - threshold.

A spiking neuron emits s = H(v - threshold) in the forward pass; in the backward pass H' (zero almost
everywhere) is replaced by one of these smooth or box-shaped stand-ins. Each takes a shape parameter `alpha`
with the default of the SNN libraries:

| name           | d s / d x                                         | alpha (default)     |
|----------------|---------------------------------------------------|---------------------|
| "atan"         | alpha / 2 / (1 + (pi / 2 * alpha * x)^2)          | sharpness (2.0)     |
| "fast_sigmoid" | 1 / (1 + alpha * |x|)^2                           | slope (25.0)        |
| "triangle"     | max(0, 1 - |x| / alpha) / alpha                   | half-width (1.0)    |
| "sigmoid"      | alpha * sig(alpha x) * (1 - sig(alpha x))         | sharpness (4.0)     |
| "rectangle"    | 1{|x| < alpha / 2} / alpha  (straight-through)    | width (1.0)         |
| "leaky"        | (1 / threshold) (1 + ln(beta) a_t / g_t)          | unused              |

"leaky" is the leak-aware derivative of Lee et al. 2020 (Front. Neurosci. 14:119) applied per step: a_t is the
leaky spike trace sum_k beta^(t - t_k) s_k and g_t the spike count sum_k s_k up to and including step t (the
factor is 1 / threshold before the first spike). It depends on the spike history, not on v - threshold, so it
needs 0 < beta <= 1 and is computed by `leaky_derivative` from the spikes.
"""
from __future__ import annotations

import math

import torch

DEFAULT_ALPHA = {"atan": 2.0, "fast_sigmoid": 25.0, "triangle": 1.0, "sigmoid": 4.0, "rectangle": 1.0, "leaky": 1.0}
SURROGATES = tuple(DEFAULT_ALPHA)


def resolve(op: str, surrogate: str, alpha: float | None) -> float:
    """Checks the surrogate name and alpha; returns alpha (the default when None)."""
    if surrogate not in DEFAULT_ALPHA:
        raise ValueError(f"{op}: surrogate must be one of {SURROGATES}, got {surrogate!r}")
    alpha = DEFAULT_ALPHA[surrogate] if alpha is None else float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"{op}: alpha must be a positive finite number, got {alpha}")
    return alpha


def require_leaky_beta(op: str, surrogate: str, beta) -> None:
    """"leaky" takes ln(beta): a float beta must be in (0, 1] (tensor values are the caller's responsibility)."""
    if surrogate == "leaky" and isinstance(beta, (int, float)) and not 0 < beta <= 1:
        raise ValueError(f"{op}: the 'leaky' surrogate needs 0 < beta <= 1 (it uses ln(beta)), got {beta}")


def leaky_derivative(spikes: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """The "leaky" surrogate for every step. spikes: (B, L, H) 0/1; beta, threshold: (H,) -> (B, L, H)."""
    from .chunked_scan import scan  # the trace a_t = beta a_(t-1) + s_t is a diagonal scan

    trace = scan(beta, spikes.contiguous(), None)
    count = spikes.cumsum(dim=1)
    ratio = torch.where(count > 0, trace / count.clamp_min(1), 0.0)
    return (1 + torch.log(beta) * ratio) / threshold


def derivative(surrogate: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """d spike / d x at x = v - threshold (elementwise, x's shape and dtype), for the surrogates that depend
    on x only (all but "leaky")."""
    return derivative_(surrogate, x.clone(), alpha)


def derivative_(surrogate: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """`derivative` computed in place: overwrites x (v - threshold) with d spike / d x and returns it. The
    PyTorch LIF backward evaluates it on a reused buffer: on a CPU a fresh multi-megabyte temporary per op
    costs page faults (the allocator returns freed blocks of that size to the system)."""
    if surrogate == "atan":  # (alpha / 2) / (1 + (pi / 2 * alpha * x)^2)
        return x.mul_(math.pi / 2 * alpha).square_().add_(1).reciprocal_().mul_(alpha / 2)
    if surrogate == "fast_sigmoid":  # 1 / (1 + alpha |x|)^2
        return x.abs_().mul_(alpha).add_(1).square_().reciprocal_()
    if surrogate == "triangle":  # max(0, 1 - |x| / alpha) / alpha
        return x.abs_().div_(alpha).neg_().add_(1).clamp_min_(0).div_(alpha)
    if surrogate == "sigmoid":  # alpha sig (1 - sig), sig = sigmoid(alpha x)
        sig = x.mul_(alpha).sigmoid_()
        one_minus_sig = 1 - sig
        return sig.mul_(alpha).mul_(one_minus_sig)
    if surrogate == "rectangle":  # 1{|x| < alpha / 2} / alpha
        return torch.lt(x.abs_(), alpha / 2, out=x).div_(alpha)
    raise ValueError(f"unknown surrogate {surrogate!r}")
