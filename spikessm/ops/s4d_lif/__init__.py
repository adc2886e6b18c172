"""s4d_lif: an S4D layer's state update and readout followed by LIF neurons, fused.

Files: naive.py (the step-by-step reference: s4d_scan's, then lif's), torch_chunked.py (the PyTorch path: s4d_scan's
then lif's), triton_sequential.py and triton_chunked.py (the two Triton algorithms, each a pair of custom ops:
spikessm/ops/common/custom_op.py). The Triton kernels read u and write
spikes: neither the SSM states nor the SSM output y reach memory. When gradients are needed they also write the
pre-reset membrane (B, L, H). Two algorithms, as for s4d_scan:
  * "sequential" (kernels/s4d_scan/sequential.py with its LIF readout) walks time step by step; one reverse
    walk gets every gradient from the membrane (no state is saved or recomputed).
  * "chunked" (kernels/s4d_scan/chunked.py with its LIF readout) computes y in 64-step tiles of tensor-core
    products that the neurons then walk in registers; its backward is lif's backward kernel followed by the
    chunked S4D backward.
"""
from __future__ import annotations

import torch

from ..common.backend import algorithms, pick
from ..common.checks import check_neuron_settings, check_run_settings, is_empty, require_bool, state_or_zeros
from ..common.outputs import S4DLIFOutput, S4DLIFState
from ..lif import check_lif_tensors
from ..s4d_scan import check_ssm_inputs
from . import torch_chunked, triton_chunked, triton_sequential

OP = "s4d_lif"
IMPLEMENTATIONS = {"torch": {"chunked": torch_chunked.run},
                   "triton": {"sequential": triton_sequential.run, "chunked": triton_chunked.run}}
ALGORITHMS = algorithms(IMPLEMENTATIONS)


def _initial_state(initial_state) -> tuple:
    """(ssm, membrane) from None, an S4DLIFState or a plain pair."""
    if initial_state is None:
        return None, None
    if not isinstance(initial_state, tuple) or len(initial_state) != 2:
        raise TypeError(f"{OP}: initial_state must be None, an S4DLIFState or a pair (ssm state or None, membrane "
                        f"or None), got {type(initial_state).__name__}")
    return initial_state[0], initial_state[1]


def s4d_lif(
    u: torch.Tensor,
    A_bar: torch.Tensor,
    B_bar: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    initial_state: S4DLIFState | tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    *,
    beta,
    threshold,
    reset: str = "subtract",
    surrogate: str = "atan",
    alpha: float | None = None,
    detach_reset: bool = False,
    fire_on_tie: bool = False,
    reverse: bool = False,
    output_final_state: bool = True,
    output_membrane: bool = False,
    backend: str = "auto",
    algorithm: str = "auto",
) -> S4DLIFOutput:
    """S4D state update and readout, then LIF neurons on its output: s4d_scan followed by lif, in one kernel.
    y stays in the state's precision between the two (for a bfloat16/float16 u it is not rounded to u's dtype).

        y_t = Re(sum_n C x_t) + D u_t  with  x_t = A_bar x_{t-1} + B_bar u_t      (see s4d_scan)
        m_t = beta v_{t-1} + y_t;  s_t = H(m_t - threshold);  v_t = reset(m_t, s_t)  (see lif)
        reset: "subtract" v_t = m_t - threshold s_t | "zero" v_t = m_t (1 - s_t) | "none" v_t = m_t |
               "subtract_after_decay" m_t = v_{t-1} + y_t, v_t = beta m_t - threshold s_t (snntorch's order)

    Args:
        u, A_bar, B_bar, C, D: as in s4d_scan: (B, L, H) real; (H, N) complex; (H,) real or None.
        initial_state: None, an S4DLIFState(ssm, membrane) or a plain pair (SSM state (B, H, N) complex or None,
            membrane (B, H) or None); None parts mean zeros.
        beta, threshold, reset, surrogate, alpha, detach_reset,
        fire_on_tie: as in lif (values checked for floats and CPU
            tensors only).
        reverse: run both the SSM and the neurons from t = L - 1 down to t = 0.
        output_final_state: return the final state (else None).
        output_membrane: also return the pre-reset membrane (B, L, H), for analysis (no gradient).
        backend: "auto" (Triton on CUDA, PyTorch otherwise), "triton" or "torch".
        algorithm: the S4D part's algorithm, as in s4d_scan: "sequential" (Triton only: one kernel walks time
            step by step), "chunked" (64-step chunks of matrix products: the PyTorch path, or on Triton a kernel
            of tl.dot products whose output tiles the neurons walk in registers), or "auto": "sequential" on
            Triton, "chunked" on PyTorch.

    Returns:
        S4DLIFOutput(output, final_state, membrane): spikes (B, L, H) in u's dtype, values 0 or 1; the
        S4DLIFState(ssm (B, H, N), membrane (B, H)) after the last step processed (pass it back as
        initial_state to continue a stream), or None when output_final_state is False; the pre-reset membrane
        (B, L, H) when output_membrane, else None. Empty inputs (batch, length or channels 0) give empty spikes
        and the initial state (zeros when None) without running anything.
    """
    alpha = check_neuron_settings(OP, beta=beta, threshold=threshold, reset=reset, surrogate=surrogate,
                                  alpha=alpha, detach_reset=detach_reset, fire_on_tie=fire_on_tie)
    check_run_settings(OP, reverse=reverse, output_final_state=output_final_state, backend=backend,
                       algorithm=algorithm, algorithms=ALGORITHMS)
    require_bool(OP, "output_membrane", output_membrane)
    return s4d_lif_prechecked(u, A_bar, B_bar, C, D, initial_state, beta=beta, threshold=threshold, reset=reset,
                              surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                              fire_on_tie=fire_on_tie, reverse=reverse, output_final_state=output_final_state,
                              output_membrane=output_membrane,
                              backend=backend, algorithm=algorithm)


def s4d_lif_prechecked(u: torch.Tensor, A_bar: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor | None = None, initial_state=None, *, beta, threshold, reset: str,
                       surrogate: str, alpha: float, detach_reset: bool, fire_on_tie: bool = False,
                       reverse: bool = False,
                       output_final_state: bool = True, output_membrane: bool = False, backend: str,
                       algorithm: str = "auto") -> S4DLIFOutput:
    """s4d_lif with settings its caller has checked (s4d_lif itself, or the S4D layer and its neurons when they
    were built; alpha given as a number): checks only the tensors of the call, then runs. See
    spikessm/ops/common/checks.py."""
    h0, v0 = _initial_state(initial_state)
    check_ssm_inputs(u, A_bar, B_bar, C, D, h0, op=OP, state_name="initial SSM state")
    beta_t, threshold_t = check_lif_tensors(OP, u, beta, threshold, v0, "initial membrane")
    _, _, run = pick(OP, backend, algorithm, u.device, IMPLEMENTATIONS)
    if is_empty(u):
        Bsz, L, H = u.shape
        ssm = state_or_zeros(h0, (Bsz, H, A_bar.shape[1]), A_bar.dtype, u.device)
        membrane = state_or_zeros(v0, (Bsz, H), beta_t.dtype, u.device)
        return S4DLIFOutput(u.clone(), S4DLIFState(ssm, membrane) if output_final_state else None,
                            u.new_empty((Bsz, L, H), dtype=beta_t.dtype) if output_membrane else None)
    spikes, ssm_state, v_state, membrane = run(u, A_bar, B_bar, C, D, h0, v0, beta_t, threshold_t, reset=reset,
                                               surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                                               reverse=reverse, output_membrane=output_membrane,
                                               fire_on_tie=fire_on_tie)
    return S4DLIFOutput(spikes, S4DLIFState(ssm_state, v_state) if output_final_state else None, membrane)
