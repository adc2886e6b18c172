"""Anytime answers: how a causal model's answer improves as more of each sequence arrives.

    result = evaluate_anytime(model, batches)        # batch dicts as spikessm.data.base.collate makes them
    print(result.table())
    json_ready = result.to_dict()                    # what `spikessm eval --per-step` writes to anytime.json

A causal SequenceClassifier's answer after t steps depends on steps 0..t-1 only, and `model(x, per_step=True)`
gives it for every t in one parallel pass, exactly as streaming with `step()` would. From that pass:

- Accuracy at fractions of each example's own length: the answer to an example of length n at fraction f is
  read at step ceil(f * n) (1-based), so it never comes from padding. Fractions are read as the decimals they
  print as (0.7 is 7/10), so ceil(0.7 * 10) is 7 and not the 8 that float rounding would give.
- Accuracy and mean loss at the step where each example ends (`end_accuracy`, `end_loss`): the full-sequence
  figures of an ordinary evaluation of the same batches (to float rounding: the pass pools by running sums), so
  one pass serves both.
- Accuracy after k steps, for every k up to the longest example: an example shorter than k has ended, and its
  answer is its final one (what a stream shows once its input stops); `running[k-1]` counts the examples still
  arriving at step k.
- Firing rates over time, per spiking readout (each SSMBlock whose readout is a Heaviside, LIF or RF neuron): the
  readout's spikes are the block's mixing-layer input, read with a forward pre-hook on that layer during the
  same per-step pass (this also covers blocks that fuse the S4D and its LIF neurons into one op, where the
  readout module itself is never called). Only steps before each example's end count. `rates_by_step[name][k-1]`
  is the rate at step k over the examples still running; `rates_by_fraction[name][i]` is the rate in the window
  of steps (ceil(f_{i-1} n), ceil(f_i n)] of each example (f_0 = 0).

Memory: the per-step pass holds (batch, length, n_classes) logits and the (batch, length, d_model) running pool
besides the ordinary activations, which is fine at evaluation batch sizes; lower the batch size for very long
sequences. No gradients are kept.

spikessm.losses turns the same per-step answers into a training loss that also rewards early answers;
spikessm.plots.plot_anytime draws a result.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import torch
from torch import nn

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def check_streamable(model: nn.Module, what: str) -> None:
    """Raises a ValueError naming `what` unless model is a causal single-sequence classifier, the only kind whose
    answer after t steps is a real anytime answer (a bidirectional model's answer at t depends on later inputs)."""
    causal = getattr(model, "causal", None)
    config = getattr(model, "config", None)
    if causal is None or config is None:
        raise TypeError(f"{what}: needs a SequenceClassifier, got {type(model).__name__}")
    if not causal:
        raise ValueError(f"{what}: per-step answers need a causal model, but this one is bidirectional (its answer "
                         "at step t depends on later inputs); train a causal one, e.g. --model lif-s4d or "
                         "--set bidirectional=False")
    if config.pair:
        raise ValueError(f"{what}: per-step answers are for single-sequence tasks, and this model takes pairs of "
                         "sequences (Retrieval)")


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """Sorted, distinct fractions, each in (0, 1]; ValueError naming the bad one."""
    out = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"fractions must be numbers in (0, 1], got {f!r}")
        out.append(float(f))
    if not out:
        raise ValueError("fractions must not be empty")
    return sorted(set(out))


def steps_at(fraction: float, lengths: torch.Tensor) -> torch.Tensor:
    """ceil(fraction * lengths) in exact integer arithmetic, fraction taken as the decimal it prints as."""
    ratio = Fraction(repr(float(fraction)))
    return (lengths * ratio.numerator + ratio.denominator - 1) // ratio.denominator


@dataclass
class AnytimeResult:
    """Accuracy and firing rates as a function of the steps seen (see the module docstring).

    fractions, fraction_accuracy: accuracy when each example has shown ceil(f * its length) steps.
    end_accuracy, end_loss: accuracy and mean cross-entropy at each example's last step (the ordinary
    full-sequence figures).
    accuracy_by_step[k-1]: accuracy after k steps (ended examples keep their final answer), k = 1..max_length;
    running[k-1]: examples still arriving at step k.
    rates_by_step, rates_by_fraction: per spiking readout, as described in the module docstring (None where no
    step was seen).
    """

    fractions: list[float]
    fraction_accuracy: list[float]
    end_accuracy: float
    examples: int
    accuracy_by_step: list[float]
    running: list[int]
    rates_by_step: dict[str, list[float | None]] = field(default_factory=dict)
    rates_by_fraction: dict[str, list[float | None]] = field(default_factory=dict)
    end_loss: float | None = None

    @property
    def max_length(self) -> int:
        return len(self.accuracy_by_step)

    def accuracy_at_step(self, k: int) -> float:
        """Accuracy after k >= 1 steps; beyond the longest example every answer is final."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"accuracy_at_step: k must be a positive integer, got {k!r}")
        return self.accuracy_by_step[min(k, self.max_length) - 1]

    def default_steps(self) -> list[int]:
        """Powers of two below the longest example, and the longest example's length."""
        steps = [2 ** i for i in range(max(0, self.max_length - 1).bit_length()) if 2 ** i < self.max_length]
        return steps + [self.max_length]

    def summary(self, steps: Sequence[int] | None = None) -> dict:
        """The compact table (fractions, chosen absolute steps, end accuracy, firing rate per fraction window) for
        results.json; steps default to default_steps()."""
        steps = self.default_steps() if steps is None else list(steps)
        return {
            "examples": self.examples, "end_accuracy": self.end_accuracy, "end_loss": self.end_loss,
            "max_length": self.max_length,
            "fractions": self.fractions, "fraction_accuracy": self.fraction_accuracy,
            "steps": steps, "step_accuracy": [self.accuracy_at_step(k) for k in steps],
            "step_running": [self.running[k - 1] if k <= self.max_length else 0 for k in steps],
            "rates_by_fraction": self.rates_by_fraction,
        }

    def to_dict(self) -> dict:
        """Everything, JSON-able (the per-step curves have max_length entries)."""
        return {**self.summary(), "accuracy_by_step": self.accuracy_by_step, "running": self.running,
                "rates_by_step": self.rates_by_step}

    def table(self, steps: Sequence[int] | None = None) -> str:
        """A printable table: accuracy (and each readout's firing rate) per fraction, then per absolute step."""
        summary = self.summary(steps)
        names = list(self.rates_by_fraction)
        lines = [f"anytime answers over {self.examples} examples (longest {self.max_length} steps); "
                 f"at each example's end: accuracy {self.end_accuracy:.4f}"]
        header = f"{'fraction seen':>13}  {'accuracy':>8}" + "".join(f"  {'rate ' + n:>{max(12, len(n) + 5)}}"
                                                                  for n in names)
        lines += ["", header]
        for i, (f, acc) in enumerate(zip(self.fractions, self.fraction_accuracy)):
            rates = "".join(f"  {format_rate(self.rates_by_fraction[n][i]):>{max(12, len(n) + 5)}}" for n in names)
            lines.append(f"{f:>13.2f}  {acc:>8.4f}{rates}")
        lines += ["", f"{'steps seen':>13}  {'accuracy':>8}  {'running':>7}"]
        for k, acc, running in zip(summary["steps"], summary["step_accuracy"], summary["step_running"]):
            lines.append(f"{k:>13d}  {acc:>8.4f}  {running:>7d}")
        return "\n".join(lines)


def format_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.4f}"


def spiking_readouts(model: nn.Module) -> dict[str, nn.Module]:
    """{name of the spiking readout: the module whose input is its spikes}, for every block of `model` that has
    one, as the block itself names it (SSMBlock.spiking_readout): RF neurons as the SSM layer, the SSM layer's
    LIF or RF neurons, or a Heaviside readout. The module is the block's mixing layer, which receives the
    spikes also when the SSM layer runs its neurons fused into its own op and never calls them."""
    out = {}
    for name, module in model.named_modules():
        readout = getattr(module, "spiking_readout", None)
        if callable(readout) and readout() is not None:
            out[f"{name}.{readout()[0]}"] = module.mixing
    return out


class RateRecorder:
    """Forward pre-hooks that sum each readout's spikes per step over valid positions, while `lengths` is set."""

    def __init__(self, model: nn.Module, fractions: list[float]):
        self.fractions = fractions
        self.readouts = spiking_readouts(model)
        self.lengths: torch.Tensor | None = None
        self.by_step = {name: [torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)]
                        for name in self.readouts}
        self.by_fraction = {name: [[0.0] * len(fractions), [0.0] * len(fractions)] for name in self.readouts}
        self.handles = []

    def __enter__(self) -> "RateRecorder":
        for name, module in self.readouts.items():
            self.handles.append(module.register_forward_pre_hook(self.hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def hook(self, name: str):
        def record(module, args):
            spikes, lengths = args[0], self.lengths
            if lengths is None:
                return
            B, L, H = spikes.shape
            valid = torch.arange(L, device=spikes.device)[None, :] < lengths[:, None]
            per_position = (spikes.detach().to(torch.float64).sum(-1) * valid).cpu()  # (B, L)
            valid = valid.cpu()
            spike_sums, neuron_sums = self.by_step[name]
            n = max(L, len(spike_sums))
            spike_sums = nn.functional.pad(spike_sums, (0, n - len(spike_sums)))
            neuron_sums = nn.functional.pad(neuron_sums, (0, n - len(neuron_sums)))
            spike_sums[:L] += per_position.sum(0)
            neuron_sums[:L] += valid.sum(0).to(torch.float64) * H
            self.by_step[name] = [spike_sums, neuron_sums]
            # Spikes in each fraction window (ceil(f_{i-1} n), ceil(f_i n)] from the running sum over steps.
            cumulative = nn.functional.pad(per_position.cumsum(1), (1, 0))  # [:, k] = spikes in steps 1..k
            lengths = lengths.cpu()
            rows = torch.arange(B)
            previous = torch.zeros_like(lengths)
            sums, neurons = self.by_fraction[name]
            for i, f in enumerate(self.fractions):
                end = steps_at(f, lengths)
                sums[i] += float((cumulative[rows, end] - cumulative[rows, previous]).sum())
                neurons[i] += float((end - previous).sum()) * H
                previous = end

        return record

    def rates(self) -> tuple[dict, dict]:
        by_step = {name: [s / n if n else None for s, n in zip(*(t.tolist() for t in self.by_step[name]))]
                   for name in self.readouts}
        by_fraction = {name: [s / n if n else None for s, n in zip(*self.by_fraction[name])]
                       for name in self.readouts}
        return by_step, by_fraction


def evaluate_anytime(model: nn.Module, batches: Iterable[dict], *, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                     device: torch.device | str | None = None, amp: bool = False) -> AnytimeResult:
    """Accuracy (and firing rates) of a causal classifier as a function of the steps seen.

    Args:
        model: a causal, single-sequence SequenceClassifier (a bidirectional or pair model is refused).
        batches: dicts with "inputs" (B, L[, d_input]), "lengths" (B,) and "labels" (B,), as
            spikessm.data.base.collate makes them (the trainer's evaluation batches); "lengths" may be absent
            for unpadded batches.
        fractions: fractions of each example's own length, in (0, 1] (sorted and made distinct).
        device: where the model runs (default: where its parameters are); the batches are moved there.
        amp: bfloat16 autocast on CUDA, as the trainer's evaluation does with amp on.

    Runs in eval mode without gradients, one per-step pass per batch; the model's mode is restored after.
    """
    check_streamable(model, "evaluate_anytime")
    fractions = check_fractions(fractions)
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    was_training = model.training
    model.eval()
    examples = end_correct = 0
    end_loss = 0.0
    fraction_correct = [0] * len(fractions)
    # correct_by_step[k-1]: examples answered right after k steps, ended examples counted with their final answer.
    correct_by_step = torch.zeros(0, dtype=torch.int64)
    running = torch.zeros(0, dtype=torch.int64)
    recorder = RateRecorder(model, fractions)
    try:
        with torch.no_grad(), recorder, torch.autocast("cuda", dtype=torch.bfloat16,
                                                       enabled=amp and device.type == "cuda"):
            for batch in batches:
                if "inputs2" in batch:
                    raise ValueError("evaluate_anytime: the batches hold pairs of sequences (inputs2); per-step "
                                     "answers are for single-sequence tasks")
                inputs, labels = batch["inputs"].to(device), batch["labels"].to(device)
                B, L = inputs.shape[:2]
                lengths = batch.get("lengths")
                lengths = (torch.full((B,), L, dtype=torch.int64) if lengths is None else lengths).to(device)
                recorder.lengths = lengths
                logits = model(inputs, lengths, per_step=True).float()  # (B, L, C)
                recorder.lengths = None
                right = logits.argmax(-1) == labels[:, None]  # (B, L)
                rows = torch.arange(B, device=device)
                ends = right[rows, lengths - 1]
                end_loss += float(nn.functional.cross_entropy(logits[rows, lengths - 1], labels, reduction="sum"))
                for i, f in enumerate(fractions):
                    fraction_correct[i] += int(right[rows, steps_at(f, lengths) - 1].sum())
                # After k steps an example that has ended shows its final answer.
                seen = torch.arange(1, L + 1, device=device)[None, :]
                valid = seen <= lengths[:, None]
                right_or_final = torch.where(valid, right, ends[:, None])
                batch_by_step = right_or_final.sum(0).cpu()
                grown = max(L, len(correct_by_step))
                # Earlier batches are at most len(correct_by_step) long: past it their answers are final.
                correct_by_step = torch.cat([correct_by_step,
                                             torch.full((grown - len(correct_by_step),), end_correct)])
                running = nn.functional.pad(running, (0, grown - len(running)))
                correct_by_step[:L] += batch_by_step
                correct_by_step[L:] += int(ends.sum())
                running[:L] += valid.sum(0).cpu()
                end_correct += int(ends.sum())
                examples += B
    finally:
        model.train(was_training)
    if examples == 0:
        raise ValueError("evaluate_anytime: no examples in the batches")
    rates_by_step, rates_by_fraction = recorder.rates()
    return AnytimeResult(
        fractions=fractions, fraction_accuracy=[c / examples for c in fraction_correct],
        end_accuracy=end_correct / examples, examples=examples,
        accuracy_by_step=(correct_by_step.to(torch.float64) / examples).tolist(), running=running.tolist(),
        rates_by_step=rates_by_step, rates_by_fraction=rates_by_fraction, end_loss=end_loss / examples)
