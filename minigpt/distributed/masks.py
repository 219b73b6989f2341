"""Dropout masks by global row: the same masks whatever the number of ranks N and micro-batches K.

In one process, every dropout call draws `rng.random((B, ...))` for the whole batch of B rows.
A rank holding rows lo..hi-1 of that batch must use exactly those rows of that draw. So, for
each micro-batch, `GlobalRowMasks.rows(slice)`:

  1. puts the shared generator (minigpt.random's, the same state on every rank) back at the
     state it had when the step began (so every micro-batch sees the step's global masks);
  2. while the micro-batch's forward runs, answers each `random(shape)` of the ops (dropout,
     attention dropout) with rows lo..hi-1 of the draw a one-process forward would make: it
     draws rows 0..lo-1 and hi..B-1 too (in chunks, and throws them away), so the generator
     ends where one full pass leaves it, on every rank.

Each row's mask then comes from its global position; the cost is that every rank draws the
random numbers of the whole global batch once per micro-batch (N K times the draws of its own
rows). A draw whose first dimension is g times the local rows (choice tasks' B*G sequences, a
flattened (B*T, C)) is read as g consecutive rows per batch row.

On the GPU the CUDA attention kernels draw one philox seed per call and index the mask by the
LOCAL row, and CuPy's generator state is not replayed here: with dropout > 0 and N*K > 1 the
masks there differ from the one-process run's (the run is still correct data-parallel training).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .. import random as mgrandom

__all__ = ["GlobalRowMasks", "RowDraws"]

CHUNK_ROWS = 64  # rows drawn at a time outside this rank's slice (bounds the memory)


class RowDraws:
    """A stand-in for a numpy Generator inside one micro-batch's forward: `random(shape)` for
    the local rows lo..lo+n-1 of a global batch of `total` rows, drawn from `rng`."""

    def __init__(self, rng: np.random.Generator, lo: int, n: int, total: int):
        self.rng, self.lo, self.n, self.total = rng, lo, n, total

    def random(self, size=None, dtype=np.float64):
        shape = tuple(np.atleast_1d(size)) if size is not None else ()
        if not shape or shape[0] % self.n:
            raise ValueError(f"a dropout draw of shape {shape} does not have the micro-batch's "
                             f"{self.n} rows first: global-row masks cannot be made for it")
        g = shape[0] // self.n                      # consecutive draw rows per batch row
        rest = shape[1:]
        self.skip(self.lo * g, rest, dtype)          # the rows of the ranks before
        mine = self.rng.random((self.n * g, *rest), dtype=dtype)
        self.skip((self.total - self.lo - self.n) * g, rest, dtype)  # and after
        return mine

    def skip(self, rows: int, rest, dtype) -> None:
        for start in range(0, rows, CHUNK_ROWS):
            self.rng.random((min(CHUNK_ROWS, rows - start), *rest), dtype=dtype)

    def __getattr__(self, name):
        raise AttributeError(f"global-row dropout masks support Generator.random only, not "
                             f"{name!r}")


class GlobalRowMasks:
    """Made at the start of a step (it keeps the shared generator's state then); `rows(s)`
    around each micro-batch's forward (see the module docstring)."""

    def __init__(self, total_rows: int):
        self.total = total_rows
        self.rng = mgrandom.get_rng(np)
        self.start_state = self.rng.bit_generator.state

    @contextmanager
    def rows(self, rows: slice):
        self.rng.bit_generator.state = self.start_state
        with mgrandom.using_generator(RowDraws(self.rng, rows.start, rows.stop - rows.start,
                                               self.total)):
            yield
