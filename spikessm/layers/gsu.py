"""GSU, the Gated Spiking Unit of Stan & Rhodes (2024): feature mixing without multiply-accumulates.

Per token, y in R^H is the SSM output (before any activation):
    delta_y = 0.15 max_h |y_h|       Ter(y) = H(y - delta_y) - H(-y - delta_y)   in {-1, 0, +1}
    delta_W = 0.15 max |W|           Ter(W) likewise, elementwise on the shared weight W (H, H)
    a = Ter(y) W + b                 ternary activations x real weights: accumulate-only
    g = y Ter(W)                     real activations x ternary weights: add/subtract-only
    out = Dropout(GELU(LayerNorm(a * g)))
Both ternarisations use the spikes' surrogate gradient (their thresholds are constants in the backward). The g
branch is the non-saturating path that binary spikes lack. Parameters: W (H, H), b (H,), LayerNorm (2H):
H^2 + 3H, against 2H^2 + 2H for the linear + GLU it replaces.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.common.checks import check_surrogate
from ..ops.spike import ternarize_prechecked
from .checks import check_fraction, check_input, check_positive_int, param_dtype
from .counts import OpCounts


def ternary_threshold(x: torch.Tensor, fraction: float, dim: int | None) -> torch.Tensor:
    """fraction * max |x| over `dim` (kept for broadcasting), or over the whole tensor when dim is None."""
    x = x.detach().abs()
    return fraction * (x.amax() if dim is None else x.amax(dim=dim, keepdim=True))


class GSU(nn.Module):
    """Gated Spiking Unit: (batch, length, d_model) -> (batch, length, d_model).

    Args:
        d_model: channels H.
        dropout: after the GELU.
        fraction: the ternarisation thresholds' fraction of the largest magnitude (0.15 in the paper).
        surrogate, alpha: the surrogate derivative of both ternarisations (the model's spike surrogate).
        device, dtype: of the parameters.
    """

    def __init__(self, d_model: int, *, dropout: float = 0.0, fraction: float = 0.15, surrogate: str = "atan",
                 alpha: float | None = None, device=None, dtype=None):
        super().__init__()
        check_positive_int("GSU", "d_model", d_model)
        check_fraction("GSU", "fraction", fraction)
        check_fraction("GSU", "dropout", dropout)
        self.alpha = check_surrogate("GSU", surrogate, alpha, pointwise=True)
        dtype = param_dtype("GSU", dtype)
        self.d_model, self.fraction, self.surrogate = d_model, fraction, surrogate
        bound = 1 / math.sqrt(d_model)
        self.W = nn.Parameter(torch.empty(d_model, d_model, device=device, dtype=dtype).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.empty(d_model, device=device, dtype=dtype).uniform_(-bound, bound))
        self.norm = nn.LayerNorm(d_model, device=device, dtype=dtype)
        self.dropout = nn.Dropout(dropout)

    def ternary_input(self, y: torch.Tensor) -> torch.Tensor:
        """Ter(y), per token: (..., H) -> (..., H) in {-1, 0, 1}."""
        return ternarize_prechecked(y, ternary_threshold(y, self.fraction, -1), surrogate=self.surrogate,
                                    alpha=self.alpha)

    def ternary_weight(self) -> torch.Tensor:
        """Ter(W): (H, H) in {-1, 0, 1}."""
        return ternarize_prechecked(self.W, ternary_threshold(self.W, self.fraction, None), surrogate=self.surrogate,
                                    alpha=self.alpha)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        check_input("GSU", y, self.d_model, rank=2 if y.dim() == 2 else 3)  # (B, H) for one step
        a = self.ternary_input(y) @ self.W + self.b
        g = y @ self.ternary_weight()
        return self.dropout(nn.functional.gelu(self.norm(a * g)))

    def op_counts(self, y: torch.Tensor, out: torch.Tensor) -> dict[str, OpCounts]:
        """Per token: Ter(y) W is spike-driven (nonzero Ter(y) x H ACs), y Ter(W) is add/subtract-only (nonzero
        Ter(W) ACs), a * g is H MACs; Ter(y)'s H values are the spiking units. Counted as a non-spiking layer: the
        two products are 2 H^2 MACs, plus the H of a * g."""
        H = self.d_model
        with torch.no_grad():
            events = torch.count_nonzero(self.ternary_input(y), dim=-1)
            weight_events = int(torch.count_nonzero(self.ternary_weight()))
        return {"": OpCounts(neurons=H, spikes=events, acs=events * H + weight_events, macs=H,
                             dense_macs=2 * H * H + H)}

    def extra_repr(self) -> str:
        return f"{self.d_model}, fraction={self.fraction}, surrogate={self.surrogate!r}, alpha={self.alpha}"
