"""Batches: encoded examples padded into arrays, and the auxiliary LM loss's targets.

Batches are padded on the right to the longest sequence in the batch; the padding mask
(1 = real, 0 = padding) keeps padded keys out of attention, and padded positions are left out
of every loss, so the pad id itself never matters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .examples import IGNORE_INDEX

__all__ = ["Batch", "collate", "lm_targets"]


@dataclass
class Batch:
    """Padded sequences of B examples, G sequences each (G = 1, 2 for similar, K for choice).

    idx (B*G, T) int64, padding with `pad_id`; mask (B*G, T) int8, 1 = real token;
    extract (B*G,) position of each sequence's last (extract) token; labels (B,) int64 or, for
    tagging, (B, T) with IGNORE_INDEX everywhere but first sub-tokens; first: per example the
    first sub-token positions (tagging).
    """
    idx: np.ndarray
    mask: np.ndarray
    extract: np.ndarray
    labels: np.ndarray | None
    group: int
    first: list | None = None


def collate(items, task: str, pad_id: int = 0) -> Batch:
    """Pad a list of Encoded into one Batch (right padding to the longest sequence)."""
    if not items:
        raise ValueError("collate got no examples")
    group = len(items[0].seqs)
    if any(len(it.seqs) != group for it in items):
        raise ValueError("all examples of a batch need the same number of sequences "
                         "(multiple choice: the same number of choices)")
    seqs = [s for it in items for s in it.seqs]
    T = max(len(s) for s in seqs)
    N = len(seqs)
    idx = np.full((N, T), pad_id, dtype=np.int64)
    mask = np.zeros((N, T), dtype=np.int8)
    for i, s in enumerate(seqs):
        idx[i, :len(s)] = s
        mask[i, :len(s)] = 1
    extract = np.array([len(s) - 1 for s in seqs], dtype=np.int64)
    labels = None
    has_labels = all(it.label is not None for it in items)
    if task == "tag":
        if has_labels:
            labels = np.full((N, T), IGNORE_INDEX, dtype=np.int64)
            for i, it in enumerate(items):
                labels[i, it.first[:len(it.label)]] = it.label
        return Batch(idx, mask, extract, labels, group, [it.first for it in items])
    if has_labels:
        labels = np.array([it.label for it in items], dtype=np.int64)
    return Batch(idx, mask, extract, labels, group)


def lm_targets(idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Next-token targets for the auxiliary LM loss L1: idx[t + 1] where position t + 1 is a
    real token, IGNORE_INDEX elsewhere (padding, and the last real token, which has no next)."""
    targets = np.full(idx.shape, IGNORE_INDEX, dtype=np.int64)
    targets[:, :-1] = np.where(mask[:, 1:] > 0, idx[:, 1:], IGNORE_INDEX)
    return targets
