"""The character tokenizer: one id per character (the demo's tokenizer)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..untrusted import cut
from .base import Tokenizer
from .files import CONFIG_FILE, UNK_TOKEN, VOCAB_FILE, read_config, read_vocab

__all__ = ["CharTokenizer"]


class CharTokenizer(Tokenizer):
    """One token per Unicode character; `<unk>` (id 0) for characters never seen in training.

    Ids: 0 is `<unk>`, then the training text's distinct characters in sorted (code point)
    order, then special tokens. decode(encode(s)) == s exactly whenever every character of s
    was seen in training (no normalisation at all: case, whitespace and newlines are kept).
    """

    type_name = "char"

    def __init__(self, chars: Iterable[str], *, unk_token: str = UNK_TOKEN,
                 special_tokens: Iterable[str] = ()):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer vocabulary entries must be single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer vocabulary has repeated characters")
        if len(unk_token) == 1 and unk_token in chars:
            raise ValueError(f"unknown token {unk_token!r} collides with a character")
        vocab = {unk_token: 0, **{c: i + 1 for i, c in enumerate(chars)}}
        super().__init__(vocab, unk_token, special_tokens)
        self._char_ids = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def train(cls, text: str, *, special_tokens: Iterable[str] = ()) -> "CharTokenizer":
        """The vocabulary is the sorted set of characters of `text`."""
        if not text:
            raise ValueError("cannot train a tokenizer on empty text")
        return cls(sorted(set(text)), special_tokens=special_tokens)

    @property
    def chars(self) -> list[str]:
        return list(self._char_ids)

    def encode(self, text: str) -> list[int]:
        get, unk = self._char_ids.get, self.unk_id
        return [get(c, unk) for c in text]

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        """Concatenate the tokens; `<unk>` decodes as the text "<unk>"."""
        ids = self._check_ids(ids)
        if skip_special_tokens:
            special = set(self.special_ids)
            ids = [i for i in ids if i not in special]
        return "".join(self._tokens[i] for i in ids)

    @classmethod
    def load(cls, directory) -> "CharTokenizer":
        directory = Path(directory)
        config = read_config(directory)
        if config["type"] != cls.type_name:
            raise ValueError(f"{directory / CONFIG_FILE}: type is {cut(config['type'])}, "
                             f"not 'char'")
        unk = config["options"].get("unk_token", UNK_TOKEN) if "options" in config else UNK_TOKEN
        path = directory / VOCAB_FILE
        vocab = read_vocab(path, unk)
        if vocab[unk] != 0:
            raise ValueError(f"{path}: the unknown token {unk!r} must have id 0")
        by_id = sorted(vocab, key=vocab.get)[1:]
        if any(len(c) != 1 for c in by_id):
            raise ValueError(f"{path}: a character vocabulary holds single characters only")
        return cls(by_id, unk_token=unk, special_tokens=config.get("special_tokens", []))
