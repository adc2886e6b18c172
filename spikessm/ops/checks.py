"""Argument checks shared by the ops: each error names the op, the argument and what was expected."""
from __future__ import annotations

import torch

REAL_STATE = (torch.float32, torch.float64)
COMPLEX_STATE = (torch.complex64, torch.complex128)
LOW_PRECISION = (torch.float16, torch.bfloat16)
COMPLEX_FOR_REAL = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def require_tensor(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def require_shape(op: str, name: str, t: torch.Tensor, shape: tuple, desc: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {desc} = {tuple(shape)}, got {tuple(t.shape)}")


def require_rank(op: str, name: str, t: torch.Tensor, ranks: tuple[int, ...], desc: str) -> None:
    if t.dim() not in ranks:
        raise ValueError(f"{op}: {name} must be {desc}, got a tensor of shape {tuple(t.shape)}")


def require_same_device(op: str, named: dict[str, torch.Tensor | None]) -> torch.device:
    present = {k: v for k, v in named.items() if v is not None}
    first_name, first = next(iter(present.items()))
    for name, t in present.items():
        if t.device != first.device:
            raise ValueError(
                f"{op}: all tensors must be on one device; {first_name} is on {first.device}, {name} on {t.device}"
            )
    return first.device


def require_length(op: str, name: str, L: int) -> None:
    if L < 1:
        raise ValueError(f"{op}: {name} must have at least one time step (length >= 1), got length {L}")
