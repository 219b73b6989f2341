"""The one place that chooses which implementation of an op runs: reference, fast or cuda.

Every op (`F.layer_norm`, `F.attention`, ..., and Adam's update) has up to three
implementations, each an autograd `Function` class (for "adam" and "grad_norm": a function):

    "reference"  minigpt/ops/   the textbook version: plain array code, the math on one screen.
                                Takes NumPy and CuPy arrays. Every op has one.
    "fast"       minigpt/fast/  the tuned CPU version (threads, BLAS tricks, in-place buffers),
                                tested equal to the reference. Takes NumPy arrays only.
    "cuda"       minigpt/cuda/  hand-written CUDA kernels. Takes CuPy arrays only.

A `supports(*arrays, **options) -> bool` given at registration narrows an implementation
further (the kernels: float32, some head sizes, no attention dropout); an implementation that
does not support a call is skipped for it.

The mode says which implementations may run, in order of preference:

    "auto"       (the default) the fastest available: a supporting "cuda" implementation,
                 else "fast" on NumPy arrays, else "reference"
    "fast"       "fast" on NumPy arrays, else "reference" (never the kernels)
    "reference"  "reference" everywhere (what a student reads; slow)

API:
    register(op, impl, function_class, supports=None)   called by the ops/fast/cuda modules
    use(mode)                 minigpt.use("reference"): set the mode; also a context manager
                              (`with minigpt.use("reference"): ...` restores the mode after)
    current_mode()            the mode now in force
    implementations()         {op: implementation the current mode picks on NumPy arrays}
    choose(op, *arrays, **options)  the implementation for these arrays (what wrappers call)
    apply(op, *inputs, **options)   choose(...) on the inputs' arrays, then `.apply(*inputs,
                                    **options)`: the last line of every public wrapper
The mode is the switch `minigpt.config.ops` (the global switches live in
minigpt/settings.py); MINIGPT_OPS (auto, fast or reference) sets it at import (another value: an
OpsModeWarning, and "auto").
"""
from __future__ import annotations

import sys

from .autograd import as_array
from .settings import MODES, OpsModeWarning, config

__all__ = ["MODES", "IMPLS", "OpsModeWarning", "register", "use", "current_mode", "implementations", "choose",
           "apply"]

IMPLS = ("cuda", "fast", "reference")  # in order of speed
_PREFERENCE = {"auto": ("cuda", "fast", "reference"), "fast": ("fast", "reference"),
               "reference": ("reference",)}

_REGISTRY: dict[str, dict[str, tuple[object, object]]] = {}  # op -> impl -> (class, supports)


def register(op: str, impl: str, function_class, supports=None) -> None:
    """Make `function_class` the `impl` ("reference", "fast" or "cuda") implementation of `op`.

    supports: optional `supports(*arrays, **options) -> bool`, called with the op's input
    arrays (not Tensors) and options; False means "not these inputs" and the next
    implementation in the mode's order is tried. Registering again replaces the entry.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown implementation {impl!r}: expected one of {', '.join(IMPLS)}")
    _REGISTRY.setdefault(op, {})[impl] = (function_class, supports)


def unregister(op: str, impl: str) -> None:
    """Remove an implementation (tests; a backend that turns out unusable)."""
    _REGISTRY.get(op, {}).pop(impl, None)


class use:
    """Set the mode: `minigpt.use("reference")`, or for one block only:

        with minigpt.use("fast"):
            loss.backward()          # the mode before the block is back afterwards

    (the switch config.ops; `minigpt.using(ops=...)` does the same for a block)
    """

    def __init__(self, mode: str):
        self.previous = config.ops
        config.ops = mode          # checked by config: one of MODES
        self.mode = mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        config.ops = self.previous

    def __repr__(self):
        return f"minigpt.use({self.mode!r})"


def current_mode() -> str:
    return config.ops


def _is_cupy(a) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(a, cupy.ndarray)


def _library_fits(impl: str, on_gpu: bool) -> bool:
    """"fast" takes NumPy arrays only, "cuda" CuPy arrays only, "reference" both."""
    if impl == "reference":
        return True
    return on_gpu if impl == "cuda" else not on_gpu


def choose(op: str, *arrays, **options):
    """The implementation of `op` the current mode picks for these input arrays and options."""
    impls = _REGISTRY.get(op)
    if not impls:
        raise KeyError(f"no implementation of op {op!r} is registered")
    on_gpu = any(_is_cupy(a) for a in arrays)   # looked at once per call, not per implementation
    for impl in _PREFERENCE[config.ops]:
        entry = impls.get(impl)
        if entry is None or not _library_fits(impl, on_gpu):
            continue
        function_class, supports = entry
        if supports is None or supports(*arrays, **options):
            return function_class
    raise KeyError(f"no implementation of op {op!r} takes these inputs in mode {config.ops!r}")


def apply(op: str, *inputs, **options):
    """choose() on the inputs' arrays, then function_class.apply(*inputs, **options)."""
    arrays = [as_array(x) for x in inputs]  # Tensor -> its array
    return choose(op, *arrays, **options).apply(*inputs, **options)


def implementations() -> dict:
    """{op: "fast" | "reference"}: what the current mode runs on NumPy arrays (inputs that an
    implementation's `supports` refuses fall back to the next one)."""
    picked = {}
    for op in sorted(_REGISTRY):
        for impl in _PREFERENCE[config.ops]:
            if impl in _REGISTRY[op] and impl != "cuda":
                picked[op] = impl
                break
    return picked


def registered() -> dict:
    """{op: {impl: function_class}} of everything registered (for docs and tests)."""
    return {op: {impl: entry[0] for impl, entry in impls.items()}
            for op, impls in sorted(_REGISTRY.items())}

