"""The training loop: Trainer(config).fit() trains a SequenceClassifier on its task and evaluates it.

    results = Trainer(RunConfig(task="listops", data_dir="lra_release")).fit()     # also: train(config)

The Trainer's constructor checks what needs the data and builds everything (run directory checked, data read,
model, optimiser, the checkpoint of a resumed run restored) without writing anything, so a run that cannot
start leaves nothing behind. fit() opens the run directory (spikessm.training.run_dir), then repeats run_epoch
(train_step for each batch, then end_epoch: validation, the epoch's record, best.pt and last.pt) until the last
epoch or a stop (a signal, a budget: spikessm.training.callbacks), makes sure the final weights are on disk, and
finish() evaluates the best checkpoint on the test split (spikessm.training.evaluation).

A checkpoint records the position within the epoch, every RNG state and how much of metrics.jsonl belongs to
it, so a resumed run replays the same batches with the same random numbers and ends equal to an uninterrupted
one. last.pt is written every config.checkpoint_every steps or config.checkpoint_minutes minutes, at every
epoch end and when a signal stops the run.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from ..anytime import check_streamable
from ..data.base import collate
from ..losses import streaming_loss
from ..models import ModelConfig, SequenceClassifier
from ..plots import plot_run
from ..stats import OpCounter
from . import distributed
from .callbacks import Callback, default_callbacks
from .checkpoint import CheckpointError, checkpoint_content, load_model, restore_rng, rng_state
from .config import CONFIG_NAME, RESUMABLE_CHANGES, RUN_FIELDS, RunConfig
from .errors import Interrupted, RunError, SettingError
from .evaluation import autocast, evaluate, model_inputs, report_test_split
from .optim import make_optimizer
from .run_dir import BEST, LAST, RunDirectory, warn
from .tasks import TASKS, load_task


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
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """One run of `config` (see the module docstring); resume continues the run in config.run_dir."""

    def __init__(self, config: RunConfig, *, resume: bool = False, callbacks: list[Callback] = (), log=print):
        self.config, self.resume, self.log = config, resume, log
        self.started = time.perf_counter()
        self.device = config.torch_device()
        self.dist = distributed.setup(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.run = RunDirectory(config.path)
        checkpoint = self.run.read_last(map_location=self.device) if resume else self.run.check_new()
        torch.set_num_threads(config.threads)
        self.data = self.load_data()
        self.val_set = self.data.val if self.data.val is not None else self.data.test
        self.steps_per_epoch = len(self.train_set) // config.batch_size
        if self.steps_per_epoch == 0:
            raise SettingError(f"--batch-size {config.batch_size} is larger than the training set "
                               f"({len(self.train_set)} examples)")
        seed_everything(config.seed)
        self.model = self.build_model()
        self.optimizer, self.scheduler = make_optimizer(
            self.model, lr=config.lr, ssm_lr=config.ssm_lr, weight_decay=config.weight_decay,
            warmup_steps=config.warmup_steps, total_steps=config.epochs * self.steps_per_epoch)
        self.position = Position()
        self.extended_from = None
        if checkpoint is not None:
            self.restore(checkpoint)
        self.train_model = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.index is not None else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.callbacks = [*default_callbacks(config), *callbacks]

    # --- set-up -------------------------------------------------------------------------------------------------

    def load_data(self):
        """The task's data (the main process generates or caches them first, the others then read them) and the
        training set, a seeded subset of limit_train examples where asked."""
        config = self.config
        task = TASKS[config.task]
        if self.dist.main:
            data = load_task(task, config.data_dir, config.source, config.data_conventions)
        self.dist.barrier()
        if not self.dist.main:
            data = load_task(task, config.data_dir, config.source, config.data_conventions)
        self.train_set = data.train
        if config.limit_train is not None:
            if config.limit_train > len(data.train):
                raise SettingError(f"--limit-train {config.limit_train} is more than the {len(data.train)} training "
                                   "examples")
            generator = torch.Generator().manual_seed(config.seed)
            chosen = torch.randperm(len(data.train), generator=generator)[:config.limit_train].sort().values
            self.train_set = Subset(data.train, chosen.tolist())
        return data

    def build_model(self) -> SequenceClassifier:
        """The run's model for its task's sizes. Its settings are checked here, where the data give the sizes:
        a bad one names --set, or, on a resume, the run's config.json."""
        data = self.data
        fields = dict(self.config.model_fields(), n_classes=data.n_classes, vocab_size=data.vocab_size,
                      d_input=data.d_input, pair=data.pair)
        where = f"{self.config.path / CONFIG_NAME}: model_config" if self.resume else "--set"
        try:
            model = SequenceClassifier(ModelConfig(**fields), device=self.device)
        except (ValueError, TypeError) as error:
            raise SettingError(f"{where}: {error}") from None
        if self.config.per_step_loss > 0:
            try:
                check_streamable(model, "--per-step-loss")
            except ValueError as error:
                raise SettingError(str(error)) from None
        return model

    def restore(self, checkpoint: dict) -> None:
        path = self.run.path / LAST
        stored = checkpoint["config"]
        self.extended_from = stored["epochs"] if self.config.extends(stored) else None
        ignored = set(RESUMABLE_CHANGES) | ({"epochs"} if self.extended_from is not None else set())
        if stored.get("version", 1) >= 2 and self.config.contradictions(
                {k: v for k, v in stored.items() if k in RUN_FIELDS and k not in ignored}):
            raise SettingError(f"{path} belongs to a run with other settings than the ones given; continue a run "
                               f"with RunConfig.resume({str(self.run.path)!r}) (the command line does)")
        stored = json.loads(json.dumps(checkpoint["model_config"]))
        if stored != json.loads(json.dumps(self.model.config.to_dict())):
            raise CheckpointError(f"{path} holds another model than the run's {CONFIG_NAME} describes")
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            self.position = Position(**checkpoint["position"])
            restore_rng(checkpoint["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            first = str(error).split("\n")[0]
            raise CheckpointError(f"{path} does not match the run in {self.run.path} ({first})") from None

    # --- the whole run ------------------------------------------------------------------------------------------

    def fit(self) -> dict:
        """Trains to the end (or a stop), then evaluates and returns the test results (also in results.json);
        Interrupted after a stop on a signal."""
        config = self.config
        if self.dist.main:
            n_params = sum(q.numel() for q in self.model.parameters())
            threads = f", {config.threads} thread{'s' * (config.threads != 1)}" if self.device.type == "cpu" else ""
            self.log(f"task {config.task}: {len(self.train_set)} train / {len(self.val_set)} val / "
                     f"{len(self.data.test)} test examples; model {config.model}: {n_params:,} parameters on "
                     f"{self.device}" + (f" x {self.dist.world_size} processes" if self.dist.enabled else "")
                     + threads)
            self.run.open(resume=self.resume, metrics_bytes=self.position.metrics_bytes)
            if self.resume and self.run.steps:
                self.log(f"resuming {self.run.path} at epoch {self.position.epoch + 1}, step {self.position.step}")
            else:  # a new run, or one stopped before its first checkpoint, which starts again
                config.save()
                self.log(f"run directory: {self.run.path}")
            if self.extended_from is not None:
                config.save()
                self.run.record({"kind": "extend", "step": self.position.step, "epochs": config.epochs,
                                 "from_epochs": self.extended_from})
                self.log(f"extending the run from {self.extended_from} to {config.epochs} epochs: the learning rate "
                         f"follows the schedule of {config.epochs} epochs from step {self.position.step} on")
            self.position.metrics_bytes = self.run.metrics_size()
        self.last_checkpoint_step, self.last_checkpoint_time = self.position.step, time.perf_counter()
        self.epoch_clock = time.perf_counter()
        try:
            for callback in self.callbacks:
                callback.on_fit_start(self)
            reason = self.stop_reason() if self.position.epoch < config.epochs else None
            while reason is None and self.position.epoch < config.epochs:
                reason = self.run_epoch()
            if reason in ("SIGINT", "SIGTERM"):
                step = self.run.steps.get(LAST)
                where = (f"checkpoint {self.run.path / LAST} (step {step})" if step is not None
                         else "no checkpoint")
                raise Interrupted(f"{reason} at step {self.position.step}: stopped with {where}; continue with: "
                                  f"spikessm train --run-dir {self.run.path} --resume", signal.Signals[reason])
            if self.dist.main:
                self.save_final()
        finally:
            for callback in self.callbacks:
                callback.on_fit_end(self)
            self.run.close()
        if not self.dist.main:
            return {}
        if reason is not None:
            self.log(f"stopped by --{reason} at step {self.position.step}")
        return self.finish(reason)

    def stop_reason(self) -> str | None:
        reasons = [callback.stop_reason(self) for callback in self.callbacks]
        return self.dist.agree_to_stop(next((r for r in reasons if r is not None), None), self.device)

    # --- one epoch ----------------------------------------------------------------------------------------------

    def run_epoch(self) -> str | None:
        """Trains the rest of the current epoch, then ends it (end_epoch); returns why the run must stop early,
        or None."""
        p = self.position
        order = distributed.epoch_batches(len(self.train_set), self.config.batch_size, seed=self.config.seed,
                                          epoch=p.epoch, rank=self.dist.rank, world_size=self.dist.world_size)
        self.model.train()
        self.epoch_clock = time.perf_counter()
        for indices in order[p.batch:]:
            loss = self.train_step(indices)
            for callback in self.callbacks:
                callback.on_step_end(self, loss)
            if p.batch == len(order):
                break  # the epoch's end writes the checkpoint
            reason = self.stop_reason()
            if reason is not None:
                self.save_checkpoint()
                return reason
            if self.checkpoint_due():
                self.save_checkpoint()
        self.end_epoch()
        return self.stop_reason()

    def train_step(self, indices: list[int]) -> float:
        """One optimiser step on the training examples at `indices`; returns the loss."""
        p, config = self.position, self.config
        batch = collate([self.train_set[i] for i in indices])
        labels = batch["labels"].to(self.device)
        # Spikes are counted on the logged steps only: counting reads tensors back from the device.
        counting = (p.step + 1) % config.log_every == 0
        inputs = model_inputs(batch, self.device)
        per_step = config.per_step_loss > 0
        counter = OpCounter(self.model)
        with counter if counting else contextlib.nullcontext(), autocast(self.device, config.amp):
            logits = self.train_model(**inputs, per_step=per_step).float()
        if per_step:
            lengths = inputs["lengths"]
            loss = streaming_loss(logits, lengths, labels, weight=config.per_step_loss,
                                  weighting=config.per_step_weighting)
            logits = logits[torch.arange(len(labels), device=logits.device), lengths - 1]  # the answers at the ends
        else:
            loss = nn.functional.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip or math.inf)
        loss_value = loss.item()
        if math.isfinite(loss_value) and bool(torch.isfinite(norm)):
            self.optimizer.step()
        elif config.skip_nonfinite:
            self.optimizer.zero_grad(set_to_none=True)
            p.skipped_steps += 1
            warn(f"step {p.step + 1}: skipped, the {'loss' if not math.isfinite(loss_value) else 'gradient'} is "
                 "not finite")
        else:
            what = (f"the loss is {loss_value}" if not math.isfinite(loss_value)
                    else f"the gradient norm is {float(norm)}")
            step = self.run.steps.get(LAST)
            kept = (f"the last good checkpoint {self.run.path / LAST} (step {step}) is kept" if step is not None
                    else "no checkpoint was written yet")
            raise RunError(f"step {p.step + 1}: {what}; the run stops and {kept}; lower --lr, or pass "
                           "--skip-nonfinite to skip such steps")
        self.scheduler.step()  # skipped steps advance the schedule too, so it stays a function of the step
        p.step += 1
        p.batch += 1
        p.correct += int((logits.argmax(-1) == labels).sum())
        p.seen += len(labels)
        if counting:
            rate = counter.totals()["firing_rate"]
            if rate is not None:
                p.rates.append(rate)
            self.run.record({"kind": "step", "step": p.step, "epoch": p.epoch, "loss": loss_value,
                             "accuracy": p.correct / p.seen, "lr": self.scheduler.get_last_lr()[-1],
                             "examples_per_s": self.examples_per_second(), "firing_rate": rate})
        return loss_value

    def examples_per_second(self) -> float:
        seconds = self.position.seconds + time.perf_counter() - self.epoch_clock
        return self.position.seen * self.dist.world_size / max(seconds, 1e-9)

    def checkpoint_due(self) -> bool:
        every = self.config.checkpoint_every
        if every is not None and self.position.step - self.last_checkpoint_step >= every:
            return True
        return time.perf_counter() - self.last_checkpoint_time >= 60 * self.config.checkpoint_minutes

    def end_epoch(self) -> None:
        """Validation, the epoch's record, then best.pt (if the validation accuracy improved) and last.pt."""
        p = self.position
        record = None
        if self.dist.main:
            seconds = p.seconds + time.perf_counter() - self.epoch_clock
            with OpCounter(self.model) as counter:
                result = evaluate(self.model, self.val_set, batch_size=self.config.batch_size, device=self.device,
                                  amp=self.config.amp)
            totals = counter.totals()
            best = result["accuracy"] > p.best_accuracy
            p.best_accuracy = max(p.best_accuracy, result["accuracy"])
            record = {"kind": "epoch", "step": p.step, "epoch": p.epoch, "train_accuracy": p.correct / p.seen,
                      "val_accuracy": result["accuracy"], "val_loss": result["loss"],
                      "firing_rate": sum(p.rates) / len(p.rates) if p.rates else None,
                      "val_firing_rate": totals["firing_rate"],
                      "val_energy_uj": totals["energy_pj"] / 1e6 / result["examples"], "seconds": seconds}
            self.run.record(record)
            self.log(f"epoch {p.epoch + 1}/{self.config.epochs}: train acc {p.correct / p.seen:.4f}, val acc "
                     f"{result['accuracy']:.4f}{' (best)' if best else ''}, {seconds:.0f} s")
            self.position = Position(epoch=p.epoch + 1, step=p.step, best_accuracy=p.best_accuracy,
                                     skipped_steps=p.skipped_steps)
            if best:
                self.save_checkpoint(BEST)
            self.save_checkpoint()
        else:
            self.position = Position(epoch=p.epoch + 1, step=p.step, skipped_steps=p.skipped_steps)
        for callback in self.callbacks:
            callback.on_epoch_end(self, record)
        self.dist.barrier()

    # --- checkpoints --------------------------------------------------------------------------------------------

    def checkpoint(self) -> dict:
        """The checkpoint of the current position (the epoch's time so far goes into the position)."""
        p = self.position
        p.seconds = p.seconds + time.perf_counter() - self.epoch_clock if p.batch else 0.0
        self.epoch_clock = time.perf_counter()
        p.metrics_bytes = self.run.metrics_size()
        return checkpoint_content(
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), rng=rng_state(), position=asdict(p),
            config=self.config.to_dict(), model_config=self.model.config.to_dict())

    def save_checkpoint(self, name: str = LAST, *, final: bool = False) -> bool:
        """Writes a checkpoint of the current position (main process only); see RunDirectory.save_checkpoint for
        what a failed write does. A best.pt still owed from a failed write is written again first."""
        if name == LAST:
            self.last_checkpoint_step, self.last_checkpoint_time = self.position.step, time.perf_counter()
        if not self.dist.main:
            return True
        if name == LAST:
            self.run.write_owed()

        def during_write(path):
            for callback in self.callbacks:
                callback.on_checkpoint_write(self, path)

        return self.run.save_checkpoint(name, self.checkpoint(), final=final, during_write=during_write)

    def save_final(self) -> None:
        """The end of training: last.pt must hold the current step and an owed best.pt must be written, or the
        run fails (RunError, after one retry each) instead of evaluating weights that are not on disk."""
        if self.run.steps.get(LAST) != self.position.step:
            self.save_checkpoint(final=True)
        self.run.write_owed(final=True)

    # --- evaluation ---------------------------------------------------------------------------------------------

    def finish(self, stopped_by: str | None = None) -> dict:
        """Evaluates best.pt (last.pt when no epoch has ended yet) on the test split; writes results.json, which
        names the file and the step of the weights it scored, and the plots."""
        name = BEST if BEST in self.run.steps else LAST
        model, _ = load_model(self.run.path / name, self.device)
        report = report_test_split(model, self.data, batch_size=self.config.batch_size, device=self.device,
                                   amp=self.config.amp)
        self.log(report.table)
        self.log(report.summary() + f" ({name}, step {self.run.steps[name]})")
        results = {**report.results, "checkpoint": name, "checkpoint_step": self.run.steps[name],
                   "step": self.position.step, "stopped_by": stopped_by, "skipped_steps": self.position.skipped_steps}
        path = self.run.write_results(results)
        try:
            plot_run(self.run.path, results, title=f"{self.config.task} / {self.config.model}: {self.run.path.name}")
        except OSError as error:
            raise RunError(f"could not write the plots of {self.run.path} ({error.strerror or error}); "
                           f"{path} holds the results") from None
        self.log(f"results: {path}; evaluate again with: spikessm eval {self.run.path}")
        return results


def train(config: RunConfig, *, resume: bool = False, callbacks: list[Callback] = (), log=print) -> dict:
    """Trains, keeps the best checkpoint by validation accuracy, evaluates it on the test split and returns the
    results (also written to run_dir/results.json). resume: continue the run in config.run_dir from its last
    checkpoint (make config with RunConfig.resume)."""
    return Trainer(config, resume=resume, callbacks=callbacks, log=log).fit()
