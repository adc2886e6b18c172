"""lif against the float64 step-by-step reference: spikes, final membrane and every gradient."""
import itertools
import math

import pytest
import torch
from conftest import BACKENDS, TRITON_DEVICE, requires_triton
from helpers import assert_close, pre_reset_membrane

from spikessm.ops import lif
from spikessm.ops.lif.naive import lif_loop
from spikessm.ops.common.surrogate import DEFAULT_ALPHA, SURROGATES, derivative
from spikessm.ops.lif.leaky import leaky_derivative

RESETS = ("subtract", "zero", "none", "subtract_after_decay")
MARGIN = 1e-4  # spikes may legitimately differ where the membrane is within rounding of the threshold


def make_inputs(B, L, H, *, per_channel=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, H, generator=g, dtype=torch.float64) * 0.8
    if per_channel:
        beta = torch.rand(H, generator=g, dtype=torch.float64) * 0.95
        threshold = 0.3 + torch.rand(H, generator=g, dtype=torch.float64)
    else:
        beta, threshold = 0.8, 0.7
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64)
    return x, beta, threshold, h0


def check(x64, beta64, th64, h064, *, dtype, reset, surrogate, detach_reset, tol, alpha=None, backend="torch",
          device="cpu"):
    def cast(v):
        return v.to(dtype).to(device).requires_grad_() if isinstance(v, torch.Tensor) else v

    x, beta, th, h0 = cast(x64), cast(beta64), cast(th64), cast(h064) if h064 is not None else None
    spikes, v = lif(x, beta, th, reset=reset, surrogate=surrogate, alpha=alpha, initial_state=h0,
                    detach_reset=detach_reset, backend=backend)
    assert spikes.dtype == x.dtype and spikes.shape == x.shape and v.shape == (x.shape[0], x.shape[2])
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}

    def ref(v):
        return v.detach().cpu().double().requires_grad_() if isinstance(v, torch.Tensor) else v

    xr, br, tr, hr = ref(x), ref(beta), ref(th), ref(h0) if h0 is not None else None
    alpha_r = DEFAULT_ALPHA[surrogate] if alpha is None else alpha
    spikes_r, v_r = lif_loop(xr, br, tr, reset=reset, surrogate=surrogate, alpha=alpha_r, initial_state=hr,
                             detach_reset=detach_reset)
    m = pre_reset_membrane(xr.detach(), br.detach() if isinstance(br, torch.Tensor) else br,
                           tr.detach() if isinstance(tr, torch.Tensor) else tr,
                           hr.detach() if hr is not None else torch.zeros_like(xr[:, 0]), reset)
    clear = (m - (tr.detach() if isinstance(tr, torch.Tensor) else tr)).abs() > MARGIN
    assert torch.equal(spikes.cpu().double()[clear], spikes_r.detach()[clear]), "spikes differ away from threshold"
    assert clear.float().mean() > 0.99  # the margin excludes only a few steps
    assert_close(v, v_r, tol, "final membrane")

    g = torch.Generator().manual_seed(1)
    gs = torch.randn(spikes_r.shape, generator=g, dtype=torch.float64)
    gv = torch.randn(v_r.shape, generator=g, dtype=torch.float64)
    named = [(n, a, b) for n, a, b in (("x", x, xr), ("beta", beta, br), ("threshold", th, tr), ("h0", h0, hr))
             if isinstance(a, torch.Tensor)]
    grads = torch.autograd.grad((spikes, v), [a for _, a, _ in named],
                                (gs.to(dtype).to(device), gv.to(v.dtype).to(device)))
    grads_r = torch.autograd.grad((spikes_r, v_r), [b for _, _, b in named], (gs.to(dtype).double(), gv))
    for (name, _, _), got, want in zip(named, grads, grads_r):
        assert_close(got, want, tol, f"grad {name}")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reset,surrogate,detach_reset", list(itertools.product(RESETS, SURROGATES, [False, True])))
def test_matches_reference_float64(backend, device, reset, surrogate, detach_reset):
    x, beta, th, h0 = make_inputs(2, 37, 5, seed=10 * RESETS.index(reset) + SURROGATES.index(surrogate))
    check(x, beta, th, h0, dtype=torch.float64, reset=reset, surrogate=surrogate, detach_reset=detach_reset,
          tol=1e-12, backend=backend, device=device)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("per_channel", [True, False])
def test_matches_reference_float32(backend, device, reset, per_channel):
    x, beta, th, h0 = make_inputs(3, 64, 7, per_channel=per_channel, seed=2)
    check(x, beta, th, h0, dtype=torch.float32, reset=reset, surrogate="atan", detach_reset=False, tol=2e-5,
          backend=backend, device=device)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("B,L,H", [(1, 1, 1), (1, 1, 4), (2, 3, 1), (1, 200, 3), (2, 5, 70)])
def test_awkward_sizes(backend, device, B, L, H):
    x, beta, th, h0 = make_inputs(B, L, H, seed=B + L + H)
    check(x, beta, th, None, dtype=torch.float64, reset="subtract", surrogate="fast_sigmoid",
          detach_reset=False, tol=1e-12, backend=backend, device=device)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reset", RESETS)
def test_infinite_input_spikes_and_the_zero_reset_clears_it(backend, device, reset):
    """An infinite input current spikes. "zero" brings the membrane back to exactly 0 (not inf - inf = NaN); with
    the other resets it stays infinite and spikes at every later step."""
    x = torch.full((1, 4, 2), 0.25)
    x[0, 1, 0] = math.inf
    spikes, v = lif(x.to(device), 0.5, 1.0, reset=reset, backend=backend)
    expected_spikes = torch.zeros(1, 4, 2)
    expected_spikes[0, 1 if reset == "zero" else slice(1, None), 0] = 1
    assert torch.equal(spikes.cpu(), expected_spikes)
    # channel 1: 0.25, 0.375, 0.4375, 0.46875; channel 0 after the spike: 0, 0.25, 0.375 (zero) or inf. After decay
    # the state is beta m: channel 1's pre-reset membranes are the same, its final state 0.46875 / 2
    expected_v = torch.tensor([[0.375 if reset == "zero" else math.inf,
                                0.234375 if reset == "subtract_after_decay" else 0.46875]])
    assert torch.equal(v.cpu(), expected_v)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("reset", RESETS)
def test_triton_agrees_with_torch(reset):
    """The backend switch changes results by rounding only (spikes compared away from the threshold)."""
    x, beta, th, h0 = make_inputs(2, 50, 9, seed=5)
    outs = {}
    for backend, device in (("torch", "cpu"), ("triton", TRITON_DEVICE)):
        args = [t.float().to(device).requires_grad_() for t in (x, beta, th, h0)]
        spikes, v = lif(*args[:3], reset=reset, surrogate="sigmoid", initial_state=args[3], backend=backend)
        grads = torch.autograd.grad((spikes, v), args, (torch.ones_like(spikes), torch.ones_like(v)))
        outs[backend] = [t.detach().cpu() for t in (spikes, v, *grads)]
    assert torch.equal(outs["triton"][0], outs["torch"][0])
    for name, got, want in zip(("v", "dx", "dbeta", "dthreshold", "dh0"), outs["triton"][1:], outs["torch"][1:]):
        assert_close(got, want, 1e-5, name)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("surrogate", [s for s in SURROGATES if s != "leaky"])  # leaky's alpha is unused
def test_scalar_tensor_parameters_and_alpha(backend, device, surrogate):
    """0-dim tensor beta and threshold, and a non-default alpha that every backend must pass on (the reference's
    derivative is pinned at non-default alphas by test_surrogate_formulas)."""
    x, _, _, h0 = make_inputs(2, 20, 3, seed=3)
    beta = torch.tensor(0.6, dtype=torch.float64)
    th = torch.tensor(0.5, dtype=torch.float64)
    check(x, beta, th, h0, dtype=torch.float64, reset="zero", surrogate=surrogate, detach_reset=False,
          tol=1e-12, alpha=1.7 * DEFAULT_ALPHA[surrogate], backend=backend, device=device)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(backend, device, dtype):
    """bfloat16 / float16 x with a float32 membrane: spikes and dx come back in x's dtype and match the float64
    reference run on the same (rounded) input; dx to its dtype's rounding."""
    x, beta, th, h0 = make_inputs(2, 30, 4, seed=4)
    beta, th, h0 = beta.float(), th.float(), h0.float()
    xl = x.to(dtype).to(device).requires_grad_()
    spikes, v = lif(xl, beta.to(device), th.to(device), initial_state=h0.to(device), backend=backend)
    assert spikes.dtype == dtype and v.dtype == torch.float32
    xr = xl.detach().cpu().double().requires_grad_()
    b64, t64, h64 = beta.double(), th.double(), h0.double()
    spikes_r, v_r = lif_loop(xr, b64, t64, reset="subtract", surrogate="atan", alpha=DEFAULT_ALPHA["atan"],
                             initial_state=h64)
    clear = (pre_reset_membrane(xr.detach(), b64, t64, h64, "subtract") - t64).abs() > MARGIN
    assert torch.equal(spikes.cpu().double()[clear], spikes_r.detach()[clear])
    assert_close(v, v_r, 1e-5, "final membrane")
    gs = torch.randn(spikes_r.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    (dx,) = torch.autograd.grad(spikes, xl, gs.to(device))
    (dx_r,) = torch.autograd.grad(spikes_r, xr, gs.double())
    assert dx.dtype == dtype
    assert_close(dx, dx_r, 1e-2, "dx")


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_reads_s5_output_in_place(monkeypatch, dtype):
    """The S5 layer's output goes to the LIF kernel as it is: the tensor the kernel reads is S5's output itself,
    not a copy (float32, and bfloat16 as under autocast)."""
    from spikessm.kernels import lif as kernels
    from spikessm.layers import S5

    seen = []

    def recording_fwd(x, *args, **kwargs):
        seen.append(x)
        return launcher(x, *args, **kwargs)

    launcher = kernels.lif_fwd
    monkeypatch.setattr(kernels, "lif_fwd", recording_fwd)
    layer = S5(8, 6, backend="torch", device=TRITON_DEVICE)
    y = layer(torch.randn(2, 11, 8, device=TRITON_DEVICE, dtype=dtype))
    spikes, _ = lif(y, 0.9, 0.1, backend="triton")
    assert len(seen) == 1 and seen[0].data_ptr() == y.data_ptr() and seen[0].dtype == dtype
    assert spikes.dtype == dtype


def test_binary_spiking_is_heaviside():
    # The core paper's Binary S4D readout: beta = 0, threshold = 0, no reset.
    x = torch.randn(2, 50, 6)
    spikes, _ = lif(x, 0.0, 0.0, reset="none")
    assert torch.equal(spikes, (x > 0).float())


@pytest.mark.parametrize("surrogate,alpha,x,expected", [
    ("atan", 2.0, 0.0, 1.0),
    ("atan", 2.0, 1 / math.pi, 1 / 2),                   # 1 / (1 + 1)
    ("atan", 4.0, 1 / (2 * math.pi), 1.0),               # 4 / 2 / (1 + 1)
    ("fast_sigmoid", 25.0, 0.0, 1.0),
    ("fast_sigmoid", 25.0, 0.04, 0.25),                  # 1 / (1 + 1)^2
    ("fast_sigmoid", 10.0, -0.2, 1 / 9),                 # 1 / (1 + 2)^2
    ("triangle", 1.0, 0.5, 0.5),
    ("triangle", 2.0, -1.0, 0.25),                       # (1 - 1/2) / 2
    ("triangle", 1.0, 1.5, 0.0),
    ("sigmoid", 4.0, 0.0, 1.0),                          # 4 * 1/2 * 1/2
    ("sigmoid", 4.0, math.log(3) / 4, 0.75),             # sig = 3/4: 4 * 3/4 * 1/4
    ("sigmoid", 2.0, math.log(3) / 2, 0.375),            # sig = 3/4: 2 * 3/4 * 1/4
    ("rectangle", 1.0, 0.49, 1.0),
    ("rectangle", 1.0, 0.5, 0.0),
    ("rectangle", 0.5, 0.2, 2.0),
])
def test_surrogate_formulas(surrogate, alpha, x, expected):
    got = derivative(surrogate, torch.tensor([x], dtype=torch.float64), alpha)
    assert abs(got.item() - expected) < 1e-12


def test_leaky_surrogate_formula():
    # One neuron, beta = 0.5, threshold = 2, spikes at steps 1 and 2:
    #   trace a = 0, 1, 1.5, 0.75; count g = 0, 1, 2, 2; factor (1 + ln(0.5) a / g) / 2, or 1/2 before a spike.
    spikes = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64).view(1, 4, 1)
    got = leaky_derivative(spikes, torch.tensor([0.5], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    ln = math.log(0.5)
    want = torch.tensor([0.5, (1 + ln) / 2, (1 + ln * 0.75) / 2, (1 + ln * 0.375) / 2], dtype=torch.float64)
    assert torch.allclose(got.view(-1), want, rtol=1e-14, atol=0)


def test_compile_fullgraph():
    x = torch.randn(2, 9, 3)
    beta = torch.rand(3, requires_grad=True)
    th = (torch.rand(3) + 0.2).requires_grad_()

    def f(x, beta, th):
        spikes, v = lif(x, beta, th, reset="zero", surrogate="triangle")
        return (spikes * torch.arange(9.0)[:, None]).sum() + v.sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    want = torch.autograd.grad(f(x, beta, th), (beta, th))
    got = torch.autograd.grad(compiled(x, beta, th), (beta, th))
    for g, w in zip(got, want):
        assert_close(g, w, 1e-6, "grad")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_opcheck(backend, device):
    x = torch.randn(2, 5, 3, device=device, requires_grad=True)
    beta = torch.rand(3, device=device, requires_grad=True)
    th = torch.rand(3, device=device, requires_grad=True)
    h0 = torch.randn(2, 3, device=device, requires_grad=True)
    ops = getattr(torch.ops.spikessm, f"lif_{backend}_sequential_fwd"), getattr(torch.ops.spikessm,
                                                                           f"lif_{backend}_sequential_bwd")
    for fire_on_tie, save_membrane in ((False, True), (False, False), (True, True)):
        args = (x, beta, th, h0, "subtract", "atan", 2.0, False, fire_on_tie, save_membrane)
        torch.library.opcheck(ops[0].default, args,
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    # the backward op as torch.compile calls it: its results must not alias one another or an input
    m_all = ops[0](*args[:-1], True)[1].detach()
    g_spikes, g_final = torch.randn(2, 5, 3, device=device), torch.randn(2, 3, device=device)
    bwd_args = (x.detach(), beta.detach(), th.detach(), h0.detach(), m_all, g_spikes, g_final, "subtract", "atan",
                2.0, False, True)
    torch.library.opcheck(ops[1].default, bwd_args, test_utils=("test_schema", "test_faketensor"))


def test_errors():
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="lif: reset must be one of"):
        lif(x, 0.5, 1.0, reset="hard")
    with pytest.raises(ValueError, match="lif: surrogate must be one of"):
        lif(x, 0.5, 1.0, surrogate="erf")
    with pytest.raises(ValueError, match="lif: alpha must be a positive"):
        lif(x, 0.5, 1.0, alpha=0.0)
    with pytest.raises(ValueError, match=r"lif: beta must have shape \(\) or \(channels,\)"):
        lif(x, torch.rand(4), 1.0)
    with pytest.raises(TypeError, match="lif: threshold must be a float or a real"):
        lif(x, 0.5, torch.ones(3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="lif: x must be float32"):
        lif(x.to(torch.complex64), 0.5, 1.0)
    with pytest.raises(ValueError, match=r"lif: x must be \(batch, length, channels\)"):
        lif(x[0], 0.5, 1.0)
    with pytest.raises(TypeError, match="lif: initial_state must be torch.float32"):
        lif(x, 0.5, 1.0, initial_state=torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="lif: the 'leaky' surrogate needs 0 < beta <= 1"):
        lif(x, 0.0, 1.0, surrogate="leaky")
    with pytest.raises(ValueError, match="lif: backend must be one of"):
        lif(x, 0.5, 1.0, backend="cuda")
    with pytest.raises(TypeError, match=r"lif: fire_on_tie must be True or False, got 1 \(int\)"):
        lif(x, 0.5, 1.0, fire_on_tie=1)


def tie_inputs(B, L, H, seed=0):
    """Event counts (integers) into neurons with beta = 0.5 and integer thresholds: every membrane is a short binary
    fraction, exact in float32 and float64, so it equals the threshold exactly at many steps."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 3, (B, L, H), generator=g).double()
    beta = torch.full((H,), 0.5, dtype=torch.float64)
    threshold = torch.randint(1, 3, (H,), generator=g).double()
    h0 = torch.randint(0, 2, (B, H), generator=g).double()
    return x, beta, threshold, h0


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("B,L,H", [(1, 9, 1), (2, 37, 3)])
@pytest.mark.parametrize("reset,surrogate,detach_reset", [
    ("subtract", "atan", False), ("zero", "leaky", False), ("none", "fast_sigmoid", True),
    ("subtract", "sigmoid", True), ("subtract_after_decay", "atan", False), ("subtract_after_decay", "leaky", True)])
@pytest.mark.parametrize("fire_on_tie", [False, True])
def test_fire_on_tie_matches_reference(backend, device, B, L, H, reset, surrogate, detach_reset, fire_on_tie):
    """Both firing rules on inputs full of ties: spikes exactly, final membrane and every gradient as the float64
    reference."""
    x64, beta64, th64, h064 = tie_inputs(B, L, H, seed=B * L + H)
    ins = [t.clone().to(device).requires_grad_() for t in (x64, beta64, th64, h064)]
    refs = [t.clone().requires_grad_() for t in (x64, beta64, th64, h064)]
    kw = dict(reset=reset, surrogate=surrogate, detach_reset=detach_reset, fire_on_tie=fire_on_tie)
    spikes, v = lif(ins[0], ins[1], ins[2], initial_state=ins[3], backend=backend, **kw)
    alpha = DEFAULT_ALPHA[surrogate]
    spikes_r, v_r = lif_loop(refs[0], refs[1], refs[2], initial_state=refs[3], alpha=alpha, **kw)
    other, _ = lif_loop(x64, beta64, th64, initial_state=h064, alpha=alpha, **{**kw, "fire_on_tie": not fire_on_tie})
    assert not torch.equal(spikes_r, other), "the inputs have no tie: the test would not see the rule"
    assert torch.equal(spikes.cpu(), spikes_r.detach())
    assert_close(v, v_r, 1e-12, "final membrane")
    g = torch.Generator().manual_seed(1)
    gs, gv = torch.randn(x64.shape, generator=g, dtype=torch.float64), torch.randn(v_r.shape, generator=g,
                                                                                     dtype=torch.float64)
    grads = torch.autograd.grad((spikes, v), ins, (gs.to(device), gv.to(device)))
    grads_r = torch.autograd.grad((spikes_r, v_r), refs, (gs, gv))
    for name, got, want in zip(("x", "beta", "threshold", "h0"), grads, grads_r):
        assert_close(got, want, 1e-12, f"grad {name}")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_fire_on_tie_float32_and_reverse(backend, device):
    """float32 input (exact here too) and a reversed run: the same spikes as the float64 reference."""
    x, beta, th, h0 = tie_inputs(2, 21, 3, seed=5)
    for reverse in (False, True):
        spikes, v = lif(x.float().to(device), beta.float().to(device), th.float().to(device), fire_on_tie=True,
                        initial_state=h0.float().to(device), reverse=reverse, backend=backend)
        spikes_r, v_r = lif_loop(x, beta, th, initial_state=h0, fire_on_tie=True, reverse=reverse)
        assert torch.equal(spikes.cpu().double(), spikes_r)
        assert torch.equal(v.cpu().double(), v_r)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_fire_on_tie_streaming_in_pieces(backend, device):
    x, beta, th, _ = tie_inputs(2, 23, 3, seed=7)
    x, beta, th = (t.to(device) for t in (x, beta, th))
    full, v_full = lif(x, beta, th, fire_on_tie=True, backend=backend)
    state, pieces = None, []
    for lo, hi in ((0, 1), (1, 10), (10, 23)):
        spikes, state = lif(x[:, lo:hi], beta, th, initial_state=state, fire_on_tie=True, backend=backend)
        pieces.append(spikes)
    assert torch.equal(torch.cat(pieces, 1), full)
    assert torch.equal(state, v_full)



@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("reverse", [False, True])
def test_streaming_in_pieces(backend, device, reset, reverse):
    """Pieces of 1, 9 and 13 steps, each from the previous piece's final state, give one pass's spikes and final
    state: the state alone carries everything the next step needs (after decay too: its state is beta m - s
    threshold)."""
    x, beta, th, _ = make_inputs(2, 23, 3, seed=17)
    x, beta, th = (t.to(device) for t in (x, beta, th))
    full, v_full = lif(x, beta, th, reset=reset, reverse=reverse, backend=backend)
    assert 0 < full.mean() < 1
    state, outs = None, []
    cuts = [(0, 1), (1, 10), (10, 23)]
    for lo, hi in (reversed(cuts) if reverse else cuts):
        spikes, state = lif(x[:, lo:hi], beta, th, initial_state=state, reset=reset, reverse=reverse,
                            backend=backend)
        outs.append(spikes)
    assert torch.equal(torch.cat(list(reversed(outs)) if reverse else outs, 1), full)
    assert_close(state, v_full, 1e-14, "final state")


def _atan_spike(z, alpha):
    """Heaviside(z) forward with the derivative alpha / 2 / (1 + (pi alpha z / 2)^2) backward (snntorch's ATan,
    spikessm's "atan"), written out: the smooth function's value cancels, its gradient stays."""
    smooth = torch.atan(math.pi / 2 * alpha * z) / math.pi
    return (z > 0).to(z.dtype) + (smooth - smooth.detach())


@pytest.mark.parametrize("detach_reset", [True, False])
def test_subtract_after_decay_is_the_snntorch_order(detach_reset):
    """The reference's "subtract_after_decay" against snntorch's equation written out as a loop:
        m_t = beta m_{t-1} + x_t - threshold s_{t-1},   s_t = [m_t > threshold],   s_{-1} = [m_{-1} > threshold],
    whose state is m (spikessm's state is v = beta m - threshold s). Spikes, final state and the gradients of x,
    beta and threshold; and the inputs are ones where "subtract" (threshold off before the decay) spikes
    differently, so the test sees the order."""
    x, beta, th, m0 = make_inputs(2, 40, 3, seed=21)
    alpha = 2.0
    leaves = [t.clone().requires_grad_() for t in (x, beta, th)]
    xl, bl, tl = leaves
    m, s, spikes = m0, (m0 > tl).double(), []
    for t in range(x.shape[1]):
        m = bl * m + xl[:, t] - tl * (s.detach() if detach_reset else s)
        s = _atan_spike(m - tl, alpha)
        spikes.append(s)
    spikes = torch.stack(spikes, 1)
    v_end = bl * m - tl * (s.detach() if detach_reset else s)  # spikessm's state after the last step
    refs = [t.clone().requires_grad_() for t in (x, beta, th)]
    v0 = refs[1] * m0 - refs[2] * (m0 > th).double()  # the loop's first step, beta m_{-1} - threshold s_{-1}
    spikes_r, v_r = lif_loop(refs[0], refs[1], refs[2], reset="subtract_after_decay", surrogate="atan", alpha=alpha,
                             initial_state=v0, detach_reset=detach_reset)
    assert 0 < spikes.mean() < 1
    assert torch.equal(spikes_r, spikes.detach())
    assert_close(v_r, v_end, 1e-14, "final state")
    g = torch.Generator().manual_seed(2)
    gs, gv = torch.randn(spikes.shape, generator=g, dtype=torch.float64), torch.randn(v_end.shape, generator=g,
                                                                                        dtype=torch.float64)
    want = torch.autograd.grad((spikes, v_end), leaves, (gs, gv))
    got = torch.autograd.grad((spikes_r, v_r), refs, (gs, gv))
    for name, a, b in zip(("x", "beta", "threshold"), got, want):
        assert_close(a, b, 1e-13, f"grad {name}")
    before, _ = lif_loop(x, beta, th, reset="subtract", initial_state=m0 - th * (m0 > th).double())
    assert not torch.equal(before, spikes_r.detach()), "these inputs do not tell the two orders apart"
