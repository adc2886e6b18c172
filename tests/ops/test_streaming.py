"""Streaming: feeding a sequence in pieces, each starting from the previous piece's final state, equals one pass."""
import pytest
import torch
from conftest import BACKENDS
from helpers import assert_close

from spikessm.ops import diag_scan, rf, s4d_scan

CUTS = (0, 7, 8, 30, 41)  # pieces of 7, 1, 22 and 11 steps


def pieces(t, dim=1):
    return [t.narrow(dim, lo, hi - lo) for lo, hi in zip(CUTS[:-1], CUTS[1:])]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_diag_scan_in_pieces(backend, device, reverse):
    g = torch.Generator().manual_seed(30)
    L = CUTS[-1]
    a = torch.polar(torch.rand(2, L, 3, generator=g), torch.rand(2, L, 3, generator=g) * 6).to(device)
    b = torch.randn(2, L, 3, generator=g, dtype=torch.complex64).to(device)
    x_full, state_full = diag_scan(a, b, backend=backend, reverse=reverse)
    state, xs = None, []
    order = list(zip(pieces(a), pieces(b)))
    for a_k, b_k in (reversed(order) if reverse else order):
        x_k, state = diag_scan(a_k, b_k, state, backend=backend, reverse=reverse)
        xs.append(x_k)
    x = torch.cat(list(reversed(xs)) if reverse else xs, dim=1)
    assert_close(x, x_full, 1e-5, "x")
    assert_close(state, state_full, 1e-5, "final_state")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_s4d_scan_in_pieces(backend, device, reverse):
    g = torch.Generator().manual_seed(31)
    H, N = 3, 4
    A = torch.polar(0.5 + 0.5 * torch.rand(H, N, generator=g), torch.rand(H, N, generator=g) * 6).to(device)
    B, C = (torch.randn(H, N, generator=g, dtype=torch.complex64).to(device) for _ in range(2))
    D = torch.randn(H, generator=g).to(device)
    u = torch.randn(2, CUTS[-1], H, generator=g).to(device)
    y_full, state_full = s4d_scan(u, A, B, C, D, backend=backend, reverse=reverse)
    state, ys = None, []
    order = pieces(u)
    for u_k in (reversed(order) if reverse else order):
        y_k, state = s4d_scan(u_k, A, B, C, D, state, backend=backend, reverse=reverse)
        ys.append(y_k)
    y = torch.cat(list(reversed(ys)) if reverse else ys, dim=1)
    assert_close(y, y_full, 1e-5, "y")
    assert_close(state, state_full, 1e-5, "final_state")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("reset,K,adaptive", [("subtract", 1, True), ("zero", 3, True), ("none", 2, False)])
def test_rf_in_pieces(backend, device, reverse, reset, K, adaptive):
    """The RF neurons' state (membrane and, with an adaptive threshold, the spike trace) carries a stream."""
    g = torch.Generator().manual_seed(32)
    H = 3
    lam = torch.polar(0.8 + 0.19 * torch.rand(H, K, generator=g), torch.rand(H, K, generator=g) * 3)
    lam = (lam[:, 0] if K == 1 else lam).to(device)
    x = torch.randn(2, CUTS[-1], H, generator=g).to(device)
    adapt = dict(adapt_decay=0.8, adapt_scale=0.4) if adaptive else {}
    full = rf(x, lam, 0.6, reset=reset, backend=backend, reverse=reverse, **adapt)
    assert 0 < full.output.mean() < 1
    state, outs = None, []
    order = pieces(x)
    for x_k in (reversed(order) if reverse else order):
        out_k, state = rf(x_k, lam, 0.6, state, reset=reset, backend=backend, reverse=reverse, **adapt)
        outs.append(out_k)
    spikes = torch.cat(list(reversed(outs)) if reverse else outs, dim=1)
    assert torch.equal(spikes, full.output)
    assert_close(state.membrane, full.final_state.membrane, 1e-5, "membrane")
    if adaptive:
        assert_close(state.trace, full.final_state.trace, 1e-5, "trace")
