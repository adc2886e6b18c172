"""Callbacks: what a run does beside training, hooked into Trainer.fit (spikessm.training.loop).

    trainer = Trainer(config, callbacks=[MyLogger()])     # added after the defaults below

Every hook is optional; the trainer calls them in order, on every process (check `trainer.dist.main` for
what only the main process should do):

    on_fit_start(trainer)                 after the run directory is open, before the first step
    on_step_end(trainer, loss)            after each optimiser step (trainer.position says where the run is)
    on_epoch_end(trainer, record)         after validation; record is the epoch's line of metrics.jsonl
    on_checkpoint_write(trainer, path)    while a checkpoint is written: its data are in the temporary file,
                                          the rename to `path` has not happened yet
    stop_reason(trainer) -> str | None    asked after every step: a reason to stop now (with a checkpoint)
    on_fit_end(trainer)                   always, also when training raises

The defaults (`default_callbacks`): a progress display, SIGINT/SIGTERM handling, the step and time budgets, and
with --tensorboard the TensorBoard log.
Tests inject faults (kills, signals) through a callback of their own.
"""
from __future__ import annotations

import signal
import sys
import threading
import time

from .run_dir import warn


class Callback:
    """The hooks of the module docstring, all doing nothing."""

    def on_fit_start(self, trainer) -> None:
        pass

    def on_step_end(self, trainer, loss: float) -> None:
        pass

    def on_epoch_end(self, trainer, record: dict) -> None:
        pass

    def on_checkpoint_write(self, trainer, path) -> None:
        pass

    def stop_reason(self, trainer) -> str | None:
        return None

    def on_fit_end(self, trainer) -> None:
        pass


class ProgressDisplay(Callback):
    """Progress on stderr (main process only). On a terminal, a bar per epoch with its rate and the time left
    (tqdm); in logs and CI, where a redrawn bar would be noise, one plain line every log_every steps."""

    REFRESH_SECONDS = 0.1  # the bar's redraws at most this often

    def on_fit_start(self, trainer) -> None:
        self.enabled = trainer.dist.main
        self.total = trainer.config.epochs * trainer.steps_per_epoch
        self.every = trainer.config.log_every
        self.tty = sys.stderr.isatty()
        self.bar = None

    def status(self, trainer, loss: float) -> str:
        p = trainer.position
        rate = p.rates[-1] if p.rates else None
        return (f"loss {loss:.3f} acc {p.correct / p.seen:.3f} {trainer.examples_per_second():.0f} ex/s"
                + (f" rate {rate:.3f}" if rate is not None else ""))

    def on_step_end(self, trainer, loss: float) -> None:
        if not self.enabled:
            return
        p = trainer.position
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=trainer.steps_per_epoch, initial=p.batch - 1, file=sys.stderr, leave=False,
                                desc=f"epoch {p.epoch + 1}/{trainer.config.epochs}", unit="step",
                                dynamic_ncols=True, mininterval=self.REFRESH_SECONDS)
            self.bar.set_postfix_str(self.status(trainer, loss), refresh=False)
            self.bar.update(1)
            if p.batch >= trainer.steps_per_epoch:
                self.close()  # before the epoch's line goes to stdout
        elif p.step % self.every == 0 or p.step == self.total:
            print(f"[{p.step}/{self.total}] epoch {p.epoch + 1}/{trainer.config.epochs} {self.status(trainer, loss)}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.close()

    def on_fit_end(self, trainer) -> None:
        self.close()


class StopOnSignal(Callback):
    """While the run trains, SIGINT and SIGTERM ask it to stop at the next step boundary (with a checkpoint)
    instead of killing it; a second SIGINT stops at once. Only the main thread can take signals, so elsewhere
    this does nothing."""

    def __init__(self):
        self.received: int | None = None
        self.previous = {}

    def on_fit_start(self, trainer) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.handle)

    def handle(self, signum, frame):
        # No printing here: the signal may arrive inside a write to stderr, which must not be re-entered.
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def stop_reason(self, trainer) -> str | None:
        if self.received is None:
            return None
        name = signal.Signals(self.received).name
        warn(f"{name}: stopping at step {trainer.position.step} with a checkpoint")
        return name

    def on_fit_end(self, trainer) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()


class Budget(Callback):
    """Stops the run after config.max_steps steps (counted over the whole run) or config.time_budget minutes
    of this invocation (from the trainer's creation: reading the data counts)."""

    def stop_reason(self, trainer) -> str | None:
        config = trainer.config
        if config.max_steps is not None and trainer.position.step >= config.max_steps:
            return "max-steps"
        if config.time_budget is not None and time.perf_counter() - trainer.started >= 60 * config.time_budget:
            return "time-budget"
        return None


class TensorBoardLog(Callback):
    """TensorBoard event files in run_dir/tensorboard/ (main process; `pip install "spikessm[tensorboard]"`):
    every logged step the training loss, learning rate and firing rate (train/...), every epoch the validation
    accuracy, loss, firing rate and energy per example (val/...) and the epoch's training accuracy. A resumed run
    first drops the events logged after its checkpoint, so each step appears once."""

    def on_fit_start(self, trainer) -> None:
        self.writer = None
        if not trainer.dist.main:
            return
        from torch.utils.tensorboard import SummaryWriter

        purge = trainer.position.step + 1 if trainer.resume else None
        self.writer = SummaryWriter(log_dir=str(trainer.run.path / "tensorboard"), purge_step=purge)

    def on_step_end(self, trainer, loss: float) -> None:
        p = trainer.position
        if self.writer is None or p.step % trainer.config.log_every:
            return
        self.writer.add_scalar("train/loss", loss, p.step)
        self.writer.add_scalar("train/lr", trainer.scheduler.get_last_lr()[-1], p.step)
        if p.rates:  # counted on this step
            self.writer.add_scalar("train/firing_rate", p.rates[-1], p.step)

    def on_epoch_end(self, trainer, record: dict) -> None:
        if self.writer is None:
            return
        step = record["step"]
        for tag, key in (("val/accuracy", "val_accuracy"), ("val/loss", "val_loss"),
                         ("val/firing_rate", "val_firing_rate"), ("val/energy_uj_per_example", "val_energy_uj"),
                         ("train/epoch_accuracy", "train_accuracy")):
            if record.get(key) is not None:
                self.writer.add_scalar(tag, record[key], step)
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def default_callbacks(config) -> list[Callback]:
    """The callbacks every run has: progress, signals, budgets, and TensorBoard when config.tensorboard."""
    return [ProgressDisplay(), StopOnSignal(), Budget(), *([TensorBoardLog()] if config.tensorboard else [])]
