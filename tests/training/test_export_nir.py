"""`spikessm export-nir RUN`: a run's best model's NIR graphs and report in one folder, or one clear error."""
import json
import sys

import pytest
from training_helpers import run_args

from spikessm.__main__ import main

nir = pytest.importorskip("nir", minversion="1.0.8")


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("nir") / "run"
    assert main(run_args(tiny_data, run, "--epochs", "1", "--set", "lif_reset=zero")) == 0
    return run


def test_export_nir_writes_the_graphs_and_the_report(run, capsys):
    capsys.readouterr()
    assert main(["export-nir", str(run)]) == 0
    out = run / "nir"
    report = json.loads((out / "nir_report.json").read_text())
    step = json.loads((run / "results.json").read_text())["checkpoint_step"]
    assert sorted(p.name for p in out.iterdir()) == ["blocks.0.ssm.neurons.nir", "decoder.nir", "nir_report.json"]
    assert capsys.readouterr().out == (
        f"wrote {out / 'blocks.0.ssm.neurons.nir'}, {out / 'decoder.nir'}, {out / 'nir_report.json'} "
        f"({run / 'best.pt'}, step {step}); 2 of 9 layers written; not written (why: nir_report.json): encoder, "
        "blocks.0.norm, blocks.0.ssm, blocks.0.mixing, blocks.0.residual, final_norm, pooling\n")
    assert report["dt"] == 1e-4 and [g["layers"] for g in report["graphs"].values()] == [
        ["blocks.0.ssm.neurons"], ["decoder"]]
    assert type(nir.read(out / "blocks.0.ssm.neurons.nir").nodes["blocks_0_ssm_neurons"]) is nir.LIF
    with pytest.raises(SystemExit) as error:
        main(["export-nir", str(run)])
    assert error.value.code == f"spikessm export-nir: error: export-nir: {out} already exists; choose a new folder"
    assert not list(run.glob(".*.tmp"))


def test_export_nir_errors(run, tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as error:
        main(["export-nir", str(run), "--out", str(tmp_path / "a"), "--dt", "0"])
    assert error.value.code == "spikessm export-nir: error: to_nir: dt must be a positive finite number, got 0.0"
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(SystemExit) as error:
        main(["export-nir", str(run), "--out", str(tmp_path / "b")])
    assert error.value.code == ("spikessm export-nir: error: NIR export needs the nir package: "
                                "pip install spikessm[nir]")
