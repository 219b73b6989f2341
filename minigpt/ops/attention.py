"""Masked scaled dot-product attention (all heads at once), with attention dropout.

Shapes   q (B, nh, Tq, hs),  k and v (B, nh, Tk, hs)  ->  O (B, nh, Tq, hs)
         B batch, nh heads, Tq queries, Tk keys, hs head size.  Usually Tq = Tk = T; with a
         KV cache, Tq < Tk: the queries are the last Tq positions.

Forward  S = (q @ k^T) / sqrt(hs)                     (B, nh, Tq, Tk) scores
         S = -inf where the mask hides a key           (the mask rule: `attention_mask`)
         P = softmax(S) over the keys                  a row that sees no key is all 0
         O = (P * D) @ v                               D: dropout mask, 0 or 1/(1 - p)
                                                       (D = 1 without attention dropout)

Backward With g = dL/dO (B, nh, Tq, hs):
         dv = (P * D)^T @ g                            O is linear in v
         dP = (g @ v^T) * D                            and linear in P * D
         dS = P * (dP - rowsum(dP * P))                softmax's backward, row by row
         dq = dS @ k / sqrt(hs),   dk = dS^T @ q / sqrt(hs)
         Masked entries have P = 0, so they get dS = 0: the mask needs no backward of its own.

The mask rule and the shape rule are written once, here, and used by every implementation
(the fast CPU one, the tiled NumPy one and the CUDA launchers): `attention_mask` and
`check_attention_inputs`.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dispatch
from ..autograd import Function, Tensor, as_array
from ..backend import get_array_module
from ..random import get_rng

__all__ = ["Attention", "attention", "attention_mask", "check_attention_inputs"]


def attention_mask(Tq: int, Tk: int, causal: bool, padding_mask=None, xp=np):
    """Boolean mask of the keys each query may see: (Tq, Tk) or (B, 1, Tq, Tk); True = visible.
    None when every query sees every key.

    Causal: query i sits at absolute position i + (Tk - Tq) (so cached decoding, Tq < Tk, works)
    and sees keys j <= that position. padding_mask (B, Tk): 1/True = real token, 0 = padding,
    never attended to.
    """
    mask = None
    if causal:
        offset = Tk - Tq
        mask = xp.arange(Tk)[None, :] <= (xp.arange(Tq)[:, None] + offset)  # (Tq, Tk)
    if padding_mask is not None:
        keys = padding_mask.astype(bool)[:, None, None, :]  # (B, 1, 1, Tk)
        mask = keys if mask is None else (mask[None, None] & keys)  # (B, 1, Tq, Tk)
    return mask


def check_attention_inputs(q_shape, k_shape, v_shape, causal: bool,
                           padding_mask_shape=None) -> None:
    """Raise ValueError unless q (B, nh, Tq, hs), k and v (B, nh, Tk, hs) fit together, causal
    attention has Tq <= Tk, and padding_mask (if given) is (B, Tk)."""
    q_shape, k_shape, v_shape = tuple(q_shape), tuple(k_shape), tuple(v_shape)
    if k_shape != v_shape or len(q_shape) != 4 or len(k_shape) != 4 \
            or q_shape[:2] != k_shape[:2] or q_shape[-1] != k_shape[-1]:
        raise ValueError(f"attention: q {q_shape}, k {k_shape}, v {v_shape} do not fit "
                         "(B, nh, Tq, hs), (B, nh, Tk, hs), (B, nh, Tk, hs)")
    B, _, Tq, _ = q_shape
    Tk = k_shape[2]
    if causal and Tq > Tk:
        raise ValueError(f"attention: causal attention needs Tq <= Tk, got {Tq} > {Tk}")
    if padding_mask_shape is not None and tuple(padding_mask_shape) != (B, Tk):
        raise ValueError(f"attention: padding_mask shape {tuple(padding_mask_shape)} should be "
                         f"(B, Tk) = {(B, Tk)}")


class Attention(Function):
    """O = dropout(softmax(mask(q k^T / sqrt(hs)))) @ v, every head at once."""

    def forward(self, q, k, v, causal=True, padding_mask=None, dropout_p=0.0, rng=None):
        ### BEGIN SOLUTION
        xp = get_array_module(q)
        Tq, hs, Tk = q.shape[2], q.shape[3], k.shape[2]
        self.scale = 1 / math.sqrt(hs)
        S = (q @ k.swapaxes(-1, -2)) * self.scale  # (B, nh, Tq, hs) @ (B, nh, hs, Tk)
        mask = attention_mask(Tq, Tk, causal, padding_mask, xp)
        if mask is not None:
            S = xp.where(mask, S, -xp.inf)  # hidden keys: exp(-inf) = 0
        m = S.max(axis=-1, keepdims=True)  # (B, nh, Tq, 1)
        E = xp.exp(S - xp.where(xp.isfinite(m), m, 0))  # a row with no visible key: all 0
        den = E.sum(axis=-1, keepdims=True)
        P = E / xp.where(den == 0, 1, den)  # softmax; all-0 rows stay 0
        D = None
        if dropout_p > 0:  # keep each probability with chance 1 - p, scaled by 1/(1 - p)
            keep = xp.asarray(rng.random(P.shape, dtype=P.dtype)) >= P.dtype.type(dropout_p)
            D = keep / P.dtype.type(1 - dropout_p)
        self.save(q, k, v, P, D)
        return (P if D is None else P * D) @ v  # (B, nh, Tq, Tk) @ (B, nh, Tk, hs)
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        q, k, v, P, D = self.saved
        PD = P if D is None else P * D
        dv = PD.swapaxes(-1, -2) @ g  # (B, nh, Tk, Tq) @ (B, nh, Tq, hs)
        dP = g @ v.swapaxes(-1, -2)  # (B, nh, Tq, hs) @ (B, nh, hs, Tk)
        if D is not None:
            dP = dP * D
        dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))  # (B, nh, Tq, Tk)
        dq = (dS @ k) * self.scale  # (B, nh, Tq, Tk) @ (B, nh, Tk, hs)
        dk = (dS.swapaxes(-1, -2) @ q) * self.scale  # (B, nh, Tk, Tq) @ (B, nh, Tq, hs)
        return dq, dk, dv
        ### END SOLUTION


def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, padding_mask=None,
              dropout_p: float = 0.0, rng=None) -> Tensor:
    """Attention over heads. q (B, nh, Tq, hs), k and v (B, nh, Tk, hs) -> (B, nh, Tq, hs).

    padding_mask: optional (B, Tk) of 1/True for real tokens, 0/False for padding (keys).
    dropout_p: dropout on the attention probabilities (pass 0 in eval mode); rng as F.dropout.
    """
    xp = get_array_module(as_array(q))
    if padding_mask is not None:
        padding_mask = xp.asarray(as_array(padding_mask))
    check_attention_inputs(q.shape, k.shape, v.shape, causal,
                           None if padding_mask is None else padding_mask.shape)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"attention dropout probability must be in [0, 1), got {dropout_p}")
    if dropout_p > 0.0 and rng is None:
        rng = get_rng(xp)
    return dispatch.apply("attention", q, k, v, causal=causal, padding_mask=padding_mask,
                          dropout_p=dropout_p, rng=rng)


dispatch.register("attention", "reference", Attention)
