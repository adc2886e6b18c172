"""Normalisation over the channels of (batch, length, channels) tensors: BatchNorm or LayerNorm."""
from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "layer")


class ChannelBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the channels of (B, L, H) (statistics over batch and time), or of (B, H) for one step.

    A single step in training mode would normalise with one step's statistics, which differs from the forward
    over a sequence; it is refused (streaming inference runs in eval mode, where both use the running statistics).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            if self.training:
                raise RuntimeError("BatchNorm: step() in training mode would use one step's batch statistics; "
                                   "call model.eval() for streaming inference")
            return super().forward(x)
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def make_norm(kind: str, d_model: int, *, device=None, dtype=None) -> nn.Module:
    """"batch" -> ChannelBatchNorm, "layer" -> LayerNorm, over d_model channels."""
    if kind == "batch":
        return ChannelBatchNorm(d_model, device=device, dtype=dtype)
    if kind == "layer":
        return nn.LayerNorm(d_model, device=device, dtype=dtype)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
