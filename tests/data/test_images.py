"""Sequential-image tasks on tiny datasets saved in the Hub layout (MNIST: image/label, CIFAR-10: img/label)."""
import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from s4_reference import split_train_val, to_tensor_normalize

from spikessm.data.base import collate
from spikessm.data.images import bit_reversal_permutation, load_image_task

# s4's Normalize constants, as basic.py's CIFAR10 writes them.
S4_CIFAR_MEAN, S4_CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
S4_GRAY_MEAN, S4_GRAY_STD = 122.6 / 255.0, 61.0 / 255.0


def save_split_dict(path, image_column, images, labels_per_split):
    """A DatasetDict with train/test splits of PIL images and ClassLabel labels, written with save_to_disk."""
    features = datasets.Features({image_column: datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    splits = {
        name: datasets.Dataset.from_dict({image_column: imgs, "label": labels}, features=features)
        for (name, imgs), labels in zip(images.items(), labels_per_split)
    }
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """(path, {split: (N, 28, 28) uint8}, {split: labels})."""
    rng = np.random.default_rng(0)
    arrays = {"train": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
              "test": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)}
    labels = {name: rng.integers(0, 10, len(a)).tolist() for name, a in arrays.items()}
    images = {name: [Image.fromarray(a, mode="L") for a in stack] for name, stack in arrays.items()}
    path = save_split_dict(tmp_path_factory.mktemp("mnist") / "mnist", "image", images, labels.values())
    return path, arrays, labels


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """(path, {split: (N, 32, 32, 3) uint8}, {split: labels})."""
    rng = np.random.default_rng(1)
    arrays = {"train": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
              "test": rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)}
    labels = {name: rng.integers(0, 10, len(a)).tolist() for name, a in arrays.items()}
    images = {name: [Image.fromarray(a, mode="RGB") for a in stack] for name, stack in arrays.items()}
    path = save_split_dict(tmp_path_factory.mktemp("cifar") / "cifar", "img", images, labels.values())
    return path, arrays, labels


def test_smnist_is_row_major_pixels_in_0_1(mnist):
    path, arrays, labels = mnist
    task = load_image_task("smnist", path)
    assert (task.max_length, task.d_input, task.n_classes, task.vocab_size) == (784, 1, 10, None)
    for i in range(len(arrays["test"])):
        x, label = task.test[i]
        assert x.shape == (784, 1) and x.dtype == torch.float32 and label == labels["test"][i]
        assert torch.allclose(x[:, 0], torch.from_numpy(arrays["test"][i].reshape(-1)).float() / 255)
    assert task.test[0][0].max() <= 1 and task.test[0][0].min() >= 0


def test_validation_split_is_s4s_by_default(mnist):
    path, arrays, _ = mnist
    train_ids, val_ids = split_train_val(len(arrays["train"]))  # random_split, seed 42
    for conventions in ("s4", None):
        task = load_image_task("smnist", path, **({} if conventions is None else {"conventions": conventions}))
        assert torch.equal(task.val.pixels[:, :, 0], torch.from_numpy(arrays["train"][val_ids].reshape(-1, 784)))
        assert torch.equal(task.train.pixels[:, :, 0], torch.from_numpy(arrays["train"][train_ids].reshape(-1, 784)))
    old = load_image_task("smnist", path, conventions="spikessm-0.1")
    assert torch.equal(old.val.pixels, load_image_task("smnist", path, seed=0).val.pixels)
    assert not torch.equal(old.val.pixels, task.val.pixels)
    with pytest.raises(ValueError, match="unknown input conventions 's5'; choose one of s4, spikessm-0.1"):
        load_image_task("smnist", path, conventions="s5")


def test_validation_is_carved_from_train_deterministically(mnist):
    path, arrays, _ = mnist
    a, b = load_image_task("smnist", path, seed=5), load_image_task("smnist", path, seed=5)
    c = load_image_task("smnist", path, seed=6)
    assert (len(a.train), len(a.val)) == (27, 3)
    assert torch.equal(a.val.pixels, b.val.pixels) and torch.equal(a.train.pixels, b.train.pixels)
    assert not torch.equal(a.val.pixels, c.val.pixels)
    together = torch.cat([a.train.pixels, a.val.pixels])[:, :, 0]
    source = torch.from_numpy(arrays["train"].reshape(30, -1))
    assert sorted(map(bytes, together.numpy())) == sorted(map(bytes, source.numpy()))
    assert load_image_task("smnist", path, val_fraction=0).val is None


def test_bit_reversal_permutation():
    perm = bit_reversal_permutation(784)
    assert perm.dtype == torch.int64 and torch.equal(perm.sort().values, torch.arange(784))
    assert perm[:9].tolist() == [0, 512, 256, 768, 128, 640, 384, 64, 576]  # 896 (reversed 7) >= 784: dropped
    assert bit_reversal_permutation(8).tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    assert bit_reversal_permutation(1).tolist() == [0]


def test_psmnist_is_smnist_permuted(mnist):
    path, _, _ = mnist
    plain, permuted = load_image_task("smnist", path), load_image_task("psmnist", path)
    perm = bit_reversal_permutation(784)
    for i in range(len(plain.test)):
        assert torch.equal(permuted.test[i][0], plain.test[i][0][perm])
    assert torch.equal(permuted.train.pixels, plain.train.pixels[:, perm])


def test_scifar_is_normalised_per_channel_as_s4(cifar):
    path, arrays, labels = cifar
    task = load_image_task("scifar", path)
    assert (task.max_length, task.d_input) == (1024, 3)
    for i in range(len(arrays["test"])):
        x, label = task.test[i]
        expected = to_tensor_normalize(arrays["test"][i].reshape(1024, 3), S4_CIFAR_MEAN, S4_CIFAR_STD)
        assert x.shape == (1024, 3) and x.dtype == torch.float32 and label == labels["test"][i]
        assert torch.equal(x, torch.from_numpy(expected))  # bit for bit
    old = load_image_task("scifar", path, conventions="spikessm-0.1")
    assert torch.equal(old.test[2][0], torch.from_numpy(arrays["test"][2].reshape(1024, 3)).float() / 255)


def test_lra_image_is_grayscale_cifar_normalised_as_s4(cifar):
    path, arrays, _ = cifar
    task = load_image_task("lra-image", path)
    assert (task.max_length, task.d_input) == (1024, 1)
    for i in range(len(arrays["test"])):
        gray = np.asarray(Image.fromarray(arrays["test"][i], mode="RGB").convert("L"))  # torchvision's Grayscale
        expected = to_tensor_normalize(gray.reshape(1024, 1), (S4_GRAY_MEAN,), (S4_GRAY_STD,))
        assert torch.equal(task.test[i][0], torch.from_numpy(expected))
    x, _ = load_image_task("lra-image", path, conventions="spikessm-0.1").test[1]
    rgb = arrays["test"][1].reshape(1024, 3).astype(np.float64)
    luma = (rgb @ np.array([299, 587, 114]) / 1000) / 255  # ITU-R 601-2, as PIL's convert("L")
    assert x.shape == (1024, 1) and np.abs(x[:, 0].numpy() - luma).max() <= 1.01 / 255


def test_collate_shapes(mnist, cifar):
    for name, path, shape in (("smnist", mnist[0], (784, 1)), ("psmnist", mnist[0], (784, 1)),
                              ("scifar", cifar[0], (1024, 3)), ("lra-image", cifar[0], (1024, 1))):
        task = load_image_task(name, path)
        batch = collate([task.train[i] for i in range(4)])
        assert batch["inputs"].shape == (4, *shape) and batch["inputs"].dtype == torch.float32
        assert batch["lengths"].tolist() == [shape[0]] * 4 and batch["labels"].dtype == torch.int64


def test_unknown_task_lists_the_names(mnist):
    with pytest.raises(ValueError, match="smnist, psmnist, scifar, lra-image"):
        load_image_task("mnist", mnist[0])


def test_missing_column_names_it_and_the_columns_present(tmp_path):
    image = Image.fromarray(np.zeros((28, 28), dtype=np.uint8))
    splits = {name: datasets.Dataset.from_dict({"picture": [image], "label": [3]}) for name in ("train", "test")}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "odd"))
    with pytest.raises(ValueError, match="no column 'image'; columns present: picture, label"):
        load_image_task("smnist", tmp_path / "odd")


def test_wrong_image_size_and_missing_split_are_errors(tmp_path, cifar):
    big = [Image.new("L", (32, 32))]
    save_split_dict(tmp_path / "big", "image", {"train": big, "test": big}, [[1], [2]])
    with pytest.raises(ValueError, match="train split, example 0: image is 32x32, expected 28x28"):
        load_image_task("smnist", tmp_path / "big")
    datasets.Dataset.from_dict({"label": [1]}).save_to_disk(str(tmp_path / "single"))
    with pytest.raises(ValueError, match="splits 'train' and 'test'"):
        load_image_task("smnist", tmp_path / "single")


def test_missing_local_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ylecun/mnist"):
        load_image_task("smnist", tmp_path / "absent")
