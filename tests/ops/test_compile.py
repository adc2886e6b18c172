"""The ops work inside torch.compile (one graph, no breaks) and their custom-op registrations are sound."""
import pytest
import torch
from conftest import HAS_CUDA, TRITON_DEVICE, requires_triton
from helpers import assert_close

from spikessm.ops import diag_scan, s4d_lif, s4d_scan


class TinySSM(torch.nn.Module):
    """An S5-style diag_scan branch and an S4D branch, summed: enough to put both ops in one graph."""

    def __init__(self, H=3, N=4, backend="torch", algorithm="auto"):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.backend, self.algorithm = backend, algorithm
        self.log_a = torch.nn.Parameter(-torch.rand(N, generator=g) - 0.05)
        self.theta = torch.nn.Parameter(torch.rand(N, generator=g))
        self.B = torch.nn.Parameter(torch.randn(H, N, 2, generator=g) * 0.5)
        self.C = torch.nn.Parameter(torch.randn(H, N, 2, generator=g) * 0.5)
        self.D = torch.nn.Parameter(torch.randn(H, generator=g))

    def forward(self, u):
        A = torch.polar(torch.exp(self.log_a), self.theta)  # (N,)
        B = torch.view_as_complex(self.B)
        C = torch.view_as_complex(self.C)
        bu = torch.complex(u @ B.real, u @ B.imag)  # (batch, L, N)
        x, _ = diag_scan(A, bu, backend=self.backend)
        y1 = x.real @ C.real.T - x.imag @ C.imag.T
        y2, _ = s4d_scan(u, A.expand_as(B), B, C, self.D, backend=self.backend, algorithm=self.algorithm)
        return y1 + y2


def run_fwd_bwd(model, u):
    out = model(u)
    loss = (out * torch.linspace(-1, 1, out.numel(), device=u.device).view_as(out)).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return out.detach(), [g.detach() for g in grads]


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_matches_eager_torch_path(backend):
    model = TinySSM()
    u = torch.randn(2, 11, 3)
    ref_out, ref_grads = run_fwd_bwd(model, u)
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    out, grads = run_fwd_bwd(compiled, u)
    assert_close(out, ref_out, 1e-5, "output")
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, 1e-5, "grad")


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("algorithm", ["auto", "chunked"])
def test_compile_triton_path(algorithm):
    """The Triton ops are opaque custom ops to the compiler; on a GPU this also compiles with inductor."""
    model = TinySSM(backend="triton", algorithm=algorithm).to(TRITON_DEVICE)
    u = torch.randn(2, 11, 3, device=TRITON_DEVICE)
    ref_out, ref_grads = run_fwd_bwd(model, u)
    compiled = torch.compile(model, backend="inductor" if HAS_CUDA else "aot_eager", fullgraph=True)
    out, grads = run_fwd_bwd(compiled, u)
    assert_close(out, ref_out, 1e-5, "output")
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, 1e-5, "grad")


@pytest.mark.parametrize("backend,algorithm", [
    ("torch", "auto"),
    pytest.param("triton", "sequential", marks=[requires_triton, pytest.mark.interpreter]),
    pytest.param("triton", "chunked", marks=[requires_triton, pytest.mark.interpreter]),
])
def test_compile_s4d_lif(backend, algorithm):
    """A spiking S4D layer (s4d_lif with learnable A, B, C, beta, threshold) in one graph, equal to eager."""
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    model = TinySSM(backend=backend).to(device)
    beta = torch.full((3,), 0.8, device=device, requires_grad=True)
    threshold = torch.full((3,), 0.5, device=device, requires_grad=True)

    def spiking(u):
        A = torch.polar(torch.exp(model.log_a), model.theta)
        B, C = torch.view_as_complex(model.B), torch.view_as_complex(model.C)
        spikes, (_, membrane), _ = s4d_lif(u, A.expand_as(B), B, C, model.D, beta=beta, threshold=threshold,
                                        backend=backend, algorithm=algorithm)
        return spikes.sum(-1) + membrane.sum()

    u = torch.randn(2, 11, 3, device=device)
    params = [*model.parameters(), beta, threshold]
    compiled = torch.compile(spiking, backend="inductor" if HAS_CUDA else "aot_eager", fullgraph=True)
    results = []
    for fn in (spiking, compiled):
        out = fn(u)
        results.append((out.detach(), torch.autograd.grad(out.sum(), params)))
    (ref_out, ref_grads), (out, grads) = results
    assert torch.equal(out, ref_out)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, 1e-5, "grad")


def _opcheck(op, args):
    # Checks the schema, the fake (meta) implementation against the real one, and the autograd registration.
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor", "test_autograd_registration",
                                                "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("triton", [False, pytest.param(True, marks=[requires_triton, pytest.mark.interpreter])])
@pytest.mark.parametrize("time_varying", [False, True])
def test_opcheck_diag_scan(triton, time_varying):
    device = TRITON_DEVICE if triton else "cpu"
    a = torch.rand((2, 5, 3) if time_varying else (3,), dtype=torch.complex64, device=device).requires_grad_()
    b = torch.randn(2, 5, 3, dtype=torch.complex64, device=device, requires_grad=True)
    h = torch.randn(2, 3, dtype=torch.complex64, device=device, requires_grad=True)
    chunk = 16 if triton else 0
    op = torch.ops.spikessm.diag_scan_triton_chunked_fwd if triton else torch.ops.spikessm.diag_scan_torch_chunked_fwd
    _opcheck(op.default, (a, b, h, False, chunk))
    _opcheck(op.default, (a, b, None, True, chunk))


@requires_triton
@pytest.mark.interpreter
def test_opcheck_s4d_scan_triton():
    d = TRITON_DEVICE
    u = torch.randn(2, 5, 3, device=d, requires_grad=True)
    A = (torch.rand(3, 4, device=d) * 0.9).to(torch.complex64).requires_grad_()
    B, C = (torch.randn(3, 4, dtype=torch.complex64, device=d, requires_grad=True) for _ in range(2))
    D = torch.randn(3, device=d, requires_grad=True)
    h = torch.randn(2, 3, 4, dtype=torch.complex64, device=d, requires_grad=True)
    _opcheck(torch.ops.spikessm.s4d_scan_triton_sequential_fwd.default, (u, A, B, C, D, h, False))
    _opcheck(torch.ops.spikessm.s4d_scan_triton_sequential_fwd.default, (u, A, B, C, None, None, True))


def _chunked_kernel_inputs(T=16):
    """u (B=2, L=21, H=3), the six (conv, w_in, w_out, a_chunk, w_in_last, a_last) operators of the chunked
    kernels for N=4, D and the initial state planes: random, requiring grad."""
    def real(*shape):
        return torch.randn(*shape, device=TRITON_DEVICE, requires_grad=True)

    operators = (real(3, T, T), real(3, 2, 4, T), real(3, 2, T, 4), real(3, 2, 4), real(3, 2, 4, T), real(3, 2, 4))
    return real(2, 21, 3), operators, real(3), real(2, 2, 3, 4)


@requires_triton
@pytest.mark.interpreter
def test_opcheck_s4d_chunked():
    u, operators, D, z0 = _chunked_kernel_inputs()
    op = torch.ops.spikessm.s4d_scan_triton_chunked_fwd.default
    _opcheck(op, (u, *operators, D, z0, False, True))
    _opcheck(op, (u, *operators, None, None, True, True))


@requires_triton
@pytest.mark.interpreter
def test_opcheck_s4d_lif_chunked():
    u, operators, D, z0 = _chunked_kernel_inputs()
    v0 = torch.randn(2, 3, device=TRITON_DEVICE, requires_grad=True)
    beta = torch.rand(3, device=TRITON_DEVICE).requires_grad_()
    threshold = (0.5 + torch.rand(3, device=TRITON_DEVICE)).requires_grad_()
    op = torch.ops.spikessm.s4d_lif_triton_chunked_fwd.default
    _opcheck(op, (u, *operators, D, z0, v0, beta, threshold, "subtract", "atan", 2.0, False, False, False, True,
                  True))
    _opcheck(op, (u, *operators, None, None, None, beta, threshold, "zero", "leaky", 1.0, True, True, True, True,
                  True))
