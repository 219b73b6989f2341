"""Encoding large amounts of text straight into NumPy arrays, tested equal to `encode`.

`tokenizer.encode(text)` (char.py, bpe.py) is the readable reference: a Python list of ints.
`minigpt prepare` encodes gigabytes, so it asks `array_encoder(tokenizer)` for a function
text -> 1-D array of ids with the same values:

* CharTokenizer: a lookup table indexed by code point (0x110000 entries, 8.9 MB as int64):
  `table[np.frombuffer(text.encode("utf-32-le"), np.uint32)]`, no Python loop per character
  (hundreds of MB/s instead of ~20).
* BPETokenizer: bpe.py's own `encode` (`pre_tokenize`, then each word's ids from its cache
  of encoded words, so BPE's merge loop runs once per distinct word) on blocks of about a
  megabyte (the caller's), so the list of Python ints stays small. Measured on Shakespeare
  with a 1000-token vocabulary (2026-12-03, 2-core machine, load ~1.3): ~8.5 MB/s once the
  cache is warm. The `tokenizers` package (Rust) set up with the same rules (BertNormalizer,
  BertPreTokenizer, BPE with `</w>`) gave the same ids but ran at 1.2-2 MB/s in the same
  measurement, one string or pieces of 1-100 kB alike, so it is not used.

tests/test_prepare.py checks both against `encode` on generated text (hypothesis), including
accents, CJK, control characters, "<unk>", surrogates and newlines.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .bpe import BPETokenizer
from .char import CharTokenizer

__all__ = ["array_encoder"]

CODE_POINTS = 0x110000     # every Unicode code point (and every lone surrogate) is below this


def array_encoder(tokenizer, dtype=np.int64) -> Callable[[str], np.ndarray]:
    """encode(text) -> the ids of `text` as a 1-D `dtype` array, equal to
    np.asarray(tokenizer.encode(text), dtype)."""
    if isinstance(tokenizer, CharTokenizer):
        return _char_encoder(tokenizer, dtype)
    if isinstance(tokenizer, BPETokenizer):
        return _bpe_encoder(tokenizer, dtype)
    return lambda text: np.asarray(tokenizer.encode(text), dtype=dtype)


def _char_encoder(tokenizer: CharTokenizer, dtype) -> Callable[[str], np.ndarray]:
    table = np.full(CODE_POINTS, tokenizer.unk_id, dtype=dtype)
    for ch in tokenizer.chars:
        table[ord(ch)] = tokenizer.token_to_id(ch)

    def encode(text: str) -> np.ndarray:
        # "surrogatepass": a lone surrogate (possible in a Python str) keeps its code point,
        # which the table maps to <unk>, as CharTokenizer.encode does
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return table[codes]

    return encode


def _bpe_encoder(tokenizer: BPETokenizer, dtype) -> Callable[[str], np.ndarray]:
    # the caller hands over blocks of about a megabyte, so the list of ints stays small
    return lambda text: np.asarray(tokenizer.encode(text), dtype=dtype)
