"""The PNG plots of spikessm, drawn off-screen (matplotlib's Agg backend, so no display is needed) and written
atomically: a run's learning curves and firing rates (`plot_run`), and anytime answers (`plot_anytime`)."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

from . import atomic


def pyplot():
    """matplotlib.pyplot on the off-screen backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path) -> Path:
    """Writes the figure as a PNG (atomically) and closes it; returns the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    atomic.write_bytes(path, buffer.getvalue())
    return Path(path)


def plot_run(run_dir: Path, results: dict) -> list[Path]:
    """Writes run_dir/curves.png and (for spiking models) run_dir/firing_rates.png; returns the paths."""
    plt = pyplot()
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
    save_png(fig, paths[0])
    rates = results["firing_rates"]
    if rates:
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(rates)), 3.5))
        ax.bar(range(len(rates)), list(rates.values()))
        ax.set_xticks(range(len(rates)), list(rates), rotation=45, ha="right")
        ax.set(ylabel="firing rate (spikes / neuron / step)", title="test set, best checkpoint")
        paths.append(run_dir / "firing_rates.png")
        save_png(fig, paths[1])
    return paths


def plot_anytime(result, path: str | Path, *, majority_accuracy: float | None = None,
                 title: str | None = None) -> Path:
    """Writes a PNG (atomically): accuracy vs fraction of each sequence seen, accuracy vs steps seen, and (for
    spiking models) each readout's firing rate vs step. matplotlib draws off-screen (Agg)."""
    plt = pyplot()
    path = Path(path)
    panels = 3 if result.rates_by_step else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8), gridspec_kw=dict(wspace=0.3))
    ax = axes[0]
    ax.plot([0] + result.fractions, [math.nan] + result.fraction_accuracy, "o-", label="model")
    ax.axhline(result.end_accuracy, color="tab:green", linestyle=":", label="full sequence")
    if majority_accuracy is not None:
        ax.axhline(majority_accuracy, color="gray", linestyle="--", label="majority class")
    ax.set(xlabel="fraction of each sequence seen", ylabel="accuracy", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(fontsize=8)
    ax = axes[1]
    steps = range(1, result.max_length + 1)
    ax.plot(steps, result.accuracy_by_step, label="accuracy")
    ax.plot(steps, [n / result.examples for n in result.running], color="gray", linestyle=":",
            label="share still arriving")
    if majority_accuracy is not None:
        ax.axhline(majority_accuracy, color="gray", linestyle="--", label="majority class")
    ax.set(xlabel="steps seen (ended sequences keep their answer)", ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    if result.max_length >= 64:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    axes[0].grid(alpha=0.3)
    if result.rates_by_step:
        ax = axes[2]
        for name, rates in result.rates_by_step.items():
            label = name.removesuffix(".readout").removesuffix(".ssm.neurons")
            ax.plot(steps, [math.nan if r is None else r for r in rates], label=label)
        ax.set(xlabel="step (running examples only)", ylabel="firing rate (spikes / neuron / step)")
        if result.max_length >= 64:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"anytime answers, {result.examples} examples")
    return save_png(fig, path)
