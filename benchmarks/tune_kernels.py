"""Times the Triton kernels over their launch parameters on a GPU, to choose the defaults.

    python benchmarks/tune_kernels.py --out /tmp/tune.json

    python benchmarks/tune_kernels.py --out /tmp/tune.json --only diag_scan

lif: the forward's and, on its own, the backward's launch plans (kernels/lif.py's plan), per shape in two
phases: chunk length x number of time segments, then channel block x pipeline depth (stages) at the fastest of
those. Each row checks the plan against the default plan's spikes (equal) or input gradient (rel_err).

s4d: states per thread x output tile length T (kernels/s4d_scan/sequential.py) for s4d_scan and s4d_lif, forward and
forward+backward at B=32, H=256, N=64. Each row checks the plan against the default plan (y's relative error or
the share of spikes that differ, and the worst gradient's relative error).

s4d_chunked: chunk length x sequences per program x warps (kernels/s4d_scan/chunked.py) for
s4d_scan(algorithm="chunked"), forward and forward+backward at B=32, H=256, N=64, checked against the default
plan as for s4d; then s4d_lif(algorithm="chunked") at the default plan and at s4d_scan's fastest.

diag_scan: (BLOCK_T, BLOCK_P, num_warps) of each pass at B=8, L=4096, P=1536 (S5-like), then pipeline depths
(stages) at each pass's fastest plan; each pass timed on its own, with its fraction of copy bandwidth and its
agreement with the default plan.

Not a results benchmark (the bench_*.py scripts are).
"""
from __future__ import annotations

import argparse
import functools
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import common  # noqa: E402
from spikessm.kernels import lif as kernels  # noqa: E402

SHAPES = [(32, 1024, 256), (32, 4096, 256), (1, 16384, 128), (8, 4096, 64)]
CHUNKS = (8, 16, 32)
LIF_BWD_CHUNKS = (4, 8, 16)
SEGMENTS = (None, 1, 2, 4, 8, 16, 32, 64)
LIF_BLOCKS = (32, 64, 128)
LIF_STAGES = (1, 2, 3, 4, 6)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--target-seconds", type=float, default=0.15)
    p.add_argument("--only", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    args = p.parse_args(argv)
    device = common.pick_device("cuda")
    copy_bw = common.measure_copy_bandwidth(device)
    result = {"copy_bandwidth_GBps": copy_bw / 1e9, "env": common.environment(device)}
    for name in args.only:
        rows = SWEEPS[name](device, copy_bw, args.target_seconds)
        result[name] = rows
        print(f"== {name}")
        keys = list(dict.fromkeys(k for row in rows for k in row))  # rows of one sweep may differ in keys
        print(common.format_table(rows, [(k, k) for k in keys]))
        common.write_json_atomic(args.out, result)  # what has run so far survives a timeout
    return 0


def lif_plans(backward: bool):
    """Phase 1 of one pass's sweep, (chunk, block_h, segments, stages): every chunk length x segment count at
    the default channel block and pipeline depth."""
    chunks = LIF_BWD_CHUNKS if backward else CHUNKS
    stages = kernels.BWD_STAGES if backward else kernels.STAGES
    for chunk, segments in itertools.product(chunks, SEGMENTS):
        yield chunk, None, segments, stages


def lif_refinements(best: dict, backward: bool):
    """Phase 2: around phase 1's fastest (chunk, segments), every channel block x pipeline depth."""
    for block_h, stages in itertools.product(LIF_BLOCKS, LIF_STAGES):
        if (block_h, stages) != (best["block_h"], best["stages"]):
            yield best["chunk"], block_h, best["segments_arg"], stages


def tune_lif(device, copy_bw, target_s):
    """Forward plans (bytes: x read, spikes written) and backward plans (bytes: membrane and spike gradient
    read, dx written), each pass timed on its own, in two phases per shape: chunk x segments, then channel block
    x pipeline depth at the fastest of those."""
    rows = []
    for shape in SHAPES:
        case = _lif_case(*shape, device)
        for backward in (False, True):
            run = functools.partial(_time_lif_plan, case, backward, device, copy_bw, target_s)
            phase1 = [run(*p) for p in lif_plans(backward)]
            timed = [r for r in phase1 if r is not None and "ms" in r]
            phase2 = [run(*p) for p in lif_refinements(min(timed, key=lambda r: r["ms"]), backward)] if timed else []
            rows += [r for r in phase1 + phase2 if r is not None]
    for row in rows:
        del row["segments_arg"]
    return rows


def _lif_case(B, L, H, device):
    """Inputs of one tuning shape and the default plans' spikes, membrane and input gradient."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, L, H, generator=g).to(device)
    beta = (0.5 + 0.4 * torch.rand(H, generator=g)).to(device)
    th = (0.5 + torch.rand(H, generator=g)).to(device)
    gs = torch.randn(B, L, H, generator=g).to(device)
    ref_s, ref_m, _ = kernels.lif_fwd(x, beta, th, None, "subtract")
    ref_dx = kernels.lif_bwd(beta, th, None, ref_m, gs, None, "subtract", "atan", 2.0, detach_reset=False,
                             x_dtype=x.dtype)[0]
    return dict(x=x, beta=beta, th=th, gs=gs, ref_s=ref_s, ref_m=ref_m, ref_dx=ref_dx)


def _time_lif_plan(case, backward, device, copy_bw, target_s, chunk, block_h, segments, stages):
    """One plan's row, or None when the sequence is too short for that many segments of whole chunks."""
    x, beta, th = case["x"], case["beta"], case["th"]
    B, L, H = x.shape
    n = x.numel()
    plan = kernels.plan(B, L, H, segments, chunk, backward, block_h)
    if segments is not None and plan[2] != segments:
        return None
    row = {"B": B, "L": L, "H": H, "pass": "bwd" if backward else "fwd", "chunk": chunk, "block_h": plan[0],
           "stages": stages, "segments": segments or "auto", "n_seg": plan[2], "segments_arg": segments}
    try:
        if backward:
            bwd = functools.partial(kernels.lif_bwd, beta, th, None, case["ref_m"], case["gs"], None, "subtract",
                                    "atan", 2.0, detach_reset=False, x_dtype=x.dtype, segments=segments,
                                    chunk=chunk, block_h=block_h, stages=stages)
            dx = bwd()[0]
            t = common.benchmark(bwd, device, target_s=target_s)
            ref_dx = case["ref_dx"]
            row.update(ms=t.median_ms, frac=12 * n / (t.median_ms * 1e-3) / copy_bw,
                       rel_err_dx=((dx - ref_dx).abs().max() / ref_dx.abs().max()).item())
        else:
            fwd, fwd_saving = (functools.partial(kernels.lif_fwd, x, beta, th, None, "subtract", save_membrane=save,
                                                 segments=segments, chunk=chunk, block_h=block_h, stages=stages)
                               for save in (False, True))
            s = fwd()[0]
            t = common.benchmark(fwd, device, target_s=target_s)
            t_train = common.benchmark(fwd_saving, device, target_s=target_s)
            row.update(ms=t.median_ms, frac=8 * n / (t.median_ms * 1e-3) / copy_bw,
                       ms_saving_membrane=t_train.median_ms, spikes_equal=bool(torch.equal(s, case["ref_s"])))
    except Exception as e:  # a plan that does not compile or run is a finding, not a crash
        row["error"] = str(e).splitlines()[0][:80]
    common.log(str(row))
    return row


S4D_SHAPE = (32, 4096, 256, 64)  # B, L, H, N: the target shape of docs/performance.md


def _s4d_inputs(device):
    """[u, A_bar, B_bar, C, D] requiring gradients, and an output gradient, at S4D_SHAPE."""
    B, L, H, N = S4D_SHAPE
    g = torch.Generator().manual_seed(0)
    A = torch.polar(0.9 + 0.1 * torch.rand(H, N, generator=g), torch.rand(H, N, generator=g) * 3).to(device)
    Bm = torch.randn(H, N, dtype=torch.complex64, generator=g).to(device)
    C = (torch.randn(H, N, dtype=torch.complex64, generator=g) / N ** 0.5).to(device)
    D = torch.randn(H, generator=g).to(device)
    u = torch.randn(B, L, H, generator=g).to(device)
    gy = torch.randn(B, L, H, generator=g).to(device)
    return [t.requires_grad_() for t in (u, A, Bm, C, D)], gy


class _S4DPlans:
    """Times s4d_scan and s4d_lif on the Triton kernels of one algorithm under launch plans, each against the
    default plan's output and gradients at S4D_SHAPE. A plan sets constants of the kernel module, which the
    launchers read at every call, and is undone after its row."""

    OPS = ("s4d_scan", "s4d_lif")

    def __init__(self, module, algorithm: str, device, target_s):
        self.module, self.algorithm, self.device, self.target_s = module, algorithm, device, target_s
        self.params, self.gy = _s4d_inputs(device)
        self.reference = {op: self.fwd_bwd(op) for op in self.OPS}

    def call(self, op):
        from spikessm.ops import s4d_lif, s4d_scan

        if op == "s4d_scan":
            return s4d_scan(*self.params, output_final_state=False, backend="triton", algorithm=self.algorithm)[0]
        return s4d_lif(*self.params, beta=0.9, threshold=1.0, backend="triton", algorithm=self.algorithm)[0]

    def fwd_bwd(self, op):
        out = self.call(op)
        return out.detach(), torch.autograd.grad(out, self.params, self.gy)

    def row(self, op, plan: dict, labels: dict | None = None) -> dict:
        """One row: plan maps module constants to values; labels name them in the row (default: as they are)."""
        row = {"op": op, **(labels if labels is not None else plan)}
        defaults = {name: getattr(self.module, name) for name in plan}
        for name, value in plan.items():
            setattr(self.module, name, value)
        try:
            out, grads = self.fwd_bwd(op)
            with torch.no_grad():
                t_f = common.benchmark(functools.partial(self.call, op), self.device, target_s=self.target_s)
            t_fb = common.benchmark(functools.partial(self.fwd_bwd, op), self.device, target_s=self.target_s)
        except Exception as e:  # a configuration that does not compile is a finding, not a crash
            return dict(row, error=str(e).splitlines()[0][:80])
        finally:
            for name, value in defaults.items():
                setattr(self.module, name, value)
        ref_out, ref_grads = self.reference[op]
        # Spikes may flip where the membrane is within rounding of the threshold: report the share that differ.
        agree = ({"rel_err_y": (out - ref_out).abs().max().item() / ref_out.abs().max().item()} if op == "s4d_scan"
                 else {"spikes_differ": (out != ref_out).float().mean().item()})
        rel_grad = max((d - r).abs().max().item() / r.abs().max().item() for d, r in zip(grads, ref_grads))
        row = dict(row, fwd_ms=t_f.median_ms, fwd_bwd_ms=t_fb.median_ms, **agree, rel_err_grads=rel_grad)
        common.log(str(row))
        return row


def tune_s4d(device, copy_bw, target_s):
    from spikessm.kernels.s4d_scan import sequential as ssm_kernels

    plans = _S4DPlans(ssm_kernels, "sequential", device, target_s)
    return [plans.row(op, {"STATES_PER_THREAD": per_thread, "T": tile},
                      {"states_per_thread": per_thread, "T": tile})
            for op, per_thread, tile in itertools.product(_S4DPlans.OPS, (4, 8, 16), (8, 16))]


CHUNKED_PLANS = list(itertools.product((16, 32, 64), (16, 32, 64), (4, 8)))  # (CHUNK, MAX_BLOCK_B, NUM_WARPS)


def tune_s4d_chunked(device, copy_bw, target_s):
    """s4d_scan at every plan of CHUNKED_PLANS; then s4d_lif (the LIF fused into the same kernel) at the default
    plan and at s4d_scan's fastest forward+backward (each plan compiles anew: a full s4d_lif sweep would double
    the sweep's time)."""
    from spikessm.kernels.s4d_scan import chunked as chunked_kernels

    names = ("CHUNK", "MAX_BLOCK_B", "NUM_WARPS")
    plans = _S4DPlans(chunked_kernels, "chunked", device, target_s)
    rows = [plans.row("s4d_scan", dict(zip(names, plan))) for plan in CHUNKED_PLANS]
    defaults = tuple(getattr(chunked_kernels, n) for n in names)
    timed = [r for r in rows if "fwd_bwd_ms" in r]
    fastest = tuple(min(timed, key=lambda r: r["fwd_bwd_ms"])[n] for n in names) if timed else defaults
    rows += [plans.row("s4d_lif", dict(zip(names, plan))) for plan in dict.fromkeys((defaults, fastest))]
    return rows


# (BLOCK_T, BLOCK_P, num_warps): a chunk's steps in one thread (BLOCK_P x element bytes = 512 x warps) at three
# chunk lengths, two warps, and the spread plans (steps over lanes and warps) real data uses by default.
DIAG_SHAPE = (8, 4096, 1536)  # B, L, P
DIAG_STAGES = (2, 3, 4)
DIAG_PLANS = {
    "complex64": [(8, 64, 1), (16, 64, 1), (32, 64, 1), (16, 128, 2), (16, 32, 1), (32, 16, 4)],
    "float32": [(8, 128, 1), (16, 128, 1), (16, 64, 1), (32, 64, 1), (32, 16, 2), (32, 32, 4)],
}


def tune_diag_scan(device, copy_bw, target_s):
    """Per case: every plan of DIAG_PLANS as a plain loop, then deeper pipelines at each pass's fastest plan."""
    B, L, P = DIAG_SHAPE
    rows = []
    for dtype_name, time_varying in (("complex64", False), ("complex64", True), ("float32", True)):
        run = functools.partial(_time_diag_plan, _diag_case(B, L, P, getattr(torch, dtype_name), time_varying, device),
                                device, copy_bw, target_s)
        plans = DIAG_PLANS[dtype_name]
        phase1 = [run(plan, 1) for plan in plans]
        timed = [(plan, r) for plan, r in zip(plans, phase1) if "fwd_ms" in r]
        best = {min(timed, key=lambda pr: pr[1][key])[0] for key in ("fwd_ms", "bwd_ms")} if timed else set()
        rows += phase1 + [run(plan, stages) for plan in sorted(best) for stages in DIAG_STAGES]
    return rows


def _diag_case(B, L, P, dtype, time_varying, device):
    """Inputs of one diag_scan case and the default plans' x and db."""
    from spikessm.kernels import diag_scan as kernels

    g = torch.Generator().manual_seed(0)
    a_shape = (B, L, P) if time_varying else (P,)
    a = (0.9 + 0.1 * torch.rand(a_shape, generator=g)).to(device)
    b = torch.randn(B, L, P, generator=g).to(device)
    gx = torch.randn(B, L, P, generator=g).to(device)
    if dtype.is_complex:
        a = torch.polar(a, torch.rand(a_shape, generator=g).to(device) * 3)
        b, gx = torch.complex(b, b.flip(1)), torch.complex(gx, gx.flip(1))
    x_ref, _ = kernels.diag_scan_fwd(a, b, None, reverse=False)
    db_ref = kernels.diag_scan_bwd(a, x_ref, None, gx, None, reverse=False)[1]
    return dict(a=a, b=b, gx=gx, x_ref=x_ref, db_ref=db_ref, dtype=dtype, time_varying=time_varying)


def _time_diag_plan(case, device, copy_bw, target_s, plan, stages):
    """One (plan, stages) row: each pass timed on its own, its fraction of copy bandwidth, and its agreement with
    the default plan."""
    from spikessm.kernels import diag_scan as kernels

    a, b, gx, x_ref, db_ref = (case[k] for k in ("a", "b", "gx", "x_ref", "db_ref"))
    time_varying = case["time_varying"]
    n, s = b.numel(), case["dtype"].itemsize
    fwd_bytes = (2 + time_varying) * n * s
    bwd_bytes = (3 + 2 * time_varying) * n * s
    row = {"dtype": str(case["dtype"]).removeprefix("torch."), "a": "(B,L,P)" if time_varying else "(P,)",
           "plan": str(plan), "stages": stages}
    fwd = functools.partial(kernels.diag_scan_fwd, a, b, None, reverse=False, plan=plan, stages=stages)
    bwd = functools.partial(kernels.diag_scan_bwd, a, x_ref, None, gx, None, reverse=False, plan=plan, stages=stages)
    try:
        x, db = fwd()[0], bwd()[1]
        t_f = common.benchmark(fwd, device, target_s=target_s)
        t_b = common.benchmark(bwd, device, target_s=target_s)
    except Exception as e:  # a plan that does not compile is a finding, not a crash
        row["error"] = str(e).splitlines()[0][:80]
        common.log(str(row))
        return row
    row.update(fwd_ms=t_f.median_ms, fwd_frac=fwd_bytes / (t_f.median_ms * 1e-3) / copy_bw,
               bwd_ms=t_b.median_ms, bwd_frac=bwd_bytes / (t_b.median_ms * 1e-3) / copy_bw,
               rel_err_x=((x - x_ref).abs().max() / x_ref.abs().max()).item(),
               rel_err_db=((db - db_ref).abs().max() / db_ref.abs().max()).item())
    common.log(str(row))
    return row


SWEEPS = {"lif": tune_lif, "s4d": tune_s4d, "s4d_chunked": tune_s4d_chunked, "diag_scan": tune_diag_scan}


if __name__ == "__main__":
    sys.exit(main())
