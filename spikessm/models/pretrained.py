"""Trained models shared as the Hugging Face ecosystem shares them: a folder with `config.json` and
`model.safetensors`, local or on the Hub.

    model.save_pretrained("my-model")                           # config.json + model.safetensors
    model = SequenceClassifier.from_pretrained("my-model")      # or a Hub id: "user/lif-s4d-listops"
    model.push_to_hub("user/lif-s4d-listops")                   # where the Hub is reachable (huggingface_hub)

config.json holds "model_type" (MODEL_TYPE), "format_version" and every ModelConfig field; model.safetensors the
state dict, with the same config in its metadata, so that a weights file that does not belong to its config.json
is caught. Loading reads JSON and safetensors only: nothing in the files can run code. A missing, wrong,
truncated or tampered file raises PretrainedError naming the file and the problem.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .. import atomic
from ..documents import read_document
from .config import ModelConfig

MODEL_TYPE = "spikessm-sequence-classifier"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METADATA_KEY = "spikessm_config"


class PretrainedError(ValueError):
    """A folder or file that is not a loadable spikessm model; the message names it and says why."""


def config_document(config: ModelConfig) -> dict:
    return {"model_type": MODEL_TYPE, "format_version": FORMAT_VERSION, **config.to_dict()}


def save_pretrained(model, directory: str | os.PathLike) -> Path:
    """Writes directory/config.json and directory/model.safetensors (each atomically; the folder is created, and
    other files in it are left alone); returns the folder."""
    from safetensors.torch import save as save_safetensors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    document = config_document(model.config)
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    # The weights first: if config.json then fails, the folder's old config.json no longer matches the new
    # weights' metadata, and loading says so instead of building a wrong model.
    atomic.write_bytes(directory / WEIGHTS_NAME, save_safetensors(tensors, metadata={METADATA_KEY: text}), sync=True)
    atomic.write_bytes(directory / CONFIG_NAME, text.encode(), sync=True)
    return directory


def read_config(path: Path) -> ModelConfig:
    if not path.is_file():
        raise PretrainedError(f"{path} is missing: a spikessm model folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    document = read_document(path, kind_key="model_type", kind=MODEL_TYPE, version_key="format_version",
                             version=FORMAT_VERSION, what="a spikessm model's config", error=PretrainedError)
    fields = {k: v for k, v in document.items() if k not in ("model_type", "format_version")}
    try:
        return ModelConfig(**fields)
    except TypeError as error:
        raise PretrainedError(f"{path}: {error}".replace("ModelConfig.__init__() ", "")) from None
    except ValueError as error:
        raise PretrainedError(f"{path}: {error}") from None


def read_weights(path: Path, config: ModelConfig) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    if not path.is_file():
        raise PretrainedError(f"{path} is missing: a spikessm model folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    data = path.read_bytes()
    try:
        tensors = load_safetensors(data)
        header_length = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_length]).get("__metadata__") or {}
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError):
        raise PretrainedError(f"{path} is truncated or corrupt (not a complete safetensors file)") from None
    stored = metadata.get(METADATA_KEY)
    if stored is not None:
        try:
            stored = {k: v for k, v in json.loads(stored).items() if k not in ("model_type", "format_version")}
        except json.JSONDecodeError:
            raise PretrainedError(f"{path}: its metadata {METADATA_KEY!r} is not JSON") from None
        if stored != json.loads(json.dumps(config.to_dict())):
            differ = sorted(k for k in set(stored) | set(config.to_dict())
                            if stored.get(k) != json.loads(json.dumps(config.to_dict())).get(k))
            raise PretrainedError(f"{path} was saved with another config than {path.parent / CONFIG_NAME} "
                                  f"(they differ in {', '.join(differ)})")
    return tensors


def load_pretrained(cls, source: str | os.PathLike, *, device=None, dtype=None, revision: str | None = None):
    """The model in a local folder, or in a Hub repository `source` (downloaded with huggingface_hub; only its
    config.json and model.safetensors), in eval mode."""
    directory = Path(source).expanduser()
    if not directory.exists():
        directory = download(str(source), revision)
    if not directory.is_dir():
        raise PretrainedError(f"{directory} is not a folder (a spikessm model folder holds {CONFIG_NAME} and "
                              f"{WEIGHTS_NAME})")
    config = read_config(directory / CONFIG_NAME)
    tensors = read_weights(directory / WEIGHTS_NAME, config)
    model = cls(config, device=device, dtype=dtype)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise PretrainedError(f"{directory / WEIGHTS_NAME} does not hold this model's weights (missing: "
                              f"{', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'})")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise PretrainedError(f"{directory / WEIGHTS_NAME}: {name} has shape {tuple(tensor.shape)}, the model "
                                  f"needs {tuple(expected[name].shape)}")
    model.load_state_dict(tensors)
    return model.eval()


def download(repo_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(f"{repo_id} is not a local folder; loading from the Hugging Face Hub needs "
                          'huggingface_hub: pip install "spikessm[hub]"') from None
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except Exception as error:  # the Hub's errors (not found, offline, refused) differ by version
        raise PretrainedError(f"{repo_id} is not a local folder and could not be read from the Hugging Face Hub "
                              f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None


def push_to_hub(model, repo_id: str, *, private: bool | None = None, token: str | None = None,
                commit_message: str = "Upload a spikessm model") -> str:
    """Uploads config.json and model.safetensors to the Hub repository repo_id (created if needed); returns
    the repository's URL."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError('push_to_hub needs huggingface_hub: pip install "spikessm[hub]"') from None
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="spikessm-push-")
    try:
        save_pretrained(model, folder)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return str(url)
