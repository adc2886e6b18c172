"""The PyTorch path of rf's "sequential" algorithm: a forward loop without autograd and an explicit adjoint.

Shapes here are the op's internal ones: lam (H, K) complex (K = 1 for one branch per neuron), the membrane
(B, H, K) complex, weight (H, K) real or None (all 1), threshold, adapt_decay (rho) and adapt_scale (kappa) (H,)
in the real state dtype; rho and kappa None without adaptation.

Forward, per step (zeta: the membrane before the reset; a: the adaptive threshold's spike trace):
    zeta_t = lam z_{t-1} + x_t;   m_t = sum_k w_k Re zeta_t[k];   th_t = threshold + kappa a_{t-1}
    s_t = H(m_t - th_t);          a_t = rho a_{t-1} + s_t;        z_t = R(zeta_t, s_t, th_t)
with R: subtract Re zeta - th s (one branch), zero zeta (1 - s), none zeta. zeta and a_{t-1} are saved for the
backward (the spikes are the forward's output, which the backward reads back).

Backward. With complex gradients G = dLoss/dRe + i dLoss/dIm (PyTorch's convention) and Gz_t, Ga_t the
gradients of z_t and a_t, a reverse walk gives per step
    Gs_t   = gs_t + Ga_t - [subtract] th_t Re Gz_t - [zero] sum_k Re(conj(zeta_t) Gz_t)   (reset terms unless detached)
    Gm_t   = sigma_t Gs_t,   Gth_t = -Gm_t - [subtract] s_t Re Gz_t
    Gzeta_t = c_t Gz_t + w Gm_t (real part),   c_t = 1 - s_t for zero, else 1
    Gz_{t-1} = conj(lam) Gzeta_t,   Ga_{t-1} = rho Ga_t + kappa Gth_t
and the parameters' gradients are sums over (batch, time):
    dlam = sum Gzeta_t conj(z_{t-1}),  dx_t = sum_k Re Gzeta_t,  dw = sum Gm_t Re zeta_t,  dthreshold = sum Gth_t,
    dkappa = sum Gth_t a_{t-1},  drho = sum Ga_t a_{t-1},  dh0 = Gz_{-1},  da0 = Ga_{-1}.
Time is walked in slices of SLICE steps from the end: per slice, the surrogate derivatives and the sums are
computed for all its steps at once; the recurrence itself costs a few small ops per step.
"""
from __future__ import annotations

import torch

from ..common.neuron import derivative_

SLICE = 32  # steps per backward slice: (B, SLICE, H, K) temporaries stay in cache


def state_dtype(x: torch.Tensor) -> torch.dtype:
    """The membrane's real dtype for input x: float64 for float64 x, float32 otherwise."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def soma(zeta: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """m = sum_k w_k Re zeta[..., k]: (..., H, K) complex -> (..., H) real (w = 1 when weight is None)."""
    if weight is None:
        return zeta.real.sum(-1) if zeta.shape[-1] > 1 else zeta.real[..., 0]
    return (zeta.real * weight).sum(-1)


def post_reset(zeta: torch.Tensor, s: torch.Tensor, th: torch.Tensor, reset: str) -> torch.Tensor:
    """The membrane after the reset: zeta (..., H, K) complex, s (..., H) spikes (0/1 floats), th (..., H) the
    threshold that fired. The one PyTorch statement of rf's reset rule (subtract is for one branch only)."""
    if reset == "subtract":
        return torch.complex(zeta.real - (s * th)[..., None], zeta.imag)
    if reset == "zero":  # masked_fill rather than zeta (1 - s): an infinite zeta would become NaN
        return zeta.masked_fill((s != 0)[..., None], 0)
    return zeta


def rf_fwd(x, lam, weight, threshold, rho, kappa, h0, a0, reset: str):
    """x: (B, L, H); lam (H, K) complex; weight (H, K) or None; threshold (H,); rho, kappa (H,) or None; h0
    (B, H, K) complex or None; a0 (B, H) or None.

    Returns spikes (B, L, H) in x's dtype; zeta (B, L, H, K) complex, the membranes before each reset; a_prev
    (B, L, H), the trace each step's threshold read (an empty tensor without adaptation); the final membrane
    (B, H, K) and the final trace (B, H) (empty without adaptation)."""
    real = lam.real.dtype
    B, L, H = x.shape
    K = lam.shape[1]
    adaptive = rho is not None
    z = h0 if h0 is not None else torch.zeros(B, H, K, dtype=lam.dtype, device=x.device)
    # Steps write B rows a whole (L, H) plane apart: zeroed in order first, as lif's forward does (page faults).
    zeta_all = torch.zeros(B, L, H, K, dtype=lam.dtype, device=x.device)
    spikes = torch.zeros(B, L, H, dtype=x.dtype, device=x.device)
    a = (a0.to(real) if a0 is not None else x.new_zeros(B, H, dtype=real)) if adaptive else None
    a_prev = torch.zeros(B, L, H, dtype=real, device=x.device) if adaptive else x.new_empty(0, dtype=real)
    x_steps = x.to(real).unbind(1)
    s = torch.empty(B, H, dtype=real, device=x.device)
    for t in range(L):
        zeta = torch.mul(lam, z, out=zeta_all[:, t])
        torch.view_as_real(zeta)[..., 0].add_(x_steps[t][..., None])
        m = soma(zeta, weight)
        if adaptive:
            a_prev[:, t] = a
            th = torch.addcmul(threshold, kappa, a)
        else:
            th = threshold
        torch.gt(m, th, out=s)
        spikes[:, t] = s
        if adaptive:
            a = torch.addcmul(s, rho, a)
        z = post_reset(zeta, s, th, reset)
    return spikes, zeta_all, a_prev, z.clone(), (a if adaptive else x.new_empty(0, dtype=real))


def _thresholds(threshold, kappa, a_prev):
    return threshold if kappa is None else torch.addcmul(threshold, kappa, a_prev)


def rf_bwd(lam, weight, threshold, rho, kappa, h0, a0, zeta_all, a_prev_all, spikes, g_spikes, g_z, g_a,
           reset: str, surrogate: str, alpha: float, detach_reset: bool, x_dtype: torch.dtype):
    """Gradients (dx (B, L, H) in x_dtype, dlam (H, K), dweight (H, K) or None, dthreshold (H,), drho and dkappa
    (H,) or None, dh0 (B, H, K) or None, da0 (B, H) or None) from the forward's saved zeta, a_prev and spikes,
    the spikes' gradient and the final state's (g_z (B, H, K) complex, g_a (B, H); either may be None)."""
    real = lam.real.dtype
    B, L, H, K = zeta_all.shape
    adaptive = rho is not None
    dx = torch.empty(B, L, H, dtype=x_dtype, device=zeta_all.device)
    Gz = g_z.clone() if g_z is not None else zeta_all.new_zeros(B, H, K)
    Ga = (g_a.to(real).clone() if g_a is not None else zeta_all.new_zeros(B, H, dtype=real)) if adaptive else None
    lam_conj = lam.conj()
    dlam = torch.zeros_like(lam)
    dweight = torch.zeros(H, K, dtype=real, device=lam.device) if weight is not None else None
    dth = torch.zeros(H, dtype=real, device=lam.device)
    drho = torch.zeros(H, dtype=real, device=lam.device) if adaptive else None
    dkappa = torch.zeros(H, dtype=real, device=lam.device) if adaptive else None
    w = weight[..., :] if weight is not None else None
    for end in range(L, 0, -SLICE):
        start = max(0, end - SLICE)
        n = end - start
        zeta = zeta_all[:, start:end]
        s = spikes[:, start:end].to(real)
        a_prev = a_prev_all[:, start:end] if adaptive else None
        th = _thresholds(threshold, kappa, a_prev)
        m = soma(zeta, weight)
        sigma = derivative_(surrogate, m - th, alpha)
        gs = g_spikes[:, start:end].to(real)
        G_zeta = torch.empty(B, n, H, K, dtype=lam.dtype, device=lam.device)
        G_m = torch.empty(B, n, H, dtype=real, device=lam.device)
        G_th = torch.empty(B, n, H, dtype=real, device=lam.device)
        G_a = torch.empty(B, n, H, dtype=real, device=lam.device) if adaptive else None
        keep = 1 - s if reset == "zero" else None  # dz/dzeta of the zero reset
        for j in range(n - 1, -1, -1):
            Gs = gs[:, j]
            if adaptive:
                G_a[:, j] = Ga
                Gs = Gs + Ga
            if reset == "subtract":
                Gz_re = Gz.real[..., 0]
                if not detach_reset:
                    Gs = Gs - (th[:, j] if th.dim() == 3 else th) * Gz_re
            elif reset == "zero" and not detach_reset:
                Gs = Gs - (zeta.real[:, j] * Gz.real + zeta.imag[:, j] * Gz.imag).sum(-1)
            Gm = Gs * sigma[:, j]
            G_m[:, j] = Gm
            Gth = -Gm if reset != "subtract" else -Gm - s[:, j] * Gz_re
            G_th[:, j] = Gth
            Gzeta = G_zeta[:, j]
            if keep is not None:
                torch.mul(Gz, keep[:, j, :, None], out=Gzeta)
            else:
                Gzeta.copy_(Gz)
            torch.view_as_real(Gzeta)[..., 0].add_(Gm[..., None] * w if w is not None else Gm[..., None])
            Gz = lam_conj * Gzeta
            if adaptive:
                Ga = torch.addcmul(kappa * Gth, rho, Ga)
        # the membranes after each step's predecessor reset: the previous slice's last one, or h0, first
        if start > 0:
            before = zeta_all[:, start - 1:end - 1]
            s_before = spikes[:, start - 1:end - 1].to(real)
            th_before = _thresholds(threshold, kappa, a_prev_all[:, start - 1:end - 1] if adaptive else None)
            z_prev = post_reset(before, s_before, th_before, reset)
        else:
            first = h0[:, None] if h0 is not None else zeta_all.new_zeros(B, 1, H, K)
            if n > 1:
                rest = post_reset(zeta[:, :-1], s[:, :-1], th[:, :-1] if th.dim() == 3 else th, reset)
                z_prev = torch.cat([first, rest], 1)
            else:
                z_prev = first
        dlam += (G_zeta * z_prev.conj()).sum((0, 1))
        dx[:, start:end] = G_zeta.real.sum(-1)
        if dweight is not None:
            dweight += (G_m[..., None] * zeta.real).sum((0, 1))
        dth += G_th.sum((0, 1))
        if adaptive:
            dkappa += (G_th * a_prev).sum((0, 1))
            drho += (G_a * a_prev).sum((0, 1))
    return (dx, dlam, dweight, dth, drho, dkappa, Gz if h0 is not None else None,
            Ga if adaptive and a0 is not None else None)
