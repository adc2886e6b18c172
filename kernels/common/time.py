"""Triton helpers for kernels that walk time in either direction (kernels/s4d_scan/)."""
import triton
import triton.language as tl

@triton.jit
def time_index(i, L, REVERSE: tl.constexpr):
    """Time index of processing step i."""
    if REVERSE:
        t = L - 1 - i
    else:
        t = i
    return t
