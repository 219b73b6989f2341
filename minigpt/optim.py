"""Adam exactly as GPT-1's release applies it, plus its two learning-rate schedules.

For every parameter p with gradient g, at update t = 1, 2, ...:

    m = b1 m + (1 - b1) g                    v = b2 v + (1 - b2) g^2
    lr_t = lr * schedule(t) * sqrt(1 - b2^t) / (1 - b1^t)      (bias correction folded in)
    p   -= lr_t * (m / (sqrt(v) + eps) + w * p)                 (w only if p has rank >= 2)

The weight decay w is *decoupled* (added to the update, not to the gradient) and touches only
matrices and embeddings: biases and LayerNorm gains are never decayed (GPT-1's rule).
Before the update, the global gradient norm is clipped to `max_grad_norm` (GPT-1: 1).
"""
from __future__ import annotations

import math

import numpy as np

from .backend import get_array_module, to_device, device_of
from .functional import _blas_single_thread, _in_parallel  # see functional.py


def warmup_cosine(warmup: int, total: int):
    """Linear warm-up over `warmup` updates, then cosine to 0 at `total` (GPT-1 pretraining)."""

    def schedule(t: int) -> float:
        if t < warmup:
            return t / max(1, warmup)
        progress = min(1.0, (t - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return schedule


def warmup_linear(total: int, warmup: float = 0.002):
    """GPT-1 fine-tuning: x = t/total; factor = (x/warmup if x < warmup else 1) * (1 - x)."""

    def schedule(t: int) -> float:
        x = t / max(1, total)
        return (x / warmup if x < warmup else 1.0) * max(0.0, 1.0 - x)

    return schedule


def constant():
    return lambda t: 1.0


def global_grad_norm(params) -> float:
    """sqrt(sum of g.g over every gradient): the norm that clipping compares to max_norm."""
    grads = [p.grad for p in params if p.grad is not None]
    with _blas_single_thread():  # ~200 dot products: no thread wake-up for each
        return math.sqrt(sum(float((g.reshape(-1) @ g.reshape(-1))) for g in grads))


def _clip_scale(total: float, max_norm: float | None) -> float | None:
    """The factor clipping multiplies every gradient by, or None when it leaves them alone."""
    if max_norm is not None and total > max_norm:
        return max_norm / (total + 1e-6)
    return None


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients so their global L2 norm is at most max_norm; return the norm before."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = global_grad_norm(params)
    scale = _clip_scale(total, max_norm)
    if scale is not None:
        for g in grads:
            g *= g.dtype.type(scale)
    return total


class Adam:
    """Adam with GPT-1's decoupled weight decay and gradient clipping.

    params: a list of Parameters (or of (name, Parameter) pairs). schedule: t -> multiplier
    of lr (default constant 1). `step()` applies one update; `zero_grad()` clears gradients.
    """

    CHUNK = 1 << 16  # elements per slice of the chunked update (256 KiB per array; measured best)

    def __init__(self, params, lr: float = 2.5e-4, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, max_grad_norm: float | None = 1.0, schedule=None):
        params = list(params)
        if params and isinstance(params[0], tuple):
            params = [p for _, p in params]
        if not params:
            raise ValueError("Adam got an empty parameter list")
        if lr <= 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or eps <= 0:
            raise ValueError(f"Adam: invalid lr={lr}, betas={betas} or eps={eps}")
        self.params = params
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.weight_decay, self.max_grad_norm = weight_decay, max_grad_norm
        self.schedule = schedule or constant()
        self.t = 0
        self.m = [get_array_module(p.data).zeros_like(p.data) for p in params]
        self.v = [get_array_module(p.data).zeros_like(p.data) for p in params]
        self.last_grad_norm = 0.0
        self.last_lr = 0.0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        # clipping as clip_grad_norm does it (p.grad *= scale, in place), but done inside the
        # update's chunks, where g is in cache anyway, instead of in one more pass of its own
        self.last_grad_norm = global_grad_norm(self.params)
        clip = _clip_scale(self.last_grad_norm, self.max_grad_norm)
        self.t += 1
        b1, b2 = self.betas
        lr = self.lr * self.schedule(self.t)
        self.last_lr = lr
        lr_t = lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            wd = self.weight_decay if p.ndim >= 2 else 0.0  # matrices and embeddings only
            xp = get_array_module(p.data)
            if xp is np and all(a.flags.c_contiguous for a in (p.data, p.grad, m, v)):
                self._update_in_chunks(p.data, p.grad, m, v, lr_t, wd, clip)
            else:  # CuPy (one kernel per op is already fast) or an unusual memory layout
                self._update(p.data, p.grad, m, v, lr_t, wd, clip, xp)

    def _update(self, p, g, m, v, lr_t: float, wd: float, clip, xp, tmp=None, tmp2=None) -> None:
        """One Adam update of the arrays p, m, v (same shape) by g, in place; first g *= clip
        (the gradient clipping) unless clip is None.

        tmp, tmp2: optional scratch arrays of p's shape (the chunked path passes them, so
        that no temporary is allocated); without them the formula allocates its own.
        """
        b1, b2 = self.betas
        dt = p.dtype.type  # Python floats times float32 arrays would promote through float64
        tmp = xp.empty_like(p) if tmp is None else tmp
        if clip is not None:
            g *= dt(clip)
        m *= dt(b1)
        m += xp.multiply(g, dt(1.0 - b1), out=tmp)      # m = b1 m + (1 - b1) g
        v *= dt(b2)
        xp.multiply(g, g, out=tmp)
        tmp *= dt(1.0 - b2)
        v += tmp                                        # v = b2 v + (1 - b2) g^2
        xp.sqrt(v, out=tmp)
        tmp += dt(self.eps)
        xp.divide(m, tmp, out=tmp)                      # update = m / (sqrt(v) + eps)
        if wd:
            tmp2 = xp.empty_like(p) if tmp2 is None else tmp2
            tmp += xp.multiply(p, dt(wd), out=tmp2)     # + w p (decoupled weight decay)
        tmp *= dt(lr_t)
        p -= tmp                                        # p -= lr_t * update

    def _update_in_chunks(self, p, g, m, v, lr_t: float, wd: float, clip) -> None:
        """The same update, CHUNK elements at a time: the ~10 passes of the formula then run
        on a slice of p, g, m and v that stays in the CPU cache, instead of streaming each
        whole array (466 MB for GPT-1's parameters) through memory ten times. The chunks are
        shared out between the cores (NumPy releases the GIL inside its loops)."""
        p, g, m, v = p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1)  # views
        n, size = p.size, self.CHUNK

        def chunks(c):  # chunks c.start .. c.stop - 1, with scratch arrays of their own
            tmp, tmp2 = np.empty(size, p.dtype), np.empty(size, p.dtype)
            for j in range(c.start, c.stop):
                s = slice(j * size, min((j + 1) * size, n))
                k = s.stop - s.start
                self._update(p[s], g[s], m[s], v[s], lr_t, wd, clip, np, tmp[:k], tmp2[:k])

        _in_parallel(chunks, -(-n // size), size)

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"t": self.t, "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "max_grad_norm": self.max_grad_norm,
                "m": list(self.m), "v": list(self.v)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["m"]) != len(self.params) or len(state["v"]) != len(self.params):
            raise ValueError(f"optimizer state has {len(state['m'])} moment arrays for "
                             f"{len(self.params)} parameters")
        for i, p in enumerate(self.params):
            for name in ("m", "v"):
                if tuple(state[name][i].shape) != p.shape:
                    raise ValueError(f"optimizer state {name}[{i}] has shape "
                                     f"{tuple(state[name][i].shape)}, parameter has {p.shape}")
        self.t = int(state["t"])
        self.lr, self.betas, self.eps = float(state["lr"]), tuple(state["betas"]), float(state["eps"])
        self.weight_decay, self.max_grad_norm = state["weight_decay"], state["max_grad_norm"]
        dev = [device_of(p.data) for p in self.params]
        self.m = [to_device(a, d).astype(p.dtype, copy=True) for a, d, p in zip(state["m"], dev, self.params)]
        self.v = [to_device(a, d).astype(p.dtype, copy=True) for a, d, p in zip(state["v"], dev, self.params)]
