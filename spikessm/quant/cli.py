"""The command line of spikessm.quant: `spikessm quantize RUN` and `spikessm eval RUN --integer [DIR]`.

quantize: the run's best model -> PTQ (calibrated on training batches) -> optional QAT epochs -> the export
(spikessm.quant.export) plus, for `eval --integer`, the quantised model's state (quant.json: the QuantConfig and
every calibrated format; float/: the float weights after QAT) and report.json (float, PTQ, QAT and simulator
accuracy on the test split, saturations; the integer model's weight and state memory, operations per example by
width and their energy, on the first COST_BATCHES test batches: spikessm.quant.cost).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import atomic
from .config import QuantConfig
from .cost import energy_pj, memory, merge, op_counts
from .export import export
from .model import calibrate, prepare_qat
from .simulate import IntegerSimulator

STATE_NAME, FLOAT_DIR, REPORT_NAME = "quant.json", "float", "report.json"
COST_BATCHES = 4  # the operation counts are measured on this many test batches
KIND_NAMES = {"acc": "accumulates", "mul": "multiplies", "lut": "look-ups"}


def load_run(run: str):
    """(checkpoint path, the model in eval mode on the CPU, the run's settings, its TaskData) of a run directory or
    checkpoint file."""
    from ..__main__ import checkpoint_path
    from ..data.conventions import LEGACY_CONVENTIONS
    from ..training.checkpoint import load_model
    from ..training.tasks import get_task, load_task

    path = checkpoint_path(run)
    model, checkpoint = load_model(path, "cpu")
    settings = checkpoint["config"]
    task = get_task(settings["task"])
    conventions = settings.get("data_conventions", LEGACY_CONVENTIONS if task.conventions else None)
    data = load_task(task, settings["data_dir"], settings["source"], conventions)
    return path, model.eval(), settings, data


def _accuracy(predict, dataset, batch_size: int) -> float:
    from ..training.evaluation import batches

    right = total = 0
    with torch.no_grad():
        for batch in batches(dataset, batch_size):
            right += int((predict(batch["inputs"], batch.get("lengths")) == batch["labels"]).sum())
            total += len(batch["labels"])
    return right / max(total, 1)


def run_quantize(args) -> int:
    from ..training.evaluation import batches

    config = QuantConfig(weight_bits=args.weight_bits, state_bits=args.state_bits, membrane_bits=args.state_bits,
                         coef_bits=args.coef_bits)
    if args.qat_epochs < 0:
        raise ValueError(f"--qat-epochs must be an integer >= 0, got {args.qat_epochs}")
    if args.calib_batches < 1:
        raise ValueError(f"--calib-batches must be an integer >= 1, got {args.calib_batches}")
    path, model, settings, data = load_run(args.run)
    out = Path(args.out) if args.out is not None else path.parent / "quantized"
    if out.exists():
        raise FileExistsError(f"quantize: {out} already exists; choose another --out or remove it")
    batch_size = settings["batch_size"]
    qmodel = prepare_qat(model, config)
    calibrate(qmodel, batches(data.train, batch_size), max_batches=args.calib_batches)
    fake = lambda x, lengths: qmodel(x, lengths).argmax(-1)  # noqa: E731
    report = {"float_accuracy": _accuracy(lambda x, lengths: model(x, lengths).argmax(-1), data.test, batch_size),
              "ptq_accuracy": _accuracy(fake, data.test, batch_size), "qat_accuracy": None}
    if args.qat_epochs:
        optimizer = torch.optim.Adam(qmodel.parameters(), lr=args.qat_lr)
        for _ in range(args.qat_epochs):
            for batch in batches(data.train, batch_size):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(qmodel(batch["inputs"], batch.get("lengths")),
                                                         batch["labels"])
                loss.backward()
                optimizer.step()
        report["qat_accuracy"] = _accuracy(fake, data.test, batch_size)
    sim = IntegerSimulator(qmodel)
    saturations: dict[str, int] = {}

    def predict(x, lengths):
        logits = sim.logits(x, lengths)
        for name, count in sim.saturations.items():
            saturations[name] = saturations.get(name, 0) + count
        return logits.argmax(-1)

    report["simulator_accuracy"] = _accuracy(predict, data.test, batch_size)
    report["saturations"] = saturations
    report.update(config=config.to_dict(), checkpoint=str(path), test_examples=len(data.test))
    report.update(_costs(sim, data.test, batch_size))
    sample = next(iter(batches(data.test, 1)))
    length = int(sample["lengths"][0]) if "lengths" in sample else sample["inputs"].shape[1]
    export(sim, out, sample["inputs"][:, :length])
    model.save_pretrained(out / FLOAT_DIR)
    state = {"config": config.to_dict(), "fracs": {layer.name: layer.fracs for layer in qmodel.graph.layers()}}
    atomic.write_json(out / STATE_NAME, state)
    atomic.write_json(out / REPORT_NAME, report)
    rows = [("float", report["float_accuracy"]), ("PTQ", report["ptq_accuracy"]),
            ("QAT", report["qat_accuracy"]), ("simulator", report["simulator_accuracy"])]
    print("| model | test accuracy |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {'-' if value is None else f'{value:.4f}'} |")
    print()
    print(_cost_table(report))
    print(f"saturations: {sum(saturations.values())}; wrote {out}")
    return 0


def _costs(sim: IntegerSimulator, dataset, batch_size: int) -> dict:
    """report.json's cost fields: memory of the integer model, operations and energy per example (the means over
    the first COST_BATCHES test batches)."""
    from ..training.evaluation import batches

    counted = []
    for batch in batches(dataset, batch_size):
        counted.append(op_counts(sim, batch["inputs"], batch.get("lengths")))
        if len(counted) == COST_BATCHES:
            break
    mem = memory(sim)
    ops = merge(counted)
    return {"weight_bytes": mem["weight_bytes"], "state_bytes": mem["state_bytes"],
            "ops_per_example": ops["total"], "energy_pj_per_example": energy_pj(ops["total"]),
            "cost_examples": ops["examples"], "cost_batches": len(counted)}


def _cost_table(report: dict) -> str:
    def by_width(row: dict) -> str:
        return ", ".join(f"{n:,.0f} x {bits}-bit" for bits, n in row.items()) or "-"

    rows = [f"| cost (per example, mean over {report['cost_examples']} test examples) | value |", "|---|---|",
            f"| weight memory | {report['weight_bytes']:,} bytes |",
            f"| state memory | {report['state_bytes']:,} bytes |"]
    rows += [f"| {KIND_NAMES[kind]} | {by_width(row)} |" for kind, row in report["ops_per_example"].items()]
    rows.append(f"| energy | {report['energy_pj_per_example']:,.1f} pJ |")
    return "\n".join(rows)


def load_quantized(folder: Path):
    """The QuantizedModel saved by `spikessm quantize` in folder (quant.json + float/)."""
    from ..models import SequenceClassifier

    state_path = folder / STATE_NAME
    try:
        state = json.loads(state_path.read_text())
        config = QuantConfig(**state["config"])
        fracs = state["fracs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{state_path}: not a spikessm quantize state ({error})") from None
    qmodel = prepare_qat(SequenceClassifier.from_pretrained(folder / FLOAT_DIR), config)
    for layer in qmodel.graph.layers():
        saved = fracs.get(layer.name)
        if not isinstance(saved, dict) or set(saved) != set(layer.fracs):
            raise ValueError(f"{state_path}: field fracs.{layer.name} is missing or incomplete")
        layer.fracs = dict(saved)
    return qmodel


def run_integer_eval(args) -> int:
    from ..__main__ import checkpoint_path
    from ..training.evaluation import batches

    run = checkpoint_path(args.checkpoint).parent
    folder = Path(args.integer) if args.integer else run / "quantized"
    sim = IntegerSimulator(load_quantized(folder))
    _, _, settings, data = load_run(args.checkpoint)
    batch_size = args.batch_size or settings["batch_size"]
    right = total = saturated = 0
    for batch in batches(data.test, batch_size):
        right += int((sim.predict(batch["inputs"], batch.get("lengths")) == batch["labels"]).sum())
        total += len(batch["labels"])
        saturated += sum(sim.saturations.values())
    print(f"integer test accuracy {right / max(total, 1):.4f} on {total} examples ({folder}); "
          f"saturations: {saturated}")
    return 0
