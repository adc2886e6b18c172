"""`spikessm check`: verify the ops on this machine against the float64 step-by-step references and time them.

For every backend this machine can run (the PyTorch path always; Triton on a CUDA device), each op runs on
random inputs of an awkward size and is compared with its float64 loop reference, values and gradients of every
input: the scans in float32, the spiking ops in float64 (in float32 a spike may legitimately flip where the
membrane is within rounding of the threshold). Then the PyTorch paths are timed against the loops. Needs no
data or network; exits non-zero when a result is off.
"""
from __future__ import annotations

import functools
import time

import torch

from .ops import diag_scan, lif, s4d_lif, s4d_scan
from .ops.common.backend import triton_available
from .ops.diag_scan.naive import diag_scan_loop
from .ops.lif.naive import lif_loop
from .ops.s4d_lif.naive import s4d_lif_loop
from .ops.s4d_scan.naive import s4d_scan_loop

TOLERANCE = 1e-4  # normwise relative error against the float64 reference


def _rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    got = got.detach().cpu().to(ref.dtype)
    if not torch.isfinite(torch.view_as_real(got) if got.is_complex() else got).all():
        return float("inf")
    return ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def _diag_scan_case(B, L, P, device, g):
    a = torch.polar(0.5 + 0.5 * torch.rand(P, generator=g, dtype=torch.float64),
                    torch.rand(P, generator=g, dtype=torch.float64) * 6)
    b = torch.randn(B, L, P, generator=g, dtype=torch.complex128)
    h0 = torch.randn(B, P, generator=g, dtype=torch.complex128)
    return (a, b, h0), (torch.complex64,) * 3, diag_scan, diag_scan_loop, ("a", "b", "initial_state")


def _s4d_scan_case(B, L, H, N, device, g):
    A = torch.polar(0.5 + 0.5 * torch.rand(H, N, generator=g, dtype=torch.float64),
                    torch.rand(H, N, generator=g, dtype=torch.float64) * 6)
    Bm, C = (torch.randn(H, N, generator=g, dtype=torch.complex128) for _ in range(2))
    D = torch.randn(H, generator=g, dtype=torch.float64)
    u = torch.randn(B, L, H, generator=g, dtype=torch.float64)
    h0 = torch.randn(B, H, N, generator=g, dtype=torch.complex128)
    c = torch.complex64
    names = ("u", "A_bar", "B_bar", "C", "D", "initial_state")
    return (u, A, Bm, C, D, h0), (torch.float32, c, c, c, torch.float32, c), s4d_scan, s4d_scan_loop, names


def _lif_case(B, L, H, device, g):
    x = torch.randn(B, L, H, generator=g, dtype=torch.float64)
    beta = 0.9 * torch.rand(H, generator=g, dtype=torch.float64)
    threshold = 0.3 + torch.rand(H, generator=g, dtype=torch.float64)
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64)

    def op(x, beta, threshold, h0, backend):
        return lif(x, beta, threshold, initial_state=h0, backend=backend)

    def loop(x, beta, threshold, h0):
        return lif_loop(x, beta, threshold, alpha=2.0, initial_state=h0)

    return (x, beta, threshold, h0), (torch.float64,) * 4, op, loop, ("x", "beta", "threshold", "initial_state")


def _s4d_lif_case(B, L, H, N, device, g, algorithm="auto"):
    (u, A, Bm, C, D, h0), _, _, _, _ = _s4d_scan_case(B, L, H, N, device, g)
    beta = 0.9 * torch.rand(H, generator=g, dtype=torch.float64)
    threshold = 0.3 + torch.rand(H, generator=g, dtype=torch.float64)

    def op(u, A, Bm, C, D, h0, beta, threshold, backend):  # spikes and the final membrane
        spikes, (_, v), _ = s4d_lif(u, A, Bm, C, D, beta=beta, threshold=threshold, initial_state=(h0, None),
                                 backend=backend, algorithm=algorithm)
        return spikes, v

    def loop(u, A, Bm, C, D, h0, beta, threshold):
        spikes, (_, v) = s4d_lif_loop(u, A, Bm, C, D, (h0, None), beta=beta, threshold=threshold, alpha=2.0)
        return spikes, v

    c = torch.complex128
    names = ("u", "A_bar", "B_bar", "C", "D", "initial_state", "beta", "threshold")
    return (u, A, Bm, C, D, h0, beta, threshold), (torch.float64, c, c, c, torch.float64, c, torch.float64,
                                                   torch.float64), op, loop, names


def _check_case(case, backend, device) -> list[tuple[str, float]]:
    ref_inputs, dtypes, op, loop, names = case
    ins = [t.to(dt).to(device).requires_grad_() for t, dt in zip(ref_inputs, dtypes)]
    out, state = op(*ins, backend=backend)
    refs = [t.detach().cpu().to(r.dtype).requires_grad_() for t, r in zip(ins, ref_inputs)]
    out_r, state_r = loop(*refs)
    g_out = torch.randn(out_r.shape, dtype=out_r.dtype)
    g_state = torch.randn(state_r.shape, dtype=state_r.dtype)
    grads = torch.autograd.grad((out, state), ins, (g_out.to(out.dtype).to(device), g_state.to(state.dtype).to(device)))
    grads_r = torch.autograd.grad((out_r, state_r), refs, (g_out.to(out.dtype).to(out_r.dtype), g_state))
    errors = [("output", _rel_error(out, out_r)), ("final_state", _rel_error(state, state_r))]
    errors += [(f"d{n}", _rel_error(g, r)) for n, g, r in zip(names, grads, grads_r)]
    return errors


def _median_seconds(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _time_fwd_bwd(case, backend, device) -> float:
    ref_inputs, dtypes, op, loop, _ = case
    ins = [t.to(dt).to(device).requires_grad_() for t, dt in zip(ref_inputs, dtypes)]
    fn = (lambda *t: loop(*t)) if backend == "loop" else (lambda *t: op(*t, backend=backend))

    def step():
        out, state = fn(*ins)
        torch.autograd.grad((out, state), ins, (torch.ones_like(out), torch.ones_like(state)))
        if device.type == "cuda":
            torch.cuda.synchronize()

    return _median_seconds(step)


def run_check() -> bool:
    """Print the report; returns True when every comparison is within tolerance."""
    g = torch.Generator().manual_seed(0)
    targets = [("torch", torch.device("cpu"))]
    if torch.cuda.is_available():
        targets.append(("torch", torch.device("cuda")))
        if triton_available():
            targets.append(("triton", torch.device("cuda")))
    print(f"spikessm check: torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}, "
          f"Triton {'yes' if triton_available() else 'no'}, {torch.get_num_threads()} CPU threads")
    print("\nCorrectness against the float64 loops (normwise relative error; scans in float32, spiking ops in")
    print(f"float64; pass <= {TOLERANCE:g}):")
    ok = True
    for backend, device in targets:
        cases = [("diag_scan", _diag_scan_case(2, 301, 7, device, g)),
                 ("s4d_scan", _s4d_scan_case(2, 301, 5, 9, device, g)),
                 ("lif", _lif_case(2, 301, 7, device, g)),
                 ("s4d_lif", _s4d_lif_case(2, 101, 5, 9, device, g))]
        if backend == "triton":  # the Triton kernels of the chunked algorithm, which "auto" does not pick yet
            inputs, dtypes, _, loop, names = _s4d_scan_case(2, 301, 5, 9, device, g)
            cases.insert(2, ("s4d_chunk", (inputs, dtypes, functools.partial(s4d_scan, algorithm="chunked"), loop,
                                           names)))
            cases.append(("s4d_lif_chunk", _s4d_lif_case(2, 101, 5, 9, device, g, "chunked")))
        for name, case in cases:
            errors = _check_case(case, backend, device)
            worst = max(e for _, e in errors)
            passed = worst <= TOLERANCE
            ok &= passed
            detail = ", ".join(f"{k} {v:.1e}" for k, v in errors)
            print(f"  {name:13s} {backend:6s} {device.type:4s}  {'PASS' if passed else 'FAIL'}  {detail}")

    print("\nSpeed, forward+backward, median of 5 (ms):")
    for name, case in (("diag_scan", _diag_scan_case(4, 2048, 64, None, g)),
                       ("s4d_scan", _s4d_scan_case(4, 2048, 32, 16, None, g)),
                       ("lif", _lif_case(4, 2048, 64, None, g))):
        for backend, device in [("loop", torch.device("cpu"))] + targets:
            ms = _time_fwd_bwd(case, backend, device) * 1e3
            print(f"  {name:9s} B=4 L=2048  {backend:6s} {device.type:4s} {ms:9.1f}")
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return ok
