"""The Triton glue of diag_scan: its "chunked" algorithm on kernels/diag_scan.py (installed as
spikessm.kernels.diag_scan), with the same arguments and results as diag_scan/torch_chunked.py plus the chunk
length (0: the launch plan chooses)."""
from __future__ import annotations


def _kernels():
    from spikessm.kernels import diag_scan as kernels  # imported on first use: Triton is optional

    return kernels


def check_chunk_size(op: str, chunk_size: int | None) -> int:
    """chunk_size checked (a power of two >= 2), or 0 for None: the kernels' launch plan then chooses (it differs
    between passes and dtypes)."""
    return _kernels().check_chunk_size(op, chunk_size, 0)


def diag_scan_fwd(a, b, h0, reverse: bool, chunk_size: int):
    return _kernels().diag_scan_fwd(
        a=a, b=b, h0=h0, reverse=reverse, chunk_size=chunk_size or None)


def diag_scan_bwd(a, x, h0, gx, gT, reverse: bool, chunk_size: int):
    return _kernels().diag_scan_bwd(
        a=a, x=x, h0=h0, gx=gx, gT=gT, reverse=reverse, chunk_size=chunk_size or None)
