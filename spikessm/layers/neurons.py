"""Spiking readouts: the binary Heaviside spike of Binary S4D, leaky integrate-and-fire (LIF) neurons and
resonate-and-fire (RF) neurons.

All take (batch, length, channels) and return spikes of the same shape and dtype (values 0 or 1).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import RFState, rf
from ..ops.common.backend import BACKENDS
from ..ops.common.checks import (check_beta, check_choice, check_neuron_settings, check_surrogate, check_threshold,
                                 require_bool)
from ..ops.common.reset import RESETS
from ..ops.lif import lif_prechecked
from ..ops.rf import ALGORITHMS as RF_ALGORITHMS
from ..ops.spike import spike_prechecked
from .checks import check_input, check_positive_int, param_dtype
from .counts import OpCounts
from .discretize import check_dt_range
from .ssm_init import hippo_n


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

        m_t = beta v_{t-1} + x_t;  s_t = H(m_t - threshold);
        v_t = m_t - threshold s_t | m_t (1 - s_t) | m_t    reset "subtract" | "zero" | "none"
        "subtract_after_decay": m_t = v_{t-1} + x_t, v_t = beta m_t - threshold s_t, i.e. m_t = beta m_{t-1} + x_t
        - threshold s_{t-1} (snntorch's Leaky with reset_delay=True; docs/neurons.md maps its settings)

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

    State: the membrane after the reset v (B, H), float32 (float64 for float64 input).
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
RF_FREQUENCY_INITS = ("uniform", "hippo")
RF_INPUT_SCALES = ("none", "dt")


def check_rf_settings(owner: str, *, branches, decay, frequency_init, input_scale, threshold, reset, dt_min,
                      dt_max, adapt_decay=0.9, adapt_scale=1.0, max_frequency=2 * math.pi) -> None:
    """The settings of RF neurons, checked once for the layer and for ModelConfig (owner names the caller)."""
    check_positive_int(owner, "branches", branches)
    for name, value in (("decay", decay), ("max_frequency", max_frequency)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{owner}: {name} must be a positive finite number, got {value!r}")
    check_choice(owner, "frequency_init", frequency_init, RF_FREQUENCY_INITS)
    check_choice(owner, "input_scale", input_scale, RF_INPUT_SCALES)
    check_threshold(owner, "threshold", threshold)
    check_choice(owner, "reset", reset, RESETS)
    if reset == "subtract" and branches > 1:
        raise ValueError(f"{owner}: reset 'subtract' needs one branch (a soma of several branches has no membrane of "
                         f"its own to subtract from), got branches={branches}; use 'zero' or 'none'")
    check_dt_range(owner, dt_min, dt_max)
    check_beta(owner, "adapt_decay", adapt_decay)
    if isinstance(adapt_scale, bool) or not isinstance(adapt_scale, (int, float)) or not (
            math.isfinite(adapt_scale) and adapt_scale >= 0):
        raise ValueError(f"{owner}: adapt_scale must be a finite number >= 0, got {adapt_scale!r}")


class RF(nn.Module):
    """Resonate-and-fire neurons, one per channel, each with `branches` dendritic branches (spikessm.ops.rf):

        lam = exp((-a + i omega) dt)  per branch;   z_t = lam z_{t-1} + g x_t   (complex membrane, per branch)
        s_t = H(m_t - th_t) with the soma m_t = mean over the branches of Re z_t, th_t the (adaptive) threshold

    The papers' parameterisation: decay a > 0 (a = exp(log_decay)), frequency omega (rad per unit of time) and
    step dt = exp(log_dt), each per (channel, branch). The input gain g is 1 ("none", the default: S5-RF's
    discretisation for spikes, B_bar = eta B, with the input layer's own gain in front) or dt ("dt": PRF's code,
    which multiplies its input by dt behind a learned linear layer). spikessm's blocks have no learned layer
    between their norm and the neurons, and with g = dt the neurons of every RF preset stay silent there
    (measured on tiny ListOps, docs/performance.md), hence the default.
    Initialisation: a = decay (0.5: PRF's tau = 2, S5-RF's real part -1/2); dt log-uniform in [dt_min, dt_max]
    (PRF's range); omega "uniform" in (0, max_frequency) (PRF: 2 pi U(0, 1)), split into one band per branch
    (D-RF's frequency bands: branch k in [k, k + 1) max_frequency / branches, our choice), or "hippo": the
    imaginary parts of HiPPO-N's eigenvalues (S5-RF; branch k of every channel from the k-th block of the
    spectrum). PRF and S5-RF learn omega and dt and keep a fixed; threshold 1 as in both.

    Args:
        d_model: channels H (one neuron each).
        branches: K dendritic branches per neuron (D-RF); 1 is a plain RF neuron.
        decay, frequency_init, max_frequency, dt_min, dt_max: the initialisation above.
        input_scale: "none" or "dt", the input gain g above.
        threshold: firing threshold (> 0 when learned); reset, surrogate, alpha, detach_reset: as in
            spikessm.ops.rf ("subtract" needs one branch). Default reset "none": PRF's decoupled reset.
        adaptive: D-RF's adaptive soma threshold, th_t = threshold + adapt_scale a_{t-1} with the spike trace
            a_t = adapt_decay a_{t-1} + s_t (fixed values; our choices of form and defaults, 0.9 and 1.0).
        learn_decay, learn_frequency, learn_dt: learn a, omega, dt (else they are fixed buffers).
        learn_threshold: learn a per-channel threshold, kept positive as exp(log_threshold).
        backend: "auto" | "triton" | "torch"; algorithm: "auto" | "sequential" | "parallel" (spikessm.ops.rf).
        device, dtype: of the parameters (float32 or float64).

    The soma's mean over branches (weights g_k / K) keeps its drive on one branch's scale, so one threshold
    serves every K; with several branches the per-branch gain g_k is applied at the soma, which is the same
    function (a branch's membrane is linear in its input) with a membrane scaled by 1 / g_k.

    State: RFState(membrane (B, H) complex, or (B, H, K) with branches; trace (B, H) with an adaptive threshold,
    else None), complex64 / float32 (complex128 / float64 for float64 parameters).
    """

    bidirectional = False  # neurons run forward in time: a causal layer

    def __init__(self, d_model: int, *, branches: int = 1, decay: float = 0.5, frequency_init: str = "uniform",
                 max_frequency: float = 2 * math.pi, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 input_scale: str = "none", threshold: float = 1.0, reset: str = "none", surrogate: str = "atan",
                 alpha: float | None = None, adaptive: bool = False, adapt_decay: float = 0.9,
                 adapt_scale: float = 1.0, learn_decay: bool = False, learn_frequency: bool = True,
                 learn_dt: bool = True, learn_threshold: bool = False, detach_reset: bool = False,
                 backend: str = "auto", algorithm: str = "auto", device=None, dtype=None):
        super().__init__()
        check_positive_int("RF", "d_model", d_model)
        check_rf_settings("RF", branches=branches, decay=decay, frequency_init=frequency_init,
                          input_scale=input_scale, threshold=threshold, reset=reset, dt_min=dt_min, dt_max=dt_max,
                          adapt_decay=adapt_decay, adapt_scale=adapt_scale, max_frequency=max_frequency)
        for name, value in (("adaptive", adaptive), ("learn_decay", learn_decay),
                            ("learn_frequency", learn_frequency), ("learn_dt", learn_dt),
                            ("learn_threshold", learn_threshold), ("detach_reset", detach_reset)):
            require_bool("RF", name, value)
        if learn_threshold and not threshold > 0:
            raise ValueError(f"RF: learn_threshold needs threshold > 0 (it learns log(threshold)), got {threshold!r}")
        check_choice("RF", "backend", backend, BACKENDS)
        check_choice("RF", "algorithm", algorithm, RF_ALGORITHMS)
        if algorithm == "parallel" and (reset != "none" or adaptive):
            raise ValueError("RF: algorithm 'parallel' needs reset 'none' and a fixed threshold")
        self.alpha = check_surrogate("RF", surrogate, alpha, pointwise=True)
        dtype = param_dtype("RF", dtype)
        H, K = d_model, branches
        self.d_model, self.branches, self.frequency_init, self.input_scale = d_model, branches, frequency_init, \
            input_scale
        self.reset, self.surrogate, self.detach_reset, self.backend, self.algorithm = reset, surrogate, \
            detach_reset, backend, algorithm
        self.adaptive, self._threshold = adaptive, float(threshold)
        self._adapt_decay, self._adapt_scale = float(adapt_decay), float(adapt_scale)

        if frequency_init == "uniform":
            band = torch.arange(K, dtype=torch.float64) + torch.rand(H, K, dtype=torch.float64)
            omega = band * (max_frequency / K)
        else:
            imag = hippo_n(2 * H * K)[0].imag[H * K:]  # the positive half, ascending
            omega = imag.view(K, H).T
        log_dt = torch.rand(H, K, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        for name, value, learn in (("log_decay", torch.full((H, K), math.log(decay), dtype=torch.float64),
                                    learn_decay), ("omega", omega, learn_frequency), ("log_dt", log_dt, learn_dt)):
            value = value.to(device=device, dtype=dtype).contiguous()
            if learn:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        if learn_threshold:
            self.log_threshold = nn.Parameter(torch.full((H,), math.log(threshold), device=device, dtype=dtype))

    @property
    def threshold(self) -> torch.Tensor | float:
        """The threshold: a float, or (H,) when learned."""
        return torch.exp(self.log_threshold) if hasattr(self, "log_threshold") else self._threshold

    @property
    def adapt_decay(self) -> float:
        """The adaptive threshold's trace decay (a_t = adapt_decay a_{t-1} + s_t); used only when adaptive."""
        return self._adapt_decay

    @property
    def adapt_scale(self) -> float:
        """The adaptive threshold's gain (th_t = threshold + adapt_scale a_{t-1}); used only when adaptive."""
        return self._adapt_scale

    def ssm_parameters(self) -> list[nn.Parameter]:
        """The dynamics' learned parameters (decay, frequency, step), which PRF trains at its own learning rate
        and without weight decay, as the SSM layers' A, B and dt."""
        return [p for p in (self.log_decay, self.omega, self.log_dt) if isinstance(p, nn.Parameter)]

    def discretized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """lam (H, K) complex and the input gain g = dt or 1, (H, K) real."""
        dt = torch.exp(self.log_dt)
        lam = torch.polar(torch.exp(-torch.exp(self.log_decay) * dt), self.omega * dt)
        return lam, dt if self.input_scale == "dt" else torch.ones_like(dt)

    def forward(self, x: torch.Tensor, state: RFState | None = None, *, return_state: bool = False):
        """x: (B, L, H); state: RFState before the first step, or None for zeros. Returns spikes (B, L, H) in x's
        dtype, and with return_state the RFState after the last step."""
        check_input("RF", x, self.d_model)
        require_bool("RF", "return_state", return_state)
        lam, gain = self.discretized()
        with torch.autocast(x.device.type, enabled=False):
            if self.branches == 1:
                lam, weight = lam[:, 0], None
                if self.input_scale == "dt":
                    current = x.to(gain.dtype) * gain[:, 0]
                else:
                    current = x
            else:
                weight, current = gain / self.branches, x
            adapt = dict(adapt_decay=self._adapt_decay, adapt_scale=self._adapt_scale) if self.adaptive else {}
            spikes, final = rf(current, lam, self.threshold, state, weight=weight, reset=self.reset,
                               surrogate=self.surrogate, alpha=self.alpha, detach_reset=self.detach_reset,
                               backend=self.backend, algorithm=self.algorithm, **adapt)
        spikes = spikes.to(x.dtype)
        return (spikes, final) if return_state else spikes

    def op_counts(self, x: torch.Tensor, out: torch.Tensor) -> dict[str, OpCounts]:
        """Per step and neuron: 4 MACs per branch for lam z + x (a complex product), one per branch for the soma's
        weighted sum with several branches, one for the input gain with one, two for an adaptive threshold (the
        trace and the threshold); the spike and the reset are free."""
        K = self.branches
        per_neuron = 4 * K + (K if K > 1 else int(self.input_scale == "dt")) + 2 * int(self.adaptive)
        macs = self.d_model * per_neuron
        return {"": OpCounts(neurons=self.d_model, spikes=torch.count_nonzero(out, dim=-1), macs=macs,
                             dense_macs=macs)}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> RFState:
        """Zeros: the membrane (batch_size, H) complex, or (batch_size, H, K) with branches, and the trace
        (batch_size, H) with an adaptive threshold (else None). device and dtype (the real dtype) default to the
        parameters'."""
        device = device if device is not None else self.log_dt.device
        dtype = dtype if dtype is not None else self.log_dt.dtype
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        shape = (batch_size, self.d_model) + ((self.branches,) if self.branches > 1 else ())
        trace = torch.zeros(batch_size, self.d_model, dtype=dtype, device=device) if self.adaptive else None
        return RFState(torch.zeros(shape, dtype=complex_dtype, device=device), trace)

    def step(self, x_t: torch.Tensor, state: RFState) -> tuple[torch.Tensor, RFState]:
        """One time step: x_t (B, H), state -> (spikes (B, H), next state); forward on a sequence of one step."""
        check_input("RF", x_t, self.d_model, rank=2)
        spikes, state = self(x_t[:, None], state, return_state=True)
        return spikes[:, 0], state

    def extra_repr(self) -> str:
        return (f"{self.d_model}, branches={self.branches}, frequency_init={self.frequency_init!r}, "
                f"input_scale={self.input_scale!r}, threshold={self._threshold:g}, reset={self.reset!r}, "
                f"surrogate={self.surrogate!r}, adaptive={self.adaptive}, learn_threshold="
                f"{hasattr(self, 'log_threshold')}, algorithm={self.algorithm!r}")


def check_neurons(layer: str, neurons, d_model: int, backend: str) -> None:
    """The neurons an SSM layer reads out with: None, or a LIF or RF over its d_model channels on its backend (a
    fused layer runs them with the SSM's backend, so another one could not be honoured)."""
    if neurons is None:
        return
    if not isinstance(neurons, (LIF, RF)):
        raise TypeError(f"{layer}: neurons must be a spikessm.layers.LIF, a spikessm.layers.RF or None, got "
                        f"{type(neurons).__name__}")
    if neurons.d_model != d_model:
        raise ValueError(f"{layer}: neurons must have d_model={d_model} channels, got {neurons.d_model}")
    if neurons.backend != backend:
        raise ValueError(f"{layer}: neurons must use the layer's backend {backend!r}, got {neurons.backend!r}")
