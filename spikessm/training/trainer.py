"""Training and evaluation of a SequenceClassifier on a task, in a run directory that can always be resumed.

A run directory holds:
    config.json      the run's settings (spikessm.training.settings), written once when the run starts
    metrics.jsonl    one JSON record per logged step ("kind": "step") and per epoch ("kind": "epoch")
    last.pt          the latest checkpoint: --resume continues from it
    best.pt          the checkpoint with the best validation accuracy
    results.json     test accuracy, majority baseline, firing rates and energy of the best checkpoint
    curves.png, firing_rates.png
    .lock            held (flock) by the process training the run, so that no second process writes it

Every setting, the device, the data and the model are checked before the directory is created, so a failed
start leaves nothing behind. last.pt is written every `checkpoint_every` steps or `checkpoint_minutes` minutes
(default 10 minutes), at every epoch end, and when SIGINT or SIGTERM asks the run to stop. A checkpoint records
the position within the epoch, every RNG state and how much of metrics.jsonl belongs to it, so a resumed run
replays the same batches with the same random numbers and ends equal to an uninterrupted one; metrics.jsonl is
cut back to the checkpoint on resume. Files are written atomically; a failed checkpoint write keeps the last good
checkpoint and says so.

The Trainer is in three parts: set-up (Trainer(...), nothing written; start() creates or reopens the run),
one epoch (run_epoch) and the epoch's end (end_epoch: validation, metrics, checkpoints); train() chains them and
finish() evaluates the best checkpoint on the test split.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

try:
    import fcntl  # POSIX file locks; elsewhere runs are not locked
except ImportError:
    fcntl = None
from torch.utils.data import Dataset

from .. import atomic
from ..anytime import check_per_step_training, streaming_loss
from ..data.base import TaskData, collate
from ..models import build_model
from ..stats import OpCounter
from . import distributed
from .checkpoint import CheckpointError, checkpoint_content, load_model, read_checkpoint, restore_rng, rng_state
from .optim import make_optimizer
from .settings import (
    SettingError,
    TrainConfig,
    config_from_run,
    contradictions,
    pick_device,
    read_run_settings,
)
from .tasks import get_task, load_task

# Test hook: "step:N" kills the process (SIGKILL) after step N; "checkpoint:N" kills it during its N-th
# checkpoint write (after the data reach the temporary file, before the rename); "term:N" / "int:N" send it
# SIGTERM / SIGINT after step N. Unset in normal use.
TEST_KILL_ENV = "SPIKESSM_TEST_KILL_AT"
LOCK_NAME = ".lock"


class RunError(RuntimeError):
    """A run cannot go on (a non-finite loss, a run directory that cannot be used); the message says why."""


class Interrupted(Exception):
    """The run stopped on SIGINT or SIGTERM after writing its checkpoint; signum says which signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


@dataclass
class Position:
    """Where training stands: the next batch is batch `batch` of epoch `epoch`, after `step` optimiser steps.
    The epoch's running figures (correct, seen, rates, seconds) let a run resumed mid-epoch write the same epoch
    record; metrics_bytes is the length of metrics.jsonl that belongs to this position."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_accuracy: float = -1.0
    correct: int = 0
    seen: int = 0
    rates: list = field(default_factory=list)
    seconds: float = 0.0
    metrics_bytes: int = 0
    skipped_steps: int = 0


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def labels_of(dataset) -> torch.Tensor:
    labels = getattr(dataset, "labels", None)
    return torch.as_tensor(labels) if labels is not None else torch.tensor([int(y) for _, y in dataset])


class Subset(Dataset):
    """The examples of `dataset` at `indices`, with their labels (for the majority baseline)."""

    def __init__(self, dataset, indices: torch.Tensor):
        self.dataset, self.indices = dataset, indices.tolist()
        self.labels = labels_of(dataset)[indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


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


def autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when amp is on; a no-op context elsewhere (the CPU runs in float32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def evaluate(model: nn.Module, dataset, *, batch_size: int, device: torch.device, amp: bool) -> dict:
    """Accuracy and mean loss over a dataset in eval mode."""
    if len(dataset) == 0:
        raise ValueError("evaluate: the dataset is empty")
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


def warn(text: str) -> None:
    print(f"spikessm train: warning: {text}", file=sys.stderr, flush=True)


class StopSignals:
    """While active, SIGINT and SIGTERM ask the run to stop at the next step boundary (with a checkpoint)
    instead of killing it; a second SIGINT stops at once. Only the main thread can take signals, so elsewhere
    this does nothing."""

    def __init__(self):
        self.received: int | None = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def handle(self, signum, frame):
        # No printing here: the signal may arrive inside a write to stderr, which must not be re-entered.
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False


# PyTorch's own choice (the physical cores, or OMP_NUM_THREADS), before any run changes it in this process.
DEFAULT_THREADS = torch.get_num_threads()


def pick_threads(threads: int | None, checkpoint: dict | None) -> tuple[int, str]:
    """The CPU thread count of a run and why: the one given; else a resumed run's own, since float sums depend
    on the count and a resumed run must compute what the uninterrupted one did; else the cores that the 1-minute
    load average leaves idle (at least 1, at most PyTorch's default), because threads that wait for busy cores
    make every step several times slower."""
    if threads is not None:
        return threads, "--threads"
    if checkpoint is not None and isinstance(checkpoint.get("threads"), int) and checkpoint["threads"] >= 1:
        return checkpoint["threads"], "the run's, from last.pt"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return min(DEFAULT_THREADS, cores), "PyTorch's default"
    idle = max(1, min(DEFAULT_THREADS, cores, int(cores - load + 0.5)))
    return idle, f"the idle cores: load {load:.1f} on {cores}"


def _test_kill_point() -> tuple[str, int] | None:
    value = os.environ.get(TEST_KILL_ENV)
    if not value:
        return None
    kind, _, n = value.partition(":")
    return kind, int(n)


class Trainer:
    """One run: set up by the constructor (checks, data, model; nothing written), started by start()."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, log=print):
        self.log, self.resume = log, resume
        self.clock = time.perf_counter()
        self.run_dir = config.run_directory()
        self.settings = config.resolved()
        self.config = config
        self.device = pick_device(config.device)
        self.dist = distributed.setup(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.checkpoint = self._check_run_dir()
        self.threads, self.threads_why = pick_threads(config.threads, self.checkpoint)
        torch.set_num_threads(self.threads)
        self.task = get_task(self.settings["task"])
        self.data = self._load_data()
        self.val_set = self.data.val if self.data.val is not None else self.data.test
        self.batch_size, self.epochs = self.settings["batch_size"], self.settings["epochs"]
        self.steps_per_epoch = len(self.train_set) // self.batch_size
        if self.steps_per_epoch == 0:
            raise SettingError(f"--batch-size {self.batch_size} is larger than the training set "
                               f"({len(self.train_set)} examples)")
        seed_everything(self.settings["seed"])
        try:
            self.model = build_model(self.settings["model"], n_classes=self.data.n_classes,
                                     vocab_size=self.data.vocab_size, d_input=self.data.d_input, pair=self.data.pair,
                                     device=self.device, **self.settings["model_settings"])
        except (ValueError, TypeError) as error:
            raise SettingError(f"--set: {error}") from None
        if self.settings["per_step_loss"] > 0:
            try:
                check_per_step_training(self.model, self.settings["per_step_loss"],
                                        self.settings["per_step_weighting"], what="--per-step-loss")
            except (ValueError, TypeError) as error:
                raise SettingError(str(error)) from None
        self.optimizer, self.scheduler = make_optimizer(
            self.model, lr=self.settings["lr"], ssm_lr=self.settings["ssm_lr"],
            weight_decay=self.settings["weight_decay"], warmup_steps=self.settings["warmup_steps"],
            total_steps=self.epochs * self.steps_per_epoch)
        self.position = Position()
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        self.train_model = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.index is not None else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.kill_point = _test_kill_point()
        self.checkpoints_written = 0
        self.last_good_step: int | None = self.position.step if self.checkpoint is not None else None
        self.metrics = None
        self.lock_file = None

    # --- set-up -------------------------------------------------------------------------------------------------

    def _check_run_dir(self) -> dict | None:
        """Checks the run directory for a fresh start or a resume; returns the checkpoint to resume from."""
        run_dir = self.run_dir
        if not self.resume:
            if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
                raise SettingError(f"--run-dir: {run_dir} already exists; pass --resume to continue its run, or "
                                   "choose another --run-dir")
            target = run_dir if run_dir.exists() else next(p for p in run_dir.parents if p.exists())
            if not os.access(target, os.W_OK | os.X_OK):
                raise SettingError(f"--run-dir: cannot create the run in {run_dir} ({target} is not writable)")
            return None
        stored = read_run_settings(run_dir)
        differences = contradictions(stored, self.settings)
        if differences:
            raise SettingError(f"--resume: the command line contradicts the run in {run_dir / 'config.json'}: "
                               + "; ".join(differences) + "; leave these options out to resume the run as it is")
        self.settings = {**stored, **{k: v for k, v in self.settings.items() if k not in stored}}
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise SettingError(f"--resume: the run directory {run_dir} is not writable")
        path = run_dir / "last.pt"
        if not path.exists():
            return None  # the run stopped before its first checkpoint: it starts again from step 0
        checkpoint = read_checkpoint(path, map_location=self.device)
        if "position" not in checkpoint or "optimizer" not in checkpoint:
            raise CheckpointError(f"{path} holds no training state (position, optimizer), so it cannot be resumed")
        return checkpoint

    def _load_data(self) -> TaskData:
        # rank 0 generates or caches the data first; the others then read it
        if self.dist.main:
            data = load_task(self.task, self.settings["data_dir"], self.settings["source"])
        self.dist.barrier()
        if not self.dist.main:
            data = load_task(self.task, self.settings["data_dir"], self.settings["source"])
        self.train_set = data.train
        limit = self.settings["limit_train"]
        if limit is not None:
            if limit > len(data.train):
                raise SettingError(f"--limit-train {limit} is more than the {len(data.train)} training examples")
            generator = torch.Generator().manual_seed(self.settings["seed"])
            chosen = torch.randperm(len(data.train), generator=generator)[:limit].sort().values
            self.train_set = Subset(data.train, chosen)
        return data

    def _restore(self, checkpoint: dict) -> None:
        path = self.run_dir / "last.pt"
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            self.position = Position(**checkpoint["position"])
            restore_rng(checkpoint["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            first = str(error).split("\n")[0]
            raise CheckpointError(f"{path} does not match the run in {self.run_dir} ({first})") from None

    def start(self) -> None:
        """Creates the run directory and its config.json, or reopens a resumed run (clearing what a killed
        writer left: temporary files, and metrics logged after the checkpoint)."""
        if not self.dist.main:
            return
        if not self.resume:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        metrics_path = self.run_dir / "metrics.jsonl"
        if self.resume:
            atomic.remove_temporaries(self.run_dir)
            keep = self.position.metrics_bytes
            if metrics_path.exists():
                content = metrics_path.read_bytes()
                if len(content) < keep:
                    warn(f"{metrics_path} is shorter than its checkpoint recorded ({len(content)} < {keep} bytes); "
                         "earlier records are missing")
                elif len(content) > keep:
                    atomic.write_bytes(metrics_path, content[:keep], sync=True)
            self.log(f"resuming {self.run_dir} at epoch {self.position.epoch + 1}, step {self.position.step}")
        else:
            atomic.write_json(self.run_dir / "config.json", self.settings)
            self.log(f"run directory: {self.run_dir}")
        self.metrics = open(metrics_path, "ab")
        self.position.metrics_bytes = self.metrics.tell()

    def _lock(self) -> None:
        """Holds an exclusive lock on run_dir/.lock until the process ends or release() runs, so that two
        processes never write one run (a resume started while the run still goes on is refused)."""
        self.lock_file = open(self.run_dir / LOCK_NAME, "a")
        if fcntl is None:
            return
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise RunError(f"{self.run_dir} is in use by another spikessm train process; let it end or stop it "
                           "(SIGTERM writes a checkpoint), then resume") from None

    def release(self) -> None:
        if self.lock_file is not None:
            self.lock_file.close()  # closing the file releases the lock
            self.lock_file = None

    # --- one epoch ----------------------------------------------------------------------------------------------

    def record(self, entry: dict) -> None:
        if self.metrics is not None:
            self.metrics.write((json.dumps(atomic.json_safe(entry), allow_nan=False) + "\n").encode())

    def train_step(self, indices: list[int]) -> float:
        """One optimiser step on the examples at indices; returns the loss."""
        p, s = self.position, self.settings
        batch = collate([self.train_set[i] for i in indices])
        labels = batch["labels"].to(self.device)
        # Spikes are counted on the logged steps only: counting reads tensors back from the device.
        counting = (p.step + 1) % s["log_every"] == 0
        inputs = model_inputs(batch, self.device)
        per_step = s["per_step_loss"] > 0
        with OpCounter(self.model) if counting else contextlib.nullcontext() as counter:
            with autocast(self.device, s["amp"]):
                logits = self.train_model(**inputs, per_step=per_step).float()
        if per_step:
            lengths = inputs["lengths"]
            loss = streaming_loss(logits, lengths, labels, weight=s["per_step_loss"],
                                  weighting=s["per_step_weighting"])
            logits = logits[torch.arange(len(labels), device=logits.device), lengths - 1]  # the answers at the ends
        else:
            loss = nn.functional.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), s["grad_clip"] or math.inf)
        loss_value = loss.item()
        if math.isfinite(loss_value) and bool(torch.isfinite(norm)):
            self.optimizer.step()
        elif s["skip_nonfinite"]:
            self.optimizer.zero_grad(set_to_none=True)
            p.skipped_steps += 1
            warn(f"step {p.step + 1}: skipped, the {'loss' if not math.isfinite(loss_value) else 'gradient'} is "
                 "not finite")
        else:
            what = (f"the loss is {loss_value}" if not math.isfinite(loss_value)
                    else f"the gradient norm is {float(norm)}")
            kept = (f"the last good checkpoint {self.run_dir / 'last.pt'} (step {self.last_good_step}) is kept"
                    if self.last_good_step is not None else "no checkpoint was written yet")
            raise RunError(f"step {p.step + 1}: {what}; the run stops and {kept}; lower --lr, or pass "
                           "--skip-nonfinite to skip such steps")
        self.scheduler.step()  # skipped steps advance the schedule too, so it stays a function of the step
        p.step += 1
        p.batch += 1
        p.correct += int((logits.argmax(-1) == labels).sum())
        p.seen += len(labels)
        rate = None
        if counting:
            rate = counter.totals()["firing_rate"]
            if rate is not None:
                p.rates.append(rate)
            self.record({"kind": "step", "step": p.step, "epoch": p.epoch, "loss": loss_value,
                         "accuracy": p.correct / p.seen, "lr": self.scheduler.get_last_lr()[-1],
                         "examples_per_s": self._speed(), "firing_rate": rate})
        return loss_value

    def _speed(self) -> float:
        seconds = self.position.seconds + time.perf_counter() - self.epoch_clock
        return self.position.seen * self.dist.world_size / max(seconds, 1e-9)

    def run_epoch(self, signals: StopSignals) -> str | None:
        """Trains the rest of the current epoch, then ends it (end_epoch); returns why the run must stop
        early (a signal's name, "max-steps" or "time-budget"), or None."""
        p = self.position
        order = distributed.epoch_batches(len(self.train_set), self.batch_size, seed=self.settings["seed"],
                                          epoch=p.epoch, rank=self.dist.rank, world_size=self.dist.world_size)
        self.model.train()
        self.epoch_clock = time.perf_counter()
        for indices in order[p.batch:]:
            loss = self.train_step(indices)
            self._test_hook("step", p.step)
            rate = p.rates[-1] if p.rates else None
            self.progress.update(p.step, f"epoch {p.epoch + 1}/{self.epochs} loss {loss:.3f} "
                                         f"acc {p.correct / p.seen:.3f} {self._speed():.0f} ex/s"
                                 + (f" rate {rate:.3f}" if rate is not None else ""))
            if p.batch == len(order):
                break  # the epoch's end writes the checkpoint
            reason = self.stop_reason(signals)
            if reason is not None:
                self.save_checkpoint()
                return reason
            if self.checkpoint_due():
                self.save_checkpoint()
        self.progress.close()
        self.end_epoch()
        return self.stop_reason(signals)

    def stop_reason(self, signals: StopSignals) -> str | None:
        code = 0
        if signals.received is not None:
            code = 100 + signals.received
            warn(f"{signal.Signals(signals.received).name}: stopping at step {self.position.step} with a checkpoint")
        elif self.config.max_steps is not None and self.position.step >= self.config.max_steps:
            code = 1
        elif (self.config.time_budget is not None
              and time.perf_counter() - self.clock >= 60 * self.config.time_budget):
            code = 2
        if self.dist.enabled:  # every process stops at the same step
            flag = torch.tensor([code], device=self.device if self.device.type == "cuda" else "cpu")
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            code = int(flag)
        if code >= 100:
            return signal.Signals(code - 100).name
        return {0: None, 1: "max-steps", 2: "time-budget"}[code]

    def checkpoint_due(self) -> bool:
        every = self.config.checkpoint_every
        if every is not None and self.position.step - self.last_checkpoint_step >= every:
            return True
        return time.perf_counter() - self.last_checkpoint_time >= 60 * self.config.checkpoint_minutes

    # --- the epoch's end and checkpoints --------------------------------------------------------------------------

    def end_epoch(self) -> None:
        """Validation, the epoch's record, then best.pt (if the validation accuracy improved) and last.pt."""
        p = self.position
        if self.dist.main:
            seconds = p.seconds + time.perf_counter() - self.epoch_clock
            result = evaluate(self.model, self.val_set, batch_size=self.batch_size, device=self.device,
                              amp=self.settings["amp"])
            best = result["accuracy"] > p.best_accuracy
            p.best_accuracy = max(p.best_accuracy, result["accuracy"])
            self.record({"kind": "epoch", "step": p.step, "epoch": p.epoch, "train_accuracy": p.correct / p.seen,
                         "val_accuracy": result["accuracy"], "val_loss": result["loss"],
                         "firing_rate": sum(p.rates) / len(p.rates) if p.rates else None, "seconds": seconds})
            self.log(f"epoch {p.epoch + 1}/{self.epochs}: train acc {p.correct / p.seen:.4f}, val acc "
                     f"{result['accuracy']:.4f}{' (best)' if best else ''}, {seconds:.0f} s")
            self.position = Position(epoch=p.epoch + 1, step=p.step, best_accuracy=p.best_accuracy,
                                     skipped_steps=p.skipped_steps)
            if best:
                self.save_checkpoint("best.pt")
            self.save_checkpoint()
        else:
            self.position = Position(epoch=p.epoch + 1, step=p.step, skipped_steps=p.skipped_steps)
        self.dist.barrier()

    def save_checkpoint(self, name: str = "last.pt") -> bool:
        """Writes a checkpoint of the current position (rank 0 only); on failure keeps the previous file, warns
        and returns False."""
        if name == "last.pt":
            self.last_checkpoint_step, self.last_checkpoint_time = self.position.step, time.perf_counter()
        if not self.dist.main:
            return True
        self.metrics.flush()
        self.position.seconds = (self.position.seconds + time.perf_counter() - self.epoch_clock
                                 if self.position.batch else 0.0)
        self.epoch_clock = time.perf_counter()
        self.position.metrics_bytes = self.metrics.tell()
        content = checkpoint_content(
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), rng=rng_state(), position=asdict(self.position),
            threads=self.threads,
            config=self.settings, model_config=self.model.config.to_dict())
        path = self.run_dir / name

        def write(f):
            torch.save(content, f)
            self.checkpoints_written += 1
            self._test_hook("checkpoint", self.checkpoints_written)

        try:
            atomic.write_atomically(path, write, sync=True)
        except OSError as error:
            if not path.exists():
                kept = "there is no earlier one"
            elif name == "last.pt":
                kept = f"the last good checkpoint (step {self.last_good_step}) is kept"
            else:
                kept = f"the previous {name} is kept"
            warn(f"could not write {path} ({error.strerror or error}); {kept}")
            return False
        if name == "last.pt":
            self.last_good_step = self.position.step
        return True

    def _test_hook(self, kind: str, n: int) -> None:
        if self.kill_point is None:
            return
        wanted, at = self.kill_point
        signals = {"step": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}
        if (wanted == kind == "checkpoint" or (kind == "step" and wanted in signals)) and n == at:
            os.kill(os.getpid(), signals.get(wanted, signal.SIGKILL))

    # --- the whole run ------------------------------------------------------------------------------------------

    def fit(self) -> dict:
        """Trains to the end (or a budget), then evaluates; Interrupted after a stop on a signal."""
        if self.dist.main:
            n_params = sum(q.numel() for q in self.model.parameters())
            threads = self.threads
            self.log(f"task {self.settings['task']}: {len(self.train_set)} train / {len(self.val_set)} val / "
                     f"{len(self.data.test)} test examples; model {self.settings['model']}: {n_params:,} parameters "
                     f"on {self.device}" + (f" x {self.dist.world_size} processes" if self.dist.enabled else "")
                     + (f", {threads} thread{'s' * (threads != 1)} ({self.threads_why})"
                        if self.device.type == "cpu" else ""))
        self.start()
        try:
            return self._train_and_finish()
        finally:
            self.release()

    def _train_and_finish(self) -> dict:
        p = self.position
        self.progress = Progress(self.epochs * self.steps_per_epoch, self.settings["log_every"], self.dist.main)
        self.last_checkpoint_step, self.last_checkpoint_time = p.step, time.perf_counter()
        self.epoch_clock = time.perf_counter()
        reason = None
        try:
            with StopSignals() as signals:
                reason = self.stop_reason(signals) if self.position.epoch < self.epochs else None
                while reason is None and self.position.epoch < self.epochs:
                    reason = self.run_epoch(signals)
        finally:
            self.progress.close()
            if self.metrics is not None:
                self.metrics.close()
        if reason in ("SIGINT", "SIGTERM"):
            signum = signal.Signals[reason]
            where = (f"checkpoint {self.run_dir / 'last.pt'} (step {self.last_good_step})"
                     if self.last_good_step is not None else "no checkpoint")
            raise Interrupted(f"{reason} at step {self.position.step}: stopped with {where}; continue with: "
                              f"spikessm train --run-dir {self.run_dir} --resume", signum)
        if not self.dist.main:
            return {}
        if reason is not None:
            self.log(f"stopped by --{reason} at step {self.position.step}")
        return self.finish(reason)

    def finish(self, stopped_by: str | None = None) -> dict:
        """Evaluates best.pt (last.pt when no epoch has ended yet) on the test split; writes results.json and
        the plots."""
        path = self.run_dir / "best.pt"
        if not path.exists():
            path = self.run_dir / "last.pt"
        model, _ = load_model(path, self.device)
        results = report_test_split(model, self.data, batch_size=self.batch_size, device=self.device,
                                    amp=self.settings["amp"], log=self.log)
        results.update(checkpoint=path.name, step=self.position.step, stopped_by=stopped_by,
                       skipped_steps=self.position.skipped_steps)
        atomic.write_json(self.run_dir / "results.json", results)
        from .plots import plot_run

        plot_run(self.run_dir, results)
        self.log(f"results: {self.run_dir / 'results.json'}; evaluate again with: spikessm eval {self.run_dir}")
        return results


def train(config: TrainConfig, *, resume: bool = False, log=print) -> dict:
    """Trains, keeps the best checkpoint by validation accuracy, evaluates it on the test split and returns the
    results (also written to run_dir/results.json). resume: continue the run in config.run_dir from its last
    checkpoint; config must not contradict the run's stored settings (see settings.config_from_run)."""
    return Trainer(config, resume=resume, log=log).fit()


def resume_config(run_dir: str | os.PathLike, given: dict, **invocation) -> TrainConfig:
    """The TrainConfig of the run stored in run_dir, with the run settings in `given` (explicit command-line
    values, which Trainer then checks against the run) and this invocation's settings applied."""
    stored = read_run_settings(Path(run_dir).expanduser().resolve())
    config = config_from_run(stored, run_dir=str(run_dir), **invocation)
    given = dict(given)
    overrides = given.pop("model_overrides", {})
    config.model_overrides = {**config.model_overrides, **overrides}
    for name, value in given.items():
        setattr(config, name, value)
    return config


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
