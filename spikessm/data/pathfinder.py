"""The LRA Pathfinder (32x32) and Path-X (128x128) tasks: are the two circle markers joined by one dashed path?

Layout of one difficulty folder (the LRA release, or `spikessm generate pathfinder --out DIR`):

    <data_dir>/pathfinder<res>/<difficulty>/imgs/<batch>/sample_<k>.png     8-bit grayscale, res x res
    <data_dir>/pathfinder<res>/<difficulty>/metadata/<batch>.npy            TEXT despite the extension

A metadata file has one line per image, space-separated columns (METADATA_COLUMNS): 0 the image folder relative
to the difficulty folder ("imgs/<batch>"), 1 the file name, 2 the image's index in its batch, 3 the label (1: the
markers lie on one path), 4-10 the generator settings (continuity, contour length, distractor length, paddle
length, paddle thickness, paddle margin, number of contrast levels). Only columns 0, 1 and 3 are read.

An example is (x, label): x the (res * res, 1) float32 pixel sequence, row-major, scaled to [0, 1] (under both
conventions: s4's configs/dataset/pathfinder.yaml sets center: False, so its runs skip the Normalize(0.5, 0.5)
that lra.py's PathFinder class would apply by default); label 0 or 1. Decoded images are cached in
<data_dir>/.spikessm_cache/, keyed by the content of the metadata files.

The s4 conventions split as lra.py's PathFinder does: the metadata rows in order, less S4_BLACKLIST (the release's
one empty image), then torch.utils.data.random_split with lengths (rest, int(val * n), int(test * n)) and seed 42.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..atomic import write_bytes
from .base import TaskData
from .cache import read_cache
from .conventions import DEFAULT_CONVENTIONS, follows_s4, split_seed
from .images import PixelSequences, split_indices

# Difficulty folder -> contour length (paddles per target path) of its images.
DIFFICULTIES = {"curv_baseline": 6, "curv_contour_length_9": 9, "curv_contour_length_14": 14}
METADATA_COLUMNS = (
    "folder", "file", "index", "label", "continuity", "contour_length", "distractor_length", "paddle_length",
    "paddle_thickness", "paddle_margin", "n_contrasts",
)
CACHE_FOLDER = ".spikessm_cache"
_CACHE_FORMAT = 2  # bump when the cache content changes meaning
# Images s4's PathFinderDataset leaves out before splitting (its `blacklist`), relative to data_dir.
S4_BLACKLIST = frozenset({"pathfinder32/curv_baseline/imgs/0/sample_172.png"})


def load_pathfinder(
    data_dir: str | os.PathLike, *, resolution: int = 32, difficulty: str = "curv_contour_length_14",
    split: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int | None = None,
    conventions: str = DEFAULT_CONVENTIONS,
) -> TaskData:
    """Loads one difficulty folder of pathfinder<resolution> (128: Path-X) as TaskData (see the module docstring).

    data_dir: the folder that contains pathfinder<resolution>/. The images of all metadata files are split at
    random (seeded; seed None: the conventions' seed, s4's 42) into train/val/test fractions `split`, with the
    sizes and exclusions of the conventions. Unreadable or empty images are skipped with a warning after the
    split, so that one bad file moves no other image to another split.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown Pathfinder difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    s4 = follows_s4(conventions, "Pathfinder")
    data_dir = Path(data_dir)
    folder = data_dir / f"pathfinder{resolution}" / difficulty
    metadata_files = _metadata_files(folder, resolution)
    pixels, labels, readable = _load_cached(data_dir, folder, metadata_files, resolution)
    everything = PixelSequences(pixels.unsqueeze(-1), labels)
    listed = torch.arange(len(everything))
    if s4 and any(path.startswith(f"pathfinder{resolution}/{difficulty}/") for path in S4_BLACKLIST):
        rows = [f"pathfinder{resolution}/{difficulty}/{path}"
                for f in metadata_files for path, _ in _parse_metadata(f, f.read_bytes())]
        listed = torch.tensor([i for i, path in enumerate(rows) if path not in S4_BLACKLIST], dtype=torch.int64)
    parts = split_indices(len(listed), tuple(split), split_seed(conventions, seed), conventions=conventions)
    train_ids, val_ids, test_ids = (ids[readable[ids]] for ids in (listed[part] for part in parts))
    return TaskData(
        name=f"pathfinder{resolution}", train=everything.subset(train_ids), val=everything.subset(val_ids),
        test=everything.subset(test_ids), n_classes=2, max_length=resolution * resolution, d_input=1,
    )


def _metadata_files(folder: Path, resolution: int) -> list[Path]:
    """The metadata files of a difficulty folder, in batch order (numeric names first, by number)."""
    metadata_dir = folder / "metadata"
    if not metadata_dir.is_dir():
        raise FileNotFoundError(
            f"{metadata_dir}: no Pathfinder data here. Generate it with `spikessm generate pathfinder --out DIR"
            f"{'' if resolution == 32 else f' --resolution {resolution}'}` and pass DIR, or download the LRA release "
            "(https://storage.googleapis.com/long-range-arena/lra_release.gz) and pass the folder that contains "
            f"pathfinder{resolution}/"
        )
    files = [f for f in metadata_dir.iterdir() if f.suffix == ".npy" and f.is_file()]
    if not files:
        raise FileNotFoundError(f"{metadata_dir}: no metadata files (<batch>.npy)")
    return sorted(files, key=lambda f: (not f.stem.isdigit(), int(f.stem) if f.stem.isdigit() else 0, f.name))


def _load_cached(
    data_dir: Path, folder: Path, metadata_files: list[Path], resolution: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pixels (N, res*res) uint8, labels (N,) int64, readable (N,) bool) of every image the metadata lists, from
    the cache if it matches the metadata, else decoded; an unreadable image has zero pixels and readable False."""
    contents = [f.read_bytes() for f in metadata_files]
    digest = hashlib.sha256(f"{_CACHE_FORMAT} {resolution}".encode())
    for f, content in zip(metadata_files, contents):
        digest.update(f"{f.name} {len(content)}\n".encode())
        digest.update(content)
    fingerprint = digest.hexdigest()
    cache_file = data_dir / CACHE_FOLDER / f"pathfinder{resolution}_{folder.name}.pt"
    cached = read_cache(cache_file, "Pathfinder")  # None when absent or unreadable (with a warning)
    if isinstance(cached, dict) and cached.get("fingerprint") == fingerprint:
        for path in cached["skipped"]:
            warnings.warn(f"{path}: skipped, the image could not be read", stacklevel=3)
        return cached["pixels"], cached["labels"], cached["readable"]
    pixels, labels, readable, skipped = _decode_all(folder, metadata_files, contents, resolution)
    buffer = io.BytesIO()
    torch.save({"fingerprint": fingerprint, "pixels": pixels, "labels": labels, "readable": readable,
                "skipped": skipped}, buffer)
    try:
        cache_file.parent.mkdir(exist_ok=True)
        write_bytes(cache_file, buffer.getvalue())
    except OSError as error:  # a read-only data folder still loads, only without a cache
        warnings.warn(f"{cache_file}: cannot write the Pathfinder cache ({error}); images will be decoded again",
                      stacklevel=3)
    return pixels, labels, readable


def _decode_all(
    folder: Path, metadata_files: list[Path], contents: list[bytes], resolution: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Reads every image listed in the metadata; one that cannot be decoded (a warning names it) keeps its place
    with zero pixels and readable False, and its path is listed in the last value returned."""
    images, labels, readable, skipped = [], [], [], []
    for metadata_file, content in zip(metadata_files, contents):
        for image_path, label in _parse_metadata(metadata_file, content):
            pixels = read_pathfinder_image(folder / image_path, resolution)
            readable.append(pixels is not None)
            if pixels is None:
                skipped.append(str(folder / image_path))
            images.append(pixels if pixels is not None else np.zeros(resolution * resolution, np.uint8))
            labels.append(label)
    if not any(readable):
        raise ValueError(f"{folder}: no readable images")
    return (torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64),
            torch.tensor(readable, dtype=torch.bool), skipped)


def _parse_metadata(metadata_file: Path, content: bytes) -> list[tuple[str, int]]:
    """(image path relative to the difficulty folder, label) per non-blank line of a metadata file."""
    rows = []
    for line_no, line in enumerate(content.decode("utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 4:
            raise ValueError(
                f"{metadata_file}:{line_no}: expected at least 4 space-separated columns (folder, file, index, "
                f"label), got {len(fields)}: {line.strip()!r}"
            )
        if fields[3] not in ("0", "1"):
            raise ValueError(
                f"{metadata_file}:{line_no}: label (column 3, counting from 0) must be 0 or 1, got {fields[3]!r}"
            )
        rows.append((f"{fields[0]}/{fields[1]}", int(fields[3])))
    return rows


def read_pathfinder_image(path: Path, resolution: int) -> np.ndarray | None:
    """The (res * res,) uint8 pixels of a grayscale PNG, or None (with a warning) if it cannot be read."""
    try:
        with Image.open(path) as image:
            gray = np.asarray(image.convert("L"))
    except (OSError, ValueError) as error:  # PIL: unknown format, truncated or empty file
        warnings.warn(f"{path}: skipped, cannot read the image ({error})", stacklevel=5)
        return None
    if gray.shape != (resolution, resolution):
        raise ValueError(f"{path}: image is {gray.shape[1]}x{gray.shape[0]}, expected {resolution}x{resolution}")
    return gray.reshape(-1)
