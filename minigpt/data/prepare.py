"""`minigpt prepare`: text files of any size -> a folder of token shards that training memory-maps.

    prepare(["books/"], "data/books", tokenizer="bpe", vocab_size=2000, workers=2)

The folder it writes (read back by shards.py):

    index.json            what is where: tokenizer, dtype, every shard with its token count,
                          sha256 and documents ([document number, its first token in the
                          shard], ...), every input file ("documents") and its split
    tokenizer/            the tokenizer (vocab.json, merges.txt, tokenizer_config.json)
    train-000000.bin ...  token ids, raw little-endian uint16 (vocabulary <= 65,536) or uint32
    val-000000.bin ...
    plan.json             the plan (inputs, options, which text goes in which shard): what a
                          restarted `prepare` compares with and continues from, and where
                          `split_text` finds a split's text again (eval counts characters)

How, in five steps, each bounded in memory (a worker holds one block of ~1 MB of text):

1. Inputs: each PATH is a file, a folder (every *.txt below it, sorted) or a glob. A 0-byte
   file among others is skipped with a note (it holds no document); a folder without *.txt,
   a glob matching nothing, a binary file (a NUL byte) or UTF-16/32 text is an error naming it.
2. Blocks: every file is cut into blocks of ~1 MB. The cut for target offset t is the first
   line end at or after t (else the first space within one block's length; else, for the char
   tokenizer only, the first character boundary), so a cut never splits a character or a
   word, and every cut depends on the bytes near it only: the same cuts whatever the worker
   count or a restart. A first pass (the workers, block by block) checks every block before
   anything is written: UTF-8 (an undecodable byte is an error naming the file and byte
   offset, or U+FFFD with a warning under errors="replace"), no NUL byte; "\\r\\n" and "\\r"
   read as "\\n" (as `read_text_file` does); characters counted (and collected, for char).
   Step 5 reads the text a second time: twice the reading, never the corpus in memory.
3. The split, by document: a document is a file. With n files, max(1, round(n * F)) of them
   (at least one must be left for training), evenly spread over the sorted list, are
   validation. A single file is one document: its last max(1, n * F) characters are
   validation, the rule `pretrain --data FILE` applies (`load_corpus`), so both see the same
   text.
4. The tokenizer: loaded (tokenizer_from: a run or checkpoint, a prepared folder, a tokenizer
   folder or GPT-1's released files) or learned: char from every character of the corpus
   (step 2 collects them), BPE from a bounded sample of the training text (sample_mb, evenly
   spread blocks; all of it when smaller), as `pretrain` learns them from a file.
5. Shards: the blocks of each split, in order, grouped into shards of ~shard_mb of text.
   Workers encode a shard block by block (fast_encode.py: equal to `tokenizer.encode`),
   write it to a temporary file with its sha256, fsync, then rename: a shard file exists
   whole or not at all. A killed `prepare` rerun with the same arguments skips the shards
   already there and writes the same bytes (tests/test_prepare.py kills one and compares).

Windows for training may cross a document boundary inside a shard (GPT-1 read BooksCorpus as
contiguous spans too), never a shard boundary (shards.py).
"""
from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import json
import multiprocessing
import os
import queue as queue_module
import sys
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..checks import check_fields, fraction, positive_float, positive_int, setting
from ..fileio import (atomic_write_text, create_temporary_file, fsync_directory,
                      make_temporary_directory)
from ..tokenizers import BPETokenizer, CharTokenizer, load_tokenizer
from ..tokenizers.fast_encode import array_encoder

__all__ = ["prepare", "PrepareConfig", "PrepareError", "PrepareResult", "discover_files",
           "split_text", "INDEX_FILE",
           "PLAN_FILE", "TOKENIZER_DIR", "FORMAT", "VERSION", "shard_dtype", "THROTTLE_ENV"]

INDEX_FILE = "index.json"
PLAN_FILE = "plan.json"
TOKENIZER_DIR = "tokenizer"
FORMAT = "minigpt-prepared"
VERSION = 1
BLOCK_BYTES = 1 << 20          # the unit a worker reads, checks and encodes
THROTTLE_ENV = "MINIGPT_PREPARE_THROTTLE_S"   # tests: sleep this long after each shard
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
         b"\xfe\xff": "UTF-16"}
_UTF8_BOM = b"\xef\xbb\xbf"


class PrepareError(ValueError):
    """An input or option `prepare` cannot use; the message names it and what to do."""


@dataclass
class PrepareResult:
    out: Path
    index: dict
    resumed_shards: int = 0        # shards found complete from an earlier, killed run
    notes: list = field(default_factory=list)


def shard_dtype(vocab_size: int) -> str:
    """uint16 when every id fits (vocab_size <= 65,536), else uint32."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


# ----------------------------------------------------------------------------- 1. inputs

def discover_files(paths) -> list[Path]:
    """The input files, in order: each PATH as given, a folder's *.txt (recursive, sorted), a
    glob's matches (sorted); a file named twice is read once."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise PrepareError("no --data given: name a text file, a folder of *.txt or a glob")
    found: list[Path] = []
    for p in map(str, paths):
        path = Path(p)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            files = sorted(f for f in path.rglob("*.txt") if f.is_file())
            if not files:
                raise PrepareError(f"{p}: no *.txt file in this folder or below it")
            found.extend(files)
        elif glob.has_magic(p):
            files = sorted(Path(f) for f in glob.glob(p, recursive=True) if Path(f).is_file())
            if not files:
                raise PrepareError(f"{p}: the pattern matches no file")
            found.extend(files)
        elif path.exists():
            raise PrepareError(f"{p}: not a regular file or a folder")
        else:
            raise PrepareError(f"{p}: no such file or folder")
    seen, unique = set(), []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _file_start(path: Path) -> int:
    """Byte offset where the text starts (3 after a UTF-8 byte-order mark); an error for a
    UTF-16/32 file."""
    with open(path, "rb") as f:
        head = f.read(4)
    for bom, name in _BOMS.items():
        if head.startswith(bom):
            raise PrepareError(f"{path}: {name} text (byte-order mark {bom.hex(' ').upper()}); "
                               f"minigpt reads UTF-8: convert it first (iconv -f {name} -t "
                               f"UTF-8)")
    return 3 if head.startswith(_UTF8_BOM) else 0


# ----------------------------------------------------------------------------- 2. blocks

def _cut_after(path: Path, target: int, size: int, any_char: bool, block: int) -> int:
    """The cut for `target`: the first offset p >= target with a line end just before it, else
    with a space before it (within `block` bytes), else (any_char) the first character boundary."""
    if target >= size:
        return size
    with open(path, "rb") as f:
        f.seek(target - 1)
        window = f.read(block + 1)             # window[i] is the byte at target - 1 + i
    for sep in (b"\n", b" "):
        i = window.find(sep)
        if i != -1:
            return target + i
    if target - 1 + len(window) >= size:       # no separator before the end of the file
        return size
    if any_char:
        i = 1
        while i < len(window) and 0x80 <= window[i] < 0xC0:   # UTF-8 continuation bytes
            i += 1
        return target - 1 + i
    raise PrepareError(f"{path}: no line break or space in the {block:,} bytes after "
                       f"offset {target:,}; prepare cuts BPE text only between words (use "
                       f"--tokenizer char, or break the lines)")


def _plan_blocks(path: Path, any_char: bool, block: int) -> list[list[int]]:
    """[start, end) byte ranges covering the file's text, cut where `_cut_after` says."""
    size = path.stat().st_size
    start = _file_start(path)
    cuts = [start]
    for target in range(start + block, size, block):
        cut = _cut_after(path, target, size, any_char, block)
        if cut > cuts[-1]:
            cuts.append(cut)
    if size > cuts[-1]:
        cuts.append(size)
    return [[a, b] for a, b in zip(cuts, cuts[1:])]


def _read_block(path: str, start: int, end: int, errors: str) -> tuple[str, int | None]:
    """The block's text ("\\r\\n" and "\\r" read as "\\n") and the offset of its first
    undecodable byte (None when it is all UTF-8); strict errors raise."""
    with open(path, "rb") as f:
        f.seek(start)
        raw = f.read(end - start)
    nul = raw.find(b"\x00")
    if nul != -1:
        raise PrepareError(f"{path} looks binary: NUL byte at offset {start + nul:,}; a corpus "
                           f"is UTF-8 text (leave this file out)")
    bad = None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = start + e.start
        if errors == "strict":
            raise PrepareError(f"{path}: byte 0x{raw[e.start]:02X} at offset {bad:,} is not "
                               f"UTF-8 (a file in another encoding, or mixed encodings); "
                               f"convert it (iconv -f latin1 -t utf-8), or pass --errors "
                               f"replace to read such bytes as U+FFFD") from None
        text = raw.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n"), bad


def _scan_block(task):
    """Worker: check one block; (characters, set of characters or None, first bad offset)."""
    path, start, end, errors, want_chars = task
    text, bad = _read_block(path, start, end, errors)
    _report(end - start, 0)
    return len(text), (sorted(set(text)) if want_chars else None), bad


# ----------------------------------------------------------------------------- 5. shards

_progress_queue = None


def _init_worker(queue):
    global _progress_queue
    _progress_queue = queue


def _report(nbytes: int, ntokens: int) -> None:
    if _progress_queue is not None:
        _progress_queue.put((nbytes, ntokens))


_encoders: dict = {}


def _encoder(tokenizer_dir: str, dtype: str):
    key = (tokenizer_dir, dtype)
    if key not in _encoders:
        _encoders[key] = array_encoder(load_tokenizer(tokenizer_dir), np.dtype(dtype))
    return _encoders[key]


def _write_shard(task) -> dict:
    """Worker: encode one shard's blocks into `out/name` (temporary file, sha256, fsync,
    sidecar, rename); returns its record."""
    out, name, blocks, tokenizer_dir, dtype, errors = task
    encode = _encoder(tokenizer_dir, dtype)
    out = Path(out)
    digest = hashlib.sha256()
    counts = []
    fd, tmp = create_temporary_file(out, f".{name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for b in blocks:
                text, _ = _read_block(b["path"], b["start"], b["end"], errors)
                if b.get("chars"):
                    lo, hi = b["chars"]
                    text = text[lo:hi]
                ids = encode(text)
                data = ids.astype(np.dtype(dtype).newbyteorder("<"), copy=False).tobytes()
                f.write(data)
                digest.update(data)
                counts.append(int(len(ids)))
                _report(b["end"] - b["start"], len(ids))
            f.flush()
            os.fsync(f.fileno())
        record = {"file": name, "tokens": sum(counts), "sha256": digest.hexdigest(),
                  "block_tokens": counts}
        atomic_write_text(out / _sidecar(name), json.dumps(record) + "\n")
        os.replace(tmp, out / name)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    throttle = float(os.environ.get(THROTTLE_ENV, "0") or 0)
    if throttle > 0:
        time.sleep(throttle)
    return record


def _sidecar(name: str) -> str:
    return f".{name}.json"


# ----------------------------------------------------------------------------- the driver

@dataclass
class PrepareConfig:
    """The options of `prepare`, each declared once with its range and help text
    (checks.setting): a value outside its range is a ValueError here, and `minigpt prepare`
    has one option per field, generated from it (--vocab-size for vocab_size, ...)."""
    tokenizer: str | None = setting(None, None, "learn this kind (default char); with "
                                    "--tokenizer-from, the loaded one's kind",
                                    choices=("char", "bpe"))
    vocab_size: int = setting(1000, positive_int, "BPE: the vocabulary's size")
    bpe_keep_case: bool = setting(False, None, "BPE keeps capitals and accents (GPT-1's "
                                  "lowercases)")
    bpe_keep_newlines: bool = setting(False, None, "BPE makes each newline a token (GPT-1's "
                                      "reads it as a space)")
    tokenizer_from: str | None = setting(None, None, "use this tokenizer instead of learning "
                                         "one: a run or checkpoint, a prepared folder, a "
                                         "tokenizer folder or GPT-1's released files",
                                         metavar="PATH")
    val_fraction: float = setting(0.1, fraction, "share of the files (documents) kept for "
                                  "validation; one file: its last share of characters")
    workers: int = setting(1, positive_int, "worker processes (the result does not depend on "
                           "how many)")
    errors: str = setting("strict", None, "a byte that is not UTF-8: an error naming file and "
                          "offset (strict), or U+FFFD with a warning (replace)",
                          choices=("strict", "replace"))
    shard_mb: float = setting(64.0, positive_float, "text per shard, in MiB")
    sample_mb: float = setting(16.0, positive_float, "BPE: the most training text it learns "
                               "the merges from, in MiB")
    block_bytes: int = setting(BLOCK_BYTES, positive_int, "the unit of text a worker reads, "
                               "checks and encodes, in bytes")

    def __post_init__(self):
        check_fields(self)  # every field's range and choices
        if self.tokenizer is None and self.tokenizer_from is None:
            self.tokenizer = "char"
        if self.tokenizer_from is not None:
            if self.bpe_keep_case or self.bpe_keep_newlines:
                raise PrepareError("--bpe-keep-case and --bpe-keep-newlines shape a tokenizer "
                                   "being learned; a loaded one (--tokenizer-from) keeps its "
                                   "own options")
            self.tokenizer_from = str(Path(self.tokenizer_from).resolve())
        if self.tokenizer == "char" and (self.bpe_keep_case or self.bpe_keep_newlines):
            raise PrepareError("--bpe-keep-case and --bpe-keep-newlines are options of the BPE "
                               "tokenizer (--tokenizer bpe); the char tokenizer keeps "
                               "everything")

    def signature_options(self) -> dict:
        """What the output depends on: every option but the number of workers."""
        return {k: v for k, v in asdict(self).items() if k != "workers"}


def prepare(data, out, *, progress: bool = True, log=None, **options) -> PrepareResult:
    """Prepare `data` (paths: files, folders, globs) into the folder `out`; see the module
    docstring. `options` are PrepareConfig's fields (tokenizer="bpe", vocab_size=2000,
    workers=2, ...). Returns the index (also in out/index.json). Rerun with the same
    arguments after a kill to finish the job; a folder already prepared from the same inputs
    is left as is."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    opts = PrepareConfig(**options)
    workers = opts.workers
    out = Path(out)
    files = discover_files(data)
    notes, docs, skipped = [], [], []
    for f in files:
        size = f.stat().st_size
        if size == 0:
            notes.append(f"note: skipped {f}: empty (0 bytes, no document)")
            skipped.append(str(f))
            continue
        docs.append({"path": str(f), "bytes": size, "mtime_ns": f.stat().st_mtime_ns})
    if not docs:
        raise PrepareError(f"no text: every input file is empty ({len(files)} file"
                           f"{'s' * (len(files) != 1)})")
    signature = {"format": FORMAT, "version": VERSION, "options": opts.signature_options(),
                 "documents": [[d["path"], d["bytes"], d["mtime_ns"]] for d in docs]}
    state = _existing(out, signature)
    if state == "done":
        index = json.loads((out / INDEX_FILE).read_text(encoding="utf-8"))
        log(f"{out} is already prepared from these inputs: nothing to do")
        return PrepareResult(out, index, notes=notes)
    for n in notes:
        log(n)

    ctx = multiprocessing.get_context("spawn")    # no fork of a process that may hold threads
    queue = ctx.Queue() if workers > 1 else None
    pool = (concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx,
                                                   initializer=_init_worker, initargs=(queue,))
            if workers > 1 else None)
    try:
        if state == "resume":
            plan = json.loads((out / PLAN_FILE).read_text(encoding="utf-8"))
            log(f"resuming the unfinished prepare in {out}")
        else:
            plan = _make_plan(docs, opts, signature, pool, queue, progress, log)
            plan["skipped"] = skipped
        tok_dir = out / TOKENIZER_DIR
        if state != "resume":
            tok = plan.pop("_tokenizer")
            out.mkdir(parents=True, exist_ok=True)
            _save_tokenizer(tok, tok_dir)
            atomic_write_text(out / PLAN_FILE, json.dumps(plan) + "\n")
            fsync_directory(out)
        index, resumed = _write_shards(out, plan, opts, pool, queue, progress, log)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return PrepareResult(out, index, resumed, notes)


def _existing(out: Path, signature: dict) -> str:
    """'new', 'resume' (an unfinished prepare of the same inputs) or 'done'; an error for a
    folder holding anything else (nothing there is ever overwritten)."""
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise PrepareError(f"--out {out} exists and is not a folder")
    for name, state in ((INDEX_FILE, "done"), (PLAN_FILE, "resume")):
        if (out / name).is_file():
            try:
                old = json.loads((out / name).read_text(encoding="utf-8"))["signature"]
            except (ValueError, KeyError, TypeError):
                raise PrepareError(f"{out / name} is unreadable; choose another --out") from None
            if old != signature:
                raise PrepareError(f"--out {out} holds a folder prepared from other inputs or "
                                   f"options ({_difference(old, signature)}); choose another "
                                   f"--out or delete it")
            return state
    ours = {TOKENIZER_DIR} | {p.name for p in _leftovers(out)}   # a kill before plan.json
    if any(p.name not in ours for p in out.iterdir()):
        raise PrepareError(f"--out {out} exists, is not empty and is not a prepared folder; "
                           f"choose another --out")
    return "new"


def _difference(old: dict, new: dict) -> str:
    if old.get("documents") != new.get("documents"):
        return "the input files or their sizes/dates differ"
    diff = [k for k in new.get("options", {}) if old.get("options", {}).get(k) != new["options"][k]]
    return f"options differ: {', '.join(diff)}" if diff else "format differs"


def _run(pool, func, tasks, queue, bar):
    """func over tasks, results in task order (in the worker pool when there is one), feeding
    the progress bar. A worker that dies (killed, out of memory) is an error, never a hang."""
    if pool is None:
        for t in tasks:
            result = func(t)
            bar.drain_local()
            yield result
        return
    futures = [pool.submit(func, t) for t in tasks]
    try:
        for fut in futures:
            while True:
                try:
                    result = fut.result(timeout=0.2)
                    break
                except concurrent.futures.TimeoutError:
                    bar.drain(queue)
            bar.drain(queue)
            yield result
    finally:
        for fut in futures:
            fut.cancel()


class _Bar:
    """tqdm over bytes of text, with tokens/s beside MB/s."""

    def __init__(self, total_bytes: int, desc: str, enabled: bool):
        from tqdm import tqdm
        self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True)
        self.tokens = 0
        self.t0 = time.perf_counter()
        self.local = []

    def drain(self, queue) -> None:
        while True:
            try:
                self._add(*queue.get_nowait())
            except queue_module.Empty:
                break

    def drain_local(self) -> None:
        while self.local:
            self._add(*self.local.pop())

    def _add(self, nbytes, ntokens) -> None:
        self.tokens += ntokens
        self.bar.update(nbytes)
        if self.tokens:
            rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix_str(f"{self.tokens:,} tokens, {rate:,.0f} tokens/s",
                                     refresh=False)

    def close(self) -> None:
        self.bar.close()


class _LocalQueue:
    def __init__(self, bar):
        self.bar = bar

    def put(self, item):
        self.bar.local.append(item)


def _make_plan(docs, opts: PrepareConfig, signature, pool, queue, progress, log) -> dict:
    """Steps 2-4: blocks (checked), the split, the tokenizer, the shards' contents."""
    any_char = opts.tokenizer == "char"       # BPE (or a kind not yet known): between words
    blocks = []                                 # (doc index, start, end)
    for i, d in enumerate(docs):
        blocks.extend((i, a, b) for a, b in _plan_blocks(Path(d["path"]), any_char,
                                                          opts.block_bytes))
    want_chars = opts.tokenizer == "char" and opts.tokenizer_from is None
    tasks = [(docs[i]["path"], a, b, opts.errors, want_chars) for i, a, b in blocks]
    total = sum(b - a for _, a, b in blocks)
    bar = _Bar(total, "checking", progress)
    scanned = list(_with_local_bar(pool, _scan_block, tasks, queue, bar))
    bar.close()
    for (i, a, _), (_, _, bad) in zip(blocks, scanned):
        if bad is not None and "replaced_at" not in docs[i]:
            docs[i]["replaced_at"] = bad
            log(f"warning: {docs[i]['path']}: bytes that are not UTF-8 read as U+FFFD "
                f"(--errors replace; the first at offset {bad:,})")

    records = [{"doc": i, "path": docs[i]["path"], "start": a, "end": b, "chars": None,
                "nchars": n} for (i, a, b), (n, _, _) in zip(blocks, scanned)]
    splits = _split(records, docs, opts.val_fraction)

    if opts.tokenizer_from is not None:
        tok, how = _load_tokenizer_from(Path(opts.tokenizer_from), opts), \
            f"loaded from {opts.tokenizer_from}"
    elif opts.tokenizer == "char":
        chars = sorted(set().union(*(set(c) for _, c, _ in scanned)))
        tok = CharTokenizer(chars)
        how = f"char: every character of the corpus ({len(chars):,} distinct)"
    else:
        sample, nbytes = _sample_text(splits["train"], opts)
        log(f"learning BPE ({opts.vocab_size:,} tokens) on a sample of "
            f"{len(sample):,} characters of the training text ({nbytes / 2**20:.1f} MB read)")
        tok = BPETokenizer.train(sample, vocab_size=opts.vocab_size,
                                 lowercase=not opts.bpe_keep_case,
                                 keep_newlines=opts.bpe_keep_newlines)
        how = (f"bpe learned on {len(sample):,} characters of the training text "
               f"(sample_mb={opts.sample_mb:g})")
    shards = {}
    limit = opts.shard_mb * 2**20
    for split, recs in splits.items():
        groups, cur, size = [], [], 0
        for r in recs:
            if cur and size + (r["end"] - r["start"]) > limit:
                groups.append(cur)
                cur, size = [], 0
            cur.append(r)
            size += r["end"] - r["start"]
        if cur:
            groups.append(cur)
        shards[split] = [{"file": f"{split}-{k:06d}.bin", "blocks": g}
                         for k, g in enumerate(groups)]
    for d in docs:
        d.pop("mtime_ns", None)
    return {"signature": signature, "documents": docs, "tokenizer_how": how,
            "dtype": shard_dtype(tok.vocab_size), "vocab_size": tok.vocab_size,
            "tokenizer_type": tok.type_name, "shards": shards, "_tokenizer": tok}


def _with_local_bar(pool, func, tasks, queue, bar):
    if pool is None:
        _init_worker(_LocalQueue(bar))
        try:
            yield from _run(None, func, tasks, None, bar)
        finally:
            _init_worker(None)
    else:
        yield from _run(pool, func, tasks, queue, bar)


def _split(records, docs, val_fraction: float) -> dict:
    """{'train': blocks, 'val': blocks}: whole files (several files) or the last characters of
    the only file, as the module docstring says."""
    for d in docs:
        d["split"] = "train"
    if val_fraction == 0:
        return {"train": records, "val": []}
    frac = Fraction(val_fraction).limit_denominator(10**6)
    if len(docs) == 1:
        n = sum(r["nchars"] for r in records)
        if n < 2:
            raise PrepareError(f"{docs[0]['path']} holds {n} character; a train and a val "
                               f"split need at least 2")
        k = max(1, n * frac.numerator // frac.denominator)
        cut, train, val, seen = n - k, [], [], 0
        for r in records:
            lo, hi = seen, seen + r["nchars"]
            seen = hi
            if hi <= cut:
                train.append(r)
            elif lo >= cut:
                val.append(r)
            else:
                train.append({**r, "chars": [0, cut - lo]})
                val.append({**r, "chars": [cut - lo, r["nchars"]]})
        docs[0]["split"] = f"train (first {n - k:,} characters) + val (last {k:,})"
        return {"train": train, "val": val}
    m = max(1, round(len(docs) * val_fraction))
    if m >= len(docs):
        raise PrepareError(f"val_fraction {val_fraction} of {len(docs)} files leaves no "
                           f"training file; lower --val-fraction or give more files")
    val_docs = {(2 * j + 1) * len(docs) // (2 * m) for j in range(m)}   # evenly spread
    for i in val_docs:
        docs[i]["split"] = "val"
    return {"train": [r for r in records if r["doc"] not in val_docs],
            "val": [r for r in records if r["doc"] in val_docs]}


def _block_text(r, errors: str) -> str:
    text, _ = _read_block(r["path"], r["start"], r["end"], errors)
    if r.get("chars"):
        lo, hi = r["chars"]
        text = text[lo:hi]
    return text


def _sample_text(train_records, opts: PrepareConfig) -> tuple[str, int]:
    """BPE's training text: all the training blocks when they fit in sample_mb, else evenly
    spread ones up to sample_mb (a block is whole words, so no word is cut)."""
    limit = opts.sample_mb * 2**20
    sizes = [r["end"] - r["start"] for r in train_records]
    if sum(sizes) <= limit:
        chosen = train_records
    else:
        n_pick = max(1, int(limit // max(1, max(sizes))))
        step = len(train_records) / n_pick
        chosen = [train_records[int(j * step)] for j in range(n_pick)]
    if not chosen:
        raise PrepareError("no training text to learn the tokenizer from")
    return "".join(_block_text(r, opts.errors) for r in chosen), sum(
        r["end"] - r["start"] for r in chosen)


def _load_tokenizer_from(path: Path, opts: PrepareConfig):
    """A tokenizer folder, a prepared folder, a run or checkpoint folder, or GPT-1's files."""
    if not path.exists():
        raise PrepareError(f"--tokenizer-from {path}: no such file or folder")
    if (path / INDEX_FILE).is_file() and (path / TOKENIZER_DIR).is_dir():
        tok = load_tokenizer(path / TOKENIZER_DIR)
    elif (path / "tokenizer_config.json").is_file():
        tok = load_tokenizer(path)
    elif any((path / f).is_file() for f in ("encoder_bpe_40000.json", "merges.txt")):
        tok = BPETokenizer.from_pretrained(path)
    else:
        from ..runfolder import resolve_checkpoint   # lazy: runfolder is training's layer
        try:
            ckpt = resolve_checkpoint(path)
        except Exception as e:
            raise PrepareError(f"--tokenizer-from {path}: not a tokenizer, a prepared folder, "
                               f"a checkpoint or GPT-1's files ({e})") from None
        if not (ckpt / "tokenizer_config.json").is_file():
            raise PrepareError(f"--tokenizer-from {path}: the checkpoint {ckpt} has no "
                               f"tokenizer")
        tok = load_tokenizer(ckpt)
    if opts.tokenizer is not None and tok.type_name != opts.tokenizer:
        raise PrepareError(f"--tokenizer-from {path} holds a {tok.type_name} tokenizer, but "
                           f"--tokenizer is {opts.tokenizer}")
    return tok


def _save_tokenizer(tok, directory: Path) -> None:
    """Write the tokenizer folder whole or not at all (a temporary folder, then a rename);
    one a run killed before plan.json was written is replaced."""
    import shutil
    tmp = make_temporary_directory(directory.parent, f".{directory.name}.")
    tok.save(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def _leftovers(out: Path) -> list[Path]:
    """What a killed writer left: shards' and sidecars' temporary files (.train-000000.bin.
    <random>.tmp, ..train-000000.bin.json.<random>.tmp) and a half-saved tokenizer folder."""
    return [p for p in out.iterdir()
            if (p.name.startswith((".train-", ".val-", "..train-", "..val-"))
                and p.name.endswith(".tmp")) or p.name.startswith(f".{TOKENIZER_DIR}.")]


def _write_shards(out: Path, plan: dict, opts: PrepareConfig, pool, queue, progress, log):
    """Step 5, skipping the shards a killed run already finished; then index.json."""
    import shutil
    for p in _leftovers(out):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    dtype = plan["dtype"]
    itemsize = np.dtype(dtype).itemsize
    _encoders.clear()     # a folder of the same name, prepared again in this process, may
                          # hold another tokenizer
    done, todo = {}, []
    for split in ("train", "val"):
        for s in plan["shards"][split]:
            name = s["file"]
            side = out / _sidecar(name)
            if (out / name).is_file() and side.is_file():
                rec = json.loads(side.read_text(encoding="utf-8"))
                if (out / name).stat().st_size == rec["tokens"] * itemsize:
                    done[name] = rec
                    continue
            todo.append((str(out), name, s["blocks"], str(out / TOKENIZER_DIR), dtype,
                         opts.errors))
    if done:
        log(f"{len(done)} shard{'s' * (len(done) != 1)} already written by an earlier run: "
            f"kept")
    total = sum(b["end"] - b["start"] for t in todo for b in t[2])
    bar = _Bar(total, "encoding", progress)
    for rec in _with_local_bar(pool, _write_shard, todo, queue, bar):
        done[rec["file"]] = rec
    bar.close()
    fsync_directory(out)
    index = _index(plan, done)
    atomic_write_text(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    fsync_directory(out)
    for name in done:              # the index holds their records now
        (out / _sidecar(name)).unlink(missing_ok=True)
    return index, len(done) - len(todo)


def _index(plan: dict, records: dict) -> dict:
    splits = {}
    for split in ("train", "val"):
        shards = []
        for s in plan["shards"][split]:
            rec = records[s["file"]]
            pos, docs = 0, []
            for b, n in zip(s["blocks"], rec["block_tokens"]):
                if not docs or docs[-1][0] != b["doc"]:
                    docs.append([b["doc"], pos])
                pos += n
            shards.append({"file": s["file"], "tokens": rec["tokens"], "sha256": rec["sha256"],
                           "documents": docs})
        splits[split] = {"tokens": sum(s["tokens"] for s in shards), "shards": shards}
    return {"format": FORMAT, "version": VERSION, "tokenizer": TOKENIZER_DIR,
            "tokenizer_type": plan["tokenizer_type"], "tokenizer_how": plan["tokenizer_how"],
            "vocab_size": plan["vocab_size"], "dtype": plan["dtype"], "byteorder": "little",
            "splits": splits,
            "documents": [{k: d[k] for k in ("path", "bytes", "split", "replaced_at") if k in d}
                          for d in plan["documents"]],
            "skipped": [{"path": p, "why": "empty (0 bytes)"} for p in plan.get("skipped", [])],
            "windows": "a window never crosses a shard boundary; it may cross a document "
                       "boundary inside a shard",
            "signature": plan["signature"]}


def split_text(folder, split: str = "val", max_chars: int | None = None) -> str:
    """The text of a prepared folder's split (its first max_chars characters), read again
    from the input files its plan.json names, as prepare read them: for `minigpt eval`, which
    counts characters. An error if an input file changed since (size or date)."""
    folder = Path(folder)
    try:
        plan = json.loads((folder / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PrepareError(f"{folder / PLAN_FILE}: cannot read the plan ({e})") from None
    if split not in plan["shards"]:
        raise PrepareError(f"{folder} has no split {split!r} (it has "
                           f"{', '.join(plan['shards'])})")
    for path, size, mtime_ns in plan["signature"]["documents"]:
        try:
            st = Path(path).stat()
        except OSError:
            raise PrepareError(f"{path} (an input of {folder}) is gone; its text cannot be "
                               f"read again") from None
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            raise PrepareError(f"{path} changed since {folder} was prepared; its text is not "
                               f"the shards' any more")
    errors = plan["signature"]["options"]["errors"]
    parts, n = [], 0
    for shard in plan["shards"][split]:
        for block in shard["blocks"]:
            parts.append(_block_text(block, errors))
            n += len(parts[-1])
            if max_chars is not None and n >= max_chars:
                return "".join(parts)[:max_chars]
    return "".join(parts)
