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
    10_attention_flash_bwd_onepass.cu  the backward in one pass: dQ as per-key-tile partials
                               from the dK/dV kernel, summed in a fixed order by a second kernel
Attention dropout lives in 04, 05 and 10: a counter-based hash (kernels/philox.cuh) of the
seed and the element's position decides each kept probability, so the mask is the same in the
forward and the backward without being stored; `dropout_keep` below is its NumPy twin.

The Functions compute exactly what the reference Attention and Softmax compute (same masks,
same conventions), in one kernel launch per pass instead of a chain of array operations:

    FusedAttention   forward  04_attention_flash_fwd.cu: O and the row log-sum-exp only
                     backward 10_attention_flash_bwd_onepass.cu (variant "flash_onepass", the
                     default; 05 when its dQ partials would exceed ONEPASS_MAX_PARTIAL_BYTES)
                     or 05_attention_flash_bwd.cu (variant "flash"): recompute P from the lse
                     (variant="naive": 03_attention_naive.cu for both, the slow reference)
    FusedSoftmax     02_softmax_warp.cu (variant="naive": 01_softmax_naive.cu), with an
                     optional scale and causal mask for (..., Tq, Tk) attention scores

Inputs are CuPy float32 arrays (the kernels are float32-only); `can_fuse_attention` and
`can_fuse_softmax` say when the kernels apply (loader.use_fused(False) turns them off).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dispatch
from ..autograd import Function, Tensor
from ..backend import get_array_module, is_cupy_array
from ..ops.attention import check_attention_inputs
from ..random import get_rng
from .loader import (KERNEL_FILES, as_kernel_array, cdiv, empty_output, f32, fused_enabled, i32,
                     launch)

__all__ = ["SOFTMAX_VARIANTS", "ATTENTION_VARIANTS", "DEFAULT_ATTENTION_VARIANT", "FLASH_TILES",
           "ONEPASS_MAX_PARTIAL_BYTES", "FLASH_PREFETCH", "softmax_launch", "softmax_forward", "softmax_backward",
           "flash_smem_bytes", "flash_launch", "attention_forward", "attention_backward",
           "can_fuse_attention", "can_fuse_softmax", "supports_attention", "dropout_threshold",
           "dropout_keep", "dropout_mask", "draw_dropout_seed", "philox2x32",
           "FusedAttention", "FusedSoftmax", "attention", "softmax"]

SOFTMAX_VARIANTS = ("naive", "warp")
# "naive": 03 forward and backward (no dropout); "flash": 04 + 05; "flash_onepass": 04 + 10
ATTENTION_VARIANTS = ("naive", "flash", "flash_onepass")
DEFAULT_ATTENTION_VARIANT = "flash_onepass"
# 10's dQ partials are a (B*nh, ceil(Tk/64), Tq, hs) float32 buffer; above this many bytes the
# backward uses 05 instead (same results up to rounding, no extra memory).
ONEPASS_MAX_PARTIAL_BYTES = 1 << 30
# "flash_onepass" runs the prefetching kernels of 04 and 10 (flash_fwd_pf_hsN,
# flash_bwd_onepass_pf_hsN: the next tile is copied in with cp.async while the current one is
# computed). False runs the same algorithm with plain loads (for timing the difference).
FLASH_PREFETCH = True

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


def supports_attention(q, k, v, causal=True, padding_mask=None, dropout_p=0.0, rng=None,
                       **_) -> bool:
    """The dispatch predicate of the "cuda" attention: the flash kernels take these arrays
    (attention dropout included: it is computed inside the kernels)."""
    return 0.0 <= dropout_p < 1.0 and can_fuse_attention(q, k, v)


# ---- attention dropout: the kernels' mask, reproduced in NumPy --------------------------------

_PHILOX_M = np.uint64(0xD256D193)
_PHILOX_W = np.uint64(0x9E3779B9)
_U32 = np.uint64(0xFFFFFFFF)


def philox2x32(x0, x1, key: int, rounds: int = 10):
    """Philox-2x32 (kernels/philox.cuh, bit for bit): counter words x0, x1 (arrays of
    uint32 values, broadcast together) and a 32-bit key -> the two output words (uint32)."""
    x0 = np.asarray(x0, dtype=np.uint64) & _U32
    x1 = np.asarray(x1, dtype=np.uint64) & _U32
    key = np.uint64(int(key) & 0xFFFFFFFF)
    for _ in range(rounds):
        prod = _PHILOX_M * x0                      # 32 x 32 -> 64 bits, exact in uint64
        x0, x1 = (prod >> np.uint64(32)) ^ key ^ x1, prod & _U32
        key = (key + _PHILOX_W) & _U32
    return x0.astype(np.uint32), x1.astype(np.uint32)


def dropout_threshold(p: float) -> int:
    """The kernels' integer form of the drop probability: a word w is kept iff
    w >= floor(p * 2^32) (0 = no dropout)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"attention dropout probability must be in [0, 1), got {p}")
    return min(int(p * 4294967296.0), 0xFFFFFFFF)


def dropout_keep(seed: int, p: float, shape) -> np.ndarray:
    """Which probabilities the kernels keep: a bool (B, nh, Tq, Tk) array, the mask of
    kernels/04, 05 and 10 for this seed and p, bit for bit. Element (b, h, i, j) is kept iff
    philox2x32(x0 = j, x1 = (b*nh + h)*Tq + i, key = seed)[0] >= dropout_threshold(p)."""
    B, nh, Tq, Tk = shape
    thr = dropout_threshold(p)
    rows = np.arange(B * nh * Tq, dtype=np.uint64).reshape(B, nh, Tq, 1)  # (b*nh + h)*Tq + i
    cols = np.arange(Tk, dtype=np.uint64)                                   # j
    word, _ = philox2x32(cols, rows, seed)                                  # (B, nh, Tq, Tk)
    return word >= np.uint32(thr)


def dropout_mask(seed: int, p: float, shape, dtype=np.float32) -> np.ndarray:
    """The dropout multiplier D of the kernels: 0 where dropped, 1/(1-p) where kept, computed
    in `dtype` as the reference Attention computes it (keep / (1 - p))."""
    return dropout_keep(seed, p, shape) / np.dtype(dtype).type(1 - p)


def draw_dropout_seed(rng=None) -> int:
    """A 32-bit dropout seed. From `rng` when it is a NumPy Generator, else from minigpt's
    NumPy generator (minigpt.manual_seed makes it reproducible): drawing from a CuPy generator
    would need a device-to-host copy, i.e. a synchronisation, per attention call."""
    if not isinstance(rng, np.random.Generator):
        rng = get_rng(np)
    return int(rng.integers(0, 1 << 32, dtype=np.uint64))


def _dropout_args(dropout_p: float, seed: int):
    """(seed, threshold, scale) as the kernels take them: int32 bit patterns and a float32."""
    thr = dropout_threshold(dropout_p)
    as_i32 = lambda u: np.array(int(u) & 0xFFFFFFFF, dtype=np.uint32).view(np.int32)[()]  # noqa: E731
    scale = np.float32(1.0) / np.float32(1.0 - dropout_p) if thr else np.float32(1.0)
    return as_i32(seed), as_i32(thr), np.float32(scale)


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
    """Dynamic shared memory of a flash kernel ("fwd", "dq", "dkdv" or "onepass"), as laid out
    in 04/05/10 (10's onepass kernel has 05's dK/dV layout)."""
    if hs not in FLASH_TILES:
        raise ValueError(f"the flash kernels support head sizes {sorted(FLASH_TILES)}, got {hs}")
    bn, ld = FLASH_TILES[hs], hs + 4
    R = FLASH_ROWS
    floats = {
        "fwd": (R + 2 * bn) * ld + R * (bn + 4),                   # Q, K, V, P
        "dq": (2 * R + 2 * bn) * ld + R * (bn + 4),                # Q, dO, K, V, dS
        "dkdv": (2 * R + 2 * bn) * ld + 2 * R * (bn + 4) + 2 * bn,  # K, V, Q, dO, P, dS, lse, D
    }[{"onepass": "dkdv"}.get(kernel, kernel)]
    return 4 * floats


def flash_launch(kernel: str, BH: int, Tq: int, Tk: int, hs: int):
    """(grid, block, shared bytes) of a flash kernel: "fwd", "dq", "dkdv", "onepass",
    "preprocess" or "reduce" (10's dQ sum: one thread per 4 floats of dq)."""
    if kernel == "preprocess":
        return (cdiv(BH * Tq, FLASH_THREADS // 32),), (FLASH_THREADS,), 0
    if kernel == "reduce":
        return (cdiv(BH * Tq * (hs // 4), FLASH_THREADS),), (FLASH_THREADS,), 0
    rows = Tk if kernel in ("dkdv", "onepass") else Tq
    return (BH, cdiv(rows, FLASH_ROWS)), (FLASH_THREADS,), flash_smem_bytes(kernel, hs)


def _check_attention(q, k, v, causal, variant, padding_mask=None):
    if variant not in ATTENTION_VARIANTS:
        raise ValueError(f"attention variant must be one of {ATTENTION_VARIANTS}, got {variant!r}")
    # the one shape rule of every attention implementation (minigpt/ops/attention.py)
    check_attention_inputs(q.shape, k.shape, v.shape, causal,
                           None if padding_mask is None else np.shape(padding_mask))
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    if variant != "naive" and hs not in FLASH_TILES:
        raise ValueError(f"the flash kernels support head sizes {sorted(FLASH_TILES)}, got {hs}")
    return B, nh, Tq, Tk, hs


def _padding(padding_mask, B, Tk, xp):
    """(mask array, has_mask): padding (B, Tk) as float32 1/0, or a 1-element stand-in.
    (Its shape was checked by _check_attention.)"""
    if padding_mask is None:
        return xp.zeros(1, dtype=np.float32), np.int32(0)
    pm = xp.asarray(padding_mask)
    return xp.ascontiguousarray(pm != 0, dtype=np.float32), np.int32(1)


def _check_dropout(dropout_p, variant):
    dropout_threshold(dropout_p)  # range check
    if dropout_p > 0.0 and variant == "naive":
        raise ValueError("attention dropout is in the flash kernels (04, 05, 10), not in the naive "
                         "one (03): use variant='flash' or 'flash_onepass'")


def onepass_partial_bytes(B: int, nh: int, Tq: int, Tk: int, hs: int) -> int:
    """Bytes of 10's dQ partials: (B*nh, ceil(Tk/64), Tq, hs) float32."""
    return 4 * B * nh * cdiv(Tk, FLASH_ROWS) * Tq * hs


def attention_forward(q, k, v, causal: bool = True, padding_mask=None,
                      variant: str = DEFAULT_ATTENTION_VARIANT, dropout_p: float = 0.0,
                      seed: int = 0):
    """Masked scaled dot-product attention: returns (O (B, nh, Tq, hs), lse (B, nh, Tq)).

    lse is the natural log-sum-exp of each row's scaled scores (+inf for a row that sees no
    key; its O row is 0): what attention_backward needs to recompute the probabilities.
    dropout_p > 0: O = (P * D) V with D = dropout_mask(seed, dropout_p, (B, nh, Tq, Tk)); lse
    stays that of the undropped P. Pass the same seed to attention_backward."""
    q, k, v = (as_kernel_array(a, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    B, nh, Tq, Tk, hs = _check_attention(q, k, v, causal, variant, padding_mask)
    _check_dropout(dropout_p, variant)
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
    if variant != "naive":
        i32(BH * Tq, "B*nh*Tq")  # the dropout counter of a row is a 32-bit int
        fname = KERNEL_FILES["attention_flash_fwd"]
        grid, block, smem = flash_launch("fwd", BH, Tq, Tk, hs)
        pf = "pf_" if variant == "flash_onepass" and FLASH_PREFETCH else ""
        launch(fname, f"flash_fwd_{pf}hs{hs}", grid, block,
               (q, k, v, pad, o, lse, *dims, *_dropout_args(dropout_p, seed), scale, i32(causal),
                has_pad), smem)
    else:
        fname = KERNEL_FILES["attention_naive"]
        i32(BH * Tq, "BH*Tq")  # the kernel indexes threads with a 32-bit int
        grid = (cdiv(BH * Tq, NAIVE_ATTENTION_THREADS),)
        launch(fname, "attn_naive_fwd", grid, (NAIVE_ATTENTION_THREADS,),
                (q, k, v, pad, o, lse, i32(BH), *dims, i32(hs), scale, i32(causal), has_pad))
    return o, lse


def attention_backward(q, k, v, o, lse, do, causal: bool = True, padding_mask=None,
                       variant: str = DEFAULT_ATTENTION_VARIANT, dropout_p: float = 0.0,
                       seed: int = 0):
    """(dq, dk, dv) of attention_forward given its inputs, O, lse and the upstream dO (and the
    forward's dropout_p and seed: the mask is recomputed, never stored).

    variant "flash_onepass" runs 10 (dQ from per-key-tile partials), falling back to 05 when
    the partials would take more than ONEPASS_MAX_PARTIAL_BYTES; "flash" runs 05."""
    q, k, v, o, lse, do = (as_kernel_array(a, n) for a, n in
                           ((q, "q"), (k, "k"), (v, "v"), (o, "o"), (lse, "lse"), (do, "dO")))
    B, nh, Tq, Tk, hs = _check_attention(q, k, v, causal, variant, padding_mask)
    _check_dropout(dropout_p, variant)
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
    if variant == "flash_onepass" and onepass_partial_bytes(B, nh, Tq, Tk, hs) > ONEPASS_MAX_PARTIAL_BYTES:
        variant = "flash"  # long sequences: 05, no partials buffer
    if variant != "naive":
        drop = _dropout_args(dropout_p, seed)
        i32(BH * Tq * hs, "B*nh*Tq*hs")
        fname = KERNEL_FILES["attention_flash_bwd"]
        grid, block, _ = flash_launch("preprocess", BH, Tq, Tk, hs)
        launch(fname, "flash_bwd_preprocess", grid, block,
               (o, do, D, i32(BH * Tq, "BH*Tq"), i32(hs)))  # D = rowsum(dO * O)
    if variant == "flash":
        grid, block, smem = flash_launch("dkdv", BH, Tq, Tk, hs)
        launch(fname, f"flash_bwd_dkdv_hs{hs}", grid, block,
               (q, k, v, do, lse, D, pad, dk, dv, *dims, *drop, *flags), smem)
        grid, block, smem = flash_launch("dq", BH, Tq, Tk, hs)
        launch(fname, f"flash_bwd_dq_hs{hs}", grid, block,
               (q, k, v, do, lse, D, pad, dq, *dims, *drop, *flags), smem)
    elif variant == "flash_onepass":
        fname = KERNEL_FILES["attention_flash_bwd_onepass"]
        grid, block, smem = flash_launch("onepass", BH, Tq, Tk, hs)
        nkt = grid[1]
        dqpart = empty_output(xp, (BH, nkt, Tq, hs))  # (B*nh, key tiles, Tq, hs)
        pf = "pf_" if FLASH_PREFETCH else ""
        launch(fname, f"flash_bwd_onepass_{pf}hs{hs}", grid, block,
               (q, k, v, do, lse, D, pad, dk, dv, dqpart, *dims, *drop, *flags), smem)
        grid, block, _ = flash_launch("reduce", BH, Tq, Tk, hs)
        launch(fname, "flash_bwd_dq_reduce", grid, block,
               (dqpart, dq, i32(BH), i32(Tq), i32(Tk), i32(hs), i32(nkt), i32(FLASH_TILES[hs]),
                scale, i32(causal)))
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

    The reference Attention's options (causal, padding_mask, dropout_p, rng), so dispatch can
    pick it for F.attention. Saves q, k, v, O and the (B, nh, Tq) log-sum-exp, never the
    (Tq, Tk) probabilities; with dropout_p > 0 also one 32-bit seed (drawn by
    draw_dropout_seed(rng)), from which the backward recomputes the forward's mask.
    """

    def forward(self, q, k, v, causal=True, padding_mask=None, dropout_p=0.0, rng=None,
                variant=DEFAULT_ATTENTION_VARIANT):
        # contiguous once here, so the backward does not copy again (q is often a transpose)
        q, k, v = (as_kernel_array(a, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
        seed = draw_dropout_seed(rng) if dropout_p > 0.0 else 0
        o, lse = attention_forward(q, k, v, causal=causal, padding_mask=padding_mask,
                                   variant=variant, dropout_p=dropout_p, seed=seed)
        self.save(q, k, v, o, lse)
        self.options = dict(causal=causal, padding_mask=padding_mask, variant=variant,
                            dropout_p=dropout_p, seed=seed)
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


def attention(q, k, v, causal: bool = True, padding_mask=None, dropout_p: float = 0.0,
              rng=None, variant: str = DEFAULT_ATTENTION_VARIANT) -> Tensor:
    """functional.attention through the kernels (checks the same shapes)."""
    if padding_mask is not None:
        padding_mask = get_array_module(_data(q)).asarray(_data(padding_mask))
    return FusedAttention.apply(q, k, v, causal=causal, padding_mask=padding_mask,
                                dropout_p=dropout_p, rng=rng, variant=variant)


def softmax(x, axis: int = -1, scale: float = 1.0, causal: bool = False,
            variant: str = "warp") -> Tensor:
    return FusedSoftmax.apply(x, axis=axis, scale=scale, causal=causal, variant=variant)


# F.attention on CuPy float32 (head size 32/64/128, with or without dropout) runs the kernels
dispatch.register("attention", "cuda", FusedAttention, supports=supports_attention)
# F.softmax on CuPy float32 over the last axis: one launch of 02_softmax_warp.cu
dispatch.register("softmax", "cuda", FusedSoftmax,
                  supports=lambda x, axis=-1: can_fuse_softmax(x, axis))
