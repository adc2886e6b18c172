"""Models shared as config.json + model.safetensors: the round trip, every bad file refused with one line naming
it, and the Hub paths (faked: no network here). `spikessm export` is in tests/training/test_export.py."""
import json
import sys

import pytest
import torch

from spikessm.models import SequenceClassifier, build_model
from spikessm.models.pretrained import PretrainedError

SMALL = dict(n_classes=4, vocab_size=12, d_model=8, n_layers=2, d_state=4, norm="layer")


def model(preset="lif-s4d", **overrides):
    torch.manual_seed(0)
    m = build_model(preset, **{**SMALL, **overrides})
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))  # away from the initialisation
    return m.eval()


TOKENS = torch.randint(1, 12, (3, 17), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("preset", ["lif-s4d", "gsu-s4d", "lif-s5"])
def test_round_trip(preset, tmp_path):
    original = model(preset)
    assert original.save_pretrained(tmp_path / "m") == tmp_path / "m"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "spikessm-sequence-classifier" and config["d_model"] == 8
    loaded = SequenceClassifier.from_pretrained(tmp_path / "m")
    assert not loaded.training and loaded.config == original.config
    for name, value in original.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    with torch.no_grad():
        assert torch.equal(original(TOKENS), loaded(TOKENS))
    double = SequenceClassifier.from_pretrained(str(tmp_path / "m"), dtype=torch.float64)
    assert double.decoder.weight.dtype == torch.float64


def test_bad_folders_and_files_name_the_file(tmp_path):
    good = tmp_path / "good"
    model().save_pretrained(good)
    other = tmp_path / "other"
    model(d_model=16).save_pretrained(other)
    config_text = (good / "config.json").read_text()
    weights = (good / "model.safetensors").read_bytes()

    def folder(name, config=config_text, weights_bytes=weights):
        path = tmp_path / name
        path.mkdir()
        if config is not None:
            (path / "config.json").write_text(config)
        if weights_bytes is not None:
            (path / "model.safetensors").write_bytes(weights_bytes)
        return path

    document = json.loads(config_text)
    cases = {
        "no-config": (folder("no-config", config=None), "{}/config.json is missing: a spikessm model folder holds "
                                                        "config.json and model.safetensors"),
        "no-weights": (folder("no-weights", weights_bytes=None), "{}/model.safetensors is missing: a spikessm model "
                                                                 "folder holds config.json and model.safetensors"),
        "bad-json": (folder("bad-json", config="{"), "{}/config.json cannot be read as JSON (Expecting property name "
                                                     "enclosed in double quotes: line 1 column 2 (char 1))"),
        "foreign": (folder("foreign", config=json.dumps({"model_type": "bert"})),
                    '{}/config.json is not a spikessm model\'s config (no "model_type": '
                    '"spikessm-sequence-classifier")'),
        "newer": (folder("newer", config=json.dumps({**document, "format_version": 9})),
                  "{}/config.json was written by a newer spikessm (format_version 9)"),
        "bad-value": (folder("bad-value", config=json.dumps({**document, "d_model": 0})),
                      "{}/config.json: ModelConfig: d_model must be a positive integer, got 0"),
        "unknown": (folder("unknown", config=json.dumps({**document, "widht": 3})),
                    "{}/config.json: got an unexpected keyword argument 'widht'"),
        "truncated": (folder("truncated", weights_bytes=weights[:len(weights) // 2]),
                      "{}/model.safetensors is truncated or corrupt (not a complete safetensors file)"),
        "swapped": (folder("swapped", weights_bytes=(other / "model.safetensors").read_bytes()),
                    "{}/model.safetensors was saved with another config than {}/config.json (they differ in d_model)"),
        "tampered": (folder("tampered", config=json.dumps({**document, "lif_threshold": 2.0})),
                     "{}/model.safetensors was saved with another config than {}/config.json (they differ in "
                     "lif_threshold)"),
    }
    for name, (path, message) in cases.items():
        with pytest.raises(PretrainedError) as error:
            SequenceClassifier.from_pretrained(path)
        assert str(error.value) == message.format(path, path), name
    from safetensors.torch import save as save_safetensors

    plain = folder("plain", weights_bytes=save_safetensors({"x": torch.zeros(2)}))
    with pytest.raises(PretrainedError, match=r"model.safetensors does not hold this model's weights \(missing: "):
        SequenceClassifier.from_pretrained(plain)
    (tmp_path / "file").write_text("")
    with pytest.raises(PretrainedError, match="is not a folder"):
        SequenceClassifier.from_pretrained(tmp_path / "file")


def test_hub_ids_download_only_the_two_files(tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    model().save_pretrained(tmp_path / "snapshot")
    asked = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        asked.append((repo_id, revision, allow_patterns))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    loaded = SequenceClassifier.from_pretrained("someone/lif-s4d", revision="v1")
    assert asked == [("someone/lif-s4d", "v1", ["config.json", "model.safetensors"])]
    assert loaded.config == model().config

    def offline(repo_id, **kwargs):
        raise OSError("no connection")

    monkeypatch.setattr(hub, "snapshot_download", offline)
    with pytest.raises(PretrainedError) as error:
        SequenceClassifier.from_pretrained("someone/missing")
    assert str(error.value) == ("someone/missing is not a local folder and could not be read from the Hugging Face "
                                "Hub (OSError: no connection)")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r'pip install "spikessm\[hub\]"'):
        SequenceClassifier.from_pretrained("someone/lif-s4d")


def test_push_to_hub_uploads_the_saved_folder(monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    uploads = []

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, commit_message):
            from pathlib import Path

            uploads.append((repo_id, sorted(p.name for p in Path(folder_path).iterdir()), commit_message))
            reloaded = SequenceClassifier.from_pretrained(folder_path)
            assert torch.equal(reloaded.decoder.weight, model().decoder.weight)

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    assert model().push_to_hub("someone/lif-s4d", token="t") == "https://huggingface.co/someone/lif-s4d"
    assert uploads == [("someone/lif-s4d", ["config.json", "model.safetensors"], "Upload a spikessm model")]
