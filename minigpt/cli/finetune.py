"""`minigpt finetune` and `minigpt predict`: fine-tune a pretrained model on a task, and the
predictions of the result for a file.

    minigpt finetune --task classify --data rotten_tomatoes --init runs/tiny --out runs/rt
    minigpt predict --ckpt runs/rt --input reviews.tsv

finetune has one option per FinetuneConfig field, generated from it (options.py); --task,
--data, --init and --out are required here (the library has defaults for some of them).
"""
from __future__ import annotations

from ..checks import argparse_type, positive_int
from ..distributed import abort_on_error, check_split, get_world
from ..training import FinetuneConfig, finetune, predict
from .options import add_config_options, given

__all__ = ["add_commands", "cmd_finetune", "cmd_predict"]


def add_commands(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a pretrained model on a task (L2 + lambda*L1)")
    add_config_options(p, FinetuneConfig, required=("task", "data", "init", "out"))
    p.add_argument("--force", action="store_true", help="start anew in an --out that holds a "
                   "run (the old run is kept beside it as OUT.replaced-<date-time>/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("predict", help="predictions of a fine-tuned checkpoint for a file")
    p.add_argument("--ckpt", required=True, help="fine-tuned run or checkpoint directory")
    p.add_argument("--input", required=True, help="a file in the task's format (labels optional)")
    p.add_argument("--batch-size", type=argparse_type(positive_int), default=64,
                   help="examples per batch (default: 64)")
    p.set_defaults(func=cmd_predict)


def cmd_finetune(args) -> int:
    cfg = FinetuneConfig(**given(args, FinetuneConfig))
    world = get_world()  # under mpiexec -n N: an error on one rank stops every rank
    # a batch that does not split is the same error on every rank: a plain error (exit 2 on
    # each), not MPI_Abort, which can kill the ranks before mpiexec has passed their message on
    check_split(cfg.batch_size, world.size, cfg.grad_accum)
    with abort_on_error(world, "minigpt finetune"):
        summary = finetune(cfg, force=args.force, progress=not args.no_progress)
    if not world.is_main:
        return 130 if summary["status"] == "interrupted" else 0
    print(f"{summary['status']} after {summary['step']} updates "
          f"({summary['seconds']:.0f} s); checkpoint: {summary.get('ckpt')}")
    return 130 if summary["status"] == "interrupted" else 0


def cmd_predict(args) -> int:
    predict(args.ckpt, args.input, batch_size=args.batch_size)
    return 0
