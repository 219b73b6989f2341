"""Tokenizers: round trips, BPE merge order, deterministic training, files, parity with
transformers' OpenAIGPTTokenizer."""
import importlib.util
import json
import os
import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigpt.tokenizers import (GPT1_SPECIAL_TOKENS, BPETokenizer, CharTokenizer, merge_symbols,
                                load_tokenizer)

REPO = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

SAMPLE = """\
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them. To die -- to sleep,
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to: 'tis a consummation
Devoutly to be wish'd. To die, to sleep;
To sleep, perchance to dream -- ay, there's the rub!
Now is the winter of our discontent
Made glorious summer by this sun of York; [1623] {folio} #42 @home $5 100% ^_^ a|b ~x `y`
"""
WORDS = sorted(set(BPETokenizer({"<unk>": 0}, []).pre_tokenize(SAMPLE)))


def _corpus(n_words: int, seed: int = 0) -> str:
    """Pseudo-English: SAMPLE's words drawn with Zipf-like frequencies, random line breaks."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    words = rng.choice(WORDS, size=n_words, p=p / p.sum())
    seps = rng.choice([" ", " ", " ", "\n", ", "], size=n_words)
    return SAMPLE + "".join(w + s for w, s in zip(words, seps))


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(_corpus(20_000), vocab_size=400)


@pytest.fixture(scope="module")
def bpe_newlines():
    return BPETokenizer.train(_corpus(5_000), vocab_size=300, keep_newlines=True,
                              lowercase=False)


def _known_text(tok, extra=" \n\t"):
    """Strings over characters the tokenizer's vocabulary knows (upper case folds to lower)."""
    chars = sorted({t for t in tok.get_vocab() if len(t) == 1})
    if tok.lowercase:
        chars += [c.upper() for c in chars if c.upper() != c and len(c.upper()) == 1]
    return st.text(alphabet=st.sampled_from(chars + list(extra)), max_size=120)


# ---------- characters

@SETTINGS
@given(st.text(min_size=1, max_size=200))
def test_char_round_trip(s):
    tok = CharTokenizer.train(s)
    assert tok.decode(tok.encode(s)) == s
    assert tok.vocab_size == len(set(s)) + 1


def test_char_vocab_layout_and_unknown():
    tok = CharTokenizer.train("hello world")
    assert tok.unk_id == 0 and tok.id_to_token(0) == "<unk>"
    assert tok.chars == sorted(set("hello world"))
    assert tok.encode("hel") == [tok.token_to_id(c) for c in "hel"]
    ids = tok.encode("hex€\n")  # unseen x, €, newline: unk, never an error
    assert ids[2:] == [0, 0, 0] and ids[:2] == tok.encode("he")
    assert tok.decode(tok.encode("zz")) == "<unk><unk>"
    with pytest.raises(KeyError, match="not in the vocabulary"):
        tok.token_to_id("Q")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.train("")


def test_char_special_tokens_appended(tmp_path):
    tok = CharTokenizer.train("abc")
    n = tok.vocab_size
    ids = tok.add_special_tokens(list(GPT1_SPECIAL_TOKENS))
    assert ids == [n, n + 1, n + 2] and tok.vocab_size == n + 3
    assert tok.add_special_tokens(["_start_", "a"]) == [n, tok.token_to_id("a")]  # idempotent
    assert tok.vocab_size == n + 3
    assert tok.encode("_start_") == [0, 0, 0, tok.token_to_id("a"), 0, 0, 0]  # stays text
    assert tok.decode([n, 1]) == "_start_a"
    assert tok.decode([n, 1], skip_special_tokens=True) == "a"
    tok.save(tmp_path)
    back = load_tokenizer(tmp_path)
    assert isinstance(back, CharTokenizer)
    assert back.get_vocab() == tok.get_vocab() and back.special_tokens == tok.special_tokens


@SETTINGS
@given(st.text(min_size=1, max_size=100))
def test_char_save_load_round_trip(tmp_path_factory, s):
    tok = CharTokenizer.train(s)
    d = tmp_path_factory.mktemp("char")
    tok.save(d)
    back = load_tokenizer(d)
    assert back.get_vocab() == tok.get_vocab()
    assert back.encode(s + "\u2603") == tok.encode(s + "\u2603")


# ---------- BPE: normalisation and round trip

def test_bpe_normalisation_rules(bpe):
    assert bpe.pre_tokenize("Hello, World!") == ["hello", ",", "world", "!"]
    assert bpe.normalize("Hello,   World!\n\tBye") == "hello , world ! bye"
    assert bpe.pre_tokenize("café naïve") == ["cafe", "naive"]          # accents stripped
    assert bpe.pre_tokenize("x\x0by\x0cz\x00w") == ["xyzw"]               # controls vanish
    assert bpe.pre_tokenize("a\u2028b\u00a0c") == ["a", "b", "c"]         # Unicode spaces split
    assert bpe.pre_tokenize("\u4e2d\u6587ab") == ["\u4e2d", "\u6587", "ab"]  # CJK isolated
    assert bpe.pre_tokenize("don't--stop\u2014now") == ["don", "'", "t", "-", "-", "stop",
                                                       "\u2014", "now"]
    assert bpe.pre_tokenize("ΣΑΣ") == ["σασ"]                              # no final sigma


@SETTINGS
@given(data=st.data())
def test_bpe_round_trip_normalized(bpe, data):
    s = data.draw(_known_text(bpe))
    ids = bpe.encode(s)
    assert 0 not in ids
    assert bpe.decode(ids) == bpe.normalize(s)
    assert bpe.encode(bpe.normalize(s)) == ids  # normalising twice changes nothing


@SETTINGS
@given(data=st.data())
def test_bpe_round_trip_keep_newlines_and_case(bpe_newlines, data):
    tok = bpe_newlines
    s = data.draw(_known_text(tok))
    assert tok.decode(tok.encode(s)) == tok.normalize(s)
    assert tok.normalize("A b\n\nC ,d \n") == "A b\n\nC , d\n"


@pytest.fixture(scope="module")
def cased_pair():
    """Two BPEs trained on the same mixed-case text: one keeping case, one lowercasing."""
    rng = np.random.default_rng(3)
    text = "".join(c.upper() if rng.random() < 0.3 else c for c in _corpus(4_000, seed=2))
    return (BPETokenizer.train(text, vocab_size=400, lowercase=False),
            BPETokenizer.train(text, vocab_size=300, lowercase=True))


@SETTINGS
@given(data=st.data())
def test_bpe_keep_case_round_trip_and_lowercase_differs_only_in_case(cased_pair, data):
    keep, low = cased_pair
    chars = sorted({t for t in keep.get_vocab() if len(t) == 1 and t.isascii()})
    assert any(c.isupper() for c in chars)
    s = data.draw(st.text(alphabet=st.sampled_from(chars + [" ", "\n"]), max_size=120))
    ids = keep.encode(s)
    assert 0 not in ids
    back = keep.decode(ids)
    assert back == keep.normalize(s)
    assert [c for c in back if c.isupper()] == [c for c in s if c.isupper()]  # capitals kept
    lowered = low.decode(low.encode(s))
    assert lowered == low.normalize(s) == back.lower()                      # only case differs


def test_bpe_keep_case_saved_and_loaded(tmp_path, cased_pair):
    keep, _ = cased_pair
    keep.save(tmp_path)
    text = "To Be, or NOT to be"
    for back in (load_tokenizer(tmp_path), BPETokenizer.from_pretrained(tmp_path)):
        assert not back.lowercase and back.encode(text) == keep.encode(text)
        assert back.decode(back.encode(text)) == "To Be , or NOT to be"


@SETTINGS
@given(st.text(max_size=200))
def test_bpe_unknown_characters_never_crash(bpe, s):
    ids = bpe.encode(s)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    bpe.decode(ids)


def test_bpe_unknown_maps_to_unk_id_0(bpe):
    assert bpe.token_to_id("<unk>") == 0
    assert bpe.encode("€") == [0]
    n = len(bpe.encode("to"))
    ids = bpe.encode("to €be")
    assert ids[:n] == bpe.encode("to") and ids[n] == 0 and 0 not in ids[n + 1:]


# ---------- BPE: merge order

def _tiny_vocab(extra):
    vocab = {"<unk>": 0}
    for c in "abcd":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    for t in extra:
        vocab[t] = len(vocab)
    return vocab


def test_merges_applied_in_rank_order():
    vocab = _tiny_vocab(["bc</w>", "ab", "abc</w>"])
    first = BPETokenizer(vocab, [("b", "c</w>"), ("a", "b"), ("ab", "c</w>")])
    second = BPETokenizer(vocab, [("a", "b"), ("b", "c</w>"), ("ab", "c</w>")])
    # rank 0 wins although (a, b) comes first in the word; afterwards (a, bc</w>) is no merge
    assert first.tokenize("abc") == ["a", "bc</w>"]
    # with (a, b) ranked first, the word ends up whole through (ab, c</w>)
    assert second.tokenize("abc") == ["abc</w>"]
    # overlapping occurrences of the same pair: leftmost first
    aa = BPETokenizer({**_tiny_vocab(["aa"])}, [("a", "a")])
    assert aa.tokenize("aaaa") == ["aa", "a", "a</w>"]  # "a</w>" is a different symbol
    assert aa.tokenize("aaaaa") == ["aa", "aa", "a</w>"]


def _reference_bpe(word, merges):
    """Textbook BPE: apply each merge in rank order to every occurrence, left to right."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    for a, b in merges:
        symbols = merge_symbols(symbols, a, b, a + b)  # left to right, no overlaps
    return symbols


@SETTINGS
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map("".join))
def test_bpe_matches_textbook_rank_order(bpe, word):
    products = [a + b for a, b in bpe.merges]
    assert len(set(products)) == len(products)  # no token spelled by two merges: equivalent
    assert bpe._bpe(word) == _reference_bpe(word, bpe.merges)


# ---------- BPE: training

def test_training_picks_most_frequent_pair_then_smallest():
    tok = BPETokenizer.train("ab ab ab cd cd xy", num_merges=3, min_frequency=1)
    assert tok.merges[0] == ("a", "b</w>")                     # 3 occurrences
    assert tok.merges[1] == ("c", "d</w>")                     # 2
    assert tok.merges[2] == ("x", "y</w>")                     # 1 (only pair left)
    tie = BPETokenizer.train("zq ab", num_merges=1, min_frequency=1)
    assert tie.merges == [("a", "b</w>")]                      # tie: smallest pair
    stop = BPETokenizer.train("ab ab cd", num_merges=10)       # min_frequency 2
    assert stop.merges == [("a", "b</w>")]


def test_training_vocab_layout_and_size():
    text = _corpus(3000)
    tok = BPETokenizer.train(text, vocab_size=250)
    vocab = tok.get_vocab()
    assert tok.vocab_size == 250 and vocab["<unk>"] == 0
    chars = sorted({c for w in tok.pre_tokenize(text) for c in w})
    base = sorted(set(chars) | {c + "</w>" for c in chars})
    assert [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])[1:1 + len(base)]] == base
    with pytest.raises(ValueError, match="base symbols"):
        BPETokenizer.train(text, vocab_size=10)
    with pytest.raises(ValueError, match="exactly one"):
        BPETokenizer.train(text, vocab_size=300, num_merges=3)
    with pytest.raises(ValueError, match="empty"):
        BPETokenizer.train(" \n ", num_merges=3)


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet="abcde ,.\n", min_size=1, max_size=300), st.integers(0, 40))
def test_training_deterministic(text, n):
    if not text.strip():
        return
    a = BPETokenizer.train(text, num_merges=n, min_frequency=1)
    b = BPETokenizer.train(text, num_merges=n, min_frequency=1)
    assert a.merges == b.merges and a.get_vocab() == b.get_vocab()
    assert len(a.merges) <= n


def test_training_independent_of_hash_seed(tmp_path):
    code = ("import sys; from minigpt.tokenizers import BPETokenizer; "
            "t = BPETokenizer.train(open(sys.argv[1]).read(), num_merges=150); "
            "print('|'.join(a + ' ' + b for a, b in t.merges))")
    src = tmp_path / "text.txt"
    src.write_text(_corpus(4000, seed=3))
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        outs.append(subprocess.run([sys.executable, "-c", code, str(src)], env=env,
                                   capture_output=True, text=True, check=True).stdout)
    assert outs[0] == outs[1] and outs[0].count("|") == 149


def _pseudo_english(n_unique: int, n_words: int, seed: int = 0) -> str:
    """Made-up words of 1-4 syllables with Zipf frequencies: a vocabulary as varied as prose."""
    rng = np.random.default_rng(seed)
    onsets = ["b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "st", "th"]
    vowels = ["a", "e", "i", "o", "u", "ea", "ou"]
    syllables = [o + v for o in onsets for v in vowels]
    words: set[str] = set()
    while len(words) < n_unique:
        picks = rng.integers(0, len(syllables), size=(n_unique, 4))
        lengths = rng.integers(1, 5, size=n_unique)
        words.update("".join(syllables[j] for j in row[:k]) for row, k in zip(picks, lengths))
    words = sorted(words)[:n_unique]
    p = 1.0 / np.arange(1, n_unique + 1)
    idx = rng.choice(n_unique, size=n_words, p=p / p.sum())
    return " ".join(words[i] for i in idx)


def test_training_is_fast():
    text = _pseudo_english(30_000, 160_000)  # about 1 MB
    assert len(text) > 900_000
    t0 = time.perf_counter()
    tok = BPETokenizer.train(text, vocab_size=3000, min_frequency=1)
    elapsed = time.perf_counter() - t0
    assert elapsed < 30, f"training took {elapsed:.1f} s"
    t0 = time.perf_counter()
    ids = tok.encode(text)
    assert time.perf_counter() - t0 < 10 and len(ids) < len(text) / 2


# ---------- BPE: files and special tokens

def test_bpe_save_load_round_trip(tmp_path):
    tok = BPETokenizer.train(_corpus(2000), vocab_size=200, keep_newlines=True)
    tok.add_special_tokens(list(GPT1_SPECIAL_TOKENS))
    tok.save(tmp_path)
    lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "#version: 0.2" and lines[1] == " ".join(tok.merges[0])
    assert len(json.loads((tmp_path / "vocab.json").read_text())) == 200  # specials not in it
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["type"] == "bpe" and config["special_tokens"] == list(GPT1_SPECIAL_TOKENS)
    assert config["options"]["keep_newlines"] is True
    back = load_tokenizer(tmp_path)
    assert isinstance(back, BPETokenizer)
    assert back.merges == tok.merges and back.get_vocab() == tok.get_vocab()
    assert back.keep_newlines and back.lowercase
    text = _corpus(300, seed=5)
    assert back.encode(text) == tok.encode(text)


def test_bpe_special_tokens(bpe):
    tok = BPETokenizer(bpe.get_vocab(), bpe.merges)
    n = tok.vocab_size
    assert tok.add_special_tokens(list(GPT1_SPECIAL_TOKENS)) == [n, n + 1, n + 2]
    start, delim, clf = (tok.token_to_id(t) for t in GPT1_SPECIAL_TOKENS)
    assert 0 not in tok.encode("_start_") and start not in tok.encode("_start_ x")
    ids = [start] + tok.encode("to be") + [delim] + tok.encode("or not") + [clf]
    assert tok.decode(ids) == "_start_ to be _delimiter_ or not _classify_"
    assert tok.decode(ids, skip_special_tokens=True) == "to be or not"


def test_from_pretrained_openai_layout(tmp_path, bpe):
    """OpenAI's release: encoder_bpe_40000.json + vocab_40000.bpe (one header line)."""
    (tmp_path / "encoder_bpe_40000.json").write_text(json.dumps(bpe.get_vocab()))
    (tmp_path / "vocab_40000.bpe").write_text(
        "#version 0.2 (any header)\n" + "".join(f"{a} {b}\n" for a, b in bpe.merges))
    tok = BPETokenizer.from_pretrained(tmp_path, special_tokens=GPT1_SPECIAL_TOKENS)
    assert tok.merges == bpe.merges
    assert tok.lowercase and not tok.keep_newlines    # GPT-1's vocabulary: lowercased
    assert tok.encode("To BE\nOr") == tok.encode("to be or")
    assert tok.special_ids == [bpe.vocab_size, bpe.vocab_size + 1, bpe.vocab_size + 2]
    text = _corpus(200, seed=7)
    assert tok.encode(text) == bpe.encode(text)


def test_from_pretrained_hf_dir_ignores_foreign_config(tmp_path, bpe):
    bpe.save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 512}')
    tok = BPETokenizer.from_pretrained(tmp_path)
    assert tok.merges == bpe.merges and tok.lowercase
    with pytest.raises(ValueError, match="tokenizer_config.json"):
        load_tokenizer(tmp_path)


def test_file_errors_name_the_file(tmp_path, bpe):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="vocab.json.*merges.txt"):
        BPETokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="tokenizer_config.json"):
        load_tokenizer(tmp_path)
    bpe.save(tmp_path)
    merges = (tmp_path / "merges.txt").read_text()
    (tmp_path / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        load_tokenizer(tmp_path)
    (tmp_path / "merges.txt").write_text(merges + "three parts here\n")
    with pytest.raises(ValueError, match=r"merges.txt:\d+"):
        load_tokenizer(tmp_path)
    (tmp_path / "merges.txt").write_text(merges + "q@ z!\n")
    with pytest.raises(ValueError, match=r"merges.txt:\d+.*not in vocab.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "merges.txt").write_text(merges)
    vocab = (tmp_path / "vocab.json").read_text()
    (tmp_path / "vocab.json").write_text(vocab[: len(vocab) // 2])
    with pytest.raises(ValueError, match="vocab.json.*corrupt JSON"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_text('{"<unk>": 0, "a": 5}')
    with pytest.raises(ValueError, match="vocab.json.*0..1"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_text(vocab)
    (tmp_path / "tokenizer_config.json").write_text('{"type": "wordpiece"}')
    with pytest.raises(ValueError, match="tokenizer_config.json.*wordpiece"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match="tokenizer_config.json.*UTF-8"):
        load_tokenizer(tmp_path)


def test_char_tokenizer_dir_is_not_bpe(tmp_path):
    CharTokenizer.train("abc").save(tmp_path)
    with pytest.raises(ValueError, match="'char' tokenizer"):
        BPETokenizer.from_pretrained(tmp_path)


# ---------- parity with transformers

def _hf_tokenizer(directory):
    """transformers' OpenAIGPTTokenizer on `directory`, checked to run the BERT-style path
    (BasicTokenizer rules: no ftfy, no spaCy) that minigpt matches."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.OpenAIGPTTokenizer.from_pretrained(str(directory))
    backend = getattr(hf, "_tokenizer", None)
    if backend is not None and hasattr(backend, "pre_tokenizer"):   # transformers >= 5
        assert type(backend.normalizer).__name__ == "BertNormalizer"
        assert type(backend.pre_tokenizer).__name__ == "BertPreTokenizer"
        assert "lowercase=True" in repr(backend.normalizer)
    else:                                                           # 4.x slow tokenizer
        if hasattr(hf, "fix_text") and hf.fix_text is not None:
            pytest.skip("ftfy and spaCy are installed: OpenAIGPTTokenizer uses the "
                        "original spaCy path, which minigpt does not reproduce")
        assert type(hf.nlp).__name__ == "BasicTokenizer"
    return hf


@pytest.fixture(scope="module")
def parity_pair(tmp_path_factory):
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (optional parity dependency)")
    ours = BPETokenizer.train(_corpus(20_000, seed=1), vocab_size=500)
    hf_dir = tmp_path_factory.mktemp("hf")
    ours.save(hf_dir)
    (hf_dir / "tokenizer_config.json").unlink()  # only the two HuggingFace files
    assert sorted(p.name for p in hf_dir.iterdir()) == ["merges.txt", "vocab.json"]
    return BPETokenizer.from_pretrained(hf_dir), _hf_tokenizer(hf_dir)


ASCII = string.ascii_letters + string.digits + string.punctuation + string.whitespace + "\n"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=ASCII, max_size=200))
def test_parity_ascii(parity_pair, s):
    ours, hf = parity_pair
    assert ours.encode(s) == hf.encode(s, add_special_tokens=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(list(ASCII)),
                          st.sampled_from([w.upper() for w in WORDS])),
                max_size=40).map("".join))
def test_parity_words(parity_pair, s):
    ours, hf = parity_pair
    assert ours.encode(s) == hf.encode(s, add_special_tokens=False)


def test_parity_long_text_and_unicode(parity_pair):
    ours, hf = parity_pair
    unicode = "Café NAÏVE façade \u2028 x\x0by \u4e2d\u6587 € ΣΑΣ"
    for text in (_corpus(3000, seed=9), unicode):
        assert ours.encode(text) == hf.encode(text, add_special_tokens=False)
    ids = ours.encode(SAMPLE)
    assert hf.convert_ids_to_tokens(ids) == [ours.id_to_token(i) for i in ids]


def test_literal_unk_token_matches_transformers(parity_pair):
    """transformers matches the unknown token's text before normalising ('<unk>' -> 0, but
    '<UNK>' is ordinary punctuation and letters); minigpt does the same."""
    ours, hf = parity_pair
    for s in ["<unk>", "a<unk>b", "x <unk> y<unk>", "<UNK>", "<unk", "unk>"]:
        assert ours.encode(s) == hf.encode(s, add_special_tokens=False)
    assert ours.encode("<unk>") == [ours.unk_id]


# ---------- the two tiers of BPE merge learning

_SYLLABLES = ["lo", "w", "er", "new", "est", "wid", "a", "aa", "ab", "b", "ba", "the", "e", "r"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=st.lists(st.lists(st.sampled_from(_SYLLABLES), min_size=1, max_size=5).map("".join),
                      min_size=1, max_size=40),
       merges=st.integers(0, 40), min_frequency=st.integers(1, 3), by_size=st.booleans())
def test_fast_bpe_learning_equals_the_reference(words, merges, min_frequency, by_size):
    """minigpt/tokenizers/bpe_train_fast.py (incremental counts, heap) learns exactly the reference's merges and
    vocabulary: the same order, the same tie-breaks, the same stops, also for pairs that come
    back ("aa a" style repeats) and tokens that two merges spell alike."""
    import minigpt
    from minigpt import dispatch
    text = " ".join(words)
    kw = {"vocab_size": 25 + merges} if by_size else {"num_merges": merges}
    got = {}
    for mode in ("reference", "fast"):
        with minigpt.use(mode):
            assert dispatch.choose("bpe_merges").__module__ == (
                "minigpt.tokenizers.bpe_train" if mode == "reference"
                else "minigpt.tokenizers.bpe_train_fast")
            try:
                tok = BPETokenizer.train(text, min_frequency=min_frequency, lowercase=False, **kw)
            except ValueError as e:  # vocab_size below the base symbols: both must refuse
                got[mode] = str(e)
                continue
            got[mode] = (tok.merges, tok.get_vocab())
    assert got["fast"] == got["reference"]


def test_reference_bpe_learning_by_hand():
    """The reference on a text small enough to follow by hand: 'a a a' counts (a, a) twice in
    one word, ties go to the smallest pair, and min_frequency stops it."""
    import minigpt
    with minigpt.use("reference"):
        tok = BPETokenizer.train("aaa aaa ab", num_merges=10, min_frequency=2, lowercase=False)
    # "aaa" is a a a</w>: pairs (a, a) 2 (once per word, 2 words), (a, a</w>) 2, (a, b</w>) 1;
    # the tie between the first two goes to the smaller pair, (a, a)
    assert tok.merges[0] == ("a", "a")
    # then "aa a</w>" x2: (aa, a</w>) 2 -> merged; (a, b</w>) 1 < min_frequency: stop
    assert tok.merges == [("a", "a"), ("aa", "a</w>")]
