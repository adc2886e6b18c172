"""Comparison helpers: normwise relative error against a float64 reference; NaN never passes."""
import torch


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (computed in float64 / complex128)."""
    a = actual.detach().to(torch.complex128 if actual.is_complex() or expected.is_complex() else torch.float64)
    e = expected.detach().to(a.dtype).to(a.device)
    if not torch.isfinite(torch.view_as_real(a) if a.is_complex() else a).all():
        return float("inf")
    scale = e.abs().max().item()
    diff = (a - e).abs().max().item() if a.numel() else 0.0
    return diff / scale if scale > 0 else diff


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str = "") -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = rel_error(actual, expected)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e}"


def pre_reset_membrane(x, beta, threshold, h0, reset):
    """LIF neurons' membrane before each reset, (B, L, H), step by step from the input x (B, L, H) and the initial
    membrane h0 (B, H); beta and threshold floats or (H,). In x's precision (the tests' reference: float64)."""
    v, ms = h0, []
    for x_t in x.unbind(1):
        m = v + x_t if reset == "subtract_after_decay" else beta * v + x_t
        ms.append(m)
        s = (m > threshold).to(m.dtype)
        if reset == "subtract_after_decay":
            v = beta * m - s * threshold
        else:
            v = m - s * threshold if reset == "subtract" else m * (1 - s) if reset == "zero" else m
    return torch.stack(ms, 1)


def long_memory_magnitudes(n: int) -> torch.Tensor:
    """(n,) float64 decay magnitudes |a| = 1 - 1e-2, 1 - 1e-3, 1 - 1e-4, 1 - 1e-5, 1 in turn: memories of 100 to
    100000 steps, and one that loses nothing, so that a long sequence's early steps reach its end."""
    memories = torch.tensor([1 - 1e-2, 1 - 1e-3, 1 - 1e-4, 1 - 1e-5, 1.0], dtype=torch.float64)
    return memories[torch.arange(n) % len(memories)]
