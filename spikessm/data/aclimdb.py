"""LRA Text (IMDB sentiment, character level) read from the original `aclImdb/` release folder.

Layout (https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz, extracted): aclImdb/{train,test}/{neg,pos}/
<id>_<rating>.txt, one UTF-8 review per file (12500 per folder; `train/unsup` and the other files are not read).
Ratings are 1-4 in neg/ (label 0) and 7-10 in pos/ (label 1); a file outside its folder's range is an error, as
it means the folders are mixed up. data_dir is the folder holding aclImdb/, or aclImdb itself.

The encoding is spikessm.data.text's (load_imdb), by the same conventions: reviews kept as written (with their
"<br />" tags, as the Hub dataset holds them), truncated, numbered by the characters seen >= min_freq times in the
train reviews. Examples are ordered neg then pos, each by (id, rating). The encoded splits are cached in
<data_dir>/.spikessm_cache/, keyed by the files, max_length, min_freq and the conventions.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .base import TaskData
from .cache import cache_path, read_cache, write_cache
from .conventions import DEFAULT_CONVENTIONS, check_conventions
from .listing import files_digest
from .vocab import CharVocab, PackedSequences, TokenDataset

RELEASE_FOLDER = "aclImdb"
SPLITS = ("train", "test")
LABEL_FOLDERS = {"neg": 0, "pos": 1}
RATINGS = {"neg": range(1, 5), "pos": range(7, 11)}
FILE_NAME = re.compile(r"(\d+)_(\d+)\.txt")
_CACHE_VERSION = 2  # bump when the cached content changes meaning
HOW_TO_GET = ("download https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz, extract it and pass the "
              f"folder holding {RELEASE_FOLDER}/")


def find_aclimdb(data_dir: str | os.PathLike) -> Path:
    """The aclImdb folder: data_dir/aclImdb or data_dir itself, with train and test each holding neg and pos."""
    data_dir = Path(data_dir)
    for folder in (data_dir / RELEASE_FOLDER, data_dir):
        if all((folder / split / label).is_dir() for split in SPLITS for label in LABEL_FOLDERS):
            return folder
    raise FileNotFoundError(
        f"no IMDB release in {data_dir / RELEASE_FOLDER} or {data_dir} (expected train/neg, train/pos, test/neg, "
        f"test/pos folders of <id>_<rating>.txt files): {HOW_TO_GET}"
    )


def list_reviews(folder: Path) -> dict[str, Path]:
    """{"<split>/<neg|pos>/<name>": file} of every review of the release folder, in the examples' order;
    ValueError for a badly named file, a rating outside its folder's range, or an empty folder."""
    files = {}
    for split in SPLITS:
        for label_folder, ratings in RATINGS.items():
            sub = folder / split / label_folder
            found = []
            for entry in os.scandir(sub):
                if not entry.name.endswith(".txt"):
                    continue
                match = FILE_NAME.fullmatch(entry.name)
                if match is None:
                    raise ValueError(f"{sub / entry.name}: not a review file name (<id>_<rating>.txt)")
                review_id, rating = int(match[1]), int(match[2])
                if rating not in ratings:
                    raise ValueError(
                        f"{sub / entry.name}: rating {rating} does not belong in {label_folder}/ "
                        f"({ratings.start}-{ratings.stop - 1}); are the neg and pos folders mixed up?"
                    )
                found.append((review_id, rating, entry.name))
            if not found:
                raise ValueError(f"{sub}: no review files (<id>_<rating>.txt)")
            for _, _, name in sorted(found):
                files[f"{split}/{label_folder}/{name}"] = sub / name
    return files


def read_review(path: Path) -> str:
    """One review's text; ValueError naming the file if it is not UTF-8 or is empty."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise ValueError(f"{path}: empty review")
    return text


def load_aclimdb(data_dir: str | os.PathLike, *, max_length: int = 4096, min_freq: int = 15,
                 conventions: str = DEFAULT_CONVENTIONS) -> TaskData:
    """IMDB from the aclImdb release -> TaskData like load_imdb's: name "imdb", vocab_size the vocabulary's size,
    n_classes 2, max_length, val None (LRA evaluates on test), truncated the reviews cut per split. Examples are
    ((L,) int64 character ids, label), L <= max_length."""
    check_conventions(conventions, "IMDB")
    data_dir = Path(data_dir)
    folder = find_aclimdb(data_dir)
    files = list_reviews(folder)
    cache = cache_path(data_dir, "aclimdb", {}, digest=files_digest(files), version=_CACHE_VERSION,
                       max_length=max_length, min_freq=min_freq, conventions=conventions)
    content = read_cache(cache, "IMDB")
    if content is None:
        texts = {split: [] for split in SPLITS}
        labels = {split: [] for split in SPLITS}
        for key, path in files.items():
            split, label_folder, _ = key.split("/")
            texts[split].append(read_review(path)[: max_length + 1])  # one more: enough to tell a review was cut
            labels[split].append(LABEL_FOLDERS[label_folder])
        vocab = CharVocab.build(texts["train"], min_freq=min_freq, max_length=max_length, conventions=conventions)
        content = {"vocab_size": vocab.size}
        for split in SPLITS:
            sequences = PackedSequences.from_arrays([vocab.encode(text, max_length) for text in texts[split]])
            content[split] = {"tokens": sequences.tokens, "offsets": sequences.offsets,
                              "labels": torch.tensor(labels[split], dtype=torch.int64),
                              "truncated": vocab.count_truncated(texts[split], max_length)}
        write_cache(cache, content, "IMDB")
    splits = {split: TokenDataset(content[split]["labels"],
                                  PackedSequences(content[split]["tokens"], content[split]["offsets"]))
              for split in SPLITS}
    return TaskData(name="imdb", train=splits["train"], val=None, test=splits["test"], n_classes=2,
                    max_length=max_length, vocab_size=int(content["vocab_size"]),
                    truncated={split: int(content[split]["truncated"]) for split in SPLITS})
