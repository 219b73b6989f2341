"""`minigpt eval`: validation loss, perplexity and bits per character of a checkpoint.

    minigpt eval --ckpt runs/tiny [--data my_text.txt] [--max-tokens 65536]

--data is a text file, "shakespeare", or a folder written by `minigpt prepare` (its validation
shards; they hold tokens, not text, so there is no bits-per-character figure for them).
"""
from __future__ import annotations

import math
import sys

import numpy as np

from ..checks import argparse_type, positive_int
from ..data import load_corpus
from ..data.shards import is_prepared_folder, open_prepared
from ..tokenizers import CharTokenizer
from ..training import evaluate_full, load_checkpoint

__all__ = ["add_commands", "cmd_eval", "evaluate_text", "evaluate_prepared", "sum_of_losses"]


def add_commands(sub) -> None:
    p = sub.add_parser("eval", help="validation loss, perplexity and bits per character")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", default=None, help="default: the data the checkpoint was trained on")
    p.add_argument("--max-tokens", type=argparse_type(positive_int), default=65536,
                   help="evaluate at most this many tokens")
    p.set_defaults(func=cmd_eval)


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
    prefix, ids = _text_for_tokens(tok, text, max_tokens + 1)
    if len(ids) < 2:
        raise ValueError(f"the text to evaluate encodes to {len(ids)} token(s); need at least 2")
    total, n_tokens = sum_of_losses(model, np.asarray(ids, dtype=np.int64))
    unk = getattr(tok, "unk_id", None)
    n_chars = max(1, len(prefix) - _first_token_chars(tok, prefix, int(ids[0])))
    return {"loss": total / n_tokens, "tokens": n_tokens, "characters": n_chars,
            "unknown": int((np.asarray(ids[1:]) == unk).sum()) if unk is not None else 0,
            "bits_per_char": total / n_chars / math.log(2)}


def sum_of_losses(model, ids: np.ndarray) -> tuple[float, int]:
    """(summed next-token loss in nats, number of predicted tokens) over `ids`: every token
    but the first is predicted, in windows of n_ctx (the last one shorter)."""
    block = model.config.n_ctx
    n_full = (len(ids) - 1) // block
    total = 0.0
    if n_full:
        total += evaluate_full(model, ids[:n_full * block + 1], block) * n_full * block
    tail = ids[n_full * block:]
    if len(tail) > 1:  # the last, shorter window
        total += evaluate_full(model, tail, len(tail) - 1) * (len(tail) - 1)
    return total, len(ids) - 1


def evaluate_prepared(model, folder, max_tokens: int) -> dict:
    """Next-token loss over the first `max_tokens` + 1 tokens of a prepared folder's
    validation shards (each shard on its own: a window never spans two)."""
    data = open_prepared(folder)
    if data.vocab_size != model.config.vocab_size:
        raise ValueError(f"{folder} was prepared with a vocabulary of {data.vocab_size:,} tokens; "
                         f"this checkpoint's model has {model.config.vocab_size:,}: evaluate it "
                         "on the folder it was trained on, or on a text file")
    total, n_tokens, left = 0.0, 0, max_tokens + 1
    for shard in data.val.shards:
        ids = np.asarray(shard[:left], dtype=np.int64)
        if len(ids) >= 2:
            s, n = sum_of_losses(model, ids)
            total, n_tokens, left = total + s, n_tokens + n, left - len(ids)
        if left < 2:
            break
    if n_tokens == 0:
        raise ValueError(f"{folder}: the validation split holds no shard of 2 or more tokens")
    return {"loss": total / n_tokens, "tokens": n_tokens}


def cmd_eval(args) -> int:
    model, tok, state = load_checkpoint(args.ckpt)
    data = args.data or state.get("train_config", {}).get("data", "shakespeare")
    if is_prepared_folder(data):
        r = evaluate_prepared(model, data, args.max_tokens)
        print(f"data: {data} (prepared folder, validation shards, {r['tokens']:,} tokens)")
        print(f"validation loss: {r['loss']:.4f} nats/token")
        print(f"perplexity:      {math.exp(r['loss']):.3f}")
        print("bits per char:   n/a (a prepared folder holds tokens, not the text)")
        return 0
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
