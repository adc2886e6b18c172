"""The PyTorch path of diag_scan (its "chunked" algorithm on the torch backend): a chunked scan with an explicit
adjoint.

The sequence is cut into chunks of T steps. Pass 1 runs the recurrence inside every chunk at once (T steps,
each over all B x chunks x P elements); pass 2 carries states across chunks (one step per chunk); pass 3 adds
the carried state, scaled by the running product of a, to every step. With T ~ sqrt(L) that is ~2 sqrt(L)
small Python steps instead of L, and no division by products of a (so a = 0 is fine).

The backward is the same scan run in the other direction over the adjoint (see diag_scan_bwd), so autograd
never records a per-step graph. Both directions work in place on memory order: nothing is flipped.

Registered as custom ops (spikessm/ops/common/custom_op.py). diag_scan's Triton implementation (triton_chunked.py)
shares their signatures and the fake implementations and autograd glue defined here.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..common.custom_op import register


def sqrt_chunk_length(L: int) -> int:
    """Power of two near sqrt(L), between 8 and 512: balances the two sequential passes."""
    return int(min(512, max(8, 2 ** round(math.log2(max(L, 1)) / 2))))


def scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, reverse: bool = False) -> torch.Tensor:
    """x_t = a_t x_{t-1} + b_t for t = 0..L-1 (reverse: x_t = a_t x_{t+1} + b_t for t = L-1..0).

    Args:
        a: (P,) or (B, L, P), the state dtype. b: (B, L, P), the state dtype. h0: (B, P) or None (zeros).
    Returns:
        x: (B, L, P), contiguous; the final state is x[:, -1] (x[:, 0] when reverse).
    """
    B, L, P = b.shape
    T = sqrt_chunk_length(L)
    nc = -(-L // T)
    pad = nc * T - L
    time_varying = a.dim() == 3
    if pad:
        # Padding goes after the last step processed, so it never touches a valid step; its values are unused.
        side = (0, 0, pad, 0) if reverse else (0, 0, 0, pad)
        b = torch.nn.functional.pad(b, side)
        if time_varying:
            a = torch.nn.functional.pad(a, side)
    x = b.reshape(B, nc, T, P).clone()
    if time_varying:
        ac = a.reshape(B, nc, T, P)
        a_prod = (ac.flip(2).cumprod(2).flip(2) if reverse else ac.cumprod(2))  # product over steps so far
    else:
        ac = a.expand(T, P)
        a_prod = ac.cumprod(0)  # a^(k+1)
        if reverse:
            a_prod = a_prod.flip(0)
    steps = range(T - 2, -1, -1) if reverse else range(1, T)
    last = 0 if reverse else T - 1  # last step of a chunk in processing order

    # Pass 1: local scans (zero carry-in) of all chunks at once, in place in x.
    for k in steps:
        prev = k + 1 if reverse else k - 1
        x[:, :, k].addcmul_(ac[..., k, :], x[:, :, prev])

    # Pass 2: the state entering each chunk.
    chunk_a = a_prod[..., last, :]  # product over a whole chunk: (B, nc, P) or (P,)
    carry = torch.empty(B, nc, P, dtype=b.dtype, device=b.device)
    chunks = range(nc - 1, -1, -1) if reverse else range(nc)
    h = h0 if h0 is not None else b.new_zeros(B, P)
    for c in chunks:
        carry[:, c] = h
        h = torch.addcmul(x[:, c, last], chunk_a[:, c] if time_varying else chunk_a, h)

    # Pass 3: add the carried-in state, scaled by the running product of a.
    x.addcmul_(a_prod, carry[:, :, None, :])
    x = x.view(B, nc * T, P)
    return x[:, pad:] if (pad and reverse) else x[:, :L] if pad else x


def diag_scan_fwd(a, b, h0, reverse: bool):
    """PyTorch twin of kernels/diag_scan.py's diag_scan_fwd (same arguments and results)."""
    x = scan(a, b.to(a.dtype), h0, reverse).contiguous()
    final = x[:, 0] if reverse else x[:, -1]
    return x.to(b.dtype), final.clone()


def diag_scan_bwd(a, x, h0, gx, gT, reverse: bool):
    """PyTorch twin of kernels/diag_scan.py's diag_scan_bwd.

    In processing order i, with g_i = dLoss/dconj(x_i): g_i = gx_i + conj(a_{i+1}) g_{i+1} (+ gT at the last
    step); db = g, da_i = g_i conj(x_{i-1}) (x_{-1} = h0), dh0 = conj(a_0) g_0. The adjoint is a scan in the
    opposite direction whose decay at step i is conj(a_{i+1}).
    """
    state_dtype = a.dtype
    time_varying = a.dim() == 3
    L = x.shape[1]
    x = x.to(state_dtype)
    g_in = gx.to(state_dtype, copy=True)
    last = 0 if reverse else L - 1
    if gT is not None:
        g_in[:, last] += gT
    if time_varying:
        # conj(a) of the next step in processing order; the last processed step has no next (unused value 1).
        nxt = a[:, :-1] if reverse else a[:, 1:]
        edge = torch.ones_like(a[:, :1])
        a_adj = torch.cat([edge, nxt.conj()] if reverse else [nxt.conj(), edge], dim=1)
    else:
        a_adj = a.conj()
    g = scan(a_adj, g_in, None, reverse=not reverse)

    # x_{i-1} in processing order, as slices of x: da_i = g_i conj(x_{i-1}), with h0 at the first step.
    first = L - 1 if reverse else 0
    g_rest = g[:, :-1] if reverse else g[:, 1:]
    x_prev = x[:, 1:] if reverse else x[:, :-1]
    if time_varying:
        da = torch.empty_like(g)
        torch.mul(g_rest, x_prev.conj(), out=da[:, :-1] if reverse else da[:, 1:])
        da[:, first] = g[:, first] * h0.conj() if h0 is not None else 0
    else:
        da = (g_rest * x_prev.conj()).sum((0, 1))
        if h0 is not None:
            da += (g[:, first] * h0.conj()).sum(0)
    dh0 = None
    if h0 is not None:
        a0 = a[:, first] if time_varying else a
        dh0 = a0.conj() * g[:, first]
    return da, g.to(gx.dtype), dh0


def forward(a: torch.Tensor, b: torch.Tensor, h0: Optional[torch.Tensor], reverse: bool,
            chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All states and the final state. chunk_size: the Triton kernels' chunk length (0 here: this path chooses its
    own, sqrt_chunk_length)."""
    x, hT = diag_scan_fwd(a, b, h0, reverse)
    # Outputs must have the contiguous layout the fake implementation promises to the compiler.
    return x.contiguous(), hT.contiguous()


def forward_fake(a, b, h0, reverse, chunk_size):
    return torch.empty_like(b), b.new_empty((b.shape[0], b.shape[2]), dtype=a.dtype)


def setup_context(ctx, inputs, output):
    a, b, h0, reverse, chunk_size = inputs
    ctx.save_for_backward(a, output[0], h0)
    ctx.reverse, ctx.chunk_size = reverse, chunk_size


def backward(a: torch.Tensor, x: torch.Tensor, h0: Optional[torch.Tensor], gx: torch.Tensor, gT: torch.Tensor,
             reverse: bool, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(da, db, dh0), contiguous; dh0 is empty without h0 (a custom op cannot return None)."""
    da, db, dh0 = (t.contiguous() if t is not None else None for t in diag_scan_bwd(a, x, h0, gx, gT, reverse))
    return da, db, (dh0 if dh0 is not None else a.new_empty(0))


def backward_fake(a, x, h0, gx, gT, reverse, chunk_size):
    dh0 = torch.empty_like(h0) if h0 is not None else a.new_empty(0)
    return torch.empty_like(a), torch.empty_like(x), dh0


def input_gradients(ctx, backward, gx, gT):
    a, x, h0 = ctx.saved_tensors
    da, db, dh0 = backward(a, x, h0, gx.contiguous(), gT.contiguous(), ctx.reverse, ctx.chunk_size)
    return da, db, (dh0 if h0 is not None else None), None, None


op = register(__name__)


def run(a: torch.Tensor, b: torch.Tensor, h0: Optional[torch.Tensor], *, reverse: bool,
        chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All states and the final state, differentiable; inputs checked and contiguous, chunk_size 0."""
    return op(a=a, b=b, h0=h0, reverse=reverse, chunk_size=chunk_size)
