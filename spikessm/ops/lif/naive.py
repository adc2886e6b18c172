"""The step-by-step reference of lif: one Python iteration per time step, differentiable by ordinary
autograd, exact in whatever dtype it is given (use float64 / complex128 for ground truth).

It is the definition the fast paths are tested against, not a path for real work.
"""
from __future__ import annotations

import torch

from ..common.reset import fires, leak_before, post_reset
from ..common.surrogate import SurrogateSpike


def lif_loop(
    x: torch.Tensor,
    beta,
    threshold,
    *,
    reset: str = "subtract",
    surrogate: str = "atan",
    alpha: float = 2.0,
    initial_state: torch.Tensor | None = None,
    detach_reset: bool = False,
    reverse: bool = False,
    fire_on_tie: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leaky integrate-and-fire neurons, one step at a time, differentiable by autograd.

    v_t = beta v_{t-1} + x_t; s_t = H(v_t - threshold) (1 where v_t > threshold, v_t >= threshold with
    fire_on_tie); then the reset ("subtract": v_t -= s_t threshold,
    "zero": v_t = 0 where s_t = 1, "none"; "subtract_after_decay": v_t = beta m_t - s_t threshold and m_{t+1} =
    v_t + x_{t+1}, snntorch's m_t = beta m_{t-1} + x_t - threshold s_{t-1}); detach_reset stops gradients
    through the reset term. With reverse,
    time runs from t = L - 1 down to t = 0 (v_{t+1} takes v_{t-1}'s place).

    Args:
        x: (B, L, H). beta, threshold: floats or (H,) tensors. initial_state: (B, H) or None (zeros).
    Returns:
        spikes: (B, L, H) in {0, 1}; final membrane: (B, H).
    """
    Bsz, L, H = x.shape
    v = x.new_zeros(Bsz, H) if initial_state is None else initial_state
    trace = count = torch.zeros_like(v)  # for "leaky": leaky spike trace and spike count
    x_steps = x.unbind(1)
    spikes = [None] * L
    lead = leak_before(beta, reset)
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        v = lead * v + x_steps[t]
        if surrogate == "leaky":
            # the definition step by step (leaky.leaky_derivative computes the same for a whole sequence)
            fired = fires(v.detach(), threshold, fire_on_tie).to(v.dtype)
            trace, count = beta * trace + fired, count + fired
            ratio = torch.where(count > 0, trace / count.clamp_min(1), 0.0)
            d = ((1 + torch.log(torch.as_tensor(beta, dtype=v.dtype)) * ratio) / threshold).detach()
            s = SurrogateSpike.apply(v - threshold, surrogate, alpha, d, fire_on_tie)
        else:
            s = SurrogateSpike.apply(v - threshold, surrogate, alpha, None, fire_on_tie)
        v = post_reset(v, s.detach() if detach_reset else s, threshold, reset, beta=beta)
        spikes[t] = s
    return torch.stack(spikes, dim=1), v
