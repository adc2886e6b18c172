"""sCIFAR and LRA Image read from CIFAR-10's python release (`cifar-10-batches-py/`).

The release folder holds `data_batch_1` .. `data_batch_5` (train, 10000 images each) and `test_batch`, each a
pickle of a dict with b"data", a (N, 3072) uint8 array (the 1024 red values, then green, then blue, each plane
row-major 32x32), and b"labels", N ints 0-9. data_dir is that folder or the folder holding it.

Unpickling can run arbitrary code, so the batches are read with a restricted unpickler that rebuilds only what
these files hold (dicts, lists, ints, bytes and numpy arrays, by numpy's own reconstruct functions) and refuses
any other global with a ValueError naming the file: a crafted file cannot run code. Still, read only files you
trust to be the release.

The tasks are those of spikessm.data.images: scifar gives (1024, 3) float32 sequences (features R, G, B); the LRA
Image task ("lra-image", task `image`) gives (1024, 1) grayscale sequences, the luma of PIL's convert("L"):
L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (torchvision's Grayscale, which s4 applies, is that convert). Values
are normalised as spikessm.data.images says for the conventions chosen (s4: per-channel mean/std). The validation
split is a seeded random val_fraction of train, in the release's order (data_batch_1 .. 5, as torchvision's
CIFAR10 reads them); test is test_batch. The decoded uint8 images are cached in <data_dir>/.spikessm_cache/ (the
cache holds no normalisation or split, so it serves both conventions).
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .base import TaskData
from .cache import cache_path, read_cache, write_cache
from .conventions import DEFAULT_CONVENTIONS
from .images import PixelSequences, s4_normalisation, split_train_val

RELEASE_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SIDE = 32
N_PIXELS = SIDE * SIDE
N_CLASSES = 10
_CACHE_VERSION = 1  # bump when the cached content changes meaning
_GRAY_CHUNK = 4096
HOW_TO_GET = ("download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, extract it and pass the "
              f"folder holding {RELEASE_FOLDER}/")


def _numpy_reconstructors() -> dict[str, object]:
    """The functions numpy's pickles call to rebuild arrays, taken from numpy's own reduce output (so no private
    numpy name is imported): the classic `_reconstruct` and, for protocol 5 pickles, `_frombuffer`."""
    sample = np.zeros(1, dtype=np.uint8)
    return {"_reconstruct": sample.__reduce__()[0], "_frombuffer": sample.__reduce_ex__(5)[0]}


_RECONSTRUCTORS = _numpy_reconstructors()


def latin1_encode(text: str, encoding: str) -> bytes:
    """What Python 3 protocol-2 pickles call (as _codecs.encode) to rebuild bytes, limited to latin-1, the only
    codec they name: other codecs (zlib, base64, ...) have no business in a batch."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing to encode with the codec {encoding!r}")
    return text.encode("latin-1")

# (module, name) a CIFAR batch may reference -> the object it gets. The release (Python 2, numpy 1.x) names
# numpy.core.multiarray; numpy 2 writes numpy._core; Python 3 protocol-2 pickles rebuild bytes by _codecs.encode.
ALLOWED_GLOBALS = {
    ("_codecs", "encode"): latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCTORS["_reconstruct"],
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCTORS["_reconstruct"],
    ("numpy.core.numeric", "_frombuffer"): _RECONSTRUCTORS["_frombuffer"],
    ("numpy._core.numeric", "_frombuffer"): _RECONSTRUCTORS["_frombuffer"],
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only ALLOWED_GLOBALS; any other global raises pickle.UnpicklingError."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}") from None


def restricted_load(data: bytes):
    """Unpickles data (Python 2 strings as bytes, as the CIFAR release needs) with RestrictedUnpickler."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (data (N, 3072) uint8, labels (N,) int64), checked; ValueError naming the file."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        batch = restricted_load(raw)
    except Exception as error:  # any failure to unpickle means the file is not a batch (or was refused)
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({type(error).__name__}: {error})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: holds a {type(batch).__name__}, expected a dict with b'data' and b'labels'")
    # The release's keys are bytes (Python 2 strings); a batch re-pickled by Python 3 may have str keys.
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path}: no {'data' if data is None else 'labels'} entry (keys: {sorted(map(str, batch))})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * N_PIXELS:
        described = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: data is {described}, expected a (N, {3 * N_PIXELS}) uint8 array")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: labels are not a list of integers") from None
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    if len(data) == 0:
        raise ValueError(f"{path}: no images")
    bad = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if len(bad):
        raise ValueError(f"{path}: label {labels[bad[0]]} at index {bad[0]} is not in 0..{N_CLASSES - 1}")
    return data, labels


def find_cifar_batches(data_dir: str | os.PathLike) -> dict[str, Path]:
    """{batch name: file} in data_dir/cifar-10-batches-py or data_dir itself; FileNotFoundError otherwise."""
    data_dir = Path(data_dir)
    names = TRAIN_BATCHES + (TEST_BATCH,)
    for folder in (data_dir / RELEASE_FOLDER, data_dir):
        if all((folder / name).is_file() for name in names):
            return {name: folder / name for name in names}
    present = data_dir / RELEASE_FOLDER if (data_dir / RELEASE_FOLDER).is_dir() else data_dir
    missing = [name for name in names if not (present / name).is_file()]
    raise FileNotFoundError(f"no CIFAR-10 python batches in {present} (missing {', '.join(missing)}): {HOW_TO_GET}")


def to_pixel_sequences(data: np.ndarray) -> np.ndarray:
    """(N, 3072) planar uint8 rows -> (N, 1024, 3) uint8 sequences, features R, G, B of each pixel in turn."""
    return np.ascontiguousarray(data.reshape(len(data), 3, N_PIXELS).transpose(0, 2, 1))


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """(N, ..., 3) uint8 RGB -> (N, ...) uint8 luma, bit-identical to PIL's convert("L") (ITU-R 601-2, fixed
    point). Converts _GRAY_CHUNK images at a time: the 32-bit intermediates of all 60000 would take GBs."""
    out = np.empty(rgb.shape[:-1], dtype=np.uint8)
    for start in range(0, len(rgb), _GRAY_CHUNK):
        part = rgb[start : start + _GRAY_CHUNK].astype(np.uint32)
        out[start : start + _GRAY_CHUNK] = (part[..., 0] * 19595 + part[..., 1] * 38470 + part[..., 2] * 7471
                                            + 0x8000) >> 16
    return out


def load_cifar10_batches(
    data_dir: str | os.PathLike, *, grayscale: bool = False, val_fraction: float = 0.1, seed: int | None = None,
    conventions: str = DEFAULT_CONVENTIONS,
) -> TaskData:
    """scifar (grayscale=False) or LRA Image (grayscale=True) from the python release -> TaskData.

    TaskData(name "scifar"/"lra-image", max_length 1024, d_input 3 or 1, n_classes 10, val None if val_fraction
    is 0). seed None: the conventions' split seed (s4: 42). See the module docstring.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    name = "lra-image" if grayscale else "scifar"
    normalisation = s4_normalisation(name, conventions)
    data_dir = Path(data_dir)
    files = find_cifar_batches(data_dir)
    cache = cache_path(data_dir, "cifar10-batches", files, version=_CACHE_VERSION, grayscale=grayscale)
    content = read_cache(cache, "CIFAR-10")
    if content is None:
        batches = {name: read_cifar_batch(path) for name, path in files.items()}
        content = {}
        for split, names in (("train", TRAIN_BATCHES), ("test", (TEST_BATCH,))):
            data = np.concatenate([batches[name][0] for name in names])
            labels = np.concatenate([batches[name][1] for name in names])
            pixels = to_pixel_sequences(data)
            if grayscale:
                pixels = to_grayscale(pixels)[..., None]
            content[split] = {"pixels": torch.from_numpy(pixels), "labels": torch.from_numpy(labels)}
        write_cache(cache, content, "CIFAR-10")
    splits = {split: PixelSequences(c["pixels"], c["labels"], normalisation) for split, c in content.items()}
    train, val = split_train_val(splits["train"], val_fraction, seed, conventions)
    return TaskData(name=name, train=train, val=val, test=splits["test"],
                    n_classes=N_CLASSES, max_length=N_PIXELS, d_input=1 if grayscale else 3)
