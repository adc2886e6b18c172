"""The headline rows of every op, in one summary table, beside the targets the library is held to.

    python benchmarks/headline.py --out results/headline.json      # CUDA: B=32, L=4096, H=256, N=64 (fp32)
    TRITON_INTERPRET=1 python benchmarks/headline.py --quick       # CPU rehearsal: tiny shapes, Triton interpreted

Rows (fwd+bwd unless marked fwd; each timed as in common.benchmark: median of runs with a cold L2 on CUDA):
  s4d_scan  sequential kernel, chunked kernel, the PyTorch path, the FFT convolution (bench_scans.s4d_fft_conv)
  s4d_lif   fused sequential, fused chunked, the PyTorch path, s4d_scan + lif unfused (both algorithms), and the
            core paper's path: FFT convolution then the PyTorch LIF loop (autograd over time)
  lif       fwd and fwd+bwd at L = 1k / 4k / 16k, B=32, H=256, against copy bandwidth
  rf        fwd+bwd at B=32, L=4096, H=256: the sequential kernel (one branch, subtract reset; D-RF's 4 branches with
            the adaptive threshold), PRF's reset "none" on the parallel algorithm (diag_scan), the PyTorch path;
            against copy bandwidth on lif's byte model and beside lif's fwd+bwd at the same shape (no target yet)
  diag_scan complex64 time-invariant a and float32 time-varying a, B=8, P=1536, L=4096, against copy bandwidth

Targets: s4d_scan fwd+bwd >= 1.5x the FFT convolution; s4d_lif fused fwd+bwd >= 20x the paper's path and >= 1.3x
the unfused ops of the same algorithm; lif and diag_scan >= 70% of copy bandwidth. With --quick the shapes are
tiny and every "met" column is meaningless: the run only proves that every row executes.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` and `bench_scans` live next to this file

import common  # noqa: E402
from bench_scans import s4d_fft_conv, s4d_lin  # noqa: E402
from spikessm.ops import diag_scan, lif, rf, s4d_lif, s4d_scan  # noqa: E402
from spikessm.ops.lif.naive import lif_loop  # noqa: E402

BETA, THRESHOLD = 0.9, 1.0
# Under Triton's interpreter the kernels run on CPU tensors: the rehearsal times every row there too.
TRITON_ON_CPU = os.environ.get("TRITON_INTERPRET") == "1"
BANDWIDTH_TARGET = 0.70

FULL = {"s4d": (32, 4096, 256, 64), "lif": (32, 256, (1024, 4096, 16384)), "diag": (8, 1536, 4096),
        "rf": (32, 4096, 256)}
QUICK = {"s4d": (2, 80, 16, 16), "lif": (2, 16, (40, 72)), "diag": (2, 32, 96), "rf": (2, 72, 16)}


def s4d_inputs(B, L, H, N, device, gen):
    A_bar, B_bar = s4d_lin((H, N), gen)
    C = torch.randn(H, N, dtype=torch.complex64, generator=gen) / math.sqrt(N)
    D = torch.randn(H, generator=gen)
    u = torch.randn(B, L, H, generator=gen)
    return [t.to(device) for t in (u, A_bar, B_bar, C, D)]


def s4d_scan_impls(device):
    def scan(backend, algorithm):
        return lambda u, A, B, C, D: s4d_scan(u, A, B, C, D, backend=backend, algorithm=algorithm,
                                              output_final_state=False).output
    impls = {"PyTorch path": scan("torch", "chunked"), "FFT convolution": s4d_fft_conv}
    if device.type == "cuda" or TRITON_ON_CPU:
        impls = {"sequential kernel": scan("triton", "sequential"), "chunked kernel": scan("triton", "chunked"),
                 **impls}
    return impls


def s4d_lif_impls(device):
    def fused(backend, algorithm):
        return lambda u, A, B, C, D: s4d_lif(u, A, B, C, D, beta=BETA, threshold=THRESHOLD, backend=backend,
                                             algorithm=algorithm, output_final_state=False).output

    def unfused(algorithm):
        def run(u, A, B, C, D):
            y = s4d_scan(u, A, B, C, D, backend="triton", algorithm=algorithm, output_final_state=False).output
            return lif(y, BETA, THRESHOLD, backend="triton", output_final_state=False).output
        return run

    def paper(u, A, B, C, D):
        return lif_loop(s4d_fft_conv(u, A, B, C, D), BETA, THRESHOLD)[0]

    impls = {"PyTorch path": fused("torch", "chunked"), "paper: FFT + LIF loop": paper}
    if device.type == "cuda" or TRITON_ON_CPU:
        impls = {"fused sequential": fused("triton", "sequential"), "fused chunked": fused("triton", "chunked"),
                 "scan + lif (sequential)": unfused("sequential"), "scan + lif (chunked)": unfused("chunked"),
                 **impls}
    return impls


def time_fwd_bwd(fn, inputs, grad, device, target_s):
    params = [t.clone().requires_grad_() for t in inputs]

    def call():
        out = fn(*params)
        torch.autograd.grad(out, params, grad)
        return out

    out = call().detach()
    return common.benchmark(call, device, target_s=target_s), out


def time_fwd(fn, inputs, device, target_s):
    def call():
        with torch.no_grad():
            return fn(*inputs)

    return common.benchmark(call, device, target_s=target_s), call()


def ssm_rows(op, impls, shape, device, gen, target_s):
    B, L, H, N = shape
    inputs = s4d_inputs(B, L, H, N, device, gen)
    grad = torch.randn(B, L, H, generator=gen).to(device)
    rows, outs = [], {}
    for impl, fn in impls.items():
        try:
            t, outs[impl] = time_fwd_bwd(fn, inputs, grad, device, target_s)
        except torch.OutOfMemoryError as e:
            rows.append({"op": op, "impl": impl, "mode": "fwd+bwd", "shape": f"B={B} L={L} H={H} N={N}",
                         "error": str(e).splitlines()[0]})
            continue
        finally:
            common.free_memory(device)
        common.log(f"  {op:9s} {impl:26s} {t.median_ms:10.3f} ms")
        rows.append({"op": op, "impl": impl, "mode": "fwd+bwd", "shape": f"B={B} L={L} H={H} N={N}",
                     "median_ms": t.median_ms, "min_ms": t.min_ms, "repeats": t.repeats})
    reference = outs.get("PyTorch path")
    for r in rows:
        if reference is not None and r["impl"] in outs:
            out = outs[r["impl"]]
            if op == "s4d_lif":  # spikes can differ only where a membrane sits within rounding of the threshold
                r["agreement"] = (out == reference).float().mean().item()
            else:
                r["rel_err"] = ((out - reference).abs().max() / reference.abs().max()).item()
    return rows


def bandwidth_rows(copy_bw, device, gen, target_s, sizes):
    backend = "triton" if device.type == "cuda" or TRITON_ON_CPU else "torch"
    rows = []
    B, H, lengths = sizes["lif"]
    for L in lengths:
        x = torch.randn(B, L, H, generator=gen).to(device)
        beta = torch.full((H,), BETA, device=device)
        threshold = torch.full((H,), THRESHOLD, device=device)
        grad = torch.randn(B, L, H, generator=gen).to(device)

        def run(x, beta, threshold):
            return lif(x, beta, threshold, backend=backend, output_final_state=False).output

        n = B * L * H
        for mode, nbytes in (("fwd", 8 * n), ("fwd+bwd", 20 * n)):
            t = (time_fwd(run, [x, beta, threshold], device, target_s)[0] if mode == "fwd"
                 else time_fwd_bwd(run, [x, beta, threshold], grad, device, target_s)[0])
            rows.append(_bandwidth_row("lif", backend, mode, f"B={B} L={L} H={H}", t, nbytes, copy_bw))
            common.free_memory(device)
    B, P, L = sizes["diag"]
    for label, dtype, time_varying in (("complex64, a (P,)", torch.complex64, False),
                                       ("float32, a (B, L, P)", torch.float32, True)):
        s = torch.empty(0, dtype=dtype).element_size()
        n = B * L * P
        a_bytes = (n if time_varying else P) * s
        if time_varying:
            a = (0.9 + 0.1 * torch.rand(B, L, P, generator=gen)).to(device)
        else:
            a = s4d_lin((P,), gen)[0].to(device)
        b = torch.randn(B, L, P, dtype=dtype, generator=gen).to(device)
        grad = torch.randn(B, L, P, dtype=dtype, generator=gen).to(device)

        def run(a, b):
            return diag_scan(a, b, backend=backend, output_final_state=False).output

        fwd_bytes = a_bytes + 2 * n * s + B * P * s
        for mode, nbytes in (("fwd", fwd_bytes), ("fwd+bwd", fwd_bytes + 2 * a_bytes + 3 * n * s)):
            t = (time_fwd(run, [a, b], device, target_s)[0] if mode == "fwd"
                 else time_fwd_bwd(run, [a, b], grad, device, target_s)[0])
            shape = f"B={B} L={L} P={P}"
            rows.append(_bandwidth_row("diag_scan", f"{backend}, {label}", mode, shape, t, nbytes, copy_bw))
            common.free_memory(device)
    return rows


def rf_rows(copy_bw, device, gen, target_s, sizes):
    """rf fwd+bwd at the headline shape on each path (see the module docstring)."""
    on_triton = device.type == "cuda" or TRITON_ON_CPU
    B, L, H = sizes["rf"]
    x = torch.randn(B, L, H, generator=gen).to(device)
    grad = torch.randn(B, L, H, generator=gen).to(device)
    lam4 = torch.polar(0.9 + 0.099 * torch.rand(H, 4, generator=gen), 0.6 * torch.rand(H, 4, generator=gen)).to(device)
    threshold = torch.full((H,), THRESHOLD, device=device)
    weight = torch.full((H, 4), 0.25, device=device)
    cases = [("sequential kernel, 1 branch, subtract", "triton", "sequential", 1, "subtract", False),
             ("sequential kernel, D-RF: 4 branches, zero, adaptive", "triton", "sequential", 4, "zero", True),
             ("parallel (diag_scan), PRF: reset none", "triton", "parallel", 1, "none", False),
             ("PyTorch path, 1 branch, subtract", "torch", "sequential", 1, "subtract", False),
             ("PyTorch parallel, PRF: reset none", "torch", "parallel", 1, "none", False)]
    rows = []
    for impl, backend, algorithm, K, reset, adaptive in cases:
        if backend == "triton" and not on_triton:
            continue
        lam = lam4 if K > 1 else lam4[:, 0].contiguous()
        adapt = dict(adapt_decay=0.9, adapt_scale=0.5) if adaptive else {}

        def run(x, lam, threshold, K=K, reset=reset, backend=backend, algorithm=algorithm, adapt=adapt):
            return rf(x, lam, threshold, weight=weight if K > 1 else None, reset=reset, backend=backend,
                      algorithm=algorithm, output_final_state=False, **adapt).output

        t = time_fwd_bwd(run, [x, lam, threshold], grad, device, target_s)[0]
        row = _bandwidth_row("rf", impl, "fwd+bwd", f"B={B} L={L} H={H}", t, 20 * B * L * H, copy_bw)
        row["target"], row["met"] = "-", None  # a new op: recorded, no target yet
        rows.append(row)
        common.free_memory(device)
    return rows


def _bandwidth_row(op, impl, mode, shape, t, nbytes, copy_bw):
    gbps = nbytes / (t.median_ms * 1e-3) / 1e9
    common.log(f"  {op:9s} {impl:22s} {mode:7s} {shape:22s} {t.median_ms:9.3f} ms {gbps:8.1f} GB/s")
    of_copy = gbps * 1e9 / copy_bw
    return {"op": op, "impl": impl, "mode": mode, "shape": shape, "median_ms": t.median_ms, "min_ms": t.min_ms,
            "repeats": t.repeats, "bytes": nbytes, "GBps": gbps, "of_copy_bw": of_copy,
            "target": f">= {BANDWIDTH_TARGET:.0%} of copy", "met": of_copy >= BANDWIDTH_TARGET}


def ratio(rows, op, impl):
    return next((r["median_ms"] for r in rows if r["op"] == op and r["impl"] == impl and "median_ms" in r), None)


def apply_targets(rows):
    """Fills speedup and target columns of the s4d rows from their reference rows, and rf's ratio to lif."""
    fft = ratio(rows, "s4d_scan", "FFT convolution")
    paper = ratio(rows, "s4d_lif", "paper: FFT + LIF loop")
    for r in rows:
        if "median_ms" not in r:
            continue
        if r["op"] == "rf":
            lif_ms = next((q["median_ms"] for q in rows if q["op"] == "lif" and q["mode"] == "fwd+bwd"
                           and q["shape"] == r["shape"] and q["impl"] == ("torch" if "PyTorch" in r["impl"]
                                                                         else "triton")), None)
            if lif_ms:
                r["speedup"], r["vs"] = lif_ms / r["median_ms"], "lif fwd+bwd"
        if r["op"] == "s4d_scan" and fft and r["impl"] != "FFT convolution":
            r["speedup"] = fft / r["median_ms"]
            r["vs"] = "FFT convolution"
            r["target"], r["met"] = ">= 1.5x", r["speedup"] >= 1.5
        if r["op"] == "s4d_lif" and paper and r["impl"] != "paper: FFT + LIF loop":
            r["speedup"] = paper / r["median_ms"]
            r["vs"] = "paper's path"
            if r["impl"].startswith("fused"):
                algorithm = r["impl"].split()[-1]
                unfused = ratio(rows, "s4d_lif", f"scan + lif ({algorithm})")
                r["vs_unfused"] = unfused / r["median_ms"] if unfused else None
                r["target"] = ">= 20x paper, >= 1.3x unfused"
                r["met"] = r["speedup"] >= 20 and (r["vs_unfused"] or 0) >= 1.3
    return rows


COLUMNS = [("op", "op"), ("impl", "impl"), ("mode", "mode"), ("shape", "shape"), ("ms", "median_ms"),
           ("GB/s", "GBps"), ("of copy", "of_copy_bw"), ("speedup", "speedup"), ("vs", "vs"),
           ("vs unfused", "vs_unfused"), ("rel_err", "rel_err"), ("spikes agree", "agreement"),
           ("target", "target"), ("met", "met"), ("error", "error")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny shapes: a rehearsal that every row runs")
    p.add_argument("--target-seconds", type=float, default=0.3)
    p.add_argument("--out", type=Path, help="JSON path (default: results/headline-<device-tag>.json; "
                                            "--quick: the temp directory)")
    args = p.parse_args(argv)
    device = common.pick_device(args.device)
    sizes = QUICK if args.quick else FULL
    out_path = args.out or (Path(tempfile.gettempdir()) / "spikessm-bench" / "headline-quick.json" if args.quick
                            else common.RESULTS_DIR / f"headline-{common.device_tag(device)}.json")
    gen = torch.Generator().manual_seed(0)
    copy_bw = common.measure_copy_bandwidth(device)
    rows = ssm_rows("s4d_scan", s4d_scan_impls(device), sizes["s4d"], device, gen, args.target_seconds)
    rows += ssm_rows("s4d_lif", s4d_lif_impls(device), sizes["s4d"], device, gen, args.target_seconds)
    rows += bandwidth_rows(copy_bw, device, gen, args.target_seconds, sizes)
    rows += rf_rows(copy_bw, device, gen, args.target_seconds, sizes)
    apply_targets(rows)
    result = {"benchmark": "headline", "quick": args.quick, "env": common.environment(device),
              "copy_bandwidth_GBps": copy_bw / 1e9, "config": {"beta": BETA, "threshold": THRESHOLD}, "rows": rows}
    common.write_json_atomic(out_path, result)
    print(f"device: {common.device_name(device)} | copy bandwidth {copy_bw / 1e9:.0f} GB/s"
          + (" | QUICK: tiny shapes, the targets mean nothing here" if args.quick else ""))
    print(common.format_table(rows, COLUMNS))
    print(f"wrote {out_path}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
