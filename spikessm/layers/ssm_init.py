"""Initial spectra of the diagonal SSMs: S4D-Inv, S4D-Lin, S4D-LegS and S5's HiPPO-N.

All return the modes of one conjugate half: a state of real size N is N // 2 complex modes whose conjugates are
implied (the layers read out 2 Re(C x)), so N must be even.
"""
from __future__ import annotations

import math

import torch

S4D_INITS = ("inv", "lin", "legs")


def hippo_n(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The normal part of HiPPO-LegS, diagonalised: S = V diag(lam) V^H, all n eigenvalues.

    HiPPO-LegS is A[i, j] = -sqrt(2i+1) sqrt(2j+1) (i > j), -(i+1) (i = j), 0 (i < j). Adding P P^T with
    P_i = sqrt(i + 1/2) leaves S = -I/2 + K with K skew-symmetric, so S is normal: its eigenvalues are
    -1/2 + i w with w the (real) eigenvalues of the Hermitian -iK, and its eigenvectors are unitary.

    Returns lam: (n,) complex128, ascending imaginary parts; V: (n, n) complex128, columns = eigenvectors.
    """
    k = torch.arange(n, dtype=torch.float64)
    q = torch.sqrt(k + 0.5)
    skew = torch.tril(-q[:, None] * q[None, :], -1)
    skew = skew - skew.T  # K: the part of S off its constant diagonal -1/2
    w, V = torch.linalg.eigh(-1j * skew.to(torch.complex128))
    return torch.complex(torch.full_like(w, -0.5), w), V


def hippo_legs_b(n: int) -> torch.Tensor:
    """HiPPO-LegS's input vector B_i = sqrt(2i + 1): (n,) float64."""
    return torch.sqrt(2 * torch.arange(n, dtype=torch.float64) + 1)


def s4d_spectrum(init: str, d_state: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D's diagonal A and input vector B for one channel: (d_state // 2,) complex128 each.

    "inv": A_n = -1/2 + i N/pi (N / (2n + 1) - 1);  "lin": A_n = -1/2 + i pi n;  B = 1 for both.
    "legs": the eigenvalues of HiPPO-N with positive imaginary part, and B = V^H B_legs on those modes.
    """
    if init not in S4D_INITS:
        raise ValueError(f"S4D: init must be one of {S4D_INITS}, got {init!r}")
    check_state_size("S4D", "d_state", d_state)
    modes = d_state // 2
    n = torch.arange(modes, dtype=torch.float64)
    if init == "inv":
        imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)
        return torch.complex(torch.full_like(n, -0.5), imag), torch.ones(modes, dtype=torch.complex128)
    if init == "lin":
        return torch.complex(torch.full_like(n, -0.5), math.pi * n), torch.ones(modes, dtype=torch.complex128)
    lam, V = hippo_n(d_state)
    keep = slice(d_state - modes, d_state)  # ascending imaginary parts: the upper half is the positive one
    B = V.conj().T @ hippo_legs_b(d_state).to(torch.complex128)
    return lam[keep], B[keep]


def check_state_size(layer: str, name: str, size) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % 2:
        raise ValueError(f"{layer}: {name} must be a positive even integer (conjugate pairs of complex modes), "
                         f"got {size!r}")
