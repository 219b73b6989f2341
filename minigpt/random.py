"""minigpt's global random generators (dropout, initialisation, sampling defaults).

`minigpt.manual_seed(seed)` makes a run reproducible; `get_state()` / `set_state()` let a
checkpoint resume the exact random stream.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

_SEED = 0
_RNG = {"numpy": np.random.default_rng(_SEED)}


def manual_seed(seed: int) -> None:
    """Reset every generator minigpt owns (NumPy, and CuPy's when in use) from `seed`."""
    global _SEED
    _SEED = int(seed)
    _RNG.clear()
    _RNG["numpy"] = np.random.default_rng(_SEED)


def get_rng(xp=np):
    """The generator for arrays of module `xp` (numpy or cupy)."""
    name = xp.__name__
    if name not in _RNG:  # CuPy's generator is created on first use, from the same seed
        _RNG[name] = xp.random.default_rng(_SEED)
    return _RNG[name]


def get_state() -> dict:
    """JSON-serialisable state of the NumPy generator (what CPU resume needs)."""
    return {"seed": _SEED, "numpy": _RNG["numpy"].bit_generator.state}


def set_state(state: dict) -> None:
    global _SEED
    _SEED = int(state["seed"])
    gen = np.random.default_rng()
    gen.bit_generator.state = state["numpy"]
    _RNG.clear()
    _RNG["numpy"] = gen


@contextmanager
def using_generator(gen, xp=np):
    """Within the block, get_rng(xp) returns `gen` (an object with the Generator methods the
    ops call, e.g. minigpt.distributed's global-row dropout draws); the previous one after."""
    name = xp.__name__
    previous = get_rng(xp)
    _RNG[name] = gen
    try:
        yield gen
    finally:
        _RNG[name] = previous
