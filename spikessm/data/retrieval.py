"""LRA Retrieval: ACL Anthology Network (AAN) citation pairs, character level (does one paper cite the other?).

Files (LRA release layout tsv_data/new_aan_pairs.{train,eval,test}.tsv; also read directly in data_dir): no
header, one pair per line, 5 tab-separated columns label, id1, id2, text1, text2; the label is "0"/"1" or, as
in the released files, "0.0"/"1.0". Ids (see CharVocab): the characters seen >= min_freq times in the
(truncated) train texts, both columns, numbered by the conventions: s4 (the default) <pad> 0, <unk> 1, <eos> 2,
then by descending count, min_freq 1, each text its first max_length - 1 characters and <eos>, as s4's AAN
loader; spikessm-0.1 0 padding, 1 unknown, then in code-point order, min_freq 15, the first max_length
characters. Lines are split at tabs as written (no CSV quoting).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch

from .base import TaskData, find_split_files
from .cache import cache_path, read_cache, write_cache
from .conventions import DEFAULT_CONVENTIONS, S4, SPIKESSM_0_1, check_conventions
from .vocab import CharVocab, PackedSequences, TokenDataset

SPLITS = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}
OFFICIAL_SUBDIR = "tsv_data"
N_COLUMNS = 5
MIN_FREQ = {S4: 1, SPIKESSM_0_1: 15}  # s4's AAN passes no min_freq to torchtext (its default, 1)


def find_aan_files(data_dir: Path) -> dict[str, Path]:
    """{split: file} in data_dir or data_dir/tsv_data; FileNotFoundError saying where to get the data."""
    return find_split_files(data_dir, SPLITS, OFFICIAL_SUBDIR, (
        "AAN: they ship in the LRA release (https://storage.googleapis.com/long-range-arena/lra_release.gz, folder "
        "lra_release/tsv_data); pass the folder holding tsv_data/"))


def _parse_label(text: str) -> int | None:
    """ "0", "1", "0.0", "1.0" (any float spelling of 0 or 1) -> 0 or 1; None for anything else."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value in (0.0, 1.0) else None


def read_aan_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    """Streams (label, text1, text2) from one split file; ValueError naming the file and line if malformed."""
    with open(path, "rb") as f:  # binary: lines end at "\n" only (a "\r" inside a text stays part of it)
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                reason = f"not UTF-8 ({error.reason} at byte {error.start})"
                raise ValueError(f"{path.name} line {line_no}: {reason}") from None
            columns = line.split("\t")
            if len(columns) != N_COLUMNS:
                raise ValueError(
                    f"{path.name} line {line_no}: expected {N_COLUMNS} tab-separated columns "
                    f"(label, id1, id2, text1, text2), found {len(columns)}"
                )
            label = _parse_label(columns[0])
            if label is None:
                raise ValueError(f"{path.name} line {line_no}: label {columns[0]!r} is not 0 or 1")
            if not columns[3] or not columns[4]:
                raise ValueError(f"{path.name} line {line_no}: text{1 if not columns[3] else 2} is empty")
            yield label, columns[3], columns[4]


def _encode_split(path: Path, vocab: CharVocab, max_length: int) -> tuple[TokenDataset, int]:
    """One split file -> (its pairs, how many of its documents were cut)."""
    firsts, seconds, labels = [], [], []
    truncated = 0
    for label, text1, text2 in read_aan_rows(path):
        firsts.append(vocab.encode(text1, max_length))
        seconds.append(vocab.encode(text2, max_length))
        labels.append(label)
        truncated += vocab.count_truncated((text1, text2), max_length)
    if not labels:
        raise ValueError(f"{path.name}: no examples")
    labels = torch.tensor(labels, dtype=torch.int64)
    return TokenDataset(labels, PackedSequences.from_arrays(firsts), PackedSequences.from_arrays(seconds)), truncated


def load_aan(data_dir: str | os.PathLike, *, max_length: int = 4000, min_freq: int | None = None,
             conventions: str = DEFAULT_CONVENTIONS) -> TaskData:
    """AAN from data_dir (or data_dir/tsv_data) -> TaskData(pair=True, 2 classes).

    Examples are (((L1,) int64, (L2,) int64) character ids of the two texts, label), L1, L2 <= max_length (see the
    module docstring); min_freq None: the conventions' (s4: 1); truncated counts the documents cut per split. The
    train file is read twice (vocabulary, then ids) rather than held in memory. The first load saves the encoded
    splits to data_dir/.spikessm_cache/aan-<hash>.pt (see spikessm.data.cache); later loads of the same files and
    settings read that instead.
    """
    min_freq = MIN_FREQ[check_conventions(conventions, "AAN")] if min_freq is None else min_freq
    data_dir = Path(data_dir)
    files = find_aan_files(data_dir)
    cache = cache_path(data_dir, "aan", files, max_length=max_length, min_freq=min_freq, conventions=conventions)
    content = read_cache(cache, "AAN")
    if content is None:
        train_texts = (text for _, text1, text2 in read_aan_rows(files["train"]) for text in (text1, text2))
        vocab = CharVocab.build(train_texts, min_freq=min_freq, max_length=max_length, conventions=conventions)
        content = {"vocab_size": vocab.size}
        for split, path in files.items():
            data, truncated = _encode_split(path, vocab, max_length)
            first, second = data.sequences
            content[split] = {"labels": data.labels, "tokens1": first.tokens, "offsets1": first.offsets,
                              "tokens2": second.tokens, "offsets2": second.offsets, "truncated": truncated}
        write_cache(cache, content, "AAN")
    splits = {split: TokenDataset(c["labels"], PackedSequences(c["tokens1"], c["offsets1"]),
                                  PackedSequences(c["tokens2"], c["offsets2"]))
              for split, c in ((s, content[s]) for s in files)}
    vocab_size = int(content["vocab_size"])
    return TaskData(
        name="aan",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        n_classes=2,
        max_length=max_length,
        vocab_size=vocab_size,
        pair=True,
        truncated={split: int(content[split]["truncated"]) for split in files},
    )
