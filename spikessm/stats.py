"""Spike, operation and energy accounting, collected during normal forward passes.

    with OpCounter(model) as counter:
        model(inputs)
    print(counter.table())          # per layer: firing rate, spikes, ACs (SOPs), MACs, energy
    totals = counter.totals()

The counter registers forward hooks on entry and removes them on exit: outside the `with` block the model runs
exactly as without it, at no cost; inside, outputs are unchanged (the hooks only read tensors). Counts add up
over every forward pass inside the block (call `reset()` to start again).

What is counted (the field's convention: Horowitz 45 nm energies, E = 4.6 pJ x MACs + 0.9 pJ x ACs):
- Linear layers: an input made only of events (values in {-1, 0, 1}: spikes, ternary activations) costs one
  accumulate (AC) per nonzero input per output feature (spikes x fan-out = synaptic operations); any other input
  costs in_features x out_features MACs per token. Biases are not counted.
- SSM layers (floating-point state, always MACs), per token and channel with M complex modes: S4D 8M + 1
  (A x: 4M, B u: 2M, Re(C x): 2M, D u: 1), the first three twice when bidirectional; S5 per token
  2MH (B u) + 4M (A x) + 2MH (Re(C x)) + H (D u), the A x and readout twice when bidirectional.
- LIF neurons: one MAC per neuron and step (beta v + x); the Heaviside spike and the comparisons are free.
- GLU: its linear layer as above, plus H MACs per token for the gate product.
- GSU: Ter(y) W is spike-driven (nonzero Ter(y) x H ACs), y Ter(W) is add/subtract-only (nonzero Ter(W) ACs
  per token), plus H MACs per token for a * g.
- Not counted: embedding lookups, norms (BatchNorm folds into the next layer at inference), activations,
  dropout, pooling.
The dense (non-spiking) count of the same model takes every AC above as the MAC it replaces (a Linear layer:
tokens x in x out; the GSU: 2 H^2 per token); `totals()["energy_ratio"]` = dense energy / spiking energy.
Firing rate = spikes / (neurons x steps) over everything seen, padding included. Count in eval mode: dropout in
training mode rescales spikes, which then no longer count as events.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .layers import GLU, GSU, LIF, S4D, Heaviside
from .models.block import SSMBlock


@dataclass
class EnergyModel:
    """Energy per operation in picojoules (defaults: Horowitz 45 nm, 32-bit float MAC and AC)."""

    mac_pj: float = 4.6
    ac_pj: float = 0.9


@dataclass
class LayerStats:
    """Counts for one layer, summed over the forward passes seen.

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


def is_events(x: torch.Tensor) -> bool:
    """Whether every value of x is -1, 0 or 1 (spikes or ternary activations)."""
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


@dataclass
class OpCounter:
    """Context manager that counts spikes and operations of `model`'s layers (see the module docstring)."""

    model: nn.Module
    energy: EnergyModel = field(default_factory=EnergyModel)
    layers: dict[str, LayerStats] = field(default_factory=dict, init=False)
    _handles: list = field(default_factory=list, init=False, repr=False)
    _rank: dict = field(default_factory=dict, init=False, repr=False)

    def __enter__(self) -> "OpCounter":
        for rank, (name, module) in enumerate(self.model.named_modules()):
            self._rank[name] = rank  # the table lists layers in the model's order
            hook = self._hook_for(name, module)
            if hook is not None:
                self._handles.append(module.register_forward_hook(hook))
            if isinstance(module, SSMBlock) and isinstance(module.readout, (Heaviside, LIF)):
                # The readout's spikes are the mixing layer's input, also when the block fuses SSM and LIF.
                self._handles.append(module.mixing.register_forward_pre_hook(self._spike_hook(f"{name}.readout",
                                                                                               module.readout)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def reset(self) -> None:
        self.layers.clear()

    def _stats(self, name: str, kind: str) -> LayerStats:
        return self.layers.setdefault(name, LayerStats(name, kind))

    def _hook_for(self, name: str, module: nn.Module):
        if isinstance(module, nn.Linear):
            return self._linear_hook(name)
        if isinstance(module, SSMBlock):
            return self._block_hook(name)
        if isinstance(module, GLU):
            return self._glu_hook(name)
        if isinstance(module, GSU):
            return self._gsu_hook(name)
        return None

    def _linear_hook(self, name: str):
        def hook(module: nn.Linear, args, output):
            x = args[0]
            tokens = x.numel() // module.in_features
            stats = self._stats(name, "Linear")
            dense = tokens * module.in_features * module.out_features
            stats.dense_macs += dense
            if is_events(x):
                stats.acs += int(torch.count_nonzero(x)) * module.out_features
            else:
                stats.macs += dense

        return hook

    def _spike_hook(self, name: str, readout: nn.Module):
        def hook(module, args):
            spikes = args[0]
            stats = self._stats(name, type(readout).__name__)
            stats.neurons += spikes.numel()
            stats.spikes += int(torch.count_nonzero(spikes))

        return hook

    def _block_hook(self, name: str):
        def hook(block: SSMBlock, args, output):
            x = args[0]
            tokens, H = x.numel() // x.shape[-1], x.shape[-1]
            ssm = block.ssm
            directions = 2 if ssm.bidirectional else 1
            if isinstance(ssm, S4D):
                M = ssm.d_state // 2
                macs = tokens * H * (8 * M * directions + 1)
            else:
                M = ssm.n_modes
                macs = tokens * (2 * M * H + directions * (4 * M + 2 * M * H) + H)
            stats = self._stats(f"{name}.ssm", type(ssm).__name__)
            stats.macs += macs
            stats.dense_macs += macs
            if isinstance(block.readout, LIF):
                stats = self._stats(f"{name}.readout", "LIF")
                stats.macs += tokens * H
                stats.dense_macs += tokens * H

        return hook

    def _glu_hook(self, name: str):
        def hook(module: GLU, args, output):
            gate = output.numel()  # a * sigmoid(b): one product per output value
            stats = self._stats(name, "GLU")
            stats.macs += gate
            stats.dense_macs += gate

        return hook

    def _gsu_hook(self, name: str):
        def hook(module: GSU, args, output):
            y = args[0]
            H = module.d_model
            tokens = y.numel() // H
            with torch.no_grad():
                ternary = module.ternary_input(y)
                weight_events = int(torch.count_nonzero(module.ternary_weight()))
            stats = self._stats(name, "GSU")
            events = int(torch.count_nonzero(ternary))
            stats.neurons += ternary.numel()
            stats.spikes += events
            stats.acs += events * H + tokens * weight_events
            stats.macs += tokens * H
            stats.dense_macs += tokens * (2 * H * H + H)

        return hook

    def totals(self) -> dict:
        """Sums over layers: spikes, neurons, acs, macs, dense_macs, energy_pj, dense_energy_pj, energy_ratio
        (dense / spiking energy) and firing_rate (over every spiking layer)."""
        keys = ("neurons", "spikes", "acs", "macs", "dense_macs")
        out = {k: sum(getattr(s, k) for s in self.layers.values()) for k in keys}
        out["energy_pj"] = sum(s.energy_pj(self.energy) for s in self.layers.values())
        out["dense_energy_pj"] = sum(s.dense_energy_pj(self.energy) for s in self.layers.values())
        out["energy_ratio"] = out["dense_energy_pj"] / out["energy_pj"] if out["energy_pj"] else None
        out["firing_rate"] = out["spikes"] / out["neurons"] if out["neurons"] else None
        return out

    def table(self) -> str:
        """A plain-text table: one row per layer, then the totals."""
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
        return "\n".join(rows)

