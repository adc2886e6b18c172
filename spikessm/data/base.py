"""What every task loader returns, and how examples become padded batches.

An example is `(x, label)`: x is a (L,) int64 tensor of token ids (token tasks; id 0 is padding and never a
real token) or a (L, d_input) float32 tensor (pixel tasks); label is an int. Retrieval examples are
`((x1, x2), label)`. `collate` pads a list of examples into a batch dict:

    inputs:  (B, L) int64 or (B, L, d_input) float32, padded with zeros to the longest example in the batch
    lengths: (B,) int64, the true lengths (pooling must ignore positions >= length)
    labels:  (B,) int64
    inputs2, lengths2: the second document of a pair task (Retrieval), same layout
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

PAD_ID = 0


@dataclass
class TaskData:
    """One task's splits and the sizes a model needs.

    Exactly one of vocab_size (token inputs, ids in [0, vocab_size), 0 = padding) and d_input (real features per
    step) is set. val may be None where the task has no validation split.
    """

    name: str
    train: Dataset
    val: Dataset | None
    test: Dataset
    n_classes: int
    max_length: int
    vocab_size: int | None = None
    d_input: int | None = None
    pair: bool = False
    truncated: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if (self.vocab_size is None) == (self.d_input is None):
            raise ValueError(f"{self.name}: exactly one of vocab_size and d_input must be set")


def pad(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads (L_i,) or (L_i, d) tensors with zeros to (B, max L_i[, d]); returns (padded, lengths (B,))."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    if (lengths == 0).any():
        raise ValueError("collate: an example has length 0")
    out = sequences[0].new_zeros((len(sequences), int(lengths.max())) + tuple(sequences[0].shape[1:]))
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out, lengths


def collate(examples: list) -> dict[str, torch.Tensor]:
    """Examples (see the module docstring) -> a batch dict with inputs, lengths, labels (and inputs2, lengths2)."""
    labels = torch.tensor([int(label) for _, label in examples], dtype=torch.int64)
    first = examples[0][0]
    if isinstance(first, (tuple, list)):
        inputs, lengths = pad([x[0] for x, _ in examples])
        inputs2, lengths2 = pad([x[1] for x, _ in examples])
        return {"inputs": inputs, "lengths": lengths, "inputs2": inputs2, "lengths2": lengths2, "labels": labels}
    inputs, lengths = pad([x for x, _ in examples])
    return {"inputs": inputs, "lengths": lengths, "labels": labels}


def find_split_files(data_dir: Path, names: dict[str, str], subdir: str, how_to_get: str) -> dict[str, Path]:
    """{split: file} for the split file names `names`, all in data_dir or all in data_dir/subdir (the LRA
    release's layout); FileNotFoundError naming the files and both folders, then `how_to_get`."""
    for folder in (data_dir, data_dir / subdir):
        if all((folder / name).is_file() for name in names.values()):
            return {split: folder / name for split, name in names.items()}
    raise FileNotFoundError(f"no {', '.join(names.values())} in {data_dir} or {data_dir / subdir}. {how_to_get}")
