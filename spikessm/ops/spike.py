"""Pointwise spikes with surrogate gradients: the binary Heaviside spike and the GSU's ternarisation.

    spike(x)           = H(x)                 (1 where x > 0, else 0)
    ternarize(x, d)    = H(x - d) - H(-x - d)  (in {-1, 0, +1}; d >= 0 broadcasts against x)

Backward: H' is replaced by a surrogate derivative by name (spikessm/ops/common/neuron.py), so
d spike / dx = sigma(x) and d ternarize / dx = sigma(x - d) + sigma(-x - d). The thresholds d get no gradient:
the GSU sets them from the data (0.15 max |x|) and treats them as constants, as it does its spikes.
"""
from __future__ import annotations

import torch

from .common.neuron import POINTWISE_SURROGATES, SurrogateSpike, resolve_alpha


def _check(op: str, x: torch.Tensor, surrogate: str, alpha: float | None) -> float:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: x must be a floating-point tensor, got {x.dtype}")
    if surrogate == "leaky":
        raise ValueError(f"{op}: the 'leaky' surrogate needs a membrane history (use lif); "
                         f"pointwise spikes take {', '.join(POINTWISE_SURROGATES)}")
    return resolve_alpha(op, surrogate, alpha)


def spike(x: torch.Tensor, *, surrogate: str = "atan", alpha: float | None = None) -> torch.Tensor:
    """Heaviside spike H(x) of any-shaped x, in x's dtype; gradients through the named surrogate.

    Binary S4D's readout is spike(y) (threshold 0); spike(v - threshold) for any other threshold.
    """
    alpha = _check("spike", x, surrogate, alpha)
    return SurrogateSpike.apply(x, surrogate, alpha)


def ternarize(x: torch.Tensor, delta: torch.Tensor | float, *, surrogate: str = "atan",
              alpha: float | None = None) -> torch.Tensor:
    """H(x - delta) - H(-x - delta) in {-1, 0, +1}, x's shape and dtype; delta (>= 0) broadcasts against x and
    is treated as a constant in the backward."""
    alpha = _check("ternarize", x, surrogate, alpha)
    if isinstance(delta, torch.Tensor):
        delta = delta.detach()
    return SurrogateSpike.apply(x - delta, surrogate, alpha) - SurrogateSpike.apply(-x - delta, surrogate, alpha)
