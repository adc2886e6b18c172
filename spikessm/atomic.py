"""Atomic file writes: write a temporary file beside the target, then rename it over the target.

os.replace within one folder is atomic, so a reader (or a crash) never sees a half-written checkpoint, result
or data file: it sees the old file or the new one. A write that fails (a full disk, a read-only folder) removes
its temporary file and leaves the old target as it was. sync=True also flushes the data to the disk before the
rename, so that a machine crash cannot leave an empty file either; checkpoints and JSON records take it, bulk data
files (many small images) do not, as it costs milliseconds per file. A process killed mid-write can leave a
temporary file (".<name>.<pid>.tmp"); remove_temporaries clears those.
"""
from __future__ import annotations

import io
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

TEMPORARY_SUFFIX = ".tmp"


class WriteError(OSError):
    """A write that failed (a full disk, a file-size limit, a read-only folder): it names the file that was to be
    written, not its temporary, and the cause; the file is as it was before the write."""

    def __init__(self, path: str | os.PathLike, error: OSError):
        super().__init__(error.errno, error.strerror or str(error), str(path))

    def __str__(self) -> str:
        return f"could not write {self.filename} ({self.strerror})"


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary file a write of path goes through: hidden, beside path, named by this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


def write_atomically(path: str | os.PathLike, write: Callable, *, sync: bool = False) -> None:
    """Calls write(binary file object) on a temporary file beside path, then renames it to path. A failed write
    removes the temporary and raises WriteError (an OSError) naming path."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, WriteError):
            raise
        raise WriteError(path, error) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def new_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yields a staging folder (temporary_path(folder)) to fill; when the block ends without an error, the staging
    folder replaces `folder`, which must not exist or be an empty folder (the caller checks and words the refusal).
    The staging folder is removed in every case, so a folder is written whole or not at all."""
    folder = Path(folder)
    tmp = temporary_path(folder)
    try:
        yield tmp
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files that killed writers left in folder; returns their paths."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMPORARY_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_bytes(path: str | os.PathLike, data: bytes, *, sync: bool = False) -> None:
    write_atomically(path, lambda f: f.write(data), sync=sync)


def json_safe(obj):
    """obj with every non-finite float (NaN, +-inf) replaced by None, since JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    """obj as indented JSON; non-finite floats are written as null (see json_safe)."""
    write_bytes(path, (json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n").encode(),
                sync=True)


def save_torch(path: str | os.PathLike, obj) -> None:
    """torch.save(obj) to path, atomically. The archive is built in memory first: torch.save writing to a file
    that fails part-way raises a RuntimeError from its zip writer instead of the OSError saying why."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue(), sync=True)
