"""What the diagonal SSM layers (S4D, S5) share for streaming: the zero state, its split into SSM state and
membrane, and step() as forward on a sequence of one step, so that stepping runs the same ops and gives the same
result as one forward pass."""
from __future__ import annotations

import torch
from torch import nn

from .checks import check_input, refuse_bidirectional


def zero_state(layer: nn.Module, batch_size: int, *modes: int):
    """Zeros (batch_size, *modes) complex on the layer's device (complex128 for float64 parameters, else
    complex64); for a layer with neurons, paired with their zero membrane (batch_size, H)."""
    dtype = torch.complex128 if layer.D.dtype == torch.float64 else torch.complex64
    ssm_state = torch.zeros(batch_size, *modes, dtype=dtype, device=layer.D.device)
    if layer.neurons is None:
        return ssm_state
    return ssm_state, layer.neurons.init_state(batch_size, device=layer.D.device, dtype=layer.D.dtype)


def split_state(layer: nn.Module, state):
    """A layer's state -> (SSM state or None, membrane or None): with neurons the state is their pair."""
    if layer.neurons is None:
        return state, None
    return state if state is not None else (None, None)


def step_by_forward(layer: nn.Module, name: str, u_t: torch.Tensor, state):
    """One time step of `layer` (called `name` in errors): u_t (B, H), state -> (its output (B, H), next state).
    A bidirectional layer reads the whole sequence and is refused."""
    if layer.bidirectional:
        refuse_bidirectional(name, "step()")
    check_input(name, u_t, layer.d_model, rank=2)
    out, state = layer(u_t[:, None], state, return_state=True)
    return out[:, 0], state
