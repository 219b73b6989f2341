"""Dropout (inverted): while training, zero each element with probability p.

Shapes   x (any)  ->  y (same shape).

Forward  m_i ~ Bernoulli(1 - p) (1 = keep),   y = x * m / (1 - p)
         the survivors are scaled by 1/(1 - p) so that E[y] = x, and evaluation (no dropout)
         needs no rescaling.

Backward y is x times a constant mask:  dx = g * m / (1 - p)  (the same mask).
"""
from __future__ import annotations

from .. import dispatch
from ..autograd import Function, Tensor, as_array
from ..backend import get_array_module
from ..random import get_rng

__all__ = ["Dropout", "dropout"]


class Dropout(Function):
    """y = x * m / (1 - p),  m ~ Bernoulli(1 - p);  dx = g * m / (1 - p)."""

    def forward(self, x, p=0.1, rng=None):
        ### BEGIN SOLUTION
        xp = get_array_module(x)
        keep = xp.asarray(rng.random(x.shape, dtype=x.dtype)) >= x.dtype.type(p)
        mask = keep / x.dtype.type(1 - p)  # 0 or 1/(1 - p)
        self.save(mask)
        return x * mask
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        (mask,) = self.saved
        return (g * mask,)
        ### END SOLUTION


def dropout(x: Tensor, p: float, training: bool, rng=None) -> Tensor:
    """Zero each element with probability p while training (scaling the rest by 1/(1-p)).

    rng: a `numpy.random.Generator` (or CuPy's) so runs are reproducible; defaults to minigpt's
    global generator (`minigpt.manual_seed`).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if rng is None:
        rng = get_rng(get_array_module(as_array(x)))
    return dispatch.apply("dropout", x, p=p, rng=rng)


dispatch.register("dropout", "reference", Dropout)
