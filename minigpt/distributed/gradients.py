"""Gradients summed over the ranks through one flat buffer, and the check that the weights agree.

allreduce_gradients(params, world, local_loss)
    Each rank's .grad holds the sum over its micro-batches of (share of the global batch) x
    (gradient of the micro-batch's mean loss). The gradients are copied into flat buffers of at
    most BUCKET_BYTES each (one buffer for the small presets), each summed over the ranks with
    one MPI Allreduce, and copied back: every rank then holds the gradient of the global
    batch's mean loss, bit for bit the same on every rank, so clipping and Adam make the same
    update everywhere. The weighted local losses are summed alongside (float64): the global
    batch's loss, returned.

check_weights_equal(params, world, step)
    A CRC-32 of every parameter's bytes, gathered from all ranks; RanksDiverged naming the
    ranks whose weights differ from rank 0's.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..backend import get_array_module
from .world import DistributedError

__all__ = ["allreduce_gradients", "check_weights_equal", "weights_checksum", "RanksDiverged",
           "BUCKET_BYTES", "gradient_bytes"]

BUCKET_BYTES = 64 << 20  # 64 MiB per Allreduce: GPT-1's 117M float32 gradients in 7 buckets


class RanksDiverged(DistributedError):
    """The weights of some rank differ from rank 0's: the replicas no longer train one model."""


def buckets(params, limit: int = BUCKET_BYTES) -> list[list]:
    """The parameters, in order, grouped into runs of at most `limit` bytes (a parameter larger
    than the limit is a bucket of its own) and of one dtype. Every parameter takes part (a
    missing .grad counts as zeros), so every rank's buffers have the same layout."""
    groups, size = [], 0
    for p in params:
        nbytes = p.data.nbytes
        if not groups or size + nbytes > limit or groups[-1][0].data.dtype != p.data.dtype:
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += nbytes
    return groups


def gradient_bytes(params) -> int:
    """Bytes one step all-reduces: every parameter's gradient (params with .data arrays)."""
    return int(sum(p.data.nbytes for p in params))


def allreduce_gradients(params, world, local_loss=0.0):
    """Sum every parameter's .grad over the ranks (in place) and return the summed loss (a
    float64, or an array when local_loss is a sequence of values: L3, L2, L1); in a
    one-process world nothing is copied and local_loss comes back."""
    params = list(params)
    values = np.array(local_loss, dtype=np.float64, ndmin=1)       # (n,) float64
    if world.size == 1:
        return values if np.ndim(local_loss) else values[0]
    for group in buckets(params):
        xp = get_array_module(group[0].data)                      # numpy, or cupy (NCCL)
        flat = xp.concatenate([xp.zeros(p.data.size, p.data.dtype) if p.grad is None
                               else p.grad.ravel() for p in group])  # (sum of sizes,)
        world.allreduce_sum(flat)
        at = 0
        for p in group:
            n = p.data.size
            p.grad = flat[at:at + n].reshape(p.data.shape)        # a view: one copy per bucket
            at += n
    world.allreduce_sum(values)
    return values if np.ndim(local_loss) else values[0]


def weights_checksum(params) -> int:
    """CRC-32 over every parameter's bytes, in order."""
    crc = 0
    for p in params:
        data = p.data.get() if hasattr(p.data, "get") else p.data  # a CuPy array: to the host
        crc = zlib.crc32(np.ascontiguousarray(data).view(np.uint8), crc)
    return crc


def check_weights_equal(params, world, step: int) -> None:
    """RanksDiverged if any rank's weights differ from rank 0's (a checksum each)."""
    if world.size == 1:
        return
    sums = world.allgather(weights_checksum(params))
    bad = [r for r, s in enumerate(sums) if s != sums[0]]
    if bad:
        raise RanksDiverged(f"after step {step} the weights of rank(s) "
                            f"{', '.join(map(str, bad))} differ from rank 0's (checksums "
                            f"{[hex(s) for s in sums]}): the replicas no longer train one model "
                            "(different data or seeds on some rank, or an all-reduce that does "
                            "not give every rank the same sum)")
