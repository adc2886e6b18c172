"""Helpers of the training tests: the settings of a run that takes seconds, and comparisons of runs."""
import json

import torch


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
