"""The neurons' reset after a spike, once: the modes and the PyTorch statement of the rule.

    "subtract"  v = m - threshold where the neuron spiked (s = 1)
    "zero"      v = 0 where it spiked
    "none"      v = m
    "subtract_after_decay"  (LIF only) v = beta m - threshold s, and the next step adds its input without a
                further decay: m_{t+1} = v_t + x_{t+1}. That is snntorch's Leaky (reset_delay=True, its default):
                m_t = beta m_{t-1} + x_t - threshold s_{t-1}, the threshold subtracted after the leak, where
                "subtract" subtracts it before (spikingjelly's order, m_{t+1} = beta (m_t - threshold s_t) +
                x_{t+1}). The state v_t is then the membrane after leak and reset, the one term the next step
                needs (snntorch's mem_t is m_t; v_t = beta mem_t - threshold s_t). See docs/neurons.md.

m is the membrane before the reset. A neuron spikes where m > threshold, or, with fire_on_tie, where m >= threshold
(spikingjelly's rule,
 which matters for integer inputs such as event counts): `fires` below. The Triton kernels apply the same rule
 (kernels/common/neuron.py, installed as
spikessm.kernels.common.neuron, where the launchers turn these names into the kernels' codes).
"""
from __future__ import annotations

import torch

RESETS = ("subtract", "zero", "none")  # every neuron's (lif, s4d_lif, rf)
LIF_RESETS = RESETS + ("subtract_after_decay",)  # lif's and s4d_lif's
AFTER_DECAY = "subtract_after_decay"


def leak_before(beta, reset: str):
    """The factor on the state in m_t = factor v_{t-1} + x_t: beta, or 1 with "subtract_after_decay", whose state
    has leaked already."""
    return 1.0 if reset == AFTER_DECAY else beta


def fires(m: torch.Tensor, threshold, fire_on_tie: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """The spikes of pre-reset membrane m: m > threshold, or m >= threshold with fire_on_tie (booleans, or m's
    values into `out` when given)."""
    return torch.ge(m, threshold, out=out) if fire_on_tie else torch.gt(m, threshold, out=out)


def post_reset(m: torch.Tensor, s: torch.Tensor, threshold, reset: str, out: torch.Tensor | None = None,
               beta=None):
    """The membrane after the reset, from the pre-reset membrane m and the spikes s (0/1 in any float dtype);
    into `out` when given. beta: the leak, needed (only) by "subtract_after_decay"."""
    if not isinstance(threshold, torch.Tensor):
        threshold = torch.as_tensor(threshold, dtype=m.dtype, device=m.device)
    if reset == AFTER_DECAY:  # beta m - threshold s
        if not isinstance(beta, torch.Tensor):
            beta = torch.as_tensor(beta, dtype=m.dtype, device=m.device)
        if out is None:
            return beta * m - s * threshold
        return torch.mul(m, beta, out=out).addcmul_(s, threshold, value=-1)
    if reset == "subtract":  # m - threshold where s = 1 (s * threshold is exact, so m itself where s = 0)
        return torch.addcmul(m, s, threshold, value=-1, out=out)
    if reset == "zero":
        if s.requires_grad:  # differentiated through the spike (the naive reference): dv/ds = -m
            return m * (1 - s)
        # masked_fill rather than m (1 - s), which would turn an infinite m into NaN
        return m.masked_fill(s != 0, 0.0) if out is None else out.copy_(m).masked_fill_(s != 0, 0.0)
    return m
