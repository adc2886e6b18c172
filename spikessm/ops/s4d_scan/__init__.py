"""s4d_scan: the S4D state update fused with its readout, with Triton kernels that keep the states on chip
and a PyTorch path of chunked matrix products.

Files: naive.py (the step-by-step reference), torch_chunked.py (the PyTorch path, "chunked"),
triton_sequential.py and triton_chunked.py (the two Triton algorithms, on the kernels of
kernels/s4d_scan/sequential.py and kernels/s4d_scan/chunked.py, installed as spikessm.kernels.s4d_scan.*).

The Triton implementations are pairs of custom ops (spikessm/ops/common/custom_op.py), so torch.compile sees
single opaque nodes; the PyTorch path is a handful of large differentiable ops that torch.compile traces
as they are.
"""
from __future__ import annotations

import torch

from ..common.backend import algorithms, pick
from ..common.checks import (
    COMPLEX_FOR_REAL,
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
from . import torch_chunked, triton_chunked, triton_sequential

OP = "s4d_scan"
# Each backend's algorithms, its default ("auto") first: the Triton kernel that walks time step by step, or
# 64-step chunks of matrix products (the PyTorch path, or a Triton kernel of tl.dot products).
IMPLEMENTATIONS = {"torch": {"chunked": torch_chunked.run},
                   "triton": {"sequential": triton_sequential.run, "chunked": triton_chunked.run}}
# The names s4d_scan and s4d_lif take (layers and ModelConfig check their settings against them).
ALGORITHMS = algorithms(IMPLEMENTATIONS)


def check_ssm_inputs(u, A_bar, B_bar, C, D, initial_state, op: str = OP, state_name: str = "initial_state") -> None:
    """s4d_scan's tensor arguments, shapes, dtypes and devices (also s4d_lif's SSM part, under its own op name and
    name of the state)."""
    for name, t in (("u", u), ("A_bar", A_bar), ("B_bar", B_bar), ("C", C)):
        require_tensor(op, name, t)
    require_rank(op, "u", u, (3,), "(batch, length, channels)")
    Bsz, L, H = u.shape
    require_rank(op, "A_bar", A_bar, (2,), "(channels, state)")
    N = A_bar.shape[1]
    if N < 1:
        raise ValueError(f"{op}: A_bar must have at least one state per channel, got shape {tuple(A_bar.shape)}")
    for name, t in (("A_bar", A_bar), ("B_bar", B_bar), ("C", C)):
        require_shape(op, name, t, (H, N), "(channels, state) with u's channels")
    if D is not None:
        require_tensor(op, "D", D)
        require_shape(op, "D", D, (H,), "(channels,)")
    if initial_state is not None:
        require_tensor(op, state_name, initial_state)
        require_shape(op, state_name, initial_state, (Bsz, H, N), "(batch, channels, state)")
    require_same_device(op, {"u": u, "A_bar": A_bar, "B_bar": B_bar, "C": C, "D": D, state_name: initial_state})

    if u.is_complex():
        raise TypeError(f"{op}: u must be real (float32, float64, float16 or bfloat16), got {u.dtype}")
    if u.dtype not in REAL_STATE + LOW_PRECISION:
        raise TypeError(f"{op}: u must be float32, float64, float16 or bfloat16, got {u.dtype}")
    real_dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    state_dtype = COMPLEX_FOR_REAL[real_dtype]
    for name, t in (("A_bar", A_bar), ("B_bar", B_bar), ("C", C), (state_name, initial_state)):
        if t is None:
            continue
        if not t.is_complex():
            raise TypeError(f"{op}: {name} must be complex ({state_dtype} for u of {u.dtype}), got {t.dtype}")
        if t.dtype != state_dtype:
            raise TypeError(f"{op}: {name} must be {state_dtype} for u of {u.dtype}, got {t.dtype}")
    if D is not None:
        if D.is_complex():
            raise TypeError(f"{op}: D must be real, got {D.dtype}")
        if D.dtype != real_dtype:
            raise TypeError(f"{op}: D must be {real_dtype} for u of {u.dtype}, got {D.dtype}")


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
) -> ScanOutput:
    """S4D state update fused with its readout, per channel h and state n:

        x_t[h, n] = A_bar[h, n] x_{t-1}[h, n] + B_bar[h, n] u_t[h]
        y_t[h]    = Re(sum_n C[h, n] x_t[h, n]) + D[h] u_t[h]

    Args:
        u: (B, L, H) real input; float32, float64, or float16/bfloat16 (computed in float32).
        A_bar, B_bar, C: (H, N) complex, already discretized; complex64 (complex128 when u is float64); N >= 1.
        D: (H,) real skip weight (float32, or float64 with float64 u), or None for no skip.
        initial_state: (B, H, N) complex state before the first step processed; None means zeros.
        reverse: run from t = L - 1 down to t = 0 (for bidirectional layers).
        output_final_state: return the final state (else None).
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".
        algorithm: "sequential" (Triton only: the kernel that walks time step by step), "chunked" (64-step
            chunks of matrix products: the PyTorch path, or on Triton a kernel of tl.dot products), or "auto":
            "sequential" on Triton, "chunked" on PyTorch. An algorithm the backend lacks is refused.

    Returns:
        ScanOutput(output, final_state): y (B, L, H) in u's dtype; the state after the last step processed,
        (B, H, N) complex, or None when output_final_state is False. Empty inputs (batch, length or channels 0)
        give an empty y and the initial state (zeros when None) without running anything.

    Gradients flow to every tensor input. The sequential Triton kernel never writes the (B, L, H, N) states: the
    forward walks time with the states in registers, and the backward gets every gradient from one reverse walk
    of adjoint recurrences, without saving or recomputing states (kernels/s4d_scan/sequential.py). The PyTorch
    path computes y in 64-step chunks by batched matrix products, with a diagonal scan across chunks
    (spikessm/ops/s4d_scan/torch_chunked.py); the chunked Triton kernel walks the chunks in order with the states
    in registers (kernels/s4d_scan/chunked.py).
    """
    check_run_settings(OP, reverse=reverse, output_final_state=output_final_state, backend=backend,
                       algorithm=algorithm, algorithms=ALGORITHMS)
    return s4d_scan_prechecked(u, A_bar, B_bar, C, D, initial_state, reverse=reverse,
                               output_final_state=output_final_state, backend=backend, algorithm=algorithm)


def s4d_scan_prechecked(u: torch.Tensor, A_bar: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor,
                        D: torch.Tensor | None = None, initial_state: torch.Tensor | None = None, *,
                        reverse: bool = False, output_final_state: bool = True, backend: str,
                        algorithm: str = "auto") -> ScanOutput:
    """s4d_scan with settings its caller has checked (s4d_scan itself, or the S4D layer when it was built):
    checks only the tensors of the call, then runs. See spikessm/ops/common/checks.py."""
    check_ssm_inputs(u, A_bar, B_bar, C, D, initial_state)
    _, _, run = pick(OP, backend, algorithm, u.device, IMPLEMENTATIONS)
    if is_empty(u):
        final = state_or_zeros(initial_state, (u.shape[0], u.shape[2], A_bar.shape[1]), A_bar.dtype, u.device)
        return ScanOutput(u.clone(), final if output_final_state else None)
    return ScanOutput(*run(u, A_bar, B_bar, C, D, initial_state, reverse=reverse,
                           output_final_state=output_final_state))
