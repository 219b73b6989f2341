"""`minigpt sample`: generate text from a checkpoint (minigpt's, or a HuggingFace GPT-1 dir).

    minigpt sample --ckpt runs/tiny --prompt "ROMEO:" --max-new-tokens 200 --temperature 0.8

Also home of `load_for_inference` (a checkpoint or HuggingFace dir -> model, tokenizer), which
`minigpt trace` uses too.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..checks import argparse_type, nonneg_float, nonneg_int, positive_int, probability
from ..model import GPT
from ..sample import generate
from ..tokenizers import BPETokenizer
from ..training import load_checkpoint

__all__ = ["add_commands", "cmd_sample", "load_for_inference"]


def add_commands(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a checkpoint")
    p.add_argument("--ckpt", required=True, help="run/checkpoint directory or HuggingFace dir")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=argparse_type(nonneg_int), default=200)
    p.add_argument("--temperature", type=argparse_type(nonneg_float), default=0.8,
                   help="0 = greedy")
    p.add_argument("--top-k", type=argparse_type(positive_int), default=None,
                   help="sample among the k most likely tokens (k >= 1)")
    p.add_argument("--top-p", type=argparse_type(probability), default=None,
                   help="sample within the smallest set of probability >= p, p in (0, 1]")
    p.add_argument("--seed", type=argparse_type(nonneg_int), default=None)
    p.add_argument("--no-cache", action="store_true", help="recompute the window at every step")
    p.set_defaults(func=cmd_sample)


def _says_minigpt_checkpoint(config_file: Path) -> bool:
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return True  # unreadable: not a HuggingFace config either; load_checkpoint says why
    return not isinstance(config, dict) or config.get("format") == "minigpt-checkpoint"


def load_for_inference(path):
    """(model, tokenizer) from a minigpt checkpoint/run directory or a HuggingFace GPT-1 dir."""
    p = Path(path)
    # a HuggingFace directory has config.json and no state.json; a minigpt checkpoint that lost
    # its state.json is still a minigpt checkpoint (its config.json says so): load_checkpoint
    # then names the missing file instead of a HuggingFace reader blaming the tokenizer
    hf_dir = ((p / "config.json").is_file() and not (p / "state.json").is_file()
              and not _says_minigpt_checkpoint(p / "config.json"))
    if hf_dir or (p / "params_shapes.json").is_file():  # HuggingFace or OpenAI release layout
        return GPT.from_pretrained(p), BPETokenizer.from_pretrained(p)
    model, tokenizer, _ = load_checkpoint(p)
    if tokenizer is None:
        raise ValueError(f"checkpoint {p} has no tokenizer files; cannot encode a prompt")
    return model, tokenizer


def cmd_sample(args) -> int:
    model, tok = load_for_inference(args.ckpt)
    ids = tok.encode(args.prompt)
    if not ids:
        raise ValueError("the prompt encodes to no tokens; give a non-empty --prompt")
    n_ctx = model.config.n_ctx
    if len(ids) > n_ctx:
        print(f"[prompt is {len(ids)} tokens, longer than the context n_ctx={n_ctx}: "
              f"keeping its last {n_ctx} tokens]", file=sys.stderr)
        ids = ids[-n_ctx:]
    print(tok.decode(ids), end="", flush=True)
    generated = []

    def stream(token):
        generated.append(token)
        print(tok.decode([token]), end="", flush=True)

    t0 = time.perf_counter()
    try:
        generate(model, ids, args.max_new_tokens, temperature=args.temperature,
                 top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                 use_cache=not args.no_cache, on_token=stream)
    except KeyboardInterrupt:  # Ctrl-C: keep what was printed, no traceback
        print(flush=True)
        print(f"[interrupted after {len(generated)} of {args.max_new_tokens} tokens]",
              file=sys.stderr)
        return 130
    dt = time.perf_counter() - t0
    print()
    print(f"[{len(generated)} tokens in {dt:.2f} s, {len(generated) / max(dt, 1e-9):.1f} tokens/s]",
          file=sys.stderr)
    return 0
