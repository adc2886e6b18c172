"""Tasks read from their original release files through `spikessm train --data-dir` (--limit-train keeps
each to a few steps): IDX files for smnist, the SHD HDF5 files, N-MNIST's .bin events, the LRA release layout."""
import json

import numpy as np
import pytest

from spikessm.__main__ import main
from spikessm.data.listops import write_listops

SMALL = ["--model", "lif-s4d", "--set", "d_model=8", "--set", "n_layers=1", "--set", "d_state=4", "--set",
         "norm=layer", "--epochs", "1", "--batch-size", "16", "--threads", "1"]


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: two zero bytes, type 0x08 (unsigned byte), the rank, each size as big-endian int32."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def train_from(task, data_dir, run, *more):
    assert main(["train", "--task", task, "--data-dir", str(data_dir), "--run-dir", str(run), *SMALL, *more]) == 0
    return json.loads((run / "results.json").read_text())


def test_smnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 48), ("t10k", 16)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(rng.integers(0, 10, n)))
    results = train_from("smnist", tmp_path, tmp_path / "run", "--limit-train", "32")
    assert results["test_examples"] == 16 and results["step"] == 2


def test_shd_from_its_hdf5_files(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 8)):
        with h5py.File(tmp_path / f"shd_{split}.h5", "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            for i in range(n):
                times[i] = np.sort(rng.uniform(0, 0.5, 30)).astype(np.float16)
                units[i] = rng.integers(0, 700, 30).astype(np.uint16)
            f.create_dataset("labels", data=rng.integers(0, 20, n).astype(np.uint16))
    results = train_from("shd", tmp_path, tmp_path / "run", "--limit-train", "32")
    assert results["test_examples"] == 8 and results["step"] == 2


def test_nmnist_from_its_event_files(tmp_path):
    rng = np.random.default_rng(0)
    for folder, per_digit in (("Train", 4), ("Test", 1)):
        for digit in range(10):
            (tmp_path / folder / str(digit)).mkdir(parents=True)
            for k in range(per_digit):
                t = np.sort(rng.integers(0, 250_000, 20))
                events = b"".join(bytes([rng.integers(34), rng.integers(34), (int(rng.integers(2)) << 7) | (ti >> 16),
                                         (ti >> 8) & 0xFF, ti & 0xFF]) for ti in t.tolist())
                (tmp_path / folder / str(digit) / f"{k:05d}.bin").write_bytes(events)
    results = train_from("nmnist", tmp_path, tmp_path / "run", "--limit-train", "32")
    assert results["test_examples"] == 10 and results["step"] == 2


def test_listops_from_the_lra_release_layout(tmp_path):
    write_listops(tmp_path / "lra_release" / "listops-1000", 32, 8, 8, max_depth=3, max_args=4, min_length=4,
                  max_length=30, seed=0)
    results = train_from("listops", tmp_path, tmp_path / "run")
    assert results["test_examples"] == 8 and results["step"] == 2
