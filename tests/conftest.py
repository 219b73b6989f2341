"""Shared helpers for the test suite.

- `requires_torch`: a skip marker for the PyTorch parity tests (torch is an optional test
  dependency; where it is not importable those tests skip and say why).
- `torch` fixture: the torch module, or a skip when it is absent.
- `hypothesis` settings profile "minigpt": few examples and no deadline, so property tests
  that run gradient checks keep the whole suite fast on a 2-core machine.
- `tensor64`, `tensor32`: random Tensors with a given shape from a seeded NumPy generator.
- `sigint_default`: preexec_fn for a child process a test sends Ctrl-C (SIGINT).
"""
from __future__ import annotations

import signal

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minigpt import Tensor

try:
    import torch as _torch
except ImportError as e:  # optional dependency: parity tests skip
    _torch = None
    _TORCH_REASON = f"PyTorch is not installed ({e}); parity tests need torch==2.13.0"
else:
    _TORCH_REASON = ""

HAVE_TORCH = _torch is not None
requires_torch = pytest.mark.skipif(not HAVE_TORCH, reason=_TORCH_REASON or "torch present")

# Gradient checks run the forward pass twice per input element: keep examples few and small.
settings.register_profile("minigpt", max_examples=12, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("minigpt")


@pytest.fixture
def torch():
    """The torch module (float64 parity checks), or skip the test with the reason."""
    if _torch is None:
        pytest.skip(_TORCH_REASON)
    return _torch


def tensor64(rng: np.random.Generator, *shape, requires_grad: bool = True, scale: float = 1.0):
    """A float64 Tensor of N(0, scale^2) values (what gradcheck wants)."""
    return Tensor(rng.standard_normal(shape) * scale, requires_grad=requires_grad)


def tensor32(rng: np.random.Generator, *shape, requires_grad: bool = True):
    """A float32 Tensor of N(0, 1) values (what training uses)."""
    return Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=requires_grad)


def sigint_default() -> None:
    """preexec_fn for a child that a test sends SIGINT, so it meets SIGINT as from a terminal: a
    test runner started in the background (`cmd &` in a script, nohup) inherits SIGINT ignored,
    and so would the child (Python then installs no handler, and the Ctrl-C does nothing)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
