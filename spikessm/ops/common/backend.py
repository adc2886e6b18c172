"""Choosing between the Triton kernels and the PyTorch path, and reaching the kernels.

"auto": Triton for CUDA tensors (when Triton is installed), PyTorch otherwise.
"triton": Triton always; CPU tensors only under TRITON_INTERPRET=1 (Triton's interpreter, slow, for tests).
"torch": the PyTorch path on any device.
Each op then picks its algorithm with `pick`; "auto" takes the backend's default algorithm.
Both paths compute the same function; they differ only by floating-point rounding.
The names are checked by the ops (checks.py) before they pick; what is left here are the refusals that depend on
the tensors' device.
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from types import ModuleType
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


def kernels(name: str) -> ModuleType:
    """The kernel module spikessm.kernels.<name> (e.g. "lif", "s4d_scan.chunked"), imported on first use: Triton
    is optional, so nothing imports the kernels until a Triton path runs."""
    full = f"spikessm.kernels.{name}"
    # sys.modules first: torch.compile traces a dict lookup but refuses to trace import_module
    return sys.modules.get(full) or importlib.import_module(full)


def use_triton(backend: str, device: torch.device, op: str) -> bool:
    """True when `op` on tensors of `device` should run the Triton kernel under `backend` (a checked name)."""
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


def algorithms(implementations: dict[str, dict[str, Callable]]) -> tuple[str, ...]:
    """The algorithm names an op takes: "auto", then every algorithm of its implementations."""
    return ("auto",) + tuple(dict.fromkeys(a for choices in implementations.values() for a in choices))


def pick(op: str, backend: str, algorithm: str, device: torch.device,
         implementations: dict[str, dict[str, Callable]]) -> tuple[str, str, Callable]:
    """The implementation of `op` to run, from (backend, algorithm), both checked names: the one picker of every
    op.

    implementations maps "torch" and "triton" to {algorithm name: implementation}; a backend's first algorithm
    is the one "auto" takes. Returns (backend name, algorithm name, implementation). An algorithm that the
    chosen backend does not have is refused, never replaced by another.
    """
    name = "triton" if use_triton(backend, device, op) else "torch"
    choices = implementations[name]
    if algorithm == "auto":
        algorithm = next(iter(choices))
    elif algorithm not in choices:
        where = "a Triton kernel" if name == "torch" else "a PyTorch path"
        raise ValueError(f"{op}: algorithm={algorithm!r} is {where}; the {name} backend has "
                         f"{' or '.join(repr(a) for a in choices)}")
    return name, algorithm, choices[algorithm]

