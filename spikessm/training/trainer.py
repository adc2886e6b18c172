"""Training and evaluation of a SequenceClassifier on a task, with a run directory that can be resumed.

A run directory holds:
    config.json      the resolved configuration (task preset + overrides), written first
    metrics.jsonl    one JSON record per logged step ("kind": "step") and per epoch ("kind": "epoch")
    last.pt          the latest checkpoint (model, optimiser, schedule, RNG states, epoch): --resume reads it
    best.pt          the checkpoint with the best validation accuracy
    results.json     test accuracy, majority baseline, firing rates and energy of the best checkpoint
    curves.png, firing_rates.png
Checkpoints and results are written atomically. Checkpoints are taken at the end of each epoch; resuming
restores every RNG and the per-epoch data order, so a resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import atomic
from ..data.base import TaskData, collate
from ..models import build_model
from ..stats import OpCounter
from . import distributed
from .optim import make_optimizer
from .tasks import get_task, load_task


@dataclass
class TrainConfig:
    """What `spikessm train` runs. None in the optimiser fields means the task preset's value."""

    task: str = "tiny-listops"
    model: str = "gsu-s4d"
    run_dir: str | None = None
    data_dir: str | None = None
    source: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    ssm_lr: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    log_every: int = 20
    model_overrides: dict = field(default_factory=dict)

    def resolved(self) -> dict:
        """Every setting with the task preset filled in, including the model settings."""
        task = get_task(self.task)
        out = asdict(self)
        for name in ("epochs", "batch_size", "lr", "ssm_lr", "weight_decay", "warmup_steps"):
            if out[name] is None:
                out[name] = getattr(task, name)
        out["model_settings"] = {**task.model, **self.model_overrides}
        out["run_dir"] = self.run_dir or f"runs/{self.task}-{self.model}-{time.strftime('%Y%m%d-%H%M%S')}"
        if self.task == "tiny-listops" and self.data_dir is None:
            out["data_dir"] = "runs/tiny-listops-data"  # generated once, shared by later runs
        return out


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def labels_of(dataset) -> torch.Tensor:
    labels = getattr(dataset, "labels", None)
    return torch.as_tensor(labels) if labels is not None else torch.tensor([int(y) for _, y in dataset])


def majority_baseline(data: TaskData) -> tuple[int, float]:
    """The most common training label and the test accuracy of always answering it."""
    label = Counter(labels_of(data.train).tolist()).most_common(1)[0][0]
    return label, float((labels_of(data.test) == label).float().mean())


def model_inputs(batch: dict, device: torch.device) -> dict:
    names = ("inputs", "lengths", "inputs2", "lengths2")
    return {k: batch[k].to(device, non_blocking=True) for k in names if k in batch}


def batches(dataset, index_lists):
    for indices in index_lists:
        yield collate([dataset[i] for i in indices])


def evaluate(model: nn.Module, dataset, *, batch_size: int, device: torch.device, amp: bool) -> dict:
    """Accuracy and mean loss over a dataset in eval mode."""
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    order = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
    with torch.no_grad(), autocast(device, amp):
        for batch in batches(dataset, order):
            logits = model(**model_inputs(batch, device)).float()
            labels = batch["labels"].to(device)
            loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(-1) == labels).sum())
            total += len(labels)
    model.train(was_training)
    return {"accuracy": correct / total, "loss": loss_sum / total, "examples": total}


def autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when amp is on; a no-op context elsewhere (the CPU runs in float32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


class Progress:
    """One status line on stderr, redrawn in place on a terminal and printed every `every` steps otherwise."""

    def __init__(self, total: int, every: int, enabled: bool):
        self.total, self.every, self.enabled = total, max(1, every), enabled
        self.tty = sys.stderr.isatty()

    def update(self, step: int, text: str) -> None:
        if not self.enabled:
            return
        line = f"[{step}/{self.total}] {text}"
        if self.tty:
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
        elif step % self.every == 0 or step == self.total:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr, flush=True)


def _keep_metrics_up_to(path: Path, step: int) -> None:
    """On resume: drop records logged after the checkpoint, so the history matches an uninterrupted run."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    atomic.write_bytes(path, "".join(line + "\n" for line in kept).encode())


def train(config: TrainConfig, *, resume: bool = False, log=print) -> dict:
    """Trains, keeps the best checkpoint by validation accuracy, evaluates it on the test split and returns the
    results (also written to run_dir/results.json). resume: continue from run_dir/last.pt."""
    settings = config.resolved()
    device = pick_device(config.device)
    dist = distributed.setup(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    run_dir = Path(settings["run_dir"])
    checkpoint_path = run_dir / "last.pt"
    if resume and not checkpoint_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and checkpoint_path.exists():
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another "
                                  "--run-dir")
        atomic.write_json(run_dir / "config.json", settings)
    seed_everything(config.seed)

    task = get_task(config.task)
    if dist.main:
        data = load_task(task, settings["data_dir"], config.source)
    dist.barrier()  # rank 0 generates/caches the data first; the others then read it
    if not dist.main:
        data = load_task(task, settings["data_dir"], config.source)
    val_set = data.val if data.val is not None else data.test
    model = build_model(config.model, n_classes=data.n_classes, vocab_size=data.vocab_size, d_input=data.d_input,
                        pair=data.pair, device=device, **settings["model_settings"])
    batch_size, epochs = settings["batch_size"], settings["epochs"]
    steps_per_epoch = len(data.train) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({len(data.train)} examples) is smaller than one batch ({batch_size})")
    optimizer, scheduler = make_optimizer(model, lr=settings["lr"], ssm_lr=settings["ssm_lr"],
                                          weight_decay=settings["weight_decay"],
                                          warmup_steps=settings["warmup_steps"], total_steps=epochs * steps_per_epoch)
    start_epoch, step, best_acc = 0, 0, -1.0
    if resume:
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch, step, best_acc = checkpoint["epoch"] + 1, checkpoint["step"], checkpoint["best_accuracy"]
        restore_rng(checkpoint["rng"])
        if dist.main:
            _keep_metrics_up_to(run_dir / "metrics.jsonl", step)
    train_model = model
    if dist.enabled:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.index is not None
                                                          else None)
    if dist.main:
        n_params = sum(p.numel() for p in model.parameters())
        log(f"task {config.task}: {len(data.train)} train / {len(val_set)} val / {len(data.test)} test examples; "
            f"model {config.model}: {n_params:,} parameters on {device}"
            + (f" x {dist.world_size} processes" if dist.enabled else ""))

    progress = Progress(epochs * steps_per_epoch, config.log_every, dist.main)
    metrics = open(run_dir / "metrics.jsonl", "a") if dist.main else None
    try:
        for epoch in range(start_epoch, epochs):
            model.train()
            order = distributed.epoch_batches(len(data.train), batch_size, seed=config.seed, epoch=epoch,
                                              rank=dist.rank, world_size=dist.world_size)
            correct = seen = 0
            started = time.perf_counter()
            rates, rate = [], None
            for batch in batches(data.train, order):
                labels = batch["labels"].to(device)
                # Spikes are counted on the logged steps only: counting reads tensors back from the device.
                counting = (step + 1) % config.log_every == 0
                with OpCounter(model) if counting else contextlib.nullcontext() as counter:
                    with autocast(device, config.amp):
                        logits = train_model(**model_inputs(batch, device)).float()
                loss = nn.functional.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                loss = loss.item()
                correct += int((logits.argmax(-1) == labels).sum())
                seen += len(labels)
                if counting:
                    rate = counter.totals()["firing_rate"]
                    rates += [rate] if rate is not None else []
                speed = seen * dist.world_size / (time.perf_counter() - started)
                progress.update(step, f"epoch {epoch + 1}/{epochs} loss {loss:.3f} acc {correct / seen:.3f} "
                                      f"{speed:.0f} ex/s" + (f" rate {rate:.3f}" if rate is not None else ""))
                if metrics is not None and counting:
                    metrics.write(json.dumps({"kind": "step", "step": step, "epoch": epoch, "loss": loss,
                                              "accuracy": correct / seen, "lr": scheduler.get_last_lr()[-1],
                                              "examples_per_s": speed, "firing_rate": rate}) + "\n")
            progress.close()
            if dist.main:
                result = evaluate(model, val_set, batch_size=batch_size, device=device, amp=config.amp)
                best = result["accuracy"] > best_acc
                best_acc = max(best_acc, result["accuracy"])
                metrics.write(json.dumps({"kind": "epoch", "step": step, "epoch": epoch,
                                          "train_accuracy": correct / seen, "val_accuracy": result["accuracy"],
                                          "val_loss": result["loss"],
                                          "firing_rate": sum(rates) / len(rates) if rates else None,
                                          "seconds": time.perf_counter() - started}) + "\n")
                metrics.flush()
                log(f"epoch {epoch + 1}/{epochs}: train acc {correct / seen:.4f}, val acc {result['accuracy']:.4f}"
                    f"{' (best)' if best else ''}, {time.perf_counter() - started:.0f} s")
                checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
                              "best_accuracy": best_acc, "rng": rng_states(), "config": settings,
                              "model_config": model.config.to_dict()}
                if best:
                    atomic.save_torch(run_dir / "best.pt", checkpoint)
                atomic.save_torch(checkpoint_path, checkpoint)
            dist.barrier()
    finally:
        if metrics is not None:
            metrics.close()
    if not dist.main:
        return {}
    results = final_evaluation(run_dir, data, device=device, batch_size=batch_size, amp=config.amp, log=log)
    from .plots import plot_run

    plot_run(run_dir, results)
    return results


def load_checkpoint_model(path: Path, device: torch.device):
    """The SequenceClassifier stored in a checkpoint, in eval mode, and the checkpoint's run settings."""
    from ..models import ModelConfig, SequenceClassifier

    checkpoint = torch.load(path, map_location=device, weights_only=False)
    model = SequenceClassifier(ModelConfig(**checkpoint["model_config"]), device=device)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint["config"]


def report_test_split(model: nn.Module, data: TaskData, *, batch_size: int, device: torch.device, amp: bool,
                log=print) -> dict:
    """Evaluates `model` on the test split with spike and energy accounting; logs the per-layer table and a
    summary line; returns the results (accuracy, majority baseline, firing rates, energy)."""
    with OpCounter(model) as counter:
        result = evaluate(model, data.test, batch_size=batch_size, device=device, amp=amp)
    majority_label, majority_acc = majority_baseline(data)
    totals = counter.totals()
    results = {
        "test_accuracy": result["accuracy"], "test_loss": result["loss"], "test_examples": result["examples"],
        "majority_label": majority_label, "majority_accuracy": majority_acc,
        "firing_rates": {s.name: s.firing_rate for s in counter.layers.values() if s.firing_rate is not None},
        "energy_uj_per_example": totals["energy_pj"] / 1e6 / result["examples"],
        "dense_energy_uj_per_example": totals["dense_energy_pj"] / 1e6 / result["examples"],
        "energy_ratio": totals["energy_ratio"], "totals": totals,
    }
    log(counter.table())
    log(f"test accuracy {result['accuracy']:.4f} on {result['examples']} examples (majority class {majority_label}: "
        f"{majority_acc:.4f}); energy {results['energy_uj_per_example']:.3f} uJ per example, non-spiking "
        f"{results['dense_energy_uj_per_example']:.3f} uJ")
    return results


def final_evaluation(run_dir: Path, data: TaskData, *, device: torch.device, batch_size: int, amp: bool,
                     log=print) -> dict:
    """report_test_split of best.pt, also written to run_dir/results.json."""
    model, _ = load_checkpoint_model(run_dir / "best.pt", device)
    results = report_test_split(model, data, batch_size=batch_size, device=device, amp=amp, log=log)
    atomic.write_json(run_dir / "results.json", results)
    return results
