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
from ..checks import short_list
from ..model import GPT, SAFETENSORS_DTYPES, GPTConfig
from ..untrusted import check_field, cut, read_json
from ..runfolder import REQUIRED, CheckpointError, crash_point, resolve_checkpoint, write_directory

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "read_json_object", "FORMAT"]

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
    """A JSON file that must hold an object, its size and nesting bounded before it is parsed
    (minigpt.untrusted.read_json); CheckpointError naming the file otherwise."""
    return read_json(file, what, error=CheckpointError)


# state.json fields that sample, eval and --resume read, and the JSON types each must have
STATE_FIELDS = {"step": (int,), "train_config": (dict,), "optimizer": (dict,),
                "data_rng": (dict,), "dropout_rng": (dict,),
                "last_loss": (int, float, type(None)), "last_val_loss": (int, float, type(None))}
# the optimizer's scalars in state.json (its moments are in optimizer.safetensors)
OPTIMIZER_FIELDS = {"t": (int,), "lr": (int, float), "betas": (list,), "eps": (int, float),
                    "weight_decay": (int, float), "max_grad_norm": (int, float, type(None))}


def check_state(state: dict, file: Path) -> None:
    """The JSON types of state.json's known fields (CheckpointError naming the field)."""
    for key, kinds in STATE_FIELDS.items():
        check_field(state, key, kinds, file, error=CheckpointError)
    if isinstance(state.get("step"), int) and state["step"] < 0:
        raise CheckpointError(f"{file}: field 'step' must be >= 0, got {cut(state['step'])}")
    opt = state.get("optimizer")
    if opt is not None:
        for key, kinds in OPTIMIZER_FIELDS.items():
            check_field(opt, key, kinds, f"{file}: optimizer", error=CheckpointError,
                        required=True)
        betas = opt["betas"]
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                      for b in betas):
            raise CheckpointError(f"{file}: optimizer: field 'betas' must be two numbers, got "
                                  f"{cut(betas)}")


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
    """Every file is checked before anything is allocated from it: the JSON files' size, depth
    and field types, the config's ranges and ceilings, the weights' names, shapes and dtype
    against the config (from the safetensors header alone), the tokenizer's vocabulary size
    against the model's, and the optimizer moments' shapes against the parameters'."""
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is partial or not a minigpt checkpoint: "
                              f"missing {', '.join(missing)}")
    cfg_file, state_file = path / "config.json", path / "state.json"
    cfg_dict = read_json_object(cfg_file, " (the model configuration)")
    state = read_json_object(state_file, " (the training state)")
    if cfg_dict.pop("format", None) != FORMAT:
        raise CheckpointError(f"{cfg_file} is not a minigpt checkpoint config")
    cfg_dict.pop("version", None)
    try:
        config = GPTConfig.from_dict(cfg_dict)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_file}: {e}") from None
    check_state(state, state_file)
    tokenizer = None
    if (path / "tokenizer_config.json").is_file():
        from ..tokenizers import load_tokenizer
        try:
            tokenizer = load_tokenizer(path)
        except (ValueError, OSError) as e:
            raise CheckpointError(f"{path}: cannot load its tokenizer: {e}") from None
        if tokenizer.vocab_size != config.vocab_size:
            raise CheckpointError(
                f"{path}: the tokenizer has {tokenizer.vocab_size:,} tokens but the model "
                f"({cfg_file.name}) has vocab_size {config.vocab_size:,}; they do not belong "
                f"together")

    def check_weights(found: dict) -> None:
        try:
            config.check_weights(found, path / "model.safetensors")
        except ValueError as e:
            raise CheckpointError(str(e)) from None

    weights = _read_tensors(path / "model.safetensors", check_weights)
    model = GPT(config)
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path / 'model.safetensors'}: {e}") from None
    if with_optimizer_state and "optimizer" in state:
        opt_file = path / "optimizer.safetensors"
        if not opt_file.is_file():
            raise CheckpointError(f"checkpoint {path} is partial: missing optimizer.safetensors")
        dtype = SAFETENSORS_DTYPES[config.dtype]      # Adam's moments have the weights' dtype
        own = [tuple(p.shape) for p in model.parameters()]
        want = {f"{k}.{i}": shape for k in ("m", "v") for i, shape in enumerate(own)}

        def check_moments(found: dict) -> None:
            missing = [k for k in want if k not in found]
            if missing:
                raise CheckpointError(f"{opt_file}: missing optimizer tensors "
                                      f"{short_list(missing, quote=True)}")
            for k, shape in want.items():
                if found[k] != (dtype, shape):
                    raise CheckpointError(f"{opt_file}: {k} is {found[k][0]} "
                                          f"{cut(list(found[k][1]))}, but its parameter is "
                                          f"{dtype} {list(shape)}")

        tensors = _read_tensors(opt_file, check_moments)
        n = len(own)
        state["optimizer"]["m"] = [tensors[f"m.{i}"] for i in range(n)]
        state["optimizer"]["v"] = [tensors[f"v.{i}"] for i in range(n)]
    return model, tokenizer, state


def _read_tensors(file: Path, check) -> dict:
    """safetensors.load_file with `check(shapes)` run on the header before any tensor is read;
    a SafetensorsError becomes a CheckpointError."""
    try:
        return safetensors.load_file(file, check=check)
    except safetensors.SafetensorsError as e:
        raise CheckpointError(str(e)) from None
