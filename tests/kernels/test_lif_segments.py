"""The Triton LIF kernels with time cut into segments (pass 1 from a guessed membrane, then the exact fix-ups)
and with each chunk length, against the PyTorch path in float64: the same spikes, membranes and gradients to
rounding (the kernel fuses beta v + x into one multiply-add, the PyTorch path may not; in float64 no step of
these inputs comes within that rounding of the threshold).

The public op picks segments only for long sequences with few channels; here the plan is forced so that the
interpreter can run it at small sizes. Some cases also force the pipeline depth (stages): the interpreter runs loops
plainly, so those differ only on a GPU, where the pipeliner loads chunks ahead into shared memory. One case can
never merge (beta = 1, no reset): the sequential fix-up then re-runs every segment.
"""
import pytest
import torch
from conftest import HAS_CUDA, TRITON_DEVICE, requires_triton
from helpers import assert_close

from spikessm.ops import lif
from spikessm.ops.lif import torch_sequential
from spikessm.ops.lif.leaky import leaky_derivative

pytestmark = [requires_triton, pytest.mark.interpreter]

CASES = [  # B, L, H, reset, surrogate, beta (None: random per channel), segments, chunk, block_h, h0, g_final, stages
    (2, 37, 5, "subtract", "atan", None, 1, 16, None, True, True, None),
    (2, 37, 5, "subtract", "atan", None, 4, 8, None, True, True, 1),  # no pipelining
    (1, 100, 3, "zero", "sigmoid", None, 3, 4, None, False, True, None),
    (1, 70, 3, "none", "triangle", 1.0, 4, 8, None, True, True, 2),
    (2, 64, 130, "subtract", "leaky", None, 2, 32, None, True, False, None),
    (1, 1, 1, "subtract", "fast_sigmoid", None, 1, 16, None, True, True, None),
    (3, 45, 2, "subtract", "rectangle", 0.99, 5, 4, None, True, True, 4),
    (1, 9, 3, "zero", "atan", None, 2, 2, None, True, True, None),
    (1, 40, 70, "subtract", "atan", None, 2, 8, 64, True, True, None),  # two 64-channel blocks, the last masked
    (2, 150, 4, "subtract", "atan", None, 1, 16, None, True, True, 8),  # more stages than most segments' chunks
    (2, 37, 5, "subtract_after_decay", "atan", None, 4, 8, None, True, True, None),
    (1, 100, 3, "subtract_after_decay", "sigmoid", None, 3, 4, None, False, True, 2),
]


@pytest.mark.parametrize("B,L,H,reset,surrogate,beta_value,segments,chunk,block_h,with_h0,with_gT,stages", CASES)
def test_segments_match_reference(B, L, H, reset, surrogate, beta_value, segments, chunk, block_h, with_h0,
                                  with_gT, stages):
    from spikessm.kernels import lif as kernels

    g = torch.Generator().manual_seed(L + H)
    f64 = dict(dtype=torch.float64)
    x = torch.randn(B, L, H, generator=g, **f64)
    beta = torch.full((H,), beta_value, **f64) if beta_value is not None else 0.5 + 0.45 * torch.rand(H, generator=g,
                                                                                                         **f64)
    th = 0.5 + torch.rand(H, generator=g, **f64)
    h0 = torch.randn(B, H, generator=g, **f64) if with_h0 else None
    gs = torch.randn(B, L, H, generator=g, **f64)
    gT = torch.randn(B, H, generator=g, **f64) if with_gT else None
    spikes_r, m_r, v_r = torch_sequential.walk(x, beta, th, h0, reset)
    dev = [t.to(TRITON_DEVICE) if t is not None else None for t in (x, beta, th, h0, gs, gT, m_r)]
    xd, bd, td, hd, gsd, gTd, md = dev
    for save in (True, False):
        spikes, m, v = kernels.lif_fwd(xd, bd, td, hd, reset, save, segments, chunk, block_h,
                                       stages or kernels.STAGES)
        assert torch.equal(spikes.cpu(), spikes_r), f"spikes (save_membrane={save})"
        assert_close(v.cpu(), v_r, 1e-13, f"final membrane (save_membrane={save})")
        if save:
            assert_close(m.cpu(), m_r, 1e-13, "membrane")
        else:
            assert m.numel() == 0
    sigma = leaky_derivative((m_r > th).double(), beta, th).to(TRITON_DEVICE) if surrogate == "leaky" else None
    bwd_chunk = min(chunk, max(kernels.BWD_CHUNKS))  # the backward's chunks are at most 16 steps
    got = kernels.lif_bwd(bd, td, hd, md, gsd, gTd, reset, surrogate, 2.0, False, torch.float64, sigma, segments,
                          bwd_chunk, block_h, stages or kernels.BWD_STAGES)
    want = torch_sequential.adjoint(beta, th, h0, m_r, gs, gT, reset, surrogate, 2.0, False, torch.float64)
    for name, a, b in zip(("dx", "dbeta", "dthreshold", "dh0"), got, want):
        if b is None:
            assert a is None
        else:
            assert_close(a.cpu(), b, 1e-12, name)


@pytest.mark.parametrize("reset,surrogate,segments,chunk", [("subtract", "atan", 3, 4), ("zero", "leaky", 4, 2),
                                                             ("none", "triangle", 2, 8),
                                                             ("subtract_after_decay", "leaky", 3, 4)])
def test_segments_fire_on_tie(reset, surrogate, segments, chunk):
    """Integer inputs with beta = 0.5 and integer thresholds (membranes exact, many of them on the threshold):
    forward fix-ups and segmented backward fire on ties as the PyTorch path does, and differ from the default."""
    from spikessm.kernels import lif as kernels

    g = torch.Generator().manual_seed(segments)
    B, L, H = 2, 29, 3
    x = torch.randint(0, 3, (B, L, H), generator=g).double()
    beta = torch.full((H,), 0.5, dtype=torch.float64)
    th = torch.randint(1, 3, (H,), generator=g).double()
    h0 = torch.randint(0, 2, (B, H), generator=g).double()
    gs, gT = torch.randn(B, L, H, generator=g, dtype=torch.float64), torch.randn(B, H, generator=g, dtype=torch.float64)
    spikes_r, m_r, v_r = torch_sequential.walk(x, beta, th, h0, reset, fire_on_tie=True)
    assert not torch.equal(spikes_r, torch_sequential.walk(x, beta, th, h0, reset)[0]), "no tie in the inputs"
    dev = [t.to(TRITON_DEVICE) for t in (x, beta, th, h0, gs, gT, m_r)]
    xd, bd, td, hd, gsd, gTd, md = dev
    spikes, m, v = kernels.lif_fwd(xd, bd, td, hd, reset, True, segments, chunk, fire_on_tie=True)
    assert torch.equal(spikes.cpu(), spikes_r)
    assert torch.equal(m.cpu(), m_r) and torch.equal(v.cpu(), v_r)
    sigma = leaky_derivative(spikes_r, beta, th).to(TRITON_DEVICE) if surrogate == "leaky" else None
    got = kernels.lif_bwd(bd, td, hd, md, gsd, gTd, reset, surrogate, 1.0, False, torch.float64, sigma, segments,
                          min(chunk, max(kernels.BWD_CHUNKS)), fire_on_tie=True)
    want = torch_sequential.adjoint(beta, th, h0, m_r, gs, gT, reset, surrogate, 1.0, False, torch.float64,
                                    fire_on_tie=True)
    for name, a, b in zip(("dx", "dbeta", "dthreshold", "dh0"), got, want):
        assert_close(a.cpu(), b, 1e-12, name)


def test_unsupported_plans_are_refused():
    from spikessm.kernels import lif as kernels
    from spikessm.kernels.common.launch import MAX_STAGES

    with pytest.raises(ValueError, match="forward kernel: chunk must be one of"):
        kernels.plan(2, 100, 8, chunk=64)
    with pytest.raises(ValueError, match="backward kernel: chunk must be one of"):
        kernels.plan(2, 100, 8, chunk=32, backward=True)
    with pytest.raises(ValueError, match="block_h must be one of"):
        kernels.plan(2, 100, 8, block_h=48)
    x, beta, th = torch.zeros(1, 4, 2), torch.full((2,), 0.9), torch.ones(2)
    for stages in (0, MAX_STAGES + 1, 2.0):
        with pytest.raises(ValueError, match="stages must be an int"):
            kernels.lif_fwd(x, beta, th, None, "subtract", stages=stages)
        with pytest.raises(ValueError, match="stages must be an int"):
            kernels.lif_bwd(beta, th, None, x, x, None, "subtract", "atan", 2.0, False, x.dtype, stages=stages)


def test_long_sequence_through_the_op(monkeypatch):
    """The op's own plan on a long sequence with few channels: it cuts time into segments (on the CPU the
    interpreter gets a shorter sequence and a lower threshold for cutting). float64, so that no step falls
    within rounding of the threshold and the spikes must agree exactly."""
    from spikessm.kernels import lif as kernels

    L = 65536 + 3 if HAS_CUDA else 1500
    if not HAS_CUDA:
        monkeypatch.setattr(kernels, "MIN_SEGMENT", 128)
    assert kernels.plan(1, L, 3)[2] > 1
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, L, 3, generator=g, dtype=torch.float64)
    beta = torch.tensor([0.9, 0.5, 0.99], dtype=torch.float64)
    th = torch.tensor([1.0, 0.7, 1.3], dtype=torch.float64)
    xd = x.to(TRITON_DEVICE).requires_grad_()
    spikes, v = lif(xd, beta.to(TRITON_DEVICE), th.to(TRITON_DEVICE), backend="triton")
    xr = x.clone().requires_grad_()
    spikes_r, v_r = lif(xr, beta, th, backend="torch")
    assert torch.equal(spikes.cpu(), spikes_r)
    assert_close(v.cpu(), v_r, 1e-12, "final membrane")
    gs = torch.randn(spikes_r.shape, generator=g, dtype=torch.float64)
    (dx,) = torch.autograd.grad(spikes, xd, gs.to(TRITON_DEVICE))
    (dx_r,) = torch.autograd.grad(spikes_r, xr, gs)
    assert_close(dx.cpu(), dx_r, 1e-10, "dx")


def test_composed_map_that_overflows_meets_a_zero_gradient():
    """A segment whose map product overflows float32 (|beta dv/dm| = 2.7 at every step: the membrane sits on the
    threshold 4 with a surrogate slope of 1) while no gradient reaches it from later steps: the exact incoming
    gradient is 0, and inf * 0 must not turn it into NaN."""
    from spikessm.kernels import lif as kernels

    B, L, H, th_value = 1, 400, 2, 4.0
    f32 = dict(dtype=torch.float32)
    beta = torch.full((H,), 0.9, **f32)
    th = torch.full((H,), th_value, **f32)
    m_all = torch.full((B, L, H), th_value, **f32)  # pre-reset membrane on the threshold: no spike, slope 1
    gs = torch.zeros(B, L, H, **f32)
    gs[:, :20] = torch.randn(B, 20, H, generator=torch.Generator().manual_seed(0))  # 2.7^20: still finite
    want = torch_sequential.adjoint(beta, th, None, m_all, gs, None, "subtract", "atan", 2.0, False, torch.float32)
    got = kernels.lif_bwd(*(t.to(TRITON_DEVICE) for t in (beta, th)), None, m_all.to(TRITON_DEVICE),
                          gs.to(TRITON_DEVICE), None, "subtract", "atan", 2.0, False, torch.float32, None, 4)
    for name, a, b in zip(("dx", "dbeta", "dthreshold"), got, want):
        assert torch.isfinite(a).all(), f"{name} is not finite"
        assert_close(a.cpu(), b, 1e-5, name)
