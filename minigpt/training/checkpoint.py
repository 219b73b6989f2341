"""Checkpoints: one directory per checkpoint, swapped in so that no crash ever loses the last one.

    ckpt/
      config.json            GPTConfig fields + {"format": "minigpt-checkpoint", "version": 1}
      model.safetensors      weights under HuggingFace GPT-1 names (tokens_embed.weight, ...)
      tokenizer_config.json  + the tokenizer's own files (vocab.json, merges.txt, ...)
      optimizer.safetensors  Adam moments m.<i>, v.<i>   (absent in weights-only checkpoints)
      state.json             step, optimizer scalars, RNG states, the training arguments

`save_checkpoint` writes everything (and fsyncs it) into a fresh temporary folder beside the
target and swaps it in by renames: minigpt.runfolder.write_directory, the crash-proof swap, whose
rule (at every instant after the first save a complete checkpoint exists under `ckpt`,
`.ckpt.old` or a finished `.ckpt.tmp*`) and crash-test hook (MINIGPT_TEST_CRASH_AT) are
described in minigpt/runfolder/swap.py. `resolve_checkpoint` (sample, eval, --resume) finds the
checkpoint wherever a crash left it (minigpt/runfolder/folder.py). A write that fails (disk
full, a name too long) is a RunFolderError naming the folder; the previous checkpoint is intact.
This file writes and reads a checkpoint's contents; the run folder's safety is runfolder's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import safetensors
from ..model import GPT, GPTConfig
from ..runfolder import (CRASH_ENV, CRASH_EXIT_CODE, REQUIRED, CheckpointError, clean_leftovers,
                         crash_point, find_checkpoint, names_with_leftovers, replace_directory,
                         resolve_checkpoint, write_directory)

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "resolve_checkpoint",
           "find_checkpoint", "replace_directory", "clean_leftovers", "names_with_leftovers",
           "read_json_object",
           "FORMAT", "REQUIRED", "CRASH_ENV"]

FORMAT = "minigpt-checkpoint"


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
    crash-proof swap (minigpt.runfolder.write_directory). extra: optional `extra(directory)`
    that writes more files into the new checkpoint before it is swapped in (fine-tuning: the
    head). A failed write is a RunFolderError; the previous checkpoint is then intact."""
    def write(tmp: Path) -> None:
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

    return write_directory(path, write, "checkpoint")


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
