"""SSMBlock: one residual block of a spiking (or non-spiking) SSM network.

    z = norm(x) if prenorm else x
    z = mixing(readout(ssm(z)))          readout: spikes (binary / LIF), GELU, or none; mixing: GLU or GSU
    x = x + z;  x = norm(x) if not prenorm
When the readout is a LIF right after a causal S4D, the SSM and the neurons run as one op (spikessm.ops.s4d_lif:
one fused Triton kernel on CUDA), which gives the same result as running them one after the other.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import GLU, GSU, LIF, S4D, S5, Heaviside, make_norm
from ..layers.checks import check_input
from ..ops import s4d_lif
from .config import ModelConfig

BlockState = tuple  # (SSM state, readout state or None)


def make_ssm(config: ModelConfig, device=None, dtype=None) -> nn.Module:
    common = dict(discretization=config.discretization, dt_min=config.dt_min, dt_max=config.dt_max,
                  bidirectional=config.bidirectional, backend=config.backend, device=device, dtype=dtype)
    if config.ssm == "s4d":
        return S4D(config.d_model, config.d_state, init=config.init, algorithm=config.s4d_algorithm, **common)
    return S5(config.d_model, config.d_state, blocks=config.s5_blocks, conj_sym=config.conj_sym,
              clip_eigs=config.clip_eigs, **common)


def make_readout(config: ModelConfig, device=None, dtype=None) -> nn.Module:
    if config.readout == "binary":
        return Heaviside(0.0, surrogate=config.surrogate, alpha=config.surrogate_alpha)
    if config.readout == "lif":
        return LIF(config.d_model, beta=config.lif_beta, threshold=config.lif_threshold, reset=config.lif_reset,
                   surrogate=config.surrogate, alpha=config.surrogate_alpha, learn_beta=config.learn_beta,
                   learn_threshold=config.learn_threshold, detach_reset=config.detach_reset,
                   backend=config.backend, device=device, dtype=dtype)
    if config.readout == "gelu":
        return nn.GELU()
    return nn.Identity()


def make_mixing(config: ModelConfig, device=None, dtype=None) -> nn.Module:
    if config.mixing == "gsu":
        return GSU(config.d_model, dropout=config.dropout, surrogate=config.surrogate, alpha=config.surrogate_alpha,
                   device=device, dtype=dtype)
    return GLU(config.d_model, dropout=config.dropout, device=device, dtype=dtype)


class SSMBlock(nn.Module):
    """One block: (batch, length, d_model) -> (batch, length, d_model); see the module docstring.

    State for streaming: (SSM state, membrane (B, H) for a LIF readout, else None).
    """

    def __init__(self, config: ModelConfig, *, device=None, dtype=None):
        super().__init__()
        self.d_model, self.prenorm = config.d_model, config.prenorm
        self.norm = make_norm(config.norm, config.d_model, device=device, dtype=dtype)
        self.ssm = make_ssm(config, device, dtype)
        self.readout = make_readout(config, device, dtype)
        self.mixing = make_mixing(config, device, dtype)

    @property
    def causal(self) -> bool:
        return not self.ssm.bidirectional

    @property
    def fused(self) -> bool:
        """SSM and LIF run as one s4d_lif op."""
        return isinstance(self.ssm, S4D) and isinstance(self.readout, LIF) and self.causal

    def _ssm_and_readout(self, z: torch.Tensor, state: BlockState | None, return_state: bool):
        ssm_state, membrane = state if state is not None else (None, None)
        if self.fused:
            A_bar, B_bar, C = self.ssm.discretized()
            spikes, (ssm_state, membrane), _ = s4d_lif(
                z, A_bar, B_bar, C[0], self.ssm.D, initial_state=(ssm_state, membrane),
                backend=self.ssm.backend, algorithm=self.ssm.algorithm, **self.readout.neuron_args())
            return spikes, (ssm_state, membrane)
        if return_state or state is not None:
            y, ssm_state = self.ssm(z, ssm_state, return_state=True)
        else:
            y = self.ssm(z)
        if isinstance(self.readout, LIF):
            out, membrane = self.readout(y, membrane, return_state=True)
        else:
            out = self.readout(y)
        return out, (ssm_state, membrane)

    def forward(self, x: torch.Tensor, state: BlockState | None = None, *, return_state: bool = False):
        """x: (B, L, H); state: from init_state() or a previous call, or None (zeros). Returns (B, L, H), and
        with return_state the state after the last step (causal blocks only)."""
        check_input("SSMBlock", x, self.d_model)
        z = self.norm(x) if self.prenorm else x
        z, new_state = self._ssm_and_readout(z, state, return_state)
        x = x + self.mixing(z)
        if not self.prenorm:
            x = self.norm(x)
        return (x, new_state) if return_state else x

    def init_state(self, batch_size: int) -> BlockState:
        """Zero state before the first step."""
        ssm_state = self.ssm.init_state(batch_size)
        membrane = None
        if isinstance(self.readout, LIF):
            real = torch.float64 if ssm_state.dtype == torch.complex128 else torch.float32
            membrane = self.readout.init_state(batch_size, device=ssm_state.device, dtype=real)
        return ssm_state, membrane

    def step(self, x_t: torch.Tensor, state: BlockState) -> tuple[torch.Tensor, BlockState]:
        """One time step: x_t (B, H) -> (out_t (B, H), next state). Equals forward on the sequence."""
        check_input("SSMBlock", x_t, self.d_model, rank=2)
        ssm_state, membrane = state
        z = self.norm(x_t) if self.prenorm else x_t
        y, ssm_state = self.ssm.step(z, ssm_state)  # refuses bidirectional SSMs
        if isinstance(self.readout, LIF):
            out, membrane = self.readout.step(y, membrane)
        else:
            out = self.readout(y)
        x_t = x_t + self.mixing(out)
        if not self.prenorm:
            x_t = self.norm(x_t)
        return x_t, (ssm_state, membrane)
