"""Token-id sequences stored compactly, and the character vocabulary of the LRA Text and Retrieval tasks.

LRA sequences are long (up to 2 x 4000 ids per AAN example, ~147k examples) but their vocabularies are small, so
the ids of a split live in one flat tensor of the smallest integer type that holds them (uint8 for <= 256 ids)
and become int64 only when an example is read: int64 storage would need ~8x the memory (~10 GB for AAN).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

UNKNOWN_ID = 1
FIRST_CHAR_ID = 2
N_CODE_POINTS = 0x110000  # every Unicode code point, so a lookup table indexed by code point never overflows
_COUNT_CHUNK = 1 << 24  # code points counted per np.bincount call (bounds the memory of counting)


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest integer dtype (that torch also has) holding ids 0 .. vocab_size - 1."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 2**15:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


class PackedSequences:
    """N variable-length id sequences in one flat tensor.

    tokens: (sum of L_i,) small integer dtype; offsets: (N + 1,) int64, sequence i is tokens[offsets[i]:offsets[i+1]].
    Item i is the (L_i,) int64 tensor of sequence i.
    """

    def __init__(self, tokens: torch.Tensor, offsets: torch.Tensor):
        self.tokens = tokens
        self.offsets = offsets

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray]) -> PackedSequences:
        """Packs 1-D id arrays (all of one dtype) in order."""
        lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
        offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)])
        tokens = np.concatenate(arrays) if arrays else np.zeros(0, np.uint8)
        return cls(torch.from_numpy(tokens), torch.from_numpy(offsets))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]].long()


class TokenDataset(Dataset):
    """Labelled token examples: (x, label) from one PackedSequences, ((x1, x2), label) from two (pair tasks).

    labels: (N,) int64; x, x1, x2: (L,) int64 token ids (see spikessm.data.base).
    """

    def __init__(self, labels: torch.Tensor, *sequences: PackedSequences):
        if not 1 <= len(sequences) <= 2 or any(len(s) != len(labels) for s in sequences):
            raise ValueError(f"TokenDataset: needs 1 or 2 sequence sets of {len(labels)} sequences, one per label")
        self.labels = labels
        self.sequences = sequences

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        label = int(self.labels[i])
        if len(self.sequences) == 1:
            return self.sequences[0][i], label
        return (self.sequences[0][i], self.sequences[1][i]), label


def code_points(text: str) -> np.ndarray:
    """A string -> its (len(text),) uint32 Unicode code points (surrogates pass through, as Python keeps them)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class CharVocab:
    """Character-level vocabulary: id 0 padding (PAD_ID), 1 unknown character, 2.. the known characters in code-point
    order."""

    def __init__(self, chars: list[str]):
        self.chars = chars
        self.size = FIRST_CHAR_ID + len(chars)
        # One table entry per code point: encoding a text is a single vectorised lookup.
        self.lookup = np.full(N_CODE_POINTS, UNKNOWN_ID, dtype=id_dtype(self.size))
        self.lookup[[ord(c) for c in chars]] = np.arange(FIRST_CHAR_ID, self.size)

    @classmethod
    def build(cls, texts: Iterable[str], *, min_freq: int, max_length: int) -> CharVocab:
        """The characters seen at least min_freq times in the texts, each truncated to max_length characters first
        (as the S4 pipeline counts), sorted by code point so the ids do not depend on the order of the texts."""
        counts = np.zeros(N_CODE_POINTS, dtype=np.int64)
        pending, n_pending = [], 0
        for text in texts:
            pending.append(code_points(text[:max_length]))
            n_pending += len(pending[-1])
            if n_pending >= _COUNT_CHUNK:
                counts += np.bincount(np.concatenate(pending), minlength=N_CODE_POINTS)
                pending, n_pending = [], 0
        if pending:
            counts += np.bincount(np.concatenate(pending), minlength=N_CODE_POINTS)
        return cls([chr(c) for c in np.flatnonzero(counts >= max(min_freq, 1))])

    def encode(self, text: str, max_length: int) -> np.ndarray:
        """The first max_length characters of text -> (min(len(text), max_length),) ids in the vocabulary's dtype."""
        return self.lookup[code_points(text[:max_length])]
