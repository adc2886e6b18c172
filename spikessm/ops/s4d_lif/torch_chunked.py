"""The PyTorch path of s4d_lif (its "chunked" algorithm on the torch backend): s4d_scan's PyTorch path, then lif's,
with y between them in memory; also the definition the fused kernels are tested against. Both parts carry their
own backward (lif's custom ops, s4d_scan's differentiable products), so this module registers nothing."""
from __future__ import annotations

from ..lif import run_lif
from ..lif import torch_sequential as lif_torch
from ..s4d_scan import torch_chunked as s4d_scan_torch


def run(u, A, B, C, D, h0, v0, beta, threshold, *, reset: str, surrogate: str, alpha: float, detach_reset: bool,
        reverse: bool, output_membrane: bool, fire_on_tie: bool = False):
    """As triton_sequential.run, on the PyTorch paths."""
    # y in the state's precision, as the kernels keep it: a 16-bit u must not round y before the neurons
    y, ssm_state = s4d_scan_torch.run(u.to(A.real.dtype), A, B, C, D, h0, reverse=reverse, output_final_state=True)
    spikes, membrane, v_state = run_lif(lif_torch.run, y, beta, threshold, v0, reset=reset, surrogate=surrogate,
                                        alpha=alpha, detach_reset=detach_reset, reverse=reverse,
                                        save_membrane=True, fire_on_tie=fire_on_tie)
    return spikes.to(u.dtype), ssm_state, v_state, (membrane.detach() if output_membrane else None)
