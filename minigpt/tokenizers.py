"""Tokenizers: characters, and GPT-1's byte-pair encoding (BPE).

Two tokenizers share one small interface (`encode`, `decode`, `vocab_size`, `token_to_id`,
`id_to_token`, `add_special_tokens`, `save`), and `load_tokenizer(directory)` brings back
whichever one a directory holds:

* `CharTokenizer`: one id per character. The demo's tokenizer: tiny vocabulary, exact round
  trip, and a loss in nats per character that needs no conversion.
* `BPETokenizer`: GPT-1's subword tokenizer. Words end with `</w>`, merges are learned by
  pair frequency, text is lowercased, and `<unk>` is id 0. It trains from text and it loads
  the released GPT-1 files (`from_pretrained`), giving the same ids as `transformers`.

Files a tokenizer writes with `save(directory)`:

    vocab.json              base vocabulary, token -> id (HuggingFace layout)
    merges.txt              BPE only: "#version: 0.2", then one merge "left right" per line
    tokenizer_config.json   {"type": "char" | "bpe", "special_tokens": [...], "options": {...}}

Special tokens (GPT-1's fine-tuning `_start_`, `_delimiter_`, `_classify_`) are not in
vocab.json: they are listed in tokenizer_config.json and appended after the base vocabulary
when loading, which keeps vocab.json + merges.txt loadable by `transformers` unchanged.
`encode` never produces a special token from plain text (a user's text that happens to
contain "_start_" stays text); code that builds fine-tuning inputs asks for their ids with
`token_to_id`.
"""
from __future__ import annotations

import functools
import json
import re
import string
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from . import dispatch
from .fileio import atomic_write_text

__all__ = ["CharTokenizer", "BPETokenizer", "load_tokenizer", "GPT1_SPECIAL_TOKENS",
           "END_OF_WORD", "CONFIG_FILE", "VOCAB_FILE", "MERGES_FILE", "pair_counts",
           "merge_symbols"]

END_OF_WORD = "</w>"
UNK_TOKEN = "<unk>"
GPT1_SPECIAL_TOKENS = ("_start_", "_delimiter_", "_classify_")
GPT1_VOCAB_SIZE = 40478

CONFIG_FILE = "tokenizer_config.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
MERGES_HEADER = "#version: 0.2"
OPENAI_ENCODER_FILE = "encoder_bpe_40000.json"
OPENAI_MERGES_FILE = "vocab_40000.bpe"


# ---------- file helpers

def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt JSON ({e.msg} at line {e.lineno})") from None


def _read_vocab(path: Path, unk_token: str | None = None) -> dict[str, int]:
    """A token -> id JSON file whose ids are exactly 0..n-1 (they index the embedding rows)."""
    vocab = _read_json(path)
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"{path}: expected a non-empty JSON object mapping token -> id")
    bad = [t for t, i in vocab.items() if not isinstance(i, int) or isinstance(i, bool)]
    if bad:
        raise ValueError(f"{path}: id of token {bad[0]!r} is not an integer")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{path}: ids must be exactly 0..{len(vocab) - 1}, each used once")
    if unk_token is not None and unk_token not in vocab:
        raise ValueError(f"{path}: the unknown token {unk_token!r} is not in the vocabulary")
    return vocab


def _read_config(directory: Path) -> dict:
    path = directory / CONFIG_FILE
    config = _read_json(path)
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"{path}: not a minigpt tokenizer config (no \"type\" field)")
    specials = config.get("special_tokens", [])
    if not isinstance(specials, list) or not all(isinstance(s, str) and s for s in specials):
        raise ValueError(f"{path}: \"special_tokens\" must be a list of non-empty strings")
    if not isinstance(config.get("options", {}), dict):
        raise ValueError(f"{path}: \"options\" must be a JSON object")
    return config


# ---------- shared base

class _Tokenizer:
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


# ---------- characters

class CharTokenizer(_Tokenizer):
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
        config = _read_config(directory)
        if config["type"] != cls.type_name:
            raise ValueError(f"{directory / CONFIG_FILE}: type is {config['type']!r}, not 'char'")
        unk = config["options"].get("unk_token", UNK_TOKEN) if "options" in config else UNK_TOKEN
        path = directory / VOCAB_FILE
        vocab = _read_vocab(path, unk)
        if vocab[unk] != 0:
            raise ValueError(f"{path}: the unknown token {unk!r} must have id 0")
        by_id = sorted(vocab, key=vocab.get)[1:]
        if any(len(c) != 1 for c in by_id):
            raise ValueError(f"{path}: a character vocabulary holds single characters only")
        return cls(by_id, unk_token=unk, special_tokens=config.get("special_tokens", []))


# ---------- BPE: text normalisation
#
# transformers' OpenAIGPTTokenizer (5.x; and its "fast" tokenizer in 4.x) normalises with the
# `tokenizers` library's BertNormalizer(lowercase=True) and splits with BertPreTokenizer. Their
# rules, reproduced below character for character:
#   1. clean: drop NUL, U+FFFD and every "other" character (Unicode category C*: controls,
#      format, surrogates, private use, unassigned) except \t \n \r; then every White_Space
#      character (\t \n \r included) becomes a space. (So \v \f U+0085 vanish: they are
#      controls first.)
#   2. put spaces around CJK ideographs;
#   3. when lowercasing: strip accents (NFD, drop non-spacing marks Mn), then lowercase each
#      character on its own (no final-sigma rule);
#   4. split on spaces; every punctuation character (ASCII punctuation or category P*) is a
#      word of its own.

# Rust's char::is_whitespace, i.e. the Unicode White_Space property.
_WHITE_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                         + "".join(chr(c) for c in range(0x2000, 0x200B)))
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_ASCII_WORDS = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9 ]")
_ASCII_PUNCT = frozenset(string.punctuation)


def _ascii_clean_table(keep_newlines: bool) -> dict[int, str | None]:
    table: dict[int, str | None] = {c: None for c in range(32)}
    table[127] = None
    for ws in "\t\n\r":
        table[ord(ws)] = " "
    if keep_newlines:
        table[ord("\n")] = "\n"
    return table


_ASCII_TABLES = {False: _ascii_clean_table(False), True: _ascii_clean_table(True)}


@functools.lru_cache(maxsize=1 << 16)
def _clean_char(ch: str) -> str:
    """Steps 1 and 2 for one non-ASCII character."""
    cp = ord(ch)
    if cp == 0xFFFD or unicodedata.category(ch)[0] == "C":
        return ""
    if ch in _WHITE_SPACE:
        return " "
    if any(lo <= cp <= hi for lo, hi in _CJK_RANGES):
        return f" {ch} "
    return ch


@functools.lru_cache(maxsize=1 << 16)
def _drop_mark(ch: str) -> str:
    return "" if unicodedata.category(ch) == "Mn" else ch


@functools.lru_cache(maxsize=1 << 16)
def _lower_char(ch: str) -> str:
    return ch.lower()


@functools.lru_cache(maxsize=1 << 16)
def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch)[0] == "P"


def _split_punct(chunk: str) -> list[str]:
    """Step 4 inside one space-free chunk: punctuation characters become words of their own."""
    if chunk.isascii():
        return _ASCII_WORDS.findall(chunk)
    words, cur = [], []
    for ch in chunk:
        if _is_punct(ch):
            if cur:
                words.append("".join(cur))
                cur = []
            words.append(ch)
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def _join_words(words: Sequence[str]) -> str:
    """Words separated by single spaces, except that a newline word takes no spaces around it."""
    out = []
    for i, w in enumerate(words):
        if i and w != "\n" and words[i - 1] != "\n":
            out.append(" ")
        out.append(w)
    return "".join(out)


# ---------- BPE

class BPETokenizer(_Tokenizer):
    """GPT-1's byte-pair encoding over characters, with `</w>` marking the end of a word.

    Pipeline: `normalize_text` (clean, lowercase, strip accents) -> `pre_tokenize` (words) ->
    BPE on each word -> ids. A word's first symbols are its characters, the last one carrying
    `</w>` ("cat" -> c, a, t</w>); merges then fuse adjacent symbols.

    Which `transformers` path this matches: `transformers.OpenAIGPTTokenizer` as installed
    (5.x), which is built on the `tokenizers` library with BertNormalizer(lowercase=True) and
    BertPreTokenizer; the same rules as the BERT BasicTokenizer fallback that older releases
    used when ftfy or spaCy was missing (lowercase, strip accents, split on whitespace and
    punctuation; no ftfy, no `text_standardize`, no spaCy, newlines are plain whitespace).
    minigpt does NOT reproduce the original ftfy + spaCy path of OpenAI's release. Merges are
    applied as `tokenizers` does: repeatedly merge the leftmost occurrence of the
    lowest-ranked adjacent pair. tests/test_tokenizers.py checks the ids against
    OpenAIGPTTokenizer on generated text.

    Round trip: decode(encode(s)) == normalize(s) for every s whose characters the vocabulary
    knows, where normalize(s) is the normalised text's words joined by single spaces
    ("Hello, World!" -> "hello , world !"). Unknown characters become `<unk>` (id 0).

    Options: `lowercase=False` keeps case and accents (BertNormalizer's strip_accents follows
    lowercase). `keep_newlines=True` keeps each "\\n" as a word of its own (token "\\n</w>",
    like the original GPT-1 vocabulary's id 40477) instead of treating it as a space; it
    departs from transformers, so it is off by default.
    """

    type_name = "bpe"

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]], *,
                 lowercase: bool = True, keep_newlines: bool = False,
                 unk_token: str = UNK_TOKEN, special_tokens: Iterable[str] = ()):
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise ValueError(f"vocabulary ids must be exactly 0..{len(vocab) - 1}")
        super().__init__(vocab, unk_token, special_tokens)
        self.lowercase = bool(lowercase)
        self.keep_newlines = bool(keep_newlines)
        self._merges = [tuple(m) for m in merges]
        for rank, (a, b) in enumerate(self._merges):
            missing = [t for t in (a, b, a + b) if t not in vocab]
            if missing:
                raise ValueError(f"merge {rank} ({a!r}, {b!r}): {missing[0]!r} is not in the "
                                 f"vocabulary")
        # a pair listed twice takes its last rank, as in `tokenizers` and OpenAI's code
        self._ranks = {pair: rank for rank, pair in enumerate(self._merges)}
        self._cache: dict[str, tuple[int, ...]] = {}

    @property
    def merges(self) -> list[tuple[str, str]]:
        return list(self._merges)

    def _options(self) -> dict:
        return {"unk_token": self.unk_token, "lowercase": self.lowercase,
                "keep_newlines": self.keep_newlines}

    # -- text -> words
    def normalize_text(self, text: str) -> str:
        """Steps 1-3 of the module notes: clean, pad CJK, strip accents and lowercase."""
        if text.isascii():
            text = text.translate(_ASCII_TABLES[self.keep_newlines])
            return text.lower() if self.lowercase else text
        text = text.translate(_ASCII_TABLES[self.keep_newlines])
        text = _NON_ASCII.sub(lambda m: _clean_char(m.group()), text)
        if self.lowercase:
            text = unicodedata.normalize("NFD", text)
            text = _NON_ASCII.sub(lambda m: _lower_char(_drop_mark(m.group())), text).lower()
        return text

    def pre_tokenize(self, text: str) -> list[str]:
        """The words BPE runs on, in order (normalisation included)."""
        text = self.normalize_text(text)
        if text.isascii():
            return _ASCII_WORDS.findall(text)
        words = []
        for chunk in text.split(" "):
            if not chunk:
                continue
            if self.keep_newlines and "\n" in chunk:
                for j, part in enumerate(chunk.split("\n")):
                    if j:
                        words.append("\n")
                    if part:
                        words.extend(_split_punct(part))
            else:
                words.extend(_split_punct(chunk))
        return words

    def normalize(self, text: str) -> str:
        """What decode(encode(text)) gives back when every character is in the vocabulary."""
        return _join_words(self.pre_tokenize(text))

    # -- BPE
    def _bpe(self, word: str) -> list[str]:
        """Symbols of one word after the merges: always the lowest-ranked adjacent pair first,
        leftmost on ties, one merge at a time (`tokenizers`' order)."""
        ### BEGIN SOLUTION
        symbols = list(word[:-1]) + [word[-1] + END_OF_WORD]
        ranks = self._ranks
        while len(symbols) > 1:
            best_rank, best_i = None, -1
            for i in range(len(symbols) - 1):
                r = ranks.get((symbols[i], symbols[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank, best_i = r, i
            if best_rank is None:
                break
            symbols[best_i:best_i + 2] = [symbols[best_i] + symbols[best_i + 1]]
        return symbols
        ### END SOLUTION

    def _encode_word(self, word: str) -> tuple[int, ...]:
        ids = self._cache.get(word)
        if ids is None:
            get, unk = self._base.get, self.unk_id
            ids = tuple(get(s, unk) for s in self._bpe(word))
            if len(self._cache) >= 200_000:  # bound memory on endless streams of new words
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Token strings (e.g. ['hel', 'lo</w>']); unknown symbols shown as `<unk>`."""
        return [self._tokens[i] for i in self.encode(text)]

    def encode(self, text: str) -> list[int]:
        """Ids of `text`. The literal unknown token (`<unk>`, exact case) encodes to its id, as
        in `transformers`, which matches it before normalising; no other special token is ever
        produced from text, so user text cannot inject `_start_` or `_classify_`."""
        out: list[int] = []
        for i, piece in enumerate(text.split(self.unk_token)):
            if i:
                out.append(self.unk_id)
            for word in self.pre_tokenize(piece):
                out.extend(self._encode_word(word))
        return out

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        """Concatenate tokens; each `</w>` ends a word; words are joined by single spaces.

        Special tokens decode as words of their own. `<unk>` decodes as the text "<unk>"
        glued to its neighbours (the unknown character's word boundary is lost).
        """
        ids = self._check_ids(ids)
        special = set(self.special_ids)
        words, cur = [], []
        for i in ids:
            tok = self._tokens[i]
            if i in special:
                if cur:
                    words.append("".join(cur))
                    cur = []
                if not skip_special_tokens:
                    words.append(tok)
            elif tok.endswith(END_OF_WORD):
                cur.append(tok[:-len(END_OF_WORD)])
                words.append("".join(cur))
                cur = []
            else:
                cur.append(tok)
        if cur:
            words.append("".join(cur))
        return _join_words(words)

    # -- training
    @classmethod
    def train(cls, text: str, vocab_size: int | None = None, *, num_merges: int | None = None,
              lowercase: bool = True, keep_newlines: bool = False, min_frequency: int = 2,
              special_tokens: Iterable[str] = ()) -> "BPETokenizer":
        """Learn merges from `text`, GPT-1 style.

        Vocabulary: `<unk>` (id 0), then every character seen in two forms, inside a word
        ("e") and ending one ("e</w>"), sorted; then one token per merge in the order learned.
        Give exactly one of `vocab_size` (base vocabulary size to reach, special tokens not
        counted) or `num_merges`. Training stops early when no pair occurs `min_frequency`
        times. Each step merges the most frequent adjacent pair, counted over words weighted
        by their frequency; ties go to the smallest (left, right) pair in string order, so
        the result never depends on hashing or dictionary order.

        The merges are learned by `_learn_merges` below (the reference: recount every pair
        after each merge) or, in ops mode "auto"/"fast", by minigpt/fast/bpe.py (counts
        updated incrementally, a heap for the best pair: seconds for thousands of merges on a
        megabyte of text); both give the same merges.
        """
        if (vocab_size is None) == (num_merges is None):
            raise ValueError("give exactly one of vocab_size or num_merges")
        probe = cls({UNK_TOKEN: 0}, [], lowercase=lowercase, keep_newlines=keep_newlines)
        word_counts = Counter(probe.pre_tokenize(text))
        if not word_counts:
            raise ValueError("cannot train a tokenizer on empty text (no words after "
                             "normalisation)")
        chars = sorted({c for w in word_counts for c in w})
        base = sorted(set(chars) | {c + END_OF_WORD for c in chars})
        vocab = {UNK_TOKEN: 0, **{t: i + 1 for i, t in enumerate(base)}}
        if vocab_size is not None:
            if vocab_size < len(vocab):
                raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(vocab)} "
                                 f"base symbols (<unk> + 2 per character) of this text")
            budget = None
        else:
            if num_merges < 0:
                raise ValueError(f"num_merges must be >= 0, got {num_merges}")
            budget = num_merges
        learn = dispatch.choose("bpe_merges")  # the reference below, or minigpt/fast/bpe.py
        merges = learn(word_counts, vocab, vocab_size, budget, max(1, min_frequency))
        return cls(vocab, merges, lowercase=lowercase, keep_newlines=keep_newlines,
                   special_tokens=special_tokens)

    # -- files
    def _save_files(self, directory: Path) -> None:
        lines = [MERGES_HEADER] + [f"{a} {b}" for a, b in self._merges]
        atomic_write_text(directory / MERGES_FILE, "\n".join(lines) + "\n")

    @classmethod
    def load(cls, directory) -> "BPETokenizer":
        """Load what `save` wrote (vocab.json, merges.txt, tokenizer_config.json)."""
        directory = Path(directory)
        config = _read_config(directory)
        if config["type"] != cls.type_name:
            raise ValueError(f"{directory / CONFIG_FILE}: type is {config['type']!r}, not 'bpe'")
        return cls._from_files(directory / VOCAB_FILE, directory / MERGES_FILE,
                               header_always=False, **_bpe_options(config))

    @classmethod
    def from_pretrained(cls, path, *, special_tokens: Iterable[str] = (),
                        keep_newlines: bool | None = None) -> "BPETokenizer":
        """GPT-1's tokenizer from a HuggingFace directory or OpenAI's original files.

        `path` is a directory holding either `vocab.json` + `merges.txt` (HuggingFace
        `openai-gpt`, or a minigpt save) or `encoder_bpe_40000.json` + `vocab_40000.bpe`
        (OpenAI's finetune-transformer-lm release; the .bpe file's first line is a header).
        A minigpt tokenizer_config.json beside them supplies options and special tokens;
        anything else there (HuggingFace's own tokenizer_config.json) is ignored.
        Pass special_tokens=GPT1_SPECIAL_TOKENS for fine-tuning: they get ids 40478.. .
        """
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"tokenizer directory not found: {directory}")
        options: dict = {}
        config_path = directory / CONFIG_FILE
        if config_path.is_file():
            try:
                config = _read_config(directory)
            except ValueError:
                config = None  # not ours (e.g. HuggingFace's tokenizer_config.json)
            if config is not None:
                if config["type"] != cls.type_name:
                    raise ValueError(f"{config_path}: this directory holds a {config['type']!r} "
                                     f"tokenizer, not BPE; use load_tokenizer()")
                options = _bpe_options(config)
        if keep_newlines is not None:
            options["keep_newlines"] = keep_newlines
        options["special_tokens"] = list(options.get("special_tokens", [])) + list(special_tokens)
        if (directory / VOCAB_FILE).is_file() or (directory / MERGES_FILE).is_file():
            return cls._from_files(directory / VOCAB_FILE, directory / MERGES_FILE,
                                   header_always=False, **options)
        openai = (directory / OPENAI_ENCODER_FILE, directory / OPENAI_MERGES_FILE)
        if openai[0].is_file() or openai[1].is_file():
            return cls._from_files(*openai, header_always=True, **options)
        raise FileNotFoundError(
            f"{directory}: no tokenizer files: expected {VOCAB_FILE} + {MERGES_FILE} "
            f"(HuggingFace) or {OPENAI_ENCODER_FILE} + {OPENAI_MERGES_FILE} (OpenAI)")

    @classmethod
    def _from_files(cls, vocab_path: Path, merges_path: Path, *, header_always: bool,
                    unk_token: str = UNK_TOKEN, **options) -> "BPETokenizer":
        vocab = _read_vocab(vocab_path, unk_token)
        merges = _read_merges(merges_path, header_always)
        for lineno, (a, b) in merges:
            missing = [t for t in (a, b, a + b) if t not in vocab]
            if missing:
                raise ValueError(f"{merges_path}:{lineno}: merge '{a} {b}' uses {missing[0]!r}, "
                                 f"which is not in {vocab_path.name}")
        return cls(vocab, [m for _, m in merges], unk_token=unk_token, **options)


def _bpe_options(config: dict) -> dict:
    opts = config.get("options", {})
    out = {"special_tokens": list(config.get("special_tokens", []))}
    for key in ("lowercase", "keep_newlines"):
        if key in opts:
            out[key] = bool(opts[key])
    if "unk_token" in opts:
        out["unk_token"] = str(opts["unk_token"])
    return out


def _read_merges(path: Path, header_always: bool) -> list[tuple[int, tuple[str, str]]]:
    """(line number, (left, right)) per merge. HuggingFace's merges.txt may start with a
    "#version" line; OpenAI's .bpe always has one header line. Blank lines are skipped."""
    lines = _read_text(path).split("\n")
    out = []
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if lineno == 1 and (header_always or line.startswith("#version")):
            continue
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{path}:{lineno}: expected 'left right', got {line[:80]!r}")
        out.append((lineno, (parts[0], parts[1])))
    return out


# ---------- BPE training

def pair_counts(symbols: Sequence[str]) -> Counter:
    """How often each adjacent pair occurs in one word's symbols ("a a a": (a, a) twice)."""
    return Counter(zip(symbols, symbols[1:]))


def merge_symbols(symbols: list[str], a: str, b: str, new: str) -> list[str]:
    """Replace every (a, b), scanning left to right without overlaps ("a a a" -> "aa a")."""
    out, i, n = [], 0, len(symbols)
    while i < n:
        if i + 1 < n and symbols[i] == a and symbols[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def _learn_merges(word_counts: Counter, vocab: dict[str, int], vocab_size: int | None,
                  budget: int | None, min_frequency: int) -> list[tuple[str, str]]:
    """Grow `vocab` in place; returns the merges in the order learned (their ranks).

    The reference: every step recounts every adjacent pair of every word, merges the best one
    everywhere, and starts over. Slow on a big text (minutes for thousands of merges on a
    megabyte); minigpt/fast/bpe.py updates the counts incrementally instead, tested equal."""
    ### BEGIN SOLUTION
    words = [list(w[:-1]) + [w[-1] + END_OF_WORD] for w in word_counts]  # "low" -> l o w</w>
    freqs = list(word_counts.values())
    merges: list[tuple[str, str]] = []
    while budget is None or len(merges) < budget:
        if vocab_size is not None and len(vocab) >= vocab_size:
            break
        counts: Counter = Counter()
        for symbols, f in zip(words, freqs):
            for pair, k in pair_counts(symbols).items():
                counts[pair] += k * f
        if not counts:
            break
        (a, b), best = min(counts.items(), key=lambda item: (-item[1], item[0]))  # ties: smallest pair
        if best < min_frequency:
            break
        new = a + b
        if (a, b) not in merges:  # a pair can come back once a later merge re-creates `a`
            merges.append((a, b))
        if new not in vocab:  # two different merges can spell the same token
            vocab[new] = len(vocab)
        words = [merge_symbols(symbols, a, b, new) for symbols in words]
    return merges
    ### END SOLUTION


# ---------- dispatch

def load_tokenizer(directory):
    """Load the tokenizer saved in `directory`, whichever kind tokenizer_config.json names."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {directory}")
    config = _read_config(directory)
    kinds = {"char": CharTokenizer, "bpe": BPETokenizer}
    if config["type"] not in kinds:
        raise ValueError(f"{directory / CONFIG_FILE}: unknown tokenizer type {config['type']!r} "
                         f"(expected one of {sorted(kinds)})")
    return kinds[config["type"]].load(directory)


dispatch.register("bpe_merges", "reference", _learn_merges)
