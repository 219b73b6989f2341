"""The run loop shared by pretraining and fine-tuning, and the output folder it writes to.

    RunDirectory  the output folder (`--out`): checked before anything is written, locked while
                  a run writes to it, an old run replaced (--force) only once the new one has
                  its first checkpoint and then kept beside it, and nothing left behind by a
                  run that never got one
    Run           one run: the folder, Ctrl-C, the progress bar, metrics.jsonl, checkpoints
    run_loop      the update loop: loss, NaN/inf stop, backward, optimizer step, metrics row

A run folder holds `.lock` while a process writes to it: JSON with the holder's PID, host, and
start time. A second writer is refused with a message naming the holder; a lock whose process
is gone (a kill, a crash, a reboot) is stale and taken over with a note.

`--force` on an existing run moves the old run's files into `.previous-run/` inside the folder,
moves them back if the new run fails (or is killed) before its first checkpoint, and once it
has one, keeps them beside the folder as `NAME.replaced-YYYYmmdd-HHMMSS/`: a mistaken --force
loses nothing (delete that folder by hand). The next start finishes whatever a kill interrupted.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..fileio import atomic_write_text, fsync_directory
from .checkpoint import clean_leftovers, find_checkpoint

__all__ = ["TrainingError", "StopOnCtrlC", "RunDirectory", "RunLock", "Run", "run_loop",
           "read_metrics", "write_metrics", "LOCK_FILE", "PREVIOUS_RUN", "METRICS_FILE"]

LOCK_FILE = ".lock"
PREVIOUS_RUN = ".previous-run"
METRICS_FILE = "metrics.jsonl"
# what a start writes before its first checkpoint: a folder holding only these is an abandoned
# start (a run killed before it saved anything), not a run to protect
_START_ARTIFACTS = (METRICS_FILE, LOCK_FILE, "loss.png")
# markers inside .previous-run: what a killed process was doing with it
_MOVING, _DELETING, _RETURNING = ".moving", ".deleting-new", ".returning"
_MARKERS = (_MOVING, _DELETING, _RETURNING)


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss, bad arguments, existing output directory...)."""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- Ctrl-C

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


# ----------------------------------------------------------------------------- metrics.jsonl

def read_metrics(path, warn=_warn) -> list:
    """The rows of a metrics.jsonl. A line that is not a JSON object with a step and a loss (the
    torn last line of a killed run) is skipped with a warning naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int) or \
                not isinstance(row.get("loss"), (int, float)):
            warn(f"{path}:{n}: skipping an incomplete or corrupt line (a run killed while "
                 f"writing it?): {line[:60]!r}")
            continue
        rows.append(row)
    return rows


def write_metrics(path, rows) -> None:
    """Replace a metrics.jsonl with `rows`, atomically."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- the lock

def _process_start(pid: int):
    """The kernel's start time of process `pid` (Linux), to tell a reused PID apart; None
    where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[19])   # a zombie has finished running


def _is_running(pid: int, process_start) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # another user's process
    except OSError:
        return False
    now = _process_start(pid)
    if now is None and Path(f"/proc/{pid}").exists():
        return False  # a zombie
    return process_start is None or now is None or now == process_start


def _create_exclusive(finished: Path, path: Path) -> None:
    """Create `path` with the content of `finished`, failing with FileExistsError if it
    exists: a hard link (atomic: the lock appears complete), or where the file system has no
    hard links, an exclusive create and a write."""
    try:
        os.link(finished, path)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(finished.read_bytes())


class RunLock:
    """`.lock` in a run folder, created atomically (a hard link of a finished file) and holding
    {"pid", "host", "started", "process_start", "command"} of the process that writes there."""

    def __init__(self, directory, command: str = "train", log=print):
        self.path = Path(directory) / LOCK_FILE
        self.command, self.log = command, log
        self.held = False

    def _read(self, path=None):
        try:
            info = json.loads(Path(path or self.path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None

    def _live(self, info) -> bool:
        if info is None:
            return False      # unreadable: written by hand or damaged; no live writer made it
        if info.get("host") != socket.gethostname():
            return True       # cannot look at another machine's processes: assume it runs
        return _is_running(info["pid"], info.get("process_start"))

    def _refuse(self, info):
        where = info.get("host", "?")
        hint = ("wait for it to finish, or stop it" if where == socket.gethostname() else
                f"if that process is gone, delete {self.path}")
        return TrainingError(
            f"{self.path.parent} is in use by process {info['pid']} on {where} "
            f"({info.get('command', 'a run')}, started {info.get('started', '?')}); {hint}. "
            "Two writers would mix two runs in one folder.")

    def check(self) -> None:
        """Refuse early (reading only) when a live process holds the lock."""
        holder = self._read()
        if holder is not None and self._live(holder):
            raise self._refuse(holder)

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "process_start": _process_start(os.getpid()), "command": self.command}
        tmp = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(me) + "\n", encoding="utf-8")
        try:
            for _ in range(5):
                try:
                    _create_exclusive(tmp, self.path)
                    self.held = True
                    return
                except FileExistsError:
                    pass
                holder = self._read()
                if self._live(holder):
                    raise self._refuse(holder)
                # stale: move it out of the way under a unique name, then make sure what we
                # moved really was the stale lock (not one a racing process just created)
                grave = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
                try:
                    os.replace(self.path, grave)
                except FileNotFoundError:
                    continue
                moved = self._read(grave)
                if self._live(moved):
                    try:
                        os.link(grave, self.path)
                    except FileExistsError:
                        pass
                    grave.unlink(missing_ok=True)
                    raise self._refuse(moved)
                grave.unlink(missing_ok=True)
                who = (f"process {moved['pid']} on {moved.get('host')} (started "
                       f"{moved.get('started')})" if moved else "an unreadable lock file")
                self.log(f"note: {self.path} was left by {who}, which is no longer running; "
                         "taking it over")
            raise TrainingError(f"could not take the lock {self.path}; try again")
        finally:
            tmp.unlink(missing_ok=True)

    def remove_dead_temporaries(self) -> None:
        """Delete `.lock.<pid>.tmp` / `.lock.stale.<pid>` files of processes killed while
        taking the lock (a live process's own are left to it)."""
        for f in self.path.parent.glob(f"{LOCK_FILE}.*"):
            pid = next((int(p) for p in f.name.split(".") if p.isdigit()), None)
            if pid is not None and pid != os.getpid() and not _is_running(pid, None):
                f.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            info = self._read()
            if info is not None and info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False


# ----------------------------------------------------------------------------- the run folder

def _writable(directory: Path) -> bool:
    """Writable by us, and not marked read-only (all write bits off), which is honoured even
    for root, who could write anyway."""
    return os.access(directory, os.W_OK | os.X_OK) and bool(directory.stat().st_mode & 0o222)


class RunDirectory:
    """The output folder of one run (see the module docstring)."""

    def __init__(self, path, *, force: bool = False, resume: bool = False,
                 command: str = "train", log=print):
        self.path = Path(path)
        self.force, self.resume, self.command, self.log = force, resume, command, log
        self.lock = RunLock(self.path, command, log)
        self._created = False
        self.committed = False

    # -- before anything is written ------------------------------------------------------
    def _entries(self) -> list:
        return sorted(p for p in self.path.iterdir()
                      if p.name != LOCK_FILE and not p.name.startswith((f"{LOCK_FILE}.",
                                                                         PREVIOUS_RUN)))

    def _abandoned_start(self) -> bool:
        """Only what a start writes before its first checkpoint, and no checkpoint."""
        if find_checkpoint(self.path) is not None or (self.path / PREVIOUS_RUN).exists():
            return False
        return all(p.name in _START_ARTIFACTS or p.name.startswith((".ckpt.tmp", ".ckpt.trash"))
                   for p in self._entries())

    def check(self) -> None:
        """Refuse a bad --out before anything is written (and before any slow work)."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise TrainingError(f"--out {p} is an existing file, not a directory; choose "
                                "another --out")
        existing = p
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise TrainingError(f"--out {p}: {existing} is a file, not a directory")
        if not _writable(existing):
            raise TrainingError(f"--out {p}: {existing} is read-only (no permission to write "
                                "there); choose another --out")
        if p.is_dir():
            self.lock.check()
        if self.resume:
            if not p.is_dir():
                raise TrainingError(f"--resume: run directory {p} does not exist")
            return
        if p.is_dir() and not self.force and self._entries() and not self._abandoned_start():
            resume = " or --resume to continue it" if self.command == "pretrain" else ""
            raise TrainingError(
                f"output directory {p} already exists; pass --force to replace it (the old run "
                f"is then kept beside it as {p.name}.replaced-<date-time>/){resume}")

    # -- taking the folder -----------------------------------------------------------------
    def open(self) -> None:
        """Lock the folder, finish what a killed run left half done, and (--force) move the
        old run aside. Raises TrainingError without changing anything when another process
        holds the lock."""
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
        except OSError as e:
            self._remove_if_created()
            raise TrainingError(f"cannot write to --out {self.path}: "
                                f"{e.strerror or e}") from None
        except BaseException:
            self._remove_if_created()
            raise
        try:
            self.lock.remove_dead_temporaries()
            for unused in self.path.glob(f"{PREVIOUS_RUN}.tmp*"):  # never held a file
                shutil.rmtree(unused)
            for partial in self.path.glob(".*.tmp"):  # atomic_write_text's, of a killed writer
                if partial.is_file() and not partial.name.startswith(f"{LOCK_FILE}."):
                    partial.unlink()
            self._recover_previous_run()
            clean_leftovers(self.path, "ckpt", self.log)
            if not self.resume:
                entries = self._entries()
                if entries and self.force:
                    self._move_aside(entries)
                elif entries:  # an abandoned start (check() let it through)
                    self.log(f"note: {self.path} holds only an unfinished start (no "
                             "checkpoint); starting over")
                    for e in entries:
                        _remove(e)
        except OSError as e:
            self.lock.release()
            raise TrainingError(f"cannot write to --out {self.path}: {e.strerror or e}") from None
        except BaseException:
            self.lock.release()
            raise

    def _move_aside(self, entries) -> None:
        aside = self.path / PREVIOUS_RUN
        staging = Path(tempfile.mkdtemp(prefix=f"{PREVIOUS_RUN}.tmp", dir=self.path))
        (staging / _MOVING).write_bytes(b"")
        os.replace(staging, aside)     # .previous-run never exists without its marker
        for e in entries:
            os.replace(e, aside / e.name)
        (aside / _MOVING).unlink()
        fsync_directory(self.path)
        self.log(f"note: the old run in {self.path} is moved to {aside}; once the new run has "
                 f"written its first checkpoint it is kept as {self.path.name}.replaced-<date-time>/ "
                 "beside it, and it is put back if the new run stops before that")

    def _restore_previous_run(self) -> None:
        """Put the old run back, in phases a kill can interrupt and the next start resumes:
        delete the new run's files (marker .deleting-new), then move the old files back
        (marker .returning, or .moving if the move aside itself was interrupted)."""
        aside = self.path / PREVIOUS_RUN
        if not any((aside / m).exists() for m in _MARKERS):
            (aside / _DELETING).write_bytes(b"")
        if (aside / _DELETING).exists():
            for e in self._entries():      # only the new run's files: nothing is back yet
                _remove(e)
            os.replace(aside / _DELETING, aside / _RETURNING)
        for e in sorted(aside.iterdir()):
            if e.name not in _MARKERS:
                os.replace(e, self.path / e.name)
        shutil.rmtree(aside)
        fsync_directory(self.path)

    def _recover_previous_run(self) -> None:
        """A --force start was killed: keep the new run if it reached a checkpoint, else put
        the old run back."""
        aside = self.path / PREVIOUS_RUN
        if not aside.is_dir():
            return
        marked = any((aside / m).exists() for m in _MARKERS)
        if not marked and find_checkpoint(self.path) is not None:
            self._keep_replaced(aside)
        else:
            self._restore_previous_run()
            self.log(f"note: {self.path}: put back the old run that an interrupted --force "
                     "start had moved aside")

    # -- the end -------------------------------------------------------------------------
    def commit(self) -> None:
        """The new run has a checkpoint: the old run moved aside by --force can go."""
        if self.committed:
            return
        self.committed = True
        aside = self.path / PREVIOUS_RUN
        if aside.is_dir():
            self._keep_replaced(aside)

    def _keep_replaced(self, aside: Path) -> Path:
        """Move the old run that --force replaced out of the folder, to NAME.replaced-<date-time>/
        beside it (one atomic rename: a kill leaves it either inside, handled by the next start,
        or beside). Nothing the user saved is deleted; they remove it when they are sure."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        keep = self.path.with_name(f"{self.path.name}.replaced-{stamp}")
        n = 1
        while keep.exists():
            n += 1
            keep = self.path.with_name(f"{self.path.name}.replaced-{stamp}-{n}")
        os.replace(aside, keep)
        fsync_directory(self.path.parent)
        self.log(f"note: the run that --force replaced is kept in {keep}; delete it when you no "
                 "longer need it")
        return keep

    def close(self, failed: bool) -> None:
        """Release the folder. A new run that failed before its first checkpoint leaves the
        folder as it found it (the old run back in place with --force, else nothing)."""
        try:
            if failed and not self.committed and not self.resume:
                if (self.path / PREVIOUS_RUN).is_dir():
                    self._restore_previous_run()
                    self.log(f"the old run in {self.path} is back in place")
                else:
                    for e in self._entries():
                        _remove(e)
        finally:
            self.lock.release()
            if failed and not self.committed and not self.resume:
                self._remove_if_created()

    def _remove_if_created(self) -> None:
        if self._created:
            try:
                self.path.rmdir()   # only if empty
            except OSError:
                pass


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- one run

class Run:
    """One training run: its folder (or none, for library use without files), Ctrl-C, the
    progress bar and metrics.jsonl. Use as a context manager around the loop and the saves:

        with Run(folder) as run:
            run.start_progress(total, initial, "pretrain")
            status, step = run_loop(run, ...)
            run.checkpoint(lambda: save_checkpoint(...))

    The folder is locked on entering and released on leaving; an exception before the first
    checkpoint leaves the folder as it was found (RunDirectory.close).
    """

    def __init__(self, directory: RunDirectory | None, *, progress: bool = True,
                 append_metrics: bool = False):
        self.directory = directory
        self.show_progress, self.append_metrics = progress, append_metrics
        self.stop = StopOnCtrlC()
        self.bar = None
        self._metrics = None

    def __enter__(self):
        if self.directory is not None:
            self.directory.open()
        self.stop.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop.__exit__()
        self.end_progress()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self.directory is not None:
            self.directory.close(failed=exc_type is not None)
        return False

    def start_progress(self, total: int, initial: int = 0, desc: str = "train") -> None:
        if self.show_progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)

    def end_progress(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def record(self, row: dict, postfix: dict | None = None) -> None:
        """Append one metrics row (flushed, so a kill loses at most the line being written)
        and advance the progress bar. metrics.jsonl is opened at the first row (appending for
        a resumed run, else new)."""
        if self.directory is not None:
            if self._metrics is None:
                path = self.directory.path / METRICS_FILE
                self._metrics = path.open("a" if self.append_metrics else "w", encoding="utf-8")
            self._metrics.write(json.dumps(row) + "\n")
            self._metrics.flush()
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix)
            self.bar.update(1)

    def checkpoint(self, save):
        """Call `save()` (which writes a checkpoint); after the first one, an old run that
        --force moved aside is deleted."""
        result = save()
        if self.directory is not None:
            self.directory.commit()
        return result


def run_loop(run: Run, *, optimizer, batch_loss, start: int, total: int, on_row=None,
             after_step=None, postfix=None, what: str = "step", hint: str = ""):
    """The update loop of pretraining and fine-tuning; returns (status, step).

    batch_loss(step) -> (loss Tensor, extra metrics dict) for update step + 1
    on_row(step, row)   before the row is written (evaluation adds its numbers)
    after_step(step)    after the row is written (periodic checkpoints)
    postfix(row)        the progress bar's numbers
    A first Ctrl-C stops at the next step boundary ("interrupted"); a loss that is NaN or
    infinite stops before the update that would spoil the weights (TrainingError).
    """
    step = start
    while step < total:
        if run.stop.requested:
            return "interrupted", step
        loss, extra = batch_loss(step)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingError(f"loss became {value} at {what} {step + 1}; stopping. {hint}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        row = {"step": step, "loss": round(value, 6), **extra, "lr": optimizer.last_lr}
        if on_row is not None:
            on_row(step, row)
        run.record(row, postfix(row) if postfix else None)
        if after_step is not None:
            after_step(step)
    return "completed", step
