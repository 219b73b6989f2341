"""Writing files so that a crash never leaves half of one: a temporary file, then a rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "fsync_directory"]


def atomic_write_text(path, text: str) -> None:
    """Write `text` (UTF-8, "\\n" line ends) to `path` through a temporary file beside it and
    a rename: a reader (or a crash) sees the old file or the new one, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
