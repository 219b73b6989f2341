"""Flash attention in NumPy: the tiled, online-softmax algorithm of kernels/04 and 05, readable.

This is the bridge between `functional.Attention` (which builds the whole (Tq, Tk) score
matrix) and the CUDA kernels (which never do). It computes the same function with the same
loops as the GPU code, one tile pair at a time, vectorised only over (batch, head):

    forward   for each query tile:                         (a CUDA block in 04)
                  for each key tile it can see:             (the block's loop)
                      S = Q_t K_t^T * scale, masked          a (bq, bk) tile
                      online softmax: new row max m', rescale running sum l and
                      output accumulator by exp(m - m'), add exp(S - m') and exp(S - m') V_t
              O = acc / l,  lse = m + log(l)   (only O and lse are kept for the backward)

    backward  D = rowsum(dO * O)
              for each key tile:                           (a block of 05's dK/dV kernel)
                  for each query tile that can see it:
                      P = exp(S - lse)   (recomputed, exact), dP = dO V^T, dS = P (dP - D)
                      dV_t += P^T dO_t,  dK_t += scale dS^T Q_t
              for each query tile:                         (a block of 05's dQ kernel)
                  for each key tile it can see:  dQ_t += scale dS K_t

Masks and conventions are exactly the reference attention's, because they come from the same
two functions of minigpt/ops/attention.py: `check_attention_inputs` (the shapes) and
`attention_mask` (query row i sits at absolute position i + (Tk - Tq) under the causal mask,
padding_mask (B, Tk) marks real keys with 1), sliced tile by tile here (the kernels evaluate the
same rule element by element: mg_visible in kernels/common.cuh). A row that sees no key outputs
zeros (its lse is +inf, so exp(S - lse) is 0 there).

Works with NumPy or CuPy arrays (any float dtype; the tests run it in float64 against
functional.attention). `TiledAttention` wraps it as an autograd Function.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from ..ops.attention import attention_mask, check_attention_inputs

__all__ = ["flash_attention_forward", "flash_attention_backward", "TiledAttention",
           "tiled_attention"]


def _tile_mask(mask, q0, q1, k0, k1):
    """Visible (query, key) pairs of one tile of the whole attention_mask (True = visible):
    (bq, bk), (B, 1, bq, bk), or (B, 1, 1, bk) when only padding masks (the same for every
    query); None = all."""
    if mask is None:
        return None
    rows = slice(q0, q1) if mask.shape[-2] > 1 else slice(None)  # a padding-only mask: 1 row
    return mask[..., rows, k0:k1]


def _key_end(q1, Tq, Tk, causal):
    """One past the last key a query tile ending at row q1 can see."""
    return min(Tk, q1 + (Tk - Tq)) if causal else Tk


def _query_begin(k0, Tq, Tk, causal):
    """The first query that can see key k0 (keys after it are seen only by later queries)."""
    return max(0, k0 - (Tk - Tq)) if causal else 0


def _setup(q, k, v, causal, padding_mask):
    """What both passes start from: the shapes checked, the score scale 1/sqrt(hs) in q's
    dtype, and the whole attention_mask ((Tq, Tk), (B, 1, Tq, Tk) or None), sliced per tile."""
    xp = get_array_module(q)
    if padding_mask is not None:
        padding_mask = xp.asarray(padding_mask)
    check_attention_inputs(q.shape, k.shape, v.shape, causal,
                           None if padding_mask is None else padding_mask.shape)
    scale = q.dtype.type(1.0 / math.sqrt(q.shape[-1]))
    return xp, scale, attention_mask(q.shape[2], k.shape[2], causal, padding_mask, xp)


def flash_attention_forward(q, k, v, causal=True, padding_mask=None, block_q=64, block_k=64):
    """Attention by tiles. q (B, nh, Tq, hs), k and v (B, nh, Tk, hs) -> (O, lse).

    O (B, nh, Tq, hs) equals functional.attention's output; lse (B, nh, Tq) is the natural
    log-sum-exp of each row's scaled, masked scores (+inf for a row that sees no key).
    """
    xp, scale, full_mask = _setup(q, k, v, causal, padding_mask)
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    dt = q.dtype.type
    o = xp.zeros(q.shape, dtype=q.dtype)
    lse = xp.full((B, nh, Tq), np.inf, dtype=q.dtype)
    for q0 in range(0, Tq, block_q):  # one CUDA block per query tile (and head)
        q1 = min(q0 + block_q, Tq)
        qt = q[:, :, q0:q1]                                   # (B, nh, bq, hs)
        m = xp.full((B, nh, q1 - q0, 1), -np.inf, dtype=q.dtype)  # running row max
        l = xp.zeros((B, nh, q1 - q0, 1), dtype=q.dtype)          # running sum of exp(s - m)
        acc = xp.zeros((B, nh, q1 - q0, hs), dtype=q.dtype)       # running sum of exp(s - m) v
        for k0 in range(0, _key_end(q1, Tq, Tk, causal), block_k):
            k1 = min(k0 + block_k, Tk)
            s = (qt @ k[:, :, k0:k1].swapaxes(-1, -2)) * scale   # (B, nh, bq, bk)
            mask = _tile_mask(full_mask, q0, q1, k0, k1)
            if mask is not None:
                s = xp.where(mask, s, dt(-np.inf))
            m_new = xp.maximum(m, s.max(axis=-1, keepdims=True))
            # rows that have seen no key yet keep m = -inf; shift by 0 there to avoid inf - inf
            shift = xp.where(xp.isfinite(m_new), m_new, dt(0))
            alpha = xp.exp(m - shift)                    # rescales the old sum (0 the first time)
            p = xp.exp(s - shift)                        # masked scores -> exp(-inf) = 0
            l = l * alpha + p.sum(axis=-1, keepdims=True)
            acc = acc * alpha + p @ v[:, :, k0:k1]
            m = m_new
        seen = l > 0
        o[:, :, q0:q1] = acc / xp.where(seen, l, dt(1))        # rows with no key stay 0
        lse[:, :, q0:q1] = xp.where(seen, m + xp.log(xp.where(seen, l, dt(1))), dt(np.inf))[..., 0]
    return o, lse


def flash_attention_backward(q, k, v, o, lse, do, causal=True, padding_mask=None,
                             block_q=64, block_k=64):
    """(dq, dk, dv) of flash_attention_forward from its inputs, O, lse and dO (= g)."""
    xp, scale, full_mask = _setup(q, k, v, causal, padding_mask)
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    dt = q.dtype.type
    D = (do * o).sum(axis=-1)[..., None]   # (B, nh, Tq, 1) = rowsum(P * dP)
    L = lse[..., None]

    def probs(q0, q1, k0, k1):
        s = (q[:, :, q0:q1] @ k[:, :, k0:k1].swapaxes(-1, -2)) * scale
        p = xp.exp(s - L[:, :, q0:q1])     # exact P from the saved lse (+inf -> 0)
        mask = _tile_mask(full_mask, q0, q1, k0, k1)
        return p if mask is None else xp.where(mask, p, dt(0))

    def dscores(p, q0, q1, k0, k1):
        dp = do[:, :, q0:q1] @ v[:, :, k0:k1].swapaxes(-1, -2)
        return p * (dp - D[:, :, q0:q1])

    dk = xp.zeros(k.shape, dtype=q.dtype)
    dv = xp.zeros(v.shape, dtype=q.dtype)
    for k0 in range(0, Tk, block_k):       # 05's dK/dV kernel: a block per key tile
        k1 = min(k0 + block_k, Tk)
        start = (_query_begin(k0, Tq, Tk, causal) // block_q) * block_q
        for q0 in range(start, Tq, block_q):
            q1 = min(q0 + block_q, Tq)
            p = probs(q0, q1, k0, k1)
            ds = dscores(p, q0, q1, k0, k1)
            dv[:, :, k0:k1] += p.swapaxes(-1, -2) @ do[:, :, q0:q1]
            dk[:, :, k0:k1] += (ds.swapaxes(-1, -2) @ q[:, :, q0:q1]) * scale

    dq = xp.zeros(q.shape, dtype=q.dtype)
    for q0 in range(0, Tq, block_q):       # 05's dQ kernel: a block per query tile
        q1 = min(q0 + block_q, Tq)
        for k0 in range(0, _key_end(q1, Tq, Tk, causal), block_k):
            k1 = min(k0 + block_k, Tk)
            ds = dscores(probs(q0, q1, k0, k1), q0, q1, k0, k1)
            dq[:, :, q0:q1] += (ds @ k[:, :, k0:k1]) * scale
    return dq, dk, dv


class TiledAttention(Function):
    """functional.Attention computed by tiles (same inputs, same output, same gradients)."""

    def forward(self, q, k, v, causal=True, padding_mask=None, block_q=64, block_k=64):
        o, lse = flash_attention_forward(q, k, v, causal, padding_mask, block_q, block_k)
        self.save(q, k, v, o, lse)
        self.options = (causal, padding_mask, block_q, block_k)
        return o

    def backward(self, g):
        q, k, v, o, lse = self.saved
        return flash_attention_backward(q, k, v, o, lse, g, *self.options)


def tiled_attention(q, k, v, causal=True, padding_mask=None, block_q=64, block_k=64):
    """Like functional.attention (q, k, v Tensors), computed by tiles."""
    return TiledAttention.apply(q, k, v, causal=causal, padding_mask=padding_mask,
                                block_q=block_q, block_k=block_k)
