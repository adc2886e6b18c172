"""The integer simulator against the float model it was quantised from: evaluation time on the CPU.

    python benchmarks/bench_quant.py                    # lif-s4d and causal gsu-s4d, three shapes, 2 threads
    python benchmarks/bench_quant.py --quick            # a smoke run (JSON goes to the temp dir)
    python benchmarks/bench_quant.py --batch 8 --length 1024 --width 64 --out /tmp/q.json

Each model is built with random weights (token inputs, vocabulary 16, 10 classes, 2 layers, d_state 64,
batch norm; gsu-s4d made causal with bidirectional=False, as spikessm.quant requires), quantised at the default
QuantConfig and calibrated (PTQ) on one random batch of the timed shape. Three evaluations of that batch are
timed, each an inference forward under torch.no_grad():
  * "float": the SequenceClassifier (float32), the reference of the ratios;
  * "fake-quant": the QuantizedModel (the integer graph in float64 tensors, what QAT trains);
  * "simulator": the IntegerSimulator (int64 tensors), the integer model hardware runs, at its default backend
    ("auto": the loops in time compiled by numba where it is installed; the row's `backend` says which ran);
  * "simulator-torch": the same with backend="torch" (every step as torch operations).
The issue's goal is simulator / float <= ~3. `equal` checks that the simulator's logits are the fake-quant
model's integers exactly on the timed batch (both simulator rows). No byte or flop model: both sides run the same
graph, so the ratio is the figure.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` lives next to this file

import common  # noqa: E402
from spikessm.models import build_model  # noqa: E402
from spikessm.quant import IntegerSimulator, QuantConfig, calibrate, prepare_qat  # noqa: E402

MODELS = {"lif-s4d": {}, "gsu-s4d": {"bidirectional": False}}
VOCAB, CLASSES, LAYERS, STATES = 16, 10, 2, 64


def shapes(args) -> list[tuple[str, int, int, int]]:
    if args.batch or args.length or args.width:
        return [("cli", args.batch or 8, args.length or 1024, args.width or 64)]
    if args.quick:
        return [("quick", 2, 64, 16)]
    return [("small batch", 1, 1024, 128), ("default", 8, 1024, 64), ("long", 8, 4096, 64)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int)
    p.add_argument("--length", type=int)
    p.add_argument("--width", type=int, help="d_model")
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--target-seconds", type=float, help="timed runs per row (default 2.0; 0.05 with --quick)")
    p.add_argument("--quick", action="store_true", help="one tiny shape, short timings: a smoke run")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/quant-<device-tag>.json; with "
                                            "--quick, a file in the temp dir)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cpu")
    torch.set_num_threads(args.threads)
    target_s = args.target_seconds or (0.05 if args.quick else 2.0)
    out_path = common.output_path(args.out, args.quick, "quant", device)
    busy_before = common.check_idle(device)
    config = QuantConfig()
    rows = []
    for case, B, L, H in shapes(args):
        for preset in args.models:
            torch.manual_seed(0)
            model = build_model(preset, n_classes=CLASSES, vocab_size=VOCAB, d_model=H, n_layers=LAYERS,
                                d_state=STATES, norm="batch", dropout=0.0, **MODELS[preset]).eval()
            x = torch.randint(0, VOCAB, (B, L), generator=torch.Generator().manual_seed(B + L + H))
            qmodel = calibrate(prepare_qat(model, config), [x])
            sim, loops = IntegerSimulator(qmodel), IntegerSimulator(qmodel, backend="torch")
            with torch.no_grad():
                integers, _, _ = qmodel.integer_logits(x)
                equal = {name: bool(torch.equal(s.logits(x), integers.to(torch.int64)))
                         for name, s in (("simulator", sim), ("simulator-torch", loops))}
            impls = {"float": model, "fake-quant": qmodel, "simulator": sim.logits, "simulator-torch": loops.logits}
            group = {}
            for name, fn in impls.items():
                def call(fn=fn, x=x):
                    with torch.no_grad():
                        return fn(x)
                t = common.benchmark(call, device, target_s=target_s, warmup=1)
                common.log(f"  {case} {preset} B={B} L={L} H={H} {name:10s} {t.median_ms:10.3f} ms")
                group[name] = {"case": case, "model": preset, "impl": name, "B": B, "L": L, "H": H,
                               "N": STATES, "layers": LAYERS, "median_ms": t.median_ms, "min_ms": t.min_ms,
                               "repeats": t.repeats, "others_busy": t.others_busy}
            for row in group.values():
                row["vs_float"] = row["median_ms"] / group["float"]["median_ms"]
            for name, same in equal.items():
                group[name]["equal"] = same
            group["simulator"]["backend"] = sim.backend
            rows += group.values()
    sims = [r for r in rows if r["impl"] == "simulator"]
    checked = [r for r in rows if "equal" in r]
    summary = {"what": "simulator / float evaluation time, worst over models and shapes (goal <= ~3)",
               "achieved": max(r["vs_float"] for r in sims)}
    result = {"benchmark": "quant", "env": {**common.environment(device), "cpu_busy_before": busy_before},
              "config": {"threads": torch.get_num_threads(), "quant": config.to_dict(), "vocab_size": VOCAB,
                         "n_classes": CLASSES, "calibration": "one random batch of the timed shape"},
              "rows": rows, "summary": summary}
    common.write_json_atomic(out_path, result)
    print(f"device: {common.device_name(device)}")
    print(common.format_table(rows, [("case", "case"), ("model", "model"), ("impl", "impl"), ("B", "B"), ("L", "L"),
                                     ("H", "H"), ("ms", "median_ms"), ("vs float", "vs_float"), ("equal", "equal"),
                                     ("others_busy", "others_busy")]))
    note = common.contention_note(rows)
    if note:
        print(note)
    print(f"\n{summary['what']}: {summary['achieved']:.2f}")
    print(f"wrote {out_path}")
    return 0 if all(r["equal"] for r in checked) else 1


if __name__ == "__main__":
    sys.exit(main())
