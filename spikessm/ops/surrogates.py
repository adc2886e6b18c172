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
"""
from __future__ import annotations

import math

import torch

DEFAULT_ALPHA = {"atan": 2.0, "fast_sigmoid": 25.0, "triangle": 1.0, "sigmoid": 4.0, "rectangle": 1.0}
SURROGATES = tuple(DEFAULT_ALPHA)


def resolve(op: str, surrogate: str, alpha: float | None) -> float:
    """Checks the surrogate name and alpha; returns alpha (the default when None)."""
    if surrogate not in DEFAULT_ALPHA:
        raise ValueError(f"{op}: surrogate must be one of {SURROGATES}, got {surrogate!r}")
    alpha = DEFAULT_ALPHA[surrogate] if alpha is None else float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"{op}: alpha must be a positive finite number, got {alpha}")
    return alpha


def derivative(surrogate: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """d spike / d x at x = v - threshold (elementwise, x's shape and dtype)."""
    if surrogate == "atan":
        return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)
    if surrogate == "fast_sigmoid":
        return 1 / (1 + alpha * x.abs()) ** 2
    if surrogate == "triangle":
        return (1 - x.abs() / alpha).clamp_min(0) / alpha
    if surrogate == "sigmoid":
        sig = torch.sigmoid(alpha * x)
        return alpha * sig * (1 - sig)
    if surrogate == "rectangle":
        return (x.abs() < alpha / 2).to(x.dtype) / alpha
    raise ValueError(f"unknown surrogate {surrogate!r}")
