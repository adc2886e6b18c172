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


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """An exponential moving average of `values` with its start-up bias removed (as TensorBoard smooths):
    s_t = m_t / (1 - weight^t), m_t = weight m_{t-1} + (1 - weight) v_t. NaN values (skipped steps) are left out
    of the average and stay NaN."""
    out, mean, count = [], 0.0, 0
    for v in values:
        if math.isnan(v):
            out.append(math.nan)
            continue
        count += 1
        mean = weight * mean + (1 - weight) * v
        out.append(mean / (1 - weight ** count))
    return out


def curves_figure(records: list[dict], majority_accuracy: float, title: str):
    """The learning curves of a run's metrics.jsonl records: training loss against steps (raw and smoothed),
    training and validation loss against epochs, training and validation accuracy against epochs beside the
    majority-class baseline."""
    plt = pyplot()
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    numbers = [r["epoch"] + 1 for r in epochs]
    fig, (ax_steps, ax_loss, ax_acc) = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw=dict(wspace=0.3))
    # a skipped non-finite step is recorded as null: a gap in the curve
    losses = [math.nan if r["loss"] is None else r["loss"] for r in steps]
    x = [r["step"] for r in steps]
    ax_steps.plot(x, losses, color="tab:blue", alpha=0.3, linewidth=1, label="raw")
    ax_steps.plot(x, smooth(losses), color="tab:blue", label="smoothed (EMA 0.9)")
    ax_steps.set(xlabel="step", ylabel="training loss", title="training loss")
    ax_steps.legend(fontsize=8)
    by_epoch = {}
    for r in steps:
        if r["loss"] is not None:
            by_epoch.setdefault(r["epoch"] + 1, []).append(r["loss"])
    ax_loss.plot(sorted(by_epoch), [sum(v) / len(v) for _, v in sorted(by_epoch.items())], "o-",
                 label="training (mean of logged steps)")
    ax_loss.plot(numbers, [math.nan if r["val_loss"] is None else r["val_loss"] for r in epochs], "o-",
                 label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
    ax_loss.legend(fontsize=8)
    ax_acc.plot(numbers, [r["train_accuracy"] for r in epochs], "o-", label="training")
    ax_acc.plot(numbers, [r["val_accuracy"] for r in epochs], "o-", label="validation")
    ax_acc.axhline(majority_accuracy, color="gray", linestyle="--", label="majority class (test)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy per epoch", ylim=(0, 1.02))
    ax_acc.legend(fontsize=8)
    for ax in (ax_steps, ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def plot_run(run_dir: Path, results: dict, title: str | None = None) -> list[Path]:
    """Writes run_dir/curves.png (curves_figure of its metrics.jsonl) and, for spiking models,
    run_dir/firing_rates.png; returns the paths. title: names task, model and run (default the folder)."""
    plt = pyplot()
    title = title or run_dir.name
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    paths = [save_png(curves_figure(records, results["majority_accuracy"], title), run_dir / "curves.png")]
    rates = results["firing_rates"]
    if rates:
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(rates)), 3.5))
        ax.bar(range(len(rates)), list(rates.values()))
        ax.set_xticks(range(len(rates)), list(rates), rotation=45, ha="right")
        checkpoint = f"{results.get('checkpoint', 'best checkpoint')}, step {results.get('checkpoint_step')}"
        ax.set(ylabel="firing rate (spikes / neuron / step)", title=f"{title}\ntest set, {checkpoint}")
        paths.append(save_png(fig, run_dir / "firing_rates.png"))
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
