"""Reading a folder written by `minigpt prepare` (prepare.py): memory-mapped token shards.

    data = open_prepared("data/books")         # index.json checked, shards memory-mapped
    data.tokenizer()                           # the tokenizer saved with them
    x, y = data.train.get_batch(32, 128, rng)  # (B, T) int64 each, y is x shifted by one
    x, y = get_batch(data.train, 32, 128, rng) # the same: minigpt.data.get_batch takes shards
    data.verify()                              # every shard's sha256 against the index

Nothing is read into memory up front: each shard is an `mmap` of its file (advised
MADV_RANDOM: no read-ahead), and a batch copies its B windows out of it. The pages a window
touched stay mapped, and the kernel maps neighbours with each (fault-around, large folios),
so over a long run the process's resident memory would grow towards the size of the corpus
(file-backed pages the kernel may drop, but counted in RSS): measured here, 1000 batches of
32 x 64 tokens from a 600 MB folder left 524 MB resident. So after each batch the mapping's
pages are released (MADV_DONTNEED; the file is read-only, the page cache keeps the data):
the same reason nanoGPT opens a new np.memmap for every batch.

Batches (`TokenShards.get_batch`): a window is T + 1 consecutive tokens of one shard (it never
crosses a shard boundary; it may cross a document boundary inside one, as training on a file
does). A shard of n tokens holds n - T windows; the batch's B windows are drawn uniformly from
all shards' windows together with one call `rng.integers(0, total, size=B)`. With a single
shard that is exactly the call `get_batch(ids, B, T, rng)` (batching.py) makes, so a prepared
folder of one shard draws the very batches that the same ids in memory draw from the same
random stream (tested: the same loss curve as `pretrain --data FILE`).
"""
from __future__ import annotations

import hashlib
import json
import mmap
from pathlib import Path

import numpy as np

from ..tokenizers import load_tokenizer
from .batching import get_batch as get_batch_in_memory
from .prepare import FORMAT, INDEX_FILE, TOKENIZER_DIR, VERSION

__all__ = ["TokenShards", "PreparedData", "open_prepared", "is_prepared_folder", "ShardError"]


class ShardError(ValueError):
    """A prepared folder that is incomplete, damaged or of another format."""


def is_prepared_folder(path) -> bool:
    """Whether `path` is a folder written by `minigpt prepare` (it holds index.json)."""
    path = Path(path)
    return path.is_dir() and (path / INDEX_FILE).is_file()


def _map(path: Path, dtype: np.dtype, tokens: int):
    """(the shard's ids as a read-only array backed by the file, no copy; its mmap)."""
    if tokens == 0:
        return np.zeros(0, dtype=dtype), None
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mm, dtype=dtype, count=tokens), mm


class TokenShards:
    """One split (train or val): a list of 1-D id arrays (the shards), read as one corpus of
    windows that never cross a shard boundary. `maps`: each shard's mmap (or None), whose
    pages are released after every batch."""

    def __init__(self, shards: list, name: str = "tokens", maps: list | None = None):
        self.shards = [np.asarray(s) for s in shards]
        if any(s.ndim != 1 for s in self.shards):
            raise ValueError("every shard must be a 1-D array of token ids")
        self.maps = list(maps) if maps is not None else [None] * len(self.shards)
        self.name = name
        self.lengths = np.array([len(s) for s in self.shards], dtype=np.int64)

    def __len__(self) -> int:
        """Tokens in all shards together."""
        return int(self.lengths.sum())

    def windows(self, block_size: int) -> np.ndarray:
        """Windows of block_size + 1 tokens each shard holds (its length - block_size, or 0)."""
        return np.maximum(self.lengths - block_size, 0)

    def get_batch(self, batch_size: int, block_size: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`batch_size` windows drawn uniformly from all shards' windows: x (B, T) int64 and
        y = the next tokens (B, T); one shard: exactly batching.get_batch's draw."""
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, "
                             f"{block_size}")
        if len(self.shards) == 1:
            x, y = get_batch_in_memory(self.shards[0], batch_size, block_size, rng)
            self.release([0])
            return x, y
        counts = self.windows(block_size)
        total = int(counts.sum())
        if total == 0:
            raise ValueError(f"{self.name}: no shard holds a window of block_size + 1 = "
                             f"{block_size + 1} tokens (the longest has "
                             f"{int(self.lengths.max(initial=0))})")
        ends = np.cumsum(counts)                               # window g is in shard i when
        g = rng.integers(0, total, size=batch_size)            # ends[i-1] <= g < ends[i]
        which = np.searchsorted(ends, g, side="right")
        starts = g - (ends[which] - counts[which])
        rows = np.stack([self.shards[i][s:s + block_size + 1]
                         for i, s in zip(which, starts)]).astype(np.int64)  # (B, T + 1)
        self.release(np.unique(which))
        return rows[:, :-1], rows[:, 1:]

    def release(self, which) -> None:
        """Unmap the pages these shards' mappings hold (read again from the page cache when
        next touched): keeps the process's resident memory from growing with the corpus."""
        for i in which:
            mm = self.maps[int(i)]
            if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
                mm.madvise(mmap.MADV_DONTNEED)


class PreparedData:
    """A prepared folder: its index, its tokenizer and its two splits as TokenShards."""

    def __init__(self, folder):
        self.folder = Path(folder)
        index_path = self.folder / INDEX_FILE
        if not index_path.is_file():
            hint = (" (an unfinished prepare: rerun the same `minigpt prepare` command to "
                    "finish it)" if (self.folder / "plan.json").is_file() else
                    f" (text files? turn them into one first: minigpt prepare --data "
                    f"{self.folder} --out FOLDER)")
            raise ShardError(f"{self.folder} is not a prepared folder: no {INDEX_FILE}{hint}")
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ShardError(f"{index_path}: not valid JSON ({e})") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise ShardError(f"{index_path} is not a minigpt prepared-folder index")
        if index.get("version") != VERSION:
            raise ShardError(f"{index_path}: version {index.get('version')!r}, this minigpt "
                             f"reads version {VERSION}; prepare the corpus again")
        self.index = index
        self.dtype = np.dtype(index["dtype"]).newbyteorder("<")
        self.vocab_size = int(index["vocab_size"])
        self.splits = {name: self._open_split(name) for name in ("train", "val")}

    def _open_split(self, name: str) -> TokenShards:
        arrays, maps = [], []
        for s in self.index["splits"][name]["shards"]:
            path = self.folder / s["file"]
            expected = s["tokens"] * self.dtype.itemsize
            if not path.is_file():
                raise ShardError(f"{path} is missing (the index lists it)")
            size = path.stat().st_size
            if size != expected:
                raise ShardError(f"{path} has {size:,} bytes, the index says {s['tokens']:,} "
                                 f"tokens = {expected:,} bytes: damaged or replaced")
            array, mm = _map(path, self.dtype, s["tokens"])
            arrays.append(array)
            maps.append(mm)
        return TokenShards(arrays, f"{self.folder} ({name})", maps)

    @property
    def train(self) -> TokenShards:
        return self.splits["train"]

    @property
    def val(self) -> TokenShards:
        return self.splits["val"]

    def tokenizer(self):
        return load_tokenizer(self.folder / self.index.get("tokenizer", TOKENIZER_DIR))

    def verify(self, chunk_bytes: int = 1 << 20) -> None:
        """Check every shard's sha256 against the index (reads each file once, in chunks, not
        through the memory map, so the check does not grow the process's memory)."""
        for name in ("train", "val"):
            for s in self.index["splits"][name]["shards"]:
                path = self.folder / s["file"]
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(chunk_bytes):
                        digest.update(chunk)
                if digest.hexdigest() != s["sha256"]:
                    raise ShardError(f"{path}: sha256 {digest.hexdigest()[:12]}... differs "
                                     f"from the index's {s['sha256'][:12]}...: the shard is "
                                     f"damaged; prepare the corpus again")


def open_prepared(folder, *, verify: bool = False) -> PreparedData:
    """Open a prepared folder (index checked, every shard's size checked, shards mapped);
    verify=True also checks every shard's sha256."""
    data = PreparedData(folder)
    if verify:
        data.verify()
    return data
