"""lif against the neurons of snntorch 1.0 (`Leaky`) and spikingjelly 2.0 (`LIFNode`), where they are installed
(`pip install --no-deps snntorch==1.0 spikingjelly==2.0`; this file installs nothing): for every setting that
docs/neurons.md maps to spikessm, the same spikes and, to float64 rounding, the same gradients and final membrane.
The peers run step by step in float64 on the CPU; spikessm on its PyTorch path for every setting and on the Triton
kernels for one setting of each peer (the kernels equal the PyTorch path: tests/ops/test_lif.py)."""
import math

import pytest
import torch
from conftest import BACKENDS
from helpers import assert_close

from spikessm.ops import lif

TOL = 1e-12
TORCH = [p for p in BACKENDS if p.values[0] == "torch"]
TRITON = [p for p in BACKENDS if p.values[0] == "triton"]
# snntorch's spikes are float32 tensors whatever the membrane's dtype, so the gradient that flows through a spike
# into its reset term is rounded to float32 there: its input gradients agree to float32 rounding, not float64's.
TOL_SNNTORCH_GRAD = 1e-6


def _loss_weights(shape_spikes, shape_state, seed=1):
    """Random weights of the spikes and the final membrane in the loss, float64 values exact in float32: snntorch's
    spikes are float32 tensors, so the gradient reaching them is rounded to float32."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape_spikes, generator=g).double(), torch.randn(shape_state, generator=g).double())


def _spikessm(x, *, backend, device, scale=1.0, **kw):
    """spikes, final membrane and dLoss/dx of lif on x * scale (spikingjelly's decay_input scales the input)."""
    xr = x.clone().to(device).requires_grad_()
    spikes, v = lif(xr * scale, backend=backend, **kw)
    ws, wv = _loss_weights(spikes.shape, v.shape)
    ((spikes.cpu() * ws).sum() + (v.cpu() * wv).sum()).backward()
    return spikes.detach().cpu(), v.detach().cpu(), xr.grad.cpu()


# ------------------------------------------------------------------------------------------------------------
# snntorch 1.0: Leaky(beta, threshold, spike_grad, reset_mechanism, reset_delay)
# ------------------------------------------------------------------------------------------------------------

def _snntorch_surrogate(name, alpha):
    """snntorch's surrogate for spikessm's (name, alpha): the same formula with alpha = snntorch's alpha / slope."""
    from snntorch import surrogate

    return {"atan": lambda: surrogate.atan(alpha=alpha), "fast_sigmoid": lambda: surrogate.fast_sigmoid(slope=alpha),
            "sigmoid": lambda: surrogate.sigmoid(slope=alpha)}[name]()


def _snntorch_run(x, *, beta, threshold, reset, reset_delay, surrogate, alpha):
    snntorch = pytest.importorskip("snntorch", reason="snntorch 1.0 is not installed (pip install --no-deps "
                                   "snntorch==1.0)")
    f64 = dict(dtype=torch.float64)
    neuron = snntorch.Leaky(beta=torch.tensor(beta, **f64), threshold=torch.tensor(threshold, **f64),
                            spike_grad=_snntorch_surrogate(surrogate, alpha), reset_mechanism=reset,
                            reset_delay=reset_delay)
    xr = x.clone().requires_grad_()
    mem = torch.zeros_like(x[:, 0])
    spikes, mems = [], []
    for t in range(x.shape[1]):
        spk, mem = neuron(xr[:, t], mem)
        spikes.append(spk)
        mems.append(mem)
    return xr, torch.stack(spikes, 1), mem, torch.stack(mems, 1)


# (reset_mechanism, reset_delay) -> spikessm settings. Without a reset the delay changes nothing. reset_delay=True
# with "zero" zeroes the stored membrane at the next step, before the decay: spikessm's zero reset, with snntorch's
# reset detached (detach_reset) and snntorch's stored membrane the pre-reset one. reset_delay=False resets in the
# step that fires, as spikessm does, with the gradient through the reset; snntorch then also subtracts again at the
# next step wherever the reset membrane is still above the threshold, so the inputs here keep it below (checked).
# reset_delay=True with "subtract" takes the threshold off at the next step, after the decay: spikessm's
# "subtract_after_decay", whose state is beta mem - threshold spk for snntorch's stored (pre-reset) membrane mem;
# snntorch computes that reset from a fresh comparison of mem and detaches it (Leaky.mem_reset): detach_reset=True.
SNNTORCH_CASES = [
    ("subtract", False, dict(reset="subtract", detach_reset=False)),
    ("zero", False, dict(reset="zero", detach_reset=False)),
    ("none", False, dict(reset="none", detach_reset=False)),
    ("none", True, dict(reset="none", detach_reset=False)),
    ("zero", True, dict(reset="zero", detach_reset=True)),
    ("subtract", True, dict(reset="subtract_after_decay", detach_reset=True)),
]


@pytest.mark.parametrize("backend,device", TORCH)
@pytest.mark.parametrize("snn_reset,reset_delay,mapped", SNNTORCH_CASES)
@pytest.mark.parametrize("surrogate,alpha", [("atan", 2.0), ("fast_sigmoid", 25.0), ("sigmoid", 5.0)])
def test_snntorch_leaky(backend, device, snn_reset, reset_delay, mapped, surrogate, alpha):
    g = torch.Generator().manual_seed(3)
    # snntorch's spikes are float32 whatever the membrane's dtype, and its reset term spikes * threshold takes their
    # dtype: a threshold exact in float32 keeps the comparison at float64 rounding
    beta, threshold = 0.8, 0.75
    # inputs below 1.1 thresholds: a reset membrane (at most the threshold) plus one stays below two thresholds
    x = (torch.rand(2, 41, 3, generator=g, dtype=torch.float64) * 1.6 - 0.5) * threshold
    xr, spikes_p, mem_p, mems_p = _snntorch_run(x, beta=beta, threshold=threshold, reset=snn_reset,
                                                reset_delay=reset_delay, surrogate=surrogate, alpha=alpha)
    if (snn_reset, reset_delay) == ("subtract", False):
        assert (mems_p <= threshold).all(), "a reset membrane above the threshold: snntorch would reset it twice"
    # spikessm's final membrane is after its reset: snntorch's stored membrane, reset as its next step would
    v_p = {("zero", True): lambda: mem_p * (1 - (mem_p > threshold).double()),
           ("subtract", True): lambda: beta * mem_p - threshold * (mem_p > threshold).double(),
           }.get((snn_reset, reset_delay), lambda: mem_p)()
    ws, wv = _loss_weights(spikes_p.shape, v_p.shape)
    ((spikes_p * ws).sum() + (v_p * wv).sum()).backward()
    spikes, v, gx = _spikessm(x, backend=backend, device=device, beta=beta, threshold=threshold,
                              surrogate=surrogate, alpha=alpha, **mapped)
    assert spikes_p.sum() > 0 and torch.equal(spikes, spikes_p.detach())
    assert_close(v, v_p.detach(), TOL, "final membrane")
    assert_close(gx, xr.grad, TOL_SNNTORCH_GRAD, "dLoss/dx")


# ------------------------------------------------------------------------------------------------------------
# spikingjelly 2.0: LIFNode(tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset)
# ------------------------------------------------------------------------------------------------------------

def _spikingjelly_surrogate(name, alpha):
    from spikingjelly.activation_based import surrogate

    return {"atan": surrogate.ATan, "sigmoid": surrogate.Sigmoid}[name](alpha=alpha)


def _spikingjelly_run(x, *, tau, decay_input, threshold, v_reset, surrogate, alpha, detach_reset):
    pytest.importorskip("spikingjelly.activation_based.neuron",
                        reason="spikingjelly 2.0 is not installed (pip install --no-deps spikingjelly==2.0 loguru)")
    from spikingjelly.activation_based import neuron

    node = neuron.LIFNode(tau=tau, decay_input=decay_input, v_threshold=threshold, v_reset=v_reset,
                          surrogate_function=_spikingjelly_surrogate(surrogate, alpha), detach_reset=detach_reset,
                          step_mode="s")
    xr = x.clone().requires_grad_()
    spikes = [node(xr[:, t]) for t in range(x.shape[1])]
    return xr, torch.stack(spikes, 1), node.v


@pytest.mark.parametrize("backend,device", TORCH)
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [None, 0.0])
@pytest.mark.parametrize("surrogate,alpha,detach_reset", [("sigmoid", 4.0, False), ("atan", 2.0, True)])
@pytest.mark.parametrize("ties", [False, True])
def test_spikingjelly_lifnode(backend, device, decay_input, v_reset, surrogate, alpha, detach_reset, ties):
    """beta = 1 - 1 / tau, the input scaled by 1 / tau with decay_input, reset "subtract" for v_reset None and
    "zero" for 0, and fire_on_tie (spikingjelly's Heaviside is 1 at 0). With ties: integer inputs and tau = 2,
    so that every membrane is exact and many equal the threshold."""
    g = torch.Generator().manual_seed(5)
    if ties:
        tau, threshold = 2.0, 1.0
        x = torch.randint(0, 3, (2, 33, 3), generator=g).double()
    else:
        tau, threshold = 3.0, 0.6
        x = torch.randn(2, 33, 3, generator=g, dtype=torch.float64)
    xr, spikes_p, v_p = _spikingjelly_run(x, tau=tau, decay_input=decay_input, threshold=threshold,
                                          v_reset=v_reset, surrogate=surrogate, alpha=alpha,
                                          detach_reset=detach_reset)
    ws, wv = _loss_weights(spikes_p.shape, v_p.shape)
    ((spikes_p * ws).sum() + (v_p * wv).sum()).backward()
    mapped = dict(beta=1 - 1 / tau, threshold=threshold, reset="subtract" if v_reset is None else "zero",
                  surrogate=surrogate, alpha=alpha, detach_reset=detach_reset, fire_on_tie=True)
    spikes, v, gx = _spikessm(x, backend=backend, device=device, scale=1 / tau if decay_input else 1.0, **mapped)
    assert spikes_p.sum() > 0 and torch.equal(spikes, spikes_p.detach())
    assert_close(v, v_p.detach(), TOL, "final membrane")
    assert_close(gx, xr.grad, TOL, "dLoss/dx")
    if ties:  # the default rule (v > threshold) would not match: the ties matter
        strict, _, _ = _spikessm(x, backend="torch", device="cpu", scale=1 / tau if decay_input else 1.0,
                                 **{**mapped, "fire_on_tie": False})
        assert not torch.equal(strict, spikes)
    assert math.isclose(mapped["beta"], 1 - 1 / tau)


@pytest.mark.parametrize("backend,device", TORCH + TRITON)
@pytest.mark.parametrize("surrogate,alpha", [("atan", 3.0), ("fast_sigmoid", 10.0)])
def test_snntorch_reset_delay_every_gradient(backend, device, surrogate, alpha):
    """snntorch's default Leaky (reset "subtract", reset_delay=True) against lif(reset="subtract_after_decay",
    detach_reset=True) with per-channel learnable beta and threshold and a nonzero initial membrane mem_0, which
    maps to spikessm's initial state beta mem_0 - threshold [mem_0 > threshold] (the reset snntorch's first step
    takes off): spikes exactly; the final state and the gradients of x, mem_0, beta and threshold to float64
    rounding (snntorch detaches its reset, so its float32 spikes carry only the loss's float32-exact weights)."""
    snntorch = pytest.importorskip("snntorch", reason="snntorch 1.0 is not installed (pip install --no-deps "
                                   "snntorch==1.0)")
    g = torch.Generator().manual_seed(8)
    f64 = dict(dtype=torch.float64)
    B, L, H = 2, 37, 3
    x = torch.randn(B, L, H, generator=g, **f64)
    mem0 = torch.randn(B, H, generator=g, **f64)
    beta = 0.5 + 0.45 * torch.rand(H, generator=g, **f64)
    threshold = 0.25 + torch.rand(H, generator=g, **f64)
    assert (mem0 > threshold).any(), "no neuron starts above the threshold: the initial reset would go unseen"
    neuron = snntorch.Leaky(beta=beta.clone(), threshold=threshold.clone(), learn_beta=True, learn_threshold=True,
                            spike_grad=_snntorch_surrogate(surrogate, alpha), reset_mechanism="subtract",
                            reset_delay=True)
    xp, mem0_p = x.clone().requires_grad_(), mem0.clone().requires_grad_()
    mem, spikes_p = mem0_p, []
    for t in range(L):
        spk, mem = neuron(xp[:, t], mem)
        spikes_p.append(spk)
    spikes_p = torch.stack(spikes_p, 1)
    v_p = neuron.beta * mem - neuron.threshold * (mem > neuron.threshold).double()
    ws, wv = _loss_weights(spikes_p.shape, v_p.shape)
    want = torch.autograd.grad((spikes_p * ws).sum() + (v_p * wv).sum(), (xp, mem0_p, neuron.beta, neuron.threshold))

    ins = [t.clone().to(device).requires_grad_() for t in (x, mem0, beta, threshold)]
    xs, mem0_s, beta_s, threshold_s = ins
    v0 = beta_s * mem0_s - threshold_s * (mem0_s > threshold_s).double()
    spikes, v = lif(xs, beta_s, threshold_s, v0, reset="subtract_after_decay", detach_reset=True,
                    surrogate=surrogate, alpha=alpha, backend=backend)
    got = torch.autograd.grad((spikes.cpu() * ws).sum() + (v.cpu() * wv).sum(), ins)
    assert 0 < spikes_p.mean() < 1 and torch.equal(spikes.cpu(), spikes_p.detach().double())
    assert_close(v.cpu(), v_p.detach(), TOL, "final state")
    for name, a, b in zip(("x", "mem_0", "beta", "threshold"), got, want):
        assert_close(a.cpu(), b, TOL, f"dLoss/d{name}")


@pytest.mark.parametrize("backend,device", TRITON)
def test_peers_on_the_kernels(backend, device):
    test_snntorch_leaky(backend, device, "subtract", False, SNNTORCH_CASES[0][2], "atan", 2.0)
    test_snntorch_leaky(backend, device, "subtract", True, SNNTORCH_CASES[-1][2], "atan", 2.0)
    test_spikingjelly_lifnode(backend, device, True, None, "sigmoid", 4.0, False, True)
