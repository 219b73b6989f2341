"""Checkpoints: one directory per checkpoint, written so that a crash never loses the last one.

    ckpt/
      config.json            GPTConfig fields + {"format": "minigpt-checkpoint", "version": 1}
      model.safetensors      weights under HuggingFace GPT-1 names (tokens_embed.weight, ...)
      tokenizer_config.json  + the tokenizer's own files (vocab.json, merges.txt, ...)
      optimizer.safetensors  Adam moments m.<i>, v.<i>   (absent in weights-only checkpoints)
      state.json             step, optimizer scalars, RNG states, the training arguments

Atomic write: everything goes into a fresh temporary directory beside the target, which then
replaces the old checkpoint by rename. A crash mid-write leaves the old checkpoint intact (or,
between the two renames, as `.NAME.old`, which `resolve_checkpoint` still finds).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import safetensors
from ..model import GPT, GPTConfig

FORMAT = "minigpt-checkpoint"
REQUIRED = ("config.json", "model.safetensors", "state.json")


class CheckpointError(ValueError):
    """A checkpoint directory is missing, partial or corrupt."""


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_json_default), encoding="utf-8")


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def save_checkpoint(path, model: GPT, tokenizer=None, optimizer=None, state: dict | None = None) -> Path:
    """Write a complete checkpoint directory at `path`, replacing any previous one atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    try:
        _write_json(tmp / "config.json", {**model.config.to_dict(), "format": FORMAT, "version": 1})
        safetensors.save_file(dict(model.state_dict()), tmp / "model.safetensors",
                              metadata={"format": "np"})
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
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def replace_directory(new: Path, path: Path) -> None:
    """Put the complete directory `new` at `path`, replacing what was there, by two renames.

    Between them the previous directory waits as `.NAME.old`, which `resolve_checkpoint` still
    finds, so a crash at any moment leaves one complete checkpoint reachable.
    """
    old = path.parent / f".{path.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    if old.exists():
        shutil.rmtree(old)


def resolve_checkpoint(path) -> Path:
    """The checkpoint directory for `path`: itself, or `path/ckpt` for a run directory."""
    path = Path(path)
    if not path.exists():
        old = path.parent / f".{path.name}.old"
        if old.is_dir():  # crashed between the two renames of a save
            return old
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / "ckpt").is_dir() or (path / ".ckpt.old").is_dir():
        return resolve_checkpoint(path / "ckpt")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory")
    return path


def load_checkpoint(path, with_optimizer_state: bool = False):
    """Load (model, tokenizer or None, state dict) from a checkpoint or run directory.

    With with_optimizer_state, state["optimizer"] also holds the moment arrays "m" and "v".
    """
    path = resolve_checkpoint(path)
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is partial or not a minigpt checkpoint: "
                              f"missing {', '.join(missing)}")
    try:
        cfg_dict = json.loads((path / "config.json").read_text(encoding="utf-8"))
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path}: corrupt JSON file: {e}") from None
    if cfg_dict.pop("format", None) != FORMAT:
        raise CheckpointError(f"{path / 'config.json'} is not a minigpt checkpoint config")
    cfg_dict.pop("version", None)
    config = GPTConfig.from_dict(cfg_dict)
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
