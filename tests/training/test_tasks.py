"""Task presets: each owns its loader, so a new task is one TaskPreset entry."""
import json

import pytest
from training_helpers import metrics, run_args

from spikessm.__main__ import main
from spikessm.data.listops import load_listops
from spikessm.training import tasks
from spikessm.training.tasks import (
    FILES,
    GENERATED,
    HUB,
    TASKS,
    TaskPreset,
    data_location,
    load_task,
    register,
    resolve_conventions,
)


def test_every_preset_has_a_loader_and_a_data_kind():
    for task in TASKS.values():
        assert callable(task.load) and task.data in (FILES, HUB, GENERATED), task.name
    with pytest.raises(ValueError, match="data must be one of"):
        TaskPreset("x", {}, 1, 0.1, 0.0, 1, load_listops, data="web")
    with pytest.raises(ValueError, match="a task named 'listops' exists already"):
        register(TASKS["listops"])


def test_every_task_s4_loads_follows_s4_by_default_and_offers_spikessm_0_1():
    for task in TASKS.values():
        expected = () if task.name in ("shd", "nmnist") else ("s4", "spikessm-0.1")
        assert task.conventions == expected, task.name
        assert resolve_conventions(task, None) == (expected[0] if expected else None)
    assert resolve_conventions(TASKS["text"], "spikessm-0.1") == "spikessm-0.1"
    with pytest.raises(ValueError, match="task 'text': unknown input conventions 'lra'; choose one of s4, "
                                         "spikessm-0.1"):
        resolve_conventions(TASKS["text"], "lra")
    with pytest.raises(ValueError, match="task 'shd' takes no input conventions, got 's4'"):
        resolve_conventions(TASKS["shd"], "s4")
    with pytest.raises(ValueError, match="name one twice"):
        TaskPreset("x", {}, 1, 0.1, 0.0, 1, load_listops, conventions=("s4", "s4"))


def test_load_task_passes_the_conventions_on(tiny_data):
    tiny = TASKS["tiny-listops"]
    s4 = load_task(tiny, tiny_data, None)
    assert s4.vocab_size == 18 and all(x[-1] == 2 for x, _ in s4.train)  # <eos> ends every sequence
    old = load_task(tiny, tiny_data, None, "spikessm-0.1")
    assert old.vocab_size == 16 and [len(x) for x, _ in old.train] == [len(x) - 1 for x, _ in s4.train]
    seen = []
    preset = TaskPreset("mine", {}, 1, 0.1, 0.0, 1, lambda data_dir, source: seen.append(data_dir) or s4)
    assert load_task(preset, tiny_data, None) is s4 and seen == [tiny_data]  # no conventions keyword
    with pytest.raises(ValueError, match="takes no input conventions"):
        load_task(preset, tiny_data, None, "s4")


def test_a_registered_task_trains_through_the_cli(tiny_data, tmp_path, monkeypatch):
    loaded = []

    def load(data_dir, source):
        loaded.append((data_dir, source))
        return load_listops(data_dir)

    preset = TaskPreset("my-listops", dict(n_layers=1, d_model=8, d_state=4, norm="layer"), 16, 0.004, 0.0, 1, load)
    monkeypatch.setitem(tasks.TASKS, preset.name, preset)
    argv = run_args(tiny_data, tmp_path / "run", "--max-steps", "1")
    argv[argv.index("tiny-listops")] = "my-listops"
    assert main(argv) == 0
    assert loaded == [(tiny_data, None)]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task"] == "my-listops"


def test_data_locations_are_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data_location(TASKS["listops"], "data", None) == (str(tmp_path / "data"), None)
    assert data_location(TASKS["tiny-listops"], None, None) == (str(tmp_path / "runs" / "tiny-listops-data"), None)
    assert data_location(TASKS["smnist"], None, "ylecun/mnist") == (None, "ylecun/mnist")
    (tmp_path / "saved").mkdir()
    assert data_location(TASKS["smnist"], "saved", None) == (str(tmp_path / "saved"), None)


def test_per_step_training_and_evaluation(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "2", "--per-step-loss", "0.5")) == 0
    assert json.loads((run / "config.json").read_text())["per_step_loss"] == 0.5
    capsys.readouterr()
    assert main(["eval", str(run), "--per-step", "0.5,1"]) == 0
    anytime = json.loads((run / "anytime.json").read_text())
    assert anytime["fractions"] == [0.5, 1.0] and (run / "anytime.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads((run / "results.json").read_text())
    assert anytime["end_accuracy"] == results["test_accuracy"]


def test_per_step_needs_a_causal_model(tiny_data, tmp_path):
    argv = run_args(tiny_data, tmp_path / "run", "--per-step-loss", "0.5")
    argv[argv.index("lif-s4d")] = "gsu-s4d"
    with pytest.raises(SystemExit) as error:
        main(argv)
    assert error.value.code.startswith("spikessm train: error: --per-step-loss: per-step answers need a causal "
                                       "model, but this one is bidirectional")
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, tmp_path / "run", "--per-step-loss", "2"))
    assert error.value.code == "spikessm train: error: --per-step-loss must be a number in [0, 1], got 2.0"
    assert not (tmp_path / "run").exists()
    argv = run_args(tiny_data, tmp_path / "bi", "--max-steps", "1")
    argv[argv.index("lif-s4d")] = "gsu-s4d"
    assert main(argv) == 0
    with pytest.raises(SystemExit) as error:
        main(["eval", str(tmp_path / "bi"), "--per-step"])
    assert error.value.code.startswith(f"spikessm eval: error: --per-step ({tmp_path / 'bi' / 'last.pt'}): per-step "
                                       "answers need a causal model")
    with pytest.raises(SystemExit) as error:
        main(["eval", str(tmp_path / "bi"), "--per-step", "0,2"])
    assert error.value.code.startswith("spikessm eval: error: --per-step: ")


def test_same_command_same_numbers_whatever_the_load(tiny_data, tmp_path, monkeypatch):
    """The default thread count is PyTorch's, not one read from the load average, so two runs of one command
    on a quiet and on a busy machine give the same metrics; the run records the count and its resumes keep it."""
    from spikessm.training import config

    monkeypatch.setattr(config, "PYTORCH_THREADS", 2)
    runs = []
    for name, load in (("quiet", 0.0), ("busy", 7.5)):
        monkeypatch.setattr(config.os, "getloadavg", lambda load=load: (load, load, load))
        run = tmp_path / name
        argv = run_args(tiny_data, run, "--max-steps", "4")
        del argv[argv.index("--threads"):argv.index("--threads") + 2]
        assert main(argv) == 0
        assert json.loads((run / "config.json").read_text())["threads"] == 2
        runs.append(run)
    assert metrics(runs[0]) == metrics(runs[1]) and len(metrics(runs[0])) == 4
    assert config.RunConfig.resume(runs[0]).threads == 2
    assert config.RunConfig.resume(runs[0], run_options={"threads": 1}).threads == 1


def test_runs_record_their_input_conventions(tiny_data, tmp_path):
    from spikessm.training import RunConfig, SettingError

    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "1", "--data-conventions", "spikessm-0.1")) == 0
    path = run / "config.json"
    stored = json.loads(path.read_text())
    assert stored["data_conventions"] == "spikessm-0.1"
    assert stored["model_config"] and RunConfig.resume(run).data_conventions == "spikessm-0.1"
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, run, "--resume", "--data-conventions", "s4"))
    assert error.value.code == (f"spikessm train: error: --resume: the command line contradicts the run in {path}: "
                                "--data-conventions s4 (run: spikessm-0.1); leave these options out to resume the "
                                "run as it is")
    # A run directory from before runs recorded their conventions was read by spikessm 0.1's rules.
    del stored["data_conventions"], stored["threads"]
    path.write_text(json.dumps({**stored, "version": 1}))
    assert RunConfig.resume(run).data_conventions == "spikessm-0.1"
    assert RunConfig(task="tiny-listops").data_conventions == "s4"
    assert RunConfig(task="shd", data_dir=str(tmp_path)).data_conventions is None
    with pytest.raises(SettingError) as refused:
        RunConfig(task="shd", data_dir=str(tmp_path), data_conventions="s4")
    assert str(refused.value) == "--data-conventions: task 'shd' takes no input conventions, got 's4'"
