"""lif (PyTorch path) against a careful PyTorch loop over time, forward and forward+backward.

    python benchmarks/bench_lif.py                       # B=32, L=1024, H=256, 2 threads
    python benchmarks/bench_lif.py --out /tmp/lif.json

The peer is the loop SNN libraries run: unbind the time axis once (indexing x[:, t] inside the loop makes autograd
materialise a full-size gradient per step), then per step v = beta v + x_t, a surrogate-gradient Heaviside, and
the subtract reset, all recorded by autograd. Both compute the same function: spikes are checked equal and the
input gradients compared (rel_err). Target (CPU, 2 threads): lif fwd+bwd >= 1.5x faster than the loop.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import common  # noqa: E402
from spikessm.ops import lif  # noqa: E402
from spikessm.ops.naive import lif_loop  # noqa: E402

SPEEDUP_TARGET = 1.5


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--width", type=int, default=256, help="H, the number of neurons per step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--target-seconds", type=float, default=2.0)
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/lif-<device-tag>.json)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    out_path = args.out or common.RESULTS_DIR / f"lif-{common.device_tag(device)}.json"
    busy_before = common.check_idle(device)
    B, L, H = args.batch, args.length, args.width
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, L, H, generator=g)
    beta = (0.5 + 0.4 * torch.rand(H, generator=g)).requires_grad_()
    threshold = (0.5 + torch.rand(H, generator=g)).requires_grad_()
    grad_spikes = torch.randn(B, L, H, generator=g)
    impls = {
        "spikessm.lif": lambda x: lif(x, beta, threshold, surrogate="atan")[0],
        "pytorch loop": lambda x: lif_loop(x, beta, threshold, surrogate="atan", alpha=2.0)[0],
    }
    rows, outs = [], {}
    for mode in ("fwd", "fwd+bwd"):
        x.requires_grad_(mode == "fwd+bwd")
        for name, fn in impls.items():
            if mode == "fwd":
                def call(fn=fn):
                    with torch.no_grad():
                        return (fn(x),)
            else:
                def call(fn=fn):
                    spikes = fn(x)
                    return (spikes, *torch.autograd.grad(spikes, (x, beta, threshold), grad_spikes))
            outs[(name, mode)] = call()
            t = common.benchmark(call, device, target_s=args.target_seconds, warmup=0)
            common.log(f"  {name:13s} {mode:7s} {t.median_ms:9.2f} ms")
            rows.append({"impl": name, "mode": mode, "B": B, "L": L, "H": H, "median_ms": t.median_ms,
                         "min_ms": t.min_ms, "repeats": t.repeats, "others_busy": t.others_busy})
    for mode in ("fwd", "fwd+bwd"):
        ours, peer = outs[("spikessm.lif", mode)], outs[("pytorch loop", mode)]
        assert torch.equal(ours[0], peer[0]), "spikes differ"
        ref_ms = next(r["median_ms"] for r in rows if r["impl"] == "pytorch loop" and r["mode"] == mode)
        for r in rows:
            if r["mode"] == mode:
                r["speedup_vs_loop"] = ref_ms / r["median_ms"]
                if r["impl"] == "spikessm.lif" and mode == "fwd+bwd":
                    r["rel_err_dx"] = ((ours[1] - peer[1]).abs().max() / peer[1].abs().max()).item()
    speedup = next(r["speedup_vs_loop"] for r in rows if r["impl"] == "spikessm.lif" and r["mode"] == "fwd+bwd")
    result = {"benchmark": "lif", "env": {**common.environment(device), "cpu_busy_before": busy_before},
              "config": {"B": B, "L": L, "H": H, "threads": torch.get_num_threads(), "surrogate": "atan",
                         "reset": "subtract"},
              "rows": rows, "target": {"mode": "fwd+bwd", "speedup_required": SPEEDUP_TARGET, "speedup": speedup,
                                       "met": speedup >= SPEEDUP_TARGET}}
    common.write_json_atomic(out_path, result)
    print(f"device: {common.device_name(device)} | torch threads {torch.get_num_threads()} | B={B} L={L} H={H}")
    print(common.format_table(rows, [("impl", "impl"), ("mode", "mode"), ("ms", "median_ms"), ("min ms", "min_ms"),
                                     ("repeats", "repeats"), ("speedup_vs_loop", "speedup_vs_loop"),
                                     ("rel_err dx", "rel_err_dx"), ("others_busy", "others_busy")]))
    print(f"\ntarget: lif fwd+bwd >= {SPEEDUP_TARGET}x faster than the loop: "
          f"{'MET' if speedup >= SPEEDUP_TARGET else 'NOT MET'} ({speedup:.2f}x)")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
