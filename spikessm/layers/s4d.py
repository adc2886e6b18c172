"""S4D: the diagonal structured state-space layer (Gu et al. 2022), one SSM per channel, optionally read out by
LIF neurons.

Per channel h, with M = d_state // 2 complex modes whose conjugates are implied:
    x_t = A_bar x_{t-1} + B_bar u_t          (M,) complex state
    y_t = 2 Re(C x_t) + D u_t                 the 2 Re sums each mode with its conjugate
A = -exp(log_neg_A_real) + i A_imag (so Re A < 0: stable), dt = exp(log_dt), discretised by ZOH or bilinear.
The state update and readout run in spikessm.ops.s4d_scan (Triton on CUDA, chunked matrix products on the CPU).
With `neurons` (a LIF or RF), the layer outputs their spikes; a causal layer with LIF neurons then runs the SSM
and the neurons as one op, spikessm.ops.s4d_lif (one fused Triton kernel on CUDA: y never goes to memory), which
computes what running them one after the other computes. RF neurons run after s4d_scan, as spikessm.ops.rf.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.common.backend import BACKENDS
from ..ops.common.checks import check_choice, require_bool
from ..ops.s4d_lif import s4d_lif_prechecked
from ..ops.s4d_scan import ALGORITHMS, s4d_scan_prechecked
from .checks import check_input, check_positive_int, param_dtype, refuse_bidirectional
from .counts import OpCounts
from .discretize import DISCRETIZATIONS, check_dt_range, discretize
from .neurons import LIF, RF, check_neurons
from .ssm_init import s4d_spectrum
from .streaming import split_state, step_by_forward, zero_state


class S4D(nn.Module):
    """S4D layer: (batch, length, d_model) -> (batch, length, d_model).

    Args:
        d_model: channels H (one independent SSM each).
        d_state: real state size N per channel (even): N // 2 complex modes.
        init: "inv" (S4D-Inv), "lin" (S4D-Lin) or "legs" (S4D-LegS, the diagonal of HiPPO-LegS's normal part).
        dt_min, dt_max: log-uniform range of the initial step dt, one per channel (learnable as log_dt).
        discretization: "zoh" or "bilinear".
        bidirectional: add a second, anti-causal readout: y = 2 Re(C x_fwd) + 2 Re(C_rev x_rev) + D u, where x_rev
            runs from the end of the sequence (both include step t). Such a layer cannot stream.
        neurons: a LIF or RF over the d_model channels that reads out y (the layer then outputs spikes), or None
            (the layer outputs y). Its backend must be the layer's.
        backend: "auto" | "triton" | "torch", passed to the ops.
        algorithm: "auto" | "sequential" | "chunked", the ops' algorithm on Triton (see spikessm.ops.s4d_scan;
            "sequential" is Triton-only).
        device, dtype: of the parameters; dtype float32 (default) or float64.

    Parameters: log_dt (H,), log_neg_A_real (H, M), A_imag (H, M), B (H, M, 2) and C (directions, H, M, 2)
    (complex numbers stored as [re, im] pairs), D (H,), and the neurons' when they learn. `ssm_parameters()` names
    the first four.

    State (streaming, causal layers): the SSM state (B, H, M) complex; with neurons the pair (SSM state, the
    neurons' state: a LIF's membrane (B, H), an RF's RFState).
    """

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "inv", dt_min: float = 1e-3,
                 dt_max: float = 1e-1, discretization: str = "zoh", bidirectional: bool = False,
                 neurons: LIF | RF | None = None, backend: str = "auto", algorithm: str = "auto", device=None,
                 dtype=None):
        super().__init__()
        check_positive_int("S4D", "d_model", d_model)
        check_dt_range("S4D", dt_min, dt_max)
        check_choice("S4D", "discretization", discretization, DISCRETIZATIONS)
        require_bool("S4D", "bidirectional", bidirectional)
        check_choice("S4D", "backend", backend, BACKENDS)
        check_choice("S4D", "algorithm", algorithm, ALGORITHMS)
        check_neurons("S4D", neurons, d_model, backend)
        dtype = param_dtype("S4D", dtype)
        A, B = s4d_spectrum(init, d_state)  # validates init and d_state
        H, M = d_model, d_state // 2
        self.d_model, self.d_state, self.init = d_model, d_state, init
        self.discretization, self.bidirectional, self.backend = discretization, bidirectional, backend
        self.algorithm = algorithm

        def param(t: torch.Tensor) -> nn.Parameter:
            return nn.Parameter(t.to(device=device, dtype=dtype).contiguous())

        log_dt = torch.rand(H, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = param(log_dt)
        self.log_neg_A_real = param(torch.log(-A.real).expand(H, M))
        self.A_imag = param(A.imag.expand(H, M))
        self.B = param(torch.view_as_real(B).expand(H, M, 2))
        # Unit-variance complex normal C, one per direction.
        self.C = param(torch.randn(2 if bidirectional else 1, H, M, 2, dtype=torch.float64) * math.sqrt(0.5))
        self.D = param(torch.randn(H, dtype=torch.float64))
        self.neurons = neurons

    @property
    def fused(self) -> bool:
        """Whether forward runs the SSM and its neurons as one s4d_lif op (a causal layer with LIF neurons)."""
        return isinstance(self.neurons, LIF) and not self.bidirectional

    def ssm_parameters(self) -> list[nn.Parameter]:
        """The parameters the papers train with their own learning rate and no weight decay (A, B, dt), and RF
        neurons' dynamics."""
        own = [self.log_dt, self.log_neg_A_real, self.A_imag, self.B]
        return own + (self.neurons.ssm_parameters() if isinstance(self.neurons, RF) else [])

    def discretized(self, dtype=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A_bar, B_bar: (H, M) complex; C: (directions, H, M) complex, already doubled for the 2 Re readout.
        dtype: the real dtype to compute in (the parameters', or e.g. float64 for the integer form), with
        gradients to the parameters."""
        t = (lambda p: p) if dtype is None else (lambda p: p.to(dtype))
        A = torch.complex(-torch.exp(t(self.log_neg_A_real)), t(self.A_imag))
        A_bar, B_bar = discretize(A, torch.view_as_complex(t(self.B)), torch.exp(t(self.log_dt))[:, None],
                                  self.discretization)
        return A_bar, B_bar, 2 * torch.view_as_complex(t(self.C))

    def forward(self, u: torch.Tensor, state=None, *, return_state: bool = False):
        """u: (B, L, H) float32/float64/bfloat16/float16; state: the state before u's first step (see the class
        docstring) or None for zeros. Returns y, or the neurons' spikes, (B, L, H) in u's dtype, and with
        return_state the state after the last step, to continue the stream from (causal layers only)."""
        check_input("S4D", u, self.d_model)
        require_bool("S4D", "return_state", return_state)
        if self.bidirectional and (state is not None or return_state):
            refuse_bidirectional("S4D", "continuing from a state")
        ssm_state, membrane = split_state(self, state)
        out, ssm_state, membrane = self._run(u, ssm_state, membrane, return_state)
        if not return_state:
            return out
        return out, (ssm_state if self.neurons is None else (ssm_state, membrane))

    def _run(self, u: torch.Tensor, ssm_state, membrane, return_state: bool):
        """The ops: s4d_lif for a causal layer with LIF neurons, else s4d_scan (both directions), then the
        neurons (carrying their state when the layer is causal)."""
        A_bar, B_bar, C = self.discretized()
        ops = dict(backend=self.backend, algorithm=self.algorithm)
        if self.fused:
            out, final, _ = s4d_lif_prechecked(u, A_bar, B_bar, C[0], self.D, (ssm_state, membrane),
                                               output_final_state=return_state, **ops, **self.neurons.neuron_args())
            return (out, *final) if return_state else (out, None, None)
        out, ssm_state = s4d_scan_prechecked(u, A_bar, B_bar, C[0], self.D, ssm_state,
                                             output_final_state=return_state, **ops)
        if self.bidirectional:
            out = out + s4d_scan_prechecked(u, A_bar, B_bar, C[1], None, reverse=True, output_final_state=False,
                                            **ops)[0]
        if self.neurons is not None:  # RF neurons, or any neurons of a bidirectional layer (no state to carry)
            out, membrane = self.neurons(out, membrane, return_state=True)
        return out, ssm_state, membrane

    def op_counts(self, u: torch.Tensor, out: torch.Tensor) -> dict[str, OpCounts]:
        """Per token and channel, with M complex modes: A x 4M, B u 2M, Re(C x) 2M (the three twice when
        bidirectional) and D u 1 MAC; a fused layer also reports its neurons, whose forward it ran."""
        M, directions = self.d_state // 2, 2 if self.bidirectional else 1
        macs = self.d_model * (8 * M * directions + 1)
        counts = {"": OpCounts(macs=macs, dense_macs=macs)}
        if self.fused:
            counts["neurons"] = self.neurons.op_counts(u, out)[""]
        return counts

    def init_state(self, batch_size: int):
        """Zeros, the state before the first step: (batch_size, H, M) complex, with neurons paired with the
        membrane (batch_size, H) (float64 for float64 parameters, else float32)."""
        return zero_state(self, batch_size, self.d_model, self.d_state // 2)

    def step(self, u_t: torch.Tensor, state):
        """One time step: u_t (B, H), state -> (y_t or spikes (B, H) in u_t's dtype, next state); forward on a
        sequence of one step, so the same ops and the same result."""
        return step_by_forward(self, "S4D", u_t, state)

    def extra_repr(self) -> str:
        return (f"{self.d_model}, d_state={self.d_state}, init={self.init!r}, discretization={self.discretization!r}, "
                f"bidirectional={self.bidirectional}, backend={self.backend!r}, algorithm={self.algorithm!r}")
