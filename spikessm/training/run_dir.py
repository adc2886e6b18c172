"""A run directory: its lock, its metrics log and its checkpoints, every file written atomically.

    config.json      the run's settings (spikessm.training.config.RunConfig), written once when the run starts
    metrics.jsonl    one JSON record per logged step ("kind": "step") and per epoch ("kind": "epoch")
    last.pt          the latest checkpoint: --resume continues from it
    best.pt          the checkpoint with the best validation accuracy
    results.json     the test figures of the weights evaluated at the end, and which file and step they are
    curves.png, firing_rates.png
    .lock            held (flock) by the process training the run, so that no second process writes it

A checkpoint that cannot be written (a full disk, a file-size limit) leaves the previous file as it was. Within a
run that is a warning, since the next checkpoint may succeed; a run's final checkpoint (last.pt at its end or
stop, and a best.pt still owed) is retried once and then ends the run with a RunError that names the file, the
cause and the step the newest checkpoint on disk holds, so that the user can make room and resume.
"""
from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from .. import atomic
from .checkpoint import CheckpointError, read_checkpoint
from .errors import RunError, SettingError

try:
    import fcntl  # POSIX file locks; elsewhere runs are not locked
except ImportError:
    fcntl = None

LAST, BEST, METRICS, RESULTS, LOCK = "last.pt", "best.pt", "metrics.jsonl", "results.json", ".lock"


def warn(text: str) -> None:
    print(f"spikessm train: warning: {text}", file=sys.stderr, flush=True)


def cause(error: OSError) -> str:
    return error.strerror or str(error)


class RunDirectory:
    """The files of the run in `path` (see the module docstring). `steps` maps each checkpoint on disk to the
    training step it holds; `owed` holds a best.pt whose write failed, to be written at the next chance."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.steps: dict[str, int] = {}
        self.owed: dict[str, tuple[bytes, int]] = {}
        self.metrics = None
        self.lock_file = None

    # --- before anything is written -----------------------------------------------------------------------------

    def check_new(self) -> None:
        """A fresh run needs an empty or absent folder in a writable place."""
        path = self.path
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise SettingError(f"--run-dir: {path} already exists; pass --resume to continue its run, or choose "
                               "another --run-dir")
        target = path if path.exists() else next(p for p in path.parents if p.exists())
        if not os.access(target, os.W_OK | os.X_OK):
            raise SettingError(f"--run-dir: cannot create the run in {path} ({target} is not writable)")

    def read_last(self, map_location=None) -> dict | None:
        """The resumable checkpoint last.pt, or None when the run stopped before its first one."""
        if not self.path.is_dir():
            raise SettingError(f"--resume: there is no run directory {self.path}")
        if not (self.path / "config.json").is_file():
            raise SettingError(f"--resume: {self.path} holds no config.json, so it is not a spikessm run directory")
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise SettingError(f"--resume: the run directory {self.path} is not writable")
        path = self.path / LAST
        if not path.exists():
            return None
        checkpoint = read_checkpoint(path, map_location=map_location)
        if "position" not in checkpoint or "optimizer" not in checkpoint:
            raise CheckpointError(f"{path} holds no training state (position, optimizer), so it cannot be resumed")
        self.steps[LAST] = checkpoint["position"]["step"]
        if (self.path / BEST).exists():
            self.steps[BEST] = read_checkpoint(self.path / BEST, map_location="cpu")["position"]["step"]
        return checkpoint

    # --- opening ------------------------------------------------------------------------------------------------

    def open(self, *, resume: bool, metrics_bytes: int = 0) -> None:
        """Creates the folder (a fresh run) or clears what a killed writer left (temporary files, metrics logged
        after the checkpoint: the log is cut back to `metrics_bytes`), takes the lock and opens the log."""
        if not resume:
            self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        metrics_path = self.path / METRICS
        if resume:
            atomic.remove_temporaries(self.path)
            if metrics_path.exists():
                content = metrics_path.read_bytes()
                if len(content) < metrics_bytes:
                    warn(f"{metrics_path} is shorter than its checkpoint recorded ({len(content)} < {metrics_bytes} "
                         "bytes); earlier records are missing")
                elif len(content) > metrics_bytes:
                    atomic.write_bytes(metrics_path, content[:metrics_bytes], sync=True)
        self.metrics = open(metrics_path, "ab")

    def lock(self) -> None:
        """Holds an exclusive lock on .lock until the process ends or close() runs, so that two processes never
        write one run (a resume started while the run still goes on is refused)."""
        self.lock_file = open(self.path / LOCK, "a")
        if fcntl is None:
            return
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise RunError(f"{self.path} is in use by another spikessm train process; let it end or stop it "
                           "(SIGTERM writes a checkpoint), then resume") from None

    def close(self) -> None:
        """Closes the metrics log and releases the lock (closing the lock file releases it)."""
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.lock_file is not None:
            self.lock_file.close()
            self.lock_file = None

    # --- writing ------------------------------------------------------------------------------------------------

    def record(self, entry: dict) -> None:
        """Appends one record to metrics.jsonl (strict JSON: non-finite numbers become null)."""
        if self.metrics is not None:
            self.metrics.write((json.dumps(atomic.json_safe(entry), allow_nan=False) + "\n").encode())

    def metrics_size(self) -> int:
        """The bytes of metrics.jsonl written so far (flushed first)."""
        self.metrics.flush()
        return self.metrics.tell()

    def newest_on_disk(self) -> str:
        """Which checkpoint on disk holds the latest step, for messages about a failed write."""
        if not self.steps:
            return "there is no checkpoint on disk yet"
        name = max(self.steps, key=lambda n: (self.steps[n], n == LAST))
        return f"the newest checkpoint on disk, {self.path / name}, holds step {self.steps[name]}"

    def save_checkpoint(self, name: str, content: dict, *, final: bool = False,
                        during_write: Callable[[Path], None] | None = None) -> bool:
        """Writes checkpoint `name` atomically (content["position"]["step"] is the step it holds). On failure the
        old file stays: a non-final write warns and returns False (a best.pt that fails stays owed, see
        write_owed), a final one is retried once and then raises RunError. during_write(path) runs after the
        data reach the temporary file, before the rename."""
        buffer = io.BytesIO()
        torch.save(content, buffer)
        return self._write(name, buffer.getvalue(), content["position"]["step"], final, during_write)

    def write_owed(self, *, final: bool = False) -> None:
        """Writes again a best.pt whose write failed (its bytes are kept in memory until it succeeds)."""
        for name, (data, step) in list(self.owed.items()):
            self._write(name, data, step, final, None)

    def _write(self, name: str, data: bytes, step: int, final: bool, during_write) -> bool:
        path = self.path / name

        def write(f):
            f.write(data)
            if during_write is not None:
                during_write(path)

        for _ in range(2 if final else 1):
            try:
                atomic.write_atomically(path, write, sync=True)
            except OSError as error:
                failure = error
                continue
            self.steps[name] = step
            self.owed.pop(name, None)
            return True
        if name == BEST:
            self.owed[name] = (data, step)
        if final:
            raise RunError(f"could not write {path} ({cause(failure)}), also on a second try, so the model at step "
                           f"{step} is not saved; {self.newest_on_disk()}; make room (or lift the limit), then "
                           f"continue with: spikessm train --run-dir {self.path} --resume")
        if not path.exists():
            kept = "there is no earlier one"
        elif name == LAST:
            kept = f"the last good checkpoint (step {self.steps.get(LAST)}) is kept"
        else:
            kept = f"the previous {name} is kept"
        warn(f"could not write {path} ({cause(failure)}); {kept}")
        return False

    def write_results(self, results: dict) -> Path:
        """results.json, atomically; an OSError names the file."""
        path = self.path / RESULTS
        try:
            atomic.write_json(path, results)
        except OSError as error:
            raise RunError(f"could not write {path} ({cause(error)}); the checkpoints are kept: evaluate them with "
                           f"spikessm eval {self.path}") from None
        return path
