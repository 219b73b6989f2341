"""The `minigpt` command line: pretrain, sample, eval, demo (and finetune, predict).

    minigpt demo
    minigpt pretrain --data shakespeare --preset tiny --steps 2000 --out runs/tiny
    minigpt sample --ckpt runs/tiny --prompt "ROMEO:" --max-new-tokens 200 --temperature 0.8
    minigpt eval --ckpt runs/tiny
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import checks


# argparse types for every argument with a documented range (the rules live in minigpt.checks)
positive_int = checks.argparse_type(checks.positive_int)        # >= 1
nonneg_int = checks.argparse_type(checks.nonneg_int)            # >= 0
positive_float = checks.argparse_type(checks.positive_float)    # > 0
nonneg_float = checks.argparse_type(checks.nonneg_float)        # >= 0
probability = checks.argparse_type(checks.probability)          # (0, 1]
fraction = checks.argparse_type(checks.fraction)                # [0, 1)


def _add_train_args(p: argparse.ArgumentParser, defaults) -> None:
    d = defaults
    from .model import PRESETS
    from .training.pretrain import TRAIN_RULES

    def ranged(field):  # the argparse type of a TrainConfig field: its rule, at parse time
        return checks.argparse_type(TRAIN_RULES[field])

    p.add_argument("--data", default=d.data, help="'shakespeare' (default) or a UTF-8 text file")
    p.add_argument("--preset", default=d.preset, choices=sorted(PRESETS),
                   help="model size: tiny, small, demo, gpt1")
    p.add_argument("--tokenizer", default=d.tokenizer, choices=["char", "bpe"])
    p.add_argument("--bpe-vocab-size", type=ranged("bpe_vocab_size"), default=d.bpe_vocab_size)
    p.add_argument("--bpe-keep-case", action="store_true",
                   help="BPE keeps capitals and accents (GPT-1's lowercases)")
    p.add_argument("--bpe-keep-newlines", action="store_true",
                   help="BPE makes each newline a token (GPT-1's reads it as a space)")
    p.add_argument("--steps", type=ranged("steps"), default=None,
                   help=f"optimizer updates (default {d.steps})")
    p.add_argument("--batch-size", type=ranged("batch_size"), default=d.batch_size)
    p.add_argument("--block-size", type=ranged("block_size"), default=d.block_size,
                   help="context length (default and maximum: the preset's n_ctx)")
    p.add_argument("--n-layer", type=ranged("n_layer"), default=d.n_layer,
                   help="override the preset's number of blocks")
    p.add_argument("--n-embd", type=ranged("n_embd"), default=d.n_embd,
                   help="override the preset's width (a multiple of the heads)")
    p.add_argument("--n-head", type=ranged("n_head"), default=d.n_head,
                   help="override the preset's attention heads")
    p.add_argument("--lr", type=ranged("lr"), default=d.lr, help="peak learning rate")
    p.add_argument("--warmup", type=ranged("warmup"), default=d.warmup,
                   help="linear warm-up updates, then cosine to 0")
    p.add_argument("--weight-decay", type=ranged("weight_decay"), default=d.weight_decay)
    p.add_argument("--max-grad-norm", type=ranged("max_grad_norm"), default=d.max_grad_norm)
    p.add_argument("--dropout", type=ranged("dropout"), default=d.dropout,
                   help="override the preset's dropout, in [0, 1)")
    p.add_argument("--eval-interval", type=ranged("eval_interval"), default=d.eval_interval)
    p.add_argument("--eval-batches", type=ranged("eval_batches"), default=d.eval_batches)
    p.add_argument("--ckpt-interval", type=ranged("ckpt_interval"), default=d.ckpt_interval)
    p.add_argument("--snapshot-every", type=ranged("snapshot_every"), default=d.snapshot_every,
                   metavar="N", help="also keep a loadable checkpoint of every N-th step and of "
                   "the last one in OUT/snapshots/step-000500/ ... (no optimizer state)")
    p.add_argument("--seed", type=ranged("seed"), default=d.seed)
    p.add_argument("--out", default=d.out, help="run directory (checkpoint, metrics, loss.png)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _train_config(args, defaults):
    from .training import TrainConfig
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["steps"] = args.steps if args.steps is not None else defaults.steps
    return TrainConfig(**values)


def _print_summary(summary: dict) -> None:
    print(f"{summary['status']} at step {summary['step']}: train loss "
          f"{summary['loss']:.4f}" + (f", validation loss {summary['val_loss']:.4f}"
                                     if summary['val_loss'] is not None else ""))
    print(f"checkpoint: {summary['ckpt']}")
    if summary.get("plot"):
        print(f"loss curve: {summary['plot']}")


def cmd_pretrain(args) -> int:
    from .training import TrainConfig, pretrain
    cfg = _train_config(args, TrainConfig())
    if args.resume and args.steps is None:
        cfg = dataclasses.replace(cfg, steps=None)  # None: keep the checkpoint's own --steps
    summary = pretrain(cfg, resume=args.resume, force=args.force, progress=not args.no_progress)
    _print_summary(summary)
    return 130 if summary["status"] == "interrupted" else 0


def _says_minigpt_checkpoint(config_file: Path) -> bool:
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return True  # unreadable: not a HuggingFace config either; load_checkpoint says why
    return not isinstance(config, dict) or config.get("format") == "minigpt-checkpoint"


def load_for_inference(path):
    """(model, tokenizer) from a minigpt checkpoint/run directory or a HuggingFace GPT-1 dir."""
    from .training import load_checkpoint
    p = Path(path)
    # a HuggingFace directory has config.json and no state.json; a minigpt checkpoint that lost
    # its state.json is still a minigpt checkpoint (its config.json says so): load_checkpoint
    # then names the missing file instead of a HuggingFace reader blaming the tokenizer
    hf_dir = ((p / "config.json").is_file() and not (p / "state.json").is_file()
              and not _says_minigpt_checkpoint(p / "config.json"))
    if hf_dir or (p / "params_shapes.json").is_file():  # HuggingFace or OpenAI release layout
        from .model import GPT
        from .tokenizers import BPETokenizer
        return GPT.from_pretrained(p), BPETokenizer.from_pretrained(p)
    model, tokenizer, _ = load_checkpoint(p)
    if tokenizer is None:
        raise ValueError(f"checkpoint {p} has no tokenizer files; cannot encode a prompt")
    return model, tokenizer


def cmd_sample(args) -> int:
    from .sample import generate
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


def _text_for_tokens(tok, text: str, max_ids: int):
    """(prefix, ids): the longest whitespace-ended prefix of `text` (found in a few tries)
    whose encoding has at most `max_ids` ids, with those ids. Cutting at whitespace keeps a
    word-level tokenizer's ids of the prefix equal to the start of the whole text's ids."""
    ids = tok.encode(text)
    cut = len(text)
    while len(ids) > max_ids:
        guess = min(cut - 1, int(cut * max_ids / len(ids) * 0.98))
        space = max(text.rfind(" ", 0, guess + 1), text.rfind("\n", 0, guess + 1))
        cut = space if space > 0 else max(guess, 1)
        ids = tok.encode(text[:cut])
    return text[:cut], ids


def _first_token_chars(tok, text: str, first: int) -> int:
    """How many characters of `text` the first token (context, never predicted) stands for."""
    from .tokenizers import CharTokenizer
    if isinstance(tok, CharTokenizer):
        return 1
    lead = len(text) - len(text.lstrip())  # a word tokenizer skips leading whitespace
    piece = tok.decode([first]).strip()      # "hel", "the" (the end-of-word mark removed)
    return lead + (1 if first == getattr(tok, "unk_id", None) else max(1, len(piece)))


def evaluate_text(model, tok, text: str, max_tokens: int) -> dict:
    """Next-token loss over (a prefix of) `text` and its bits per character.

    Every token of the evaluated prefix is predicted (in windows of n_ctx, the last one
    shorter), except the first, which is context. Characters are counted in the original
    text, so an out-of-vocabulary character read as `<unk>` counts as 1 character (not as the
    5 of the decoded "<unk>"), and a BPE tokenizer's normalisation (lowercase, spaces around
    punctuation) does not change the count. Returns loss (nats/token), tokens, characters,
    unknown (tokens that are `<unk>`) and bits_per_char.
    """
    from .training import evaluate_full
    prefix, ids = _text_for_tokens(tok, text, max_tokens + 1)
    if len(ids) < 2:
        raise ValueError(f"the text to evaluate encodes to {len(ids)} token(s); need at least 2")
    ids = np.asarray(ids, dtype=np.int64)
    block = model.config.n_ctx
    n_full = (len(ids) - 1) // block
    total = 0.0
    if n_full:
        total += evaluate_full(model, ids[:n_full * block + 1], block) * n_full * block
    tail = ids[n_full * block:]
    if len(tail) > 1:  # the last, shorter window
        total += evaluate_full(model, tail, len(tail) - 1) * (len(tail) - 1)
    n_tokens = len(ids) - 1
    unk = getattr(tok, "unk_id", None)
    n_chars = max(1, len(prefix) - _first_token_chars(tok, prefix, int(ids[0])))
    return {"loss": total / n_tokens, "tokens": n_tokens, "characters": n_chars,
            "unknown": int((ids[1:] == unk).sum()) if unk is not None else 0,
            "bits_per_char": total / n_chars / math.log(2)}


def cmd_eval(args) -> int:
    from .data import load_corpus
    from .training import load_checkpoint
    model, tok, state = load_checkpoint(args.ckpt)
    data = args.data or state.get("train_config", {}).get("data", "shakespeare")
    corpus = load_corpus(data)
    r = evaluate_text(model, tok, corpus.val, args.max_tokens)
    if r["unknown"]:
        print(f"minigpt eval: warning: {r['unknown']:,} of the {r['characters']:,} characters "
              f"evaluated ({100 * r['unknown'] / r['characters']:.2f}%) are not in the "
              "tokenizer's vocabulary and were read as <unk>; the bits per char below are over "
              "text that had them", file=sys.stderr)
    print(f"data: {data} (validation split, {r['tokens']:,} tokens, "
          f"{r['characters']:,} characters)")
    print(f"validation loss: {r['loss']:.4f} nats/token")
    print(f"perplexity:      {math.exp(r['loss']):.3f}")
    print(f"bits per char:   {r['bits_per_char']:.4f}")
    return 0


def cmd_demo(args) -> int:
    """Pretrain the demo model on Shakespeare, plot the loss, print a sample."""
    from .sample import generate
    from .training import TrainConfig, pretrain
    out = args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S")
    cfg = TrainConfig(data="shakespeare", preset="demo", steps=args.steps, batch_size=32,
                      lr=2e-3, warmup=50, weight_decay=0.01, eval_interval=200,
                      eval_batches=8, ckpt_interval=200, seed=args.seed, out=out)
    print(f"minigpt demo: a char-level GPT-1 ({cfg.preset} preset) learns Shakespeare for "
          f"{cfg.steps} steps; run directory {out}")
    summary = pretrain(cfg, force=False, progress=not args.no_progress)
    _print_summary(summary)
    model, tok = summary["model"], summary["tokenizer"]
    prompt = tok.encode("ROMEO:\n")
    new = generate(model, prompt, args.sample_tokens, temperature=0.8, top_k=40, seed=args.seed)
    text = tok.decode(prompt + new)
    (Path(out) / "sample.txt").write_text(text, encoding="utf-8")
    print("\n----- sample (temperature 0.8, top-k 40) -----")
    print(text)
    print("-----------------------------------------------")
    return 130 if summary["status"] == "interrupted" else 0


def build_parser() -> argparse.ArgumentParser:
    from .training import TrainConfig
    parser = argparse.ArgumentParser(prog="minigpt", description="GPT-1 from scratch in NumPy")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="train a language model (the paper's L1)")
    _add_train_args(p, TrainConfig())
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("sample", help="generate text from a checkpoint")
    p.add_argument("--ckpt", required=True, help="run/checkpoint directory or HuggingFace dir")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=nonneg_int, default=200)
    p.add_argument("--temperature", type=nonneg_float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="sample among the k most likely tokens (k >= 1)")
    p.add_argument("--top-p", type=probability, default=None,
                   help="sample within the smallest set of probability >= p, p in (0, 1]")
    p.add_argument("--seed", type=nonneg_int, default=None)
    p.add_argument("--no-cache", action="store_true", help="recompute the window at every step")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="validation loss, perplexity and bits per character")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", default=None, help="default: the data the checkpoint was trained on")
    p.add_argument("--max-tokens", type=positive_int, default=65536,
                   help="evaluate at most this many tokens")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="pretrain a small model on Shakespeare (~3 min on 2 cores)")
    p.add_argument("--steps", type=positive_int, default=DEMO_STEPS)
    p.add_argument("--out", default=None, help="default: runs/demo-<date>-<time>")
    p.add_argument("--seed", type=nonneg_int, default=1337)
    p.add_argument("--sample-tokens", type=nonneg_int, default=300)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


DEMO_STEPS = 1000
_EXTRA_COMMANDS = []  # other modules (fine-tuning) register their sub-commands here


def _finetune_commands(sub) -> None:
    from .training.finetune import add_commands  # finetune, predict
    add_commands(sub)


_EXTRA_COMMANDS.append(_finetune_commands)


def _trace_commands(sub) -> None:
    from .trace import add_commands  # trace
    add_commands(sub)


_EXTRA_COMMANDS.append(_trace_commands)


def _assignments_commands(sub) -> None:
    from .assignments.cli import add_commands  # assignments list | release | grade
    add_commands(sub)


_EXTRA_COMMANDS.append(_assignments_commands)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .training import CheckpointError
    from .training import TrainingError
    try:
        return args.func(args)
    except (TrainingError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"minigpt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handling: no traceback
        print(f"\nminigpt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
