"""Learning BPE merges from word counts: the reference (the bpe assignment's answer key).

Each step recounts every adjacent pair of every word (weighted by the word's frequency), merges
the most frequent pair everywhere (ties: the smallest (left, right) in string order, so the
result never depends on hashing), and starts over. bpe_train_fast.py learns the same merges
with counts updated incrementally and a heap; `minigpt.dispatch` picks it in modes auto/fast.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from .. import dispatch

__all__ = ["END_OF_WORD", "pair_counts", "merge_symbols", "learn_merges"]

END_OF_WORD = "</w>"


def pair_counts(symbols: Sequence[str]) -> Counter:
    """How often each adjacent pair occurs in one word's symbols ("a a a": (a, a) twice)."""
    return Counter(zip(symbols, symbols[1:]))


def merge_symbols(symbols: list[str], a: str, b: str, new: str) -> list[str]:
    """Replace every (a, b), scanning left to right without overlaps ("a a a" -> "aa a")."""
    out, i, n = [], 0, len(symbols)
    while i < n:
        if i + 1 < n and symbols[i] == a and symbols[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def learn_merges(word_counts: Counter, vocab: dict[str, int], vocab_size: int | None,
                  budget: int | None, min_frequency: int) -> list[tuple[str, str]]:
    """Grow `vocab` in place; returns the merges in the order learned (their ranks).

    The reference: every step recounts every adjacent pair of every word, merges the best one
    everywhere, and starts over. Slow on a big text (minutes for thousands of merges on a
    megabyte); bpe_train_fast.py updates the counts incrementally instead, tested equal."""
    ### BEGIN SOLUTION
    words = [list(w[:-1]) + [w[-1] + END_OF_WORD] for w in word_counts]  # "low" -> l o w</w>
    freqs = list(word_counts.values())
    merges: list[tuple[str, str]] = []
    while budget is None or len(merges) < budget:
        if vocab_size is not None and len(vocab) >= vocab_size:
            break
        counts: Counter = Counter()
        for symbols, f in zip(words, freqs):
            for pair, k in pair_counts(symbols).items():
                counts[pair] += k * f
        if not counts:
            break
        (a, b), best = min(counts.items(), key=lambda item: (-item[1], item[0]))  # ties: smallest pair
        if best < min_frequency:
            break
        new = a + b
        if (a, b) not in merges:  # a pair can come back once a later merge re-creates `a`
            merges.append((a, b))
        if new not in vocab:  # two different merges can spell the same token
            vocab[new] = len(vocab)
        words = [merge_symbols(symbols, a, b, new) for symbols in words]
    return merges
    ### END SOLUTION


dispatch.register("bpe_merges", "reference", learn_merges)
