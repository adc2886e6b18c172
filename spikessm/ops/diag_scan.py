"""diag_scan: the diagonal linear recurrence x_t = a_t * x_{t-1} + b_t (S5's state update, and any
elementwise first-order linear recurrence), with a Triton kernel and a PyTorch path.

Registered as torch.library custom ops (forward and backward), so torch.compile treats them as single
opaque nodes with known output shapes instead of tracing a loop over time (spikessm.ops.dispatch).
"""
from __future__ import annotations

from typing import Optional

import torch

from . import chunked_scan
from .backend import use_triton
from .dispatch import Op
from .checks import (
    COMPLEX_STATE,
    LOW_PRECISION,
    REAL_STATE,
    require_length,
    require_rank,
    require_same_device,
    require_shape,
    require_tensor,
)

OP = "diag_scan"


def _kernels():
    from spikessm.kernels import diag_scan as k

    return k


def _forward(
    a: torch.Tensor, b: torch.Tensor, h0: Optional[torch.Tensor], reverse: bool, triton: bool, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if triton:
        return _kernels().diag_scan_fwd(a, b, h0, reverse, chunk_size or None)
    x, hT = chunked_scan.diag_scan_fwd(a, b, h0, reverse)
    # Outputs must have the contiguous layout the fake implementation promises to the compiler.
    return x.contiguous(), hT.contiguous()


def _forward_fake(a, b, h0, reverse, triton, chunk_size):
    return torch.empty_like(b), b.new_empty((b.shape[0], b.shape[2]), dtype=a.dtype)


def _backward_impl(
    a: torch.Tensor,
    x: torch.Tensor,
    h0: Optional[torch.Tensor],
    gx: torch.Tensor,
    gT: torch.Tensor,
    reverse: bool,
    triton: bool,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if triton:
        da, db, dh0 = _kernels().diag_scan_bwd(a, x, h0, gx, gT, reverse, chunk_size or None)
    else:
        da, db, dh0 = (t.contiguous() if t is not None else None
                       for t in chunked_scan.diag_scan_bwd(a, x, h0, gx, gT, reverse))
    # A custom op cannot return None: without h0 its gradient is an unused empty tensor.
    return da, db, (dh0 if dh0 is not None else a.new_empty(0))


def _backward_fake(a, x, h0, gx, gT, reverse, triton, chunk_size):
    dh0 = torch.empty_like(h0) if h0 is not None else a.new_empty(0)
    return torch.empty_like(a), torch.empty_like(x), dh0


def _setup_context(ctx, inputs, output):
    a, b, h0, reverse, triton, chunk_size = inputs
    ctx.save_for_backward(a, output[0], h0)
    ctx.reverse, ctx.triton, ctx.chunk_size = reverse, triton, chunk_size


def _backward(ctx, backward_impl, gx, gT):
    a, x, h0 = ctx.saved_tensors
    da, db, dh0 = backward_impl(a, x, h0, gx.contiguous(), gT.contiguous(), ctx.reverse, ctx.triton, ctx.chunk_size)
    return da, db, (dh0 if h0 is not None else None), None, None, None


_op = Op(OP, _forward, _forward_fake, _backward_impl, _backward_fake, _setup_context, _backward)


def _check(a, b, initial_state) -> None:
    require_tensor(OP, "a", a)
    require_tensor(OP, "b", b)
    require_rank(OP, "b", b, (3,), "(batch, length, channels)")
    B, L, P = b.shape
    require_length(OP, "b", L)
    require_rank(OP, "a", a, (1, 3), "(channels,) time-invariant or (batch, length, channels) time-varying")
    if a.dim() == 1:
        require_shape(OP, "a", a, (P,), "(channels,)")
    else:
        require_shape(OP, "a", a, (B, L, P), "b's shape (batch, length, channels)")
    if initial_state is not None:
        require_tensor(OP, "initial_state", initial_state)
        require_shape(OP, "initial_state", initial_state, (B, P), "(batch, channels)")
    require_same_device(OP, {"a": a, "b": b, "initial_state": initial_state})

    if a.dtype not in REAL_STATE + COMPLEX_STATE:
        raise TypeError(
            f"{OP}: a must be float32, float64, complex64 or complex128 (it sets the state dtype), got {a.dtype}"
        )
    allowed_b = (a.dtype,) + (LOW_PRECISION if a.dtype == torch.float32 else ())
    if b.dtype not in allowed_b:
        raise TypeError(
            f"{OP}: a/b dtype mismatch: a is {a.dtype}, so b must be "
            f"{' or '.join(str(d) for d in allowed_b)}, got {b.dtype}"
        )
    if initial_state is not None and initial_state.dtype != a.dtype:
        raise TypeError(f"{OP}: initial_state must have a's dtype {a.dtype}, got {initial_state.dtype}")


def diag_scan(
    a: torch.Tensor,
    b: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    *,
    reverse: bool = False,
    output_final_state: bool = True,
    backend: str = "auto",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Diagonal linear recurrence x_t = a_t * x_{t-1} + b_t, elementwise over channels.

    Args:
        a: (P,) time-invariant or (B, L, P) time-varying decay; float32, float64, complex64 or complex128.
            Its dtype is the state dtype.
        b: (B, L, P) input; a's dtype, or float16/bfloat16 when a is float32.
        initial_state: (B, P) state before the first step processed, in a's dtype; None means zeros.
        reverse: run from t = L - 1 down to t = 0 (x_t = a_t x_{t+1} + b_t), e.g. for bidirectional layers.
        output_final_state: return the final state (else None).
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".
        chunk_size: time steps per chunk of the Triton kernels (power of two >= 2), forward and backward; None
            lets the launch plan choose (spikessm/kernels/diag_scan.py).

    Returns:
        x: (B, L, P) all states, in b's dtype.
        final_state: (B, P) the state after the last step processed (x[:, -1], or x[:, 0] when reverse),
            in a's dtype; None when output_final_state is False.

    Gradients flow to a, b and initial_state; complex gradients follow PyTorch's convention
    (the conjugate Wirtinger derivative).
    """
    _check(a, b, initial_state)
    triton = use_triton(backend, b.device, OP)
    # 0 lets the kernel's launch plan choose the chunk length (it differs between passes and dtypes).
    chunk = _kernels().check_chunk_size(OP, chunk_size, 0) if triton else 0
    h0 = initial_state.contiguous() if initial_state is not None else None
    x, final_state = _op(a.contiguous(), b.contiguous(), h0, bool(reverse), triton, chunk)
    return x, (final_state if output_final_state else None)
