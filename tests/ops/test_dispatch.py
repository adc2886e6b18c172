"""Eager calls and custom-op calls of an op run the same implementations and give the same results."""
import torch
from helpers import assert_close

from spikessm.ops import lif
from spikessm.ops.lif import lif_op


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    beta = torch.rand(3, generator=g, dtype=torch.float64, requires_grad=True)
    threshold = (0.5 + torch.rand(3, generator=g, dtype=torch.float64)).requires_grad_()
    h0 = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    return x, beta, threshold, h0


def test_eager_matches_custom_op():
    x, beta, threshold, h0 = _inputs()
    args = (x, beta, threshold, h0, "subtract", "atan", 2.0, False, False, True)
    gs = torch.randn(2, 9, 3, dtype=torch.float64)
    results = []
    for call in (lif_op, lif_op.forward_op):
        spikes, _, final = call(*args)
        grads = torch.autograd.grad((spikes * gs).sum() + final.sum(), (x, beta, threshold, h0))
        results.append((spikes, final, *grads))
    for name, got, want in zip(("spikes", "final", "dx", "dbeta", "dthreshold", "dh0"), *results):
        assert_close(got, want, 1e-14, name)


def test_eager_graph_only_when_needed():
    x, beta, threshold, h0 = _inputs()
    spikes, _ = lif(x, beta, threshold, initial_state=h0)
    assert type(spikes.grad_fn).__name__ == "lif_eagerBackward"  # the autograd.Function, not the custom op
    with torch.no_grad():
        spikes, _ = lif(x, beta, threshold, initial_state=h0)
    assert spikes.grad_fn is None
    spikes, _ = lif(x.detach(), 0.5, 1.0)
    assert spikes.grad_fn is None and not spikes.requires_grad
