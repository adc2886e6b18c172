"""Heaviside and LIF readouts, the GSU (against a float64 implementation of its equations) and the GLU."""
import math

import pytest
import torch
from helpers import assert_close

from spikessm.layers import GLU, GSU, LIF, Heaviside
from spikessm.ops import lif, ternarize
from spikessm.ops.common.surrogate import derivative


def test_heaviside_forward_and_surrogate():
    x = torch.tensor([-1.0, -0.1, 0.0, 0.2, 3.0], dtype=torch.float64, requires_grad=True)
    spikes = Heaviside(0.1, surrogate="sigmoid")(x)
    assert spikes.tolist() == [0, 0, 0, 1, 1]
    spikes.sum().backward()
    assert_close(x.grad, derivative("sigmoid", x.detach() - 0.1, 4.0), 1e-14, "surrogate")
    with pytest.raises(ValueError, match="leaky"):
        Heaviside(surrogate="leaky")


def test_ternarize_values_and_gradient():
    x = torch.tensor([-0.5, -0.2, 0.0, 0.2, 0.5], dtype=torch.float64, requires_grad=True)
    delta = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    t = ternarize(x, delta, surrogate="atan")
    assert t.tolist() == [-1, 0, 0, 0, 1]
    t.sum().backward()
    xd = x.detach()
    assert_close(x.grad, derivative("atan", xd - 0.3, 2.0) + derivative("atan", -xd - 0.3, 2.0), 1e-14, "dTer/dx")
    assert delta.grad is None


def test_lif_module_is_the_op():
    torch.manual_seed(0)
    x = torch.randn(2, 15, 3, dtype=torch.float64)
    neuron = LIF(3, tau=2.0, threshold=0.7, reset="zero", surrogate="triangle")
    assert neuron.beta == pytest.approx(math.exp(-0.5))
    spikes, v = neuron(x, return_state=True)
    ref_spikes, ref_v = lif(x, math.exp(-0.5), 0.7, reset="zero", surrogate="triangle")
    assert torch.equal(spikes, ref_spikes) and torch.equal(v, ref_v)
    state, steps = neuron.init_state(2, dtype=torch.float64), []
    for t in range(15):
        s, state = neuron.step(x[:, t], state)
        steps.append(s)
    assert torch.equal(torch.stack(steps, 1), spikes) and torch.equal(state, v)


def test_lif_fire_on_tie_is_the_op_option():
    """Integer inputs (event counts), beta = 0.5, threshold 1: membranes hit the threshold exactly. The layer's
    fire_on_tie reaches the op, in forward and step by step, and changes the spikes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (2, 15, 3), generator=g).double()
    neuron = LIF(3, beta=0.5, threshold=1.0, fire_on_tie=True)
    assert "fire_on_tie=True" in repr(neuron)
    spikes, v = neuron(x, return_state=True)
    ref_spikes, ref_v = lif(x, 0.5, 1.0, fire_on_tie=True)
    assert torch.equal(spikes, ref_spikes) and torch.equal(v, ref_v)
    assert not torch.equal(spikes, LIF(3, beta=0.5, threshold=1.0)(x))
    state, steps = neuron.init_state(2, dtype=torch.float64), []
    for t in range(15):
        s, state = neuron.step(x[:, t], state)
        steps.append(s)
    assert torch.equal(torch.stack(steps, 1), spikes) and torch.equal(state, v)


def test_lif_learnable_parameters_get_gradients():
    neuron = LIF(4, beta=0.8, threshold=0.5, learn_beta=True, learn_threshold=True, dtype=torch.float64)
    assert torch.allclose(neuron.beta, torch.full((4,), 0.8, dtype=torch.float64))
    assert torch.allclose(neuron.threshold, torch.full((4,), 0.5, dtype=torch.float64))
    x = torch.randn(3, 20, 4, dtype=torch.float64)
    neuron(x).sum().backward()
    for p in (neuron.beta_logit, neuron.log_threshold):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "exactly one of beta and tau"),
    (dict(beta=0.5, tau=2.0), "exactly one of beta and tau"),
    (dict(beta=1.5), r"beta must be in \[0, 1\]"),
    (dict(tau=-1.0), "tau must be positive"),
    (dict(beta=0.0, learn_beta=True), "learn_beta needs"),
    (dict(beta=0.5, threshold=0.0, learn_threshold=True), "learn_threshold needs"),
    (dict(beta=0.5, reset="soft"), "reset must be one of"),
    (dict(beta=0.5, surrogate="relu"), "surrogate must be one of"),
    (dict(beta=0.5, threshold=float("nan")), "LIF: threshold must be a finite number, got nan"),
    (dict(beta=0.5, threshold=float("inf")), "LIF: threshold must be a finite number, got inf"),
    (dict(beta=float("nan")), r"LIF: beta must be in \[0, 1\], got nan"),
    (dict(beta=-0.1), r"LIF: beta must be in \[0, 1\], got -0.1"),
    (dict(beta="0.5"), r"LIF: beta must be in \[0, 1\], got '0.5'"),
    (dict(tau=float("nan")), "LIF: tau must be positive, got nan"),
    (dict(beta=0.5, alpha=float("nan")), "alpha must be a positive finite number"),
    (dict(beta=0.5, alpha=0.0), "alpha must be a positive finite number"),
    (dict(beta=0.5, alpha=float("inf")), "alpha must be a positive finite number"),
])
def test_lif_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LIF(4, **kwargs)


@pytest.mark.parametrize("name", ["learn_beta", "learn_threshold", "detach_reset", "fire_on_tie"])
def test_lif_boolean_options_take_booleans(name):
    with pytest.raises(TypeError, match=f"LIF: {name} must be True or False, got 'maybe'"):
        LIF(4, beta=0.5, **{name: "maybe"})
    with pytest.raises(TypeError, match="LIF: return_state must be True or False, got 1"):
        LIF(4, beta=0.5)(torch.randn(1, 3, 4), return_state=1)


def test_heaviside_threshold_must_be_finite():
    with pytest.raises(ValueError, match="Heaviside: threshold must be a finite number, got nan"):
        Heaviside(float("nan"))


def gsu_reference(y, W, b, ln_weight, ln_bias, alpha=2.0, eps=1e-5):
    """The GSU's equations in float64, written out, with the arctan surrogate built in through its
    antiderivative F(x) = atan(pi/2 alpha x) / pi (value: the hard ternary; gradient: the surrogate)."""

    def ternary(x, delta):
        hard = (x > delta).double() - (x < -delta).double()
        k = math.pi / 2 * alpha
        soft = (torch.atan(k * (x - delta)) - torch.atan(k * (-x - delta))) / math.pi
        return hard + soft - soft.detach()

    ty = ternary(y, 0.15 * y.detach().abs().amax(-1, keepdim=True))
    tW = ternary(W, 0.15 * W.detach().abs().max())
    a = torch.einsum("blh,hk->blk", ty, W) + b
    g = torch.einsum("blh,hk->blk", y, tW)
    z = a * g
    mean = z.mean(-1, keepdim=True)
    var = ((z - mean) ** 2).mean(-1, keepdim=True)
    n = (z - mean) / torch.sqrt(var + eps) * ln_weight + ln_bias
    return 0.5 * n * (1 + torch.erf(n / math.sqrt(2)))


def test_gsu_matches_its_equations():
    torch.manual_seed(0)
    H = 7
    gsu = GSU(H, dtype=torch.float64)
    with torch.no_grad():
        gsu.norm.weight.uniform_(0.5, 1.5)
        gsu.norm.bias.uniform_(-0.2, 0.2)
    y = torch.randn(2, 11, H, dtype=torch.float64, requires_grad=True)
    out = gsu(y)
    params = [gsu.W, gsu.b, gsu.norm.weight, gsu.norm.bias]
    y_ref = y.detach().clone().requires_grad_()
    ref_params = [p.detach().clone().requires_grad_() for p in params]
    ref = gsu_reference(y_ref, *ref_params)
    assert_close(out, ref, 1e-12, "GSU output")
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [y, *params], g)
    ref_grads = torch.autograd.grad(ref, [y_ref, *ref_params], g)
    for name, a, b in zip(["y", "W", "b", "ln.weight", "ln.bias"], grads, ref_grads):
        assert_close(a, b, 1e-10, f"d{name}")
    tW = gsu.ternary_weight()
    assert set(tW.unique().tolist()) <= {-1.0, 0.0, 1.0} and (tW != 0).any()


def test_gsu_and_glu_parameter_counts():
    H = 16
    assert sum(p.numel() for p in GSU(H).parameters()) == H * H + 3 * H
    assert sum(p.numel() for p in GLU(H).parameters()) == 2 * H * H + 2 * H


def test_glu_is_linear_then_glu():
    glu = GLU(5, dropout=0.3).eval()
    x = torch.randn(2, 4, 5)
    a, b = glu.linear(x).chunk(2, dim=-1)
    assert_close(glu(x), a * torch.sigmoid(b), 1e-6, "GLU")


@pytest.mark.parametrize("kwargs, match", [(dict(fraction=1.0), "fraction"), (dict(dropout=1.0), "dropout"),
                                           (dict(surrogate="leaky"), "leaky")])
def test_gsu_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GSU(4, **kwargs)
