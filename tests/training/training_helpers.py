"""Helpers of the training tests: the settings of a run that takes seconds, comparisons of runs, and a callback
that injects faults."""
import json
import os
import signal
import sys

import torch

from spikessm.training import Callback


def run_args(data_dir, run_dir, *more):
    """A 2-epoch run of 6 steps per epoch, a checkpoint every 2 steps, dropout so that the RNG matters."""
    return ["train", "--task", "tiny-listops", "--model", "lif-s4d", "--data-dir", str(data_dir), "--run-dir",
            str(run_dir), "--epochs", "2", "--batch-size", "16", "--log-every", "1", "--checkpoint-every", "2",
            "--threads", "1", "--set", "d_model=8", "--set", "n_layers=1", "--set", "d_state=4", "--set",
            "norm=layer", "--set", "dropout=0.2", *more]


TIMING = ("seconds", "examples_per_s")


def metrics(run_dir):
    """metrics.jsonl without its timing fields; every line must be strict JSON (no NaN)."""
    def strict(name):
        raise ValueError(f"non-JSON number {name}")

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line, parse_constant=strict).items() if k not in TIMING} for line in lines]


def assert_same_run(a, b):
    """Final weights, metrics and test results of two runs are equal."""
    wa = torch.load(a / "last.pt", weights_only=True)
    wb = torch.load(b / "last.pt", weights_only=True)
    assert wa["position"]["step"] == wb["position"]["step"]
    for name, value in wa["model"].items():
        assert torch.equal(value, wb["model"][name]), name
    assert metrics(a) == metrics(b)
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (a, b))
    assert ra["test_accuracy"] == rb["test_accuracy"] and ra["test_loss"] == rb["test_loss"]


class KillAt(Callback):
    """A fault-injection callback: ("step", N) kills the process with
    SIGKILL after step N, ("checkpoint", N) during its N-th checkpoint write (the data in the temporary file, the
    rename not yet done), ("term", N) / ("int", N) send it SIGTERM / SIGINT after step N."""

    SIGNALS = {"step": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}

    def __init__(self, kind, n):
        self.kind, self.n, self.writes = kind, int(n), 0

    @classmethod
    def parse(cls, point):
        kind, _, n = point.partition(":")
        return cls(kind, n)

    def on_step_end(self, trainer, loss):
        if self.kind in self.SIGNALS and trainer.position.step == self.n:
            os.kill(os.getpid(), self.SIGNALS[self.kind])

    def on_checkpoint_write(self, trainer, path):
        self.writes += 1
        if self.kind == "checkpoint" and self.writes == self.n:
            os.kill(os.getpid(), signal.SIGKILL)


def cli_with_callbacks(argv, point):
    """The command line a subprocess runs: `spikessm ARGV` with KillAt(point) among the training callbacks."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys; sys.path.insert(0, {here!r}); from training_helpers import KillAt; "
            f"from spikessm.__main__ import main; sys.exit(main({list(argv)!r}, callbacks=[KillAt.parse({point!r})]))")
    return [sys.executable, "-c", code]
