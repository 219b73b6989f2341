"""Run folders: where a run writes (`--out`), and the guarantee that nothing a user saved is lost.

    folder.py   RunDirectory (check, open, commit, close), check_out_path, resolve_checkpoint
    lock.py     RunLock: `.lock`, one writer per folder
    swap.py     write_directory / replace_directory: the crash-proof checkpoint swap;
                find_checkpoint, clean_leftovers, names_with_leftovers
    metrics.py  metrics.jsonl: open_metrics, read_metrics, write_metrics, recorded_a_step
    links.py    removing and listing without following symbolic links
    errors.py   TrainingError, RunFolderError (a TrainingError), CheckpointError

A run folder holds `ckpt/` (the latest checkpoint), `metrics.jsonl`, `loss.png`, maybe
`snapshots/step-000500/ ...`, and `.lock` while a process writes there. The guarantees, each
tested in tests/test_run_safety.py (run-folder cases) or tests/test_checkpoint.py (the swap):

1. Checks first. Every argument and input is checked before --out is touched (the commands do
   that, then call RunDirectory.check(), a preview that only reads). --out must be a folder of
   its own: '', '.', '..', the working directory, the home folder, any folder holding one of
   them, the root, an existing file, a read-only place, a name too long for the file system
   are refused with a RunFolderError that names the problem, before anything is written.
2. One writer. The folder is locked (`.lock`: PID, host, start time, command) while a process
   writes to it; a second writer is refused with the holder's PID; a dead holder's lock is
   taken over with a note; a lock from another host is respected.
3. Decided under the lock. Whether this start may use the folder (it is new, empty, an
   unfinished start, or --force / --resume was given) is decided again in open(), with the
   lock held, on what the folder holds then. A run that another process finished in the same
   folder after this process's preview is refused ("already exists"), never deleted.
4. --force loses nothing. The old run is moved into `.previous-run/` inside the folder, put
   back if the new run stops before its first checkpoint (an error, a second Ctrl-C, or a kill:
   then at the next start), and once the new run has a checkpoint, kept beside the folder as
   `NAME.replaced-YYYYmmdd-HHMMSS/`. While the old run waits in `.previous-run/`,
   resolve_checkpoint (sample, eval) reads its checkpoint there.
5. Interrupts keep what was recorded. A new run that stops before its first checkpoint and
   recorded no step leaves nothing behind (no folder, if it made it). Once it recorded a step,
   metrics.jsonl and what else it wrote stay in the folder; the next start there keeps them
   beside as `NAME.unfinished-YYYYmmdd-HHMMSS/` and starts over (under --force, the old run
   comes back and the new run's recorded steps go to `NAME.unfinished-...`). After the first
   checkpoint, and on --resume, nothing is removed. minigpt deletes a run's files only to
   replace them by newer ones (a checkpoint by the next; on --resume, the metrics rows after
   the checkpoint's step, which the resumed run trains again), never because a run stopped.
6. The crash-proof swap. A checkpoint is written into a fresh temporary folder, fsynced, and
   swapped in by renames; at every instant after the first save (also after two crashes in a
   row) a complete checkpoint exists under `ckpt`, `.ckpt.old` or a finished `.ckpt.tmp*`,
   where resolve_checkpoint (sample, eval, --resume) finds it. A kill loses at most the steps
   since the last checkpoint; the next start removes what the killed writer left, never the
   only complete checkpoint. A failed write (disk full, a name too long) is a RunFolderError
   naming the folder and the cause, nothing half-written is left, the previous checkpoint is
   intact.
7. Links are never followed. A symbolic link inside a run folder is moved or deleted as the
   link itself (never what it points to); where a run would write through it (--resume into a
   folder holding one anywhere, `.previous-run`, `.lock`, metrics.jsonl) it is refused with a
   RunFolderError naming it.
8. Modes follow the umask. Files are created 0o666 and folders 0o777 less the user's umask
   (umask 022: a group can read a shared run; 077: private), temporaries included.
9. Torn lines. metrics.jsonl is appended line by line and flushed; a line torn by a kill is
   skipped with a warning naming the file and line.
"""
from .errors import CheckpointError, RunFolderError, TrainingError
from .folder import (CHECKPOINT, PREVIOUS_RUN, REQUIRED, RunDirectory, check_out_path,
                     resolve_checkpoint)
from .lock import LOCK_FILE, RunLock
from .metrics import METRICS_FILE, open_metrics, read_metrics, recorded_a_step, write_metrics
from .swap import (CRASH_ENV, CRASH_EXIT_CODE, FINISHED, clean_leftovers, crash_point,
                   find_checkpoint, names_with_leftovers, replace_directory, write_directory)

__all__ = ["RunDirectory", "RunLock", "check_out_path", "resolve_checkpoint", "find_checkpoint",
           "write_directory", "replace_directory", "clean_leftovers", "names_with_leftovers",
           "crash_point", "open_metrics", "read_metrics", "write_metrics", "recorded_a_step",
           "TrainingError", "RunFolderError", "CheckpointError", "CHECKPOINT", "PREVIOUS_RUN",
           "REQUIRED", "LOCK_FILE", "METRICS_FILE", "FINISHED", "CRASH_ENV", "CRASH_EXIT_CODE"]
