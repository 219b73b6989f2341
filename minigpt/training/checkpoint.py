"""Checkpoints: one directory per checkpoint, swapped in so that no crash ever loses the last one.

    ckpt/
      config.json            GPTConfig fields + {"format": "minigpt-checkpoint", "version": 1}
      model.safetensors      weights under HuggingFace GPT-1 names (tokens_embed.weight, ...)
      tokenizer_config.json  + the tokenizer's own files (vocab.json, merges.txt, ...)
      optimizer.safetensors  Adam moments m.<i>, v.<i>   (absent in weights-only checkpoints)
      state.json             step, optimizer scalars, RNG states, the training arguments

The swap (`save_checkpoint`): everything is written (and fsynced) into a fresh `.ckpt.tmpXXXX`
beside the target, which then takes the target's place by renames. The rule that makes a crash
at any instant, or two crashes in a row, harmless: a directory named `ckpt` or `.ckpt.old` is
always complete (only whole, finished directories are ever renamed to those names), and at
every instant after the first save at least one of them exists:

    ckpt exists:          discard .ckpt.old | ckpt -> .ckpt.old | tmp -> ckpt | discard .ckpt.old
    only .ckpt.old left:  tmp -> ckpt | discard .ckpt.old      (the old one goes only after)

"discard" first renames the directory to `.ckpt.trashXXXX`, then deletes it, so a half-deleted
directory never carries a checkpoint's name. `resolve_checkpoint` (used by sample, eval and
--resume) takes `ckpt`, else `.ckpt.old`, else a finished temporary directory. Leftovers of a
killed writer (`.ckpt.tmp*`, `.ckpt.trash*`, a redundant `.ckpt.old`) are removed by
`clean_leftovers`, which the next run calls once it holds the run's lock; it never removes the
only complete checkpoint (it renames it to `ckpt` instead).

Testing hook: the environment variable MINIGPT_TEST_CRASH_AT=POINT[@N][,POINT[@N]...] makes
the process exit at once (os._exit, like a kill) when a save reaches POINT for the N-th time
(default the first): `writing` (temporary half written), `written` (temporary complete,
nothing renamed), `old-moved` (ckpt renamed to .ckpt.old), `placed` (new ckpt in place,
.ckpt.old not yet discarded), `discarding` (old renamed to trash, not yet deleted).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import safetensors
from ..fileio import fsync_directory
from ..model import GPT, GPTConfig

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "resolve_checkpoint",
           "find_checkpoint", "replace_directory", "clean_leftovers", "names_with_leftovers",
           "read_json_object",
           "FORMAT", "REQUIRED", "CRASH_ENV"]

FORMAT = "minigpt-checkpoint"
REQUIRED = ("config.json", "model.safetensors", "state.json")
FINISHED = ".finished"           # written last into a temporary checkpoint: it is complete
CRASH_ENV = "MINIGPT_TEST_CRASH_AT"
CRASH_EXIT_CODE = 86


class CheckpointError(ValueError):
    """A checkpoint directory is missing, partial or corrupt."""


# ----------------------------------------------------------------------------- the crash hook

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


# ----------------------------------------------------------------------------- writing

def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, default=_json_default))
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(path, model: GPT, tokenizer=None, optimizer=None, state: dict | None = None,
                    extra=None) -> Path:
    """Write a complete checkpoint directory at `path`, replacing any previous one by the
    crash-proof swap (module docstring). extra: optional `extra(directory)` that writes more
    files into the new checkpoint before it is swapped in (fine-tuning: the head)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    try:
        _write_json(tmp / "config.json", {**model.config.to_dict(), "format": FORMAT, "version": 1})
        safetensors.save_file(dict(model.state_dict()), tmp / "model.safetensors",
                              metadata={"format": "np"})
        crash_point("writing")
        if tokenizer is not None:
            tokenizer.save(tmp)
        full_state = dict(state or {})
        if optimizer is not None:
            opt = optimizer.state_dict()
            tensors = {f"m.{i}": a for i, a in enumerate(opt.pop("m"))}
            tensors.update({f"v.{i}": a for i, a in enumerate(opt.pop("v"))})
            safetensors.save_file(tensors, tmp / "optimizer.safetensors")
            full_state["optimizer"] = opt
        _write_json(tmp / "state.json", full_state)
        if extra is not None:
            extra(tmp)
        (tmp / FINISHED).write_bytes(b"")
        fsync_directory(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    crash_point("written")
    replace_directory(tmp, path)
    return path


def _discard(directory: Path, name: str) -> None:
    """Delete a directory without ever leaving a half-deleted one under its name: rename it to
    `.NAME.trashXXXX` first (one atomic step), then delete that."""
    trash = Path(tempfile.mkdtemp(prefix=f".{name}.trash", dir=directory.parent))
    os.replace(directory, trash / "x")
    crash_point("discarding")
    shutil.rmtree(trash, ignore_errors=True)


def replace_directory(new, path) -> None:
    """Put the complete directory `new` at `path` by renames, keeping at every instant a
    complete directory at `path` or at `.NAME.old` (see the module docstring)."""
    new, path = Path(new), Path(path)
    old = path.parent / f".{path.name}.old"
    if path.exists():
        if old.exists():
            _discard(old, path.name)    # path is complete: the stale old one is not needed
        os.replace(path, old)
        crash_point("old-moved")
    os.replace(new, path)               # if path was missing, old (if any) is still complete
    fsync_directory(path.parent)
    crash_point("placed")
    if old.exists():
        _discard(old, path.name)
    fsync_directory(path.parent)


# ----------------------------------------------------------------------------- finding

def _finished_temporaries(directory: Path, name: str) -> list:
    """Complete but never renamed checkpoints (a writer killed just before its swap), newest
    last."""
    found = [p for p in directory.glob(f".{name}.tmp*") if (p / FINISHED).is_file()]
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


def resolve_checkpoint(path) -> Path:
    """The checkpoint directory for `path`: itself, or the checkpoint of a run directory
    (`path/ckpt`, or what a crash left in its place: see find_checkpoint)."""
    path = Path(path)
    if not path.exists():
        found = find_checkpoint(path.parent, path.name)  # crashed between the renames of a save
        if found is not None:
            return found
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory")
    found = find_checkpoint(path, "ckpt")
    if found is not None:
        return found
    if not any((path / f).exists() for f in REQUIRED):
        raise CheckpointError(f"{path} holds no checkpoint (no ckpt/ directory, no "
                              f"{', '.join(REQUIRED)}); did the run stop before its first "
                              "checkpoint?")
    return path


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
    temporary is renamed to `name`; redundant old, temporary and trash directories go."""
    directory = Path(directory)
    path, old = directory / name, directory / f".{name}.old"
    if not path.exists():
        found = find_checkpoint(directory, name)
        if found is not None:
            log(f"note: {directory}: restoring the checkpoint a crash left in {found.name}")
            os.replace(found, path)
            fsync_directory(directory)
    removed = []
    if old.is_dir() and path.is_dir():
        _discard(old, name)
        removed.append(old.name)
    for leftover in sorted(directory.glob(f".{name}.tmp*")) + sorted(directory.glob(f".{name}.trash*")):
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover.name)
    if removed:
        log(f"note: {directory}: removed what an interrupted save left behind "
            f"({', '.join(removed)})")


# ----------------------------------------------------------------------------- loading

def read_json_object(file: Path, what: str = "") -> dict:
    """A JSON file that must hold an object; CheckpointError naming the file otherwise."""
    try:
        obj = json.loads(Path(file).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: corrupt JSON file: {e}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{file}: expected a JSON object{what}, got a JSON "
                              f"{type(obj).__name__} (corrupt or hand-edited?)")
    return obj


def load_checkpoint(path, with_optimizer_state: bool = False):
    """Load (model, tokenizer or None, state dict) from a checkpoint or run directory.

    With with_optimizer_state, state["optimizer"] also holds the moment arrays "m" and "v".
    A checkpoint renamed away while it is read (a writer's swap at that moment) is looked up
    again: the swap always leaves another complete one.
    """
    for attempt in range(3):
        found = resolve_checkpoint(path)
        try:
            return _load(found, with_optimizer_state)
        except (CheckpointError, OSError):
            if attempt == 2 or found.is_dir():
                raise


def _load(path: Path, with_optimizer_state: bool):
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is partial or not a minigpt checkpoint: "
                              f"missing {', '.join(missing)}")
    cfg_dict = read_json_object(path / "config.json", " (the model configuration)")
    state = read_json_object(path / "state.json", " (the training state)")
    if cfg_dict.pop("format", None) != FORMAT:
        raise CheckpointError(f"{path / 'config.json'} is not a minigpt checkpoint config")
    cfg_dict.pop("version", None)
    try:
        config = GPTConfig.from_dict(cfg_dict)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path / 'config.json'}: {e}") from None
    try:
        weights = safetensors.load_file(path / "model.safetensors")
    except safetensors.SafetensorsError as e:
        raise CheckpointError(str(e)) from None
    model = GPT(config)
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path / 'model.safetensors'}: {e}") from None
    tokenizer = None
    if (path / "tokenizer_config.json").is_file():
        from ..tokenizers import load_tokenizer
        tokenizer = load_tokenizer(path)
    if with_optimizer_state and "optimizer" in state:
        opt_file = path / "optimizer.safetensors"
        if not opt_file.is_file():
            raise CheckpointError(f"checkpoint {path} is partial: missing optimizer.safetensors")
        if not isinstance(state["optimizer"], dict):
            raise CheckpointError(f"{path / 'state.json'}: 'optimizer' must be a JSON object")
        try:
            tensors = safetensors.load_file(opt_file)
        except safetensors.SafetensorsError as e:
            raise CheckpointError(str(e)) from None
        n = len(model.parameters())
        try:
            state["optimizer"]["m"] = [tensors[f"m.{i}"] for i in range(n)]
            state["optimizer"]["v"] = [tensors[f"v.{i}"] for i in range(n)]
        except KeyError as e:
            raise CheckpointError(f"{opt_file}: missing optimizer tensor {e}") from None
    return model, tokenizer, state
