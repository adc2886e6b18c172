"""Resonate-and-fire neurons over a sequence: forward and backward, the complex membrane in registers.

    zeta_t = lam z_{t-1} + x_t;   m_t = sum_k w_k Re zeta_t[k];   th_t = threshold + kappa a_{t-1}
    s_t = H(m_t - th_t);          a_t = rho a_{t-1} + s_t;        z_t = R(zeta_t, s_t, th_t)
    (R: subtract Re zeta - th s | zero zeta (1 - s) | none zeta; K branches per neuron; a only with ADAPT)

Forward. One program per (block of BLOCK_H neurons, batch element) holds the (BLOCK_H, BLOCK_K) complex membrane
as real and imaginary planes in registers and walks time in order, one step at a time: 4 multiply-adds per branch
for lam z + x, one per branch for the soma's sum, a compare and the reset. The reset makes the walk non-linear,
so time is not cut into parallel pieces; B x H neurons are the parallelism (for the linear membrane without a
reset, rf's "parallel" algorithm runs diag_scan instead). Each step reads one (BLOCK_H,) input vector, fetched
one step ahead; spikes are gathered into (BLOCK_H, T) tiles and written every T steps. With STORE (gradients
wanted) every step also writes its pre-reset membrane zeta as (re, im) planes of a (B, L, 2, H, K) tensor, and
with ADAPT the trace a_{t-1} its threshold read.

Backward. The adjoint of the walk (spikessm/ops/rf/torch_sequential.py derives it) is linear in the gradients
(Gz, Ga) of the membrane and the trace, with per-step coefficients from the saved zeta, the spikes and a_{t-1}:
one reverse walk carries Gz (complex, per branch) and Ga in registers, sums the parameters' gradients, and writes
dx in (BLOCK_H, T) tiles. The membrane after step t - 1's reset, which dlam needs, is rebuilt from step t - 1's
saved zeta and spike, loaded one step ahead (it is the next step's data).

Parameters go to the kernels as planes: lam (2, H, K) (re, im), weight (H, K); states as (B, 2, H, K). The state
dtype is the planes' dtype (float32, or float64 for float64 inputs).
"""
import torch
import triton
import triton.language as tl

from .common.launch import cdiv, next_power_of_2
from .common.neuron import RESET_CODES, SURROGATE_CODES, surrogate_alpha, surrogate_derivative


@triton.jit
def _column(tile, cols, j: tl.constexpr, value):
    """tile with column j (a compile-time index) replaced by value: a register move."""
    return tl.where(cols[None, :] == j, value[:, None], tile)


@triton.jit
def _load_vec(ptr, row, i, L, H, mask_h, acc_dtype):
    """(BLOCK_H,) values of step i of a (B, L, H) tensor; zeros outside 0 .. L - 1."""
    ok = tl.where((i >= 0) & (i < L), mask_h, False)
    return tl.load(ptr + row + i * H, mask=ok, other=0.0).to(acc_dtype)


@triton.jit
def _load_planes(ptr, base, i, L, HK, hk, mask_hk):
    """(re, im) (BLOCK_H, BLOCK_K) planes of step i of a (B, L, 2, H, K) tensor (base: batch element's start);
    zeros outside 0 .. L - 1."""
    ok = tl.where((i >= 0) & (i < L), mask_hk, False)
    at = ptr + base + i * 2 * HK + hk
    return tl.load(at, mask=ok, other=0.0), tl.load(at + HK, mask=ok, other=0.0)


@triton.jit
def _load_neurons(lam_ptr, w_ptr, th_ptr, rho_ptr, kappa_ptr, H, K, HAS_W: tl.constexpr, ADAPT: tl.constexpr,
                  BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    """The program's neurons (block program_id(0)) and their parameters: offsets and masks of the (BLOCK_H,)
    neurons and (BLOCK_H, BLOCK_K) branches, lam's planes, the soma's weights (1 without HAS_W; 0 on padded
    branches, which so add nothing), the threshold, and rho and kappa (zeros without ADAPT)."""
    acc_dtype = lam_ptr.dtype.element_ty
    offs_h = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_k = tl.arange(0, BLOCK_K)
    mask_h = offs_h < H
    mask_hk = mask_h[:, None] & (offs_k[None, :] < K)
    hk = offs_h[:, None] * K + offs_k[None, :]
    lr = tl.load(lam_ptr + hk, mask=mask_hk, other=0.0)
    li = tl.load(lam_ptr + H * K + hk, mask=mask_hk, other=0.0)
    if HAS_W:
        w = tl.load(w_ptr + hk, mask=mask_hk, other=0.0)
    else:
        w = tl.where(mask_hk, 1.0, 0.0).to(acc_dtype)
    th = tl.load(th_ptr + offs_h, mask=mask_h, other=0.0)
    rho = tl.zeros([BLOCK_H], dtype=acc_dtype)
    kappa = rho
    if ADAPT:
        rho = tl.load(rho_ptr + offs_h, mask=mask_h, other=0.0)
        kappa = tl.load(kappa_ptr + offs_h, mask=mask_h, other=0.0)
    return offs_h, mask_h, mask_hk, hk, lr, li, w, th, rho, kappa


@triton.jit
def _reset(zr, zi, spiked, th, RESET: tl.constexpr):
    """The membrane after the reset: zr, zi (BLOCK_H, BLOCK_K) planes, spiked (BLOCK_H,) bool, th the threshold
    that fired."""
    if RESET == 0:
        zr = zr - tl.where(spiked, th, 0.0)[:, None]
    elif RESET == 1:
        zr = tl.where(spiked[:, None], 0.0, zr)
        zi = tl.where(spiked[:, None], 0.0, zi)
    return zr, zi


@triton.jit
def rf_fwd_kernel(
    x_ptr, lam_ptr, w_ptr, th_ptr, rho_ptr, kappa_ptr, h0_ptr, a0_ptr,
    s_ptr, zeta_ptr, aprev_ptr, zT_ptr, aT_ptr,
    L, H, K,
    HAS_W: tl.constexpr, HAS_H0: tl.constexpr, HAS_A0: tl.constexpr, ADAPT: tl.constexpr, RESET: tl.constexpr,
    STORE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, T: tl.constexpr,
):
    """Spikes (B, L, H); with STORE zeta (B, L, 2, H, K) and (ADAPT) a_prev (B, L, H); final zT (B, 2, H, K) and
    (ADAPT) aT (B, H)."""
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = lam_ptr.dtype.element_ty
    offs_h, mask_h, mask_hk, hk, lr, li, w, th, rho, kappa = _load_neurons(
        lam_ptr, w_ptr, th_ptr, rho_ptr, kappa_ptr, H, K, HAS_W, ADAPT, BLOCK_H, BLOCK_K)
    HK = H * K
    state = pid_b * 2 * HK + hk
    zr = tl.zeros([BLOCK_H, BLOCK_K], dtype=acc_dtype)
    zi = tl.zeros([BLOCK_H, BLOCK_K], dtype=acc_dtype)
    if HAS_H0:
        zr = tl.load(h0_ptr + state, mask=mask_hk, other=0.0)
        zi = tl.load(h0_ptr + HK + state, mask=mask_hk, other=0.0)
    a = tl.zeros([BLOCK_H], dtype=acc_dtype)
    if ADAPT:
        if HAS_A0:
            a = tl.load(a0_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0)

    row = pid_b * L * H + offs_h
    zeta_base = pid_b * L * 2 * HK
    cols = tl.arange(0, T)
    n_chunks = tl.cdiv(L, T)
    # When T does not divide L the first chunk starts before step 0: those steps read zeros and change nothing
    # (every update is masked by `live`), so the walk ends exactly at step L - 1.
    first = L - n_chunks * T
    x_next = _load_vec(x_ptr, row, first, L, H, mask_h, acc_dtype)
    for c in range(0, n_chunks):
        s_tile = tl.zeros([BLOCK_H, T], dtype=acc_dtype)
        for j in tl.static_range(T):
            i = first + c * T + j
            x = x_next
            x_next = _load_vec(x_ptr, row, i + 1, L, H, mask_h, acc_dtype)
            live = i >= 0
            nr = lr * zr - li * zi + x[:, None]
            ni = lr * zi + li * zr
            m = tl.sum(w * nr, axis=1)
            th_i = th
            if ADAPT:
                th_i = th + kappa * a
            spiked = m > th_i
            sp = spiked.to(acc_dtype)
            if STORE:
                ok = tl.where(live, mask_hk, False)
                at = zeta_ptr + zeta_base + i * 2 * HK + hk
                tl.store(at, nr, mask=ok)
                tl.store(at + HK, ni, mask=ok)
                if ADAPT:
                    tl.store(aprev_ptr + row + i * H, a, mask=tl.where(live, mask_h, False))
            if ADAPT:
                a = tl.where(live, rho * a + sp, a)
            nr, ni = _reset(nr, ni, spiked, th_i, RESET)
            zr = tl.where(live, nr, zr)
            zi = tl.where(live, ni, zi)
            s_tile = _column(s_tile, cols, j, sp)
        t = first + c * T + cols
        tl.store(s_ptr + row[:, None] + t[None, :] * H, s_tile.to(s_ptr.dtype.element_ty),
                 mask=mask_h[:, None] & (t >= 0)[None, :])
    tl.store(zT_ptr + state, zr, mask=mask_hk)
    tl.store(zT_ptr + HK + state, zi, mask=mask_hk)
    if ADAPT:
        tl.store(aT_ptr + pid_b * H + offs_h, a, mask=mask_h)


@triton.jit
def rf_bwd_kernel(
    lam_ptr, w_ptr, th_ptr, rho_ptr, kappa_ptr, h0_ptr, zeta_ptr, aprev_ptr, s_ptr, gs_ptr, gz_ptr, ga_ptr,
    alpha_ptr, dx_ptr, dlam_ptr, dw_ptr, dth_ptr, drho_ptr, dkappa_ptr, dh0_ptr, da0_ptr,
    L, H, K,
    HAS_W: tl.constexpr, HAS_H0: tl.constexpr, HAS_A0: tl.constexpr, HAS_GZ: tl.constexpr, HAS_GA: tl.constexpr,
    ADAPT: tl.constexpr, RESET: tl.constexpr, SURROGATE: tl.constexpr, DETACH_RESET: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, T: tl.constexpr,
):
    """Reverse walk of the adjoint. Writes dx (B, L, H) and, per batch element, the partial sums dlam
    (B, 2, H, K), dw (B, H, K), dthreshold, drho, dkappa (B, H); dh0 (B, 2, H, K) and da0 (B, H) when the
    initial state had them. gz (B, 2, H, K) and ga (B, H): the final state's gradients (zeros when absent)."""
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = lam_ptr.dtype.element_ty
    alpha = tl.load(alpha_ptr)
    offs_h, mask_h, mask_hk, hk, lr, li, w, th, rho, kappa = _load_neurons(
        lam_ptr, w_ptr, th_ptr, rho_ptr, kappa_ptr, H, K, HAS_W, ADAPT, BLOCK_H, BLOCK_K)
    HK = H * K
    zero_h = tl.zeros([BLOCK_H], dtype=acc_dtype)
    zero_hk = tl.zeros([BLOCK_H, BLOCK_K], dtype=acc_dtype)
    state = pid_b * 2 * HK + hk
    h0r = zero_hk
    h0i = zero_hk
    if HAS_H0:
        h0r = tl.load(h0_ptr + state, mask=mask_hk, other=0.0)
        h0i = tl.load(h0_ptr + HK + state, mask=mask_hk, other=0.0)
    Gzr = zero_hk
    Gzi = zero_hk
    if HAS_GZ:
        Gzr = tl.load(gz_ptr + state, mask=mask_hk, other=0.0)
        Gzi = tl.load(gz_ptr + HK + state, mask=mask_hk, other=0.0)
    Ga = zero_h
    if ADAPT and HAS_GA:
        Ga = tl.load(ga_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0)
    dlr = zero_hk
    dli = zero_hk
    dw = zero_hk
    dth = zero_h
    drho = zero_h
    dkappa = zero_h

    row = pid_b * L * H + offs_h
    zeta_base = pid_b * L * 2 * HK
    cols = tl.arange(0, T)
    n_chunks = tl.cdiv(L, T)
    top = n_chunks * T - 1  # the walk starts at the last step of the last chunk (steps >= L change nothing)
    # step i's data, and step i - 1's (its predecessor's membrane, and the next step's own data)
    zr, zi = _load_planes(zeta_ptr, zeta_base, top, L, HK, hk, mask_hk)
    s = _load_vec(s_ptr, row, top, L, H, mask_h, acc_dtype)
    pr, pi = _load_planes(zeta_ptr, zeta_base, top - 1, L, HK, hk, mask_hk)
    ps = _load_vec(s_ptr, row, top - 1, L, H, mask_h, acc_dtype)
    ap = zero_h
    pap = zero_h
    if ADAPT:
        ap = _load_vec(aprev_ptr, row, top, L, H, mask_h, acc_dtype)
        pap = _load_vec(aprev_ptr, row, top - 1, L, H, mask_h, acc_dtype)
    gs_next = _load_vec(gs_ptr, row, top, L, H, mask_h, acc_dtype)
    for kk in range(0, n_chunks):
        c = n_chunks - 1 - kk
        dx_tile = tl.zeros([BLOCK_H, T], dtype=acc_dtype)
        for jj in tl.static_range(T):
            j = T - 1 - jj  # compile-time: the loop is unrolled
            i = c * T + j
            live = i < L
            gs = gs_next
            gs_next = _load_vec(gs_ptr, row, i - 1, L, H, mask_h, acc_dtype)
            th_i = th
            th_p = th
            if ADAPT:
                th_i = th + kappa * ap
                th_p = th + kappa * pap
            m = tl.sum(w * zr, axis=1)
            sigma = surrogate_derivative(m - th_i, alpha, SURROGATE)
            Gs = gs
            if ADAPT:
                Gs = gs + Ga
            gz_re = tl.sum(Gzr, axis=1)  # the one branch's Re Gz, for subtract
            if not DETACH_RESET:
                if RESET == 0:
                    Gs = Gs - th_i * gz_re
                elif RESET == 1:
                    Gs = Gs - tl.sum(zr * Gzr + zi * Gzi, axis=1)
            Gm = Gs * sigma
            Gth = -Gm
            if RESET == 0:
                Gth = Gth - s * gz_re
            if RESET == 1:
                keep = (1.0 - s)[:, None]
                Gr = keep * Gzr + w * Gm[:, None]
                Gi = keep * Gzi
            else:
                Gr = Gzr + w * Gm[:, None]
                Gi = Gzi
            # z_{i-1}: step i - 1's membrane after its reset, or h0 before step 0
            qr, qi = _reset(pr, pi, ps > 0.5, th_p, RESET)
            qr = tl.where(i > 0, qr, h0r)
            qi = tl.where(i > 0, qi, h0i)
            dlr += tl.where(live, Gr * qr + Gi * qi, 0.0)
            dli += tl.where(live, Gi * qr - Gr * qi, 0.0)
            if HAS_W:
                dw += tl.where(live, Gm[:, None] * zr, 0.0)
            dth += tl.where(live, Gth, 0.0)
            if ADAPT:
                dkappa += tl.where(live, Gth * ap, 0.0)
                drho += tl.where(live, Ga * ap, 0.0)
                Ga = tl.where(live, rho * Ga + kappa * Gth, Ga)
            Gzr = tl.where(live, lr * Gr + li * Gi, Gzr)
            Gzi = tl.where(live, lr * Gi - li * Gr, Gzi)
            dx_tile = _column(dx_tile, cols, j, tl.sum(Gr, axis=1))
            # step i - 1 becomes the current step; step i - 2 is fetched
            zr, zi, s, ap = pr, pi, ps, pap
            pr, pi = _load_planes(zeta_ptr, zeta_base, i - 2, L, HK, hk, mask_hk)
            ps = _load_vec(s_ptr, row, i - 2, L, H, mask_h, acc_dtype)
            if ADAPT:
                pap = _load_vec(aprev_ptr, row, i - 2, L, H, mask_h, acc_dtype)
        t = c * T + cols
        tl.store(dx_ptr + row[:, None] + t[None, :] * H, dx_tile.to(dx_ptr.dtype.element_ty),
                 mask=mask_h[:, None] & (t < L)[None, :])
    tl.store(dlam_ptr + state, dlr, mask=mask_hk)
    tl.store(dlam_ptr + HK + state, dli, mask=mask_hk)
    per_batch = pid_b * H + offs_h
    if HAS_W:
        tl.store(dw_ptr + pid_b * HK + hk, dw, mask=mask_hk)
    tl.store(dth_ptr + per_batch, dth, mask=mask_h)
    if ADAPT:
        tl.store(drho_ptr + per_batch, drho, mask=mask_h)
        tl.store(dkappa_ptr + per_batch, dkappa, mask=mask_h)
        if HAS_A0:
            tl.store(da0_ptr + per_batch, Ga, mask=mask_h)
    if HAS_H0:
        tl.store(dh0_ptr + state, Gzr, mask=mask_hk)
        tl.store(dh0_ptr + HK + state, Gzi, mask=mask_hk)


# ----------------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------------

# Spikes and dx are gathered into (BLOCK_H, T) tiles and written every T steps, as the sequential S4D kernel
# does. A program holds MAX_BLOCK_H neurons, one per lane of one warp; a neuron's branches stay in its lane (the
# soma's sum is then a register reduction), and a second warp joins only beyond 8 branches per lane. From sm_90
# compiles (benchmarks/kernel_resources.py), not timings: at 8 branches one warp holds 166 (forward) and 186
# (backward) registers without spilling, while two warps exchange the per-step vectors through shared memory
# (18 barriers per chunk forward instead of 8).
T = 8
MAX_BLOCK_H = 32
MAX_WARPS = 4


def launch_config(H: int, K: int) -> tuple[int, int, int]:
    """(BLOCK_H, BLOCK_K, num_warps) for H neurons of K branches."""
    block_k = next_power_of_2(K)
    block_h = min(next_power_of_2(H), MAX_BLOCK_H)
    warps = max(1, min(MAX_WARPS, block_h * block_k // 256))
    return block_h, block_k, warps


def planes(t: torch.Tensor) -> torch.Tensor:
    """(..., H, K) complex -> (..., 2, H, K) real (re, im) planes, contiguous."""
    return torch.stack((t.real, t.imag), -3).contiguous()


def from_planes(p: torch.Tensor) -> torch.Tensor:
    """Inverse of planes."""
    return torch.complex(p.select(-3, 0), p.select(-3, 1))


def rf_fwd(x, lam, weight, threshold, rho, kappa, h0, a0, reset: str, store: bool):
    """Same arguments and results as spikessm/ops/rf/torch_sequential.py's rf_fwd (x (B, L, H) contiguous, lam
    (H, K) complex, the others in the real state dtype), but zeta and a_prev are empty tensors unless store."""
    B, L, H = x.shape
    K = lam.shape[1]
    real = lam.real.dtype
    block_h, block_k, warps = launch_config(H, K)
    adaptive = rho is not None
    spikes = torch.empty_like(x)
    zeta = torch.empty((B, L, 2, H, K) if store else (0,), dtype=real, device=x.device)
    a_prev = torch.empty((B, L, H) if store and adaptive else (0,), dtype=real, device=x.device)
    zT = torch.empty((B, 2, H, K), dtype=real, device=x.device)
    aT = torch.empty((B, H) if adaptive else (0,), dtype=real, device=x.device)
    spare = zT  # stands in for absent pointers; never read or written
    rf_fwd_kernel[(cdiv(H, block_h), B)](
        x, planes(lam), weight if weight is not None else spare, threshold, rho if adaptive else spare,
        kappa if adaptive else spare, planes(h0) if h0 is not None else spare, a0 if a0 is not None else spare,
        spikes, zeta, a_prev, zT, aT,
        L, H, K,
        HAS_W=weight is not None, HAS_H0=h0 is not None, HAS_A0=a0 is not None, ADAPT=adaptive,
        RESET=RESET_CODES[reset], STORE=store, BLOCK_H=block_h, BLOCK_K=block_k, T=T, num_warps=warps,
    )
    return spikes, zeta, a_prev, from_planes(zT), aT


def rf_bwd(lam, weight, threshold, rho, kappa, h0, a0, zeta, a_prev, spikes, g_spikes, g_z, g_a, reset: str,
           surrogate: str, alpha: float, detach_reset: bool, x_dtype: torch.dtype):
    """Same arguments and results as torch_sequential.rf_bwd; spikes and g_spikes (B, L, H) contiguous."""
    B, L, _, H, K = zeta.shape
    real = lam.real.dtype
    block_h, block_k, warps = launch_config(H, K)
    adaptive = rho is not None
    device = zeta.device
    dx = torch.empty((B, L, H), dtype=x_dtype, device=device)
    dlam = torch.empty((B, 2, H, K), dtype=real, device=device)
    dw = torch.empty((B, H, K) if weight is not None else (0,), dtype=real, device=device)
    dth = torch.empty((B, H), dtype=real, device=device)
    drho, dkappa = (torch.empty((B, H) if adaptive else (0,), dtype=real, device=device) for _ in range(2))
    dh0 = torch.empty((B, 2, H, K), dtype=real, device=device) if h0 is not None else None
    da0 = torch.empty((B, H), dtype=real, device=device) if adaptive and a0 is not None else None
    spare = dth  # stands in for absent pointers; never read or written

    def arg(t):
        return t if t is not None else spare

    rf_bwd_kernel[(cdiv(H, block_h), B)](
        planes(lam), arg(weight), threshold, arg(rho), arg(kappa), arg(planes(h0) if h0 is not None else None),
        zeta, a_prev if adaptive else spare, spikes, g_spikes, arg(planes(g_z) if g_z is not None else None),
        arg(g_a), surrogate_alpha(alpha, real, device), dx, dlam, dw, dth, drho, dkappa, arg(dh0), arg(da0),
        L, H, K,
        HAS_W=weight is not None, HAS_H0=h0 is not None, HAS_A0=da0 is not None, HAS_GZ=g_z is not None,
        HAS_GA=g_a is not None, ADAPT=adaptive, RESET=RESET_CODES[reset], SURROGATE=SURROGATE_CODES[surrogate],
        DETACH_RESET=detach_reset, BLOCK_H=block_h, BLOCK_K=block_k, T=T, num_warps=warps,
    )
    sums = dlam.sum(0)
    return (dx, torch.complex(sums[0], sums[1]), dw.sum(0) if weight is not None else None, dth.sum(0),
            drho.sum(0) if adaptive else None, dkappa.sum(0) if adaptive else None,
            from_planes(dh0) if dh0 is not None else None, da0)
