"""The `minigpt` command line: one module per command, each with `add_commands(sub)` (its
options) and `cmd_<name>(args)` (what it does; returns the exit status).

    prepare.py    minigpt prepare     text files of any size -> memory-mapped token shards
    pretrain.py   minigpt pretrain    train a language model, or --resume one
    finetune.py   minigpt finetune    fine-tune on a task; minigpt predict: its predictions
    sample.py     minigpt sample      generate text (and load_for_inference, for trace too)
    eval.py       minigpt eval        validation loss, perplexity, bits per character
    demo.py       minigpt demo        pretrain the demo model on Shakespeare and sample
    trace.py      minigpt trace       every op of one forward and backward pass
    explore.py    minigpt explore     a page that shows inside a trained model
    options.py    the options of pretrain, finetune, prepare and demo, generated from their
                  config fields
    assignments.py minigpt assignments list | release | grade | gradescope | release-notebooks

A bad argument is a parse error (exit status 2); a command's error is one line
`minigpt <command>: error: ...` (exit status 2), never a traceback; Ctrl-C exits with 130.
"""
from __future__ import annotations

import argparse
import sys

from ..training import CheckpointError, TrainingError
from ..untrusted import cut
from . import assignments, demo, explore, finetune, prepare, pretrain, sample, trace
from . import eval as eval_command  # (the module of `minigpt eval`, not Python's eval)
from .sample import load_for_inference

__all__ = ["build_parser", "main", "load_for_inference"]

COMMANDS = (prepare, pretrain, finetune, sample, eval_command, demo, trace, explore, assignments)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minigpt", description="GPT-1 from scratch in NumPy")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_commands(sub)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C before a command started
        print("\nminigpt: interrupted", file=sys.stderr)
        return 130
    try:
        return args.func(args)
    except (TrainingError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"minigpt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the command reads or writes: too long a name, a full disk...
        where = f": {cut(str(e.filename))}" if e.filename else ""
        print(f"minigpt {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handling: no traceback
        print(f"\nminigpt {args.command}: interrupted", file=sys.stderr)
        return 130
