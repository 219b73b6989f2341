"""minigpt's global switches in one place, `minigpt.config`, and one way to set them for a block.

    config.grad_enabled  record the graph for backward? (False inside `no_grad()`)
    config.ops           which implementation of an op may run: "auto" (CUDA kernels on CuPy,
                         else the tuned CPU ops), "fast" or "reference" (the textbook ops of
                         minigpt/ops/); set at import from MINIGPT_OPS; `minigpt.use(mode)`
    config.backend       the array library new parameters are made with: "numpy" or "cupy"
                         (MINIGPT_BACKEND at import; `minigpt.set_backend(name)`, which also
                         checks that CuPy and a GPU are there)
    config.num_threads   threads for the fast ops' elementwise blocks; None: MINIGPT_NUM_THREADS,
                         else what BLAS is told (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS), else
                         every core
    config.observers     objects shown every op as it runs (minigpt.trace); empty normally

One way to change any of them for a block, put back afterwards even on an exception:

    with minigpt.using(ops="reference", grad_enabled=False):
        loss = model.loss(x, y)

`no_grad()` and `minigpt.use(mode)` are this for one switch. The random streams are not
switches but state (the generators dropout and initialisation draw from): minigpt.random keeps
them, `manual_seed` resets them and a checkpoint saves them (`get_state` / `set_state`).
"""
from __future__ import annotations

import contextlib
import numbers
import os
import warnings

__all__ = ["config", "using", "MODES", "BACKENDS", "OpsModeWarning"]

MODES = ("auto", "fast", "reference")
BACKENDS = ("numpy", "cupy")


class OpsModeWarning(RuntimeWarning):
    """MINIGPT_OPS names no mode: minigpt warns and runs in mode "auto"."""


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_choice(what, choices):
    def check(name, value):
        if value not in choices:
            raise ValueError(f"unknown {what} {value!r}: expected one of {', '.join(choices)}")
    return check


def _check_threads(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                              or value < 1):
        raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")


def _check_observers(name, value):
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of observers, got {type(value).__name__}")


# every switch: its rule (each one written here, once)
_RULES = {"grad_enabled": _check_bool, "ops": _check_choice("ops mode", MODES),
          "backend": _check_choice("backend", BACKENDS), "num_threads": _check_threads,
          "observers": _check_observers}


class Config:
    """The switches (see the module docstring). Setting one checks its value; reading one is a
    plain attribute read (autograd reads grad_enabled and observers once per op)."""

    def __init__(self):
        self.grad_enabled = True
        self.ops = "auto"
        self.backend = "numpy"
        self.num_threads = None
        self.observers = []

    def __setattr__(self, name, value):
        if name not in _RULES:
            raise AttributeError(f"minigpt has no switch {name!r}; the switches are "
                                 f"{', '.join(_RULES)}")
        _RULES[name](name, value)
        object.__setattr__(self, name, value)

    def __repr__(self):
        return "Config(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in _RULES) + ")"


config = Config()


@contextlib.contextmanager
def using(**switches):
    """Set some switches for the block, then put back what they were (also on an exception)."""
    previous = {name: getattr(config, name) for name in switches if name in _RULES}
    try:
        for name, value in switches.items():
            setattr(config, name, value)
        yield config
    finally:
        for name, value in previous.items():
            setattr(config, name, value)


def _ops_from_environment() -> str:
    """MINIGPT_OPS, or "auto". A typo must not stop `import minigpt` (as MINIGPT_BACKEND's
    does not): it is a warning naming the allowed values, and the default mode is used."""
    value = os.environ.get("MINIGPT_OPS", "auto").strip().lower() or "auto"
    if value not in MODES:
        warnings.warn(f"MINIGPT_OPS={os.environ['MINIGPT_OPS']!r} is not a mode (allowed: "
                      f"{', '.join(MODES)}); using auto", OpsModeWarning, stacklevel=3)
        return "auto"
    return value


config.ops = _ops_from_environment()
