"""One way in: every op has the signature of the plan, returns named fields, takes booleans only as booleans and
refuses what the chosen path cannot honour."""
import inspect

import pytest
import torch
from conftest import BACKENDS, TRITON_DEVICE, requires_triton
from helpers import assert_close

from spikessm.ops import RFState, S4DLIFOutput, S4DLIFState, ScanOutput, diag_scan, lif, rf, s4d_lif, s4d_scan
from spikessm.ops.lif.naive import lif_loop

COMMON = {"reverse": False, "output_final_state": True, "backend": "auto", "algorithm": "auto"}
NEURON = {"reset": "subtract", "surrogate": "atan", "alpha": None, "detach_reset": False, "fire_on_tie": False}
SIGNATURES = {
    diag_scan: (["a", "b", "initial_state"], dict(COMMON, chunk_size=None)),
    s4d_scan: (["u", "A_bar", "B_bar", "C", "D", "initial_state"], COMMON),
    lif: (["x", "beta", "threshold", "initial_state"], dict(NEURON, **COMMON)),
    s4d_lif: (["u", "A_bar", "B_bar", "C", "D", "initial_state"],
              dict(beta=inspect.Parameter.empty, threshold=inspect.Parameter.empty, **NEURON, **COMMON,
                   output_membrane=False)),
    # rf fires where Re z > threshold only: fire_on_tie is an option of the LIF ops (spikingjelly's LIFNode rule)
    rf: (["x", "lam", "threshold", "initial_state"],
         dict(weight=None, adapt_decay=None, adapt_scale=None,
              **{k: v for k, v in NEURON.items() if k != "fire_on_tie"}, **COMMON)),
}


@pytest.mark.parametrize("op", list(SIGNATURES), ids=lambda op: op.__name__)
def test_signature(op):
    positional, keyword_only = SIGNATURES[op]
    params = inspect.signature(op).parameters.values()
    got_positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert got_positional == positional
    by_name = {p.name: p for p in params}
    assert by_name["initial_state"].default is None
    got_keyword = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert got_keyword == keyword_only


def _s4d(B=2, L=6, H=3, N=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, L, H, generator=g)
    A = (0.9 * torch.rand(H, N, generator=g)).to(torch.complex64)
    Bm = torch.randn(H, N, generator=g, dtype=torch.complex64)
    C = torch.randn(H, N, generator=g, dtype=torch.complex64)
    return u, A, Bm, C, torch.randn(H, generator=g)


def test_named_outputs():
    u, A, Bm, C, D = _s4d()
    out = s4d_scan(u, A, Bm, C, D)
    assert isinstance(out, ScanOutput) and out.output is out[0] and out.final_state is out[1]
    assert isinstance(diag_scan(A[:, 0].real.contiguous(), u), ScanOutput)
    assert isinstance(lif(u, 0.5, 1.0), ScanOutput)
    out = rf(u, A[:, 0], 0.3, adapt_decay=0.5, adapt_scale=0.2)
    assert isinstance(out, ScanOutput) and isinstance(out.final_state, RFState)
    assert out.final_state.membrane.shape == (2, 3) and out.final_state.trace.shape == (2, 3)
    assert rf(u, A, 0.3, reset="zero").final_state.membrane.shape == (2, 3, 2)  # (H, K) lam: K branches
    assert rf(u, A[:, 0], 0.3).final_state.trace is None
    out = s4d_lif(u, A, Bm, C, D, beta=0.5, threshold=0.3)
    assert isinstance(out, S4DLIFOutput) and len(out) == 3 and out.membrane is None
    assert isinstance(out.final_state, S4DLIFState) and out.final_state.ssm.shape == (2, 3, 2)
    assert out.final_state.membrane.shape == (2, 3)
    with_membrane = s4d_lif(u, A, Bm, C, D, beta=0.5, threshold=0.3, output_membrane=True)
    assert with_membrane.membrane.shape == (2, 6, 3) and with_membrane.membrane is with_membrane[2]
    assert torch.equal(with_membrane.output, out.output)
    # the membrane is the pre-reset one: spikes are where it exceeds the threshold
    assert torch.equal(with_membrane.output, (with_membrane.membrane > 0.3).float())
    assert s4d_lif(u, A, Bm, C, D, beta=0.5, threshold=0.3, output_final_state=False).final_state is None


def test_s4d_lif_takes_its_state_back():
    u, A, Bm, C, D = _s4d()
    first = s4d_lif(u[:, :3], A, Bm, C, D, beta=0.5, threshold=0.3)
    rest = s4d_lif(u[:, 3:], A, Bm, C, D, first.final_state, beta=0.5, threshold=0.3)
    whole = s4d_lif(u, A, Bm, C, D, beta=0.5, threshold=0.3)
    assert torch.equal(torch.cat([first.output, rest.output], 1), whole.output)
    with pytest.raises(TypeError, match="s4d_lif: initial_state must be None, an S4DLIFState or a pair"):
        s4d_lif(u, A, Bm, C, D, first.final_state.ssm, beta=0.5, threshold=0.3)


@pytest.mark.parametrize("flag", ["reverse", "output_final_state"])
def test_flags_must_be_bools(flag):
    u, A, Bm, C, D = _s4d()
    calls = {
        "s4d_scan": lambda **kw: s4d_scan(u, A, Bm, C, D, **kw),
        "diag_scan": lambda **kw: diag_scan(A[:, 0].real.contiguous(), u, **kw),
        "lif": lambda **kw: lif(u, 0.5, 1.0, **kw),
        "rf": lambda **kw: rf(u, A[:, 0], 1.0, **kw),
        "s4d_lif": lambda **kw: s4d_lif(u, A, Bm, C, D, beta=0.5, threshold=0.3, **kw),
    }
    for name, call in calls.items():
        for bad in ("no", 1, None):
            with pytest.raises(TypeError, match=f"{name}: {flag} must be True or False, got {bad!r}"):
                call(**{flag: bad})


def test_neuron_flags_must_be_bools():
    u, A, Bm, C, D = _s4d()
    with pytest.raises(TypeError, match="lif: detach_reset must be True or False, got 'yes'"):
        lif(u, 0.5, 1.0, detach_reset="yes")
    with pytest.raises(TypeError, match="s4d_lif: detach_reset must be True or False"):
        s4d_lif(u, A, Bm, C, D, beta=0.5, threshold=0.3, detach_reset=0)
    with pytest.raises(TypeError, match="s4d_lif: output_membrane must be True or False, got 'no'"):
        s4d_lif(u, A, Bm, C, D, beta=0.5, threshold=0.3, output_membrane="no")


def test_neuron_parameters_are_validated():
    x = torch.randn(1, 4, 3)
    for beta in (-0.1, 1.5, float("nan"), torch.tensor([0.5, 1.2, 0.5])):
        with pytest.raises(ValueError, match=r"lif: beta must be in \[0, 1\]"):
            lif(x, beta, 1.0)
    for threshold in (float("nan"), float("inf"), torch.tensor([1.0, float("-inf"), 1.0])):
        with pytest.raises(ValueError, match="lif: threshold must be a finite number"):
            lif(x, 0.5, threshold)
    for alpha in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lif: alpha must be a positive finite number"):
            lif(x, 0.5, 1.0, alpha=alpha)
    with pytest.raises(TypeError, match="lif: beta must be a float or a real floating-point tensor, got bool"):
        lif(x, True, 1.0)
    u, A, Bm, C, D = _s4d()
    with pytest.raises(ValueError, match=r"s4d_lif: beta must be in \[0, 1\]"):
        s4d_lif(u, A, Bm, C, D, beta=2.0, threshold=0.3)
    with pytest.raises(ValueError, match="s4d_lif: threshold must be a finite number"):
        s4d_lif(u, A, Bm, C, D, beta=0.5, threshold=float("nan"))
    lif(x, 0.0, 1.0)  # the ends of [0, 1] are valid
    lif(x, 1.0, -1.0)


def test_unknown_or_unavailable_algorithm_is_refused():
    u, A, Bm, C, D = _s4d()
    a = A[:, 0].real.contiguous()
    with pytest.raises(ValueError, match=r"diag_scan: algorithm must be one of \('auto', 'chunked'\)"):
        diag_scan(a, u, algorithm="sequential")
    with pytest.raises(ValueError, match=r"lif: algorithm must be one of \('auto', 'sequential'\)"):
        lif(u, 0.5, 1.0, algorithm="chunked")
    with pytest.raises(ValueError, match="s4d_scan: algorithm='sequential' is a Triton kernel; the torch backend has "
                                         "'chunked'"):
        s4d_scan(u, A, Bm, C, D, backend="torch", algorithm="sequential")


def test_chunk_size_refused_on_torch():
    u, A, _, _, _ = _s4d()
    a = A[:, 0].real.contiguous()
    for backend in ("torch", "auto"):  # "auto" on CPU tensors is the PyTorch path
        with pytest.raises(ValueError, match="diag_scan: chunk_size is a Triton kernel setting"):
            diag_scan(a, u, chunk_size=8, backend=backend)
    diag_scan(a, u, chunk_size=None, backend="torch")


@requires_triton
@pytest.mark.interpreter
def test_chunk_size_taken_on_triton():
    u, A, _, _, _ = _s4d()
    a = A[:, 0].real.contiguous()
    x, _ = diag_scan(a.to(TRITON_DEVICE), u.to(TRITON_DEVICE), chunk_size=4, backend="triton")
    assert_close(x.cpu(), diag_scan(a, u, backend="torch").output, 1e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_lif_reverse_and_final_state(backend, device, reverse):
    """lif's reverse runs the neurons from the last step to the first, as the step-by-step reference does."""
    g = torch.Generator().manual_seed(3)
    x = (1.5 * torch.randn(2, 11, 3, generator=g, dtype=torch.float64)).requires_grad_()
    h0 = torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_()
    beta, threshold = torch.tensor([0.3, 0.8, 1.0], dtype=torch.float64), 0.7
    gs = torch.randn(2, 11, 3, generator=g, dtype=torch.float64)
    want_s, want_v = lif_loop(x, beta, threshold, initial_state=h0, reverse=reverse)
    want_grads = torch.autograd.grad((want_s * gs).sum() + want_v.sum(), (x, h0))
    xd, h0d = (t.detach().to(device).requires_grad_() for t in (x, h0))
    spikes, v = lif(xd, beta.to(device), threshold, h0d, reverse=reverse, backend=backend)
    grads = torch.autograd.grad((spikes * gs.to(device)).sum() + v.sum(), (xd, h0d))
    assert torch.equal(spikes.cpu(), want_s.detach())
    assert_close(v.cpu(), want_v, 1e-12, "final membrane")
    for got, want, name in zip(grads, want_grads, ("dx", "dh0")):
        assert_close(got.cpu(), want, 1e-10, name)
    # the reverse run is the forward run of the flipped sequence
    if reverse:
        forward = lif(xd.flip(1), beta.to(device), threshold, h0d, backend=backend)
        assert torch.equal(forward.output.flip(1), spikes) and torch.equal(forward.final_state, v)
    only_spikes = lif(xd, beta.to(device), threshold, h0d, reverse=reverse, backend=backend, output_final_state=False)
    assert only_spikes.final_state is None and torch.equal(only_spikes.output, spikes)
