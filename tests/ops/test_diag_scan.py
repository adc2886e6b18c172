"""diag_scan against the float64 step-by-step reference: values, final state and gradients, both backends."""
import pytest
import torch
from conftest import BACKENDS, TRITON_DEVICE, TRITON_LONG_L, requires_triton
from helpers import assert_close, long_memory_magnitudes

from spikessm.ops import diag_scan
from spikessm.ops.diag_scan.torch_chunked import sqrt_chunk_length
from spikessm.ops.diag_scan.naive import diag_scan_loop

# Normwise relative tolerances against float64: float32 state vs float64 state.
TOL = {torch.float32: 2e-5, torch.complex64: 2e-5, torch.float64: 1e-12, torch.complex128: 1e-12}


def make_inputs(B, L, P, dtype, *, time_varying, h0, magnitude="mixed", b_dtype=None, seed=0):
    """Random (a, b, initial_state) in float64/complex128 precision, cast to `dtype` by the caller.

    magnitude: "near_one" puts |a| in [0.99, 1), "small" in [0, 0.2), "mixed" in [0, 1); "long_memory" gives
    the channels helpers.long_memory_magnitudes."""
    g = torch.Generator().manual_seed(seed)
    shape = (B, L, P) if time_varying else (P,)
    if magnitude == "long_memory":
        mag = long_memory_magnitudes(P).expand(shape)
    else:
        lo, hi = {"near_one": (0.99, 1.0), "small": (0.0, 0.2), "mixed": (0.0, 1.0)}[magnitude]
        mag = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    if dtype.is_complex:
        phase = torch.rand(shape, generator=g, dtype=torch.float64) * 6.2
        a = torch.polar(mag, phase)
        b = torch.randn(B, L, P, generator=g, dtype=torch.complex128)
        h = torch.randn(B, P, generator=g, dtype=torch.complex128) if h0 else None
    else:
        sign = torch.where(torch.rand(shape, generator=g) < 0.2, -1.0, 1.0).to(torch.float64)
        a = mag * sign
        b = torch.randn(B, L, P, generator=g, dtype=torch.float64)
        h = torch.randn(B, P, generator=g, dtype=torch.float64) if h0 else None
    return a, b, h


def check_against_reference(a64, b64, h64, *, dtype, backend, device, reverse, tol=None, b_dtype=None,
                            tol_for=None, **kw):
    """Run diag_scan in `dtype` on `device` and compare values and all gradients with the float64 loop.

    tol_for: {output name: tolerance} for the outputs that need another tolerance than tol (names as in the
    failure messages: "x", "final_state", "grad a", ...)."""
    tol = tol or TOL[dtype]
    tol_for = tol_for or {}
    b_dtype = b_dtype or dtype
    a = a64.to(dtype).to(device).requires_grad_()
    b = b64.to(b_dtype).to(device).requires_grad_()
    h = h64.to(dtype).to(device).requires_grad_() if h64 is not None else None
    x, hT = diag_scan(a, b, h, reverse=reverse, backend=backend, **kw)
    assert x.dtype == b_dtype and hT.dtype == dtype
    assert x.shape == b.shape and hT.shape == (b.shape[0], b.shape[2])

    # The reference sees exactly the rounded inputs the op saw.
    a_r = a.detach().cpu().to(a64.dtype).requires_grad_()
    b_r = b.detach().cpu().to(a64.dtype if a64.is_complex() else torch.float64).requires_grad_()
    h_r = h.detach().cpu().to(a64.dtype).requires_grad_() if h is not None else None
    x_r, hT_r = diag_scan_loop(a_r, b_r, h_r, reverse=reverse)
    assert_close(x, x_r, tol_for.get("x", tol), "x")
    assert_close(hT, hT_r, tol_for.get("final_state", tol), "final_state")

    g = torch.Generator().manual_seed(1)
    gx = torch.randn(x_r.shape, generator=g, dtype=x_r.dtype)
    gT = torch.randn(hT_r.shape, generator=g, dtype=hT_r.dtype)
    inputs = [t for t in (a, b, h) if t is not None]
    grads = torch.autograd.grad((x, hT), inputs, (gx.to(x.dtype).to(device), gT.to(hT.dtype).to(device)))
    ref_inputs = [t for t in (a_r, b_r, h_r) if t is not None]
    gx_seen = gx.to(x.dtype).to(x_r.dtype)  # the rounded upstream gradient the op received
    ref_grads = torch.autograd.grad((x_r, hT_r), ref_inputs, (gx_seen, gT))
    for name, got, ref in zip(("a", "b", "initial_state"), grads, ref_grads):
        assert_close(got, ref, tol_for.get(f"grad {name}", tol), f"grad {name}")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("time_varying", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("h0", [False, True])
def test_matches_reference(backend, device, dtype, time_varying, reverse, h0):
    a, b, h = make_inputs(2, 37, 5, dtype, time_varying=time_varying, h0=h0, seed=3)
    check_against_reference(a, b, h, dtype=dtype, backend=backend, device=device, reverse=reverse)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("magnitude", ["near_one", "small"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_decay_magnitudes(backend, device, magnitude, dtype):
    a, b, h = make_inputs(1, 70, 3, dtype, time_varying=True, h0=True, magnitude=magnitude, seed=4)
    check_against_reference(a, b, h, dtype=dtype, backend=backend, device=device, reverse=False)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("B,L,P", [(1, 1, 1), (1, 1, 4), (3, 2, 1), (1, 9, 1), (2, 5, 65)])
def test_awkward_sizes(backend, device, B, L, P):
    a, b, h = make_inputs(B, L, P, torch.complex64, time_varying=False, h0=True, seed=B * 100 + L)
    check_against_reference(a, b, h, dtype=torch.complex64, backend=backend, device=device, reverse=False)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_double_precision(backend, device, dtype):
    a, b, h = make_inputs(2, 23, 3, dtype, time_varying=True, h0=True, seed=5)
    check_against_reference(a, b, h, dtype=dtype, backend=backend, device=device, reverse=True)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("b_dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(backend, device, b_dtype):
    # The state is float32; only the input b, the output x and b's gradient are in 16 bits. a's gradient sums
    # products with the saved x (the op keeps x, not its float32 state), so it carries x's rounding too. The
    # final state and the initial state's gradient never pass through 16 bits: float32 tolerance.
    a, b, h = make_inputs(2, 29, 4, torch.float32, time_varying=False, h0=True, seed=6)
    check_against_reference(a, b, h, dtype=torch.float32, b_dtype=b_dtype, backend=backend, device=device,
                            reverse=False, tol_for={"x": 1e-2, "grad b": 1e-2, "grad a": 1e-2})


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("L", [15, 16, 17, 47, 48, 49])
def test_triton_chunk_boundaries(L):
    # Lengths just below, at and above multiples of a 16-step chunk.
    a, b, h = make_inputs(1, L, 3, torch.complex64, time_varying=True, h0=True, seed=L)
    check_against_reference(a, b, h, dtype=torch.complex64, backend="triton", device=TRITON_DEVICE,
                            reverse=L % 2 == 1, chunk_size=16)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("L", [31, 32, 33])
def test_triton_default_chunk_boundaries(L):
    a, b, h = make_inputs(1, L, 2, torch.float32, time_varying=False, h0=False, seed=L)
    check_against_reference(a, b, h, dtype=torch.float32, backend="triton", device=TRITON_DEVICE, reverse=False)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("time_varying,L,P", [(False, 31, 3), (False, 33, 3), (True, 15, 3), (True, 17, 130),
                                               (True, 9, 3)])
def test_triton_complex_default_chunk_boundaries(time_varying, L, P):
    # The complex plan's chunks differ per pass: forward 32 (a (P,)) or 16 steps, backward 16 or 8 steps.
    # P = 130: three channel blocks of 64, the last one masked.
    a, b, h = make_inputs(1, L, P, torch.complex64, time_varying=time_varying, h0=True, seed=L)
    check_against_reference(a, b, h, dtype=torch.complex64, backend="triton", device=TRITON_DEVICE,
                            reverse=P > 64)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("dtype,time_varying", [(torch.complex64, False), (torch.complex64, True),
                                                (torch.float32, True)])
def test_triton_pipelined_loops_change_nothing(dtype, time_varying):
    """Loads run ahead through shared memory with stages > 1 (a GPU-only difference: the interpreter runs the
    loop plainly); the arithmetic is the same, so every output must be bitwise equal to the plain loop's."""
    from spikessm.kernels import diag_scan as kernels

    a, b, h = (t.to(dtype).to(TRITON_DEVICE) if t is not None else None
               for t in make_inputs(2, 37, 5, dtype, time_varying=time_varying, h0=True, seed=7))
    gx = torch.randn(b.shape, dtype=dtype).to(TRITON_DEVICE)
    gT = torch.randn(h.shape, dtype=dtype).to(TRITON_DEVICE)
    plain = kernels.diag_scan_fwd(a, b, h, True, chunk_size=8, stages=1)
    plain_grads = kernels.diag_scan_bwd(a, plain[0], h, gx, gT, True, chunk_size=8, stages=1)
    for stages in (2, 4):
        x, hT = kernels.diag_scan_fwd(a, b, h, True, chunk_size=8, stages=stages)
        assert torch.equal(x, plain[0]) and torch.equal(hT, plain[1]), f"forward, stages={stages}"
        grads = kernels.diag_scan_bwd(a, x, h, gx, gT, True, chunk_size=8, stages=stages)
        for name, got, want in zip(("da", "db", "dh0"), grads, plain_grads):
            assert torch.equal(got, want), f"{name}, stages={stages}"


@requires_triton
def test_launch_plans():
    from spikessm.kernels.diag_scan import ROW_BYTES, launch_config

    # Complex: a chunk row fills one warp's 16-byte loads, so every thread owns its channels' whole chunk.
    assert launch_config(8, 1536, torch.complex64, False, False) == (32, ROW_BYTES // 8, 1)
    assert launch_config(8, 1536, torch.complex64, True, False)[0] == 16
    assert launch_config(8, 1536, torch.complex64, False, True)[0] == 16
    assert launch_config(8, 1536, torch.complex64, True, True)[0] == 8
    assert launch_config(8, 1536, torch.complex128, False, False) == (16, ROW_BYTES // 16, 1)
    assert launch_config(2, 5, torch.complex64, False, False)[1] == 8  # no wider than the channels
    assert launch_config(8, 1536, torch.complex64, True, True, chunk_size=4)[0] == 4
    for B, P in [(1, 1), (8, 1536), (64, 1024), (3, 65)]:
        block_t, block_p, warps = launch_config(B, P, torch.float32, True, False)
        assert block_t == 32 and 1 <= block_p <= 64 and 1 <= warps <= 8
    with pytest.raises(ValueError, match="power of two"):
        launch_config(8, 64, torch.complex64, False, False, chunk_size=12)


@pytest.mark.parametrize("L", [63, 64, 65, 255, 256, 257])
def test_torch_chunk_boundaries(L):
    assert sqrt_chunk_length(64) == 8 and sqrt_chunk_length(256) == 16
    for time_varying in (False, True):
        a, b, h = make_inputs(2, L, 3, torch.complex64, time_varying=time_varying, h0=True, seed=L)
        check_against_reference(a, b, h, dtype=torch.complex64, backend="torch", device="cpu", reverse=False)


def test_torch_long_sequence():
    # Path-X length x 4: the PyTorch path handles long sequences without a per-step loop over L.
    a, b, h = make_inputs(1, 65536, 5, torch.complex64, time_varying=False, h0=True, magnitude="long_memory",
                          seed=7)
    check_against_reference(a, b, h, dtype=torch.complex64, backend="torch", device="cpu", reverse=True)


@requires_triton
@pytest.mark.interpreter
def test_triton_long_sequence():
    a, b, h = make_inputs(1, TRITON_LONG_L, 5, torch.float32, time_varying=False, h0=True,
                          magnitude="long_memory", seed=8)
    check_against_reference(a, b, h, dtype=torch.float32, backend="triton", device=TRITON_DEVICE, reverse=False)


def test_zero_decay_is_exact():
    # a = 0 makes x = b: the chunked path must not divide by products of a.
    b = torch.randn(2, 50, 3, dtype=torch.complex64)
    a = torch.zeros(3, dtype=torch.complex64)
    x, hT = diag_scan(a, b, backend="torch")
    assert torch.equal(x, b) and torch.equal(hT, b[:, -1])


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("time_varying", [False, True])
def test_triton_agrees_with_torch(dtype, time_varying):
    """The backend switch changes results by rounding only: relative difference <= 1e-5 in float32."""
    a64, b64, h64 = make_inputs(3, 45, 6, dtype, time_varying=time_varying, h0=True, seed=9)
    outs = {}
    for backend, device in (("torch", "cpu"), ("triton", TRITON_DEVICE)):
        a, b, h = (t.to(dtype).to(device).requires_grad_() for t in (a64, b64, h64))
        x, hT = diag_scan(a, b, h, backend=backend, reverse=True)
        gx = torch.ones_like(x)
        grads = torch.autograd.grad((x, hT), (a, b, h), (gx, torch.ones_like(hT)))
        outs[backend] = [t.detach().cpu() for t in (x, hT, *grads)]
    for name, t, r in zip(("x", "final_state", "da", "db", "dh0"), outs["triton"], outs["torch"]):
        assert_close(t, r, 1e-5, name)


def test_gradcheck_torch_path():
    g = torch.Generator().manual_seed(10)
    for time_varying in (False, True):
        shape = (2, 6, 3) if time_varying else (3,)
        a = torch.polar(torch.rand(shape, generator=g, dtype=torch.float64),
                        torch.rand(shape, generator=g, dtype=torch.float64) * 6).requires_grad_()
        b = torch.randn(2, 6, 3, generator=g, dtype=torch.complex128, requires_grad=True)
        h = torch.randn(2, 3, generator=g, dtype=torch.complex128, requires_grad=True)
        for reverse in (False, True):
            assert torch.autograd.gradcheck(
                lambda a, b, h, reverse=reverse: diag_scan(a, b, h, reverse=reverse, backend="torch"), (a, b, h))
        ar = torch.rand(shape, generator=g, dtype=torch.float64, requires_grad=True)
        br = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b: diag_scan(a, b, backend="torch"), (ar, br))


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("time_varying", [False, True])
def test_gradcheck_triton_path(time_varying):
    # The kernels' backward against finite differences of their own forward, in float64.
    g = torch.Generator().manual_seed(12)
    shape = (1, 5, 2) if time_varying else (2,)
    d = TRITON_DEVICE
    a = torch.polar(torch.rand(shape, generator=g, dtype=torch.float64),
                    torch.rand(shape, generator=g, dtype=torch.float64) * 6).to(d).requires_grad_()
    b = torch.randn(1, 5, 2, generator=g, dtype=torch.complex128).to(d).requires_grad_()
    h = torch.randn(1, 2, generator=g, dtype=torch.complex128).to(d).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b, h: diag_scan(a, b, h, reverse=time_varying, backend="triton", chunk_size=4), (a, b, h))


def test_auto_uses_torch_on_cpu(monkeypatch):
    calls = []
    from spikessm.ops.diag_scan import torch_chunked as cs

    real = cs.diag_scan_fwd
    monkeypatch.setattr(cs, "diag_scan_fwd", lambda *args: calls.append(1) or real(*args))
    diag_scan(torch.rand(3), torch.randn(1, 4, 3))
    assert calls == [1]


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_without_final_state(backend, device):
    a, b, h = (t.to(torch.complex64).to(device) for t in make_inputs(2, 9, 3, torch.complex64, time_varying=False,
                                                                       h0=True, seed=11))
    x, state = diag_scan(a, b, h, backend=backend, output_final_state=False)
    assert state is None
    assert torch.equal(x, diag_scan(a, b, h, backend=backend)[0])
