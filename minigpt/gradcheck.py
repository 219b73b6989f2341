"""Gradient checking: the analytic backward against float64 central differences.

    d/dx_i  sum(f(x) * G)  ~=  (sum(f(x + eps e_i) * G) - sum(f(x - eps e_i) * G)) / (2 eps)

G is a *random, non-uniform* upstream gradient. With G all ones, the directions an op's output
cannot move in (LayerNorm's rows sum to a constant, softmax rows sum to 1) get zero weight, and
a wrong backward for them would pass unnoticed.
"""
from __future__ import annotations

import numpy as np

from .autograd import Tensor, no_grad
from .backend import get_array_module, to_numpy


class GradcheckError(AssertionError):
    """The analytic gradient of some input disagrees with the numerical one."""


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4,
              seed: int = 0, names=None) -> bool:
    """Check fn's backward for every input with requires_grad=True.

    fn: callable taking the Tensors in `inputs` and returning a Tensor (deterministic: no
    dropout); anything else is a TypeError. A backward returning more or fewer gradients than
    its Function has inputs is an error of backward() itself (autograd.Function).
    inputs: float64 Tensors. Passes when |analytic - numeric| <= atol + rtol*|numeric|
    elementwise; returns True, or raises GradcheckError naming the input, the worst index, both
    values and the relative error.
    """
    inputs = list(inputs)
    names = names or [f"input {i}" for i in range(len(inputs))]
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: {names[i]} has dtype {inputs[i].dtype}; gradient "
                            "checks need float64 (central differences lose float32 to rounding)")

    out = fn(*inputs)
    if not isinstance(out, Tensor):
        kind = f"{type(out).__module__}.{type(out).__name__}".replace("builtins.", "")
        raise TypeError(
            f"gradcheck: fn returned a {kind}, not a Tensor; build the output from minigpt "
            "operations on the input Tensors (Function.apply, Tensor methods), not on x.data, "
            "so that it has a backward to check")
    if not out.requires_grad:
        raise TypeError(
            "gradcheck: fn's output does not require grad: it is not connected to any input "
            "with requires_grad=True (was it wrapped from raw arrays, e.g. Tensor(x.data ...), "
            "or computed under no_grad()?)")
    xp = get_array_module(out.data)
    rng = np.random.default_rng(seed)
    upstream = xp.asarray(rng.standard_normal(out.shape))  # random, non-uniform
    for i in checked:
        inputs[i].grad = None
    out.backward(upstream)

    def objective():
        with no_grad():
            return float((fn(*inputs).data * upstream).sum())

    for i in checked:
        t = inputs[i]
        analytic = to_numpy(t.grad) if t.grad is not None else np.zeros(t.shape)
        numeric = np.zeros(t.shape)
        ### BEGIN SOLUTION
        # perturb t.data in place, one element at a time, by its multi-index (not through
        # reshape(-1), which is a copy, not a view, when the array is not contiguous)
        for idx in np.ndindex(*t.shape):
            orig = float(t.data[idx])
            t.data[idx] = orig + eps
            plus = objective()
            t.data[idx] = orig - eps
            minus = objective()
            t.data[idx] = orig
            numeric[idx] = (plus - minus) / (2 * eps)
        ### END SOLUTION
        err = np.abs(analytic - numeric)
        bound = atol + rtol * np.abs(numeric)
        bad = ~(err <= bound)  # NaN or inf in either gradient is a failure too
        if bad.any():
            excess = np.where(np.isfinite(err), err - bound, np.inf)
            worst = np.unravel_index(int(np.argmax(np.where(bad, excess, -np.inf))), t.shape)
            a, n = analytic[worst], numeric[worst]
            rel = abs(a - n) / max(abs(n), 1e-12)
            raise GradcheckError(
                f"gradcheck failed for {names[i]} (shape {t.shape}) at index "
                f"{tuple(map(int, worst))}: "
                f"analytic {a:.8g}, numeric {n:.8g}, relative error {rel:.3g} "
                f"(atol={atol}, rtol={rtol})")
    return True
