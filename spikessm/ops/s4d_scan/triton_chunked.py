"""s4d_scan's "chunked" algorithm (as torch_chunked.py computes it) on the Triton kernel of
kernels/s4d_scan/chunked.py (installed as spikessm.kernels.s4d_scan.chunked).

The host builds each channel's chunk operators from A, B, C with differentiable PyTorch ops (a few (H, T, T) and
(H, 2, N, T) tensors); the kernel applies them to the sequence, forward and backward, as a pair of custom ops on
real tensors (spikessm/ops/common/custom_op.py). Their backward returns the gradients of the operators, and
autograd carries them back through the construction to A, B and C, so the kernel never sees a complex number.
"""
from __future__ import annotations

from typing import Optional

import torch

from spikessm.kernels.common.launch import complex_planes

from ..common.backend import kernels
from ..common.checks import needs_grad
from ..common.custom_op import register
from .torch_chunked import convolution_matrix, powers


def forward(
    u: torch.Tensor, conv: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor, a_chunk: torch.Tensor,
    w_in_last: torch.Tensor, a_last: torch.Tensor, D: Optional[torch.Tensor], z0: Optional[torch.Tensor],
    reverse: bool, store_states: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y, the final state planes, and the states entering each chunk (empty unless store_states)."""
    y, zT, states = kernels("s4d_scan.chunked").s4d_chunked_fwd(
        u=u, conv=conv, w_in=w_in, w_out=w_out, a_chunk=a_chunk, w_in_last=w_in_last, a_last=a_last, D=D, z0=z0,
        reverse=reverse, store_states=store_states)
    return y, zT, states if states is not None else zT.new_empty(0)


def forward_fake(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, z0, reverse, store_states):
    Bsz, L, H = u.shape
    T, N = conv.shape[-1], a_chunk.shape[-1]
    states = a_chunk.new_empty(kernels("s4d_scan.chunked").states_shape(Bsz, L, H, N, T) if store_states else (0,))
    return torch.empty_like(u), a_chunk.new_empty((Bsz, 2, H, N)), states


def chunk_tiles(x: torch.Tensor, T: int, n_chunks: int, reverse: bool, dtype: torch.dtype) -> torch.Tensor:
    """(B, L, H) -> (H, n_chunks, B, T) in processing order, zeros after the last step: channel h's rows are the
    (chunk, sequence) pairs in the order of the kernel's state columns. One copy (two for a reverse run)."""
    Bsz, L, H = x.shape
    if reverse:
        x = x.flip(1)
    tiles = torch.empty((H, n_chunks, Bsz, T), dtype=dtype, device=x.device)
    steps = tiles.permute(2, 1, 3, 0)  # (B, n_chunks, T, H): a view of the tiles in x's order
    full = L // T
    steps[:, :full].copy_(x[:, :full * T].unflatten(1, (full, T)))
    if full < n_chunks:
        r = L - full * T
        steps[:, full, :r].copy_(x[:, full * T:])
        steps[:, full, r:].zero_()
    return tiles


def setup_context(ctx, inputs, output):
    u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, z0, reverse, store_states = inputs
    if not store_states:
        raise RuntimeError("s4d_scan: backward through a forward that ran without gradients enabled")
    ctx.save_for_backward(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, output[2])
    ctx.has_z0, ctx.reverse = z0 is not None, reverse


def backward(
    u: torch.Tensor, conv: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor, a_chunk: torch.Tensor,
    w_in_last: torch.Tensor, a_last: torch.Tensor, D: Optional[torch.Tensor], has_z0: bool,
    states: torch.Tensor, gy: torch.Tensor, gT: torch.Tensor, reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor, torch.Tensor]:
    """(du, dconv, dw_in, dw_out, da_chunk, dw_in_last, da_last, dD, dz0); dD and dz0 are empty when absent."""
    du, G, dz0 = kernels("s4d_scan.chunked").s4d_chunked_bwd(
        gy=gy, conv=conv, w_in=w_in, w_out=w_out, a_chunk=a_chunk, w_in_last=w_in_last, a_last=a_last, D=D, gT=gT,
        has_z0=has_z0, reverse=reverse, du_dtype=u.dtype)
    # Each operator's gradient sums, over (chunk, sequence) pairs, the product of what it multiplied (U or a state
    # entering the chunk) with the gradient of what it produced (dY or G). Per channel these are matrix products
    # over the pairs: the kernels lay the states and G out as (2N, pairs) matrices (rows (n, re/im)) and the input
    # tiles below as (pairs, T), so every product reads them in place. The last chunk has its own W_in and A^r.
    H, N, _, n_chunks, Bsz = G.shape
    T = conv.shape[-1]
    pairs, before_last = n_chunks * Bsz, (n_chunks - 1) * Bsz
    with torch.autocast(u.device.type, enabled=False):  # in the operators' precision, as the kernels compute
        U = chunk_tiles(u, T, n_chunks, reverse, conv.dtype).view(H, pairs, T)
        dY = chunk_tiles(gy, T, n_chunks, reverse, conv.dtype).view(H, pairs, T)
        Z, G = states.view(H, 2 * N, pairs), G.view(H, 2 * N, pairs)
        dconv = torch.bmm(dY.mT, U)  # (H, T, T)
        dw_out = _planes_first(torch.bmm(dY.mT, Z.mT).unflatten(2, (N, 2)), 3)  # (H, T, N, 2) -> (H, 2, T, N)
        dw_in = _planes_first(torch.bmm(G[:, :, :before_last], U[:, :before_last]).unflatten(1, (N, 2)), 2)
        dw_in_last = _planes_first(torch.bmm(G[:, :, before_last:], U[:, before_last:]).unflatten(1, (N, 2)), 2)
        da_chunk = _transition_grad(G[:, :, :before_last], Z[:, :, :before_last])
        da_last = _transition_grad(G[:, :, before_last:], Z[:, :, before_last:])
        # sum over (b, t) of dy u: a dot product per channel, padding included (zeros in both)
        dD = torch.bmm(dY.view(H, 1, -1), U.view(H, -1, 1)).view(H) if D is not None else conv.new_empty(0)
    return (du, dconv, dw_in, dw_out, da_chunk, dw_in_last, da_last, dD,
            dz0 if dz0 is not None else conv.new_empty(0))


def _planes_first(x: torch.Tensor, plane_dim: int) -> torch.Tensor:
    """Moves the size-2 (re, im) dimension of a (H, ...) gradient to dimension 1, contiguous."""
    return x.movedim(plane_dim, 1).contiguous()


def _transition_grad(G: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """Gradient of the (2, N) planes of a in z' = a z (complex, per state), summed over the pairs: conj(z) g as
    (re, im) planes -> (H, 2, N), from G = dLoss/dz' and Z = z, both (H, 2N, pairs) with rows (n, re/im). One
    batched product per (channel, state) of the 2 x pairs planes gives the four sums of plane products."""
    H, two_n, pairs = G.shape
    N = two_n // 2
    S = torch.bmm(G.reshape(H * N, 2, pairs), Z.reshape(H * N, 2, pairs).mT).view(H, N, 2, 2)  # S[p, q] = G_p . Z_q
    return torch.stack((S[..., 0, 0] + S[..., 1, 1], S[..., 1, 0] - S[..., 0, 1]), 1)


def backward_fake(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, has_z0, states, gy, gT, reverse):
    return (torch.empty_like(u), torch.empty_like(conv), torch.empty_like(w_in), torch.empty_like(w_out),
            torch.empty_like(a_chunk), torch.empty_like(w_in_last), torch.empty_like(a_last),
            torch.empty_like(D) if D is not None else conv.new_empty(0),
            a_chunk.new_empty((u.shape[0], 2, u.shape[2], a_chunk.shape[-1])) if has_z0 else conv.new_empty(0))


def input_gradients(ctx, backward, gy, gT, _g_states):
    u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, states = ctx.saved_tensors
    grads = backward(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, ctx.has_z0, states,
                     gy.contiguous(), gT.contiguous(), ctx.reverse)
    *grads, dD, dz0 = grads
    return (*grads, dD if D is not None else None, dz0 if ctx.has_z0 else None, None, None)


op = register(__name__)


def run(u, A, B, C, D, h0, *, reverse: bool, output_final_state: bool):
    """Same arguments and results as torch_chunked.run, on the Triton kernel."""
    u = u.contiguous()
    # The operators are built in their inputs' precision, whatever autocast would choose for the products.
    with torch.autocast(u.device.type, enabled=False):
        return _apply(u, A, B, C, D, h0, reverse, output_final_state)


def chunk_operators(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, L: int) -> tuple[torch.Tensor, ...]:
    """The kernel's operators for sequences of L steps, built differentiably from A, B, C (H, N) complex:
    (conv, w_in, w_out, a_chunk, w_in_last, a_last), real and contiguous, shapes as in
    kernels/s4d_scan/chunked.py's s4d_chunked_fwd."""
    T = kernels("s4d_scan.chunked").dot_chunk_length(L)
    r = L - (-(-L // T) - 1) * T  # steps in the last chunk
    P = powers(A, T + 1)  # (H, T + 1, N)
    conv = convolution_matrix(P, B, C, T).contiguous()
    w_in = complex_planes((B[:, None] * P[:, :T].flip(1)).transpose(1, 2))  # B A^(T-1-j): (H, 2, N, T)
    last = torch.nn.functional.pad((B[:, None] * P[:, :r].flip(1)).transpose(1, 2), (0, T - r))
    w_in_last = complex_planes(last)  # B A^(r-1-j) for j < r, zeros after
    V = C[:, None] * P[:, 1:]  # C A^(t+1): (H, T, N); Re(V z) = Re V Re z - Im V Im z
    w_out = torch.stack((V.real, -V.imag), 1).contiguous()
    return conv, w_in, w_out, complex_planes(P[:, T]), w_in_last, complex_planes(P[:, r])


def _apply(u, A, B, C, D, h0, reverse: bool, output_final_state: bool):
    z0 = complex_planes(h0) if h0 is not None else None
    conv, w_in, w_out, a_chunk, w_in_last, a_last = chunk_operators(A, B, C, u.shape[1])
    y, zT, _ = op(u=u, conv=conv, w_in=w_in, w_out=w_out, a_chunk=a_chunk, w_in_last=w_in_last, a_last=a_last,
                  D=D.contiguous() if D is not None else None, z0=z0, reverse=reverse,
                  store_states=needs_grad(u, A, B, C, D, h0))
    return y, (torch.complex(zT[:, 0], zT[:, 1]) if output_final_state else None)
