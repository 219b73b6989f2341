"""`minigpt pretrain`: train a language model (the paper's L1), or --resume one.

    minigpt pretrain --data shakespeare --preset tiny --steps 2000 --out runs/tiny
    minigpt pretrain --out runs/tiny --resume

`mpiexec -n N minigpt pretrain ...` is one data-parallel run (minigpt.distributed): the same
numbers as one process; rank 0 writes the run folder and prints.

One option per TrainConfig field, generated from it (options.py); --resume, --force and
--no-progress are the command's own.
"""
from __future__ import annotations

import dataclasses

from ..distributed import abort_on_error, check_split, get_world
from ..training import TrainConfig, pretrain
from .options import add_config_options, given

__all__ = ["add_commands", "cmd_pretrain", "print_summary"]


def add_commands(sub) -> None:
    p = sub.add_parser("pretrain", help="train a language model (the paper's L1)")
    add_config_options(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly "
                   "(with its own settings; --steps and --snapshot-every may change)")
    p.add_argument("--force", action="store_true", help="start anew in an --out that holds a "
                   "run (the old run is kept beside it as OUT.replaced-<date-time>/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pretrain)


def cmd_pretrain(args) -> int:
    cfg = TrainConfig(**given(args, TrainConfig))
    if args.resume and args.steps is None:
        cfg = dataclasses.replace(cfg, steps=None)  # None: keep the checkpoint's own --steps
    world = get_world()  # under mpiexec -n N: an error on one rank stops every rank
    # a batch that does not split is the same error on every rank: a plain error (exit 2 on
    # each), not MPI_Abort, which can kill the ranks before mpiexec has passed their message on
    if not args.resume:  # (a resumed run's batch is its checkpoint's, checked in pretrain())
        check_split(cfg.batch_size, world.size, cfg.grad_accum)
    with abort_on_error(world, "minigpt pretrain"):
        summary = pretrain(cfg, resume=args.resume, force=args.force,
                           progress=not args.no_progress)
    if world.is_main:
        print_summary(summary)
    return 130 if summary["status"] == "interrupted" else 0


def print_summary(summary: dict) -> None:
    """The end of a pretraining run: status, losses, where the checkpoint and curve are."""
    print(f"{summary['status']} at step {summary['step']}: train loss "
          f"{summary['loss']:.4f}" + (f", validation loss {summary['val_loss']:.4f}"
                                     if summary['val_loss'] is not None else ""))
    print(f"checkpoint: {summary['ckpt']}")
    if summary.get("plot"):
        print(f"loss curve: {summary['plot']}")
