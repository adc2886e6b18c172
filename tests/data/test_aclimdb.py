"""LRA Text from the aclImdb release folder layout, written here file by file."""
import pytest
import torch
from s4_reference import char_ids

import spikessm.data.aclimdb as aclimdb
from spikessm.data.base import collate
from spikessm.data.releases import find_release, load_release
from spikessm.data.text import load_imdb

# (split, folder, file name, text): "a" x 6, "b" x 3, "é" x 3 in train (as in test_text_retrieval's IMDB data).
REVIEWS = [
    ("train", "neg", "0_3.txt", "aab"), ("train", "pos", "0_9.txt", "aaé"), ("train", "neg", "1_1.txt", "bbc"),
    ("train", "pos", "10_7.txt", "aaéé"), ("test", "pos", "0_10.txt", "zab"),
    ("test", "neg", "0_2.txt", "abc<br />abcabc"),
]


def write_aclimdb(top, reviews=REVIEWS):
    folder = top / "aclImdb"
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            (folder / split / label).mkdir(parents=True, exist_ok=True)
    (folder / "train" / "unsup").mkdir()
    (folder / "train" / "unsup" / "0_0.txt").write_text("never read")
    (folder / "imdb.vocab").write_text("the\n")
    (folder / "train" / "labeledBow.feat").write_text("0 0:1\n")
    for split, label, name, text in reviews:
        (folder / split / label / name).write_bytes(text.encode())
    return folder


def test_reviews_are_read_in_order_with_the_folder_labels(tmp_path):
    folder = write_aclimdb(tmp_path)
    assert find_release("text", tmp_path) == folder and find_release("text", folder) == folder
    task = load_release("text", tmp_path, min_freq=3, max_length=5)
    # neg then pos, each by (id, rating): train/neg 0_3, 1_1; train/pos 0_9, 10_7; test/neg 0_2, test/pos 0_10.
    train = ["aab", "bbc", "aaé", "aaéé"]
    vocab, expected = char_ids(train, train + ["abc<br />abcabc", "zab"], l_max=5, min_freq=3)
    assert (task.name, task.n_classes, task.vocab_size, task.val, task.max_length) == ("imdb", 2, len(vocab), None, 5)
    assert [task.train[i][1] for i in range(4)] == [0, 0, 1, 1] and [y for _, y in task.test] == [0, 1]
    assert [x.tolist() for x, _ in task.train] + [x.tolist() for x, _ in task.test] == expected
    assert task.test[0][0].tolist() == [3, 4, 1, 1, 2]  # "abc<" + <eos>: max_length 5
    assert task.truncated == {"train": 0, "test": 1}
    batch = collate([task.train[i] for i in range(4)])
    assert batch["inputs"].dtype == torch.int64 and batch["lengths"].tolist() == [4, 4, 4, 5]
    old = load_release("text", tmp_path, min_freq=3, max_length=5, conventions="spikessm-0.1")
    assert old.vocab_size == 5
    assert [old.train[i][0].tolist() for i in range(4)] == [[2, 2, 3], [3, 3, 1], [2, 2, 4], [2, 2, 4, 4]]
    assert old.test[0][0].tolist() == [2, 3, 1, 1, 3] and old.test[0][1] == 0  # "abc<b": max_length 5
    assert old.test[1][0].tolist() == [1, 2, 3] and old.test[1][1] == 1


def test_same_encoding_as_the_hub_route(tmp_path):
    datasets = pytest.importorskip("datasets")
    write_aclimdb(tmp_path)
    # The release's order: neg before pos, each by (id, rating).
    ordered = sorted(REVIEWS, key=lambda r: (r[1], *map(int, r[2][:-4].split("_"))))
    splits = {split: datasets.Dataset.from_dict({"text": [r[3] for r in ordered if r[0] == split],
                                                 "label": [int(r[1] == "pos") for r in ordered if r[0] == split]})
              for split in ("train", "test")}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "hub"))
    for conventions in ("s4", "spikessm-0.1"):
        hub = load_imdb(tmp_path / "hub", min_freq=2, max_length=8, conventions=conventions)
        release = load_release("text", tmp_path, min_freq=2, max_length=8, conventions=conventions)
        assert hub.vocab_size == release.vocab_size and hub.truncated == release.truncated
        for name in ("train", "test"):
            a, b = getattr(hub, name), getattr(release, name)
            assert [(x.tolist(), y) for x, y in a] == [(x.tolist(), y) for x, y in b]


@pytest.mark.parametrize("split, label, name, content, message", [
    ("train", "neg", "7_8.txt", b"x", r"rating 8 does not belong in neg/ \(1-4\)"),
    ("test", "pos", "3_2.txt", b"x", r"rating 2 does not belong in pos/ \(7-10\)"),
    ("train", "pos", "review.txt", b"x", r"not a review file name"),
    ("test", "neg", "5_1.txt", b"\xff\xfe", "not UTF-8"),
    ("test", "neg", "5_1.txt", b"  \n", "empty review"),
])
def test_bad_reviews_name_the_file(tmp_path, split, label, name, content, message):
    folder = write_aclimdb(tmp_path)
    path = folder / split / label / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        load_release("text", tmp_path, min_freq=1)
    assert str(path) in str(error.value)


def test_missing_or_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="aclImdb_v1.tar.gz"):
        load_release("text", tmp_path)
    assert find_release("text", tmp_path) is None
    folder = write_aclimdb(tmp_path, [r for r in REVIEWS if r[1] != "pos" or r[0] != "test"])
    with pytest.raises(ValueError, match="test/pos: no review files"):
        load_release("text", tmp_path)
    assert folder.is_dir()


@pytest.mark.parametrize("inside", [False, True])
def test_second_load_reads_the_cache(tmp_path, monkeypatch, inside):
    folder = write_aclimdb(tmp_path)
    data_dir = folder if inside else tmp_path  # the cache folder inside aclImdb/ must not change the key
    first = load_release("text", data_dir, min_freq=1)

    def refuse(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(aclimdb, "read_review", refuse)
    second = load_release("text", data_dir, min_freq=1)
    assert second.vocab_size == first.vocab_size
    assert [x.tolist() for x, _ in second.train] == [x.tolist() for x, _ in first.train]
    with pytest.raises(AssertionError, match="read again"):  # other settings: another cache entry
        load_release("text", data_dir, min_freq=2)
    with pytest.raises(AssertionError, match="read again"):  # other conventions too
        load_release("text", data_dir, min_freq=1, conventions="spikessm-0.1")
    monkeypatch.undo()
    (folder / "test" / "pos" / "0_10.txt").write_text("zzzzzz")  # another size: the files are read again
    assert load_release("text", data_dir, min_freq=1).test[1][0].tolist() == [1] * 6 + [2]
