"""linear_gelu: the first half of GPT-1's MLP, gelu(x W + b), as one op a GPU kernel can fuse.

Shapes   x (..., in),  W (in, out),  b (out,) or None  ->  y (..., out)

Forward  y = gelu(linear(x, W, b))      (linear.py and gelu.py: nothing new to learn here)

Backward the chain rule through the two ops: dh = g * gelu'(h) with h = x W + b, then
         linear's dx = dh W^T, dW = X^T dH, db = sum of the rows of dH.

Why an op of its own: on the GPU the bias add and the GELU run as one kernel
(kernels/07_bias_gelu.cu, minigpt/cuda/gelu.py registers it), one pass over the (N, 4C)
activation each way instead of a chain of elementwise launches. Everywhere else the reference
below is exactly the two ops one after the other, each dispatched on its own (so the tuned CPU
versions of linear and gelu still run on NumPy arrays).
"""
from __future__ import annotations

from .. import dispatch
from ..autograd import Tensor
from .gelu import gelu
from .linear import check_linear_inputs, linear

__all__ = ["LinearGELU", "linear_gelu"]


class LinearGELU:
    """The reference linear_gelu: gelu(linear(x, W, b)), two ops in a row (not one Function:
    autograd records linear and gelu, whose backwards are already derived)."""

    @staticmethod
    def apply(x, weight, bias=None) -> Tensor:
        return gelu(linear(x, weight, bias))


def linear_gelu(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = gelu(x @ weight + bias); weight (in, out), bias (out,) or None."""
    check_linear_inputs("linear_gelu", x, weight, bias)
    if bias is None:
        return dispatch.apply("linear_gelu", x, weight)
    return dispatch.apply("linear_gelu", x, weight, bias)


dispatch.register("linear_gelu", "reference", LinearGELU)
