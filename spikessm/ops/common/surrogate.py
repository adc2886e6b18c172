"""The surrogate derivatives of a spike, once: their table and the autograd Function that applies them.

A spiking neuron emits s = H(v - threshold) in the forward pass; in the backward pass H' (zero almost
everywhere) is replaced by one of these smooth or box-shaped stand-ins, d spike / d x with x = v - threshold.
Each takes a shape parameter `alpha` with the default of the SNN libraries:

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
needs 0 < beta <= 1 and LIF neurons compute it from their spikes (spikessm/ops/lif/leaky.py); the kernels read
it from memory.

The Triton kernels evaluate the same formulas (kernels/common/neuron.py, installed as spikessm.kernels.common.neuron,
with the integer codes their launchers give these names); the PyTorch formulas are `derivative` below. The
checks of a surrogate's name and alpha are in checks.py.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch


def _atan(x: torch.Tensor, alpha: float) -> torch.Tensor:  # (alpha / 2) / (1 + (pi / 2 * alpha * x)^2)
    return x.mul_(math.pi / 2 * alpha).square_().add_(1).reciprocal_().mul_(alpha / 2)


def _fast_sigmoid(x: torch.Tensor, alpha: float) -> torch.Tensor:  # 1 / (1 + alpha |x|)^2
    return x.abs_().mul_(alpha).add_(1).square_().reciprocal_()


def _triangle(x: torch.Tensor, alpha: float) -> torch.Tensor:  # max(0, 1 - |x| / alpha) / alpha
    return x.abs_().div_(alpha).neg_().add_(1).clamp_min_(0).div_(alpha)


def _sigmoid(x: torch.Tensor, alpha: float) -> torch.Tensor:  # alpha sig (1 - sig), sig = sigmoid(alpha x)
    sig = x.mul_(alpha).sigmoid_()
    one_minus_sig = 1 - sig
    return sig.mul_(alpha).mul_(one_minus_sig)


def _rectangle(x: torch.Tensor, alpha: float) -> torch.Tensor:  # 1{|x| < alpha / 2} / alpha
    return torch.lt(x.abs_(), alpha / 2, out=x).div_(alpha)


class Surrogate(NamedTuple):
    """One surrogate: its name, default alpha and the in-place PyTorch derivative at x = v - threshold (None for
    "leaky", which depends on the spike history)."""

    name: str
    default_alpha: float
    derivative_: Optional[Callable[[torch.Tensor, float], torch.Tensor]]


SURROGATE_TABLE = {s.name: s for s in (
    Surrogate("atan", 2.0, _atan),
    Surrogate("fast_sigmoid", 25.0, _fast_sigmoid),
    Surrogate("triangle", 1.0, _triangle),
    Surrogate("sigmoid", 4.0, _sigmoid),
    Surrogate("rectangle", 1.0, _rectangle),
    Surrogate("leaky", 1.0, None),
)}
SURROGATES = tuple(SURROGATE_TABLE)
DEFAULT_ALPHA = {s.name: s.default_alpha for s in SURROGATE_TABLE.values()}
# Surrogates that depend on x = v - threshold only: the ones a pointwise spike (spike, ternarize) can take.
POINTWISE_SURROGATES = tuple(s.name for s in SURROGATE_TABLE.values() if s.derivative_ is not None)


def derivative_(surrogate: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """`derivative` computed in place: overwrites x (v - threshold) with d spike / d x and returns it. The
    PyTorch LIF backward evaluates it on a reused buffer: on a CPU a fresh multi-megabyte temporary per op
    costs page faults (the allocator returns freed blocks of that size to the system)."""
    entry = SURROGATE_TABLE.get(surrogate)
    if entry is None or entry.derivative_ is None:
        raise ValueError(f"no pointwise derivative for surrogate {surrogate!r}")
    return entry.derivative_(x, alpha)


def derivative(surrogate: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """d spike / d x at x = v - threshold (elementwise, x's shape and dtype), for the surrogates that depend
    on x only (all but "leaky")."""
    return derivative_(surrogate, x.clone(), alpha)


class SurrogateSpike(torch.autograd.Function):
    """H(x) (1 where x > 0, or x >= 0 with fire_on_tie) in x's dtype; the backward multiplies by a surrogate
    derivative: the named pointwise surrogate at x (computed in the backward), or a given derivative tensor (for
    "leaky", which depends on the spike history)."""

    @staticmethod
    def forward(ctx, x, surrogate: str, alpha: float, given_derivative: torch.Tensor | None = None,
                fire_on_tie: bool = False):
        ctx.save_for_backward(x if given_derivative is None else given_derivative)
        ctx.surrogate, ctx.alpha, ctx.given = surrogate, alpha, given_derivative is not None
        return ((x >= 0) if fire_on_tie else (x > 0)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (saved,) = ctx.saved_tensors
        d = saved if ctx.given else derivative(ctx.surrogate, saved, ctx.alpha)
        return grad * d, None, None, None, None
