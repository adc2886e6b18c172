"""rf against the float64 step-by-step reference: spikes, final state and every gradient, on every backend and
algorithm, with one or several branches, every reset, every pointwise surrogate and the adaptive threshold."""
import math

import pytest
import torch
from conftest import BACKENDS, TRITON_DEVICE, requires_triton
from helpers import assert_close

from spikessm.ops import RFState, lif, rf
from spikessm.ops.common.surrogate import DEFAULT_ALPHA, POINTWISE_SURROGATES
from spikessm.ops.rf.naive import rf_loop

MARGIN = 1e-4  # spikes may legitimately differ where the soma is within rounding of the threshold


def make_inputs(B, L, H, K=1, *, branches=False, weighted=False, adaptive=False, initial=True, seed=0):
    """float64 x, lam ((H,) or (H, K) with |lam| in [0.7, 0.99]), threshold, weight, adaptation parameters and an
    initial state: a dict of rf's arguments."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, H, generator=g, dtype=torch.float64) * 0.8
    lam = torch.polar(0.7 + 0.29 * torch.rand(H, K, generator=g, dtype=torch.float64),
                      2.0 * torch.rand(H, K, generator=g, dtype=torch.float64))
    branched = branches or K > 1
    args = dict(x=x, lam=lam if branched else lam[:, 0],
                threshold=0.3 + torch.rand(H, generator=g, dtype=torch.float64),
                weight=0.5 + torch.rand(H, K, generator=g, dtype=torch.float64) if weighted else None,
                adapt_decay=0.9 * torch.rand(H, generator=g, dtype=torch.float64) if adaptive else None,
                adapt_scale=torch.rand(H, generator=g, dtype=torch.float64) if adaptive else None)
    shape = (B, H, K) if branched else (B, H)
    args["membrane"] = torch.randn(shape, generator=g, dtype=torch.complex128) if initial else None
    args["trace"] = torch.rand(B, H, generator=g, dtype=torch.float64) if initial and adaptive else None
    return args


TENSORS = ("x", "lam", "threshold", "weight", "adapt_decay", "adapt_scale", "membrane", "trace")


def check(args, *, dtype=torch.float64, reset="subtract", surrogate="atan", alpha=None, detach_reset=False,
          backend="torch", algorithm="auto", device="cpu", tol=1e-12, reverse=False):
    """rf on `args` (cast to dtype, on device) against rf_loop in float64: spikes away from the threshold, the
    final state, and the gradients of every tensor argument for random output gradients."""
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    real = torch.float64 if dtype == torch.float64 else torch.float32

    def cast(name, v):
        if v is None:
            return None
        target = complex_dtype if v.is_complex() else (dtype if name == "x" else real)
        return v.to(target).to(device).requires_grad_()

    ours = {k: cast(k, v) for k, v in args.items()}
    out = rf(ours["x"], ours["lam"], ours["threshold"], (ours["membrane"], ours["trace"]), weight=ours["weight"],
             adapt_decay=ours["adapt_decay"], adapt_scale=ours["adapt_scale"], reset=reset, surrogate=surrogate,
             alpha=alpha, detach_reset=detach_reset, backend=backend, algorithm=algorithm, reverse=reverse)
    spikes, state = out
    assert isinstance(state, RFState)
    assert spikes.dtype == ours["x"].dtype and spikes.shape == ours["x"].shape
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}

    ref = {k: (v.detach().cpu().to(torch.complex128 if v.is_complex() else torch.float64).requires_grad_()
               if v is not None else None) for k, v in ours.items()}
    spikes_r, z_r, a_r, (m_r, th_r) = rf_loop(
        ref["x"], ref["lam"], ref["threshold"], weight=ref["weight"], reset=reset, surrogate=surrogate,
        alpha=DEFAULT_ALPHA[surrogate] if alpha is None else alpha, initial_state=ref["membrane"],
        adapt_decay=ref["adapt_decay"], adapt_scale=ref["adapt_scale"], initial_trace=ref["trace"],
        detach_reset=detach_reset, reverse=reverse, return_soma=True)
    clear = (m_r - th_r).abs() > MARGIN
    assert clear.double().mean() > 0.99  # the margin excludes only a few steps
    assert torch.equal(spikes.detach().cpu().double()[clear], spikes_r.detach()[clear]), "spikes differ"
    assert 0.05 < spikes_r.mean() < 0.95, "the test data must spike, and not always"
    assert_close(state.membrane, z_r, tol, "final membrane")
    if a_r is None:
        assert state.trace is None
    else:
        assert_close(state.trace, a_r, tol, "final trace")

    g = torch.Generator().manual_seed(1)
    gs = torch.randn(spikes_r.shape, generator=g, dtype=torch.float64)
    gz = torch.randn(z_r.shape, generator=g, dtype=torch.complex128)
    ga = torch.randn(z_r.shape[:2], generator=g, dtype=torch.float64)

    def loss(s, z, a, on):
        total = (s * gs.to(on).to(s.dtype)).sum() + (z * gz.to(on).to(z.dtype)).real.sum()
        return total + ((a * ga.to(on).to(a.dtype)).sum() if a is not None else 0)

    names = [k for k in TENSORS if ours[k] is not None]
    grads = torch.autograd.grad(loss(spikes, state.membrane, state.trace, device), [ours[k] for k in names])
    grads_r = torch.autograd.grad(loss(spikes_r, z_r, a_r, "cpu"), [ref[k] for k in names])
    for name, got, want in zip(names, grads, grads_r):
        assert_close(got.cpu(), want, tol, f"grad {name}")


CONFIGS = [  # (reset, K, branch axis, weighted, adaptive, detach_reset)
    ("subtract", 1, False, False, False, False),
    ("subtract", 1, False, False, False, True),
    ("subtract", 1, False, False, True, False),
    ("zero", 1, False, False, False, False),
    ("zero", 1, False, False, True, True),
    ("zero", 3, True, True, True, False),
    ("zero", 3, True, False, False, True),
    ("none", 1, False, False, False, False),
    ("none", 1, True, True, False, False),
    ("none", 3, True, True, True, False),
]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reset,K,branches,weighted,adaptive,detach", CONFIGS,
                         ids=lambda v: str(v) if not isinstance(v, bool) else ("T" if v else "F"))
def test_matches_reference_float64(backend, device, reset, K, branches, weighted, adaptive, detach):
    args = make_inputs(2, 37, 5, K, branches=branches, weighted=weighted, adaptive=adaptive,
                       seed=CONFIGS.index((reset, K, branches, weighted, adaptive, detach)))
    check(args, reset=reset, detach_reset=detach, backend=backend, device=device)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("surrogate", POINTWISE_SURROGATES)
def test_every_surrogate_and_alpha(backend, device, surrogate):
    """Each pointwise surrogate at a non-default alpha, which every backend must pass on."""
    args = make_inputs(2, 20, 3, adaptive=True, seed=3)
    check(args, reset="zero", surrogate=surrogate, alpha=1.7 * DEFAULT_ALPHA[surrogate], backend=backend,
          device=device)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_matches_reference_float32(backend, device, reset):
    args = make_inputs(3, 64, 7, adaptive=reset == "zero", seed=2)
    check(args, dtype=torch.float32, reset=reset, backend=backend, device=device, tol=2e-5)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("B,L,H,K", [(1, 1, 1, 1), (1, 1, 4, 2), (2, 3, 1, 1), (1, 9, 3, 1), (1, 70, 3, 2),
                                     (2, 5, 40, 1), (2, 17, 33, 3)])
def test_awkward_sizes(backend, device, B, L, H, K):
    """Batch 1, one channel, one step, lengths around the kernels' 8-step tiles, channels over one 32-neuron
    block, branches that are not a power of two."""
    args = make_inputs(B, L, H, K, branches=K > 1, weighted=K > 1, seed=B + L + H + K)
    args["x"] = args["x"] * 2  # short sequences still spike
    reset = "subtract" if K == 1 else "zero"
    if L * H * B < 20:  # too few steps to require spikes both ways: compare without check()'s rate assertion
        out = rf(args["x"], args["lam"], args["threshold"], (args["membrane"], None), weight=args["weight"],
                 reset=reset, backend=backend)
        spikes_r, z_r, _ = rf_loop(args["x"], args["lam"], args["threshold"], weight=args["weight"], reset=reset,
                                   initial_state=args["membrane"])
        assert torch.equal(out.output.cpu(), spikes_r)
        assert_close(out.final_state.membrane.cpu(), z_r, 1e-12, "final membrane")
        return
    check({k: v.to(device) if v is not None else None for k, v in args.items()}, reset=reset, backend=backend,
          device=device)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("K", [1, 3])
def test_parallel_algorithm_equals_sequential(backend, device, K):
    """PRF's decoupled reset (reset "none", a fixed threshold) runs as diag_scan then a threshold, computing what
    the sequential walk computes: values and gradients against the reference."""
    args = make_inputs(2, 45, 4, K, branches=True, weighted=K > 1, seed=40 + K)
    check(args, reset="none", algorithm="parallel", backend=backend, device=device, tol=1e-11)
    check(args, reset="none", algorithm="parallel", backend=backend, device=device, tol=1e-11, reverse=True)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_reverse(backend, device):
    args = make_inputs(2, 19, 3, adaptive=True, seed=8)
    check(args, reset="subtract", backend=backend, device=device, reverse=True)
    x, lam, th = args["x"].to(device), args["lam"].to(device), args["threshold"].to(device)
    backward = rf(x, lam, th, reverse=True, backend=backend)
    forward = rf(x.flip(1), lam, th, backend=backend)
    assert torch.equal(backward.output, forward.output.flip(1))
    assert torch.equal(backward.final_state.membrane, forward.final_state.membrane)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_triton_agrees_with_torch(reset):
    """The backend switch changes results by rounding only: float32, spikes equal, every gradient close."""
    args = make_inputs(2, 50, 9, 2 if reset != "subtract" else 1, branches=reset != "subtract",
                       weighted=reset == "zero", adaptive=reset != "none", seed=5)
    outs = {}
    for backend, device in (("torch", "cpu"), ("triton", TRITON_DEVICE)):
        t = {k: (v.to(torch.complex64 if v.is_complex() else torch.float32).to(device).requires_grad_()
                 if v is not None else None) for k, v in args.items()}
        spikes, state = rf(t["x"], t["lam"], t["threshold"], (t["membrane"], t["trace"]), weight=t["weight"],
                           adapt_decay=t["adapt_decay"], adapt_scale=t["adapt_scale"], reset=reset,
                           surrogate="sigmoid", backend=backend)
        leaves = [t[k] for k in TENSORS if t[k] is not None]
        loss = spikes.sum() + state.membrane.abs().sum() + (state.trace.sum() if state.trace is not None else 0)
        outs[backend] = [spikes.detach().cpu(), state.membrane.detach().cpu(),
                         *(g.cpu() for g in torch.autograd.grad(loss, leaves))]
    assert torch.equal(outs["triton"][0], outs["torch"][0])
    for k, (got, want) in enumerate(zip(outs["triton"][1:], outs["torch"][1:])):
        assert_close(got, want, 1e-5, f"output {k + 1}")


def test_gradcheck_membrane():
    """The membrane's gradients by finite differences (float64): when the spikes do not act on the membrane
    (reset "none") or act only through a detached reset, the surrogate plays no part in the final membrane's
    gradients and gradcheck applies (with a reset that is not detached, the surrogate deliberately adds a
    gradient the step function does not have)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    lam = torch.polar(0.5 + 0.4 * torch.rand(3, 2, generator=g, dtype=torch.float64),
                      torch.rand(3, 2, generator=g, dtype=torch.float64) * 3).requires_grad_()
    z0 = torch.randn(2, 3, 2, generator=g, dtype=torch.complex128, requires_grad=True)

    def membrane(reset, threshold, detach):
        def f(x, lam, z0):
            return rf(x, lam, threshold, (z0, None), reset=reset, detach_reset=detach).final_state.membrane
        return f

    assert torch.autograd.gradcheck(membrane("none", 0.1, False), (x, lam, z0))
    assert torch.autograd.gradcheck(membrane("zero", 0.2, True), (x, lam, z0))
    assert torch.autograd.gradcheck(membrane("subtract", 0.2, True), (x, lam[:, 0].detach().requires_grad_(),
                                                                       z0[..., 0].detach().requires_grad_()))


def test_without_frequency_rf_is_lif():
    """lam = beta (real, no oscillation) with the subtract reset is lif: the same spikes, and the membrane and
    gradients to rounding (a complex product rounds differently from lif's real one)."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 40, 4, generator=g, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([0.0, 0.5, 0.9, 1.0], dtype=torch.float64)
    th = torch.full((4,), 0.6, dtype=torch.float64, requires_grad=True)
    spikes, state = rf(x, beta.to(torch.complex128), th)
    spikes_l, v = lif(x, beta, th)
    assert torch.equal(spikes, spikes_l)
    assert_close(state.membrane.real, v, 1e-14, "membrane")
    assert torch.equal(state.membrane.imag, torch.zeros_like(v))
    gs = torch.randn(spikes.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((spikes * gs).sum() + state.membrane.real.sum(), (x, th))
    want = torch.autograd.grad((spikes_l * gs).sum() + v.sum(), (x, th))
    for a, b in zip(got, want):
        assert_close(a, b, 1e-13)


def test_no_memory_is_heaviside():
    """lam = 0 keeps nothing between steps: with threshold 0 an RF neuron is Binary S4D's spike H(x)."""
    x = torch.randn(2, 30, 5)
    spikes, _ = rf(x, torch.zeros(5, dtype=torch.complex64), 0.0, reset="none")
    assert torch.equal(spikes, (x > 0).float())


def test_oscillation_fires_periodically():
    """One kick, no decay, frequency pi/4 per step, no reset: Re z = cos(pi t / 4) crosses 0.5 on the 8-step
    period's steps 0, 1 and 7 (cos = 1, 0.707, 0.707), so the neuron fires at t = 0, 1, 7, 8, 9, 15, ..."""
    L = 24
    x = torch.zeros(1, L, 1, dtype=torch.float64)
    x[0, 0, 0] = 1.0
    lam = torch.polar(torch.ones(1, dtype=torch.float64), torch.full((1,), math.pi / 4, dtype=torch.float64))
    for backend, algorithm in (("torch", "sequential"), ("torch", "parallel")):
        spikes, _ = rf(x, lam, 0.5, reset="none", backend=backend, algorithm=algorithm)
        want = torch.tensor([1.0 if t % 8 in (0, 1, 7) else 0.0 for t in range(L)], dtype=torch.float64)
        assert torch.equal(spikes[0, :, 0], want)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_zero_reset_clears_an_infinite_input(backend, device):
    """An infinite input spikes, and "zero" brings the whole complex membrane back to exactly 0."""
    x = torch.full((1, 4, 2), 0.25)
    x[0, 1, 0] = math.inf
    lam = torch.full((2,), 0.5 + 0.5j, dtype=torch.complex64)
    spikes, state = rf(x.to(device), lam.to(device), 1.0, reset="zero", backend=backend)
    assert spikes.cpu()[0, :, 0].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert torch.isfinite(torch.view_as_real(state.membrane)).all()
    # channel 0 restarts from 0 at step 2: z = 0.25, then (0.5 + 0.5i) 0.25 + 0.25
    assert_close(state.membrane.cpu()[0, 0], torch.tensor(0.375 + 0.125j), 1e-7)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(backend, device, dtype):
    """bfloat16 / float16 x with a complex64 membrane: spikes and dx come back in x's dtype and match the float64
    reference run on the same (rounded) input; dx to its dtype's rounding."""
    args = make_inputs(2, 30, 4, seed=4)
    xl = args["x"].to(dtype).to(device).requires_grad_()
    lam, th, z0 = args["lam"].to(torch.complex64), args["threshold"].float(), args["membrane"].to(torch.complex64)
    spikes, state = rf(xl, lam.to(device), th.to(device), (z0.to(device), None), backend=backend)
    assert spikes.dtype == dtype and state.membrane.dtype == torch.complex64
    xr = xl.detach().cpu().double().requires_grad_()
    spikes_r, z_r, _, (m_r, th_r) = rf_loop(xr, lam.to(torch.complex128), th.double(), initial_state=z0.to(
        torch.complex128), reset="subtract", return_soma=True)
    clear = (m_r - th_r).abs() > MARGIN
    assert torch.equal(spikes.cpu().double()[clear], spikes_r.detach()[clear])
    assert_close(state.membrane.cpu(), z_r, 1e-5, "final membrane")
    gs = torch.randn(spikes_r.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    (dx,) = torch.autograd.grad(spikes, xl, gs.to(device))
    (dx_r,) = torch.autograd.grad(spikes_r, xr, gs.double())
    assert dx.dtype == dtype
    assert_close(dx, dx_r, 1e-2, "dx")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_float_parameters_and_no_state(backend, device):
    """Floats for threshold and the adaptation; no initial state (zeros); output_final_state=False."""
    args = make_inputs(2, 25, 3, adaptive=True, initial=False, seed=6)
    x, lam = args["x"].to(device), args["lam"].to(device)
    out = rf(x, lam, 0.5, adapt_decay=0.8, adapt_scale=0.3, reset="zero", backend=backend)
    spikes_r, z_r, a_r = rf_loop(x.cpu(), lam.cpu(), 0.5, adapt_decay=0.8, adapt_scale=0.3, reset="zero")
    assert torch.equal(out.output.cpu(), spikes_r)
    assert_close(out.final_state.membrane.cpu(), z_r, 1e-12)
    assert_close(out.final_state.trace.cpu(), a_r, 1e-12)
    assert rf(x, lam, 0.5, adapt_decay=0.8, adapt_scale=0.3, backend=backend,
              output_final_state=False).final_state is None


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_opcheck(backend, device):
    B, L, H, K = 2, 5, 3, 2
    fwd, bwd = (getattr(torch.ops.spikessm, f"rf_{backend}_sequential_{part}") for part in ("fwd", "bwd"))
    x = torch.randn(B, L, H, device=device, requires_grad=True)
    lam = (0.9 * torch.rand(H, K, device=device)).to(torch.complex64).requires_grad_()
    w, th, rho, kappa = (torch.rand(*shape, device=device, requires_grad=True) for shape in ((H, K), (H,), (H,), (H,)))
    h0 = torch.randn(B, H, K, dtype=torch.complex64, device=device, requires_grad=True)
    a0 = torch.rand(B, H, device=device, requires_grad=True)
    args = (x, lam, w, th, rho, kappa, h0, a0, "zero", "atan", 2.0, False, True)
    torch.library.opcheck(fwd.default, args,
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    for store in (True, False):
        torch.library.opcheck(fwd.default,
                              (x, lam, None, th, None, None, None, None, "subtract", "atan", 2.0, True, store),
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    spikes, zeta, a_prev, zT, aT = (t.detach() for t in fwd(*args))
    bwd_args = (x.detach(), lam.detach(), w.detach(), th.detach(), rho.detach(), kappa.detach(), h0.detach(),
                a0.detach(), zeta, a_prev, spikes, torch.randn(B, L, H, device=device),
                torch.randn(B, H, K, dtype=torch.complex64, device=device), torch.randn(B, H, device=device),
                "zero", "atan", 2.0, False)
    torch.library.opcheck(bwd.default, bwd_args, test_utils=("test_schema", "test_faketensor"))


def test_compile_fullgraph():
    g = torch.Generator().manual_seed(13)
    x = torch.randn(2, 9, 3, generator=g)
    lam = torch.polar(0.5 + 0.4 * torch.rand(3, 2, generator=g), torch.rand(3, 2, generator=g)).requires_grad_()
    th = (torch.rand(3, generator=g) + 0.2).requires_grad_()
    rho = torch.full((3,), 0.7, requires_grad=True)

    def f(x, lam, th, rho):
        spikes, state = rf(x, lam, th, reset="zero", adapt_decay=rho, adapt_scale=0.5, surrogate="triangle")
        return (spikes * torch.arange(9.0)[:, None]).sum() + state.membrane.abs().sum() + state.trace.sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    want = torch.autograd.grad(f(x, lam, th, rho), (lam, th, rho))
    got = torch.autograd.grad(compiled(x, lam, th, rho), (lam, th, rho))
    for a, b in zip(got, want):
        assert_close(a, b, 1e-6, "grad")


def test_errors():
    x = torch.randn(2, 5, 3)
    lam = torch.full((3,), 0.5 + 0.1j, dtype=torch.complex64)
    lam2 = lam[:, None].expand(3, 2).contiguous()
    cases = [
        (dict(lam=lam.to(torch.complex128)), TypeError, r"rf: lam must be torch.complex64 for x of torch.float32"),
        (dict(lam=lam.real.contiguous()), TypeError, r"rf: lam must be torch.complex64"),
        (dict(lam=lam[:2]), ValueError, r"rf: lam must be \(channels,\) or \(channels, branches\) with x's 3"),
        (dict(lam=torch.full((3,), 1.2 + 0j, dtype=torch.complex64)), ValueError, r"rf: lam must satisfy \|lam\| <= 1"),
        (dict(threshold=float("nan")), ValueError, "rf: threshold must be a finite number"),
        (dict(threshold=torch.tensor([1.0, float("inf"), 1.0])), ValueError, "rf: threshold must be a finite number"),
        (dict(reset="hard"), ValueError, "rf: reset must be one of"),
        (dict(lam=lam2, reset="subtract"), ValueError, "rf: reset='subtract' needs one branch and no branch weights"),
        (dict(surrogate="leaky"), ValueError, "rf: the 'leaky' surrogate needs a membrane history"),
        (dict(surrogate="erf"), ValueError, "rf: surrogate must be one of"),
        (dict(alpha=0.0), ValueError, "rf: alpha must be a positive finite number"),
        (dict(adapt_decay=0.5), ValueError, "rf: an adaptive threshold needs both adapt_decay and adapt_scale"),
        (dict(adapt_decay=1.5, adapt_scale=0.1), ValueError, r"rf: adapt_decay must be in \[0, 1\]"),
        (dict(adapt_decay=0.5, adapt_scale=-0.1), ValueError, "rf: adapt_scale must be a finite number >= 0"),
        (dict(lam=lam2, reset="zero", weight=torch.ones(3, 3)), ValueError, r"rf: weight must have shape"),
        (dict(lam=lam2, reset="zero", weight=torch.ones(3, 2, dtype=torch.float64)), TypeError,
         "rf: weight must be torch.float32"),
        (dict(initial_state=torch.zeros(2, 3, dtype=torch.complex64)), TypeError,
         "rf: initial_state must be None, an RFState or a pair"),
        (dict(initial_state=(torch.zeros(2, 4, dtype=torch.complex64), None)), ValueError,
         r"rf: initial_state.membrane must have shape \(batch, channels\)"),
        (dict(initial_state=(None, torch.zeros(2, 3))), ValueError, "rf: initial_state has a trace, but the threshold"),
        (dict(algorithm="parallel"), ValueError, "rf: algorithm='parallel' needs neurons whose spikes leave the "
                                                 "membrane alone"),
        (dict(algorithm="chunked"), ValueError, r"rf: algorithm must be one of \('auto', 'sequential', 'parallel'\)"),
        (dict(backend="cuda"), ValueError, "rf: backend must be one of"),
        (dict(detach_reset="yes"), TypeError, "rf: detach_reset must be True or False"),
        (dict(x=x.to(torch.complex64)), TypeError, "rf: x must be float32"),
        (dict(x=x[0]), ValueError, r"rf: x must be \(batch, length, channels\)"),
    ]
    for overrides, error, message in cases:
        kwargs = dict(dict(x=x, lam=lam, threshold=1.0), **overrides)
        with pytest.raises(error, match=message):
            rf(kwargs.pop("x"), kwargs.pop("lam"), kwargs.pop("threshold"), **kwargs)
