"""The neurons' definitions, once: surrogate derivatives, reset modes, the reset rule and parameter checks.

A spiking neuron emits s = H(v - threshold) in the forward pass; in the backward pass H' (zero almost
everywhere) is replaced by one of these smooth or box-shaped stand-ins, d spike / d x with x = v - threshold.
Each takes a shape parameter `alpha` with the default of the SNN libraries:

| name           | d s / d x                                         | alpha (default)     | kernel code |
|----------------|---------------------------------------------------|---------------------|-------------|
| "atan"         | alpha / 2 / (1 + (pi / 2 * alpha * x)^2)          | sharpness (2.0)     | 0           |
| "fast_sigmoid" | 1 / (1 + alpha * |x|)^2                           | slope (25.0)        | 1           |
| "triangle"     | max(0, 1 - |x| / alpha) / alpha                   | half-width (1.0)    | 2           |
| "sigmoid"      | alpha * sig(alpha x) * (1 - sig(alpha x))         | sharpness (4.0)     | 3           |
| "rectangle"    | 1{|x| < alpha / 2} / alpha  (straight-through)    | width (1.0)         | 4           |
| "leaky"        | (1 / threshold) (1 + ln(beta) a_t / g_t)          | unused              | 5           |

"leaky" is the leak-aware derivative of Lee et al. 2020 (Front. Neurosci. 14:119) applied per step: a_t is the
leaky spike trace sum_k beta^(t - t_k) s_k and g_t the spike count sum_k s_k up to and including step t (the
factor is 1 / threshold before the first spike). It depends on the spike history, not on v - threshold, so it
needs 0 < beta <= 1 and is computed by `leaky_derivative` from the spikes; the kernels read it from memory.

Reset modes, after a spike (kernel codes in RESET_CODES): "subtract" v -= threshold, "zero" v = 0, "none".

The kernel codes are what the Triton kernels switch on (kernels/common/neuron.py, installed as
spikessm.kernels.common.neuron); the PyTorch formulas are `derivative` below.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch


def _atan(x: torch.Tensor, alpha: float) -> torch.Tensor:  # (alpha / 2) / (1 + (pi / 2 * alpha * x)^2)
    return x.mul_(math.pi / 2 * alpha).square_().add_(1).reciprocal_().mul_(alpha / 2)


def _fast_sigmoid(x: torch.Tensor, alpha: float) -> torch.Tensor:  # 1 / (1 + alpha |x|)^2
    return x.abs_().mul_(alpha).add_(1).square_().reciprocal_()


def _triangle(x: torch.Tensor, alpha: float) -> torch.Tensor:  # max(0, 1 - |x| / alpha) / alpha
    return x.abs_().div_(alpha).neg_().add_(1).clamp_min_(0).div_(alpha)


def _sigmoid(x: torch.Tensor, alpha: float) -> torch.Tensor:  # alpha sig (1 - sig), sig = sigmoid(alpha x)
    sig = x.mul_(alpha).sigmoid_()
    one_minus_sig = 1 - sig
    return sig.mul_(alpha).mul_(one_minus_sig)


def _rectangle(x: torch.Tensor, alpha: float) -> torch.Tensor:  # 1{|x| < alpha / 2} / alpha
    return torch.lt(x.abs_(), alpha / 2, out=x).div_(alpha)


class Surrogate(NamedTuple):
    """One surrogate: its name, default alpha, the in-place PyTorch derivative at x = v - threshold (None for
    "leaky", which depends on the spike history) and the code the kernels switch on."""

    name: str
    default_alpha: float
    derivative_: Optional[Callable[[torch.Tensor, float], torch.Tensor]]
    code: int


SURROGATE_TABLE = {s.name: s for s in (
    Surrogate("atan", 2.0, _atan, 0),
    Surrogate("fast_sigmoid", 25.0, _fast_sigmoid, 1),
    Surrogate("triangle", 1.0, _triangle, 2),
    Surrogate("sigmoid", 4.0, _sigmoid, 3),
    Surrogate("rectangle", 1.0, _rectangle, 4),
    Surrogate("leaky", 1.0, None, 5),
)}
SURROGATES = tuple(SURROGATE_TABLE)
DEFAULT_ALPHA = {s.name: s.default_alpha for s in SURROGATE_TABLE.values()}
SURROGATE_CODES = {s.name: s.code for s in SURROGATE_TABLE.values()}
# Surrogates that depend on x = v - threshold only: the ones a pointwise spike (spike, ternarize) can take.
POINTWISE_SURROGATES = tuple(s.name for s in SURROGATE_TABLE.values() if s.derivative_ is not None)

RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}
RESETS = tuple(RESET_CODES)


def check_beta(owner: str, name: str, beta) -> None:
    """A LIF leak given as a number: in [0, 1] (a NaN fails the comparison and is refused too)."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 1:
        raise ValueError(f"{owner}: {name} must be in [0, 1], got {beta!r}")


def check_threshold(owner: str, name: str, threshold) -> None:
    """A firing threshold given as a number: finite (a NaN threshold never fires, an infinite one never or
    always)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"{owner}: {name} must be a finite number, got {threshold!r}")


def check_alpha(owner: str, name: str, alpha) -> None:
    """A surrogate's shape parameter: a finite number > 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(alpha).__name__}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"{owner}: {name} must be a positive finite number, got {alpha!r}")


def resolve_alpha(op: str, surrogate: str, alpha: float | None) -> float:
    """Checks the surrogate name and alpha (a finite number > 0); returns alpha (the surrogate's default when
    None)."""
    if surrogate not in SURROGATE_TABLE:
        raise ValueError(f"{op}: surrogate must be one of {SURROGATES}, got {surrogate!r}")
    if alpha is None:
        return DEFAULT_ALPHA[surrogate]
    check_alpha(op, "alpha", alpha)
    return float(alpha)


def require_reset(op: str, reset: str) -> None:
    if reset not in RESET_CODES:
        raise ValueError(f"{op}: reset must be one of {RESETS}, got {reset!r}")


def _values(value: torch.Tensor) -> torch.Tensor | None:
    """A tensor's values to check: None for a tensor on another device than the CPU, whose values are not read
    (that would wait for the device), and for any tensor under torch.compile (a branch on tensor values would
    break the graph)."""
    if torch.compiler.is_compiling() or value.device.type != "cpu":
        return None
    return value.detach()


def check_neuron_parameters(op: str, beta, threshold, surrogate: str = "atan") -> None:
    """beta in [0, 1] (in (0, 1] for "leaky", which takes ln(beta)) and a finite threshold. Floats are always
    checked; tensor values only on the CPU and outside torch.compile (checking a CUDA tensor would make the host
    wait for the device; a compiled graph cannot branch on values)."""
    for name, value in (("beta", beta), ("threshold", threshold)):
        if isinstance(value, bool):
            raise TypeError(f"{op}: {name} must be a float or a real floating-point tensor, got bool")
    leaky = surrogate == "leaky"
    if isinstance(beta, (int, float)):  # plain comparisons: a float's check costs no tensor op
        if leaky and not 0 < beta <= 1:
            raise ValueError(f"{op}: the 'leaky' surrogate needs 0 < beta <= 1 (it uses ln(beta)), got {float(beta)}")
        if not 0 <= beta <= 1:
            raise ValueError(f"{op}: beta must be in [0, 1], got {float(beta)}")
    else:
        b = _values(beta) if isinstance(beta, torch.Tensor) else None
        if b is not None and b.is_floating_point() and b.numel():
            if leaky and not bool(((b > 0) & (b <= 1)).all()):
                raise ValueError(f"{op}: the 'leaky' surrogate needs 0 < beta <= 1 (it uses ln(beta)), got "
                                 f"{_show(b)}")
            if not bool(((b >= 0) & (b <= 1)).all()):
                raise ValueError(f"{op}: beta must be in [0, 1], got {_show(b)}")
    if isinstance(threshold, (int, float)):
        if not math.isfinite(threshold):
            raise ValueError(f"{op}: threshold must be a finite number, got {float(threshold)}")
    else:
        t = _values(threshold) if isinstance(threshold, torch.Tensor) else None
        if t is not None and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{op}: threshold must be a finite number, got {_show(t)}")


def _show(values: torch.Tensor):
    return values.item() if values.numel() == 1 else values.tolist()


def derivative_(surrogate: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """`derivative` computed in place: overwrites x (v - threshold) with d spike / d x and returns it. The
    PyTorch LIF backward evaluates it on a reused buffer: on a CPU a fresh multi-megabyte temporary per op
    costs page faults (the allocator returns freed blocks of that size to the system)."""
    entry = SURROGATE_TABLE.get(surrogate)
    if entry is None or entry.derivative_ is None:
        raise ValueError(f"no pointwise derivative for surrogate {surrogate!r}")
    return entry.derivative_(x, alpha)


def derivative(surrogate: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """d spike / d x at x = v - threshold (elementwise, x's shape and dtype), for the surrogates that depend
    on x only (all but "leaky")."""
    return derivative_(surrogate, x.clone(), alpha)


def leaky_derivative(spikes: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor,
                     reverse: bool = False) -> torch.Tensor:
    """The "leaky" surrogate for every step. spikes: (B, L, H) 0/1; beta, threshold: (H,) -> (B, L, H),
    contiguous. With reverse, the neurons ran from the last step to the first: the history runs that way."""
    # the trace a_t = beta a_(t-1) + s_t is a diagonal scan (imported here: diag_scan's package imports this one)
    from ..diag_scan.torch_chunked import scan

    if reverse:
        spikes = spikes.flip(1)
    trace = scan(beta, spikes.contiguous(), None)
    count = spikes.cumsum(dim=1)
    ratio = torch.where(count > 0, trace / count.clamp_min(1), 0.0)
    sigma = (1 + torch.log(beta) * ratio) / threshold
    return sigma.flip(1).contiguous() if reverse else sigma


def post_reset(m: torch.Tensor, s: torch.Tensor, threshold, reset: str, out: torch.Tensor | None = None):
    """The membrane after the reset, from the pre-reset membrane m and the spikes s (0/1 in any float dtype);
    into `out` when given. The one PyTorch statement of the reset rule."""
    if not isinstance(threshold, torch.Tensor):
        threshold = torch.as_tensor(threshold, dtype=m.dtype, device=m.device)
    if reset == "subtract":  # m - threshold where s = 1 (s * threshold is exact, so m itself where s = 0)
        return torch.addcmul(m, s, threshold, value=-1, out=out)
    if reset == "zero":
        if s.requires_grad:  # differentiated through the spike (the naive reference): dv/ds = -m
            return m * (1 - s)
        # masked_fill rather than m (1 - s), which would turn an infinite m into NaN
        return m.masked_fill(s != 0, 0.0) if out is None else out.copy_(m).masked_fill_(s != 0, 0.0)
    return m


class SurrogateSpike(torch.autograd.Function):
    """H(x) (1 where x > 0) in x's dtype; the backward multiplies by a surrogate derivative: the named pointwise
    surrogate at x (computed in the backward), or a given derivative tensor (for "leaky", which depends on the
    spike history)."""

    @staticmethod
    def forward(ctx, x, surrogate: str, alpha: float, given_derivative: torch.Tensor | None = None):
        ctx.save_for_backward(x if given_derivative is None else given_derivative)
        ctx.surrogate, ctx.alpha, ctx.given = surrogate, alpha, given_derivative is not None
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (saved,) = ctx.saved_tensors
        d = saved if ctx.given else derivative(ctx.surrogate, saved, ctx.alpha)
        return grad * d, None, None, None
