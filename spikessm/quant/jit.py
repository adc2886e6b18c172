"""Compiled (numba) forms of the integer graph's step-by-step loops, for the IntegerSimulator on the CPU.

The recurrences of spikessm.quant.layers (the SSM state, the LIF and RF membranes) are sequential in time and
each step is a handful of small integer operations; run as torch operations, one step costs some microseconds of
dispatch per operation. These kernels run the same equations on int64 arrays in one compiled loop. They are
a second form of the equations in spikessm.quant.layers, not new ones: the same shift_round (half up), the same
saturation bounds, every saturated value counted; tests/quant/test_quant_jit.py holds them equal to the torch
forms bit for bit on every deployable preset.

Each kernel takes the state (updated in place), the inputs of a piece of steps (B, l, S) and the parameters
broadcast to one value per state element (S,), writes the outputs of every step and returns the number of
saturated values. numba is optional (the extra `deploy`); `available()` says whether it imports.
"""
from __future__ import annotations

import numpy as np
import torch

from .fixed import bounds

try:
    import numba
except ImportError:  # the torch forms run instead; IntegerSimulator(backend="numba") says how to install it
    numba = None

RESETS = {"subtract": 0, "zero": 1, "none": 2}  # the readouts' reset modes as the kernels number them


def available() -> bool:
    return numba is not None


if numba is not None:
    # Each kernel runs its sequences' channels in parallel (prange over batch x channel): every element's loop in
    # time is independent of the others, so the integers and the counts are the same for any number of threads.
    jit = numba.njit(cache=True, parallel=True)

    @numba.njit(cache=True, inline="always")
    def _shift_round(n, k):
        if k > 0:
            return (n + (np.int64(1) << (k - 1))) >> k
        return n << (-k)

    @numba.njit(cache=True, inline="always")
    def _clip(n, low, high):
        """(n saturated to [low, high], 1 if it was clamped else 0)."""
        if n < low:
            return low, 1
        if n > high:
            return high, 1
        return n, 0

    @jit
    def _complex_recurrence(xr, xi, Ar, Ai, fA, bur, bui, low, high, outr, outi):
        count = 0
        B, L, S = bur.shape
        for bs in numba.prange(B * S):
            b, s = bs // S, bs % S
            r, i = xr[b, s], xi[b, s]
            for t in range(L):
                r, i = (_shift_round(Ar[s] * r - Ai[s] * i, fA[s]) + bur[b, t, s],
                        _shift_round(Ar[s] * i + Ai[s] * r, fA[s]) + bui[b, t, s])
                r, cr = _clip(r, low, high)
                i, ci = _clip(i, low, high)
                count += cr + ci
                outr[b, t, s], outi[b, t, s] = r, i
            xr[b, s], xi[b, s] = r, i
        return count

    @jit
    def _s4d_scan(xr, xi, u, Ar, Ai, fA, Br, Bi, kB, Cr, Ci, kC, skip, low, high, ylow, yhigh, y):
        state_count = 0
        y_count = 0
        B, L, H = u.shape
        M = Ar.shape[1]
        for bh in numba.prange(B * H):
            b, h = bh // H, bh % H
            for t in range(L):
                ut = u[b, t, h]
                acc = 0
                for m in range(M):
                    r, i = xr[b, h, m], xi[b, h, m]
                    r, i = (_shift_round(Ar[h, m] * r - Ai[h, m] * i, fA[h, m]) + _shift_round(Br[h, m] * ut, kB[h, m]),
                            _shift_round(Ar[h, m] * i + Ai[h, m] * r, fA[h, m]) + _shift_round(Bi[h, m] * ut, kB[h, m]))
                    r, cr = _clip(r, low, high)
                    i, ci = _clip(i, low, high)
                    state_count += cr + ci
                    xr[b, h, m], xi[b, h, m] = r, i
                    acc += Cr[h, m] * r - Ci[h, m] * i
                yt, cy = _clip(_shift_round(acc, kC[h]) + skip[b, t, h], ylow, yhigh)
                y_count += cy
                y[b, t, h] = yt
        return state_count, y_count

    @jit
    def _lif_readout(v, y, beta, fbeta, theta, low, high, reset, fire_on_tie, spikes):
        count = 0
        B, L, H = y.shape
        for bh in numba.prange(B * H):
            b, h = bh // H, bh % H
            m = v[b, h]
            for t in range(L):
                m, c1 = _clip(_shift_round(beta[h] * m, fbeta) + y[b, t, h], low, high)
                fired = m >= theta[h] if fire_on_tie else m > theta[h]
                c2 = 0
                if fired:
                    if reset == 0:
                        m, c2 = _clip(m - theta[h], low, high)
                    elif reset == 1:
                        m = 0
                count += c1 + c2
                spikes[b, t, h] = 1 if fired else 0
            v[b, h] = m
        return count

    @jit
    def _rf_readout(vr, vi, y, Lr, Li, fL, theta, low, high, reset, fire_on_tie, spikes):
        count = 0
        B, L, H = y.shape
        for bh in numba.prange(B * H):
            b, h = bh // H, bh % H
            r, i = vr[b, h], vi[b, h]
            for t in range(L):
                r, i = (_shift_round(Lr[h] * r - Li[h] * i, fL[h]) + y[b, t, h],
                        _shift_round(Lr[h] * i + Li[h] * r, fL[h]))
                r, cr = _clip(r, low, high)
                i, ci = _clip(i, low, high)
                fired = r >= theta[h] if fire_on_tie else r > theta[h]
                c2 = 0
                if fired:
                    if reset == 0:
                        r, c2 = _clip(r - theta[h], low, high)
                    elif reset == 1:
                        r, i = 0, 0
                count += cr + ci + c2
                spikes[b, t, h] = 1 if fired else 0
            vr[b, h], vi[b, h] = r, i
        return count


def _threads() -> None:
    """numba's threads follow torch's (torch.set_num_threads), so both sides of a comparison use the same."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _per_element(value, shape) -> np.ndarray:
    """A parameter (0-d, or broadcasting against `shape`) as one int64 per element, flat."""
    value = torch.as_tensor(value, dtype=torch.int64)
    return torch.broadcast_to(value, shape).reshape(-1).contiguous().numpy()


def _flat(x: torch.Tensor, lead: int, copy: bool = False) -> np.ndarray:
    """x with its first `lead` dimensions kept and the rest flattened, as a contiguous int64 array (a copy where
    the kernel writes into it: the caller's state tensors stay as they were)."""
    x = x.reshape(*x.shape[:lead], -1).contiguous()
    return (x.clone() if copy else x).numpy()


def complex_recurrence(xr, xi, Ar, Ai, fA, bu_r, bu_i, low: int, high: int):
    """x_t = sat(((A x_{t-1}) >> fA) + Bu_t) over the steps of bu (B, l, *state): ((re, im) of every step,
    (re, im) of the last, the saturation count). xr, xi (B, *state); Ar, Ai, fA broadcast against the state."""
    _threads()
    state = tuple(xr.shape[1:])
    r, i = _flat(xr, 1, copy=True), _flat(xi, 1, copy=True)
    bur, bui = _flat(bu_r, 2), _flat(bu_i, 2)
    outr, outi = np.empty_like(bur), np.empty_like(bui)
    count = _complex_recurrence(r, i, _per_element(Ar, state), _per_element(Ai, state), _per_element(fA, state),
                                bur, bui, low, high, outr, outi)
    shape = bu_r.shape
    return (torch.from_numpy(outr).reshape(shape), torch.from_numpy(outi).reshape(shape),
            torch.from_numpy(r).reshape(xr.shape), torch.from_numpy(i).reshape(xi.shape), count)


def s4d_scan(xr, xi, u, skip, p: dict, state_bits: int, membrane_bits: int):
    """S4D's state and output y over the steps of u (B, l, H), fused: B u, the recurrence and C x mode by mode, so
    no (B, l, H, M) tensor is formed. xr, xi (B, H, M); skip the D u term (B, l, H); p the layer's integer
    parameters. Returns (y (B, l, H), last xr, last xi, state saturations, y saturations)."""
    _threads()
    shape = tuple(xr.shape[1:])
    r, i = _flat(xr, 1, copy=True).reshape(xr.shape), _flat(xi, 1, copy=True).reshape(xi.shape)
    y = np.empty(tuple(u.shape), dtype=np.int64)
    full = {key: _per_element(p[key], shape).reshape(shape) for key in ("Ar", "Ai", "fA", "Br", "Bi", "kB", "Cr", "Ci")}
    (low, high), (ylow, yhigh) = bounds(state_bits), bounds(membrane_bits)
    counts = _s4d_scan(r, i, u.contiguous().numpy(), full["Ar"], full["Ai"], full["fA"], full["Br"], full["Bi"],
                       full["kB"], full["Cr"], full["Ci"], _per_element(p["kC"], shape[:1]), skip.contiguous().numpy(),
                       low, high, ylow, yhigh, y)
    return (torch.from_numpy(y), torch.from_numpy(r), torch.from_numpy(i)) + tuple(counts)


def lif_readout(v, y, beta, fbeta: int, theta, low: int, high: int, reset: str, fire_on_tie: bool):
    """The LIF membrane over the steps of y (B, l, H) from v (B, H): (spikes (B, l, H), last v, count)."""
    _threads()
    H = y.shape[-1]
    m, ys = _flat(v, 1, copy=True), _flat(y, 2)
    spikes = np.empty_like(ys)
    count = _lif_readout(m, ys, _per_element(beta, (H,)), fbeta, _per_element(theta, (H,)), low, high,
                         RESETS[reset], fire_on_tie, spikes)
    return torch.from_numpy(spikes), torch.from_numpy(m).reshape(v.shape), count


def rf_readout(vr, vi, y, Lr, Li, fL, theta, low: int, high: int, reset: str, fire_on_tie: bool):
    """The RF membrane (complex, y on the real axis) over the steps of y (B, l, H) from (vr, vi) (B, H):
    (spikes (B, l, H), last vr, last vi, count)."""
    _threads()
    H = y.shape[-1]
    r, i, ys = _flat(vr, 1, copy=True), _flat(vi, 1, copy=True), _flat(y, 2)
    spikes = np.empty_like(ys)
    count = _rf_readout(r, i, ys, _per_element(Lr, (H,)), _per_element(Li, (H,)), _per_element(fL, (H,)),
                        _per_element(theta, (H,)), low, high, RESETS[reset], fire_on_tie, spikes)
    return torch.from_numpy(spikes), torch.from_numpy(r).reshape(vr.shape), torch.from_numpy(i).reshape(vi.shape), count
