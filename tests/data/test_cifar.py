"""sCIFAR and LRA Image from CIFAR-10 python batches written here as the release writes them."""
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from s4_reference import split_train_val, to_tensor_normalize

import spikessm.data.cifar as cifar
from spikessm.data.releases import find_release, load_release


def py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch dict pickled as Python 2's cPickle (protocol 2) with numpy 1.x writes it, opcode by opcode: str
    keys and raw bytes as BINSTRING, the array rebuilt by numpy.core.multiarray._reconstruct + __setstate__."""

    def binstring(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def small_int(i: int) -> bytes:
        return b"K" + bytes([i]) if i < 256 else b"M" + struct.pack("<H", i)

    dtype = (b"cnumpy\ndtype\n" + binstring(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + binstring(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + binstring(b"b") + b"\x87R"
             + b"(K\x01" + small_int(data.shape[0]) + small_int(data.shape[1]) + b"\x86" + dtype + b"\x89"
             + binstring(data.tobytes()) + b"tb")
    label_list = b"](" + b"".join(small_int(v) for v in labels) + b"e"
    return (b"\x80\x02}(" + binstring(b"batch_label") + binstring(b"training batch 1 of 5")
            + binstring(b"labels") + label_list + binstring(b"data") + array + b"u.")


def write_cifar(top, n_per_batch=4, n_test=5, seed=0, writer="py2"):
    """cifar-10-batches-py/ under top; returns {"train": (data, labels), "test": (data, labels)}."""
    rng = np.random.default_rng(seed)
    folder = top / cifar.RELEASE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    out = {"train": ([], []), "test": ([], [])}
    for name in cifar.TRAIN_BATCHES + (cifar.TEST_BATCH,):
        n = n_test if name == cifar.TEST_BATCH else n_per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        if writer == "py2":
            content = py2_pickle(data, labels)
        else:  # as Python 3 with numpy 2 re-pickles it (protocol 5: numpy's _frombuffer path; 2: _codecs.encode)
            content = pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"},
                                   protocol=2 if writer == "py3-protocol2" else 5)
        (folder / name).write_bytes(content)
        split = "test" if name == cifar.TEST_BATCH else "train"
        out[split][0].append(data)
        out[split][1].extend(labels)
    return {split: (np.concatenate(d), np.array(labels)) for split, (d, labels) in out.items()}


def test_the_python2_pickle_reads_as_the_release_loads_it(tmp_path):
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    raw = py2_pickle(data, [3, 9])
    batch = pickle.loads(raw, encoding="bytes")  # what the release's own instructions do
    assert set(batch) == {b"batch_label", b"labels", b"data"} and batch[b"labels"] == [3, 9]
    assert (batch[b"data"] == data).all()
    (tmp_path / "b").write_bytes(raw)
    got, labels = cifar.read_cifar_batch(tmp_path / "b")
    assert got.dtype == np.uint8 and (got == data).all() and labels.tolist() == [3, 9]


@pytest.mark.parametrize("writer", ["py2", "py3", "py3-protocol2"])
def test_scifar_is_rgb_pixel_sequences(tmp_path, writer):
    arrays = write_cifar(tmp_path, writer=writer)
    task = load_release("scifar", tmp_path, val_fraction=0.0)
    assert (task.name, task.max_length, task.d_input, task.n_classes, task.val) == ("scifar", 1024, 3, 10, None)
    assert len(task.train) == 20 and len(task.test) == 5
    data, labels = arrays["test"]
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)  # s4's basic.py
    for i in range(5):
        x, label = task.test[i]
        assert x.shape == (1024, 3) and x.dtype == torch.float32 and label == labels[i]
        # Pixel p's features are the p-th value of the red, green and blue planes, normalised as s4 does.
        assert torch.equal(x, torch.from_numpy(to_tensor_normalize(data[i].reshape(3, 1024).T, mean, std)))
    x, _ = task.train[4]  # the first image of data_batch_2
    assert torch.equal(x[:, 0], torch.from_numpy(to_tensor_normalize(arrays["train"][0][4, :1024], mean[0], std[0])))
    old = load_release("scifar", tmp_path, val_fraction=0.0, conventions="spikessm-0.1")
    assert torch.equal(old.test[0][0], torch.from_numpy(data[0].reshape(3, 1024)).float().T / 255)


def test_image_is_pil_grayscale_normalised_and_val_is_s4s(tmp_path):
    arrays = write_cifar(tmp_path, n_per_batch=3)  # 15 train images: s4 keeps int(13.5) = 13, rounding would 14
    task = load_release("image", tmp_path / cifar.RELEASE_FOLDER)
    assert (task.name, task.d_input, len(task.train), len(task.val)) == ("lra-image", 1, 13, 2)

    def s4_image(rgb_row):  # torchvision: HWC image, Grayscale (PIL convert("L")), ToTensor, Normalize
        rgb = rgb_row.reshape(3, 32, 32).transpose(1, 2, 0)
        gray = np.asarray(Image.fromarray(rgb, mode="RGB").convert("L")).reshape(1024, 1)
        return torch.from_numpy(to_tensor_normalize(gray, 122.6 / 255.0, 61.0 / 255.0))

    for i in range(5):
        assert torch.equal(task.test[i][0], s4_image(arrays["test"][0][i]))
    train_ids, val_ids = split_train_val(15)  # random_split, seed 42, over the batches in order
    assert task.val.labels.tolist() == arrays["train"][1][val_ids].tolist()
    assert all(torch.equal(task.val[i][0], s4_image(arrays["train"][0][j])) for i, j in enumerate(val_ids))
    assert all(torch.equal(task.train[i][0], s4_image(arrays["train"][0][j])) for i, j in enumerate(train_ids))
    old = load_release("image", tmp_path, conventions="spikessm-0.1")
    assert (len(old.train), len(old.val)) == (14, 1)  # round(13.5) = 14
    gray = np.asarray(Image.fromarray(arrays["test"][0][1].reshape(3, 32, 32).transpose(1, 2, 0)).convert("L"))
    assert torch.equal(old.test[1][0][:, 0], torch.from_numpy(gray.reshape(-1).copy()).float() / 255)
    again = load_release("image", tmp_path, val_fraction=0.25, seed=7)
    assert torch.equal(again.val.pixels, load_release("image", tmp_path, val_fraction=0.25, seed=7).val.pixels)
    assert len(again.val) == 15 - int(15 * 0.75)


def test_grayscale_matches_pil_on_every_colour_corner():
    rgb = np.array(np.meshgrid(*[np.array([0, 1, 127, 128, 254, 255])] * 3)).reshape(3, -1).T.astype(np.uint8)
    image = rgb.reshape(1, -1, 3)
    expected = np.asarray(Image.fromarray(image, mode="RGB").convert("L")).reshape(-1)
    assert (cifar.to_grayscale(rgb) == expected).all()


def test_a_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    write_cifar(tmp_path)
    path = tmp_path / cifar.RELEASE_FOLDER / "data_batch_3"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [1]}, protocol=4))
    with pytest.raises(ValueError, match=r"data_batch_3: not a CIFAR-10 python batch .*refusing .*system"):
        load_release("scifar", tmp_path)
    assert not marker.exists()
    for payload in (pickle.dumps(eval, protocol=2), b"cbuiltins\nexec\n(Vprint(1)\ntR.",
                    b"c_codecs\nencode\n(Vx\nVzlib\ntR."):
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            cifar.restricted_load(payload)


@pytest.mark.parametrize("content, message", [
    (b"not a pickle", "not a CIFAR-10 python batch"),
    (pickle.dumps([1, 2]), "holds a list"),
    (pickle.dumps({b"labels": [1]}), "no data entry"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}), r"float32 \(2, 3072\)"),
    (pickle.dumps({b"data": np.zeros((2, 1024), np.uint8), b"labels": [1, 2]}), r"\(N, 3072\) uint8"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}), "2 images but labels"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}), r"label 10 at index 1"),
    (py2_pickle(np.zeros((2, 3072), np.uint8), [1, 2])[:-40], "not a CIFAR-10 python batch"),
])
def test_bad_batches_name_the_file_and_problem(tmp_path, content, message):
    write_cifar(tmp_path)
    path = tmp_path / cifar.RELEASE_FOLDER / "test_batch"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        load_release("scifar", tmp_path)
    assert str(path) in str(error.value)


def test_missing_batches_and_the_cache(tmp_path, monkeypatch):
    arrays = write_cifar(tmp_path)
    assert find_release("scifar", tmp_path) == tmp_path / cifar.RELEASE_FOLDER
    load_release("scifar", tmp_path)

    def refuse(*args):
        raise AssertionError("the batches were unpickled again")

    load_release("image", tmp_path)
    monkeypatch.setattr(cifar, "read_cifar_batch", refuse)
    second = load_release("scifar", tmp_path, conventions="spikessm-0.1")  # one cache serves both conventions
    rgb = arrays["test"][0][0].reshape(3, 1024).T
    assert torch.equal(second.test[0][0], torch.from_numpy(rgb.copy()).float() / 255)
    gray = load_release("image", tmp_path, conventions="spikessm-0.1")
    assert torch.equal(gray.test[0][0][:, 0], torch.from_numpy(cifar.to_grayscale(rgb)).float() / 255)
    s4 = load_release("scifar", tmp_path)
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    assert torch.equal(s4.test[0][0], torch.from_numpy(to_tensor_normalize(rgb, mean, std)))
    (tmp_path / cifar.RELEASE_FOLDER / "data_batch_5").unlink()
    assert find_release("scifar", tmp_path) is None
    with pytest.raises(FileNotFoundError, match="missing data_batch_5"):
        load_release("scifar", tmp_path)
