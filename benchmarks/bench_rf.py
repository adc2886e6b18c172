"""rf against the step-by-step PyTorch loop and beside lif, forward and forward+backward.

    python benchmarks/bench_rf.py                       # CPU: B=32, L=1024, H=256, 2 threads
    python benchmarks/bench_rf.py --device cuda         # GPU: Triton kernels, L = 1k-16k
    python benchmarks/bench_rf.py --out /tmp/rf.json

Three neurons, each against the loop an SNN library would write (rf's naive.py: unbind the time axis once, then
per step the complex update, a surrogate-gradient Heaviside and the reset, all recorded by autograd):
  * "rf subtract": one branch, the subtract reset (the neuron of lif with a complex membrane);
  * "prf": one branch, reset "none" (PRF's decoupled reset), also on rf's "parallel" algorithm (diag_scan);
  * "drf": 4 dendritic branches, reset "zero", the adaptive threshold (D-RF's form).
lif (subtract reset, same shape) is timed beside them: what a real membrane costs on the same machine.
Spikes are checked equal wherever the soma is not within rounding of the threshold (spikes_equal) and the input
gradients compared (rel_err dx). No target is set for rf yet: these rows are the first record.

Byte model (float32, n = B*L*H), the same floor as lif's: fwd reads x and writes the spikes, 8n bytes; fwd+bwd
adds reading x and the spikes' gradient and writing x's gradient, 12n more (20n in all). What an implementation
saves for its backward (rf's sequential paths save the pre-reset membrane, 8K bytes per element) is its own cost.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import common  # noqa: E402
from spikessm.ops import lif, rf  # noqa: E402
from spikessm.ops.rf.naive import rf_loop  # noqa: E402

LOOP_MAX_L = 4096  # the autograd loop on a GPU: one Python step per time step; longer lengths only cost time
NEURONS = {  # name: (branches, reset, adaptive, algorithms of spikessm.rf)
    "rf subtract": (1, "subtract", False, ("sequential",)),
    "prf": (1, "none", False, ("sequential", "parallel")),
    "drf": (4, "zero", True, ("sequential",)),
}


def shapes(device: torch.device, args) -> list[tuple[str, int, int, int]]:
    if args.batch or args.length or args.width or device.type == "cpu":
        return [("cli", args.batch or 32, args.length or 1024, args.width or 256)]
    return [("target", 32, L, 256) for L in (1024, 4096, 16384)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--batch", type=int)
    p.add_argument("--length", type=int)
    p.add_argument("--width", type=int, help="H, the number of neurons per step")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on the CPU")
    p.add_argument("--target-seconds", type=float, default=2.0)
    p.add_argument("--neurons", nargs="+", choices=sorted(NEURONS), default=sorted(NEURONS))
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/rf-<device-tag>.json)")
    return p.parse_args(argv)


def neuron_inputs(K: int, H: int, gen: torch.Generator, device):
    """lam (H,) or (H, K) with |lam| in [0.9, 0.999] and phases in (0, 0.6) rad per step (PRF's initial range),
    the threshold (H,), and the D-RF soma's weights 1 / K."""
    lam = torch.polar(0.9 + 0.099 * torch.rand(H, K, generator=gen), 0.6 * torch.rand(H, K, generator=gen))
    lam = (lam if K > 1 else lam[:, 0]).to(device).requires_grad_()
    threshold = (0.5 + 0.5 * torch.rand(H, generator=gen)).to(device).requires_grad_()
    weight = torch.full((H, K), 1 / K, device=device) if K > 1 else None
    return lam, threshold, weight


def main(argv=None) -> int:
    args = parse_args(argv)
    device = common.pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    out_path = args.out or common.RESULTS_DIR / f"rf-{common.device_tag(device)}.json"
    busy_before = common.check_idle(device)
    copy_bw = common.measure_copy_bandwidth(device)
    rows = []
    for case, B, L, H in shapes(device, args):
        g = torch.Generator().manual_seed(L + B)
        x = torch.randn(B, L, H, generator=g).to(device)
        grad_spikes = torch.randn(B, L, H, generator=g).to(device)
        n = B * L * H
        beta = torch.full((H,), 0.9, device=device, requires_grad=True)
        lif_threshold = torch.full((H,), 1.0, device=device, requires_grad=True)
        for neuron in args.neurons:
            K, reset, adaptive, algorithms = NEURONS[neuron]
            lam, threshold, weight = neuron_inputs(K, H, g, device)
            adapt = dict(adapt_decay=0.9, adapt_scale=0.5) if adaptive else {}
            params = (lam, threshold)
            impls = {f"spikessm.rf {a}": (lambda x, a=a, lam=lam, threshold=threshold, weight=weight, adapt=adapt,
                                          reset=reset: rf(x, lam, threshold, weight=weight, reset=reset,
                                                          algorithm=a, output_final_state=False, **adapt)[0])
                     for a in algorithms}
            if device.type == "cpu" or L <= LOOP_MAX_L:
                impls["pytorch loop"] = lambda x, lam=lam, threshold=threshold, weight=weight, adapt=adapt, \
                    reset=reset: rf_loop(x, lam, threshold, weight=weight, reset=reset, **adapt)[0]
            impls["spikessm.lif"] = lambda x, beta=beta, th=lif_threshold: lif(x, beta, th, output_final_state=False)[0]
            for mode in ("fwd", "fwd+bwd"):
                x.requires_grad_(mode == "fwd+bwd")
                outs, group = {}, []
                for name, fn in impls.items():
                    wrt = (beta, lif_threshold) if name == "spikessm.lif" else params
                    if mode == "fwd":
                        def call(fn=fn, x=x):
                            with torch.no_grad():
                                return (fn(x),)
                    else:
                        def call(fn=fn, x=x, wrt=wrt, grad_spikes=grad_spikes):
                            spikes = fn(x)
                            return (spikes, *torch.autograd.grad(spikes, (x, *wrt), grad_spikes))
                    outs[name] = call()
                    t = common.benchmark(call, device, target_s=args.target_seconds,
                                         warmup=None if device.type == "cuda" else 0)
                    nbytes = (8 if mode == "fwd" else 20) * n
                    gbps = nbytes / (t.median_ms * 1e-3) / 1e9
                    common.log(f"  {case} B={B} L={L} H={H} {neuron:11s} {name:22s} {mode:7s} {t.median_ms:9.3f} ms "
                               f"{gbps:8.1f} GB/s")
                    row = {"case": case, "neuron": neuron, "branches": K, "reset": reset, "adaptive": adaptive,
                           "impl": name, "mode": mode, "B": B, "L": L, "H": H, "median_ms": t.median_ms,
                           "min_ms": t.min_ms, "repeats": t.repeats, "bytes": nbytes, "GBps": gbps,
                           "frac_of_copy_bw": gbps * 1e9 / copy_bw, "others_busy": t.others_busy}
                    rows.append(row)
                    group.append(row)
                    common.free_memory(device)
                by_name = {r["impl"]: r for r in group}
                loop, lif_row = by_name.get("pytorch loop"), by_name["spikessm.lif"]
                for r in group:
                    if r["impl"].startswith("spikessm.rf"):
                        r["vs_lif"] = r["median_ms"] / lif_row["median_ms"]
                        if loop is not None:
                            r["speedup_vs_loop"] = loop["median_ms"] / r["median_ms"]
                            ours, peer = outs[r["impl"]], outs["pytorch loop"]
                            with torch.no_grad():
                                r["spikes_equal"] = (ours[0] == peer[0]).float().mean().item()
                                if mode == "fwd+bwd":
                                    r["rel_err_dx"] = ((ours[1] - peer[1]).abs().max() / peer[1].abs().max()).item()
    ours = [r for r in rows if r["impl"].startswith("spikessm.rf") and "speedup_vs_loop" in r]
    summary = {"what": "rf fwd+bwd speedup vs the PyTorch loop, worst over neurons and algorithms",
               "achieved": min((r["speedup_vs_loop"] for r in ours if r["mode"] == "fwd+bwd"), default=math.nan)}
    result = {"benchmark": "rf", "env": {**common.environment(device), "cpu_busy_before": busy_before},
              "copy_bandwidth_GBps": copy_bw / 1e9, "config": {"threads": torch.get_num_threads(),
                                                               "surrogate": "atan"},
              "rows": rows, "summary": summary}
    common.write_json_atomic(out_path, result)
    print(f"device: {common.device_name(device)} | copy bandwidth {copy_bw / 1e9:.0f} GB/s")
    print(common.format_table(rows, [("case", "case"), ("neuron", "neuron"), ("impl", "impl"), ("mode", "mode"),
                                     ("B", "B"), ("L", "L"), ("H", "H"), ("ms", "median_ms"), ("GB/s", "GBps"),
                                     ("of copy", "frac_of_copy_bw"), ("speedup_vs_loop", "speedup_vs_loop"),
                                     ("vs lif", "vs_lif"), ("spikes_equal", "spikes_equal"),
                                     ("rel_err dx", "rel_err_dx"), ("others_busy", "others_busy")]))
    print(f"\n{summary['what']}: {summary['achieved']:.2f}")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
