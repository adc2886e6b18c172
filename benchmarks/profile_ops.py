"""Where the time of one forward+backward goes: each kernel's (GPU) or PyTorch op's (CPU) share, per op path.

    python benchmarks/profile_ops.py                       # CUDA if available, at the target shape
    python benchmarks/profile_ops.py --cases s4d_lif/chunked chunked+lif --length 16384
    python benchmarks/profile_ops.py --device cpu --batch 2 --length 256 --width 16

Timings say how fast a path is (bench_scans.py, bench_s4d_lif.py); this says why. Each case runs
forward+backward (gradients of every input, against a fixed random upstream gradient) a few times under
torch.profiler and reports, per step, the time of each GPU kernel (Triton kernels by their function name, cuBLAS
and PyTorch kernels by theirs) or on the CPU each PyTorch op's own time (children excluded), with its share of
the total. A path's host-side work shows up as separate kernels: for the chunked S4D kernels, the products that
form the operators' gradients and the copies they need.

Cases (CUDA; on the CPU only the PyTorch paths, those marked "/torch"):
  s4d_scan/sequential  s4d_scan/chunked  s4d_scan/torch    (output y, final state not asked for)
  s4d_lif/sequential   s4d_lif/chunked   s4d_lif/torch     (spikes; reset "subtract", surrogate "atan")
  chunked+lif          s4d_scan(algorithm="chunked") followed by lif: the unfused pair of s4d_lif/chunked
  lif                  lif alone, on a (B, L, H) input

The profiler adds a little host time per launch; shares of device time are what to read. Output: tables on
stdout, JSON at --out (default $TMPDIR/spikessm-bench/profile-<device>.json; benchmarks/results/ holds only
files a person chose to commit).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import common  # noqa: E402
from bench_s4d_lif import BETA, THRESHOLD, make_inputs  # noqa: E402
from spikessm.ops import lif, s4d_lif, s4d_scan  # noqa: E402

CUDA_CASES = ("s4d_scan/sequential", "s4d_scan/chunked", "s4d_lif/sequential", "s4d_lif/chunked", "chunked+lif",
              "lif")
CPU_CASES = ("s4d_scan/torch", "s4d_lif/torch", "lif")
NAME_WIDTH = 90  # kernel names (templated PyTorch kernels run to hundreds of characters)


def case_fn(case: str, device: torch.device):
    """fn(u, A, B, C, D) -> the output the loss is taken on, for one case name."""
    if case not in CUDA_CASES + CPU_CASES:
        raise SystemExit(f"unknown case {case!r}; cases: {sorted(set(CUDA_CASES + CPU_CASES))}")
    if device.type == "cpu" and case not in CPU_CASES:
        raise SystemExit(f"case {case!r} runs a Triton kernel: it needs a CUDA device (CPU cases: {CPU_CASES})")
    op, _, how = case.partition("/")
    backend = "torch" if device.type == "cpu" else "triton"
    algorithm = how if how in ("sequential", "chunked") else "auto"
    if op == "s4d_scan":
        return lambda u, A, B, C, D: s4d_scan(u, A, B, C, D, output_final_state=False, backend=backend,
                                              algorithm=algorithm)[0]
    if op == "s4d_lif":
        return lambda u, A, B, C, D: s4d_lif(u, A, B, C, D, beta=BETA, threshold=THRESHOLD, backend=backend,
                                             algorithm=algorithm)[0]
    if op == "chunked+lif":
        return lambda u, A, B, C, D: lif(s4d_scan(u, A, B, C, D, output_final_state=False, backend=backend,
                                                  algorithm="chunked")[0], BETA, THRESHOLD, backend=backend)[0]
    return lambda u, A, B, C, D: lif(u, BETA, THRESHOLD, backend=backend)[0]


def _self_us(event, on_device: bool) -> float:
    """A profiler event's own time in microseconds: a kernel's duration on the GPU, or an op's CPU time."""
    return event.self_device_time_total if on_device else event.self_cpu_time_total


def _counted(event, on_device: bool) -> bool:
    """Kernels only on the GPU: a CPU op's device time repeats that of the kernels it launched."""
    return event.device_type == (DeviceType.CUDA if on_device else DeviceType.CPU) and _self_us(event, on_device) > 0


def profile_case(case: str, inputs: list[torch.Tensor], grad: torch.Tensor, device: torch.device, steps: int,
                 top: int) -> dict:
    """Per-step time of each kernel (CUDA) or PyTorch op (CPU) of `steps` forward+backward runs of a case."""
    fn = case_fn(case, device)
    params = [t.clone().requires_grad_(case != "lif" or i == 0) for i, t in enumerate(inputs)]
    wrt = params[:1] if case == "lif" else params

    def step():
        out = fn(*params)
        torch.autograd.grad(out, wrt, grad)

    for _ in range(2):  # compiles and first-call costs stay out of the profile
        step()
    common.synchronize(device)
    on_device = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    timing = common.benchmark(step, device, target_s=0.2, warmup=0, min_repeats=steps, max_repeats=steps)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        common.synchronize(device)
    events = [e for e in prof.key_averages() if _counted(e, on_device)]
    total_us = sum(_self_us(e, on_device) for e in events)
    events.sort(key=lambda e: _self_us(e, on_device), reverse=True)
    rows = [{"case": case, "name": e.key[:NAME_WIDTH], "calls": e.count / steps,
             "ms": _self_us(e, on_device) / 1e3 / steps, "share": _self_us(e, on_device) / total_us}
            for e in events[:top]]
    rest = events[top:]
    if rest:
        rest_us = sum(_self_us(e, on_device) for e in rest)
        rows.append({"case": case, "name": f"({len(rest)} others)", "calls": sum(e.count for e in rest) / steps,
                     "ms": rest_us / 1e3 / steps, "share": rest_us / total_us})
    return {"case": case, "wall_ms": timing.median_ms, "profiled_ms": total_us / 1e3 / steps,
            "time_kind": "kernel time on the GPU" if on_device else "op self time on the CPU", "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--cases", nargs="+", help="default: every case the device runs")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--width", type=int, default=256, help="H, channels")
    p.add_argument("--state", type=int, default=64, help="N, states per channel")
    p.add_argument("--steps", type=int, default=5, help="forward+backward runs profiled per case")
    p.add_argument("--top", type=int, default=12, help="rows per case; the rest are summed in one")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on the CPU")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    device = common.pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    cases = args.cases or (CUDA_CASES if device.type == "cuda" else CPU_CASES)
    out_path = args.out or Path(tempfile.gettempdir()) / "spikessm-bench" / f"profile-{common.device_tag(device)}.json"
    gen = torch.Generator().manual_seed(0)
    B, L, H, N = args.batch, args.length, args.width, args.state
    inputs = make_inputs(B, L, H, N, device, gen)
    grad = torch.randn(B, L, H, generator=gen).to(device)
    results = []
    print(f"device: {common.device_name(device)} | B={B} L={L} H={H} N={N} | forward+backward, per step")
    for case in cases:
        common.log(f"  profiling {case}")
        result = profile_case(case, inputs, grad, device, args.steps, args.top)
        results.append(result)
        print(f"\n{case}: {result['wall_ms']:.3f} ms per step (median, timed without the profiler); "
              f"{result['time_kind']} {result['profiled_ms']:.3f} ms")
        print(common.format_table(result["rows"], [("name", "name"), ("calls", "calls"), ("ms", "ms"),
                                                   ("share", "share")]))
        common.free_memory(device)
    common.write_json_atomic(out_path, {"benchmark": "profile", "env": common.environment(device),
                                        "shape": {"B": B, "L": L, "H": H, "N": N}, "steps": args.steps,
                                        "cases": results})
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
