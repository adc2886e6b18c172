"""`spikessm quantize RUN` and `spikessm eval RUN --integer`: on a tiny trained lif-s4d run (and a drf run)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from spikessm.__main__ import main

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "training"))
from training_helpers import run_args  # noqa: E402


@pytest.fixture(scope="module")
def quantized_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("q") / "run"
    assert main(run_args(tiny_data, run, "--set", "dropout=0.0", "--epochs", "1")) == 0
    assert main(["quantize", str(run), "--qat-epochs", "1", "--calib-batches", "2"]) == 0
    return run


def test_quantize_writes_report_and_export(quantized_run, capsys):
    out = quantized_run / "quantized"
    report = json.loads((out / "report.json").read_text())
    for key in ("float_accuracy", "ptq_accuracy", "qat_accuracy", "simulator_accuracy"):
        assert 0 <= report[key] <= 1
    assert report["simulator_accuracy"] == report["qat_accuracy"]  # the simulator is the fake-quant model
    assert report["config"]["weight_bits"] == 8 and report["test_examples"] == 24
    for key in ("weight_bytes", "state_bytes", "energy_pj_per_example"):
        assert report[key] > 0, key
    assert report["ops_per_example"]["acc"] and all(n > 0 for row in report["ops_per_example"].values()
                                                    for n in row.values())
    assert 0 < report["cost_examples"] <= 24 and 1 <= report["cost_batches"] <= 4
    result = subprocess.run([sys.executable, str(out / "run.py"), str(out / "sample_inputs.npy"),
                             str(out.parent / "o.npy")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(out.parent / "o.npy"), np.load(out / "sample_logits.npy"))


def test_eval_integer_scores_the_test_split(quantized_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(quantized_run), "--integer"]) == 0
    line = capsys.readouterr().out.strip()
    accuracy = json.loads((quantized_run / "quantized" / "report.json").read_text())["simulator_accuracy"]
    assert line.startswith(f"integer test accuracy {accuracy:.4f} on 24 examples")


def test_quantize_refusals(quantized_run, tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"spikessm quantize: error: quantize: .*quantized already exists"):
        main(["quantize", str(quantized_run)])
    with pytest.raises(SystemExit, match="spikessm quantize: error: QuantConfig: weight_bits must be an integer in "
                                         r"\[2, 16\], got 1"):
        main(["quantize", str(quantized_run), "--weight-bits", "1", "--out", str(tmp_path / "x")])
    bidirectional_run = tmp_path / "bi"
    assert main(run_args(tiny_data, bidirectional_run, "--epochs", "1", "--set", "bidirectional=true")) == 0
    with pytest.raises(SystemExit, match="spikessm quantize: error: spikessm.quant: blocks.0.ssm: S4D is "
                                         "bidirectional"):
        main(["quantize", str(bidirectional_run)])
    assert not (bidirectional_run / "quantized").exists()


def test_quantize_an_rf_run(tiny_data, tmp_path):
    """drf (RF neurons as the SSM, 4 branches, adaptive threshold) end to end: PTQ, the cost report, the export."""
    run = tmp_path / "drf"
    assert main(run_args(tiny_data, run, "--model", "drf", "--epochs", "1", "--set", "dropout=0.0")) == 0
    assert main(["quantize", str(run), "--calib-batches", "2"]) == 0
    out = run / "quantized"
    report = json.loads((out / "report.json").read_text())
    assert report["simulator_accuracy"] == report["ptq_accuracy"] and report["state_bytes"] > 0
    graph = json.loads((out / "graph.json").read_text())
    assert graph["blocks"][0]["ssm"]["type"] == "rf" and graph["blocks"][0]["ssm"]["branches"] == 4
    result = subprocess.run([sys.executable, str(out / "run.py"), str(out / "sample_inputs.npy"),
                             str(tmp_path / "o.npy")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(tmp_path / "o.npy"), np.load(out / "sample_logits.npy"))
