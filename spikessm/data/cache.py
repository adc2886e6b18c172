"""The processed cache of file-based loaders: tokenised splits saved once, so later loads skip the parsing.

A cache file lives in <data_dir>/.spikessm_cache/ and is named by a hash of the source files (path, size,
modification time) and the loader's settings, so any change to either gives another name (a fresh parse).
Cache files hold only tensors, ints and strings and are read with torch.load(weights_only=True). A read-only
data folder, or an unreadable cache file, costs only the speed-up (with a warning).
"""
from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import torch

from ..atomic import save_torch

CACHE_SUBDIR = ".spikessm_cache"


def cache_path(data_dir: Path, name: str, files: dict[str, Path], **settings) -> Path:
    """data_dir/.spikessm_cache/<name>-<hash of the files and settings>.pt"""
    key = [f"{k}={v}" for k, v in sorted(settings.items())]
    for split, path in files.items():
        stat = path.stat()
        key.append(f"{split}={path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    return data_dir / CACHE_SUBDIR / f"{name}-{digest}.pt"


def read_cache(path: Path, what: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        warnings.warn(f"{what}: ignoring the unreadable cache {path} ({error})", stacklevel=3)
        return None


def write_cache(path: Path, content: dict, what: str) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        save_torch(path, content)
    except OSError as error:
        warnings.warn(f"{what}: could not write the cache {path} ({error.strerror or error}); the data are read "
                      "from their files each time", stacklevel=3)
