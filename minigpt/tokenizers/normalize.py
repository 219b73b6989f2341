r"""GPT-1's text normalisation before BPE: clean, lowercase, strip accents, split into words.

transformers' OpenAIGPTTokenizer (5.x; and its "fast" tokenizer in 4.x) normalises with the
`tokenizers` library's BertNormalizer(lowercase=True) and splits with BertPreTokenizer. Their
rules, reproduced below character for character:
  1. clean: drop NUL, U+FFFD and every "other" character (Unicode category C*: controls,
     format, surrogates, private use, unassigned) except \t \n \r; then every White_Space
     character (\t \n \r included) becomes a space. (So \v \f U+0085 vanish: they are
     controls first.)
  2. put spaces around CJK ideographs;
  3. when lowercasing: strip accents (NFD, drop non-spacing marks Mn), then lowercase each
     character on its own (no final-sigma rule);
  4. split on spaces; every punctuation character (ASCII punctuation or category P*) is a
     word of its own.
"""
from __future__ import annotations

import functools
import re
import string
import unicodedata
from typing import Sequence

__all__ = ["normalize_text", "pre_tokenize", "join_words"]

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


def join_words(words: Sequence[str]) -> str:
    """Words separated by single spaces, except that a newline word takes no spaces around it."""
    out = []
    for i, w in enumerate(words):
        if i and w != "\n" and words[i - 1] != "\n":
            out.append(" ")
        out.append(w)
    return "".join(out)


def normalize_text(text: str, lowercase: bool = True, keep_newlines: bool = False) -> str:
    """Steps 1-3 of the module docstring: clean, pad CJK, strip accents and lowercase."""
    if text.isascii():
        text = text.translate(_ASCII_TABLES[keep_newlines])
        return text.lower() if lowercase else text
    text = text.translate(_ASCII_TABLES[keep_newlines])
    text = _NON_ASCII.sub(lambda m: _clean_char(m.group()), text)
    if lowercase:
        text = unicodedata.normalize("NFD", text)
        text = _NON_ASCII.sub(lambda m: _lower_char(_drop_mark(m.group())), text).lower()
    return text

def pre_tokenize(text: str, lowercase: bool = True, keep_newlines: bool = False) -> list[str]:
    """The words BPE runs on, in order (normalisation included)."""
    text = normalize_text(text, lowercase, keep_newlines)
    if text.isascii():
        return _ASCII_WORDS.findall(text)
    words = []
    for chunk in text.split(" "):
        if not chunk:
            continue
        if keep_newlines and "\n" in chunk:
            for j, part in enumerate(chunk.split("\n")):
                if j:
                    words.append("\n")
                if part:
                    words.extend(_split_punct(part))
        else:
            words.extend(_split_punct(chunk))
    return words
