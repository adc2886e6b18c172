"""The PyTorch path of diag_scan: a chunked scan with an explicit adjoint.

The sequence is cut into chunks of T steps. Pass 1 runs the recurrence inside every chunk at once (T steps,
each over all B x chunks x P elements); pass 2 carries states across chunks (one step per chunk); pass 3 adds
the carried state, scaled by the running product of a, to every step. With T ~ sqrt(L) that is ~2 sqrt(L)
small Python steps instead of L, and no division by products of a (so a = 0 is fine).

The backward is the same scan run the other way over the adjoint (see diag_scan_bwd), so autograd never
records a per-step graph. Everything here works in forward *processing* order: the callers flip time for
reverse=True.
"""
from __future__ import annotations

import math

import torch


def chunk_length(L: int) -> int:
    """Power of two near sqrt(L), between 8 and 512: balances the two sequential passes."""
    return int(min(512, max(8, 2 ** round(math.log2(max(L, 1)) / 2))))


def scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = a_t x_{t-1} + b_t for t = 0..L-1.

    Args:
        a: (P,) or (B, L, P), the state dtype. b: (B, L, P), the state dtype. h0: (B, P) or None (zeros).
    Returns:
        x: (B, L, P); final state (B, P).
    """
    B, L, P = b.shape
    T = chunk_length(L)
    nc = -(-L // T)
    pad = nc * T - L
    time_varying = a.dim() == 3
    if pad:
        # Padded steps are identity maps (a = 1, b = 0): the last padded step holds x_{L-1}.
        b = torch.cat([b, b.new_zeros(B, pad, P)], dim=1)
        if time_varying:
            a = torch.cat([a, a.new_ones(B, pad, P)], dim=1)
    bc = b.view(B, nc, T, P)
    if time_varying:
        ac = a.view(B, nc, T, P)
    else:
        ac = a.expand(nc, T, P)  # shared by the batch
        if pad:
            ac = ac.clone()
            ac[-1, T - pad:] = 1
    a_prod = ac.cumprod(dim=-2)  # prod_{s<=k} a_s within each chunk

    # Pass 1: local scans (zero carry-in) of all chunks at once.
    local = torch.empty_like(bc)
    local[:, :, 0] = bc[:, :, 0]
    for k in range(1, T):
        torch.addcmul(bc[:, :, k], ac[..., k, :], local[:, :, k - 1], out=local[:, :, k])

    # Pass 2: carry the state across chunks.
    chunk_a = a_prod[..., T - 1, :]  # (B, nc, P) or (nc, P)
    carry_in = torch.empty(B, nc, P, dtype=b.dtype, device=b.device)
    h = h0 if h0 is not None else b.new_zeros(B, P)
    for c in range(nc):
        carry_in[:, c] = h
        h = torch.addcmul(local[:, c, T - 1], chunk_a[..., c, :], h)

    # Pass 3: x = local + (running product of a) * carry-in.
    x = torch.addcmul(local, a_prod, carry_in[:, :, None, :])
    return x.view(B, nc * T, P)[:, :L], h


def diag_scan_fwd(a, b, h0, reverse: bool):
    """PyTorch twin of spikessm.kernels.diag_scan.diag_scan_fwd (same arguments and results)."""
    state_dtype = a.dtype
    if reverse:
        a = a.flip(1) if a.dim() == 3 else a
        b = b.flip(1)
    x, hT = scan(a, b.to(state_dtype), h0)
    if reverse:
        x = x.flip(1)
    return x.to(b.dtype), hT


def diag_scan_bwd(a, x, h0, gx, gT, reverse: bool):
    """PyTorch twin of spikessm.kernels.diag_scan.diag_scan_bwd.

    With i the processing index and g_i = dLoss/dconj(x_i): g_i = gx_i + conj(a_{i+1}) g_{i+1} (+ gT at the
    last step); db = g, da_i = g_i conj(x_{i-1}) (x_{-1} = h0), dh0 = conj(a_0) g_0.
    """
    state_dtype = a.dtype
    time_varying = a.dim() == 3
    x_dtype = x.dtype
    if reverse:
        a = a.flip(1) if time_varying else a
        x, gx = x.flip(1), gx.flip(1)
    x = x.to(state_dtype)
    g_in = gx.to(state_dtype)
    if gT is not None:
        g_in = g_in.clone()
        g_in[:, -1] += gT
    # Scan the adjoint from the last step to the first: a time-flipped forward scan.
    if time_varying:
        a_adj = torch.cat([torch.ones_like(a[:, :1]), a.flip(1)[:, :-1].conj()], dim=1)
    else:
        a_adj = a.conj()
    g = scan(a_adj, g_in.flip(1), None)[0].flip(1)

    x_prev = torch.cat([h0[:, None] if h0 is not None else torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
    da = g * x_prev.conj()
    if not time_varying:
        da = da.sum(dim=(0, 1))
    dh0 = None
    if h0 is not None:
        a0 = a[:, 0] if time_varying else a
        dh0 = a0.conj() * g[:, 0]
    db = g.flip(1) if reverse else g
    if reverse and time_varying:
        da = da.flip(1)
    return da, db.to(x_dtype), dh0
