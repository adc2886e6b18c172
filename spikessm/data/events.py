"""Event streams binned into time steps: the Spiking Heidelberg Digits (task `shd`) and N-MNIST (task `nmnist`).

An example is (x, label): x a (n_bins, channels) float32 tensor of spike COUNTS, x[t, c] the number of events of
channel c in [t * bin_ms, (t + 1) * bin_ms) milliseconds from the start of the recording, so the models read
the counts as features (d_input = channels), as the image tasks read pixels. Every example has n_bins steps
(max_length); events at or after n_bins * bin_ms are dropped. An event less than half a millionth of a bin
width before a bin edge counts in the later bin, so that times written in decimal (0.003 s, which is 2.9999...
bins of 1 ms in binary floating point) land where they read.

The events are stored per example as the flat indices step * channels + channel (EventFrames) and become a dense
tensor only when an example is read: dense storage of SHD's 8156 x 1000 x 700 counts would take GBs.

SHD (Cramer et al. 2020), the HDF5 release `shd_train.h5`, `shd_test.h5` (or gzip'd, .h5.gz, as released):
datasets spikes/times (per example a variable-length float array, seconds), spikes/units (variable-length
integer arrays, channels 0-699) and labels (0-19: the spoken digits 0-9 in English and in German). Reading it
needs h5py: `pip install spikessm[events]` (or `pip install h5py`). Channels can be summed in groups of
`pool_channels` adjacent ones (700 -> 140 at 5, as some works do).

N-MNIST (Orchard et al. 2015), the release folders Train/<digit>/<id>.bin and Test/<digit>/<id>.bin: each event
5 bytes, x = b0 (0-33), y = b1 (0-33), polarity = b2 >> 7, timestamp in microseconds = (b2 & 127) << 16 |
b3 << 8 | b4. Channel = polarity * 34 * 34 + y * 34 + x (polarity-major, then row-major): 2312 channels.

Neither reader needs `tonic`. The validation split is a seeded random val_fraction of train (the releases have
none). The binned events are cached in <data_dir>/.spikessm_cache/.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import TaskData
from .cache import cache_path, read_cache, write_cache
from .conventions import SPIKESSM_0_1
from .images import split_indices
from .listing import files_digest

_CACHE_VERSION = 1  # bump when the cached content changes meaning
EDGE_DECIMALS = 6  # times (in bins) are rounded to this many decimals before flooring; see the module docstring

SHD_FILES = {"train": "shd_train.h5", "test": "shd_test.h5"}
SHD_CHANNELS = 700
SHD_CLASSES = 20
SHD_DATASETS = ("spikes/times", "spikes/units", "labels")
H5PY_MISSING = "reading SHD needs h5py: pip install spikessm[events] (or pip install h5py)"

NMNIST_FOLDERS = {"train": "Train", "test": "Test"}
NMNIST_SIDE = 34
NMNIST_CHANNELS = 2 * NMNIST_SIDE * NMNIST_SIDE
NMNIST_CLASSES = 10
NMNIST_EVENT_BYTES = 5


class EventFrames(Dataset):
    """Binned event streams. index: (E,) integer tensor of step * n_channels + channel, one entry per event, the
    events of stream j at index[offsets[j]:offsets[j + 1]]; offsets (S + 1,) int64; labels (S,) int64; rows:
    the streams this dataset shows, in order (default all S).

    Item i is (x, label) of stream rows[i]: x the (n_bins, n_channels) float32 counts, label an int.
    """

    def __init__(self, index: torch.Tensor, offsets: torch.Tensor, labels: torch.Tensor, n_bins: int,
                 n_channels: int, rows: torch.Tensor | None = None):
        if offsets.dim() != 1 or len(offsets) != len(labels) + 1:
            raise ValueError(f"EventFrames: {len(offsets)} offsets for {len(labels)} labels, expected one more")
        self.index, self.offsets, self.all_labels = index, offsets, labels
        self.rows = torch.arange(len(labels)) if rows is None else rows
        self.labels = labels[self.rows]
        self.n_bins, self.n_channels = n_bins, n_channels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        row = int(self.rows[i])
        events = self.index[int(self.offsets[row]) : int(self.offsets[row + 1])].long()
        # Accumulating ones straight into float32 skips int64 counts and their conversion, which cost more.
        counts = torch.zeros(self.n_bins * self.n_channels)
        counts.index_put_((events,), torch.ones(()).expand(len(events)), accumulate=True)
        return counts.view(self.n_bins, self.n_channels), int(self.labels[i])

    def subset(self, indices: torch.Tensor) -> EventFrames:
        """The examples at `indices`, sharing this dataset's events (N-MNIST's take hundreds of MB: a copy per
        split would double that)."""
        return EventFrames(self.index, self.offsets, self.all_labels, self.n_bins, self.n_channels,
                           self.rows[indices])


def event_index(times: np.ndarray, channels: np.ndarray, *, bin_width: float, n_bins: int,
                n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Events (times in any unit, bin_width in the same unit; channels) -> (their flat indices step * n_channels +
    channel, the boolean mask of the events kept: those before n_bins * bin_width)."""
    steps = np.floor(np.round(np.asarray(times, dtype=np.float64) / bin_width, EDGE_DECIMALS))
    keep = steps < n_bins
    dtype = np.int32 if n_bins * n_channels <= np.iinfo(np.int32).max else np.int64
    return (steps[keep].astype(dtype) * n_channels + channels[keep].astype(dtype)), keep


def _check_binning(bin_ms: float, n_bins: int) -> None:
    if not (isinstance(bin_ms, (int, float)) and math.isfinite(bin_ms) and bin_ms > 0):
        raise ValueError(f"bin_ms must be a finite number > 0, got {bin_ms!r}")
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")


def _frames_from_cache(content: dict, n_bins: int, n_channels: int) -> dict[str, EventFrames]:
    return {split: EventFrames(c["index"], c["offsets"], c["labels"], n_bins, n_channels)
            for split, c in content.items()}


def _split_val(splits: dict[str, EventFrames], val_fraction: float, seed: int):
    train, val = splits["train"], None
    if val_fraction > 0:
        # No reference prepares these binned streams; the split keeps spikessm's own rule.
        train_ids, val_ids = split_indices(len(train), (1.0 - val_fraction, val_fraction), seed,
                                           conventions=SPIKESSM_0_1)
        train, val = train.subset(train_ids), train.subset(val_ids)
    return train, val


def _pack(per_example: list[np.ndarray], labels: list[int]) -> dict[str, torch.Tensor]:
    """Per-example flat indices and labels -> the cached form (index, offsets, labels)."""
    lengths = np.fromiter((len(a) for a in per_example), dtype=np.int64, count=len(per_example))
    offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)])
    index = np.concatenate(per_example) if per_example else np.zeros(0, np.int32)
    return {"index": torch.from_numpy(index), "offsets": torch.from_numpy(offsets),
            "labels": torch.tensor(labels, dtype=torch.int64)}


# --- SHD ------------------------------------------------------------------------------------------------------


def find_shd_files(data_dir: str | os.PathLike) -> dict[str, Path]:
    """{split: file} of shd_train.h5 and shd_test.h5 in data_dir, each plain or as released (.h5.gz; the plain
    one wins where both are there); FileNotFoundError saying how to get them."""
    data_dir = Path(data_dir)
    files, missing = {}, []
    for split, name in SHD_FILES.items():
        for candidate in (data_dir / name, data_dir / f"{name}.gz"):
            if candidate.is_file():
                files[split] = candidate
                break
        else:
            missing.append(f"{name}[.gz]")
    if missing:
        raise FileNotFoundError(
            f"no {', '.join(missing)} in {data_dir}: download shd_train.h5.gz and shd_test.h5.gz from "
            "https://zenkelab.org/datasets/ (or https://compneuro.net/datasets/) and pass their folder")
    return files


def read_shd_file(path: str | os.PathLike, *, n_channels: int = SHD_CHANNELS, n_classes: int = SHD_CLASSES
                  ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """One SHD file -> (times per example (float64 seconds), units per example (int64), labels (N,) int64),
    checked: the three datasets present, variable-length float times and integer units of equal counts, times
    finite and >= 0, units in 0..n_channels-1, labels in 0..n_classes-1. ValueError naming the file."""
    try:
        import h5py
    except ImportError:
        raise ImportError(H5PY_MISSING) from None
    path = Path(path)
    source = path
    if path.suffix == ".gz":
        # h5py reads file objects: the release's gzip'd file is decompressed in memory (~0.5 GB for train) once,
        # the cache spares later runs.
        try:
            source = io.BytesIO(gzip.decompress(path.read_bytes()))
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: broken gzip data ({error})") from None
    try:
        f = h5py.File(source, "r")
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 file ({error})") from None
    with f:
        missing = [name for name in SHD_DATASETS if not isinstance(f.get(name), h5py.Dataset)]
        if missing:
            raise ValueError(f"{path}: no dataset {', '.join(missing)} (an SHD file holds {', '.join(SHD_DATASETS)})")
        for name, kinds in (("spikes/times", "f"), ("spikes/units", "iu")):
            base = h5py.check_vlen_dtype(f[name].dtype)
            if base is None or base.kind not in kinds:
                raise ValueError(f"{path}: {name} is {f[name].dtype}, expected variable-length "
                                 f"{'float' if kinds == 'f' else 'integer'} arrays")
        times, units, labels = f["spikes/times"][()], f["spikes/units"][()], f["labels"][()]
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: labels are {labels.dtype} {labels.shape}, expected (N,) integers")
    if not len(times) == len(units) == len(labels):
        raise ValueError(f"{path}: {len(times)} spikes/times, {len(units)} spikes/units and {len(labels)} labels; "
                         "expected one of each per example")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if len(bad):
        raise ValueError(f"{path}: label {labels[bad[0]]} of example {bad[0]} is not in 0..{n_classes - 1}")
    times = [np.asarray(t, dtype=np.float64) for t in times]
    units = [np.asarray(u, dtype=np.int64) for u in units]
    for i, (t, u) in enumerate(zip(times, units)):
        if len(t) != len(u):
            raise ValueError(f"{path}: example {i} has {len(t)} spike times but {len(u)} units")
        if len(t) and not (np.isfinite(t).all() and t.min() >= 0):
            raise ValueError(f"{path}: example {i} has a spike time that is negative or not finite")
        if len(u) and (u.min() < 0 or u.max() >= n_channels):
            value = u.min() if u.min() < 0 else u.max()
            raise ValueError(f"{path}: example {i} has unit {value}, not in 0..{n_channels - 1}")
    return times, units, labels


def load_shd(
    data_dir: str | os.PathLike, *, bin_ms: float = 1.0, n_bins: int = 1000, pool_channels: int = 1,
    val_fraction: float = 0.1, seed: int = 0,
) -> TaskData:
    """SHD from data_dir (holding shd_train.h5, shd_test.h5) -> TaskData(name "shd", d_input ceil(700 /
    pool_channels), max_length n_bins, n_classes 20). See the module docstring."""
    _check_binning(bin_ms, n_bins)
    if not isinstance(pool_channels, int) or isinstance(pool_channels, bool) or pool_channels < 1:
        raise ValueError(f"pool_channels must be an int >= 1, got {pool_channels!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    data_dir = Path(data_dir)
    files = find_shd_files(data_dir)
    n_channels = -(-SHD_CHANNELS // pool_channels)
    cache = cache_path(data_dir, "shd", files, version=_CACHE_VERSION, bin_ms=bin_ms, n_bins=n_bins,
                       pool_channels=pool_channels)
    content = read_cache(cache, "SHD")
    if content is None:
        content = {}
        for split, path in files.items():
            times, units, labels = read_shd_file(path)
            per_example = [event_index(t, u // pool_channels, bin_width=bin_ms / 1000, n_bins=n_bins,
                                       n_channels=n_channels)[0] for t, u in zip(times, units)]
            content[split] = _pack(per_example, labels.tolist())
        write_cache(cache, content, "SHD")
    splits = _frames_from_cache(content, n_bins, n_channels)
    train, val = _split_val(splits, val_fraction, seed)
    return TaskData(name="shd", train=train, val=val, test=splits["test"], n_classes=SHD_CLASSES,
                    max_length=n_bins, d_input=n_channels)


# --- N-MNIST --------------------------------------------------------------------------------------------------


def read_nmnist_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """One N-MNIST .bin file -> {"x", "y", "polarity", "t_us"} arrays (one entry per event), checked: a whole
    number of 5-byte events, x and y in 0..33. ValueError naming the file."""
    path = Path(path)
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if len(raw) % NMNIST_EVENT_BYTES:
        raise ValueError(f"{path}: {len(raw)} bytes is not a whole number of {NMNIST_EVENT_BYTES}-byte events "
                         "(the file is truncated or not an N-MNIST .bin file)")
    b = raw.reshape(-1, NMNIST_EVENT_BYTES)
    for axis, column in (("x", 0), ("y", 1)):
        bad = np.flatnonzero(b[:, column] >= NMNIST_SIDE)
        if len(bad):
            raise ValueError(f"{path}: event {bad[0]} has {axis} = {b[bad[0], column]}, not in 0..{NMNIST_SIDE - 1}")
    t_us = ((b[:, 2].astype(np.int64) & 0x7F) << 16) | (b[:, 3].astype(np.int64) << 8) | b[:, 4].astype(np.int64)
    return {"x": b[:, 0].astype(np.int64), "y": b[:, 1].astype(np.int64), "polarity": (b[:, 2] >> 7).astype(np.int64),
            "t_us": t_us}


def nmnist_channels(events: dict[str, np.ndarray]) -> np.ndarray:
    """The channel of each event: polarity * 34 * 34 + y * 34 + x."""
    return (events["polarity"] * NMNIST_SIDE + events["y"]) * NMNIST_SIDE + events["x"]


def list_nmnist_files(data_dir: str | os.PathLike) -> dict[str, Path]:
    """{"<Train|Test>/<digit>/<name>": file} of every .bin file, in (split, digit, name) order.

    FileNotFoundError if Train/ or Test/ is missing or holds no .bin files; ValueError for a sub-folder that is
    not a digit 0-9.
    """
    data_dir = Path(data_dir)
    digits = {str(d) for d in range(NMNIST_CLASSES)}
    files = {}
    for folder_name in NMNIST_FOLDERS.values():
        folder = data_dir / folder_name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: no such folder. N-MNIST: download Train.zip and Test.zip of the release "
                "(https://www.garrickorchard.com/datasets/n-mnist), extract them and pass the folder holding "
                "Train/ and Test/")
        found = 0
        subs = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
        for sub in subs:
            if sub not in digits:
                raise ValueError(f"{folder / sub}: N-MNIST class folders are named 0-9, found {sub!r}")
            # os.scandir and plain names: 70000 files make pathlib's globbing a noticeable cost.
            names = sorted(e.name for e in os.scandir(folder / sub) if e.name.endswith(".bin") and e.is_file())
            prefix = f"{folder}{os.sep}{sub}{os.sep}"
            for name in names:
                files[f"{folder_name}/{sub}/{name}"] = Path(prefix + name)
            found += len(names)
        if not found:
            raise FileNotFoundError(f"{folder}: no <digit>/<id>.bin files")
    return files


def load_nmnist(
    data_dir: str | os.PathLike, *, bin_ms: float = 1.0, n_bins: int = 300, val_fraction: float = 0.1,
    seed: int = 0,
) -> TaskData:
    """N-MNIST from data_dir (holding Train/ and Test/) -> TaskData(name "nmnist", d_input 2312, max_length
    n_bins, n_classes 10). See the module docstring."""
    _check_binning(bin_ms, n_bins)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    data_dir = Path(data_dir)
    files = list_nmnist_files(data_dir)
    cache = cache_path(data_dir, "nmnist", {}, digest=files_digest(files), version=_CACHE_VERSION,
                       bin_ms=bin_ms, n_bins=n_bins)
    content = read_cache(cache, "N-MNIST")
    if content is None:
        per_split = {split: ([], []) for split in NMNIST_FOLDERS}
        split_of = {folder: split for split, folder in NMNIST_FOLDERS.items()}
        for key, path in files.items():
            folder, digit, _ = key.split("/")
            events = read_nmnist_file(path)
            index, _ = event_index(events["t_us"], nmnist_channels(events), bin_width=bin_ms * 1000, n_bins=n_bins,
                                   n_channels=NMNIST_CHANNELS)
            per_split[split_of[folder]][0].append(index)
            per_split[split_of[folder]][1].append(int(digit))
        content = {split: _pack(*lists) for split, lists in per_split.items()}
        write_cache(cache, content, "N-MNIST")
    splits = _frames_from_cache(content, n_bins, NMNIST_CHANNELS)
    train, val = _split_val(splits, val_fraction, seed)
    return TaskData(name="nmnist", train=train, val=val, test=splits["test"], n_classes=NMNIST_CLASSES,
                    max_length=n_bins, d_input=NMNIST_CHANNELS)
