"""diag_scan: the diagonal linear recurrence x_t = a_t * x_{t-1} + b_t (S5's state update, and any
elementwise first-order linear recurrence), with a Triton kernel and a PyTorch path.

Files: naive.py (the step-by-step reference), torch_chunked.py (the PyTorch path), triton.py (the Triton glue;
the kernels are kernels/diag_scan.py, installed as spikessm.kernels.diag_scan). Both paths are the "chunked"
algorithm, registered as one torch.library custom op pair (forward and backward, a `triton` flag choosing the
path), so torch.compile treats them as single opaque nodes with known output shapes instead of tracing a loop over
time (spikessm/ops/common/custom_op.py).
"""
from __future__ import annotations

from typing import Optional

import torch

import functools

from ..common.backend import pick
from ..common.checks import (
    COMPLEX_STATE,
    LOW_PRECISION,
    REAL_STATE,
    is_empty,
    require_bool,
    require_rank,
    require_same_device,
    require_shape,
    require_tensor,
    state_or_zeros,
)
from ..common.custom_op import Op
from ..common.outputs import ScanOutput
from . import torch_chunked
from . import triton as triton_glue

OP = "diag_scan"


def _forward(
    a: torch.Tensor, b: torch.Tensor, h0: Optional[torch.Tensor], reverse: bool, triton: bool, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if triton:
        return triton_glue.diag_scan_fwd(a, b, h0, reverse, chunk_size)
    x, hT = torch_chunked.diag_scan_fwd(a, b, h0, reverse)
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
        da, db, dh0 = triton_glue.diag_scan_bwd(a, x, h0, gx, gT, reverse, chunk_size)
    else:
        da, db, dh0 = (t.contiguous() if t is not None else None
                       for t in torch_chunked.diag_scan_bwd(a, x, h0, gx, gT, reverse))
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


diag_scan_op = Op(OP, _forward, _forward_fake, _backward_impl, _backward_fake, _setup_context, _backward)


def _check(a, b, initial_state) -> None:
    require_tensor(OP, "a", a)
    require_tensor(OP, "b", b)
    require_rank(OP, "b", b, (3,), "(batch, length, channels)")
    B, L, P = b.shape
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


def run_diag_scan(a: torch.Tensor, b: torch.Tensor, h0: Optional[torch.Tensor], *, reverse: bool, triton: bool,
                  chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """diag_scan on checked inputs: all states and the final state, differentiable. The implementation every
    caller inside spikessm uses (the public diag_scan adds the checks and the choice of path)."""
    return diag_scan_op(a=a.contiguous(), b=b.contiguous(), h0=h0.contiguous() if h0 is not None else None,
                        reverse=reverse, triton=triton, chunk_size=chunk_size)


IMPLEMENTATIONS = {"torch": {"chunked": functools.partial(run_diag_scan, triton=False)},
                   "triton": {"chunked": functools.partial(run_diag_scan, triton=True)}}


def diag_scan(
    a: torch.Tensor,
    b: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    *,
    reverse: bool = False,
    output_final_state: bool = True,
    backend: str = "auto",
    algorithm: str = "auto",
    chunk_size: int | None = None,
) -> ScanOutput:
    """Diagonal linear recurrence x_t = a_t * x_{t-1} + b_t, elementwise over channels.

    Args:
        a: (P,) time-invariant or (B, L, P) time-varying decay; float32, float64, complex64 or complex128.
            Its dtype is the state dtype.
        b: (B, L, P) input; a's dtype, or float16/bfloat16 when a is float32.
        initial_state: (B, P) state before the first step processed, in a's dtype; None means zeros.
        reverse: run from t = L - 1 down to t = 0 (x_t = a_t x_{t+1} + b_t), e.g. for bidirectional layers.
        output_final_state: return the final state (else None).
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".
        algorithm: "auto" or "chunked" (both backends scan time in chunks).
        chunk_size: time steps per chunk of the Triton kernels (power of two >= 2), forward and backward; None
            lets the launch plan choose (kernels/diag_scan.py). The PyTorch path chooses its own chunk length
            and refuses a chunk_size.

    Returns:
        ScanOutput(output, final_state): x (B, L, P) all states, in b's dtype; the state after the last step
        processed (x[:, -1], or x[:, 0] when reverse), (B, P) in a's dtype, or None when output_final_state is
        False. Empty inputs (batch, length or channels 0) give an empty x and the initial state (zeros when
        None) without running anything.

    Gradients flow to a, b and initial_state; complex gradients follow PyTorch's convention
    (the conjugate Wirtinger derivative).
    """
    _check(a, b, initial_state)
    require_bool(OP, "reverse", reverse)
    require_bool(OP, "output_final_state", output_final_state)
    name, _, run = pick(OP, backend, algorithm, b.device, IMPLEMENTATIONS)
    if chunk_size is not None and name == "torch":
        raise ValueError(f"{OP}: chunk_size is a Triton kernel setting; the torch backend chooses its own chunk "
                         f"length (pass chunk_size=None), got chunk_size={chunk_size!r}")
    chunk = triton_glue.check_chunk_size(OP, chunk_size) if name == "triton" else 0
    if is_empty(b):
        final = state_or_zeros(initial_state, (b.shape[0], b.shape[2]), a.dtype, b.device)
        return ScanOutput(b.clone(), final if output_final_state else None)
    x, final_state = run(a, b, initial_state, reverse=reverse, chunk_size=chunk)
    return ScanOutput(x, final_state if output_final_state else None)
