"""Training: the optimiser set-up, a whole run through the CLI, resume == uninterrupted, data-parallel ==
single-process, evaluation, generation and the error paths."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from spikessm import atomic
from spikessm.__main__ import main, parse_setting
from spikessm.models import build_model
from spikessm.training import RunConfig, SettingError, train
from spikessm.training.distributed import epoch_batches
from spikessm.training.optim import parameter_groups, warmup_cosine

SMALL_MODEL = ["--set", "d_model=16", "--set", "n_layers=1", "--set", "d_state=4", "--set", "norm=layer"]


@pytest.fixture(scope="module")
def listops_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("listops")
    assert main(["generate", "listops", "--out", str(out), "--n-train", "96", "--n-val", "16", "--n-test", "24",
                 "--max-depth", "3", "--max-args", "4", "--min-length", "4", "--max-length", "30"]) == 0
    return out


def small_config(listops_dir, run_dir, **kwargs):
    settings = dict(task="listops", model="lif-s4d", run_dir=str(run_dir), data_dir=str(listops_dir), epochs=2,
                    batch_size=16, log_every=1)
    overrides = dict(d_model=16, n_layers=1, d_state=4, norm="layer", **kwargs.pop("overrides", {}))
    return RunConfig(**{**settings, **kwargs}, model_overrides=overrides)


def test_parameter_groups_and_schedule():
    model = build_model("gsu-s4d", n_classes=3, vocab_size=5, d_model=8, n_layers=2, d_state=4)
    groups = {g["name"]: g for g in parameter_groups(model, lr=0.01, ssm_lr=0.001, weight_decay=0.05)}
    ssm = {id(p) for p in model.ssm_parameters()}
    assert {id(p) for p in groups["ssm"]["params"]} == ssm
    assert (groups["ssm"]["lr"], groups["ssm"]["weight_decay"]) == (0.001, 0.0)
    assert all(p.dim() >= 2 and id(p) not in ssm for p in groups["decay"]["params"])
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    assert all(p.dim() == 1 for p in groups["no_decay"]["params"])
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))
    f = warmup_cosine(10, 110)
    assert [f(0), f(4), f(9)] == [0.1, 0.5, 1.0]
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0) and f(35) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 0.25)))


def test_epoch_batches_share_global_batches():
    single = epoch_batches(50, 8, seed=3, epoch=1)
    assert len(single) == 6 and all(len(b) == 8 for b in single)
    shares = [epoch_batches(50, 8, seed=3, epoch=1, rank=r, world_size=2) for r in range(2)]
    assert all(a + b == s for a, b, s in zip(*shares, single))
    assert single != epoch_batches(50, 8, seed=3, epoch=2)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        epoch_batches(50, 9, seed=0, epoch=0, world_size=2)


def test_cli_train_then_eval(listops_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "listops", "--model", "gsu-s4d", "--data-dir", str(listops_dir), "--run-dir",
                 str(run), "--epochs", "2", "--batch-size", "16", *SMALL_MODEL]) == 0
    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "results.json", "curves.png",
                 "firing_rates.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model_config"]["d_model"] == 16 and config["lr"] == 0.01 and config["weight_decay"] == 0.05
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["test_accuracy"] <= 1 and results["test_examples"] == 24
    assert 0 < results["majority_accuracy"] < 1
    assert set(results["firing_rates"]) == {"blocks.0.mixing"} and results["energy_uj_per_example"] > 0
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [0, 1]
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {results['test_accuracy']:.4f}" in out and "blocks.0.mixing" in out


def test_resume_equals_an_uninterrupted_run(listops_dir, tmp_path, monkeypatch):
    whole = train(small_config(listops_dir, tmp_path / "whole", overrides=dict(dropout=0.2)), log=lambda *a: None)

    real_write = atomic.write_atomically
    saved = []

    def crash_after_first_epoch(path, write, **kwargs):
        real_write(path, write, **kwargs)
        saved.append(path.name)
        if path.name == "last.pt":
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(atomic, "write_atomically", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(small_config(listops_dir, tmp_path / "cut", overrides=dict(dropout=0.2)), log=lambda *a: None)
    monkeypatch.setattr(atomic, "write_atomically", real_write)
    resumed = train(RunConfig.resume(tmp_path / "cut"), resume=True, log=lambda *a: None)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert resumed["test_accuracy"] == whole["test_accuracy"]

    def losses(run):
        return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if r["kind"] == "step"]

    assert losses(tmp_path / "whole") == losses(tmp_path / "cut")


def test_data_parallel_equals_one_process(listops_dir, tmp_path):
    common = ["train", "--task", "listops", "--model", "lif-s5", "--data-dir", str(listops_dir), "--epochs", "1",
              "--batch-size", "16", *SMALL_MODEL]
    assert main([*common, "--run-dir", str(tmp_path / "single")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "spikessm", *common, "--run-dir", str(tmp_path / "ddp")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    a = torch.load(tmp_path / "single" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)["model"]
    for name, value in a.items():
        scale = value.abs().max().item() or 1.0
        assert (value - b[name]).abs().max().item() <= 1e-5 * scale, name


def test_generate_pathfinder(tmp_path):
    assert main(["generate", "pathfinder", "--out", str(tmp_path), "--n-images", "4", "--images-per-batch", "2"]) == 0
    folder = tmp_path / "pathfinder32" / "curv_contour_length_14"
    assert len(list((folder / "imgs").rglob("*.png"))) == 4 and len(list((folder / "metadata").iterdir())) == 2


def test_errors(listops_dir, tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--task", "lra-everything"])
    with pytest.raises(ValueError, match="pass --data-dir"):
        train(RunConfig(task="listops", run_dir=str(tmp_path / "a")))
    with pytest.raises(FileNotFoundError, match="generate listops"):
        train(RunConfig(task="listops", run_dir=str(tmp_path / "b"), data_dir=str(tmp_path / "nothing")))
    with pytest.raises(SettingError, match="there is no run directory"):
        train(small_config(listops_dir, tmp_path / "c"), resume=True)
    with pytest.raises(SettingError, match="larger than the training set"):
        train(small_config(listops_dir, tmp_path / "d", batch_size=1000))
    train(small_config(listops_dir, tmp_path / "e", epochs=1), log=lambda *a: None)
    with pytest.raises(SettingError, match="already exists; pass --resume"):
        train(small_config(listops_dir, tmp_path / "e", epochs=1))
    with pytest.raises(ValueError, match="unknown model setting"):
        train(small_config(listops_dir, tmp_path / "f", overrides=dict(widht=3)))
    with pytest.raises(SystemExit, match="needs --run-dir"):
        main(["train", "--resume"])
    with pytest.raises(SystemExit, match="no checkpoint"):
        main(["eval", str(tmp_path / "nothing")])
    assert parse_setting("d_model=256") == ("d_model", 256)
    assert parse_setting("bidirectional=False") == ("bidirectional", False)
    assert parse_setting("norm=layer") == ("norm", "layer")
