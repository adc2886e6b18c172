"""s4d_lif equals s4d_scan followed by lif: values and gradients, both backends, against float64 loops."""
import pytest
import torch
from conftest import BACKENDS, TRITON_DEVICE, requires_triton
from helpers import assert_close, pre_reset_membrane

from spikessm.ops import s4d_lif
from spikessm.ops.s4d_lif.naive import s4d_lif_loop
from spikessm.ops.s4d_scan.naive import s4d_scan_loop
from spikessm.ops.common.surrogate import DEFAULT_ALPHA

# (backend, device, algorithm): every backend with its default algorithm, and the chunked Triton kernel.
PATHS = [pytest.param(*p.values, "auto", id=p.id, marks=p.marks) for p in BACKENDS] + [
    pytest.param("triton", TRITON_DEVICE, "chunked", id="triton-chunked",
                 marks=[requires_triton, pytest.mark.interpreter]),
]
NAMES = ("u", "A_bar", "B_bar", "C", "D", "ssm_state", "membrane", "beta", "threshold")


def make_inputs(Bsz, L, H, N, *, D=True, states=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.polar(0.5 + 0.5 * torch.rand(H, N, generator=g, dtype=torch.float64),
                    torch.rand(H, N, generator=g, dtype=torch.float64) * 6)
    Bm = torch.randn(H, N, generator=g, dtype=torch.complex128)
    C = torch.randn(H, N, generator=g, dtype=torch.complex128) / 2
    Dv = torch.randn(H, generator=g, dtype=torch.float64) if D else None
    u = torch.randn(Bsz, L, H, generator=g, dtype=torch.float64)
    h0 = torch.randn(Bsz, H, N, generator=g, dtype=torch.complex128) if states else None
    v0 = torch.randn(Bsz, H, generator=g, dtype=torch.float64) if states else None
    beta = torch.rand(H, generator=g, dtype=torch.float64) * 0.9
    threshold = 0.3 + torch.rand(H, generator=g, dtype=torch.float64)
    return [u, A, Bm, C, Dv, h0, v0, beta, threshold]


def reference(ins, *, reset, surrogate, detach_reset, reverse, alpha=None, fire_on_tie=False):
    """s4d_lif's naive reference (s4d_scan_loop then lif_loop), in float64 with autograd; returns spikes, ssm
    state, membrane state."""
    u, A, Bm, C, D, h0, v0, beta, th = ins
    alpha = DEFAULT_ALPHA[surrogate] if alpha is None else alpha
    spikes, (ssm_state, v) = s4d_lif_loop(u, A, Bm, C, D, (h0, v0), beta=beta, threshold=th, reset=reset,
                                          surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                                          reverse=reverse, fire_on_tie=fire_on_tie)
    return spikes, ssm_state, v


def check(ins64, *, backend, device, reset="subtract", surrogate="atan", detach_reset=False, reverse=False,
          double=True, tol=1e-11, u_dtype=None, tol_for=None, alpha=None, fire_on_tie=False, **kw):
    """u_dtype: u in another dtype than the state (16 bits); tol_for: {output name: tolerance} for the outputs
    that need another tolerance than tol (names as in the failure messages: "ssm state", "grad u", ...)."""
    tol_for = tol_for or {}
    cdt, rdt = (torch.complex128, torch.float64) if double else (torch.complex64, torch.float32)
    ins = [t.to(cdt if t.is_complex() else rdt).to(device) if t is not None else None for t in ins64]
    if u_dtype is not None:
        ins[0] = ins[0].to(u_dtype)
    ins = [t.requires_grad_() if t is not None else None for t in ins]
    u, A, Bm, C, D, h0, v0, beta, th = ins
    initial = (h0, v0) if (h0 is not None or v0 is not None) else None
    spikes, (ssm_state, v), _ = s4d_lif(u, A, Bm, C, D, beta=beta, threshold=th, reset=reset, surrogate=surrogate,
                                        initial_state=initial, detach_reset=detach_reset, reverse=reverse,
                                        alpha=alpha, fire_on_tie=fire_on_tie, backend=backend, **kw)
    refs = [t.detach().cpu().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_()
            if t is not None else None for t in ins]
    spikes_r, ssm_r, v_r = reference(refs, reset=reset, surrogate=surrogate, detach_reset=detach_reset,
                                     reverse=reverse, alpha=alpha, fire_on_tie=fire_on_tie)
    assert torch.equal(spikes.cpu().double(), spikes_r.detach())
    assert_close(ssm_state, ssm_r, tol_for.get("ssm state", tol), "ssm state")
    assert_close(v, v_r, tol_for.get("membrane state", tol), "membrane state")
    g = torch.Generator().manual_seed(1)
    gs = torch.randn(spikes_r.shape, generator=g, dtype=torch.float64)
    gT = torch.randn(ssm_r.shape, generator=g, dtype=torch.complex128)
    gv = torch.randn(v_r.shape, generator=g, dtype=torch.float64)
    present = [(n, t, r) for n, t, r in zip(NAMES, ins, refs) if t is not None]
    grads = torch.autograd.grad((spikes, ssm_state, v), [t for _, t, _ in present],
                                (gs.to(spikes.dtype).to(device), gT.to(cdt).to(device), gv.to(rdt).to(device)))
    gs_seen = gs.to(spikes.dtype).double()  # the spikes' gradient as the op received it (rounded to 16 bits)
    grads_r = torch.autograd.grad((spikes_r, ssm_r, v_r), [r for _, _, r in present], (gs_seen, gT, gv))
    for (name, _, _), got, want in zip(present, grads, grads_r):
        assert_close(got, want, tol_for.get(f"grad {name}", tol), f"grad {name}")


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("reset,surrogate,detach_reset,reverse", [
    ("subtract", "atan", False, False), ("subtract", "fast_sigmoid", True, True), ("zero", "triangle", False, True),
    ("zero", "sigmoid", True, False), ("none", "rectangle", False, False), ("none", "atan", False, True),
    ("subtract", "leaky", False, True), ("zero", "leaky", True, False),
    ("subtract_after_decay", "atan", False, False), ("subtract_after_decay", "sigmoid", True, True),
    ("subtract_after_decay", "leaky", False, True),
])
def test_matches_reference(backend, device, algorithm, reset, surrogate, detach_reset, reverse):
    ins = make_inputs(2, 19, 3, 4, seed=len(reset) + len(surrogate))
    check(ins, backend=backend, device=device, algorithm=algorithm, reset=reset, surrogate=surrogate,
          detach_reset=detach_reset, reverse=reverse)


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("surrogate", ["atan", "rectangle"])
def test_non_default_alpha(backend, device, algorithm, surrogate):
    """alpha reaches the backward in the state's precision (1.7 x default is not a float32 number)."""
    check(make_inputs(2, 15, 3, 4, seed=8), backend=backend, device=device, algorithm=algorithm,
          surrogate=surrogate, alpha=1.7 * DEFAULT_ALPHA[surrogate])


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("D,states", [(False, False), (True, False), (False, True)])
def test_optional_inputs(backend, device, algorithm, D, states):
    check(make_inputs(1, 10, 2, 3, D=D, states=states, seed=7), backend=backend, device=device, algorithm=algorithm)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("L", [7, 8, 9, 17])
def test_triton_tile_boundaries(L):
    # Outputs are gathered into tiles of T = 8 steps (spikessm.kernels.s4d_scan.T)
    check(make_inputs(1, L, 2, 3, seed=L), backend="triton", device=TRITON_DEVICE, reverse=L % 2 == 0)


@requires_triton
@pytest.mark.interpreter
def test_triton_several_channel_blocks():
    # More channels than one program's block (the last partly masked); N not a power of two.
    check(make_inputs(2, 6, 9, 33, seed=5), backend="triton", device=TRITON_DEVICE, reverse=True)


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
def test_float32(backend, device, algorithm):
    check(make_inputs(2, 40, 3, 5, seed=3), backend=backend, device=device, algorithm=algorithm, double=False,
          tol=2e-5)


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("u_dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(backend, device, algorithm, u_dtype):
    """u and the spikes in 16 bits, the states in float32; against the float64 reference on the rounded u. Only
    u's gradient is in 16 bits: every other output keeps float32 tolerance."""
    check(make_inputs(2, 23, 3, 5, seed=6), backend=backend, device=device, algorithm=algorithm, double=False,
          tol=2e-5, u_dtype=u_dtype, tol_for={"grad u": 1e-2})


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("algorithm", ["sequential", "chunked"])
def test_triton_agrees_with_torch(algorithm):
    ins = make_inputs(2, 33, 4, 6, seed=9)
    outs = {}
    for backend, device, alg in (("torch", "cpu", "auto"), ("triton", TRITON_DEVICE, algorithm)):
        args = [t.to(torch.complex64 if t.is_complex() else torch.float32).to(device).requires_grad_()
                for t in ins]
        u, A, Bm, C, D, h0, v0, beta, th = args
        spikes, (s, v), mem = s4d_lif(u, A, Bm, C, D, beta=beta, threshold=th, initial_state=(h0, v0),
                                      backend=backend, algorithm=alg, output_membrane=True)
        grads = torch.autograd.grad((spikes, s, v), args, (torch.ones_like(spikes), torch.ones_like(s),
                                                          torch.ones_like(v)))
        outs[backend] = [t.detach().cpu() for t in (spikes, s, v, mem, *grads)]
    assert torch.equal(outs["triton"][0], outs["torch"][0])
    for name, got, want in zip(("ssm", "v", "membrane") + NAMES, outs["triton"][1:], outs["torch"][1:]):
        assert_close(got, want, 1e-5, name)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("L,reverse,reset", [(63, False, "subtract"), (64, True, "zero"),
                                             (65, False, "subtract_after_decay"), (131, True, "subtract_after_decay")])
def test_triton_chunked_boundaries(L, reverse, reset):
    """The chunked kernel's neurons walk 64-step tiles: a membrane carried across chunk boundaries, and a last
    chunk that is full or cut short (its steps past L must leave the membrane alone)."""
    from spikessm.kernels.s4d_scan.chunked import dot_chunk_length

    assert dot_chunk_length(L) == 64
    check(make_inputs(2, L, 2, 3, seed=L), backend="triton", device=TRITON_DEVICE, algorithm="chunked",
          reset=reset, reverse=reverse)


@requires_triton
@pytest.mark.interpreter
def test_triton_chunked_several_sequence_blocks(monkeypatch):
    # More sequences than one program's block (the last block partly masked), 16-step chunks over 37 steps.
    from spikessm.kernels.s4d_scan import chunked as kernel

    monkeypatch.setattr(kernel, "CHUNK", 16)
    monkeypatch.setattr(kernel, "MAX_BLOCK_B", 16)
    check(make_inputs(33, 37, 2, 3, seed=14), backend="triton", device=TRITON_DEVICE, algorithm="chunked",
          surrogate="leaky", reverse=True)


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("reset", ["subtract", "subtract_after_decay"])
def test_streaming_in_pieces(backend, device, algorithm, reset):
    u, A, Bm, C, D, _, _, beta, th = (t.to(torch.complex64 if t.is_complex() else torch.float32).to(device)
                                      if t is not None else None for t in make_inputs(2, 30, 3, 4, seed=11))
    kw = dict(beta=beta, threshold=th, reset=reset, backend=backend, algorithm=algorithm)
    spikes_full, (s_full, v_full), _ = s4d_lif(u, A, Bm, C, D, **kw)
    assert 0 < spikes_full.mean() < 1
    state, pieces = None, []
    for lo, hi in ((0, 5), (5, 6), (6, 30)):
        spikes, state, _ = s4d_lif(u[:, lo:hi], A, Bm, C, D, initial_state=state, **kw)
        pieces.append(spikes)
    assert torch.equal(torch.cat(pieces, 1), spikes_full)
    assert_close(state[0], s_full, 1e-5, "ssm state")
    assert_close(state[1], v_full, 1e-5, "membrane")


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("reset,reverse", [("subtract", False), ("zero", True), ("subtract_after_decay", True)])
def test_membrane_output_is_the_pre_reset_potential(backend, device, algorithm, reset, reverse):
    """output_membrane gives the membrane before each reset, against the float64 reference."""
    ins64 = make_inputs(2, 21, 2, 3, seed=12)
    ins = [(t.to(torch.complex64) if t.is_complex() else t.float()).to(device) for t in ins64]
    u, A, Bm, C, D, h0, v0, beta, th = ins
    spikes, _, membrane = s4d_lif(u, A, Bm, C, D, beta=beta, threshold=th, reset=reset, initial_state=(h0, v0),
                                  reverse=reverse, output_membrane=True, backend=backend, algorithm=algorithm)
    u64, A64, B64, C64, D64, h064, v064, beta64, th64 = ins64
    y, _ = s4d_scan_loop(u64, A64, B64, C64, D64, h064, reverse=reverse)
    steps = y.flip(1) if reverse else y  # the neurons walk in processing order
    expected = pre_reset_membrane(steps, beta64, th64, v064, reset)
    expected = expected.flip(1) if reverse else expected
    assert 0 < spikes.sum() < spikes.numel() and bool(((expected - th64).abs() > 1e-4).all())
    assert_close(membrane, expected, 2e-5, "membrane")
    assert torch.equal(spikes.cpu(), (membrane.cpu() > th.cpu()).float())
    assert not membrane.requires_grad


@requires_triton
@pytest.mark.interpreter
def test_opcheck_triton():
    d = TRITON_DEVICE
    ins = [t.to(torch.complex64 if t.is_complex() else torch.float32).to(d).requires_grad_()
           for t in make_inputs(2, 9, 2, 3, seed=13)]
    torch.library.opcheck(torch.ops.spikessm.s4d_lif_triton_sequential_fwd.default,
                          (*ins, "zero", "atan", 2.0, False, True, False, True),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_errors():
    u, A, Bm, C, D, h0, v0, beta, th = [t.to(torch.complex64 if t.is_complex() else torch.float32)
                                        for t in make_inputs(2, 5, 3, 4)]
    with pytest.raises(TypeError, match="s4d_lif: fire_on_tie must be True or False"):
        s4d_lif(u, A, Bm, C, D, beta=beta, threshold=th, fire_on_tie="yes")
    with pytest.raises(ValueError, match="s4d_lif: reset must be one of"):
        s4d_lif(u, A, Bm, C, D, beta=beta, threshold=th, reset="soft")
    with pytest.raises(ValueError, match="s4d_lif: initial membrane must have shape"):
        s4d_lif(u, A, Bm, C, D, beta=beta, threshold=th, initial_state=(None, v0[:, :2]))
    with pytest.raises(ValueError, match=r"s4d_lif: initial SSM state must have shape \(batch, channels, state\)"):
        s4d_lif(u, A, Bm, C, D, beta=beta, threshold=th, initial_state=(h0[:, :2], None))
    with pytest.raises(ValueError, match="s4d_lif: beta must have shape"):
        s4d_lif(u, A, Bm, C, D, beta=beta[:2], threshold=th)
    with pytest.raises(ValueError, match="s4d_lif: algorithm must be one of"):
        s4d_lif(u, A, Bm, C, D, beta=beta, threshold=th, algorithm="fft")
    with pytest.raises(ValueError, match="s4d_lif: algorithm='sequential' is a Triton kernel"):
        s4d_lif(u, A, Bm, C, D, beta=beta, threshold=th, backend="torch", algorithm="sequential")


def tie_inputs(Bsz, L, H, *, seed=0):
    """An S4D layer whose output is the integer input itself (A_bar = 0, B_bar = C = 1, one state, D = 0; u counts
    events) into neurons with beta = 0.5 and integer thresholds: every membrane is a short binary fraction, exact,
    and it lands on the threshold at many steps."""
    g = torch.Generator().manual_seed(seed)
    c = dict(dtype=torch.complex128)
    A, Bm, C = torch.zeros(H, 1, **c), torch.ones(H, 1, **c), torch.ones(H, 1, **c)
    D = torch.zeros(H, dtype=torch.float64)
    u = torch.randint(0, 3, (Bsz, L, H), generator=g).double()
    h0 = torch.randint(0, 2, (Bsz, H, 1), generator=g).to(torch.complex128)
    v0 = torch.randint(0, 2, (Bsz, H), generator=g).double()
    beta = torch.full((H,), 0.5, dtype=torch.float64)
    threshold = torch.randint(1, 3, (H,), generator=g).double()
    return [u, A, Bm, C, D, h0, v0, beta, threshold]


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("Bsz,L,H", [(1, 9, 1), (2, 21, 3)])
@pytest.mark.parametrize("reset,surrogate,reverse", [("subtract", "atan", False), ("zero", "leaky", True),
                                                     ("none", "sigmoid", False),
                                                     ("subtract_after_decay", "leaky", False)])
def test_fire_on_tie_matches_reference(backend, device, algorithm, Bsz, L, H, reset, surrogate, reverse):
    """fire_on_tie on every path, on inputs full of ties: the spikes exactly, states and gradients as the float64
    reference (which `check` compares); the tie rule changes the spikes here, so the option is seen."""
    ins = tie_inputs(Bsz, L, H, seed=L + H)
    spikes_tie = reference(ins, reset=reset, surrogate=surrogate, detach_reset=False, reverse=reverse,
                           fire_on_tie=True)[0]
    spikes_gt = reference(ins, reset=reset, surrogate=surrogate, detach_reset=False, reverse=reverse)[0]
    assert not torch.equal(spikes_tie, spikes_gt), "the inputs have no tie: the test would not see the rule"
    check(ins, backend=backend, device=device, reset=reset, surrogate=surrogate, reverse=reverse, tol=1e-12,
          algorithm=algorithm, fire_on_tie=True)


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
def test_fire_on_tie_streaming_in_pieces(backend, device, algorithm):
    u, A, Bm, C, D, _, _, beta, th = [t.to(device) for t in tie_inputs(2, 19, 2, seed=4)]
    kw = dict(beta=beta, threshold=th, backend=backend, algorithm=algorithm, fire_on_tie=True)
    spikes_full, (s_full, v_full), _ = s4d_lif(u, A, Bm, C, D, **kw)
    state, pieces = None, []
    for lo, hi in ((0, 1), (1, 8), (8, 19)):
        spikes, state, _ = s4d_lif(u[:, lo:hi], A, Bm, C, D, initial_state=state, **kw)
        pieces.append(spikes)
    assert torch.equal(torch.cat(pieces, 1), spikes_full)
    assert_close(state[0], s_full, 1e-14, "ssm state")
    assert_close(state[1], v_full, 1e-14, "membrane")
