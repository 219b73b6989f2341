"""LayerNorm: normalise each row to mean 0 and variance 1, then scale and shift.

Shapes   x (..., C),  w (C,),  b (C,)  ->  y (..., C).   Every row (the last axis) on its own.

Forward  mean = (1/C) sum_i x_i          var = (1/C) sum_i (x_i - mean)^2   (biased, as GPT-1)
         rstd = 1 / sqrt(var + eps)      xhat = (x - mean) * rstd
         y = xhat * w + b

Backward With g = dL/dy and gh = g * w = dL/dxhat, for one row:
             dL/dw = sum over rows of g * xhat,   dL/db = sum over rows of g
         xhat depends on x directly and through mean and rstd:
             dxhat_j/dx_i = rstd * (delta_ij - 1/C - xhat_i xhat_j / C)
         (d mean/dx_i = 1/C,  d rstd/dx_i = -rstd^3 (x_i - mean) / C = -rstd^2 xhat_i / C).
         Contracting with gh over j:
             dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
         the two means taken over the row.
"""
from __future__ import annotations

from .. import dispatch
from ..autograd import Function, Tensor
from ..backend import get_array_module

__all__ = ["LayerNorm", "layer_norm"]


class LayerNorm(Function):
    """y = (x - mean) * rstd * w + b over the last axis."""

    def forward(self, x, weight, bias, eps=1e-5):
        ### BEGIN SOLUTION
        xp = get_array_module(x)
        mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (..., 1), biased
        rstd = 1 / xp.sqrt(var + eps)
        xhat = (x - mean) * rstd  # (..., C)
        self.save(xhat, rstd, weight)
        return xhat * weight + bias
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        xhat, rstd, weight = self.saved
        C = xhat.shape[-1]
        gh = g * weight  # dL/dxhat, (..., C)
        dx = rstd * (gh - gh.mean(axis=-1, keepdims=True)
                     - xhat * (gh * xhat).mean(axis=-1, keepdims=True))
        dw = (g * xhat).reshape(-1, C).sum(axis=0)  # (N, C) -> (C,)
        db = g.reshape(-1, C).sum(axis=0)
        return dx, dw, db
        ### END SOLUTION


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last axis of x (..., C) with gain `weight` (C,) and `bias` (C,)."""
    C = x.shape[-1] if x.ndim else None
    if weight.shape != (C,) or bias.shape != (C,):
        raise ValueError(f"layer_norm: input shape {x.shape} does not match weight "
                         f"{weight.shape} / bias {bias.shape}")
    return dispatch.apply("layer_norm", x, weight, bias, eps=eps)


dispatch.register("layer_norm", "reference", LayerNorm)
