"""Discretisation of a diagonal continuous-time SSM x' = A x + B u with step dt, per mode.

    zoh:      A_bar = exp(dt A),                      B_bar = (A_bar - 1) / A * B
    bilinear: A_bar = (1 + dt A / 2) / (1 - dt A / 2), B_bar = dt B / (1 - dt A / 2)

Shapes broadcast: A, dt and B of any compatible shapes (complex A and B, real dt).
"""
from __future__ import annotations

import torch

DISCRETIZATIONS = ("zoh", "bilinear")


def discretize(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (A_bar, B_bar) for `method` in DISCRETIZATIONS."""
    dtA = dt * A
    if method == "zoh":
        A_bar = torch.exp(dtA)
        return A_bar, (A_bar - 1) / A * B
    if method == "bilinear":
        inv = 1 / (1 - dtA / 2)
        return (1 + dtA / 2) * inv, dt * inv * B
    raise ValueError(f"discretization must be one of {DISCRETIZATIONS}, got {method!r}")


def check_dt_range(layer: str, dt_min, dt_max) -> None:
    if not (isinstance(dt_min, (int, float)) and isinstance(dt_max, (int, float)) and 0 < dt_min <= dt_max):
        raise ValueError(f"{layer}: need 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")
