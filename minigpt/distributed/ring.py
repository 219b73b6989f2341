"""The ring all-reduce and bucketed gradient averaging, over simulated ranks (the `parallel`
assignment's answer key; training itself calls MPI's Allreduce, see world.py).

ring_allreduce(buffers) -> list of N arrays, each the element-wise sum of the N inputs.
    buffers: N 1-D arrays of the same length L (rank r's); L need not be a multiple of N and
    N may be 1. The buffer is cut into N chunks (np.array_split: the first L % N one longer).
    Reduce-scatter, steps s = 0 .. N-2: rank r sends chunk (r - s) mod N to rank (r + 1) mod N,
    which adds it into its own copy; afterwards rank r holds the complete sum of chunk
    (r + 1) mod N. All-gather, steps s = 0 .. N-2: rank r sends chunk (r + 1 - s) mod N, which
    the next rank copies. Each rank sends 2 (N-1) chunks: 2 (N-1)/N x L elements.
    Every send of a step is taken before any receive of it is applied (the ranks run at once).

bucketed_average(grads, bucket_elems) -> list (per rank) of lists of arrays
    grads[r][i]: rank r's gradient of parameter i (any shapes, the same on every rank). The
    parameters, in order, are packed into flat buckets of at most bucket_elems elements (a
    parameter larger than that is a bucket of its own); each bucket is summed with
    ring_allreduce and divided by N; returns every rank's averaged gradients, shaped as given.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ring_allreduce", "bucketed_average", "buckets_of"]


def ring_allreduce(buffers: list) -> list:
    """The element-wise sum of the ranks' 1-D buffers, on every rank, by the ring algorithm."""
    ### BEGIN SOLUTION
    n = len(buffers)
    bufs = [np.array(b, copy=True) for b in buffers]
    chunks = np.array_split(np.arange(len(bufs[0])), n)          # N index ranges
    for s in range(n - 1):                                       # reduce-scatter
        sent = [bufs[r][chunks[(r - s) % n]].copy() for r in range(n)]
        for r in range(n):
            bufs[(r + 1) % n][chunks[(r - s) % n]] += sent[r]
    for s in range(n - 1):                                       # all-gather
        sent = [bufs[r][chunks[(r + 1 - s) % n]].copy() for r in range(n)]
        for r in range(n):
            bufs[(r + 1) % n][chunks[(r + 1 - s) % n]] = sent[r]
    return bufs
    ### END SOLUTION


def buckets_of(sizes: list, bucket_elems: int) -> list:
    """Indices of the parameters in each bucket: consecutive runs of at most bucket_elems
    elements (a larger parameter alone)."""
    groups, total = [], 0
    for i, n in enumerate(sizes):
        if not groups or total + n > bucket_elems:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += n
    return groups


def bucketed_average(grads: list, bucket_elems: int) -> list:
    """Every rank's gradients averaged over the ranks, one ring all-reduce per bucket."""
    ### BEGIN SOLUTION
    n = len(grads)
    out = [[None] * len(g) for g in grads]
    for group in buckets_of([np.size(g) for g in grads[0]], bucket_elems):
        flat = [np.concatenate([np.ravel(grads[r][i]) for i in group]) for r in range(n)]
        summed = ring_allreduce(flat)                            # (sum of the bucket's sizes,)
        for r in range(n):
            at = 0
            for i in group:
                size = np.size(grads[r][i])
                out[r][i] = (summed[r][at:at + size] / n).reshape(np.shape(grads[r][i]))
                at += size
    return out
    ### END SOLUTION
