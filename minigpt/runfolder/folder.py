"""RunDirectory: the output folder of one run (`--out`), and resolve_checkpoint, which reads it.

    folder = RunDirectory(out, force=..., resume=..., command="pretrain", log=print)
    folder.check()          early, reading only: refuse a bad --out before any slow work
    folder.open()           lock, finish what a killed start left, decide (under the lock),
                            and with --force move the old run aside
    ... train; after each checkpoint: folder.commit()
    folder.close(failed)    put things back if the new run stopped before its first checkpoint

The decision (refuse, start over, move the old run aside) is taken again in open(), with the
lock held, on what the folder holds then: check() is only a preview, so a folder that another
process filled between this process's check() and its open() is refused, never deleted.

What is kept, and where (NAME is the folder's name; <date-time> is YYYYmmdd-HHMMSS):
- `--force` on a run: the old run's files are moved into `.previous-run/` inside the folder;
  if the new run stops before its first checkpoint (an error, a second Ctrl-C, a kill), they
  are moved back (at the next start, after a kill; sample and eval read the old run's
  checkpoint from `.previous-run/` meanwhile); once the new run has a checkpoint, they are kept
  beside the folder as `NAME.replaced-<date-time>/`.
- a new run that stops before its first checkpoint: if it recorded no step, it leaves nothing
  (the folder as it was found, and no folder if it made it); once it recorded a step, what it
  wrote stays in the folder (metrics.jsonl above all), and the next start in that folder keeps
  it beside as `NAME.unfinished-<date-time>/` before it starts over. Under --force, the old run
  comes back and the new run's recorded steps go to `NAME.unfinished-<date-time>/`.
- nothing that holds a recorded step or a checkpoint is deleted because a run stopped (only
  replaced by newer ones); delete the kept folders by hand when they are no longer needed.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..fileio import atomic_write_text, fsync_directory, make_temporary_directory
from .errors import CheckpointError, RunFolderError
from .links import links_under, refuse_links, remove
from .lock import LOCK_FILE, RunLock, read_small_file
from .metrics import METRICS_FILE, recorded_a_step
from .swap import clean_leftovers, find_checkpoint

__all__ = ["RunDirectory", "resolve_checkpoint", "check_out_path", "PREVIOUS_RUN", "CHECKPOINT",
           "REQUIRED"]

CHECKPOINT = "ckpt"
PREVIOUS_RUN = ".previous-run"
REQUIRED = ("config.json", "model.safetensors", "state.json")   # the files of a checkpoint
# what a start writes before its first checkpoint: a folder holding only these is an unfinished
# start (a run stopped before it saved anything), not a run to refuse to replace
_START_ARTIFACTS = (METRICS_FILE, "loss.png")
# markers inside .previous-run: what a killed process was doing with it
_MOVING, _DELETING, _RETURNING = ".moving", ".deleting-new", ".returning"
_MARKERS = (_MOVING, _DELETING, _RETURNING)
# the longest name minigpt puts beside a folder NAME: NAME.unfinished-YYYYmmdd-HHMMSS-NNN
_ROOM_BESIDE = len(".unfinished-20261231-235959-999")
# the longest path minigpt writes below a folder (snapshots/.step-000500.tmp<hex>/<file>)
_ROOM_BELOW = 120


def _writable(directory: Path) -> bool:
    """Writable by us, and not marked read-only (all write bits off), which is honoured even
    for root, who could write anyway."""
    return os.access(directory, os.W_OK | os.X_OK) and bool(directory.stat().st_mode & 0o222)


def _short(text, keep: int = 40) -> str:
    text = str(text)
    return text if len(text) <= 2 * keep + 5 else f"{text[:keep]}...{text[-keep:]}"


def _places_to_keep() -> list:
    """(what, folder) that a run folder may never be, nor hold."""
    places = []
    try:
        places.append(("the working directory", Path(os.path.realpath(os.getcwd()))))
    except OSError:
        pass   # the working directory was deleted
    home = os.path.expanduser("~")
    if home != "~":
        places.append(("your home folder", Path(os.path.realpath(home))))
    return places


def check_out_path(path) -> None:
    """Refuse an --out that cannot be a run folder of its own (RunFolderError naming why): '',
    '.', '..', the working directory, the home folder, a folder holding either of them, the
    root; a name longer than the file system allows (with room for NAME.replaced-<date-time>
    beside it) or a path too long for the files a run writes below it."""
    path = Path(path)
    shown = _short(path) if str(path) != "." else f"{str(path)!r} (the working directory)"
    real = Path(os.path.realpath(path))
    advice = ("a run folder must be a folder of its own (--force moves its files aside, a "
              "failed start deletes what it wrote): choose e.g. --out runs/NAME")
    if real.parent == real:
        raise RunFolderError(f"--out {shown} is the root folder; {advice}")
    for what, place in _places_to_keep():
        if real == place:
            raise RunFolderError(f"--out {shown} is {what} ({_short(place)}); {advice}")
        if real in place.parents:
            raise RunFolderError(f"--out {shown} holds {what} ({_short(place)}); {advice}")
    existing = real
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for part in real.parts[1:]:
        n = len(os.fsencode(part))
        if n > name_max:
            raise RunFolderError(f"--out {shown}: the name {_short(part, 20)!r} is {n} bytes "
                                 f"long; the file system allows at most {name_max}")
    n = len(os.fsencode(real.name))
    if n + _ROOM_BESIDE > name_max:
        raise RunFolderError(
            f"--out {shown}: the folder name is {n} bytes long; use at most "
            f"{name_max - _ROOM_BESIDE} (the file system allows {name_max}, and minigpt keeps "
            f"a replaced run beside it as NAME.replaced-<date-time>)")
    n = len(os.fsencode(str(real)))
    if n + _ROOM_BELOW > path_max:
        raise RunFolderError(f"--out {shown}: the path is {n} bytes long; use at most "
                             f"{path_max - _ROOM_BELOW} (the file system allows {path_max} for "
                             "the files a run writes below it)")


class RunDirectory:
    """The output folder of one run (see the module docstring)."""

    def __init__(self, path, *, force: bool = False, resume: bool = False,
                 command: str = "train", log=print):
        self.path = Path(path)
        self.force, self.resume, self.command, self.log = force, resume, command, log
        self.lock = RunLock(self.path, command, log)
        self._created = False
        self.committed = False

    # -- what the folder holds --------------------------------------------------------------
    def _entries(self) -> list:
        """The run's own entries: everything but the lock and .previous-run; metrics first."""
        return sorted((p for p in self.path.iterdir()
                       if p.name != LOCK_FILE and not p.name.startswith((f"{LOCK_FILE}.",
                                                                          PREVIOUS_RUN))),
                      key=lambda p: (p.name != METRICS_FILE, p.name))

    def _unfinished_start(self) -> bool:
        """Only what a start writes before its first checkpoint (no link), and no checkpoint."""
        if find_checkpoint(self.path, CHECKPOINT) is not None or \
                os.path.lexists(self.path / PREVIOUS_RUN):
            return False
        return all(not p.is_symlink() and (
            (p.name in _START_ARTIFACTS and p.is_file()) or
            p.name.startswith((f".{CHECKPOINT}.tmp", f".{CHECKPOINT}.trash")) or
            (p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()))
            for p in self._entries())

    def _refusal(self):
        """The RunFolderError this start must stop with, given what the folder holds now."""
        p = self.path
        if self.resume:
            return None if p.is_dir() else RunFolderError(
                f"--resume: run directory {p} does not exist")
        if not p.is_dir() or self.force or self._unfinished_start():
            return None
        if not self._entries() and not os.path.lexists(p / PREVIOUS_RUN):
            return None
        resume = " or --resume to continue it" if self.command == "pretrain" else ""
        return RunFolderError(
            f"output directory {p} already exists; pass --force to replace it (the old run "
            f"is then kept beside it as {p.name}.replaced-<date-time>/){resume}")

    def _refuse_links(self) -> None:
        """A link where minigpt would write, move or delete through it is a RunFolderError:
        .previous-run always; anywhere in the folder for --resume, which writes into what is
        there (a new run moves aside or deletes the links themselves)."""
        aside = self.path / PREVIOUS_RUN
        refuse_links([aside] if aside.is_symlink() else [], "moves files")
        if self.resume:
            refuse_links(links_under(self.path), "writes, moves or deletes files")

    # -- before anything is written ------------------------------------------------------
    def _check_place(self) -> None:
        p = self.path
        check_out_path(p)
        if p.exists() and not p.is_dir():
            raise RunFolderError(f"--out {p} is an existing file, not a directory; choose "
                                 "another --out")
        existing = p
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            raise RunFolderError(f"--out {p}: {existing} is a file, not a directory")
        if not _writable(existing):
            raise RunFolderError(f"--out {p}: {existing} is read-only (no permission to write "
                                 "there); choose another --out")

    def check(self) -> None:
        """Refuse a bad --out before anything is written (and before any slow work). Reads
        only; open() decides again, under the lock."""
        try:
            self._check_place()
            if self.path.is_dir():
                self._refuse_links()
                self.lock.check()
            refusal = self._refusal()
        except OSError as e:
            raise RunFolderError(f"--out {_short(self.path)}: {e.strerror or e}") from None
        if refusal is not None:
            raise refusal

    # -- taking the folder -----------------------------------------------------------------
    def open(self) -> None:
        """Lock the folder, finish what a killed run left half done, decide whether this start
        may use the folder (RunFolderError if not, with nothing changed), and (--force) move
        the old run aside."""
        try:
            self._check_place()
            self._created = not os.path.lexists(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
        except OSError as e:
            self._remove_if_created()
            raise RunFolderError(f"cannot write to --out {_short(self.path)}: "
                                 f"{e.strerror or e}") from None
        except BaseException:
            self._remove_if_created()
            raise
        try:
            self._refuse_links()
            self.lock.remove_dead_temporaries()
            for unused in self.path.glob(f"{PREVIOUS_RUN}.tmp*"):  # never held a file
                remove(unused)
            for partial in self.path.glob(".*.tmp"):  # atomic_write_text's, of a killed writer
                if not partial.name.startswith(f"{LOCK_FILE}.") and \
                        (partial.is_symlink() or partial.is_file()):
                    partial.unlink()
            self._recover_previous_run()
            clean_leftovers(self.path, CHECKPOINT, self.log)
            self._refuse_links()   # what came back from .previous-run, for --resume
            refusal = self._refusal()   # decided here, under the lock, on what is there now
            if refusal is not None:
                raise refusal
            if not self.resume:
                entries = self._entries()
                if entries and self.force:
                    self._move_aside(entries)
                elif entries:  # an unfinished start (_refusal let it through)
                    self._set_aside_unfinished(entries)
        except OSError as e:
            self._let_go(failed=True)
            raise RunFolderError(f"cannot write to --out {_short(self.path)}: "
                                 f"{e.strerror or e}") from None
        except BaseException:
            self._let_go(failed=True)
            raise

    def _beside(self, kind: str) -> Path:
        """A free name beside the folder: NAME.<kind>-<date-time>[-n]."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        keep = self.path.with_name(f"{self.path.name}.{kind}-{stamp}")
        n = 1
        while os.path.lexists(keep):
            n += 1
            keep = self.path.with_name(f"{self.path.name}.{kind}-{stamp}-{n}")
        return keep

    def _move_into(self, entries, keep: Path) -> None:
        """Move entries (links as links) into the folder `keep` beside the run folder."""
        keep.mkdir(exist_ok=True)
        for e in entries:
            os.replace(e, keep / e.name)
        fsync_directory(keep)
        fsync_directory(self.path)

    def _set_aside_unfinished(self, entries) -> None:
        """A start stopped before its first checkpoint left these: keep them beside the
        folder if they hold a recorded step, else delete them; then start over."""
        if recorded_a_step(self.path / METRICS_FILE):
            keep = self._beside("unfinished")
            self._move_into(entries, keep)
            self.log(f"note: {self.path} held an unfinished start (steps recorded in "
                     f"{METRICS_FILE}, no checkpoint); it is kept in {keep}; starting over")
            return
        self.log(f"note: {self.path} holds only an unfinished start (nothing recorded, no "
                 "checkpoint); starting over")
        for e in entries:
            remove(e)

    def _move_aside(self, entries) -> None:
        aside = self.path / PREVIOUS_RUN
        staging = make_temporary_directory(self.path, f"{PREVIOUS_RUN}.tmp")
        (staging / _MOVING).write_bytes(b"")
        os.replace(staging, aside)     # .previous-run never exists without its marker
        for e in entries:
            os.replace(e, aside / e.name)
        (aside / _MOVING).unlink()
        fsync_directory(self.path)
        self.log(f"note: the old run in {self.path} is moved to {aside}; once the new run has "
                 f"written its first checkpoint it is kept as {self.path.name}.replaced-<date-time>/ "
                 "beside it, and it is put back if the new run stops before that")

    def _kept_name(self, marker: Path):
        """The folder beside (NAME.unfinished-...) that a put-back's marker names, or None."""
        data = read_small_file(marker, 4096) or b""
        name = data.decode("utf-8", errors="replace").strip()
        ok = name.startswith(f"{self.path.name}.unfinished-") and "/" not in name and \
            "\\" not in name and name not in (".", "..")
        return self.path.with_name(name) if ok else None

    def _restore_previous_run(self) -> None:
        """Put the old run back, in phases a kill can interrupt and the next start resumes:
        set the new run's files aside (marker .deleting-new, naming where its recorded steps
        are kept; nothing recorded: deleted), then move the old files back (marker .returning,
        or .moving if the move aside itself was interrupted)."""
        aside = self.path / PREVIOUS_RUN
        if not any(os.path.lexists(aside / m) for m in _MARKERS):
            keep = self._beside("unfinished") if recorded_a_step(self.path / METRICS_FILE) else None
            atomic_write_text(aside / _DELETING, keep.name if keep else "")   # whole or absent
        if os.path.lexists(aside / _DELETING):
            new = self._entries()      # only the new run's files: nothing is back yet
            keep = self._kept_name(aside / _DELETING)
            if keep is None and new and recorded_a_step(self.path / METRICS_FILE):
                keep = self._beside("unfinished")   # an older marker that named no folder
            if keep is not None and new:
                self._move_into(new, keep)
                self.log(f"note: the steps the stopped run recorded are kept in {keep}")
            else:
                for e in new:
                    remove(e)
            os.replace(aside / _DELETING, aside / _RETURNING)
        for e in sorted(aside.iterdir()):
            if e.name not in _MARKERS and not e.name.startswith(f".{_DELETING}."):  # its temporary
                os.replace(e, self.path / e.name)
        remove(aside)
        fsync_directory(self.path)

    def _recover_previous_run(self) -> None:
        """A --force start was killed: keep the new run if it reached a checkpoint, else put
        the old run back."""
        aside = self.path / PREVIOUS_RUN
        if aside.is_symlink() or not aside.is_dir():
            return
        marked = any(os.path.lexists(aside / m) for m in _MARKERS)
        if not marked and find_checkpoint(self.path, CHECKPOINT) is not None:
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
        if aside.is_dir() and not aside.is_symlink():
            self._keep_replaced(aside)

    def _keep_replaced(self, aside: Path) -> Path:
        """Move the old run that --force replaced out of the folder, to NAME.replaced-<date-time>/
        beside it (one atomic rename: a kill leaves it either inside, handled by the next start,
        or beside). Nothing the user saved is deleted; they remove it when they are sure."""
        keep = self._beside("replaced")
        os.replace(aside, keep)
        fsync_directory(self.path.parent)
        self.log(f"note: the run that --force replaced is kept in {keep}; delete it when you no "
                 "longer need it")
        return keep

    def close(self, failed: bool) -> None:
        """Release the folder. A new run that failed before its first checkpoint leaves the
        folder as it found it (the old run back in place with --force), except for the steps
        it recorded (module docstring)."""
        try:
            if failed and not self.committed and not self.resume:
                if (self.path / PREVIOUS_RUN).is_dir() and \
                        not (self.path / PREVIOUS_RUN).is_symlink():
                    self._restore_previous_run()
                    self.log(f"the old run in {self.path} is back in place")
                elif recorded_a_step(self.path / METRICS_FILE):
                    self.log(f"note: the run stopped before its first checkpoint; the steps it "
                             f"recorded are kept in {self.path / METRICS_FILE}")
                else:
                    for e in self._entries():
                        remove(e)
        finally:
            self._let_go(failed)

    def _let_go(self, failed: bool) -> None:
        self.lock.release()
        if failed and not self.committed and not self.resume:
            self._remove_if_created()

    def _remove_if_created(self) -> None:
        if self._created:
            try:
                self.path.rmdir()   # only if empty
            except OSError:
                pass


def resolve_checkpoint(path) -> Path:
    """The checkpoint directory for `path`: itself, or the checkpoint of a run directory
    (`path/ckpt`, or what a crash left in its place: see find_checkpoint), or, while a --force
    start has not written its first checkpoint yet (or was killed before it), the checkpoint of
    the run it replaces, in `path/.previous-run/`."""
    path = Path(path)
    try:
        if not path.exists():
            found = find_checkpoint(path.parent, path.name)  # crashed between a save's renames
            if found is not None:
                return found
            raise CheckpointError(f"checkpoint {path} does not exist")
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {path} is not a directory")
        found = find_checkpoint(path, CHECKPOINT)
        if found is not None:
            return found
        if any((path / f).exists() for f in REQUIRED):
            return path
        aside = path / PREVIOUS_RUN
        if aside.is_dir() and not aside.is_symlink():
            found = find_checkpoint(aside, CHECKPOINT)
            if found is not None:
                return found
            raise CheckpointError(
                f"{path} holds no checkpoint: a --force start replacing the run there stopped "
                f"before its first checkpoint, and the old run, in {aside} (put back by the "
                "next start in that folder), has none either")
    except OSError as e:
        raise CheckpointError(f"checkpoint {_short(path)}: {e.strerror or e}") from None
    raise CheckpointError(f"{path} holds no checkpoint (no ckpt/ directory, no "
                          f"{', '.join(REQUIRED)}); did the run stop before its first "
                          "checkpoint?")
