"""Sequential-image tasks (sMNIST, psMNIST, sCIFAR, LRA Image) read through Hugging Face `datasets`.

An image becomes a sequence of its pixels in row-major order (row 0 left to right, then row 1, ...), one step per
pixel, the channels of a pixel as the features of its step:

    smnist     "ylecun/mnist" (image, label)     28x28 "L"   -> (784, 1)
    psmnist    the same, steps reordered by `bit_reversal_permutation(784)`
    scifar     "uoft-cs/cifar10" (img, label)    32x32 "RGB" -> (1024, 3), features R, G, B
    lra-image  the same images, grayscale        32x32 "L"   -> (1024, 1)   (LRA Image)

Grayscale is PIL's `convert("L")`, ITU-R 601-2 luma: L = R * 299/1000 + G * 587/1000 + B * 114/1000. A pixel
value p becomes x = p / 255 in float32, then, with the s4 conventions (spikessm.data.conventions), is normalised as
torchvision's Normalize does in s4's basic.py: (x - mean) / std per channel, in float32, with SCIFAR_MEAN and
SCIFAR_STD for scifar, LRA_IMAGE_MEAN and LRA_IMAGE_STD for lra-image; smnist and psmnist stay in [0, 1] under both
conventions. Pixels are stored as uint8 and become float32 only when an example is read (4x less memory than float
storage).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import TaskData
from .conventions import DEFAULT_CONVENTIONS, follows_s4, split_seed, split_sizes

# s4's Normalize constants (src/dataloaders/basic.py, CIFAR10: RGB, and grayscale for LRA Image).
SCIFAR_MEAN = (0.4914, 0.4822, 0.4465)
SCIFAR_STD = (0.247, 0.243, 0.261)
LRA_IMAGE_MEAN = (122.6 / 255.0,)
LRA_IMAGE_STD = (61.0 / 255.0,)


Normalisation = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std), one value per channel


class PixelSequences(Dataset):
    """Images as pixel sequences. pixels: (N, L, C) uint8; labels: (N,) int64; normalisation: None or (mean, std),
    C values each.

    Item i is (x, label): x the (L, C) float32 tensor pixels / 255, then (x - mean) / std when normalisation is
    given (float32 arithmetic in torchvision's order: ToTensor, then Normalize); label an int.
    """

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, normalisation: Normalisation | None = None):
        if pixels.dtype != torch.uint8 or pixels.dim() != 3:
            raise ValueError(f"pixels must be a (N, L, C) uint8 tensor, got {tuple(pixels.shape)} {pixels.dtype}")
        if len(labels) != len(pixels):
            raise ValueError(f"{len(pixels)} images but {len(labels)} labels")
        self.pixels = pixels
        self.labels = labels
        self.normalisation = normalisation
        self._mean = self._std = None
        if normalisation is not None:
            mean, std = (torch.tensor(values, dtype=torch.float32) for values in normalisation)
            if mean.shape != (pixels.shape[2],) or std.shape != mean.shape or not (std > 0).all():
                raise ValueError(f"normalisation needs {pixels.shape[2]} means and as many positive stds, got "
                                 f"{normalisation}")
            self._mean, self._std = mean, std

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.pixels[i].float() / 255.0
        if self._mean is not None:
            x = (x - self._mean) / self._std
        return x, int(self.labels[i])

    def subset(self, indices: torch.Tensor) -> PixelSequences:
        """The examples at `indices` (a copy, so the parent can be freed)."""
        return PixelSequences(self.pixels[indices], self.labels[indices], self.normalisation)


def split_indices(n: int, fractions: tuple[float, ...], seed: int, *, conventions: str) -> list[torch.Tensor]:
    """A seeded random partition of range(n) into len(fractions) parts of about fraction * n items each.

    torch.randperm(n) with torch.Generator().manual_seed(seed), cut in order into the parts, is what
    torch.utils.data.random_split (s4's splitter) does; the part sizes follow `conventions` (see
    spikessm.data.conventions.split_sizes), so every index is used once.
    """
    sizes = split_sizes(n, fractions, conventions)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(torch.split(order, sizes))


def split_train_val(train: PixelSequences, val_fraction: float, seed: int | None,
                    conventions: str) -> tuple[PixelSequences, PixelSequences | None]:
    """(train, val): a seeded random val_fraction of train as val (seed None: the conventions' seed), or (train,
    None) when val_fraction is 0."""
    if val_fraction == 0:
        return train, None
    train_ids, val_ids = split_indices(len(train), (1.0 - val_fraction, val_fraction),
                                       split_seed(conventions, seed), conventions=conventions)
    return train.subset(train_ids), train.subset(val_ids)


def s4_normalisation(name: str, conventions: str) -> Normalisation | None:
    """The (mean, std) that image task `name` is normalised with under `conventions` (None: pixels / 255 only)."""
    if not follows_s4(conventions, name):
        return None
    return {"scifar": (SCIFAR_MEAN, SCIFAR_STD), "lra-image": (LRA_IMAGE_MEAN, LRA_IMAGE_STD)}.get(name)


def bit_reversal_permutation(n: int) -> torch.Tensor:
    """The psMNIST order of n steps: indices 0 .. 2^b - 1 (2^b >= n) with their b bits reversed, those >= n dropped.

    Returns a (n,) int64 permutation of 0 .. n-1; for n = 784 (b = 10) it starts 0, 512, 256, 768, 128, ...
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    bits = max(1, (n - 1).bit_length())
    reversed_ids = [int(format(i, f"0{bits}b")[::-1], 2) for i in range(1 << bits)]
    return torch.tensor([i for i in reversed_ids if i < n], dtype=torch.int64)


@dataclass(frozen=True)
class ImageTask:
    """Where a sequential-image task's images come from and how they become sequences."""

    hub_id: str
    image_column: str
    pil_mode: str  # "L" -> 1 feature per step, "RGB" -> 3
    side: int  # images are side x side pixels
    permuted: bool = False
    n_classes: int = 10


IMAGE_TASKS = {
    "smnist": ImageTask("ylecun/mnist", "image", "L", 28),
    "psmnist": ImageTask("ylecun/mnist", "image", "L", 28, permuted=True),
    "scifar": ImageTask("uoft-cs/cifar10", "img", "RGB", 32),
    "lra-image": ImageTask("uoft-cs/cifar10", "img", "L", 32),
}
LABEL_COLUMN = "label"


def load_image_task(
    name: str, source: str | os.PathLike | None = None, *, cache_dir: str | None = None, val_fraction: float = 0.1,
    seed: int | None = None, conventions: str = DEFAULT_CONVENTIONS,
) -> TaskData:
    """Loads one of IMAGE_TASKS as (L, C) pixel sequences (see the module docstring).

    source: a Hub dataset id (default: the task's, e.g. "ylecun/mnist"), or a local directory written by
    `DatasetDict.save_to_disk` with "train" and "test" splits. A path-like source (a Path, absolute, or starting
    with "." or "~") must exist; other strings that are not existing directories are Hub ids. cache_dir: the
    `datasets` download cache. The validation split is a seeded random val_fraction of train (None if 0; seed
    None: the conventions' seed, s4's 42); test is the dataset's test split. conventions (spikessm.data.conventions)
    choose the normalisation and the split's seed and sizes.
    """
    if name not in IMAGE_TASKS:
        raise ValueError(f"unknown image task {name!r}; known: {', '.join(IMAGE_TASKS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    normalisation = s4_normalisation(name, conventions)
    task = IMAGE_TASKS[name]
    splits = _open_dataset(task, source, cache_dir)
    order = bit_reversal_permutation(task.side * task.side) if task.permuted else slice(None)
    train, test = (_to_pixel_sequences(splits[split], task, split, order, normalisation) for split in ("train", "test"))
    train, val = split_train_val(train, val_fraction, seed, conventions)
    return TaskData(
        name=name, train=train, val=val, test=test, n_classes=task.n_classes, max_length=task.side * task.side,
        d_input=len(task.pil_mode),
    )


def _open_dataset(task: ImageTask, source: str | os.PathLike | None, cache_dir: str | None):
    """The DatasetDict of `source` (see load_image_task), checked to have train and test splits."""
    try:
        import datasets  # optional dependency: only the image tasks need it
    except ImportError:
        raise ImportError('the image tasks read Hugging Face datasets, which needs the `datasets` package: '
                          'pip install "spikessm[data]"') from None

    source = task.hub_id if source is None else source
    looks_like_path = isinstance(source, os.PathLike) or str(source).startswith(("/", ".", "~"))
    local = Path(source).expanduser()
    if local.exists():
        splits = datasets.load_from_disk(str(local))
    elif looks_like_path:
        raise FileNotFoundError(
            f"{local}: no such dataset directory; pass a directory written by DatasetDict.save_to_disk, or the Hub "
            f"id {task.hub_id!r} to download (needs internet)"
        )
    else:
        splits = datasets.load_dataset(str(source), cache_dir=cache_dir)
    if not isinstance(splits, datasets.DatasetDict) or not {"train", "test"} <= set(splits):
        present = list(splits) if isinstance(splits, datasets.DatasetDict) else "a single Dataset"
        raise ValueError(f"{source}: expected a DatasetDict with splits 'train' and 'test', got {present}")
    return splits


def _to_pixel_sequences(split, task: ImageTask, split_name: str, order: torch.Tensor | slice,
                        normalisation: Normalisation | None) -> PixelSequences:
    """A `datasets` split with PIL images -> PixelSequences of (side * side, channels) uint8 sequences, their steps
    in `order`."""
    for column in (task.image_column, LABEL_COLUMN):
        if column not in split.column_names:
            raise ValueError(
                f"{split_name} split: no column {column!r}; columns present: {', '.join(split.column_names)}"
            )
    channels = len(task.pil_mode)
    images = split[task.image_column]
    pixels = np.empty((len(images), task.side * task.side, channels), dtype=np.uint8)
    for i, image in enumerate(images):
        if image.size != (task.side, task.side):
            raise ValueError(
                f"{split_name} split, example {i}: image is {image.size[0]}x{image.size[1]}, "
                f"expected {task.side}x{task.side}"
            )
        pixels[i] = np.asarray(image.convert(task.pil_mode)).reshape(task.side * task.side, channels)
    labels = torch.tensor(list(split[LABEL_COLUMN]), dtype=torch.int64)
    bad = ((labels < 0) | (labels >= task.n_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{split_name} split, example {i}: label {int(labels[i])} not in 0..{task.n_classes - 1}")
    return PixelSequences(torch.from_numpy(pixels)[:, order].contiguous(), labels, normalisation)
