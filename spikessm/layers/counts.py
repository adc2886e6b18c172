"""What a layer reports to spikessm.stats.OpCounter: its operations and spikes per position.

A layer that computes something worth counting has a method next to its forward,

    def op_counts(self, x, out) -> dict[str, OpCounts]

called after each forward with the forward's first argument x and its output out (the output tensor, without
the state when the forward returns one). The keys name rows relative to the layer: "" for the layer itself, or
the name of a sub-layer whose work this layer's forward did in its place (S4D running its LIF neurons in one
fused op reports them under "neurons"). Each count is per position of x, where the positions are all dimensions
of x but the last (the channels): (batch, length) for a sequence, (batch,) for one step or a pooled feature.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OpCounts:
    """Counts per position. Each is a number (the same at every position) or an integer tensor of the positions'
    shape (or broadcastable to it).

    neurons: spiking units (the firing rate's denominator); spikes: nonzero events emitted; acs: accumulates
    (spike-driven synaptic operations and add-only products); macs: multiply-accumulates; dense_macs: the same
    work counted as a non-spiking network would do it.
    """

    neurons: int | torch.Tensor = 0
    spikes: int | torch.Tensor = 0
    acs: int | torch.Tensor = 0
    macs: int | torch.Tensor = 0
    dense_macs: int | torch.Tensor = 0


FIELDS = ("neurons", "spikes", "acs", "macs", "dense_macs")


def is_event(x: torch.Tensor) -> torch.Tensor:
    """Per position of x (all dimensions but the last): whether every value is -1, 0 or 1 (spikes or ternary
    activations)."""
    return ((x == 0) | (x == 1) | (x == -1)).all(-1)


def linear_counts(linear: nn.Linear, x: torch.Tensor, events: torch.Tensor | bool) -> OpCounts:
    """torch.nn.Linear, which has no op_counts of its own: an input position made of events costs one accumulate
    per nonzero input per output feature (spikes x fan-out); any other costs in x out MACs. `events` says, per
    position (or for all), whether the input counts as events. The bias is not counted."""
    dense = linear.in_features * linear.out_features
    nonzero = torch.count_nonzero(x, dim=-1) if x.dim() else torch.count_nonzero(x)
    events = torch.as_tensor(events, device=x.device)
    return OpCounts(acs=torch.where(events, nonzero * linear.out_features, 0), macs=torch.where(events, 0, dense),
                    dense_macs=dense)


class ValidPositions(nn.Module):
    """lengths (B,) -> (B, length) bool mask, True at each example's first lengths[b] positions; None for None
    (every position is valid).

    A module rather than a function so that OpCounter sees, through a forward hook, which positions of the
    sequence about to be encoded hold data: it counts the layers' work there only.
    """

    def forward(self, lengths: torch.Tensor | None, length: int) -> torch.Tensor | None:
        if lengths is None:
            return None
        return torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]
