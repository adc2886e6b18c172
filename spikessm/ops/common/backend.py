"""Choosing between the Triton kernels and the PyTorch path.

"auto": Triton for CUDA tensors (when Triton is installed), PyTorch otherwise.
"triton": Triton always; CPU tensors only under TRITON_INTERPRET=1 (Triton's interpreter, slow, for tests).
"torch": the PyTorch path on any device.
Each op then picks its algorithm with `pick`; "auto" takes the backend's default algorithm.
Both paths compute the same function; they differ only by floating-point rounding.
"""
from __future__ import annotations

import functools
import os
import warnings
from typing import Callable

import torch

BACKENDS = ("auto", "triton", "torch")


@functools.cache
def triton_available() -> bool:
    """Whether Triton imports here (installed and loadable); asked only when a Triton path is considered."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(backend: str, device: torch.device, op: str) -> bool:
    """True when `op` on tensors of `device` should run the Triton kernel under `backend`."""
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return False
    if backend == "auto":
        if device.type != "cuda":
            return False
        if not triton_available():
            warnings.warn(f"{op}: Triton is not installed; using the PyTorch path on {device}", stacklevel=3)
            return False
        return True
    if not triton_available():
        raise RuntimeError(f"{op}: backend='triton' needs the triton package (pip install triton)")
    if device.type == "cuda" or (device.type == "cpu" and interpreter_enabled()):
        return True
    raise RuntimeError(
        f"{op}: backend='triton' got tensors on {device}; Triton kernels run on CUDA devices, or on the CPU "
        "only under Triton's interpreter (set TRITON_INTERPRET=1 before importing spikessm). "
        "Use backend='torch' or 'auto' for CPU tensors."
    )


def pick(op: str, backend: str, algorithm: str, device: torch.device,
         implementations: dict[str, dict[str, Callable]]) -> tuple[str, str, Callable]:
    """The implementation of `op` to run, from (backend, algorithm): the one picker of every op.

    implementations maps "torch" and "triton" to {algorithm name: implementation}; a backend's first algorithm
    is the one "auto" takes. Returns (backend name, algorithm name, implementation). An algorithm that the
    chosen backend does not have is refused, never replaced by another.
    """
    name = "triton" if use_triton(backend, device, op) else "torch"
    known = tuple(dict.fromkeys(a for choices in implementations.values() for a in choices))
    if not isinstance(algorithm, str) or (algorithm != "auto" and algorithm not in known):
        raise ValueError(f"{op}: algorithm must be one of {('auto',) + known}, got {algorithm!r}")
    choices = implementations[name]
    if algorithm == "auto":
        algorithm = next(iter(choices))
    elif algorithm not in choices:
        where = "a Triton kernel" if name == "torch" else "a PyTorch path"
        raise ValueError(f"{op}: algorithm={algorithm!r} is {where}; the {name} backend has "
                         f"{' or '.join(repr(a) for a in choices)}")
    return name, algorithm, choices[algorithm]

