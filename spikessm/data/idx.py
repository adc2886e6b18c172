"""sMNIST and psMNIST read from the MNIST-family IDX release files (MNIST, Fashion-MNIST, KMNIST).

A data folder holds the four files of the release, each plain or gzip'd (`.gz`):

    train-images-idx3-ubyte   train-labels-idx1-ubyte   t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte

(also found in <data_dir>/raw/, torchvision's layout, and with a "." before "idx" as some mirrors spell them).
An IDX file is a big-endian header, then the raw values row-major: a 4-byte magic (two zero bytes, a type code,
the number of dimensions), one 4-byte size per dimension. The images are (N, 28, 28) uint8 (magic 0x00000803),
the labels (N,) uint8 0-9 (magic 0x00000801).

The tasks are those of spikessm.data.images: a (784, 1) float32 pixel sequence in [0, 1] per image, row-major
(smnist), or reordered by `bit_reversal_permutation(784)` (psmnist), under both conventions (s4 does not normalise
MNIST). The validation split is a seeded random val_fraction of train, in the files' order (as torchvision's MNIST
reads them), its seed and sizes by the conventions (s4: seed 42); test is the t10k files. The decoded images are
cached in <data_dir>/.spikessm_cache/ (no split or conventions in them: one cache serves both).
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import TaskData
from .cache import cache_path, read_cache, write_cache
from .conventions import DEFAULT_CONVENTIONS, check_conventions
from .images import PixelSequences, bit_reversal_permutation, split_train_val

# split -> (images file, labels file), without the ".gz" a release may add.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_TYPES = {0x08: np.dtype(np.uint8)}  # the only type the MNIST family uses
SIDE = 28
N_CLASSES = 10
GZIP_MAGIC = b"\x1f\x8b"
_CACHE_VERSION = 1  # bump when the cached content changes meaning
HOW_TO_GET = ("download the four files of MNIST (https://yann.lecun.com/exdb/mnist/ or a mirror), "
              "Fashion-MNIST or KMNIST and pass the folder holding them")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (plain or gzip'd, told by its first bytes) -> its array, checked against its header.

    ValueError naming the file for a bad magic number, an unsupported type, a broken gzip stream, or a size that
    does not match the header.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: broken gzip data ({error})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (magic number {raw[:4].hex()}, expected 0000<type><ndim>)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        raise ValueError(f"{path}: IDX type code 0x{type_code:02x} is not supported (MNIST files use 0x08, uint8)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for the header of {ndim} dimensions")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: {len(raw)} bytes, but its header ({ndim} dimensions {'x'.join(map(str, shape))}) needs "
            f"{expected}; the file is truncated or not an IDX file"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_one(folder: Path, name: str) -> Path | None:
    """name, name.gz, or the mirrors' spelling with "." before "idx" (plain or .gz) in folder."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def find_idx_files(data_dir: str | os.PathLike) -> dict[str, Path]:
    """{"train_images", "train_labels", "test_images", "test_labels": file} in data_dir or data_dir/raw.

    FileNotFoundError naming the missing files and both folders.
    """
    data_dir = Path(data_dir)
    names = {f"{split}_{kind}": name
             for split, pair in IDX_FILES.items() for kind, name in zip(("images", "labels"), pair)}
    for folder in (data_dir, data_dir / "raw"):
        found = {key: _find_one(folder, name) for key, name in names.items()}
        if all(found.values()):
            return found
        if folder == data_dir:
            missing = [f"{names[key]}[.gz]" for key, path in found.items() if path is None]
    raise FileNotFoundError(
        f"no MNIST-family IDX files in {data_dir} (missing {', '.join(missing)}) or in {data_dir / 'raw'}: "
        f"{HOW_TO_GET}"
    )


def read_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of one split, checked: shapes, counts, labels 0-9."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
        raise ValueError(f"{images_path}: images of shape {images.shape}, expected (N, {SIDE}, {SIDE})")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: labels of shape {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    if len(images) == 0:
        raise ValueError(f"{images_path}: no images")
    bad = np.flatnonzero(labels >= N_CLASSES)
    if len(bad):
        raise ValueError(f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is not in 0..{N_CLASSES - 1}")
    return images, labels.astype(np.int64)


def load_mnist_idx(
    data_dir: str | os.PathLike, *, permuted: bool = False, val_fraction: float = 0.1, seed: int | None = None,
    conventions: str = DEFAULT_CONVENTIONS,
) -> TaskData:
    """smnist (permuted=False) or psmnist (permuted=True) from IDX files -> TaskData (see the module docstring).

    TaskData(name "smnist"/"psmnist", max_length 784, d_input 1, n_classes 10, val None if val_fraction is 0).
    seed None: the conventions' split seed (s4: 42).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    check_conventions(conventions, "MNIST")
    data_dir = Path(data_dir)
    files = find_idx_files(data_dir)
    cache = cache_path(data_dir, "mnist-idx", files, version=_CACHE_VERSION)
    content = read_cache(cache, "MNIST IDX")
    if content is None:
        content = {}
        for split in IDX_FILES:
            images, labels = read_idx_split(files[f"{split}_images"], files[f"{split}_labels"])
            content[split] = {"pixels": torch.from_numpy(images.reshape(len(images), SIDE * SIDE).copy()),
                              "labels": torch.from_numpy(labels)}
        write_cache(cache, content, "MNIST IDX")
    order = bit_reversal_permutation(SIDE * SIDE) if permuted else slice(None)
    splits = {split: PixelSequences(c["pixels"][:, order].unsqueeze(-1).contiguous(), c["labels"])
              for split, c in content.items()}
    train, val = split_train_val(splits["train"], val_fraction, seed, conventions)
    return TaskData(name="psmnist" if permuted else "smnist", train=train, val=val, test=splits["test"],
                    n_classes=N_CLASSES, max_length=SIDE * SIDE, d_input=1)
