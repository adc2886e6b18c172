"""Eager calls and custom-op calls of an op run the same implementations and give the same results."""
import pytest
import torch
from helpers import assert_close

from spikessm.ops import lif
from spikessm.ops.lif.torch_sequential import op as lif_op


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    beta = torch.rand(3, generator=g, dtype=torch.float64, requires_grad=True)
    threshold = (0.5 + torch.rand(3, generator=g, dtype=torch.float64)).requires_grad_()
    h0 = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    return x, beta, threshold, h0


def test_eager_matches_custom_op():
    x, beta, threshold, h0 = _inputs()
    kwargs = dict(x=x, beta=beta, threshold=threshold, h0=h0, reset="subtract", surrogate="atan", alpha=2.0,
                  detach_reset=False, fire_on_tie=False, save_membrane=True)
    gs = torch.randn(2, 9, 3, dtype=torch.float64)
    results = []
    for call in (lif_op, lambda **kw: lif_op.forward_op(*(kw[name] for name in lif_op.input_names))):
        spikes, _, final = call(**kwargs)
        grads = torch.autograd.grad((spikes * gs).sum() + final.sum(), (x, beta, threshold, h0))
        results.append((spikes, final, *grads))
    for name, got, want in zip(("spikes", "final", "dx", "dbeta", "dthreshold", "dh0"), *results):
        assert_close(got, want, 1e-14, name)


def test_eager_graph_only_when_needed():
    x, beta, threshold, h0 = _inputs()
    spikes, _ = lif(x, beta, threshold, initial_state=h0)
    # the autograd.Function, not the custom op
    assert type(spikes.grad_fn).__name__ == "lif_torch_sequential_eagerBackward"
    with torch.no_grad():
        spikes, _ = lif(x, beta, threshold, initial_state=h0)
    assert spikes.grad_fn is None
    spikes, _ = lif(x.detach(), 0.5, 1.0)
    assert spikes.grad_fn is None and not spikes.requires_grad


def test_op_calls_take_keywords_only():
    """Internal calls name every argument: a missing, extra or positional argument is refused."""
    x, beta, threshold, h0 = _inputs()
    kwargs = dict(x=x, beta=beta, threshold=threshold, h0=h0, reset="subtract", surrogate="atan", alpha=2.0,
                  detach_reset=False, fire_on_tie=False, save_membrane=True)
    with pytest.raises(TypeError):
        lif_op(x, beta, threshold, h0, "subtract", "atan", 2.0, False, True)
    with pytest.raises(TypeError, match=r"missing \['save_membrane'\]"):
        lif_op(**{k: v for k, v in kwargs.items() if k != "save_membrane"})
    with pytest.raises(TypeError, match=r"unexpected \['reverse'\]"):
        lif_op(**kwargs, reverse=False)
