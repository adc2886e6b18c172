"""Pointwise spikes with surrogate gradients: the binary Heaviside spike and the GSU's ternarisation.

    spike(x)           = H(x)                 (1 where x > 0, else 0; x >= 0 with fire_on_tie=True)
    ternarize(x, d)    = H(x - d) - H(-x - d)  (in {-1, 0, +1}; d >= 0 broadcasts against x)

Backward: H' is replaced by a surrogate derivative by name (spikessm/ops/common/surrogate.py), so
d spike / dx = sigma(x) and d ternarize / dx = sigma(x - d) + sigma(-x - d). The thresholds d get no gradient:
the GSU sets them from the data (0.15 max |x|) and treats them as constants, as it does its spikes.
"""
from __future__ import annotations

import torch

from .common.checks import check_surrogate, require_bool
from .common.surrogate import SurrogateSpike


def _check_input(op: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: x must be a floating-point tensor, got {x.dtype}")


def spike(x: torch.Tensor, *, surrogate: str = "atan", alpha: float | None = None,
          fire_on_tie: bool = False) -> torch.Tensor:
    """Heaviside spike H(x) of any-shaped x, in x's dtype; gradients through the named surrogate.

    Binary S4D's readout is spike(y) (threshold 0); spike(v - threshold) for any other threshold. fire_on_tie
    spikes at x == 0 too (the rule of lif's fire_on_tie); the surrogate is the same either way.
    """
    alpha = check_surrogate("spike", surrogate, alpha, pointwise=True)
    require_bool("spike", "fire_on_tie", fire_on_tie)
    return spike_prechecked(x, surrogate=surrogate, alpha=alpha, fire_on_tie=fire_on_tie)


def spike_prechecked(x: torch.Tensor, *, surrogate: str, alpha: float, fire_on_tie: bool = False) -> torch.Tensor:
    """spike with its surrogate, alpha and fire_on_tie checked by the caller (spike itself, or the Heaviside
    layer when it was built): checks only x. See spikessm/ops/common/checks.py."""
    _check_input("spike", x)
    return SurrogateSpike.apply(x, surrogate, alpha, None, fire_on_tie)


def ternarize(x: torch.Tensor, delta: torch.Tensor | float, *, surrogate: str = "atan",
              alpha: float | None = None) -> torch.Tensor:
    """H(x - delta) - H(-x - delta) in {-1, 0, +1}, x's shape and dtype; delta (>= 0) broadcasts against x and
    is treated as a constant in the backward."""
    alpha = check_surrogate("ternarize", surrogate, alpha, pointwise=True)
    return ternarize_prechecked(x, delta, surrogate=surrogate, alpha=alpha)


def ternarize_prechecked(x: torch.Tensor, delta: torch.Tensor | float, *, surrogate: str,
                         alpha: float) -> torch.Tensor:
    """ternarize with its surrogate and alpha checked by the caller (ternarize itself, or the GSU when it was
    built): checks only x."""
    _check_input("ternarize", x)
    if isinstance(delta, torch.Tensor):
        delta = delta.detach()
    return SurrogateSpike.apply(x - delta, surrogate, alpha) - SurrogateSpike.apply(-x - delta, surrogate, alpha)
