"""Atomic file writes: write a temporary file beside the target, then rename it over the target.

os.replace within one folder is atomic, so a reader (or a crash) never sees a half-written checkpoint, result
or data file: it sees the old file or the new one.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch


def write_atomically(path: str | os.PathLike, write: Callable) -> None:
    """Calls write(binary file object) on a temporary file beside path, then renames it to path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    write_atomically(path, lambda f: f.write(data))


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_torch(path: str | os.PathLike, obj) -> None:
    write_atomically(path, lambda f: torch.save(obj, f))
