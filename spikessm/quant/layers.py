"""The integer form of each layer, defined once and run two ways: on int64 tensors by the simulator and on
float64 tensors holding the same integers (with straight-through gradients) by the fake-quant model.

Every layer reads a (batch, length, channels) integer tensor in a format of `f` fractional bits (spikes: f = 0)
and returns one. `params(config)` derives its integer parameters from the float layer it wraps (float64, with
gradients to the float parameters); the simulator freezes them to int64. `forward(x, f, p, ctx, state)` is the
arithmetic; it returns (y, f_y, next state). Activation formats (the calibrated points of `fracs`) are set by
spikessm.quant.calibrate. The equations, with n >> k meaning shift_round (spikessm.quant.rounding):

    Encoder (Linear):    acc = sat_acc(W x + b);  out = sat_act((acc * m) >> k)
    Encoder (Embedding): out = sat_act((E[ids] * m) >> k), its format set by the whole table (not the data)
    S4D, per mode (re, im):
        x_t = sat_state(((A x_{t-1}) >> fA) + ((B u_t) >> kB))      complex products in integers
        y_t = sat_mem((sum_modes Re(C x_t)) >> kC + (D u_t * mD) >> kD)
    S5, M modes shared by the H channels, B (M, H), C (H, M) complex (re, im):
        x_t = sat_state(((A x_{t-1}) >> fA) + (sum_h B[:, h] u_t[h]) >> kB)     the sum exact, rounded once
        y_t = sat_mem((sum_m Re(C[:, m] x_t[m])) >> kC + (D u_t * mD) >> kD)   C holds S5's k = 2 or 1
      (fA, fB, fC: each tensor's power-of-two format, per row with per_channel; kB = fB + f_u - f_state and
      kC = fC + f_state - f_mem, so B u and C x are each one wide exact sum and one rounding shift.)
      The readouts of S4D and S5:
      LIF:   v_t = sat_mem((beta v_{t-1}) >> fbeta + y_t);  s_t = [v_t > theta];  reset on s_t:
             "subtract" v_t -= theta, "zero" v_t = 0, "none"
      RF:    v_t = sat_mem(((lam v_{t-1}) >> fL) + y_t)  complex (vr, vi), y on re;  s_t = [vr_t > theta];  reset
             "subtract" vr_t -= theta, "zero" v_t = 0, "none"
      Heaviside (binary readout): s_t = [y_t > theta]
      no readout (a GSU next): y_t itself, in the membrane format
    RF neurons as the SSM (input gain 1), the membrane z = the state, per channel and branch (re, im):
        z_t = sat_state(((lam z_{t-1}) >> fA) + (u_t >> kU))  (u on the real axis; kU = f_u - f_state)
        m_t = Re z_t, or sat_state((sum_k W_k Re z_t[k]) >> fW) over K branches
        th_t = theta, or adaptive sat_state(theta + (S a_{t-1}) >> fS), a_t = sat_state((d a_{t-1}) >> (coef_bits-1)
        + s_t 2^f_state);  s_t = [m_t > th_t], all in the state's format;  reset: "subtract" Re z_t -= th_t s_t,
        "zero" z_t = 0 where s_t, "none"
    GLU:      acc = sat_acc(W s + b);  [a, g] = sat_act((acc * m) >> k);  out = sat_act((a * LUT[g]) >> kO)
    GSU (per token, H channels):
              delta = (max_h |x_h| * q) >> (coef_bits - 1),  q = round(0.15 2^(coef_bits-1))
              t = [x > delta] - [x < -delta]
              a = sat_act((sat_acc(t W + b) * m) >> k);  g = sat_act(sat_acc(x Ter(W)) >> kg)
              p = sat_act((a g) >> kp);  z = LayerNorm(p);  out = sat_act((z * LUT_Phi[z]) >> kO)   (GELU = x Phi(x))
    LayerNorm (per token, H channels, E extra bits):
              c = (x << E) - div_round((sum x) << E, H);  var = div_round(sum c^2, H)
              sd = sqrt_round(max(var + eps_q, 1));  n = sat_act(div_round(c << fn, sd))
              out = sat_act((sat_acc(n G + b) * m) >> k)
    Residual: out = sat_act((x >> kx) + (z >> kz))
    BatchNorm (running statistics, folded to a per-channel affine): out = sat_act(((x G + b') * m) >> k)
    Pool:     mean: sat_acc(sum over steps) / steps (div_round) or last: the last step
    Head:     logits = sat_act(((W p + b) * m) >> k)
sat_* clamp to the width and count every clamped value under the layer's name and point.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from torch import nn

from ..ops import spike
from ..ops.spike import ternarize_prechecked
from . import jit
from .config import QuantConfig
from .fixed import (Saturations, bounds, channel_maxabs, frac_for, lookup_normal_cdf, lookup_sigmoid,
                    normal_cdf_table, pow2_frac, quantize, requant, require_exact, rescale, saturate, sigmoid_table,
                    weight_scale)
from .rounding import round_half_up, shift_round, div_round, sqrt_round


# The LIF resets the integer S4D readout implements (the simulator, its fake-quant twin, calibration and the numpy
# runner); spikessm.quant.model refuses a model whose LIF has another.
INT_RESETS = ("subtract", "zero", "none")


# The SSM layers compute B u, D u and C x of this many steps at once (only the recurrences go step by step): the
# same integers as step by step, with memory bounded by the piece rather than the sequence.
TIME_CHUNK = 128


class StopPass(Exception):
    """Raised by Context.observe: calibration has what it needs from this batch."""


@dataclass
class Context:
    """What a forward pass carries besides the data: the saturation counter, during calibration the observer
    that collects the range of the first uncalibrated point, and optionally a probe: probe(layer, inputs, params,
    output) is called after every layer of the graph runs (inputs: the tuple of its input tensors; output: what
    its forward returned), for accounting such as spikessm.quant.cost; it only reads."""

    sat: Saturations = field(default_factory=Saturations)
    observer: "Observer | None" = None
    probe: "Callable[[IntLayer, tuple, dict | None, tuple], None] | None" = None
    backend: str = "torch"  # "numba": int64 loops in time run compiled (spikessm.quant.jit), the same integers

    def frac(self, layer: "IntLayer", point: str, real):
        """The calibrated format of `layer`'s `point`; during calibration, an unset one is observed on
        real() ({point: (max |value|, bits, headroom)}) and the pass stops there."""
        value = layer.fracs[point]
        if value is not None:
            return value
        if self.observer is None:
            raise RuntimeError(f"spikessm.quant: {layer.name}.{point} has no scale yet; call "
                               "spikessm.quant.calibrate(model, loader) first")
        self.observer.record(layer, real())
        raise StopPass


class Observer:
    """Running maxima of the points being calibrated, over the calibration batches."""

    def __init__(self):
        self.layer = None
        self.maxima: dict[str, tuple[float, int, float]] = {}

    def record(self, layer, observed: dict) -> None:
        self.layer = layer
        for point, (maxabs, bits, headroom) in observed.items():
            old = self.maxima.get(point, (0.0, bits, headroom))[0]
            self.maxima[point] = (max(old, float(maxabs)), bits, headroom)

    def commit(self) -> None:
        for point, (maxabs, bits, headroom) in self.maxima.items():
            self.layer.fracs[point] = frac_for(maxabs * headroom, bits)


def _maxabs(x: torch.Tensor) -> float:
    return float(x.detach().abs().max()) if x.numel() else 0.0


def _flat(scale: torch.Tensor) -> torch.Tensor:
    """A per-channel scale (C, 1, ...) as (C,), or a per-tensor one as a 0-d tensor."""
    return scale.reshape(-1) if scale.dim() else scale


class IntLayer:
    """One layer of the integer graph: `name` (its place in the float model), `fracs` (calibrated formats)."""

    points: tuple[str, ...] = ()
    stateful = False

    def __init__(self, name: str, config: QuantConfig):
        self.name, self.config = name, config
        self.fracs: dict[str, int | None] = {p: None for p in self.points}

    def params(self) -> dict:
        return {}

    def init_state(self, batch_size: int, like: torch.Tensor):
        return None

    def describe(self) -> dict:
        """The layer's kind and formats (the export's graph.json entry, without tensors)."""
        return {"name": self.name, "kind": type(self).__name__, "fracs": dict(self.fracs)}


class LinearMap:
    """What encoder, GLU and head share: weights (out, in) quantised per tensor or per output channel, a bias in
    the accumulator's scale, a rescale to the output format."""

    @staticmethod
    def quantize(linear: nn.Linear, f_in: int, f_out: int | None, config: QuantConfig) -> dict:
        scale = weight_scale(linear.weight, config.weight_bits, config, dim=0)
        acc_scale = _flat(scale) * 2.0 ** -f_in
        p = {"W": quantize(linear.weight, scale, config.weight_bits), "acc_scale": acc_scale}
        if linear.bias is not None:
            p["b"] = quantize(linear.bias, acc_scale, config.acc_bits)
        if f_out is not None:
            p["m"], p["k"] = rescale(acc_scale, f_out, config)
        return p

    @staticmethod
    def accumulate(x: torch.Tensor, p: dict, ctx: Context, name: str, config: QuantConfig) -> torch.Tensor:
        acc = x @ p["W"].transpose(0, 1)
        if "b" in p:
            acc = acc + p["b"]
        return saturate(acc, config.acc_bits, ctx.sat, f"{name}.acc")


def _check_linear(name: str, linear: nn.Linear, in_bits: int, config: QuantConfig) -> None:
    fan_in = linear.in_features
    require_exact(name, config.weight_bits - 1 + in_bits - 1 + math.ceil(math.log2(fan_in + 1)) + 1,
                  "the weighted sum")


class InputQuant(IntLayer):
    """Real input features -> act_bits integers of a calibrated format ("in"); token ids pass through."""

    points = ("in",)

    def __init__(self, name, config, tokens: bool):
        super().__init__(name, config)
        self.tokens = tokens
        if tokens:
            self.fracs = {}

    def quantize_inputs(self, inputs: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, int]:
        if self.tokens:
            return inputs, 0
        x = inputs.detach().double()
        f = ctx.frac(self, "in", lambda: {"in": (_maxabs(x), self.config.act_bits, 1.0)})
        return saturate(round_half_up(x * 2.0 ** f), self.config.act_bits, ctx.sat, f"{self.name}.in"), f


class Encoder(IntLayer):
    points = ("out",)

    def __init__(self, name, config, module: nn.Module, tokens: bool):
        super().__init__(name, config)
        self.module, self.tokens = module, tokens
        if not tokens:
            _check_linear(name, module, config.act_bits, config)

    def params(self, f_in: int = 0) -> dict:
        c = self.config
        if self.tokens:
            scale = weight_scale(self.module.weight, c.weight_bits, c, dim=1)
            p = {"E": quantize(self.module.weight, scale, c.weight_bits), "acc_scale": _flat(scale)}
        else:
            p = LinearMap.quantize(self.module, f_in, None, c)
        f_out = self.fracs["out"]
        if f_out is not None:
            p["m"], p["k"] = rescale(p["acc_scale"], f_out, c)
        return p

    def forward(self, x, f, p, ctx, state=None):
        c = self.config
        acc = p["E"][x] if self.tokens else LinearMap.accumulate(x, p, ctx, self.name, c)
        # An embedding's outputs are its table's rows: the whole table bounds them, whichever tokens the
        # calibration batches hold, and its headroom of one code keeps a largest row of exactly a power of two
        # (which frac_for lets clip by one code) from saturating.
        def bound():
            if self.tokens:
                return {"out": (_maxabs(p["E"] * p["acc_scale"]), c.act_bits, 1.0 + 2.0 ** (1 - c.act_bits))}
            return {"out": (_maxabs(acc * p["acc_scale"]), c.act_bits, 1.0)}

        f_out = ctx.frac(self, "out", bound)
        return requant(acc, p["m"], p["k"], c.act_bits, ctx.sat, f"{self.name}.out"), f_out, None


def complex_pair(z: torch.Tensor, bits: int, config: QuantConfig, state_dims: int):
    """A complex tensor (rows, ...) as power-of-two (re, im) integers and its frac: 0-d int64, or one per row
    shaped to broadcast against a state of `state_dims` dimensions (each row of A_bar and B_bar is a first index
    of the state)."""
    pair = torch.view_as_real(z)
    scale = weight_scale(pair, bits, config, dim=0, pow2=True)
    q = quantize(pair, scale, bits)
    frac = pow2_frac(channel_maxabs(pair, config.per_channel, 0), bits)
    frac = frac.reshape(-1, *([1] * (state_dims - 1))) if frac.dim() else frac
    return q[..., 0], q[..., 1], frac


def complex_step(xr, xi, Ar, Ai, fA, bu_r, bu_i, bits: int, sat: Saturations, name: str):
    """One step of a diagonal complex recurrence in integers, x_t = sat(((A x_{t-1}) >> fA) + Bu_t), the product
    expanded (re = Ar xr - Ai xi, im = Ar xi + Ai xr) and each part rounded once: (re, im) of x_t."""
    return (saturate(shift_round(Ar * xr - Ai * xi, fA) + bu_r, bits, sat, name),
            saturate(shift_round(Ar * xi + Ai * xr, fA) + bu_i, bits, sat, name))


def complex_recurrence(xr, xi, Ar, Ai, fA, bu_r, bu_i, bits: int, ctx: Context, name: str):
    """complex_step over the steps of Bu (B, l, *state) from (xr, xi) (B, *state): (re, im) of every step
    (B, l, *state) and of the last."""
    if ctx.backend == "numba" and not xr.is_floating_point():
        outr, outi, xr, xi, count = jit.complex_recurrence(xr, xi, Ar, Ai, fA, bu_r, bu_i, bits)
        ctx.sat.add(name, count)
        return outr, outi, xr, xi
    outr, outi = [], []
    for t in range(bu_r.shape[1]):
        xr, xi = complex_step(xr, xi, Ar, Ai, fA, bu_r[:, t], bu_i[:, t], bits, ctx.sat, name)
        outr.append(xr)
        outi.append(xi)
    return torch.stack(outr, 1), torch.stack(outi, 1), xr, xi


class SSMLayer(IntLayer):
    """A diagonal complex SSM (S4DLayer, S5Layer) with its readout: LIF or RF neurons (the layer's own), a Heaviside
    spike (the block's binary readout) or none (readout "none": y itself passes on, in the membrane format, for a
    GSU to ternarise). The state update, readout and neurons are shared; a subclass gives the discretised
    coefficients, the state's shape and the two maps between channels and modes (mix_in for B u, mix_out for
    C x), which act alike on integer and on complex tensors.

    Calibrated points: "state" (the SSM state, state_bits, one bit of headroom over the largest re or im seen)
    and "membrane" (y and the LIF membrane, membrane_bits, one bit of headroom over the largest of |y|, |v| and
    the threshold)."""

    points = ("state", "membrane")
    stateful = True
    ssm_type = ""  # graph.json's name of the SSM

    def __init__(self, name, config, ssm: nn.Module, heaviside: nn.Module | None):
        super().__init__(name, config)
        self.ssm, self.neurons, self.heaviside = ssm, ssm.neurons, heaviside
        c, fan_in, fan_out = config, self.fan_in, self.fan_out
        require_exact(name, c.coef_bits - 1 + c.state_bits - 1 + 2 + math.ceil(math.log2(fan_out)),
                      "the readout sum C x")
        require_exact(name, c.coef_bits - 1 + c.act_bits + math.ceil(math.log2(fan_in)), "the input term B u")
        require_exact(name, c.weight_bits + c.act_bits + c.mult_bits, "the skip term D u")
        require_exact(name, c.coef_bits + c.membrane_bits, "the leak beta v")

    fan_in: int  # the inputs summed into one mode by B u
    fan_out: int  # the modes summed into one channel by C x
    state_shape: tuple[int, ...]  # one sequence's state, re or im

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A_bar, B_bar, C (complex128, with gradients to the float parameters; C holds the readout's factor)."""
        raise NotImplementedError

    @staticmethod
    def mix_in(B: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """B u: (batch, H) inputs -> (batch, *state_shape)."""
        raise NotImplementedError

    @staticmethod
    def mix_out(C: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """C x: (batch, *state_shape) -> (batch, H), the sum over each channel's modes."""
        raise NotImplementedError

    @property
    def readout(self) -> str:
        """The readout as graph.json names it: the LIF reset (one of INT_RESETS), "heaviside" or
        "identity" (no readout)."""
        if self.neurons is not None:
            return self.neurons.reset
        return "heaviside" if self.heaviside is not None else "identity"

    def _threshold(self):
        if self.neurons is not None:
            return self.neurons.threshold
        return self.heaviside.threshold if self.heaviside is not None else None

    def params(self, f_in: int = 0) -> dict:
        c = self.config
        A_bar, B_bar, C = self.coefficients()
        p = {}
        p["Ar"], p["Ai"], p["fA"] = complex_pair(A_bar, c.coef_bits, c, len(self.state_shape))
        p["Br"], p["Bi"], p["fB"] = complex_pair(B_bar, c.coef_bits, c, len(self.state_shape))
        p["Cr"], p["Ci"], p["fC"] = complex_pair(C, c.coef_bits, c, len(self.state_shape))
        D = self.ssm.D
        d_scale = weight_scale(D, c.weight_bits, c, dim=0)
        p["D"], p["D_scale"] = quantize(D, d_scale, c.weight_bits), d_scale
        if self.resonant:
            lam, _ = self.neurons.discretized()
            p["Lr"], p["Li"], p["fL"] = complex_pair(lam[:, 0].to(torch.complex128), c.coef_bits, c, 1)
        elif self.neurons is not None:
            beta = torch.as_tensor(self.neurons.beta, dtype=torch.float64)
            p["beta"] = round_half_up(beta.double() * 2.0 ** (c.coef_bits - 1)).clamp(0, 1 << (c.coef_bits - 1))
        p["real"] = (A_bar, B_bar, C, D)
        fs, fv = self.fracs["state"], self.fracs["membrane"]
        if fs is not None:
            p["kB"] = p["fB"] + f_in - fs
            p["kC"] = (p["fC"] + fs - fv).reshape(-1) if p["fC"].dim() else p["fC"] + fs - fv
            p["mD"], p["kD"] = rescale(d_scale * 2.0 ** -f_in, fv, c)
            if self.readout != "identity":
                theta = torch.as_tensor(self._threshold(), dtype=torch.float64)
                low, high = bounds(c.membrane_bits)
                p["theta"] = round_half_up(theta * 2.0 ** fv).clamp(low, high)
        return p

    @property
    def resonant(self) -> bool:
        """Whether the readout is RF neurons (a complex membrane) rather than LIF."""
        return self.neurons is not None and not hasattr(self.neurons, "beta")

    def init_state(self, batch_size: int, like: torch.Tensor):
        """(re, im) of the SSM state and the membrane: (B, H), or (B, H, 2) as (re, im) for RF neurons."""
        zeros = dict(dtype=like.dtype, device=like.device)
        shape = (batch_size, *self.state_shape)
        membrane = torch.zeros(batch_size, self.ssm.d_model, *((2,) if self.resonant else ()), **zeros)
        return torch.zeros(shape, **zeros), torch.zeros(shape, **zeros), membrane

    def _observe(self, x: torch.Tensor, f: int, p: dict) -> dict:
        """The float run of this layer on the dequantised input: the ranges of state, y and membrane."""
        A_bar, B_bar, C, D = (t.detach() for t in p["real"])
        threshold = self._threshold()
        theta = torch.as_tensor(0.0 if threshold is None else threshold, dtype=torch.float64).detach()
        if self.resonant:
            beta = self.neurons.discretized()[0][:, 0].detach().to(torch.complex128)
        else:
            beta = torch.as_tensor(self.neurons.beta, dtype=torch.float64).detach() if self.neurons is not None else 0
        u_all = x.detach().double() * 2.0 ** -f
        h = torch.zeros(x.shape[0], *self.state_shape, dtype=torch.complex128)
        v = torch.zeros(x.shape[0], self.ssm.d_model, dtype=torch.complex128 if self.resonant else torch.float64)
        state_max = mem_max = 0.0
        for u in u_all.unbind(1):
            h = A_bar * h + self.mix_in(B_bar, u)
            y = self.mix_out(C, h).real + D.double() * u
            state_max = max(state_max, _maxabs(torch.view_as_real(h)))
            if self.neurons is None:
                mem_max = max(mem_max, _maxabs(y))
                continue
            v = beta * v + y
            mem_max = max(mem_max, _maxabs(torch.view_as_real(v) if self.resonant else v))
            s = ((v.real >= theta) if self.fire_on_tie else (v.real > theta)).double()
            reset = self.neurons.reset
            if reset == "subtract":
                v = v - s * theta
            elif reset == "zero":
                v = v * (1 - s)
            elif reset != "none":  # check_supported refuses every other reset: reaching here is a bug
                raise AssertionError(f"{self.name}: the integer neurons have no reset {reset!r}")
            mem_max = max(mem_max, _maxabs(torch.view_as_real(v) if self.resonant else v))
        mem_max = max(mem_max, _maxabs(theta))
        c = self.config
        return {"state": (state_max, c.state_bits, 2.0), "membrane": (mem_max, c.membrane_bits, 2.0)}

    @property
    def fire_on_tie(self) -> bool:
        """Whether the readout spikes where v == theta too (LIF's fire_on_tie; a Heaviside spikes where v > theta)."""
        return self.neurons is not None and getattr(self.neurons, "fire_on_tie", False)  # RF spikes strictly

    def _spike(self, v: torch.Tensor, theta: torch.Tensor, fv: int) -> torch.Tensor:
        if not v.is_floating_point():
            return ((v >= theta) if self.fire_on_tie else (v > theta)).to(v.dtype)
        owner = self.neurons if self.neurons is not None else self.heaviside
        return spike((v - theta) * 2.0 ** -fv, surrogate=owner.surrogate, alpha=owner.alpha,
                     fire_on_tie=self.fire_on_tie)

    def forward(self, x, f, p, ctx, state=None):
        ctx.frac(self, "state", lambda: self._observe(x, f, p))
        fv = self.fracs["membrane"]
        if state is None:
            state = self.init_state(x.shape[0], x)
        xr, xi, v = state
        outs = []
        for start in range(0, x.shape[1], TIME_CHUNK):
            u = x[:, start:start + TIME_CHUNK]
            skip = p["D"] * u
            skip = shift_round(skip * (p["mD"].to(skip.dtype) if skip.is_floating_point() else p["mD"]), p["kD"])
            y, xr, xi = self._state_and_y(u, xr, xi, skip, p, ctx)
            if self.heaviside is not None:
                outs.append(self._spike(y, p["theta"], fv))
            elif self.neurons is None:
                outs.append(y)
            else:
                s, v = self._neurons(y, v, p, ctx)
                outs.append(s)
        return torch.cat(outs, 1), (fv if self.readout == "identity" else 0), (xr, xi, v)

    def _state_and_y(self, u, xr, xi, skip, p, ctx):
        """The state over the steps of u (B, l, H) from (xr, xi) and the output y = C x + D u (skip: D u):
        (y (B, l, H), last xr, last xi)."""
        c, name = self.config, self.name
        bu_r, bu_i = shift_round(self.mix_in(p["Br"], u), p["kB"]), shift_round(self.mix_in(p["Bi"], u), p["kB"])
        xs_r, xs_i, xr, xi = complex_recurrence(xr, xi, p["Ar"], p["Ai"], p["fA"], bu_r, bu_i, c.state_bits, ctx,
                                                f"{name}.state")
        y = saturate(shift_round(self.mix_out(p["Cr"], xs_r) - self.mix_out(p["Ci"], xs_i), p["kC"]) + skip,
                     c.membrane_bits, ctx.sat, f"{name}.y")
        return y, xr, xi

    def _neurons(self, y, v, p, ctx):
        """The LIF or RF membrane over the steps of y (B, l, H) from v: (spikes (B, l, H), the last v)."""
        c, name, fv, reset = self.config, self.name, self.fracs["membrane"], self.neurons.reset
        if reset not in INT_RESETS:  # refused by check_supported: reaching here is a bug
            raise AssertionError(f"{name}: the integer neurons have no reset {reset!r}")
        if ctx.backend == "numba" and not y.is_floating_point():
            if self.resonant:
                s, vr, vi, count = jit.rf_readout(v[..., 0], v[..., 1], y, p["Lr"], p["Li"], p["fL"], p["theta"],
                                                  c.membrane_bits, reset, self.fire_on_tie)
                v = torch.stack([vr, vi], -1)
            else:
                s, v, count = jit.lif_readout(v, y, p["beta"], c.coef_bits - 1, p["theta"], c.membrane_bits, reset,
                                              self.fire_on_tie)
            ctx.sat.add(f"{name}.membrane", count)
            return s, v
        outs = []
        for y_t in y.unbind(1):
            if self.resonant:  # v = (lam v) >> fL + y on re, (re, im) as v[..., 0], v[..., 1]
                vr, vi = complex_step(v[..., 0], v[..., 1], p["Lr"], p["Li"], p["fL"], y_t, 0, c.membrane_bits,
                                      ctx.sat, f"{name}.membrane")
            else:
                vr = saturate(shift_round(p["beta"] * v, c.coef_bits - 1) + y_t, c.membrane_bits, ctx.sat,
                              f"{name}.membrane")
            s = self._spike(vr, p["theta"], fv)
            r = s.detach() if self.neurons.detach_reset else s
            if reset == "subtract":
                vr = saturate(vr - r * p["theta"], c.membrane_bits, ctx.sat, f"{name}.membrane")
            elif reset == "zero":
                vr = vr * (1 - r)
                vi = vi * (1 - r) if self.resonant else None
            v = torch.stack([vr, vi], -1) if self.resonant else vr
            outs.append(s)
        return torch.stack(outs, 1), v


class S4DLayer(SSMLayer):
    """S4D: H independent SSMs of M = d_state // 2 modes each; state (H, M), A_bar, B_bar, C (H, M)."""

    ssm_type = "s4d"

    @property
    def fan_in(self) -> int:
        return 1

    @property
    def fan_out(self) -> int:
        return self.ssm.d_state // 2

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.ssm.d_model, self.ssm.d_state // 2)

    def coefficients(self):
        A_bar, B_bar, C = self.ssm.discretized(dtype=torch.float64)
        return A_bar, B_bar, C[0]

    def _state_and_y(self, u, xr, xi, skip, p, ctx):
        if ctx.backend != "numba" or u.is_floating_point():
            return super()._state_and_y(u, xr, xi, skip, p, ctx)
        # one fused loop per channel: no (B, l, H, M) tensors of B u and of the states
        y, xr, xi, state_count, y_count = jit.s4d_scan(xr, xi, u, skip, p, self.config.state_bits,
                                                       self.config.membrane_bits)
        ctx.sat.add(f"{self.name}.state", state_count)
        ctx.sat.add(f"{self.name}.y", y_count)
        return y, xr, xi

    @staticmethod
    def mix_in(B, u):
        return B * u[..., None]

    @staticmethod
    def mix_out(C, x):
        return (C * x).sum(-1)


class S5Layer(SSMLayer):
    """S5: one SSM of M modes shared by the H channels; state (M,), Lambda_bar (M,), B_bar (M, H), C (H, M)
    (k = 2 of a conjugate-symmetric layer's 2 Re(C x) in C)."""

    ssm_type = "s5"

    @property
    def fan_in(self) -> int:
        return self.ssm.d_model

    @property
    def fan_out(self) -> int:
        return self.ssm.n_modes

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.ssm.n_modes,)

    def coefficients(self):
        Lambda_bar, B_bar, C = self.ssm.discretized(dtype=torch.float64)
        return Lambda_bar, B_bar, C[0]

    @staticmethod
    def mix_in(B, u):
        return u.to(B.dtype) @ B.transpose(0, 1)

    @staticmethod
    def mix_out(C, x):
        return x @ C.transpose(0, 1)


class RFLayer(IntLayer):
    """Resonate-and-fire neurons as a block's whole SSM layer (ssm "rf"): per channel K branches (one complex mode
    each, the state is the membrane), the input on the real axis at gain 1 (input_scale "none"):

        z_t = sat_state(((lam z_{t-1}) >> fA) + (u_t >> kU))     per branch; kU = f_u - f_state; re takes u
        m_t = Re z_t (K = 1)  |  sat_state((sum_k W_k Re z_t[k]) >> fW)   W = 1/K in coef_bits, summed exactly
        th_t = theta  |  sat_state(theta + (S a_{t-1}) >> fS)      adaptive: S = adapt_scale in coef_bits
        s_t = [m_t > th_t]
        a_t = sat_state((d a_{t-1}) >> (coef_bits - 1) + s_t 2^f_state)   the spike trace, d = adapt_decay
        reset on s_t: "subtract" (K = 1) Re z_t -= th_t, "zero" z_t = 0 (every branch), "none"

    The soma, the threshold and the trace share the state's format (the threshold compares with the state
    itself, no rescale to a membrane format: the membrane is the state). lam = exp((-a + i omega) dt) in
    coef_bits (re, im), its format per channel with per_channel. Calibrated point: "state" (state_bits, one bit of
    headroom over the largest re or im, soma, threshold and trace of a float64 run). input_scale "dt" is refused
    (check_supported)."""

    points = ("state",)
    stateful = True
    ssm_type = "rf"
    fire_on_tie = False  # spikessm.ops.rf spikes where the soma > threshold, strictly

    def __init__(self, name, config, rf: nn.Module):
        super().__init__(name, config)
        self.rf = rf
        c = config
        require_exact(name, c.coef_bits + c.state_bits, "the rotation lam z")
        require_exact(name, c.coef_bits + c.state_bits + math.ceil(math.log2(rf.branches + 1)), "the soma's sum")

    @property
    def readout(self) -> str:
        """The reset ("subtract", "zero", "none"), graph.json's readout field of an RF layer."""
        return self.rf.reset

    @property
    def branches(self) -> int:
        return self.rf.branches

    def real_coefficients(self):
        """lam (H, K) complex128 with gradients to the float parameters, and the soma's weights (H, K) (None for
        one branch)."""
        lam, gain = self.rf.discretized()
        weight = gain.double() / self.branches if self.branches > 1 else None
        return lam.to(torch.complex128), weight

    def params(self, f_in: int = 0) -> dict:
        c, rf = self.config, self.rf
        lam, weight = self.real_coefficients()
        p = {"real": (lam, weight)}
        p["Ar"], p["Ai"], p["fA"] = complex_pair(lam, c.coef_bits, c, 2)
        if weight is not None:
            scale = weight_scale(weight, c.coef_bits, c, dim=0, pow2=True)
            p["soma_weight"] = quantize(weight, scale, c.coef_bits)
            p["fW"] = _flat(pow2_frac(channel_maxabs(weight, c.per_channel, 0), c.coef_bits))
        if rf.adaptive:
            one = 1 << (c.coef_bits - 1)
            p["adapt_decay"] = round_half_up(torch.tensor(rf.adapt_decay, dtype=torch.float64) * one).clamp(0, one)
            fS = frac_for(rf.adapt_scale, c.coef_bits)
            p["fS"] = torch.tensor(fS, dtype=torch.int64)
            p["adapt_scale"] = quantize(torch.tensor(rf.adapt_scale, dtype=torch.float64), 2.0 ** -fS, c.coef_bits)
        fs = self.fracs["state"]
        if fs is not None:
            p["kU"] = torch.tensor(f_in - fs, dtype=torch.int64)
            theta = torch.as_tensor(rf.threshold, dtype=torch.float64)
            low, high = bounds(c.state_bits)
            p["theta_state"] = round_half_up(theta * 2.0 ** fs).clamp(low, high)
        return p

    def init_state(self, batch_size: int, like: torch.Tensor):
        zeros = dict(dtype=like.dtype, device=like.device)
        shape = (batch_size, self.rf.d_model, self.branches)
        state = (torch.zeros(shape, **zeros), torch.zeros(shape, **zeros))
        return state + ((torch.zeros(batch_size, self.rf.d_model, **zeros),) if self.rf.adaptive else ())

    def _observe(self, x: torch.Tensor, f: int, p: dict) -> dict:
        """The float run of the neurons on the dequantised input: the range of the membrane (re, im), the soma,
        the threshold and the trace."""
        rf = self.rf
        lam, weight = (t.detach() if t is not None else None for t in p["real"])
        theta = torch.as_tensor(rf.threshold, dtype=torch.float64).detach()
        z = torch.zeros(x.shape[0], rf.d_model, self.branches, dtype=torch.complex128)
        a = torch.zeros(x.shape[0], rf.d_model, dtype=torch.float64)
        state_max = _maxabs(theta)
        for u in (x.detach().double() * 2.0 ** -f).unbind(1):
            z = lam * z + u[..., None]
            m = z.real[..., 0] if weight is None else (z.real * weight).sum(-1)
            th = theta + rf.adapt_scale * a if rf.adaptive else theta
            s = (m > th).double()
            a = rf.adapt_decay * a + s
            state_max = max(state_max, _maxabs(torch.view_as_real(z)), _maxabs(m), _maxabs(th), _maxabs(a))
            if rf.reset == "subtract":
                z = z - (s * th)[..., None]
            elif rf.reset == "zero":
                z = z * (1 - s[..., None])
            state_max = max(state_max, _maxabs(torch.view_as_real(z)))
        return {"state": (state_max, self.config.state_bits, 2.0)}

    def forward(self, x, f, p, ctx, state=None):
        c, name, rf = self.config, self.name, self.rf
        ctx.frac(self, "state", lambda: self._observe(x, f, p))
        fs = self.fracs["state"]
        state = state if state is not None else self.init_state(x.shape[0], x)
        zr, zi = state[:2]
        a = state[2] if rf.adaptive else None
        theta, outs = p["theta_state"], []
        for u in x.unbind(1):
            zr, zi = complex_step(zr, zi, p["Ar"], p["Ai"], p["fA"], shift_round(u, p["kU"])[..., None], 0,
                                  c.state_bits, ctx.sat, f"{name}.state")
            if self.branches == 1:
                m = zr[..., 0]
            else:
                m = saturate(shift_round((p["soma_weight"] * zr).sum(-1), p["fW"]), c.state_bits, ctx.sat,
                             f"{name}.soma")
            th = theta
            if rf.adaptive:
                th = saturate(theta + shift_round(p["adapt_scale"] * a, p["fS"]), c.state_bits, ctx.sat,
                              f"{name}.threshold")
            if m.is_floating_point():
                s = spike((m - th) * 2.0 ** -fs, surrogate=rf.surrogate, alpha=rf.alpha)
            else:
                s = (m > th).to(m.dtype)
            if rf.adaptive:
                a = saturate(shift_round(p["adapt_decay"] * a, c.coef_bits - 1) + shift_round(s, -fs), c.state_bits,
                             ctx.sat, f"{name}.trace")
            r = (s.detach() if rf.detach_reset else s)[..., None]
            if rf.reset == "subtract":
                zr = saturate(zr - r * th[..., None], c.state_bits, ctx.sat, f"{name}.state")
            elif rf.reset == "zero":
                zr, zi = zr * (1 - r), zi * (1 - r)
            outs.append(s)
        return torch.stack(outs, 1), 0, (zr, zi) + ((a,) if rf.adaptive else ())


class GLULayer(IntLayer):
    """Linear H -> 2H on the spikes, then a * sigmoid(g) with the sigmoid from a look-up table (act_bits - 1
    fractional bits). Points: "ab" (the linear outputs), "out"."""

    points = ("ab", "out")

    def __init__(self, name, config, glu: nn.Module):
        super().__init__(name, config)
        self.linear = glu.linear
        _check_linear(name, self.linear, config.act_bits, config)
        require_exact(name, 2 * config.act_bits, "the gate product a * sigmoid(g)")

    def params(self, f_in: int = 0) -> dict:
        p = LinearMap.quantize(self.linear, f_in, self.fracs["ab"], self.config)
        p["table"] = sigmoid_table(self.config)
        return p

    def forward(self, x, f, p, ctx, state=None):
        c = self.config
        acc = LinearMap.accumulate(x, p, ctx, self.name, c)
        f_ab = ctx.frac(self, "ab", lambda: {"ab": (_maxabs(acc * p["acc_scale"]), c.act_bits, 1.0)})
        a, g = requant(acc, p["m"], p["k"], c.act_bits, ctx.sat, f"{self.name}.ab").chunk(2, dim=-1)
        gated = a * lookup_sigmoid(g, f_ab, p["table"], c)
        f_gated = f_ab + c.act_bits - 1
        f_out = ctx.frac(self, "out", lambda: {"out": (_maxabs(gated * 2.0 ** -f_gated), c.act_bits, 1.0)})
        return requant(gated, None, f_gated - f_out, c.act_bits, ctx.sat, f"{self.name}.out"), f_out, None


LN_EXTRA_BITS = 8  # at most this many fractional bits beyond its input's format in the LayerNorm's statistics


class LayerNormMap:
    """LayerNorm over the H channels of each token in integers (what the GSU and a norm="layer" block share).

    The statistics carry E = min(8, (52 - 2 act_bits - ceil(log2(H + 1))) // 2) fractional bits beyond the
    input's (as many as keep the sum of squares below 2^53): the mean and the variance by div_round by H, the
    standard deviation by sqrt_round (at least 1); each normalised value is one division, rounded, into the fixed
    format fn = frac_for(sqrt(H), act_bits) (|x - mean| / sd stays below sqrt(H)); the affine is gamma G and
    beta b in the accumulator's scale, then a rescale."""

    @staticmethod
    def extra_bits(H: int, config: QuantConfig) -> int:
        return max(0, min(LN_EXTRA_BITS, (52 - 2 * config.act_bits - math.ceil(math.log2(H + 1))) // 2))

    @staticmethod
    def norm_frac(H: int, config: QuantConfig) -> int:
        return frac_for(math.sqrt(H), config.act_bits)

    @staticmethod
    def check(name: str, H: int, config: QuantConfig) -> None:
        c, E = config, LayerNormMap.extra_bits(H, config)
        require_exact(name, 2 * (c.act_bits + E) + math.ceil(math.log2(H + 1)), "the sum of squares")
        require_exact(name, c.act_bits + 1 + E + LayerNormMap.norm_frac(H, c) + 1, "the normalising division")
        require_exact(name, c.act_bits + c.weight_bits, "the product n G")

    @staticmethod
    def quantize(norm: nn.LayerNorm, f_in: int | None, f_out: int | None, config: QuantConfig, name: str) -> dict:
        """G, b (and acc_scale) of the affine; eps_q (eps in the variance's format) once f_in is known; m, k once
        f_out is."""
        c, H = config, norm.normalized_shape[-1]
        E, fn = LayerNormMap.extra_bits(H, c), LayerNormMap.norm_frac(H, c)
        ones = torch.ones(H, dtype=torch.float64, device=norm.bias.device if norm.bias is not None else None)
        gamma = norm.weight.double() if norm.weight is not None else ones
        beta = norm.bias.double() if norm.bias is not None else 0 * ones
        scale = weight_scale(gamma, c.weight_bits, c, dim=0)
        acc_scale = scale * 2.0 ** -fn
        p = {"G": quantize(gamma, scale, c.weight_bits), "b": quantize(beta, acc_scale, c.acc_bits),
             "acc_scale": acc_scale}
        if f_in is not None:
            eps = math.floor(norm.eps * 2.0 ** (2 * (f_in + E)) + 0.5)
            require_exact(name, eps.bit_length() + 1, "eps in the variance's format")
            p["eps"] = torch.tensor(float(eps), dtype=torch.float64)
        if f_out is not None:
            p["m"], p["k"] = rescale(acc_scale, f_out, c)
        return p

    @staticmethod
    def normalize(x: torch.Tensor, p: dict, ctx: Context, name: str, config: QuantConfig) -> torch.Tensor:
        """x (..., H) in any format -> the affine's accumulator, scale acc_scale (the format of x cancels)."""
        c, H = config, x.shape[-1]
        E, fn = LayerNormMap.extra_bits(H, c), LayerNormMap.norm_frac(H, c)
        centred = shift_round(x, -E) - div_round(shift_round(x.sum(-1, keepdim=True), -E), H)
        var = div_round((centred * centred).sum(-1, keepdim=True), H)
        sd = sqrt_round((var + p["eps"]).clamp_min(1))
        n = saturate(div_round(shift_round(centred, -fn), sd), c.act_bits, ctx.sat, f"{name}.normalized")
        return saturate(n * p["G"] + p["b"], c.acc_bits, ctx.sat, f"{name}.acc")


class _Affine(SimpleNamespace):
    """weight (out, in) and bias, read as nn.Linear's by LinearMap.quantize."""


class GSULayer(IntLayer):
    """The Gated Spiking Unit: the per-token ternarisation of its input x (threshold 0.15 max |x| as a fixed-point
    multiply), t W + b and x Ter(W), their product, LayerNorm (LayerNormMap) and GELU(z) = z Phi(z) with Phi from
    a look-up table indexed like the GLU's sigmoid. Points: "a", "g" (the two products), "prod" (a g), "norm"
    (the LayerNorm's output), "out". in_bits: the width of x (the membrane's for y, 1 for spikes)."""

    points = ("a", "g", "prod", "norm", "out")

    def __init__(self, name, config, gsu: nn.Module, in_bits: int):
        super().__init__(name, config)
        self.gsu, c, H = gsu, config, gsu.d_model
        fan = math.ceil(math.log2(H + 1))
        require_exact(name, c.weight_bits - 1 + fan + 1, "the sum t W")
        require_exact(name, in_bits - 1 + fan, "the sum x Ter(W)")
        require_exact(name, in_bits - 1 + c.coef_bits, "the threshold max |x| q")
        require_exact(name, 2 * c.act_bits, "the products a g and z Phi(z)")
        LayerNormMap.check(name, H, c)

    def params(self, f_in: int = 0) -> dict:
        c, gsu = self.config, self.gsu
        p = LinearMap.quantize(_Affine(weight=gsu.W.t(), bias=gsu.b), 0, self.fracs["a"], c)
        p["TW"] = gsu.ternary_weight().double()  # (H_in, H_out) in {-1, 0, 1}, the surrogate's gradient to W
        p["q"] = round_half_up(torch.tensor(gsu.fraction, dtype=torch.float64) * 2.0 ** (c.coef_bits - 1))
        norm = LayerNormMap.quantize(gsu.norm, self.fracs["prod"], self.fracs["norm"], c, self.name)
        p["real"] = {"norm_acc_scale": norm.pop("acc_scale")}
        p.update({f"norm_{key}": value for key, value in norm.items()})
        p["table"] = normal_cdf_table(c)
        return p

    def ternary(self, x: torch.Tensor, f: int, p: dict) -> torch.Tensor:
        """Ter(x) per token: [x > delta] - [x < -delta], delta = (max_h |x_h| q) >> (coef_bits - 1)."""
        delta = shift_round(x.detach().abs().amax(-1, keepdim=True) * p["q"], self.config.coef_bits - 1)
        if not x.is_floating_point():
            return (x > delta).to(x.dtype) - (x < -delta).to(x.dtype)
        return ternarize_prechecked(x * 2.0 ** -f, delta * 2.0 ** -f, surrogate=self.gsu.surrogate,
                                    alpha=self.gsu.alpha)

    def forward(self, x, f, p, ctx, state=None):
        c, name, act = self.config, self.name, self.config.act_bits
        if ctx.backend == "numba" and not x.is_floating_point():  # fused per token: no tensor per intermediate
            H = x.shape[-1]
            out, counts = jit.gsu(x, p, self.fracs, f, c, LayerNormMap.extra_bits(H, c), LayerNormMap.norm_frac(H, c))
            for point, count in zip(jit.GSU_POINTS, counts):
                ctx.sat.add(f"{name}.{point}", count)
            return out, self.fracs["out"], None
        acc = LinearMap.accumulate(self.ternary(x, f, p), p, ctx, f"{name}.a", c)
        f_a = ctx.frac(self, "a", lambda: {"a": (_maxabs(acc * p["acc_scale"]), act, 1.0)})
        a = requant(acc, p["m"], p["k"], act, ctx.sat, f"{name}.a")
        acc_g = saturate(x @ p["TW"], c.acc_bits, ctx.sat, f"{name}.g.acc")
        f_g = ctx.frac(self, "g", lambda: {"g": (_maxabs(acc_g * 2.0 ** -f), act, 1.0)})
        g = requant(acc_g, None, f - f_g, act, ctx.sat, f"{name}.g")
        ag = a * g
        f_p = ctx.frac(self, "prod", lambda: {"prod": (_maxabs(ag * 2.0 ** -(f_a + f_g)), act, 1.0)})
        prod = requant(ag, None, f_a + f_g - f_p, act, ctx.sat, f"{name}.prod")
        norm = {key[5:]: value for key, value in p.items() if key.startswith("norm_")}
        acc_n = LayerNormMap.normalize(prod, norm, ctx, f"{name}.norm", c)
        f_n = ctx.frac(self, "norm", lambda: {"norm": (_maxabs(acc_n * p["real"]["norm_acc_scale"]), act, 1.0)})
        z = requant(acc_n, norm["m"], norm["k"], act, ctx.sat, f"{name}.norm")
        gelu = z * lookup_normal_cdf(z, f_n, p["table"], c)
        f_gelu = f_n + act - 1
        f_out = ctx.frac(self, "out", lambda: {"out": (_maxabs(gelu * 2.0 ** -f_gelu), act, 1.0)})
        return requant(gelu, None, f_gelu - f_out, act, ctx.sat, f"{name}.out"), f_out, None


class ResidualAdd(IntLayer):
    """x + z, both shifted to the calibrated format "sum"."""

    points = ("sum",)

    def forward2(self, x, fx, z, fz, ctx):
        c = self.config
        f = ctx.frac(self, "sum", lambda: {"sum": (_maxabs(x * 2.0 ** -fx + z * 2.0 ** -fz), c.act_bits, 1.0)})
        return saturate(shift_round(x, fx - f) + shift_round(z, fz - f), c.act_bits, ctx.sat, f"{self.name}.sum"), f


class BatchNormLayer(IntLayer):
    """BatchNorm with its running statistics, folded into a per-channel affine x G + b' (G = gamma /
    sqrt(var + eps), b' = beta - mean G), G in weight_bits. Point: "out"."""

    points = ("out",)

    def __init__(self, name, config, norm: nn.Module):
        super().__init__(name, config)
        self.norm = norm
        require_exact(name, config.act_bits + config.weight_bits, "the product x G")

    def params(self, f_in: int = 0) -> dict:
        c, n = self.config, self.norm
        gain = torch.rsqrt(n.running_var.double() + n.eps)
        shift = -n.running_mean.double() * gain
        if n.affine:
            gain, shift = gain * n.weight.double(), shift * n.weight.double() + n.bias.double()
        scale = weight_scale(gain, c.weight_bits, c, dim=0)
        acc_scale = scale * 2.0 ** -f_in
        p = {"G": quantize(gain, scale, c.weight_bits), "b": quantize(shift, acc_scale, c.acc_bits),
             "acc_scale": acc_scale}
        if self.fracs["out"] is not None:
            p["m"], p["k"] = rescale(acc_scale, self.fracs["out"], c)
        return p

    def forward(self, x, f, p, ctx, state=None):
        c = self.config
        acc = saturate(x * p["G"] + p["b"], c.acc_bits, ctx.sat, f"{self.name}.acc")
        f_out = ctx.frac(self, "out", lambda: {"out": (_maxabs(acc * p["acc_scale"]), c.act_bits, 1.0)})
        return requant(acc, p["m"], p["k"], c.act_bits, ctx.sat, f"{self.name}.out"), f_out, None


class LayerNormLayer(IntLayer):
    """A block's LayerNorm (norm="layer") over the channels of each token: LayerNormMap, then a rescale to the
    calibrated format "out"."""

    points = ("out",)

    def __init__(self, name, config, norm: nn.LayerNorm):
        super().__init__(name, config)
        self.norm = norm
        LayerNormMap.check(name, norm.normalized_shape[-1], config)

    def params(self, f_in: int = 0) -> dict:
        return LayerNormMap.quantize(self.norm, f_in, self.fracs["out"], self.config, self.name)

    def forward(self, x, f, p, ctx, state=None):
        c = self.config
        acc = LayerNormMap.normalize(x, p, ctx, self.name, c)
        f_out = ctx.frac(self, "out", lambda: {"out": (_maxabs(acc * p["acc_scale"]), c.act_bits, 1.0)})
        return requant(acc, p["m"], p["k"], c.act_bits, ctx.sat, f"{self.name}.out"), f_out, None


class Pool(IntLayer):
    """Mean over the steps seen (their sum in acc_bits, div_round by the count) or the last step. State for
    streaming: (sum or last feature (B, H), steps (B,))."""

    stateful = True

    def __init__(self, name, config, pooling: str):
        super().__init__(name, config)
        self.pooling = pooling

    def init_state(self, batch_size, like):
        return (torch.zeros(batch_size, like.shape[-1], dtype=like.dtype, device=like.device),
                torch.zeros(batch_size, dtype=torch.int64, device=like.device))

    def forward(self, x, f, p, ctx, state=None, lengths=None):
        if lengths is not None:  # one padded batch: the true steps only
            steps = lengths.to(x.device)
            if self.pooling == "last":
                return x[torch.arange(x.shape[0], device=x.device), steps - 1], f, None
            mask = (torch.arange(x.shape[1], device=x.device)[None] < steps[:, None]).to(x.dtype)
            total = saturate((x * mask[..., None]).sum(1), self.config.acc_bits, ctx.sat, f"{self.name}.sum")
            return div_round(total, steps[:, None]), f, None
        pooled, steps = state if state is not None else self.init_state(x.shape[0], x)
        steps = steps + x.shape[1]
        if self.pooling == "last":
            return x[:, -1], f, (x[:, -1], steps)
        pooled = saturate(pooled + x.sum(1), self.config.acc_bits, ctx.sat, f"{self.name}.sum")
        return div_round(pooled, steps[:, None]), f, (pooled, steps)


class Head(IntLayer):
    """The classifier: integer logits in the calibrated format "logits"; the class is their argmax (the first
    of equal maxima)."""

    points = ("logits",)

    def __init__(self, name, config, linear: nn.Linear):
        super().__init__(name, config)
        self.linear = linear
        _check_linear(name, linear, config.act_bits, config)

    def params(self, f_in: int = 0) -> dict:
        return LinearMap.quantize(self.linear, f_in, self.fracs["logits"], self.config)

    def forward(self, x, f, p, ctx, state=None):
        c = self.config
        acc = LinearMap.accumulate(x, p, ctx, self.name, c)
        f_out = ctx.frac(self, "logits", lambda: {"logits": (_maxabs(acc * p["acc_scale"]), c.act_bits, 1.0)})
        return requant(acc, p["m"], p["k"], c.act_bits, ctx.sat, f"{self.name}.logits"), f_out, None
