"""The step-by-step reference of rf: one Python iteration per time step, differentiable by ordinary autograd
(complex autograd for lam and the membrane), exact in whatever dtype it is given (use float64 / complex128 for
ground truth).

It is the definition the fast paths are tested against, not a path for real work.
"""
from __future__ import annotations

import torch

from ..common.surrogate import SurrogateSpike


def rf_loop(
    x: torch.Tensor,
    lam: torch.Tensor,
    threshold,
    *,
    weight: torch.Tensor | None = None,
    reset: str = "subtract",
    surrogate: str = "atan",
    alpha: float = 2.0,
    initial_state: torch.Tensor | None = None,
    adapt_decay=None,
    adapt_scale=None,
    initial_trace: torch.Tensor | None = None,
    detach_reset: bool = False,
    reverse: bool = False,
    return_soma: bool = False,
):
    """Resonate-and-fire neurons, one step at a time, differentiable by autograd.

    Per step (lam: (H,) one branch, or (H, K) K branches; z has lam's trailing shape):
        zeta_t = lam z_{t-1} + x_t                      complex, x on the real axis
        m_t    = Re(zeta_t)  |  sum_k weight_k Re(zeta_t[k])   (weight None: all 1)
        th_t   = threshold + adapt_scale a_{t-1}         (threshold without adaptation)
        s_t    = H(m_t - th_t)
        a_t    = adapt_decay a_{t-1} + s_t               (only with adaptation)
        z_t    = zeta_t - th_t s_t (real part)  |  zeta_t (1 - s_t)  |  zeta_t     (subtract | zero | none)
    detach_reset stops gradients through the spike in the reset term; reverse runs t = L - 1 down to 0.

    Args:
        x: (B, L, H) real. lam: (H,) or (H, K) complex. threshold: float or (H,). weight: (H, K) real (K = 1 for
            lam (H,)) or None.
        initial_state: membrane (B, H) or (B, H, K) complex, or None (zeros). adapt_decay, adapt_scale: floats or
        (H,), or None for a fixed threshold. initial_trace: (B, H) or None (zeros).
    Returns:
        spikes (B, L, H) in {0, 1}; the final membrane; the final trace (None without adaptation); with
        return_soma also (m, th): the soma's membrane and the threshold at every step, (B, L, H) each, detached.
    """
    Bsz, L, H = x.shape
    branches = lam.dim() == 2
    shape = (Bsz, H, lam.shape[1]) if branches else (Bsz, H)
    z = torch.zeros(shape, dtype=lam.dtype, device=x.device) if initial_state is None else initial_state
    adaptive = adapt_decay is not None
    a = None
    if adaptive:
        a = torch.zeros(Bsz, H, dtype=x.dtype, device=x.device) if initial_trace is None else initial_trace
    x_steps = x.unbind(1)
    spikes, somas, thresholds = [None] * L, [None] * L, [None] * L
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        x_t = x_steps[t][..., None] if branches else x_steps[t]
        zeta = lam * z + x_t
        if branches:
            m = (zeta.real * (weight if weight is not None else 1.0)).sum(-1)
        else:
            m = zeta.real if weight is None else zeta.real * weight[:, 0]
        th = threshold + adapt_scale * a if adaptive else threshold
        s = SurrogateSpike.apply(m - th, surrogate, alpha)
        if adaptive:
            a = adapt_decay * a + s
        r = s.detach() if detach_reset else s
        if reset == "subtract":
            z = zeta - (th * r).to(zeta.dtype)
        elif reset == "zero":
            z = zeta * (1 - (r[..., None] if branches else r)).to(zeta.dtype)
        else:
            z = zeta
        spikes[t] = s
        somas[t], thresholds[t] = m.detach(), torch.as_tensor(th, dtype=m.dtype, device=m.device).detach().expand_as(m)
    if return_soma:
        return torch.stack(spikes, dim=1), z, a, (torch.stack(somas, 1), torch.stack(thresholds, 1))
    return torch.stack(spikes, dim=1), z, a
