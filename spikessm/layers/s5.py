"""S5: the simplified state-space layer (Smith et al. 2023), one multi-input multi-output diagonal SSM.

With P = d_state and M complex modes (M = P // 2 with conjugate symmetry, else P):
    x_t = Lambda_bar x_{t-1} + B_bar u_t      x: (M,) complex, B: (M, H) complex
    y_t = k Re(C x_t) + D u_t                 C: (H, M) complex, k = 2 with conjugate symmetry, else 1
Lambda starts as the eigenvalues of HiPPO-N (the normal part of HiPPO-LegS), one HiPPO-N of size P / blocks per
block; B and C are expressed in its eigenbasis. Each mode has its own learnable step (log_step). The state
update runs in spikessm.ops.diag_scan; the projections are real matmuls in float32 (also under autocast). With
`neurons` (a LIF or RF), the layer outputs their spikes of y.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.common.backend import BACKENDS
from ..ops.common.checks import check_choice, require_bool
from ..ops.diag_scan import diag_scan_prechecked
from .checks import check_input, check_positive_int, param_dtype, refuse_bidirectional
from .counts import OpCounts
from .discretize import DISCRETIZATIONS, check_dt_range, discretize
from .neurons import LIF, RF, check_neurons
from .ssm_init import check_state_size, hippo_n
from .streaming import split_state, step_by_forward, zero_state


def project_in(u: torch.Tensor, B_bar: torch.Tensor) -> torch.Tensor:
    """B_bar u: (B, L, H) real, (M, H) complex -> (B, L, M) complex, as one real matmul whose output columns
    interleave [re, im] per mode: the memory layout of a complex tensor, so no copy is needed to view it."""
    W = torch.view_as_real(B_bar).permute(1, 0, 2).reshape(B_bar.shape[1], -1)  # (H, 2M)
    return torch.view_as_complex((u @ W).unflatten(-1, (-1, 2)))


def read_out(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Re(C x) = C.re x.re - C.im x.im: (B, L, M) complex, (H, M) complex -> (B, L, H) real, one real matmul."""
    W = torch.stack([C.real, -C.imag], dim=-1).reshape(C.shape[0], -1).T  # (2M, H)
    return torch.view_as_real(x).flatten(-2) @ W


class S5(nn.Module):
    """S5 layer: (batch, length, d_model) -> (batch, length, d_model).

    Args:
        d_model: channels H.
        d_state: state size P (before halving by conjugate symmetry).
        blocks: number of HiPPO-N blocks the initial spectrum is made of (P must divide into them, and each
            block must be even with conj_sym).
        conj_sym: keep one mode of each conjugate pair (M = P // 2) and read out 2 Re(C x).
        clip_eigs: clamp Re(Lambda) <= -1e-4 in the forward, so the layer stays strictly stable while training.
        discretization: "zoh" or "bilinear".
        dt_min, dt_max: log-uniform range of the initial per-mode steps.
        bidirectional: a second scan from the end of the sequence with its own C:
            y = k Re(C x_fwd) + k Re(C_rev x_rev) + D u. Such a layer cannot stream.
        neurons: a LIF or RF over the d_model channels that reads out y (the layer then outputs spikes), or None
            (the layer outputs y). Its backend must be the layer's.
        backend: "auto" | "triton" | "torch", passed to diag_scan.
        device, dtype: of the parameters; dtype float32 (default) or float64.

    Parameters: Lambda_re, Lambda_im, log_step (M,); B (M, H, 2) and C (directions, H, M, 2) as [re, im]
    pairs; D (H,), and the neurons' when they learn. `ssm_parameters()` names Lambda, B and log_step.

    State (streaming, causal layers): the SSM state (B, M) complex; with neurons the pair (SSM state, the
    neurons' state: a LIF's membrane (B, H), an RF's RFState).
    """

    def __init__(self, d_model: int, d_state: int = 64, *, blocks: int = 1, conj_sym: bool = True,
                 clip_eigs: bool = False, discretization: str = "zoh", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 bidirectional: bool = False, neurons: LIF | RF | None = None, backend: str = "auto", device=None,
                 dtype=None):
        super().__init__()
        check_positive_int("S5", "d_model", d_model)
        check_positive_int("S5", "d_state", d_state)
        check_positive_int("S5", "blocks", blocks)
        for name, value in (("conj_sym", conj_sym), ("clip_eigs", clip_eigs), ("bidirectional", bidirectional)):
            require_bool("S5", name, value)
        if d_state % blocks:
            raise ValueError(f"S5: d_state ({d_state}) must be a multiple of blocks ({blocks})")
        if conj_sym:
            check_state_size("S5", "d_state / blocks (with conj_sym)", d_state // blocks)
        check_dt_range("S5", dt_min, dt_max)
        check_choice("S5", "discretization", discretization, DISCRETIZATIONS)
        check_choice("S5", "backend", backend, BACKENDS)
        check_neurons("S5", neurons, d_model, backend)
        dtype = param_dtype("S5", dtype)
        H, P = d_model, d_state
        self.d_model, self.d_state, self.blocks = d_model, d_state, blocks
        self.conj_sym, self.clip_eigs, self.discretization = conj_sym, clip_eigs, discretization
        self.bidirectional, self.backend = bidirectional, backend

        size = P // blocks
        lam, V = hippo_n(size)
        keep = slice(size // 2, size) if conj_sym else slice(0, size)  # ascending Im: upper half is Im > 0
        Lambda = lam[keep].repeat(blocks)
        B = torch.randn(P, H, dtype=torch.float64) / math.sqrt(H)  # LeCun normal, in the HiPPO basis
        # Block-diagonal V: each block's rows of B go to that block's eigenbasis (V unitary: V^-1 = V^H).
        B_modes = torch.cat([(V.conj().T @ B[j * size:(j + 1) * size].to(torch.complex128))[keep]
                             for j in range(blocks)])
        M = Lambda.shape[0]

        def param(t: torch.Tensor) -> nn.Parameter:
            return nn.Parameter(t.to(device=device, dtype=dtype).contiguous())

        self.Lambda_re = param(Lambda.real)
        self.Lambda_im = param(Lambda.imag)
        self.B = param(torch.view_as_real(B_modes))
        # A unit-variance complex normal C is distributed alike in any unitary basis: no V needed.
        self.C = param(torch.randn(2 if bidirectional else 1, H, M, 2, dtype=torch.float64) * math.sqrt(0.5))
        self.D = param(torch.randn(H, dtype=torch.float64))
        self.log_step = param(torch.rand(M, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min))
                              + math.log(dt_min))
        self.neurons = neurons

    @property
    def n_modes(self) -> int:
        return self.Lambda_re.shape[0]

    def ssm_parameters(self) -> list[nn.Parameter]:
        """The parameters S5 trains with its own learning rate and no weight decay (Lambda, B, step), and RF
        neurons' dynamics."""
        own = [self.Lambda_re, self.Lambda_im, self.B, self.log_step]
        return own + (self.neurons.ssm_parameters() if isinstance(self.neurons, RF) else [])

    def discretized(self, dtype=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Lambda_bar (M,), B_bar (M, H) complex; C (directions, H, M) complex with the readout factor k in it.
        dtype: the real dtype to compute in (the parameters', or e.g. float64 for the integer form), with
        gradients to the parameters."""
        t = (lambda p: p) if dtype is None else (lambda p: p.to(dtype))
        re = t(self.Lambda_re).clamp(max=-1e-4) if self.clip_eigs else t(self.Lambda_re)
        Lambda = torch.complex(re, t(self.Lambda_im))
        Lambda_bar, B_bar = discretize(Lambda[:, None], torch.view_as_complex(t(self.B)),
                                       torch.exp(t(self.log_step))[:, None], self.discretization)
        return Lambda_bar[:, 0], B_bar, (2 if self.conj_sym else 1) * torch.view_as_complex(t(self.C))

    def forward(self, u: torch.Tensor, state=None, *, return_state: bool = False):
        """u: (B, L, H) float32/float64/bfloat16/float16; state: the state before u's first step (see the class
        docstring) or None for zeros. Returns y, or the neurons' spikes, (B, L, H) in u's dtype, and with
        return_state the state after the last step (causal layers only)."""
        check_input("S5", u, self.d_model)
        require_bool("S5", "return_state", return_state)
        if self.bidirectional and (state is not None or return_state):
            refuse_bidirectional("S5", "continuing from a state")
        ssm_state, membrane = split_state(self, state)
        with torch.autocast(u.device.type, enabled=False):  # the state update is float32 even under autocast
            v = u.to(self.D.dtype)
            Lambda_bar, B_bar, C = self.discretized()
            b = project_in(v, B_bar)
            x, ssm_state = diag_scan_prechecked(Lambda_bar, b, ssm_state, output_final_state=return_state,
                                                backend=self.backend)
            y = read_out(x, C[0]) + self.D * v
            if self.bidirectional:
                x_rev, _ = diag_scan_prechecked(Lambda_bar, b, reverse=True, output_final_state=False,
                                                backend=self.backend)
                y = y + read_out(x_rev, C[1])
        y = y.to(u.dtype)
        if self.neurons is None:
            return (y, ssm_state) if return_state else y
        if not return_state:
            return self.neurons(y, membrane)
        spikes, membrane = self.neurons(y, membrane, return_state=True)
        return spikes, (ssm_state, membrane)

    def op_counts(self, u: torch.Tensor, out: torch.Tensor) -> dict[str, OpCounts]:
        """Per token, with M complex modes and H channels: B u 2MH, A x 4M, Re(C x) 2MH (the last two twice when
        bidirectional) and D u H MACs. The neurons report themselves (their forward runs)."""
        M, H, directions = self.n_modes, self.d_model, 2 if self.bidirectional else 1
        macs = 2 * M * H + directions * (4 * M + 2 * M * H) + H
        return {"": OpCounts(macs=macs, dense_macs=macs)}

    def init_state(self, batch_size: int):
        """Zeros, the state before the first step: (batch_size, M) complex, with neurons paired with the membrane
        (batch_size, H) (float64 for float64 parameters, else float32)."""
        return zero_state(self, batch_size, self.n_modes)

    def step(self, u_t: torch.Tensor, state):
        """One time step: u_t (B, H), state -> (y_t or spikes (B, H) in u_t's dtype, next state); forward on a
        sequence of one step, so the same ops and the same result."""
        return step_by_forward(self, "S5", u_t, state)
