"""The PyTorch path of s4d_scan: the S4D convolution view, differentiable by autograd.

With time-invariant A, the recurrence unrolls to
  y_t = sum_{s<=t} K_{t-s} u_s + D u_t + Re(sum_n C_n A_n^{t+1} x0_n),   K_k = Re(sum_n C_n B_n A_n^k)
  x_{L-1} = B * sum_s A^{L-1-s} u_s + A^L x0
so y is one FFT convolution and the states never exist.

Powers of A: A^k = (A^T)^(k // T) A^(k % T) with T ~ sqrt(L). The two small tables come from repeated doubling in
double precision, where the rounding that products accumulate (~k ulps) stays far below single precision; one
broadcast product in the state dtype then builds the (H, L, N) table with a few ulps of error at any k. Unlike
exp(k log A) this is defined, with finite gradients, at A = 0.
"""
from __future__ import annotations

import torch


def _doubling_powers(A: torch.Tensor, n: int) -> torch.Tensor:
    """(H, N) -> (H, n, N): A^0 .. A^(n-1) by doubling ([P, P * A^m] covers 0 .. 2m-1)."""
    p = torch.ones(A.shape[0], 1, A.shape[1], dtype=A.dtype, device=A.device)
    a_m = A
    while p.shape[1] < n:
        p = torch.cat([p, p * a_m[:, None]], dim=1)
        a_m = a_m * a_m
    return p[:, :n]


def powers(A: torch.Tensor, n: int) -> torch.Tensor:
    """(H, N) -> (H, n, N): A^0, A^1, ..., A^(n-1), time on the middle axis so that contractions over time
    are batched matrix products on views."""
    T = 1 << max(1, (max(n, 2) - 1).bit_length() // 2)  # ~sqrt(n)
    A_wide = A.to(torch.complex128)
    low = _doubling_powers(A_wide, T)  # A^0 .. A^(T-1)
    high = _doubling_powers(low[:, -1] * A_wide, -(-n // T))  # (A^T)^0, (A^T)^1, ..
    return (high.to(A.dtype)[:, :, None] * low.to(A.dtype)[:, None]).flatten(1, 2)[:, :n]


def causal_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """y_t = sum_{s<=t} K[:, t-s] u_s by FFT. u: (B, L, H) real; K: (H, L) real -> (B, L, H)."""
    L = u.shape[1]
    n = 2 * L
    # FFTs along the last, contiguous axis: inductor's stride rules for an FFT over a middle axis disagree with
    # the CPU kernel's output (torch 2.11), and contiguous transforms are the fast case anyway.
    U = torch.fft.rfft(u.transpose(1, 2), n=n)
    return torch.fft.irfft(U * torch.fft.rfft(K, n=n), n=n)[..., :L].transpose(1, 2)


def s4d_scan_conv(u, A, B, C, D, h0, reverse: bool, output_final_state: bool = True):
    """Same arguments as spikessm.kernels.s4d_scan.s4d_scan_fwd: y (B, L, H) in u's dtype and the final state
    (B, H, N) in A's dtype, or None when not output_final_state (which skips its Vandermonde product)."""
    real_dtype = A.real.dtype
    x_dtype = u.dtype
    u = u.to(real_dtype)
    if reverse:
        u = u.flip(1)
    Bsz, L, H = u.shape
    N = A.shape[1]
    # Exactly A^0 .. A^(L-1): slicing a longer table would make autograd zero-fill full-size gradients.
    V = powers(A, L)  # (H, L, N)
    K = torch.bmm(V, (C * B)[:, :, None]).squeeze(-1).real  # K[h, k] = Re(sum_n C B A^k): (H, L)
    y = causal_conv(u, K)
    if D is not None:
        y = y + D * u
    if h0 is not None:
        # Re(sum_n C A^(t+1) x0) = Re(sum_n (C A x0) A^t): (H, B, N) @ (H, N, L) -> (H, B, L)
        y = y + torch.bmm((C * A)[:, None] * h0.transpose(0, 1), V.transpose(1, 2)).real.permute(1, 2, 0)
    hT = None
    if output_final_state:
        # B * sum_s A^(L-1-s) u_s = B * sum_j A^j u_(L-1-j), as real matmuls (u is real): (H, B, L) @ (H, L, 2N)
        acc = torch.bmm(u.flip(1).permute(2, 0, 1), torch.view_as_real(V).flatten(2))
        hT = B * torch.view_as_complex(acc.unflatten(2, (N, 2))).transpose(0, 1)
        if h0 is not None:
            hT = hT + (A.to(torch.complex128) ** L).to(A.dtype) * h0
    if reverse:
        y = y.flip(1)
    return y.to(x_dtype), hT
