"""What a researcher watches during a run: the TensorBoard log (read back from its event files), the progress
bar on a terminal and plain lines elsewhere, and the learning curves' plot."""
import io
import json
import math

import pytest
from training_helpers import metrics, run_args

from spikessm.__main__ import main
from spikessm.plots import curves_figure, smooth
from spikessm.training import callbacks


def scalars(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_log_reads_back_as_the_metrics(tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--tensorboard", "--max-steps", "8")) == 0  # stops within epoch 2
    assert main(run_args(tiny_data, run, "--resume", "--tensorboard")) == 0
    logged = scalars(run)
    records = metrics(run)
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [s for s, _ in logged["train/loss"]] == list(range(1, 13)), "each step once, also across the resume"
    for tag, key, rows in (("train/loss", "loss", steps), ("train/lr", "lr", steps),
                           ("train/firing_rate", "firing_rate", steps), ("val/accuracy", "val_accuracy", epochs),
                           ("val/loss", "val_loss", epochs), ("val/energy_uj_per_example", "val_energy_uj", epochs),
                           ("val/firing_rate", "val_firing_rate", epochs),
                           ("train/epoch_accuracy", "train_accuracy", epochs)):
        expected = [(r["step"], r[key]) for r in rows]
        assert [s for s, _ in logged[tag]] == [s for s, _ in expected], tag
        assert [v for _, v in logged[tag]] == pytest.approx([v for _, v in expected], rel=1e-6), tag
    assert all(r["val_energy_uj"] > 0 and 0 < r["val_firing_rate"] < 1 for r in epochs)


def test_tensorboard_without_the_package_is_refused_in_one_line(tiny_data, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(SystemExit) as error:
        main(run_args(tiny_data, tmp_path / "run", "--tensorboard"))
    assert error.value.code == ('spikessm train: error: --tensorboard needs the tensorboard package: pip install '
                                '"spikessm[tensorboard]"')
    assert not (tmp_path / "run").exists()


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_plain_lines_elsewhere(tiny_data, tmp_path, monkeypatch, capsys):
    assert main(run_args(tiny_data, tmp_path / "plain", "--log-every", "3")) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == ["[3/12", "[6/12", "[9/12", "[12/12"]
    assert lines[0].startswith("[3/12] epoch 1/2 loss ") and " ex/s" in lines[0]
    terminal = Terminal()
    monkeypatch.setattr(callbacks.sys, "stderr", terminal)
    monkeypatch.setattr(callbacks.ProgressDisplay, "REFRESH_SECONDS", 0)  # every step redrawn
    assert main(run_args(tiny_data, tmp_path / "tty")) == 0
    shown = terminal.getvalue()
    assert "epoch 1/2" in shown and "epoch 2/2" in shown and "6/6" in shown
    assert "<" in shown and "step/s" in shown, "the bar shows the time left and the rate"
    assert "[6/12]" not in shown, "no plain lines on a terminal"


def test_smoothing_and_the_curves():
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0]), "no start-up bias"
    s = smooth([0.0, 10.0, math.nan, 10.0], weight=0.5)
    assert s[0] == 0.0 and s[1] == pytest.approx(10 * 0.5 / 0.75) and math.isnan(s[2])
    assert s[3] == pytest.approx((0.5 * 5 + 5) / 0.875)
    records = [{"kind": "step", "step": k, "epoch": (k - 1) // 3, "loss": 2.0 / k} for k in range(1, 7)]
    records += [{"kind": "epoch", "step": 3 * e, "epoch": e - 1, "train_accuracy": 0.2 * e, "val_accuracy": 0.3 * e,
                 "val_loss": 1.0 / e} for e in (1, 2)]
    records.insert(4, {"kind": "extend", "step": 3, "epochs": 2, "from_epochs": 1})
    figure = curves_figure(records, 0.11, "tiny-listops / lif-s4d: run")
    assert figure._suptitle.get_text() == "tiny-listops / lif-s4d: run"
    steps, losses, accuracy = figure.axes
    assert [line.get_label() for line in steps.lines] == ["raw", "smoothed (EMA 0.9)"]
    assert list(losses.lines[1].get_ydata()) == [1.0, 0.5] and list(losses.lines[0].get_xdata()) == [1, 2]
    assert list(accuracy.lines[1].get_ydata()) == [0.3, 0.6] and accuracy.lines[2].get_ydata()[0] == 0.11
    assert accuracy.get_xlabel() == "epoch"
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_the_run_plot_names_task_model_and_run(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "2")) == 0
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run / "results.json").read_text())["checkpoint_step"] == 2
