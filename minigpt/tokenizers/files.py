"""The files a tokenizer is saved in and loaded from, read with errors that name the file.

    vocab.json              base vocabulary, token -> id (HuggingFace layout)
    merges.txt              BPE only: "#version: 0.2", then one merge "left right" per line
    tokenizer_config.json   {"type": "char" | "bpe", "special_tokens": [...], "options": {...}}

OpenAI's original release names the same two BPE files encoder_bpe_40000.json and
vocab_40000.bpe (pretrained.py finds which layout a folder holds).

Every file is checked before it is parsed (sizes, nesting, the number of vocabulary entries:
the MAX_* ceilings below) and after (JSON types: a "lowercase" of "no" is an error, never
true); errors name the file and the field, with long values cut (minigpt.untrusted).
"""
from __future__ import annotations

from pathlib import Path

from ..untrusted import check_field, cut, json_type_name, read_json as read_untrusted_json

__all__ = ["CONFIG_FILE", "VOCAB_FILE", "MERGES_FILE", "MERGES_HEADER", "UNK_TOKEN",
           "MAX_VOCAB_SIZE", "MAX_VOCAB_BYTES", "MAX_MERGES_BYTES", "MAX_TOKEN_CHARS",
           "MAX_CONFIG_BYTES", "OPTION_TYPES", "read_text", "read_json", "read_vocab",
           "read_config", "check_config", "read_merges", "bpe_options"]

UNK_TOKEN = "<unk>"
CONFIG_FILE = "tokenizer_config.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
MERGES_HEADER = "#version: 0.2"

# Ceilings, checked before a file is parsed (GPT-1: 40,478 tokens, an 816 kB vocab.json, a
# 458 kB merges.txt, no token over 30 characters).
MAX_VOCAB_SIZE = 2**20                 # tokens in vocab.json
MAX_VOCAB_BYTES = 64 * 2**20           # size of vocab.json
MAX_MERGES_BYTES = 64 * 2**20          # size of merges.txt
MAX_TOKEN_CHARS = 10_000               # characters of one token in merges.txt
MAX_CONFIG_BYTES = 2**20               # size of tokenizer_config.json
# tokenizer_config.json's options and the JSON type each must have
OPTION_TYPES = {"unk_token": str, "lowercase": bool, "keep_newlines": bool}


def read_text(path: Path, max_bytes: int = MAX_MERGES_BYTES) -> str:
    """A UTF-8 tokenizer file of at most `max_bytes` (FileNotFoundError / ValueError naming
    it)."""
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path}: {size:,} bytes, more than the {max_bytes:,} a tokenizer file "
                         f"may have")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def read_json(path: Path, max_bytes: int = MAX_VOCAB_BYTES, max_entries: int | None = None):
    """A JSON tokenizer file: size, nesting depth and entry count checked before parsing
    (minigpt.untrusted.read_json); ValueError naming it and the line when corrupt."""
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    return read_untrusted_json(path, max_bytes=max_bytes, max_entries=max_entries, kind=None)


def read_vocab(path: Path, unk_token: str | None = None) -> dict[str, int]:
    """A token -> id JSON file whose ids are exactly 0..n-1 (they index the embedding rows);
    at most MAX_VOCAB_SIZE tokens, counted before the file is parsed."""
    vocab = read_json(path, MAX_VOCAB_BYTES, max_entries=MAX_VOCAB_SIZE)
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"{path}: expected a non-empty JSON object mapping token -> id, got a "
                         f"JSON {json_type_name(vocab)}")
    bad = [t for t, i in vocab.items() if not isinstance(i, int) or isinstance(i, bool)]
    if bad:
        raise ValueError(f"{path}: id of token {cut(bad[0])} is not an integer: "
                         f"{cut(vocab[bad[0]])}")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{path}: ids must be exactly 0..{len(vocab) - 1}, each used once")
    if unk_token is not None and unk_token not in vocab:
        raise ValueError(f"{path}: the unknown token {cut(unk_token)} is not in the vocabulary")
    return vocab


def read_config(directory: Path) -> dict:
    """tokenizer_config.json of `directory`, its type, special tokens and options checked."""
    path = directory / CONFIG_FILE
    return check_config(read_json(path, max_bytes=MAX_CONFIG_BYTES), path)


def check_config(config, path: Path) -> dict:
    """A parsed tokenizer_config.json: "type" a string, "special_tokens" a list of non-empty
    strings, "options" an object whose known options have their JSON types (OPTION_TYPES: a
    "lowercase" of "no" is an error, never read as true). ValueError naming `path`."""
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"{path}: not a minigpt tokenizer config (no \"type\" field)")
    check_field(config, "type", (str,), path)
    specials = check_field(config, "special_tokens", (list,), path) or []
    bad = [s for s in specials if not isinstance(s, str) or not s]
    if bad:
        raise ValueError(f"{path}: \"special_tokens\" must be a list of non-empty strings, got "
                         f"{cut(bad[0])} in it")
    if len(specials) > MAX_VOCAB_SIZE:
        raise ValueError(f"{path}: {len(specials):,} special tokens (at most {MAX_VOCAB_SIZE:,})")
    options = check_field(config, "options", (dict,), path) or {}
    unknown = sorted(set(options) - set(OPTION_TYPES))
    if unknown:
        raise ValueError(f"{path}: unknown option {cut(unknown[0])} (known: "
                         f"{', '.join(OPTION_TYPES)})")
    for key, kind in OPTION_TYPES.items():
        check_field(options, key, (kind,), f"{path}: options")
    if options.get("unk_token") == "":
        raise ValueError(f"{path}: options: field 'unk_token' must not be empty")
    return config


def bpe_options(config: dict) -> dict:
    """The BPETokenizer keyword arguments a (checked) tokenizer_config.json holds."""
    return {"special_tokens": list(config.get("special_tokens", [])),
            **config.get("options", {})}


def read_merges(path: Path, header_always: bool) -> list[tuple[int, tuple[str, str]]]:
    """(line number, (left, right)) per merge. HuggingFace's merges.txt may start with a
    "#version" line; OpenAI's .bpe always has one header line. Blank lines are skipped.
    The file has at most MAX_MERGES_BYTES, each token at most MAX_TOKEN_CHARS characters."""
    lines = read_text(path, MAX_MERGES_BYTES).split("\n")
    out = []
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if lineno == 1 and (header_always or line.startswith("#version")):
            continue
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{path}:{lineno}: expected 'left right', got {cut(line)}")
        if len(line) > MAX_TOKEN_CHARS:
            raise ValueError(f"{path}:{lineno}: a token of {len(line):,} characters (at most "
                             f"{MAX_TOKEN_CHARS:,}): {cut(line)}")
        out.append((lineno, (parts[0], parts[1])))
    return out
