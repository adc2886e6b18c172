"""The one rounding rule of spikessm.quant, written once: round half up (ties go towards +infinity).

    round(x)           = floor(x + 1/2)
    shift_round(n, s)  = floor(n / 2^s + 1/2) = (n + 2^(s-1)) >> s     for s > 0 (arithmetic shift), n << -s else
    div_round(n, d)    = floor(n / d + 1/2)   = floor((2n + d) / (2d))  for d > 0
    sqrt_round(n)      = floor(sqrt(n) + 1/2)                          for n >= 1 (the integer LayerNorm)

On two's-complement hardware the shift form is one add and one arithmetic shift, which is why this rule and not
round-half-to-even or half-away-from-zero: -3/2 rounds to -1, 3/2 to 2. Every rescale of the integer graph goes
through shift_round (or div_round for mean pooling), and every real number that becomes an integer (weights,
thresholds, input features, look-up tables) through round_half_up.

Each function takes an int64 tensor (the integer simulator: exact integer operations) or a floating-point tensor
holding integers (the fake-quant model). On floats the result carries a straight-through gradient: the forward is
the rounded value, the backward that of the exact quotient n / 2^s (or n / d). float64 is exact for integers
below 2^53; the layers refuse widths that could leave that range (spikessm.quant.fixed.require_exact).
"""
from __future__ import annotations

import torch


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """floor(x + 1/2) of a real tensor, with a straight-through (identity) gradient."""
    return x + (torch.floor(x.detach() + 0.5) - x.detach())


def _as_shift(shift, like: torch.Tensor):
    """An int, or an int64 tensor on like's device; a 0-d tensor becomes an int (one shift: the cheaper form)."""
    if isinstance(shift, torch.Tensor):
        return int(shift) if shift.dim() == 0 else shift.to(like.device)
    return int(shift)


def shift_round(n: torch.Tensor, shift) -> torch.Tensor:
    """n / 2^shift rounded half up; shift: an int or an int64 tensor broadcasting against n (negative shifts
    multiply by 2^-shift, exactly)."""
    shift = _as_shift(shift, n)
    if n.is_floating_point():
        scale = torch.exp2(-shift.to(n.dtype)) if isinstance(shift, torch.Tensor) else 2.0 ** -shift
        exact = n * scale
        return exact + (torch.floor(exact.detach() + 0.5) - exact.detach())
    if isinstance(shift, int):
        if shift <= 0:
            return n << -shift
        return (n + (1 << (shift - 1))) >> shift
    right = shift.clamp_min(0)
    half = torch.where(right > 0, torch.ones_like(right) << (right - 1).clamp_min(0), torch.zeros_like(right))
    return ((n + half) >> right) << (-shift).clamp_min(0)


def div_round(n: torch.Tensor, d: torch.Tensor | int) -> torch.Tensor:
    """n / d rounded half up, d > 0 (an int or an integer tensor broadcasting against n)."""
    if n.is_floating_point():
        d = d.to(n.dtype) if isinstance(d, torch.Tensor) else float(d)
        exact = n / d
        rounded = torch.div(2 * n.detach() + d, 2 * d, rounding_mode="floor")
        return exact + (rounded - exact.detach())
    return torch.div(2 * n + d, 2 * d, rounding_mode="floor")


def _isqrt_float(n: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(n)) of non-negative integers below 2^52 held in float64: the float square root, corrected by one
    either way where it rounded across an integer."""
    s = torch.floor(torch.sqrt(n))
    s = s - (s * s > n).to(n.dtype)
    return s + ((s + 1) * (s + 1) <= n).to(n.dtype)


def sqrt_round(n: torch.Tensor) -> torch.Tensor:
    """sqrt(n) rounded half up, n >= 1 (integers below 2^52): s = floor(sqrt(n)), plus one where n > s^2 + s
    (sqrt(n) >= s + 1/2 exactly there; the square root of an integer is never a half). On floats the gradient is
    that of the exact sqrt(n)."""
    if n.is_floating_point():
        exact = torch.sqrt(n)
        d = n.detach().double()
        s = _isqrt_float(d)
        rounded = (s + (d > s * s + s).double()).to(n.dtype)
        return exact + (rounded - exact.detach())
    s = _isqrt_float(n.double()).to(torch.int64)  # n below 2^52 converts exactly
    return s + (n > s * s + s).to(torch.int64)
