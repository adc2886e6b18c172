"""rf's "sequential" algorithm on the Triton kernels of kernels/rf.py (installed as spikessm.kernels.rf), with the
signatures of rf/torch_sequential.py, whose fake implementations, autograd glue and entry it shares: the two
implementations take and save the same tensors and differ only in what computes them."""
from __future__ import annotations

from typing import Optional

import torch

from ..common.backend import kernels
from ..common.custom_op import register
# shared with the PyTorch implementation (see above); register() finds them in this module
from .torch_sequential import (backward_fake, backward_on, forward_fake, input_gradients, run_on,  # noqa: F401
                               setup_context)


def forward(
    x: torch.Tensor, lam: torch.Tensor, weight: Optional[torch.Tensor], threshold: torch.Tensor,
    rho: Optional[torch.Tensor], kappa: Optional[torch.Tensor], h0: Optional[torch.Tensor],
    a0: Optional[torch.Tensor], reset: str, surrogate: str, alpha: float, detach_reset: bool, store: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """As torch_sequential.forward, on the forward kernel."""
    return kernels("rf").rf_fwd(x=x, lam=lam, weight=weight, threshold=threshold, rho=rho, kappa=kappa, h0=h0, a0=a0,
                                reset=reset, store=store)


def adjoint(lam, weight, threshold, rho, kappa, h0, a0, zeta, a_prev, spikes, g_spikes, g_z, g_a, reset: str,
            surrogate: str, alpha: float, detach_reset: bool, x_dtype: torch.dtype):
    """As torch_sequential.rf_bwd, on the backward kernel."""
    return kernels("rf").rf_bwd(lam=lam, weight=weight, threshold=threshold, rho=rho, kappa=kappa, h0=h0, a0=a0,
                                zeta=zeta, a_prev=a_prev, spikes=spikes, g_spikes=g_spikes, g_z=g_z, g_a=g_a,
                                reset=reset, surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                                x_dtype=x_dtype)


backward = backward_on(adjoint)
op = register(__name__)
run = run_on(op)
