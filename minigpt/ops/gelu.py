"""GELU, in the tanh form GPT-1 uses (the MLP's activation).

Shapes   x (any)  ->  y (same shape), elementwise.

Forward  u = sqrt(2/pi) (x + 0.044715 x^3),   t = tanh(u)
         y = 0.5 x (1 + t)

Backward Product rule, with dt/du = 1 - t^2 and du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2):
             dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx
             dx = g * dy/dx
         so the backward needs x and the saved t only (no second tanh).
"""
from __future__ import annotations

import math

from .. import dispatch
from ..autograd import Function, Tensor
from ..backend import get_array_module

__all__ = ["GELU", "gelu"]

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class GELU(Function):
    """y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def forward(self, x):
        ### BEGIN SOLUTION
        xp = get_array_module(x)
        u = SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
        t = xp.tanh(u)
        self.save(x, t)
        return 0.5 * x * (1 + t)
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        x, t = self.saved
        du_dx = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x ** 2)
        dy_dx = 0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * du_dx
        return (g * dy_dx,)
        ### END SOLUTION


def gelu(x: Tensor) -> Tensor:
    """GELU (tanh approximation) of every element of x."""
    return dispatch.apply("gelu", x)


dispatch.register("gelu", "reference", GELU)
