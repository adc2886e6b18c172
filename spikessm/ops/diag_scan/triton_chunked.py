"""diag_scan's "chunked" algorithm on the Triton kernels of kernels/diag_scan.py (installed as
spikessm.kernels.diag_scan), with the signatures of diag_scan/torch_chunked.py, whose fake implementations and
autograd glue it shares: the two implementations take and save the same tensors and differ only in what computes
them. chunk_size is the kernels' chunk length, forward and backward (0: their launch plan chooses)."""
from __future__ import annotations

from typing import Optional

import torch

from ..common.backend import kernels
from ..common.custom_op import register
# shared with the PyTorch implementation (see above); register() finds them in this module
from .torch_chunked import backward_fake, forward_fake, input_gradients, setup_context  # noqa: F401


def forward(a: torch.Tensor, b: torch.Tensor, h0: Optional[torch.Tensor], reverse: bool,
            chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All states and the final state."""
    return kernels("diag_scan").diag_scan_fwd(a=a, b=b, h0=h0, reverse=reverse, chunk_size=chunk_size or None)


def backward(a: torch.Tensor, x: torch.Tensor, h0: Optional[torch.Tensor], gx: torch.Tensor, gT: torch.Tensor,
             reverse: bool, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(da, db, dh0) from the kernels; dh0 is empty without h0."""
    da, db, dh0 = kernels("diag_scan").diag_scan_bwd(a=a, x=x, h0=h0, gx=gx, gT=gT, reverse=reverse,
                                                     chunk_size=chunk_size or None)
    return da, db, (dh0 if dh0 is not None else a.new_empty(0))


op = register(__name__)


def run(a: torch.Tensor, b: torch.Tensor, h0: Optional[torch.Tensor], *, reverse: bool,
        chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """As torch_chunked.run, on the kernels, with chunk_size checked."""
    return op(a=a, b=b, h0=h0, reverse=reverse, chunk_size=chunk_size)
