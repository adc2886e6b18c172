"""IMDB (LRA Text) and AAN (LRA Retrieval) at character level, on tiny data in the real formats."""
import pytest
import torch
from s4_reference import char_ids

from spikessm.data.base import collate
from spikessm.data.retrieval import load_aan
from spikessm.data.text import load_imdb
from spikessm.data.vocab import CharVocab


@pytest.fixture
def datasets():
    return pytest.importorskip("datasets")  # an optional dependency (spikessm[data]); AAN does not need it

# "a" x 6 and "b" x 3 in train; "c" once; "é" x 3 (non-ASCII); "z" only in test.
IMDB_TRAIN = {"text": ["aab", "aaé", "bbc", "aaéé"], "label": [0, 1, 0, 1]}
IMDB_TEST = {"text": ["zab", "abcabcabc"], "label": [1, 0]}


def _save_imdb(datasets, path, train=IMDB_TRAIN, test=IMDB_TEST):
    splits = {"train": datasets.Dataset.from_dict(train), "test": datasets.Dataset.from_dict(test)}
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


def test_char_vocab_ids_and_min_freq():
    # s4: <pad> 0, <unk> 1, <eos> 2, then by count ("a" 6, then "b" and "é" 3 each: code point), "c" (once) left out.
    vocab = CharVocab.build(["aab", "aaé", "bbc", "aaéé"], min_freq=3, max_length=100)
    assert vocab.chars == ["a", "b", "é"] and vocab.size == 6
    assert vocab.encode("abézc", 100).tolist() == [3, 4, 5, 1, 1, 2]
    assert vocab.encode("abézc", 3).tolist() == [3, 4, 2]  # max_length - 1 characters, then the EOS
    ranked = CharVocab.build(["zzzab", "b"], min_freq=1, max_length=100)
    assert ranked.chars == ["z", "b", "a"]  # descending count, not code point
    assert CharVocab.build(["zzzab", "b"], min_freq=1, max_length=100, conventions="spikessm-0.1").chars == [
        "a", "b", "z"]
    # Counting sees only the characters a sequence holds: max_length - 1 with the EOS.
    assert CharVocab.build(["aab", "aaé", "bbc", "aaéé"], min_freq=3, max_length=3).chars == ["a"]
    # spikessm-0.1: ids from 2 in code-point order, no EOS, max_length characters.
    old = CharVocab.build(["aab", "aaé", "bbc", "aaéé"], min_freq=3, max_length=100, conventions="spikessm-0.1")
    assert old.chars == ["a", "b", "é"] and old.size == 5
    assert old.encode("abézc", 100).tolist() == [2, 3, 4, 1, 1] and old.encode("abézc", 2).tolist() == [2, 3]
    assert CharVocab.build(["aab", "aaé", "bbc", "aaéé"], min_freq=3, max_length=2,
                           conventions="spikessm-0.1").chars == ["a"]


def test_imdb_from_a_saved_dataset_as_s4(datasets, tmp_path):
    task = load_imdb(_save_imdb(datasets, tmp_path / "imdb"), min_freq=3, max_length=5)
    vocab, expected = char_ids(IMDB_TRAIN["text"], IMDB_TRAIN["text"] + IMDB_TEST["text"], l_max=5, min_freq=3)
    assert (task.n_classes, task.vocab_size, task.val, task.pair) == (2, len(vocab), None, False)
    assert [len(task.train), len(task.test)] == [4, 2]
    assert [task.train[i][1] for i in range(4)] == [0, 1, 0, 1] and task.test[0][1] == 1
    assert [x.tolist() for x, _ in task.train] + [x.tolist() for x, _ in task.test] == expected
    assert task.train[1][0].tolist() == [3, 3, 5, 2] and task.train[1][0].dtype == torch.int64  # a a é <eos>
    assert task.test[1][0].tolist() == [3, 4, 1, 3, 2]  # "abca" + <eos>: cut to max_length 5
    assert task.truncated == {"train": 0, "test": 1}


def test_imdb_from_a_saved_dataset_as_spikessm_0_1(datasets, tmp_path):
    task = load_imdb(_save_imdb(datasets, tmp_path / "imdb"), min_freq=3, max_length=5, conventions="spikessm-0.1")
    assert (task.n_classes, task.vocab_size, task.val, task.pair) == (2, 5, None, False)
    assert task.train[1][0].tolist() == [2, 2, 4] and task.train[1][0].dtype == torch.int64
    assert task.test[0][0].tolist() == [1, 2, 3] and task.test[0][1] == 1  # "z" never in train: unknown
    assert task.test[1][0].tolist() == [2, 3, 1, 2, 3]  # truncated to max_length 5


def test_imdb_collate_shapes(datasets, tmp_path):
    task = load_imdb(_save_imdb(datasets, tmp_path / "imdb"), min_freq=1)
    batch = collate([task.train[i] for i in range(4)])
    assert batch["inputs"].shape == (4, 5) and batch["lengths"].tolist() == [4, 4, 4, 5]  # with the <eos>
    assert batch["inputs"][0, 4] == 0 and batch["labels"].tolist() == [0, 1, 0, 1]


def test_imdb_missing_column_or_bad_label(datasets, tmp_path):
    no_label = {"text": ["ab"], "sentiment": [0]}
    with pytest.raises(ValueError, match="split train: no column 'label'"):
        load_imdb(_save_imdb(datasets, tmp_path / "a", train=no_label))
    bad = {"text": ["ab", "cd"], "label": [0, 2]}
    with pytest.raises(ValueError, match="split test row 1: label 2 is not 0 or 1"):
        load_imdb(_save_imdb(datasets, tmp_path / "b", test=bad))


def test_imdb_unreachable_hub_says_how_to_save(datasets, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match="save_to_disk"):
        load_imdb("stanfordnlp/imdb")


# --- AAN ---

AAN_TRAIN = ["1.0\tp1\tp2\taab\tab", "0.0\tp3\tp4\tbba\taaz"]  # a x 6, b x 4, z x 1


def _write_aan(root, train=AAN_TRAIN, val=("0\tp5\tp6\tab\tba",), test=("1\tp7\tp8\tzzz\tabab",)):
    folder = root / "tsv_data"
    folder.mkdir(parents=True)
    for name, lines in (("train", train), ("eval", val), ("test", test)):
        (folder / f"new_aan_pairs.{name}.tsv").write_text("".join(line + "\n" for line in lines))
    return root


def _aan_expected(root, l_max, min_freq):
    """(vocab, {split: [((ids1, ids2), label)]}) by s4's AAN rules from the files under root/tsv_data."""
    rows = {}
    for split in ("train", "eval", "test"):
        lines = (root / "tsv_data" / f"new_aan_pairs.{split}.tsv").read_text().splitlines()
        rows[split] = [line.split("\t") for line in lines]
    train_texts = [r[3] for r in rows["train"]] + [r[4] for r in rows["train"]]  # tokens1 + tokens2
    vocab, _ = char_ids(train_texts, [], l_max, min_freq)
    out = {}
    for split, name in (("train", "train"), ("val", "eval"), ("test", "test")):
        out[split] = [((char_ids(train_texts, [r[3]], l_max, min_freq)[1][0],
                        char_ids(train_texts, [r[4]], l_max, min_freq)[1][0]), int(float(r[0])))
                      for r in rows[name]]
    return vocab, out


def test_aan_pairs_labels_and_ids_as_s4(tmp_path):
    root = _write_aan(tmp_path)
    task = load_aan(root, max_length=4)  # 3 characters + <eos>; min_freq 1: "z", seen once, has an id
    vocab, expected = _aan_expected(root, l_max=4, min_freq=1)
    assert (task.n_classes, task.vocab_size, task.pair) == (2, len(vocab), True) and len(vocab) == 6
    for split in ("train", "val", "test"):
        assert [((x1.tolist(), x2.tolist()), label) for (x1, x2), label in getattr(task, split)] == expected[split]
    (x1, x2), label = task.train[0]
    assert label == 1 and x1.tolist() == [3, 3, 4, 2] and x2.tolist() == [3, 4, 2] and x1.dtype == torch.int64
    assert task.train[1][0][1].tolist() == [3, 3, 5, 2]  # "aaz": "a" 6, "b" 4, "z" 1
    assert task.test[0][0][1].tolist() == [3, 4, 3, 2] and task.truncated == {"train": 0, "val": 0, "test": 1}
    cut = load_aan(root, max_length=3)  # 2 characters: the "z" of "aaz" is never counted
    assert cut.vocab_size == 5 and cut.train[1][0][1].tolist() == [3, 3, 2] and cut.truncated["train"] == 3


def test_aan_keeps_3999_characters_and_the_eos_by_default(tmp_path):
    long_text = "ab" * 2100  # 4200 characters
    root = _write_aan(tmp_path, train=[f"1.0\tp1\tp2\t{long_text}\tab"])
    (x1, x2), _ = load_aan(root).train[0]
    assert len(x1) == 4000 and x1[-1] == 2 and x1[:-1].tolist() == [3, 4] * 1999 + [3] and len(x2) == 3


def test_aan_pairs_labels_and_ids_as_spikessm_0_1(tmp_path):
    task = load_aan(_write_aan(tmp_path), min_freq=2, max_length=3, conventions="spikessm-0.1")
    assert (task.n_classes, task.vocab_size, task.pair) == (2, 4, True)  # pad, unknown, "a", "b"
    assert [len(task.train), len(task.val), len(task.test)] == [2, 1, 1]
    (x1, x2), label = task.train[0]
    assert label == 1 and x1.tolist() == [2, 2, 3] and x2.tolist() == [2, 3] and x1.dtype == torch.int64
    assert task.train[1][0][1].tolist() == [2, 2, 1]  # "z" unknown
    assert task.val[0][1] == 0 and task.test[0][1] == 1
    assert task.test[0][0][1].tolist() == [2, 3, 2]  # truncated to 3
    assert load_aan(tmp_path, conventions="spikessm-0.1").vocab_size == 2  # its default min_freq is 15


def test_aan_second_load_reads_the_cache_until_a_file_changes(tmp_path, monkeypatch):
    from spikessm.data import retrieval

    root = _write_aan(tmp_path)
    first = load_aan(root, min_freq=2, max_length=3)
    monkeypatch.setattr(retrieval, "read_aan_rows", lambda path: pytest.fail(f"parsed {path.name} again"))
    cached = load_aan(root, min_freq=2, max_length=3)
    assert cached.vocab_size == first.vocab_size and len(cached.train) == len(first.train)
    for a, b in zip([cached.train[i] for i in range(2)] + [cached.test[0]],
                    [first.train[i] for i in range(2)] + [first.test[0]]):
        assert torch.equal(a[0][0], b[0][0]) and torch.equal(a[0][1], b[0][1]) and a[1] == b[1]
    monkeypatch.undo()
    old = load_aan(root, min_freq=2, max_length=3, conventions="spikessm-0.1")  # another cache entry, not s4's
    assert (old.vocab_size, first.vocab_size) == (4, 5) and old.train[0][0][0].tolist() == [2, 2, 3]
    (root / "tsv_data" / "new_aan_pairs.test.tsv").write_text("0\tp7\tp8\tbb\tbb\n")
    assert load_aan(root, min_freq=2, max_length=3).test[0][1] == 0


def test_aan_files_directly_in_the_folder(tmp_path):
    _write_aan(tmp_path)
    assert len(load_aan(tmp_path / "tsv_data", min_freq=1).train) == 2


def test_aan_collate_shapes(tmp_path):
    task = load_aan(_write_aan(tmp_path), min_freq=1)
    batch = collate([task.train[0], task.train[1]])
    assert batch["inputs"].shape == (2, 4) and batch["inputs2"].shape == (2, 4)  # with the <eos>
    assert batch["lengths"].tolist() == [4, 4] and batch["lengths2"].tolist() == [3, 4]
    assert batch["labels"].tolist() == [1, 0] and batch["inputs2"][0, 3] == 0


@pytest.mark.parametrize(
    "line, message",
    [
        ("1\tp1\tp2\tab", "new_aan_pairs.train.tsv line 2: expected 5 tab-separated columns .* found 4"),
        ("yes\tp1\tp2\tab\tcd", "new_aan_pairs.train.tsv line 2: label 'yes' is not 0 or 1"),
        ("2.0\tp1\tp2\tab\tcd", "new_aan_pairs.train.tsv line 2: label '2.0' is not 0 or 1"),
        ("1\tp1\tp2\tab\t", "new_aan_pairs.train.tsv line 2: text2 is empty"),
    ],
)
def test_aan_malformed_lines_name_file_and_line(tmp_path, line, message):
    _write_aan(tmp_path, train=[AAN_TRAIN[0], line])
    with pytest.raises(ValueError, match=message):
        load_aan(tmp_path)


def test_aan_invalid_utf8_names_file_and_line(tmp_path):
    _write_aan(tmp_path)
    path = tmp_path / "tsv_data" / "new_aan_pairs.test.tsv"
    path.write_bytes(b"1\tp7\tp8\tab\tab\n0\tp1\tp2\t\xff\tab\n")
    with pytest.raises(ValueError, match="new_aan_pairs.test.tsv line 2: not UTF-8"):
        load_aan(tmp_path)


def test_aan_missing_directory_says_where_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="lra_release"):
        load_aan(tmp_path / "nowhere")
