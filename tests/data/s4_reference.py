"""state-spaces/s4's input rules (src/dataloaders/{lra,basic,base}.py at e757cef), written out plainly for the tests.

Each function restates one rule from s4's code and the libraries it calls, independently of spikessm's loaders,
so that a test compares a loader's output with what s4 would compute from the same files.
"""
from collections import Counter

import numpy as np
import torch


def torchtext_vocab(token_lists, specials, min_freq=1):
    """{token: id} as torchtext.vocab.build_vocab_from_iterator(token_lists, min_freq, specials) numbers them:
    the specials first, in the order given, then every token counted >= min_freq times, sorted by (-count, token)."""
    counter = Counter()
    for tokens in token_lists:
        counter.update(tokens)
    for special in specials:
        counter.pop(special, None)
    ordered = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    tokens = list(specials) + [token for token, count in ordered if count >= min_freq]
    return {token: i for i, token in enumerate(tokens)}


SPECIALS = ["<pad>", "<unk>", "<eos>"]  # append_bos False, append_eos True: what lra.py passes


def listops_tokens(source):
    """lra.py's listops_tokenizer: "]" -> "X", "(" and ")" deleted, whitespace split."""
    return source.replace("]", "X").replace("(", "").replace(")", "").split()


def numericalize(vocab, tokens, l_max):
    """tokens[:l_max - 1] (room for the <eos>), then vocab(tokens + ["<eos>"]) with <unk> as the default index."""
    return [vocab.get(token, vocab["<unk>"]) for token in tokens[: l_max - 1]] + [vocab["<eos>"]]


def char_ids(train_texts, texts, l_max, min_freq):
    """(vocab, ids of each of texts): lra.py's character-level IMDB/AAN rule, the vocabulary counted on the train
    texts cut to l_max - 1 characters."""
    vocab = torchtext_vocab([list(text)[: l_max - 1] for text in train_texts], SPECIALS, min_freq)
    return vocab, [numericalize(vocab, list(text), l_max) for text in texts]


def to_tensor_normalize(pixels, mean=None, std=None):
    """torchvision ToTensor (uint8 / 255 in float32), then Normalize(mean, std): (x - mean) / std in float32, per
    channel. pixels: (..., C) uint8 -> (..., C) float32 numpy."""
    x = pixels.astype(np.float32) / np.float32(255)
    if mean is not None:
        x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return x


def split_train_val(n, val_split=0.1, seed=42):
    """base.py's split_train_val: random_split into (int(n * (1 - val_split)), rest) with seed 42 -> index lists."""
    train_len = int(n * (1.0 - val_split))
    parts = torch.utils.data.random_split(range(n), (train_len, n - train_len),
                                          generator=torch.Generator().manual_seed(seed))
    return [list(part) for part in parts]


def pathfinder_split(n, val_split=0.1, test_split=0.1, seed=42):
    """lra.py's PathFinder.setup: random_split into (rest, int(val * n), int(test * n)) -> index lists."""
    val_len, test_len = int(val_split * n), int(test_split * n)
    parts = torch.utils.data.random_split(range(n), [n - val_len - test_len, val_len, test_len],
                                          generator=torch.Generator().manual_seed(seed))
    return [list(part) for part in parts]


def bitreversal_permutation(n):
    """src/utils/permutations.py: the bit-reversal order of the next power of two by repeated halving, entries >= n
    dropped."""
    m = int(np.ceil(np.log2(n)))
    perm = np.arange(1 << m).reshape(-1, 1)
    for _ in range(m):
        half = perm.shape[0] // 2
        perm = np.hstack((perm[:half], perm[half:]))
    perm = perm.reshape(-1)
    return perm[perm < n]
