"""S4D and S5 layers: initial spectra, discretisation, forward against float64 loops, streaming, gradients,
backends, dtypes and argument errors."""
import math

import pytest
import torch
from conftest import TRITON_DEVICE, requires_triton
from helpers import assert_close

from spikessm.layers import LIF, RF, S4D, S5, Heaviside
from spikessm.layers.discretize import discretize
from spikessm.layers.ssm_init import hippo_n, s4d_spectrum


def hippo_legs(n):
    """HiPPO-LegS and its P, straight from the definition."""
    A = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if i > j:
                A[i, j] = -math.sqrt(2 * i + 1) * math.sqrt(2 * j + 1)
            elif i == j:
                A[i, j] = -(i + 1)
    P = torch.tensor([math.sqrt(i + 0.5) for i in range(n)], dtype=torch.float64)
    return A, P


@pytest.mark.parametrize("n", [2, 8, 16])
def test_hippo_n_diagonalises_the_normal_part_of_legs(n):
    A, P = hippo_legs(n)
    S = (A + P[:, None] * P[None, :]).to(torch.complex128)
    lam, V = hippo_n(n)
    assert_close(V @ torch.diag(lam) @ V.conj().T, S, 1e-12, "V diag V^H")
    assert_close(V.conj().T @ V, torch.eye(n, dtype=torch.complex128), 1e-12, "V unitary")
    assert torch.allclose(lam.real, torch.full((n,), -0.5, dtype=torch.float64))
    assert (lam.imag.diff() >= 0).all()


def test_s4d_spectra():
    A, B = s4d_spectrum("inv", 8)
    n = torch.arange(4, dtype=torch.float64)
    assert torch.allclose(A.imag, 8 / math.pi * (8 / (2 * n + 1) - 1))
    assert torch.allclose(A.real, torch.full((4,), -0.5, dtype=torch.float64)) and torch.all(B == 1)
    A, _ = s4d_spectrum("lin", 8)
    assert torch.allclose(A.imag, math.pi * n)
    A, B = s4d_spectrum("legs", 8)
    lam, V = hippo_n(8)
    assert torch.allclose(A, lam[4:]) and (A.imag > 0).all()
    b = torch.sqrt(2 * torch.arange(8, dtype=torch.float64) + 1).to(torch.complex128)
    assert torch.allclose(B, (V.conj().T @ b)[4:])


def test_zoh_matches_the_matrix_exponential():
    A = torch.tensor([-0.3 + 2.0j, -1.5 - 0.2j], dtype=torch.complex128)
    B = torch.tensor([0.7 - 0.1j, 1.0 + 0.5j], dtype=torch.complex128)
    dt = torch.tensor([0.05, 0.4], dtype=torch.float64)
    A_bar, B_bar = discretize(A, B, dt, "zoh")
    for k in range(2):  # expm([[A dt, B dt], [0, 0]]) = [[A_bar, B_bar], [0, 1]]
        E = torch.linalg.matrix_exp(torch.tensor([[A[k] * dt[k], B[k] * dt[k]], [0, 0]], dtype=torch.complex128))
        assert torch.allclose(E[0, 0], A_bar[k]) and torch.allclose(E[0, 1], B_bar[k])
    A_bar, B_bar = discretize(A, B, dt, "bilinear")  # x_t - x_{t-1} = dt (A (x_t + x_{t-1}) / 2 + B u_t)
    x_prev, u = 0.3 - 0.2j, 1.7
    x = A_bar * x_prev + B_bar * u
    assert torch.allclose(x - x_prev, dt * (A * (x + x_prev) / 2 + B * u))


def ssm_loop(u, A_bar, B_bar, C, reverse=False):
    """sum_n Re(C x) with x_t = A_bar x_{t-1} + B_bar u_t per channel: u (B, L, H) -> (B, L, H), float64."""
    Bsz, L, H = u.shape
    x = torch.zeros(Bsz, *A_bar.shape, dtype=torch.complex128)
    y = torch.zeros(Bsz, L, H, dtype=torch.float64)
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        x = A_bar * x + B_bar * u[:, t, :, None]
        y[:, t] = (C * x).real.sum(-1)
    return y


@pytest.mark.parametrize("init", ["inv", "lin", "legs"])
@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_s4d_matches_its_equations(init, discretization, bidirectional):
    torch.manual_seed(0)
    layer = S4D(3, 6, init=init, discretization=discretization, bidirectional=bidirectional, dtype=torch.float64)
    u = torch.randn(2, 37, 3, dtype=torch.float64)
    A = torch.complex(-torch.exp(layer.log_neg_A_real), layer.A_imag).detach()
    A_bar, B_bar = discretize(A, torch.view_as_complex(layer.B).detach(), torch.exp(layer.log_dt).detach()[:, None],
                              discretization)
    C = torch.view_as_complex(layer.C).detach()
    expected = 2 * ssm_loop(u, A_bar, B_bar, C[0]) + layer.D.detach() * u
    if bidirectional:
        expected = expected + 2 * ssm_loop(u, A_bar, B_bar, C[1], reverse=True)
    assert_close(layer(u), expected, 1e-10, "S4D")


@pytest.mark.parametrize("conj_sym,discretization,clip_eigs", [
    (True, "zoh", False), (False, "zoh", True), (True, "bilinear", True), (False, "bilinear", False),
])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_s5_matches_its_equations(conj_sym, discretization, clip_eigs, bidirectional):
    torch.manual_seed(0)
    layer = S5(3, 8, blocks=2, conj_sym=conj_sym, discretization=discretization, clip_eigs=clip_eigs,
               bidirectional=bidirectional, dtype=torch.float64)
    with torch.no_grad():
        layer.Lambda_re[1] = 0.3  # an unstable mode: clip_eigs must pull its real part down to -1e-4
    u = torch.randn(2, 29, 3, dtype=torch.float64)
    # The recurrence's operators from the raw parameters (discretize itself is checked above): one step size per
    # mode, the readout scaled by 2 with conjugate symmetry (the conjugate half's contribution).
    Lambda_re = layer.Lambda_re.detach().clamp(max=-1e-4) if clip_eigs else layer.Lambda_re.detach()
    Lambda = torch.complex(Lambda_re, layer.Lambda_im.detach())
    assert (Lambda.real[1] == -1e-4) if clip_eigs else (Lambda.real[1] == 0.3)
    Lambda_bar, B_bar = discretize(Lambda[:, None], torch.view_as_complex(layer.B.detach()),
                                   layer.log_step.detach().exp()[:, None], discretization)
    Lambda_bar = Lambda_bar[:, 0]
    C = (2 if conj_sym else 1) * torch.view_as_complex(layer.C.detach())
    M = layer.n_modes
    assert M == (4 if conj_sym else 8)

    def loop(reverse, Cd):
        x = torch.zeros(2, M, dtype=torch.complex128)
        y = torch.zeros(2, 29, 3, dtype=torch.float64)
        for t in (range(28, -1, -1) if reverse else range(29)):
            x = Lambda_bar * x + u[:, t].to(torch.complex128) @ B_bar.T
            y[:, t] = (x @ Cd.T).real
        return y

    expected = loop(False, C[0]) + layer.D.detach() * u
    if bidirectional:
        expected = expected + loop(True, C[1])
    assert_close(layer(u), expected, 1e-10, "S5")


def test_s5_initial_spectrum_is_hippo_n_per_block():
    layer = S5(4, 16, blocks=2, dtype=torch.float64)
    lam, V = hippo_n(8)
    expected = lam[4:].repeat(2)
    assert torch.allclose(torch.complex(layer.Lambda_re, layer.Lambda_im).detach(), expected)
    layer = S5(4, 16, blocks=2, conj_sym=False, dtype=torch.float64)
    assert torch.allclose(torch.complex(layer.Lambda_re, layer.Lambda_im).detach(), lam.repeat(2))


def test_clip_eigs_keeps_the_real_part_negative():
    layer = S5(2, 4, clip_eigs=True, dtype=torch.float64)
    with torch.no_grad():
        layer.Lambda_re.fill_(0.3)
    Lambda_bar, _, _ = layer.discretized()
    assert (Lambda_bar.abs() < 1).all()


@pytest.mark.parametrize("make", [lambda: S4D(3, 4, dtype=torch.float64),
                                  lambda: S5(3, 4, blocks=2, dtype=torch.float64)], ids=["S4D", "S5"])
def test_step_and_chunks_equal_forward(make):
    torch.manual_seed(1)
    layer = make()
    u = torch.randn(2, 23, 3, dtype=torch.float64)
    y, final = layer(u, return_state=True)
    state, steps = layer.init_state(2), []
    for t in range(23):
        y_t, state = layer.step(u[:, t], state)
        steps.append(y_t)
    assert_close(torch.stack(steps, 1), y, 1e-12, "step")
    assert_close(state, final, 1e-12, "final state")
    y1, s = layer(u[:, :10], return_state=True)
    y2 = layer(u[:, 10:], s)
    assert_close(torch.cat([y1, y2], 1), y, 1e-12, "chunked")


@pytest.mark.parametrize("make", [lambda: S4D(2, 4, bidirectional=True, dtype=torch.float64),
                                  lambda: S5(2, 4, blocks=2, dtype=torch.float64)], ids=["S4D", "S5"])
def test_gradcheck(make):
    torch.manual_seed(2)
    layer = make()
    names = [n for n, _ in layer.named_parameters()]
    u = torch.randn(1, 7, 2, dtype=torch.float64, requires_grad=True)

    def f(u, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (u,))

    assert torch.autograd.gradcheck(f, (u, *[p.detach().requires_grad_() for p in layer.parameters()]))


@pytest.mark.parametrize("cls", [S4D, S5])
def test_ssm_parameters(cls):
    layer = cls(4, 8)
    ssm = {id(p) for p in layer.ssm_parameters()}
    assert len(ssm) == 4
    others = [n for n, p in layer.named_parameters() if id(p) not in ssm]
    assert sorted(others) == ["C", "D"]


@pytest.mark.parametrize("cls", [S4D, S5])
def test_dtypes(cls):
    layer = cls(4, 8)
    u = torch.randn(2, 9, 4)
    y = layer(u)
    assert y.dtype == torch.float32 and y.shape == u.shape
    y16 = layer(u.bfloat16())
    assert y16.dtype == torch.bfloat16
    assert_close(y16, y, 3e-2, "bfloat16 input")
    with pytest.raises(TypeError, match="float32 or float64"):
        cls(4, 8, dtype=torch.bfloat16)


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("cls,kwargs", [(S4D, {}), (S4D, dict(algorithm="chunked")), (S5, {})])
def test_backends_agree(cls, kwargs):
    torch.manual_seed(3)
    torch_layer = cls(3, 4, bidirectional=True, backend="torch", device=TRITON_DEVICE)
    triton_layer = cls(3, 4, bidirectional=True, backend="triton", device=TRITON_DEVICE, **kwargs)
    triton_layer.load_state_dict(torch_layer.state_dict())
    u = torch.randn(2, 19, 3, device=TRITON_DEVICE)
    y_ref, y = torch_layer(u), triton_layer(u)
    assert_close(y, y_ref, 1e-5, "forward")
    g = torch.randn_like(y)
    grads_ref = torch.autograd.grad(y_ref, list(torch_layer.parameters()), g)
    grads = torch.autograd.grad(y, list(triton_layer.parameters()), g)
    for (name, _), a, b in zip(torch_layer.named_parameters(), grads, grads_ref):
        assert_close(a, b, 1e-4, name)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(init="hippo"), ValueError, "init must be one of"),
    (dict(d_state=0), ValueError, "d_state must be a positive even integer"),
    (dict(d_state=5), ValueError, "d_state must be a positive even integer"),
    (dict(dt_min=0.1, dt_max=0.01), ValueError, "dt_min <= dt_max"),
    (dict(discretization="euler"), ValueError, "discretization must be one of"),
    (dict(backend="cuda"), ValueError, "backend must be one of"),
    (dict(algorithm="fft"), ValueError, "algorithm must be one of"),
])
def test_s4d_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        S4D(4, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(d_state=0), "d_state must be a positive integer"),
    (dict(d_state=12, blocks=5), "multiple of blocks"),
    (dict(d_state=6, blocks=2), "even integer"),
    (dict(blocks=0), "blocks must be a positive integer"),
])
def test_s5_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S5(4, **kwargs)


@pytest.mark.parametrize("cls", [S4D, S5])
def test_bad_inputs_and_bidirectional_streaming(cls):
    layer = cls(4, 4, bidirectional=True)
    with pytest.raises(ValueError, match=r"\(batch, length, channels\) with 4 channels"):
        layer(torch.randn(2, 9, 3))
    with pytest.raises(TypeError, match="floating point"):
        layer(torch.ones(2, 9, 4, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="bidirectional"):
        layer.step(torch.randn(2, 4), None)
    with pytest.raises(RuntimeError, match="bidirectional"):
        layer(torch.randn(2, 9, 4), return_state=True)


def with_neurons(cls, kind="lif", **kwargs):
    """An SSM layer of class cls read out by LIF neurons that learn beta and threshold, or by RF neurons (two
    branches, an adaptive threshold) that learn their frequency, step and threshold, in float64."""
    if kind == "lif":
        neurons = LIF(3, beta=0.7, threshold=0.2, learn_beta=True, learn_threshold=True, dtype=torch.float64)
    else:
        neurons = RF(3, branches=2, reset="zero", adaptive=True, input_scale="none", threshold=0.2,
                     learn_threshold=True, dtype=torch.float64)
    extra = dict(blocks=2) if cls is S5 else {}
    return cls(3, 4, neurons=neurons, dtype=torch.float64, **extra, **kwargs)


def membrane_of(state):
    """A neurons' state as one tensor: a LIF's membrane, an RF's membrane and trace."""
    return torch.cat([torch.view_as_real(state.membrane).flatten(1), state.trace], 1) if isinstance(
        state, tuple) else state


@pytest.mark.parametrize("kind", ["lif", "rf"])
@pytest.mark.parametrize("cls", [S4D, S5])
def test_neurons_step_and_chunks_equal_forward(cls, kind):
    torch.manual_seed(6)
    layer = with_neurons(cls, kind)
    u = 3 * torch.randn(2, 23, 3, dtype=torch.float64)
    spikes, (ssm_final, v_final) = layer(u, return_state=True)
    assert set(spikes.unique().tolist()) == {0.0, 1.0}
    state, steps = layer.init_state(2), []
    for t in range(23):
        s_t, state = layer.step(u[:, t], state)
        steps.append(s_t)
    assert torch.equal(torch.stack(steps, 1), spikes)
    assert_close(state[0], ssm_final, 1e-12, "SSM state")
    assert_close(membrane_of(state[1]), membrane_of(v_final), 1e-12, "membrane")
    s1, s = layer(u[:, :10], return_state=True)
    s2 = layer(u[:, 10:], s)
    assert torch.equal(torch.cat([s1, s2], 1), spikes)


@pytest.mark.parametrize("kind", ["lif", "rf"])
@pytest.mark.parametrize("cls,bidirectional", [(S4D, False), (S4D, True), (S5, False), (S5, True)])
def test_neurons_read_out_the_ssm(cls, bidirectional, kind):
    """A layer with neurons == the same layer without them, then the neurons (S4D causal with LIF: one fused op),
    with the same gradients."""
    torch.manual_seed(7)
    layer = with_neurons(cls, kind, bidirectional=bidirectional)
    assert getattr(layer, "fused", False) == (cls is S4D and not bidirectional and kind == "lif")
    plain = cls(3, 4, bidirectional=bidirectional, dtype=torch.float64, **(dict(blocks=2) if cls is S5 else {}))
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("neurons.")})
    u = 3 * torch.randn(2, 19, 3, dtype=torch.float64, requires_grad=True)
    out, ref = layer(u), layer.neurons(plain(u))
    assert_close(out, ref, 0, "spikes")
    assert out.sum() > 0
    names = [n for n, _ in layer.named_parameters()]
    ref_params = [layer.get_parameter(n) if n.startswith("neurons.") else plain.get_parameter(n) for n in names]
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [u, *layer.parameters()], g)
    ref_grads = torch.autograd.grad(ref, [u, *ref_params], g)
    for name, a, b in zip(["u", *names], grads, ref_grads):
        assert_close(a, b, 1e-10, f"d{name}")


@pytest.mark.parametrize("cls", [S4D, S5])
def test_empty_batch(cls):
    for layer in (cls(3, 4), with_neurons(cls), with_neurons(cls, "rf")):
        u = torch.randn(0, 6, 3, dtype=layer.D.dtype)
        out, state = layer(u, return_state=True)
        assert out.shape == (0, 6, 3)
        zeros = layer.init_state(0)
        for a, b in zip(leaves(state), leaves(zeros), strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype


def leaves(state) -> list:
    """The tensors of a (nested) state tuple."""
    return [t for part in state for t in leaves(part)] if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("cls", [S4D, S5])
def test_bad_neurons_and_booleans(cls):
    with pytest.raises(TypeError, match="neurons must be a spikessm.layers.LIF, a spikessm.layers.RF or None, got "
                                        "Heaviside"):
        cls(4, 4, neurons=Heaviside())
    with pytest.raises(ValueError, match="neurons must have d_model=4 channels, got 3"):
        cls(4, 4, neurons=LIF(3, beta=0.5))
    with pytest.raises(ValueError, match="neurons must use the layer's backend 'torch', got 'auto'"):
        cls(4, 4, neurons=LIF(4, beta=0.5), backend="torch")
    with pytest.raises(TypeError, match=f"{cls.__name__}: bidirectional must be True or False, got 'maybe'"):
        cls(4, 4, bidirectional="maybe")
    with pytest.raises(TypeError, match=f"{cls.__name__}: return_state must be True or False, got 'no'"):
        cls(4, 4)(torch.randn(1, 3, 4), return_state="no")
    if cls is S5:
        for name in ("conj_sym", "clip_eigs"):
            with pytest.raises(TypeError, match=f"S5: {name} must be True or False, got 1"):
                S5(4, 4, **{name: 1})
