"""Task heads on top of GPT-1's last hidden states h_n (B, T, C), and the model that joins them.

    classify / entail   logits = dropout(h[b, e_b]) W_y + b_y               (B, K)
    similar             logits = dropout(h[2b, e] + h[2b+1, e']) W_y + b_y  (B, K)
                        rows 2b and 2b+1 are the two orderings of pair b
    choice              score_bk = dropout(h[bK+k, e]) w + c                (B, K), softmax over k
    tag                 logits = dropout(h) W_y + b_y                       (B, T, K)

e_b is the position of sequence b's extract token (its last real token). W_y is drawn
N(0, 0.02), biases start at 0 (GPT-1's init); dropout 0.1 on the head's input (GPT-1's
clf_pdrop). Every step is an autograd op, so the heads' backward is the autograd's; the tests
gradcheck each head in float64.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..backend import get_array_module
from ..nn import Dropout, Linear, Module

__all__ = ["ClassificationHead", "EntailmentHead", "SimilarityHead", "MultipleChoiceHead",
           "TaggingHead", "make_head", "TaskModel", "task_loss", "extract_states"]


def extract_states(h: Tensor, extract) -> Tensor:
    """h[n, extract[n]] for every row n: (N, T, C) -> (N, C), by fancy indexing (its backward
    scatter-adds into the picked rows)."""
    xp = get_array_module(h.data)
    extract = xp.asarray(extract)
    n = h.shape[0]
    if extract.shape != (n,):
        raise ValueError(f"extract positions have shape {extract.shape}, expected ({n},)")
    return h[xp.arange(n), extract]


class _Head(Module):
    def __init__(self, n_embd: int, n_out: int, pdrop: float = 0.1, std: float = 0.02,
                 dtype=np.float32, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.dropout = Dropout(pdrop)
        self.linear = Linear(n_embd, n_out, std=std, dtype=dtype, rng=rng)


class ClassificationHead(_Head):
    """`[start] text [extract]`: a linear layer W_y on the extract token's state -> (B, K)."""

    def __init__(self, n_embd: int, n_classes: int, **kw):
        if n_classes < 2:
            raise ValueError(f"a classification head needs at least 2 classes, got {n_classes}")
        super().__init__(n_embd, n_classes, **kw)

    def forward(self, h: Tensor, extract, group: int = 1) -> Tensor:
        return self.linear(self.dropout(extract_states(h, extract)))


class EntailmentHead(ClassificationHead):
    """`[start] premise [delim] hypothesis [extract]`: the same linear layer on the extract
    state (the transformation, not the head, is what differs from classification)."""


class SimilarityHead(ClassificationHead):
    """Both orderings `[start] a [delim] b [extract]`, `[start] b [delim] a [extract]` (rows 2b
    and 2b+1): their extract states summed elementwise, then W_y. Symmetric in a and b."""

    def forward(self, h: Tensor, extract, group: int = 2) -> Tensor:
        if group != 2 or h.shape[0] % 2:
            raise ValueError("the similarity head needs the two orderings of each pair "
                             f"(group 2, an even number of rows), got group {group}, "
                             f"{h.shape[0]} rows")
        s = extract_states(h, extract)                 # (2B, C)
        s = s.reshape(h.shape[0] // 2, 2, h.shape[2])  # (B, 2, C)
        return self.linear(self.dropout(s.sum(axis=1)))


class MultipleChoiceHead(_Head):
    """One `[start] context [delim] answer_k [extract]` row per choice (rows bK..bK+K-1): a
    scalar score per row from w (C -> 1), reshaped to (B, K); the softmax over k is in the
    loss."""

    def __init__(self, n_embd: int, **kw):
        super().__init__(n_embd, 1, **kw)

    def forward(self, h: Tensor, extract, group: int) -> Tensor:
        if h.shape[0] % group:
            raise ValueError(f"{h.shape[0]} rows do not split into groups of {group} choices")
        s = self.linear(self.dropout(extract_states(h, extract)))  # (B*K, 1)
        return s.reshape(h.shape[0] // group, group)


class TaggingHead(_Head):
    """A label for every token: W_y on every position -> (B, T, K). Only first sub-tokens of
    words carry a training label; the loss ignores the rest."""

    def __init__(self, n_embd: int, n_tags: int, **kw):
        super().__init__(n_embd, n_tags, **kw)

    def forward(self, h: Tensor, extract=None, group: int = 1) -> Tensor:
        return self.linear(self.dropout(h))


def make_head(task: str, n_embd: int, n_labels: int, pdrop: float = 0.1, dtype=np.float32,
              seed: int = 0) -> Module:
    kw = dict(pdrop=pdrop, dtype=dtype, seed=seed)
    if task == "classify":
        return ClassificationHead(n_embd, n_labels, **kw)
    if task == "entail":
        return EntailmentHead(n_embd, n_labels, **kw)
    if task == "similar":
        return SimilarityHead(n_embd, n_labels, **kw)
    if task == "choice":
        return MultipleChoiceHead(n_embd, **kw)
    if task == "tag":
        return TaggingHead(n_embd, n_labels, **kw)
    raise ValueError(f"unknown task {task!r}")


def task_loss(task: str, logits: Tensor, labels) -> Tensor:
    """L2: mean cross-entropy of the task logits; tagging ignores positions labelled -100."""
    return F.cross_entropy(logits, labels, ignore_index=-100)


class TaskModel(Module):
    """The pretrained transformer plus a task head.

    forward(idx, mask, extract, group) -> (task logits, h_n); `lm_loss(h, targets)` is the
    auxiliary L1 with the tied output embedding. Parameter names: `transformer.*`, `head.*`.
    """

    def __init__(self, transformer, head: Module, task: str):
        super().__init__()
        self.transformer = transformer
        self.head = head
        self.task = task

    def forward(self, idx, mask=None, extract=None, group: int = 1):
        h = self.transformer.hidden_states(idx, padding_mask=mask)
        return self.head(h, extract, group), h

    def lm_loss(self, h: Tensor, targets) -> Tensor:
        return F.cross_entropy(self.transformer.lm_logits(h), targets, ignore_index=-100)
