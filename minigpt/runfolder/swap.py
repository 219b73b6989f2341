"""The crash-proof swap: a directory (a checkpoint) replaced so that no crash ever loses the last one.

    write_directory(path, write)   fill a fresh `.NAME.tmpXXXX` beside `path` (write(tmp)),
                                   mark it finished, fsync, then swap it in by renames
    replace_directory(new, path)   the renames alone
    find_checkpoint(directory, name)   the complete directory stored as `name`, wherever a
                                   crash left it
    clean_leftovers(directory, name)   tidy what killed writers left (only under the lock)
    names_with_leftovers(directory)    the names that have something to tidy

The rule that makes a crash at any instant, or two crashes in a row, harmless: a directory
named `NAME` or `.NAME.old` is always complete (only whole, finished directories are ever
renamed to those names), and at every instant after the first save at least one of them exists:

    NAME exists:          discard .NAME.old | NAME -> .NAME.old | tmp -> NAME | discard .NAME.old
    only .NAME.old left:  tmp -> NAME | discard .NAME.old      (the old one goes only after)

"discard" first renames the directory to `.NAME.trashXXXX`, then deletes it, so a half-deleted
directory never carries a complete directory's name. A temporary holds the marker file
`.finished` once it is complete: a writer killed just before its rename leaves a finished
temporary, which find_checkpoint also finds.

A write that fails (the disk full, a name too long, no permission) is a RunFolderError naming
the directory and the cause; the temporary is removed and the previous directory is untouched.

Testing hook: the environment variable MINIGPT_TEST_CRASH_AT=POINT[@N][,POINT[@N]...] makes
the process exit at once (os._exit, like a kill) when a save reaches POINT for the N-th time
(default the first): `writing` (temporary half written; checkpoint.py's), `written` (temporary
complete, nothing renamed), `old-moved` (NAME renamed to .NAME.old), `placed` (new NAME in
place, .NAME.old not yet discarded), `discarding` (old renamed to trash, not yet deleted).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..fileio import fsync_directory, make_temporary_directory
from .errors import RunFolderError
from .links import remove

__all__ = ["write_directory", "replace_directory", "find_checkpoint", "names_with_leftovers",
           "clean_leftovers", "crash_point", "CRASH_ENV", "CRASH_EXIT_CODE", "FINISHED"]

FINISHED = ".finished"           # written last into a temporary directory: it is complete
CRASH_ENV = "MINIGPT_TEST_CRASH_AT"
CRASH_EXIT_CODE = 86

_crash_counts: dict = {}


def crash_point(name: str) -> None:
    """Exit at once (as a kill would) if MINIGPT_TEST_CRASH_AT names this point (see the module
    docstring); used by the crash tests to stop a real process inside the swap."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    for item in spec.split(","):
        point, _, nth = item.strip().partition("@")
        if point == name and _crash_counts[name] == (int(nth) if nth else 1):
            os._exit(CRASH_EXIT_CODE)


def _cannot(doing: str, path: Path, e: OSError, after: str) -> RunFolderError:
    where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
    return RunFolderError(f"cannot {doing} {path}: {e.strerror or e}{where}; {after}")


def write_directory(path, write, what: str = "checkpoint") -> Path:
    """Put a complete new directory at `path` by the crash-proof swap (module docstring):
    `write(tmp)` fills a fresh temporary folder beside `path`. An OSError on the way (disk full,
    a name too long, ...) is a RunFolderError; nothing is then replaced."""
    path = Path(path)
    intact = f"nothing was replaced (the previous {what}, if any, is intact)"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temporary_directory(path.parent, f".{path.name}.tmp")
    except OSError as e:
        raise _cannot(f"write the {what}", path, e, intact) from None
    try:
        write(tmp)
        with open(tmp / FINISHED, "xb"):
            pass
        fsync_directory(tmp)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise _cannot(f"write the {what}", path, e, intact) from None
        raise
    crash_point("written")
    try:
        replace_directory(tmp, path)
    except OSError as e:
        raise _cannot(f"put the new {what} in place at", path, e,
                      f"a complete {what} is kept under {path.name} or .{path.name}.old or "
                      f"{tmp.name}, where find_checkpoint finds it") from None
    return path


def _discard(directory: Path, name: str) -> None:
    """Delete a directory without ever leaving a half-deleted one under its name: rename it to
    `.NAME.trashXXXX/x` first (one atomic step), then delete that."""
    trash = make_temporary_directory(directory.parent, f".{name}.trash")
    os.replace(directory, trash / "x")
    crash_point("discarding")
    shutil.rmtree(trash, ignore_errors=True)


def replace_directory(new, path) -> None:
    """Put the complete directory `new` at `path` by renames, keeping at every instant a
    complete directory at `path` or at `.NAME.old` (see the module docstring). A link at
    `path` is renamed and deleted as the link, never followed."""
    new, path = Path(new), Path(path)
    old = path.parent / f".{path.name}.old"
    if os.path.lexists(path):
        if os.path.lexists(old):
            _discard(old, path.name)    # path is complete: the stale old one is not needed
        os.replace(path, old)
        crash_point("old-moved")
    os.replace(new, path)               # if path was missing, old (if any) is still complete
    fsync_directory(path.parent)
    crash_point("placed")
    if os.path.lexists(old):
        _discard(old, path.name)
    fsync_directory(path.parent)


def _finished_temporaries(directory: Path, name: str) -> list:
    """Complete but never renamed directories (a writer killed just before its swap), newest
    last. A link is never one of them."""
    found = [p for p in directory.glob(f".{name}.tmp*")
             if not p.is_symlink() and (p / FINISHED).is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def find_checkpoint(directory, name: str = "ckpt") -> Path | None:
    """The complete checkpoint stored as `name` in `directory`: `name` itself, else `.name.old`
    (a save stopped between its renames), else the newest finished `.name.tmp*`; None if none."""
    directory = Path(directory)
    for candidate in (directory / name, directory / f".{name}.old"):
        if candidate.is_dir():
            return candidate
    finished = _finished_temporaries(directory, name)
    return finished[-1] if finished else None


def names_with_leftovers(directory) -> list[str]:
    """The checkpoint names in `directory` that a killed save left something for (`.NAME.old`,
    `.NAME.tmp*`, `.NAME.trash*`), sorted: what clean_leftovers(directory, NAME) tidies."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted({m.group(1) for p in directory.iterdir()
                   if (m := re.fullmatch(r"\.(.+?)\.(?:old|tmp.*|trash.*)", p.name))})


def clean_leftovers(directory, name: str = "ckpt", log=print) -> None:
    """Tidy what killed writers left beside `directory/name`; call only while holding the run's
    lock (no live writer). The complete checkpoint is kept: a lone `.name.old` or finished
    temporary is renamed to `name`; redundant old, temporary and trash directories go (a link
    among them is deleted as a link, never followed)."""
    directory = Path(directory)
    path, old = directory / name, directory / f".{name}.old"
    if not os.path.lexists(path):
        found = find_checkpoint(directory, name)
        if found is not None:
            log(f"note: {directory}: restoring the checkpoint a crash left in {found.name}")
            os.replace(found, path)
            fsync_directory(directory)
    removed = []
    complete = path.is_dir() and not path.is_symlink()    # a link there may point anywhere
    if os.path.lexists(old) and complete:
        if old.is_symlink():
            old.unlink()
        else:
            _discard(old, name)
        removed.append(old.name)
    for leftover in sorted(directory.glob(f".{name}.tmp*")) + sorted(directory.glob(f".{name}.trash*")):
        try:
            remove(leftover)
        except OSError:
            continue
        removed.append(leftover.name)
    if removed:
        log(f"note: {directory}: removed what an interrupted save left behind "
            f"({', '.join(removed)})")
