"""Token-id sequences stored compactly, the vocabulary rule of s4's token tasks, and the character vocabulary of the
LRA Text and Retrieval tasks.

LRA sequences are long (up to 2 x 4000 ids per AAN example, ~147k examples) but their vocabularies are small, so
the ids of a split live in one flat tensor of the smallest integer type that holds them (uint8 for <= 256 ids)
and become int64 only when an example is read: int64 storage would need ~8x the memory (~10 GB for AAN).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from .conventions import DEFAULT_CONVENTIONS, follows_s4

UNKNOWN_ID = 1
EOS_ID = 2  # with an end-of-sequence token (the s4 conventions): <pad> 0, <unk> 1, <eos> 2, then the tokens
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


def by_frequency(counts: dict[str, int], min_freq: int = 1) -> list[str]:
    """The tokens counted at least min_freq times, most frequent first, ties in code-point order: the order of
    torchtext's build_vocab_from_iterator (sorted by (-count, token)), which s4's loaders number from 3 on."""
    return [token for token, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            if count >= min_freq]


class CharVocab:
    """Character-level vocabulary: id 0 padding (PAD_ID), 1 unknown character, with eos 2 the end of sequence
    (EOS_ID), then the known characters `chars` in their order.

    CharVocab.build with the s4 conventions: <pad>, <unk>, <eos>, then the characters by descending count, ties in
    code-point order, as torchtext numbers them; every sequence is its first max_length - 1 characters and <eos>.
    With spikessm-0.1: the characters in code-point order from id 2, a sequence its first max_length characters.
    """

    def __init__(self, chars: list[str], *, eos: bool = False):
        self.chars = chars
        self.eos = eos
        first_id = EOS_ID + 1 if eos else EOS_ID
        self.size = first_id + len(chars)
        # One table entry per code point: encoding a text is a single vectorised lookup.
        self.lookup = np.full(N_CODE_POINTS, UNKNOWN_ID, dtype=id_dtype(self.size))
        self.lookup[[ord(c) for c in chars]] = np.arange(first_id, self.size)

    def text_length(self, max_length: int) -> int:
        """How many characters of a text a sequence of max_length ids holds (one fewer with the EOS)."""
        return max_length - 1 if self.eos else max_length

    @classmethod
    def build(cls, texts: Iterable[str], *, min_freq: int, max_length: int,
              conventions: str = DEFAULT_CONVENTIONS) -> CharVocab:
        """The characters seen at least min_freq times in the texts, each text cut to the characters a sequence of
        max_length ids holds first (as s4 counts its truncated tokens), numbered as `conventions` say (see the
        class docstring). Either way the ids do not depend on the texts' order."""
        eos = frequency_order = follows_s4(conventions, "character vocabulary")
        if max_length < (2 if eos else 1):
            raise ValueError(f"max_length must leave room for one character{' and the EOS' if eos else ''}, got "
                             f"{max_length}")
        keep = max_length - 1 if eos else max_length
        counts = np.zeros(N_CODE_POINTS, dtype=np.int64)
        pending, n_pending = [], 0
        for text in texts:
            pending.append(code_points(text[:keep]))
            n_pending += len(pending[-1])
            if n_pending >= _COUNT_CHUNK:
                counts += np.bincount(np.concatenate(pending), minlength=N_CODE_POINTS)
                pending, n_pending = [], 0
        if pending:
            counts += np.bincount(np.concatenate(pending), minlength=N_CODE_POINTS)
        min_freq = max(min_freq, 1)
        if frequency_order:
            return cls(by_frequency({chr(c): int(counts[c]) for c in np.flatnonzero(counts)}, min_freq), eos=eos)
        return cls([chr(c) for c in np.flatnonzero(counts >= min_freq)], eos=eos)

    def count_truncated(self, texts: Iterable[str], max_length: int) -> int:
        """How many of the texts are longer than a sequence of max_length ids holds (encode cuts them)."""
        keep = self.text_length(max_length)
        return sum(len(text) > keep for text in texts)

    def encode(self, text: str, max_length: int) -> np.ndarray:
        """text -> its first text_length(max_length) characters' ids (and EOS_ID when eos), at most max_length ids
        in the vocabulary's dtype."""
        ids = self.lookup[code_points(text[: self.text_length(max_length)])]
        return np.append(ids, np.array(EOS_ID, ids.dtype)) if self.eos else ids
