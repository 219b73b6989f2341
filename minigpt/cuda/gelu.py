"""The MLP's bias + GELU on the GPU: launch code of kernels/07_bias_gelu.cu, its NumPy twin,
and the autograd Functions that use it.

    from minigpt.cuda import gelu as G
    y = G.bias_gelu_forward(h, b)              # y = gelu(h + b), h (..., C), b (C,), CuPy float32
    dh, db = G.bias_gelu_backward(g, h, b)     # dh = g * gelu'(h + b), db = dh summed over rows

Functions registered with minigpt.dispatch as the "cuda" implementation (CuPy float32 arrays
whose last axis is a multiple of 4; anything else falls back to the next implementation):

    FusedGELU        op "gelu":         y = gelu(x), one launch each way (07 without a bias)
    FusedLinearGELU  op "linear_gelu":  y = gelu(x @ W + b): the matmul on cuBLAS (CuPy), then
                     07 adds the bias and applies GELU in one pass; the backward's dh, db come
                     from one pass too, then dx = dh W^T and dW = X^T dh on cuBLAS.

GELU is the tanh form GPT-1 uses (minigpt.ops.gelu): y = 0.5 h (1 + tanh(sqrt(2/pi) (h +
0.044715 h^3))). `bias_gelu_reference` / `bias_gelu_backward_reference` compute the same
function as the kernels, in NumPy (any float dtype), for the tests (the kernels evaluate it
through the logistic function, 1 + tanh u = 2 sigmoid(2u), which keeps float32 precise where
the tanh form cancels).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dispatch
from ..autograd import Function
from ..backend import get_array_module, is_cupy_array
from .loader import KERNEL_FILES, as_kernel_array, cdiv, empty_output, fused_enabled, i32, launch

__all__ = ["GELU_THREADS", "GELU_ROWS_PER_CHUNK", "can_fuse_bias_gelu", "bias_gelu_forward",
           "bias_gelu_backward", "bias_gelu_reference", "bias_gelu_backward_reference",
           "FusedGELU", "FusedLinearGELU"]

GELU_THREADS = 256
GELU_ROWS_PER_CHUNK = 64  # rows of one backward block: db partial sums per 64 rows
GELU_STRIP = 64           # columns of one backward block (16 threads x float4)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def can_fuse_bias_gelu(x, b=None) -> bool:
    """Can 07 take x (..., C) and bias b (C,) or None? CuPy float32, C % 4 == 0, switch on."""
    if not (fused_enabled() and is_cupy_array(x) and x.dtype == np.float32 and x.ndim >= 1
            and x.size > 0 and x.shape[-1] % 4 == 0):
        return False
    return b is None or (is_cupy_array(b) and b.dtype == np.float32 and b.shape == x.shape[-1:])


# ---- the NumPy twin ----------------------------------------------------------------------------

def bias_gelu_reference(x, b=None):
    """y = gelu(x + b) in the tanh form (b None: gelu(x)); any float dtype."""
    xp = get_array_module(x)
    h = x if b is None else x + b
    t = xp.tanh(_SQRT_2_OVER_PI * (h + 0.044715 * h * h * h))
    return 0.5 * h * (1 + t)


def bias_gelu_backward_reference(g, x, b=None):
    """(dx, db) of bias_gelu_reference: dx = g * gelu'(x + b), db = dx summed over all rows
    (None without a bias)."""
    h = x if b is None else x + b
    xp = get_array_module(h)
    t = xp.tanh(_SQRT_2_OVER_PI * (h + 0.044715 * h * h * h))
    du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * h * h)
    dx = g * (0.5 * (1 + t) + 0.5 * h * (1 - t * t) * du)
    db = None if b is None else dx.reshape(-1, dx.shape[-1]).sum(axis=0)  # (C,)
    return dx, db


# ---- launchers -------------------------------------------------------------------------------

def _rows_cols(x):
    C = x.shape[-1]
    if C % 4:
        raise ValueError(f"bias_gelu: the last axis ({C}) must be a multiple of 4 (float4 loads)")
    return x.size // C, C


def _bias_arg(b, C, xp):
    if b is None:
        return xp.zeros(1, dtype=np.float32), np.int32(0)
    b = as_kernel_array(b, "b")
    if b.shape != (C,):
        raise ValueError(f"bias_gelu: bias shape {b.shape} should be ({C},), the last axis of x")
    return b, np.int32(1)


def bias_gelu_forward(x, b=None):
    """y = gelu(x + b) for x (..., C) and b (C,) or None: kernels/07 bias_gelu_fwd."""
    x = as_kernel_array(x, "x")
    N, C = _rows_cols(x)
    xp = get_array_module(x)
    barg, has_bias = _bias_arg(b, C, xp)
    y = empty_output(xp, x.shape)
    if x.size == 0:
        return y
    n4 = x.size // 4
    i32(n4, "x.size / 4")
    launch(KERNEL_FILES["bias_gelu"], "bias_gelu_fwd", (cdiv(n4, GELU_THREADS),), (GELU_THREADS,),
           (x, barg, y, i32(N, "rows"), i32(C, "C"), has_bias))
    return y


def bias_gelu_backward(g, x, b=None):
    """(dx, db) of bias_gelu_forward(x, b) for the upstream gradient g (db None without b).
    db is summed without atomics (per-chunk partials, then a fixed-order sum): deterministic."""
    g = as_kernel_array(g, "g")
    x = as_kernel_array(x, "x")
    if g.shape != x.shape:
        raise ValueError(f"bias_gelu_backward: g {g.shape} and x {x.shape} differ")
    N, C = _rows_cols(x)
    xp = get_array_module(x)
    barg, has_bias = _bias_arg(b, C, xp)
    dx = empty_output(xp, x.shape)
    db = empty_output(xp, (C,)) if has_bias else None
    if x.size == 0:
        if db is not None:
            db[...] = 0
        return dx, db
    chunks = cdiv(N, GELU_ROWS_PER_CHUNK)
    i32(N * C, "x.size")
    dbpart = empty_output(xp, (chunks, C)) if has_bias else xp.zeros(1, dtype=np.float32)
    fname = KERNEL_FILES["bias_gelu"]
    launch(fname, "bias_gelu_bwd", (cdiv(C, GELU_STRIP), chunks), (GELU_THREADS,),
           (g, x, barg, dx, dbpart, i32(N), i32(C), has_bias, i32(GELU_ROWS_PER_CHUNK)),
           16 * GELU_STRIP * 4)
    if has_bias:
        launch(fname, "bias_gelu_db_reduce", (cdiv(C, GELU_THREADS),), (GELU_THREADS,),
               (dbpart, db, i32(C), i32(chunks)))
    return dx, db


# ---- the autograd Functions ------------------------------------------------------------------

class FusedGELU(Function):
    """y = gelu(x) (tanh form) in one kernel launch; the backward recomputes tanh from x."""

    def forward(self, x):
        x = as_kernel_array(x, "x")
        self.save(x)
        return bias_gelu_forward(x)

    def backward(self, g):
        (x,) = self.saved
        return (bias_gelu_backward(g, x)[0],)


class FusedLinearGELU(Function):
    """y = gelu(x @ W + b): x (..., in), W (in, out), b (out,) or None -> (..., out).

    Forward: h = x @ W (cuBLAS), y = 07's bias_gelu_fwd(h, b). Saves x, W, h (the matmul
    output, before the bias) and b. Backward: dh, db = 07's bias_gelu_bwd(g, h, b) in one pass,
    dx = dh @ W^T, dW = X^T @ dh (cuBLAS).
    """

    def forward(self, x, weight, bias=None):
        n_in, n_out = weight.shape
        x2 = x.reshape(-1, n_in)                 # (N, in)
        h = x2 @ weight                          # (N, in) @ (in, out) -> (N, out)
        y = bias_gelu_forward(h, bias)
        self.save(x2, weight, h, bias)
        self.x_shape = x.shape
        return y.reshape(*x.shape[:-1], n_out)   # (..., out)

    def backward(self, g):
        x2, weight, h, bias = self.saved
        n_out = weight.shape[1]
        dh, db = bias_gelu_backward(g.reshape(-1, n_out), h, bias)  # (N, out), (out,)
        dx = (dh @ weight.T).reshape(self.x_shape)  # (N, out) @ (out, in) -> (..., in)
        dW = x2.T @ dh                              # (in, N) @ (N, out) -> (in, out)
        if bias is None:
            return dx, dW
        return dx, dW, db


def _supports_gelu(x, **_) -> bool:
    return can_fuse_bias_gelu(x)


def _supports_linear_gelu(x, weight, bias=None, **_) -> bool:
    return (is_cupy_array(weight) and weight.dtype == np.float32 and weight.ndim == 2
            and can_fuse_bias_gelu(weight[:1], bias) and x.dtype == np.float32
            and is_cupy_array(x) and x.shape[-1:] == weight.shape[:1])


dispatch.register("gelu", "cuda", FusedGELU, supports=_supports_gelu)
dispatch.register("linear_gelu", "cuda", FusedLinearGELU, supports=_supports_linear_gelu)
