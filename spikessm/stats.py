"""Spike, operation and energy accounting, collected during normal forward passes.

    with OpCounter(model) as counter:
        model(inputs, lengths)
    print(counter.table())          # per layer: firing rate, spikes, ACs (SOPs), MACs, energy; per example
    totals = counter.totals()       # sums, and means per example
    per_example = counter.per_example()   # one value per example seen, in order

How it counts: each layer states what one forward computes, per position of its input, in its `op_counts`
method (spikessm.layers.counts; torch's nn.Linear, which has none, by the rule below), and the counter sums
those figures over the positions that hold data: a padded batch's positions past each example's length (the
classifier's `lengths`) are left out, so every example is counted as if it had been run alone. The counter
registers forward hooks on entry and removes them on exit: outside the `with` block the model runs exactly as
without it, at no cost; inside, outputs are unchanged (the hooks only read tensors). Counts add up over every
forward pass inside the block (call `reset()` to start again); a forward of the counted model ends its batch's
examples.

What is counted (the field's convention: Horowitz 45 nm energies, E = 4.6 pJ x MACs + 0.9 pJ x ACs):
- Linear layers: an example whose input to the layer is made only of events (values in {-1, 0, 1}: spikes,
  ternary activations) costs one accumulate (AC) per nonzero input per output feature (spikes x fan-out =
  synaptic operations); any other input costs in_features x out_features MACs per token. Biases are not counted.
- SSM layers (floating-point state, always MACs), per token and channel with M complex modes: S4D 8M + 1
  (A x: 4M, B u: 2M, Re(C x): 2M, D u: 1), the first three twice when bidirectional; S5 per token
  2MH (B u) + 4M (A x) + 2MH (Re(C x)) + H (D u), the A x and readout twice when bidirectional.
- LIF neurons: one MAC per neuron and step (beta v + x); the Heaviside spike and the comparisons are free.
- RF neurons, per neuron and step: 4 MACs per branch (the complex lam z), one per branch for the soma's sum of
  several branches (or one for an input gain dt), two for an adaptive threshold.
- GLU: its linear layer as above, plus H MACs per token for the gate product.
- GSU: Ter(y) W is spike-driven (nonzero Ter(y) x H ACs), y Ter(W) is add/subtract-only (nonzero Ter(W) ACs
  per token), plus H MACs per token for a * g.
- Not counted: embedding lookups, norms (BatchNorm folds into the next layer at inference), activations,
  dropout, pooling.
Streaming: every layer's step() is its forward on one step, so a stream fed step by step is counted as one
position per example and step; its examples end at `reset()` (or when the batch size changes).
The dense (non-spiking) count of the same model takes every AC above as the MAC it replaces (a Linear layer:
tokens x in x out; the GSU: 2 H^2 per token); `totals()["energy_ratio"]` = dense energy / spiking energy.
Firing rate = spikes / (neurons x steps) over the valid positions seen. Count in eval mode: dropout in training
mode rescales spikes, which then no longer count as events.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .layers.counts import FIELDS, OpCounts, ValidPositions, is_event, linear_counts


INTEGER_WIDTHS = (8, 16, 32, 64)  # the widths an integer operation is costed at: its own width, rounded up


@dataclass
class EnergyModel:
    """Energy per operation in picojoules.

    mac_pj, ac_pj: the float model's (Horowitz 45 nm, 32-bit float MAC and AC).
    int_add_*_pj, int_mul_*_pj: an integer model's add (accumulate) and multiply, by width. 8 and 32 bits are
    Horowitz's 45 nm figures (ISSCC 2014: add 0.03 / 0.1 pJ, multiply 0.2 / 3.1 pJ); 16 bits interpolates them,
    an adder's energy linear in its width (0.03 + 8/24 x 0.07) and a multiplier's in the square of its width
    (0.2 + 192/960 x 2.9); 64 bits extrapolates by the same rules (2 x and 4 x the 32-bit figures).
    lut_read_64_pj: one 64-bit read of an 8 KB SRAM (Horowitz: 10 pJ); a look-up of b bits costs b/64 of it.
    An operation of any other width is costed at the nearest of INTEGER_WIDTHS at or above it (integer_pj)."""

    mac_pj: float = 4.6
    ac_pj: float = 0.9
    int_add_8_pj: float = 0.03
    int_add_16_pj: float = 0.053
    int_add_32_pj: float = 0.1
    int_add_64_pj: float = 0.2
    int_mul_8_pj: float = 0.2
    int_mul_16_pj: float = 0.78
    int_mul_32_pj: float = 3.1
    int_mul_64_pj: float = 12.4
    lut_read_64_pj: float = 10.0

    def integer_pj(self, kind: str, bits: int) -> float:
        """The energy of one integer operation: kind "acc" (an add), "mul" or "lut" (a table read of `bits`),
        costed at the nearest width of INTEGER_WIDTHS at or above `bits`."""
        width = next((w for w in INTEGER_WIDTHS if bits <= w), None)
        if width is None or bits < 1:
            raise ValueError(f"EnergyModel: no integer energy for a {bits}-bit operation (1 to 64 bits have one)")
        if kind == "acc":
            return getattr(self, f"int_add_{width}_pj")
        if kind == "mul":
            return getattr(self, f"int_mul_{width}_pj")
        if kind == "lut":
            return self.lut_read_64_pj * width / 64
        raise ValueError(f"EnergyModel: unknown integer operation {kind!r} (acc, mul or lut)")


@dataclass
class LayerStats:
    """Counts for one layer, summed over the valid positions of the forward passes seen.

    neurons: spiking units x steps observed (the firing rate's denominator); spikes: nonzero events emitted;
    acs: accumulates (spike-driven synaptic operations and add-only products); macs: multiply-accumulates;
    dense_macs: the same layer counted as a non-spiking network.
    """

    name: str
    kind: str
    neurons: int = 0
    spikes: int = 0
    acs: int = 0
    macs: int = 0
    dense_macs: int = 0

    @property
    def firing_rate(self) -> float | None:
        return self.spikes / self.neurons if self.neurons else None

    def energy_pj(self, energy: EnergyModel) -> float:
        return self.macs * energy.mac_pj + self.acs * energy.ac_pj

    def dense_energy_pj(self, energy: EnergyModel) -> float:
        return self.dense_macs * energy.mac_pj


def first_tensor(output):
    """A forward's output tensor: the output itself, or the first item of an (output, state) pair."""
    return output[0] if isinstance(output, (tuple, list)) else output


@dataclass
class OpCounter:
    """Context manager that counts spikes and operations of `model`'s layers (see the module docstring)."""

    model: nn.Module
    energy: EnergyModel = field(default_factory=EnergyModel)
    layers: dict[str, LayerStats] = field(default_factory=dict, init=False)
    _handles: list = field(default_factory=list, init=False, repr=False)
    _rank: dict = field(default_factory=dict, init=False, repr=False)
    _mask: torch.Tensor | None = field(default=None, init=False, repr=False)
    _batch: dict | None = field(default=None, init=False, repr=False)  # per-example sums of the open batch
    _examples: list = field(default_factory=list, init=False, repr=False)  # per-example sums of closed batches

    def __enter__(self) -> "OpCounter":
        self._handles.append(self.model.register_forward_pre_hook(self._start_forward))
        for rank, (name, module) in enumerate(self.model.named_modules()):
            self._rank[name] = rank  # the table lists layers in the model's order
            if isinstance(module, ValidPositions):
                self._handles.append(module.register_forward_hook(self._mask_hook))
            elif isinstance(module, nn.Linear):
                self._handles.append(module.register_forward_hook(self._linear_hook(name)))
            elif callable(getattr(module, "op_counts", None)):
                self._handles.append(module.register_forward_hook(self._layer_hook(name)))
        self._handles.append(self.model.register_forward_hook(self._end_forward))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._mask = None

    def reset(self) -> None:
        self.layers.clear()
        self._batch, self._examples = None, []

    # Hooks

    def _start_forward(self, module, args) -> None:
        self._mask = None  # until the model says which positions of a sequence hold data

    def _end_forward(self, module, args, output) -> None:
        self._close_batch()
        self._mask = None

    def _mask_hook(self, module, args, output) -> None:
        self._mask = output

    def _linear_hook(self, name: str):
        def hook(module: nn.Linear, args, output):
            x = args[0]
            self._add(name, "Linear", linear_counts(module, x, self._events(x)), x)

        return hook

    def _layer_hook(self, name: str):
        def hook(module: nn.Module, args, output):
            x = args[0]
            for part, counts in module.op_counts(x, first_tensor(output)).items():
                row = f"{name}.{part}" if part and name else part or name
                kind = type(module.get_submodule(part) if part else module).__name__
                self._add(row, kind, counts, x)

        return hook

    # Sums

    def _mask_for(self, x: torch.Tensor) -> torch.Tensor | None:
        """The valid-position mask of the sequence being encoded, if x's positions are that sequence's."""
        if self._mask is not None and tuple(self._mask.shape) == tuple(x.shape[:-1]):
            return self._mask
        return None

    def _events(self, x: torch.Tensor) -> torch.Tensor:
        """Per example, broadcastable to x's positions: whether its valid positions hold only events."""
        event = is_event(x)
        if event.dim() == 0:
            return event
        mask = self._mask_for(x)
        if mask is not None:
            event = event | ~mask
        return event.reshape(event.shape[0], -1).all(1).reshape((-1,) + (1,) * (event.dim() - 1))

    def _add(self, name: str, kind: str, counts: OpCounts, x: torch.Tensor) -> None:
        """Adds one forward's counts (per position of x) to the layer's row and to each example's sums."""
        positions = tuple(x.shape[:-1]) or (1,)
        batch, per_example = positions[0], math.prod(positions[1:])
        mask = self._mask_for(x)
        valid = (mask.reshape(batch, per_example) if mask is not None
                 else torch.ones(batch, per_example, dtype=torch.bool, device=x.device))
        if self._batch is not None and len(self._batch["macs"]) != batch:
            self._close_batch()
        if self._batch is None:
            self._batch = {k: torch.zeros(batch, dtype=torch.int64) for k in FIELDS}
        stats = self.layers.setdefault(name, LayerStats(name, kind))
        with torch.no_grad():
            for k in FIELDS:
                value = getattr(counts, k)
                if isinstance(value, torch.Tensor):
                    value = value.to(torch.int64).expand(positions).reshape(batch, per_example)
                    sums = torch.where(valid, value, 0).sum(1).cpu()
                else:
                    sums = int(value) * valid.sum(1).cpu()
                self._batch[k] += sums
                setattr(stats, k, getattr(stats, k) + int(sums.sum()))

    def _close_batch(self) -> None:
        if self._batch is not None:
            self._examples.append(self._batch)
            self._batch = None

    # Results

    def per_example(self) -> dict[str, torch.Tensor]:
        """One value per example seen, in order (an example's sums over every layer and its valid positions):
        int64 neurons, spikes, acs, macs, dense_macs; float64 energy_pj, dense_energy_pj."""
        batches = self._examples + ([self._batch] if self._batch is not None else [])
        out = {k: torch.cat([b[k] for b in batches]) if batches else torch.zeros(0, dtype=torch.int64)
               for k in FIELDS}
        out["energy_pj"] = out["macs"].double() * self.energy.mac_pj + out["acs"].double() * self.energy.ac_pj
        out["dense_energy_pj"] = out["dense_macs"].double() * self.energy.mac_pj
        return out

    def totals(self) -> dict:
        """Sums over layers: spikes, neurons, acs, macs, dense_macs, energy_pj, dense_energy_pj, energy_ratio
        (dense / spiking energy) and firing_rate (over every spiking layer); examples (the number seen) and the
        means per example: energy_pj_per_example, dense_energy_pj_per_example, macs_per_example,
        acs_per_example and spikes_per_example (None before any example)."""
        out = {k: sum(getattr(s, k) for s in self.layers.values()) for k in FIELDS}
        out["energy_pj"] = sum(s.energy_pj(self.energy) for s in self.layers.values())
        out["dense_energy_pj"] = sum(s.dense_energy_pj(self.energy) for s in self.layers.values())
        out["energy_ratio"] = out["dense_energy_pj"] / out["energy_pj"] if out["energy_pj"] else None
        out["firing_rate"] = out["spikes"] / out["neurons"] if out["neurons"] else None
        examples = len(self.per_example()["macs"])
        out["examples"] = examples
        for k in ("energy_pj", "dense_energy_pj", "macs", "acs", "spikes"):
            out[f"{k}_per_example"] = out[k] / examples if examples else None
        return out

    def table(self) -> str:
        """A plain-text table: one row per layer, then the totals and the figures per example."""
        head = f"{'layer':<28} {'kind':<10} {'rate':>7} {'spikes':>11} {'ACs':>11} {'MACs':>11} {'energy uJ':>10}"
        rows = [head, "-" * len(head)]
        for s in sorted(self.layers.values(), key=lambda s: self._rank.get(s.name, len(self._rank))):
            rate = f"{s.firing_rate:.4f}" if s.firing_rate is not None else "-"
            rows.append(f"{s.name:<28} {s.kind:<10} {rate:>7} {s.spikes:>11,} {s.acs:>11,} {s.macs:>11,} "
                        f"{s.energy_pj(self.energy) / 1e6:>10.4f}")
        t = self.totals()
        rate = f"{t['firing_rate']:.4f}" if t["firing_rate"] is not None else "-"
        rows.append("-" * len(head))
        rows.append(f"{'total':<28} {'':<10} {rate:>7} {t['spikes']:>11,} {t['acs']:>11,} {t['macs']:>11,} "
                    f"{t['energy_pj'] / 1e6:>10.4f}")
        ratio = f"{t['energy_ratio']:.2f}x" if t["energy_ratio"] is not None else "-"
        rows.append(f"non-spiking equivalent: {t['dense_energy_pj'] / 1e6:.4f} uJ ({ratio} the spiking estimate)")
        if t["examples"]:
            rows.append(f"per example ({t['examples']:,} examples): {t['energy_pj_per_example'] / 1e6:.4f} uJ, "
                        f"{t['macs_per_example']:,.0f} MACs, {t['acs_per_example']:,.0f} ACs, "
                        f"{t['spikes_per_example']:,.0f} spikes (non-spiking "
                        f"{t['dense_energy_pj_per_example'] / 1e6:.4f} uJ)")
        return "\n".join(rows)
