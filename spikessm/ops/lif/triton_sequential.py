"""lif's "sequential" algorithm on the Triton kernels of kernels/lif.py (installed as spikessm.kernels.lif), with
the signatures of lif/torch_sequential.py, whose fake implementations and autograd glue it shares: the two
implementations take and save the same tensors and differ only in what computes them."""
from __future__ import annotations

from typing import Optional

import torch

from ..common.backend import kernels
from ..common.custom_op import register
from ..common.reset import fires
from .leaky import leaky_derivative
# shared with the PyTorch implementation (see above); register() finds them in this module
from .torch_sequential import backward_fake, backward_on, forward_fake, input_gradients, setup_context  # noqa: F401


def forward(
    x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, h0: Optional[torch.Tensor], reset: str,
    surrogate: str, alpha: float, detach_reset: bool, fire_on_tie: bool, save_membrane: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spikes, the pre-reset membrane (B, L, H) (the kernel writes it only when save_membrane, else an empty
    tensor comes back) and the final membrane."""
    return kernels("lif").lif_fwd(x=x, beta=beta, threshold=threshold, h0=h0, reset=reset,
                                  save_membrane=save_membrane, fire_on_tie=fire_on_tie)


def adjoint(beta, threshold, h0, m_all, g_spikes, g_final, reset: str, surrogate: str, alpha: float,
            detach_reset: bool, x_dtype: torch.dtype, fire_on_tie: bool = False):
    """As torch_sequential.adjoint, on the backward kernel. The "leaky" derivative depends on the spike history,
    which the kernel does not see: it is computed here and read by the kernel."""
    leaky = surrogate == "leaky"
    sigma = leaky_derivative(fires(m_all, threshold, fire_on_tie).to(m_all.dtype), beta, threshold) if leaky else None
    return kernels("lif").lif_bwd(
        beta=beta, threshold=threshold, h0=h0, m_all=m_all, g_spikes=g_spikes, g_final=g_final, reset=reset,
        surrogate=surrogate, alpha=alpha, detach_reset=detach_reset, x_dtype=x_dtype, sigma=sigma,
        fire_on_tie=fire_on_tie)


backward = backward_on(adjoint)


op = register(__name__)


def run(x, beta, threshold, h0, *, reset: str, surrogate: str, alpha: float, detach_reset: bool,
        save_membrane: bool, fire_on_tie: bool = False):
    """As torch_sequential.run, on the kernels."""
    return op(x=x, beta=beta, threshold=threshold, h0=h0, reset=reset, surrogate=surrogate, alpha=alpha,
              detach_reset=detach_reset, fire_on_tie=fire_on_tie, save_membrane=save_membrane)
