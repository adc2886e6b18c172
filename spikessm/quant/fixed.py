"""Fixed-point building blocks shared by every integer layer: formats, weight quantisers, rescales, saturation
(counted), the float64 exactness check and the look-up tables (the GLU's sigmoid, the GSU's GELU).

A format is a number of fractional bits f: the integer n stands for the real n * 2^-f. A weight with a real
scale (QuantConfig.power_of_two=False) stands for n * scale. A rescale from an accumulator to an activation is
    out = saturate(shift_round(acc * m, k), bits)
with m = 1 for power-of-two scales (a pure shift) or an integer multiplier of mult_bits otherwise.
Like spikessm.quant.rounding, every function works on int64 tensors (the simulator) and on float tensors holding
integers (the fake-quant model, straight-through gradients).
"""
from __future__ import annotations

import math

import torch

from .config import QuantConfig
from .rounding import round_half_up, shift_round

EXACT_BITS = 53  # float64 holds every integer of magnitude below 2^53


def bounds(bits: int) -> tuple[int, int]:
    """The range of a signed `bits`-bit integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


class Saturations:
    """Counts of saturated values per named point of the graph ("blocks.0.ssm.state", ...)."""

    def __init__(self):
        self.counts: dict[str, torch.Tensor | int] = {}

    def add(self, name: str, count: torch.Tensor) -> None:
        self.counts[name] = self.counts.get(name, 0) + count

    def report(self) -> dict[str, int]:
        return {name: int(count) for name, count in self.counts.items()}


def saturate(x: torch.Tensor, bits: int, sat: Saturations | None, name: str) -> torch.Tensor:
    """x clamped to `bits` signed bits; the clamped values are counted under `name` (zero gradient beyond the
    bounds in the fake-quant model, as the clamp gives)."""
    low, high = bounds(bits)
    clamped = x.clamp(low, high)
    if sat is not None:  # the values the clamp moved (one compare with its result: the cheapest count)
        sat.add(name, torch.count_nonzero(clamped.detach() != x.detach()))
    return clamped


def frac_for(maxabs: float, bits: int) -> int:
    """The most fractional bits with which a signed `bits`-bit integer holds values up to maxabs (a value of
    exactly a power of two clips by one code). An all-zero tensor takes bits - 1."""
    if not maxabs > 0 or not math.isfinite(maxabs):
        return bits - 1
    return bits - 1 - math.ceil(math.log2(maxabs))


def channel_maxabs(w: torch.Tensor, per_channel: bool, dim: int) -> torch.Tensor:
    """max |w| over the whole tensor, or per index of `dim` (kept as a broadcastable dimension)."""
    w = w.detach().abs()
    if not per_channel:
        return w.max() if w.numel() else w.new_zeros(())
    dims = [d for d in range(w.dim()) if d != dim % w.dim()]
    return w.amax(dim=dims, keepdim=True) if dims else w


def pow2_frac(maxabs: torch.Tensor, bits: int) -> torch.Tensor:
    """frac_for over a tensor of maxima: an int64 tensor of maxabs's shape."""
    safe = torch.where(maxabs > 0, maxabs, torch.ones_like(maxabs)).double()
    frac = bits - 1 - torch.ceil(torch.log2(safe))
    return torch.where(maxabs > 0, frac, torch.full_like(frac, bits - 1)).to(torch.int64)


def quantize(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """round_half_up(x / scale) clipped to `bits` (clipping is the quantiser's choice of range, not a runtime
    saturation); float64, straight-through gradient inside the range."""
    low, high = bounds(bits)
    return round_half_up(x.double() / scale).clamp(low, high)


def weight_scale(w: torch.Tensor, bits: int, config: QuantConfig, dim: int = 0, pow2: bool | None = None):
    """The scale of weight tensor w (per tensor, or per index of `dim` when config.per_channel): 2^-frac_for
    (power of two) or max |w| / (2^(bits-1) - 1) (real). float64, no gradient."""
    maxabs = channel_maxabs(w, config.per_channel, dim).double()
    if config.power_of_two if pow2 is None else pow2:
        return torch.exp2(-pow2_frac(maxabs, bits).double())
    return torch.where(maxabs > 0, maxabs / ((1 << (bits - 1)) - 1), torch.ones_like(maxabs))


def rescale(acc_scale: torch.Tensor, frac_out: int, config: QuantConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, k), int64 tensors of acc_scale's shape, with acc * acc_scale ~= shift_round(acc * m, k) * 2^-frac_out.

    Power-of-two acc_scale: m = 1, k exact. Real: m in [2^(mult_bits-2), 2^(mult_bits-1) - 1], its nearest
    rounding."""
    r = acc_scale.detach().double() * 2.0 ** frac_out
    if config.power_of_two:
        k = torch.round(-torch.log2(r)).to(torch.int64)
        if not torch.equal(torch.exp2(-k.double()), r):
            raise AssertionError("rescale: power-of-two rescale of a scale that is not a power of two")
        return torch.ones_like(k), k
    k = (config.mult_bits - 2 - torch.floor(torch.log2(r))).to(torch.int64)
    m = torch.floor(r * torch.exp2(k.double()) + 0.5).clamp(max=(1 << (config.mult_bits - 1)) - 1)
    return m.to(torch.int64), k


def requant(acc: torch.Tensor, m: torch.Tensor, k, bits: int, sat: Saturations | None, name: str) -> torch.Tensor:
    """saturate(shift_round(acc * m, k), bits): an accumulator in another format."""
    if isinstance(m, torch.Tensor):
        acc = acc * (m.to(acc.dtype) if acc.is_floating_point() else m)
    return saturate(shift_round(acc, k), bits, sat, name)


def require_exact(layer: str, bits: int, what: str) -> None:
    """Refuses a layer whose worst-case intermediate needs `bits` bits or more: float64 (the fake-quant model)
    would round it, and the two forms would no longer agree."""
    if bits >= EXACT_BITS:
        raise ValueError(f"spikessm.quant: {layer}: {what} can reach 2^{bits}, beyond the 2^53 where float64 (the "
                         "fake-quant model) is exact; use fewer bits")


def function_table(fn, config: QuantConfig) -> torch.Tensor:
    """A look-up table of fn (a function onto [0, 1]), float64 integers in [0, 2^(act_bits-1)]: entry j is
    round_half_up(fn((j - J) 2^-lut_step_bits) 2^(act_bits-1)), J = lut_range 2^lut_step_bits."""
    half = config.lut_range << config.lut_step_bits
    points = torch.arange(-half, half + 1, dtype=torch.float64) * 2.0 ** -config.lut_step_bits
    return torch.floor(fn(points) * 2.0 ** (config.act_bits - 1) + 0.5)


def lookup(b: torch.Tensor, frac_b: int, table: torch.Tensor, fn, config: QuantConfig) -> torch.Tensor:
    """fn(b 2^-frac_b) from its table, in format act_bits - 1: index = shift_round(b, frac_b - lut_step_bits)
    clipped to the table. The fake-quant gradient is the exact fn's."""
    half = config.lut_range << config.lut_step_bits
    index = shift_round(b.detach(), frac_b - config.lut_step_bits).clamp(-half, half) + half
    values = table[index.long()] if b.is_floating_point() else table[index]
    if not b.is_floating_point():
        return values
    exact = fn(b * 2.0 ** -frac_b) * 2.0 ** (config.act_bits - 1)
    return exact + (values - exact.detach())


def sigmoid_table(config: QuantConfig) -> torch.Tensor:
    """The GLU's sigmoid look-up table (function_table of the logistic sigmoid)."""
    return function_table(torch.sigmoid, config)


def lookup_sigmoid(b: torch.Tensor, frac_b: int, table: torch.Tensor, config: QuantConfig) -> torch.Tensor:
    """sigmoid(b 2^-frac_b) from the table, in format act_bits - 1 (see lookup)."""
    return lookup(b, frac_b, table, torch.sigmoid, config)


def normal_cdf_table(config: QuantConfig) -> torch.Tensor:
    """The GSU's GELU table: the standard normal CDF Phi (GELU(x) = x Phi(x)), sampled like the sigmoid table.
    Phi saturates as the sigmoid does (1 - Phi(8) < 1e-15), so clipping the index to the table costs nothing
    beyond the table's own rounding, and GELU(x) = x for large x comes out exactly."""
    return function_table(torch.special.ndtr, config)


def lookup_normal_cdf(b: torch.Tensor, frac_b: int, table: torch.Tensor, config: QuantConfig) -> torch.Tensor:
    """Phi(b 2^-frac_b) from the table, in format act_bits - 1 (see lookup)."""
    return lookup(b, frac_b, table, torch.special.ndtr, config)
