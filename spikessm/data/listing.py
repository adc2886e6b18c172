"""The cache key of a release made of many small files (aclImdb's 50000 reviews, N-MNIST's 70000 .bin files).

spikessm.data.cache keys a cache by each file's resolved path, size and modification time; resolving 70000
paths takes longer than reading the cache. `files_digest` hashes the files' names (as the caller keys them),
sizes and modification times without resolving anything, for `cache_path(data_dir, name, {},
digest=files_digest(files), ...)`: no folder's own time enters the key, as writing the cache changes it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def files_digest(files: dict[str, Path]) -> str:
    """A hex digest of (key, size, modification time) of every file, in the dict's order."""
    digest = hashlib.sha256()
    for key, path in files.items():
        stat = os.stat(path)
        digest.update(f"{key}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
