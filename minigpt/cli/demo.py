"""`minigpt demo`: pretrain the demo model on Shakespeare, plot the loss, print a sample.

    minigpt demo                       # ~3 minutes on 2 CPU cores; runs/demo-<date>-<time>/

The demo's settings are DEMO_SETTINGS; --steps, --seed and --out are TrainConfig's options
(generated from its fields, with the demo's defaults).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..checks import argparse_type, nonneg_int
from ..sample import generate
from ..training import TrainConfig, pretrain
from .options import add_config_options, given
from .pretrain import print_summary

__all__ = ["add_commands", "cmd_demo", "DEMO_SETTINGS"]

# a char-level GPT-1, 4 post-LN blocks, 128 wide: 1000 Adam steps of 32 x 64 characters
DEMO_SETTINGS = dict(data="shakespeare", preset="demo", steps=1000, batch_size=32, lr=2e-3,
                     warmup=50, weight_decay=0.01, eval_interval=200, eval_batches=8,
                     ckpt_interval=200, seed=1337)
DEMO_OUT = "runs/demo-%Y%m%d-%H%M%S"


def add_commands(sub) -> None:
    p = sub.add_parser("demo", help="pretrain a small model on Shakespeare (~3 min on 2 cores)")
    add_config_options(p, TrainConfig, only=("steps", "out", "seed"), defaults={
        "steps": DEMO_SETTINGS["steps"], "seed": DEMO_SETTINGS["seed"],
        "out": "runs/demo-<date>-<time>"})
    p.add_argument("--sample-tokens", type=argparse_type(nonneg_int), default=300,
                   help="length of the sample printed at the end (default: 300)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    cfg = TrainConfig(**{**DEMO_SETTINGS, "out": time.strftime(DEMO_OUT),
                         **given(args, TrainConfig)})
    print(f"minigpt demo: a char-level GPT-1 ({cfg.preset} preset) learns Shakespeare for "
          f"{cfg.steps} steps; run directory {cfg.out}")
    summary = pretrain(cfg, force=False, progress=not args.no_progress)
    print_summary(summary)
    model, tok = summary["model"], summary["tokenizer"]
    prompt = tok.encode("ROMEO:\n")
    new = generate(model, prompt, args.sample_tokens, temperature=0.8, top_k=40, seed=cfg.seed)
    text = tok.decode(prompt + new)
    (Path(cfg.out) / "sample.txt").write_text(text, encoding="utf-8")
    print("\n----- sample (temperature 0.8, top-k 40) -----")
    print(text)
    print("-----------------------------------------------")
    return 130 if summary["status"] == "interrupted" else 0
