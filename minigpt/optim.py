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

from . import dispatch
from .backend import get_array_module, to_device, device_of


def warmup_cosine(warmup: int, total: int):
    """Linear warm-up over `warmup` updates, then cosine to 0 at `total` (GPT-1 pretraining)."""

    def schedule(t: int) -> float:
        ### BEGIN SOLUTION
        if t < warmup:
            return t / max(1, warmup)
        progress = min(1.0, (t - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
        ### END SOLUTION

    return schedule


def warmup_linear(total: int, warmup: float = 0.002):
    """GPT-1 fine-tuning: x = t/total; factor = (x/warmup if x < warmup else 1) * (1 - x)."""

    def schedule(t: int) -> float:
        ### BEGIN SOLUTION
        x = t / max(1, total)
        return (x / warmup if x < warmup else 1.0) * max(0.0, 1.0 - x)
        ### END SOLUTION

    return schedule


def constant():
    return lambda t: 1.0


def global_grad_norm(params) -> float:
    """sqrt(sum of g.g over every gradient): the norm that clipping compares to max_norm."""
    grads = [p.grad for p in params if p.grad is not None]
    return dispatch.choose("grad_norm", *grads)(grads)


def _clip_scale(total: float, max_norm: float | None) -> float | None:
    """The factor clipping multiplies every gradient by, or None when it leaves them alone."""
    if max_norm is not None and total > max_norm:
        return max_norm / (total + 1e-6)
    return None


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients so their global L2 norm is at most max_norm; return the norm before."""
    ### BEGIN SOLUTION
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = global_grad_norm(params)
    scale = _clip_scale(total, max_norm)
    if scale is not None:
        for g in grads:
            g *= g.dtype.type(scale)
    return total
    ### END SOLUTION


def adam_update(p, g, m, v, lr_t: float, betas, eps: float, weight_decay: float,
                clip: float | None = None) -> None:
    """One Adam update of one parameter, in place: the formula at the top of this file.

    p, g, m, v: the parameter, its gradient and Adam's two moment arrays (same shape).
    lr_t: the step size with the bias correction folded in. clip: if not None, the gradient is
    first scaled by it, in place (global-norm clipping, as clip_grad_norm does it).
    """
    ### BEGIN SOLUTION
    xp = get_array_module(p)
    b1, b2 = betas
    if clip is not None:
        g *= clip
    m[...] = b1 * m + (1 - b1) * g  # first moment: a running mean of g
    v[...] = b2 * v + (1 - b2) * g * g  # second moment: a running mean of g^2
    p -= lr_t * (m / (xp.sqrt(v) + eps) + weight_decay * p)
    ### END SOLUTION


def _grad_norm(grads) -> float:
    """sqrt(sum of g.g over the gradients)."""
    return math.sqrt(sum(float((g * g).sum()) for g in grads))


def update_each(jobs, lr_t: float, betas, eps: float, clip: float | None = None) -> None:
    """Every parameter's update, one at a time: jobs holds (p, g, m, v, weight_decay) per
    parameter. Each update is `adam_update` or its tuned CPU version (minigpt.dispatch's
    "adam"); on the GPU, one kernel launch does the whole list instead (the "cuda"
    implementation of "adam_all", minigpt/cuda/adam.py)."""
    for p, g, m, v, wd in jobs:
        update = dispatch.choose("adam", p, g, m, v)
        update(p, g, m, v, lr_t=lr_t, betas=betas, eps=eps, weight_decay=wd, clip=clip)


dispatch.register("adam", "reference", adam_update)
dispatch.register("adam_all", "reference", update_each)
dispatch.register("grad_norm", "reference", _grad_norm)


class Adam:
    """Adam with GPT-1's decoupled weight decay and gradient clipping.

    params: a list of Parameters (or of (name, Parameter) pairs). schedule: t -> multiplier
    of lr (default constant 1). `step()` applies one update; `zero_grad()` clears gradients.
    Each parameter's update is `adam_update` (mode "reference") or its chunked, threaded
    version in minigpt/fast/adam.py (NumPy arrays, mode "auto" or "fast"); on CuPy float32
    arrays in mode "auto", one kernel launch updates them all: minigpt.dispatch chooses.
    """

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
        # clipping as clip_grad_norm does it (p.grad *= scale, in place), but inside the
        # update, where the fast version has g in cache anyway, instead of in a pass of its own
        self.last_grad_norm = global_grad_norm(self.params)
        clip = _clip_scale(self.last_grad_norm, self.max_grad_norm)
        self.t += 1
        b1, b2 = self.betas
        lr = self.lr * self.schedule(self.t)
        self.last_lr = lr
        ### BEGIN SOLUTION
        lr_t = lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        ### END SOLUTION
        jobs = [(p.data, p.grad, m, v, self.weight_decay if p.ndim >= 2 else 0.0)  # wd: matrices
                for p, m, v in zip(self.params, self.m, self.v) if p.grad is not None]  # and embeddings
        arrays = [a for job in jobs for a in job[:4]]
        update_all = dispatch.choose("adam_all", *arrays)  # update_each, or one GPU launch
        update_all(jobs, lr_t=lr_t, betas=self.betas, eps=self.eps, clip=clip)

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
