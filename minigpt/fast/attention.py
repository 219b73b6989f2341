"""Fast attention: heads split over the cores, softmax in place, the FlashAttention row sum.

What changes vs ops/attention.py, and why:
- Heads run in blocks on our own threads with BLAS single-threaded inside
  (runtime.run_blocks_blas): OpenBLAS would otherwise wake its threads for each of the
  B * nh small (Tq, hs) @ (hs, Tk) products (measured under load: 96 such products 200 ms
  with 2 BLAS threads, 11 ms with one). The blocks split whichever of the batch and the
  heads has more entries: a one-head model with a batch of 32 must not run on one core.
- The scale is folded into q (smaller than S); the mask is added (0 or -inf) instead of
  selected with `where`; softmax runs in place in S's buffer and its row sums are
  matrix-vector products with ones (BLAS).
- O is written straight into a (B, Tq, nh, hs) buffer, so the caller's transpose back to
  (B, Tq, C) is a free view rather than a copy.
- Backward: rowsum(dP * P) equals rowsum(g * O) (sum_j P_ij D_ij g_i.v_j = g_i.O_i), a
  (Tq, hs) product instead of a (Tq, Tk) one, as FlashAttention computes it.
The mask is the reference's rule (ops.attention.attention_mask), the same dropout draws; a
single causal query (a sampled token's step) needs none: it sits at the last position.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dispatch
from ..autograd import Function
from ..backend import get_array_module
from ..ops.attention import attention_mask
from .runtime import run_blocks_blas

__all__ = ["FastAttention"]


class FastAttention(Function):
    """O = dropout(softmax(mask(q k^T / sqrt(hs)))) @ v, heads in parallel."""

    def forward(self, q, k, v, causal=True, padding_mask=None, dropout_p=0.0, rng=None):
        xp = get_array_module(q)
        B, nh, Tq, hs = q.shape
        Tk, dt = k.shape[2], q.dtype.type
        scale = dt(1.0 / math.sqrt(hs))
        if causal and Tq == 1 and padding_mask is None:
            mask = None  # one query at the last position sees every key (the rule, trivially)
        else:
            mask = attention_mask(Tq, Tk, causal, padding_mask, xp)
        add_mask = None if mask is None else xp.where(mask, dt(0), dt(-np.inf))  # 0 or -inf
        D = None
        if dropout_p > 0.0:  # drawn up front: one generator, the same draws as one big call
            keep = xp.asarray(rng.random((B, nh, Tq, Tk), dtype=q.dtype)) >= dt(dropout_p)
            D = keep.astype(q.dtype) * dt(1.0 / (1.0 - dropout_p))
        qs = xp.empty_like(q)
        S = xp.empty((B, nh, Tq, Tk), dtype=q.dtype)  # scores, then probabilities in place
        out = xp.empty((B, Tq, nh, hs), dtype=q.dtype)  # heads side by side, as the caller wants
        O = out.transpose(0, 2, 1, 3)  # (B, nh, Tq, hs), a strided view of out
        ones = xp.ones(Tk, dtype=q.dtype)

        def heads(s):  # everything below for one block only (S[h] etc.: some heads or rows)
            h = block(s)
            xp.multiply(q[h], scale, out=qs[h])  # fold the scale into q (smaller than S)
            xp.matmul(qs[h], k[h].swapaxes(-1, -2), out=S[h])  # (Tq, hs) @ (hs, Tk)
            Sh = S[h]
            if add_mask is not None:  # additive mask: (Tq, Tk) or (B, 1, Tq, Tk)
                Sh += add_mask if add_mask.ndim == 2 or by_heads else add_mask[s]
            m = Sh.max(axis=-1, keepdims=True)  # (B, h, Tq, 1)
            if add_mask is not None:
                m[~xp.isfinite(m)] = 0  # fully masked rows: exp(-inf - 0) = 0 everywhere
            Sh -= m
            xp.exp(Sh, out=Sh)  # unnormalised probabilities
            den = Sh @ ones  # row sums as a matvec: (B, h, Tq)
            if add_mask is not None:
                den[den == 0] = 1  # rows with no visible key stay all zeros
            Sh *= (dt(1.0) / den)[..., None]  # P
            xp.matmul(Sh if D is None else Sh * D[h], v[h], out=O[h])  # (Tq, Tk) @ (Tk, hs)

        by_heads, block = blocks_of(B, nh)
        run_blocks_blas(xp, heads, max(B, nh), min(B, nh) * Tq * Tk)
        self.save(qs, k, v, S, D, O)
        self.scale = scale
        return O

    def backward(self, g):
        xp = get_array_module(g)
        qs, k, v, P, D, O = self.saved
        dq, dk, dv = xp.empty_like(qs), xp.empty_like(k), xp.empty_like(v)
        dS = xp.empty_like(P)
        ones = xp.ones(O.shape[-1], dtype=O.dtype)
        B, nh, Tq, Tk = P.shape

        def heads(s):
            h = block(s)
            PD = P[h] if D is None else P[h] * D[h]
            xp.matmul(PD.swapaxes(-1, -2), g[h], out=dv[h])  # dv = PD^T g: (Tk, Tq) @ (Tq, hs)
            dSh = dS[h]
            xp.matmul(g[h], v[h].swapaxes(-1, -2), out=dSh)  # dP = g v^T: (Tq, hs) @ (hs, Tk)
            if D is not None:
                dSh *= D[h]
            r = (g[h] * O[h]) @ ones  # rowsum(dP * P) = rowsum(g * O), (b, h, Tq)
            dSh -= r[..., None]
            dSh *= P[h]  # dS = P * (dP - rowsum(dP * P))
            xp.matmul(dSh, k[h], out=dq[h])  # (Tq, Tk) @ (Tk, hs)
            dq[h] *= self.scale
            xp.matmul(dSh.swapaxes(-1, -2), qs[h], out=dk[h])  # qs carries the scale

        _, block = blocks_of(B, nh)
        run_blocks_blas(xp, heads, max(B, nh), min(B, nh) * Tq * Tk)
        return dq, dk, dv


def blocks_of(B: int, nh: int):
    """(by_heads, block): the (B, nh, ...) arrays are split into blocks along the heads when
    there are at least as many heads as batch rows, else along the batch; block(s) turns a
    slice of that axis into the index of one block (S[block(s)] is (B, h, Tq, Tk) or
    (b, nh, Tq, Tk))."""
    if nh >= B:
        return True, lambda s: (slice(None), s)
    return False, lambda s: (s,)


dispatch.register("attention", "fast", FastAttention)
