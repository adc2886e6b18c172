"""Argument checks: one function per kind of value, each error naming its owner (the op, layer or config that
was given the value), the argument and what was expected.

Where the checks run. Each value is checked once, with the function here for its kind, by the public entry point
that receives it from the user, and is trusted from there on to the computation:
  * ModelConfig checks every field when it is made (its messages name the field);
  * a layer (spikessm.layers) checks its settings when it is built and its input when it is called
    (spikessm/layers/checks.py has the checks that only layers make);
  * an op (lif, s4d_lif, s4d_scan, diag_scan, spike, ternarize) checks its arguments when it is called.
Below an entry point nothing checks again: a layer runs its op through the op's `*_prechecked` entry, which
takes the settings as checked (they were, when the layer was built) and checks only the tensors of the call
(dtypes, shapes against one another, devices); the implementations trust the op. The exception is a model's
construction: SSMBlock builds its layers through their public constructors, which check once more what
ModelConfig checked, once per model and never per call.

The checks look at shapes, dtypes, devices and Python values. Tensor values are read only for CPU tensors outside
torch.compile: reading a CUDA tensor's values would make the host wait for the device, and a compiled graph
cannot branch on them.
"""
from __future__ import annotations

import math

import torch

from .backend import BACKENDS
from .reset import LIF_RESETS
from .surrogate import DEFAULT_ALPHA, POINTWISE_SURROGATES, SURROGATE_TABLE, SURROGATES

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


def check_choice(owner: str, name: str, value, choices: tuple) -> None:
    """A setting taken by name (a backend, an algorithm, a reset mode, a layer kind) must be one of `choices`."""
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {value!r}")


def check_run_settings(op: str, *, reverse, output_final_state, backend, algorithm, algorithms: tuple) -> None:
    """The settings every op takes: two flags, the backend and the algorithm (one of the op's `algorithms`)."""
    require_bool(op, "reverse", reverse)
    require_bool(op, "output_final_state", output_final_state)
    check_choice(op, "backend", backend, BACKENDS)
    check_choice(op, "algorithm", algorithm, algorithms)


def _readable(value: torch.Tensor) -> torch.Tensor | None:
    """A tensor's values to check: None for a tensor on another device than the CPU and for any tensor under
    torch.compile (see the module docstring)."""
    if torch.compiler.is_compiling() or value.device.type != "cpu":
        return None
    return value.detach()


def _shown(value) -> str:
    if isinstance(value, torch.Tensor):
        return repr(value.item() if value.numel() == 1 else value.tolist())
    return repr(value)


def _number_or_real_tensor(owner: str, name: str, value) -> torch.Tensor | None:
    """The values of a neuron parameter to compare: a tensor's when readable (else None), a number's as given.
    A bool is refused (it would pass as 0 or 1), as is a complex or integer tensor; any other value is left to
    fail the caller's comparison."""
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a float or a real floating-point tensor, got bool")
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_complex() or not value.is_floating_point():
        raise TypeError(f"{owner}: {name} must be a float or a real floating-point tensor, got {value.dtype}")
    return _readable(value)


def _holds(values, condition) -> bool:
    """condition(values) for a number, or for every element of a tensor; False for anything else. The conditions
    are comparisons, which a NaN fails."""
    if isinstance(values, torch.Tensor):
        return bool(condition(values).all())
    return isinstance(values, (int, float)) and bool(condition(values))


def check_beta(owner: str, name: str, beta, surrogate: str = "atan") -> None:
    """A LIF leak: a number or a real floating-point tensor in [0, 1], in (0, 1] for the "leaky" surrogate
    (which takes ln(beta))."""
    values = _number_or_real_tensor(owner, name, beta)
    if values is None:
        return
    if surrogate == "leaky":
        if not _holds(values, lambda b: (b > 0) & (b <= 1)):
            raise ValueError(f"{owner}: the 'leaky' surrogate needs 0 < {name} <= 1 (it uses ln({name})), got "
                             f"{_shown(values)}")
    elif not _holds(values, lambda b: (b >= 0) & (b <= 1)):
        raise ValueError(f"{owner}: {name} must be in [0, 1], got {_shown(values)}")


def check_threshold(owner: str, name: str, threshold) -> None:
    """A firing threshold: a finite number or real floating-point tensor (a NaN threshold never fires, an
    infinite one never or always)."""
    values = _number_or_real_tensor(owner, name, threshold)
    if values is not None and not _holds(values, lambda t: abs(t) < math.inf):
        raise ValueError(f"{owner}: {name} must be a finite number, got {_shown(values)}")


def check_surrogate(owner: str, surrogate: str, alpha, *, alpha_name: str = "alpha",
                    pointwise: bool = False) -> float:
    """A surrogate by name (spikessm/ops/common/surrogate.py) and its shape parameter alpha, a finite number > 0;
    returns alpha, the surrogate's default when None. pointwise: the owner computes spikes without a membrane,
    so "leaky" (which needs the spike history) is refused."""
    if surrogate not in SURROGATE_TABLE:
        raise ValueError(f"{owner}: surrogate must be one of {SURROGATES}, got {surrogate!r}")
    if pointwise and surrogate not in POINTWISE_SURROGATES:
        raise ValueError(f"{owner}: the {surrogate!r} surrogate needs a membrane history (LIF neurons); pointwise "
                         f"spikes take {', '.join(POINTWISE_SURROGATES)}")
    if alpha is None:
        return DEFAULT_ALPHA[surrogate]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"{owner}: {alpha_name} must be a number, got {type(alpha).__name__}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"{owner}: {alpha_name} must be a positive finite number, got {alpha!r}")
    return float(alpha)


def check_neuron_settings(owner: str, *, beta, threshold, reset, surrogate, alpha, detach_reset,
                          fire_on_tie=False, names: dict[str, str] | None = None) -> float:
    """The settings of LIF neurons (as lif takes them); returns alpha (the surrogate's default when None). names
    maps an argument to the owner's name for it (ModelConfig: "beta" -> "lif_beta", ...)."""
    def name(argument: str) -> str:
        return (names or {}).get(argument, argument)

    check_choice(owner, name("reset"), reset, LIF_RESETS)
    alpha = check_surrogate(owner, surrogate, alpha, alpha_name=name("alpha"))
    require_bool(owner, name("detach_reset"), detach_reset)
    require_bool(owner, name("fire_on_tie"), fire_on_tie)
    check_beta(owner, name("beta"), beta, surrogate)
    check_threshold(owner, name("threshold"), threshold)
    return alpha


def is_empty(t: torch.Tensor) -> bool:
    """Whether a (batch, length, channels) input has no element: the ops then launch nothing."""
    return t.numel() == 0


def needs_grad(*tensors) -> bool:
    """Whether autograd will want a backward through an op on these inputs (None entries ignored)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def per_channel(op: str, name: str, value, H: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A checked neuron parameter (a number, or a () / (H,) real tensor) -> an (H,) tensor in the state dtype
    (differentiable); a tensor of another shape is refused."""
    if not isinstance(value, torch.Tensor):
        return torch.full((H,), float(value), dtype=dtype, device=device)
    if value.dim() == 0:
        return value.to(dtype).expand(H)
    require_shape(op, name, value, (H,), "() or (channels,)")
    return value.to(dtype)


def state_or_zeros(initial: torch.Tensor | None, shape: tuple, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """The final state of an op run on an empty input: the initial state (a copy), or zeros when None."""
    return initial.clone() if initial is not None else torch.zeros(shape, dtype=dtype, device=device)
