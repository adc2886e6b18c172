"""s4d_lif (fused) against the unfused paths, forward and forward+backward.

    python benchmarks/bench_s4d_lif.py                 # CUDA if available, else reduced CPU shapes
    python benchmarks/bench_s4d_lif.py --lengths 1024 4096 --out /tmp/s4d_lif.json

Implementations (all compute spikes of LIF neurons on the S4D output with the same parameters; the share of
spikes equal to the fused path's is reported: they can differ only where a membrane is within rounding of the
threshold, and every later step of that neuron may follow):
  fused         spikessm.ops.s4d_lif (Triton on CUDA; on the CPU its PyTorch path, s4d_scan then lif)
  scan+lif      spikessm s4d_scan followed by spikessm lif, same backend: shows what fusion saves
  fused_chunked s4d_lif(algorithm="chunked"): the chunked Triton kernel of tl.dot products with the neurons walking
                its output tiles (CUDA only)
  chunked+lif   s4d_scan(algorithm="chunked") followed by lif (CUDA only): what fusion saves there
  fft+loop      the core paper's path: S4D by FFT convolution (bench_scans.s4d_fft_conv), then the PyTorch
                LIF loop over time (spikessm/ops/lif/naive.py's lif_loop, the careful unbound-time-axis loop); on a GPU
                only up to L = 4096
Targets on an H100 (docs/performance.md): fused fwd+bwd >= 20x faster than fft+loop at L = 4096 and >= 1.3x faster
than scan+lif.
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import common  # noqa: E402
from bench_scans import s4d_fft_conv  # noqa: E402
from spikessm.ops import lif, s4d_lif, s4d_scan  # noqa: E402
from spikessm.ops.lif.naive import lif_loop  # noqa: E402

BETA, THRESHOLD = 0.9, 1.0
LOOP_MAX_L = 4096  # the paper's path loops over time in Python: on a GPU longer lengths only cost time


def shapes(device: torch.device):
    if device.type == "cuda":
        return [("target", 32, 256, 64, (1024, 4096, 16384)), ("batch1", 1, 256, 64, (1024, 4096, 16384))]
    return [("cpu", 4, 64, 64, (1024, 2048))]


def make_inputs(B, L, H, N, device, gen):
    A = torch.polar(0.9 + 0.1 * torch.rand(H, N, generator=gen), torch.rand(H, N, generator=gen) * 3)
    Bm = torch.randn(H, N, dtype=torch.complex64, generator=gen)
    C = torch.randn(H, N, dtype=torch.complex64, generator=gen) / N ** 0.5
    D = torch.randn(H, generator=gen)
    u = torch.randn(B, L, H, generator=gen)
    return [t.to(device) for t in (u, A, Bm, C, D)]


def implementations(device: torch.device):
    def fused(u, A, Bm, C, D, algorithm="auto"):
        return s4d_lif(u, A, Bm, C, D, beta=BETA, threshold=THRESHOLD, algorithm=algorithm)[0]

    def scan_then_lif(u, A, Bm, C, D, algorithm="auto"):
        y, _ = s4d_scan(u, A, Bm, C, D, output_final_state=False, algorithm=algorithm)
        return lif(y, BETA, THRESHOLD)[0]

    def fft_then_loop(u, A, Bm, C, D):
        return lif_loop(s4d_fft_conv(u, A, Bm, C, D), BETA, THRESHOLD, surrogate="atan", alpha=2.0)[0]

    impls = {"fused": fused, "scan+lif": scan_then_lif}
    if device.type == "cuda":
        impls["fused_chunked"] = functools.partial(fused, algorithm="chunked")
        impls["chunked+lif"] = functools.partial(scan_then_lif, algorithm="chunked")
    impls["fft+loop"] = fft_then_loop
    return impls


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--lengths", type=int, nargs="+")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on the CPU")
    p.add_argument("--target-seconds", type=float, default=1.0)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    device = common.pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    out_path = args.out or common.RESULTS_DIR / f"s4d-lif-{common.device_tag(device)}.json"
    busy_before = common.check_idle(device)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name, B, H, N, lengths in shapes(device):
        for L in args.lengths or lengths:
            inputs = make_inputs(B, L, H, N, device, gen)
            grad = torch.randn(B, L, H, generator=gen).to(device)
            for mode in ("fwd", "fwd+bwd"):
                outs = {}
                for impl, fn in implementations(device).items():
                    if impl == "fft+loop" and device.type == "cuda" and L > LOOP_MAX_L:
                        continue
                    params = [t.clone().requires_grad_(mode == "fwd+bwd") for t in inputs]

                    if mode == "fwd":
                        def call(fn=fn, params=params):
                            with torch.no_grad():
                                return fn(*params)
                    else:
                        def call(fn=fn, params=params, grad=grad):
                            spikes = fn(*params)
                            torch.autograd.grad(spikes, params, grad)
                            return spikes
                    try:
                        outs[impl] = call()
                        t = common.benchmark(call, device, target_s=args.target_seconds)
                    except torch.OutOfMemoryError as e:  # report and go on with the next configuration
                        rows.append({"case": name, "impl": impl, "mode": mode, "B": B, "L": L, "H": H, "N": N,
                                     "error": str(e).splitlines()[0]})
                        common.free_memory(device)
                        continue
                    common.log(f"  {name} L={L:6d} {mode:7s} {impl:13s} {t.median_ms:10.3f} ms")
                    rows.append({"case": name, "impl": impl, "mode": mode, "B": B, "L": L, "H": H, "N": N,
                                 "median_ms": t.median_ms, "min_ms": t.min_ms, "repeats": t.repeats,
                                 "others_busy": t.others_busy})
                    common.free_memory(device)
                fused_ms = next((r["median_ms"] for r in rows if r.get("median_ms") and r["impl"] == "fused"
                                 and r["mode"] == mode and r["L"] == L and r["case"] == name), None)
                for r in rows:
                    if r["mode"] == mode and r["L"] == L and r["case"] == name and r.get("median_ms") and fused_ms:
                        r["x_vs_fused"] = r["median_ms"] / fused_ms
                        if "fused" in outs and r["impl"] in outs:
                            r["spikes_equal_frac"] = (outs[r["impl"]] == outs["fused"]).float().mean().item()
    result = {"benchmark": "s4d_lif", "env": {**common.environment(device), "cpu_busy_before": busy_before},
              "config": {"beta": BETA, "threshold": THRESHOLD, "reset": "subtract", "surrogate": "atan"},
              "rows": rows}
    common.write_json_atomic(out_path, result)
    print(f"device: {common.device_name(device)}")
    print(common.format_table(rows, [("case", "case"), ("impl", "impl"), ("mode", "mode"), ("B", "B"), ("L", "L"),
                                     ("H", "H"), ("N", "N"), ("ms", "median_ms"), ("x_vs_fused", "x_vs_fused"),
                                     ("spikes_equal", "spikes_equal_frac"), ("others_busy", "others_busy")]))
    print(f"wrote {out_path}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
