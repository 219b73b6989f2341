"""`.lock`: one writer per run folder.

The lock is a small JSON file {"pid", "host", "started", "process_start", "command"} created
atomically (a hard link of a finished temporary file, so it never appears half written). A
second writer is refused with a message naming the holder; a lock whose process is gone (a
kill, a crash, a reboot: the PID is not running, or runs with another start time, so a reused
PID is not mistaken for the holder) is stale and taken over with a note. A lock written on
another host is respected (its processes cannot be seen from here); the message says which
file to delete if that process is gone.

`.lock` is read without following a link, and only if it is a regular file of sane size: a
link, a FIFO or a huge file there is a RunFolderError naming it, never read through.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
from pathlib import Path

from .errors import RunFolderError

__all__ = ["RunLock", "LOCK_FILE", "read_small_file"]

LOCK_FILE = ".lock"
_MAX_LOCK_BYTES = 64 * 1024


def read_small_file(path: Path, limit: int) -> bytes | None:
    """The bytes of `path`, read without following a link; None if it does not exist. A link,
    something that is not a regular file, or a file above `limit` bytes is a RunFolderError."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            raise RunFolderError(f"{path} is a symbolic link; minigpt never reads or writes a "
                                 "run folder's own files through a link: delete it") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise RunFolderError(f"{path} is not a regular file; delete it")
        if info.st_size > limit:
            raise RunFolderError(f"{path} is {info.st_size:,} bytes, not a minigpt file "
                                 f"(at most {limit:,}); delete it")
        return f.read(limit + 1)


def _process_start(pid: int):
    """The kernel's start time of process `pid` (Linux), to tell a reused PID apart; None
    where /proc is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = fields[fields.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[19])   # a zombie has finished running


def is_running(pid: int, process_start=None) -> bool:
    """Whether process `pid` runs (and, if `process_start` is given, is the same process)."""
    if not 0 < pid < 2 ** 31:
        return False  # 0 and negative numbers name process groups, not a process
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
    exists (a link there included): a hard link (atomic: the lock appears complete), or where
    the file system has no hard links, an exclusive create and a write."""
    try:
        os.link(finished, path)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(finished.read_bytes())


def _write_new(path: Path, data: bytes) -> None:
    """Write a new file at `path` (replacing one left there, never writing through a link)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags, 0o666), "wb") as f:
        f.write(data)


class RunLock:
    """`.lock` in a run folder (see the module docstring)."""

    def __init__(self, directory, command: str = "train", log=print):
        self.path = Path(directory) / LOCK_FILE
        self.command, self.log = command, log
        self.held = False

    def _read(self, path=None):
        data = read_small_file(Path(path or self.path), _MAX_LOCK_BYTES)
        if data is None:
            return None
        try:
            info = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return None
        return info if isinstance(info, dict) and type(info.get("pid")) is int else None

    def _live(self, info) -> bool:
        if info is None:
            return False      # unreadable: written by hand or damaged; no live writer made it
        if info.get("host") != socket.gethostname():
            return True       # cannot look at another machine's processes: assume it runs
        return is_running(info["pid"], info.get("process_start"))

    def _refuse(self, info):
        where = str(info.get("host", "?"))[:100]
        hint = ("wait for it to finish, or stop it" if where == socket.gethostname() else
                f"if that process is gone, delete {self.path}")
        return RunFolderError(
            f"{self.path.parent} is in use by process {info['pid']} on {where} "
            f"({str(info.get('command', 'a run'))[:40]}, started "
            f"{str(info.get('started', '?'))[:40]}); {hint}. "
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
        _write_new(tmp, (json.dumps(me) + "\n").encode("utf-8"))
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
                who = (f"process {moved['pid']} on {str(moved.get('host'))[:100]} (started "
                       f"{str(moved.get('started'))[:40]})" if moved else "an unreadable lock file")
                self.log(f"note: {self.path} was left by {who}, which is no longer running; "
                         "taking it over")
            raise RunFolderError(f"could not take the lock {self.path}; try again")
        finally:
            tmp.unlink(missing_ok=True)

    def remove_dead_temporaries(self) -> None:
        """Delete `.lock.<pid>.tmp` / `.lock.stale.<pid>` files of processes killed while
        taking the lock (a live process's own are left to it; a link is removed, not
        followed)."""
        for f in self.path.parent.glob(f"{LOCK_FILE}.*"):
            pid = next((int(p) for p in f.name.split(".") if p.isdigit()), None)
            if pid is not None and pid != os.getpid() and not is_running(pid, None):
                if f.is_dir() and not f.is_symlink():
                    continue    # not ours: a folder is never a lock temporary
                f.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            try:
                info = self._read()
            except RunFolderError:
                info = None     # replaced by something else while we ran: not ours to delete
            if info is not None and info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False
