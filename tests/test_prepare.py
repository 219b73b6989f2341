"""minigpt prepare (minigpt/data/prepare.py) and prepared folders (minigpt/data/shards.py):
shards round-trip to the ids of the text, the split is by document, a killed prepare finishes
with identical bytes, bad inputs give named errors, batches over shards follow get_batch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.data import get_batch, load_corpus
from minigpt.data.prepare import (INDEX_FILE, PLAN_FILE, THROTTLE_ENV, PrepareError, prepare,
                                  shard_dtype)
from minigpt.data.shards import ShardError, TokenShards, open_prepared
from minigpt.tokenizers import BPETokenizer, CharTokenizer
from minigpt.tokenizers.fast_encode import array_encoder

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["the", "king", "queen", "Ho", "naïve", "café", "中文", "ÀÉ", "x" * 40, "<unk>", "ﬁn",
         "don't", "!", "?", "—", "a", "to", "be", "or", "not", "Straße", "İstanbul"]


def make_text(rng: np.random.Generator, n_words: int) -> str:
    """Words, punctuation, newlines (some \\r\\n), tabs: text whose cuts matter for BPE."""
    parts = []
    for _ in range(n_words):
        parts.append(WORDS[rng.integers(len(WORDS))])
        r = rng.random()
        parts.append("\n" if r < 0.1 else "\r\n" if r < 0.12 else "\t" if r < 0.14 else " ")
    return "".join(parts)


def write_corpus(folder: Path, n_files: int, n_words: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    for i in range(n_files):
        t = make_text(rng, n_words)
        (folder / f"doc{i:02d}.txt").write_bytes(t.encode("utf-8"))
        texts.append(t.replace("\r\n", "\n"))
    return texts


def split_ids(folder: Path, split: str) -> np.ndarray:
    data = open_prepared(folder)
    shards = data.splits[split].shards
    return np.concatenate(shards) if shards else np.zeros(0, dtype=np.int64)


SMALL = dict(block_bytes=256, shard_mb=0.002, progress=False, log=lambda m: None)


# ----------------------------------------------------------------------------- encoders

text_strategy = st.lists(st.sampled_from(list("ab cé\nÀ中\t!'.<>unk\r\u0301\u2028\x00")
                                        + ["<unk>", "\ud800"]), max_size=80).map("".join)


@settings(max_examples=60, deadline=None)
@given(text=text_strategy)
def test_array_encoder_equals_encode(text):
    """fast_encode's arrays hold exactly what tokenizer.encode returns, for every tokenizer kind
    and option (surrogates, combining marks, controls, the literal <unk>, newlines)."""
    train = "the café naïve 中文 ab ab abc cab!\nÀ b'a <x>\n"
    toks = [CharTokenizer.train(train)] + [
        BPETokenizer.train(train, num_merges=20, lowercase=lc, keep_newlines=nl)
        for lc in (True, False) for nl in (False, True)]
    for tok in toks:
        for dtype in (np.int64, np.uint16):
            got = array_encoder(tok, dtype)(text)
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, np.asarray(tok.encode(text), dtype=np.int64))


def test_shard_dtype():
    assert shard_dtype(65536) == "uint16" and shard_dtype(65537) == "uint32"


# ----------------------------------------------------------------------------- round trip, split

@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_shards_round_trip_and_split_by_document(tmp_path, kind):
    """Many files cut into 256-byte blocks and tiny shards: the train shards hold exactly the ids
    of the train files' text (in file order), the val shards those of the val files; whole
    files go to one split; 1 and 2 workers write the same bytes."""
    texts = write_corpus(tmp_path / "in", n_files=10, n_words=300)
    out1, out2 = tmp_path / "w1", tmp_path / "w2"
    r = prepare([tmp_path / "in"], out1, tokenizer=kind, vocab_size=120, val_fraction=0.2,
                **SMALL)
    prepare([tmp_path / "in"], out2, tokenizer=kind, vocab_size=120, val_fraction=0.2,
            workers=2, **SMALL)
    data = open_prepared(out1, verify=True)
    tok = data.tokenizer()
    splits = [d["split"] for d in r.index["documents"]]
    assert splits.count("val") == 2 and splits.count("train") == 8
    assert len(r.index["splits"]["train"]["shards"]) > 5           # several shards
    for split in ("train", "val"):
        want = np.concatenate([tok.encode(t) for t, s in zip(texts, splits) if s == split])
        np.testing.assert_array_equal(split_ids(out1, split), want)
    assert data.dtype == np.dtype("<u2")
    if kind == "char":  # the char vocabulary is every character of the corpus: exact text back
        assert tok.decode(split_ids(out1, "train")) == "".join(
            t for t, s in zip(texts, splits) if s == "train")
    bins = sorted(p.name for p in out1.iterdir())
    assert bins == sorted(p.name for p in out2.iterdir())
    for name in bins:
        if name.endswith(".bin") or name == INDEX_FILE:
            assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_single_file_split_like_load_corpus(tmp_path, kind):
    """One file is one document: its last 10% of characters are validation, the rule
    `pretrain --data FILE` applies (load_corpus), and the tokenizer is the one pretrain learns
    (char: every character; bpe: merges from the training text)."""
    rng = np.random.default_rng(1)
    path = tmp_path / "one.txt"
    path.write_text(make_text(rng, 2000), encoding="utf-8", newline="")
    corpus = load_corpus(str(path))
    prepare([path], tmp_path / "out", tokenizer=kind, vocab_size=150, **SMALL)
    data = open_prepared(tmp_path / "out")
    if kind == "char":
        ref = CharTokenizer.train(corpus.train + corpus.val)
        assert data.tokenizer().chars == ref.chars
    else:
        ref = BPETokenizer.train(corpus.train, vocab_size=150)
        assert data.tokenizer().merges == ref.merges
    np.testing.assert_array_equal(split_ids(tmp_path / "out", "train"), ref.encode(corpus.train))
    np.testing.assert_array_equal(split_ids(tmp_path / "out", "val"), ref.encode(corpus.val))


def test_tokenizer_from_and_rerun_is_a_no_op(tmp_path):
    texts = write_corpus(tmp_path / "in", n_files=3, n_words=200)
    first = prepare([tmp_path / "in"], tmp_path / "a", tokenizer="bpe", vocab_size=100, **SMALL)
    r = prepare([tmp_path / "in"], tmp_path / "b", tokenizer="bpe", tokenizer_from=tmp_path / "a",
                **SMALL)
    assert "loaded from" in r.index["tokenizer_how"]
    np.testing.assert_array_equal(split_ids(tmp_path / "a", "train"),
                                  split_ids(tmp_path / "b", "train"))
    again = prepare([tmp_path / "in"], tmp_path / "a", tokenizer="bpe", vocab_size=100, **SMALL)
    assert again.index == first.index
    with pytest.raises(PrepareError, match="options differ: vocab_size"):
        prepare([tmp_path / "in"], tmp_path / "a", tokenizer="bpe", vocab_size=101, **SMALL)
    r = prepare([tmp_path / "in"], tmp_path / "d", tokenizer_from=tmp_path / "a", **SMALL)
    assert r.index["tokenizer_type"] == "bpe"      # the loaded kind, none given
    with pytest.raises(PrepareError, match="keeps its own options"):
        prepare([tmp_path / "in"], tmp_path / "e", tokenizer_from=tmp_path / "a",
                bpe_keep_case=True, **SMALL)
    with pytest.raises(PrepareError, match="holds a bpe tokenizer"):
        prepare([tmp_path / "in"], tmp_path / "c", tokenizer="char",
                tokenizer_from=tmp_path / "a", **SMALL)
    assert texts


# ----------------------------------------------------------------------------- restart

def test_killed_prepare_resumes_to_identical_shards(tmp_path):
    """A real `prepare` process killed (SIGKILL) after some shards, rerun: the folder ends up
    byte for byte what an uninterrupted run writes, and the rerun kept the finished shards."""
    write_corpus(tmp_path / "in", n_files=4, n_words=400)
    args = dict(tokenizer="bpe", vocab_size=120, block_bytes=256, shard_mb=0.0005)
    code = (f"from minigpt.data.prepare import prepare; "
            f"prepare([{str(tmp_path / 'in')!r}], {str(tmp_path / 'killed')!r}, progress=False, "
            f"**{args!r})")
    env = {**os.environ, THROTTLE_ENV: "0.2", "PYTHONPATH": str(ROOT)}   # >= 4 s in all
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((tmp_path / "killed").glob("*.bin"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list((tmp_path / "killed").glob("*.bin")))
    assert n_before >= 3 and not (tmp_path / "killed" / INDEX_FILE).exists()
    assert (tmp_path / "killed" / PLAN_FILE).exists()
    with pytest.raises(ShardError, match="unfinished prepare"):
        open_prepared(tmp_path / "killed")
    r = prepare([tmp_path / "in"], tmp_path / "killed", progress=False, log=lambda m: None,
                **args)
    assert r.resumed_shards >= 3
    prepare([tmp_path / "in"], tmp_path / "whole", progress=False, log=lambda m: None, **args)
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert len([n for n in names if n.endswith(".bin")]) > n_before   # it was killed mid-way
    for name in names:
        if name != "tokenizer":
            assert (tmp_path / "whole" / name).read_bytes() == \
                (tmp_path / "killed" / name).read_bytes(), name
    open_prepared(tmp_path / "killed", verify=True)


# ----------------------------------------------------------------------------- bad inputs

def test_bad_inputs_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="no \\*.txt file"):
        prepare([tmp_path / "empty"], tmp_path / "o", **SMALL)
    with pytest.raises(PrepareError, match="matches no file"):
        prepare([str(tmp_path / "nothing*.txt")], tmp_path / "o", **SMALL)
    with pytest.raises(PrepareError, match="no such file"):
        prepare([tmp_path / "missing.txt"], tmp_path / "o", **SMALL)

    good = tmp_path / "good.txt"
    good.write_text("hello world\n" * 50, encoding="utf-8")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"hello\n" * 60 + b"\x89PNG\x00\x01")
    with pytest.raises(PrepareError, match=f"{binary}.*binary.*offset 364"):
        prepare([good, binary], tmp_path / "o", **SMALL)
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes("café\n".encode() * 100 + "café\n".encode("latin-1"))
    with pytest.raises(PrepareError, match=f"{mixed}: byte 0xE9 at offset 603 is not UTF-8"):
        prepare([good, mixed], tmp_path / "o", **SMALL)
    utf16 = tmp_path / "u16.txt"
    utf16.write_bytes("hello\n".encode("utf-16"))
    with pytest.raises(PrepareError, match="UTF-16 text"):
        prepare([good, utf16], tmp_path / "o", **SMALL)
    assert not (tmp_path / "o").exists()      # nothing written before the inputs are checked

    logs = []
    r = prepare([good, mixed], tmp_path / "rep", errors="replace", block_bytes=256,
                progress=False, log=logs.append)
    assert any("U+FFFD" in m and "offset 603" in m for m in logs)
    assert r.index["documents"][1]["replaced_at"] == 603
    assert "\ufffd" in open_prepared(tmp_path / "rep").tokenizer().chars

    folder = tmp_path / "many"
    write_corpus(folder, n_files=3, n_words=50)
    (folder / "doc01.txt").write_bytes(b"")
    logs = []
    r = prepare([folder], tmp_path / "skip", block_bytes=256, progress=False, log=logs.append)
    assert any("skipped" in m and "doc01.txt" in m for m in logs)
    assert [s["path"] for s in r.index["skipped"]] == [str(folder / "doc01.txt")]
    assert len(r.index["documents"]) == 2
    for f in folder.iterdir():
        f.write_bytes(b"")
    with pytest.raises(PrepareError, match="every input file is empty"):
        prepare([folder], tmp_path / "o", **SMALL)

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    with pytest.raises(PrepareError, match="not empty and is not a prepared folder"):
        prepare([good], tmp_path / "taken", **SMALL)
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
    with pytest.raises(PrepareError, match="options of the BPE"):
        prepare([good], tmp_path / "o", tokenizer="char", bpe_keep_case=True, **SMALL)
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 1, got 0"):
        prepare([good], tmp_path / "o", vocab_size=0, **SMALL)   # PrepareConfig's rules
    with pytest.raises(ValueError, match="unknown errors 'ignore'"):
        prepare([good], tmp_path / "o", errors="ignore", **SMALL)
    assert not (tmp_path / "o").exists()


def test_bpe_cut_needs_a_space(tmp_path):
    """BPE text is cut between words only: a 'word' longer than a block is an error naming the
    file and offset; the char tokenizer cuts it at a character boundary."""
    path = tmp_path / "long.txt"
    path.write_text("é" * 400, encoding="utf-8")
    with pytest.raises(PrepareError, match="no line break or space"):
        prepare([path], tmp_path / "o", tokenizer="bpe", vocab_size=10, **SMALL)
    prepare([path], tmp_path / "c", **SMALL)
    tok = open_prepared(tmp_path / "c").tokenizer()
    ids = np.concatenate([split_ids(tmp_path / "c", "train"), split_ids(tmp_path / "c", "val")])
    assert tok.decode(ids) == "é" * 400


def test_damaged_shards_are_named(tmp_path):
    write_corpus(tmp_path / "in", n_files=3, n_words=100)
    prepare([tmp_path / "in"], tmp_path / "o", **SMALL)
    shard = tmp_path / "o" / "train-000000.bin"
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="sha256"):
        open_prepared(tmp_path / "o", verify=True)
    shard.write_bytes(bytes(data[:-2]))
    with pytest.raises(ShardError, match="damaged or replaced"):
        open_prepared(tmp_path / "o")


# ----------------------------------------------------------------------------- batches

def test_one_shard_draws_get_batch_exactly():
    ids = np.random.default_rng(0).integers(0, 50, 1000).astype(np.uint16)
    shards = TokenShards([ids])
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(5):
        x1, y1 = get_batch(shards, 8, 16, a)    # data.get_batch hands TokenShards on
        x2, y2 = get_batch(ids, 8, 16, b)
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        assert x1.dtype == np.int64 and x1.shape == (8, 16)


def test_shards_draw_every_window_uniformly_never_across_shards():
    """Shards of 7, 2 (too short: no window) and 5 tokens with T = 3: 4 + 0 + 2 windows, each
    drawn with probability 1/6; a window is always consecutive tokens of one shard."""
    shards = [np.arange(0, 7), np.arange(100, 102), np.arange(200, 205)]
    ts = TokenShards(shards)
    rng = np.random.default_rng(3)
    counts: dict[int, int] = {}
    n = 0
    for _ in range(600):
        x, y = ts.get_batch(20, 3, rng)
        np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
        np.testing.assert_array_equal(y[:, -1], x[:, -1] + 1)   # consecutive, same shard
        for start in x[:, 0]:
            counts[int(start)] = counts.get(int(start), 0) + 1
            n += 1
    assert sorted(counts) == [0, 1, 2, 3, 200, 201]
    p = 1 / 6
    sigma = np.sqrt(n * p * (1 - p))
    assert all(abs(c - n * p) < 5 * sigma for c in counts.values())
    with pytest.raises(ValueError, match="no shard holds a window"):
        ts.get_batch(2, 7, rng)


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_prepared_folder_trains_like_the_file(tmp_path, kind):
    """`pretrain --data FOLDER` (one file prepared into one train shard, cut in 256-byte
    blocks) follows `pretrain --data FILE`'s loss and validation curve exactly (same tokenizer,
    same seed), and a run from the folder stopped at step 3 and resumed does too."""
    from minigpt.runfolder import read_metrics
    from minigpt.training import TrainConfig, pretrain

    path = tmp_path / "text.txt"
    path.write_text(make_text(np.random.default_rng(2), 3000), encoding="utf-8", newline="")
    prepare([path], tmp_path / "prep", tokenizer=kind, vocab_size=150, block_bytes=256,
            progress=False, log=lambda m: None)
    assert len(open_prepared(tmp_path / "prep").train.shards) == 1

    def run(data, out, steps, resume=False):
        cfg = TrainConfig(data=str(data), tokenizer=kind, bpe_vocab_size=150, steps=steps,
                          batch_size=4, block_size=16, n_layer=1, n_embd=16, n_head=2,
                          eval_interval=2, eval_batches=2, ckpt_interval=100,
                          out=str(tmp_path / out))
        pretrain(cfg, resume=resume, progress=False, log=lambda *a: None)
        return [{k: r[k] for k in ("step", "loss", "lr", "val_loss") if k in r}
                for r in read_metrics(tmp_path / out / "metrics.jsonl")]

    from_file = run(path, "file", 6)
    assert run(tmp_path / "prep", "folder", 6) == from_file
    run(tmp_path / "prep", "resumed", 3)
    resumed = run(tmp_path / "prep", "resumed", 6, resume=True)
    resumed[2].pop("val_loss")       # the 3-step run evaluated at its last step, 3
    assert resumed == from_file
    assert len({r["loss"] for r in from_file}) > 1


def test_eval_of_a_folder_trained_run_reads_the_folders_validation_shards(tmp_path, capsys):
    """`minigpt eval` on a run trained from a prepared folder evaluates the folder's validation
    shards (it used to try to read the folder as a text file). One file prepared into one shard
    per split: the same loss as evaluating the file's validation text. A folder of another
    vocabulary is a named error."""
    from minigpt.cli import main
    from minigpt.training import TrainConfig, pretrain

    path = tmp_path / "text.txt"
    path.write_text(make_text(np.random.default_rng(4), 2000), encoding="utf-8", newline="")
    prepare([path], tmp_path / "prep", tokenizer="char", block_bytes=256, progress=False,
            log=lambda m: None)
    cfg = TrainConfig(data=str(tmp_path / "prep"), steps=3, batch_size=4, block_size=16,
                      n_layer=1, n_embd=16, n_head=2, eval_batches=1, ckpt_interval=100,
                      out=str(tmp_path / "run"))
    pretrain(cfg, progress=False, log=lambda *a: None)

    def loss_line(*extra):
        assert main(["eval", "--ckpt", str(tmp_path / "run"), "--max-tokens", "100000",
                     *extra]) == 0
        out = capsys.readouterr().out
        return out, [line for line in out.splitlines() if line.startswith("validation loss")]

    folder_out, folder_loss = loss_line()
    assert "prepared folder" in folder_out and "n/a" in folder_out
    file_out, file_loss = loss_line("--data", str(path))
    assert folder_loss == file_loss and len(folder_loss) == 1
    n_val = len(open_prepared(tmp_path / "prep").val)
    assert f"{n_val - 1:,} tokens" in folder_out

    prepare([path], tmp_path / "other", tokenizer="bpe", vocab_size=120, block_bytes=256,
            progress=False, log=lambda m: None)
    assert main(["eval", "--ckpt", str(tmp_path / "run"), "--data",
                 str(tmp_path / "other")]) == 2
    assert "was prepared with a vocabulary of" in capsys.readouterr().err


def _rss_file_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    raise AssertionError("no RssFile line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_batches_do_not_grow_resident_memory(tmp_path):
    """Drawing batches from mapped shards leaves no pages resident (released after each batch):
    without the release, 300 batches of 32 windows map most of this 8 MB folder."""
    rng = np.random.default_rng(0)
    path = tmp_path / "big.txt"
    path.write_bytes(rng.integers(97, 123, 4_000_000, dtype=np.uint8).tobytes())
    prepare([path], tmp_path / "p", val_fraction=0.1, progress=False, log=lambda m: None)
    data = open_prepared(tmp_path / "p")
    before = _rss_file_kb()      # (the kernel may map large folios: measure from the start)
    for _ in range(300):
        data.train.get_batch(32, 64, rng)
    assert _rss_file_kb() - before < 1024


def test_command_line(tmp_path, capsys):
    """`minigpt prepare` writes the folder and says how to train on it; a bad input is one
    line `minigpt prepare: error: ...` with exit status 2; a bad range is a parse error."""
    from minigpt.cli import main
    write_corpus(tmp_path / "in", n_files=3, n_words=100)
    assert main(["prepare", "--data", str(tmp_path / "in"), "--out", str(tmp_path / "o"),
                 "--tokenizer", "bpe", "--vocab-size", "80", "--workers", "1",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bpe tokenizer" in out and f"minigpt pretrain --data {tmp_path / 'o'}" in out
    assert open_prepared(tmp_path / "o").tokenizer().vocab_size <= 80
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "--data", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "o2")]) == 2
    assert "minigpt prepare: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--data", "x", "--out", "y", "--val-fraction", "1"])
    assert e.value.code == 2


def test_split_text_reads_the_split_again(tmp_path):
    """split_text gives back the text whose ids the split holds (for eval's character count);
    a changed input file is an error."""
    from minigpt.data.prepare import split_text
    path = tmp_path / "one.txt"
    path.write_text(make_text(np.random.default_rng(4), 1500), encoding="utf-8", newline="")
    prepare([path], tmp_path / "p", **SMALL)
    corpus = load_corpus(str(path))
    assert split_text(tmp_path / "p", "val") == corpus.val
    assert split_text(tmp_path / "p", "train", max_chars=100) == corpus.train[:100]
    tok = open_prepared(tmp_path / "p").tokenizer()
    np.testing.assert_array_equal(split_ids(tmp_path / "p", "val"),
                                  tok.encode(split_text(tmp_path / "p", "val")))
    path.write_text("changed", encoding="utf-8")
    with pytest.raises(PrepareError, match="changed since"):
        split_text(tmp_path / "p")
