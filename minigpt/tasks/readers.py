"""User data files: TSV/CSV (`text[, text2], label`), JSONL, CoNLL (token and BIO tag per line)
and Story-Cloze-style CSV (context, endings, 1-based answer).

A bad row is an error naming the file and line; a label of the test set that training never saw
is an error too.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from ..checks import short_list
from .examples import TASKS, Example, TaskData, TaskDataError, clean_text

__all__ = ["read_user_file", "user_task_data", "TEST_EVERY"]

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
    reader = csv.reader(io.StringIO(text), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            if reader.line_num > start:  # the row ran on: a quote opened and never closed
                raise _err(path, start, f"unclosed quote {_open_quote(text, start)}: the quoted "
                           f"field runs on to line {reader.line_num}, merging the rows in "
                           "between; close it, or write a quote inside quotes as \"\"") from None
            raise _err(path, start, f"malformed CSV: {e} (a quote inside a quoted field is "
                                    "written \"\")") from None
        if any(f.strip() for f in row):
            yield start, row


def _open_quote(text: str, line: int) -> str:
    """The start of the last quoted field opened on `line` (1-based), e.g. '"great movie,...'."""
    raw = text.split("\n")[line - 1]
    opens = [i for i, c in enumerate(raw) if c == '"' and (i == 0 or raw[i - 1] == ",")]
    if not opens:
        return "on this line"
    field = raw[opens[-1]:]
    return repr(field if len(field) <= 30 else field[:30] + "...")


def _run_on_rows(path, fmt, rows, out):
    """A quoted field over several lines whose lines look like whole rows ending in a label
    of this file ("great movie,pos" inside one text) is an unclosed quote that happened to be
    closed by a later quote: the rows were merged. A real multi-line text passes."""
    labels = {ex.label for ex in out if ex.label is not None}
    for line, fields in rows:
        for field in fields:
            for k, inner in enumerate(field.split("\n")[:-1]):
                head, sep, last = inner.rpartition("," if fmt == "csv" else "\t")
                if sep and head.strip() and last.strip() in labels:
                    raise _err(path, line, f"unclosed quote {_open_quote(_read_text(path), line)}?"
                               f" the quoted field runs over several lines and line {line + k} "
                               f"inside it looks like a whole row ({inner.strip()[:40]!r}, label "
                               f"{last.strip()!r}): the rows were merged; close the quote, or "
                               "write a quote inside quotes as \"\"")


def _is_header(fields) -> bool:
    return all(f.strip().lower() in _HEADER_WORDS for f in fields)


def _read_table(path: Path, fmt: str, task: str, labelled: bool | None):
    """classify/entail/similar from TSV/CSV: `text[, text2][, label]` per row."""
    n_text = 1 if task == "classify" else 2
    out = []
    multiline = []  # rows with a quoted field over several lines (CSV only)
    first = True
    for line, fields in _rows(path, fmt):
        if any("\n" in f for f in fields):
            multiline.append((line, fields))
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
        texts = [clean_text(f) for f in fields[:n_text]]
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
    _run_on_rows(path, fmt, multiline, out)
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
            if not clean_text(ctx) or not all(isinstance(e, str) and clean_text(e) for e in ends):
                raise _err(path, line, "empty context or ending")
            label = None
            if use_label:
                if "label" in obj:
                    label = _index(obj["label"], len(ends), path, line, base=0)
                else:
                    label = _index(obj["answer"], len(ends), path, line, base=1)
            out.append(Example(text=clean_text(ctx), choices=tuple(clean_text(e) for e in ends),
                               label=label, where=where))
            continue
        keys = _JSON_KEYS[task]
        texts = []
        for names, what in zip(keys, ("text", "text2")):
            value = _get(obj, names, path, line, what)
            if not isinstance(value, str) or not clean_text(value):
                raise _err(path, line, f"{names[0]!r} must be a non-empty string")
            texts.append(clean_text(value))
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
                               f"RandomFifthSentenceQuiz1..), got "
                               f"{short_list(header, quote=True)}")
    if labelled and not ans_cols:
        raise _err(path, line, "no answer column (answer or AnswerRightEnding) in the header")
    use_label = bool(ans_cols) if labelled is None else labelled
    out = []
    for line, fields in rows:
        if len(fields) != len(names):
            raise _err(path, line, f"expected {len(names)} CSV columns, got {len(fields)}")
        ctx = clean_text(" ".join(fields[i] for i in ctx_cols))
        ends = tuple(clean_text(fields[i]) for i in end_cols)
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
        out = [Example(text=clean_text(t), where=f"{path}:{n}")
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


def _check_not_swapped(task: str, path, examples: list) -> None:
    """A label-first file (`label<TAB>text`, a common layout) read as `text, label` has about
    as many distinct "labels" as rows and only a few distinct "texts": say so."""
    if task not in ("classify", "entail", "similar") or not examples:
        return
    labels = sorted({ex.label for ex in examples if ex.label is not None})
    texts = sorted({ex.text for ex in examples})
    if len(labels) >= max(5, len(examples) // 2) and 4 * len(texts) <= len(labels):
        sep = "," if Path(path).suffix.lower() == ".csv" else "<TAB>"
        raise TaskDataError(
            f"{path}: the label column (the last) has {len(labels):,} distinct values in "
            f"{len(examples):,} rows ({short_list(labels, 3, quote=True)}), while the text "
            f"column has only {len(texts):,} ({short_list(texts, 5, quote=True)}): the columns "
            f"look swapped; the label goes last (text{sep}label)")


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
                                f"(training labels: {short_list(labels, quote=True)})")


TEST_EVERY = 10   # a user file without --test: every 10th example (the 10th, 20th, ...) is test


def user_task_data(task, path, test_path=None) -> TaskData:
    """A TaskData from a user file; the test split is `test_path`, or without one every
    TEST_EVERY-th example of `path`."""
    examples = read_user_file(path, task, labelled=True)
    _check_not_swapped(task, path, examples)
    if test_path is not None:
        train, test = examples, read_user_file(test_path, task, labelled=True)
        _check_not_swapped(task, test_path, test)
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
