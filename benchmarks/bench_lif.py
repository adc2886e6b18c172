"""lif against a careful PyTorch loop over time, forward and forward+backward.

    python benchmarks/bench_lif.py                       # CPU: B=32, L=1024, H=256, 2 threads
    python benchmarks/bench_lif.py --device cuda         # GPU: Triton kernel, L = 1k-16k and a small-batch case
    python benchmarks/bench_lif.py --out /tmp/lif.json

The peer is the loop SNN libraries run: unbind the time axis once (indexing x[:, t] inside the loop makes autograd
materialise a full-size gradient per step), then per step v = beta v + x_t, a surrogate-gradient Heaviside, and
the subtract reset, all recorded by autograd. Both compute the same function: spikes are checked equal wherever
the membrane is not within rounding of the threshold (spikes_equal) and the input gradients compared (rel_err).
Targets: on the CPU (2 threads) lif fwd+bwd >= 1.5x faster than the loop; on an H100 the Triton lif at >= 70%
of the measured copy bandwidth (GB/s over the byte model below).

Byte model (float32, n = B*L*H): fwd reads x and writes the spikes, 8n bytes; fwd+bwd adds the backward's
minimum, reading x and the spikes' gradient and writing x's gradient, 12n more (20n in all). What an
implementation saves for the backward beyond that is its own cost.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import common  # noqa: E402
from spikessm.ops import lif  # noqa: E402
from spikessm.ops.lif.naive import lif_loop  # noqa: E402

CPU_SPEEDUP_TARGET = 1.5
GPU_BANDWIDTH_TARGET = 0.70
LOOP_MAX_L = 4096  # the autograd loop on a GPU: one Python step per time step; longer lengths only cost time


def shapes(device: torch.device, args) -> list[tuple[str, int, int, int]]:
    if args.batch or args.length or args.width or device.type == "cpu":
        return [("cli", args.batch or 32, args.length or 1024, args.width or 256)]
    return [("target", 32, L, 256) for L in (1024, 4096, 16384)] + [("small-BxH", 1, 16384, 128)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--batch", type=int)
    p.add_argument("--length", type=int)
    p.add_argument("--width", type=int, help="H, the number of neurons per step")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on the CPU")
    p.add_argument("--target-seconds", type=float, default=2.0)
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/lif-<device-tag>.json)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = common.pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    out_path = args.out or common.RESULTS_DIR / f"lif-{common.device_tag(device)}.json"
    busy_before = common.check_idle(device)
    copy_bw = common.measure_copy_bandwidth(device)
    rows = []
    for case, B, L, H in shapes(device, args):
        g = torch.Generator().manual_seed(L + B)
        x = torch.randn(B, L, H, generator=g).to(device)
        beta = (0.5 + 0.4 * torch.rand(H, generator=g)).to(device).requires_grad_()
        threshold = (0.5 + torch.rand(H, generator=g)).to(device).requires_grad_()
        grad_spikes = torch.randn(B, L, H, generator=g).to(device)
        impls = {"spikessm.lif": lambda x, beta=beta, threshold=threshold: lif(x, beta, threshold,
                                                                                surrogate="atan")[0]}
        if device.type == "cpu" or L <= LOOP_MAX_L:
            impls["pytorch loop"] = lambda x, beta=beta, threshold=threshold: lif_loop(
                x, beta, threshold, surrogate="atan", alpha=2.0)[0]
        n = B * L * H
        for mode in ("fwd", "fwd+bwd"):
            x.requires_grad_(mode == "fwd+bwd")
            outs = {}
            for name, fn in impls.items():
                if mode == "fwd":
                    def call(fn=fn, x=x):
                        with torch.no_grad():
                            return (fn(x),)
                else:
                    def call(fn=fn, x=x, params=(beta, threshold), grad_spikes=grad_spikes):
                        spikes = fn(x)
                        return (spikes, *torch.autograd.grad(spikes, (x, *params), grad_spikes))
                outs[name] = call()
                t = common.benchmark(call, device, target_s=args.target_seconds, warmup=None if device.type ==
                                     "cuda" else 0)
                nbytes = (8 if mode == "fwd" else 20) * n
                gbps = nbytes / (t.median_ms * 1e-3) / 1e9
                common.log(f"  {case} B={B} L={L} H={H} {name:13s} {mode:7s} {t.median_ms:9.3f} ms {gbps:8.1f} GB/s")
                rows.append({"case": case, "impl": name, "mode": mode, "B": B, "L": L, "H": H,
                             "median_ms": t.median_ms, "min_ms": t.min_ms, "repeats": t.repeats, "bytes": nbytes,
                             "GBps": gbps, "frac_of_copy_bw": gbps * 1e9 / copy_bw, "others_busy": t.others_busy})
                common.free_memory(device)
            if "pytorch loop" in outs:
                ours, peer = outs["spikessm.lif"], outs["pytorch loop"]
                with torch.no_grad():  # spikes may differ only where the membrane is within rounding of threshold
                    equal = (ours[0] == peer[0]).float().mean().item()
                loop_ms = rows[-1]["median_ms"]
                for r in rows[-2:]:
                    r["speedup_vs_loop"] = loop_ms / r["median_ms"]
                    r["spikes_equal"] = equal
                if mode == "fwd+bwd":
                    rows[-2]["rel_err_dx"] = ((ours[1] - peer[1]).abs().max() / peer[1].abs().max()).item()
    ours = [r for r in rows if r["impl"] == "spikessm.lif"]
    if device.type == "cpu":
        achieved = min(r["speedup_vs_loop"] for r in ours if r["mode"] == "fwd+bwd")
        target = {"what": "lif fwd+bwd speedup vs the loop", "required": CPU_SPEEDUP_TARGET, "achieved": achieved,
                  "met": achieved >= CPU_SPEEDUP_TARGET}
    else:
        achieved = min(r["frac_of_copy_bw"] for r in ours if r["case"] == "target")
        target = {"what": "Triton lif, worst fraction of copy bandwidth over the target shapes (fwd and fwd+bwd)",
                  "required": GPU_BANDWIDTH_TARGET, "achieved": achieved, "met": achieved >= GPU_BANDWIDTH_TARGET}
    result = {"benchmark": "lif", "env": {**common.environment(device), "cpu_busy_before": busy_before},
              "copy_bandwidth_GBps": copy_bw / 1e9,
              "config": {"threads": torch.get_num_threads(), "surrogate": "atan", "reset": "subtract"},
              "rows": rows, "target": target}
    common.write_json_atomic(out_path, result)
    print(f"device: {common.device_name(device)} | copy bandwidth {copy_bw / 1e9:.0f} GB/s")
    print(common.format_table(rows, [("case", "case"), ("impl", "impl"), ("mode", "mode"), ("B", "B"), ("L", "L"),
                                     ("H", "H"), ("ms", "median_ms"), ("GB/s", "GBps"),
                                     ("of copy", "frac_of_copy_bw"), ("speedup_vs_loop", "speedup_vs_loop"),
                                     ("spikes_equal", "spikes_equal"), ("rel_err dx", "rel_err_dx"),
                                     ("others_busy", "others_busy")]))
    print(f"\ntarget: {target['what']} >= {target['required']}: {'MET' if target['met'] else 'NOT MET'} "
          f"({achieved:.2f})")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
