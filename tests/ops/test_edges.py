"""Empty inputs (batch 0, length 0 or channels 0) give empty outputs and final_state = initial_state (zeros when
None) on every op and backend, without running a kernel; a state size N = 0 is refused."""
import importlib

import pytest
import torch
from conftest import BACKENDS

from spikessm.ops import diag_scan, lif, rf, s4d_lif, s4d_scan

SHAPES = [(0, 5, 3), (2, 0, 3), (2, 5, 0)]
N = 2


def _no_kernel(monkeypatch):
    """Any launch of an op's implementation fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("an implementation ran on an empty input")

    # import_module: the package spikessm.ops.<op>, not the function that spikessm.ops exports under its name
    for module in (importlib.import_module(f"spikessm.ops.{op}") for op in ("diag_scan", "lif", "rf", "s4d_scan",
                                                                                   "s4d_lif")):
        monkeypatch.setattr(module, "IMPLEMENTATIONS", {k: {a: refuse for a in v}
                                                        for k, v in module.IMPLEMENTATIONS.items()})


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("with_state", [False, True])
def test_empty_scans(backend, device, shape, with_state, monkeypatch):
    _no_kernel(monkeypatch)
    B, L, H = shape
    b = torch.randn(shape, device=device, requires_grad=True)
    a = torch.rand(H, device=device)
    h0 = torch.randn(B, H, device=device) if with_state else None
    x, state = diag_scan(a, b, h0, backend=backend)
    assert x.shape == shape and x.dtype == b.dtype
    assert torch.equal(state, h0 if with_state else torch.zeros(B, H, device=device))
    x.sum().backward()  # differentiable like any output
    assert diag_scan(a, b, h0, backend=backend, output_final_state=False).final_state is None

    A = torch.full((H, N), 0.5, dtype=torch.complex64, device=device)
    s0 = torch.randn(B, H, N, dtype=torch.complex64, device=device) if with_state else None
    for algorithm in ("auto", "chunked"):
        y, state = s4d_scan(b, A, A, A, None, s0, backend=backend, algorithm=algorithm)
        assert y.shape == shape and y.dtype == b.dtype
        assert torch.equal(state, s0 if with_state else torch.zeros(B, H, N, dtype=torch.complex64, device=device))

    spikes, v = lif(b, 0.5, 1.0, h0, backend=backend, reverse=True)
    assert spikes.shape == shape
    assert torch.equal(v, h0 if with_state else torch.zeros(B, H, device=device))

    z0 = torch.randn(B, H, N, dtype=torch.complex64, device=device) if with_state else None
    for algorithm in ("sequential", "parallel"):
        trace = h0 if algorithm == "sequential" else None
        spikes, state = rf(b, A, 1.0, (z0, trace), adapt_decay=None if algorithm == "parallel" else 0.5,
                           adapt_scale=None if algorithm == "parallel" else 0.1, reset="none", backend=backend,
                           algorithm=algorithm)
        assert spikes.shape == shape
        assert torch.equal(state.membrane, z0 if with_state else torch.zeros(B, H, N, dtype=torch.complex64,
                                                                              device=device))
        if algorithm == "sequential":
            assert torch.equal(state.trace, h0 if with_state else torch.zeros(B, H, device=device))

    out = s4d_lif(b, A, A, A, None, (s0, h0), beta=0.5, threshold=1.0, backend=backend, output_membrane=True)
    assert out.output.shape == shape and out.membrane.shape == shape
    assert torch.equal(out.final_state.ssm, s0 if with_state else torch.zeros(B, H, N, dtype=torch.complex64,
                                                                              device=device))
    assert torch.equal(out.final_state.membrane, h0 if with_state else torch.zeros(B, H, device=device))


def test_zero_states_refused():
    u = torch.randn(2, 5, 3)
    A = torch.zeros(3, 0, dtype=torch.complex64)
    with pytest.raises(ValueError, match="s4d_scan: A_bar must have at least one state per channel"):
        s4d_scan(u, A, A, A)
    with pytest.raises(ValueError, match="s4d_lif: A_bar must have at least one state per channel"):
        s4d_lif(u, A, A, A, beta=0.5, threshold=1.0)
