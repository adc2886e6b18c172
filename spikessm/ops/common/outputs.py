"""The ops' results, as named tuples: the first two fields are always the output and the final state, so
``y, state = s4d_scan(...)`` unpacks every op but s4d_lif, whose third field is always present too."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class ScanOutput(NamedTuple):
    """diag_scan, s4d_scan and lif: the per-step output and the state after the last step processed (None
    when output_final_state is False)."""

    output: torch.Tensor
    final_state: Optional[torch.Tensor]


class S4DLIFState(NamedTuple):
    """s4d_lif's state: the SSM state (B, H, N) complex and the neurons' membrane (B, H); either may be None in
    an initial state (zeros)."""

    ssm: Optional[torch.Tensor]
    membrane: Optional[torch.Tensor]


class S4DLIFOutput(NamedTuple):
    """s4d_lif: spikes (B, L, H), the final S4DLIFState (None when output_final_state is False) and the
    pre-reset membrane (B, L, H) (None unless output_membrane)."""

    output: torch.Tensor
    final_state: Optional[S4DLIFState]
    membrane: Optional[torch.Tensor]


class RFState(NamedTuple):
    """rf's state: the complex membrane, (B, H) for one branch per neuron or (B, H, K) for K dendritic branches,
    and the spike trace of the adaptive threshold, (B, H) real, or None when the threshold does not adapt. In an
    initial state either may be None (zeros)."""

    membrane: Optional[torch.Tensor]
    trace: Optional[torch.Tensor]
