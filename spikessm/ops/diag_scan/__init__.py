"""diag_scan: the diagonal linear recurrence x_t = a_t * x_{t-1} + b_t (S5's state update, and any
elementwise first-order linear recurrence), with a Triton kernel and a PyTorch path.

Files: naive.py (the step-by-step reference), torch_chunked.py (the PyTorch path), triton_chunked.py (on the
kernels of kernels/diag_scan.py, installed as spikessm.kernels.diag_scan). Both implementations are the "chunked"
algorithm, and each is a pair of custom ops (spikessm/ops/common/custom_op.py), so that torch.compile treats them
as single opaque nodes with known output shapes instead of tracing a loop over time.
"""
from __future__ import annotations

import torch

from ..common.backend import algorithms, kernels, pick
from ..common.checks import (
    COMPLEX_STATE,
    LOW_PRECISION,
    REAL_STATE,
    check_run_settings,
    is_empty,
    require_rank,
    require_same_device,
    require_shape,
    require_tensor,
    state_or_zeros,
)
from ..common.outputs import ScanOutput
from . import torch_chunked, triton_chunked

OP = "diag_scan"
IMPLEMENTATIONS = {"torch": {"chunked": torch_chunked.run}, "triton": {"chunked": triton_chunked.run}}
ALGORITHMS = algorithms(IMPLEMENTATIONS)


def check_diag_scan_tensors(a, b, initial_state) -> None:
    """diag_scan's tensor arguments: shapes, dtypes and devices."""
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
    check_run_settings(OP, reverse=reverse, output_final_state=output_final_state, backend=backend,
                       algorithm=algorithm, algorithms=ALGORITHMS)
    return diag_scan_prechecked(a, b, initial_state, reverse=reverse, output_final_state=output_final_state,
                                backend=backend, algorithm=algorithm, chunk_size=chunk_size)


def diag_scan_prechecked(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None, *,
                         reverse: bool = False, output_final_state: bool = True, backend: str,
                         algorithm: str = "auto", chunk_size: int | None = None) -> ScanOutput:
    """diag_scan with settings its caller has checked (diag_scan itself, or the S5 layer when it was built):
    checks only the tensors of the call and what depends on their device (chunk_size is a Triton setting), then
    runs. See spikessm/ops/common/checks.py."""
    check_diag_scan_tensors(a, b, initial_state)
    name, _, run = pick(OP, backend, algorithm, b.device, IMPLEMENTATIONS)
    if chunk_size is not None and name == "torch":
        raise ValueError(f"{OP}: chunk_size is a Triton kernel setting; the torch backend chooses its own chunk "
                         f"length (pass chunk_size=None), got chunk_size={chunk_size!r}")
    chunk = kernels("common.launch").check_chunk_size(OP, chunk_size, 0) if name == "triton" else 0
    if is_empty(b):
        final = state_or_zeros(initial_state, (b.shape[0], b.shape[2]), a.dtype, b.device)
        return ScanOutput(b.clone(), final if output_final_state else None)
    x, final_state = run(a.contiguous(), b.contiguous(), initial_state.contiguous() if initial_state is not None
                         else None, reverse=reverse, chunk_size=chunk)
    return ScanOutput(x, final_state if output_final_state else None)
