"""Heaviside, LIF and RF readouts, the GSU (against a float64 implementation of its equations) and the GLU."""
import math

import pytest
import torch
from helpers import assert_close

from spikessm.layers import GLU, GSU, LIF, RF, Heaviside
from spikessm.layers.ssm_init import hippo_n
from spikessm.ops import RFState, lif, rf, spike, ternarize
from spikessm.ops.rf.naive import rf_loop
from spikessm.ops.common.surrogate import derivative


def test_heaviside_forward_and_surrogate():
    x = torch.tensor([-1.0, -0.1, 0.0, 0.2, 3.0], dtype=torch.float64, requires_grad=True)
    spikes = Heaviside(0.1, surrogate="sigmoid")(x)
    assert spikes.tolist() == [0, 0, 0, 1, 1]
    spikes.sum().backward()
    assert_close(x.grad, derivative("sigmoid", x.detach() - 0.1, 4.0), 1e-14, "surrogate")
    with pytest.raises(ValueError, match="leaky"):
        Heaviside(surrogate="leaky")


def test_spike_fire_on_tie_spikes_at_zero_with_the_same_surrogate():
    x = torch.tensor([-1.0, 0.0, 0.5], dtype=torch.float64, requires_grad=True)
    assert spike(x).tolist() == [0, 0, 1]
    tie = spike(x, surrogate="sigmoid", fire_on_tie=True)
    assert tie.tolist() == [0, 1, 1]
    tie.sum().backward()
    assert_close(x.grad, derivative("sigmoid", x.detach(), 4.0), 1e-14, "surrogate")
    with pytest.raises(TypeError, match="spike: fire_on_tie must be"):
        spike(x, fire_on_tie=1)


def test_ternarize_values_and_gradient():
    x = torch.tensor([-0.5, -0.2, 0.0, 0.2, 0.5], dtype=torch.float64, requires_grad=True)
    delta = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    t = ternarize(x, delta, surrogate="atan")
    assert t.tolist() == [-1, 0, 0, 0, 1]
    t.sum().backward()
    xd = x.detach()
    assert_close(x.grad, derivative("atan", xd - 0.3, 2.0) + derivative("atan", -xd - 0.3, 2.0), 1e-14, "dTer/dx")
    assert delta.grad is None


@pytest.mark.parametrize("reset", ["zero", "subtract_after_decay"])
def test_lif_module_is_the_op(reset):
    torch.manual_seed(0)
    x = torch.randn(2, 15, 3, dtype=torch.float64)
    neuron = LIF(3, tau=2.0, threshold=0.7, reset=reset, surrogate="triangle")
    assert neuron.beta == pytest.approx(math.exp(-0.5)) and f"reset={reset!r}" in repr(neuron)
    spikes, v = neuron(x, return_state=True)
    ref_spikes, ref_v = lif(x, math.exp(-0.5), 0.7, reset=reset, surrogate="triangle")
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
    (dict(beta=0.5, reset="soft"), "LIF: reset must be one of .*'subtract_after_decay'.*, got 'soft'"),
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


def test_rf_module_is_the_op():
    """One branch: lam = exp((-a + i omega) dt) and the input times dt, then spikessm.ops.rf."""
    torch.manual_seed(1)
    neuron = RF(3, reset="subtract", surrogate="triangle", threshold=0.01, input_scale="dt", dtype=torch.float64)
    x = torch.randn(2, 15, 3, dtype=torch.float64)
    spikes, state = neuron(x, return_state=True)
    dt, a = torch.exp(neuron.log_dt[:, 0]), torch.exp(neuron.log_decay[:, 0])
    lam = torch.exp(torch.complex(-a, neuron.omega[:, 0]) * dt)
    ref = rf(x * dt, lam, 0.01, reset="subtract", surrogate="triangle")
    assert torch.equal(spikes, ref.output) and 0 < spikes.mean() < 1
    assert_close(state.membrane, ref.final_state.membrane, 1e-14)
    steps, s = [], neuron.init_state(2)
    for t in range(15):
        out, s = neuron.step(x[:, t], s)
        steps.append(out)
    assert torch.equal(torch.stack(steps, 1), spikes) and torch.equal(s.membrane, state.membrane)


def test_rf_branches_are_the_dendritic_sum():
    """K branches: each filters the neuron's input with its own lam and gain dt_k, and the soma is their mean:
    what the layer computes by putting the gains on the soma's weights."""
    torch.manual_seed(2)
    K = 3
    neuron = RF(4, branches=K, reset="zero", adaptive=True, threshold=0.02, input_scale="dt", dtype=torch.float64)
    x = torch.randn(2, 30, 4, dtype=torch.float64)
    spikes, state = neuron(x, return_state=True)
    dt = torch.exp(neuron.log_dt)
    lam = torch.polar(torch.exp(-torch.exp(neuron.log_decay) * dt), neuron.omega * dt)
    z, a, want = torch.zeros(2, 4, K, dtype=torch.complex128), torch.zeros(2, 4, dtype=torch.float64), []
    for t in range(30):
        z = lam * z + dt * x[:, t, :, None]
        th = 0.02 + 1.0 * a
        s = (z.real.mean(-1) > th).double()
        a = 0.9 * a + s
        z = z * (1 - s[..., None])
        want.append(s)
    assert torch.equal(spikes, torch.stack(want, 1)) and 0 < spikes.mean() < 1
    assert_close(state.trace, a, 1e-12, "trace")
    assert_close(state.membrane * dt, z, 1e-12, "membrane (the layer's, scaled by 1 / dt per branch)")
    steps, s = [], neuron.init_state(2)
    for t in range(30):
        out, s = neuron.step(x[:, t], s)
        steps.append(out)
    assert torch.equal(torch.stack(steps, 1), spikes)


def test_rf_initialisation():
    """decay 0.5 everywhere, dt log-uniform in [dt_min, dt_max], omega in one band per branch, or HiPPO-N's."""
    torch.manual_seed(3)
    neuron = RF(64, branches=4, reset="none", dt_min=1e-3, dt_max=1e-1)
    assert torch.allclose(torch.exp(neuron.log_decay), torch.full((64, 4), 0.5))
    dt = torch.exp(neuron.log_dt)
    assert dt.min() >= 1e-3 * (1 - 1e-6) and dt.max() <= 1e-1 * (1 + 1e-6) and dt.max() / dt.min() > 20
    band = 2 * math.pi / 4
    for k in range(4):
        assert (neuron.omega[:, k] >= k * band).all() and (neuron.omega[:, k] < (k + 1) * band).all()
    hippo = RF(5, frequency_init="hippo", dtype=torch.float64)
    assert torch.equal(hippo.omega[:, 0], hippo_n(10)[0].imag[5:])


def test_rf_learnable_parameters_get_gradients():
    neuron = RF(4, branches=2, reset="zero", threshold=0.05, learn_decay=True, learn_threshold=True,
                dtype=torch.float64)
    assert [n for n, _ in neuron.named_parameters()] == ["log_decay", "omega", "log_dt", "log_threshold"]
    assert neuron.ssm_parameters() == [neuron.log_decay, neuron.omega, neuron.log_dt]
    neuron(torch.randn(3, 20, 4, dtype=torch.float64)).sum().backward()
    for p in neuron.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    fixed = RF(4, learn_frequency=False, learn_dt=False)
    assert list(fixed.parameters()) == [] and fixed.ssm_parameters() == []
    assert {n for n, _ in fixed.named_buffers()} == {"log_decay", "omega", "log_dt"}  # saved with the model


def test_rf_op_counts_and_state():
    x = torch.randn(2, 7, 5)
    one, many = RF(5, input_scale="dt"), RF(5, branches=3, reset="zero", adaptive=True)
    assert one.op_counts(x, one(x))[""].macs == 5 * (4 + 1)  # lam z + x, the input gain
    assert RF(5).op_counts(x, one(x))[""].macs == 5 * 4
    assert many.op_counts(x, many(x))[""].macs == 5 * (4 * 3 + 3 + 2)  # branches, the soma's sum, the threshold
    state = many.init_state(2)
    assert isinstance(state, RFState) and state.membrane.shape == (2, 5, 3) and state.trace.shape == (2, 5)
    assert one.init_state(2, dtype=torch.float64).membrane.dtype == torch.complex128 and one.init_state(2).trace is None


def test_rf_input_as_it_is_is_the_reference():
    """input_scale "none" (the default): x enters as it is (spikessm.ops.rf's own convention)."""
    neuron = RF(2, learn_frequency=False, dtype=torch.float64)
    x = torch.randn(1, 12, 2, dtype=torch.float64)
    lam, _ = neuron.discretized()
    spikes_r, _, _ = rf_loop(x, lam[:, 0], 1.0, reset="none")
    assert torch.equal(neuron(x), spikes_r)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(branches=0), ValueError, "RF: branches must be a positive integer"),
    (dict(decay=0.0), ValueError, "RF: decay must be a positive finite number"),
    (dict(frequency_init="log"), ValueError, "RF: frequency_init must be one of"),
    (dict(input_scale="zoh"), ValueError, "RF: input_scale must be one of"),
    (dict(threshold=float("nan")), ValueError, "RF: threshold must be a finite number"),
    (dict(reset="subtract", branches=2), ValueError, "RF: reset 'subtract' needs one branch"),
    (dict(dt_min=0.1, dt_max=0.01), ValueError, "RF: need 0 < dt_min <= dt_max"),
    (dict(adapt_decay=1.5), ValueError, r"RF: adapt_decay must be in \[0, 1\]"),
    (dict(adapt_scale=-1.0), ValueError, "RF: adapt_scale must be a finite number >= 0"),
    (dict(surrogate="leaky"), ValueError, "RF: the 'leaky' surrogate needs a membrane history"),
    (dict(threshold=0.0, learn_threshold=True), ValueError, "RF: learn_threshold needs threshold > 0"),
    (dict(algorithm="parallel", reset="zero"), ValueError, "RF: algorithm 'parallel' needs reset 'none'"),
    (dict(algorithm="fast"), ValueError, "RF: algorithm must be one of"),
    (dict(adaptive="yes"), TypeError, "RF: adaptive must be True or False"),
    (dict(dtype=torch.float16), TypeError, "RF: parameters must be float32 or float64"),
])
def test_rf_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        RF(4, **kwargs)


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
