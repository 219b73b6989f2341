"""`minigpt trace`: every op of one forward and backward pass of a checkpoint, as a table.

    minigpt trace --ckpt runs/tiny --prompt "ROMEO:" --max-rows 20

The library half is minigpt/trace.py (`minigpt.trace(model, idx, targets)`).
"""
from __future__ import annotations

import numpy as np

from ..checks import argparse_type, positive_int
from ..trace import trace
from .sample import load_for_inference

__all__ = ["add_commands", "cmd_trace"]


def add_commands(sub) -> None:
    p = sub.add_parser("trace", help="list every op of one forward and backward pass "
                                     "(shapes, statistics, gradient norms)")
    p.add_argument("--ckpt", required=True, help="run/checkpoint directory or HuggingFace dir")
    p.add_argument("--prompt", default="ROMEO:\nBut soft, what light",
                   help="the text to run; each token predicts the next (the loss is traced)")
    p.add_argument("--max-rows", type=argparse_type(positive_int), default=None,
                   help="show only the first and last rows of each table")
    p.add_argument("--train-mode", action="store_true", help="keep dropout on (default: eval)")
    p.set_defaults(func=cmd_trace)


def cmd_trace(args) -> int:
    model, tok = load_for_inference(args.ckpt)
    ids = tok.encode(args.prompt)
    if not ids:
        raise ValueError("the prompt encodes to no tokens; give a non-empty --prompt")
    ids = ids[-(model.config.n_ctx + 1):]  # the context limit (one more: the last target)
    model.train(args.train_mode)
    arr = np.asarray(ids, dtype=np.int64)[None, :]  # (1, T + 1)
    if arr.shape[1] > 1:
        tr = trace(model, arr[:, :-1], arr[:, 1:])  # idx, targets: (1, T) each
    else:  # one token: nothing to predict, forward only
        tr = trace(model, arr)
    print(f"{args.ckpt}: {len(ids)} tokens, {len(tr.ops)} ops, {len(tr.params)} parameter tensors")
    print(tr.table(max_rows=args.max_rows), end="")
    return 0
