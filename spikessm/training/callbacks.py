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

The defaults (`default_callbacks`): a progress display, SIGINT/SIGTERM handling and the step and time budgets.
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
    """One status line on stderr (main process only): redrawn in place on a terminal, printed every log_every
    steps otherwise (logs, CI)."""

    def on_fit_start(self, trainer) -> None:
        self.enabled = trainer.dist.main
        self.total = trainer.config.epochs * trainer.steps_per_epoch
        self.every = trainer.config.log_every
        self.tty = sys.stderr.isatty()
        self.open = False

    def on_step_end(self, trainer, loss: float) -> None:
        if not self.enabled:
            return
        p = trainer.position
        rate = p.rates[-1] if p.rates else None
        line = (f"[{p.step}/{self.total}] epoch {p.epoch + 1}/{trainer.config.epochs} loss {loss:.3f} "
                f"acc {p.correct / p.seen:.3f} {trainer.examples_per_second():.0f} ex/s"
                + (f" rate {rate:.3f}" if rate is not None else ""))
        if self.tty:
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
            self.open = True
        elif p.step % self.every == 0 or p.step == self.total:
            print(line, file=sys.stderr, flush=True)

    def end_line(self) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.end_line()

    def on_fit_end(self, trainer) -> None:
        self.end_line()


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


def default_callbacks() -> list[Callback]:
    return [ProgressDisplay(), StopOnSignal(), Budget()]
