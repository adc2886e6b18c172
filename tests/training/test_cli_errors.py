"""Every user error of the CLI: one line naming the problem, a non-zero exit, no traceback, and no run directory
left behind."""
import io
import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch
from training_helpers import run_args

from spikessm.__main__ import main

E = "spikessm train: error: "

# (extra arguments, the exact message); each is refused before anything is written.
BAD_SETTINGS = [
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
    (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
    (["--ssm-lr", "inf"], "--ssm-lr must be a finite number > 0, got inf"),
    (["--weight-decay", "-0.1"], "--weight-decay must be a finite number >= 0, got -0.1"),
    (["--grad-clip", "nan"], "--grad-clip must be a finite number >= 0, got nan"),
    (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--batch-size", "97"], "--batch-size 97 is larger than the training set (96 examples)"),
    (["--log-every", "0"], "--log-every must be an integer >= 1, got 0"),
    (["--warmup-steps", "-1"], "--warmup-steps must be an integer >= 0, got -1"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["--limit-train", "0"], "--limit-train must be an integer >= 1, got 0"),
    (["--limit-train", "97"], "--limit-train 97 is more than the 96 training examples"),
    (["--threads", "0"], "--threads must be an integer >= 1, got 0"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be an integer >= 1, got 0"),
    (["--checkpoint-minutes", "0"], "--checkpoint-minutes must be a finite number > 0, got 0.0"),
    (["--max-steps", "0"], "--max-steps must be an integer >= 1, got 0"),
    (["--time-budget", "-5"], "--time-budget must be a finite number > 0, got -5.0"),
    (["--device", "gpu"], "--device: unknown device 'gpu'; the devices here are: cpu"),
    (["--device", "cuda:7"], "--device: no device 'cuda:7' on this machine; the devices here are: cpu"),
    (["--set", "d_modle=3"], "--set d_modle: unknown model setting; did you mean 'd_model'?"),
    (["--set", "n_classes=3"], "--set n_classes: n_classes comes from the task's data and cannot be set"),
    (["--set", "vocab_size=3"], "--set vocab_size: vocab_size comes from the task's data and cannot be set"),
    (["--set", "bidirectional=maybe"], '--set bidirectional="maybe": bidirectional takes true or false'),
    (["--set", "bidirectional=1"], "--set bidirectional=1: bidirectional takes true or false"),
    (["--set", "d_model=1.5"], "--set d_model=1.5: d_model takes an integer"),
    (["--set", "lif_beta=NaN"], "--set lif_beta=NaN: lif_beta takes a finite number"),
    (["--set", "norm=3"], "--set norm=3: norm takes a name"),
    (["--set", "d_model=0"], "--set: ModelConfig: d_model must be a positive integer, got 0"),
    (["--set", "dropout=1.5"], "--set: ModelConfig: dropout must be in [0, 1), got 1.5"),
    (["--source", "x"], "task 'tiny-listops' generates its data into --data-dir; it takes no --source"),
]


@pytest.mark.parametrize("extra, message", BAD_SETTINGS, ids=[" ".join(a) for a, _ in BAD_SETTINGS])
def test_bad_setting_gives_one_line_and_leaves_no_run(extra, message, tiny_data, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, run, *extra))
    assert error.value.code == E + message
    assert not run.exists() and not list(tmp_path.iterdir())


def test_unknown_setting_far_from_every_name_lists_them(tiny_data, tmp_path):
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, tmp_path / "run", "--set", "zzzz=3"))
    assert error.value.code.startswith(E + "--set zzzz: unknown model setting; the settings are backend, ")
    assert "n_classes" not in error.value.code and not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["train", "--task", "nope"], "spikessm train: error: argument --task: invalid choice: 'nope' (choose from "),
    (["train", "--batch-size", "x"], "spikessm train: error: argument --batch-size: invalid int value: 'x' "
                                     "(see spikessm train --help)"),
    (["train", "--set", "d_model"], "spikessm train: error: argument --set: --set takes key=value, got 'd_model' "
                                    "(see spikessm train --help)"),
    (["train", "--lr"], "spikessm train: error: argument --lr: expected one argument (see spikessm train --help)"),
])
def test_usage_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as error:
        main(argv)
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_data_location_errors(tiny_data, tmp_path):
    cases = [
        (["--task", "listops"], "task 'listops' reads files: pass --data-dir DIR (generate them with `spikessm "
                                "generate listops --out DIR`, or download the LRA release "
                                "(https://storage.googleapis.com/long-range-arena/lra_release.gz))"),
        (["--task", "listops", "--data-dir", str(tmp_path / "none")],
         f"no basic_train.tsv, basic_val.tsv, basic_test.tsv in {tmp_path / 'none'} or "
         f"{tmp_path / 'none' / 'listops-1000'}. ListOps: generate them with `spikessm generate listops --out "
         f"{tmp_path / 'none'}`, or download the LRA release (https://storage.googleapis.com/long-range-arena/"
         "lra_release.gz) and pass the folder holding listops-1000/"),
        (["--task", "text", "--data-dir", "a", "--source", "b"],
         "task 'text' reads one dataset: pass --source or --data-dir, not both"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as error:
            main(["train", "--run-dir", str(tmp_path / "run"), *extra])
        assert error.value.code == E + message
    assert not (tmp_path / "run").exists()


def test_missing_datasets_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    for task, message in (("smnist", "the image tasks read"), ("text", "IMDB reads")):
        message += ' Hugging Face datasets, which needs the `datasets` package: pip install "spikessm[data]"'
        with pytest.raises(SystemExit) as error:
            main(["train", "--task", task, "--run-dir", str(tmp_path / "run")])
        assert error.value.code == E + message
    assert not (tmp_path / "run").exists()


def test_resume_errors(tiny_data, tmp_path):
    run = tmp_path / "run"
    cases = [
        (["train", "--resume"], "--resume needs --run-dir, the run to continue"),
        (run_args(tiny_data, run, "--resume"), f"--resume: there is no run directory {run}"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as error:
            main(argv)
        assert error.value.code == E + message
    run.mkdir()
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, run, "--resume"))
    assert error.value.code == E + f"--resume: {run} holds no config.json, so it is not a spikessm run directory"
    (run / "config.json").write_text("{")
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, run, "--resume"))
    assert error.value.code == E + (f"{run / 'config.json'} cannot be read as JSON (Expecting property name "
                                    "enclosed in double quotes: line 1 column 2 (char 1))")
    (run / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, run, "--resume"))
    assert error.value.code == E + f'{run / "config.json"} is not a spikessm run\'s config.json (no "format": ' \
                                   '"spikessm-run")'


def test_resume_reads_the_run_and_refuses_contradictions(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert main(run_args(tiny_data, "run", "--max-steps", "1")) == 0
    before = (run / "config.json").read_bytes()
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, "run", "--resume", "--lr", "0.5", "--set", "d_model=16", "--data-dir", str(tmp_path),
                      "--epochs", "1"))
    assert error.value.code == E + (
        f"--resume: the command line contradicts the run in {run / 'config.json'}: --data-dir {tmp_path} (run: "
        f"{tiny_data}); --epochs 1 (run: 2); a run can be extended to more epochs, not shortened; --lr 0.5 (run: "
        "0.004); --set d_model=16 (run: 8); leave these options out to resume the run as it is")
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, "run", "--resume", "--model", "gsu-s4d"))
    assert error.value.code.startswith(E + f"--resume: the command line contradicts the run in {run / 'config.json'}: "
                                           "--model gsu-s4d (run: lif-s4d); --set ")
    assert (run / "config.json").read_bytes() == before
    # The README's form: the run's identity on the command line (relative paths), its settings from config.json.
    assert main(["train", "--task", "tiny-listops", "--data-dir", str(tiny_data), "--run-dir", "run", "--resume",
                 "--max-steps", "2"]) == 0
    assert torch.load(run / "last.pt", weights_only=True)["position"]["step"] == 2
    assert json.loads((run / "config.json").read_text())["data_dir"] == str(tiny_data)


def test_a_fresh_start_never_reuses_a_run_directory(tiny_data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, run))
    assert error.value.code == E + f"--run-dir: {run} already exists; pass --resume to continue its run, or choose " \
                                   "another --run-dir"
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def _payload(marker):
    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return RunsCode()


@pytest.fixture(scope="module")
def checkpoint_bytes(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "1")) == 0
    return (run / "last.pt").read_bytes()


def test_bad_checkpoints_say_so_with_their_path(checkpoint_bytes, tmp_path):
    marker = tmp_path / "code-ran"
    buffer = io.BytesIO()
    torch.save({"format": "spikessm-checkpoint", "version": 1, "model": _payload(marker)}, buffer)
    plain = io.BytesIO()
    torch.save({"weights": torch.zeros(2)}, plain)
    newer = io.BytesIO()
    torch.save({"format": "spikessm-checkpoint", "version": 99}, newer)
    partial = io.BytesIO()
    torch.save({"format": "spikessm-checkpoint", "version": 1, "model": {}}, partial)
    cases = {
        "missing.pt": (None, "no checkpoint at {}"),
        "empty.pt": (b"", "{} is empty (0 bytes): not a checkpoint, or its write was cut short"),
        "garbage.pt": (b"\x00\xffnot a checkpoint" * 10, "{} is not a spikessm checkpoint (not a PyTorch zip archive)"),
        "truncated.pt": (checkpoint_bytes[: len(checkpoint_bytes) // 2],
                         "{} is truncated or corrupt (not a complete PyTorch archive)"),
        "code.pt": (buffer.getvalue(), "{} holds a Python object (posix.system) that loading would have to run as "
                                       "code; spikessm loads only tensors and plain values and refuses it"),
        "plain.pt": (plain.getvalue(), "{} is a PyTorch file but not a spikessm checkpoint (no 'format': "
                                       "'spikessm-checkpoint' entry)"),
        "newer.pt": (newer.getvalue(), "{} was written by a newer spikessm (checkpoint version 99)"),
        "partial.pt": (partial.getvalue(), "{} lacks model_config, config: not a complete spikessm checkpoint"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(SystemExit) as error:
            main(["eval", str(path)])
        assert error.value.code == "spikessm eval: error: " + message.format(path), name
    assert not marker.exists(), "loading the checkpoint ran its code"
    corrupted = bytearray(checkpoint_bytes)
    with zipfile.ZipFile(io.BytesIO(checkpoint_bytes)) as archive:
        header = archive.getinfo(next(n for n in archive.namelist() if n.endswith("data.pkl"))).header_offset
    name_length, extra_length = (int.from_bytes(corrupted[header + i:header + i + 2], "little") for i in (26, 28))
    corrupted[header + 30 + name_length + extra_length + 2] ^= 0xFF  # a byte inside the pickle
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(corrupted))
    with pytest.raises(SystemExit) as error:
        main(["eval", str(path)])
    assert error.value.code.startswith(f"spikessm eval: error: {path} is ")


def test_resume_refuses_a_corrupt_last_checkpoint(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "1")) == 0
    (run / "last.pt").write_bytes(b"")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, run, "--resume"))
    assert error.value.code == E + f"{run / 'last.pt'} is empty (0 bytes): not a checkpoint, or its write was cut short"
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_errors_show_a_traceback_only_when_asked(tiny_data, tmp_path):
    argv = [sys.executable, "-m", "spikessm", "train", "--lr", "nan", "--run-dir", str(tmp_path / "run")]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert (quiet.returncode, quiet.stderr) == (1, E + "--lr must be a finite number > 0, got nan\n")
    loud = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "SPIKESSM_DEBUG": "1"})
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "SettingError" in loud.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value, message", [
    ("model_config.d_model", "eight", "model_config.d_model takes an integer, got 'eight'"),
    ("model_config.d_modle", 3, "model_config.d_modle is not a model setting; did you mean 'd_model'?"),
    ("lr", "x", "lr must be a finite number > 0, got 'x'"),
    ("epochs", 0, "epochs must be an integer >= 1, got 0"),
    ("task", "nope", "task is not a task ("),
])
def test_a_bad_value_in_config_json_names_the_file_and_field(field, value, message, tiny_data, tmp_path):
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "1")) == 0
    path = run / "config.json"
    stored = json.loads(path.read_text())
    where = stored["model_config"] if field.startswith("model_config.") else stored
    where[field.removeprefix("model_config.")] = value
    path.write_text(json.dumps(stored))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(SystemExit) as error:
        main(["train", "--run-dir", str(run), "--resume"])
    assert error.value.code.startswith(E + f"{path}: {message}"), error.value.code
    assert "--set" not in error.value.code
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_bad_model_value_in_config_json_is_named_when_the_model_is_built(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "1")) == 0
    path = run / "config.json"
    stored = json.loads(path.read_text())
    stored["model_config"]["d_model"] = 0
    path.write_text(json.dumps(stored))
    with pytest.raises(SystemExit) as error:
        main(["train", "--run-dir", str(run), "--resume"])
    assert error.value.code == E + f"{path}: model_config: ModelConfig: d_model must be a positive integer, got 0"


def test_a_bug_shows_as_a_bug_with_its_traceback(tiny_data, tmp_path, monkeypatch, capsys):
    from spikessm.training import loop

    def broken(self):
        raise RuntimeError("something inside went wrong")

    monkeypatch.setattr(loop.Trainer, "fit", broken)
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, tmp_path / "run"))
    assert error.value.code == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("something inside went wrong")' in err
    assert err.rstrip().splitlines()[-1] == (
        "spikessm train: internal error (RuntimeError: something inside went wrong). This is a bug in spikessm or "
        "in a library it calls, not a problem with your input or settings; please report it with the command you "
        "ran and the traceback above.")
