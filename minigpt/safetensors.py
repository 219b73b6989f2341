"""Read and write the safetensors format with NumPy alone (no torch, no extra package).

The format: an 8-byte little-endian unsigned header length N, then N bytes of JSON
    {"name": {"dtype": "F32", "shape": [r, c], "data_offsets": [begin, end]}, ...,
     "__metadata__": {"key": "string value"}}
then the raw little-endian bytes of every tensor, offsets counted from the end of the header.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from .backend import to_numpy

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


def read_header(path) -> tuple[dict, int]:
    """(header dict, byte offset where data starts); raises SafetensorsError naming the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise SafetensorsError(f"{path}: header length {n} does not fit in a file of "
                                   f"{size} bytes (truncated or not a safetensors file)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"{path}: corrupt safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: safetensors header is not a JSON object")
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES[info["dtype"]] if info["dtype"] != "BF16" else np.uint16
            begin, end = info["data_offsets"]
            expected = int(np.prod(info["shape"], dtype=np.int64)) * np.dtype(dtype).itemsize
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor {name!r} has an unreadable entry {info!r}") from None
        if end - begin != expected or begin < 0 or end > data_len:
            raise SafetensorsError(f"{path}: tensor {name!r} (shape {info['shape']}, "
                                   f"{info['dtype']}) needs bytes [{begin}, {end}) but the data "
                                   f"section holds {data_len} bytes (truncated file?)")
    return header, 8 + n


def load_file(path) -> dict:
    """name -> NumPy array. BF16 tensors are widened to float32."""
    header, start = read_header(path)
    out = {}
    with open(path, "rb") as f:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            f.seek(start + begin)
            raw = f.read(end - begin)
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
