"""SSMBlock: one residual block of a spiking (or non-spiking) SSM network.

    z = norm(x) if prenorm else x
    z = mixing(readout(ssm(z)))          ssm: S4D or S5, with LIF or RF neurons for a LIF or RF readout, or RF
                                         neurons alone (ssm "rf"); readout: Heaviside spike, GELU or none;
                                         mixing: GLU or GSU
    x = x + z;  x = norm(x) if not prenorm
LIF neurons belong to the SSM layer because they carry state from step to step, as the SSM does (the layer's
state is the block's) and because a causal S4D runs them in the same op as its own update (spikessm.ops.s4d_lif).
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import GLU, GSU, LIF, RF, S4D, S5, Heaviside, make_norm
from ..ops.common.checks import require_bool
from ..layers.checks import check_input
from .config import ModelConfig


def make_rf(config: ModelConfig, device=None, dtype=None) -> RF:
    """RF neurons from the config's rf_* fields: an RF readout, or the block's whole SSM layer (ssm "rf")."""
    return RF(config.d_model, branches=config.rf_branches, decay=config.rf_decay,
              frequency_init=config.rf_frequency_init, dt_min=config.rf_dt_min, dt_max=config.rf_dt_max,
              input_scale=config.rf_input_scale, threshold=config.rf_threshold, reset=config.rf_reset,
              surrogate=config.surrogate, alpha=config.surrogate_alpha, adaptive=config.rf_adaptive,
              learn_decay=config.rf_learn_decay, learn_threshold=config.learn_threshold,
              detach_reset=config.detach_reset, backend=config.backend, device=device, dtype=dtype)


def make_neurons(config: ModelConfig, device=None, dtype=None) -> LIF | RF | None:
    """The SSM layer's neurons: LIF for readout "lif", RF for readout "rf", else None."""
    if config.readout == "rf":
        return make_rf(config, device, dtype)
    if config.readout != "lif":
        return None
    return LIF(config.d_model, beta=config.lif_beta, threshold=config.lif_threshold, reset=config.lif_reset,
               surrogate=config.surrogate, alpha=config.surrogate_alpha, learn_beta=config.learn_beta,
               learn_threshold=config.learn_threshold, detach_reset=config.detach_reset,
               fire_on_tie=config.lif_fire_on_tie, backend=config.backend, device=device, dtype=dtype)


def make_ssm(config: ModelConfig, device=None, dtype=None) -> nn.Module:
    if config.ssm == "rf":
        return make_rf(config, device, dtype)
    common = dict(discretization=config.discretization, dt_min=config.dt_min, dt_max=config.dt_max,
                  bidirectional=config.bidirectional, neurons=make_neurons(config, device, dtype),
                  backend=config.backend, device=device, dtype=dtype)
    if config.ssm == "s4d":
        return S4D(config.d_model, config.d_state, init=config.init, algorithm=config.s4d_algorithm, **common)
    return S5(config.d_model, config.d_state, blocks=config.s5_blocks, conj_sym=config.conj_sym,
              clip_eigs=config.clip_eigs, **common)


def make_readout(config: ModelConfig) -> nn.Module:
    """The pointwise readout after the SSM layer. A LIF readout carries state, so it lives in the SSM layer
    (ssm.neurons) and this one is the identity; SSMBlock.spiking_readout names whichever spikes."""
    if config.readout == "binary":
        return Heaviside(0.0, surrogate=config.surrogate, alpha=config.surrogate_alpha)
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

    State for streaming: the SSM layer's (see S4D and S5: the SSM state, paired with the state of their neurons;
    RF: its RFState).
    """

    def __init__(self, config: ModelConfig, *, device=None, dtype=None):
        super().__init__()
        self.d_model, self.prenorm = config.d_model, config.prenorm
        self.norm = make_norm(config.norm, config.d_model, device=device, dtype=dtype)
        self.ssm = make_ssm(config, device, dtype)
        self.readout = make_readout(config)
        self.mixing = make_mixing(config, device, dtype)

    @property
    def causal(self) -> bool:
        return not self.ssm.bidirectional

    def spiking_readout(self) -> tuple[str, nn.Module] | None:
        """The block's spiking readout, as (its name in the block, the module): RF neurons as the whole SSM layer
        ("ssm", ssm "rf"), the SSM layer's neurons ("ssm.neurons", a LIF or RF readout) or a Heaviside readout
        ("readout"); None when the readout does not spike. Either way its spikes are the mixing layer's input,
        which is where instrumentation reads them: a fused S4D layer runs its neurons inside its own op and never
        calls the neuron module."""
        if isinstance(self.ssm, RF):
            return "ssm", self.ssm
        neurons = getattr(self.ssm, "neurons", None)
        if neurons is not None:
            return "ssm.neurons", neurons
        if isinstance(self.readout, Heaviside):
            return "readout", self.readout
        return None

    def forward(self, x: torch.Tensor, state=None, *, return_state: bool = False):
        """x: (B, L, H); state: from init_state() or a previous call, or None (zeros). Returns (B, L, H), and
        with return_state the state after the last step (causal blocks only)."""
        check_input("SSMBlock", x, self.d_model)
        require_bool("SSMBlock", "return_state", return_state)
        z = self.norm(x) if self.prenorm else x
        if return_state or state is not None:
            z, state = self.ssm(z, state, return_state=True)
        else:
            z = self.ssm(z)
        x = x + self.mixing(self.readout(z))
        if not self.prenorm:
            x = self.norm(x)
        return (x, state) if return_state else x

    def init_state(self, batch_size: int):
        """Zero state before the first step."""
        return self.ssm.init_state(batch_size)

    def step(self, x_t: torch.Tensor, state) -> tuple[torch.Tensor, object]:
        """One time step: x_t (B, H) -> (out_t (B, H), next state). Equals forward on the sequence."""
        check_input("SSMBlock", x_t, self.d_model, rank=2)
        z = self.norm(x_t) if self.prenorm else x_t
        z, state = self.ssm.step(z, state)  # refuses bidirectional SSMs
        x_t = x_t + self.mixing(self.readout(z))
        if not self.prenorm:
            x_t = self.norm(x_t)
        return x_t, state
