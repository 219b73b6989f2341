"""Attention and softmax on the GPU: launch code of kernels/01-05 and their autograd Functions.

    from minigpt.cuda import attention as A
    y = A.softmax_forward(x, scale=0.125, causal=True)          # x: a CuPy float32 array
    o, lse = A.attention_forward(q, k, v, causal=True)          # (B, nh, T, hs) each
    dq, dk, dv = A.attention_backward(q, k, v, o, lse, do)

The files, simplest first (each one's header says what it changes, its launch shape and its
memory layout):
    01_softmax_naive.cu        scaled causal softmax, one thread per row
    02_softmax_warp.cu         the same, one warp per row, online max/sum in one pass
    03_attention_naive.cu      attention forward + backward, one thread per row
    04_attention_flash_fwd.cu  tiled forward with the online softmax, saves O and the row lse
    05_attention_flash_bwd.cu  tiled backward from the lse, dQ and dK/dV in separate kernels

The Functions compute exactly what the reference Attention and Softmax compute (same masks,
same conventions), in one kernel launch per pass instead of a chain of array operations:

    FusedAttention   forward  04_attention_flash_fwd.cu: O and the row log-sum-exp only
                     backward 05_attention_flash_bwd.cu: recomputes P from the lse
                     (variant="naive": 03_attention_naive.cu for both, the slow reference)
    FusedSoftmax     02_softmax_warp.cu (variant="naive": 01_softmax_naive.cu), with an
                     optional scale and causal mask for (..., Tq, Tk) attention scores

Inputs are CuPy float32 arrays (the kernels are float32-only); `can_fuse_attention` and
`can_fuse_softmax` say when the kernels apply (loader.use_fused(False) turns them off).
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module, is_cupy_array
from .loader import (KERNEL_FILES, as_kernel_array, cdiv, empty_output, f32, fused_enabled, i32,
                     launch)

__all__ = ["SOFTMAX_VARIANTS", "ATTENTION_VARIANTS", "FLASH_TILES", "softmax_launch",
           "softmax_forward", "softmax_backward", "flash_smem_bytes", "flash_launch",
           "attention_forward", "attention_backward", "can_fuse_attention", "can_fuse_softmax",
           "FusedAttention", "FusedSoftmax", "attention", "softmax"]

SOFTMAX_VARIANTS = ("naive", "warp")
ATTENTION_VARIANTS = ("naive", "flash")

# Flash kernels: head size -> BN, the rows of the streamed tile (keys in the forward and the dQ
# kernel, queries in the dK/dV kernel). Must match the MG_FLASH_FWD/MG_FLASH_BWD lines of
# 04/05 (tests/test_kernels_cpu.py checks). The block always owns 64 rows with 256 threads.
FLASH_TILES = {32: 64, 64: 64, 128: 32}
FLASH_THREADS = 256
FLASH_ROWS = 64
SOFTMAX_THREADS = 128
NAIVE_ATTENTION_THREADS = 128


def can_fuse_softmax(x, axis: int = -1) -> bool:
    """Should softmax(x, axis) run the kernel? CuPy float32, last axis, switch on."""
    return (fused_enabled() and is_cupy_array(x) and x.dtype == np.float32 and x.ndim >= 1
            and axis in (-1, x.ndim - 1) and x.size > 0)


def can_fuse_attention(q, k, v) -> bool:
    """Should attention run the flash kernels? CuPy float32, head size 32/64/128, switch on."""
    return (fused_enabled() and all(is_cupy_array(a) for a in (q, k, v))
            and all(a.dtype == np.float32 for a in (q, k, v))
            and q.ndim == 4 and q.shape[-1] in FLASH_TILES and q.size > 0 and k.size > 0)


# ---- softmax (01, 02) -------------------------------------------------------------------------

def softmax_launch(variant: str, rows: int):
    """(file, grid, block) of a softmax kernel over `rows` rows."""
    if variant == "naive":
        return KERNEL_FILES["softmax_naive"], (cdiv(rows, SOFTMAX_THREADS),), (SOFTMAX_THREADS,)
    if variant == "warp":
        per_block = SOFTMAX_THREADS // 32
        return KERNEL_FILES["softmax_warp"], (cdiv(rows, per_block),), (SOFTMAX_THREADS,)
    raise ValueError(f"softmax variant must be one of {SOFTMAX_VARIANTS}, got {variant!r}")


def _softmax_shape(x, causal):
    if x.ndim < 1:
        raise ValueError("softmax needs at least one axis")
    L = x.shape[-1]
    rows = x.size // L if L else 0
    if causal:
        if x.ndim < 2:
            raise ValueError("causal softmax needs (..., Tq, Tk) input")
        Tq = x.shape[-2]
        if Tq > L:
            raise ValueError(f"causal softmax needs Tq <= Tk, got {Tq} > {L}")
    else:
        Tq = 1
    return rows, L, Tq


def softmax_forward(x, scale: float = 1.0, causal: bool = False, variant: str = "warp"):
    """y = softmax(scale * x) over the last axis; causal: x is (..., Tq, Tk) scores and query
    i sees keys j <= i + (Tk - Tq) (others get y = 0)."""
    x = as_kernel_array(x, "x")
    rows, L, Tq = _softmax_shape(x, causal)
    y = empty_output(get_array_module(x), x.shape)
    if rows == 0:
        return y
    fname, grid, block = softmax_launch(variant, rows)
    launch(fname, f"softmax_{variant}_fwd", grid, block,
            (x, y, i32(rows, "rows"), i32(L, "L"), i32(Tq, "Tq"), f32(scale), i32(causal)))
    return y


def softmax_backward(y, g, scale: float = 1.0, causal: bool = False, variant: str = "warp"):
    """dx = scale * y * (g - sum(g * y)) over the last axis (the gradient w.r.t. x of
    softmax_forward(x, scale, causal) given its output y and the upstream gradient g)."""
    y = as_kernel_array(y, "y")
    g = as_kernel_array(g, "g")
    if g.shape != y.shape:
        raise ValueError(f"softmax_backward: g {g.shape} and y {y.shape} differ")
    rows, L, Tq = _softmax_shape(y, causal)
    dx = empty_output(get_array_module(y), y.shape)
    if rows == 0:
        return dx
    fname, grid, block = softmax_launch(variant, rows)
    launch(fname, f"softmax_{variant}_bwd", grid, block,
            (y, g, dx, i32(rows, "rows"), i32(L, "L"), i32(Tq, "Tq"), f32(scale), i32(causal)))
    return dx


# ---- attention (03, 04, 05) -------------------------------------------------------------------

def flash_smem_bytes(kernel: str, hs: int) -> int:
    """Dynamic shared memory of a flash kernel ("fwd", "dq" or "dkdv"), as laid out in 04/05."""
    if hs not in FLASH_TILES:
        raise ValueError(f"the flash kernels support head sizes {sorted(FLASH_TILES)}, got {hs}")
    bn, ld = FLASH_TILES[hs], hs + 4
    R = FLASH_ROWS
    floats = {
        "fwd": (R + 2 * bn) * ld + R * (bn + 4),                   # Q, K, V, P
        "dq": (2 * R + 2 * bn) * ld + R * (bn + 4),                # Q, dO, K, V, dS
        "dkdv": (2 * R + 2 * bn) * ld + 2 * R * (bn + 4) + 2 * bn,  # K, V, Q, dO, P, dS, lse, D
    }[kernel]
    return 4 * floats


def flash_launch(kernel: str, BH: int, Tq: int, Tk: int, hs: int):
    """(grid, block, shared bytes) of a flash kernel: "fwd", "dq", "dkdv" or "preprocess"."""
    if kernel == "preprocess":
        return (cdiv(BH * Tq, FLASH_THREADS // 32),), (FLASH_THREADS,), 0
    rows = Tk if kernel == "dkdv" else Tq
    return (BH, cdiv(rows, FLASH_ROWS)), (FLASH_THREADS,), flash_smem_bytes(kernel, hs)


def _check_attention(q, k, v, causal, variant):
    if variant not in ATTENTION_VARIANTS:
        raise ValueError(f"attention variant must be one of {ATTENTION_VARIANTS}, got {variant!r}")
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or q.shape[:2] != k.shape[:2] \
            or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit "
                         "(B, nh, Tq, hs), (B, nh, Tk, hs), (B, nh, Tk, hs)")
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    if causal and Tq > Tk:
        raise ValueError(f"attention: causal attention needs Tq <= Tk, got {Tq} > {Tk}")
    if variant == "flash" and hs not in FLASH_TILES:
        raise ValueError(f"the flash kernels support head sizes {sorted(FLASH_TILES)}, got {hs}")
    return B, nh, Tq, Tk, hs


def _padding(padding_mask, B, Tk, xp):
    """(mask array, has_mask): padding (B, Tk) as float32 1/0, or a 1-element stand-in."""
    if padding_mask is None:
        return xp.zeros(1, dtype=np.float32), np.int32(0)
    pm = xp.asarray(padding_mask)
    if pm.shape != (B, Tk):
        raise ValueError(f"attention: padding_mask shape {pm.shape} should be (B, Tk) = {(B, Tk)}")
    return xp.ascontiguousarray(pm != 0, dtype=np.float32), np.int32(1)


def attention_forward(q, k, v, causal: bool = True, padding_mask=None, variant: str = "flash"):
    """Masked scaled dot-product attention: returns (O (B, nh, Tq, hs), lse (B, nh, Tq)).

    lse is the natural log-sum-exp of each row's scaled scores (+inf for a row that sees no
    key; its O row is 0): what attention_backward needs to recompute the probabilities."""
    q, k, v = (as_kernel_array(a, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    B, nh, Tq, Tk, hs = _check_attention(q, k, v, causal, variant)
    xp = get_array_module(q)
    pad, has_pad = _padding(padding_mask, B, Tk, xp)
    o = empty_output(xp, q.shape)
    lse = empty_output(xp, (B, nh, Tq))
    BH = B * nh
    if BH * Tq == 0:
        return o, lse
    if Tk == 0:
        o[...] = 0
        lse[...] = np.inf
        return o, lse
    scale = f32(1.0 / math.sqrt(hs))
    dims = (i32(nh), i32(Tq, "Tq"), i32(Tk, "Tk"))
    if variant == "flash":
        fname = KERNEL_FILES["attention_flash_fwd"]
        grid, block, smem = flash_launch("fwd", BH, Tq, Tk, hs)
        launch(fname, f"flash_fwd_hs{hs}", grid, block,
                (q, k, v, pad, o, lse, *dims, scale, i32(causal), has_pad), smem)
    else:
        fname = KERNEL_FILES["attention_naive"]
        i32(BH * Tq, "BH*Tq")  # the kernel indexes threads with a 32-bit int
        grid = (cdiv(BH * Tq, NAIVE_ATTENTION_THREADS),)
        launch(fname, "attn_naive_fwd", grid, (NAIVE_ATTENTION_THREADS,),
                (q, k, v, pad, o, lse, i32(BH), *dims, i32(hs), scale, i32(causal), has_pad))
    return o, lse


def attention_backward(q, k, v, o, lse, do, causal: bool = True, padding_mask=None,
                       variant: str = "flash"):
    """(dq, dk, dv) of attention_forward given its inputs, O, lse and the upstream dO."""
    q, k, v, o, lse, do = (as_kernel_array(a, n) for a, n in
                           ((q, "q"), (k, "k"), (v, "v"), (o, "o"), (lse, "lse"), (do, "dO")))
    B, nh, Tq, Tk, hs = _check_attention(q, k, v, causal, variant)
    if o.shape != q.shape or do.shape != q.shape or lse.shape != (B, nh, Tq):
        raise ValueError(f"attention_backward: o {o.shape}, dO {do.shape}, lse {lse.shape} do "
                         f"not fit q {q.shape}")
    xp = get_array_module(q)
    pad, has_pad = _padding(padding_mask, B, Tk, xp)
    BH = B * nh
    dq, dk, dv = empty_output(xp, q.shape), empty_output(xp, k.shape), empty_output(xp, v.shape)
    if BH == 0 or Tq == 0 or Tk == 0:
        for a in (dq, dk, dv):
            a[...] = 0
        return dq, dk, dv
    D = empty_output(xp, (B, nh, Tq))
    scale = f32(1.0 / math.sqrt(hs))
    dims = (i32(nh), i32(Tq, "Tq"), i32(Tk, "Tk"))
    flags = (scale, i32(causal), has_pad)
    if variant == "flash":
        fname = KERNEL_FILES["attention_flash_bwd"]
        grid, block, _ = flash_launch("preprocess", BH, Tq, Tk, hs)
        launch(fname, "flash_bwd_preprocess", grid, block,
                (o, do, D, i32(BH * Tq, "BH*Tq"), i32(hs)))
        grid, block, smem = flash_launch("dkdv", BH, Tq, Tk, hs)
        launch(fname, f"flash_bwd_dkdv_hs{hs}", grid, block,
                (q, k, v, do, lse, D, pad, dk, dv, *dims, *flags), smem)
        grid, block, smem = flash_launch("dq", BH, Tq, Tk, hs)
        launch(fname, f"flash_bwd_dq_hs{hs}", grid, block,
                (q, k, v, do, lse, D, pad, dq, *dims, *flags), smem)
    else:
        fname = KERNEL_FILES["attention_naive"]
        threads = NAIVE_ATTENTION_THREADS
        i32(BH * max(Tq, Tk), "BH*T")
        launch(fname, "attn_naive_bwd_dq", (cdiv(BH * Tq, threads),), (threads,),
                (q, k, v, o, lse, do, pad, dq, D, i32(BH), *dims, i32(hs), *flags))
        launch(fname, "attn_naive_bwd_dkdv", (cdiv(BH * Tk, threads),), (threads,),
                (q, k, v, lse, D, do, pad, dk, dv, i32(BH), *dims, i32(hs), *flags))
    return dq, dk, dv


# ---- the autograd Functions ------------------------------------------------------------------

class FusedAttention(Function):
    """Masked scaled dot-product attention on the GPU. q (B, nh, Tq, hs), k, v (B, nh, Tk, hs).

    Saves q, k, v, O and the (B, nh, Tq) log-sum-exp, never the (Tq, Tk) probabilities.
    """

    def forward(self, q, k, v, causal=True, padding_mask=None, variant="flash"):
        # contiguous once here, so the backward does not copy again (q is often a transpose)
        q, k, v = (as_kernel_array(a, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
        o, lse = attention_forward(q, k, v, causal=causal, padding_mask=padding_mask,
                                           variant=variant)
        self.save(q, k, v, o, lse)
        self.options = dict(causal=causal, padding_mask=padding_mask, variant=variant)
        return o

    def backward(self, g):
        q, k, v, o, lse = self.saved
        return attention_backward(q, k, v, o, lse, g, **self.options)


class FusedSoftmax(Function):
    """y = softmax(scale * x) over the last axis (causal: x is (..., Tq, Tk), query i sees keys
    j <= i + Tk - Tq and the others get 0).   dx = scale * y * (g - sum(g * y))."""

    def forward(self, x, axis=-1, scale=1.0, causal=False, variant="warp"):
        if axis not in (-1, x.ndim - 1):
            raise ValueError(f"FusedSoftmax works over the last axis only, got axis={axis}")
        y = softmax_forward(x, scale=scale, causal=causal, variant=variant)
        self.save(y)
        self.options = dict(scale=scale, causal=causal, variant=variant)
        return y

    def backward(self, g):
        (y,) = self.saved
        return (softmax_backward(y, g, **self.options),)


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
