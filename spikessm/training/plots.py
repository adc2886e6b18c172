"""PNG plots of a run: learning curves (training loss, training and validation accuracy) and per-layer firing
rates of the best checkpoint. matplotlib draws off-screen (Agg), so no display is needed."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

from .. import atomic


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic.write_bytes(path, buffer.getvalue())


def plot_run(run_dir: Path, results: dict) -> list[Path]:
    """Writes run_dir/curves.png and (for spiking models) run_dir/firing_rates.png; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    # a skipped non-finite step is recorded as null: a gap in the curve
    ax_loss.plot([r["step"] for r in steps], [math.nan if r["loss"] is None else r["loss"] for r in steps])
    ax_loss.set(xlabel="step", ylabel="training loss")
    ax_acc.plot([r["step"] for r in epochs], [r["train_accuracy"] for r in epochs], "o-", label="train")
    ax_acc.plot([r["step"] for r in epochs], [r["val_accuracy"] for r in epochs], "o-", label="validation")
    ax_acc.axhline(results["majority_accuracy"], color="gray", linestyle="--", label="majority class")
    ax_acc.set(xlabel="step", ylabel="accuracy")
    ax_acc.legend()
    paths = [run_dir / "curves.png"]
    _save(fig, paths[0])
    plt.close(fig)
    rates = results["firing_rates"]
    if rates:
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(rates)), 3.5))
        ax.bar(range(len(rates)), list(rates.values()))
        ax.set_xticks(range(len(rates)), list(rates), rotation=45, ha="right")
        ax.set(ylabel="firing rate (spikes / neuron / step)", title="test set, best checkpoint")
        paths.append(run_dir / "firing_rates.png")
        _save(fig, paths[1])
        plt.close(fig)
    return paths
