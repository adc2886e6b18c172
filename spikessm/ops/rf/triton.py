"""The Triton glue of rf's "sequential" algorithm: kernels/rf.py (installed as spikessm.kernels.rf), with the same
arguments and results as rf/torch_recurrence.py (but the saved pre-reset membranes as real planes)."""
from __future__ import annotations

import torch


def _kernels():
    from spikessm.kernels import rf as kernels  # imported on first use: Triton is optional

    return kernels


def rf_fwd(x, lam, weight, threshold, rho, kappa, h0, a0, reset: str, store: bool):
    """Spikes, zeta (B, L, 2, H, K) planes and a_prev (both empty unless store), the final membrane and trace."""
    return _kernels().rf_fwd(x=x, lam=lam, weight=weight, threshold=threshold, rho=rho, kappa=kappa, h0=h0, a0=a0,
                             reset=reset, store=store)


def rf_bwd(lam, weight, threshold, rho, kappa, h0, a0, zeta, a_prev, spikes, g_spikes, g_z, g_a, reset: str,
           surrogate: str, alpha: float, detach_reset: bool, x_dtype: torch.dtype):
    """As torch_recurrence.rf_bwd."""
    return _kernels().rf_bwd(lam=lam, weight=weight, threshold=threshold, rho=rho, kappa=kappa, h0=h0, a0=a0,
                             zeta=zeta, a_prev=a_prev, spikes=spikes, g_spikes=g_spikes, g_z=g_z, g_a=g_a,
                             reset=reset, surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                             x_dtype=x_dtype)
