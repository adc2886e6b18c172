"""LRA ListOps: the generator (official LRA specification), an independent evaluator, the tokenizer and the loader.

A tree is a leaf value 0-9 (an int) or an operator node (operator, [children]). Its source string writes every
pair as "( left right )", as the official generator does: [MAX 2 9 ] is "( ( ( [MAX 2 ) 9 ) ] )". Its label is
the value 0-9 of the expression.

Files (official layout listops-1000/basic_{train,val,test}.tsv; the loader also reads them directly in data_dir):
a header line "Source<TAB>Target", then one example per line, "<source string><TAB><label>".

Tokens (tokenize_listops, the LRA tokenizer as s4 writes it): "]" becomes "X", "(" and ")" are deleted, the rest is
split on whitespace. Token ids, by the conventions (spikessm.data.conventions):
- s4 (the default), as s4's ListOps loader: <pad> 0, <unk> 1, <eos> 2, then the tokens of the train split by
  descending count, ties in code-point order (torchtext's build_vocab_from_iterator), 18 ids on the official
  files; each sequence is its first max_length - 1 tokens and <eos> (longer ones are cut, and counted in
  TaskData.truncated and a warning); a val/test token absent from train is <unk>.
- spikessm-0.1: the fixed LISTOPS_VOCAB (LISTOPS_VOCAB_SIZE 16): 0 padding, 1-10 the digits "0"-"9", 11 "[MIN",
  12 "[MAX", 13 "[MED", 14 "[SM", 15 "X"; no end token; a sequence longer than max_length is an error.
Either way a token outside these 15 is an error naming the file and line (s4 would give it an id).
"""
from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_atomically
from .base import TaskData, find_split_files
from .cache import cache_path, read_cache, write_cache
from .conventions import DEFAULT_CONVENTIONS, follows_s4
from .vocab import EOS_ID, UNKNOWN_ID, PackedSequences, TokenDataset, by_frequency

MIN, MAX, MED, SUM_MOD = "[MIN", "[MAX", "[MED", "[SM"
OPERATORS = (MIN, MAX, MED, SUM_MOD)
END = "]"
VALUE_P = 0.25  # a node at depth < max_depth is an operator when r ~ U(0, 1) <= VALUE_P, else a leaf
VALUES = range(10)

LISTOPS_VOCAB = {**{str(v): 1 + v for v in VALUES}, MIN: 11, MAX: 12, MED: 13, SUM_MOD: 14, "X": 15}  # id 0 is PAD_ID
LISTOPS_VOCAB_SIZE = 1 + len(LISTOPS_VOCAB)
SPLITS = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}
HEADER = "Source\tTarget"
OFFICIAL_SUBDIR = "listops-1000"
_CACHE_VERSION = 2  # bump when the cached layout or the tokenisation changes
_LABELS = {str(v): v for v in VALUES}
_S4_TOKENIZER = str.maketrans({"]": "X", "(": None, ")": None})

Tree = int | tuple  # leaf value, or (operator, list of child trees)


# --- Generator ------------------------------------------------------------------------------------------------


def generate_tree(rng: random.Random, depth: int, max_depth: int, max_args: int) -> tuple[Tree, int]:
    """One random tree as the official generator draws it -> (tree, length in tokens without parentheses).

    The draws happen in the official order (r, then a value or the child count, the children, then the operator),
    so a given rng state yields the official generator's tree.
    """
    r = rng.random() if depth < max_depth else 1
    if r > VALUE_P:
        return rng.choice(VALUES), 1
    children, length = [], 2  # the operator and the closing bracket
    for _ in range(rng.randint(2, max_args)):
        child, child_length = generate_tree(rng, depth + 1, max_depth, max_args)
        children.append(child)
        length += child_length
    return (rng.choice(OPERATORS), children), length


def to_source(tree: Tree) -> str:
    """A tree -> its source string, every pair written "( left right )" like the official files."""
    if isinstance(tree, int):
        return str(tree)
    operator, children = tree
    # The official nesting is ((((op, c0), c1), ...), END): one "(" per pair, all opened up front.
    parts = ["( " * (len(children) + 1), operator, " ", to_source(children[0]), " )"]
    for child in children[1:]:
        parts += [" ", to_source(child), " )"]
    parts.append(" ] )")
    return "".join(parts)


def tree_value(tree: Tree) -> int:
    """A tree's value 0-9: MIN, MAX; MED = int(numpy.median(args)) (even count: the middle two's mean, truncated);
    SM = sum % 10."""
    if isinstance(tree, int):
        return tree
    operator, children = tree
    args = [tree_value(child) for child in children]
    if operator == MIN:
        return min(args)
    if operator == MAX:
        return max(args)
    if operator == MED:
        return int(np.median(args))
    return sum(args) % 10


def _longest_tree(max_depth: int, max_args: int) -> int:
    """The largest length a tree drawn from depth 1 can have (every node above max_depth an operator)."""
    length = 1
    for _ in range(1, max_depth):
        length = 2 + max_args * length
    return length


def generate_listops(
    n_train: int,
    n_val: int,
    n_test: int,
    *,
    max_depth: int = 10,
    max_args: int = 10,
    min_length: int = 500,
    max_length: int = 2000,
    seed: int = 0,
    max_draws: int | None = None,
) -> dict[str, list[tuple[str, int]]]:
    """Unique ListOps examples, per the official LRA generator -> {"train", "val", "test": [(source, label)]}.

    Trees are drawn from depth 1 (as the official main does) with random.Random(seed) and kept only if
    min_length < length < max_length; duplicates are dropped, so no source occurs twice in or across splits.
    The first n_train kept become train, the next n_val val, the rest test (the official code splits a set, whose
    order is not reproducible). max_draws (default max(100 x total, 100000); ~8% of draws are kept at the
    defaults) bounds the work: a RuntimeError says when it is reached.
    """
    total = n_train + n_val + n_test
    if min(n_train, n_val, n_test) < 0 or max_depth < 1 or max_args < 2:
        raise ValueError("generate_listops: needs counts >= 0, max_depth >= 1, max_args >= 2")
    longest = _longest_tree(max_depth, max_args)
    if total and (max_length - min_length < 2 or longest <= min_length):
        raise ValueError(
            f"generate_listops: no tree can have min_length ({min_length}) < length < max_length ({max_length}): "
            f"the longest possible tree at max_depth {max_depth}, max_args {max_args} has length {longest}"
        )
    max_draws = max(100 * total, 100_000) if max_draws is None else max_draws
    rng = random.Random(seed)
    examples: dict[str, int] = {}  # source -> label, in the order drawn
    draws = kept = 0
    while len(examples) < total:
        if draws == max_draws:
            raise RuntimeError(
                f"generate_listops: {len(examples)} of {total} unique examples after {draws} draws ({kept} in the "
                f"length range, the rest duplicates); widen min_length/max_length, raise max_depth/max_args, or "
                f"pass a larger max_draws"
            )
        draws += 1
        tree, length = generate_tree(rng, 1, max_depth, max_args)
        if min_length < length < max_length:
            kept += 1
            source = to_source(tree)
            if source not in examples:
                examples[source] = tree_value(tree)
    items = list(examples.items())
    return {"train": items[:n_train], "val": items[n_train : n_train + n_val], "test": items[n_train + n_val :]}


def write_listops(
    out_dir: str | os.PathLike,
    n_train: int = 96000,
    n_val: int = 2000,
    n_test: int = 2000,
    **settings,
) -> dict[str, Path]:
    """Generates ListOps (settings: the keywords of generate_listops) and writes out_dir/basic_{train,val,test}.tsv
    in the official format, each atomically -> {split: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = generate_listops(n_train, n_val, n_test, **settings)
    paths = {}
    for split, examples in splits.items():
        text = "".join(f"{source}\t{label}\n" for source, label in examples)
        paths[split] = out_dir / SPLITS[split]
        write_atomically(paths[split], lambda f, text=text: f.write(f"{HEADER}\n{text}".encode()))
    return paths


# --- Independent evaluator ---------------------------------------------------------------------------------------


def evaluate_listops(source: str) -> int:
    """The value 0-9 of a source string, by a stack machine over its tokens ("(" and ")" are ignored).

    Independent of the tree code above (own median, no numpy), so tests can check generated labels with it.
    """
    stack: list[tuple[str, list[int]]] = []  # open operators and the values of their arguments so far
    result = None
    for token in source.split():
        if token in ("(", ")"):
            continue
        if token in OPERATORS:
            stack.append((token, []))
            continue
        if token == END:
            if not stack or not stack[-1][1]:
                raise ValueError(f"evaluate_listops: '{END}' without an operator or arguments in {source!r}")
            value = _apply(*stack.pop())
        elif token in _LABELS:
            value = _LABELS[token]
        else:
            raise ValueError(f"evaluate_listops: unknown token {token!r} in {source!r}")
        if stack:
            stack[-1][1].append(value)
        elif result is None:
            result = value
        else:
            raise ValueError(f"evaluate_listops: more than one expression in {source!r}")
    if stack or result is None:
        raise ValueError(f"evaluate_listops: unclosed or empty expression {source!r}")
    return result


def _apply(operator: str, args: list[int]) -> int:
    if operator == MIN:
        return min(args)
    if operator == MAX:
        return max(args)
    if operator == MED:
        ordered, middle = sorted(args), len(args) // 2
        return ordered[middle] if len(args) % 2 else (ordered[middle - 1] + ordered[middle]) // 2
    return sum(args) % 10


# --- Tokenizer and loader ------------------------------------------------------------------------------------------


def tokenize_listops(source: str) -> list[str]:
    """The LRA tokenizer, as s4 writes it: every "]" becomes "X", every "(" and ")" is deleted, then the string is
    split on whitespace."""
    return source.translate(_S4_TOKENIZER).split()


def read_listops_tsv(path: Path, max_length: int | None = None) -> tuple[PackedSequences, torch.Tensor]:
    """One split file -> (token sequences as LISTOPS_VOCAB ids, labels (N,) int64); ValueError naming the file and
    line if malformed, or if a sequence has more than max_length tokens (None: any length)."""
    arrays, labels = [], []
    with open(path, "rb") as f:  # bytes, decoded line by line, so that a bad byte is reported with its line
        lines = (_decode_line(path, line_no, raw) for line_no, raw in enumerate(f, start=1))
        header = next(lines, "")
        if header != HEADER:
            raise ValueError(f"{path.name} line 1: expected the header 'Source<TAB>Target', found {header!r}")
        for line_no, line in enumerate(lines, start=2):
            columns = line.split("\t")
            if len(columns) != 2:
                raise ValueError(f"{path.name} line {line_no}: expected 2 tab-separated columns, found {len(columns)}")
            source, target = columns
            if target not in _LABELS:
                raise ValueError(f"{path.name} line {line_no}: label {target!r} is not an integer 0-9")
            try:
                ids = [LISTOPS_VOCAB[token] for token in tokenize_listops(source)]
            except KeyError as error:
                raise ValueError(f"{path.name} line {line_no}: unknown token {error.args[0]!r}") from None
            if not ids or (max_length is not None and len(ids) > max_length):
                raise ValueError(
                    f"{path.name} line {line_no}: {len(ids)} tokens, expected 1 to max_length ({max_length})"
                    if ids else f"{path.name} line {line_no}: 0 tokens, expected at least 1"
                )
            arrays.append(np.array(ids, dtype=np.uint8))
            labels.append(_LABELS[target])
    if not labels:
        raise ValueError(f"{path.name}: no examples")
    return PackedSequences.from_arrays(arrays), torch.tensor(labels, dtype=torch.int64)


def _decode_line(path: Path, line_no: int, raw: bytes) -> str:
    """One line of a split file as text, without its line end ("\n" or the official files' "\r\n")."""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path.name} line {line_no}: not UTF-8 text ({error.reason} at byte {error.start}), so "
                         "not a ListOps file") from None


def find_listops_files(data_dir: Path) -> dict[str, Path]:
    """{split: file} in data_dir or data_dir/listops-1000; FileNotFoundError saying how to get the data."""
    return find_split_files(data_dir, SPLITS, OFFICIAL_SUBDIR, (
        f"ListOps: generate them with `spikessm generate listops --out {data_dir}`, or download the LRA release "
        "(https://storage.googleapis.com/long-range-arena/lra_release.gz) and pass the folder holding listops-1000/"))


def s4_listops_ids(train: PackedSequences, max_length: int) -> np.ndarray:
    """The s4 id of every LISTOPS_VOCAB id: (LISTOPS_VOCAB_SIZE,) uint8, a table. The vocabulary is s4's: <pad>,
    <unk>, <eos>, then the tokens of the train sequences (each cut to max_length - 1 tokens, as s4 counts them)
    by descending count, ties in code-point order; a token absent from train maps to <unk>."""
    counts = np.zeros(LISTOPS_VOCAB_SIZE, dtype=np.int64)
    for i in range(len(train)):
        counts += np.bincount(train.tokens[train.offsets[i] : train.offsets[i + 1]][: max_length - 1].numpy(),
                              minlength=LISTOPS_VOCAB_SIZE)
    ordered = by_frequency({token: int(counts[i]) for token, i in LISTOPS_VOCAB.items() if counts[i]})
    table = np.full(LISTOPS_VOCAB_SIZE, UNKNOWN_ID, dtype=np.uint8)
    table[0] = 0
    for s4_id, token in enumerate(ordered, start=EOS_ID + 1):
        table[LISTOPS_VOCAB[token]] = s4_id
    return table


def _to_s4_ids(sequences: PackedSequences, table: np.ndarray, max_length: int) -> tuple[PackedSequences, int]:
    """LISTOPS_VOCAB-id sequences -> (s4-id sequences, each its first max_length - 1 tokens and <eos>; how many were
    cut)."""
    arrays, truncated = [], 0
    for i in range(len(sequences)):
        ids = sequences.tokens[sequences.offsets[i] : sequences.offsets[i + 1]].numpy()
        truncated += len(ids) > max_length - 1
        arrays.append(np.append(table[ids[: max_length - 1]], np.uint8(EOS_ID)))
    return PackedSequences.from_arrays(arrays), truncated


def load_listops(data_dir: str | os.PathLike, *, max_length: int = 2048,
                 conventions: str = DEFAULT_CONVENTIONS) -> TaskData:
    """ListOps from data_dir (or data_dir/listops-1000) -> TaskData (10 classes; vocab_size 18 on the official files
    with the s4 conventions, 16 with spikessm-0.1).

    Examples are ((L,) int64 token ids, label 0-9), L <= max_length (see the module docstring for the ids, the end
    token and what happens to longer sequences; truncated counts the examples cut per split). The first load saves
    the tokenised splits to data_dir/.spikessm_cache/listops-<hash>.pt; later loads read that (a changed file,
    max_length or conventions gives a new hash, hence a fresh parse).
    """
    s4 = follows_s4(conventions, "ListOps")
    if max_length < (2 if s4 else 1):
        raise ValueError(f"ListOps: max_length must leave room for one token{' and <eos>' if s4 else ''}, got "
                         f"{max_length}")
    data_dir = Path(data_dir)
    files = find_listops_files(data_dir)
    cache = cache_path(data_dir, "listops", files, version=_CACHE_VERSION, max_length=max_length,
                       conventions=conventions)
    content = read_cache(cache, "ListOps")
    if content is None:
        parsed = {split: read_listops_tsv(path, None if s4 else max_length) for split, path in files.items()}
        content = {"vocab_size": LISTOPS_VOCAB_SIZE}
        if s4:
            table = s4_listops_ids(parsed["train"][0], max_length)
            content["vocab_size"] = int(table.max()) + 1
        for split, (sequences, labels) in parsed.items():
            truncated = 0
            if s4:
                sequences, truncated = _to_s4_ids(sequences, table, max_length)
            content[split] = {"tokens": sequences.tokens, "offsets": sequences.offsets, "labels": labels,
                              "truncated": truncated}
        write_cache(cache, content, "ListOps")
    datasets = {split: TokenDataset(content[split]["labels"],
                                    PackedSequences(content[split]["tokens"], content[split]["offsets"]))
                for split in files}
    truncated = {split: int(content[split]["truncated"]) for split in files}
    if any(truncated.values()):
        counts = ", ".join(f"{n} of {len(datasets[split])} {split}" for split, n in truncated.items() if n)
        warnings.warn(f"ListOps: {counts} examples have more than max_length - 1 ({max_length - 1}) tokens and "
                      "were cut to them before the <eos>, as s4's loader cuts them", stacklevel=2)
    return TaskData(
        name="listops",
        train=datasets["train"],
        val=datasets["val"],
        test=datasets["test"],
        n_classes=10,
        max_length=max_length,
        vocab_size=int(content["vocab_size"]),
        truncated=truncated,
    )
