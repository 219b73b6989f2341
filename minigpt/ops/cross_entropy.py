"""Cross-entropy of logits against integer targets (the language-model and task losses).

Shapes   logits z (N, V), targets y int (N,)  ->  a scalar loss.  (The wrapper flattens
         (..., V) logits and (...) targets to rows.)  Rows whose target is `ignore_index`
         (padding, prompt tokens) do not count; K = the number of rows that do.

Forward  loss = (1/K) sum over kept rows n of -log softmax(z_n)[y_n]
         with log softmax computed stably (see ops/softmax.py). K = 0: the loss is 0.

Backward For one row, -log softmax(z)[y] = logsumexp(z) - z[y], whose derivative in z_i is
         softmax(z)_i - [i == y]. So, with g the upstream gradient of the scalar loss:
             dz_n = g * (softmax(z_n) - onehot(y_n)) / K   for kept rows,  0 for ignored rows
"""
from __future__ import annotations

from .. import dispatch
from ..autograd import Function, Tensor, as_array
from ..backend import get_array_module
from .softmax import stable_log_softmax

__all__ = ["CrossEntropy", "cross_entropy"]


class CrossEntropy(Function):
    """loss = mean over kept rows of -log softmax(z_n)[y_n];  dz = (softmax - onehot) g / K."""

    def forward(self, logits, targets=None, ignore_index=-100):
        ### BEGIN SOLUTION
        xp = get_array_module(logits)
        rows = xp.arange(logits.shape[0])
        keep = targets != ignore_index  # (N,)
        y = xp.where(keep, targets, 0)  # ignored rows read class 0, then count 0
        logp = stable_log_softmax(logits, axis=-1)  # (N, V)
        losses = -logp[rows, y] * keep  # (N,)
        self.K = max(int(keep.sum()), 1)
        self.save(logp, y, keep)
        return losses.sum() / logits.dtype.type(self.K)
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        xp = get_array_module(g)
        logp, y, keep = self.saved
        dz = xp.exp(logp)  # softmax(z), (N, V)
        dz[xp.arange(len(y)), y] -= 1  # softmax(z) - onehot(y)
        coef = keep * (g / logp.dtype.type(self.K))  # (N,): g / K, or 0 for an ignored row
        return (dz * coef[:, None],)
        ### END SOLUTION


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of logits (..., V) against integer targets (...)."""
    xp = get_array_module(as_array(logits))
    targets = xp.asarray(as_array(targets))
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy targets must be integers, got dtype {targets.dtype}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"cross_entropy: logits shape {logits.shape} does not match targets "
                         f"shape {targets.shape} (expected logits = targets.shape + (V,))")
    V = logits.shape[-1]
    flat_t = targets.reshape(-1)
    bad = (flat_t != ignore_index) & ((flat_t < 0) | (flat_t >= V))
    if bool(bad.any()):
        raise ValueError(f"cross_entropy target {int(flat_t[bad][0])} is outside [0, {V}) "
                         f"and is not ignore_index={ignore_index}")
    flat = logits.reshape(-1, V) if logits.ndim != 2 else logits
    return dispatch.apply("cross_entropy", flat, targets=flat_t, ignore_index=ignore_index)


dispatch.register("cross_entropy", "reference", CrossEntropy)
