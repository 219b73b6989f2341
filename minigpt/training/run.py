"""The pieces a training loop calls: one `Run`, and the NaN guard `check_finite`.

pretrain.py and finetune.py each write their own plain loop,

    with Run(folder) as run:
        run.start_progress(total, start, "pretrain")
        for step in range(start + 1, total + 1):
            if run.stop_requested:                        # Ctrl-C: stop at a step boundary
                break
            loss = model.loss(x, y)
            value = check_finite(loss, step, hint)        # NaN/inf: stop before the update
            ...backward, optimizer step...
            run.record({"step": step, "loss": value, ...}, postfix)   # metrics.jsonl, bar
        save_checkpoint(...)
        run.checkpoint_saved()

and call these; nothing here calls back into the loop.

    Run           one run: its folder (locked while the run writes, see minigpt.runfolder),
                  Ctrl-C, the progress bar, metrics.jsonl, and the note that a checkpoint is
                  saved (the moment an old run that --force replaced is moved out)
    StopOnCtrlC   the first Ctrl-C becomes a request to stop between steps; a second aborts
    check_finite  a NaN or infinite loss is a TrainingError naming the step
"""
from __future__ import annotations

import json
import math
import signal
import threading

from ..runfolder import METRICS_FILE, TrainingError, open_metrics

__all__ = ["Run", "StopOnCtrlC", "check_finite"]


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
            self._previous = None
        return False


def check_finite(loss, step: int, hint: str = "", what: str = "step") -> float:
    """The loss as a float; a TrainingError if it is NaN or infinite, raised before the
    backward pass and the update that would spoil the weights (the last checkpoint stays the
    last good one). `what` names the count in the message: "step 6", "update 6"."""
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingError(f"loss became {value} at {what} {step}; stopping. {hint}".rstrip())
    return value


class Run:
    """One training run: its folder (a minigpt.runfolder.RunDirectory, or None for library use
    without files), Ctrl-C, the progress bar and metrics.jsonl. A context manager around the
    loop and the saves: the folder is taken (locked) on entering and released on leaving; an
    exception before the first checkpoint leaves the folder as it was found, except for the
    steps already recorded in metrics.jsonl (RunDirectory.close)."""

    def __init__(self, folder, *, progress: bool = True, append_metrics: bool = False):
        self.folder = folder
        self.show_progress, self.append_metrics = progress, append_metrics
        self._ctrl_c = StopOnCtrlC()
        self._bar = None
        self._metrics = None

    def __enter__(self):
        if self.folder is not None:
            self.folder.open()
        self._ctrl_c.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._ctrl_c.__exit__()
        self.end_progress()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self.folder is not None:
            self.folder.close(failed=exc_type is not None)
        return False

    @property
    def stop_requested(self) -> bool:
        """True once Ctrl-C was pressed: the loop stops before its next step."""
        return self._ctrl_c.requested

    def start_progress(self, total: int, initial: int = 0, desc: str = "train") -> None:
        """A progress bar over `total` steps, `initial` of them already done (a resumed run)."""
        if self.show_progress:
            from tqdm import tqdm
            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)

    def end_progress(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def record(self, row: dict, postfix: dict | None = None) -> None:
        """Append one metrics row (flushed, so a kill loses at most the line being written)
        and advance the progress bar, showing `postfix`. metrics.jsonl is opened at the first
        row (appending for a resumed run, else new)."""
        if self.folder is not None:
            if self._metrics is None:
                self._metrics = open_metrics(self.folder.path / METRICS_FILE,
                                             append=self.append_metrics)
            self._metrics.write(json.dumps(row) + "\n")
            self._metrics.flush()
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix)
            self._bar.update(1)

    def checkpoint_saved(self) -> None:
        """Say that the run has written a checkpoint: from the first one on, an old run that
        --force moved aside is kept beside the folder, no longer put back (RunDirectory.commit)."""
        if self.folder is not None:
            self.folder.commit()
