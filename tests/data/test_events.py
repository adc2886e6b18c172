"""SHD (HDF5) and N-MNIST (40-bit .bin events) written here in their release formats, binned into counts."""
import gzip

import numpy as np
import pytest
import torch

import spikessm.data.events as events
from spikessm.data.base import collate
from spikessm.data.releases import find_release, load_release

h5py = pytest.importorskip("h5py")  # the optional extra spikessm[events]

# --- SHD ------------------------------------------------------------------------------------------------------


def write_shd(path, examples, labels, *, times_dtype=np.float16, units_dtype=np.uint16, skip=()):
    """An SHD file as released: spikes/times and spikes/units variable-length arrays, labels, extra/*."""
    with h5py.File(path, "w") as f:
        if "spikes/times" not in skip:
            times = f.create_dataset("spikes/times", (len(examples),), dtype=h5py.vlen_dtype(times_dtype))
            for i, (t, _) in enumerate(examples):
                times[i] = np.asarray(t, dtype=times_dtype)
        if "spikes/units" not in skip:
            units = f.create_dataset("spikes/units", (len(examples),), dtype=h5py.vlen_dtype(units_dtype))
            for i, (_, u) in enumerate(examples):
                units[i] = np.asarray(u, dtype=units_dtype)
        if "labels" not in skip:
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(examples), dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.array([b"english zero"] * 20))


# (times in seconds, units): exactly representable in float16.
SHD_TRAIN = [([0.0, 0.0, 0.0078125, 0.5, 2.0], [0, 0, 699, 3, 5]), ([0.25], [10]), ([], []),
             ([0.001953125, 0.0009765625], [1, 2])]
SHD_TEST = [([0.125, 0.125], [7, 7])]


@pytest.fixture
def shd_dir(tmp_path):
    write_shd(tmp_path / "shd_train.h5", SHD_TRAIN, [0, 19, 5, 3])
    write_shd(tmp_path / "shd_test.h5", SHD_TEST, [11])
    return tmp_path


def test_shd_is_binned_spike_counts(shd_dir):
    task = load_release("shd", shd_dir, val_fraction=0.0)  # 1 ms bins x 1000
    assert (task.name, task.n_classes, task.d_input, task.max_length, task.vocab_size, task.val) == (
        "shd", 20, 700, 1000, None, None)
    x, label = task.train[0]
    assert x.shape == (1000, 700) and x.dtype == torch.float32 and label == 0
    expected = torch.zeros(1000, 700)
    expected[0, 0] = 2  # two spikes of unit 0 in the first bin
    expected[7, 699] = 1  # 7.8 ms
    expected[500, 3] = 1  # 0.5 s; the spike at 2 s is past 1000 ms and dropped
    assert torch.equal(x, expected)
    assert task.train[2][0].abs().sum() == 0 and task.train[2][1] == 5  # an example without spikes
    x, _ = task.train[3]
    assert x[1, 1] == 1 and x[0, 2] == 1 and x.sum() == 2  # unit 1 at 1.95 ms, unit 2 at 0.98 ms
    assert task.test[0][0][125, 7] == 2 and task.test[0][1] == 11
    batch = collate([task.train[i] for i in range(4)])
    assert batch["inputs"].shape == (4, 1000, 700) and batch["lengths"].tolist() == [1000] * 4
    assert batch["labels"].tolist() == [0, 19, 5, 3]


def test_shd_bin_width_count_and_channel_pooling(shd_dir):
    task = load_release("shd", shd_dir, bin_ms=250.0, n_bins=9, pool_channels=5, val_fraction=0.0)
    assert (task.d_input, task.max_length) == (140, 9)
    x, _ = task.train[0]
    assert x.shape == (9, 140) and x.sum() == 5  # 2 s is in bin 8 of 250 ms bins
    assert x[0, 0] == 2 and x[0, 139] == 1 and x[2, 0] == 1 and x[8, 1] == 1  # units 0-4 -> channel 0, 699 -> 139
    assert task.train[1][0][1, 2] == 1  # 0.25 s is the start of bin 1; unit 10 -> channel 2


def test_bin_edges_count_in_the_later_bin():
    index, keep = events.event_index(np.array([0.003, 0.0029999, 0.7, 0.1]), np.array([1, 2, 3, 4]),
                                     bin_width=0.001, n_bins=600, n_channels=10)
    assert keep.tolist() == [True, True, False, True]
    assert index.tolist() == [3 * 10 + 1, 2 * 10 + 2, 100 * 10 + 4]


def test_shd_val_split_and_subset(shd_dir):
    task = load_release("shd", shd_dir, val_fraction=0.5, seed=1)
    assert len(task.train) == 2 and len(task.val) == 2
    everything = load_release("shd", shd_dir, val_fraction=0.0)
    full = {everything.train[i][1]: everything.train[i][0] for i in range(4)}  # labels are distinct
    for part in (task.train, task.val):
        for x, label in part:
            assert torch.equal(x, full[label])
        assert part.labels.tolist() == [label for _, label in part]  # what the trainer's majority baseline reads
    assert sorted(task.train.labels.tolist() + task.val.labels.tolist()) == [0, 3, 5, 19]


@pytest.mark.parametrize("change, message", [
    (dict(examples=[([0.1], [700])]), r"example 0 has unit 700, not in 0\.\.699"),
    (dict(examples=[([0.1, 0.2], [1])]), "example 0 has 2 spike times but 1 units"),
    (dict(examples=[([-0.1], [1])]), "negative or not finite"),
    (dict(examples=[([np.inf], [1])]), "negative or not finite"),
    (dict(labels=[20]), r"label 20 of example 0 is not in 0\.\.19"),
    (dict(skip=("spikes/units",)), "no dataset spikes/units"),
    (dict(skip=("labels",)), "no dataset labels"),
    (dict(labels=[1, 2]), "1 spikes/times, 1 spikes/units and 2 labels"),
    (dict(units_dtype=np.float32), "spikes/units is .*expected variable-length integer arrays"),
])
def test_bad_shd_files_name_the_file_and_problem(shd_dir, change, message):
    path = shd_dir / "shd_test.h5"
    write_shd(path, change.pop("examples", SHD_TEST), change.pop("labels", [1]), **change)
    with pytest.raises(ValueError, match=message) as error:
        load_release("shd", shd_dir)
    assert str(path) in str(error.value)


def test_shd_gzipped_as_released(shd_dir):
    plain = load_release("shd", shd_dir, val_fraction=0.0)
    for name in ("shd_train.h5", "shd_test.h5"):
        (shd_dir / f"{name}.gz").write_bytes(gzip.compress((shd_dir / name).read_bytes()))
        (shd_dir / name).unlink()
    zipped = load_release("shd", shd_dir, val_fraction=0.0)
    assert all(torch.equal(plain.train[i][0], zipped.train[i][0]) for i in range(4))
    assert torch.equal(plain.test[0][0], zipped.test[0][0])
    path = shd_dir / "shd_test.h5.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"shd_test\.h5\.gz: broken gzip data"):
        load_release("shd", shd_dir)


def test_shd_missing_or_not_hdf5(tmp_path, shd_dir):
    assert find_release("shd", shd_dir) == shd_dir and find_release("shd", tmp_path / "none") is None
    (shd_dir / "shd_test.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"no shd_test\.h5\[\.gz\] in .*zenkelab"):
        load_release("shd", shd_dir)
    (shd_dir / "shd_test.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match=r"shd_test\.h5: not a readable HDF5 file"):
        load_release("shd", shd_dir)


def test_shd_settings_are_checked(shd_dir):
    for settings, message in ((dict(bin_ms=0.0), "bin_ms"), (dict(n_bins=0), "n_bins"),
                              (dict(n_bins=10.0), "n_bins"), (dict(pool_channels=0), "pool_channels"),
                              (dict(val_fraction=1.0), "val_fraction")):
        with pytest.raises(ValueError, match=message):
            load_release("shd", shd_dir, **settings)


def test_shd_without_h5py_names_the_pip_command(shd_dir, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ImportError, match=r"pip install spikessm\[events\]"):
        load_release("shd", shd_dir)


def test_shd_second_load_reads_the_cache(shd_dir, monkeypatch):
    first = load_release("shd", shd_dir, val_fraction=0.0)

    def refuse(*args, **kwargs):
        raise AssertionError("the HDF5 files were read again")

    monkeypatch.setattr(events, "read_shd_file", refuse)
    second = load_release("shd", shd_dir, val_fraction=0.0)
    assert all(torch.equal(first.train[i][0], second.train[i][0]) for i in range(4))
    with pytest.raises(AssertionError, match="read again"):  # other binning: another cache entry
        load_release("shd", shd_dir, n_bins=500)


# --- N-MNIST --------------------------------------------------------------------------------------------------


def nmnist_bytes(events_list) -> bytes:
    """(x, y, polarity, t_us) events -> the release's 5 bytes each: x, y, p << 7 | t >> 16, t >> 8, t."""
    out = bytearray()
    for x, y, p, t in events_list:
        out += bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


# {split folder: {digit: [events of each file]}}
NMNIST = {
    "Train": {"0": [[(0, 0, 0, 0), (33, 33, 1, 299_999), (5, 2, 1, 1500), (5, 2, 1, 1999)]],
              "3": [[(1, 0, 0, 300_000)], [(2, 1, 0, 0x7FFFFF)]],
              "9": [[(0, 1, 1, 999)]]},
    "Test": {"7": [[(10, 20, 0, 150_000), (10, 20, 0, 150_001)]]},
}


def write_nmnist(top, layout=NMNIST):
    for folder, digits in layout.items():
        for digit, files in digits.items():
            (top / folder / digit).mkdir(parents=True, exist_ok=True)
            for k, file_events in enumerate(files):
                (top / folder / digit / f"{k:05d}.bin").write_bytes(nmnist_bytes(file_events))
    return top


def test_read_nmnist_file_decodes_the_40_bit_events(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(bytes([33, 7, 0x80 | 0x12, 0x34, 0x56]) + bytes([0, 33, 0x7F, 0xFF, 0xFF]))
    decoded = events.read_nmnist_file(path)
    assert decoded["x"].tolist() == [33, 0] and decoded["y"].tolist() == [7, 33]
    assert decoded["polarity"].tolist() == [1, 0] and decoded["t_us"].tolist() == [0x123456, 0x7FFFFF]
    assert events.nmnist_channels(decoded).tolist() == [1156 + 7 * 34 + 33, 33 * 34]


def test_nmnist_is_binned_spike_counts(tmp_path):
    write_nmnist(tmp_path)
    task = load_release("nmnist", tmp_path, val_fraction=0.0)  # 1 ms bins x 300
    assert (task.name, task.n_classes, task.d_input, task.max_length, task.vocab_size) == (
        "nmnist", 10, 2312, 300, None)
    assert len(task.train) == 4 and len(task.test) == 1
    assert [task.train[i][1] for i in range(4)] == [0, 3, 3, 9]  # by digit folder, then file name
    x, _ = task.train[0]
    assert x.shape == (300, 2312) and x.dtype == torch.float32 and x.sum() == 4
    assert x[0, 0] == 1 and x[299, 2311] == 1 and x[1, 1156 + 2 * 34 + 5] == 2  # 1.5 ms and 1.999 ms: bin 1
    assert task.train[1][0].sum() == 0  # 300 ms is past the 300 bins
    assert task.train[3][0][0, 1156 + 34] == 1
    assert task.test[0][0][150, 20 * 34 + 10] == 2 and task.test[0][1] == 7
    coarse = load_release("nmnist", tmp_path, bin_ms=100.0, n_bins=100, val_fraction=0.0)
    assert coarse.train[2][0][83, 34 + 2] == 1  # t = 8.388607 s, the largest 23-bit timestamp
    assert collate([task.train[i] for i in range(4)])["inputs"].shape == (4, 300, 2312)


@pytest.mark.parametrize("content, message", [
    (bytes(7), "7 bytes is not a whole number of 5-byte events"),
    (bytes([34, 0, 0, 0, 0]), r"event 0 has x = 34, not in 0\.\.33"),
    (bytes(5) + bytes([0, 200, 0, 0, 0]), r"event 1 has y = 200"),
])
def test_bad_nmnist_files_name_the_file_and_problem(tmp_path, content, message):
    write_nmnist(tmp_path)
    path = tmp_path / "Test" / "7" / "00000.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        load_release("nmnist", tmp_path)
    assert str(path) in str(error.value)


def test_nmnist_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Train: no such folder.*Train/ and Test/"):
        load_release("nmnist", tmp_path)
    assert find_release("nmnist", tmp_path) is None
    write_nmnist(tmp_path, {"Train": NMNIST["Train"], "Test": {}})
    (tmp_path / "Test").mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError, match=r"Test: no <digit>/<id>\.bin files"):
        load_release("nmnist", tmp_path)
    write_nmnist(tmp_path, {"Test": {"eleven": [[(0, 0, 0, 0)]]}})
    with pytest.raises(ValueError, match="class folders are named 0-9, found 'eleven'"):
        load_release("nmnist", tmp_path)


def test_nmnist_cache_and_val_split(tmp_path, monkeypatch):
    write_nmnist(tmp_path)
    first = load_release("nmnist", tmp_path, val_fraction=0.5, seed=2)
    assert len(first.train) == 2 and len(first.val) == 2

    def refuse(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(events, "read_nmnist_file", refuse)
    second = load_release("nmnist", tmp_path, val_fraction=0.5, seed=2)
    for a, b in ((first.train, second.train), (first.val, second.val)):
        assert all(torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1] for i in range(2))


def test_binned_counts_feed_a_feature_model(shd_dir):
    """The counts are the linear encoder's features, as pixels are for the image tasks."""
    from spikessm.models import build_model

    task = load_release("shd", shd_dir, bin_ms=10.0, n_bins=40, pool_channels=7, val_fraction=0.0)
    model = build_model("lif-s4d", n_classes=task.n_classes, d_input=task.d_input, d_model=8, n_layers=1,
                        d_state=4, backend="torch")
    batch = collate([task.train[i] for i in range(4)])
    logits = model(inputs=batch["inputs"], lengths=batch["lengths"])
    assert logits.shape == (4, 20) and torch.isfinite(logits).all()
