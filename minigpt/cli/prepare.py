"""`minigpt prepare`: text files of any size -> token shards that `pretrain --data DIR` maps.

    minigpt prepare --data books/ --tokenizer bpe --vocab-size 2000 --workers 2 --out data/books
    minigpt pretrain --data data/books --preset small --out runs/books

What it does and the folder it writes: minigpt/data/prepare.py. One option per PrepareConfig
field, generated from it (options.py); --data, --out and --no-progress are the command's own.
A rerun of the same command after a kill finishes the job (the shards already written are
kept).
"""
from __future__ import annotations

import os

from ..data.prepare import PrepareConfig, prepare
from .options import add_config_options, given

__all__ = ["add_commands", "cmd_prepare"]

OPTIONS = ("tokenizer", "vocab_size", "bpe_keep_case", "bpe_keep_newlines", "tokenizer_from",
           "val_fraction", "workers", "errors", "shard_mb", "sample_mb")   # not block_bytes


def default_workers() -> int:
    """The command's default: the cores, at most 4 (the library's default is 1)."""
    return min(4, os.cpu_count() or 1)


def add_commands(sub) -> None:
    p = sub.add_parser("prepare", help="text files of any size -> memory-mapped token shards")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="text files, folders (every *.txt below, sorted) or globs")
    p.add_argument("--out", required=True, help="the folder to write (new, or an unfinished "
                   "prepare of the same inputs to finish)")
    add_config_options(p, PrepareConfig, only=OPTIONS,
                       defaults={"workers": default_workers()})
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args) -> int:
    options = {"workers": default_workers(), **given(args, PrepareConfig)}
    result = prepare(args.data, args.out, progress=not args.no_progress, **options)
    index = result.index
    splits = index["splits"]
    print(f"{result.out}: {index['tokenizer_type']} tokenizer, vocabulary "
          f"{index['vocab_size']:,} ({index['dtype']}); train {splits['train']['tokens']:,} "
          f"tokens in {len(splits['train']['shards'])} shard(s), val "
          f"{splits['val']['tokens']:,} in {len(splits['val']['shards'])}"
          + (f"; {result.resumed_shards} shard(s) kept from an earlier run"
             if result.resumed_shards else ""))
    print(f"tokenizer: {index['tokenizer_how']}")
    print(f"train with: minigpt pretrain --data {result.out} --out runs/NAME")
    return 0
