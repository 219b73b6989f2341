"""Autograd Functions backed by the CUDA kernels: FusedAttention and FusedSoftmax.

They compute exactly what functional.Attention and functional.Softmax compute (same masks,
same conventions), in one kernel launch per pass instead of a chain of array operations:

    FusedAttention   forward  04_attention_flash_fwd.cu: O and the row log-sum-exp only
                     backward 05_attention_flash_bwd.cu: recomputes P from the lse
                     (variant="naive": 03_attention_naive.cu for both, the slow reference)
    FusedSoftmax     02_softmax_warp.cu (variant="naive": 01_softmax_naive.cu), with an
                     optional scale and causal mask for (..., Tq, Tk) attention scores

Inputs are CuPy float32 arrays (the kernels are float32-only). functional.attention and
functional.softmax dispatch here on CuPy arrays unless minigpt.kernels.use_fused(False).
"""
from __future__ import annotations

from . import kernels
from .autograd import Function, Tensor
from .backend import get_array_module

__all__ = ["FusedAttention", "FusedSoftmax", "attention", "softmax"]


class FusedAttention(Function):
    """Masked scaled dot-product attention on the GPU. q (B, nh, Tq, hs), k, v (B, nh, Tk, hs).

    Saves q, k, v, O and the (B, nh, Tq) log-sum-exp, never the (Tq, Tk) probabilities.
    """

    def forward(self, q, k, v, causal=True, padding_mask=None, variant="flash"):
        # contiguous once here, so the backward does not copy again (q is often a transpose)
        q, k, v = (kernels.as_kernel_array(a, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
        o, lse = kernels.attention_forward(q, k, v, causal=causal, padding_mask=padding_mask,
                                           variant=variant)
        self.save(q, k, v, o, lse)
        self.options = dict(causal=causal, padding_mask=padding_mask, variant=variant)
        return o

    def backward(self, g):
        q, k, v, o, lse = self.saved
        return kernels.attention_backward(q, k, v, o, lse, g, **self.options)


class FusedSoftmax(Function):
    """y = softmax(scale * x) over the last axis (causal: x is (..., Tq, Tk), query i sees keys
    j <= i + Tk - Tq and the others get 0).   dx = scale * y * (g - sum(g * y))."""

    def forward(self, x, axis=-1, scale=1.0, causal=False, variant="warp"):
        if axis not in (-1, x.ndim - 1):
            raise ValueError(f"FusedSoftmax works over the last axis only, got axis={axis}")
        y = kernels.softmax_forward(x, scale=scale, causal=causal, variant=variant)
        self.save(y)
        self.options = dict(scale=scale, causal=causal, variant=variant)
        return y

    def backward(self, g):
        (y,) = self.saved
        return (kernels.softmax_backward(y, g, **self.options),)


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def attention(q, k, v, causal: bool = True, padding_mask=None, variant: str = "flash") -> Tensor:
    """functional.attention through the kernels (checks the same shapes)."""
    if padding_mask is not None:
        padding_mask = get_array_module(_data(q)).asarray(_data(padding_mask))
    return FusedAttention.apply(q, k, v, causal=causal, padding_mask=padding_mask,
                                variant=variant)


def softmax(x, axis: int = -1, scale: float = 1.0, causal: bool = False,
            variant: str = "warp") -> Tensor:
    return FusedSoftmax.apply(x, axis=axis, scale=scale, causal=causal, variant=variant)
