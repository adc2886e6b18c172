"""Evaluation of a classifier on a task: accuracy and loss, the majority-class baseline, firing rates and
energy on the test split, and the anytime answers of causal models.

    figures = evaluate(model, data.val, batch_size=64, device=device, amp=False)   # {"accuracy", "loss", ...}
    report = report_test_split(model, data, batch_size=64, device=device, amp=False, fractions=DEFAULT_FRACTIONS)
    print(report.table); json_ready = report.results

`report_test_split` makes one pass over the test split: the ordinary one, or, when anytime fractions are asked for,
the per-step pass of spikessm.anytime, whose answers at each example's end are the ordinary ones (to float
rounding) and whose spike and operation counts are the same. The trainer and `spikessm eval` both use it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..anytime import AnytimeResult, check_streamable, evaluate_anytime
from ..data.base import TaskData, collate
from ..stats import OpCounter

INPUT_NAMES = ("inputs", "lengths", "inputs2", "lengths2")


def labels_of(dataset: Dataset) -> torch.Tensor:
    """The labels of every example, in order: the dataset's `labels` where it keeps them (through a Subset too),
    else read example by example."""
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.int64)]
    labels = getattr(dataset, "labels", None)
    return torch.as_tensor(labels) if labels is not None else torch.tensor([int(y) for _, y in dataset])


def majority_baseline(data: TaskData) -> tuple[int, float]:
    """The most common training label and the test accuracy of always answering it."""
    label = Counter(labels_of(data.train).tolist()).most_common(1)[0][0]
    return label, float((labels_of(data.test) == label).float().mean())


def model_inputs(batch: dict, device: torch.device) -> dict:
    """The model's keyword arguments from a batch dict (spikessm.data.base.collate), on `device`."""
    return {k: batch[k].to(device, non_blocking=True) for k in INPUT_NAMES if k in batch}


def batches(dataset: Dataset, batch_size: int, indices: list[list[int]] | None = None):
    """Collated batches of `dataset`: at the given index lists, or in order, batch_size examples each."""
    if indices is None:
        indices = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
    for chosen in indices:
        yield collate([dataset[i] for i in chosen])


def autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when amp is on; a no-op context elsewhere (the CPU runs in float32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device, amp: bool) -> dict:
    """Accuracy and mean loss over a dataset in eval mode (the model's mode is restored after)."""
    if len(dataset) == 0:
        raise ValueError("evaluate: the dataset is empty")
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    try:
        with torch.no_grad(), autocast(device, amp):
            for batch in batches(dataset, batch_size):
                logits = model(**model_inputs(batch, device)).float()
                labels = batch["labels"].to(device)
                loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
                correct += int((logits.argmax(-1) == labels).sum())
                total += len(labels)
    finally:
        model.train(was_training)
    return {"accuracy": correct / total, "loss": loss_sum / total, "examples": total}


@dataclass
class EvaluationReport:
    """What one pass over the test split found: `results` (JSON-able: test accuracy and loss, majority baseline,
    firing rates, energy), `table` (the per-layer operation table) and, for an anytime evaluation, `anytime`."""

    results: dict
    table: str
    anytime: AnytimeResult | None = None

    def summary(self) -> str:
        r = self.results
        return (f"test accuracy {r['test_accuracy']:.4f} on {r['test_examples']} examples (majority class "
                f"{r['majority_label']}: {r['majority_accuracy']:.4f}); energy {r['energy_uj_per_example']:.3f} uJ "
                f"per example, non-spiking {r['dense_energy_uj_per_example']:.3f} uJ")


def report_test_split(model: nn.Module, data: TaskData, *, batch_size: int, device: torch.device, amp: bool,
                fractions=None) -> EvaluationReport:
    """Evaluates `model` on the test split with spike and energy accounting, in one pass; with `fractions`
    (anytime evaluation of a causal model, see spikessm.anytime) that pass is the per-step one."""
    if fractions is not None:
        check_streamable(model, "anytime evaluation")
    anytime = None
    with OpCounter(model) as counter:
        if fractions is None:
            figures = evaluate(model, data.test, batch_size=batch_size, device=device, amp=amp)
        else:
            anytime = evaluate_anytime(model, batches(data.test, batch_size), fractions=fractions, device=device,
                                       amp=amp)
            figures = {"accuracy": anytime.end_accuracy, "loss": anytime.end_loss, "examples": anytime.examples}
    majority_label, majority_acc = majority_baseline(data)
    totals = counter.totals()
    examples = figures["examples"]
    results = {
        "test_accuracy": figures["accuracy"], "test_loss": figures["loss"], "test_examples": examples,
        "majority_label": majority_label, "majority_accuracy": majority_acc,
        "firing_rates": {s.name: s.firing_rate for s in counter.layers.values() if s.firing_rate is not None},
        "energy_uj_per_example": totals["energy_pj"] / 1e6 / examples,
        "dense_energy_uj_per_example": totals["dense_energy_pj"] / 1e6 / examples,
        "energy_ratio": totals["energy_ratio"], "totals": totals,
    }
    return EvaluationReport(results, counter.table(), anytime)
