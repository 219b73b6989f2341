"""A corpus for language-model training: its train and validation text, and its token ids.

    load_corpus("shakespeare")   the plays (shakespeare.py), split by play
    load_corpus("my_text.txt")   a UTF-8 text file, split by position: the last 10% is validation
    encode_corpus(tok, text)     the ids of a text as one int32 array
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .shakespeare import shakespeare_text

__all__ = ["Corpus", "load_corpus", "read_text_file", "encode_corpus", "USER_VAL_DIVISOR"]

USER_VAL_DIVISOR = 10      # a user text file: its last n // 10 characters are validation


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


def encode_corpus(tokenizer, text: str) -> np.ndarray:
    """Token ids of `text` as one int32 array (4 bytes per token is plenty for any vocab)."""
    return np.asarray(tokenizer.encode(text), dtype=np.int32)
