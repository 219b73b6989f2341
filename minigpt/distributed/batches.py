"""The global sampler's split: the global batch of B rows, drawn the same on every rank, is
split into N ranks x K micro-batches; rank r's k-th micro-batch is the (r*K + k)-th slice.

    B = 8, N = 2, K = 2:   rows 0 1 | 2 3 | 4 5 | 6 7
                                r0k0  r0k1  r1k0  r1k1
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..tasks.batching import lm_targets
from ..tasks.examples import IGNORE_INDEX

__all__ = ["check_split", "row_slices", "my_rows", "example_rows", "loss_counts",
           "my_examples"]


def check_split(batch_size: int, world_size: int, grad_accum: int, what: str = "--batch-size"
                ) -> int:
    """Rows per micro-batch, B / (N K); a ValueError naming the three numbers if it does not
    divide."""
    parts = world_size * grad_accum
    if batch_size % parts:
        lo = max(parts, batch_size // parts * parts)
        raise ValueError(f"{what} {batch_size} (the global batch) does not split into "
                         f"{world_size} processes x {grad_accum} micro-batches (--grad-accum) = "
                         f"{parts} equal parts: use a multiple of {parts} (e.g. {lo} or "
                         f"{lo + parts})")
    return batch_size // parts


def row_slices(n_rows: int, parts: int) -> list[slice]:
    """`parts` contiguous slices covering rows 0..n_rows-1, as equal as can be (the first
    n_rows % parts one row longer); some are empty when n_rows < parts."""
    edges = [0]
    base, extra = divmod(n_rows, parts)
    for i in range(parts):
        edges.append(edges[-1] + base + (1 if i < extra else 0))
    return [slice(edges[i], edges[i + 1]) for i in range(parts)]


def my_rows(n_rows: int, world, grad_accum: int) -> list[slice]:
    """This rank's K micro-batches of a global batch of n_rows rows: slices r*K .. r*K + K-1
    of row_slices(n_rows, N*K)."""
    slices = row_slices(n_rows, world.size * grad_accum)
    return slices[world.rank * grad_accum:(world.rank + 1) * grad_accum]


def example_rows(batch, rows: slice):
    """The examples `rows` of a collated fine-tuning Batch (tasks.batching): G sequences each,
    the global batch's padded length T kept (so every rank's arrays are those rows of the
    one-process arrays)."""
    g = batch.group
    seqs = slice(rows.start * g, rows.stop * g)                    # (n*G, T) rows of idx, mask
    return dataclasses.replace(
        batch, idx=batch.idx[seqs], mask=batch.mask[seqs], extract=batch.extract[seqs],
        labels=None if batch.labels is None else batch.labels[rows],
        first=None if batch.first is None else batch.first[rows])


def loss_counts(batch) -> tuple[int, int]:
    """(labels, LM targets) of a fine-tuning Batch: what L2 and L1 average over (positions
    labelled IGNORE_INDEX and padding are left out), for weighting a micro-batch's mean losses
    by its share of the global batch's."""
    labels = 0 if batch.labels is None else int(np.sum(batch.labels != IGNORE_INDEX))
    return labels, int(np.sum(lm_targets(batch.idx, batch.mask) != IGNORE_INDEX))


def my_examples(n_rows: int, world, grad_accum: int) -> list[tuple[slice, bool]]:
    """my_rows for a fine-tuning batch, which may be shorter than N*K at an epoch's end: an
    empty micro-batch becomes (slice(0, 1), False), one row run with weight 0, so that every
    rank draws the step's dropout masks (GlobalRowMasks) all the same."""
    return [(s, True) if s.stop > s.start else (slice(0, 1), False)
            for s in my_rows(n_rows, world, grad_accum)]
