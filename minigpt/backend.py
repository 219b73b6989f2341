"""Array backends: NumPy (default, CPU) or CuPy (GPU).

This is the only module that imports CuPy, and it does so lazily: a CPU-only user never
needs CuPy installed. Every op body asks `xp = get_array_module(x)` and then writes
`xp.exp(...)`, `xp.matmul(...)`, so one source serves both libraries.

Choose the backend for *new* parameters and tensors with `minigpt.set_backend("cupy")` or the
environment variable `MINIGPT_BACKEND=cupy` (a value that cannot be used, a typo or `cupy`
without CuPy or a GPU, is a BackendWarning at import, and NumPy is used); move existing ones
with `model.to("cuda")` or `tensor.to("cpu")`. The backend is the switch config.backend
(minigpt/settings.py).
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from .settings import config


class BackendError(RuntimeError):
    """CuPy or a GPU was asked for but is not usable here."""


def _cupy_module():
    """Import CuPy and check that a GPU is usable; one clear error otherwise."""
    try:
        import cupy  # noqa: F401  (the only CuPy import in minigpt)
    except ImportError as e:
        raise BackendError(
            "the CuPy backend needs the package 'cupy' (pip install 'minigpt-gpt1[gpu]' or a "
            f"cupy-cudaXXx wheel matching your CUDA): {e}") from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing, or no device
        raise BackendError(f"CuPy is installed but no usable NVIDIA GPU was found: {e}") from None
    if n == 0:
        raise BackendError("CuPy is installed but no NVIDIA GPU was found")
    return cupy


def cupy_module():
    """The cupy module, imported on first use; BackendError when CuPy or a GPU is missing.
    (For code that needs CuPy itself, e.g. minigpt.cuda's kernel loader.)"""
    return _cupy_module()


def get_array_module(*arrays):
    """numpy or cupy, whichever owns the given arrays (numpy when none is a CuPy array)."""
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return np


def is_cupy_array(a) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(a, cupy.ndarray)


def set_backend(name: str) -> None:
    """Select the array library for new parameters: "numpy" (CPU) or "cupy" (GPU): the switch
    config.backend, after checking that CuPy and a GPU are usable."""
    if name == "cupy":
        _cupy_module()
    config.backend = name      # checked by config: "numpy" or "cupy"


def get_backend() -> str:
    return config.backend


def xp_default():
    """The array module new tensors are created with."""
    return _cupy_module() if config.backend == "cupy" else np


def device_of(a) -> str:
    return "cuda" if is_cupy_array(a) else "cpu"


def to_device(a, device: str):
    """Copy an array to "cpu" (NumPy) or "cuda" (CuPy); a no-op when it is already there."""
    if device in ("cpu", "numpy"):
        return a.get() if is_cupy_array(a) else a
    if device in ("cuda", "gpu", "cupy"):
        cupy = _cupy_module()
        return a if isinstance(a, cupy.ndarray) else cupy.asarray(a)
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def to_numpy(a) -> np.ndarray:
    return to_device(a, "cpu")


class BackendWarning(RuntimeWarning):
    """MINIGPT_BACKEND asked for something unusable; minigpt runs on NumPy instead."""


def _backend_from_environment() -> None:
    """Apply MINIGPT_BACKEND at import. A bad value never makes `import minigpt` fail: it is
    a warning naming the variable and the allowed values, and minigpt stays on NumPy (CPU)."""
    raw = os.environ.get("MINIGPT_BACKEND", "")
    name = raw.strip().lower()
    if not name:
        return
    if name not in ("numpy", "cupy"):
        warnings.warn(f"MINIGPT_BACKEND={raw!r} is not a backend (allowed: 'numpy', 'cupy'); "
                      "using numpy", BackendWarning, stacklevel=2)
        return
    try:
        set_backend(name)
    except BackendError as e:
        warnings.warn(f"MINIGPT_BACKEND={raw!r}: {e}; using numpy (CPU) instead",
                      BackendWarning, stacklevel=2)


_backend_from_environment()
