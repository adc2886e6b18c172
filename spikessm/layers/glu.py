"""GLU feature mixing, the usual position-wise layer after an SSM: Dropout, Linear H -> 2H, GLU, Dropout."""
from __future__ import annotations

import torch
from torch import nn

from .checks import check_fraction, check_positive_int, param_dtype
from .counts import OpCounts


class GLU(nn.Module):
    """(batch, length, d_model) -> (batch, length, d_model): out = Dropout(a * sigmoid(b)), [a, b] = W Dropout(x) + c.

    Parameters: W (2H, H) and c (2H,) of the linear layer: 2H^2 + 2H.
    """

    def __init__(self, d_model: int, *, dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        check_positive_int("GLU", "d_model", d_model)
        check_fraction("GLU", "dropout", dropout)
        self.d_model = d_model
        self.linear = nn.Linear(d_model, 2 * d_model, device=device, dtype=param_dtype("GLU", dtype))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(nn.functional.glu(self.linear(self.dropout(x)), dim=-1))

    def op_counts(self, x: torch.Tensor, out: torch.Tensor) -> dict[str, OpCounts]:
        """The gate a * sigmoid(b): one MAC per output value. The linear layer reports itself."""
        return {"": OpCounts(macs=self.d_model, dense_macs=self.d_model)}
