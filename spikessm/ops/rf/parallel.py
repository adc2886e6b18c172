"""rf's "parallel" algorithm: PRF's parallel training (Huang et al. 2024, arXiv 2410.03530), for neurons whose
spikes never act on their membrane (reset "none", a fixed threshold).

Then the membrane is the linear complex recurrence z_t = lam z_{t-1} + x_t of every branch, which diag_scan
computes in parallel over time (its chunked scan, on either backend), and the spikes are a pointwise threshold
on the soma's sum: s_t = H(sum_k w_k Re z_t[k] - threshold). It computes the same function as the sequential
walk, to rounding, and its gradients come from autograd through diag_scan's backward and the surrogate spike.
Both backends run this module (`run` with backend "torch" or "triton": diag_scan's implementations).
"""
from __future__ import annotations

from ..diag_scan import diag_scan
from ..spike import spike
from .torch_sequential import soma


def rf_parallel(x, lam, weight, threshold, h0, *, surrogate: str, alpha: float, backend: str):
    """x (B, L, H) real; lam (H, K) complex; weight (H, K) or None; threshold (H,); h0 (B, H, K) or None ->
    spikes (B, L, H) in x's dtype and the final membrane (B, H, K). Differentiable."""
    B, L, H = x.shape
    K = lam.shape[1]
    drive = x.to(lam.real.dtype)[..., None].expand(B, L, H, K).reshape(B, L, H * K).to(lam.dtype)
    z, final = diag_scan(lam.reshape(H * K), drive, h0.reshape(B, H * K) if h0 is not None else None,
                         backend=backend)
    m = soma(z.view(B, L, H, K).real, weight)
    return spike(m - threshold, surrogate=surrogate, alpha=alpha).to(x.dtype), final.view(B, H, K)


def run(x, lam, weight, threshold, rho, kappa, h0, a0, *, reset: str, surrogate: str, alpha: float,
        detach_reset: bool, reverse: bool, backend: str):
    """rf_parallel with the sequential implementations' arguments and results (spikessm/ops/rf/torch_sequential.py),
    for neurons it computes exactly (reset "none", a fixed threshold); detach_reset has nothing to act on."""
    if reset != "none" or rho is not None:
        raise ValueError(f"rf: algorithm='parallel' needs neurons whose spikes leave the membrane alone (reset="
                         f"'none', no adaptive threshold), got reset={reset!r}"
                         + (" with an adaptive threshold" if rho is not None else ""))
    if reverse:
        x = x.flip(1)
    spikes, zT = rf_parallel(x, lam, weight, threshold, h0, surrogate=surrogate, alpha=alpha, backend=backend)
    return (spikes.flip(1) if reverse else spikes), zT, None
