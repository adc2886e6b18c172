"""`spikessm quantize RUN --sweep`: PTQ accuracy against weight and state widths, on a tiny trained lif-s4d run."""
import json
import sys
from pathlib import Path

import pytest

from spikessm.__main__ import main

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from training_helpers import run_args  # noqa: E402


@pytest.fixture(scope="module")
def swept_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("sweep") / "run"
    assert main(run_args(tiny_data, run, "--set", "dropout=0.0", "--epochs", "1")) == 0
    assert main(["quantize", str(run), "--calib-batches", "2"]) == 0
    assert main(["quantize", str(run), "--sweep", "--calib-batches", "2", "--sweep-weight-bits", "8,2",
                 "--sweep-state-bits", "24,8"]) == 0
    return run


def test_sweep_writes_points_and_plot(swept_run, capsys):
    out = swept_run / "quant_sweep"
    result = json.loads((out / "sweep.json").read_text())
    report = json.loads((swept_run / "quantized" / "report.json").read_text())
    assert result["method"] == "PTQ" and result["test_examples"] == 24 and result["calib_batches"] == 2
    assert result["limit_test"] is None
    assert result["base"] == {"weight_bits": 8, "state_bits": 24, "membrane_bits": 24, "coef_bits": 16}
    assert result["float_accuracy"] == report["float_accuracy"]
    assert 0 <= result["majority_accuracy"] <= 1
    weights, states = result["sweeps"]["weight_bits"], result["sweeps"]["state_bits"]
    assert [(p["weight_bits"], p["state_bits"]) for p in weights] == [(2, 24), (8, 24)]  # sorted
    assert [(p["weight_bits"], p["state_bits"]) for p in states] == [(8, 8), (8, 24)]
    for p in weights + states:
        assert 0 <= p["accuracy"] <= 1 and p["membrane_bits"] == p["state_bits"] and p["coef_bits"] == 16
        assert p["saturations"] == sum(p["saturations_by_point"].values())
    # the given widths are plain quantize's PTQ, whose integers the simulator reproduces
    assert weights[1]["accuracy"] == states[1]["accuracy"] == report["ptq_accuracy"]
    assert weights[1]["saturations"] == sum(report["saturations"].values())
    assert (out / "quant_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["quant_sweep.png", "sweep.json"]


@pytest.mark.parametrize("extra, message", [
    (["--sweep-weight-bits", "2,x"], "--sweep-weight-bits: expected comma-separated integers such as 2,4,8, got "
                                     "'2,x'"),
    (["--sweep-state-bits", "8,,16"], "--sweep-state-bits: expected comma-separated integers such as 2,4,8, got "
                                      "'8,,16'"),
    (["--sweep-weight-bits", "4,2,4"], "--sweep-weight-bits: 4 is given twice in '4,2,4'"),
    (["--sweep-weight-bits", "1,8"], "--sweep-weight-bits: QuantConfig: weight_bits must be an integer in [2, 16], "
                                     "got 1"),
    (["--sweep-state-bits", "8,40"], "--sweep-state-bits: QuantConfig: state_bits must be an integer in [8, 32], "
                                     "got 40"),
    (["--limit-test", "25"], "--limit-test must be an integer in [1, 24] (the test examples), got 25"),
    (["--limit-test", "0"], "--limit-test must be an integer in [1, 24] (the test examples), got 0"),
    (["--qat-epochs", "1"], "--sweep is PTQ only: leave out --qat-epochs (quantize without --sweep runs QAT)"),
])
def test_sweep_refuses_bad_grids(swept_run, tmp_path, extra, message):
    with pytest.raises(SystemExit) as stop:
        main(["quantize", str(swept_run), "--sweep", "--out", str(tmp_path / "s"), *extra])
    assert stop.value.code == f"spikessm quantize: error: {message}"
    assert not (tmp_path / "s").exists()


def test_sweep_refuses_an_existing_folder_and_grids_without_sweep(swept_run, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["quantize", str(swept_run), "--sweep"])
    assert stop.value.code == (f"spikessm quantize: error: quantize --sweep: {swept_run / 'quant_sweep'} already "
                               "exists; choose another --out or remove it")
    with pytest.raises(SystemExit) as stop:
        main(["quantize", str(swept_run), "--sweep-state-bits", "8,16", "--out", str(tmp_path / "q")])
    assert stop.value.code == ("spikessm quantize: error: --sweep-weight-bits, --sweep-state-bits and --limit-test "
                               "are options of --sweep; add --sweep")
    assert not (tmp_path / "q").exists()


def test_sweep_limit_test_scores_a_subset(swept_run, tmp_path):
    out = tmp_path / "limited"
    assert main(["quantize", str(swept_run), "--sweep", "--calib-batches", "2", "--sweep-weight-bits", "8",
                 "--sweep-state-bits", "24", "--limit-test", "10", "--out", str(out)]) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert result["test_examples"] == 10 and result["limit_test"] == 10
    (point,) = result["sweeps"]["weight_bits"]
    assert result["sweeps"]["state_bits"] == [point]
    for accuracy in (point["accuracy"], result["float_accuracy"]):  # both scored on the same 10 examples
        assert 0 <= accuracy <= 1 and abs(accuracy * 10 - round(accuracy * 10)) < 1e-9
