"""Fuzzing checkpoint folders (issue 24): whatever is wrong in one, loading it is a short
ValueError (CheckpointError, SafetensorsError, ...) or a correct load, never another exception
and never a large allocation.

Hypothesis starts from a valid checkpoint (BPE tokenizer, Adam moments) and applies one to
three mutations: a JSON field of config.json / state.json / tokenizer_config.json / vocab.json
set to a hostile value (bools, huge or negative integers, 5,000-digit integers, NaN, strings,
lists, 10,000-deep nesting) or deleted; a whole file replaced (random bytes, other JSON, empty);
a safetensors header entry's dtype, shape or offsets changed, its length field changed, or the
file truncated; a file replaced by a symbolic link (to another file, a folder, /dev/zero, a
missing path), a folder or a named pipe. Loading runs under an address-space cap (RLIMIT_AS:
what the process already maps plus 1.5 GiB), so a runaway allocation is a MemoryError and fails
the test. The example count is bounded (about 10-20 s on a 2-core machine).
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import struct
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigpt import GPT, GPTConfig
from minigpt.optim import Adam
from minigpt.tokenizers import BPETokenizer
from minigpt.training import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the memory cap (RLIMIT_AS) is set the Linux way")

JSON_FILES = ("config.json", "state.json", "tokenizer_config.json", "vocab.json")
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors")
ALL_FILES = JSON_FILES + TENSOR_FILES + ("merges.txt",)
MESSAGE_LIMIT = 500        # characters of an error message, beyond the paths in it
EXTRA_MEMORY = 1.5 * 2**30


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """A valid checkpoint: BPE tokenizer, a 1-layer model of its vocabulary, Adam moments."""
    root = tmp_path_factory.mktemp("fuzz")
    tok = BPETokenizer.train("low lower lowest newer wider new wide " * 30, vocab_size=40)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_ctx=8, n_layer=1, n_embd=8, n_head=2))
    opt = Adam(model.parameters(), lr=1e-3)
    idx = np.array([[1, 2, 3, 4]])
    model.loss(idx[:, :-1], idx[:, 1:]).backward()
    opt.step()
    state = {"step": 1, "train_config": {"data": "x.txt"}, "last_loss": 1.5,
             "last_val_loss": None}
    return save_checkpoint(root / "ckpt", model, tok, opt, state)


@contextlib.contextmanager
def memory_cap(extra: float = EXTRA_MEMORY):
    """RLIMIT_AS lowered to what the process maps now plus `extra` bytes, restored after."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    old = resource.getrlimit(resource.RLIMIT_AS)
    cap = int(vm + extra)
    if old[1] != resource.RLIM_INFINITY:
        cap = min(cap, old[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


# ----------------------------------------------------------------------------- hostile values

class _Raw:
    """JSON text written as is (nesting too deep for json.dumps, or an integer of 5,000 digits)."""

    def __init__(self, text: str):
        self.text = text


hostile_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-2**70, 2**70), st.sampled_from([0, -1, 1, 2**31, 2**63, 10**9, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["", "no", "true", "F32", "I32", "<unk>", "bpe"]),
    st.just(_Raw("9" * 5000)),
)
hostile_values = st.one_of(
    hostile_scalars,
    st.lists(hostile_scalars, max_size=4),
    st.dictionaries(st.text(max_size=6), hostile_scalars, max_size=3),
    st.sampled_from([10, 40, 100_000]).map(lambda d: _Raw("[" * d + "]" * d)),
)


def dumps(value) -> str:
    """json.dumps that writes _Raw pieces as they are (NaN/Infinity as Python writes them)."""
    raws: list[str] = []

    def encode(v):
        if isinstance(v, _Raw):
            raws.append(v.text)
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(v, list):
            return [encode(x) for x in v]
        if isinstance(v, dict):
            return {k: encode(x) for k, x in v.items()}
        return v
    text = json.dumps(encode(value))
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw)
    return text


# ----------------------------------------------------------------------------- mutations

def remove(path) -> None:
    """Whatever is at `path` (file, link, pipe, folder) is removed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def regular(path) -> bool:
    """A plain file (not a link, pipe or folder an earlier mutation left): safe to read."""
    return not path.is_symlink() and path.is_file()


def set_json_field(d, file, key_choice, value):
    path = d / file
    if not regular(path):
        return
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):   # the test's own reading of an earlier mutation
        return
    if not isinstance(obj, dict):
        return
    target = obj
    nested = [k for k, v in obj.items() if isinstance(v, dict)]
    if nested and key_choice % 3 == 0:          # one level down: options, optimizer, ...
        target = obj[nested[key_choice % len(nested)]]
    keys = sorted(target) or ["x"]
    key = keys[key_choice % len(keys)]
    if value == "__delete__":
        target.pop(key, None)
    else:
        target[key] = value
    path.write_text(dumps(obj))


def replace_file(d, file, content: bytes):
    path = d / file
    remove(path)
    path.write_bytes(content)


def mutate_header(d, file, entry_choice, field, value):
    path = d / file
    if not regular(path):
        return
    try:
        data = path.read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
    except (OSError, ValueError, RecursionError, struct.error):
        return
    if not isinstance(header, dict):
        return
    names = sorted(k for k in header if k != "__metadata__")
    if not names or not isinstance(header[names[entry_choice % len(names)]], dict):
        return
    entry = header[names[entry_choice % len(names)]]
    if field == "entry":
        header[names[entry_choice % len(names)]] = value
    elif field == "alias":          # this tensor's bytes are another's
        other = header[names[(entry_choice + 1) % len(names)]]
        entry["data_offsets"] = other.get("data_offsets") if isinstance(other, dict) else other
    else:
        entry[field] = value
    blob = dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + n:])


def set_header_length(d, file, n):
    path = d / file
    if not regular(path):
        return
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", n) + data[8:])


def truncate(d, file, fraction):
    path = d / file
    if not regular(path):
        return
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def replace_by_link_or_special(d, file, kind):
    path = d / file
    remove(path)
    if kind == "link-to-other":
        os.symlink(d / ("model.safetensors" if file != "model.safetensors" else "config.json"),
                   path)
    elif kind == "link-to-folder":
        os.symlink(d.parent, path)
    elif kind == "link-to-dev-zero":
        os.symlink("/dev/zero", path)
    elif kind == "link-dangling":
        os.symlink(d / "no-such-file", path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)


mutations = st.one_of(
    st.tuples(st.just(set_json_field), st.sampled_from(JSON_FILES), st.integers(0, 50),
              st.one_of(hostile_values, st.just("__delete__"))),
    st.tuples(st.just(replace_file), st.sampled_from(ALL_FILES),
              st.one_of(st.binary(max_size=64), st.just(b""),
                        hostile_values.map(lambda v: dumps(v).encode()))),
    st.tuples(st.just(mutate_header), st.sampled_from(TENSOR_FILES), st.integers(0, 50),
              st.sampled_from(["dtype", "shape", "data_offsets", "entry", "alias"]),
              hostile_values),
    st.tuples(st.just(set_header_length), st.sampled_from(TENSOR_FILES),
              st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 4096))),
    st.tuples(st.just(truncate), st.sampled_from(ALL_FILES), st.floats(0, 0.999)),
    st.tuples(st.just(replace_by_link_or_special), st.sampled_from(ALL_FILES),
              st.sampled_from(["link-to-other", "link-to-folder", "link-to-dev-zero",
                               "link-dangling", "folder", "fifo"])),
)


@settings(max_examples=800, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(steps=st.lists(mutations, min_size=1, max_size=3))
def test_a_damaged_checkpoint_is_a_short_value_error_or_a_correct_load(base_checkpoint,
                                                                        tmp_path, steps):
    work = tmp_path / f"case{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base_checkpoint, work)
    for fn, *args in steps:
        fn(work, *args)
    try:
        with memory_cap():
            try:
                model, tokenizer, state = load_checkpoint(work, with_optimizer_state=True)
            except ValueError as e:        # CheckpointError, SafetensorsError, ... are ValueErrors
                message = str(e).replace(str(work), "").replace(str(work.parent), "")
                assert len(message) < MESSAGE_LIMIT, message[:300]
                return
        # loaded: what came back must be consistent
        assert model.config.vocab_size == model.tokens_embed.weight.shape[0]
        if tokenizer is not None:
            assert tokenizer.vocab_size == model.config.vocab_size
        for p in model.parameters():
            assert p.data.dtype == np.dtype(model.config.dtype)
    finally:
        shutil.rmtree(work, ignore_errors=True)
