"""Argument checks shared by the ops: each error names the op, the argument and what was expected.

They look at shapes, dtypes, devices and Python values only: no check reads a CUDA tensor's values, which would
wait for the device (neuron parameters held in CPU tensors are checked in spikessm/ops/common/neuron.py)."""
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


def require_bool(op: str, name: str, value) -> bool:
    """A boolean option must be a real bool: a string such as "no" would otherwise count as True."""
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def is_empty(t: torch.Tensor) -> bool:
    """Whether a (batch, length, channels) input has no element: the ops then launch nothing."""
    return t.numel() == 0


def needs_grad(*tensors) -> bool:
    """Whether autograd will want a backward through an op on these inputs (None entries ignored)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def per_channel(op: str, name: str, value, H: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A float or a () / (H,) real tensor -> an (H,) tensor in the state dtype (differentiable)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{op}: {name} must be a float or a real floating-point tensor, got {type(value).__name__}")
    if isinstance(value, (int, float)):
        return torch.full((H,), float(value), dtype=dtype, device=device)
    require_tensor(op, name, value)
    if value.is_complex() or not value.is_floating_point():
        raise TypeError(f"{op}: {name} must be a float or a real floating-point tensor, got {value.dtype}")
    if value.dim() == 0:
        return value.to(dtype).expand(H)
    require_shape(op, name, value, (H,), "() or (channels,)")
    return value.to(dtype)


def state_or_zeros(initial: torch.Tensor | None, shape: tuple, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """The final state of an op run on an empty input: the initial state (a copy), or zeros when None."""
    return initial.clone() if initial is not None else torch.zeros(shape, dtype=dtype, device=device)
