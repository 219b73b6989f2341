"""Read and write the safetensors format with NumPy alone (no torch, no extra package).

The format: an 8-byte little-endian unsigned header length N, then N bytes of JSON
    {"name": {"dtype": "F32", "shape": [r, c], "data_offsets": [begin, end]}, ...,
     "__metadata__": {"key": "string value"}}
then the raw little-endian bytes of every tensor, offsets counted from the end of the header.

Reading checks the header before allocating anything (read_header): its length against the
file and MAX_HEADER_BYTES, its nesting, each entry's dtype, shape and offsets, and that the
tensors' byte ranges tile the data section exactly (two tensors sharing bytes are refused).
`load_file(path, check=...)` lets a loader compare the shapes and dtypes with the model it will
build before any tensor is read.
"""
from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

from .backend import to_numpy
from .untrusted import cut, json_structure, json_type_name

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


class SafetensorsError(ValueError):
    """A safetensors file is truncated, corrupt or holds something minigpt cannot read."""


def save_file(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write name -> array to `path` atomically (a temporary file, then rename)."""
    header, offset, arrays = {}, 0, []
    for name, arr in tensors.items():
        a = np.ascontiguousarray(to_numpy(arr))
        if a.dtype not in _NAMES:
            raise TypeError(f"safetensors: cannot store {name!r} of dtype {a.dtype}")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # pad so the data starts 8-byte aligned
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for a in arrays:
            f.write(a.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


MAX_HEADER_BYTES = 16 * 2**20   # GPT-1's header is 15 kB; the format's own readers allow 100 MB
_DTYPE_BYTES = {**{k: np.dtype(v).itemsize for k, v in _DTYPES.items()}, "BF16": 2}


def read_header(path) -> tuple[dict, int]:
    """(header dict, byte offset where data starts), every entry checked before anything is
    allocated from it: the header fits in the file, is a JSON object of bounded size and
    depth; each tensor has a known dtype, a shape of non-negative integers and integer
    offsets [begin, end) whose length is the shape's size times the dtype's; the tensors'
    byte ranges neither overlap nor leave holes (two tensors sharing bytes are refused, as
    the format's own reader does). Raises SafetensorsError naming the file and the tensor."""
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except OSError as e:
        raise SafetensorsError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > MAX_HEADER_BYTES:
            raise SafetensorsError(f"{path}: header length {n:,} does not fit in a file of "
                                   f"{size:,} bytes (at most {MAX_HEADER_BYTES:,}; truncated "
                                   f"or not a safetensors file)")
        raw = f.read(n)
    depth, _ = json_structure(raw)
    if depth > 3:  # {"name": {"shape": [..]}}: three levels
        raise SafetensorsError(f"{path}: safetensors header nested {depth:,} levels deep "
                               f"(at most 3); corrupt file")
    try:
        header = json.loads(raw)
    except ValueError as e:  # not UTF-8, not JSON, an integer of over 4,300 digits
        raise SafetensorsError(f"{path}: corrupt safetensors header: {cut(str(e), 120)}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: safetensors header is a JSON "
                               f"{json_type_name(header)}, not an object")
    data_len = size - 8 - n
    ranges = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise SafetensorsError(f"{path}: __metadata__ must map names to strings, got "
                                       f"{cut(info)}")
            continue
        begin, end = _check_entry(path, name, info, data_len)
        ranges.append((begin, end, name))
    ranges.sort()
    position, previous = 0, None
    for begin, end, name in ranges:
        if begin < position:
            raise SafetensorsError(f"{path}: tensors {cut(previous)} and {cut(name)} share bytes "
                                   f"(ranges overlap at byte {begin:,}); corrupt or crafted file")
        if begin > position:
            raise SafetensorsError(f"{path}: bytes [{position:,}, {begin:,}) of the data belong "
                                   f"to no tensor (corrupt file)")
        position, previous = end, name
    if position != data_len:
        raise SafetensorsError(f"{path}: the tensors end at byte {position:,} of a "
                               f"{data_len:,}-byte data section (trailing bytes: corrupt file)")
    return header, 8 + n


def _check_entry(path, name: str, info, data_len: int) -> tuple[int, int]:
    """(begin, end) of one tensor entry, its dtype, shape and offsets checked."""
    where = f"{path}: tensor {cut(name)}"
    if not isinstance(info, dict):
        raise SafetensorsError(f"{where}: entry must be a JSON object, got {cut(info)}")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPE_BYTES:
        raise SafetensorsError(f"{where}: unknown dtype {cut(dtype)} (expected one of "
                               f"{', '.join(_DTYPE_BYTES)})")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise SafetensorsError(f"{where}: shape must be a list of non-negative integers, got "
                               f"{cut(shape)}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_count(o) for o in offsets) or offsets[0] > offsets[1]):
        raise SafetensorsError(f"{where}: data_offsets must be two integers 0 <= begin <= end, "
                               f"got {cut(offsets)}")
    begin, end = offsets
    if end > data_len:
        raise SafetensorsError(f"{where}: data_offsets {cut(offsets)} reach past the "
                               f"{data_len:,}-byte data section (truncated or corrupt file?)")
    needed = math.prod(shape) * _DTYPE_BYTES[dtype]   # Python integers: no overflow
    if end - begin != needed:
        raise SafetensorsError(f"{where}: shape {cut(shape)} of {dtype} needs {cut(needed)} "
                               f"bytes, but data_offsets {offsets} hold {end - begin:,}")
    return begin, end


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def read_shapes(path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype name, shape) of every tensor, from the checked header alone: what a
    loader compares with the model it would build before allocating anything."""
    return _shapes(read_header(path)[0])


def _shapes(header: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in header.items() if k != "__metadata__"}


def load_file(path, check=None) -> dict:
    """name -> NumPy array. BF16 tensors are widened to float32.

    check: optional `check(shapes)`, called with read_shapes' {name: (dtype, shape)} after the
    header is validated and before any tensor is read: a loader compares them with the model
    it will build (and raises) before anything is allocated."""
    header, start = read_header(path)
    if check is not None:
        check(_shapes(header))
    out = {}
    with open(path, "rb") as f:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            f.seek(start + begin)
            raw = f.read(end - begin)
            if len(raw) != end - begin:
                raise SafetensorsError(f"{path}: truncated while reading tensor {cut(name)}")
            if info["dtype"] == "BF16":
                bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                arr = bits.view(np.float32)
            else:
                arr = np.frombuffer(raw, dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<"))
                arr = arr.astype(arr.dtype.newbyteorder("="), copy=True)
            out[name] = arr.reshape(info["shape"])
    return out


def load_metadata(path) -> dict:
    return read_header(path)[0].get("__metadata__", {})
