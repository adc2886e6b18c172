"""Sequential-image tasks (sMNIST, psMNIST, sCIFAR, LRA Image) read through Hugging Face `datasets`.

An image becomes a sequence of its pixels in row-major order (row 0 left to right, then row 1, ...), one step per
pixel, the channels of a pixel as the features of its step:

    smnist     "ylecun/mnist" (image, label)     28x28 "L"   -> (784, 1)
    psmnist    the same, steps reordered by `bit_reversal_permutation(784)`
    scifar     "uoft-cs/cifar10" (img, label)    32x32 "RGB" -> (1024, 3), features R, G, B
    lra-image  the same images, grayscale        32x32 "L"   -> (1024, 1)   (LRA Image)

Grayscale is PIL's `convert("L")`, ITU-R 601-2 luma: L = R * 299/1000 + G * 587/1000 + B * 114/1000. Pixel values
are scaled to [0, 1] (value / 255) and not normalised further. Pixels are stored as uint8 and become float32 only
when an example is read (4x less memory than float storage).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import TaskData


class PixelSequences(Dataset):
    """Images as pixel sequences. pixels: (N, L, C) uint8; labels: (N,) int64.

    Item i is (x, label): x a (L, C) float32 tensor in [0, 1], label an int.
    """

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor):
        if pixels.dtype != torch.uint8 or pixels.dim() != 3:
            raise ValueError(f"pixels must be a (N, L, C) uint8 tensor, got {tuple(pixels.shape)} {pixels.dtype}")
        if len(labels) != len(pixels):
            raise ValueError(f"{len(pixels)} images but {len(labels)} labels")
        self.pixels = pixels
        self.labels = labels

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.pixels[i].float() / 255.0, int(self.labels[i])

    def subset(self, indices: torch.Tensor) -> PixelSequences:
        """The examples at `indices` (a copy, so the parent can be freed)."""
        return PixelSequences(self.pixels[indices], self.labels[indices])


def split_indices(n: int, fractions: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    """A seeded random partition of range(n) into len(fractions) parts of about fraction * n items each.

    Part sizes are round(fraction * n) except the last, which takes the rest, so every index is used once.
    """
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [round(f * n) for f in fractions[:-1]]
    sizes.append(n - sum(sizes))
    if sizes[-1] < 0:  # rounding up several parts can overshoot n
        raise ValueError(f"split fractions {fractions} do not partition {n} examples")
    return list(torch.split(order, sizes))


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
    seed: int = 0,
) -> TaskData:
    """Loads one of IMAGE_TASKS as (L, C) pixel sequences (see the module docstring).

    source: a Hub dataset id (default: the task's, e.g. "ylecun/mnist"), or a local directory written by
    `DatasetDict.save_to_disk` with "train" and "test" splits. A path-like source (a Path, absolute, or starting
    with "." or "~") must exist; other strings that are not existing directories are Hub ids. cache_dir: the
    `datasets` download cache. The validation split is a seeded random val_fraction of train (None if 0); test is
    the dataset's test split.
    """
    if name not in IMAGE_TASKS:
        raise ValueError(f"unknown image task {name!r}; known: {', '.join(IMAGE_TASKS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    task = IMAGE_TASKS[name]
    splits = _open_dataset(task, source, cache_dir)
    train = _to_pixel_sequences(splits["train"], task, "train")
    test = _to_pixel_sequences(splits["test"], task, "test")
    if task.permuted:
        order = bit_reversal_permutation(task.side * task.side)
        train = PixelSequences(train.pixels[:, order], train.labels)
        test = PixelSequences(test.pixels[:, order], test.labels)
    val = None
    if val_fraction > 0:
        train_ids, val_ids = split_indices(len(train), (1.0 - val_fraction, val_fraction), seed)
        train, val = train.subset(train_ids), train.subset(val_ids)
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


def _to_pixel_sequences(split, task: ImageTask, split_name: str) -> PixelSequences:
    """A `datasets` split with PIL images -> PixelSequences of (side * side, channels) uint8 sequences."""
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
    return PixelSequences(torch.from_numpy(pixels), labels)
