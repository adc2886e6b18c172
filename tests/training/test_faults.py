"""Runs that are killed, interrupted, run out of disk or meet a NaN: resumed, they end equal to an uninterrupted
run, and nothing they leave behind is garbage."""
import errno
import json
import os
import signal
import subprocess

import pytest
import torch
from training_helpers import KillAt, assert_same_run, cli_with_callbacks, metrics, run_args

from spikessm import atomic
from spikessm.__main__ import main
from spikessm.training import run_dir as run_directory


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """The uninterrupted run."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(run_args(tiny_data, run)) == 0
    return run


def resume(tiny_data, run, *more):
    return main(run_args(tiny_data, run, "--resume", *more))


@pytest.mark.parametrize("point", ["step:1", "checkpoint:3", "step:9"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(point, tiny_data, reference, tmp_path):
    """step:1: before the first checkpoint; checkpoint:3: while writing best.pt at the first epoch's end;
    step:9: mid-epoch in epoch 2, a step after a checkpoint."""
    run = tmp_path / "run"
    result = subprocess.run(cli_with_callbacks(run_args(tiny_data, run), point), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert not (run / "results.json").exists()
    if point == "checkpoint:3":
        assert list(run.glob(".best.pt.*.tmp")), "the write was cut short"
    assert resume(tiny_data, run) == 0
    assert not list(run.glob(".*.tmp"))
    assert_same_run(reference, run)


@pytest.mark.parametrize("point, code", [("term:5", 128 + signal.SIGTERM), ("int:8", 128 + signal.SIGINT)])
def test_signal_mid_epoch_checkpoints_then_resume_equals(point, code, tiny_data, reference, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        main(run_args(tiny_data, run), callbacks=[KillAt.parse(point)])
    assert stop.value.code == code
    step = int(point.split(":")[1])
    name = "SIGTERM" if point.startswith("term") else "SIGINT"
    assert capsys.readouterr().err.endswith(
        f"spikessm train: {name} at step {step}: stopped with checkpoint {run / 'last.pt'} (step {step}); continue "
        f"with: spikessm train --run-dir {run} --resume\n")
    assert torch.load(run / "last.pt", weights_only=True)["position"]["step"] == step
    assert resume(tiny_data, run) == 0
    assert_same_run(reference, run)


def test_full_disk_keeps_the_last_good_checkpoint_and_fails_the_run(tiny_data, reference, tmp_path, monkeypatch,
                                                                    capsys):
    """Failed checkpoints within the run are warnings; the final one, retried once, ends the run with an error
    naming the file and the newest checkpoint on disk, and no results are written for weights not on disk."""
    run = tmp_path / "run"
    real = atomic.write_atomically
    checkpoints = []

    def full_after_two_checkpoints(path, write, **kwargs):
        if str(path).endswith(".pt"):
            if len(checkpoints) >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            checkpoints.append(path)
        real(path, write, **kwargs)

    monkeypatch.setattr(atomic, "write_atomically", full_after_two_checkpoints)
    with pytest.raises(SystemExit) as stop:
        main(run_args(tiny_data, run))
    assert stop.value.code == (
        f"spikessm train: error: could not write {run / 'last.pt'} (No space left on device), also on a second try, "
        f"so the model at step 12 is not saved; the newest checkpoint on disk, {run / 'last.pt'}, holds step 4; make "
        f"room (or lift the limit), then continue with: spikessm train --run-dir {run} --resume")
    err = capsys.readouterr().err
    assert (f"spikessm train: warning: could not write {run / 'best.pt'} (No space left on device); there is no "
            "earlier one") in err
    assert (f"spikessm train: warning: could not write {run / 'last.pt'} (No space left on device); the last good "
            "checkpoint (step 4) is kept") in err
    assert torch.load(run / "last.pt", weights_only=True)["position"]["step"] == 4
    assert not (run / "results.json").exists() and not (run / "best.pt").exists()
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(atomic, "write_atomically", real)
    assert resume(tiny_data, run) == 0
    assert_same_run(reference, run)


def test_nonfinite_loss_stops_naming_the_step_or_is_skipped(tiny_data, tmp_path, monkeypatch, capsys):
    real = torch.nn.functional.cross_entropy
    calls = []

    def nan_at_step_5(logits, labels, **kwargs):
        loss = real(logits, labels, **kwargs)
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) == 5:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", nan_at_step_5)
    run = tmp_path / "stop"
    with pytest.raises(SystemExit) as stop:
        main(run_args(tiny_data, run))
    assert stop.value.code == (f"spikessm train: error: step 5: the loss is nan; the run stops and the last good "
                               f"checkpoint {run / 'last.pt'} (step 4) is kept; lower --lr, or pass --skip-nonfinite "
                               "to skip such steps")
    assert torch.load(run / "last.pt", weights_only=True)["position"]["step"] == 4
    calls.clear()
    run = tmp_path / "skip"
    assert main(run_args(tiny_data, run, "--skip-nonfinite")) == 0
    assert "spikessm train: warning: step 5: skipped, the loss is not finite" in capsys.readouterr().err
    records = metrics(run)  # strict JSON: the NaN loss is null
    assert [r["loss"] for r in records if r["kind"] == "step" and r["step"] == 5] == [None]
    assert json.loads((run / "results.json").read_text())["skipped_steps"] == 1


def test_max_steps_and_time_budget_stop_at_a_checkpoint_and_evaluate(tiny_data, reference, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "3")) == 0
    results = json.loads((run / "results.json").read_text())
    assert (results["stopped_by"], results["step"], results["checkpoint"]) == ("max-steps", 3, "last.pt")
    assert "stopped by --max-steps at step 3" in capsys.readouterr().out
    assert resume(tiny_data, run, "--max-steps", "8") == 0
    results = json.loads((run / "results.json").read_text())
    assert (results["stopped_by"], results["step"], results["checkpoint"]) == ("max-steps", 8, "best.pt")
    assert resume(tiny_data, run, "--time-budget", "0.0001") == 0  # spent before the first step
    assert json.loads((run / "results.json").read_text())["stopped_by"] == "time-budget"
    assert resume(tiny_data, run) == 0
    assert_same_run(reference, run)


def test_limit_train_is_a_seeded_subset(tiny_data, tmp_path, capsys):
    for name in ("a", "b"):
        assert main(run_args(tiny_data, tmp_path / name, "--limit-train", "40", "--epochs", "1")) == 0
    assert "task tiny-listops: 40 train / 16 val / 24 test examples" in capsys.readouterr().out
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert json.loads((tmp_path / "a" / "config.json").read_text())["limit_train"] == 40


def test_read_only_run_directory_is_refused(tiny_data, reference, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "2")) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    run.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the permission check see what a user would
        real_access = os.access
        monkeypatch.setattr(run_directory.os, "access",
                            lambda p, mode: False if str(p) == str(run) else real_access(p, mode))
    try:
        with pytest.raises(SystemExit) as stop:
            resume(tiny_data, run)
    finally:
        run.chmod(0o755)
    assert stop.value.code == f"spikessm train: error: --resume: the run directory {run} is not writable"
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_eval_from_another_directory(tiny_data, reference, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["eval", str(reference)]) == 0
    results = json.loads((reference / "results.json").read_text())
    assert f"test accuracy {results['test_accuracy']:.4f}" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


def test_the_readmes_resume_command_works_as_written(tmp_path, monkeypatch, capsys):
    """README: `spikessm train --task listops --model lif-s4d --data-dir data/listops --run-dir runs/a` (here with
    --set overrides), then `spikessm train --task listops --data-dir data/listops --run-dir runs/a --resume`, then
    `spikessm eval runs/a --per-step`."""
    from spikessm.data.listops import write_listops

    monkeypatch.chdir(tmp_path)
    write_listops("data/listops", 64, 16, 16, max_depth=3, max_args=4, min_length=4, max_length=30, seed=0)
    readme = ["train", "--task", "listops", "--data-dir", "data/listops", "--run-dir", "runs/a"]
    small = ["--set", "d_model=8", "--set", "n_layers=1", "--set", "d_state=4", "--set", "norm=layer"]
    assert main([*readme, "--model", "lif-s4d", *small, "--epochs", "1", "--batch-size", "16", "--threads", "1",
                 "--max-steps", "2"]) == 0
    assert main([*readme, "--resume"]) == 0
    results = json.loads((tmp_path / "runs" / "a" / "results.json").read_text())
    assert (results["step"], results["stopped_by"], results["checkpoint"]) == (4, None, "best.pt")
    capsys.readouterr()
    assert main(["eval", "runs/a", "--per-step"]) == 0
    assert f"test accuracy {results['test_accuracy']:.4f}" in capsys.readouterr().out
    assert (tmp_path / "runs" / "a" / "anytime.png").exists()


def test_nonfinite_gradient_stops_naming_the_step(tiny_data, tmp_path, monkeypatch):
    real = torch.nn.utils.clip_grad_norm_
    calls = []

    def inf_at_step_3(parameters, max_norm, **kwargs):
        calls.append(1)
        norm = real(parameters, max_norm, **kwargs)
        return norm * float("inf") if len(calls) == 3 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", inf_at_step_3)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        main(run_args(tiny_data, run))
    assert stop.value.code == (f"spikessm train: error: step 3: the gradient norm is inf; the run stops and the last "
                               f"good checkpoint {run / 'last.pt'} (step 2) is kept; lower --lr, or pass "
                               "--skip-nonfinite to skip such steps")


def test_a_run_in_use_is_not_resumed_twice(tiny_data, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "1")) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with open(run / ".lock", "a") as held:  # what a running trainer holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SystemExit) as error:
            main(run_args(tiny_data, run, "--resume"))
    assert error.value.code == (f"spikessm train: error: {run} is in use by another spikessm train process; let it "
                                "end or stop it (SIGTERM writes a checkpoint), then resume")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert main(run_args(tiny_data, run, "--resume", "--max-steps", "2")) == 0  # released: resumes


def test_more_epochs_on_resume_extend_a_finished_run(tiny_data, tmp_path):
    from spikessm.training.optim import warmup_cosine

    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--warmup-steps", "2")) == 0  # 2 epochs of 6 steps
    before = metrics(run)
    assert main(run_args(tiny_data, run, "--resume", "--epochs", "3")) == 0
    after = metrics(run)
    assert after[:len(before)] == before
    assert after[len(before)] == {"kind": "extend", "step": 12, "epochs": 3, "from_epochs": 2}
    rates = {r["step"]: r["lr"] for r in after if r["kind"] == "step"}
    assert sorted(rates) == list(range(1, 19))
    old, new = warmup_cosine(2, 12), warmup_cosine(2, 18)
    for step, rate in rates.items():  # the rate in force after each step: the old schedule, then the new one
        assert rate == pytest.approx(0.004 * (old(step) if step <= 12 else new(step)), rel=1e-12), step
    assert json.loads((run / "config.json").read_text())["epochs"] == 3
    assert json.loads((run / "results.json").read_text())["step"] == 18
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, run, "--resume", "--epochs", "2"))
    assert error.value.code == (
        f"spikessm train: error: --resume: the command line contradicts the run in {run / 'config.json'}: --epochs 2 "
        "(run: 3); a run can be extended to more epochs, not shortened; leave these options out to resume the run "
        "as it is")
