"""Input conventions: whose rules turn a task's files into token ids and pixel values.

Every loader of a task that state-spaces/s4 also loads takes `conventions=`:

    "s4"            (the default) as s4's dataloaders prepare the inputs (src/dataloaders/lra.py, basic.py,
                    base.py and configs/dataset/*.yaml at S4_COMMIT), which the papers' numbers come from
    "spikessm-0.1"  as spikessm 0.1.0 prepared them (LEGACY_CONVENTIONS: what a run directory written before
                    runs recorded their conventions was trained on)

What each one means per task (docs/data.md has the comparison, rule by rule, with its source):

- ListOps: s4 numbers <pad> 0, <unk> 1, <eos> 2, then the train tokens by descending count (ties by code point),
  each sequence its first L - 1 tokens and <eos>, longer examples cut and counted; spikessm-0.1 has fixed ids
  (LISTOPS_VOCAB, 16), no EOS, and refuses a longer file.
- Text, Retrieval: the same numbering over characters, each text its first L - 1 characters and <eos>; Retrieval
  keeps characters seen once (min_freq 1), Text those seen 15 times. spikessm-0.1: 0 pad, 1 unk, then characters
  in code-point order, text[:L], min_freq 15 for both.
- sCIFAR: s4 (x / 255 - SCIFAR_MEAN) / SCIFAR_STD per channel; LRA Image (x / 255 - 122.6/255) / (61/255);
  spikessm-0.1 x / 255. sMNIST, psMNIST, Pathfinder, Path-X: x / 255 under both.
- Random splits: s4 seed 42, sizes as s4 computes them (split_sizes); spikessm-0.1 seed 0, rounded sizes.
"""
from __future__ import annotations

S4 = "s4"
SPIKESSM_0_1 = "spikessm-0.1"
CONVENTIONS = (S4, SPIKESSM_0_1)
DEFAULT_CONVENTIONS = S4
LEGACY_CONVENTIONS = SPIKESSM_0_1
S4_COMMIT = "e757cef57d89e448c413de7325ed5601aceaac13"  # state-spaces/s4 main, read for these rules

SPLIT_SEEDS = {S4: 42, SPIKESSM_0_1: 0}


def check_conventions(conventions: str, where: str) -> str:
    """conventions, if it is one of CONVENTIONS; ValueError naming `where` and the choices otherwise."""
    if conventions not in CONVENTIONS:
        raise ValueError(f"{where}: unknown input conventions {conventions!r}; choose one of {', '.join(CONVENTIONS)}")
    return conventions


def follows_s4(conventions: str, where: str) -> bool:
    """Whether `conventions` (checked) are s4's."""
    return check_conventions(conventions, where) == S4


def split_seed(conventions: str, seed: int | None) -> int:
    """The seed of a random split: `seed` if given, else the conventions' (s4: 42, spikessm-0.1: 0)."""
    return SPLIT_SEEDS[conventions] if seed is None else seed


def split_sizes(n: int, fractions: tuple[float, ...], conventions: str) -> list[int]:
    """The sizes of a random split of n examples into parts of about fraction * n each, every example used once.

    s4: two parts (train, val) take train = int(n * (1 - val)) as base.py's split_train_val does; three parts
    (train, val, test) take val = int(val * n), test = int(test * n) and train the rest, as lra.py's PathFinder
    does. spikessm-0.1: round(fraction * n) for every part but the last, which takes the rest.
    """
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    if check_conventions(conventions, "split") == S4:
        if len(fractions) == 2:
            first = int(n * (1.0 - fractions[1]))
            return [first, n - first]
        rest = [int(f * n) for f in fractions[1:]]
        return [n - sum(rest)] + rest
    sizes = [round(f * n) for f in fractions[:-1]]
    sizes.append(n - sum(sizes))
    if sizes[-1] < 0:  # rounding up several parts can overshoot n
        raise ValueError(f"split fractions {fractions} do not partition {n} examples")
    return sizes
