"""The errors of run folders and checkpoints, defined at the lowest layer that raises them.

    TrainingError    a run stopped or could not start; minigpt.training re-exports it and
                     raises it for its own reasons too (a non-finite loss, a corpus too short)
    RunFolderError   a TrainingError: --out cannot be used as asked (it exists and --force is
                     missing, another process holds it, it is the working directory, it holds
                     a symbolic link, the disk is full, ...)
    CheckpointError  a checkpoint directory is missing, partial or corrupt (a ValueError)
"""
from __future__ import annotations

__all__ = ["TrainingError", "RunFolderError", "CheckpointError"]


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss, bad arguments, existing output directory...)."""


class RunFolderError(TrainingError):
    """The run folder (--out) cannot be used as asked; the message names it and says what to do."""


class CheckpointError(ValueError):
    """A checkpoint directory is missing, partial or corrupt."""
