"""s4d_scan: the S4D state update fused with its readout, with a Triton kernel that keeps the states on chip
and a PyTorch path of chunked matrix products (see s4d_chunked).

The Triton path is registered as torch.library custom ops (forward and backward), so torch.compile sees
single opaque nodes; the PyTorch path is a handful of large differentiable ops that torch.compile traces
as they are.
"""
from __future__ import annotations

from typing import Optional

import torch

from .backend import use_triton
from .dispatch import Op
from .checks import (
    COMPLEX_FOR_REAL,
    LOW_PRECISION,
    REAL_STATE,
    require_length,
    require_rank,
    require_same_device,
    require_shape,
    require_tensor,
)
from .s4d_chunked import s4d_scan_chunked
from .s4d_chunked_kernel import s4d_scan_chunked_kernel

OP = "s4d_scan"
ALGORITHMS = ("auto", "sequential", "chunked")


def _kernels():
    from spikessm.kernels import s4d_scan as k

    return k


def _forward(
    u: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    h0: Optional[torch.Tensor],
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns y and the final state."""
    return _kernels().s4d_scan_fwd(u, A, B, C, D, h0, reverse)


def _forward_fake(u, A, B, C, D, h0, reverse):
    return torch.empty_like(u), A.new_empty((u.shape[0], u.shape[2], A.shape[1]))


def _backward_impl(
    u: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    h0: Optional[torch.Tensor],
    gy: torch.Tensor,
    gT: torch.Tensor,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (du, dA, dB, dC, dD, dh0); dD and dh0 are empty when D or h0 is None."""
    du, dA, dB, dC, dD, dh0 = _kernels().s4d_scan_bwd(u, A, B, C, D, h0, gy, gT, reverse)
    # A custom op cannot return None or the same tensor twice: absent inputs get distinct empty placeholders.
    return (du, dA, dB, dC, (dD.to(D.dtype) if D is not None else A.new_empty(0)),
            (dh0 if dh0 is not None else A.new_empty(0)))


def _backward_fake(u, A, B, C, D, h0, gy, gT, reverse):
    return (
        torch.empty_like(u), torch.empty_like(A), torch.empty_like(B), torch.empty_like(C),
        torch.empty_like(D) if D is not None else A.new_empty(0),
        torch.empty_like(h0) if h0 is not None else A.new_empty(0),
    )


def _setup_context(ctx, inputs, output):
    u, A, B, C, D, h0, reverse = inputs
    ctx.save_for_backward(u, A, B, C, D, h0)
    ctx.reverse = reverse


def _backward(ctx, backward_impl, gy, gT):
    u, A, B, C, D, h0 = ctx.saved_tensors
    du, dA, dB, dC, dD, dh0 = backward_impl(u, A, B, C, D, h0, gy.contiguous(), gT.contiguous(), ctx.reverse)
    return du, dA, dB, dC, (dD if D is not None else None), (dh0 if h0 is not None else None), None


_op = Op(OP, _forward, _forward_fake, _backward_impl, _backward_fake, _setup_context, _backward)


def check_algorithm(op: str, algorithm: str, triton: bool) -> None:
    """algorithm is one of ALGORITHMS, and one that the chosen backend has."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"{op}: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "sequential" and not triton:
        raise ValueError(f"{op}: algorithm='sequential' is a Triton kernel; the PyTorch path is 'chunked' "
                         "(the step-by-step loop is spikessm.ops.naive.s4d_scan_loop)")


def check_ssm_inputs(u, A_bar, B_bar, C, D, initial_state) -> None:
    for name, t in (("u", u), ("A_bar", A_bar), ("B_bar", B_bar), ("C", C)):
        require_tensor(OP, name, t)
    require_rank(OP, "u", u, (3,), "(batch, length, channels)")
    Bsz, L, H = u.shape
    require_length(OP, "u", L)
    require_rank(OP, "A_bar", A_bar, (2,), "(channels, state)")
    N = A_bar.shape[1]
    if N < 1:
        raise ValueError(f"{OP}: A_bar must have at least one state per channel, got shape {tuple(A_bar.shape)}")
    for name, t in (("A_bar", A_bar), ("B_bar", B_bar), ("C", C)):
        require_shape(OP, name, t, (H, N), "(channels, state) with u's channels")
    if D is not None:
        require_tensor(OP, "D", D)
        require_shape(OP, "D", D, (H,), "(channels,)")
    if initial_state is not None:
        require_tensor(OP, "initial_state", initial_state)
        require_shape(OP, "initial_state", initial_state, (Bsz, H, N), "(batch, channels, state)")
    require_same_device(OP, {"u": u, "A_bar": A_bar, "B_bar": B_bar, "C": C, "D": D, "initial_state": initial_state})

    if u.is_complex():
        raise TypeError(f"{OP}: u must be real (float32, float64, float16 or bfloat16), got {u.dtype}")
    if u.dtype not in REAL_STATE + LOW_PRECISION:
        raise TypeError(f"{OP}: u must be float32, float64, float16 or bfloat16, got {u.dtype}")
    real_dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    state_dtype = COMPLEX_FOR_REAL[real_dtype]
    for name, t in (("A_bar", A_bar), ("B_bar", B_bar), ("C", C), ("initial_state", initial_state)):
        if t is None:
            continue
        if not t.is_complex():
            raise TypeError(f"{OP}: {name} must be complex ({state_dtype} for u of {u.dtype}), got {t.dtype}")
        if t.dtype != state_dtype:
            raise TypeError(f"{OP}: {name} must be {state_dtype} for u of {u.dtype}, got {t.dtype}")
    if D is not None:
        if D.is_complex():
            raise TypeError(f"{OP}: D must be real, got {D.dtype}")
        if D.dtype != real_dtype:
            raise TypeError(f"{OP}: D must be {real_dtype} for u of {u.dtype}, got {D.dtype}")


def s4d_scan(
    u: torch.Tensor,
    A_bar: torch.Tensor,
    B_bar: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    *,
    reverse: bool = False,
    output_final_state: bool = True,
    backend: str = "auto",
    algorithm: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """S4D state update fused with its readout, per channel h and state n:

        x_t[h, n] = A_bar[h, n] x_{t-1}[h, n] + B_bar[h, n] u_t[h]
        y_t[h]    = Re(sum_n C[h, n] x_t[h, n]) + D[h] u_t[h]

    Args:
        u: (B, L, H) real input; float32, float64, or float16/bfloat16 (computed in float32).
        A_bar, B_bar, C: (H, N) complex, already discretized; complex64 (complex128 when u is float64).
        D: (H,) real skip weight (float32, or float64 with float64 u), or None for no skip.
        initial_state: (B, H, N) complex state before the first step processed; None means zeros.
        reverse: run from t = L - 1 down to t = 0 (for bidirectional layers).
        output_final_state: return the final state (else None).
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".
        algorithm: "sequential" (Triton only: the kernel that walks time step by step), "chunked" (64-step
            chunks of matrix products: the PyTorch path, or on Triton a kernel of tl.dot products), or "auto":
            "sequential" on Triton, "chunked" on PyTorch.

    Returns:
        y: (B, L, H) in u's dtype.
        final_state: (B, H, N) complex, the state after the last step processed; None when
            output_final_state is False.

    Gradients flow to every tensor input. The Triton kernel never writes the (B, L, H, N) states: the forward
    walks time with the states in registers, and the backward gets every gradient from one reverse walk of
    adjoint recurrences, without saving or recomputing states (spikessm.kernels.s4d_scan). The PyTorch path
    computes y in 64-step chunks by batched matrix products, with a diagonal scan across chunks
    (spikessm.ops.s4d_chunked); the chunked Triton kernel walks the chunks in order with the states in registers
    (spikessm.kernels.s4d_chunked).
    """
    check_ssm_inputs(u, A_bar, B_bar, C, D, initial_state)
    triton = use_triton(backend, u.device, OP)
    check_algorithm(OP, algorithm, triton)
    if not triton:
        return s4d_scan_chunked(u, A_bar, B_bar, C, D, initial_state, bool(reverse), bool(output_final_state))
    if algorithm == "chunked":
        return s4d_scan_chunked_kernel(u.contiguous(), A_bar, B_bar, C, D, initial_state, bool(reverse),
                                       bool(output_final_state))
    contiguous = [t.contiguous() if t is not None else None for t in (u, A_bar, B_bar, C, D, initial_state)]
    y, final_state = _op(*contiguous, bool(reverse))
    return y, (final_state if output_final_state else None)
