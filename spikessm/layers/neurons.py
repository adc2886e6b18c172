"""Spiking readouts: the binary Heaviside spike of Binary S4D and leaky integrate-and-fire (LIF) neurons.

Both take (batch, length, channels) and return spikes of the same shape and dtype (values 0 or 1).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.common.backend import BACKENDS
from ..ops.common.checks import check_choice, check_neuron_settings, check_surrogate, check_threshold, require_bool
from ..ops.lif import lif_prechecked
from ..ops.spike import spike_prechecked
from .checks import check_input, check_positive_int, param_dtype
from .counts import OpCounts


class Heaviside(nn.Module):
    """s = H(x - threshold), no membrane, no leak, no reset (Binary S4D's readout; threshold 0 there).

    Stateless: step() is forward on one time step. The backward uses the named surrogate derivative.
    """

    def __init__(self, threshold: float = 0.0, *, surrogate: str = "atan", alpha: float | None = None):
        super().__init__()
        check_threshold("Heaviside", "threshold", threshold)
        self.alpha = check_surrogate("Heaviside", surrogate, alpha, pointwise=True)
        self.threshold, self.surrogate = float(threshold), surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spike_prechecked(x - self.threshold if self.threshold else x, surrogate=self.surrogate,
                                alpha=self.alpha)

    def op_counts(self, x: torch.Tensor, out: torch.Tensor) -> dict[str, OpCounts]:
        """One neuron per channel and step; the comparison is free (spikessm.layers.counts)."""
        return {"": OpCounts(neurons=out.shape[-1], spikes=torch.count_nonzero(out, dim=-1))}

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, surrogate={self.surrogate!r}, alpha={self.alpha}"


class LIF(nn.Module):
    """Leaky integrate-and-fire neurons, one per channel (spikessm.ops.lif):

        v_t = beta v_{t-1} + x_t;  s_t = H(v_t - threshold);  reset "subtract" | "zero" | "none"

    Args:
        d_model: channels H.
        beta or tau (exactly one): the leak per step, beta in [0, 1], or a time constant in steps with
            beta = exp(-1 / tau).
        threshold: firing threshold (> 0 when learned).
        reset, surrogate, alpha, detach_reset: as in spikessm.ops.lif.
        fire_on_tie: spike where v_t >= threshold (spikingjelly's rule) rather than v_t > threshold (snntorch's,
            the default); as in spikessm.ops.lif. docs/neurons.md maps both libraries' settings to these.
        learn_beta: learn a per-channel beta, kept in (0, 1) as sigmoid(beta_logit) (needs 0 < beta < 1).
        learn_threshold: learn a per-channel threshold, kept positive as exp(log_threshold).
        backend: "auto" | "triton" | "torch".
        device, dtype: of the learnable parameters (float32 or float64).

    State: the membrane (B, H), float32 (float64 for float64 input).
    """

    def __init__(self, d_model: int, *, beta: float | None = None, tau: float | None = None,
                 threshold: float = 1.0, reset: str = "subtract", surrogate: str = "atan",
                 alpha: float | None = None, learn_beta: bool = False, learn_threshold: bool = False,
                 detach_reset: bool = False, fire_on_tie: bool = False, backend: str = "auto", device=None,
                 dtype=None):
        super().__init__()
        check_positive_int("LIF", "d_model", d_model)
        if (beta is None) == (tau is None):
            raise ValueError(f"LIF: give exactly one of beta and tau, got beta={beta!r}, tau={tau!r}")
        if tau is not None:
            if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
                raise ValueError(f"LIF: tau must be positive, got {tau!r}")
            beta = math.exp(-1.0 / tau)
        for name, value in (("beta", beta), ("threshold", threshold)):
            if isinstance(value, torch.Tensor):  # a per-channel value is a learned parameter here
                raise TypeError(f"LIF: {name} must be a number (learn_{name} makes it a per-channel parameter), "
                                f"got a tensor")
        self.alpha = check_neuron_settings("LIF", beta=beta, threshold=threshold, reset=reset,
                                           surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                                           fire_on_tie=fire_on_tie)
        check_learned("LIF", beta=beta, threshold=threshold, learn_beta=learn_beta, learn_threshold=learn_threshold)
        check_choice("LIF", "backend", backend, BACKENDS)
        dtype = param_dtype("LIF", dtype)
        self.d_model, self.reset, self.surrogate = d_model, reset, surrogate
        self.detach_reset, self.fire_on_tie, self.backend = detach_reset, fire_on_tie, backend
        self._beta, self._threshold = float(beta), float(threshold)
        if learn_beta:
            self.beta_logit = nn.Parameter(torch.full((d_model,), math.log(beta / (1 - beta)), device=device,
                                                      dtype=dtype))
        if learn_threshold:
            self.log_threshold = nn.Parameter(torch.full((d_model,), math.log(threshold), device=device,
                                                         dtype=dtype))

    @property
    def beta(self) -> torch.Tensor | float:
        """The leak: a float, or (H,) when learned."""
        return torch.sigmoid(self.beta_logit) if hasattr(self, "beta_logit") else self._beta

    @property
    def threshold(self) -> torch.Tensor | float:
        """The threshold: a float, or (H,) when learned."""
        return torch.exp(self.log_threshold) if hasattr(self, "log_threshold") else self._threshold

    def neuron_args(self) -> dict:
        """The keyword arguments of spikessm.ops.lif / s4d_lif that define these neurons, checked when the layer
        was built (alpha resolved to a number): what the ops' `*_prechecked` entries take."""
        return dict(beta=self.beta, threshold=self.threshold, reset=self.reset, surrogate=self.surrogate,
                    alpha=self.alpha, detach_reset=self.detach_reset, fire_on_tie=self.fire_on_tie)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, *, return_state: bool = False):
        """x: (B, L, H); state: membrane (B, H) before the first step, or None for zeros. Returns spikes
        (B, L, H) in x's dtype, and with return_state the membrane after the last step."""
        check_input("LIF", x, self.d_model)
        require_bool("LIF", "return_state", return_state)
        spikes, final_v = lif_prechecked(x, initial_state=state, backend=self.backend, **self.neuron_args())
        return (spikes, final_v) if return_state else spikes

    def op_counts(self, x: torch.Tensor, out: torch.Tensor) -> dict[str, OpCounts]:
        """Per step, one neuron and one MAC (beta v + x) per channel; the spike and the reset are free."""
        H = self.d_model
        return {"": OpCounts(neurons=H, spikes=torch.count_nonzero(out, dim=-1), macs=H, dense_macs=H)}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        """Zeros, (batch_size, H): the membrane before the first step. device and dtype default to those of the
        learned parameters, else the CPU and float32 (use float64 for float64 input)."""
        learned = next(iter(self.parameters()), None)
        device = device if device is not None else (learned.device if learned is not None else None)
        dtype = dtype if dtype is not None else (learned.dtype if learned is not None else torch.float32)
        return torch.zeros(batch_size, self.d_model, dtype=dtype, device=device)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: x_t (B, H), membrane (B, H) -> (spikes (B, H), next membrane); the same op as
        forward, on a sequence of length 1."""
        check_input("LIF", x_t, self.d_model, rank=2)
        spikes, v = self(x_t[:, None], state, return_state=True)
        return spikes[:, 0], v

    def extra_repr(self) -> str:
        return (f"{self.d_model}, beta={self._beta:g}, threshold={self._threshold:g}, reset={self.reset!r}, "
                f"surrogate={self.surrogate!r}, learn_beta={hasattr(self, 'beta_logit')}, "
                f"learn_threshold={hasattr(self, 'log_threshold')}"
                + (", fire_on_tie=True" if self.fire_on_tie else ""))


def check_learned(owner: str, *, beta, threshold, learn_beta, learn_threshold,
                  names: dict[str, str] | None = None) -> None:
    """LIF's learning flags, and the values they need: a learned beta is kept in (0, 1) as sigmoid(logit) and a
    learned threshold positive as exp(log), so they must start there. names maps an argument to the owner's name
    for it (ModelConfig: "beta" -> "lif_beta", ...)."""
    def name(argument: str) -> str:
        return (names or {}).get(argument, argument)

    require_bool(owner, name("learn_beta"), learn_beta)
    require_bool(owner, name("learn_threshold"), learn_threshold)
    if learn_beta and not 0 < beta < 1:
        raise ValueError(f"{owner}: {name('learn_beta')} needs 0 < {name('beta')} < 1 (it learns "
                         f"logit({name('beta')})), got {beta!r}")
    if learn_threshold and not threshold > 0:
        raise ValueError(f"{owner}: {name('learn_threshold')} needs {name('threshold')} > 0 (it learns "
                         f"log({name('threshold')})), got {threshold!r}")


def check_neurons(layer: str, neurons, d_model: int, backend: str) -> None:
    """The neurons an SSM layer reads out with: None, or a LIF over its d_model channels on its backend (a fused
    layer runs them with the SSM's backend, so another one could not be honoured)."""
    if neurons is None:
        return
    if not isinstance(neurons, LIF):
        raise TypeError(f"{layer}: neurons must be a spikessm.layers.LIF or None, got {type(neurons).__name__}")
    if neurons.d_model != d_model:
        raise ValueError(f"{layer}: neurons must have d_model={d_model} channels, got {neurons.d_model}")
    if neurons.backend != backend:
        raise ValueError(f"{layer}: neurons must use the layer's backend {backend!r}, got {neurons.backend!r}")
