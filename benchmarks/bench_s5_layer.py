"""S5 layer state update, spikessm vs the s5-pytorch package, forward and forward+backward.

    python benchmarks/bench_s5_layer.py               # B=8, L=1024, H=64, P=64, 2 threads, default device
    python benchmarks/bench_s5_layer.py --device cuda --out /tmp/s5.json

Both sides compute the same function with the same parameter values: S5's ZOH-discretised diagonal SSM,
  Lambda_bar = exp(Lambda dt),  B_bar = (Lambda_bar - 1) / Lambda * B,  dt = exp(log_step)
  x_t = Lambda_bar x_{t-1} + B_bar u_t,  y_t = Re(C x_t) + D u_t
with u: (B, L, H) real, Lambda, log_step: (P,), B: (P, H) complex, C: (H, P) complex, D: (H,).
Our layer (S5Layer below) runs the state update with spikessm's diag_scan and the projections as real matmuls;
s5-pytorch's S5 layer vmaps its own associative scan over the batch. Our parameters are copied from the S5
module, so the outputs must agree to float32 rounding (checked and reported as rel_err).

Our projections are single real matmuls against interleaved [re, im] weights, so the complex tensors are views
of the matmul outputs (no assembling torch.complex or strided .real/.imag copies), the layout spikessm's S5
layer uses.

The target is the CPU check: at B=8, L=1024, H=64, P=64 with 2 threads, the specified layer's fwd+bwd
must be at least 2x faster than s5-pytorch's ("speedup" = s5-pytorch time / our time).

Timed calls: fwd = the layer's forward under torch.no_grad(); fwd+bwd = the forward, then torch.autograd.grad
of <y, random upstream gradient> with respect to u and every parameter.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import common  # noqa: E402
from spikessm.ops import diag_scan  # noqa: E402

SPEEDUP_TARGET = 2.0
TARGET_MODE = "fwd+bwd"
REFERENCE = "s5-pytorch"


class S5Layer(nn.Module):
    """Minimal S5 layer (single block, ZOH) with its state update done by spikessm's diag_scan.

    Parameters (S5's names and shapes): Lambda (P,) complex64, B (P, H) complex64, C (H, P) complex64,
    D (H,) float32, log_step (P,) float32.
    """

    def __init__(self, width: int, state_width: int, backend: str = "auto", dt_min: float = 1e-3,
                 dt_max: float = 1e-1):
        super().__init__()
        H, P = width, state_width
        self.backend = backend
        # Any stable spectrum will do for timing: Re < 0, spread-out frequencies (S4D-Lin).
        n = torch.arange(P, dtype=torch.float32)
        self.Lambda = nn.Parameter(torch.complex(torch.full((P,), -0.5), math.pi * n))
        self.B = nn.Parameter(torch.randn(P, H, dtype=torch.complex64) / math.sqrt(H))
        self.C = nn.Parameter(torch.randn(H, P, dtype=torch.complex64) / math.sqrt(P))
        self.D = nn.Parameter(torch.randn(H))
        self.log_step = nn.Parameter(torch.empty(P).uniform_(math.log(dt_min), math.log(dt_max)))

    @torch.no_grad()
    def copy_from_s5(self, s5_layer: nn.Module) -> "S5Layer":
        """Take the parameter values of an s5-pytorch ``S5`` module (dense B/C init), so both compute one function."""
        ssm = s5_layer.seq
        self.Lambda.copy_(ssm.Lambda)
        self.B.copy_(torch.complex(ssm.B[..., 0], ssm.B[..., 1]))  # S5 stores B as real (P, H, 2)
        self.C.copy_(ssm.C)
        self.D.copy_(ssm.D)
        self.log_step.copy_(ssm.log_step)
        return self

    @staticmethod
    def project_in(u: torch.Tensor, B_bar: torch.Tensor) -> torch.Tensor:
        """B_bar u for real u: (B, L, H) float32, (P, H) complex -> (B, L, P) complex, as one real matmul whose
        output columns are interleaved [re, im] per state, i.e. already the memory layout of complex64."""
        W = torch.view_as_real(B_bar).permute(1, 0, 2).reshape(B_bar.shape[1], -1)  # (H, 2P)
        return torch.view_as_complex((u @ W).unflatten(-1, (-1, 2)))

    @staticmethod
    def read_out(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        """Re(C x) = C.re x.re - C.im x.im: (B, L, P) complex -> (B, L, H) float32, as one real matmul on the
        interleaved [re, im] view of x."""
        W = torch.stack([C.real, -C.imag], dim=-1).reshape(C.shape[0], -1).T  # (2P, H)
        return torch.view_as_real(x).flatten(-2) @ W

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, L, H) float32 -> y: (B, L, H) float32."""
        dt = torch.exp(self.log_step)
        Lambda_bar = torch.exp(self.Lambda * dt)  # (P,)
        B_bar = ((Lambda_bar - 1) / self.Lambda)[:, None] * self.B  # (P, H)
        x, _ = diag_scan(Lambda_bar, self.project_in(u, B_bar), backend=self.backend)  # (B, L, P)
        return self.read_out(x, self.C) + self.D * u


def make_call(layer: nn.Module, u: torch.Tensor, mode: str, grad_out: torch.Tensor):
    """fwd: forward without autograd. fwd+bwd: forward, then gradients w.r.t. u and every parameter."""
    if mode == "fwd":

        def call():
            with torch.no_grad():
                return (layer(u),)

    else:
        wrt = [u, *layer.parameters()]

        def call():
            return torch.autograd.grad(layer(u), wrt, grad_out)

    return call


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (out - ref).abs().max().item() / (ref.abs().max().item() or 1.0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--width", type=int, default=64, help="H, the model width")
    p.add_argument("--state", type=int, default=64, help="P, the state size")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the CPU target uses 2)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--target-seconds", type=float, default=2.0, help="timed seconds per config (about)")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/s5-layer-<device-tag>.json)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from s5 import S5  # the peer; imported here so --help works without it

    device = common.pick_device(args.device)
    out_path = args.out or common.RESULTS_DIR / f"s5-layer-{common.device_tag(device)}.json"
    common.log(f"device: {common.device_name(device)} ({device}); torch threads: {torch.get_num_threads()}")
    busy_before = common.check_idle(device)
    Bsz, L, H, P = args.batch, args.length, args.width, args.state

    peer = S5(width=H, state_width=P).to(device)
    layers = {REFERENCE: peer}
    for backend in (["triton"] if device.type == "cuda" else []) + ["torch"]:
        layers[f"spikessm[{backend}]"] = S5Layer(H, P, backend=backend).to(device).copy_from_s5(peer)
    # The headline row: the backend a user gets by default ("auto": Triton on CUDA, PyTorch on the CPU).
    headline = "spikessm[triton]" if device.type == "cuda" else "spikessm[torch]"

    gen = torch.Generator(device=device).manual_seed(0)
    u = torch.randn(Bsz, L, H, device=device, generator=gen)
    grad_out = torch.randn(Bsz, L, H, device=device, generator=gen)

    rows = []
    for mode in ("fwd", "fwd+bwd"):
        u.requires_grad_(mode == "fwd+bwd")
        ref_outs = None
        for name, layer in layers.items():
            call = make_call(layer, u, mode, grad_out)
            outs = call()
            if name == REFERENCE:
                ref_outs = outs
            # fwd: compare y; fwd+bwd: compare du (the parameter grads are laid out differently in S5).
            err = None if name == REFERENCE else rel_err(outs[0], ref_outs[0])
            del outs
            # The call above was the first warm-up; on the CPU nothing more needs warming.
            t = common.benchmark(call, device, target_s=args.target_seconds,
                                 warmup=0 if device.type == "cpu" else None)
            common.log(f"  {name:22s} {mode:7s} {t.median_ms:9.3f} ms")
            rows.append({"impl": name, "mode": mode, "B": Bsz, "L": L, "H": H, "P": P,
                         "median_ms": t.median_ms, "min_ms": t.min_ms, "repeats": t.repeats,
                         "others_busy": t.others_busy,
                         "rel_err_vs_s5": err, "checked": "y" if mode == "fwd" else "du"})
        ref_ms = next(r["median_ms"] for r in rows if r["mode"] == mode and r["impl"] == REFERENCE)
        for r in rows:
            if r["mode"] == mode:
                r["speedup_vs_s5"] = ref_ms / r["median_ms"]

    def speedup(impl: str) -> float:
        return next(r["speedup_vs_s5"] for r in rows if r["impl"] == impl and r["mode"] == TARGET_MODE)

    met = speedup(headline) >= SPEEDUP_TARGET
    result = {
        "benchmark": "s5_layer",
        "env": {**common.environment(device), "cpu_busy_before": busy_before},
        "config": {"B": Bsz, "L": L, "H": H, "P": P, "threads": torch.get_num_threads(),
                   "s5_pytorch": common.package_version("s5-pytorch"), "target_seconds": args.target_seconds},
        "rows": rows,
        "target": {"impl": headline, "mode": TARGET_MODE, "speedup_required": SPEEDUP_TARGET,
                   "speedup": speedup(headline), "met": met},
    }
    if device.type == "cpu":
        result["env"]["cpu_busy_after"] = common.cpu_busy_fraction()
    common.write_json_atomic(out_path, result)

    print(f"device: {common.device_name(device)} | torch threads {torch.get_num_threads()} | "
          f"B={Bsz} L={L} H={H} P={P}")
    columns = [("impl", "impl"), ("mode", "mode"), ("ms", "median_ms"), ("min ms", "min_ms"),
               ("repeats", "repeats"), ("speedup_vs_s5", "speedup_vs_s5"), ("rel_err", "rel_err_vs_s5"),
               ("checked", "checked"), ("others_busy", "others_busy")]
    print(common.format_table(rows, columns))
    verdict = "MET" if met else "NOT MET"
    print(f"\ntarget: {headline} {TARGET_MODE} >= {SPEEDUP_TARGET:g}x faster than {REFERENCE}: "
          f"{verdict} ({speedup(headline):.2f}x)")
    if device.type == "cpu" and (note := common.contention_note(rows)):
        print(note)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
