"""The run loop shared by pretraining and fine-tuning."""
from __future__ import annotations

import signal
import threading

__all__ = ["TrainingError", "StopOnCtrlC"]


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss, bad arguments, existing output directory...)."""


class StopOnCtrlC:
    """Turn the first Ctrl-C into a request to stop at the next step boundary.

    Stopping inside opt.step() would leave half-updated weights; the loop checks `requested`
    between steps instead, then saves a consistent checkpoint. A second Ctrl-C aborts at once.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
