"""BPE merge learning, tuned: the reference (bpe_train.py `learn_merges`) recounts
every adjacent pair of every word after each merge; this version keeps the counts and updates
only the words that contain the merged pair, and finds the best pair with a heap.

What changes vs the reference:
  - `counts[pair]` (weighted by word frequency) and `where[pair]` (the words holding it) are
    built once; a merge revisits only where[(a, b)] and applies the difference between the
    word's pair counts after and before the merge.
  - the best pair comes from a heap of (-count, a, b) with lazy deletion: an entry whose count
    no longer matches `counts` is stale and skipped; a changed count is pushed again. Popping
    the smallest (-count, a, b) is the reference's rule: most frequent, ties to the smallest
    pair.
Measured (2-core VM, 2026-11-26): 300 KB of the ablation corpus, a 400-token vocabulary: 0.34 s
against 8.6 s for the reference; the ablation's 2000-token BPE on 5.2 MB: about 4 s (the
reference was not timed on it). tests/test_tokenizers.py checks both give the same merges and
vocabulary.
"""
from __future__ import annotations

import heapq
from collections import Counter

from .. import dispatch
from .bpe_train import END_OF_WORD, merge_symbols, pair_counts

__all__ = ["learn_merges"]


def learn_merges(word_counts: Counter, vocab: dict[str, int], vocab_size: int | None,
                 budget: int | None, min_frequency: int) -> list[tuple[str, str]]:
    """The same contract as the reference: grow `vocab` in place, return the merges in order."""
    words = [list(w[:-1]) + [w[-1] + END_OF_WORD] for w in word_counts]
    freqs = list(word_counts.values())
    counts: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for idx, (symbols, f) in enumerate(zip(words, freqs)):
        for pair, k in pair_counts(symbols).items():
            counts[pair] += k * f
            where.setdefault(pair, set()).add(idx)
    heap = [(-c, a, b) for (a, b), c in counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    learned: set[tuple[str, str]] = set()
    while heap:
        if budget is not None and len(merges) >= budget:
            break
        if vocab_size is not None and len(vocab) >= vocab_size:
            break
        neg, a, b = heapq.heappop(heap)
        if counts.get((a, b), 0) != -neg:
            continue  # stale entry: this pair's count changed and was pushed again
        if -neg < min_frequency:
            break
        new = a + b
        if (a, b) not in learned:  # a pair can come back once a later merge re-creates `a`
            learned.add((a, b))
            merges.append((a, b))
        if new not in vocab:  # two different merges can spell the same token
            vocab[new] = len(vocab)
        changed = set()
        for idx in sorted(where.pop((a, b), ())):
            old = words[idx]
            merged = merge_symbols(old, a, b, new)
            if len(merged) == len(old):
                continue  # index entry left over from an earlier merge of this word
            delta = pair_counts(merged)
            delta.subtract(pair_counts(old))
            f = freqs[idx]
            for pair, d in delta.items():
                if d:
                    counts[pair] += d * f
                    changed.add(pair)
                    if d > 0:
                        where.setdefault(pair, set()).add(idx)
            words[idx] = merged
        for pair in changed:
            c = counts[pair]
            if c > 0:
                heapq.heappush(heap, (-c, pair[0], pair[1]))
            else:
                del counts[pair]
    return merges


dispatch.register("bpe_merges", "fast", learn_merges)
