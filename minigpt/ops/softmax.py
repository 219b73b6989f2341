"""Softmax and log-softmax along one axis.

Shapes   x (any), axis  ->  y (same shape); each slice along `axis` on its own.

Softmax      y_i = exp(x_i) / sum_j exp(x_j)
  forward    computed as exp(x - max) / sum(exp(x - max)): the same value (the factor
             exp(-max) cancels), and exp() can no longer overflow.
  backward   dy_j/dx_i = y_j (delta_ij - y_i), so
                 dx_i = sum_j g_j y_j (delta_ij - y_i) = y_i (g_i - sum_j g_j y_j)

LogSoftmax   y_i = x_i - log sum_j exp(x_j)
  forward    computed as (x - max) - log(sum(exp(x - max))): both terms stay small. The
             textbook x - (max + log(sum)) loses ~1e-3 in float32 on logits of 1e4 (a float32
             near 1e4 is only resolved to ~1e-3).
  backward   dy_j/dx_i = delta_ij - softmax(x)_i, so  dx = g - softmax(x) * sum(g),
             with softmax(x) = exp(y).
"""
from __future__ import annotations

from .. import dispatch
from ..autograd import Function, Tensor
from ..backend import get_array_module

__all__ = ["Softmax", "LogSoftmax", "softmax", "log_softmax", "stable_log_softmax"]


def stable_log_softmax(x, axis=-1):
    """log-softmax of an array: (x - max) - log(sum(exp(x - max))) along axis."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)  # <= 0, the max entry exactly 0
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max));  dx = y * (g - sum(g * y))."""

    def forward(self, x, axis=-1):
        ### BEGIN SOLUTION
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        self.axis = axis
        self.save(y)
        return y
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        (y,) = self.saved
        return (y * (g - (g * y).sum(axis=self.axis, keepdims=True)),)
        ### END SOLUTION


class LogSoftmax(Function):
    """y = x - logsumexp(x);  dx = g - exp(y) * sum(g)."""

    def forward(self, x, axis=-1):
        ### BEGIN SOLUTION
        y = stable_log_softmax(x, axis)
        self.axis = axis
        self.save(y)
        return y
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        xp = get_array_module(g)
        (y,) = self.saved
        return (g - xp.exp(y) * g.sum(axis=self.axis, keepdims=True),)
        ### END SOLUTION


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax of x along `axis`."""
    return dispatch.apply("softmax", x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along `axis`, computed stably."""
    return dispatch.apply("log_softmax", x, axis=axis)


dispatch.register("softmax", "reference", Softmax)
dispatch.register("log_softmax", "reference", LogSoftmax)
