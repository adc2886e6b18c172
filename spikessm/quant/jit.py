"""Compiled (numba) forms of the integer graph's hot loops, for the IntegerSimulator on the CPU.

The recurrences of spikessm.quant.layers (the SSM state, the LIF and RF membranes) are sequential in time and
each step is a handful of small integer operations; the GSU is a dozen small integer operations per token. Run as
torch operations, each costs some microseconds of dispatch and a pass over memory per intermediate. These kernels
run the same equations on int64 arrays in one compiled loop. They are a second form of the equations in
spikessm.quant.layers, not new ones: the same shift_round (half up), the same saturation bounds, every saturated
value counted; tests/quant/test_quant_jit.py holds them equal to the torch forms bit for bit on every deployable
preset.

The wrappers (complex_recurrence, s4d_scan, lif_readout, rf_readout, gsu) take torch tensors, broadcast each
parameter to one value per element, run the kernel on copies of the state (the caller's tensors stay as they
were) and return torch tensors with the saturation counts. numba is optional (the extra `deploy`); `available()`
says whether it imports.
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

    @numba.njit(cache=True, inline="always")
    def _complex_step(r, i, ar, ai, k, add_r, add_i, low, high):
        """layers.complex_step on scalars: (re, im) of sat(((a x) >> k) + add), and how many of the two clipped."""
        r, i = _shift_round(ar * r - ai * i, k) + add_r, _shift_round(ar * i + ai * r, k) + add_i
        r, cr = _clip(r, low, high)
        i, ci = _clip(i, low, high)
        return r, i, cr + ci

    @jit
    def _complex_recurrence(xr, xi, Ar, Ai, fA, bur, bui, low, high, outr, outi):
        count = 0
        B, L, S = bur.shape
        for bs in numba.prange(B * S):
            b, s = bs // S, bs % S
            r, i = xr[b, s], xi[b, s]
            for t in range(L):
                r, i, clipped = _complex_step(r, i, Ar[s], Ai[s], fA[s], bur[b, t, s], bui[b, t, s], low, high)
                count += clipped
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
                    r, i, clipped = _complex_step(xr[b, h, m], xi[b, h, m], Ar[h, m], Ai[h, m], fA[h, m],
                                                  _shift_round(Br[h, m] * ut, kB[h, m]),
                                                  _shift_round(Bi[h, m] * ut, kB[h, m]), low, high)
                    state_count += clipped
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
                r, i, clipped = _complex_step(r, i, Lr[h], Li[h], fL[h], y[b, t, h], 0, low, high)
                fired = r >= theta[h] if fire_on_tie else r > theta[h]
                c2 = 0
                if fired:
                    if reset == 0:
                        r, c2 = _clip(r - theta[h], low, high)
                    elif reset == 1:
                        r, i = 0, 0
                count += clipped + c2
                spikes[b, t, h] = 1 if fired else 0
            vr[b, h], vi[b, h] = r, i
        return count

    @numba.njit(cache=True, inline="always")
    def _div_round(n, d):
        return (2 * n + d) // (2 * d)

    @numba.njit(cache=True, inline="always")
    def _sqrt_round(n):
        s = np.int64(np.sqrt(np.float64(n)))
        if s * s > n:
            s -= 1
        if (s + 1) * (s + 1) <= n:
            s += 1
        return s + (1 if n > s * s + s else 0)

    @jit
    def _gsu(x, W, bias, m_a, k_a, TWt, q, q_shift, k_g, k_p, G, norm_b, eps, m_n, k_n, E, fn, table, lut_shift,
             half, k_out, act_low, act_high, acc_low, acc_high, counts, out):
        N, H = x.shape
        for n in numba.prange(N):
            xs = x[n]
            largest = 0
            for h in range(H):
                largest = max(largest, abs(xs[h]))
            delta = _shift_round(largest * q, q_shift)
            t = np.empty(H, np.int64)
            for h in range(H):
                t[h] = (1 if xs[h] > delta else 0) - (1 if xs[h] < -delta else 0)
            prod = np.empty(H, np.int64)
            c = np.zeros(counts.shape[1], np.int64)
            for j in range(H):
                acc = bias[j]
                acc_g = 0
                for h in range(H):
                    acc += t[h] * W[j, h]
                    acc_g += xs[h] * TWt[j, h]
                acc, c0 = _clip(acc, acc_low, acc_high)
                a, c1 = _clip(_shift_round(acc * m_a[j], k_a[j]), act_low, act_high)
                acc_g, c2 = _clip(acc_g, acc_low, acc_high)
                g, c3 = _clip(_shift_round(acc_g, k_g), act_low, act_high)
                prod[j], c4 = _clip(_shift_round(a * g, k_p), act_low, act_high)
                c[0] += c0
                c[1] += c1
                c[2] += c2
                c[3] += c3
                c[4] += c4
            total = 0
            for j in range(H):
                total += prod[j]
            mean = _div_round(total << E, H)
            squares = 0
            for j in range(H):
                prod[j] = (prod[j] << E) - mean
                squares += prod[j] * prod[j]
            sd = _sqrt_round(max(_div_round(squares, H) + eps, 1))
            for j in range(H):
                v, c5 = _clip(_div_round(prod[j] << fn, sd), act_low, act_high)
                v, c6 = _clip(v * G[j] + norm_b[j], acc_low, acc_high)
                z, c7 = _clip(_shift_round(v * m_n[j], k_n[j]), act_low, act_high)
                index = min(max(_shift_round(z, lut_shift), -half), half) + half
                out[n, j], c8 = _clip(_shift_round(z * table[index], k_out), act_low, act_high)
                c[5] += c5
                c[6] += c6
                c[7] += c7
                c[8] += c8
            counts[n] = c


# GSU saturation points in the order _gsu counts them (the names spikessm.quant.layers.GSULayer gives them).
GSU_POINTS = ("a.acc", "a", "g.acc", "g", "prod", "norm.normalized", "norm.acc", "norm", "out")


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


def complex_recurrence(xr, xi, Ar, Ai, fA, bu_r, bu_i, bits: int):
    """x_t = sat(((A x_{t-1}) >> fA) + Bu_t) over the steps of bu (B, l, *state): ((re, im) of every step,
    (re, im) of the last, the saturation count). xr, xi (B, *state); Ar, Ai, fA broadcast against the state."""
    _threads()
    state = tuple(xr.shape[1:])
    r, i = _flat(xr, 1, copy=True), _flat(xi, 1, copy=True)
    bur, bui = _flat(bu_r, 2), _flat(bu_i, 2)
    outr, outi = np.empty_like(bur), np.empty_like(bui)
    low, high = bounds(bits)
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


def lif_readout(v, y, beta, fbeta: int, theta, bits: int, reset: str, fire_on_tie: bool):
    """The LIF membrane over the steps of y (B, l, H) from v (B, H): (spikes (B, l, H), last v, count)."""
    _threads()
    H = y.shape[-1]
    m, ys = _flat(v, 1, copy=True), _flat(y, 2)
    spikes = np.empty_like(ys)
    low, high = bounds(bits)
    count = _lif_readout(m, ys, _per_element(beta, (H,)), fbeta, _per_element(theta, (H,)), low, high,
                         RESETS[reset], fire_on_tie, spikes)
    return torch.from_numpy(spikes), torch.from_numpy(m).reshape(v.shape), count


def rf_readout(vr, vi, y, Lr, Li, fL, theta, bits: int, reset: str, fire_on_tie: bool):
    """The RF membrane (complex, y on the real axis) over the steps of y (B, l, H) from (vr, vi) (B, H):
    (spikes (B, l, H), last vr, last vi, count)."""
    _threads()
    H = y.shape[-1]
    r, i, ys = _flat(vr, 1, copy=True), _flat(vi, 1, copy=True), _flat(y, 2)
    spikes = np.empty_like(ys)
    low, high = bounds(bits)
    count = _rf_readout(r, i, ys, _per_element(Lr, (H,)), _per_element(Li, (H,)), _per_element(fL, (H,)),
                        _per_element(theta, (H,)), low, high, RESETS[reset], fire_on_tie, spikes)
    return torch.from_numpy(spikes), torch.from_numpy(r).reshape(vr.shape), torch.from_numpy(i).reshape(vi.shape), count


def gsu(x, p: dict, fracs: dict, f: int, config, E: int, fn: int):
    """The GSU of spikessm.quant.layers.GSULayer over every token of x (B, l, H), fused per token: (out (B, l, H),
    saturation counts in the order of GSU_POINTS). p: the layer's integer parameters; fracs its formats; E, fn
    the LayerNorm's extra and normalised fractional bits."""
    _threads()
    c, H = config, x.shape[-1]
    act, acc = bounds(c.act_bits), bounds(c.acc_bits)
    f_g, f_n = fracs["g"], fracs["norm"]
    tokens = x.reshape(-1, H).contiguous().numpy()
    out = np.empty_like(tokens)
    counts = np.zeros((tokens.shape[0], len(GSU_POINTS)), dtype=np.int64)
    bias = p["b"] if "b" in p else torch.zeros(H, dtype=torch.int64)
    _gsu(tokens, p["W"].contiguous().numpy(), _per_element(bias, (H,)), _per_element(p["m"], (H,)),
         _per_element(p["k"], (H,)), p["TW"].t().contiguous().numpy(), int(p["q"]), c.coef_bits - 1, f - f_g,
         fracs["a"] + f_g - fracs["prod"], _per_element(p["norm_G"], (H,)), _per_element(p["norm_b"], (H,)),
         int(p["norm_eps"]), _per_element(p["norm_m"], (H,)), _per_element(p["norm_k"], (H,)), E, fn,
         p["table"].contiguous().numpy(), f_n - c.lut_step_bits, c.lut_range << c.lut_step_bits,
         f_n + c.act_bits - 1 - fracs["out"], act[0], act[1], acc[0], acc[1], counts, out)
    return torch.from_numpy(out).reshape(x.shape), counts.sum(0).tolist()
