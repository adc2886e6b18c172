"""`spikessm quantize RUN --sweep`: PTQ test accuracy against the weight width and against the state width, the
picture to look at before choosing widths.

    spikessm quantize RUN --sweep [--sweep-weight-bits 2,4,8] [--sweep-state-bits 8,16,24] [--limit-test N]
                                  [--out DIR]

Two one-dimensional sweeps around the widths the command is given (--weight-bits, --state-bits, --coef-bits;
defaults 8, 24, 16): the weight widths at the given state width, and the state widths (the S4D state and the LIF
membrane together, as `spikessm quantize` sets them) at the given weight width. Each point is a fresh PTQ of the
run's best model: calibrated on the first --calib-batches training batches, as `spikessm quantize` calibrates,
then scored on the test split by the integer simulator (IntegerSimulator, whose integers are the fake-quant
model's bit for bit, tests/quant); the saturations are those of the test pass. PTQ only: no point
is fine-tuned (QAT recovers some of what a narrow width loses; `spikessm quantize --qat-epochs` measures it).
--limit-test N scores every point, and the float model, on one seeded random subset of N test examples (seed 0,
the same subset for every point), for test splits too long to score a dozen times in float64.

Writes DIR (default RUN/quant_sweep, which must not exist): quant_sweep.png (two panels beside the float model's
accuracy and the majority-class baseline) and sweep.json (every point's widths, accuracy and saturations).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.utils.data import Subset

from .. import atomic
from .config import QuantConfig
from .model import QuantizedModel, calibrate, prepare_qat
from .simulate import IntegerSimulator

DEFAULT_WEIGHT_BITS = (2, 3, 4, 5, 6, 8)
DEFAULT_STATE_BITS = (8, 12, 16, 20, 24)
SWEEP_DIR, PLOT_NAME, JSON_NAME = "quant_sweep", "quant_sweep.png", "sweep.json"
AXES = ("weight_bits", "state_bits")


def parse_bits(text: str | None, option: str, default: tuple[int, ...]) -> list[int]:
    """A comma-separated list of distinct widths ("2,4,8") -> sorted ints; None -> the default grid."""
    if text is None:
        return list(default)
    try:
        bits = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated integers such as 2,4,8, got {text!r}") from None
    repeated = sorted({b for b in bits if bits.count(b) > 1})
    if repeated:
        raise ValueError(f"{option}: {repeated[0]} is given twice in {text!r}")
    return sorted(bits)


def point_config(weight_bits: int, state_bits: int, coef_bits: int) -> QuantConfig:
    """The QuantConfig of one point: the membrane as wide as the state, as `spikessm quantize` sets it."""
    return QuantConfig(weight_bits=weight_bits, state_bits=state_bits, membrane_bits=state_bits, coef_bits=coef_bits)


def grid(weight_bits: list[int], state_bits: list[int], base: QuantConfig) -> dict[str, list[QuantConfig]]:
    """The configs of both sweeps around base (its weight and state widths, its coefficient width), each validated
    by QuantConfig before any work is done; a bad width names its option."""
    configs: dict[str, list[QuantConfig]] = {}
    for axis, values, option in (("weight_bits", weight_bits, "--sweep-weight-bits"),
                                 ("state_bits", state_bits, "--sweep-state-bits")):
        configs[axis] = []
        for b in values:
            widths = {"weight_bits": base.weight_bits, "state_bits": base.state_bits, axis: b}
            try:
                configs[axis].append(point_config(widths["weight_bits"], widths["state_bits"], base.coef_bits))
            except ValueError as error:
                raise ValueError(f"{option}: {error}") from None
    return configs


def score(qmodel: QuantizedModel, dataset, batch_size: int) -> tuple[float, dict[str, int]]:
    """(test accuracy, saturations per point summed over the batches) of a calibrated model, by its simulator."""
    from ..training.evaluation import batches

    sim = IntegerSimulator(qmodel)
    right = total = 0
    saturations: dict[str, int] = {}
    with torch.no_grad():
        for batch in batches(dataset, batch_size):
            predicted = sim.predict(batch["inputs"], batch.get("lengths"))
            right += int((predicted == batch["labels"]).sum())
            total += len(batch["labels"])
            for name, count in sim.saturations.items():
                saturations[name] = saturations.get(name, 0) + count
    return right / max(total, 1), saturations


def sweep(model, data, configs: dict[str, list[QuantConfig]], *, batch_size: int, calib_batches: int) -> dict:
    """Every point's PTQ accuracy and saturations on the test split, by axis: {axis: [point, ...]}. A config met
    on both axes (the base widths) is measured once."""
    from ..training.evaluation import batches

    measured: dict[QuantConfig, dict] = {}
    out = {}
    for axis, points in configs.items():
        out[axis] = []
        for config in points:
            if config not in measured:
                qmodel = calibrate(prepare_qat(model, config), batches(data.train, batch_size),
                                   max_batches=calib_batches)
                accuracy, saturations = score(qmodel, data.test, batch_size)
                measured[config] = {"weight_bits": config.weight_bits, "state_bits": config.state_bits,
                                    "membrane_bits": config.membrane_bits, "coef_bits": config.coef_bits,
                                    "accuracy": accuracy, "saturations": sum(saturations.values()),
                                    "saturations_by_point": {k: v for k, v in saturations.items() if v}}
            out[axis].append(measured[config])
    return out


def plot_sweep(result: dict, path: str | Path, *, title: str) -> Path:
    """Writes the PNG (atomically): accuracy vs weight bits and accuracy vs state bits, with the float model's
    accuracy and, where known, the majority-class baseline as horizontal lines; points with saturations hollow."""
    from ..plots import pyplot, save_png

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw=dict(wspace=0.3))
    base = result["base"]
    fixed = {"weight_bits": f"state and membrane {base['state_bits']} bits",
             "state_bits": f"weights {base['weight_bits']} bits"}
    for ax, axis in zip(axes, AXES):
        points = result["sweeps"][axis]
        x = [p[axis] for p in points]
        ax.plot(x, [p["accuracy"] for p in points], "o-", color="tab:blue", label="PTQ (integer model)")
        saturated = [p for p in points if p["saturations"]]
        if saturated:
            ax.plot([p[axis] for p in saturated], [p["accuracy"] for p in saturated], "o", color="white",
                    markeredgecolor="tab:blue", label="with saturations")
        ax.axhline(result["float_accuracy"], color="tab:green", linestyle=":", label="float model")
        if result.get("majority_accuracy") is not None:
            ax.axhline(result["majority_accuracy"], color="gray", linestyle="--", label="majority class")
        ax.set_xticks(x)
        ax.set(xlabel=axis.replace("_", " "), ylabel="test accuracy", ylim=(0, 1.02),
               title=f"{fixed[axis]}, coefficients {base['coef_bits']} bits")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, y=1.02)
    return save_png(fig, path)


def table(result: dict) -> str:
    """The sweep as a markdown table, one row per point, the float model first."""
    rows = ["| sweep | weight bits | state bits | test accuracy | saturations |", "|---|---|---|---|---|",
            f"| float | - | - | {result['float_accuracy']:.4f} | - |"]
    for axis in AXES:
        for p in result["sweeps"][axis]:
            rows.append(f"| {axis.replace('_', ' ')} | {p['weight_bits']} | {p['state_bits']} | "
                        f"{p['accuracy']:.4f} | {p['saturations']} |")
    return "\n".join(rows)


def limit_test(data, n: int | None):
    """data with its test split cut to a seeded random subset of n examples (in their order); n None: all."""
    if n is None:
        return data
    if not 1 <= n <= len(data.test):
        raise ValueError(f"--limit-test must be an integer in [1, {len(data.test)}] (the test examples), got {n}")
    chosen = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(0))[:n].sort().values
    return dataclasses.replace(data, test=Subset(data.test, chosen.tolist()))


def run_sweep(args) -> int:
    """The `spikessm quantize RUN --sweep` command (arguments as spikessm.__main__ parses them)."""
    from ..training.evaluation import evaluate, majority_baseline
    from .cli import load_run

    if not args.sweep:
        raise ValueError("--sweep-weight-bits, --sweep-state-bits and --limit-test are options of --sweep; add "
                         "--sweep")
    if args.qat_epochs:
        raise ValueError("--sweep is PTQ only: leave out --qat-epochs (quantize without --sweep runs QAT)")
    if args.calib_batches < 1:
        raise ValueError(f"--calib-batches must be an integer >= 1, got {args.calib_batches}")
    base = point_config(args.weight_bits, args.state_bits, args.coef_bits)
    configs = grid(parse_bits(args.sweep_weight_bits, "--sweep-weight-bits", DEFAULT_WEIGHT_BITS),
                   parse_bits(args.sweep_state_bits, "--sweep-state-bits", DEFAULT_STATE_BITS), base)
    path, model, settings, data = load_run(args.run)
    data = limit_test(data, args.limit_test)
    out = Path(args.out) if args.out is not None else path.parent / SWEEP_DIR
    if out.exists():
        raise FileExistsError(f"quantize --sweep: {out} already exists; choose another --out or remove it")
    batch_size = settings["batch_size"]
    float_accuracy = evaluate(model, data.test, batch_size=batch_size, device=torch.device("cpu"),
                              amp=False)["accuracy"]
    result = {"task": settings["task"], "model": settings["model"], "checkpoint": str(path),
              "test_examples": len(data.test), "limit_test": args.limit_test, "calib_batches": args.calib_batches,
              "method": "PTQ",
              "base": {"weight_bits": base.weight_bits, "state_bits": base.state_bits,
                       "membrane_bits": base.membrane_bits, "coef_bits": base.coef_bits},
              "float_accuracy": float_accuracy, "majority_accuracy": majority_baseline(data)[1],
              "sweeps": sweep(model, data, configs, batch_size=batch_size, calib_batches=args.calib_batches)}
    print(table(result))
    out.mkdir(parents=True)
    # The plot first: sweep.json is the record that the folder is complete.
    plot_sweep(result, out / PLOT_NAME, title=f"{settings['task']} / {settings['model']}: PTQ test accuracy by "
                                              f"width ({path.parent.name}/{path.name})")
    atomic.write_json(out / JSON_NAME, result)
    print(f"wrote {out / PLOT_NAME}, {out / JSON_NAME}")
    return 0
