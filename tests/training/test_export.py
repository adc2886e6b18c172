"""`spikessm export RUN OUT`: a run's best model as a Hugging Face style folder that from_pretrained reads back."""
import json

import pytest
import torch
from training_helpers import run_args

from spikessm.__main__ import main
from spikessm.models import SequenceClassifier


def test_export_a_run(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run)) == 0
    out = tmp_path / "shared"
    capsys.readouterr()
    assert main(["export", str(run), str(out)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["checkpoint"] == "best.pt"
    assert capsys.readouterr().out == (f"wrote {out / 'config.json'}, {out / 'model.safetensors'}, {out / 'README.md'} "
                                       f"({run / 'best.pt'}, step {results['checkpoint_step']})\n")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert f"test accuracy {results['test_accuracy']:.4f}" in (out / "README.md").read_text()
    from spikessm.training.checkpoint import load_model

    trained, _ = load_model(run / "best.pt", "cpu")
    shared = SequenceClassifier.from_pretrained(out)
    x = torch.randint(1, trained.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(trained(x), shared(x))
    with pytest.raises(SystemExit) as error:
        main(["export", str(run), str(out)])
    assert error.value.code == f"spikessm export: error: export: {out} already exists; choose a new folder"
    assert not list(tmp_path.glob(".*.tmp"))
