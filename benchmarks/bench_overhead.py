"""Host time per call of the ops' Triton path: what a call costs before and between its kernels.

At B=32, H=256, L=1k a LIF kernel moves ~64 MB, ~22 us on an H100; a call whose Python dispatch takes longer
than that is host-bound, whatever the kernel does. This times each op on tiny inputs (B=2, L=8, H=4, N=4),
where the kernels' own work is negligible:

  cuda  real launches; the median over runs of the wall time of 50 calls, then one synchronize, per call
  cpu   the kernel launches are stubbed out (Triton cannot launch on a CPU tensor without its interpreter), so
        the figure is the Python path alone: checks, launch plan, allocations, dispatch, autograd

    python benchmarks/bench_overhead.py [--device cpu|cuda] [--out PATH]

Rows: each op forward (no gradient needed) and forward+backward (torch.autograd.grad of the output's sum);
"autograd floor" is the same forward+backward of x * 2, the cost of autograd itself.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import torch  # noqa: E402

import common  # noqa: E402

CALLS = 50


def _stub_launches() -> None:
    """Make every Triton kernel launch a no-op (CPU timing of the Python path only)."""
    os.environ["TRITON_INTERPRET"] = "1"  # the ops accept CPU tensors for the Triton backend only under it
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    for cls in (InterpretedFunction, JITFunction):
        cls.run = lambda self, *args, **kwargs: None


def cases(device):
    from spikessm.ops import diag_scan, lif, s4d_lif, s4d_scan

    g = torch.Generator().manual_seed(0)
    B, L, H, N = 2, 8, 4, 4
    x = torch.randn(B, L, H, generator=g).to(device).requires_grad_()
    A = torch.polar(torch.full((H, N), 0.9), torch.rand(H, N, generator=g)).to(device).requires_grad_()
    Bm, C = (torch.randn(H, N, dtype=torch.complex64, generator=g).to(device).requires_grad_() for _ in range(2))
    D = torch.randn(H, generator=g).to(device).requires_grad_()
    a = torch.polar(torch.full((H,), 0.9), torch.rand(H, generator=g)).to(device).requires_grad_()
    b = torch.randn(B, L, H, dtype=torch.complex64, generator=g).to(device).requires_grad_()
    ssm = (x, A, Bm, C, D)
    kw = dict(backend="triton")
    beta, threshold = torch.full((H,), 0.9, device=device), torch.ones(H, device=device)
    return {
        "lif": (lambda *t: lif(*t, 0.9, 1.0, **kw)[0], (x,)),
        # What the eager path avoids: the same forward through its torch.library custom op (no argument checks).
        "lif custom op": (lambda t: torch.ops.spikessm.lif_triton_sequential_fwd(
            t, beta, threshold, None, "subtract", "atan", 2.0, detach_reset=False, save_membrane=True)[0], (x,)),
        "diag_scan": (lambda *t: diag_scan(*t, output_final_state=False, **kw)[0].real, (a, b)),
        "s4d_scan": (lambda *t: s4d_scan(*t, output_final_state=False, **kw)[0], ssm),
        "s4d_lif": (lambda *t: s4d_lif(*t, beta=0.9, threshold=1.0, **kw)[0], ssm),
        "autograd floor": (lambda t: t * 2, (x,)),
    }


def time_per_call(fn, device, repeats: int = 30) -> float:
    """Median over `repeats` runs of (wall time of CALLS calls + one synchronize) / CALLS, in microseconds."""
    for _ in range(5):
        fn()
    common.synchronize(device)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(CALLS):
            fn()
        common.synchronize(device)
        runs.append((time.perf_counter() - t0) / CALLS * 1e6)
    return statistics.median(runs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/overhead-<device-tag>.json)")
    args = p.parse_args(argv)
    device = common.pick_device(args.device)
    if device.type == "cpu":
        _stub_launches()
    rows = []
    for name, (op, inputs) in cases(device).items():
        detached = tuple(t.detach() for t in inputs)
        fwd = time_per_call(lambda op=op, detached=detached: op(*detached), device)
        fwd_bwd = time_per_call(lambda op=op, inputs=inputs: torch.autograd.grad(op(*inputs).sum(), inputs),
                                device)
        rows.append({"op": name, "fwd_us": fwd, "fwd+bwd_us": fwd_bwd})
        common.log(str(rows[-1]))
    mode = "real launches" if device.type == "cuda" else "kernel launches stubbed"
    print(f"host time per call, {mode}, B=2 L=8 H=4 N=4 | torch threads {torch.get_num_threads()}")
    print(common.format_table(rows, [(k, k) for k in rows[0]]))
    out_path = args.out or common.RESULTS_DIR / f"overhead-{common.device_tag(device)}.json"
    common.write_json_atomic(out_path, {"mode": mode, "env": common.environment(device), "rows": rows})
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
