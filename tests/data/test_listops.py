"""ListOps: generator (official specification), independent evaluator, tokenizer, loader and its cache."""
import random

import pytest
import torch
from s4_reference import SPECIALS, listops_tokens, numericalize, torchtext_vocab

from spikessm.data import listops
from spikessm.data.base import collate
from spikessm.data.listops import (
    LISTOPS_VOCAB,
    LISTOPS_VOCAB_SIZE,
    evaluate_listops,
    generate_listops,
    generate_tree,
    load_listops,
    to_source,
    tokenize_listops,
    tree_value,
    write_listops,
)

# Small trees: generation takes milliseconds, lengths stay in a short range.
SMALL = dict(max_depth=5, max_args=4, min_length=10, max_length=60)


@pytest.fixture(scope="module")
def small_splits():
    return generate_listops(300, 40, 40, seed=3, **SMALL)


@pytest.fixture
def data_dir(tmp_path):
    """A folder in the official layout: tmp/listops-1000/basic_{train,val,test}.tsv."""
    write_listops(tmp_path / "listops-1000", 50, 10, 10, seed=1, **SMALL)
    return tmp_path


# --- Generator ---


def test_source_string_is_the_official_pair_form():
    assert to_source(("[MAX", [2, 9])) == "( ( ( [MAX 2 ) 9 ) ] )"
    nested = ("[SM", [("[MIN", [3, 4]), 8])
    assert to_source(nested) == "( ( ( [SM ( ( ( [MIN 3 ) 4 ) ] ) ) 8 ) ] )"
    assert to_source(7) == "7"


def test_tree_value_follows_the_label_rules():
    assert tree_value(("[MED", [1, 2])) == 1  # numpy median 1.5, truncated
    assert tree_value(("[MED", [5, 2, 4, 3])) == 3
    assert tree_value(("[SM", [9, 8, 7])) == 4
    assert tree_value(("[MIN", [("[MAX", [2, 9]), 5])) == 5


def test_generate_tree_length_counts_tokens_without_parentheses():
    rng = random.Random(0)
    for _ in range(200):
        tree, length = generate_tree(rng, 1, 5, 4)
        assert length == len(tokenize_listops(to_source(tree)))


def test_at_max_depth_every_node_is_a_leaf():
    rng = random.Random(0)
    assert all(generate_tree(rng, 1, 1, 10)[1] == 1 for _ in range(100))


def test_generation_is_deterministic_per_seed(tmp_path):
    write_listops(tmp_path / "a", 30, 5, 5, seed=7, **SMALL)
    write_listops(tmp_path / "b", 30, 5, 5, seed=7, **SMALL)
    write_listops(tmp_path / "c", 30, 5, 5, seed=8, **SMALL)
    for name in ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "basic_train.tsv").read_bytes() != (tmp_path / "c" / "basic_train.tsv").read_bytes()


def test_split_sizes_uniqueness_and_length_bounds(small_splits):
    assert [len(small_splits[s]) for s in ("train", "val", "test")] == [300, 40, 40]
    sources = [source for split in small_splits.values() for source, _ in split]
    assert len(set(sources)) == len(sources)  # unique within and across splits
    lengths = [len(tokenize_listops(source)) for source in sources]
    assert min(lengths) > SMALL["min_length"] and max(lengths) < SMALL["max_length"]


def test_labels_agree_with_the_independent_evaluator(small_splits):
    for split in small_splits.values():
        for source, label in split:
            assert evaluate_listops(source) == label
    assert len({label for _, label in small_splits["train"]}) == 10


def test_impossible_settings_fail_fast():
    with pytest.raises(ValueError, match="longest possible tree"):
        generate_listops(10, 0, 0, max_depth=3, max_args=3, min_length=500, max_length=2000)
    with pytest.raises(ValueError, match="no tree can have"):
        generate_listops(10, 0, 0, min_length=30, max_length=31)
    # Possible but too many asked of a tiny space (trees of length 4: 4 operators x 100 value pairs).
    with pytest.raises(RuntimeError, match="unique examples after 5000 draws"):
        generate_listops(1000, 0, 0, max_depth=2, max_args=2, min_length=3, max_length=5, max_draws=5000)


def test_written_files_have_the_official_header(data_dir):
    lines = (data_dir / "listops-1000" / "basic_val.tsv").read_text().splitlines()
    assert lines[0] == "Source\tTarget" and len(lines) == 11
    source, target = lines[1].split("\t")
    assert evaluate_listops(source) == int(target)
    assert not list((data_dir / "listops-1000").glob(".*tmp"))  # no temporary file left behind


# --- Evaluator and tokenizer ---


@pytest.mark.parametrize(
    "source, value",
    [
        ("( ( ( [MAX 2 ) 9 ) ] )", 9),
        ("[MIN 4 2 7 ]", 2),
        ("[MED 1 2 ]", 1),
        ("[MED 2 3 4 5 ]", 3),
        ("[MED 9 1 5 ]", 5),
        ("[SM 9 8 7 ]", 4),
        ("[MAX 1 [MIN 8 [SM 5 5 ] ] 3 ]", 3),
        ("6", 6),
    ],
)
def test_evaluator_by_hand(source, value):
    assert evaluate_listops(source) == value


@pytest.mark.parametrize("source", ["[MAX 1 2", "[MAX ]", "1 2", "[MAX 1 ] ]", "[FOO 1 ]", ""])
def test_evaluator_rejects_malformed_input(source):
    with pytest.raises(ValueError, match="evaluate_listops"):
        evaluate_listops(source)


def test_tokenizer_keeps_the_closing_bracket_as_x():
    assert tokenize_listops("( ( ( [MAX 2 ) 9 ) ] )") == ["[MAX", "2", "9", "X"]
    # s4's tokenizer deletes the parentheses as characters, wherever they stand.
    assert tokenize_listops("( [MIN 1 )( 2 ] )") == listops_tokens("( [MIN 1 )( 2 ] )") == ["[MIN", "1", "2", "X"]
    ids = sorted(LISTOPS_VOCAB.values())
    assert ids == list(range(1, 16)) and LISTOPS_VOCAB_SIZE == 16  # id 0 is padding only
    assert LISTOPS_VOCAB["0"] == 1 and LISTOPS_VOCAB["9"] == 10 and LISTOPS_VOCAB["X"] == 15


# --- Loader ---


def _s4_expected(folder, l_max=2048):
    """{split: [(ids, label)]} and the vocabulary, computed from the files by s4's rules (s4_reference)."""
    rows = {}
    for split in ("train", "val", "test"):
        lines = (folder / f"basic_{split}.tsv").read_text().splitlines()[1:]
        rows[split] = [(listops_tokens(line.split("\t")[0]), int(line.split("\t")[1])) for line in lines]
    vocab = torchtext_vocab([tokens[: l_max - 1] for tokens, _ in rows["train"]], SPECIALS)
    return {split: [(numericalize(vocab, tokens, l_max), label) for tokens, label in r]
            for split, r in rows.items()}, vocab


def test_loader_reads_the_official_layout_as_s4(data_dir):
    task = load_listops(data_dir)
    expected, vocab = _s4_expected(data_dir / "listops-1000")
    assert (task.n_classes, task.vocab_size, task.max_length, task.pair) == (10, len(vocab), 2048, False)
    assert len(vocab) == 18  # <pad> <unk> <eos> + 15 tokens, as on the official files
    for split in ("train", "val", "test"):
        got = [(x.tolist(), label) for x, label in getattr(task, split)]
        assert got == expected[split], split
        assert task.truncated[split] == 0
    x, _ = task.train[0]
    assert x.dtype == torch.int64 and x[-1] == vocab["<eos>"] == 2
    # The files may also sit directly in the folder given.
    assert len(load_listops(data_dir / "listops-1000").train) == 50


def test_loader_reads_the_official_layout_as_spikessm_0_1(data_dir):
    task = load_listops(data_dir, conventions="spikessm-0.1")
    assert (task.n_classes, task.vocab_size, task.max_length, task.pair) == (10, 16, 2048, False)
    assert [len(task.train), len(task.val), len(task.test)] == [50, 10, 10]
    lines = (data_dir / "listops-1000" / "basic_train.tsv").read_text().splitlines()[1:]
    inverse = {i: token for token, i in LISTOPS_VOCAB.items()}
    for i, line in enumerate(lines):
        source, target = line.split("\t")
        x, label = task.train[i]
        assert x.dtype == torch.int64 and label == int(target)
        assert [inverse[int(t)] for t in x] == tokenize_listops(source)


def _write(folder, train, val, test):
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", train), ("val", val), ("test", test)):
        (folder / f"basic_{name}.tsv").write_text("Source\tTarget\n" + "".join(f"{line}\n" for line in lines))
    return folder


# "X" x 3; "1", "3", "7" x 2 each (a tie, broken by code point); "[MAX", "[MIN", "[SM" once each.
HAND_TRAIN = ["( ( ( [MAX 3 ) 7 ) ] )\t7", "( ( ( [MIN 3 ) 7 ) ] )\t3", "( ( ( [SM 1 ) 1 ) ] )\t2"]
HAND_TEST = ["( ( ( [MED 9 ) 1 ) ] )\t5"]  # "[MED" and "9" are not in train: <unk>


def test_s4_ids_by_count_then_code_point_and_unknown_tokens(tmp_path):
    folder = _write(tmp_path, HAND_TRAIN, HAND_TRAIN[:1], HAND_TEST)
    task = load_listops(folder)
    # By hand: <pad> 0 <unk> 1 <eos> 2, X 3, then "1" 4, "3" 5, "7" 6, then "[MAX" 7, "[MIN" 8, "[SM" 9.
    assert task.vocab_size == 10
    assert [x.tolist() for x, _ in task.train] == [[7, 5, 6, 3, 2], [8, 5, 6, 3, 2], [9, 4, 4, 3, 2]]
    assert task.test[0][0].tolist() == [1, 1, 4, 3, 2] and task.test[0][1] == 5
    expected, vocab = _s4_expected(folder)
    assert len(vocab) == 10 and [x.tolist() for x, _ in task.test] == [ids for ids, _ in expected["test"]]


def test_s4_cuts_long_sequences_counts_them_and_counts_the_vocabulary_after_the_cut(tmp_path):
    folder = _write(tmp_path, HAND_TRAIN + ["( [MAX 1 ] )\t1"], ["( ( ( [SM 1 ) 1 ) ] )\t2"], HAND_TEST)
    with pytest.warns(UserWarning, match=r"ListOps: 3 of 4 train, 1 of 1 val, 1 of 1 test examples have more than "
                                         r"max_length - 1 \(3\) tokens"):
        task = load_listops(folder, max_length=4)
    assert task.truncated == {"train": 3, "val": 1, "test": 1}
    expected, vocab = _s4_expected(folder, l_max=4)
    for split in ("train", "val", "test"):
        assert [(x.tolist(), label) for x, label in getattr(task, split)] == expected[split]
    # Only the uncut train example keeps its "X": counted once, it ties with "[MIN" and "[SM" and comes first
    # ("X" < "[" by code point), behind "1" (3), "3", "7", "[MAX" (2 each).
    assert vocab["X"] == 7 and task.vocab_size == len(vocab) == 10
    assert all(len(x) <= 4 for x, _ in task.train) and task.train[0][0].tolist() == [6, 4, 5, 2]
    with pytest.warns(UserWarning, match="ListOps: 3 of 4 train"):  # the cached load says it again
        assert load_listops(folder, max_length=4).truncated == task.truncated


def test_loader_reads_crlf_line_ends(data_dir):
    # The official files were written by csv.writer, which ends lines with "\r\n".
    path = data_dir / "listops-1000" / "basic_test.tsv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert len(load_listops(data_dir).test) == 10


def test_collate_gives_the_documented_shapes(data_dir):
    task = load_listops(data_dir)
    examples = [task.train[i] for i in range(5)]
    batch = collate(examples)
    longest = max(len(x) for x, _ in examples)
    assert batch["inputs"].shape == (5, longest) and batch["inputs"].dtype == torch.int64
    assert batch["lengths"].tolist() == [len(x) for x, _ in examples]
    assert batch["labels"].tolist() == [label for _, label in examples]
    assert (batch["inputs"][0, batch["lengths"][0] :] == 0).all()


def test_second_load_reads_the_cache(data_dir, monkeypatch):
    first = load_listops(data_dir)
    assert len(list((data_dir / ".spikessm_cache").glob("listops-*.pt"))) == 1

    def no_parsing(*args):
        raise AssertionError("parsed again instead of reading the cache")

    monkeypatch.setattr(listops, "read_listops_tsv", no_parsing)
    second = load_listops(data_dir)
    assert all(torch.equal(first.test[i][0], second.test[i][0]) for i in range(len(first.test)))
    with pytest.raises(AssertionError, match="parsed again"):  # another max_length is another cache entry
        load_listops(data_dir, max_length=1000)
    with pytest.raises(AssertionError, match="parsed again"):  # so are other conventions
        load_listops(data_dir, conventions="spikessm-0.1")
    monkeypatch.undo()
    old = load_listops(data_dir, conventions="spikessm-0.1")
    assert old.vocab_size == 16 and len(list((data_dir / ".spikessm_cache").glob("listops-*.pt"))) == 2
    assert not torch.equal(old.test[0][0], first.test[0][0]) and load_listops(data_dir).vocab_size == 18


def test_a_changed_file_invalidates_the_cache(data_dir, monkeypatch):
    load_listops(data_dir)
    val = data_dir / "listops-1000" / "basic_val.tsv"
    with open(val, "a") as f:
        f.write("( ( ( [SM 4 ) 5 ) ] )\t9\n")
    assert len(load_listops(data_dir).val) == 11
    monkeypatch.setattr(listops, "read_listops_tsv", lambda *args: pytest.fail("parsed a third time"))
    assert len(load_listops(data_dir).val) == 11


def _corrupt(data_dir, line_no, line):
    """Replaces line line_no (1-based) of the train file."""
    path = data_dir / "listops-1000" / "basic_train.tsv"
    lines = path.read_text().splitlines()
    lines[line_no - 1] = line
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "line_no, line, message",
    [
        (1, "Source\tLabel", "basic_train.tsv line 1: expected the header"),
        (4, "[MAX 1 2 ]\t3\textra", "basic_train.tsv line 4: expected 2 tab-separated columns, found 3"),
        (5, "[MAX 1 2 ]", "basic_train.tsv line 5: expected 2 tab-separated columns, found 1"),
        (6, "[MAX 1 2 ]\tx", "basic_train.tsv line 6: label 'x' is not an integer 0-9"),
        (7, "[MAX 1 2 ]\t10", "basic_train.tsv line 7: label '10' is not an integer 0-9"),
        (8, "[MAX 1 [FIRST 2 ] ]\t1", "basic_train.tsv line 8: unknown token '\\[FIRST'"),
        (9, "\t1", "basic_train.tsv line 9: 0 tokens"),
    ],
)
def test_malformed_files_name_file_and_line(data_dir, line_no, line, message):
    _corrupt(data_dir, line_no, line)
    with pytest.raises(ValueError, match=message):
        load_listops(data_dir)


def test_binary_garbage_names_file_and_line(data_dir):
    path = data_dir / "listops-1000" / "basic_val.tsv"
    path.write_bytes(path.read_bytes().split(b"\n", 2)[0] + b"\n[MAX 1 2 ]\t2\n\xff\xfe\x00garbage\t1\n")
    with pytest.raises(ValueError, match=r"^basic_val.tsv line 3: not UTF-8 text \(invalid start byte at byte 0\), "
                                         "so not a ListOps file$"):
        load_listops(data_dir)


def test_too_long_sequence_is_an_error_with_spikessm_0_1(data_dir):
    with pytest.raises(ValueError, match=r"basic_train.tsv line 2: \d+ tokens, expected 1 to max_length \(5\)"):
        load_listops(data_dir, max_length=5, conventions="spikessm-0.1")
    with pytest.raises(ValueError, match=r"ListOps: unknown input conventions 'lra'"):
        load_listops(data_dir, conventions="lra")
    with pytest.raises(ValueError, match=r"max_length must leave room for one token and <eos>, got 1"):
        load_listops(data_dir, max_length=1)


def test_missing_directory_says_how_to_generate(tmp_path):
    with pytest.raises(FileNotFoundError, match="spikessm generate listops --out"):
        load_listops(tmp_path / "nowhere")
