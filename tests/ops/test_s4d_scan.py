"""s4d_scan against the float64 step-by-step reference: values, final state and gradients of every input."""
import pytest
import torch
from conftest import BACKENDS, TRITON_DEVICE, TRITON_LONG_L, requires_triton
from helpers import assert_close, long_memory_magnitudes

from spikessm.ops import s4d_scan
from spikessm.ops.s4d_scan.naive import s4d_scan_loop
from spikessm.ops.s4d_scan import torch_chunked as s4d_chunked
from spikessm.ops.s4d_scan.torch_chunked import CHUNK, powers

TOL32 = 2e-5


def make_inputs(B, L, H, N, *, D=True, h0=False, magnitude="mixed", seed=0):
    """float64/complex128 (u, A_bar, B_bar, C, D, initial_state). magnitude picks |A_bar|: random in [0.995, 1)
    ("near_one"), [0, 0.2) ("small") or [0.3, 1) ("mixed"); "long_memory" gives each channel's states
    helpers.long_memory_magnitudes."""
    g = torch.Generator().manual_seed(seed)
    if magnitude == "long_memory":
        mag = long_memory_magnitudes(N).expand(H, N)
    else:
        lo, hi = {"near_one": (0.995, 1.0), "small": (0.0, 0.2), "mixed": (0.3, 1.0)}[magnitude]
        mag = lo + (hi - lo) * torch.rand(H, N, generator=g, dtype=torch.float64)
    A = torch.polar(mag, torch.rand(H, N, generator=g, dtype=torch.float64) * 6.2)
    Bm = torch.randn(H, N, generator=g, dtype=torch.complex128)
    C = torch.randn(H, N, generator=g, dtype=torch.complex128) / N ** 0.5
    Dv = torch.randn(H, generator=g, dtype=torch.float64) if D else None
    u = torch.randn(B, L, H, generator=g, dtype=torch.float64)
    h = torch.randn(B, H, N, generator=g, dtype=torch.complex128) if h0 else None
    return u, A, Bm, C, Dv, h


NAMES = ("u", "A_bar", "B_bar", "C", "D", "initial_state")

# (backend, device, algorithm): every backend with its default algorithm, and the chunked Triton kernel.
PATHS = [pytest.param(*p.values, "auto", id=p.id, marks=p.marks) for p in BACKENDS] + [
    pytest.param("triton", TRITON_DEVICE, "chunked", id="triton-chunked",
                 marks=[requires_triton, pytest.mark.interpreter]),
]


def check_against_reference(inputs64, *, backend, device, reverse, tol=TOL32, u_dtype=torch.float32,
                            double=False, tol_for=None, **kw):
    """Run s4d_scan (float32/complex64, or float64 when double) and compare values and gradients.

    tol_for: {output name: tolerance} for the outputs that need another tolerance than tol (names as in the
    failure messages: "y", "final_state", "grad u", ...)."""
    tol_for = tol_for or {}
    cdt = torch.complex128 if double else torch.complex64
    rdt = torch.float64 if double else torch.float32
    dtypes = (torch.float64 if double else u_dtype, cdt, cdt, cdt, rdt, cdt)
    ins = [t.to(dt).to(device).requires_grad_() if t is not None else None for t, dt in zip(inputs64, dtypes)]
    y, hT = s4d_scan(*ins, reverse=reverse, backend=backend, **kw)
    assert y.dtype == ins[0].dtype and y.shape == ins[0].shape
    assert hT.dtype == cdt and hT.shape == (ins[0].shape[0], *ins[1].shape)

    refs = [t.detach().cpu().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_()
            if t is not None else None for t in ins]
    y_r, hT_r = s4d_scan_loop(*refs, reverse=reverse)
    assert_close(y, y_r, tol_for.get("y", tol), "y")
    assert_close(hT, hT_r, tol_for.get("final_state", tol), "final_state")

    g = torch.Generator().manual_seed(1)
    gy = torch.randn(y_r.shape, generator=g, dtype=torch.float64).to(y.dtype)
    gT = torch.randn(hT_r.shape, generator=g, dtype=torch.complex128)
    present = [(n, t, r) for n, t, r in zip(NAMES, ins, refs) if t is not None]
    grads = torch.autograd.grad((y, hT), [t for _, t, _ in present], (gy.to(device), gT.to(cdt).to(device)))
    ref_grads = torch.autograd.grad((y_r, hT_r), [r for _, _, r in present], (gy.to(torch.float64), gT))
    for (name, _, _), got, ref in zip(present, grads, ref_grads):
        assert_close(got, ref, tol_for.get(f"grad {name}", tol), f"grad {name}")


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("D,h0", [(True, False), (False, True), (True, True)])
def test_matches_reference(backend, device, algorithm, reverse, D, h0):
    inputs = make_inputs(2, 37, 3, 5, D=D, h0=h0, seed=11)
    check_against_reference(inputs, backend=backend, device=device, algorithm=algorithm, reverse=reverse)


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("magnitude", ["near_one", "small"])
def test_decay_magnitudes(backend, device, algorithm, magnitude):
    inputs = make_inputs(1, 60, 2, 4, h0=True, magnitude=magnitude, seed=12)
    check_against_reference(inputs, backend=backend, device=device, algorithm=algorithm, reverse=False)


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("B,L,H,N", [(1, 1, 1, 1), (1, 1, 3, 2), (3, 2, 1, 1), (1, 9, 1, 7), (2, 5, 3, 65)])
def test_awkward_sizes(backend, device, algorithm, B, L, H, N):
    inputs = make_inputs(B, L, H, N, h0=True, seed=B * 1000 + L * 10 + N)
    check_against_reference(inputs, backend=backend, device=device, algorithm=algorithm, reverse=False)


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
def test_double_precision(backend, device, algorithm):
    inputs = make_inputs(2, 19, 2, 3, h0=True, seed=13)
    check_against_reference(inputs, backend=backend, device=device, algorithm=algorithm, reverse=True, double=True,
                            tol=1e-11)


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
@pytest.mark.parametrize("u_dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(backend, device, algorithm, u_dtype):
    # u, y and u's gradient are in 16 bits; the states, the final state and every other gradient are float32
    # (the backward recomputes from u as the op saw it), so they keep float32 tolerance.
    inputs = make_inputs(2, 21, 3, 4, h0=True, seed=14)
    check_against_reference(inputs, backend=backend, device=device, algorithm=algorithm, reverse=False,
                            u_dtype=u_dtype, tol_for={"y": 1e-2, "grad u": 1e-2})


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("steps_past_tile", [-1, 0, 1, 15, 16, 17])
def test_triton_tile_boundaries(steps_past_tile):
    # The kernels gather outputs into tiles of T steps; the last tile may be partial, and the backward's walk
    # starts inside it.
    from spikessm.kernels.s4d_scan.sequential import T

    L = T + steps_past_tile
    inputs = make_inputs(1, L, 2, 3, h0=True, seed=L)
    check_against_reference(inputs, backend="triton", device=TRITON_DEVICE, reverse=L % 2 == 0)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("B,H,N", [(1, 70, 2), (2, 9, 33)])
def test_triton_several_channel_blocks(B, H, N):
    # More channels than one program's block (the last block partly masked), and N not a power of two.
    from spikessm.kernels.s4d_scan.sequential import launch_config

    assert launch_config(B, H, N)[0] < H
    inputs = make_inputs(B, 5, H, N, h0=True, seed=H)
    check_against_reference(inputs, backend="triton", device=TRITON_DEVICE, reverse=False)


@requires_triton
def test_launch_config_shapes():
    from triton import next_power_of_2

    from spikessm.kernels.s4d_scan.sequential import (MAX_BLOCK_H, MIN_STATES_PER_THREAD, STATES_PER_THREAD,
                                                      launch_config)

    for B, H, N in [(32, 256, 64), (1, 128, 64), (8, 64, 16), (32, 256, 4), (1, 3, 5), (4, 512, 256)]:
        for per_thread in (STATES_PER_THREAD, STATES_PER_THREAD // 4):
            block_h, block_n, warps = launch_config(B, H, N, per_thread)
            assert block_n >= N and block_n & (block_n - 1) == 0 and block_h & (block_h - 1) == 0
            assert block_h <= min(MAX_BLOCK_H, next_power_of_2(H))
            states = block_h * block_n / (32 * warps)
            assert states <= per_thread and (states >= MIN_STATES_PER_THREAD or block_h == next_power_of_2(H)), \
                (B, H, N, per_thread, block_h, block_n, warps)


def test_torch_long_sequence():
    inputs = make_inputs(1, 65536, 1, 5, h0=True, magnitude="long_memory", seed=15)
    check_against_reference(inputs, backend="torch", device="cpu", reverse=False, tol=1e-4)


@requires_triton
@pytest.mark.interpreter
def test_triton_long_sequence():
    inputs = make_inputs(1, TRITON_LONG_L, 1, 5, h0=True, magnitude="long_memory", seed=16)
    check_against_reference(inputs, backend="triton", device=TRITON_DEVICE, reverse=True, tol=1e-4)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("reverse", [False, True])
def test_triton_agrees_with_torch(reverse):
    """The backend switch changes results by rounding only: relative difference <= 1e-5 in float32."""
    inputs = make_inputs(2, 41, 3, 6, h0=True, seed=17)
    dtypes = (torch.float32, torch.complex64, torch.complex64, torch.complex64, torch.float32, torch.complex64)
    outs = {}
    for backend, device in (("torch", "cpu"), ("triton", TRITON_DEVICE)):
        ins = [t.to(dt).to(device).requires_grad_() for t, dt in zip(inputs, dtypes)]
        y, hT = s4d_scan(*ins, backend=backend, reverse=reverse)
        grads = torch.autograd.grad((y, hT), ins, (torch.ones_like(y), torch.ones_like(hT)))
        outs[backend] = [t.detach().cpu() for t in (y, hT, *grads)]
    names = ("y", "final_state") + tuple(f"grad {n}" for n in NAMES)
    for name, t, r in zip(names, outs["triton"], outs["torch"]):
        assert_close(t, r, 1e-5, name)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("L", [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 3])
@pytest.mark.parametrize("reverse", [False, True])
def test_triton_chunked_boundaries(L, reverse):
    """The chunked kernel's last chunk is full or cut short (its own operators, zero-padded inputs after it)."""
    from spikessm.kernels.s4d_scan.chunked import dot_chunk_length

    assert dot_chunk_length(L) == CHUNK
    inputs = make_inputs(2, L, 3, 4, h0=True, seed=L + 2000)
    check_against_reference(inputs, backend="triton", device=TRITON_DEVICE, algorithm="chunked", reverse=reverse,
                            double=True, tol=1e-11)


@requires_triton
@pytest.mark.interpreter
def test_triton_chunked_several_sequence_blocks_and_short_chunks(monkeypatch):
    # More sequences than one program's block (the last block partly masked), 16-step chunks over 37 steps.
    from spikessm.kernels.s4d_scan import chunked as kernel

    monkeypatch.setattr(kernel, "CHUNK", 16)
    assert kernel.launch_config(33, 5)[1] < 33
    inputs = make_inputs(33, 37, 2, 5, h0=True, seed=24)
    check_against_reference(inputs, backend="triton", device=TRITON_DEVICE, algorithm="chunked", reverse=False)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_triton_chunked(monkeypatch, reverse):
    # The kernels' backward and the host's operator gradients against finite differences, in float64, over
    # two whole 16-step chunks and a short one. fast_mode checks random projections of the Jacobian (a few
    # interpreted kernel calls instead of two per input element).
    from spikessm.kernels.s4d_scan import chunked as kernel

    monkeypatch.setattr(kernel, "CHUNK", 16)
    inputs = [t.to(TRITON_DEVICE).requires_grad_() for t in make_inputs(1, 35, 1, 2, h0=True, seed=25)]
    assert torch.autograd.gradcheck(
        lambda *t: s4d_scan(*t, reverse=reverse, backend="triton", algorithm="chunked"), tuple(inputs),
        fast_mode=True)


@requires_triton
@pytest.mark.interpreter
def test_triton_algorithms_agree():
    """The chunked and sequential kernels differ by rounding only: relative difference <= 1e-5 in float32."""
    inputs = make_inputs(2, 150, 3, 6, h0=True, seed=26)
    dtypes = (torch.float32, torch.complex64, torch.complex64, torch.complex64, torch.float32, torch.complex64)
    outs = {}
    for algorithm in ("sequential", "chunked"):
        ins = [t.to(dt).to(TRITON_DEVICE).requires_grad_() for t, dt in zip(inputs, dtypes)]
        y, hT = s4d_scan(*ins, backend="triton", algorithm=algorithm)
        grads = torch.autograd.grad((y, hT), ins, (torch.ones_like(y), torch.ones_like(hT)))
        outs[algorithm] = [t.detach().cpu() for t in (y, hT, *grads)]
    names = ("y", "final_state") + tuple(f"grad {n}" for n in NAMES)
    for name, t, r in zip(names, outs["chunked"], outs["sequential"]):
        assert_close(t, r, 1e-5, name)


def test_algorithm_errors():
    u, A, Bm, C, D, h = (t.to(torch.complex64 if t.is_complex() else torch.float32)
                         for t in make_inputs(1, 4, 1, 2, h0=True, seed=27))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        s4d_scan(u, A, Bm, C, algorithm="fft")
    with pytest.raises(ValueError, match="'sequential' is a Triton kernel"):
        s4d_scan(u, A, Bm, C, backend="torch", algorithm="sequential")


@requires_triton
@pytest.mark.interpreter
def test_triton_inference_matches_training_forward():
    # Gradients enabled or not, the forward is the same kernel call; the outputs must not change.
    inputs = make_inputs(1, 20, 2, 3, h0=True, seed=18)
    dtypes = (torch.float32, torch.complex64, torch.complex64, torch.complex64, torch.float32, torch.complex64)
    ins = [t.to(dt).to(TRITON_DEVICE) for t, dt in zip(inputs, dtypes)]
    with torch.no_grad():
        y0, h0 = s4d_scan(*ins, backend="triton")
    y1, h1 = s4d_scan(ins[0], ins[1].requires_grad_(), *ins[2:], backend="triton")
    assert torch.equal(y0, y1.detach()) and torch.equal(h0, h1.detach())


@pytest.mark.parametrize("L", [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 3])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("h0", [False, True])
def test_torch_chunk_boundaries(L, reverse, h0):
    """The PyTorch path works in CHUNK-step chunks: lengths below, at and above one and two chunks, where the
    last chunk is full or cut short (its final state then comes from the chunk before it)."""
    inputs = make_inputs(2, L, 3, 4, h0=h0, seed=L + 1000 * h0)
    check_against_reference(inputs, backend="torch", device="cpu", reverse=reverse, double=True, tol=1e-11)


def test_gradcheck_torch_path(monkeypatch):
    monkeypatch.setattr(s4d_chunked, "CHUNK", 4)  # 10 steps: two whole chunks and a short one
    u, A, Bm, C, D, h = (t.requires_grad_() for t in make_inputs(2, 10, 2, 3, h0=True, seed=19))
    for reverse in (False, True):
        assert torch.autograd.gradcheck(
            lambda *t, reverse=reverse: s4d_scan(*t, reverse=reverse, backend="torch"), (u, A, Bm, C, D, h))
    assert torch.autograd.gradcheck(lambda *t: s4d_scan(*t, backend="torch"), (u, A, Bm, C))


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_triton_path(reverse):
    # The kernels' backward against finite differences of their own forward, in float64.
    inputs = [t.to(TRITON_DEVICE).requires_grad_() for t in make_inputs(1, 6, 1, 2, h0=True, seed=22)]
    assert torch.autograd.gradcheck(
        lambda *t: s4d_scan(*t, reverse=reverse, backend="triton"), tuple(inputs))


def test_powers_accuracy_and_zero():
    A = torch.tensor([[0.0 + 0j, 1.0 + 0j, 0.5j, -0.999 + 0.01j]], dtype=torch.complex128)
    for n in (1, 2, 3, 37, 1000):
        P = powers(A, n)
        assert P.shape == (1, n, 4)
        k = torch.arange(n, dtype=torch.float64)
        assert torch.equal(P[0, :, 0], (k == 0).to(torch.complex128))  # 0^0 = 1, then zeros
        assert torch.equal(P[0, :, 1], torch.ones(n, dtype=torch.complex128))
        # Double precision tables accumulate ~k ulps.
        assert_close(P[0, :, 3], torch.stack([A[0, 3] ** int(i) for i in k]), 4 * n * 2.2e-16, "powers")


def test_powers_single_precision_at_any_length():
    # complex64 powers are built from double-precision tables: a few float32 ulps even at k = 65535.
    g = torch.Generator().manual_seed(20)
    A = torch.polar(0.9999 + 1e-4 * torch.rand(3, 5, generator=g, dtype=torch.float64),
                    torch.rand(3, 5, generator=g, dtype=torch.float64) * 3).to(torch.complex64)
    n = 65536
    k = torch.arange(n, dtype=torch.float64)
    exact = torch.exp(k[None, :, None] * torch.log(A.to(torch.complex128))[:, None, :])
    got = powers(A, n).to(torch.complex128)
    assert ((got - exact).abs() / exact.abs()).max() < 1e-6


@pytest.mark.parametrize("backend,device,algorithm", PATHS)
def test_without_final_state(backend, device, algorithm):
    u, A, Bm, C, D, h = (t.to(torch.complex64 if t.is_complex() else torch.float32).to(device).requires_grad_()
                         for t in make_inputs(2, 13, 3, 4, h0=True, seed=21))
    y, state = s4d_scan(u, A, Bm, C, D, h, backend=backend, algorithm=algorithm, output_final_state=False)
    assert state is None
    y_full, _ = s4d_scan(u, A, Bm, C, D, h, backend=backend, algorithm=algorithm)
    assert_close(y, y_full, 1e-6, "y")
    grads = torch.autograd.grad(y.sum(), (u, A, Bm, C, D, h))
    grads_full = torch.autograd.grad(y_full.sum(), (u, A, Bm, C, D, h))
    for g, r in zip(grads, grads_full):
        assert_close(g, r, 1e-6, "grad")


@pytest.mark.parametrize("backend,algorithm", [
    ("torch", "auto"),
    pytest.param("triton", "chunked", marks=[requires_triton, pytest.mark.interpreter]),
])
def test_chunked_paths_keep_float32_under_autocast(backend, algorithm):
    """The chunked products (and the operators' construction) must not drop to bfloat16 inside a model run
    under autocast (where torch.bmm would): the op's precision is its inputs' precision."""
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    ins = [(t.to(torch.complex64) if t.is_complex() else t.float()).to(device).requires_grad_()
           for t in make_inputs(2, 150, 3, 4, h0=True, seed=23)]
    results = []
    for autocast in (False, True):
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
            y, hT = s4d_scan(*ins, backend=backend, algorithm=algorithm)
        # the backward outside the autocast region, as PyTorch's autocast guide has it
        grads = torch.autograd.grad((y, hT), ins, (torch.ones_like(y), torch.ones_like(hT)))
        results.append((y, hT, *grads))
    want, got = results
    assert got[0].dtype == torch.float32
    for name, g, w in zip(("y", "final_state") + tuple(f"grad {n}" for n in NAMES), got, want):
        assert_close(g, w, 1e-6, name)
