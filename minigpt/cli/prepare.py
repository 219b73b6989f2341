"""`minigpt prepare`: text files of any size -> token shards that `pretrain --data DIR` maps.

    minigpt prepare --data books/ --tokenizer bpe --vocab-size 2000 --workers 2 --out data/books
    minigpt pretrain --data data/books --preset small --out runs/books

What it does and the folder it writes: minigpt/data/prepare.py. A rerun of the same command
after a kill finishes the job (the shards already written are kept).
"""
from __future__ import annotations

import os

from ..checks import argparse_type, fraction, positive_float, positive_int
from ..data.prepare import prepare

__all__ = ["add_commands", "cmd_prepare"]


def add_commands(sub) -> None:
    p = sub.add_parser("prepare", help="text files of any size -> memory-mapped token shards")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="text files, folders (every *.txt below, sorted) or globs")
    p.add_argument("--out", required=True, help="the folder to write (new, or an unfinished "
                   "prepare of the same inputs to finish)")
    p.add_argument("--tokenizer", choices=("char", "bpe"), default=None,
                   help="learn this kind (default char); with --tokenizer-from, the loaded "
                   "one's kind")
    p.add_argument("--vocab-size", type=argparse_type(positive_int), default=1000,
                   help="BPE: the vocabulary's size (default 1000, as pretrain's)")
    p.add_argument("--bpe-keep-case", action="store_true",
                   help="BPE keeps capitals and accents (GPT-1's lowercases)")
    p.add_argument("--bpe-keep-newlines", action="store_true",
                   help="BPE makes each newline a token (GPT-1's reads it as a space)")
    p.add_argument("--tokenizer-from", metavar="PATH", default=None,
                   help="use this tokenizer instead of learning one: a run or checkpoint, a "
                   "prepared folder, a tokenizer folder or GPT-1's released files")
    p.add_argument("--val-fraction", type=argparse_type(fraction), default=0.1,
                   help="share of the files (documents) kept for validation; one file: its "
                   "last share of characters (default 0.1)")
    p.add_argument("--workers", type=argparse_type(positive_int),
                   default=min(4, os.cpu_count() or 1),
                   help="worker processes (default: the cores, at most 4)")
    p.add_argument("--errors", choices=("strict", "replace"), default="strict",
                   help="a byte that is not UTF-8: an error naming file and offset (strict), "
                   "or U+FFFD with a warning (replace)")
    p.add_argument("--shard-mb", type=argparse_type(positive_float), default=64.0,
                   help="text per shard, in MiB (default 64)")
    p.add_argument("--sample-mb", type=argparse_type(positive_float), default=16.0,
                   help="BPE: the most training text it learns the merges from, in MiB "
                   "(default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args) -> int:
    result = prepare(args.data, args.out, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                     bpe_keep_case=args.bpe_keep_case, bpe_keep_newlines=args.bpe_keep_newlines,
                     tokenizer_from=args.tokenizer_from, val_fraction=args.val_fraction,
                     workers=args.workers, errors=args.errors, shard_mb=args.shard_mb,
                     sample_mb=args.sample_mb, progress=not args.no_progress)
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
