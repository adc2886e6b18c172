"""LRA Text: IMDB movie-review sentiment, character level (25k train / 25k test reviews, labels 0 negative, 1 positive).

Source: the HF dataset "stanfordnlp/imdb" (splits train and test, columns text and label), from the Hub or from a
folder written by DatasetDict.save_to_disk (the "unsupervised" split is not read, as in s4). Ids (see CharVocab):
the characters seen >= min_freq times in the (truncated) train reviews (~135 at min_freq 15), numbered by the
conventions: s4 (the default) <pad> 0, <unk> 1, <eos> 2, then by descending count, each review its first
max_length - 1 characters and <eos>, as s4's IMDB loader; spikessm-0.1 0 padding, 1 unknown, then in code-point
order, the first max_length characters.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from spikessm.data.base import TaskData
from spikessm.data.conventions import DEFAULT_CONVENTIONS
from spikessm.data.vocab import CharVocab, PackedSequences, TokenDataset

COLUMNS = ("text", "label")


def _load_dataset_dict(source: str | os.PathLike, cache_dir: str | None):
    """source (a save_to_disk folder if that path exists, else a Hub id) -> its DatasetDict."""
    try:
        import datasets
    except ImportError:
        raise ImportError('IMDB reads Hugging Face datasets, which needs the `datasets` package: '
                          'pip install "spikessm[data]"') from None
    if Path(source).exists():
        return datasets.load_from_disk(str(source))
    try:
        return datasets.load_dataset(str(source), cache_dir=cache_dir)
    except OSError as error:  # not found on the Hub, or no connection
        raise FileNotFoundError(
            f"IMDB: could not load {str(source)!r} from the Hugging Face Hub ({error}). Where the Hub is reachable, "
            f"run datasets.load_dataset('stanfordnlp/imdb').save_to_disk(DIR) and pass DIR as source"
        ) from error


def _split_columns(splits, source, split: str) -> tuple[list[str], list[int]]:
    """The texts and labels of one split; ValueError naming the split (and row) if absent or malformed."""
    if split not in splits:
        raise ValueError(f"IMDB {source}: no split {split!r} (splits: {list(splits)})")
    table = splits[split]
    for column in COLUMNS:
        if column not in table.column_names:
            raise ValueError(f"IMDB {source} split {split}: no column {column!r} (columns: {table.column_names})")
    texts, labels = list(table["text"]), list(table["label"])
    for row, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if label not in (0, 1):
            raise ValueError(f"IMDB {source} split {split} row {row}: label {label!r} is not 0 or 1")
        if not isinstance(text, str) or not text:
            raise ValueError(f"IMDB {source} split {split} row {row}: the text is empty or not a string")
    return texts, labels


def _encode(vocab: CharVocab, texts: list[str], labels: list[int], max_length: int) -> TokenDataset:
    sequences = PackedSequences.from_arrays([vocab.encode(text, max_length) for text in texts])
    return TokenDataset(torch.tensor(labels, dtype=torch.int64), sequences)


def load_imdb(
    source: str | os.PathLike = "stanfordnlp/imdb",
    *,
    max_length: int = 4096,
    min_freq: int = 15,
    cache_dir: str | None = None,
    conventions: str = DEFAULT_CONVENTIONS,
) -> TaskData:
    """IMDB at character level -> TaskData (2 classes, val None: LRA evaluates on test, as s4 does).

    Examples are ((L,) int64 character ids, label), L <= max_length (see the module docstring); truncated counts
    the reviews cut. The vocabulary counts the train split only. cache_dir is passed to datasets.load_dataset (Hub
    ids only).
    """
    splits = _load_dataset_dict(source, cache_dir)
    train_texts, train_labels = _split_columns(splits, source, "train")
    test_texts, test_labels = _split_columns(splits, source, "test")
    vocab = CharVocab.build(train_texts, min_freq=min_freq, max_length=max_length, conventions=conventions)
    return TaskData(
        name="imdb",
        train=_encode(vocab, train_texts, train_labels, max_length),
        val=None,
        test=_encode(vocab, test_texts, test_labels, max_length),
        n_classes=2,
        max_length=max_length,
        vocab_size=vocab.size,
        truncated={"train": vocab.count_truncated(train_texts, max_length),
                   "test": vocab.count_truncated(test_texts, max_length)},
    )
