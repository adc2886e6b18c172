"""What an integer model costs to hold and to run: memory(sim), op_counts(sim, inputs, lengths), energy_pj(counts).

    mem = memory(sim)                       # {"weight_bytes", "state_bytes", "per_layer"}
    ops = op_counts(sim, inputs, lengths)   # per example: {"examples", "total", "per_layer"}
    energy_pj(ops["total"])                 # picojoules per example (spikessm.stats.EnergyModel)

Memory. Every frozen parameter tensor at its storage width (WIDTHS: weights W, E, D, G at weight_bits; S4D
coefficients, RF's lam and the LIF decay at coef_bits; biases at acc_bits; thresholds at membrane_bits (an RF
layer's, compared with its state, at state_bits); look-up tables at
act_bits; the GSU's ternary weights at 2 bits; shift counts at 8 bits; rescale multipliers at mult_bits, none
with power_of_two scales, where every multiplier is 1), each tensor rounded up to whole bytes:
ceil(numel bits / 8). The state is what one example's stream carries between steps: the S4D, S5 or RF state
(re and im at state_bits), the LIF membrane (membrane_bits), the pooling's running sum (acc_bits; the last feature at
act_bits for last pooling) and its step counter (32 bits).

Operations. Counts of one example (the mean over the examples given), at the true steps only (a padded
batch's positions past each example's length are left out), in three kinds, each by width:
- "acc": additions, subtractions and comparisons, by the width of the register they land in;
- "mul": multiplications, by the wider operand (a division or square root is counted as one multiply of its
  width, a lower bound of its cost);
- "lut": table reads (the GLU's sigmoid, the GSU's Phi, the embedding's rows), by the entry's width.
A product with a spike (0/1) or ternary operand is no multiply: it is one accumulate per nonzero operand,
counted on the actual activity (the GLU and GSU reading spikes; the GSU's t W and x Ter(W)). Every rescale
(n >> k, rounded) is one rounding add at n's width, after one multiply by m where the scales are not powers of
two; shifts, clamps and selects are free. The input quantisation (real features to codes) happens before the
integer graph and is not counted. Each layer class has its counting function (layer_ops, registered per class);
a layer without one is refused by name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import singledispatch

import torch

from ..stats import EnergyModel
from .config import QuantConfig
from .layers import (BatchNormLayer, Context, Encoder, GLULayer, GSULayer, Head, IntLayer, LayerNormLayer,
                     LayerNormMap, Pool, ResidualAdd, RFLayer, SSMLayer)
from .simulate import IntegerSimulator

KINDS = ("acc", "mul", "lut")
SHIFT_BITS = 8  # a shift count or format (k, kB, fA, ...) fits a byte
STEP_COUNTER_BITS = 32


def _multiplier_bits(c: QuantConfig) -> int:
    return 0 if c.power_of_two else c.mult_bits


# The storage width of each parameter tensor, by its key (a GSU's LayerNorm tensors carry the prefix "norm_").
WIDTHS = {
    "W": lambda c: c.weight_bits, "E": lambda c: c.weight_bits, "D": lambda c: c.weight_bits,
    "G": lambda c: c.weight_bits,
    **{key: (lambda c: c.coef_bits) for key in ("Ar", "Ai", "Br", "Bi", "Cr", "Ci", "beta", "q", "soma_weight",
                                                "adapt_decay", "adapt_scale", "Lr", "Li")},
    "b": lambda c: c.acc_bits, "eps": lambda c: c.acc_bits,
    "theta": lambda c: c.membrane_bits, "theta_state": lambda c: c.state_bits,
    "table": lambda c: c.act_bits,  # entries in [0, 2^(act_bits-1)], unsigned
    "TW": lambda c: 2,
    "m": _multiplier_bits, "mD": _multiplier_bits,
    **{key: (lambda c: SHIFT_BITS) for key in ("k", "kB", "kC", "kD", "kU", "fA", "fB", "fC", "fW", "fS", "fL")},
}


def tensor_bytes(numel: int, bits: int) -> int:
    return math.ceil(numel * bits / 8)


def _check_sim(sim) -> None:
    if not isinstance(sim, IntegerSimulator):
        raise TypeError(f"spikessm.quant.cost: expected an IntegerSimulator, got {type(sim).__name__}")


def _state_bytes(layer: IntLayer, c: QuantConfig, pooled_features: int) -> int:
    """One example's streaming state of `layer`, from its init_state shapes (pooled_features: the pool's width)."""
    if not layer.stateful:
        return 0
    if isinstance(layer, SSMLayer):
        xr, xi, v = layer.init_state(1, torch.zeros(1, dtype=torch.int64))
        membrane = tensor_bytes(v.numel(), c.membrane_bits) if layer.neurons is not None else 0  # LIF or RF (re, im)
        return tensor_bytes(xr.numel(), c.state_bits) + tensor_bytes(xi.numel(), c.state_bits) + membrane
    if isinstance(layer, RFLayer):
        # re and im of every branch, and the adaptive threshold's trace, all at state_bits
        return sum(tensor_bytes(part.numel(), c.state_bits)
                   for part in layer.init_state(1, torch.zeros(1, dtype=torch.int64)))
    if isinstance(layer, Pool):
        pooled, steps = layer.init_state(1, torch.zeros(1, pooled_features, dtype=torch.int64))
        width = c.acc_bits if layer.pooling == "mean" else c.act_bits
        return tensor_bytes(pooled.numel(), width) + tensor_bytes(steps.numel(), STEP_COUNTER_BITS)
    raise NotImplementedError(f"spikessm.quant.cost: no state size for {type(layer).__name__} ({layer.name})")


def memory(sim: IntegerSimulator) -> dict:
    """Bytes of the integer model: weight_bytes (every frozen parameter at its storage width), state_bytes (one
    example's streaming state) and per_layer {name: {"weight_bytes", "state_bytes"}} (see the module docstring)."""
    _check_sim(sim)
    c, per_layer = sim.config, {}
    for layer in sim.graph.layers():
        weights = 0
        for key, tensor in sim.params.get(layer.name, {}).items():
            width = WIDTHS.get(key.removeprefix("norm_"))
            if width is None:
                raise NotImplementedError(f"spikessm.quant.cost: no storage width for parameter {key!r} of "
                                          f"{layer.name} ({type(layer).__name__}); add it to WIDTHS")
            weights += tensor_bytes(tensor.numel(), width(c))
        state = _state_bytes(layer, c, sim.graph.head.linear.in_features)
        per_layer[layer.name] = {"weight_bytes": weights, "state_bytes": state}
    return {"weight_bytes": sum(v["weight_bytes"] for v in per_layer.values()),
            "state_bytes": sum(v["state_bytes"] for v in per_layer.values()), "per_layer": per_layer}


class Tally:
    """Per-example operation counts of one batch: {kind: {bits: float64 tensor (batch,)}}."""

    def __init__(self, batch: int):
        self.batch = batch
        self.counts: dict[str, dict[int, torch.Tensor]] = {k: {} for k in KINDS}

    def add(self, kind: str, bits: int, n) -> None:
        """n operations of `kind` at `bits` per example: a number (the same for each) or a (batch,) tensor."""
        n = torch.as_tensor(n, dtype=torch.float64).expand(self.batch)
        row = self.counts[kind]
        row[bits] = row.get(bits, torch.zeros(self.batch, dtype=torch.float64)) + n


@dataclass
class Call:
    """One layer's run, as the cost functions see it: its inputs (a tuple of tensors), in_bits (the width of
    the first input: 1 for spikes), its frozen params, its forward's output, valid (batch, length) bool: the
    true steps (None for a per-example input such as the head's), tokens (batch,): the true steps' count."""

    inputs: tuple
    in_bits: int
    params: dict | None
    output: tuple
    valid: torch.Tensor
    tokens: torch.Tensor


def _nonzero(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Per example: nonzero values of x (batch, length, channels) at the true steps, or of x (batch, channels)."""
    nz = x != 0
    if valid is not None:
        nz = nz & valid[..., None]
    return nz.reshape(nz.shape[0], -1).sum(1).double()


def _rescale(t: Tally, n, width: int, c: QuantConfig, multiplied: bool = True) -> None:
    """n rescales of a `width`-bit value: one rounding add each, after a multiply by m for real scales."""
    if multiplied and not c.power_of_two:
        t.add("mul", max(width, c.mult_bits), n)
    t.add("acc", width, n)


def _linear(t: Tally, x: torch.Tensor, valid, positions, W: torch.Tensor, in_bits: int, c: QuantConfig) -> None:
    """W x (+ b) over `positions` per example: spike inputs (in_bits 1) one accumulate per nonzero input and
    output; others a multiply and an accumulate per weight."""
    n_out, n_in = W.shape
    if in_bits == 1:
        t.add("acc", c.acc_bits, _nonzero(x, valid) * n_out)
    else:
        t.add("mul", max(c.weight_bits, in_bits), positions * n_in * n_out)
        t.add("acc", c.acc_bits, positions * n_in * n_out)
    _rescale(t, positions * n_out, c.acc_bits, c)


@singledispatch
def layer_ops(layer, call: Call, tally: Tally, config: QuantConfig) -> None:
    """Adds the operations of one layer's run to tally (one function registered per IntLayer class)."""
    raise NotImplementedError(f"spikessm.quant.cost: no operation count for {type(layer).__name__} "
                              f"({getattr(layer, 'name', '?')}); register one with spikessm.quant.cost.layer_ops")


@layer_ops.register
def _(layer: Encoder, call: Call, t: Tally, c: QuantConfig) -> None:
    if layer.tokens:  # a row of the embedding per step, then its rescale
        H = call.params["E"].shape[1]
        t.add("lut", c.weight_bits, call.tokens * H)
        _rescale(t, call.tokens * H, c.weight_bits, c)
        return
    _linear(t, call.inputs[0], call.valid, call.tokens, call.params["W"], call.in_bits, c)


@layer_ops.register
def _(layer: Head, call: Call, t: Tally, c: QuantConfig) -> None:
    _linear(t, call.inputs[0], None, 1, call.params["W"], call.in_bits, c)


@layer_ops.register
def _(layer: SSMLayer, call: Call, t: Tally, c: QuantConfig) -> None:
    # S4D: A, B, C (H, M), each channel's modes read its own input; S5: A (M,), B (M, H), C (H, M), every mode
    # reads all H inputs (fan_in = H), so B u sums H products per mode before its one rounding.
    p, T, u_bits = call.params, call.tokens, call.in_bits
    H, M = p["Cr"].shape
    modes, fan_in = p["Ar"].numel(), layer.fan_in
    state_product = c.coef_bits + c.state_bits
    input_sum = c.coef_bits + u_bits + math.ceil(math.log2(fan_in))
    readout_product = state_product + math.ceil(math.log2(2 * M))  # the sum over 2M products
    # B u: 2 products per entry of B, summed over the fan-in and rounded per mode; A x: 4 products, 2 sums, each
    # rounded; x = A x + B u
    t.add("mul", max(c.coef_bits, u_bits), T * 2 * p["Br"].numel())
    t.add("acc", input_sum, T * 2 * modes * fan_in)
    t.add("mul", max(c.coef_bits, c.state_bits), T * 4 * modes)
    t.add("acc", state_product, T * 4 * modes)
    t.add("acc", c.state_bits, T * 2 * modes)
    # y = (sum Cr xr - Ci xi) >> kC + (D u mD) >> kD
    t.add("mul", max(c.coef_bits, c.state_bits), T * 2 * H * M)
    t.add("acc", readout_product, T * (2 * M - 1) * H)
    _rescale(t, T * H, readout_product, c, multiplied=False)
    t.add("mul", max(c.weight_bits, u_bits), T * H)
    _rescale(t, T * H, c.weight_bits + u_bits, c)
    t.add("acc", c.membrane_bits, T * H)
    spikes = call.output[0]
    if layer.resonant:  # v = (lam v) >> fL + y: 4 products, 2 sums, 2 roundings; + y; the comparison; the reset
        t.add("mul", max(c.coef_bits, c.membrane_bits), T * 4 * H)
        t.add("acc", c.coef_bits + c.membrane_bits, T * 4 * H)
        t.add("acc", c.membrane_bits, T * 2 * H)
        if layer.neurons.reset == "subtract":
            t.add("acc", c.membrane_bits, _nonzero(spikes, call.valid))
    elif layer.neurons is not None:  # v = (beta v) >> (coef_bits - 1) + y; the comparison; the reset
        t.add("mul", max(c.coef_bits, c.membrane_bits), T * H)
        _rescale(t, T * H, c.coef_bits + c.membrane_bits, c, multiplied=False)
        t.add("acc", c.membrane_bits, T * 2 * H)
        if layer.neurons.reset == "subtract":
            t.add("acc", c.membrane_bits, _nonzero(spikes, call.valid))
    elif layer.heaviside is not None:
        t.add("acc", c.membrane_bits, T * H)


@layer_ops.register
def _(layer: RFLayer, call: Call, t: Tally, c: QuantConfig) -> None:
    # Per step, neuron and branch: lam z (4 products, 2 sums and 2 roundings) and the input's add to re; per
    # neuron: the input's shift to the state's format (a rounding add where it shifts right), the soma's K
    # products summed and rounded once (several branches), the adaptive threshold (S a and d a, each a product
    # and a rounding add, then + theta and + s) and the comparison; the subtract reset is one subtraction per
    # spike, the zero reset a select (free).
    p, T, K = call.params, call.tokens, layer.branches
    H = p["Ar"].numel() // K
    product = max(c.coef_bits, c.state_bits)
    t.add("mul", product, T * 4 * H * K)
    t.add("acc", c.coef_bits + c.state_bits, T * 4 * H * K)
    t.add("acc", c.state_bits, T * H * K)
    if int(p["kU"]) > 0:
        _rescale(t, T * H, call.in_bits, c, multiplied=False)
    if K > 1:
        soma = c.coef_bits + c.state_bits + math.ceil(math.log2(K))
        t.add("mul", product, T * H * K)
        t.add("acc", soma, T * H * (K - 1))
        _rescale(t, T * H, soma, c, multiplied=False)
    if layer.rf.adaptive:
        t.add("mul", product, T * 2 * H)
        _rescale(t, T * 2 * H, c.coef_bits + c.state_bits, c, multiplied=False)
        t.add("acc", c.state_bits, T * 2 * H)
    t.add("acc", c.state_bits, T * H)
    if layer.readout == "subtract":
        t.add("acc", c.state_bits, _nonzero(call.output[0], call.valid))


@layer_ops.register
def _(layer: GLULayer, call: Call, t: Tally, c: QuantConfig) -> None:
    _linear(t, call.inputs[0], call.valid, call.tokens, call.params["W"], call.in_bits, c)
    H = call.params["W"].shape[0] // 2
    t.add("lut", c.act_bits, call.tokens * H)  # sigmoid(g)
    t.add("mul", c.act_bits, call.tokens * H)  # a sigmoid(g)
    _rescale(t, call.tokens * H, 2 * c.act_bits, c, multiplied=False)


def _layer_norm(t: Tally, T, H: int, c: QuantConfig) -> None:
    """LayerNormMap.normalize and the rescale after it, over T tokens of H channels."""
    E, fn = LayerNormMap.extra_bits(H, c), LayerNormMap.norm_frac(H, c)
    sum_bits = c.act_bits + E + math.ceil(math.log2(H + 1))
    centred_bits = c.act_bits + E + 1
    square_bits = 2 * (c.act_bits + E) + math.ceil(math.log2(H + 1))  # LayerNormMap.check's bound
    t.add("acc", sum_bits, T * H)  # sum x
    t.add("mul", sum_bits, T)  # the mean's division by H
    t.add("acc", centred_bits, T * H)  # x - mean
    t.add("mul", centred_bits, T * H)  # c^2
    t.add("acc", square_bits, T * (H + 1))  # sum c^2, + eps
    t.add("mul", square_bits, T * 2)  # the variance's division by H, the square root
    t.add("mul", centred_bits + fn, T * H)  # c << fn divided by sd
    t.add("mul", max(c.act_bits, c.weight_bits), T * H)  # n G
    t.add("acc", c.acc_bits, T * H)  # + b
    _rescale(t, T * H, c.acc_bits, c)


@layer_ops.register
def _(layer: GSULayer, call: Call, t: Tally, c: QuantConfig) -> None:
    x, p, T, x_bits = call.inputs[0], call.params, call.tokens, call.in_bits
    H = p["TW"].shape[0]
    # delta = (max |x| q) >> (coef_bits - 1); t = [x > delta] - [x < -delta]
    t.add("acc", x_bits, T * 3 * H)
    t.add("mul", max(x_bits, c.coef_bits), T)
    _rescale(t, T, x_bits + c.coef_bits, c, multiplied=False)
    ternary = layer.ternary(x, 0, p)
    t.add("acc", c.acc_bits, _nonzero(ternary, call.valid) * H)  # t W: one accumulate per nonzero t and output
    _rescale(t, T * H, c.acc_bits, c)
    fan_out = (p["TW"] != 0).sum(1).double()  # x Ter(W): one add or subtract per nonzero weight
    if x_bits == 1:  # ... and per spike, when x is spikes
        active = (x != 0) & call.valid[..., None]
        t.add("acc", c.acc_bits, (active.double() @ fan_out).sum(1))
    else:
        t.add("acc", c.acc_bits, T * float(fan_out.sum()))
    _rescale(t, T * H, c.acc_bits, c, multiplied=False)
    t.add("mul", c.act_bits, T * H)  # a g
    _rescale(t, T * H, 2 * c.act_bits, c, multiplied=False)
    _layer_norm(t, T, H, c)
    t.add("lut", c.act_bits, T * H)  # Phi(z)
    t.add("mul", c.act_bits, T * H)  # z Phi(z)
    _rescale(t, T * H, 2 * c.act_bits, c, multiplied=False)


@layer_ops.register
def _(layer: LayerNormLayer, call: Call, t: Tally, c: QuantConfig) -> None:
    _layer_norm(t, call.tokens, call.inputs[0].shape[-1], c)


@layer_ops.register
def _(layer: BatchNormLayer, call: Call, t: Tally, c: QuantConfig) -> None:
    n = call.tokens * call.inputs[0].shape[-1]
    t.add("mul", max(c.act_bits, c.weight_bits), n)
    t.add("acc", c.acc_bits, n)
    _rescale(t, n, c.acc_bits, c)


@layer_ops.register
def _(layer: ResidualAdd, call: Call, t: Tally, c: QuantConfig) -> None:
    n = call.tokens * call.inputs[0].shape[-1]
    _rescale(t, 2 * n, c.act_bits, c, multiplied=False)  # each operand shifted to the sum's format
    t.add("acc", c.act_bits, n)


@layer_ops.register
def _(layer: Pool, call: Call, t: Tally, c: QuantConfig) -> None:
    if layer.pooling == "mean":
        H = call.inputs[0].shape[-1]
        t.add("acc", c.acc_bits, call.tokens * H)
        t.add("mul", c.acc_bits, H)  # the division by the step count


def _valid(codes: torch.Tensor, lengths) -> torch.Tensor:
    steps = torch.arange(codes.shape[1])[None]
    if lengths is None:
        return torch.ones(codes.shape[0], codes.shape[1], dtype=torch.bool)
    return steps < torch.as_tensor(lengths)[:, None]


def op_counts(sim: IntegerSimulator, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
    """Operations per example of sim on these inputs (whole sequences, optionally padded with lengths):
    {"examples": batch, "total": {kind: {bits: n}}, "per_layer": {layer name: {kind: {bits: n}}}}, n the mean
    over the examples (see the module docstring for what is counted)."""
    _check_sim(sim)
    sim.qmodel.model.check_inputs(inputs, lengths, "inputs")
    c, batch = sim.config, inputs.shape[0]
    codes = sim.quantize_inputs(inputs)
    valid = _valid(codes, lengths)
    tokens = valid.sum(1)
    tallies: dict[str, Tally] = {}
    in_bits = [0 if sim.graph.tokens else c.act_bits]  # the width of the next layer's input

    def probe(layer, layer_inputs, params, output):
        per_example = layer is sim.graph.head
        call = Call(layer_inputs, in_bits[0], params, output, None if per_example else valid, tokens)
        layer_ops(layer, call, tallies.setdefault(layer.name, Tally(batch)), c)
        if isinstance(layer, (SSMLayer, RFLayer)):
            in_bits[0] = c.membrane_bits if layer.readout == "identity" else 1
        else:
            in_bits[0] = c.act_bits

    with torch.no_grad():
        sim.graph.run(codes, sim.input_frac, lambda layer, f: sim.params[layer.name], Context(probe=probe),
                      None, lengths)
    per_layer = {name: _means(t.counts) for name, t in tallies.items()}
    return {"examples": batch, "total": total_counts(per_layer.values()), "per_layer": per_layer}


def _means(counts: dict) -> dict:
    return {kind: {bits: float(n.mean()) for bits, n in sorted(row.items())} for kind, row in counts.items()}


def total_counts(counts) -> dict:
    """The sum of several {kind: {bits: n}} counts."""
    out = {k: {} for k in KINDS}
    for one in counts:
        for kind, row in one.items():
            for bits, n in row.items():
                out[kind][bits] = out[kind].get(bits, 0.0) + n
    return {kind: dict(sorted(row.items())) for kind, row in out.items()}


def merge(results: list[dict]) -> dict:
    """op_counts of several batches -> one, every count the mean over all their examples."""
    if not results:
        raise ValueError("spikessm.quant.cost.merge: no batches")
    examples = sum(r["examples"] for r in results)

    def weighted(get) -> dict:
        return total_counts({kind: {bits: n * r["examples"] / examples for bits, n in row.items()}
                             for kind, row in get(r).items()} for r in results)

    names = list(dict.fromkeys(name for r in results for name in r["per_layer"]))
    return {"examples": examples, "total": weighted(lambda r: r["total"]),
            "per_layer": {name: weighted(lambda r, n=name: r["per_layer"].get(n, {})) for name in names}}


def energy_pj(counts: dict, energy: EnergyModel | None = None) -> float:
    """sum over kinds and widths of n x energy.integer_pj(kind, bits), for counts {kind: {bits: n}}."""
    energy = EnergyModel() if energy is None else energy
    return sum(n * energy.integer_pj(kind, int(bits)) for kind, row in counts.items() for bits, n in row.items())
