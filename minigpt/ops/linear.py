"""Linear: an affine map of the last axis (every projection in GPT-1, and the output layer).

Shapes   x (..., in),  W (in, out) as GPT-1 and HuggingFace's Conv1D store it,  b (out,)
         ->  y (..., out).   N = the number of rows, x.size / in.

Forward  y = x @ W + b

Backward With g = dL/dy (..., out), for one row y_n = x_n W + b:
             dy_n[j] / dx_n[i] = W[i, j]  ->  dx_n = g_n @ W^T
             dy_n[j] / dW[i, j] = x_n[i]  ->  dW = sum over rows of x_n^T g_n = X^T @ G
             dy_n[j] / db[j] = 1          ->  db = sum over rows of g_n
         with X (N, in) and G (N, out) the rows stacked.
"""
from __future__ import annotations

from .. import dispatch
from ..autograd import Function, Tensor

__all__ = ["Linear", "linear", "check_linear_inputs"]


class Linear(Function):
    """y = x @ W + b;  dx = g @ W^T,  dW = X^T @ G,  db = sum of the rows of G."""

    def forward(self, x, weight, bias=None):
        ### BEGIN SOLUTION
        self.save(x, weight)
        y = x @ weight  # (..., in) @ (in, out) -> (..., out)
        if bias is not None:
            y = y + bias
        return y
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        x, weight = self.saved
        n_in, n_out = weight.shape
        X, G = x.reshape(-1, n_in), g.reshape(-1, n_out)  # rows stacked: (N, in), (N, out)
        dx = g @ weight.T  # (..., out) @ (out, in) -> (..., in)
        dW = X.T @ G  # (in, N) @ (N, out) -> (in, out)
        if len(self.needs_input_grad) == 3:  # called with a bias
            return dx, dW, G.sum(axis=0)  # (out,)
        return dx, dW
        ### END SOLUTION


def check_linear_inputs(op: str, x, weight, bias=None) -> None:
    """Raise ValueError unless x (..., in), weight (in, out) and bias (out,) or None fit (the
    shape rule of linear and of every op built on it, named `op` in the message)."""
    if x.shape[-1:] != weight.shape[:1]:
        raise ValueError(f"{op}: input shape {x.shape} does not match weight shape "
                         f"{weight.shape} (weight is (in, out))")
    if bias is not None and bias.shape != (weight.shape[1],):
        raise ValueError(f"{op}: bias shape {bias.shape} does not match weight shape "
                         f"{weight.shape}")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x @ weight + bias; weight (in, out), bias (out,) or None."""
    check_linear_inputs("linear", x, weight, bias)
    if bias is None:
        return dispatch.apply("linear", x, weight)
    return dispatch.apply("linear", x, weight, bias)


dispatch.register("linear", "reference", Linear)
