"""Language-model batches: random windows of a token sequence, and their next-token targets."""
from __future__ import annotations

import numpy as np

__all__ = ["get_batch"]


def get_batch(data: np.ndarray, batch_size: int, block_size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`batch_size` random contiguous windows: x = data[s:s+T], y = data[s+1:s+T+1].

    Returns int64 arrays of shape (batch_size, block_size); every start s in
    [0, len(data) - block_size - 1] is equally likely, drawn from `rng`. `data` may also be
    a prepared folder's TokenShards (shards.py), which draws its windows across its shards.
    """
    if hasattr(data, "get_batch"):  # TokenShards: memory-mapped shards (minigpt prepare)
        return data.get_batch(batch_size, block_size, rng)
    data = np.asarray(data)
    if data.ndim != 1:
        raise ValueError(f"data must be a 1-D array of token ids, got shape {data.shape}")
    if batch_size < 1 or block_size < 1:
        raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, "
                         f"{block_size}")
    if len(data) < block_size + 1:
        raise ValueError(f"data has {len(data)} tokens; a window needs block_size + 1 = "
                         f"{block_size + 1}")
    starts = rng.integers(0, len(data) - block_size, size=batch_size)
    offsets = starts[:, None] + np.arange(block_size)[None, :]
    return data[offsets].astype(np.int64), data[offsets + 1].astype(np.int64)
