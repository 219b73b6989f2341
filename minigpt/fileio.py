"""Writing files so that a crash never leaves half of one, with the modes the user's umask gives.

    atomic_write_text(path, text)            a temporary file beside `path`, fsynced, then a
    atomic_write_bytes(path, data)           rename: a reader sees the old file or the new one
    make_temporary_directory(parent, prefix) a new, empty `parent/PREFIXxxxxxxxxxxx`
    create_temporary_file(parent, prefix, suffix)   a new file, opened for writing
    fsync_directory(path)                    make a folder's renames durable

New files get mode 0o666 and new folders 0o777, less the user's umask, as every other program's
do (umask 022: rw-r--r-- and rwxr-xr-x, so a group can read a shared run; umask 077: private).
The standard library's tempfile.mkstemp / mkdtemp create 0600 / 0700 whatever the umask, which
is why the temporaries here are made by hand.

A rename onto a path that is a symbolic link replaces the link itself: nothing is ever written
through a link.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["atomic_write_text", "atomic_write_bytes", "make_temporary_directory", "create_temporary_file",
           "fsync_directory"]

_ATTEMPTS = 100


def make_temporary_directory(parent, prefix: str) -> Path:
    """Create a new folder `parent/PREFIX<random>` (mode 0o777 less the umask) and return it."""
    for _ in range(_ATTEMPTS):
        path = Path(parent) / f"{prefix}{secrets.token_hex(6)}"
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary folder {prefix}* in {parent}")


def create_temporary_file(parent, prefix: str, suffix: str = ""):
    """Create a new file `parent/PREFIX<random>SUFFIX` (mode 0o666 less the umask, opened
    exclusively, never through a link); returns (file descriptor, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(_ATTEMPTS):
        path = Path(parent) / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file {prefix}*{suffix} in {parent}")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file beside it and a rename: a reader (or a
    crash) sees the old file or the new one, never a mix. A link at `path` is replaced by the
    file, never written through."""
    path = Path(path)
    fd, tmp = create_temporary_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path, text: str) -> None:
    """atomic_write_bytes of `text` in UTF-8 with "\n" line ends."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_directory(path) -> None:
    """Make the renames and new entries of directory `path` durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
