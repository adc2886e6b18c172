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
