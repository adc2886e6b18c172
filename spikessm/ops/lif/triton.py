"""The Triton glue of lif: its "sequential" algorithm on kernels/lif.py (installed as spikessm.kernels.lif),
with the same arguments and results as lif/torch_recurrence.py."""
from __future__ import annotations

import torch

from ..common.neuron import leaky_derivative


def _kernels():
    from spikessm.kernels import lif as kernels  # imported on first use: Triton is optional

    return kernels


def lif_fwd(x, beta, threshold, h0, reset: str, save_membrane: bool):
    """Spikes, the pre-reset membrane (B, L, H) (empty unless save_membrane) and the final membrane."""
    return _kernels().lif_fwd(
        x=x, beta=beta, threshold=threshold, h0=h0, reset=reset, save_membrane=save_membrane)


def lif_bwd(beta, threshold, h0, m_all, g_spikes, g_final, reset: str, surrogate: str, alpha: float,
            detach_reset: bool, x_dtype: torch.dtype):
    """As torch_recurrence.lif_bwd. The "leaky" derivative depends on the spike history, which the kernel does
    not see: it is computed here and read by the kernel."""
    sigma = leaky_derivative((m_all > threshold).to(m_all.dtype), beta, threshold) if surrogate == "leaky" else None
    return _kernels().lif_bwd(
        beta=beta, threshold=threshold, h0=h0, m_all=m_all, g_spikes=g_spikes, g_final=g_final, reset=reset,
        surrogate=surrogate, alpha=alpha, detach_reset=detach_reset, x_dtype=x_dtype, sigma=sigma)
