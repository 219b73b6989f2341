"""What every tokenizer shares: the id <-> token tables, special tokens and saving."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from ..fileio import atomic_write_text
from .files import CONFIG_FILE, VOCAB_FILE

__all__ = ["Tokenizer"]


class Tokenizer:
    """What both tokenizers share: the id <-> token tables and special tokens.

    Subclasses fill `_base` (token -> id of the trained/loaded vocabulary, ids 0..n-1) and
    implement `encode`, `decode`, `_save_files` and `_options`.
    """

    type_name = ""

    def __init__(self, base_vocab: dict[str, int], unk_token: str,
                 special_tokens: Iterable[str] = ()):
        if unk_token not in base_vocab:
            raise ValueError(f"unknown token {unk_token!r} is not in the vocabulary")
        self._base = dict(base_vocab)
        self._ids = dict(base_vocab)                   # token -> id, specials included
        self._tokens = [""] * len(base_vocab)          # id -> token
        for tok, i in base_vocab.items():
            self._tokens[i] = tok
        self.unk_token = unk_token
        self.unk_id = base_vocab[unk_token]
        self._specials: list[str] = []
        self.add_special_tokens(list(special_tokens))

    # -- vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included: the model's embedding needs this many rows."""
        return len(self._tokens)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def special_tokens(self) -> list[str]:
        return list(self._specials)

    @property
    def special_ids(self) -> list[int]:
        return [self._ids[t] for t in self._specials]

    def token_to_id(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary") from None

    def id_to_token(self, idx: int) -> str:
        idx = int(idx)
        if not 0 <= idx < len(self._tokens):
            raise ValueError(f"token id {idx} is outside the vocabulary [0, {len(self._tokens)})")
        return self._tokens[idx]

    def get_vocab(self) -> dict[str, int]:
        """token -> id for every id, special tokens included (a copy)."""
        return dict(self._ids)

    def add_special_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Append tokens at the end of the vocabulary; returns their ids.

        A token already present keeps its id (so adding GPT-1's three tokens twice is
        harmless). The model's embedding must then grow to `vocab_size` rows.
        """
        if isinstance(tokens, str):
            raise TypeError("add_special_tokens takes a list of strings, not one string")
        ids = []
        for tok in tokens:
            if not isinstance(tok, str) or not tok:
                raise ValueError(f"special tokens must be non-empty strings, got {tok!r}")
            if tok not in self._ids:
                self._ids[tok] = len(self._tokens)
                self._tokens.append(tok)
                self._specials.append(tok)
            ids.append(self._ids[tok])
        return ids

    def _check_ids(self, ids) -> list[int]:
        out = [int(i) for i in ids]
        n = len(self._tokens)
        for i in out:
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {n})")
        return out

    # -- files
    def save(self, directory) -> Path:
        """Write vocab.json (+ merges.txt) and tokenizer_config.json into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / VOCAB_FILE,
                           json.dumps(self._base, ensure_ascii=False) + "\n")
        self._save_files(directory)
        config = {"type": self.type_name, "special_tokens": self._specials,
                  "options": self._options()}
        atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        return directory

    def _save_files(self, directory: Path) -> None:
        pass

    def _options(self) -> dict:
        return {"unk_token": self.unk_token}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, "
                f"special_tokens={self._specials}, options={self._options()})")
