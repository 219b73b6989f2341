"""metrics.jsonl: one JSON object per line, appended and flushed line by line.

    open_metrics(path, append)   the file to append rows to (never opened through a link; a
                                 failed write, the disk full, is a RunFolderError)
    read_metrics(path)           the rows; a torn line (a run killed while writing it) is
                                 skipped with a warning naming the file and line
    write_metrics(path, rows)    replace the file atomically (a --resume keeps the rows up to
                                 its checkpoint)
    recorded_a_step(path)        whether the file holds at least one complete row: from then
                                 on a run folder keeps it, whatever stops the run
"""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

from ..fileio import atomic_write_text
from .errors import RunFolderError

__all__ = ["METRICS_FILE", "open_metrics", "MetricsWriter", "read_metrics", "write_metrics",
           "recorded_a_step"]

METRICS_FILE = "metrics.jsonl"


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _row(line: str):
    """The row a line holds, or None if it is not a JSON object with an int step and a loss."""
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(row, dict) or type(row.get("step")) is not int or \
            isinstance(row.get("loss"), bool) or not isinstance(row.get("loss"), (int, float)):
        return None
    return row


def read_metrics(path, warn=_warn) -> list:
    """The rows of a metrics.jsonl. A line that is not a JSON object with a step and a loss (the
    torn last line of a killed run) is skipped with a warning naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = _row(line)
            if row is None:
                warn(f"{path}:{n}: skipping an incomplete or corrupt line (a run killed while "
                     f"writing it?): {line[:60]!r}")
                continue
            rows.append(row)
    return rows


def recorded_a_step(path) -> bool:
    """Whether the metrics file `path` (a regular file, not a link) holds a complete row."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        return any(line.strip() and _row(line) is not None for line in f)


def write_metrics(path, rows) -> None:
    """Replace a metrics.jsonl with `rows`, atomically (a link there is replaced, not followed)."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


class MetricsWriter:
    """metrics.jsonl open for appending rows: write(text), flush(), close(). An OSError (the
    disk full) is a RunFolderError naming the file; the rows written before it stay."""

    def __init__(self, path: Path, file):
        self.path, self._file = path, file

    def _failed(self, e: OSError) -> RunFolderError:
        return RunFolderError(f"cannot write {self.path}: {e.strerror or e}; the rows before "
                              "this one are kept")

    def write(self, text: str) -> None:
        try:
            self._file.write(text)
        except OSError as e:
            raise self._failed(e) from None

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError as e:
            raise self._failed(e) from None

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass    # a row that could not be flushed was already reported by flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_metrics(path, append: bool) -> MetricsWriter:
    """metrics.jsonl opened for writing rows (appending to a resumed run's, else a new file),
    mode 0o666 less the umask. A link at `path` is a RunFolderError, never written through."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC) | \
        getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise RunFolderError(f"{path} is a symbolic link; minigpt never writes metrics "
                                 "through a link: delete it (or replace it by the file)") from None
        raise RunFolderError(f"cannot write {path}: {e.strerror or e}") from None
    return MetricsWriter(path, os.fdopen(fd, "w", encoding="utf-8"))
