"""The checks only layers make (their sizes, parameter dtypes and inputs): each error names the layer and the
argument. The checks of what layers hand to the ops (neuron settings, backends, choices) are the ops' own, in
spikessm/ops/common/checks.py, whose docstring says where each check runs."""
from __future__ import annotations

import torch

PARAM_DTYPES = (torch.float32, torch.float64)


def check_positive_int(layer: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")


def check_fraction(layer: str, name: str, value) -> None:
    """A rate or fraction in [0, 1) (dropout, a threshold's share of a maximum)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{layer}: {name} must be in [0, 1), got {value!r}")


def param_dtype(layer: str, dtype: torch.dtype | None) -> torch.dtype:
    """The real dtype of a layer's parameters: float32 (default) or float64 (for float64 checks)."""
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if dtype not in PARAM_DTYPES:
        raise TypeError(f"{layer}: parameters must be float32 or float64, got dtype={dtype} "
                        "(bfloat16 inputs are accepted with float32 parameters, e.g. under autocast)")
    return dtype


def check_input(layer: str, x: torch.Tensor, d_model: int, rank: int = 3) -> None:
    """x must be a real floating-point (batch, length, d_model) tensor, or (batch, d_model) for step()."""
    desc = "(batch, length, channels)" if rank == 3 else "(batch, channels)"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer}: input must be a tensor {desc}, got {type(x).__name__}")
    if x.dim() != rank or x.shape[-1] != d_model:
        raise ValueError(f"{layer}: input must be {desc} with {d_model} channels, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{layer}: input must be floating point, got {x.dtype}")
    if rank == 3 and x.shape[1] == 0:
        raise ValueError(f"{layer}: input has length 0")


def refuse_bidirectional(layer: str, what: str) -> None:
    raise RuntimeError(f"{layer}: {what} needs a causal layer, but this one is bidirectional (its output at step t "
                       "depends on later inputs); build it with bidirectional=False for streaming")
