"""Host-side helpers the kernel launchers share.

cdiv and next_power_of_2 are plain integer arithmetic: Triton's own (``triton.cdiv``,
``triton.next_power_of_2``) are constexpr functions that cost 3-5 microseconds per host call, and a launch
plan makes several, which adds up beside a kernel that runs for tens of microseconds.
"""
import torch


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for positive integers."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << (n - 1).bit_length() if n > 1 else 1


def check_chunk_size(op: str, chunk_size: int | None, default: int) -> int:
    """The chunk length to use: `default` for None, else chunk_size, which must be a power of two >= 2."""
    if chunk_size is None:
        return default
    if chunk_size < 2 or chunk_size & (chunk_size - 1):
        raise ValueError(f"{op}: chunk_size must be a power of two >= 2, got {chunk_size}")
    return chunk_size


MAX_STAGES = 8


def check_stages(op: str, stages: int) -> int:
    """A loop's pipeline depth (tl.range's num_stages): 1 (no loads ahead) to MAX_STAGES."""
    if not (isinstance(stages, int) and 1 <= stages <= MAX_STAGES):
        raise ValueError(f"{op}: stages must be an int from 1 to {MAX_STAGES}, got {stages!r}")
    return stages


def complex_planes(x: torch.Tensor) -> torch.Tensor:
    """Complex (H or B, ...) -> real (H or B, 2, ...): (re, im) planes after the first dimension, contiguous. The
    s4d kernels take complex states and operators so: planar like their parameters, so that one register layout
    loads both (an interleaved load picks another, and Triton 3.6 then converts every step)."""
    return torch.stack((x.real, x.imag), 1).contiguous()


def real_view(t: torch.Tensor) -> torch.Tensor:
    """Complex tensors go to kernels as their real views (element k at 2k, 2k + 1); real ones as they are."""
    return torch.view_as_real(t) if t.is_complex() else t
