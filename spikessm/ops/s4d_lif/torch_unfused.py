"""The PyTorch path of s4d_lif: s4d_scan's PyTorch path ("chunked") followed by lif's, two ops with y between
them in memory; also the definition the fused kernels are tested against."""
from __future__ import annotations

from ..lif import run_lif
from ..s4d_scan.torch_chunked import s4d_scan_torch_chunked


def s4d_lif_torch_unfused(u, A, B, C, D, h0, v0, beta, threshold, *, reset: str, surrogate: str, alpha: float,
                          detach_reset: bool, reverse: bool, output_membrane: bool):
    """As triton_sequential.s4d_lif_triton_sequential, on the PyTorch paths."""
    # y in the state's precision, as the kernels keep it: a 16-bit u must not round y before the neurons
    y, ssm_state = s4d_scan_torch_chunked(u.to(A.real.dtype), A, B, C, D, h0, reverse=reverse, output_final_state=True)
    # the PyTorch lif always returns the membrane (save_membrane concerns only the kernel)
    spikes, membrane, v_state = run_lif(y, beta, threshold, v0, reset=reset, surrogate=surrogate, alpha=alpha,
                                        detach_reset=detach_reset, reverse=reverse, triton=False, save_membrane=True)
    return spikes.to(u.dtype), ssm_state, v_state, (membrane.detach() if output_membrane else None)
