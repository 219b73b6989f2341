"""Embedding: a table lookup (GPT-1's token and position embeddings).

Shapes   idx int (B, T) (any shape),  W (V, C)  ->  y (B, T, C)

Forward  y[b, t] = W[idx[b, t]]

Backward y[b, t] is row idx[b, t] of W, copied, so dy[b, t] / dW[v] is the identity when
         idx[b, t] == v and 0 otherwise. Summing over every use of row v:
             dW[v] = sum of g[b, t] over every (b, t) with idx[b, t] == v
         a scatter-add: an id used n times collects n gradients, an unused id gets 0.
         idx is integer data: no gradient.
"""
from __future__ import annotations

from .. import dispatch
from ..autograd import Function, Tensor, as_array
from ..backend import get_array_module

__all__ = ["Embedding", "embedding"]


class Embedding(Function):
    """y = W[idx]; dW = scatter-add of g into the rows idx picked."""

    def forward(self, weight, idx=None):
        ### BEGIN SOLUTION
        self.idx, self.weight_shape = idx, weight.shape
        return weight[idx]  # (B, T, C)
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        xp = get_array_module(g)
        V, C = self.weight_shape
        dW = xp.zeros((V, C), dtype=g.dtype)
        # dW[idx[n]] += g[n] for every position n; add.at adds repeated ids once each
        xp.add.at(dW, self.idx.reshape(-1), g.reshape(-1, C))  # (N,) ids, (N, C) rows
        return (dW,)
        ### END SOLUTION


def embedding(idx, weight: Tensor) -> Tensor:
    """Look up rows of `weight` (V, C) for integer ids `idx` (any shape) -> idx.shape + (C,)."""
    xp = get_array_module(as_array(weight))
    idx = xp.asarray(as_array(idx))  # ids live where the weight lives
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {idx.dtype}")
    V = weight.shape[0]
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= V:
            bad = lo if lo < 0 else hi
            raise ValueError(f"embedding id {bad} is outside the vocabulary [0, {V})")
    return dispatch.apply("embedding", weight, idx=idx)


dispatch.register("embedding", "reference", Embedding)
