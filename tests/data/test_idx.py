"""sMNIST / psMNIST from MNIST-family IDX files written here byte by byte in the release format."""
import gzip
import struct

import numpy as np
import pytest
import torch

from s4_reference import bitreversal_permutation, split_train_val

import spikessm.data.idx as idx
from spikessm.data.base import collate
from spikessm.data.images import bit_reversal_permutation
from spikessm.data.releases import find_release, load_release


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The IDX encoding: magic 00 00 <type> <ndim>, big-endian uint32 sizes, then the raw values."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder, n_train=20, n_test=7, compress=(True, True, False, False), seed=0):
    """The four release files in folder (some gzip'd, as chosen); returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    names = [("train", n_train), ("test", n_test)]
    for k, (split, n) in enumerate(names):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        arrays[split] = (images, labels)
        for j, (name, array) in enumerate(zip(idx.IDX_FILES[split], (images, labels))):
            data = idx_bytes(array)
            if compress[2 * k + j]:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return arrays


def test_read_idx_reads_plain_and_gzip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx_bytes(array)))
    assert (idx.read_idx(tmp_path / "a") == array).all()
    assert (idx.read_idx(tmp_path / "b.gz") == array).all()
    # The header of the labels file as the release writes it: 0x00000801, then the count.
    labels = np.array([7, 2, 1], dtype=np.uint8)
    assert idx_bytes(labels)[:8] == bytes.fromhex("0000080100000003")


def test_smnist_from_idx_files(tmp_path):
    arrays = write_mnist(tmp_path)
    task = load_release("smnist", tmp_path, val_fraction=0.0)
    assert (task.name, task.max_length, task.d_input, task.n_classes, task.vocab_size, task.val) == (
        "smnist", 784, 1, 10, None, None)
    images, labels = arrays["test"]
    assert len(task.train) == 20 and len(task.test) == 7
    for i in range(7):
        x, label = task.test[i]
        assert x.shape == (784, 1) and x.dtype == torch.float32 and label == labels[i]
        assert torch.equal(x[:, 0], torch.from_numpy(images[i].reshape(-1)).float() / 255)
    batch = collate([task.train[i] for i in range(4)])
    assert batch["inputs"].shape == (4, 784, 1) and batch["lengths"].tolist() == [784] * 4


def test_psmnist_is_the_bit_reversal_order_and_val_is_carved_from_train(tmp_path):
    arrays = write_mnist(tmp_path, n_train=30)
    plain = load_release("smnist", tmp_path, val_fraction=0.2, seed=3)
    permuted = load_release("psmnist", tmp_path, val_fraction=0.2, seed=3)
    assert permuted.name == "psmnist" and (len(permuted.train), len(permuted.val)) == (24, 6)
    order = bit_reversal_permutation(784)
    for dataset_a, dataset_b in ((plain.train, permuted.train), (plain.val, permuted.val)):
        for i in range(len(dataset_a)):
            assert torch.equal(dataset_a[i][0][order], dataset_b[i][0]) and dataset_a[i][1] == dataset_b[i][1]
    # Train and val partition the release's train images.
    seen = sorted(tuple(plain.train[i][0][:20, 0].tolist()) for i in range(24))
    seen += sorted(tuple(plain.val[i][0][:20, 0].tolist()) for i in range(6))
    expected = [tuple((img.reshape(-1)[:20] / 255).astype(np.float32).tolist()) for img in arrays["train"][0]]
    assert sorted(seen) == sorted(expected)


def test_default_split_and_permutation_are_s4s(tmp_path):
    arrays = write_mnist(tmp_path, n_train=14)  # s4 keeps int(14 * 0.9) = 12 for train; rounding would keep 13
    images = arrays["train"][0].reshape(14, 784)
    train_ids, val_ids = split_train_val(14)
    order = bitreversal_permutation(784)
    for task, steps in ((load_release("smnist", tmp_path), slice(None)), (load_release("psmnist", tmp_path), order)):
        assert (len(task.train), len(task.val)) == (12, 2)
        assert torch.equal(task.val.pixels[:, :, 0], torch.from_numpy(images[val_ids][:, steps]))
        assert torch.equal(task.train.pixels[:, :, 0], torch.from_numpy(images[train_ids][:, steps]))
        assert task.val.labels.tolist() == arrays["train"][1][val_ids].tolist()
        x, _ = task.val[0]  # s4 does not normalise MNIST: ToTensor only
        assert torch.equal(x[:, 0], torch.from_numpy(images[val_ids[0]][steps].astype(np.float32) / np.float32(255)))
    old = load_release("smnist", tmp_path, conventions="spikessm-0.1")
    assert (len(old.train), len(old.val)) == (13, 1)


def test_files_in_raw_and_dotted_names_are_found(tmp_path):
    write_mnist(tmp_path / "raw", compress=(False,) * 4)
    (tmp_path / "raw" / "train-images-idx3-ubyte").rename(tmp_path / "raw" / "train-images.idx3-ubyte")
    assert find_release("smnist", tmp_path) == tmp_path / "raw"
    assert len(load_release("smnist", tmp_path).test) == 7


def test_missing_files_name_them(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    assert find_release("smnist", tmp_path) is None
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_release("smnist", tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda data: b"\x00\x01" + data[2:], "not an IDX file"),
    (lambda data: data[:2] + b"\x0d" + data[3:], "type code 0x0d"),
    (lambda data: data[:-5], "truncated"),
    (lambda data: data + b"\x00", "truncated"),
    (lambda data: gzip.compress(data)[:-9], "broken gzip"),
    (lambda data: b"\x00\x00", "too short"),
])
def test_bad_idx_files_name_the_file_and_problem(tmp_path, damage, message):
    write_mnist(tmp_path, compress=(False,) * 4)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message) as error:
        load_release("smnist", tmp_path)
    assert str(path) in str(error.value)


def test_inconsistent_splits_are_refused(tmp_path):
    write_mnist(tmp_path, compress=(False,) * 4)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.array([1, 2, 10, 3, 4, 5, 6], dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: label 10 at index 2 is not in 0\.\.9"):
        load_release("smnist", tmp_path)
    labels.write_bytes(idx_bytes(np.zeros(6, dtype=np.uint8)))
    with pytest.raises(ValueError, match="7 images but .* 6 labels"):
        load_release("smnist", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((6, 32, 32), dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: images of shape \(6, 32, 32\)"):
        load_release("smnist", tmp_path)


def test_second_load_reads_the_cache_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    first = load_release("smnist", tmp_path, val_fraction=0.0)
    assert list((tmp_path / ".spikessm_cache").glob("mnist-idx-*.pt"))

    def refuse(*args):
        raise AssertionError("the IDX files were parsed again")

    monkeypatch.setattr(idx, "read_idx_split", refuse)
    second = load_release("smnist", tmp_path, val_fraction=0.0)
    assert torch.equal(first.test[3][0], second.test[3][0])
    monkeypatch.undo()
    write_mnist(tmp_path, n_test=8, seed=1)  # other sizes: a fresh parse
    third = load_release("smnist", tmp_path, val_fraction=0.0)
    assert len(third.test) == 8 and not torch.equal(first.test[3][0], third.test[3][0])
