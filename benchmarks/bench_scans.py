"""Microbenchmark of spikessm's scan ops, diag_scan and s4d_scan, forward and forward+backward.

    python benchmarks/bench_scans.py                    # full run on the default device (CUDA if present)
    python benchmarks/bench_scans.py --quick            # tiny smoke run (JSON goes to the temp dir)
    python benchmarks/bench_scans.py --lengths 1024 4096 --ops s4d_scan --out /tmp/s4d.json

Implementations, per op:
  triton    spikessm's Triton kernel (CUDA only; s4d_scan: the sequential kernel, algorithm="sequential")
  triton_chunked  s4d_scan only: the chunked Triton kernel of tl.dot products (algorithm="chunked"; CUDA only)
  torch     spikessm's PyTorch path (diag_scan: chunked scan; s4d_scan: 64-step chunks of batched matrix
            products and a diagonal scan across chunks)
  loop      the step-by-step references in spikessm/ops/<op>/naive.py (short lengths only: it is one Python step per t)
  fft_conv  s4d_scan only: the S4D convolution mode as S4/S4D code runs it today (below), no state output
spikessm's ops are called with output_final_state=False: every implementation is timed on its main output only.

Byte model (the minimum traffic of an ideal implementation; the same for every implementation of a shape, so
GB/s compares implementations on one scale). s = bytes per element of the state dtype.
  diag_scan, n = B*L*P, a_bytes = P*s (a time-invariant) or n*s (a time-varying):
    fwd      read a, b; write x, final state             a_bytes + 2*n*s + B*P*s
    bwd      read a, upstream grad of x, saved x;        2*a_bytes + 3*n*s
             write grad of b and of a
  s4d_scan, act = B*L*H*4 (one float32 (B, L, H) tensor), par = 3*H*N*8 + H*4 (A_bar, B_bar, C, D):
    fwd      read u, params; write y, final state        2*act + par + B*H*N*8
    bwd      read u, upstream grad of y, params;         3*act + 2*par
             write grad of u and of params
             (the (B, L, H, N) states are never counted: an ideal kernel recomputes them on chip)
  fwd+bwd counts fwd + bwd. The loss uses x (diag_scan) or y (s4d_scan) only; final_state gets no gradient.

Flop model (real flops; a complex multiply is 6, a complex add 2):
  diag_scan fwd: complex 8 per element per step (a*x + b), real 2.
  diag_scan bwd: 2x fwd (adjoint scan g_t = gx_t + conj(a) g_{t+1}, then da = g conj(x_{t-1})).
  s4d_scan fwd:  8*N per (b, t, h) (state update and readout Re(C x), the usual rough count).
  s4d_scan bwd:  3x fwd (recompute the states, adjoint scan, accumulate dA, dB, dC, du).
  These are for the recurrence. fft_conv (O(B H L log L + H N L)) and the chunked products (~2(T + 4N) per
  (b, t, h) forward) do a different amount of work, so their GFLOP/s are "recurrence-equivalent" and their
  x_floor can drop below 1.

Columns (JSON rows keep the raw inputs of every ratio):
  ms         median wall time of one call (fwd) or one forward + torch.autograd.grad (fwd+bwd)
  GB/s       bytes (model above) / time          GFLOP/s   flops (model above) / time
  x_floor    time / floor, floor = max(bytes / measured copy bandwidth, flops / peak fp32)
  x_vs_<I>   time / time of implementation <I> on the same shape and mode (< 1: faster than <I>)
  rel_err    max |out - out_torch| / max |out_torch| (fwd: the output; fwd+bwd: worst over the input grads)
"""
from __future__ import annotations

import argparse
import math
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import common  # noqa: E402
from spikessm.ops import diag_scan, s4d_scan  # noqa: E402
from spikessm.ops.diag_scan.naive import diag_scan_loop
from spikessm.ops.s4d_scan.naive import s4d_scan_loop  # noqa: E402

LENGTHS = (1024, 2048, 4096, 8192, 16384)
QUICK_LENGTHS = (128, 256)
MODES = ("fwd", "fwd+bwd")
# The step-by-step reference costs one Python iteration per step (and its autograd graph keeps every step's
# tensors), so it only runs at short lengths.
LOOP_MAX_LEN = {"fwd": 2048, "fwd+bwd": 1024}


# ----------------------------------------------------------------------------------------------------------
# The classic S4D convolution mode, as a comparison point for s4d_scan
# ----------------------------------------------------------------------------------------------------------


def s4d_fft_conv(u: torch.Tensor, A_bar: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor, D: torch.Tensor):
    """S4D convolution mode: y = causal_conv(u, K) + D u with K[h, k] = Re(sum_n C B_bar A_bar^k).

    This is how S4D's convolution mode is usually written: all (H, N, L) Vandermonde powers materialised as
    exp(k * dtA) in complex64 (here dtA = log A_bar, since the op takes A_bar already discretised), and the
    convolution done as a zero-padded FFT of length 2L. It returns no final state.

    Args:
        u: (B, L, H) float32. A_bar, B_bar, C: (H, N) complex64. D: (H,) float32.
    Returns:
        y: (B, L, H) float32.
    """
    L = u.shape[1]
    k = torch.arange(L, device=u.device, dtype=torch.float32)
    vandermonde = torch.exp(torch.log(A_bar)[..., None] * k)  # (H, N, L)
    K = torch.einsum("hn,hnl->hl", C * B_bar, vandermonde).real  # (H, L)
    n_fft = 2 * L  # zero padding turns the FFT's circular convolution into a causal one
    U = torch.fft.rfft(u, n=n_fft, dim=1)  # (B, L + 1, H)
    Kf = torch.fft.rfft(K, n=n_fft, dim=-1).transpose(0, 1)  # (L + 1, H)
    y = torch.fft.irfft(U * Kf, n=n_fft, dim=1)[:, :L]
    return y + D * u


# ----------------------------------------------------------------------------------------------------------
# Cases: shapes and inputs
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One shape family of one op, benchmarked over the lengths."""

    op: str  # "diag_scan" or "s4d_scan"
    name: str  # short label for tables
    dims: dict  # diag_scan: B, P; s4d_scan: B, H, N
    dtype: torch.dtype  # state dtype (diag_scan) or u's dtype (s4d_scan)
    time_varying: bool = False  # diag_scan: a is (B, L, P) instead of (P,)
    max_len: int | None = None  # skip longer lengths (only when the lengths are the defaults)
    note: str = ""


def cases_for(device: torch.device, quick: bool) -> list[Case]:
    """The shapes to run: GPU-sized on CUDA, reduced on the CPU so the whole run takes a few minutes."""
    if quick:
        return [
            Case("diag_scan", "c64 a(P)", {"B": 2, "P": 32}, torch.complex64),
            Case("diag_scan", "f32 a(B,L,P)", {"B": 2, "P": 32}, torch.float32, time_varying=True),
            Case("s4d_scan", "small", {"B": 2, "H": 16, "N": 16}, torch.float32),
        ]
    if device.type == "cuda":
        return [
            Case("diag_scan", "c64 a(P)", {"B": 8, "P": 1536}, torch.complex64, note="memory-bound S5-like scan"),
            Case("diag_scan", "f32 a(B,L,P)", {"B": 8, "P": 1536}, torch.float32, time_varying=True,
                 note="time-varying real decay (gated / selective recurrences)"),
            Case("s4d_scan", "target", {"B": 32, "H": 256, "N": 64}, torch.float32, note="target shape"),
            Case("s4d_scan", "batch1", {"B": 1, "H": 256, "N": 64}, torch.float32, note="small batch"),
        ]
    return [
        Case("diag_scan", "c64 a(P)", {"B": 4, "P": 256}, torch.complex64, note="CPU-reduced"),
        Case("diag_scan", "f32 a(B,L,P)", {"B": 4, "P": 256}, torch.float32, time_varying=True, note="CPU-reduced"),
        # The PyTorch path materialises (H, N, L) Vandermonde powers; on a small CPU L > 4096 takes too long.
        Case("s4d_scan", "cpu", {"B": 4, "H": 64, "N": 64}, torch.float32, max_len=4096, note="CPU-reduced"),
        Case("s4d_scan", "batch1", {"B": 1, "H": 64, "N": 64}, torch.float32, max_len=4096, note="CPU-reduced"),
    ]


def s4d_lin(shape, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D-Lin eigenvalues discretised by ZOH, with B = 1 (small, so built on the CPU generator).

    Lambda[n] = -1/2 + i pi n, dt log-uniform in [1e-3, 1e-1]: A_bar = exp(dt Lambda) lies inside the unit
    circle and decays slowly, as in a trained layer. B_bar = (A_bar - 1) / Lambda.
    Returns A_bar, B_bar: complex64 of `shape` (last axis = n).
    """
    dt = torch.exp(torch.empty(shape).uniform_(math.log(1e-3), math.log(1e-1), generator=gen))
    n = torch.arange(shape[-1], dtype=torch.float32).expand(shape)
    lam = torch.complex(torch.full(shape, -0.5), math.pi * n)
    A_bar = torch.exp(dt * lam)
    return A_bar, (A_bar - 1) / lam


def make_inputs(case: Case, L: int, device: torch.device, requires_grad: bool, seed: int = 0) -> dict:
    """Random inputs of one config, keyed by the op's argument names, on `device`.

    diag_scan: a (P,) complex64 (S4D-Lin A_bar) or (B, L, P) float32 uniform in [0.9, 1); b (B, L, P).
    s4d_scan: u (B, L, H) float32; A_bar, B_bar (S4D-Lin, ZOH), C (H, N) complex64; D (H,) float32.
    The (B, L, .) tensors are drawn on the device itself: drawing gigabytes on the CPU and copying them over
    would cost more than the benchmark.
    """
    cpu_gen = torch.Generator().manual_seed(seed)
    dev_gen = torch.Generator(device=device).manual_seed(seed)
    d = case.dims

    def big(*shape, dtype):
        return torch.randn(*shape, dtype=dtype, device=device, generator=dev_gen)

    if case.op == "diag_scan":
        B, P = d["B"], d["P"]
        if case.time_varying:
            a = torch.empty(B, L, P, dtype=case.dtype, device=device).uniform_(0.9, 1.0, generator=dev_gen)
        else:
            a = s4d_lin((P,), cpu_gen)[0].to(device, case.dtype)
        tensors = {"a": a, "b": big(B, L, P, dtype=case.dtype)}
    else:
        B, H, N = d["B"], d["H"], d["N"]
        A_bar, B_bar = s4d_lin((H, N), cpu_gen)
        C = torch.randn(H, N, dtype=torch.complex64, generator=cpu_gen) / math.sqrt(N)
        D = torch.randn(H, generator=cpu_gen)
        tensors = {"u": big(B, L, H, dtype=case.dtype), "A_bar": A_bar.to(device), "B_bar": B_bar.to(device),
                   "C": C.to(device), "D": D.to(device)}
    return {k: v.requires_grad_(requires_grad) for k, v in tensors.items()}


# ----------------------------------------------------------------------------------------------------------
# Implementations
# ----------------------------------------------------------------------------------------------------------


def implementations(case: Case, device: torch.device) -> dict[str, Callable[..., torch.Tensor]]:
    """name -> f(**inputs) returning the op's main output (x or y). 'torch' comes first: it is the reference."""
    impls: dict[str, Callable[..., torch.Tensor]] = {}
    if case.op == "diag_scan":
        impls["torch"] = lambda a, b: diag_scan(a, b, backend="torch", output_final_state=False)[0]
        if device.type == "cuda":
            impls["triton"] = lambda a, b: diag_scan(a, b, backend="triton", output_final_state=False)[0]
        impls["loop"] = lambda a, b: diag_scan_loop(a, b)[0]
    else:
        impls["torch"] = lambda u, A_bar, B_bar, C, D: s4d_scan(u, A_bar, B_bar, C, D, backend="torch",
                                                                output_final_state=False)[0]
        if device.type == "cuda":
            impls["triton"] = lambda u, A_bar, B_bar, C, D: s4d_scan(u, A_bar, B_bar, C, D, backend="triton",
                                                                     output_final_state=False)[0]
            impls["triton_chunked"] = lambda u, A_bar, B_bar, C, D: s4d_scan(
                u, A_bar, B_bar, C, D, backend="triton", algorithm="chunked", output_final_state=False)[0]
        impls["fft_conv"] = s4d_fft_conv
        impls["loop"] = lambda u, A_bar, B_bar, C, D: s4d_scan_loop(u, A_bar, B_bar, C, D)[0]
    return impls


def should_run(impl: str, mode: str, L: int) -> bool:
    return impl != "loop" or L <= LOOP_MAX_LEN[mode]


def make_call(impl_fn: Callable[..., torch.Tensor], inputs: dict, mode: str, grad_out: torch.Tensor | None):
    """The callable to time. fwd: a plain forward without autograd. fwd+bwd: forward, then gradients of
    <output, grad_out> with respect to every input (returned, so they can be checked)."""
    if mode == "fwd":

        def call():
            with torch.no_grad():
                return (impl_fn(**inputs),)

    else:
        wrt = list(inputs.values())

        def call():
            out = impl_fn(**inputs)
            return torch.autograd.grad(out, wrt, grad_out)

    return call


def rel_err(outs: tuple, refs: tuple) -> float:
    """Worst over the tensors of max |out - ref| / max |ref|."""
    worst = 0.0
    for o, r in zip(outs, refs):
        scale = r.abs().max().item() or 1.0
        worst = max(worst, (o - r).abs().max().item() / scale)
    return worst


# ----------------------------------------------------------------------------------------------------------
# Byte and flop models (see the module docstring)
# ----------------------------------------------------------------------------------------------------------


def bytes_model(case: Case, L: int, mode: str) -> int:
    d = case.dims
    if case.op == "diag_scan":
        B, P = d["B"], d["P"]
        s = torch.empty(0, dtype=case.dtype).element_size()
        n = B * L * P
        a_bytes = (n if case.time_varying else P) * s
        fwd = a_bytes + 2 * n * s + B * P * s
        bwd = 2 * a_bytes + 3 * n * s
    else:
        B, H, N = d["B"], d["H"], d["N"]
        act = B * L * H * 4
        par = 3 * H * N * 8 + H * 4
        fwd = 2 * act + par + B * H * N * 8
        bwd = 3 * act + 2 * par
    return fwd if mode == "fwd" else fwd + bwd


def flops_model(case: Case, L: int, mode: str) -> int:
    d = case.dims
    if case.op == "diag_scan":
        fwd = d["B"] * L * d["P"] * (8 if case.dtype.is_complex else 2)
        bwd_factor = 2
    else:
        fwd = 8 * d["N"] * d["B"] * L * d["H"]
        bwd_factor = 3
    return fwd if mode == "fwd" else fwd * (1 + bwd_factor)


MODEL_NOTES = {
    "bytes": "ideal traffic, each input read once and each output written once; fwd+bwd = fwd + bwd. "
             "diag_scan fwd: a + 2*n*s + B*P*s, bwd: 2*a + 3*n*s (n = B*L*P, s = state itemsize, "
             "a = P*s or n*s). s4d_scan fwd: 2*act + par + B*H*N*8, bwd: 3*act + 2*par "
             "(act = B*L*H*4, par = 3*H*N*8 + H*4)",
    "flops": "diag_scan fwd: 8 (complex) or 2 (real) per element per step, bwd = 2x fwd; "
             "s4d_scan fwd: 8*N per (b, t, h), bwd = 3x fwd",
    "floor_ms": "max(bytes / copy bandwidth, flops / peak fp32)",
    "x_vs_<impl>": "this row's median_ms / <impl>'s median_ms, same shape and mode",
    "rel_err": "max|out - out_torch| / max|out_torch|; fwd+bwd: worst over the input gradients",
    "others_busy": "share of all cores' time other processes used during the timed runs (contention)",
}


def shape_of(case: Case, L: int) -> dict:
    d = case.dims
    if case.op == "diag_scan":
        return {"B": d["B"], "L": L, "P": d["P"]}
    return {"B": d["B"], "L": L, "H": d["H"], "N": d["N"]}


# ----------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Settings:
    device: torch.device
    lengths: list[int]
    lengths_given: bool
    target_s: float
    copy_bandwidth: float  # bytes/s
    peak_flops: float  # FLOP/s
    rows: list = field(default_factory=list)


def run_group(case: Case, L: int, mode: str, cfg: Settings) -> list[dict]:
    """All implementations of one (case, length, mode); ratios between them are filled in at the end."""
    device = cfg.device
    inputs = make_inputs(case, L, device, requires_grad=(mode == "fwd+bwd"))
    impls = implementations(case, device)
    grad_out = None
    if mode == "fwd+bwd":  # the upstream gradient: shaped like x (= b) or y (= u)
        like = inputs["b"] if case.op == "diag_scan" else inputs["u"]
        gen = torch.Generator(device=device).manual_seed(1)
        grad_out = torch.randn(like.shape, dtype=like.dtype, device=device, generator=gen)
    nbytes, flops = bytes_model(case, L, mode), flops_model(case, L, mode)
    floor = common.floor_ms(nbytes, flops, cfg.copy_bandwidth, cfg.peak_flops)

    rows, ref = [], None
    for impl, fn in impls.items():
        if not should_run(impl, mode, L):
            continue
        row = {"op": case.op, "case": case.name, "impl": impl, "mode": mode, **shape_of(case, L),
               "dtype": str(case.dtype).removeprefix("torch.")}
        if case.op == "diag_scan":
            row["a"] = "time-varying" if case.time_varying else "time-invariant"
        row.update({"bytes": nbytes, "flops": flops, "floor_ms": floor})
        call = make_call(fn, inputs, mode, grad_out)
        try:
            outs = call()  # also the first warm-up run
            if impl == "torch":
                ref = outs
            row["rel_err"] = rel_err(outs, ref) if (ref is not None and impl != "torch") else None
            del outs
            # The call above was the first warm-up; on the CPU nothing more needs warming.
            timing = common.benchmark(call, device, target_s=cfg.target_s,
                                      warmup=0 if device.type == "cpu" else None)
        except Exception as exc:  # keep going: one failing config (e.g. out of memory) should not lose the run
            row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            common.log(f"  ! {case.op} {case.name} L={L} {mode} {impl}: {row['error']}")
            if not isinstance(exc, torch.cuda.OutOfMemoryError):
                traceback.print_exc(file=sys.stderr)
            rows.append(row)
            common.free_memory(device)
            continue
        ms = timing.median_ms
        row.update({
            "median_ms": ms, "min_ms": timing.min_ms, "repeats": timing.repeats, "others_busy": timing.others_busy,
            "GBps": nbytes / (ms * 1e-3) / 1e9, "GFLOPs": flops / (ms * 1e-3) / 1e9, "x_floor": ms / floor,
        })
        common.log(f"  {case.op:9s} {case.name:13s} L={L:<6d} {mode:7s} {impl:9s} {ms:10.3f} ms")
        rows.append(row)
    del ref, inputs
    common.free_memory(device)

    timed = {r["impl"]: r["median_ms"] for r in rows if "median_ms" in r}
    for row in rows:
        for other, other_ms in timed.items():
            if other != row["impl"] and "median_ms" in row:
                row[f"x_vs_{other}"] = row["median_ms"] / other_ms
    return rows


def lengths_for(case: Case, cfg: Settings) -> list[int]:
    if cfg.lengths_given or case.max_len is None:
        return cfg.lengths
    return [L for L in cfg.lengths if L <= case.max_len]


def print_tables(rows: list[dict], impl_order: list[str]) -> None:
    for op, dim_cols in (("diag_scan", [("P", "P")]), ("s4d_scan", [("H", "H"), ("N", "N")])):
        op_rows = [r for r in rows if r["op"] == op]
        if not op_rows:
            continue
        present = [i for i in impl_order if any(r["impl"] == i for r in op_rows)]
        columns = [("case", "case"), ("impl", "impl"), ("mode", "mode"), ("B", "B"), ("L", "L"), *dim_cols,
                   ("dtype", "dtype"), ("ms", "median_ms"), ("GB/s", "GBps"), ("GFLOP/s", "GFLOPs"),
                   ("x_floor", "x_floor")]
        columns += [(f"x_vs_{i}", f"x_vs_{i}") for i in present]
        columns += [("rel_err", "rel_err"), ("others_busy", "others_busy"), ("error", "error")]
        if not any("error" in r for r in op_rows):
            columns.pop()
        print(f"\n== {op} ==")
        print(common.format_table(op_rows, columns))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", help=f"sequence lengths (default {' '.join(map(str, LENGTHS))};"
                   " given explicitly, they also override the CPU length caps)")
    p.add_argument("--quick", action="store_true", help="tiny shapes and lengths, short timings: a smoke run")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/scans-<device-tag>.json; "
                   "with --quick, a file in the temp dir)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--ops", nargs="+", choices=("diag_scan", "s4d_scan"), default=["diag_scan", "s4d_scan"])
    p.add_argument("--target-seconds", type=float, help="timed runs per row (default 1.0; 0.05 with --quick)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = common.pick_device(args.device)
    out = common.output_path(args.out, args.quick, "scans", device)

    common.log(f"device: {common.device_name(device)} ({device}); torch threads: {torch.get_num_threads()}")
    busy_before = common.check_idle(device)
    copy_bw = common.measure_copy_bandwidth(device, target_s=0.2 if args.quick else 0.5)
    peak, peak_source = common.peak_fp32(device, quick=args.quick)
    common.log(f"copy bandwidth: {copy_bw / 1e9:.1f} GB/s; peak fp32: {peak / 1e9:.0f} GFLOP/s ({peak_source})")

    cfg = Settings(
        device=device,
        lengths=list(args.lengths or (QUICK_LENGTHS if args.quick else LENGTHS)),
        lengths_given=args.lengths is not None,
        target_s=args.target_seconds or (0.05 if args.quick else 1.0),
        copy_bandwidth=copy_bw,
        peak_flops=peak,
    )
    result = {
        "benchmark": "scans",
        "quick": args.quick,
        "complete": False,
        "env": {**common.environment(device), "cpu_busy_before": busy_before},
        "copy_bandwidth_GBps": copy_bw / 1e9,
        "peak_fp32_GFLOPs": peak / 1e9,
        "peak_source": peak_source,
        "timing": (f"median of >= 3 runs after warm-up, ~{cfg.target_s:g} s of timed runs per row; "
                   + ("CUDA events, L2 flushed before each run" if device.type == "cuda" else "time.perf_counter")),
        "models": MODEL_NOTES,
        "cases": [],
        "rows": cfg.rows,
    }
    impl_order = ["triton", "triton_chunked", "torch", "fft_conv", "loop"]
    for case in cases_for(device, args.quick):
        if case.op not in args.ops:
            continue
        lengths = lengths_for(case, cfg)
        result["cases"].append({"op": case.op, "case": case.name, **case.dims,
                                "dtype": str(case.dtype).removeprefix("torch."),
                                "time_varying": case.time_varying, "lengths": lengths, "note": case.note})
        for L in lengths:
            for mode in MODES:
                cfg.rows.extend(run_group(case, L, mode, cfg))
        common.write_json_atomic(out, result)  # partial results survive a crash in a later case

    result["complete"] = True
    if device.type == "cpu":
        result["env"]["cpu_busy_after"] = common.cpu_busy_fraction()
    common.write_json_atomic(out, result)
    print(f"device: {common.device_name(device)} | copy bandwidth {copy_bw / 1e9:.1f} GB/s | "
          f"peak fp32 {peak / 1e9:.0f} GFLOP/s ({peak_source}) | torch threads {torch.get_num_threads()}")
    print_tables(cfg.rows, impl_order)
    if device.type == "cpu" and (note := common.contention_note(cfg.rows)):
        print("\n" + note)
    errors = [r for r in cfg.rows if "error" in r]
    print(f"\nwrote {out} ({len(cfg.rows)} rows{f', {len(errors)} failed' if errors else ''})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
