"""Reading files minigpt did not necessarily write: checks done before anything is allocated.

A checkpoint, a tokenizer folder or a pretrained-weights folder may come from anyone, be
hand-edited or be damaged. Every reader of such a file goes through these checks, so a bad file
is a short ValueError naming the file and the field, never a traceback, a runaway allocation or
a silently wrong value:

    cut(value)                     repr(value) cut to CUT_CHARS characters ("..." and the length)
    read_json(path, what, ...)     JSON whose file size, nesting depth and number of object
                                   entries are checked BEFORE it is parsed
    check_field(obj, key, kinds)   obj[key] has one of the JSON types `kinds` (a bool is not
                                   a number), else an error naming the file and the field

The limits are documented constants: MAX_JSON_BYTES (16 MiB, default for configuration and
state files), MAX_DEPTH (32 levels of nested arrays/objects; minigpt's own files use at most
4), and the caller's own `max_entries` (vocab.json: tokenizers.files.MAX_VOCAB_SIZE).
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np

__all__ = ["CUT_CHARS", "MAX_JSON_BYTES", "MAX_DEPTH", "cut", "read_json", "json_structure",
           "check_field", "json_type_name"]

CUT_CHARS = 60                 # longest value quoted in an error message
MAX_JSON_BYTES = 16 * 2**20    # configuration / state files are a few kB
MAX_DEPTH = 32                 # nesting levels of arrays/objects; minigpt writes at most 4

# a JSON string, escapes included (the "unrolled loop" form: linear time, no backtracking)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def cut(value, limit: int = CUT_CHARS) -> str:
    """repr(value), at most about `limit` characters: a 50 MB token or a 100,000-deep list
    stays a one-line message. The repr is built from a bounded prefix, never in full."""
    if isinstance(value, str):
        text = repr(value[:limit + 1])
        full = len(value)
    elif isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value[:limit + 1]))
        full = len(value)
    elif isinstance(value, (list, tuple, dict)):
        text = _bounded_repr(value, limit + 1)
        full = None
    elif isinstance(value, int) and value.bit_length() > 4 * limit:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    else:
        text = repr(value)
        full = None
    if len(text) <= limit:
        return text
    more = f" ({full:,} characters)" if full is not None else ""
    return text[:limit] + "..." + more


def _bounded_repr(value, limit: int) -> str:
    """repr of a nested list/dict, stopping once `limit` characters are produced (iterative,
    so a 100,000-deep list cannot exhaust the recursion limit)."""
    out: list[str] = []
    size = 0
    stack: list = [value]
    while stack and size < limit:
        item = stack.pop()
        if isinstance(item, _Raw):
            piece = item.text
        elif isinstance(item, (list, tuple)):
            opening, closing = ("(", ",)" if len(item) == 1 else ")") if isinstance(item, tuple) \
                else ("[", "]")
            parts: list = [_Raw(opening)]
            for i, x in enumerate(item[:limit]):
                if i:
                    parts.append(_Raw(", "))
                parts.append(x)
            parts.append(_Raw(closing))
            stack.extend(reversed(parts))
            continue
        elif isinstance(item, dict):
            parts = [_Raw("{")]
            for i, (k, v) in enumerate(list(item.items())[:limit]):
                if i:
                    parts.append(_Raw(", "))
                parts.extend([k, _Raw(": "), v])
            parts.append(_Raw("}"))
            stack.extend(reversed(parts))
            continue
        else:
            piece = cut(item, limit)
        out.append(piece)
        size += len(piece)
    return "".join(out)


class _Raw:
    """Literal punctuation inside _bounded_repr's work stack."""
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
               bool: "boolean", type(None): "null"}


def json_type_name(value) -> str:
    """The JSON name of a parsed value's type (or of a Python type): object, array, string,
    integer, number, boolean, null."""
    kind = value if isinstance(value, type) else type(value)
    return _TYPE_NAMES.get(kind, kind.__name__)


def json_structure(raw: bytes) -> tuple[int, int]:
    """(nesting depth, number of object entries) of JSON text, found without parsing it:
    strings are blanked, then brackets and colons are counted with NumPy (linear time,
    memory a small multiple of the number of brackets)."""
    skeleton = _STRING.sub(b'""', raw)
    entries = skeleton.count(b":")
    a = np.frombuffer(skeleton, dtype=np.uint8)
    where = np.flatnonzero((a == 0x5B) | (a == 0x7B) | (a == 0x5D) | (a == 0x7D))  # [ { ] }
    if where.size == 0:
        return 0, entries
    step = np.where((a[where] == 0x5B) | (a[where] == 0x7B), 1, -1).astype(np.int64)
    return int(np.cumsum(step).max()), entries


def read_json(path, what: str = "", *, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_DEPTH, max_entries: int | None = None,
              kind: type | None = dict, error: type = ValueError):
    """Parse the JSON file `path` after checking, before parsing, its size (`max_bytes`), its
    nesting depth (`max_depth`) and its number of object entries (`max_entries`, e.g. a
    vocabulary's tokens). `kind`: the type the top level must have (dict: a JSON object;
    None: any). Every failure is `error(message)`, the message naming the file (`what`
    describes it: " (the model configuration)")."""
    path = Path(path)
    try:
        # O_NONBLOCK: a named pipe in the file's place is refused below instead of waited on
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise error(f"{path}: not a regular file{what}")
            if info.st_size > max_bytes:
                raise error(f"{path}: {info.st_size:,} bytes, more than the {max_bytes:,} a "
                            f"file{what} may have (damaged, or not the file minigpt expects)")
            raw = f.read(max_bytes + 1)   # bounded even if the file grows meanwhile
    except OSError as e:
        raise error(f"{path}: cannot read{what}: {e.strerror}") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: more than {max_bytes:,} bytes{what}")
    depth, entries = json_structure(raw)
    if depth > max_depth:
        raise error(f"{path}: JSON nested {depth:,} levels deep; at most {max_depth} are "
                    f"allowed{what}")
    if max_entries is not None and entries > max_entries:
        raise error(f"{path}: about {entries:,} entries, more than the {max_entries:,} "
                    f"allowed{what}")
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text{what} (undecodable byte at offset "
                    f"{e.start})") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON{what} ({e.msg} at line {e.lineno} column "
                    f"{e.colno}): a truncated or corrupt JSON file") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise error(f"{path}: unreadable JSON{what} ({cut(str(e))})") from None
    except RecursionError:  # the depth check above makes this unreachable; kept as a net
        raise error(f"{path}: JSON nested too deeply{what}") from None
    if kind is not None and not isinstance(obj, kind):
        want = json_type_name(kind)
        raise error(f"{path}: expected a JSON {want}{what}, got a JSON {json_type_name(obj)} "
                    f"(corrupt or hand-edited?)")
    return obj


def check_field(obj: dict, key: str, kinds: tuple, where, *, error: type = ValueError,
                required: bool = False):
    """obj[key] when it has one of the types `kinds` (Python types of parsed JSON: int, float,
    str, bool, list, dict, type(None)); a bool never counts as an int or float. Absent: None,
    or an error when `required`. Otherwise `error` naming `where` (the file) and the field."""
    if key not in obj:
        if required:
            raise error(f"{where}: missing field {key!r}")
        return None
    value = obj[key]
    ok = any(isinstance(value, k) and not (isinstance(value, bool) and k in (int, float))
             for k in kinds)
    if not ok:
        names = " or ".join(json_type_name(k) for k in kinds)
        raise error(f"{where}: field {key!r} must be a JSON {names}, got {cut(value)}")
    return value
