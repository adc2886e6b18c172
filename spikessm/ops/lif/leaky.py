"""The "leaky" surrogate derivative (Lee et al. 2020; see spikessm/ops/common/surrogate.py) for every step of a
sequence. It depends on the neurons' spike history, so both lif paths and s4d_lif's kernels get it from here: the
PyTorch backward uses it directly, the Triton backward kernels read it from memory."""
from __future__ import annotations

import torch

from ..diag_scan.torch_chunked import scan


def leaky_derivative(spikes: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor,
                     reverse: bool = False) -> torch.Tensor:
    """spikes: (B, L, H) 0/1; beta, threshold: (H,) -> (B, L, H), contiguous. With reverse, the neurons ran from
    the last step to the first: the history runs that way."""
    if reverse:
        spikes = spikes.flip(1)
    trace = scan(beta, spikes.contiguous(), None)  # the leaky trace a_t = beta a_(t-1) + s_t: a diagonal scan
    count = spikes.cumsum(dim=1)
    ratio = torch.where(count > 0, trace / count.clamp_min(1), 0.0)
    sigma = (1 + torch.log(beta) * ratio) / threshold
    return sigma.flip(1).contiguous() if reverse else sigma
