"""Checkpoints that hold only tensors and plain values, read with torch.load(weights_only=True).

A checkpoint is a dict: FORMAT_KEY -> FORMAT, "version", "model" (state_dict), "model_config" (ModelConfig
fields), "config" (the run's settings, JSON-able), and for resuming "optimizer", "scheduler", "rng" (every RNG
state as tensors and numbers, see rng_state) and "position" (where training stands, see loop.Position).
Reading never runs code: a file whose unpickling would need a Python object (a class, a function) is refused,
as are empty, truncated, corrupt and foreign files, each with a CheckpointError naming the file.
"""
from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

FORMAT_KEY = "format"
FORMAT = "spikessm-checkpoint"
VERSION = 1
REQUIRED = ("model", "model_config", "config")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(ValueError):
    """A file that is not a readable spikessm checkpoint; the message names it and says why."""


def rng_state() -> dict:
    """The Python, NumPy, torch (and CUDA) RNG states, as tensors and plain numbers."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": torch.tensor(words, dtype=torch.int64), "python_version": version, "python_gauss": gauss,
        "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_name": name, "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss), "numpy_gauss": float(cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict) -> None:
    random.setstate((state["python_version"], tuple(int(w) for w in state["python"].tolist()),
                     state["python_gauss"]))
    np.random.set_state((state["numpy_name"], state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def checkpoint_content(**parts) -> dict:
    return {FORMAT_KEY: FORMAT, "version": VERSION, **parts}


def read_checkpoint(path: str | Path, map_location=None) -> dict:
    """The checkpoint at path, loaded with weights_only=True and checked to be a spikessm checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({error.strerror or error})") from None
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint, or its write was cut short")
    if head != _ZIP_MAGIC:
        raise CheckpointError(f"{path} is not a spikessm checkpoint (not a PyTorch zip archive)")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        unsupported = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(error))
        if unsupported:
            raise CheckpointError(
                f"{path} holds a Python object ({unsupported.group(1)}) that loading would have to run as code; "
                "spikessm loads only tensors and plain values and refuses it") from None
        raise CheckpointError(f"{path} is corrupt (it does not unpickle as tensors and plain values)") from None
    except (RuntimeError, EOFError, OSError, ValueError, MemoryError, IndexError, KeyError):
        # torch reports a damaged archive in many ways (bad central directory, EINVAL, EOF); the cause is one
        raise CheckpointError(f"{path} is truncated or corrupt (not a complete PyTorch archive)") from None
    if not isinstance(content, dict) or content.get(FORMAT_KEY) != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a spikessm checkpoint (no "
                              f"{FORMAT_KEY!r}: {FORMAT!r} entry)")
    if not isinstance(content.get("version"), int) or content["version"] > VERSION:
        raise CheckpointError(f"{path} was written by a newer spikessm (checkpoint version {content.get('version')})")
    missing = [key for key in REQUIRED if key not in content]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a complete spikessm checkpoint")
    return content


def load_model(path: str | Path, device: torch.device):
    """The SequenceClassifier stored in a checkpoint, in eval mode, and the checkpoint (its "config" is the run's
    settings, its "position" where training stood)."""
    from ..models import ModelConfig, SequenceClassifier

    checkpoint = read_checkpoint(path, map_location=device)
    try:
        model = SequenceClassifier(ModelConfig(**checkpoint["model_config"]), device=device)
        model.load_state_dict(checkpoint["model"])
    except (TypeError, ValueError, RuntimeError) as error:
        first = str(error).split("\n")[0]
        raise CheckpointError(f"{path}: its model does not load ({first})") from None
    return model.eval(), checkpoint
