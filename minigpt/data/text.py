"""A corpus for language-model training: its train and validation text, and its token ids.

    load_corpus("shakespeare")   the plays (shakespeare.py), split by play
    load_corpus("my_text.txt")   a UTF-8 text file, split by position: the last 10% is validation
    encode_corpus(tok, text)     the ids of a text as one int32 array, encoded piece by piece
                                 (memory: the text, the ids and one piece)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .shakespeare import shakespeare_text

__all__ = ["Corpus", "load_corpus", "read_text_file", "encode_corpus", "text_pieces",
           "USER_VAL_DIVISOR", "CHUNK_CHARS", "LONG_WORD_CHARS"]

USER_VAL_DIVISOR = 10      # a user text file: its last n // 10 characters are validation
CHUNK_CHARS = 2**20        # encode_corpus's pieces: about a million characters each
LONG_WORD_CHARS = 1000     # a run without whitespace longer than this is encoded in pieces
_LONG_RUN = re.compile(r"\S{%d,}" % (LONG_WORD_CHARS + 1))


@dataclass
class Corpus:
    """Training and validation text of one corpus."""
    train: str
    val: str
    name: str


def read_text_file(path) -> str:
    """A user's UTF-8 text file, with clear errors for what cannot be a training corpus.

    A byte-order mark is dropped and line endings become "\\n" (as text-mode reading does).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus file not found: {path} (give 'shakespeare' or the "
                                f"path of a UTF-8 text file)")
    if not path.is_file():
        raise ValueError(f"corpus path is not a regular file: {path}")
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError(f"{path} looks binary (it contains NUL bytes); a corpus must be "
                         f"UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (undecodable byte at offset {e.start}); "
                         f"convert it to UTF-8 first") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ValueError(f"{path} is empty (no text to train on)")
    return text



def load_corpus(name_or_path: str = "shakespeare", *, cache=None) -> Corpus:
    """"shakespeare" (the default corpus) or the path of a UTF-8 text file.

    A text file is split by position: train = text[:n - k], val = text[n - k:] with
    k = max(1, n // 10), the last 10% of its characters.
    """
    if str(name_or_path) == "shakespeare":
        train, val = shakespeare_text(cache)
        return Corpus(train, val, "shakespeare")
    text = read_text_file(name_or_path)
    if len(text) < 2:
        raise ValueError(f"{name_or_path} holds {len(text)} character; a train and a val "
                         f"split need at least 2")
    k = max(1, len(text) // USER_VAL_DIVISOR)
    return Corpus(text[:len(text) - k], text[len(text) - k:], str(name_or_path))


def encode_corpus(tokenizer, text: str, *, chunk_chars: int = CHUNK_CHARS) -> np.ndarray:
    """Token ids of `text` as one int32 array (4 bytes per token is plenty for any vocab),
    encoded piece by piece so memory stays bounded: the ids go straight into a preallocated
    array, never into one Python list for the whole text (200 MB of characters would be a
    1.6 GB list).

    Pieces end just after a space or newline (about `chunk_chars` characters each), so every
    word is encoded whole and the ids equal `tokenizer.encode(text)`, with one documented
    exception: a run of more than LONG_WORD_CHARS characters without whitespace (no word of
    any language; a pasted blob, or one character repeated) is encoded in LONG_WORD_CHARS
    pieces, which keeps BPE's per-word work bounded."""
    n = len(text)
    capacity = n + 16      # grown by 1.5x if a tokenizer yields more ids than characters
    out = np.empty(capacity, dtype=np.int32)
    filled = 0
    for piece in text_pieces(text, chunk_chars, getattr(tokenizer, "unk_token", None)):
        ids = np.asarray(tokenizer.encode(piece), dtype=np.int32)
        if filled + ids.size > capacity:
            capacity = max(filled + ids.size, capacity + capacity // 2)
            out = np.resize(out, capacity)   # rare: normalisation that expands characters
        out[filled:filled + ids.size] = ids
        filled += ids.size
    if filled < 0.9 * capacity:          # BPE: ~4 characters per token; give the rest back
        return out[:filled].copy()
    return out[:filled]


def text_pieces(text: str, chunk_chars: int = CHUNK_CHARS, keep_whole: str | None = None):
    """Consecutive pieces of `text` (joined, they are `text`): each about `chunk_chars`
    characters, ending just after a space or newline when there is one, never cutting an
    occurrence of `keep_whole` (the tokenizer's literal unknown token); a run of more than
    LONG_WORD_CHARS characters without whitespace is cut into LONG_WORD_CHARS pieces."""
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be >= 1, got {chunk_chars}")
    p, n = 0, len(text)
    while p < n:
        end = min(p + chunk_chars, n)
        if end < n:
            cut = max(text.rfind(" ", p, end), text.rfind("\n", p, end)) + 1
            if cut > p:
                end = cut
            if keep_whole:   # an unknown token with a space in it must not be cut in two
                k = len(keep_whole)
                hit = text.find(keep_whole, max(p, end - k + 1), end + k - 1)
                if hit != -1 and hit < end:
                    end = hit if hit > p else hit + len(keep_whole)
        piece = text[p:end]
        start = 0
        for m in _LONG_RUN.finditer(piece):
            if m.start() > start:
                yield piece[start:m.start()]
            for q in range(m.start(), m.end(), LONG_WORD_CHARS):
                yield piece[q:min(q + LONG_WORD_CHARS, m.end())]
            start = m.end()
        if start < len(piece):
            yield piece[start:]
        p = end
