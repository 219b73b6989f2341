"""The files a tokenizer is saved in and loaded from, read with errors that name the file.

    vocab.json              base vocabulary, token -> id (HuggingFace layout)
    merges.txt              BPE only: "#version: 0.2", then one merge "left right" per line
    tokenizer_config.json   {"type": "char" | "bpe", "special_tokens": [...], "options": {...}}

OpenAI's original release names the same two BPE files encoder_bpe_40000.json and
vocab_40000.bpe (pretrained.py finds which layout a folder holds).
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CONFIG_FILE", "VOCAB_FILE", "MERGES_FILE", "MERGES_HEADER", "UNK_TOKEN",
           "read_text", "read_json", "read_vocab", "read_config", "read_merges", "bpe_options"]

UNK_TOKEN = "<unk>"
CONFIG_FILE = "tokenizer_config.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
MERGES_HEADER = "#version: 0.2"


def read_text(path: Path) -> str:
    """A UTF-8 tokenizer file (FileNotFoundError / ValueError naming it)."""
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def read_json(path: Path):
    """A JSON tokenizer file (ValueError naming it and the line when corrupt)."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt JSON ({e.msg} at line {e.lineno})") from None


def read_vocab(path: Path, unk_token: str | None = None) -> dict[str, int]:
    """A token -> id JSON file whose ids are exactly 0..n-1 (they index the embedding rows)."""
    vocab = read_json(path)
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


def read_config(directory: Path) -> dict:
    """tokenizer_config.json of `directory`, its type, special tokens and options checked."""
    path = directory / CONFIG_FILE
    config = read_json(path)
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"{path}: not a minigpt tokenizer config (no \"type\" field)")
    specials = config.get("special_tokens", [])
    if not isinstance(specials, list) or not all(isinstance(s, str) and s for s in specials):
        raise ValueError(f"{path}: \"special_tokens\" must be a list of non-empty strings")
    if not isinstance(config.get("options", {}), dict):
        raise ValueError(f"{path}: \"options\" must be a JSON object")
    return config


def bpe_options(config: dict) -> dict:
    """The BPETokenizer keyword arguments a tokenizer_config.json holds."""
    opts = config.get("options", {})
    out = {"special_tokens": list(config.get("special_tokens", []))}
    for key in ("lowercase", "keep_newlines"):
        if key in opts:
            out[key] = bool(opts[key])
    if "unk_token" in opts:
        out["unk_token"] = str(opts["unk_token"])
    return out


def read_merges(path: Path, header_always: bool) -> list[tuple[int, tuple[str, str]]]:
    """(line number, (left, right)) per merge. HuggingFace's merges.txt may start with a
    "#version" line; OpenAI's .bpe always has one header line. Blank lines are skipped."""
    lines = read_text(path).split("\n")
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
