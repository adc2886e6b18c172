"""The PyTorch path of rf's "sequential" algorithm: a forward loop without autograd and an explicit adjoint,
registered as a custom op pair (spikessm/ops/common/custom_op.py gives the convention this module follows).

Shapes here are the op's internal ones: lam (H, K) complex (K = 1 for one branch per neuron), the membrane
(B, H, K) complex, weight (H, K) real or None (all 1), threshold, adapt_decay (rho) and adapt_scale (kappa) (H,)
in the real state dtype; rho and kappa None without adaptation.

Forward, per step (zeta: the membrane before the reset; a: the adaptive threshold's spike trace):
    zeta_t = lam z_{t-1} + x_t;   m_t = sum_k w_k Re zeta_t[k];   th_t = threshold + kappa a_{t-1}
    s_t = H(m_t - th_t);          a_t = rho a_{t-1} + s_t;        z_t = R(zeta_t, s_t, th_t)
with R: subtract Re zeta - th s (one branch), zero zeta (1 - s), none zeta. zeta (as real and imaginary planes,
(B, L, 2, H, K), the Triton kernel's layout) and a_{t-1} are saved for the backward (the spikes are the forward's
output, which the backward reads back). Everything runs on contiguous real planes: on a CPU, complex ops and
strided writes into interleaved complex storage cost several times more per element than real ones.

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

from typing import Optional

import torch

from ..common.custom_op import register
from ..common.surrogate import derivative_

SLICE = 32  # steps per backward slice: (B, SLICE, H, K) temporaries stay in cache


def state_dtype(x: torch.Tensor) -> torch.dtype:
    """The membrane's real dtype for input x: float64 for float64 x, float32 otherwise."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def soma(zr: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """m = sum_k w_k zr[..., k]: the real parts (..., H, K) -> (..., H) (w = 1 when weight is None)."""
    if weight is None:
        return zr.sum(-1) if zr.shape[-1] > 1 else zr[..., 0]
    return (zr * weight).sum(-1)


def post_reset(zr: torch.Tensor, zi: torch.Tensor, s: torch.Tensor, th: torch.Tensor, reset: str):
    """The membrane after the reset, as (real, imaginary) planes (..., H, K): s (..., H) the spikes (0/1 floats),
    th (..., H) or (H,) the threshold that fired. The one PyTorch statement of rf's reset rule (subtract is for one
    branch only)."""
    if reset == "subtract":
        return zr - (s * th)[..., None], zi
    if reset == "zero":  # masked_fill rather than zeta (1 - s): an infinite zeta would become NaN
        fired = (s != 0)[..., None]
        return zr.masked_fill(fired, 0), zi.masked_fill(fired, 0)
    return zr, zi


def rf_fwd(x, lam, weight, threshold, rho, kappa, h0, a0, reset: str, store: bool = True):
    """x: (B, L, H); lam (H, K) complex; weight (H, K) or None; threshold (H,); rho, kappa (H,) or None; h0
    (B, H, K) complex or None; a0 (B, H) or None.

    Returns spikes (B, L, H) in x's dtype; zeta (B, L, 2, H, K), the (re, im) planes of the membranes before each
    reset; a_prev (B, L, H), the trace each step's threshold read (an empty tensor without adaptation); the final
    membrane (B, H, K) complex and the final trace (B, H) (empty without adaptation). Without store (no backward
    to come) zeta and a_prev are empty, and the walk runs on two alternating step buffers."""
    real = lam.real.dtype
    B, L, H = x.shape
    K = lam.shape[1]
    adaptive = rho is not None
    lr, li = lam.real.contiguous(), lam.imag.contiguous()
    zr = h0.real.clone() if h0 is not None else x.new_zeros(B, H, K, dtype=real)
    zi = h0.imag.clone() if h0 is not None else x.new_zeros(B, H, K, dtype=real)
    # Steps write B rows a whole (L, H) plane apart: zeroed in order first, as lif's forward does (page faults).
    zeta = torch.zeros(B, L if store else 2, 2, H, K, dtype=real, device=x.device)
    steps = zeta.unbind(1)  # (B, 2, H, K) each: a step's planes
    re_steps, im_steps = zeta[:, :, 0].unbind(1), zeta[:, :, 1].unbind(1)
    slot = (lambda t: t) if store else (lambda t: t % 2)  # step t - 1's planes stay intact while t is written
    spikes = torch.zeros(B, L, H, dtype=x.dtype, device=x.device)
    spike_steps = spikes.unbind(1)
    direct = x.dtype == real  # the spikes can be written where they belong and read back as 0/1 floats
    a = (a0.to(real) if a0 is not None else x.new_zeros(B, H, dtype=real)) if adaptive else None
    a_prev = torch.zeros(B, L, H, dtype=real, device=x.device) if adaptive and store else x.new_empty(0, dtype=real)
    x_steps = x.to(real)[..., None].unbind(1)
    s = torch.empty(B, H, dtype=real, device=x.device)
    for t in range(L):
        nr, ni = re_steps[slot(t)], im_steps[slot(t)]
        torch.addcmul(x_steps[t], lr, zr, out=nr).addcmul_(li, zi, value=-1)
        torch.mul(lr, zi, out=ni).addcmul_(li, zr)
        m = soma(nr, weight)
        if adaptive:
            if store:
                a_prev[:, t] = a
            th = torch.addcmul(threshold, kappa, a)
        else:
            th = threshold
        if direct:
            s = torch.gt(m, th, out=spike_steps[t])
        else:
            spike_steps[t].copy_(torch.gt(m, th, out=s))
        if adaptive:
            a = torch.addcmul(s, rho, a)
        if reset == "zero":  # both planes in one op (post_reset's rule)
            zr, zi = steps[slot(t)].masked_fill((s != 0)[:, None, :, None], 0).unbind(1)
        else:
            zr, zi = post_reset(nr, ni, s, th, reset)
    return (spikes, zeta if store else x.new_empty(0, dtype=real), a_prev, torch.complex(zr, zi),
            a if adaptive else x.new_empty(0, dtype=real))


def _thresholds(threshold, kappa, a_prev):
    return threshold if kappa is None else torch.addcmul(threshold, kappa, a_prev)


def rf_bwd(lam, weight, threshold, rho, kappa, h0, a0, zeta, a_prev_all, spikes, g_spikes, g_z, g_a,
           reset: str, surrogate: str, alpha: float, detach_reset: bool, x_dtype: torch.dtype):
    """Gradients (dx (B, L, H) in x_dtype, dlam (H, K), dweight (H, K) or None, dthreshold (H,), drho and dkappa
    (H,) or None, dh0 (B, H, K) or None, da0 (B, H) or None) from the forward's saved zeta planes, a_prev and
    spikes, the spikes' gradient and the final state's (g_z (B, H, K) complex, g_a (B, H); either may be None).

    Per slice, everything that does not depend on the carried gradients is computed for all its steps at once
    (the surrogate sigma, c = sigma gs, the reset's coefficients on Gz); the walk then costs about seven small
    real ops per step. The parameters' gradients are summed per (batch, position in the slice) and reduced once
    at the end (a reduction per slice costs more than the slice's arithmetic), and the threshold's gradient per
    step is rebuilt after each slice from what the walk stored, unless the adaptive threshold needs it during
    the walk."""
    real = lam.real.dtype
    B, L, _, H, K = zeta.shape
    device = zeta.device
    adaptive = rho is not None
    dx = torch.empty(B, L, H, dtype=x_dtype, device=device)
    Gzr = g_z.real.clone() if g_z is not None else zeta.new_zeros(B, H, K)
    Gzi = g_z.imag.clone() if g_z is not None else zeta.new_zeros(B, H, K)
    Ga = (g_a.to(real).clone() if g_a is not None else zeta.new_zeros(B, H)) if adaptive else None
    lr, li = lam.real.contiguous(), lam.imag.contiguous()
    w = weight[None] if weight is not None else None  # (1, H, K)
    subtract = reset == "subtract"  # one branch, no weight
    zero_term = reset == "zero" and not detach_reset
    n_max = min(SLICE, L)
    buffers = zeta.new_empty(4, B, n_max, H, K).unbind(0)  # the slice's Gzeta planes, and dlam's two sums
    G_re, G_im, sum_lr, sum_li = buffers
    sum_lr.zero_()
    sum_li.zero_()
    sums = zeta.new_zeros(4, B, n_max, H).unbind(0)  # dthreshold, dkappa, drho, and dweight's (K > 1 below)
    sum_th, sum_kappa, sum_rho, _ = sums
    sum_w = zeta.new_zeros(B, n_max, H, K) if weight is not None else None
    G_m = zeta.new_empty(B, n_max, H)
    G_th = zeta.new_empty(B, n_max, H) if adaptive else None
    G_a = zeta.new_empty(B, n_max, H) if adaptive else None
    for end in range(L, 0, -SLICE):
        start = max(0, end - SLICE)
        n = end - start
        zr, zi = zeta[:, start:end, 0], zeta[:, start:end, 1]
        s = spikes[:, start:end].to(real)
        a_prev = a_prev_all[:, start:end] if adaptive else None
        th = _thresholds(threshold, kappa, a_prev)
        sigma = derivative_(surrogate, soma(zr, weight) - th, alpha)
        c = g_spikes[:, start:end].to(real) * sigma
        e = -(th * sigma) if subtract and not detach_reset else None  # dGm / dRe Gz of the subtract reset
        if zero_term:  # dGm / dGz of the zero reset: -sigma Re zeta, -sigma Im zeta
            er, ei = -sigma[..., None] * zr, -sigma[..., None] * zi
        keep = (1 - s)[..., None] if reset == "zero" else None  # dz / dzeta of the zero reset
        g_re, g_im = G_re[:, :n].unbind(1), G_im[:, :n].unbind(1)
        for j in range(n - 1, -1, -1):
            gm = G_m[:, j]
            if adaptive:
                G_a[:, j] = Ga
                torch.addcmul(c[:, j], sigma[:, j], Ga, out=gm)
                if e is not None:
                    gm.addcmul_(e[:, j], Gzr[..., 0])
            elif e is not None:
                torch.addcmul(c[:, j], e[:, j], Gzr[..., 0], out=gm)
            else:
                gm.copy_(c[:, j])
            if zero_term:
                gm.add_((er[:, j] * Gzr).addcmul_(ei[:, j], Gzi).sum(-1))
            gr, gi = g_re[j], g_im[j]
            drive = gm[..., None] * w if w is not None else gm[..., None]
            if keep is not None:
                torch.mul(Gzr, keep[:, j], out=gr).add_(drive)
                torch.mul(Gzi, keep[:, j], out=gi)
            else:
                torch.add(Gzr, drive, out=gr)
                gi.copy_(Gzi)
            if adaptive:
                gth = torch.neg(gm, out=G_th[:, j])
                if subtract:
                    gth.addcmul_(s[:, j], Gzr[..., 0], value=-1)
                Ga = torch.addcmul(kappa * gth, rho, Ga)
            Gzr = torch.mul(gr, lr).addcmul_(gi, li)  # Gz_{t-1} = conj(lam) Gzeta_t
            Gzi = torch.mul(gi, lr).addcmul_(gr, li, value=-1)
        gr, gi, gm = G_re[:, :n], G_im[:, :n], G_m[:, :n]
        if adaptive:
            gth = G_th[:, :n]
        else:  # -Gm, and the subtract reset's -s Re Gz_t, with Re Gz_t = Re Gzeta_t - Gm_t for it
            gth = -gm if not subtract else torch.addcmul(-gm, s, gr[..., 0] - gm, value=-1)
        # the membranes after each step's predecessor reset: the previous slice's last one, or h0, first
        if start > 0:
            qr, qi = post_reset(zeta[:, start - 1:end - 1, 0], zeta[:, start - 1:end - 1, 1],
                                spikes[:, start - 1:end - 1].to(real),
                                _thresholds(threshold, kappa, a_prev_all[:, start - 1:end - 1] if adaptive else None),
                                reset)
        else:
            hr = h0.real[:, None] if h0 is not None else zeta.new_zeros(B, 1, H, K)
            hi = h0.imag[:, None] if h0 is not None else zeta.new_zeros(B, 1, H, K)
            qr, qi = post_reset(zr[:, :-1], zi[:, :-1], s[:, :-1], th[:, :-1] if th.dim() == 3 else th, reset)
            qr, qi = torch.cat([hr, qr], 1), torch.cat([hi, qi], 1)
        # dlam = sum Gzeta conj(z_prev): (gr qr + gi qi) + i (gi qr - gr qi)
        sum_lr[:, :n].addcmul_(gr, qr).addcmul_(gi, qi)
        sum_li[:, :n].addcmul_(gi, qr).addcmul_(gr, qi, value=-1)
        dx[:, start:end] = gr[..., 0] if K == 1 else gr.sum(-1)
        if sum_w is not None:
            sum_w[:, :n].addcmul_(gm[..., None], zr)
        sum_th[:, :n].add_(gth)
        if adaptive:
            sum_kappa[:, :n].addcmul_(gth, a_prev)
            sum_rho[:, :n].addcmul_(G_a[:, :n], a_prev)
    dlam = torch.complex(sum_lr.sum((0, 1)), sum_li.sum((0, 1)))
    dweight = sum_w.sum((0, 1)) if sum_w is not None else None
    drho = sum_rho.sum((0, 1)) if adaptive else None
    dkappa = sum_kappa.sum((0, 1)) if adaptive else None
    dh0 = torch.complex(Gzr, Gzi) if h0 is not None else None
    return (dx, dlam, dweight, sum_th.sum((0, 1)), drho, dkappa, dh0,
            Ga if adaptive and a0 is not None else None)


# ----------------------------------------------------------------------------------------------------------
# The custom op: rf_fwd and rf_bwd with the signatures custom_op.register reads (the Triton implementation,
# triton_sequential.py, shares the fake implementations and the autograd glue)
# ----------------------------------------------------------------------------------------------------------


def forward(
    x: torch.Tensor, lam: torch.Tensor, weight: Optional[torch.Tensor], threshold: torch.Tensor,
    rho: Optional[torch.Tensor], kappa: Optional[torch.Tensor], h0: Optional[torch.Tensor],
    a0: Optional[torch.Tensor], reset: str, surrogate: str, alpha: float, detach_reset: bool, store: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spikes, the saved pre-reset membranes zeta ((B, L, 2, H, K) real planes) and traces a_prev (empty unless
    store), the final membrane (B, H, K) and the final trace (B, H) (empty without adaptation). The settings that
    only the backward uses are inputs so that setup_context keeps them."""
    return rf_fwd(x, lam, weight, threshold, rho, kappa, h0, a0, reset, store)


def forward_fake(x, lam, weight, threshold, rho, kappa, h0, a0, reset, surrogate, alpha, detach_reset, store):
    B, L, H = x.shape
    K = lam.shape[1]
    real = lam.real.dtype
    adaptive = rho is not None
    zeta = x.new_empty((B, L, 2, H, K) if store else (0,), dtype=real)
    a_prev = x.new_empty((B, L, H) if adaptive and store else (0,), dtype=real)
    return (torch.empty_like(x), zeta, a_prev, x.new_empty((B, H, K), dtype=lam.dtype),
            x.new_empty((B, H) if adaptive else (0,), dtype=real))


def setup_context(ctx, inputs, output):
    x, lam, weight, threshold, rho, kappa, h0, a0, reset, surrogate, alpha, detach_reset, store = inputs
    spikes, zeta, a_prev, _, _ = output
    ctx.save_for_backward(x, lam, weight, threshold, rho, kappa, h0, a0, zeta, a_prev, spikes)
    ctx.options = (reset, surrogate, alpha, detach_reset)
    ctx.stored = store


def backward_on(adjoint):
    """The op's backward over `adjoint` (this module's rf_bwd or the Triton kernel's: both take the same
    arguments)."""
    def backward(
        x: torch.Tensor, lam: torch.Tensor, weight: Optional[torch.Tensor], threshold: torch.Tensor,
        rho: Optional[torch.Tensor], kappa: Optional[torch.Tensor], h0: Optional[torch.Tensor],
        a0: Optional[torch.Tensor], zeta: torch.Tensor, a_prev: torch.Tensor, spikes: torch.Tensor,
        g_spikes: torch.Tensor, g_z: torch.Tensor, g_a: Optional[torch.Tensor], reset: str, surrogate: str,
        alpha: float, detach_reset: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
               torch.Tensor]:
        """(dx, dlam, dweight, dthreshold, drho, dkappa, dh0, da0); absent inputs get distinct empty placeholders
        (a custom op returns neither None nor one tensor twice)."""
        grads = adjoint(lam, weight, threshold, rho, kappa, h0, a0, zeta, a_prev, spikes, g_spikes, g_z, g_a,
                        reset, surrogate, alpha, detach_reset, x.dtype)
        return tuple(g if g is not None else x.new_empty(0) for g in grads)
    return backward


backward = backward_on(rf_bwd)


def backward_fake(x, lam, weight, threshold, rho, kappa, h0, a0, zeta, a_prev, spikes, g_spikes, g_z, g_a, reset,
                  surrogate, alpha, detach_reset):
    def like(t):
        return torch.empty_like(t) if t is not None else x.new_empty(0)

    return (torch.empty_like(x), torch.empty_like(lam), like(weight), torch.empty_like(threshold), like(rho),
            like(kappa), like(h0), like(a0))


def input_gradients(ctx, backward, g_spikes, _g_zeta, _g_a_prev, g_z, g_a):
    x, lam, weight, threshold, rho, kappa, h0, a0, zeta, a_prev, spikes = ctx.saved_tensors
    if not ctx.stored:
        raise RuntimeError("rf: the forward ran without saving the membranes (no input required grad when it ran)")
    grads = backward(x, lam, weight, threshold, rho, kappa, h0, a0, zeta, a_prev, spikes, g_spikes.contiguous(),
                     g_z.contiguous(), g_a.contiguous() if rho is not None else None, *ctx.options)
    present = (x, lam, weight, threshold, rho, kappa, h0, a0)
    return (*(g if t is not None else None for g, t in zip(grads, present)), None, None, None, None, None)


op = register(__name__)


def run_on(op):
    """The entry of a sequential implementation (this module's op or the Triton one): the shared argument
    handling around it."""
    def run(x, lam, weight, threshold, rho, kappa, h0, a0, *, reset: str, surrogate: str, alpha: float,
            detach_reset: bool, reverse: bool):
        """Spikes (B, L, H), the final membrane (B, H, K) and trace (B, H) or None; differentiable. Inputs checked,
        in the internal shapes above."""
        if reverse:
            x = x.flip(1)
        store = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, lam, weight, threshold, rho, kappa, h0, a0))

        def c(t):
            return t.contiguous() if t is not None else None

        spikes, _, _, zT, aT = op(x=x.contiguous(), lam=lam.contiguous(), weight=c(weight),
                                  threshold=threshold.contiguous(), rho=c(rho), kappa=c(kappa), h0=c(h0), a0=c(a0),
                                  reset=reset, surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                                  store=store)
        return (spikes.flip(1) if reverse else spikes), zT, (aT if rho is not None else None)
    return run


run = run_on(op)
