"""LayerNorm and softmax + cross-entropy on the GPU: launch code of kernels/06 and 08, and the
autograd Functions registered as the "cuda" implementations of `layer_norm` and `cross_entropy`.

    from minigpt.cuda import layers
    y, s, mean, rstd = layers.layer_norm_forward(x, w, b, eps)          # CuPy float32 arrays
    dx, dw, db = layers.layer_norm_backward(s, w, mean, rstd, g)
    losses, lse, _ = layers.xent_forward(logits, targets, ignore_index=-100)

The Functions compute what the reference ops (minigpt/ops/layer_norm.py, cross_entropy.py)
compute, with the same shapes and conventions:

    FusedLayerNorm     forward 06 layernorm_fwd: y, and the row mean and rstd (not xhat);
                       backward 06 layernorm_bwd + layernorm_bwd_reduce: dx, and dw, db
                       summed without atomics (the same bits every run)
    FusedAddLayerNorm  y = LN(x + r) in the same launches (the add fused in front); its
                       backward hands the one ds to both x and r. Not used by the model:
                       on an H100 it saved 4% of the add + LayerNorm time (0.046 vs 0.048 ms
                       at 4096 x 768), not worth an op of its own
    FusedCrossEntropy  forward 08 xent_fwd + xent_reduce: the mean loss over kept rows, left on
                       the GPU (no host round trip); backward 08 xent_bwd: dlogits from the
                       logits and the saved row log-sum-exp, never an (N, V) softmax array
"""
from __future__ import annotations

import numpy as np

from .. import dispatch
from ..autograd import Function
from ..backend import get_array_module
from .loader import (KERNEL_FILES, as_index_array, as_kernel_array, cdiv, empty_output, f32,
                     fused_enabled, i32, is_kernel_array, launch)

__all__ = ["LN_THREADS", "XENT_THREADS", "layer_norm_grid", "layer_norm_forward",
           "layer_norm_backward", "xent_forward", "xent_backward", "FusedLayerNorm",
           "FusedAddLayerNorm", "FusedCrossEntropy", "can_fuse_layer_norm",
           "can_fuse_cross_entropy"]

LN_THREADS = 256       # 8 warps: 8 rows per block in the forward and in the backward's phase 1
LN_MIN_ROWS = 16       # rows per block of the backward (its phase 2 sums them per column)
LN_MAX_BLOCKS = 1024   # at most this many partial rows of dw/db for the reduce kernel
XENT_THREADS = 256     # a block per row of the vocabulary


def _stand_in(xp):
    """A 1-element array for a pointer argument a kernel is told not to touch."""
    return xp.empty((1,), dtype=np.float32)


# ---- LayerNorm (06) ---------------------------------------------------------------------------

def layer_norm_grid(N: int) -> tuple[int, int]:
    """(rows per block, blocks) of layernorm_bwd for N rows: at least LN_MIN_ROWS rows per
    block, at most LN_MAX_BLOCKS blocks."""
    rows = max(LN_MIN_ROWS, cdiv(N, LN_MAX_BLOCKS))
    return rows, cdiv(N, rows)


def _ln_params(x, weight, bias):
    C = x.shape[-1] if x.ndim else 0
    if x.ndim < 1 or weight.shape != (C,) or bias.shape != (C,):
        raise ValueError(f"layer_norm: input shape {x.shape} does not match weight "
                         f"{weight.shape} / bias {bias.shape}")
    return C


def layer_norm_forward(x, weight, bias, eps: float = 1e-5, residual=None):
    """LayerNorm over the last axis of x (or of x + residual). Returns (y, s, mean, rstd):
    s is the normalised input (x itself, or the new array x + residual), mean and rstd (N,)."""
    x = as_kernel_array(x, "x")
    w, b = as_kernel_array(weight, "weight"), as_kernel_array(bias, "bias")
    C = _ln_params(x, w, b)
    xp = get_array_module(x)
    N = x.size // C if C else 0
    y = empty_output(xp, x.shape)
    mean, rstd = empty_output(xp, (N,)), empty_output(xp, (N,))
    if residual is not None:
        r = as_kernel_array(residual, "residual")
        if r.shape != x.shape:
            raise ValueError(f"layer_norm: residual shape {r.shape} differs from x {x.shape}")
        s = empty_output(xp, x.shape)
        r_arg, s_arg = r, s
    else:
        s, r_arg, s_arg = x, _stand_in(xp), _stand_in(xp)
    if N == 0:
        return y, s, mean, rstd
    per_block = LN_THREADS // 32
    launch(KERNEL_FILES["layernorm"], "layernorm_fwd", (cdiv(N, per_block),), (LN_THREADS,),
           (x, r_arg, w, b, y, s_arg, mean, rstd, i32(N, "rows"), i32(C, "C"), f32(eps),
            i32(residual is not None)))
    return y, s, mean, rstd


def layer_norm_backward(s, weight, mean, rstd, g):
    """(ds, dw, db) of layer_norm_forward given its saved s, mean, rstd and the upstream g."""
    s, w = as_kernel_array(s, "s"), as_kernel_array(weight, "weight")
    mean, rstd, g = (as_kernel_array(a, n) for a, n in ((mean, "mean"), (rstd, "rstd"), (g, "g")))
    C = s.shape[-1]
    N = s.size // C if C else 0
    if g.shape != s.shape or w.shape != (C,) or mean.shape != (N,) or rstd.shape != (N,):
        raise ValueError(f"layer_norm_backward: g {g.shape}, weight {w.shape}, mean "
                         f"{mean.shape}, rstd {rstd.shape} do not fit the input {s.shape}")
    xp = get_array_module(s)
    ds = empty_output(xp, s.shape)
    dw, db = empty_output(xp, (C,)), empty_output(xp, (C,))
    if N == 0:
        dw[...] = 0
        db[...] = 0
        return ds, dw, db
    rows, blocks = layer_norm_grid(N)
    partial = empty_output(xp, (2, blocks, C))
    fname = KERNEL_FILES["layernorm"]
    launch(fname, "layernorm_bwd", (blocks,), (LN_THREADS,),
           (s, w, mean, rstd, g, ds, partial, i32(N, "rows"), i32(C, "C"), i32(rows)))
    launch(fname, "layernorm_bwd_reduce", (cdiv(C, 32),), (LN_THREADS,),
           (partial, dw, db, i32(blocks), i32(C, "C")), 2 * LN_THREADS * 4)
    return ds, dw, db


# ---- softmax + cross-entropy (08) ---------------------------------------------------------------

def _xent_inputs(logits, targets):
    logits = as_kernel_array(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy kernels take (N, V) logits, got shape {logits.shape}")
    # the cross_entropy wrapper has checked each target is in [0, V) or ignore_index
    targets = as_index_array(get_array_module(logits).asarray(targets), "targets",
                             check_range=False)
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: targets {targets.shape} do not fit logits "
                         f"{logits.shape} (expected (N,))")
    return logits, targets


def xent_forward(logits, targets, ignore_index: int = -100, grad_scale=None):
    """Per-row losses (N,) (0 for ignored rows), the row log-sum-exp (N,) and stats (3,) =
    [mean loss over kept rows, 1 / max(n_kept, 1), n_kept], all on the logits' device.

    grad_scale: None (the default) or a float; a float also returns, from the same launch,
    dlogits = grad_scale * (softmax - onehot) for kept rows (0 for ignored ones), the one-pass
    form. Returns (losses, lse, stats) or (losses, lse, stats, dlogits)."""
    logits, targets = _xent_inputs(logits, targets)
    xp = get_array_module(logits)
    N, V = logits.shape
    losses, lse, stats = empty_output(xp, (N,)), empty_output(xp, (N,)), empty_output(xp, (3,))
    one_pass = grad_scale is not None
    dz = empty_output(xp, logits.shape) if one_pass else _stand_in(xp)
    fname = KERNEL_FILES["softmax_xent"]
    if N and V:
        launch(fname, "xent_fwd", (N,), (XENT_THREADS,),
               (logits, targets, losses, lse, dz, i32(N, "rows"), i32(V, "V"),
                i32(ignore_index, "ignore_index"), i32(one_pass),
                f32(grad_scale if one_pass else 0.0)), 2 * (XENT_THREADS // 32) * 4)
    elif N:  # V == 0 cannot happen through cross_entropy (targets must be in [0, V))
        raise ValueError("cross_entropy over an empty vocabulary")
    launch(fname, "xent_reduce", (1,), (XENT_THREADS,),
           (losses, targets if N else xp.zeros(1, np.int32), stats, i32(N, "rows"),
            i32(ignore_index, "ignore_index")), 2 * XENT_THREADS * 4)
    return (losses, lse, stats, dz) if one_pass else (losses, lse, stats)


def xent_backward(logits, targets, lse, stats, g, ignore_index: int = -100):
    """dlogits (N, V) = g * (softmax - onehot) / n_kept for kept rows, 0 for ignored rows; g is
    the upstream gradient of the mean loss (a 1-element array, read on the GPU)."""
    logits, targets = _xent_inputs(logits, targets)
    xp = get_array_module(logits)
    lse, stats = as_kernel_array(lse, "lse"), as_kernel_array(stats, "stats")
    g = as_kernel_array(xp.asarray(g, dtype=np.float32).reshape(1), "g")
    N, V = logits.shape
    dz = empty_output(xp, logits.shape)
    if N and V:
        launch(KERNEL_FILES["softmax_xent"], "xent_bwd", (N,), (XENT_THREADS,),
               (logits, targets, lse, g, stats, dz, i32(N, "rows"), i32(V, "V"),
                i32(ignore_index, "ignore_index")))
    return dz


# ---- the autograd Functions ------------------------------------------------------------------

class FusedLayerNorm(Function):
    """y = (x - mean) * rstd * w + b over the last axis (kernels/06). Saves x, mean, rstd."""

    def forward(self, x, weight, bias, eps=1e-5):
        y, s, mean, rstd = layer_norm_forward(x, weight, bias, eps)
        self.save(s, weight, mean, rstd)
        return y

    def backward(self, g):
        s, weight, mean, rstd = self.saved
        return layer_norm_backward(s, weight, mean, rstd, g)


class FusedAddLayerNorm(Function):
    """y = LN(x + r) (GPT-1's post-LN residual, `ln(x + sublayer(x))`) in LayerNorm's launches.
    Saves s = x + r, mean, rstd; the gradient of x and of r is the same ds."""

    def forward(self, x, r, weight, bias, eps=1e-5):
        y, s, mean, rstd = layer_norm_forward(x, weight, bias, eps, residual=r)
        self.save(s, weight, mean, rstd)
        return y

    def backward(self, g):
        s, weight, mean, rstd = self.saved
        ds, dw, db = layer_norm_backward(s, weight, mean, rstd, g)
        return ds, ds, dw, db


class FusedCrossEntropy(Function):
    """Mean cross-entropy of logits (N, V) against int targets (N,) (kernels/08); the loss
    stays on the GPU. Saves the logits and the (N,) row log-sum-exp."""

    def forward(self, logits, targets=None, ignore_index=-100):
        logits, targets = _xent_inputs(logits, targets)  # contiguous float32, int32 targets
        losses, lse, stats = xent_forward(logits, targets, ignore_index)
        self.save(logits, lse, stats)
        self.targets, self.ignore_index = targets, ignore_index
        return stats[0]  # a 0-d view: the mean loss over kept rows (0 when none is kept)

    def backward(self, g):
        logits, lse, stats = self.saved
        return (xent_backward(logits, self.targets, lse, stats, g, self.ignore_index),)


# ---- when the kernels apply (minigpt.dispatch asks) ---------------------------------------------

def can_fuse_layer_norm(x, weight, bias, eps=1e-5) -> bool:
    """CuPy float32 input, weight and bias, switch on."""
    return fused_enabled() and all(is_kernel_array(a) for a in (x, weight, bias))


def can_fuse_cross_entropy(logits, targets=None, ignore_index=-100) -> bool:
    """CuPy float32 (N, V) logits, integer targets, ids and ignore_index within int32."""
    return (fused_enabled() and is_kernel_array(logits) and logits.ndim == 2
            and getattr(targets, "dtype", np.dtype(np.float32)).kind in "iu"
            and -2**31 <= int(ignore_index) < 2**31 and logits.shape[1] < 2**31)


dispatch.register("layer_norm", "cuda", FusedLayerNorm, supports=can_fuse_layer_norm)
dispatch.register("cross_entropy", "cuda", FusedCrossEntropy, supports=can_fuse_cross_entropy)
