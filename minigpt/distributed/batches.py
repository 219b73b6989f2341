"""The global sampler's split: the global batch of B rows, drawn the same on every rank, is
split into N ranks x K micro-batches; rank r's k-th micro-batch is the (r*K + k)-th slice.

    B = 8, N = 2, K = 2:   rows 0 1 | 2 3 | 4 5 | 6 7
                                r0k0  r0k1  r1k0  r1k1
"""
from __future__ import annotations

__all__ = ["check_split", "row_slices", "my_rows"]


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
